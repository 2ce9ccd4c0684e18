/**
 * Something that can sit in an {@link IndexedHeap}: the heap keeps `heapIndex` up to date so an
 * item can be removed in O(log n) without searching. An item belongs to at most one heap at a time.
 */
export interface HeapItem {
  /** Position in the heap that holds the item, -1 when in none. Maintained by the heap. */
  heapIndex: number;
}

/**
 * A binary min-heap ordered by `before(a, b)` (true when `a` must leave before `b`), with O(1)
 * peek, O(log n) push/pop and O(log n) removal of any item through its `heapIndex`.
 *
 * @example
 * const h = new IndexedHeap<Job>((a, b) => a.priority > b.priority || (a.priority === b.priority && a.seq < b.seq));
 */
export class IndexedHeap<T extends HeapItem> {
  readonly #items: T[] = [];
  readonly #before: (a: T, b: T) => boolean;

  constructor(before: (a: T, b: T) => boolean) {
    this.#before = before;
  }

  /** How many items the heap holds. */
  get size(): number {
    return this.#items.length;
  }

  /** The item that leaves next, without removing it. */
  peek(): T | undefined {
    return this.#items[0];
  }

  /** Adds an item. */
  push(item: T): void {
    const items = this.#items;
    items.push(item);
    this.#up(item, items.length - 1);
  }

  /** Removes and returns the item that leaves next. */
  pop(): T | undefined {
    const items = this.#items;
    const top = items[0];
    if (top === undefined) return undefined;
    const last = items.pop() as T;
    top.heapIndex = -1;
    if (last !== top) this.#down(last, 0);
    return top;
  }

  /** Removes `item` wherever it is; false when it is not in this heap. */
  remove(item: T): boolean {
    const items = this.#items;
    const i = item.heapIndex;
    if (i < 0 || items[i] !== item) return false;
    const last = items.pop() as T;
    item.heapIndex = -1;
    if (last !== item) {
      // The moved item may belong above or below the hole.
      if (i > 0 && this.#before(last, items[(i - 1) >> 1] as T)) this.#up(last, i);
      else this.#down(last, i);
    }
    return true;
  }

  /** Restores order after `item`'s key moved (e.g. a lease deadline changed). */
  update(item: T): void {
    const i = item.heapIndex;
    if (i < 0 || this.#items[i] !== item) return;
    if (i > 0 && this.#before(item, this.#items[(i - 1) >> 1] as T)) this.#up(item, i);
    else this.#down(item, i);
  }

  /** The items in no particular order (a live view; do not mutate). */
  values(): readonly T[] {
    return this.#items;
  }

  /** Empties the heap. */
  clear(): void {
    for (const item of this.#items) item.heapIndex = -1;
    this.#items.length = 0;
  }

  #up(item: T, i: number): void {
    const items = this.#items;
    const before = this.#before;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p] as T;
      if (!before(item, parent)) break;
      items[i] = parent;
      parent.heapIndex = i;
      i = p;
    }
    items[i] = item;
    item.heapIndex = i;
  }

  #down(item: T, i: number): void {
    const items = this.#items;
    const before = this.#before;
    const n = items.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      let child = items[l] as T;
      if (r < n) {
        const right = items[r] as T;
        if (before(right, child)) {
          c = r;
          child = right;
        }
      }
      if (!before(child, item)) break;
      items[i] = child;
      child.heapIndex = i;
      i = c;
    }
    items[i] = item;
    item.heapIndex = i;
  }
}

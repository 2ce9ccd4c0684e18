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

/**
 * A binary min-heap of items by a numeric key. Keys (and an optional small number per item, `aux`)
 * live in their own arrays, so comparisons never touch the items and a queued item needs no
 * wrapper object: the fast path for deep queues. No removal other than `pop`.
 *
 * @example
 * const h = new KeyedHeap<string>();
 * h.push('later', 2); h.push('sooner', 1); h.pop(); // 'sooner'
 */
export class KeyedHeap<T> {
  readonly #keys: number[] = [];
  readonly #aux: number[] = [];
  readonly #items: T[] = [];
  /** Key of the item the last `pop` returned. */
  poppedKey = 0;
  /** `aux` of the item the last `pop` returned. */
  poppedAux = 0;

  /** How many items the heap holds. */
  get size(): number {
    return this.#items.length;
  }

  /** The smallest key, or Infinity when empty. */
  peekKey(): number {
    return this.#keys.length > 0 ? (this.#keys[0] as number) : Infinity;
  }

  /** The item with the smallest key, without removing it. */
  peek(): T | undefined {
    return this.#items[0];
  }

  /** Adds `item` under `key`, carrying `aux` (ties leave in no particular order: make keys unique when order matters). */
  push(item: T, key: number, aux = 0): void {
    const keys = this.#keys;
    const auxes = this.#aux;
    const items = this.#items;
    let i = keys.length;
    keys.push(key);
    auxes.push(aux);
    items.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pk = keys[p] as number;
      if (pk <= key) break;
      keys[i] = pk;
      auxes[i] = auxes[p] as number;
      items[i] = items[p] as T;
      i = p;
    }
    keys[i] = key;
    auxes[i] = aux;
    items[i] = item;
  }

  /** Removes and returns the item with the smallest key (its key and aux in `poppedKey`/`poppedAux`). */
  pop(): T | undefined {
    const keys = this.#keys;
    const auxes = this.#aux;
    const items = this.#items;
    const n = items.length - 1;
    if (n < 0) return undefined;
    const top = items[0] as T;
    this.poppedKey = keys[0] as number;
    this.poppedAux = auxes[0] as number;
    const lastKey = keys.pop() as number;
    const lastAux = auxes.pop() as number;
    const last = items.pop() as T;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        let ck = keys[c] as number;
        const r = c + 1;
        if (r < n) {
          const rk = keys[r] as number;
          if (rk < ck) {
            c = r;
            ck = rk;
          }
        }
        if (lastKey <= ck) break;
        keys[i] = ck;
        auxes[i] = auxes[c] as number;
        items[i] = items[c] as T;
        i = c;
      }
      keys[i] = lastKey;
      auxes[i] = lastAux;
      items[i] = last;
    }
    return top;
  }

  /** Empties the heap. */
  clear(): void {
    this.#keys.length = 0;
    this.#aux.length = 0;
    this.#items.length = 0;
  }
}

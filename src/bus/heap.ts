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

/** Something a {@link DeadlineQueue} holds: the queue maintains `slot` and `heapIndex`. */
export interface DeadlineItem extends HeapItem {
  readonly deadline: number;
  /** Position in the queue's FIFO run (absolute), -1 when not in it. Maintained by the queue. */
  slot: number;
}

/**
 * Items by deadline, earliest first, for items that mostly arrive in deadline order (requests with
 * the same timeout): those go to a FIFO run, O(1) to add and to remove from anywhere (the slot is
 * emptied), and only an item due before the last one added goes to a heap beside it. A heap of
 * 10,000 waiting requests cost a sift of 14 levels over scattered objects per reply; this costs
 * a store. Emptied slots are dropped as the front passes them, and all at once when they
 * outnumber the items 3 to 1, so a long wait at the front never pins the slots behind it.
 */
export class DeadlineQueue<T extends DeadlineItem> {
  #run: (T | undefined)[] = [];
  /** Absolute slot of `#run[0]`. */
  #base = 0;
  /** Index in `#run` of the first slot that may hold an item. */
  #head = 0;
  #inRun = 0;
  #lastDeadline = Number.NEGATIVE_INFINITY;
  readonly #late = new IndexedHeap<T>((a, b) => a.deadline < b.deadline);

  /** How many items it holds. */
  get size(): number {
    return this.#inRun + this.#late.size;
  }

  /** Slots the FIFO run holds, filled or emptied (what it costs in memory, for tests). */
  get heldSlots(): number {
    return this.#run.length - this.#head;
  }

  /** Adds an item (not already in it). */
  push(item: T): void {
    if (item.deadline >= this.#lastDeadline) {
      this.#lastDeadline = item.deadline;
      item.slot = this.#base + this.#run.length;
      this.#run.push(item);
      this.#inRun++;
    } else {
      item.slot = -1;
      this.#late.push(item);
    }
  }

  /** Removes `item` wherever it is; false when it is not in this queue. */
  remove(item: T): boolean {
    const i = item.slot - this.#base;
    if (item.slot >= 0 && this.#run[i] === item) {
      this.#run[i] = undefined;
      item.slot = -1;
      if (--this.#inRun === 0) {
        this.#run = [];
        this.#base += i + 1;
        this.#head = 0;
      } else if (this.#run.length > 1024 && this.#run.length > 4 * this.#inRun) this.#compact();
      return true;
    }
    return this.#late.remove(item);
  }

  /** The item due first, without removing it. */
  peek(): T | undefined {
    const run = this.#run;
    let head = this.#head;
    while (head < run.length && run[head] === undefined) head++;
    this.#head = head;
    const first = run[head];
    const late = this.#late.peek();
    if (first === undefined) return late;
    return late !== undefined && late.deadline < first.deadline ? late : first;
  }

  /** Keeps only the filled slots of the run (their slots renumbered). */
  #compact(): void {
    const kept: T[] = [];
    for (let i = this.#head; i < this.#run.length; i++) {
      const item = this.#run[i];
      if (item !== undefined) kept.push(item);
    }
    this.#base += this.#run.length;
    for (let i = 0; i < kept.length; i++) (kept[i] as T).slot = this.#base + i;
    this.#run = kept;
    this.#head = 0;
  }
}

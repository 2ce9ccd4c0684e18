// The heaps only the memory transport uses: deep queues without a wrapper object per message.

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

/** A FIFO ring of items with increasing numeric keys (a band of {@link BandedQueue}). */
class KeyRing<T> {
  #items: (T | undefined)[];
  /** A plain array of doubles (stored unboxed), not a Float64Array: one object, not three (typed array, buffer, store). */
  #keys: number[];
  #head = 0;
  length = 0;
  /** Key of the last item pushed while the ring was non-empty (-Infinity once it empties). */
  lastKey = -Infinity;

  constructor(capacity: number) {
    this.#items = new Array<T | undefined>(capacity).fill(undefined);
    this.#keys = new Array<number>(capacity).fill(0.5);
  }

  push(item: T, key: number): void {
    if (this.length === this.#items.length) this.#resize(this.#items.length * 2);
    const i = (this.#head + this.length) & (this.#items.length - 1);
    this.#items[i] = item;
    this.#keys[i] = key;
    this.length++;
    this.lastKey = key;
  }

  headKey(): number {
    return this.#keys[this.#head] as number;
  }

  /** Removes and returns the oldest item (the ring must not be empty). */
  shift(): T {
    const head = this.#head;
    const item = this.#items[head] as T;
    this.#items[head] = undefined;
    this.#head = (head + 1) & (this.#items.length - 1);
    if (--this.length === 0) {
      this.#head = 0;
      this.lastKey = -Infinity;
    }
    // A drained backlog gives its memory back (capacity stays within 4x of the length).
    if (this.#items.length > 64 && this.length < this.#items.length >> 2) this.#resize(this.#items.length >> 1);
    return item;
  }

  #resize(capacity: number): void {
    // Block copies (builtins), not an element loop: the ring is one run [head, head + length) or,
    // wrapped, two runs [head, old end) and [0, rest).
    const head = this.#head;
    const length = this.length;
    const end = Math.min(head + length, this.#items.length);
    const rest = length - (end - head);
    const items = this.#items.slice(head, end);
    if (rest > 0) for (let i = 0; i < rest; i++) items.push(this.#items[i]);
    items.length = capacity;
    items.fill(undefined, length);
    const keys = this.#keys.slice(head, end);
    if (rest > 0) for (let i = 0; i < rest; i++) keys.push(this.#keys[i] as number);
    keys.length = capacity;
    keys.fill(0.5, length);
    this.#items = items;
    this.#keys = keys;
    this.#head = 0;
  }

  clear(): void {
    this.#items.fill(undefined);
    this.#head = 0;
    this.length = 0;
    this.lastKey = -Infinity;
  }
}

/**
 * Items by a numeric key, smallest first, for keys of the form `band × stride + seq` with at most
 * 31 bands and `seq` growing as items arrive: the shape of a priority queue with few priorities
 * and FIFO order within one. Each band is a FIFO ring that takes every item arriving in key order
 * (O(1) push and pop over sequential memory, however deep the queue); an item that comes back to
 * an older place (a retry keeping its original position), or that carries an `aux`, goes to one
 * {@link KeyedHeap} beside them. Same contract as `KeyedHeap`: `pop` returns the smallest key and
 * sets `poppedKey`/`poppedAux`.
 *
 * @example
 * const q = new BandedQueue<string>(11, 2 ** 43);
 * q.push('low', 10 * 2 ** 43 + 1); q.push('high', 0 * 2 ** 43 + 2); q.pop(); // 'high'
 */
export class BandedQueue<T> {
  readonly #stride: number;
  readonly #bands: number;
  /** Band b's ring, made with the first item of that band: an idle queue holds none (most bands of most queues stay empty). */
  readonly #rings: (KeyRing<T> | undefined)[] = [];
  /** Made with the first item that cannot go to its ring. */
  #late: KeyedHeap<T> | undefined;
  /** Bit b set: band b's ring is non-empty. */
  #mask = 0;
  #inRings = 0;
  /** Key of the item the last `pop` returned. */
  poppedKey = 0;
  /** `aux` of the item the last `pop` returned. */
  poppedAux = 0;

  constructor(bands: number, stride: number) {
    if (!(bands >= 1 && bands <= 31)) throw new RangeError(`bands must be 1..31, got ${bands}`);
    this.#stride = stride;
    this.#bands = bands;
  }

  /** How many items it holds. */
  get size(): number {
    return this.#late === undefined ? this.#inRings : this.#inRings + this.#late.size;
  }

  /** How many bands have a ring (made on first use): what the queue holds memory for. */
  get allocatedBands(): number {
    let n = 0;
    for (const ring of this.#rings) if (ring !== undefined) n++;
    return n;
  }

  /** Adds `item` under `key` (of band `floor(key / stride)`), carrying `aux`. */
  push(item: T, key: number, aux = 0): void {
    const band = Math.floor(key / this.#stride);
    let ring = this.#rings[band];
    if (ring === undefined) {
      if (!(band >= 0 && band < this.#bands)) throw new RangeError(`key ${key} is outside the ${this.#bands} bands`);
      ring = this.#rings[band] = new KeyRing<T>(RING_CAPACITY);
    }
    if (aux === 0 && key > ring.lastKey) {
      ring.push(item, key);
      this.#mask |= 1 << band;
      this.#inRings++;
    } else {
      (this.#late ??= new KeyedHeap<T>()).push(item, key, aux);
    }
  }

  /** The smallest key, or Infinity when empty. */
  peekKey(): number {
    const late = this.#late === undefined ? Number.POSITIVE_INFINITY : this.#late.peekKey();
    if (this.#mask === 0) return late;
    const ring = this.#rings[31 - Math.clz32(this.#mask & -this.#mask)] as KeyRing<T>;
    const key = ring.headKey();
    return key < late ? key : late;
  }

  /** Removes and returns the item with the smallest key (its key and aux in `poppedKey`/`poppedAux`). */
  pop(): T | undefined {
    const late = this.#late;
    const lateKey = late === undefined ? Number.POSITIVE_INFINITY : late.peekKey();
    const mask = this.#mask;
    if (mask !== 0) {
      const band = 31 - Math.clz32(mask & -mask);
      const ring = this.#rings[band] as KeyRing<T>;
      const key = ring.headKey();
      if (key < lateKey) {
        this.poppedKey = key;
        this.poppedAux = 0;
        this.#inRings--;
        const item = ring.shift();
        if (ring.length === 0) this.#mask = mask & ~(1 << band);
        return item;
      }
    }
    if (late === undefined || lateKey === Number.POSITIVE_INFINITY) return undefined;
    const item = late.pop();
    this.poppedKey = late.poppedKey;
    this.poppedAux = late.poppedAux;
    return item;
  }

  /** Empties it. */
  clear(): void {
    for (const ring of this.#rings) ring?.clear();
    this.#late?.clear();
    this.#mask = 0;
    this.#inRings = 0;
  }
}

/** First capacity of a band's ring (a power of two; it doubles as needed). */
const RING_CAPACITY = 16;

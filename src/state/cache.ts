/**
 * A read cache of versioned values (documents by version, workflows by revision) that can
 * never go backwards: a value is only stored when its version is at least the highest version
 * known for its key, whether that knowledge came from this manager's own writes or from the
 * change feed. So a slow read that started before a write cannot put an older value back.
 */
export class VersionedCache<T> {
  #ttlMs: number;
  #maxEntries: number;
  #entries = new Map<string, { version: number; value: T; expiresAt: number }>();
  /** Highest version known per key (kept for keys without an entry too). */
  #floors = new Map<string, number>();

  constructor(options: { ttlMs: number; maxEntries?: number }) {
    this.#ttlMs = options.ttlMs;
    this.#maxEntries = options.maxEntries ?? 10_000;
  }

  /** The cached value if fresh, else undefined. */
  get(key: string): T | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now() || entry.version < (this.#floors.get(key) ?? 0)) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  /** Stores `value` at `version` unless a newer version is known. */
  put(key: string, version: number, value: T): void {
    const floor = this.#floors.get(key) ?? 0;
    if (version < floor) return;
    this.#setFloor(key, version);
    this.#entries.delete(key);
    this.#entries.set(key, { version, value, expiresAt: Date.now() + this.#ttlMs });
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
  }

  /** Records that `version` exists (from the change feed): drops an older cached value. */
  saw(key: string, version: number): void {
    this.#setFloor(key, version);
    const entry = this.#entries.get(key);
    if (entry && entry.version < version) this.#entries.delete(key);
  }

  /** Forgets the cached value (the floor stays). */
  delete(key: string): void {
    this.#entries.delete(key);
  }

  /** Empties the cache. */
  clear(): void {
    this.#entries.clear();
    this.#floors.clear();
  }

  #setFloor(key: string, version: number): void {
    if ((this.#floors.get(key) ?? 0) >= version) return;
    this.#floors.delete(key);
    this.#floors.set(key, version);
    if (this.#floors.size > this.#maxEntries * 4) {
      const oldest = this.#floors.keys().next();
      if (!oldest.done) {
        this.#floors.delete(oldest.value);
        this.#entries.delete(oldest.value);
      }
    }
  }
}

/**
 * The last known state of the documents this manager recently wrote or read, used only as the
 * base of its next write (never to answer a read). A version's content never changes once
 * committed, so a known version is exact; whether it is still the current one is decided by
 * the store's compare-and-swap, which refuses the write otherwise. This is what lets an update
 * with `expectedVersion` cost one store round trip. Bounded by entries and by content size;
 * the least recently stored entry goes first.
 */
export class RecentVersions<T extends { version: number; content: string }> {
  #maxEntries: number;
  #maxChars: number;
  #chars = 0;
  #entries = new Map<string, T>();
  /** The key set last, which is last in `#entries`' order. */
  #newest: string | undefined;

  constructor(options: { maxEntries: number; maxChars: number }) {
    this.#maxEntries = options.maxEntries;
    this.#maxChars = options.maxChars;
  }

  get(key: string): T | undefined {
    return this.#entries.get(key);
  }

  /** Remembers `value` unless a newer version of `key` is already known. */
  set(key: string, value: T): void {
    const old = this.#entries.get(key);
    if (old) {
      if (old.version > value.version) return;
      this.#chars -= old.content.length;
      // Already the most recent key (the usual run of writes to one document): keep its place.
      if (key !== this.#newest) this.#entries.delete(key);
    }
    this.#entries.set(key, value);
    this.#newest = key;
    this.#chars += value.content.length;
    while (this.#entries.size > 1 && (this.#entries.size > this.#maxEntries || this.#chars > this.#maxChars)) {
      const [oldestKey, oldest] = this.#entries.entries().next().value as [string, T];
      this.#entries.delete(oldestKey);
      this.#chars -= oldest.content.length;
    }
  }

  delete(key: string): void {
    const old = this.#entries.get(key);
    if (!old) return;
    this.#chars -= old.content.length;
    this.#entries.delete(key);
    if (key === this.#newest) this.#newest = undefined;
  }

  clear(): void {
    this.#entries.clear();
    this.#chars = 0;
    this.#newest = undefined;
  }
}

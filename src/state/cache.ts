import type { DocumentRecord } from './store.js';
import type { StateChange } from './types.js';

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
 * The latest version of one document a manager knows: what its next write needs (version,
 * content for the line counts, metadata to carry over, creation time) and the sealed history
 * window ending at it. One object per document, advanced in place by each write: a write
 * allocates nothing here that outlives it. (A new state object per write, each living until that
 * document's next write, survived scavenges and was promoted as soon as the live documents
 * outnumbered the writes between two scavenges: bench/NOTES.md, issue 25 round 2.) Never handed
 * out; `record()` and `history()` give copies of what a write may hold across an await.
 */
export class KnownDocument {
  readonly documentId: string;
  version: number;
  content: string;
  /** Private to the manager (never handed out), so shared rather than copied. */
  metadata: Record<string, unknown>;
  createdAt: Date;
  /**
   * The update time, or undefined when it is the newest window entry's timestamp (as after every
   * write the manager makes, which stamps both with one Date). Each write stored its new Date
   * here otherwise: a young object in an old one, a remembered slot the scavenger visits, on a
   * different page per document (bench/NOTES.md, issue 25 round 7).
   */
  #updatedAt: Date | undefined;
  /** Written since the memo last looked at it for eviction (the memo's second-chance bit). */
  used = false;
  /** The memo holds this entry (as its document's): a write may advance it without a lookup. */
  remembered = false;
  /** The window as a ring: `#size` entries from `#start`, oldest first. */
  #ring: Array<StateChange | undefined>;
  #start = 0;
  #size = 0;

  constructor(record: DocumentRecord, window: readonly StateChange[], capacity: number) {
    this.documentId = record.documentId;
    this.version = record.version;
    this.content = record.content;
    this.metadata = record.metadata;
    this.createdAt = record.createdAt;
    this.#ring = new Array<StateChange | undefined>(capacity).fill(undefined);
    const from = Math.max(0, window.length - capacity);
    for (let i = from; i < window.length; i++) this.#ring[this.#size++] = window[i];
    this.#updatedAt = this.#newest()?.timestamp === record.updatedAt ? undefined : record.updatedAt;
  }

  /** The newest entry of the window, if any. */
  #newest(): StateChange | undefined {
    if (this.#size === 0) return undefined;
    const end = this.#start + this.#size - 1;
    return this.#ring[end >= this.#ring.length ? end - this.#ring.length : end];
  }

  /** The version's fields as a new record (dates shared: the manager never hands them out). */
  record(): DocumentRecord {
    return {
      documentId: this.documentId,
      version: this.version,
      content: this.content,
      metadata: this.metadata,
      createdAt: this.createdAt,
      updatedAt: this.#updatedAt ?? this.#newest()!.timestamp,
    };
  }

  /** The history window ending at `version`, oldest first, as a new array. */
  history(): StateChange[] {
    const ring = this.#ring;
    const out = new Array<StateChange>(this.#size);
    for (let i = 0, j = this.#start; i < this.#size; i++, j = j + 1 === ring.length ? 0 : j + 1) out[i] = ring[j]!;
    return out;
  }

  /** Moves to the next version, `document`, made by `change` (sealed); the oldest entry drops out of a full window. */
  advance(document: DocumentRecord, change: StateChange): void {
    this.version = document.version;
    this.content = document.content;
    this.metadata = document.metadata;
    const ring = this.#ring;
    this.#updatedAt = ring.length > 0 && document.updatedAt === change.timestamp ? undefined : document.updatedAt;
    if (ring.length === 0) return;
    let end = this.#start + this.#size;
    if (end >= ring.length) end -= ring.length;
    ring[end] = change;
    if (this.#size < ring.length) this.#size++;
    else this.#start = this.#start + 1 === ring.length ? 0 : this.#start + 1;
  }
}

/**
 * The documents this manager recently wrote or read, as `KnownDocument`s, used only as the base
 * of its next write (never to answer a read). A version's content never changes once committed,
 * so a known version is exact; whether it is still the current one is decided by the store's
 * compare-and-swap, which refuses the write otherwise. This is what lets an update with
 * `expectedVersion` cost one store round trip. Bounded by entries and by content size; past a
 * bound the least recently stored entry goes first, unless it was written since (then it gets a
 * second chance, as in a CLOCK cache): a write marks its entry instead of moving it to the end of
 * the Map, which at 100 000 documents cost a hash-table delete and insert per write.
 */
export class RecentDocuments {
  #maxEntries: number;
  #maxChars: number;
  #chars = 0;
  #entries = new Map<string, KnownDocument>();

  constructor(options: { maxEntries: number; maxChars: number }) {
    this.#maxEntries = options.maxEntries;
    this.#maxChars = options.maxChars;
  }

  get(key: string): KnownDocument | undefined {
    return this.#entries.get(key);
  }

  /** Remembers `known` unless a newer version of its document is already known. */
  set(known: KnownDocument): void {
    const key = known.documentId;
    const old = this.#entries.get(key);
    if (old) {
      if (old.version > known.version) return;
      this.#chars -= old.content.length;
      this.#entries.delete(key);
      old.remembered = false;
    }
    this.#entries.set(key, known);
    known.remembered = true;
    this.#chars += known.content.length;
    this.#trim();
  }

  /** Advances `known` (an entry of this memo) in place to `document` (see `KnownDocument.advance`). */
  advance(known: KnownDocument, document: DocumentRecord, change: StateChange): void {
    this.#chars += document.content.length - known.content.length;
    known.advance(document, change);
    known.used = true;
    if (this.#chars > this.#maxChars) this.#trim();
  }

  delete(key: string): void {
    const old = this.#entries.get(key);
    if (!old) return;
    this.#chars -= old.content.length;
    this.#entries.delete(key);
    old.remembered = false;
  }

  clear(): void {
    for (const known of this.#entries.values()) known.remembered = false;
    this.#entries.clear();
    this.#chars = 0;
  }

  /** Number of documents remembered. */
  get size(): number {
    return this.#entries.size;
  }

  #trim(): void {
    // Each entry is given a second chance at most once per call, so this ends.
    let chances = this.#entries.size;
    while (this.#entries.size > 1 && (this.#entries.size > this.#maxEntries || this.#chars > this.#maxChars)) {
      const [oldestKey, oldest] = this.#entries.entries().next().value as [string, KnownDocument];
      this.#entries.delete(oldestKey);
      if (oldest.used && chances-- > 0) {
        oldest.used = false;
        this.#entries.set(oldestKey, oldest);
      } else {
        this.#chars -= oldest.content.length;
        oldest.remembered = false;
      }
    }
  }
}

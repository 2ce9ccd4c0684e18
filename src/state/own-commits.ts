import type { ChangeEvent } from './types.js';

/** One own commit under way or awaiting its event; `begin` hands it out as the ticket for `end`. */
export interface OwnCommit {
  readonly kind: 'document' | 'workflow';
  readonly id: string;
  readonly version: number;
  /** Own commits of this key under way (two callers of one manager may race for a version). */
  inFlight: number;
  /** The feed revision of this key's event, when it arrived while a commit was under way. */
  early: number | undefined;
  /** An own commit of this key succeeded; its event has not arrived yet. */
  done: boolean;
  /** The next entry of the same kind and id (another version): a chain, rarely longer than one. */
  next: OwnCommit | undefined;
}

/** Entries kept at most: entries whose event never comes (a store closed under them) must not pile up. */
const MAX_ENTRIES = 10_000;
const KINDS = ['document', 'workflow'] as const;
/** Vacant ids at which `begin` sweeps them out of the map. */
const SWEEP_AT = 1024;

/**
 * This manager's own commits, so the change feed can tell their events (already counted in the
 * metrics) from other writers' (which trigger a stats refresh). A commit is known by kind, id
 * and the version (or workflow revision) it makes, which exactly one commit can make. The event
 * may come before the commit's answer (a memory or SQLite store delivers it in the same tick,
 * Redis over another connection), so an event seen while a commit of its key is under way is
 * held until the commit ends: its own if it succeeded, another writer's if it lost.
 *
 * An id whose last entry is gone stays in the map as vacant (null) until `begin` sweeps the
 * vacancies: deleting the key on every commit and setting it again on the next costs the Map
 * about 4x a plain update (8% of a one-document write profile), and a sweep per `SWEEP_AT`
 * vacancies keeps the map small however many documents are written (bench/NOTES.md, issue 25
 * round 4). No list per id: the entries of one id are a chain, rarely longer than one.
 */
export class OwnCommits {
  #byKind = { document: new Map<string, OwnCommit | null>(), workflow: new Map<string, OwnCommit | null>() };
  #size = 0;
  /** Ids mapped to null (no entry left). */
  #vacant = 0;
  #othersChanged: () => void;

  constructor(othersChanged: () => void) {
    this.#othersChanged = othersChanged;
  }

  /** An own commit of `kind` `id` making `version` starts; pass what it returns to `end`. */
  begin(kind: 'document' | 'workflow', id: string, version: number): OwnCommit {
    const map = this.#byKind[kind];
    const first = map.get(id);
    const found = find(first, version);
    if (found) {
      found.inFlight++;
      return found;
    }
    const entry: OwnCommit = { kind, id, version, inFlight: 1, early: undefined, done: false, next: first ?? undefined };
    if (first === null) this.#vacant--;
    else if (first === undefined && this.#vacant >= SWEEP_AT) this.#sweep();
    this.#byKind[kind].set(id, entry); // not `map`: a sweep replaces the maps
    if (++this.#size > MAX_ENTRIES) this.#clear();
    return entry;
  }

  /** The commit `begin` started has ended: `committed` when it wrote, false when it lost (or failed). */
  end(entry: OwnCommit, committed: boolean): void {
    entry.inFlight--;
    if (committed) {
      if (entry.early !== undefined) this.#remove(entry);
      else entry.done = true;
    } else if (entry.inFlight === 0 && !entry.done) {
      this.#remove(entry);
      if (entry.early !== undefined) this.#othersChanged();
    }
  }

  /** True when `event` is one of this manager's own commits (then forgotten), false for another writer's. */
  claim(event: ChangeEvent): boolean {
    const entry = find(this.#byKind[event.kind].get(event.id), event.version);
    if (!entry) return false;
    if (entry.done) {
      this.#remove(entry);
      return true;
    }
    if (entry.inFlight > 0) {
      entry.early = event.revision;
      return true; // for now: `end` reports it if the commit lost
    }
    return false;
  }

  /** Unlinks `entry` from its chain; the id is vacant once its last entry is gone. */
  #remove(entry: OwnCommit): void {
    const map = this.#byKind[entry.kind];
    const first = map.get(entry.id);
    if (first === entry) {
      map.set(entry.id, entry.next ?? null);
      if (!entry.next) this.#vacant++;
    } else {
      let prev = first;
      while (prev && prev.next !== entry) prev = prev.next;
      if (!prev) return; // already removed
      prev.next = entry.next;
    }
    entry.next = undefined;
    this.#size--;
  }

  /**
   * Drops the vacant ids: new maps with the ids that still have entries (usually none). Deleting
   * the vacant ids one by one shrank and rehashed the map as it went (bench/NOTES.md, issue 25
   * round 7).
   */
  #sweep(): void {
    for (const kind of KINDS) {
      const kept = new Map<string, OwnCommit | null>();
      for (const [id, first] of this.#byKind[kind]) if (first !== null) kept.set(id, first);
      this.#byKind[kind] = kept;
    }
    this.#vacant = 0;
  }

  /** Drops every entry not under way (their events are then counted as other writers'). */
  #clear(): void {
    this.#sweep();
    this.#size = 0;
    for (const map of Object.values(this.#byKind)) {
      for (const [id, first] of map) {
        let kept: OwnCommit | undefined;
        for (let e: OwnCommit | undefined = first ?? undefined, next: OwnCommit | undefined; e; e = next) {
          next = e.next;
          e.next = undefined;
          if (e.inFlight > 0) {
            e.next = kept;
            kept = e;
            this.#size++;
          }
        }
        if (kept) map.set(id, kept);
        else map.delete(id);
      }
    }
  }
}

/** The entry of the chain from `first` making `version`. */
function find(first: OwnCommit | null | undefined, version: number): OwnCommit | undefined {
  for (let e = first ?? undefined; e; e = e.next) if (e.version === version) return e;
  return undefined;
}

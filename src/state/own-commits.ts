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

/**
 * This manager's own commits, so the change feed can tell their events (already counted in the
 * metrics) from other writers' (which trigger a stats refresh). A commit is known by kind, id
 * and the version (or workflow revision) it makes, which exactly one commit can make. The event
 * may come before the commit's answer (a memory or SQLite store delivers it in the same tick,
 * Redis over another connection), so an event seen while a commit of its key is under way is
 * held until the commit ends: its own if it succeeded, another writer's if it lost.
 *
 * Only commits under way or awaiting their event are keyed: an id leaves the map with its last
 * entry. (Keeping an emptied list per id ever written made the map as large as the number of
 * documents written, a hash-table miss per write at 100 000 documents: bench/NOTES.md, issue 25
 * round 4.)
 */
export class OwnCommits {
  #byKind = { document: new Map<string, OwnCommit>(), workflow: new Map<string, OwnCommit>() };
  #size = 0;
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
    const entry: OwnCommit = { kind, id, version, inFlight: 1, early: undefined, done: false, next: first };
    map.set(id, entry);
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

  /** Unlinks `entry` from its chain; the id leaves the map with its last entry. */
  #remove(entry: OwnCommit): void {
    const map = this.#byKind[entry.kind];
    const first = map.get(entry.id);
    if (first === entry) {
      if (entry.next) map.set(entry.id, entry.next);
      else map.delete(entry.id);
    } else {
      let prev = first;
      while (prev && prev.next !== entry) prev = prev.next;
      if (!prev) return; // already removed
      prev.next = entry.next;
    }
    entry.next = undefined;
    this.#size--;
  }

  /** Drops every entry not under way (their events are then counted as other writers'). */
  #clear(): void {
    this.#size = 0;
    for (const map of Object.values(this.#byKind)) {
      for (const [id, first] of map) {
        let kept: OwnCommit | undefined;
        for (let e: OwnCommit | undefined = first, next: OwnCommit | undefined; e; e = next) {
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
function find(first: OwnCommit | undefined, version: number): OwnCommit | undefined {
  for (let e = first; e; e = e.next) if (e.version === version) return e;
  return undefined;
}

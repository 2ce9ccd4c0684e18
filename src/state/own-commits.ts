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
}

/**
 * This manager's own commits, so the change feed can tell their events (already counted in the
 * metrics) from other writers' (which trigger a stats refresh). A commit is known by kind, id
 * and the version (or workflow revision) it makes, which exactly one commit can make. The event
 * may come before the commit's answer (a memory or SQLite store delivers it in the same tick,
 * Redis over another connection), so an event seen while a commit of its key is under way is
 * held until the commit ends: its own if it succeeded, another writer's if it lost.
 */
export class OwnCommits {
  #byKind = { document: new Map<string, OwnCommit[]>(), workflow: new Map<string, OwnCommit[]>() };
  #size = 0;
  /** Map size at which `begin` drops the emptied lists. */
  #sweepAt = 1024;
  #othersChanged: () => void;

  constructor(othersChanged: () => void) {
    this.#othersChanged = othersChanged;
  }

  /** An own commit of `kind` `id` making `version` starts; pass what it returns to `end`. */
  begin(kind: 'document' | 'workflow', id: string, version: number): OwnCommit {
    const map = this.#byKind[kind];
    let list = map.get(id);
    if (!list) {
      if (map.size >= this.#sweepAt) {
        for (const [key, l] of map) if (l.length === 0) map.delete(key);
        this.#sweepAt = Math.max(1024, 2 * map.size);
      }
      map.set(id, (list = []));
    }
    let entry = find(list, version);
    if (entry) entry.inFlight++;
    else {
      entry = { kind, id, version, inFlight: 1, early: undefined, done: false };
      list.push(entry);
      // Bounded: entries whose event never comes (a store closed under them) must not pile up.
      if (++this.#size > 10_000) this.#clear();
    }
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
    const list = this.#byKind[event.kind].get(event.id);
    const entry = list && find(list, event.version);
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

  #remove(entry: OwnCommit): void {
    const list = this.#byKind[entry.kind].get(entry.id);
    const i = list ? list.indexOf(entry) : -1;
    if (!list || i < 0) return;
    this.#size--;
    // Swap-remove; an emptied list stays in the map (deleting and re-adding the key on every
    // commit makes the Map shrink and grow its table each time) until `begin` sweeps.
    const last = list.pop()!;
    if (i < list.length) list[i] = last;
  }

  #clear(): void {
    for (const map of Object.values(this.#byKind)) {
      for (const [id, list] of map) {
        const kept = list.filter((e) => e.inFlight > 0);
        if (kept.length > 0) map.set(id, kept);
        else map.delete(id);
      }
    }
    this.#size = 0;
    for (const map of Object.values(this.#byKind)) for (const list of map.values()) this.#size += list.length;
  }
}

/** The entry of `list` making `version` (a loop: `Array.find` would allocate a closure per call). */
function find(list: OwnCommit[], version: number): OwnCommit | undefined {
  for (const entry of list) if (entry.version === version) return entry;
  return undefined;
}

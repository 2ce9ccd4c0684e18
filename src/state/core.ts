/**
 * What the parts of a `StateManager` share: its settings, the read caches, the write memo and
 * the store once open. Internal; the facade in manager.ts builds one and hands it to its parts
 * (documents.ts, history.ts, workflow-states.ts, change-feed.ts).
 */
import { ClosedError } from '../errors.js';
import { RecentDocuments, VersionedCache } from './cache.js';
import type { StateStore, WorkflowRecord } from './store.js';
import type { DocumentState } from './types.js';

/** How many times an update without `expectedVersion` re-reads and retries after losing a race. */
export const MAX_WRITE_ATTEMPTS = 1000;
/** Bounds of the write-base memo (see `RecentDocuments`): documents, and characters of content. */
const RECENT_MAX_ENTRIES = 131_072;
const RECENT_MAX_CHARS = 64 * 1024 * 1024;

export type StoreStats = Awaited<ReturnType<StateStore['stats']>>;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Jittered back-off after losing a few compare-and-swap races in a row. */
export function raceBackoff(attempt: number): Promise<void> | undefined {
  if (attempt < 3) return undefined;
  return sleep(Math.random() * Math.min(2 ** attempt, 50));
}

/** The manager's settings once validated (see the constructor of `StateManager`). */
export interface CoreSettings {
  historyLimit: number;
  historyWindow: number;
  /** The read cache's settings, or null when it is off. */
  cache: { ttlMs: number; maxEntries?: number } | null;
}

export class StateCore {
  readonly historyLimit: number;
  readonly historyWindow: number;
  /** Entries a document's history window holds: `historyWindow`, at most `historyLimit`. */
  readonly windowKeep: number;
  readonly docCache: VersionedCache<DocumentState> | null;
  readonly wfCache: VersionedCache<WorkflowRecord> | null;
  /** The last known state of recently used documents: the base of the next write (never served to reads). */
  readonly recent = new RecentDocuments({ maxEntries: RECENT_MAX_ENTRIES, maxChars: RECENT_MAX_CHARS });
  /** Settles once the store is open (set by the facade right after construction). */
  ready!: Promise<StateStore>;
  store: StateStore | null = null;
  closed = false;

  constructor(settings: CoreSettings) {
    this.historyLimit = settings.historyLimit;
    this.historyWindow = settings.historyWindow;
    this.windowKeep = Math.min(this.historyWindow, this.historyLimit);
    if (settings.cache === null) {
      this.docCache = null;
      this.wfCache = null;
    } else {
      this.docCache = new VersionedCache<DocumentState>(settings.cache);
      this.wfCache = new VersionedCache(settings.cache);
    }
  }

  /** The store, once open; fails with `ClosedError` after `close()`. */
  async s(): Promise<StateStore> {
    if (this.closed) throw new ClosedError('state manager');
    const store = await this.ready;
    if (this.closed) throw new ClosedError('state manager');
    return store;
  }

  /** The store once open (saves the write path a wait on `s()`), else undefined. */
  openStore(): StateStore | undefined {
    return this.closed ? undefined : (this.store ?? undefined);
  }
}

import { ValidationError } from '../errors.js';
import { checkOptionNames } from '../options.js';
import { ChangeFeed } from './change-feed.js';
import { StateCore } from './core.js';
import { Documents } from './documents.js';
import { History } from './history.js';
import {
  CACHE_OPTIONS,
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_HISTORY_WINDOW,
  DEFAULT_LOCK_TTL_MS,
  DEFAULT_LOCK_WAIT_MS,
  LOCK_OPTIONS,
  MANAGER_OPTIONS,
  type CreateDocumentInput,
  type CreateWorkflowInput,
  type HistoryPageOptions,
  type RestoreOptions,
  type StateManagerOptions,
  type StateSubscription,
  type UpdateContentInput,
  type UpdateMetadataInput,
  type WatchTarget,
} from './inputs.js';
import { LockScope, StateLocks, type LockHandle, type LockOptions } from './locks.js';
import { storeResolver } from './resolve.js';
import type { StateStore } from './store.js';
import type { ChangeEvent, DocumentState, Snapshot, StateChange, StateMetrics, WorkflowState } from './types.js';
import * as v from './validate.js';
import { WorkflowStates } from './workflow-states.js';

// The manager's parts, each in its own file: inputs.ts (options, inputs, defaults), core.ts
// (what the parts share), documents.ts (the write path), history.ts (history, versions,
// snapshots), workflow-states.ts, change-feed.ts (watch and metrics); locks.ts (withLock).
export {
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_HISTORY_PAGE,
  MAX_HISTORY_PAGE,
  DEFAULT_HISTORY_WINDOW,
  DEFAULT_LOCK_TTL_MS,
  DEFAULT_LOCK_WAIT_MS,
  type StateManagerOptions,
  type CreateDocumentInput,
  type HistoryPageOptions,
  type UpdateContentInput,
  type UpdateMetadataInput,
  type RestoreOptions,
  type CreateWorkflowInput,
  type WatchTarget,
  type StateSubscription,
} from './inputs.js';

/**
 * The shared state agents write to: versioned documents with history, merge, snapshots and
 * locks, and workflows with stage rules, over any StateStore (memory, SQLite, Redis, ...).
 * The semantics live here once; the store only reads and commits atomically.
 *
 * @example
 * const state = new StateManager({ store: 'sqlite:./state.db' });
 * const doc = await state.createDocumentState({ documentId: 'report', topic: 'Q3', requirements: [], context: {} });
 * await state.updateDocumentContent({ documentId: 'report', content: '# Q3', actor: 'writer', expectedVersion: doc.version });
 */
export class StateManager {
  /**
   * Named leases on this manager's store, exclusive across managers and processes sharing it
   * (per-document mutexes: `withLock(documentId)` uses the same names).
   */
  readonly locks: StateLocks;

  #spec: StateStore | string | undefined;
  #ownsStore: boolean;
  #lockDefaults: { ttlMs: number; waitMs: number };
  #core: StateCore;
  #feed: ChangeFeed;
  #lockScope = new LockScope();
  #docs: Documents;
  #history: History;
  #workflows: WorkflowStates;
  #stopFeed: (() => Promise<void>) | null = null;

  /** Validates the options at once; the store is opened in the background (see `ready()`). */
  constructor(options: StateManagerOptions = {}) {
    const opts = v.optionsObject(options, 'StateManager options');
    checkOptionNames(opts, MANAGER_OPTIONS, 'StateManager options');
    const store = opts['store'];
    if (typeof store === 'string') storeResolver().checkUrl(store);
    else if (
      store !== undefined &&
      (typeof store !== 'object' || store === null || typeof (store as StateStore).commitDocument !== 'function')
    ) {
      throw new ValidationError(
        `store must be a StateStore or a URL such as \`memory://\` or \`sqlite:./state.db\`, got ${v.describe(store)}`,
        {
          field: 'store',
        },
      );
    }
    this.#spec = store as StateStore | string | undefined;
    this.#ownsStore = typeof store !== 'object';
    const historyLimit = v.optionalPositiveInteger(opts['historyLimit'], 'historyLimit', 1_000_000) ?? DEFAULT_HISTORY_LIMIT;
    const historyWindow = v.optionalPositiveInteger(opts['historyWindow'], 'historyWindow', 10_000) ?? DEFAULT_HISTORY_WINDOW;
    const cache = opts['cache'];
    let cacheSettings: { ttlMs: number; maxEntries?: number } | null = null;
    if (cache !== undefined && cache !== false) {
      const c = v.optionsObject(cache, 'cache');
      checkOptionNames(c, CACHE_OPTIONS, 'cache options');
      const ttlMs = v.duration(c['ttlMs'], 'cache.ttlMs');
      const maxEntries = v.optionalPositiveInteger(c['maxEntries'], 'cache.maxEntries');
      cacheSettings = { ttlMs, ...(maxEntries ? { maxEntries } : {}) };
    }
    const locks = v.optionsObject(opts['locks'], 'locks');
    checkOptionNames(locks, LOCK_OPTIONS, 'locks options');
    this.#lockDefaults = {
      ttlMs: v.optionalDuration(locks['ttlMs'], 'locks.ttlMs') ?? DEFAULT_LOCK_TTL_MS,
      waitMs: v.optionalDuration(locks['waitMs'], 'locks.waitMs') ?? DEFAULT_LOCK_WAIT_MS,
    };
    this.#core = new StateCore({ historyLimit, historyWindow, cache: cacheSettings });
    this.locks = new StateLocks(() => this.#core.s(), this.#lockDefaults);
    this.#feed = new ChangeFeed(this.#core);
    this.#docs = new Documents(this.#core, this.#feed, this.#lockScope);
    this.#history = new History(this.#core, this.#docs);
    this.#workflows = new WorkflowStates(this.#core, this.#feed);
    this.#core.ready = this.#init();
    this.#core.ready.catch(() => undefined); // surfaced by the first call instead
  }

  async #init(): Promise<StateStore> {
    const spec = this.#spec;
    const store = spec !== undefined && typeof spec !== 'string' ? spec : await storeResolver().store(spec);
    try {
      await store.connect();
      this.#stopFeed = await store.watch((event) => this.#feed.onChange(event));
      await this.#feed.start(store);
    } catch (err) {
      if (this.#ownsStore) await store.close().catch(() => undefined);
      throw err;
    }
    this.#core.store = store;
    if (this.#core.closed) await this.#shutdown();
    return store;
  }

  /** Resolves once the store is open and the change feed live; rejects with the store's error (e.g. `TransportError`). */
  async ready(): Promise<void> {
    await this.#core.s();
  }

  // ---------------------------------------------------------------- documents

  /**
   * Creates a document at version 1 (history action `create`). `topic`, `requirements` and
   * `context` are kept in its metadata.
   *
   * @throws DocumentExistsError when the id is taken.
   */
  createDocumentState(input: CreateDocumentInput): Promise<DocumentState> {
    return this.#docs.createDocumentState(input);
  }

  /** The current document with its recent history window, or null. */
  getDocumentState(documentId: string): Promise<DocumentState | null> {
    return this.#docs.getDocumentState(documentId);
  }

  /**
   * Replaces the content (action `update_content`). Without `expectedVersion` it is an atomic
   * last-writer-wins update that retries on races, so concurrent writers never lose an update.
   * With `expectedVersion` another current version raises `StateConflictError`, unless
   * `merge: true` and the edits do not overlap: then the edit is three-way merged onto the
   * current version (action `merge`).
   *
   * @throws StateConflictError with `expectedVersion`, `actualVersion`, `current` and, for overlapping merges, `conflicts`.
   * @throws DocumentNotFoundError
   */
  updateDocumentContent(input: UpdateContentInput): Promise<DocumentState> {
    return this.#docs.updateDocumentContent(input);
  }

  /**
   * Updates the metadata (action `update_metadata`): shallow-merged into the current metadata
   * by default, replaced with `mode: 'replace'`. `expectedVersion` as for content.
   */
  updateDocumentMetadata(input: UpdateMetadataInput): Promise<DocumentState> {
    return this.#docs.updateDocumentMetadata(input);
  }

  /**
   * One page of the kept history, oldest first: by default the `DEFAULT_HISTORY_PAGE` (100)
   * newest entries. `limit` sets the page size; `before: v` pages back (the newest entries
   * below version v), `after: v` forward (the oldest entries above v); with both, the newest
   * entries between them. To walk the whole history, page back from the first entry of each
   * page (`before: page[0].version`) until a page comes back short. Each page costs the same
   * whatever the history's depth.
   *
   * @example
   * let page = await state.getStateHistory('report', { limit: 500 });
   * while (page.length === 500) page = await state.getStateHistory('report', { limit: 500, before: page[0]!.version });
   * @throws DocumentNotFoundError
   */
  getStateHistory(documentId: string, options?: HistoryPageOptions): Promise<StateChange[]> {
    return this.#history.getStateHistory(documentId, options);
  }

  /**
   * The document as it was at `version`, for every version still kept: a keyed read of that
   * version and the history window ending at it, whatever its distance from the current one.
   *
   * @throws VersionNotFoundError naming the oldest kept version when `version` was compacted or never written.
   */
  getDocumentAtVersion(documentId: string, version: number): Promise<DocumentState> {
    return this.#history.getDocumentAtVersion(documentId, version);
  }

  /**
   * A snapshot of the current document (or of a kept `version`): plain JSON with a sha256
   * checksum, safe to store anywhere and give to `restoreSnapshot` later.
   */
  snapshotState(documentId: string, options?: { version?: number }): Promise<Snapshot> {
    return this.#history.snapshotState(documentId, options);
  }

  /**
   * Restores a snapshot after checking its shape and checksum. On an existing document it
   * writes a NEW version with the snapshot's content and metadata (action `restore`): history
   * is never rewritten. When the document does not exist it is created from the snapshot at
   * version 1 with action `restore`.
   *
   * @throws SnapshotError when the snapshot is malformed or its checksum does not match.
   */
  restoreSnapshot(snapshot: Snapshot, options?: RestoreOptions): Promise<DocumentState> {
    return this.#history.restoreSnapshot(snapshot, options);
  }

  // -------------------------------------------------------------------- locks

  /**
   * Runs `fn` holding the document's lock, exclusive across every manager and process on this
   * store; releases it afterwards, whatever happens. The lease is renewed while `fn` runs;
   * if it is lost anyway, `lock.signal` aborts, and writes to the document made inside `fn`
   * through this manager carry the lock's fencing number so the store refuses them
   * (`LockLostError`). Re-entrant: a nested `withLock` on the same document just runs.
   * Locks are advisory: writes made outside `withLock` do not wait for them (they are still
   * atomic and never lose an update), so take the lock wherever a read-modify-write must not
   * interleave.
   *
   * @throws LockTimeoutError when the lock is not acquired within `waitMs`.
   * @example
   * await state.withLock('report', async () => {
   *   const doc = await state.getDocumentState('report');
   *   await state.updateDocumentContent({ documentId: 'report', content: doc!.content + '\n- item', actor: 'a', expectedVersion: doc!.version });
   * });
   */
  withLock<T>(documentId: string, fn: (lock: LockHandle) => Promise<T> | T, options?: LockOptions): Promise<T> {
    return this.#lockScope.withLock(this.locks, documentId, fn, options);
  }

  // ---------------------------------------------------------------- workflows

  /**
   * Creates a workflow: every stage pending, no current stage, iteration 1.
   *
   * @throws WorkflowExistsError when the id is taken.
   */
  createWorkflowState(input: CreateWorkflowInput): Promise<WorkflowState> {
    return this.#workflows.createWorkflowState(input);
  }

  /** The workflow, or null. */
  getWorkflowState(workflowId: string): Promise<WorkflowState | null> {
    return this.#workflows.getWorkflowState(workflowId);
  }

  /**
   * Makes `stage` the current stage. Re-entering a completed stage is a revision loop: it and
   * every later completed stage go back to pending, and `iteration` grows by one for the loop
   * (not once per reopened stage).
   *
   * @throws ValidationError when `stage` is not one of the workflow's stages.
   */
  updateStage(input: { workflowId: string; stage: string }): Promise<WorkflowState> {
    return this.#workflows.updateStage(input);
  }

  /**
   * Marks `stage` completed with its `qualityScore` (a number in [0, 1]).
   *
   * @throws ValidationError for an unknown stage or a score outside [0, 1].
   */
  completeStage(input: { workflowId: string; stage: string; qualityScore: number }): Promise<WorkflowState> {
    return this.#workflows.completeStage(input);
  }

  /**
   * Sets the workflow's free JSON `data` (where an orchestrator keeps its progress):
   * shallow-merged by default, replaced with `mode: 'replace'`. Atomic (compare-and-swap with retry).
   */
  updateWorkflowData(input: { workflowId: string; data: Record<string, unknown>; mode?: 'merge' | 'replace' }): Promise<WorkflowState> {
    return this.#workflows.updateWorkflowData(input);
  }

  // ---------------------------------------------------------- watch & metrics

  /**
   * Calls `handler` for every change to a document (`documentId`), a workflow
   * (`{ workflowId }`) or anything (`'*'`), made through any manager or process on this store,
   * in order. Handlers run asynchronously after the commit; one that throws is reported as a
   * process warning and does not affect others.
   *
   * @example
   * const sub = state.watch('report', (e) => console.log(e.version, e.action, e.actor));
   * await sub.unsubscribe();
   */
  watch(target: WatchTarget, handler: (event: ChangeEvent) => void): StateSubscription {
    return this.#feed.watch(target, handler);
  }

  /**
   * Current metrics, synchronously. Exact for this manager's own writes; other writers' changes
   * are folded in (from the store's counts) as the change feed reports them. For numbers read
   * fresh from the store, `await refreshMetrics()`.
   */
  metrics(): StateMetrics {
    return this.#feed.metrics();
  }

  /** Reads the counts from the store and returns fresh metrics. */
  refreshMetrics(): Promise<StateMetrics> {
    return this.#feed.refreshMetrics();
  }

  /**
   * Stops watchers, releases held locks and closes the store if this manager opened it (from
   * a URL or the default). Later calls fail with `ClosedError`. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#core.closed) return;
    this.#core.closed = true;
    this.#feed.clearWatchers();
    await this.locks.releaseAll();
    if (this.#core.store) await this.#shutdown();
  }

  async #shutdown(): Promise<void> {
    const stop = this.#stopFeed;
    this.#stopFeed = null;
    await stop?.().catch(() => undefined);
    this.#core.docCache?.clear();
    this.#core.wfCache?.clear();
    this.#core.recent.clear();
    if (this.#ownsStore) await this.#core.store?.close();
  }
}

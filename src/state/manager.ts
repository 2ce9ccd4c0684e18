import { AsyncLocalStorage } from 'node:async_hooks';
import {
  ClosedError,
  ConcordError,
  DocumentExistsError,
  DocumentNotFoundError,
  StateConflictError,
  ValidationError,
  VersionNotFoundError,
  WorkflowExistsError,
  WorkflowNotFoundError,
} from '../errors.js';
import { KnownDocument, RecentDocuments, VersionedCache } from './cache.js';
import { copyDocument, copyEvent, copyJson, ImmutableDate, newChange, sealOwnChange } from './copy.js';
import { LockLostError, lockStoreKey, StateLocks, type LockHandle, type LockOptions } from './locks.js';
import { OwnCommits } from './own-commits.js';
import { tracedCommit, tracedConflict } from '../observability/tracing.js';
import { countableLines, lineDiffStats, lineDiffStatsOfLines, summarizeStats, threeWayMerge } from './merge.js';
import { storeResolver } from './resolve.js';
import { makeSnapshot, verifySnapshot } from './snapshot.js';
import type { CommitRequest, CommitResult, DocumentRecord, HistoryRange, StateStore, WorkflowCommitResult, WorkflowRecord } from './store.js';
import type { ChangeAction, ChangeEvent, DocumentState, Snapshot, StateChange, StateMetrics, WorkflowState } from './types.js';
import * as v from './validate.js';
import { checkOptionNames, optionNames } from '../options.js';
import * as wf from './workflow.js';

/** Default number of history entries (and versions) kept per document. */
export const DEFAULT_HISTORY_LIMIT = 1000;
/** Entries `getStateHistory` returns when no `limit` is given (page with `before`/`after` for more). */
export const DEFAULT_HISTORY_PAGE = 100;
/** The largest `limit` of one `getStateHistory` page. */
export const MAX_HISTORY_PAGE = 1_000_000;
/** Default number of recent history entries carried in `DocumentState.history`. */
export const DEFAULT_HISTORY_WINDOW = 20;
/** Default lock lease and wait, in ms. */
export const DEFAULT_LOCK_TTL_MS = 30_000;
export const DEFAULT_LOCK_WAIT_MS = 30_000;
/** How many times an update without `expectedVersion` re-reads and retries after losing a race. */
const MAX_WRITE_ATTEMPTS = 1000;
/** Bounds of the write-base memo (see `RecentDocuments`): documents, and characters of content. */
const RECENT_MAX_ENTRIES = 131_072;
const RECENT_MAX_CHARS = 64 * 1024 * 1024;

/** Options of `new StateManager(...)`. Every field is optional. */
export interface StateManagerOptions {
  /**
   * Where state lives: a StateStore instance, or a URL (`memory://`, `sqlite:./state.db`,
   * `redis://host:6379/0?namespace=app`). Default: a private in-memory store. A store made from
   * a URL (or the default) is closed by `close()`; an instance passed in is left open.
   */
  store?: StateStore | string;
  /** History entries (and old versions) kept per document; older ones are compacted. Default 1000. */
  historyLimit?: number;
  /** How many recent entries `DocumentState.history` carries. Default 20. */
  historyWindow?: number;
  /**
   * A read cache, off by default. It never serves a value older than a write made through this
   * manager, and other writers' changes invalidate it through the store's change feed; `ttlMs`
   * bounds how long an entry lives.
   */
  cache?: { ttlMs: number; maxEntries?: number } | false;
  /** Lock defaults for `withLock` and `state.locks`. */
  locks?: { ttlMs?: number; waitMs?: number };
}

const MANAGER_OPTIONS = optionNames<StateManagerOptions>()(['store', 'historyLimit', 'historyWindow', 'cache', 'locks']);
const CACHE_OPTIONS = optionNames<{ ttlMs: number; maxEntries?: number }>()(['ttlMs', 'maxEntries']);
const LOCK_OPTIONS = optionNames<{ ttlMs?: number; waitMs?: number }>()(['ttlMs', 'waitMs']);

/** Input of `createDocumentState`. `topic`, `requirements` and `context` are kept in the metadata. */
export interface CreateDocumentInput {
  documentId: string;
  topic: string;
  /** What the document must satisfy: a list of strings or a JSON object. Default `{}`. */
  requirements?: string[] | Record<string, unknown>;
  /** Free JSON context for the agents. Default `{}`. */
  context?: Record<string, unknown>;
  /** Initial content, default ''. */
  content?: string;
  /** Extra metadata, merged under `topic`, `requirements` and `context`. */
  metadata?: Record<string, unknown>;
  /** Who created it (history entry), default `system`. */
  actor?: string;
}

/** Options of `getStateHistory`: one page of the kept history. */
export interface HistoryPageOptions {
  /** Page size, default `DEFAULT_HISTORY_PAGE` (100). */
  limit?: number;
  /** Only versions below this one (page back from it). */
  before?: number;
  /** Only versions above this one (page forward from it; alone, the page starts right after it). */
  after?: number;
}

const HISTORY_OPTIONS = optionNames<HistoryPageOptions>()(['limit', 'before', 'after']);

/** Input of `updateDocumentContent`. */
export interface UpdateContentInput {
  documentId: string;
  content: string;
  actor: string;
  /** The version this edit is based on; another current version → `StateConflictError`. */
  expectedVersion?: number;
  /** With `expectedVersion`: three-way merge this edit onto the current version when they do not overlap. */
  merge?: boolean;
  /** A note for the history entry; the line counts are appended, e.g. `draft 2: +12 -3 lines`. */
  summary?: string;
}

/** Input of `updateDocumentMetadata`. */
export interface UpdateMetadataInput {
  documentId: string;
  metadata: Record<string, unknown>;
  actor: string;
  expectedVersion?: number;
  /** `merge` (default): shallow-merge into the current metadata. `replace`: take `metadata` as is. */
  mode?: 'merge' | 'replace';
  /** A note for the history entry (default: the keys set). */
  summary?: string;
}

/** Options of `restoreSnapshot`. */
export interface RestoreOptions {
  /** Who restored it (history entry), default `system`. */
  actor?: string;
  /** Restore only if the document is at this version. */
  expectedVersion?: number;
}

/** Input of `createWorkflowState`. */
export interface CreateWorkflowInput {
  workflowId: string;
  /** The stages in order: non-empty, unique, non-empty strings. */
  stages: string[];
  /** Initial free JSON data. */
  data?: Record<string, unknown>;
}

/** What `watch` observes: one document, a workflow, or everything (`'*'`: documents and workflows). */
export type WatchTarget = string | { workflowId: string };

/** A live `watch`. */
export interface StateSubscription {
  /** Resolves once the change feed is live: writes made after it are seen. */
  readonly ready: Promise<void>;
  /** Stops delivery. */
  unsubscribe(): Promise<void>;
}

interface Watcher {
  matches: (event: ChangeEvent) => boolean;
  handler: (event: ChangeEvent) => void;
  after: number;
}

interface Base {
  /** The base version; not changed while the write holds it (a copy when it came from the write memo). */
  record: DocumentRecord;
  /**
   * The history window ending at `record.version`, when known as an array (a store read or the
   * read cache); a base from the write memo has its window there (see `#committed`).
   */
  history: StateChange[] | undefined;
  /** Read from the store just now (not from the cache). */
  fresh: boolean;
}

interface PlannedChange {
  content: string;
  metadata: Record<string, unknown>;
  action: ChangeAction;
  summary: string;
}

type StoreStats = Awaited<ReturnType<StateStore['stats']>>;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Jittered back-off after losing a few compare-and-swap races in a row. */
function raceBackoff(attempt: number): Promise<void> | undefined {
  if (attempt < 3) return undefined;
  return sleep(Math.random() * Math.min(2 ** attempt, 50));
}

/** A history summary with the caller's note in front, if any: `draft 2: +12 -3 lines`. */
function withNote(note: string | undefined, summary: string): string {
  return note === undefined ? summary : `${note}: ${summary}`;
}

function metadataSummary(keys: string[], mode: 'merge' | 'replace'): string {
  const shown = keys.slice(0, 5).join(', ') + (keys.length > 5 ? `, +${keys.length - 5} more` : '');
  return mode === 'replace' ? `metadata replaced (${keys.length} keys)` : `metadata: ${shown || 'no keys'}`;
}

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
  #historyLimit: number;
  #historyWindow: number;
  /** Entries a document's history window holds: `historyWindow`, at most `historyLimit`. */
  #windowKeep: number;
  #lockDefaults: { ttlMs: number; waitMs: number };
  #docCache: VersionedCache<DocumentState> | null;
  #wfCache: VersionedCache<WorkflowRecord> | null;
  /** The last known state of recently used documents: the base of the next write (never served to reads). */
  #recent = new RecentDocuments({ maxEntries: RECENT_MAX_ENTRIES, maxChars: RECENT_MAX_CHARS });
  /**
   * The last content a content update split into lines, and its lines: the base of the next
   * update of the same document is that very string, so a run of writes to one document splits
   * each text once. One pair for the whole manager, not one per document: kept per document, each
   * line array lived until that document's next write and was promoted (bench/NOTES.md, issue 25).
   */
  #splitContent: string | undefined;
  #splitLines: string[] = [];
  #lockContext = new AsyncLocalStorage<Map<string, LockHandle>>();
  /** `withLock` bodies running now; while none runs, writes skip the AsyncLocalStorage lookup. */
  #lockDepth = 0;
  #ready: Promise<StateStore>;
  #store: StateStore | null = null;
  #stopFeed: (() => Promise<void>) | null = null;
  #closed = false;
  #watchers = new Set<Watcher>();
  #lastRevision = 0;
  #stats: StoreStats = { documents: 0, workflows: 0, totalChanges: 0, sumOfVersions: 0 };
  #epoch = 0;
  /**
   * Telling this manager's own commits from other writers' on the change feed (own ones are
   * already counted in the metrics; others trigger a stats refresh). A commit is known by its
   * key (kind, id, new version or workflow revision), which exactly one commit can have; the
   * feed event may arrive before the commit's answer (see `OwnCommits`).
   */
  #own = new OwnCommits(() => this.#refreshStats());
  #refreshing = false;
  #refreshAgain = false;

  /** Validates the options at once; the store is opened in the background (see `ready()`). */
  constructor(options: StateManagerOptions = {}) {
    const opts = v.optionsObject(options, 'StateManager options');
    checkOptionNames(opts, MANAGER_OPTIONS, 'StateManager options');
    const store = opts['store'];
    if (typeof store === 'string') storeResolver().checkUrl(store);
    else if (store !== undefined && (typeof store !== 'object' || store === null || typeof (store as StateStore).commitDocument !== 'function')) {
      throw new ValidationError(`store must be a StateStore or a URL such as \`memory://\` or \`sqlite:./state.db\`, got ${v.describe(store)}`, {
        field: 'store',
      });
    }
    this.#spec = store as StateStore | string | undefined;
    this.#ownsStore = typeof store !== 'object';
    this.#historyLimit = v.optionalPositiveInteger(opts['historyLimit'], 'historyLimit', 1_000_000) ?? DEFAULT_HISTORY_LIMIT;
    this.#historyWindow = v.optionalPositiveInteger(opts['historyWindow'], 'historyWindow', 10_000) ?? DEFAULT_HISTORY_WINDOW;
    this.#windowKeep = Math.min(this.#historyWindow, this.#historyLimit);
    const cache = opts['cache'];
    if (cache === undefined || cache === false) {
      this.#docCache = null;
      this.#wfCache = null;
    } else {
      const c = v.optionsObject(cache, 'cache');
      checkOptionNames(c, CACHE_OPTIONS, 'cache options');
      const ttlMs = v.duration(c['ttlMs'], 'cache.ttlMs');
      const maxEntries = v.optionalPositiveInteger(c['maxEntries'], 'cache.maxEntries');
      this.#docCache = new VersionedCache<DocumentState>({ ttlMs, ...(maxEntries ? { maxEntries } : {}) });
      this.#wfCache = new VersionedCache({ ttlMs, ...(maxEntries ? { maxEntries } : {}) });
    }
    const locks = v.optionsObject(opts['locks'], 'locks');
    checkOptionNames(locks, LOCK_OPTIONS, 'locks options');
    this.#lockDefaults = {
      ttlMs: v.optionalDuration(locks['ttlMs'], 'locks.ttlMs') ?? DEFAULT_LOCK_TTL_MS,
      waitMs: v.optionalDuration(locks['waitMs'], 'locks.waitMs') ?? DEFAULT_LOCK_WAIT_MS,
    };
    this.locks = new StateLocks(() => this.#s(), this.#lockDefaults);
    this.#ready = this.#init();
    this.#ready.catch(() => undefined); // surfaced by the first call instead
  }

  async #init(): Promise<StateStore> {
    const spec = this.#spec;
    const store = spec !== undefined && typeof spec !== 'string' ? spec : await storeResolver().store(spec);
    try {
      await store.connect();
      this.#stopFeed = await store.watch((event) => this.#onChange(event));
      this.#stats = await store.stats();
      this.#lastRevision = Math.max(this.#lastRevision, await store.currentRevision());
    } catch (err) {
      if (this.#ownsStore) await store.close().catch(() => undefined);
      throw err;
    }
    this.#store = store;
    if (this.#closed) await this.#shutdown();
    return store;
  }

  /** Resolves once the store is open and the change feed live; rejects with the store's error (e.g. `TransportError`). */
  async ready(): Promise<void> {
    await this.#s();
  }

  async #s(): Promise<StateStore> {
    if (this.#closed) throw new ClosedError('state manager');
    const store = await this.#ready;
    if (this.#closed) throw new ClosedError('state manager');
    return store;
  }

  /** The store once open (saves the write path a wait on `#s()`), else undefined. */
  #openStore(): StateStore | undefined {
    return this.#closed ? undefined : (this.#store ?? undefined);
  }

  // ---------------------------------------------------------------- documents

  /**
   * Creates a document at version 1 (history action `create`). `topic`, `requirements` and
   * `context` are kept in its metadata.
   *
   * @throws DocumentExistsError when the id is taken.
   */
  async createDocumentState(input: CreateDocumentInput): Promise<DocumentState> {
    const req = v.requestObject(input, 'createDocumentState');
    const documentId = v.id(req['documentId'], 'documentId');
    const topic = v.nonEmptyString(req['topic'], 'topic');
    const requirements = req['requirements'] === undefined ? {} : v.requirements(req['requirements']);
    const context = req['context'] === undefined ? {} : v.jsonObject(req['context'], 'context');
    const content = req['content'] === undefined ? '' : v.string(req['content'], 'content');
    const extra = req['metadata'] === undefined ? {} : v.jsonObject(req['metadata'], 'metadata');
    const actor = req['actor'] === undefined ? 'system' : v.nonEmptyString(req['actor'], 'actor');
    const metadata = copyJson({ ...extra, topic, requirements, context });
    const store = await this.#s();
    const state = await this.#create(store, documentId, content, metadata, actor, 'create', summarizeStats(lineDiffStats('', content)));
    if (!state) throw new DocumentExistsError(documentId);
    return state;
  }

  /** The current document with its recent history window, or null. */
  async getDocumentState(documentId: string): Promise<DocumentState | null> {
    const id = v.id(documentId, 'documentId');
    const cached = this.#docCache?.get(id);
    if (cached) return copyDocument(cached);
    const state = await this.#load(await this.#s(), id);
    return state ? copyDocument(state) : null;
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
    // Not an async function: the write path is one already, and a second frame and await per
    // update showed in the memory store's allocation profile (bench/NOTES.md, round 8).
    try {
      const req = v.requestObject(input, 'updateDocumentContent');
      const documentId = v.id(req['documentId'], 'documentId');
      const content = v.string(req['content'], 'content');
      const actor = v.nonEmptyString(req['actor'], 'actor');
      const expectedVersion = v.optionalPositiveInteger(req['expectedVersion'], 'expectedVersion');
      const merge = v.optionalBoolean(req['merge'], 'merge') ?? false;
      const note = v.optionalSummary(req['summary']);
      if (merge && expectedVersion === undefined) {
        throw new ValidationError('merge: true needs expectedVersion (the version your edit is based on), got none', { field: 'expectedVersion' });
      }
      const store = this.#openStore();
      if (!store) return this.#s().then(() => this.updateDocumentContent(input));
      let mergeBase: DocumentRecord | null | undefined;
      return this.#write(store, documentId, actor, expectedVersion, merge, (current) => {
        if (expectedVersion === undefined || current.version === expectedVersion) {
          const summary = withNote(note, summarizeStats(this.#contentDiff(current.content, content)));
          return { content, metadata: current.metadata, action: 'update_content', summary };
        }
        return (async () => {
          mergeBase ??= this.#knownVersion(documentId, expectedVersion) ?? (await store.getVersion(documentId, expectedVersion));
          return await this.#planMerge(store, current, expectedVersion, mergeBase, content, note);
        })();
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The line counts of a content update from `before` to `after` (see `#splitContent`). */
  #contentDiff(before: string, after: string): { added: number; removed: number } {
    if (before === after) return { added: 0, removed: 0 };
    const beforeLines = before === this.#splitContent ? this.#splitLines : countableLines(before);
    const afterLines = countableLines(after);
    this.#splitContent = after;
    this.#splitLines = afterLines;
    return lineDiffStatsOfLines(beforeLines, afterLines);
  }

  /** The merge of an edit based on `expectedVersion` (`base`, null when compacted) onto `current`. */
  async #planMerge(
    store: StateStore,
    current: DocumentRecord,
    expectedVersion: number,
    base: DocumentRecord | null,
    content: string,
    note: string | undefined,
  ): Promise<PlannedChange> {
    const { documentId } = current;
    if (!base) {
      const oldest = await store.oldestVersion(documentId);
      throw new StateConflictError(documentId, expectedVersion, current.version, {
        current: await this.#currentState(store, current),
        message:
          `document \`${documentId}\` is at version ${current.version}, expected version ${expectedVersion}; ` +
          `cannot merge because version ${expectedVersion} was compacted (oldest kept is ${oldest ?? 'none'})`,
      });
    }
    const merged = threeWayMerge({ base: base.content, ours: content, theirs: current.content });
    if (!merged.ok) {
      throw tracedConflict(new StateConflictError(documentId, expectedVersion, current.version, {
        current: await this.#currentState(store, current),
        conflicts: merged.conflicts,
        message:
          `document \`${documentId}\` is at version ${current.version}, expected version ${expectedVersion}; ` +
          `the edit overlaps changes made since in ${merged.conflicts.length} region(s), so it was not merged`,
      }));
    }
    return {
      content: merged.content,
      metadata: current.metadata,
      action: 'merge',
      summary: withNote(note, `merged onto v${current.version} from v${expectedVersion}: ${summarizeStats(lineDiffStats(current.content, merged.content))}`),
    };
  }

  /**
   * Updates the metadata (action `update_metadata`): shallow-merged into the current metadata
   * by default, replaced with `mode: 'replace'`. `expectedVersion` as for content.
   */
  async updateDocumentMetadata(input: UpdateMetadataInput): Promise<DocumentState> {
    const req = v.requestObject(input, 'updateDocumentMetadata');
    const documentId = v.id(req['documentId'], 'documentId');
    const metadata = copyJson(v.jsonObject(req['metadata'], 'metadata'));
    const actor = v.nonEmptyString(req['actor'], 'actor');
    const expectedVersion = v.optionalPositiveInteger(req['expectedVersion'], 'expectedVersion');
    const mode = req['mode'] ?? 'merge';
    if (mode !== 'merge' && mode !== 'replace') {
      throw new ValidationError(`mode must be \`merge\` or \`replace\`, got ${v.describe(mode)}`, { field: 'mode' });
    }
    const summary = v.optionalSummary(req['summary']) ?? metadataSummary(Object.keys(metadata), mode);
    const store = await this.#s();
    return await this.#write(store, documentId, actor, expectedVersion, false, (current) => ({
      content: current.content,
      metadata: mode === 'replace' ? metadata : { ...current.metadata, ...metadata },
      action: 'update_metadata',
      summary,
    }));
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
  async getStateHistory(documentId: string, options?: HistoryPageOptions): Promise<StateChange[]> {
    const id = v.id(documentId, 'documentId');
    const opts = v.optionsObject(options, 'getStateHistory options');
    checkOptionNames(opts, HISTORY_OPTIONS, 'getStateHistory options');
    const range: HistoryRange = { limit: v.optionalPositiveInteger(opts['limit'], 'limit', MAX_HISTORY_PAGE) ?? DEFAULT_HISTORY_PAGE };
    const before = v.optionalPositiveInteger(opts['before'], 'before');
    const after = v.optionalNonNegativeInteger(opts['after'], 'after');
    if (before !== undefined) range.before = before;
    if (after !== undefined) range.after = after;
    const store = await this.#s();
    const history = await store.getHistory(id, range);
    if (history.length === 0 && !(await store.getDocument(id))) throw new DocumentNotFoundError(id);
    return history;
  }

  /**
   * The document as it was at `version`, for every version still kept: a keyed read of that
   * version and the history window ending at it, whatever its distance from the current one.
   *
   * @throws VersionNotFoundError naming the oldest kept version when `version` was compacted or never written.
   */
  async getDocumentAtVersion(documentId: string, version: number): Promise<DocumentState> {
    const id = v.id(documentId, 'documentId');
    const n = v.positiveInteger(version, 'version');
    const store = await this.#s();
    const record = await store.getVersion(id, n);
    if (!record) {
      const current = await store.getDocument(id);
      if (!current) throw new DocumentNotFoundError(id);
      const oldest = await store.oldestVersion(id);
      throw new VersionNotFoundError(id, n, oldest, current.version);
    }
    return { ...record, history: await this.#windowAt(store, id, n) };
  }

  /**
   * A snapshot of the current document (or of a kept `version`): plain JSON with a sha256
   * checksum, safe to store anywhere and give to `restoreSnapshot` later.
   */
  async snapshotState(documentId: string, options?: { version?: number }): Promise<Snapshot> {
    const id = v.id(documentId, 'documentId');
    const opts = v.optionsObject(options, 'snapshotState options');
    const version = v.optionalPositiveInteger(opts['version'], 'version');
    if (version !== undefined) return makeSnapshot(await this.getDocumentAtVersion(id, version));
    const state = await this.getDocumentState(id);
    if (!state) throw new DocumentNotFoundError(id);
    return makeSnapshot(state);
  }

  /**
   * Restores a snapshot after checking its shape and checksum. On an existing document it
   * writes a NEW version with the snapshot's content and metadata (action `restore`): history
   * is never rewritten. When the document does not exist it is created from the snapshot at
   * version 1 with action `restore`.
   *
   * @throws SnapshotError when the snapshot is malformed or its checksum does not match.
   */
  async restoreSnapshot(snapshot: Snapshot, options?: RestoreOptions): Promise<DocumentState> {
    const snap = verifySnapshot(snapshot);
    const opts = v.optionsObject(options, 'restoreSnapshot options');
    const actor = opts['actor'] === undefined ? 'system' : v.nonEmptyString(opts['actor'], 'actor');
    const expectedVersion = v.optionalPositiveInteger(opts['expectedVersion'], 'expectedVersion');
    const store = await this.#s();
    const label = `restored snapshot of v${snap.version}`;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#write(store, snap.documentId, actor, expectedVersion, false, (current) => ({
          content: snap.content,
          metadata: structuredClone(snap.metadata),
          action: 'restore',
          summary: `${label}: ${summarizeStats(lineDiffStats(current.content, snap.content))}`,
        }));
      } catch (err) {
        if (!(err instanceof DocumentNotFoundError) || expectedVersion !== undefined || attempt > 3) throw err;
      }
      const created = await this.#create(store, snap.documentId, snap.content, structuredClone(snap.metadata), actor, 'restore', `${label}: ${summarizeStats(lineDiffStats('', snap.content))}`);
      if (created) return created;
    }
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
  async withLock<T>(documentId: string, fn: (lock: LockHandle) => Promise<T> | T, options?: LockOptions): Promise<T> {
    const id = v.id(documentId, 'documentId');
    const run = v.fn<(lock: LockHandle) => Promise<T> | T>(fn, 'fn');
    const held = this.#lockContext.getStore();
    const mine = held?.get(id);
    if (mine?.held) return run(mine);
    const lock = await this.locks.acquire(id, options);
    this.#lockDepth++;
    try {
      const context = new Map(held ?? []);
      context.set(id, lock);
      return await this.#lockContext.run(context, () => run(lock));
    } finally {
      this.#lockDepth--;
      await lock.release().catch((err: unknown) => {
        process.emitWarning(`releasing lock \`${id}\` failed (it expires with its lease): ${(err as Error).message}`, { code: 'CONCORD_LOCK_RELEASE' });
      });
    }
  }

  // ---------------------------------------------------------------- workflows

  /**
   * Creates a workflow: every stage pending, no current stage, iteration 1.
   *
   * @throws WorkflowExistsError when the id is taken.
   */
  async createWorkflowState(input: CreateWorkflowInput): Promise<WorkflowState> {
    const req = v.requestObject(input, 'createWorkflowState');
    const workflowId = v.id(req['workflowId'], 'workflowId');
    const stages = wf.validateStages(req['stages']);
    const data = req['data'] === undefined ? {} : v.jsonObject(req['data'], 'data');
    const store = await this.#s();
    const record: WorkflowRecord = { ...wf.newWorkflow(workflowId, stages, data, new Date()), revision: 0 };
    const own = this.#own.begin('workflow', workflowId, 1);
    let result: WorkflowCommitResult | undefined;
    try {
      result = await store.commitWorkflow(record, null);
    } finally {
      this.#own.end(own, result?.ok === true);
    }
    if (!result.ok) throw new WorkflowExistsError(workflowId);
    return this.#workflowCommitted({ ...record, revision: result.revision }, true);
  }

  /** The workflow, or null. */
  async getWorkflowState(workflowId: string): Promise<WorkflowState | null> {
    const id = v.id(workflowId, 'workflowId');
    const record = await this.#loadWorkflow(await this.#s(), id, true);
    return record ? this.#publicWorkflow(record) : null;
  }

  /**
   * Makes `stage` the current stage. Re-entering a completed stage is a revision loop: it and
   * every later completed stage go back to pending, and `iteration` grows by one for the loop
   * (not once per reopened stage).
   *
   * @throws ValidationError when `stage` is not one of the workflow's stages.
   */
  async updateStage(input: { workflowId: string; stage: string }): Promise<WorkflowState> {
    const req = v.requestObject(input, 'updateStage');
    const workflowId = v.id(req['workflowId'], 'workflowId');
    const stage = v.nonEmptyString(req['stage'], 'stage');
    return this.#updateWorkflow(workflowId, (w) => wf.enterStage(w, stage, new Date()));
  }

  /**
   * Marks `stage` completed with its `qualityScore` (a number in [0, 1]).
   *
   * @throws ValidationError for an unknown stage or a score outside [0, 1].
   */
  async completeStage(input: { workflowId: string; stage: string; qualityScore: number }): Promise<WorkflowState> {
    const req = v.requestObject(input, 'completeStage');
    const workflowId = v.id(req['workflowId'], 'workflowId');
    const stage = v.nonEmptyString(req['stage'], 'stage');
    const score = wf.validateQualityScore(req['qualityScore']);
    return this.#updateWorkflow(workflowId, (w) => wf.completeStage(w, stage, score, new Date()));
  }

  /**
   * Sets the workflow's free JSON `data` (where an orchestrator keeps its progress):
   * shallow-merged by default, replaced with `mode: 'replace'`. Atomic (compare-and-swap with retry).
   */
  async updateWorkflowData(input: { workflowId: string; data: Record<string, unknown>; mode?: 'merge' | 'replace' }): Promise<WorkflowState> {
    const req = v.requestObject(input, 'updateWorkflowData');
    const workflowId = v.id(req['workflowId'], 'workflowId');
    const data = v.jsonObject(req['data'], 'data');
    const mode = req['mode'] ?? 'merge';
    if (mode !== 'merge' && mode !== 'replace') {
      throw new ValidationError(`mode must be \`merge\` or \`replace\`, got ${v.describe(mode)}`, { field: 'mode' });
    }
    return this.#updateWorkflow(workflowId, (w) => wf.setWorkflowData(w, data, mode, new Date()));
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
    if (this.#closed) throw new ClosedError('state manager');
    let matches: (event: ChangeEvent) => boolean;
    if (target === '*') matches = () => true;
    else if (typeof target === 'string') {
      const id = v.id(target, 'watch target');
      matches = (e) => e.kind === 'document' && e.id === id;
    } else if (v.isPlainObject(target)) {
      const id = v.id(target['workflowId'], 'workflowId');
      matches = (e) => e.kind === 'workflow' && e.id === id;
    } else {
      throw new ValidationError(`watch target must be a document id, { workflowId } or '*', got ${v.describe(target)}`, { field: 'target' });
    }
    const watcher: Watcher = { matches, handler: v.fn(handler, 'handler'), after: this.#lastRevision };
    this.#watchers.add(watcher);
    return {
      ready: this.#ready.then(() => undefined),
      unsubscribe: async () => {
        this.#watchers.delete(watcher);
      },
    };
  }

  /**
   * Current metrics, synchronously. Exact for this manager's own writes; other writers' changes
   * are folded in (from the store's counts) as the change feed reports them. For numbers read
   * fresh from the store, `await refreshMetrics()`.
   */
  metrics(): StateMetrics {
    return StateManager.#toMetrics(this.#stats);
  }

  /** Reads the counts from the store and returns fresh metrics. */
  async refreshMetrics(): Promise<StateMetrics> {
    const store = await this.#s();
    const epoch = this.#epoch;
    const stats = await store.stats();
    if (epoch === this.#epoch) this.#stats = stats;
    return StateManager.#toMetrics(stats);
  }

  static #toMetrics(stats: StoreStats): StateMetrics {
    return {
      activeDocuments: stats.documents,
      activeWorkflows: stats.workflows,
      totalStateChanges: stats.totalChanges,
      averageDocumentVersion: stats.documents === 0 ? 0 : stats.sumOfVersions / stats.documents,
    };
  }

  /**
   * Stops watchers, releases held locks and closes the store if this manager opened it (from
   * a URL or the default). Later calls fail with `ClosedError`. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#watchers.clear();
    await this.locks.releaseAll();
    if (this.#store) await this.#shutdown();
  }

  async #shutdown(): Promise<void> {
    const stop = this.#stopFeed;
    this.#stopFeed = null;
    await stop?.().catch(() => undefined);
    this.#docCache?.clear();
    this.#wfCache?.clear();
    this.#recent.clear();
    if (this.#ownsStore) await this.#store?.close();
  }

  // ----------------------------------------------------------------- internals

  /** Creates a document at version 1; null when it already exists. */
  async #create(
    store: StateStore,
    documentId: string,
    content: string,
    metadata: Record<string, unknown>,
    actor: string,
    action: ChangeAction,
    summary: string,
  ): Promise<DocumentState | null> {
    // One immutable Date serves the record and its history entry, which are never handed out as is.
    const now = new ImmutableDate();
    const document: DocumentRecord = { documentId, version: 1, content, metadata, createdAt: now, updatedAt: now };
    const change = newChange(1, now, actor, action, summary);
    const fence = this.#fenceFor(documentId);
    const request: CommitRequest = { document, change, expectedVersion: null, historyLimit: this.#historyLimit };
    if (fence) request.fence = fence;
    const own = this.#own.begin('document', documentId, 1);
    let result: CommitResult | undefined;
    try {
      result = await tracedCommit(store, request);
    } finally {
      this.#own.end(own, result?.ok === true);
    }
    if (result.ok) return this.#committed(store, document, change, 0, [], result.revision);
    if (result.reason === 'fenced') throw new LockLostError(documentId, fence?.token ?? 0);
    if (result.current) this.#docCache?.saw(documentId, result.current.version);
    return null;
  }

  /**
   * The write path of every document change: take the base version (the version the caller
   * expects, when this manager already knows it; else the cache or the store), plan the change
   * on top of it, commit with compare-and-swap on that version: one store round trip when the
   * base is known. A lost race raises `StateConflictError` when the caller named
   * `expectedVersion` (and is not merging); otherwise the plan is re-run on the version that
   * won, so no update is ever lost.
   */
  async #write(
    store: StateStore,
    documentId: string,
    actor: string,
    expectedVersion: number | undefined,
    merge: boolean,
    plan: (current: DocumentRecord) => PlannedChange | Promise<PlannedChange>,
  ): Promise<DocumentState> {
    const fence = this.#fenceFor(documentId);
    let base = this.#knownBase(documentId, expectedVersion) ?? (await this.#loadBase(store, documentId));
    for (let attempt = 1; ; attempt++) {
      if (!base) throw new DocumentNotFoundError(documentId);
      if (expectedVersion !== undefined && base.record.version !== expectedVersion) {
        if (!base.fresh) {
          // What this manager knew may lag other writers: decide on the store's word.
          this.#forget(documentId);
          base = await this.#loadBase(store, documentId);
          continue;
        }
        if (!merge || expectedVersion > base.record.version) {
          // A fresh base was just read with its history window: no need to read it again.
          const current = base.history ? copyDocument({ ...base.record, history: base.history }) : await this.#currentState(store, base.record);
          throw tracedConflict(new StateConflictError(documentId, expectedVersion, base.record.version, { current }));
        }
      }
      const plan_ = plan(base.record);
      const planned = plan_ instanceof Promise ? await plan_ : plan_;
      const now = new ImmutableDate();
      const version = base.record.version + 1;
      const document: DocumentRecord = {
        documentId,
        version,
        content: planned.content,
        metadata: planned.metadata,
        createdAt: base.record.createdAt,
        updatedAt: now,
      };
      const change = newChange(version, now, actor, planned.action, planned.summary);
      const request: CommitRequest = { document, change, expectedVersion: base.record.version, historyLimit: this.#historyLimit };
      if (fence) request.fence = fence;
      const own = this.#own.begin('document', documentId, version);
      let result: CommitResult | undefined;
      try {
        result = await tracedCommit(store, request);
      } finally {
        this.#own.end(own, result?.ok === true);
      }
      if (result.ok) return this.#committed(store, document, change, base.record.version, base.history, result.revision);
      this.#forget(documentId);
      if (result.reason === 'fenced') throw new LockLostError(documentId, fence?.token ?? 0);
      if (result.reason === 'not_found' || !result.current) throw new DocumentNotFoundError(documentId);
      this.#docCache?.saw(documentId, result.current.version);
      if (expectedVersion !== undefined && !merge) throw await this.#conflict(store, documentId, expectedVersion, result.current);
      if (attempt >= MAX_WRITE_ATTEMPTS) {
        throw new StateConflictError(documentId, base.record.version, result.current.version, {
          current: await this.#currentState(store, result.current),
          message: `document \`${documentId}\` kept changing under this write: gave up after ${attempt} attempts`,
        });
      }
      base = { record: result.current, history: undefined, fresh: true };
      await raceBackoff(attempt);
    }
  }

  /**
   * The base of a write as far as this manager knows it, without asking the store. Without
   * `expectedVersion`: the newest state it knows (cache or write memo). With it: that version,
   * if known. Otherwise undefined, and the store's current state is the base (the caller then
   * gets a conflict or, merging, a merge onto it).
   */
  #knownBase(documentId: string, expectedVersion: number | undefined): Base | undefined {
    const cached = this.#docCache?.get(documentId);
    const recent = this.#recent.get(documentId);
    let fromCache = cached !== undefined && (recent === undefined || cached.version >= recent.version);
    if (expectedVersion !== undefined && (fromCache ? cached!.version : recent?.version) !== expectedVersion) {
      if (cached?.version === expectedVersion) fromCache = true;
      else if (recent?.version === expectedVersion) fromCache = false;
      else return undefined;
    }
    if (fromCache) return { record: cached!, history: cached!.history, fresh: false };
    return recent ? { record: recent.record(), history: undefined, fresh: false } : undefined;
  }

  /** The store's current state of the document as a write base, or null when it does not exist. */
  async #loadBase(store: StateStore, documentId: string): Promise<Base | null> {
    const state = await this.#load(store, documentId);
    return state ? { record: state, history: state.history, fresh: true } : null;
  }

  /** A version of the document this manager knows without asking the store, if any. */
  #knownVersion(documentId: string, version: number): DocumentRecord | undefined {
    const recent = this.#recent.get(documentId);
    if (recent?.version === version) return recent.record();
    const cached = this.#docCache?.get(documentId);
    return cached?.version === version ? cached : undefined;
  }

  /** Drops what this manager knows of the document's current state (cache and write memo). */
  #forget(documentId: string): void {
    this.#docCache?.delete(documentId);
    this.#recent.delete(documentId);
  }

  /** Reads a document with its history window from the store, caches and remembers it. Internal: copy before handing out. */
  async #load(store: StateStore, documentId: string): Promise<DocumentState | null> {
    const record = await store.getDocument(documentId);
    if (!record) return null;
    const state = await this.#stateOf(store, record);
    this.#docCache?.put(documentId, state.version, state);
    this.#recent.set(new KnownDocument(state, state.history, this.#windowKeep));
    return state;
  }

  /** A record plus its history window: a keyed read of exactly the window ending at its version. */
  async #stateOf(store: StateStore, record: DocumentRecord): Promise<DocumentState> {
    return { ...record, history: await this.#windowAt(store, record.documentId, record.version) };
  }

  /**
   * The sealed history window ending at `version`, read from the store: exactly the entries it
   * shows (at most `historyWindow`), whatever the document's depth or later writes. The store's
   * entries are new objects of this call's own, so they are sealed in place.
   */
  async #windowAt(store: StateStore, documentId: string, version: number): Promise<StateChange[]> {
    const history = await store.getHistory(documentId, { before: version + 1, limit: this.#historyWindow });
    for (let i = 0; i < history.length; i++) history[i] = sealOwnChange(history[i]!);
    return history;
  }

  /** `#stateOf` for a record just read as current (a conflict's): remembered here, and a copy handed out. */
  async #currentState(store: StateStore, record: DocumentRecord): Promise<DocumentState> {
    const state = await this.#stateOf(store, record);
    this.#recent.set(new KnownDocument(state, state.history, this.#windowKeep));
    return copyDocument(state);
  }

  async #conflict(store: StateStore, documentId: string, expectedVersion: number, current: DocumentRecord): Promise<StateConflictError> {
    return new StateConflictError(documentId, expectedVersion, current.version, { current: await this.#currentState(store, current) });
  }

  /**
   * After a successful commit: metrics, the new state's history window, cache and write memo.
   * When the memo knows the base version, its entry is advanced in place and gives the window;
   * else the base's window plus the new entry, when known; else the window is read from the
   * store. `document` and `change` were built by this manager and are kept as they are (nothing
   * outside holds them); the caller gets a copy.
   */
  #committed(
    store: StateStore,
    document: DocumentRecord,
    change: StateChange,
    baseVersion: number,
    baseHistory: StateChange[] | undefined,
    revision: number,
  ): DocumentState | Promise<DocumentState> {
    this.#noteOwnWrite(document.version === 1 ? 'create' : 'update', 'document', revision);
    const known = this.#recent.get(document.documentId);
    if (known !== undefined && known.version === baseVersion) {
      this.#recent.advance(known, document, change);
      return this.#keep(document, known.history(), false);
    }
    if (!baseHistory) return this.#windowAt(store, document.documentId, document.version).then((history) => this.#keep(document, history, true));
    const history = baseHistory.slice(Math.max(0, baseHistory.length + 1 - this.#windowKeep));
    history.push(change); // sealed by newChange
    return this.#keep(document, history, true);
  }

  /**
   * The caller's copy of a just-committed state with its (new, unshared) window `history`;
   * caches it, and remembers it in the write memo when `remember` (not advanced there already).
   */
  #keep(document: DocumentRecord, history: StateChange[], remember: boolean): DocumentState {
    if (remember) this.#recent.set(new KnownDocument(document, history, this.#windowKeep));
    this.#docCache?.put(document.documentId, document.version, { ...document, history: history.slice() });
    return {
      documentId: document.documentId,
      version: document.version,
      content: document.content,
      metadata: copyJson(document.metadata),
      history,
      createdAt: new Date(document.createdAt.getTime()),
      updatedAt: new Date(document.updatedAt.getTime()),
    };
  }

  #fenceFor(documentId: string): { key: string; token: number } | undefined {
    if (this.#lockDepth === 0) return undefined;
    const lock = this.#lockContext.getStore()?.get(documentId);
    return lock ? { key: lockStoreKey(documentId), token: lock.fence } : undefined;
  }

  async #loadWorkflow(store: StateStore, workflowId: string, useCache: boolean): Promise<WorkflowRecord | null> {
    if (useCache) {
      const cached = this.#wfCache?.get(workflowId);
      if (cached) return structuredClone(cached);
    }
    const record = await store.getWorkflow(workflowId);
    if (record) this.#wfCache?.put(workflowId, record.revision, structuredClone(record));
    return record;
  }

  /** Read-modify-write of a workflow with compare-and-swap on its revision, retried on races. */
  async #updateWorkflow(workflowId: string, mutate: (w: WorkflowState) => WorkflowState): Promise<WorkflowState> {
    const store = await this.#s();
    let current = await this.#loadWorkflow(store, workflowId, true);
    for (let attempt = 1; ; attempt++) {
      if (!current) throw new WorkflowNotFoundError(workflowId);
      const { revision, ...state } = current;
      const next: WorkflowRecord = { ...mutate(state), revision };
      const own = this.#own.begin('workflow', workflowId, revision + 1);
      let result: WorkflowCommitResult | undefined;
      try {
        result = await store.commitWorkflow(next, revision);
      } finally {
        this.#own.end(own, result?.ok === true);
      }
      if (result.ok) return this.#workflowCommitted({ ...next, revision: result.revision }, false);
      this.#wfCache?.delete(workflowId);
      if (result.current) this.#wfCache?.saw(workflowId, result.current.revision);
      if (attempt >= MAX_WRITE_ATTEMPTS) {
        throw new ConcordError('write_contention', `workflow \`${workflowId}\` kept changing under this write: gave up after ${attempt} attempts`);
      }
      current = result.current;
      await raceBackoff(attempt);
    }
  }

  #workflowCommitted(record: WorkflowRecord, created: boolean): WorkflowState {
    this.#noteOwnWrite(created ? 'create' : 'update', 'workflow');
    this.#wfCache?.put(record.workflowId, record.revision, structuredClone(record));
    return this.#publicWorkflow(record);
  }

  #publicWorkflow(record: WorkflowRecord): WorkflowState {
    const { revision: _revision, ...state } = structuredClone(record);
    return state;
  }

  /**
   * Own writes update the metrics at once (exactly), and their feed events are then skipped.
   * `feedRevision`: the change-feed revision of a document commit (workflow commits report the
   * workflow's own revision instead, which is no feed cursor).
   */
  #noteOwnWrite(what: 'create' | 'update', kind: 'document' | 'workflow', feedRevision?: number): void {
    this.#epoch++;
    if (feedRevision !== undefined) this.#lastRevision = Math.max(this.#lastRevision, feedRevision);
    const s = this.#stats;
    s.totalChanges += 1;
    if (kind === 'document') {
      s.sumOfVersions += 1;
      if (what === 'create') s.documents += 1;
    } else if (what === 'create') s.workflows += 1;
  }

  #onChange(event: ChangeEvent): void {
    this.#lastRevision = Math.max(this.#lastRevision, event.revision);
    if (event.kind === 'document') this.#docCache?.saw(event.id, event.version);
    else this.#wfCache?.saw(event.id, event.version);
    if (!this.#own.claim(event)) this.#refreshStats();
    for (const watcher of this.#watchers) {
      if (event.revision <= watcher.after || !watcher.matches(event)) continue;
      try {
        watcher.handler(copyEvent(event));
      } catch (err) {
        process.emitWarning(`a state watch handler threw: ${err instanceof Error ? err.message : String(err)}`, { code: 'CONCORD_WATCH_HANDLER' });
      }
    }
  }

  /** Folds other writers' changes into the metrics; coalesced, and discarded if an own write raced it. */
  #refreshStats(): void {
    if (this.#refreshing) {
      this.#refreshAgain = true;
      return;
    }
    this.#refreshing = true;
    void (async () => {
      try {
        for (let round = 0; round < 5; round++) {
          this.#refreshAgain = false;
          const store = this.#store;
          if (!store || this.#closed) return;
          const epoch = this.#epoch;
          const stats = await store.stats();
          if (epoch === this.#epoch) this.#stats = stats;
          else this.#refreshAgain = true;
          if (!this.#refreshAgain) return;
        }
      } catch {
        // Metrics are best effort; the next change or refreshMetrics() tries again.
      } finally {
        this.#refreshing = false;
      }
    })();
  }
}

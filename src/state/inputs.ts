/** The options, inputs and defaults of `StateManager` (re-exported by manager.ts). */
import { optionNames } from '../options.js';
import type { StateStore } from './store.js';

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

export const MANAGER_OPTIONS = optionNames<StateManagerOptions>()(['store', 'historyLimit', 'historyWindow', 'cache', 'locks']);
export const CACHE_OPTIONS = optionNames<{ ttlMs: number; maxEntries?: number }>()(['ttlMs', 'maxEntries']);
export const LOCK_OPTIONS = optionNames<{ ttlMs?: number; waitMs?: number }>()(['ttlMs', 'waitMs']);

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

export const HISTORY_OPTIONS = optionNames<HistoryPageOptions>()(['limit', 'before', 'after']);

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

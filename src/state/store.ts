import type { ChangeEvent, StateChange, WorkflowState } from './types.js';

/**
 * The StateStore port: what a state backend offers the StateManager. Validation, merge,
 * caching, workflow rules and error classes live in the manager; a store only reads and
 * commits atomically.
 */
export interface StateStore {
  /** `memory`, `sqlite`, `redis`, ... */
  readonly kind: string;
  /** The URL it was made from (credentials redacted). */
  readonly url: string;

  /** Opens connections and migrates schema; throws `TransportError` naming the URL when unreachable. Idempotent. */
  connect(): Promise<void>;

  getDocument(documentId: string): Promise<DocumentRecord | null>;

  /**
   * Atomically: checks the current version against `expectedVersion` (null = the document must
   * not exist), checks the fence if given, writes `document` (whose version is
   * expectedVersion + 1, or 1 on create) together with `change` and the full version record,
   * compacts history beyond `historyLimit` entries, and appends a change-feed event.
   * Nothing is written when any check fails.
   */
  commitDocument(request: CommitRequest): Promise<CommitResult>;

  /**
   * Kept history entries, oldest first: those with a version below `before` and above `after`
   * (each optional). `limit` keeps `limit` of them: the newest, or, when only `after` is given,
   * the oldest (the page right after `after`). A keyed range read: its cost depends on the
   * entries returned, not on the document's history depth.
   */
  getHistory(documentId: string, options?: HistoryRange): Promise<StateChange[]>;
  /** A kept version's full record, or null when compacted or never written. */
  getVersion(documentId: string, version: number): Promise<DocumentRecord | null>;
  /** Oldest version still kept, or null if the document does not exist. */
  oldestVersion(documentId: string): Promise<number | null>;
  listDocuments(): Promise<DocumentSummary[]>;

  getWorkflow(workflowId: string): Promise<WorkflowRecord | null>;
  /** Compare-and-swap on `revision`: `expectedRevision` null = must not exist. Writes `workflow` with revision + 1. */
  commitWorkflow(workflow: WorkflowRecord, expectedRevision: number | null): Promise<WorkflowCommitResult>;
  listWorkflows(): Promise<WorkflowRecord[]>;

  /** Change-feed events with revision > `afterRevision`, oldest first. */
  changesSince(afterRevision: number, limit?: number): Promise<ChangeEvent[]>;
  /** Highest revision so far (0 when empty). */
  currentRevision(): Promise<number>;
  /**
   * Calls `handler` for every event after `afterRevision` (default: from now), in revision
   * order, including writes by other processes on shared stores. Resolves once live.
   */
  watch(handler: (event: ChangeEvent) => void, options?: { afterRevision?: number }): Promise<() => Promise<void>>;

  /**
   * Tries to take the lease on lock `key` for `ttlMs`. Returns a token and a fencing number that
   * grows with every acquisition, or null when someone else holds it.
   */
  tryAcquireLock(key: string, ttlMs: number): Promise<LockGrant | null>;
  /** Extends a held lease; false if it was lost. */
  renewLock(key: string, token: string, ttlMs: number): Promise<boolean>;
  releaseLock(key: string, token: string): Promise<void>;

  /**
   * Store-wide counts for metrics (of this namespace): `documents` and `workflows` that exist,
   * `sumOfVersions` = the sum of every document's current version, and `totalChanges` = every
   * document version and workflow write ever committed (compaction does not lower it).
   */
  stats(): Promise<{ documents: number; workflows: number; totalChanges: number; sumOfVersions: number }>;

  close(): Promise<void>;
}

/** A range of history entries (see `StateStore.getHistory`). */
export interface HistoryRange {
  /** At most this many entries. */
  limit?: number;
  /** Only versions below this one. */
  before?: number;
  /** Only versions above this one. */
  after?: number;
}

export interface DocumentRecord {
  documentId: string;
  version: number;
  content: string;
  metadata: Record<string, unknown>;
  createdAt: Date;
  updatedAt: Date;
}

export interface DocumentSummary {
  documentId: string;
  version: number;
  updatedAt: Date;
}

export interface CommitRequest {
  document: DocumentRecord;
  change: StateChange;
  expectedVersion: number | null;
  historyLimit: number;
  /** When set, the commit fails with `fenced` unless `key`'s latest fencing number is `token`. */
  fence?: { key: string; token: number };
}

export type CommitResult =
  | { ok: true; revision: number }
  | { ok: false; reason: 'conflict' | 'exists' | 'not_found' | 'fenced'; current: DocumentRecord | null };

/** A workflow as stored: the public shape plus the CAS revision. */
export interface WorkflowRecord extends WorkflowState {
  revision: number;
}

export type WorkflowCommitResult = { ok: true; revision: number } | { ok: false; current: WorkflowRecord | null };

export interface LockGrant {
  token: string;
  fence: number;
  expiresAt: number;
}

/** The state manager's public surface (re-exported by the package root). */
export {
  StateManager,
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_HISTORY_WINDOW,
  DEFAULT_HISTORY_PAGE,
  DEFAULT_LOCK_TTL_MS,
  DEFAULT_LOCK_WAIT_MS,
  type StateManagerOptions,
  type CreateDocumentInput,
  type UpdateContentInput,
  type UpdateMetadataInput,
  type RestoreOptions,
  type CreateWorkflowInput,
  type WatchTarget,
  type StateSubscription,
  type HistoryPageOptions,
} from './manager.js';
export { StateLocks, LockLostError, type LockHandle, type LockOptions } from './locks.js';
export { threeWayMerge, lineDiffStats, summarizeStats, type MergeOutcome, type LineDiffStats } from './merge.js';
export { makeSnapshot, verifySnapshot, snapshotChecksum, canonicalJson } from './snapshot.js';
export { ChangeFanout, checkCommitShape, CHANGE_FEED_RETENTION, historySpan } from './store-kit.js';

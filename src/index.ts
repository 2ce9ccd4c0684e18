/**
 * `concord`: the curated public API. Backends with drivers live behind subpaths
 * (`concord/sqlite`, `concord/redis`); nothing internal leaks out of here.
 */
export * from './errors.js';
export {
  MessageType,
  type Message,
  type MessageInput,
  newId,
  encodeMessage,
  decodeMessage,
  newTraceparent,
  childTraceparent,
  DEFAULT_PRIORITY,
  DEFAULT_MAX_PAYLOAD_BYTES,
} from './message.js';
export { defineAgent, type Agent, type AgentContext } from './bus/agent.js';
export type { Transport, EnqueueEntry, EnqueueResult, Lease, LeaseOptions, DeadLetter, DeadLetterReason, QueueDepth } from './bus/transport.js';
export type { StateStore, DocumentRecord, CommitRequest, CommitResult, WorkflowRecord, LockGrant } from './state/store.js';
export type { DocumentState, StateChange, WorkflowState, Snapshot, StateMetrics, ChangeEvent, ChangeAction } from './state/types.js';
export * from './bus/index.js';
export * from './state/index.js';
export * from './patterns.js';
export * from './workflow/index.js';

/**
 * `concord-agents`: the public API, listed name by name so nothing internal leaks out
 * (test/exports.test.ts pins the list). Backends with drivers live behind subpaths
 * (`concord-agents/sqlite`, `concord-agents/redis`); code inside the package imports what it
 * needs by path, never through this entry.
 */
// Installs the backend resolvers the core uses for URLs and defaults (data flows one way: see connect.ts).
import './connect.js';

export {
  ConcordError,
  ValidationError,
  RecipientNotFoundError,
  RequestTimeoutError,
  RemoteError,
  StateConflictError,
  type MergeConflictRegion,
  DocumentNotFoundError,
  VersionNotFoundError,
  DocumentExistsError,
  WorkflowNotFoundError,
  WorkflowExistsError,
  SnapshotError,
  TransportError,
  LockTimeoutError,
  WorkflowBusyError,
  PatternTimeoutError,
  ClosedError,
} from './errors.js';

// Messages and their JSON wire form (for agents written in other languages).
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

// The bus, its agents and the in-process transport (the default).
export {
  MessageBus,
  type MessageBusOptions,
  type SendInput,
  type PublishInput,
  type RequestInput,
  type ReceiveOptions,
  type ReplyOptions,
  type CloseOptions,
  type Delivery,
  type Subscription,
  type SubscriptionHandler,
  type BusMetrics,
  type AgentMetrics,
} from './bus/bus.js';
export { defineAgent, type Agent, type AgentContext } from './bus/agent.js';
export { CommunicationProtocol } from './bus/protocol.js';
export { DEFAULT_BACKOFF, type BackoffOptions } from './bus/backoff.js';
export { MemoryTransport, type MemoryTransportOptions } from './backends/memory/transport.js';

// The state manager and the in-process store (the default).
export {
  StateManager,
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_HISTORY_WINDOW,
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
} from './state/manager.js';
export { StateLocks, LockLostError, type LockHandle, type LockOptions } from './state/locks.js';
export type { DocumentState, StateChange, WorkflowState, Snapshot, StateMetrics, ChangeEvent, ChangeAction } from './state/types.js';
export { MemoryStore } from './backends/memory/store.js';

// The two ports, for writing a backend of your own.
export type {
  Transport,
  EnqueueEntry,
  EnqueueResult,
  Lease,
  LeaseOptions,
  LeaseWaiter,
  WaiterLeaseOptions,
  DeadLetter,
  DeadLetterReason,
  QueueDepth,
} from './bus/transport.js';
export type { StateStore, DocumentRecord, CommitRequest, CommitResult, WorkflowRecord, LockGrant, HistoryRange } from './state/store.js';

// Coordination patterns.
export {
  sequential,
  parallel,
  forkJoin,
  agentStep,
  type Step,
  type StepContext,
  type StepOutcome,
  type PatternOptions,
  type ParallelOptions,
  type ForkJoinOptions,
  type AgentStepOptions,
  type RequestingBus,
} from './patterns.js';

// The durable orchestrator and the workflow definitions it runs.
export {
  Orchestrator,
  readWorkflowData,
  type OrchestratorOptions,
  type OrchestratorState,
  type OrchestratorHooks,
  type StartOptions,
  documentPipeline,
  DOCUMENT_PIPELINE,
  type DocumentPipelineOptions,
  type DocumentPipelineInput,
  type WorkflowDefinition,
  type StageDefinition,
  type StageContext,
  type StageRequest,
  type StageResult,
  type StageRecord,
  type StepRecord,
  type Feedback,
  type WorkflowData,
  type WorkflowStatus,
  type WorkflowOutcome,
  type WorkflowEvent,
  type OrchestratorBus,
  type Json,
} from './workflow/index.js';

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as api from '../src/index.js';

// The package root's public API. A name added here is a promise to users: add it on purpose.
const VALUES = [
  'ClosedError',
  'CommunicationProtocol',
  'ConcordError',
  'DEFAULT_BACKOFF',
  'DEFAULT_HISTORY_LIMIT',
  'DEFAULT_HISTORY_WINDOW',
  'DEFAULT_LOCK_TTL_MS',
  'DEFAULT_LOCK_WAIT_MS',
  'DEFAULT_MAX_PAYLOAD_BYTES',
  'DEFAULT_PRIORITY',
  'DOCUMENT_PIPELINE',
  'DocumentExistsError',
  'DocumentNotFoundError',
  'LockLostError',
  'LockTimeoutError',
  'MemoryStore',
  'MemoryTransport',
  'MessageBus',
  'MessageType',
  'Orchestrator',
  'PatternTimeoutError',
  'RecipientNotFoundError',
  'RemoteError',
  'RequestTimeoutError',
  'SnapshotError',
  'StateConflictError',
  'StateLocks',
  'StateManager',
  'TransportError',
  'ValidationError',
  'VersionNotFoundError',
  'WorkflowBusyError',
  'WorkflowExistsError',
  'WorkflowNotFoundError',
  'agentStep',
  'childTraceparent',
  'decodeMessage',
  'defineAgent',
  'documentPipeline',
  'encodeMessage',
  'forkJoin',
  'newId',
  'newTraceparent',
  'parallel',
  'readWorkflowData',
  'sequential',
];

const TYPES = [
  'Agent',
  'AgentContext',
  'AgentMetrics',
  'AgentStepOptions',
  'BackoffOptions',
  'BusMetrics',
  'ChangeAction',
  'ChangeEvent',
  'CloseOptions',
  'CommitRequest',
  'CommitResult',
  'CreateDocumentInput',
  'CreateWorkflowInput',
  'DeadLetter',
  'DeadLetterReason',
  'Delivery',
  'DocumentPipelineInput',
  'DocumentPipelineOptions',
  'DocumentRecord',
  'DocumentState',
  'EnqueueEntry',
  'EnqueueResult',
  'Feedback',
  'ForkJoinOptions',
  'HistoryPageOptions',
  'HistoryRange',
  'Json',
  'Lease',
  'LeaseOptions',
  'LeaseWaiter',
  'LockGrant',
  'LockHandle',
  'LockOptions',
  'MemoryTransportOptions',
  'MergeConflictRegion',
  'Message',
  'MessageBusOptions',
  'MessageInput',
  'OrchestratorBus',
  'OrchestratorHooks',
  'OrchestratorOptions',
  'OrchestratorState',
  'ParallelOptions',
  'PatternOptions',
  'PublishInput',
  'QueueDepth',
  'ReceiveOptions',
  'ReplyOptions',
  'RequestInput',
  'RequestingBus',
  'RestoreOptions',
  'SendInput',
  'Snapshot',
  'StageContext',
  'StageDefinition',
  'StageRecord',
  'StageRequest',
  'StageResult',
  'StartOptions',
  'StateChange',
  'StateManagerOptions',
  'StateMetrics',
  'StateStore',
  'StateSubscription',
  'Step',
  'StepContext',
  'StepOutcome',
  'StepRecord',
  'Subscription',
  'SubscriptionHandler',
  'Transport',
  'UpdateContentInput',
  'UpdateMetadataInput',
  'WaiterLeaseOptions',
  'WatchTarget',
  'WorkflowData',
  'WorkflowDefinition',
  'WorkflowEvent',
  'WorkflowOutcome',
  'WorkflowRecord',
  'WorkflowState',
  'WorkflowStatus',
];

const source = readFileSync(new URL('../src/index.ts', import.meta.url), 'utf8');

/** Every name `src/index.ts` exports, types included, read from its `export { ... }` lists. */
function exportedNames(text: string): string[] {
  const names: string[] = [];
  for (const list of text.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}/g)) {
    for (const item of list[1]!.split(',')) {
      const name = item
        .replace(/\/\/.*$/gm, '')
        .trim()
        .replace(/^type\s+/, '');
      if (name) names.push(name.split(/\s+as\s+/).pop()!);
    }
  }
  return names.sort();
}

describe('the public API of the package root', () => {
  it('exports exactly the listed values at run time', () => {
    expect(Object.keys(api).sort()).toEqual([...VALUES].sort());
  });

  it('lists every export by name, types included (no `export *` that could leak internals)', () => {
    expect(source).not.toMatch(/export\s+(?:type\s+)?\*/);
    expect(exportedNames(source)).toEqual([...VALUES, ...TYPES].sort());
  });

  it('keeps the internals backends share out of it', () => {
    for (const internal of ['checkCommitShape', 'canonicalJson', 'LatencyRecorder', 'ChangeFanout', 'CHANGE_FEED_RETENTION', 'redactUrl']) {
      expect(api).not.toHaveProperty(internal);
    }
  });
});

import type { Message, MessageType } from '../message.js';
import type { DocumentState } from '../state/types.js';

/**
 * What the orchestrator needs from a bus: request/response only. `MessageBus` satisfies it;
 * tests may pass anything with the same shape.
 */
export interface OrchestratorBus {
  request(input: {
    sender: string;
    recipient: string;
    payload: Record<string, unknown>;
    type?: typeof MessageType.TASK | typeof MessageType.FEEDBACK;
    timeout?: number;
    correlationId?: string;
    headers?: Record<string, string>;
  }): Promise<Message>;
}

/** JSON the orchestrator can keep in workflow data. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** What a stage's request builder sees: the run's persisted context. */
export interface StageContext {
  readonly workflowId: string;
  readonly documentId: string;
  /** The run's topic. */
  readonly topic: string;
  /** The revision round, 1 on the first pass. */
  readonly iteration: number;
  /** The run's input as given at start (sources, words, requirements, ...). */
  readonly input: Readonly<Record<string, Json>>;
  /** The latest recorded output of every stage that has run (earlier rounds included). */
  readonly outputs: Readonly<Record<string, StageRecord>>;
  /** The document as it is now (its latest version). */
  readonly document: DocumentState;
  /** Problems sent back by the stage that asked for this revision round; undefined on round 1. */
  readonly feedback: Feedback | undefined;
}

/** What a stage sends to its agent. */
export interface StageRequest {
  payload: Record<string, unknown>;
  /** Message type of the request: TASK unless a revision sends FEEDBACK. Passed to `bus.request`. */
  type?: typeof MessageType.TASK | typeof MessageType.FEEDBACK;
}

/** How a stage's reply is recorded. */
export interface StageResult {
  /** Small JSON kept in the workflow's data (not the draft itself: drafts are document versions). */
  output: Record<string, Json>;
  /** Quality score in [0, 1]; recorded with `completeStage`. */
  score: number;
  /** A new draft: recorded as a document version whose actor is the stage's agent. */
  content?: string;
  /** Metadata to record on the document (as its own version) when the stage writes no content. */
  metadata?: Record<string, Json>;
  /** What a gating stage found wrong: sent back as feedback when its score is below threshold. */
  problems?: Json[];
  /**
   * Ends the revision loop after this round, for the reason given (e.g. a revision that could not
   * change the draft): no further round starts, and the reason is kept in `WorkflowData.stopped`.
   */
  stop?: string;
}

/**
 * One stage of a workflow: which agent handles it, how its request is built from the persisted
 * context and how its reply is recorded.
 */
export interface StageDefinition {
  /** The stage name as kept in `WorkflowState` (unique within the workflow). */
  name: string;
  /** The agent (bus recipient) that handles it. */
  agent: string;
  /** How long to wait for the agent's reply (default 60 000 ms). */
  timeoutMs?: number;
  /** Requests sent before the workflow is marked failed (default 3). */
  attempts?: number;
  /** Quality the stage's score must reach; below it, `revise` (if set) starts another round. */
  threshold?: number;
  /** The stage to go back to when the score is below `threshold` (a revision loop). */
  revise?: string;
  /** Builds the request from the run's persisted context. */
  request(ctx: StageContext): StageRequest | Promise<StageRequest>;
  /** Turns the agent's reply payload into what is recorded. Throwing counts as a failed attempt. */
  result(reply: Record<string, unknown>, ctx: StageContext): StageResult | Promise<StageResult>;
}

/**
 * A workflow: ordered stages, each handled by an agent over the bus, and at most
 * `maxIterations` revision rounds.
 */
export interface WorkflowDefinition {
  /** Stored with each run so `resume` can refuse a mismatched definition. */
  name: string;
  stages: StageDefinition[];
  /** Rounds at most (1 = never revise). */
  maxIterations: number;
}

/** Problems a gating stage sent back, driving the next round. */
export interface Feedback {
  /** The round whose result was judged. */
  fromIteration: number;
  /** The stage that judged it. */
  stage: string;
  score: number;
  threshold: number;
  problems: Json[];
}

/** One verdict of a gating stage, kept with the draft version it judged. */
export interface Judgement {
  stage: string;
  iteration: number;
  /** The document version the stage judged. */
  draftVersion: number;
  score: number;
  threshold: number;
  problems: Json[];
}

/** A stage's recorded output (kept in workflow data under `outputs[stage]`). */
export interface StageRecord {
  /** `writing` while a document version is being written (crash recovery), then `recorded`. */
  status: 'writing' | 'recorded';
  iteration: number;
  agent: string;
  score: number;
  output: Record<string, Json>;
  /** The document version this stage wrote, when it wrote one. */
  version: number | null;
  /** The document version before the write (to recognise a write done before a crash). */
  baseVersion: number;
  problems?: Json[];
  recordedAt: string;
}

/** One attempt to run a stage, for the audit trail. */
export interface StepRecord {
  stage: string;
  agent: string;
  iteration: number;
  startedAt: string;
  finishedAt?: string;
  outcome?: 'recorded' | 'failed' | 'recovered';
  score?: number;
  version?: number | null;
  error?: string;
}

/** Status of a run, kept in workflow data. */
export type WorkflowStatus = 'running' | 'completed' | 'failed';

/** The orchestrator's part of `WorkflowState.data`. */
export interface WorkflowData {
  definition: string;
  status: WorkflowStatus;
  documentId: string;
  topic: string;
  input: Record<string, Json>;
  /** The current revision round. */
  iteration: number;
  outputs: Record<string, StageRecord>;
  /** Requests sent per stage, across rounds and resumes. */
  runs: Record<string, number>;
  steps: StepRecord[];
  feedback: Feedback | null;
  revisions: Array<{ fromIteration: number; stage: string; to: string; score: number; problems: number }>;
  /** Whether every threshold was met when the run completed. */
  accepted: boolean | null;
  /** Every verdict of a gating stage: the draft version it judged, its score and every problem it found. */
  judgements?: Judgement[];
  /** Why the revision loop ended before `maxIterations`, when a stage said it cannot make progress. */
  stopped?: { stage: string; iteration: number; reason: string } | null;
  finalScores: Record<string, number> | null;
  error: { stage: string; iteration: number; message: string; code: string } | null;
  startedAt: string;
  completedAt: string | null;
  /** How many times the run was resumed. */
  resumes: number;
  /** W3C trace context of the run: every stage request is a child span of it, across resumes. */
  traceparent?: string;
}

/** What a run ends with. */
export interface WorkflowOutcome {
  workflowId: string;
  documentId: string;
  status: WorkflowStatus;
  /** Rounds run. */
  iterations: number;
  /** Latest quality score per stage. */
  scores: Record<string, number>;
  /** Every threshold met. */
  accepted: boolean;
  /** The document's latest version. */
  documentVersion: number;
  /** The document's latest content (the final draft when completed). */
  content: string;
  error: WorkflowData['error'];
  data: WorkflowData;
}

/** Progress events, for displays and logs. */
export type WorkflowEvent =
  | { type: 'lease_wait'; workflowId: string; waitMs: number }
  | { type: 'workflow_started'; workflowId: string; documentId: string; resumed: boolean; stages: string[] }
  | { type: 'stage_started'; stage: string; agent: string; iteration: number; attempt: number }
  | { type: 'stage_skipped'; stage: string; iteration: number; reason: 'completed' | 'recorded' }
  | { type: 'stage_retry'; stage: string; iteration: number; attempt: number; error: string }
  | { type: 'stage_completed'; stage: string; agent: string; iteration: number; score: number; version: number | null }
  | { type: 'revision'; stage: string; to: string; fromIteration: number; score: number; threshold: number; problems: number }
  | { type: 'revision_stopped'; stage: string; iteration: number; reason: string }
  | { type: 'workflow_completed'; outcome: WorkflowOutcome }
  | { type: 'workflow_failed'; outcome: WorkflowOutcome };

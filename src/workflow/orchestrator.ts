import { ClosedError, ConcordError, LockTimeoutError, ValidationError, WorkflowBusyError, WorkflowNotFoundError } from '../errors.js';
import type { LockHandle, LockOptions } from '../state/locks.js';
import { childTraceparent, newTraceparent } from '../message.js';
import { type Span, SpanStatusCode } from '@opentelemetry/api';
import {
  activeTraceparent,
  RoundTrace,
  startInternalSpan,
  traced,
  traceparentContext,
  traceparentOf,
  workflowOutcome,
} from '../observability/tracing.js';
import type { DocumentState, WorkflowState } from '../state/types.js';
import type {
  Json,
  OrchestratorBus,
  StageContext,
  StageDefinition,
  StageRecord,
  StageResult,
  WorkflowData,
  WorkflowDefinition,
  WorkflowEvent,
  WorkflowOutcome,
} from './types.js';
import {
  checkResult,
  delay,
  errorMessage,
  isRetryable,
  loopStages,
  readData,
  shortId,
  slugify,
  toRecord,
  validateDefinition,
} from './rules.js';

/**
 * What the orchestrator needs from a state manager. `StateManager` satisfies it.
 */
export interface OrchestratorState {
  createDocumentState(input: {
    documentId: string;
    topic: string;
    requirements?: string[] | Record<string, unknown>;
    context?: Record<string, unknown>;
    content?: string;
    actor?: string;
  }): Promise<DocumentState>;
  getDocumentState(documentId: string): Promise<DocumentState | null>;
  updateDocumentContent(input: {
    documentId: string;
    content: string;
    actor: string;
    expectedVersion?: number;
    summary?: string;
  }): Promise<DocumentState>;
  updateDocumentMetadata(input: {
    documentId: string;
    metadata: Record<string, unknown>;
    actor: string;
    expectedVersion?: number;
    summary?: string;
  }): Promise<DocumentState>;
  createWorkflowState(input: { workflowId: string; stages: string[]; data?: Record<string, unknown> }): Promise<WorkflowState>;
  getWorkflowState(workflowId: string): Promise<WorkflowState | null>;
  updateStage(input: { workflowId: string; stage: string }): Promise<WorkflowState>;
  completeStage(input: { workflowId: string; stage: string; qualityScore: number }): Promise<WorkflowState>;
  updateWorkflowData(input: { workflowId: string; data: Record<string, unknown>; mode?: 'merge' | 'replace' }): Promise<WorkflowState>;
  /** Leased locks (a `StateManager` has them): a run holds one per workflow. Without, no run lease. */
  readonly locks?: {
    tryAcquire(key: string, options?: Omit<LockOptions, 'waitMs'>): Promise<LockHandle | null>;
    acquire(key: string, options?: LockOptions): Promise<LockHandle>;
  };
}

/** Test and operations hooks, called at the durable points of a run. */
export interface OrchestratorHooks {
  /** After a stage's output (and document version) is recorded, before `completeStage`. */
  beforeComplete?(stage: string, iteration: number): void | Promise<void>;
  /** After `completeStage`. */
  afterStage?(stage: string, iteration: number): void | Promise<void>;
}

export interface OrchestratorOptions {
  bus: OrchestratorBus;
  state: OrchestratorState;
  definition: WorkflowDefinition;
  /** Sender name of the orchestrator's requests (default `orchestrator`). */
  name?: string;
  /** Progress events. A throwing listener is ignored. */
  onEvent?: (event: WorkflowEvent) => void;
  hooks?: OrchestratorHooks;
  /** Wait before retry n (1-based) of a failed request (default 250 ms × n). */
  retryDelayMs?: (attempt: number) => number;
  /**
   * The run lease: while a run goes on it holds a lock on its workflow, renewed every third of
   * `ttlMs` (default 10000), so a second `resume` of the same workflow cannot run it twice. A run
   * that crashed stops renewing, so its lease runs out after `ttlMs`; `resume` waits for that
   * (up to `waitMs`, default `ttlMs` + 1000) and then fails with `WorkflowBusyError`.
   */
  lease?: { ttlMs?: number; waitMs?: number };
}

/** What `start` takes. */
export interface StartOptions {
  /** Generated when not given. */
  workflowId?: string;
  /** Generated when not given. */
  documentId?: string;
  topic: string;
  /** Kept in workflow data and handed to every stage's request builder. */
  input?: Record<string, Json>;
  /** Kept in the document's metadata (default: the input). */
  requirements?: string[] | Record<string, unknown>;
  /** Kept in the document's metadata. */
  context?: Record<string, unknown>;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_ATTEMPTS = 3;

/**
 * The durable orchestrator: runs a workflow definition stage by stage over the bus and records
 * every step in `WorkflowState` (stages, scores, iteration, and a `data` field holding outputs
 * and status) and every draft as a document version. Progress is persisted after each stage, so
 * `resume(workflowId)` in a new process continues where a killed one stopped; a stage recorded
 * complete is never run again and a draft is never written twice for the same stage and round.
 *
 * @example
 * const orchestrator = new Orchestrator({ bus, state, definition: documentPipeline() });
 * const outcome = await orchestrator.start({ topic: 'Reliable coordination', input: { sourcesDir, words: 600 } });
 * // later, in another process: await orchestrator.resume(outcome.workflowId)
 */
export class Orchestrator {
  readonly #bus: OrchestratorBus;
  readonly #state: OrchestratorState;
  readonly #def: WorkflowDefinition;
  readonly #name: string;
  readonly #onEvent: ((event: WorkflowEvent) => void) | undefined;
  readonly #hooks: OrchestratorHooks;
  readonly #retryDelayMs: (attempt: number) => number;
  readonly #lease: { ttlMs: number; waitMs: number };
  /** Stages from the earliest revision target to the last gating stage: they run once per round. */
  readonly #loopStages: Set<string>;

  constructor(options: OrchestratorOptions) {
    validateDefinition(options.definition);
    this.#bus = options.bus;
    this.#state = options.state;
    this.#def = options.definition;
    this.#name = options.name ?? 'orchestrator';
    this.#onEvent = options.onEvent;
    this.#hooks = options.hooks ?? {};
    this.#retryDelayMs = options.retryDelayMs ?? ((n) => 250 * n);
    const ttlMs = options.lease?.ttlMs ?? 10_000;
    if (!Number.isInteger(ttlMs) || ttlMs < 100)
      throw new ValidationError(`lease.ttlMs must be an integer >= 100, got \`${String(ttlMs)}\``, { field: 'lease.ttlMs' });
    const waitMs = options.lease?.waitMs ?? ttlMs + 1000;
    if (!Number.isInteger(waitMs) || waitMs < 0)
      throw new ValidationError(`lease.waitMs must be an integer >= 0, got \`${String(waitMs)}\``, { field: 'lease.waitMs' });
    this.#lease = { ttlMs, waitMs };
    this.#loopStages = loopStages(options.definition);
  }

  /** The definition this orchestrator runs. */
  get definition(): WorkflowDefinition {
    return this.#def;
  }

  /**
   * Creates the workflow state and the document, then runs every stage. Resolves with the
   * outcome (status `completed` or `failed`: a failed run is recorded, never silent, and can be
   * resumed). Throws only when the state itself cannot be written.
   */
  async start(options: StartOptions): Promise<WorkflowOutcome> {
    if (typeof options.topic !== 'string' || options.topic.trim() === '') {
      throw new ValidationError('topic must be a non-empty string', { field: 'topic' });
    }
    const suffix = shortId();
    const workflowId = options.workflowId ?? `wf-${slugify(options.topic, 32)}-${suffix}`;
    const documentId = options.documentId ?? `doc-${slugify(options.topic, 32)}-${suffix}`;
    const now = new Date().toISOString();
    // The run's span (when tracing) is the trace the workflow keeps: its traceparent is persisted, so a resume joins it.
    const span = startInternalSpan(`workflow ${this.#def.name}`, {
      'concord.workflow.id': workflowId,
      'concord.workflow.definition': this.#def.name,
      'concord.document.id': documentId,
    });
    const data: WorkflowData = {
      definition: this.#def.name,
      status: 'running',
      documentId,
      topic: options.topic,
      input: options.input ?? {},
      iteration: 1,
      outputs: {},
      runs: {},
      steps: [],
      feedback: null,
      revisions: [],
      accepted: null,
      finalScores: null,
      error: null,
      startedAt: now,
      completedAt: null,
      resumes: 0,
      traceparent: span ? traceparentOf(span.spanContext()) : newTraceparent(),
    };
    // The workflow first: it names the document, so a crash between the two writes leaves a
    // workflow that resume can finish (it creates the missing document).
    const run = () =>
      this.#leased(workflowId, async () => {
        await this.#state.createWorkflowState({ workflowId, stages: this.#def.stages.map((s) => s.name), data: toRecord(data) });
        await this.#ensureDocument(data, options);
        return this.#run(workflowId, false);
      });
    return traced(span, run, workflowOutcome);
  }

  /**
   * Continues a run from its persisted state: completed stages are skipped, the stage in
   * progress is run again (its recorded output, if any, is reused). A completed run resolves
   * with its outcome at once; a failed one is retried from the stage that failed.
   */
  async resume(workflowId: string): Promise<WorkflowOutcome> {
    if (!(await this.#state.getWorkflowState(workflowId))) throw new WorkflowNotFoundError(workflowId);
    return this.#leased(workflowId, () => this.#resume(workflowId));
  }

  /**
   * Runs `fn` holding the workflow's run lease. The lease is checked before every stage: a run
   * that lost it (it stalled longer than `ttlMs`) stops with the lock's `LockLostError` rather
   * than race the run that took over.
   */
  async #leased(workflowId: string, fn: () => Promise<WorkflowOutcome>): Promise<WorkflowOutcome> {
    const locks = this.#state.locks;
    if (locks === undefined) return fn();
    const key = `workflow-run:${workflowId}`;
    const { ttlMs, waitMs } = this.#lease;
    let lease = await locks.tryAcquire(key, { ttlMs });
    if (lease === null) {
      this.#emit({ type: 'lease_wait', workflowId, waitMs });
      try {
        lease = await locks.acquire(key, { ttlMs, waitMs });
      } catch (err) {
        if (err instanceof LockTimeoutError) throw new WorkflowBusyError(workflowId, waitMs);
        throw err;
      }
    }
    this.#runLeases.set(workflowId, lease);
    try {
      return await fn();
    } finally {
      this.#runLeases.delete(workflowId);
      await lease.release();
    }
  }

  /** The run lease of each workflow this orchestrator is running. */
  readonly #runLeases = new Map<string, LockHandle>();

  async #resume(workflowId: string): Promise<WorkflowOutcome> {
    const wf = await this.#state.getWorkflowState(workflowId);
    if (!wf) throw new WorkflowNotFoundError(workflowId);
    const data = readData(wf);
    if (data.definition !== this.#def.name) {
      throw new ValidationError(
        `workflow \`${workflowId}\` was started with definition \`${data.definition}\`, not \`${this.#def.name}\``,
        { field: 'definition' },
      );
    }
    if (data.status === 'completed') return this.#outcome(wf, data);
    data.resumes += 1;
    data.status = 'running';
    data.error = null;
    await this.#writeData(workflowId, data);
    await this.#ensureDocument(data, { topic: data.topic });
    const span = startInternalSpan(
      `workflow ${this.#def.name}`,
      {
        'concord.workflow.id': workflowId,
        'concord.workflow.definition': this.#def.name,
        'concord.document.id': data.documentId,
        'concord.workflow.resumes': data.resumes,
      },
      traceparentContext(data.traceparent),
    );
    return traced(span, () => this.#run(workflowId, true), workflowOutcome);
  }

  async #ensureDocument(data: WorkflowData, options: Pick<StartOptions, 'topic' | 'requirements' | 'context'>): Promise<void> {
    if (await this.#state.getDocumentState(data.documentId)) return;
    await this.#state.createDocumentState({
      documentId: data.documentId,
      topic: options.topic,
      requirements: options.requirements ?? { ...data.input },
      context: options.context ?? { workflow: this.#def.name },
      content: '',
      actor: this.#name,
    });
  }

  async #run(workflowId: string, resumed: boolean): Promise<WorkflowOutcome> {
    const round = new RoundTrace(workflowId);
    try {
      return await this.#rounds(workflowId, resumed, round);
    } catch (err) {
      round.end('error', {}, err);
      throw err;
    }
  }

  async #rounds(workflowId: string, resumed: boolean, round: RoundTrace): Promise<WorkflowOutcome> {
    let wf = await this.#mustGet(workflowId);
    let data = readData(wf);
    this.#emit({ type: 'workflow_started', workflowId, documentId: data.documentId, resumed, stages: wf.stages });
    if (resumed) {
      for (const stage of this.#def.stages) {
        if (!this.#isRecorded(stage, data)) continue;
        const reason = wf.completedStages.includes(stage.name) ? 'completed' : 'recorded';
        this.#emit({ type: 'stage_skipped', stage: stage.name, iteration: data.iteration, reason });
      }
    }

    for (;;) {
      // A crash between recording a stage's output and `completeStage`: complete it now, in order.
      for (const stage of this.#def.stages) {
        if (this.#isRecorded(stage, data) && !wf.completedStages.includes(stage.name)) {
          wf = await this.#complete(workflowId, stage, data.outputs[stage.name] as StageRecord);
        }
      }
      const next = this.#def.stages.find((s) => !this.#isRecorded(s, data));
      this.#runLeases.get(workflowId)?.signal.throwIfAborted();
      if (next) {
        const stageSpan = startInternalSpan(
          `stage ${next.name}`,
          {
            'concord.workflow.id': workflowId,
            'concord.workflow.stage': next.name,
            'concord.workflow.agent': next.agent,
            'concord.workflow.iteration': data.iteration,
          },
          round.stageParent(data.iteration),
        );
        const result = await traced(
          stageSpan,
          () => this.#runStage(next, wf, data),
          (span, r) => stageOutcome(span, next.name, r.data),
        );
        wf = result.wf;
        data = result.data;
        if (data.status === 'failed') {
          round.end('failed', {}, data.error ?? undefined);
          const outcome = await this.#outcome(wf, data);
          this.#emit({ type: 'workflow_failed', outcome });
          return outcome;
        }
        continue;
      }

      // Every stage has a recorded output for this round: another round, or the end.
      const gate = this.#failingGate(data);
      const stopped = data.stopped?.iteration === data.iteration ? data.stopped : undefined;
      if (gate && stopped && data.iteration < this.#def.maxIterations) {
        this.#emit({ type: 'revision_stopped', stage: stopped.stage, iteration: data.iteration, reason: stopped.reason });
      }
      const roundEnd = gate
        ? {
            'concord.workflow.gate': gate.name,
            'concord.workflow.score': (data.outputs[gate.name] as StageRecord).score,
            'concord.workflow.threshold': gate.threshold as number,
          }
        : {};
      if (gate && !stopped && data.iteration < this.#def.maxIterations) {
        const rec = data.outputs[gate.name] as StageRecord;
        const target = gate.revise as string;
        data.feedback = {
          fromIteration: data.iteration,
          stage: gate.name,
          score: rec.score,
          threshold: gate.threshold as number,
          problems: rec.problems ?? [],
        };
        data.revisions.push({
          fromIteration: data.iteration,
          stage: gate.name,
          to: target,
          score: rec.score,
          problems: rec.problems?.length ?? 0,
        });
        round.end('revise', { ...roundEnd, 'concord.workflow.revise_to': target, 'concord.workflow.problems': rec.problems?.length ?? 0 });
        data.iteration += 1;
        wf = await this.#writeData(workflowId, data);
        this.#emit({
          type: 'revision',
          stage: gate.name,
          to: target,
          fromIteration: data.iteration - 1,
          score: rec.score,
          threshold: gate.threshold as number,
          problems: rec.problems?.length ?? 0,
        });
        continue;
      }

      data.status = 'completed';
      data.accepted = this.#def.stages.every((s) => s.threshold === undefined || (data.outputs[s.name]?.score ?? 0) >= s.threshold);
      data.finalScores = Object.fromEntries(
        this.#def.stages.flatMap((s) => (data.outputs[s.name] ? [[s.name, (data.outputs[s.name] as StageRecord).score]] : [])),
      );
      data.completedAt = new Date().toISOString();
      round.end(stopped ? 'stopped' : data.accepted ? 'accept' : 'out_of_rounds', {
        ...roundEnd,
        'concord.workflow.accepted': data.accepted,
      });
      wf = await this.#writeData(workflowId, data);
      const outcome = await this.#outcome(wf, data);
      this.#emit({ type: 'workflow_completed', outcome });
      return outcome;
    }
  }

  /** Whether `stage` has a recorded output that counts for the current round. */
  #isRecorded(stage: StageDefinition, data: WorkflowData): boolean {
    const rec = data.outputs[stage.name];
    if (rec?.status !== 'recorded') return false;
    return this.#loopStages.has(stage.name) ? rec.iteration === data.iteration : true;
  }

  /** A gating stage of this round whose score is below its threshold, if any. */
  #failingGate(data: WorkflowData): StageDefinition | undefined {
    return this.#def.stages.find((s) => {
      if (s.revise === undefined || s.threshold === undefined) return false;
      const rec = data.outputs[s.name];
      return rec !== undefined && rec.iteration === data.iteration && rec.score < s.threshold;
    });
  }

  async #runStage(stage: StageDefinition, wf: WorkflowState, data: WorkflowData): Promise<{ wf: WorkflowState; data: WorkflowData }> {
    const workflowId = wf.workflowId;
    const iteration = data.iteration;

    // A crash after the intent was recorded: the document write either happened (its version is
    // past the base) or not. If it did, the stage's work is done; never write the version twice.
    const pending = data.outputs[stage.name];
    if (pending && pending.status === 'writing' && pending.iteration === iteration) {
      const doc = await this.#document(data.documentId);
      if (doc.version > pending.baseVersion) {
        const rec: StageRecord = { ...pending, status: 'recorded', version: pending.baseVersion + 1 };
        data.outputs[stage.name] = rec;
        data.steps.push({
          stage: stage.name,
          agent: stage.agent,
          iteration,
          startedAt: rec.recordedAt,
          finishedAt: new Date().toISOString(),
          outcome: 'recovered',
          score: rec.score,
          version: rec.version,
        });
        await this.#writeData(workflowId, data);
        this.#emit({ type: 'stage_skipped', stage: stage.name, iteration, reason: 'recorded' });
        wf = await this.#complete(workflowId, stage, rec);
        await this.#hooks.afterStage?.(stage.name, iteration);
        return { wf, data };
      }
    }

    // Enter the stage unless it is already the one in progress (a resumed run). Entering a
    // completed stage moves it back to pending and counts a new iteration (a revision round).
    if (wf.stage !== stage.name || wf.completedStages.includes(stage.name)) {
      wf = await this.#state.updateStage({ workflowId, stage: stage.name });
    }

    const attempts = stage.attempts ?? DEFAULT_ATTEMPTS;
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await delay(this.#retryDelayMs(attempt - 1));
      const doc = await this.#document(data.documentId);
      const ctx: StageContext = {
        workflowId,
        documentId: data.documentId,
        topic: data.topic,
        iteration,
        input: data.input,
        outputs: data.outputs,
        document: doc,
        feedback: iteration > 1 && data.feedback?.fromIteration === iteration - 1 ? data.feedback : undefined,
      };
      data.runs[stage.name] = (data.runs[stage.name] ?? 0) + 1;
      const step = { stage: stage.name, agent: stage.agent, iteration, startedAt: new Date().toISOString() };
      data.steps.push(step);
      await this.#writeData(workflowId, data);
      this.#emit({ type: 'stage_started', stage: stage.name, agent: stage.agent, iteration, attempt });

      let result: StageResult;
      try {
        const request = await stage.request(ctx);
        const reply = await this.#bus.request({
          sender: this.#name,
          recipient: stage.agent,
          payload: request.payload,
          ...(request.type !== undefined ? { type: request.type } : {}),
          timeout: stage.timeoutMs ?? DEFAULT_TIMEOUT_MS,
          correlationId: workflowId,
          // The stage's span when tracing (the request nests under it), else a child of the workflow's trace.
          headers: { traceparent: activeTraceparent() ?? childTraceparent(data.traceparent) },
        });
        result = await stage.result(reply.payload, ctx);
        checkResult(stage, result);
      } catch (err) {
        // The bus closing under us is a shutdown, not a stage failure: the run stays `running`.
        if (err instanceof ClosedError) throw err;
        // Recorded, never silent: the step says why, and the run fails once retries are spent.
        lastError = err;
        Object.assign(step, { finishedAt: new Date().toISOString(), outcome: 'failed', error: errorMessage(err) });
        await this.#writeData(workflowId, data);
        if (!isRetryable(err)) break;
        if (attempt < attempts) {
          this.#emit({ type: 'stage_retry', stage: stage.name, iteration, attempt, error: errorMessage(err) });
        }
        continue;
      }

      let rec: StageRecord = {
        status: 'recorded',
        iteration,
        agent: stage.agent,
        score: result.score,
        output: result.output,
        version: null,
        baseVersion: doc.version,
        ...(result.problems !== undefined ? { problems: result.problems } : {}),
        recordedAt: new Date().toISOString(),
      };
      if (result.content !== undefined || result.metadata !== undefined) {
        // Intent first, then the write with a version check: after a crash the document's
        // version tells whether the write happened.
        data.outputs[stage.name] = { ...rec, status: 'writing' };
        await this.#writeData(workflowId, data);
        const written = await this.#writeDocument(stage, iteration, doc.version, result, data.documentId);
        rec = { ...rec, version: written.version };
      }
      data.outputs[stage.name] = rec;
      if (result.stop !== undefined) data.stopped = { stage: stage.name, iteration, reason: result.stop };
      if (stage.threshold !== undefined) {
        // Every verdict with the draft it judged, so what was wrong with each version stays readable.
        (data.judgements ??= []).push({
          stage: stage.name,
          iteration,
          draftVersion: doc.version,
          score: rec.score,
          threshold: stage.threshold,
          problems: rec.problems ?? [],
        });
      }
      Object.assign(step, { finishedAt: new Date().toISOString(), outcome: 'recorded', score: rec.score, version: rec.version });
      await this.#writeData(workflowId, data);
      await this.#hooks.beforeComplete?.(stage.name, iteration);
      wf = await this.#complete(workflowId, stage, rec);
      await this.#hooks.afterStage?.(stage.name, iteration);
      return { wf, data };
    }

    const tries = data.steps.filter((s) => s.stage === stage.name && s.iteration === iteration && s.outcome === 'failed').length;
    data.status = 'failed';
    data.error = {
      stage: stage.name,
      iteration,
      message: `stage \`${stage.name}\` failed${isRetryable(lastError) ? ` after ${tries} attempt${tries === 1 ? '' : 's'}` : ''}: ${errorMessage(lastError)}`,
      code: lastError instanceof ConcordError ? lastError.code : 'stage_failed',
    };
    wf = await this.#writeData(workflowId, data);
    return { wf, data };
  }

  async #writeDocument(
    stage: StageDefinition,
    iteration: number,
    baseVersion: number,
    result: StageResult,
    documentId: string,
  ): Promise<DocumentState> {
    // The summary names the stage and round, so `concord history` tells the drafts apart.
    const summary = `${stage.name}, iteration ${iteration}, score ${result.score.toFixed(2)}`;
    if (result.content !== undefined) {
      return this.#state.updateDocumentContent({
        documentId,
        content: result.content,
        actor: stage.agent,
        expectedVersion: baseVersion,
        summary,
      });
    }
    return this.#state.updateDocumentMetadata({
      documentId,
      metadata: result.metadata ?? {},
      actor: stage.agent,
      expectedVersion: baseVersion,
      summary,
    });
  }

  async #complete(workflowId: string, stage: StageDefinition, rec: StageRecord): Promise<WorkflowState> {
    const wf = await this.#state.completeStage({ workflowId, stage: stage.name, qualityScore: rec.score });
    this.#emit({
      type: 'stage_completed',
      stage: stage.name,
      agent: stage.agent,
      iteration: rec.iteration,
      score: rec.score,
      version: rec.version,
    });
    return wf;
  }

  async #writeData(workflowId: string, data: WorkflowData): Promise<WorkflowState> {
    return this.#state.updateWorkflowData({ workflowId, data: toRecord(data), mode: 'replace' });
  }

  async #mustGet(workflowId: string): Promise<WorkflowState> {
    const wf = await this.#state.getWorkflowState(workflowId);
    if (!wf) throw new WorkflowNotFoundError(workflowId);
    return wf;
  }

  async #document(documentId: string): Promise<DocumentState> {
    const doc = await this.#state.getDocumentState(documentId);
    if (!doc) throw new ValidationError(`the workflow's document \`${documentId}\` is missing from the state store`);
    return doc;
  }

  async #outcome(wf: WorkflowState, data: WorkflowData): Promise<WorkflowOutcome> {
    const doc = await this.#state.getDocumentState(data.documentId);
    return {
      workflowId: wf.workflowId,
      documentId: data.documentId,
      status: data.status,
      iterations: data.iteration,
      scores: Object.fromEntries(Object.entries(data.outputs).map(([k, v]) => [k, v.score])),
      accepted: data.accepted ?? false,
      documentVersion: doc?.version ?? 0,
      content: doc?.content ?? '',
      error: data.error,
      data,
    };
  }

  #emit(event: WorkflowEvent): void {
    try {
      this.#onEvent?.(event);
    } catch {
      // A display must never break a run.
    }
  }
}

/** What a stage run reports on its span: its score and document version, or the error it failed with. */
function stageOutcome(span: Span, stage: string, data: WorkflowData): void {
  const rec = data.outputs[stage];
  if (data.status === 'failed' && data.error !== null) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: data.error.message });
    span.setAttribute('error.type', data.error.code);
    return;
  }
  if (rec !== undefined) {
    span.setAttribute('concord.workflow.score', rec.score);
    if (rec.version !== null) span.setAttribute('concord.document.version', rec.version);
  }
}

export { readData, slugify } from './rules.js';

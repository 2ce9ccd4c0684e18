import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  MessageBus,
  StateManager,
  defineAgent,
  Orchestrator,
  documentPipeline,
  readWorkflowData,
  ValidationError,
  WorkflowNotFoundError,
  WorkflowBusyError,
  type Agent,
  type OrchestratorHooks,
  type OrchestratorState,
  type WorkflowDefinition,
  type WorkflowEvent,
} from '../src/index.js';
import { createDocumentAgents } from '../src/agents/index.js';
import { createSqliteStore } from '../src/backends/sqlite/index.js';
import { lockStoreKey } from '../src/state/locks.js';

const SOURCES = resolve(import.meta.dirname, '..', 'samples', 'sources');
const TOPIC = 'Reliable coordination of multi-agent systems';
const INPUT = { words: 500, requirements: ['delivery guarantees', 'idempotency', 'workflow recovery'] };

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'concord-wf-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function newState(store?: string): StateManager {
  const state = new StateManager(store ? { store } : {});
  cleanups.push(() => state.close());
  return state;
}

/** A bus with the four document agents; `wrap` may replace one (to spy on or break it). */
function newBus(wrap: (agent: Agent) => Agent = (a) => a, options: ConstructorParameters<typeof MessageBus>[0] = {}): MessageBus {
  const bus = new MessageBus(options);
  for (const agent of Object.values(createDocumentAgents({ sourcesDir: SOURCES }))) {
    const a = wrap(agent as Agent);
    bus.registerAgent(a.name, a);
  }
  cleanups.push(() => bus.close());
  return bus;
}

/** Counts the requests each agent handled. */
function counting(counts: Record<string, number>, payloads?: Record<string, unknown[]>, types?: Record<string, string[]>) {
  return (agent: Agent): Agent =>
    defineAgent({
      name: agent.name,
      async handleMessage(msg, ctx) {
        counts[agent.name] = (counts[agent.name] ?? 0) + 1;
        if (types) (types[agent.name] ??= []).push(msg.type);
        (payloads ??= {})[agent.name] = [...(payloads[agent.name] ?? []), msg.payload];
        return agent.handleMessage(msg, ctx);
      },
    });
}

/** The state manager seen through the orchestrator's port, with some methods replaced. */
function wrapState(state: StateManager, overrides: Partial<OrchestratorState>): OrchestratorState {
  return {
    createDocumentState: (i) => state.createDocumentState(i),
    getDocumentState: (i) => state.getDocumentState(i),
    updateDocumentContent: (i) => state.updateDocumentContent(i),
    updateDocumentMetadata: (i) => state.updateDocumentMetadata(i),
    createWorkflowState: (i) => state.createWorkflowState(i),
    getWorkflowState: (i) => state.getWorkflowState(i),
    updateStage: (i) => state.updateStage(i),
    completeStage: (i) => state.completeStage(i),
    updateWorkflowData: (i) => state.updateWorkflowData(i),
    ...overrides,
  };
}

/** Runs `fn` and returns what it threw. */
async function thrown(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/**
 * A writer whose drafts need an editor (a heading ending in a full stop), so the editing stage
 * writes a version of its own: the crash tests below kill a run around that write. (Editing a
 * clean draft writes no version.)
 */
function sloppyWriter(agent: Agent): Agent {
  if (agent.name !== 'writing') return agent;
  return defineAgent({
    name: 'writing',
    async handleMessage(msg, ctx) {
      const result = (await agent.handleMessage(msg, ctx)) as { content: string } | undefined;
      if (!result) return result;
      const sloppy = { ...result, content: result.content.replace(/^## Introduction$/m, '## Introduction.') };
      if (msg.type === 'feedback') await ctx.reply(sloppy);
      return sloppy;
    },
  });
}

/** A first process that dies mid-run: starts the pipeline on `state` until something throws. */
async function crashedRun(
  counts: Record<string, number>,
  state: OrchestratorState,
  hooks?: OrchestratorHooks,
): Promise<{ workflowId: string; error: unknown }> {
  let workflowId = '';
  const error = await thrown(() =>
    new Orchestrator({
      bus: newBus((a) => counting(counts)(sloppyWriter(a))),
      state,
      definition: documentPipeline(),
      onEvent: (e) => {
        if (e.type === 'workflow_started') workflowId = e.workflowId;
      },
      ...(hooks ? { hooks } : {}),
    }).start({ topic: TOPIC, input: INPUT }),
  );
  return { workflowId, error };
}

/** A second process that resumes the run. */
function resumedRun(counts: Record<string, number>, state: OrchestratorState, workflowId: string) {
  return new Orchestrator({ bus: newBus((a) => counting(counts)(sloppyWriter(a))), state, definition: documentPipeline() }).resume(
    workflowId,
  );
}

describe('Orchestrator: the document pipeline in one process', () => {
  it('runs research → writing → editing → verification and records every draft as a version by its agent', async () => {
    const state = newState();
    const counts: Record<string, number> = {};
    const events: WorkflowEvent[] = [];
    const orchestrator = new Orchestrator({
      bus: newBus(counting(counts)),
      state,
      definition: documentPipeline(),
      onEvent: (e) => events.push(e),
    });

    const outcome = await orchestrator.start({ topic: TOPIC, input: INPUT });

    expect(outcome.status).toBe('completed');
    expect(outcome.accepted).toBe(true);
    expect(outcome.scores['verification']).toBeGreaterThanOrEqual(0.8);
    expect(outcome.content).toMatch(/^# /);
    expect(outcome.content).toMatch(/## References/);
    expect(counts).toEqual({ research: 1, writing: 1, editing: 1, verification: 1 });

    const wf = await state.getWorkflowState(outcome.workflowId);
    expect(wf?.completedStages).toEqual(['research', 'writing', 'editing', 'verification']);
    expect(Object.keys(wf?.qualityScores ?? {}).sort()).toEqual(['editing', 'research', 'verification', 'writing']);
    const data = readWorkflowData(wf!);
    expect(data.status).toBe('completed');
    expect(data.runs).toEqual({ research: 1, writing: 1, editing: 1, verification: 1 });
    expect(data.documentId).toBe(outcome.documentId);

    const history = await state.getStateHistory(outcome.documentId);
    // Editing found nothing to change in this draft: it records that and writes no version
    // (it used to write a +0 -0 copy of the draft).
    expect(data.outputs['editing']?.output['changes']).toEqual([]);
    expect(data.outputs['editing']?.output['nothingToEdit']).toBe(true);
    expect(history.map((h) => [h.actor, h.action])).toEqual([
      ['orchestrator', 'create'],
      ['research', 'update_metadata'],
      ['writing', 'update_content'],
      ['verification', 'update_metadata'],
    ]);
    // The recorded version numbers match the document's history.
    expect(data.outputs['writing']?.version).toBe(3);
    expect(data.outputs['editing']?.version).toBeNull();
    expect((await state.getDocumentAtVersion(outcome.documentId, 3)).content).toBe(outcome.content);
    // The verdict is kept with the draft it judged.
    expect(data.judgements).toEqual([
      {
        stage: 'verification',
        iteration: 1,
        draftVersion: 3,
        score: outcome.scores['verification'],
        threshold: 0.8,
        problems: expect.any(Array),
      },
    ]);
    expect(events.map((e) => e.type)).toContain('workflow_completed');
  });

  it('every request carries the workflow id as correlation and one trace for the whole run', async () => {
    const seen: Array<{ correlationId: string | undefined; trace: string | undefined }> = [];
    const spy = (agent: Agent): Agent =>
      defineAgent({
        name: agent.name,
        handleMessage(msg, ctx) {
          seen.push({ correlationId: msg.correlationId, trace: msg.headers['traceparent']?.split('-')[1] });
          return agent.handleMessage(msg, ctx);
        },
      });
    const outcome = await new Orchestrator({ bus: newBus(spy), state: newState(), definition: documentPipeline() }).start({
      topic: TOPIC,
      input: INPUT,
    });
    expect(seen).toHaveLength(4);
    expect(new Set(seen.map((s) => s.correlationId))).toEqual(new Set([outcome.workflowId]));
    expect(new Set(seen.map((s) => s.trace))).toEqual(new Set([outcome.data.traceparent?.split('-')[1]]));
  });

  it('sends verification problems back to the writer and runs another round while below threshold', async () => {
    const state = newState();
    const counts: Record<string, number> = {};
    const payloads: Record<string, unknown[]> = {};
    const types: Record<string, string[]> = {};
    // A threshold no document reaches (the notes hold far fewer than 3000 words on the topic):
    // every round is revised until maxIterations. The sloppy writer gives editing something to fix each round.
    const definition = documentPipeline({ threshold: 1, maxIterations: 3 });
    const events: WorkflowEvent[] = [];
    const orchestrator = new Orchestrator({
      bus: newBus((a) => counting(counts, payloads, types)(sloppyWriter(a))),
      state,
      definition,
      onEvent: (e) => events.push(e),
    });

    const outcome = await orchestrator.start({ topic: TOPIC, input: { ...INPUT, words: 3000 } });

    expect(outcome.status).toBe('completed');
    const data = outcome.data;
    expect(data.iteration).toBeGreaterThan(1);
    expect(outcome.iterations).toBe(data.iteration);
    expect(data.revisions.length).toBe(data.iteration - 1);
    // Research ran once; the looped stages once per round.
    expect(counts['research']).toBe(1);
    expect(counts['writing']).toBe(data.iteration);
    expect(counts['editing']).toBe(data.iteration);
    expect(counts['verification']).toBe(data.iteration);
    // Revisions carry the draft and the verifier's problems.
    const revision = payloads['writing']?.[1] as { draft?: string; feedback?: unknown[] };
    expect(typeof revision.draft).toBe('string');
    expect(Array.isArray(revision.feedback)).toBe(true);
    expect(revision.feedback?.length).toBeGreaterThan(0);
    // The first draft is a TASK; each revision goes to the writer as FEEDBACK (and is answered).
    expect(types['writing']).toEqual(['task', ...Array.from({ length: data.iteration - 1 }, () => 'feedback')]);
    expect(events.filter((e) => e.type === 'revision')).toHaveLength(data.iteration - 1);

    // Every draft that changed is a version: one writing version per round in which the writer
    // changed the draft (a round where it could not ends the loop, with the reason), and an editing
    // version per round in which editing changed something.
    const history = await state.getStateHistory(outcome.documentId);
    const written = data.iteration - (data.stopped?.stage === 'writing' ? 1 : 0);
    if (data.stopped) expect(data.stopped.reason).toMatch(/^the writer could not change the draft/);
    expect(history.filter((h) => h.actor === 'writing')).toHaveLength(written);
    expect(history.filter((h) => h.actor === 'editing').length).toBeGreaterThanOrEqual(1);
    expect(history.filter((h) => h.actor === 'editing').length).toBeLessThanOrEqual(data.iteration);
    expect(history.filter((h) => h.actor === 'writing').map((h) => h.summary)).toEqual(
      Array.from({ length: written }, (_, i) => expect.stringContaining(`writing, iteration ${i + 1}`)),
    );
    // The workflow state saw the revision loop (re-entering `writing` counts an iteration).
    const wf = await state.getWorkflowState(outcome.workflowId);
    expect(wf?.iteration).toBeGreaterThan(1);
    // One iteration per revision loop, however many stages the loop re-enters.
    expect(wf?.iteration).toBe(data.iteration);
    expect(wf?.completedStages).toEqual(['research', 'writing', 'editing', 'verification']);
  });

  it('stops revising after maxIterations and reports the document as not accepted', async () => {
    const state = newState();
    // A verifier that is never satisfied.
    const strict = (agent: Agent): Agent =>
      agent.name === 'verification'
        ? defineAgent({
            name: 'verification',
            handleMessage: () => ({
              score: 0.5,
              scores: { citations: 0.5, length: 0.5, coverage: 0.5, structure: 0.5 },
              problems: [{ kind: 'coverage', message: 'the document never mentions backpressure', term: 'backpressure' }],
              words: 400,
              terms: ['backpressure'],
            }),
          })
        : agent;
    const counts: Record<string, number> = {};
    const outcome = await new Orchestrator({
      bus: newBus((a) => counting(counts)(strict(a))),
      state,
      definition: documentPipeline({ maxIterations: 2 }),
    }).start({ topic: TOPIC, input: INPUT });
    expect(outcome.status).toBe('completed');
    expect(outcome.iterations).toBe(2);
    expect(outcome.accepted).toBe(false);
    expect(outcome.data.finalScores?.['verification']).toBe(0.5);
    expect(counts).toEqual({ research: 1, writing: 2, editing: 2, verification: 2 });
  });
});

describe('Orchestrator: durable runs', () => {
  it('resumes after a crash past a completed stage without running completed stages again (SQLite)', async () => {
    const dir = tempDir();
    const url = `sqlite:${join(dir, 'state.db')}`;
    const counts: Record<string, number> = {};

    // First process: dies right after `writing` completes.
    const { workflowId, error: crash } = await crashedRun(counts, newState(url), {
      afterStage(stage) {
        if (stage === 'writing') throw new Error('simulated crash');
      },
    });
    expect((crash as Error).message).toBe('simulated crash');
    expect(counts).toEqual({ research: 1, writing: 1 });

    // Second process: a new manager on the same file resumes.
    const state = newState(url);
    const before = await state.getWorkflowState(workflowId);
    expect(before?.completedStages).toEqual(['research', 'writing']);
    const outcome = await resumedRun(counts, state, workflowId);

    expect(outcome.status).toBe('completed');
    expect(counts).toEqual({ research: 1, writing: 1, editing: 1, verification: 1 });
    expect(outcome.data.runs).toEqual({ research: 1, writing: 1, editing: 1, verification: 1 });
    expect(outcome.data.resumes).toBe(1);
    const history = await state.getStateHistory(outcome.documentId);
    expect(history.filter((h) => h.actor === 'writing')).toHaveLength(1);
  });

  it('reuses a stage output recorded before the crash instead of asking the agent again', async () => {
    const state = newState();
    const counts: Record<string, number> = {};
    const { workflowId } = await crashedRun(counts, state, {
      beforeComplete(stage) {
        if (stage === 'editing') throw new Error('simulated crash');
      },
    });
    const mid = await state.getWorkflowState(workflowId);
    expect(mid?.stage).toBe('editing');
    expect(mid?.completedStages).not.toContain('editing');

    const outcome = await resumedRun(counts, state, workflowId);
    expect(outcome.status).toBe('completed');
    expect(counts['editing']).toBe(1);
    const history = await state.getStateHistory(outcome.documentId);
    expect(history.filter((h) => h.actor === 'editing')).toHaveLength(1);
  });

  it('never writes a draft twice when the crash came between the version write and its record', async () => {
    const state = newState();
    const counts: Record<string, number> = {};
    let crashOnce = true;
    // The version is written, then the process dies before the orchestrator records it.
    const crashing = wrapState(state, {
      updateDocumentContent: async (input) => {
        const doc = await state.updateDocumentContent(input);
        if (input.actor === 'editing' && crashOnce) {
          crashOnce = false;
          throw new Error('simulated crash after the write');
        }
        return doc;
      },
    });
    const { workflowId } = await crashedRun(counts, crashing);
    const outcome = await resumedRun(counts, state, workflowId);
    expect(outcome.status).toBe('completed');
    // Not asked again, not written again.
    expect(counts['editing']).toBe(1);
    const history = await state.getStateHistory(outcome.documentId);
    expect(history.filter((h) => h.actor === 'editing')).toHaveLength(1);
    expect(outcome.data.steps.some((s) => s.stage === 'editing' && s.outcome === 'recovered')).toBe(true);
  });

  it('runs the stage again when the crash came before its version was written', async () => {
    const state = newState();
    const counts: Record<string, number> = {};
    const crashing = wrapState(state, {
      updateDocumentContent: async (i) => {
        if (i.actor === 'editing') throw new Error('simulated crash before the write');
        return state.updateDocumentContent(i);
      },
    });
    const { workflowId } = await crashedRun(counts, crashing);
    const outcome = await resumedRun(counts, state, workflowId);
    expect(outcome.status).toBe('completed');
    expect(counts['editing']).toBe(2);
    expect(counts['writing']).toBe(1);
    const history = await state.getStateHistory(outcome.documentId);
    expect(history.filter((h) => h.actor === 'editing')).toHaveLength(1);
  });

  it('resuming a completed workflow sends nothing and returns its outcome', async () => {
    const state = newState();
    const counts: Record<string, number> = {};
    const done = await new Orchestrator({ bus: newBus(counting(counts)), state, definition: documentPipeline() }).start({
      topic: TOPIC,
      input: INPUT,
    });
    const again = await new Orchestrator({ bus: newBus(counting(counts)), state, definition: documentPipeline() }).resume(done.workflowId);
    expect(again.status).toBe('completed');
    expect(again.content).toBe(done.content);
    expect(counts).toEqual({ research: 1, writing: 1, editing: 1, verification: 1 });
  });

  it('unknown workflow ids are WorkflowNotFoundError', async () => {
    const orchestrator = new Orchestrator({ bus: newBus(), state: newState(), definition: documentPipeline() });
    await expect(orchestrator.resume('wf-nope')).rejects.toBeInstanceOf(WorkflowNotFoundError);
  });
});

describe('Orchestrator: failures are recorded, never silent', () => {
  it('an agent that keeps failing marks the workflow failed with the stage and error; resume retries it', async () => {
    const state = newState();
    const broken = (agent: Agent): Agent =>
      agent.name === 'editing'
        ? defineAgent({
            name: 'editing',
            handleMessage() {
              throw new Error('editor is out to lunch');
            },
          })
        : agent;
    const bus = newBus(broken, { maxAttempts: 1 });
    const events: WorkflowEvent[] = [];
    const outcome = await new Orchestrator({
      bus,
      state,
      definition: documentPipeline(),
      retryDelayMs: () => 1,
      onEvent: (e) => events.push(e),
    }).start({
      topic: TOPIC,
      input: INPUT,
    });

    expect(outcome.status).toBe('failed');
    expect(outcome.error).toMatchObject({ stage: 'editing', iteration: 1, code: 'remote_error' });
    expect(outcome.error?.message).toMatch(/editor is out to lunch/);
    expect(outcome.error?.message).toMatch(/after 3 attempts/);
    expect(events.filter((e) => e.type === 'stage_retry')).toHaveLength(2);
    const wf = await state.getWorkflowState(outcome.workflowId);
    expect(readWorkflowData(wf!).status).toBe('failed');
    expect(readWorkflowData(wf!).steps.filter((s) => s.outcome === 'failed')).toHaveLength(3);

    // A fixed editor: resume continues from editing, the completed stages stay done.
    const counts: Record<string, number> = {};
    const resumed = await new Orchestrator({ bus: newBus(counting(counts)), state, definition: documentPipeline() }).resume(
      outcome.workflowId,
    );
    expect(resumed.status).toBe('completed');
    expect(counts).toEqual({ editing: 1, verification: 1 });
  });

  it('an agent that never answers times out, is retried, then fails the workflow', async () => {
    const state = newState();
    const silent = (agent: Agent): Agent =>
      agent.name === 'research'
        ? defineAgent({
            name: 'research',
            async handleMessage(_msg, ctx) {
              await new Promise((r) => ctx.signal.addEventListener('abort', r));
              return undefined;
            },
          })
        : agent;
    const definition: WorkflowDefinition = documentPipeline({ timeoutMs: 100 });
    for (const s of definition.stages) s.attempts = 2;
    const outcome = await new Orchestrator({ bus: newBus(silent, { drainTimeoutMs: 0 }), state, definition, retryDelayMs: () => 1 }).start({
      topic: TOPIC,
      input: INPUT,
    });
    expect(outcome.status).toBe('failed');
    expect(outcome.error).toMatchObject({ stage: 'research', code: 'request_timeout' });
  });

  it('rejects definitions that cannot run', () => {
    const base = documentPipeline();
    const bus = newBus();
    const state = newState();
    const bad = (patch: Partial<WorkflowDefinition>) => () => new Orchestrator({ bus, state, definition: { ...base, ...patch } });
    expect(bad({ stages: [] })).toThrow(ValidationError);
    expect(bad({ maxIterations: 0 })).toThrow(/maxIterations/);
    expect(bad({ stages: [...base.stages, base.stages[0]!] })).toThrow(/appears twice/);
    expect(bad({ stages: [{ ...base.stages[0]!, revise: 'verification', threshold: 0.5 }, ...base.stages.slice(1)] })).toThrow(
      /not an earlier stage/,
    );
  });
});

describe('Orchestrator: one run per workflow at a time (the run lease)', () => {
  /** A bus whose editing agent waits at a gate; `entered` resolves when it got there. */
  function gatedBus() {
    let enter!: () => void;
    let open!: () => void;
    const entered = new Promise<void>((r) => (enter = r));
    const gate = new Promise<void>((r) => (open = r));
    const counts: Record<string, number> = {};
    const bus = newBus((agent) =>
      agent.name === 'editing'
        ? defineAgent({
            name: 'editing',
            async handleMessage(msg, ctx) {
              counts['editing'] = (counts['editing'] ?? 0) + 1;
              enter();
              await gate;
              return agent.handleMessage(msg, ctx);
            },
          })
        : agent,
    );
    return { bus, entered, open, counts };
  }

  it('a second resume while a run holds the workflow fails with WorkflowBusyError, and the run finishes alone', async () => {
    const url = `sqlite:${join(tempDir(), 'state.db')}`;
    const first = gatedBus();
    const running = new Orchestrator({
      bus: first.bus,
      state: newState(url),
      definition: documentPipeline(),
      lease: { ttlMs: 1500 },
    }).start({
      workflowId: 'wf-leased',
      topic: TOPIC,
      input: INPUT,
    });
    await first.entered;

    const counts: Record<string, number> = {};
    const events: WorkflowEvent[] = [];
    const second = new Orchestrator({
      bus: newBus(counting(counts)),
      state: newState(url),
      definition: documentPipeline(),
      lease: { ttlMs: 1500, waitMs: 2000 },
      onEvent: (e) => events.push(e),
    });
    // The first run keeps renewing its 1.5 s lease (every 0.5 s), so waiting longer than the
    // lease is not enough: only a run that stopped renewing lets it run out.
    const err = await thrown(() => second.resume('wf-leased'));
    expect(err).toBeInstanceOf(WorkflowBusyError);
    expect((err as WorkflowBusyError).code).toBe('workflow_busy');
    expect((err as Error).message).toMatch(/workflow `wf-leased` is being run by another process/);
    expect(events).toEqual([{ type: 'lease_wait', workflowId: 'wf-leased', waitMs: 2000 }]);
    expect(counts).toEqual({});

    first.open();
    const outcome = await running;
    expect(outcome.status).toBe('completed');
    expect(first.counts).toEqual({ editing: 1 });
    // Released at the end: resuming now just reports the finished run.
    expect((await second.resume('wf-leased')).status).toBe('completed');
  });

  it('a run that died holding the lease stops renewing it: resume waits for it to run out, then continues', async () => {
    const url = `sqlite:${join(tempDir(), 'state.db')}`;
    const state = newState(url);
    const broken = (agent: Agent): Agent =>
      agent.name === 'editing' ? defineAgent({ name: 'editing', handleMessage: () => Promise.reject(new Error('down')) }) : agent;
    const failed = await new Orchestrator({
      bus: newBus(broken, { maxAttempts: 1 }),
      state,
      definition: documentPipeline(),
      retryDelayMs: () => 1,
    }).start({
      topic: TOPIC,
      input: INPUT,
    });
    expect(failed.status).toBe('failed');

    // What a SIGKILLed run leaves behind: a lease in the store that nobody renews.
    const store = createSqliteStore(url);
    cleanups.push(() => store.close());
    await store.connect();
    expect(await store.tryAcquireLock(lockStoreKey(`workflow-run:${failed.workflowId}`), 300)).not.toBeNull();

    const events: WorkflowEvent[] = [];
    const resumed = await new Orchestrator({
      bus: newBus(),
      state: newState(url),
      definition: documentPipeline(),
      lease: { ttlMs: 300 },
      onEvent: (e) => events.push(e),
    }).resume(failed.workflowId);
    expect(resumed.status).toBe('completed');
    expect(events[0]).toEqual({ type: 'lease_wait', workflowId: failed.workflowId, waitMs: 1300 });
  });

  it('rejects a nonsensical lease', () => {
    const make = (lease: { ttlMs?: number; waitMs?: number }) => () =>
      new Orchestrator({ bus: newBus(), state: newState(), definition: documentPipeline(), lease });
    expect(make({ ttlMs: 5 })).toThrow(/lease.ttlMs must be an integer >= 100, got `5`/);
    expect(make({ waitMs: -1 })).toThrow(/lease.waitMs must be an integer >= 0/);
  });
});

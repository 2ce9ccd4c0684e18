import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defineAgent, MessageBus, Orchestrator, StateConflictError, StateManager, type WorkflowDefinition } from '../../src/index.js';
import { activeTracer, errorType, spanContextOf, traceparentOf } from '../../src/observability/tracing.js';
import { finished, only, registerSdk } from './otel.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

function newState(): StateManager {
  const state = new StateManager();
  cleanups.push(() => state.close());
  return state;
}

describe('tracing without an SDK', () => {
  it('has no tracer and makes no span: the API stays a no-op', async () => {
    expect(activeTracer()).toBeUndefined();
    const state = newState();
    await state.createDocumentState({ documentId: 'plain', topic: 't', content: 'a' });
    const doc = await state.updateDocumentContent({ documentId: 'plain', content: 'b', actor: 'x' });
    expect(doc.version).toBe(2);
  });
});

describe('tracing with an SDK registered', () => {
  let sdk: ReturnType<typeof registerSdk>;
  beforeAll(() => {
    sdk = registerSdk();
  });
  afterEach(() => sdk.exporter.reset());

  it('reads and writes W3C traceparents', () => {
    const sc = spanContextOf('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(sc).toEqual({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1, isRemote: true });
    expect(traceparentOf(sc!)).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(spanContextOf('00-00000000000000000000000000000000-b7ad6b7169203331-01')).toBeUndefined();
    expect(spanContextOf('garbage')).toBeUndefined();
    expect(spanContextOf(undefined)).toBeUndefined();
  });

  it('names an error by its code, else its class name', () => {
    expect(errorType(new StateConflictError('d', 1, 2))).toBe('state_conflict');
    expect(errorType(new TypeError('x'))).toBe('TypeError');
    expect(errorType('text')).toBe('_OTHER');
  });

  it('makes a state.commit span per document commit, under the active span, with id, version and action', async () => {
    const state = newState();
    const tracer = trace.getTracer('test');
    await tracer.startActiveSpan('caller', async (caller) => {
      await state.createDocumentState({ documentId: 'doc-1', topic: 't', content: 'one\ntwo\nthree\nfour\nfive\n', actor: 'alice' });
      await state.updateDocumentContent({
        documentId: 'doc-1',
        content: 'ONE\ntwo\nthree\nfour\nfive\n',
        actor: 'bob',
        expectedVersion: 1,
      });
      // Based on v1 again, touching another line: merged onto v2.
      await state.updateDocumentContent({
        documentId: 'doc-1',
        content: 'one\ntwo\nthree\nfour\nFIVE\n',
        actor: 'carol',
        expectedVersion: 1,
        merge: true,
      });
      caller.end();
    });
    const spans = finished(sdk.exporter);
    const caller = only(spans, 'caller');
    const commits = spans.filter((s) => s.name === 'state.commit');
    expect(
      commits.map((s) => [
        s.attributes['concord.document.version'],
        s.attributes['concord.state.action'],
        s.attributes['concord.state.outcome'],
      ]),
    ).toEqual([
      [1, 'create', 'committed'],
      [2, 'update_content', 'committed'],
      [3, 'merge', 'committed'],
    ]);
    for (const c of commits) {
      expect(c.parentSpanId).toBe(caller.spanId);
      expect(c.traceId).toBe(caller.traceId);
      expect(c.attributes['concord.document.id']).toBe('doc-1');
      expect(c.kind).toBe(SpanKind.INTERNAL);
    }
    expect(commits[2]?.attributes['concord.state.merge']).toBe(true);
    expect(commits[1]?.attributes['concord.state.actor']).toBe('bob');
  });

  it('records a conflict on its state.commit span: status ERROR, error.type state_conflict, both versions', async () => {
    const state = newState();
    await state.createDocumentState({ documentId: 'doc-2', topic: 't', content: 'a\n' });
    await state.updateDocumentContent({ documentId: 'doc-2', content: 'b\n', actor: 'x' });
    sdk.exporter.reset();
    await expect(
      state.updateDocumentContent({ documentId: 'doc-2', content: 'c\n', actor: 'y', expectedVersion: 1 }),
    ).rejects.toBeInstanceOf(StateConflictError);
    // Overlapping edits cannot merge: a conflict too, with the regions counted.
    await expect(
      state.updateDocumentContent({ documentId: 'doc-2', content: 'd\n', actor: 'y', expectedVersion: 1, merge: true }),
    ).rejects.toBeInstanceOf(StateConflictError);
    const conflicts = finished(sdk.exporter).filter((s) => s.name === 'state.commit');
    expect(conflicts).toHaveLength(2);
    for (const c of conflicts) {
      expect(c.status.code).toBe(SpanStatusCode.ERROR);
      expect(c.attributes['error.type']).toBe('state_conflict');
      expect(c.attributes['concord.state.outcome']).toBe('conflict');
      expect(c.attributes['concord.state.expected_version']).toBe(1);
      expect(c.attributes['concord.state.actual_version']).toBe(2);
      expect(c.events).toContain('exception');
    }
    expect(conflicts[1]?.attributes['concord.state.merge_conflicts']).toBeGreaterThan(0);
  });

  it('traces a workflow: one span per run, per revision round and per stage, the stage writes nested under their stage', async () => {
    const state = newState();
    const bus = new MessageBus();
    cleanups.push(() => bus.close());
    let reviews = 0;
    bus.registerAgent(
      'writer',
      defineAgent({ name: 'writer', handleMessage: async (m) => ({ draft: `draft ${String((m.payload as { round: number }).round)}` }) }),
    );
    bus.registerAgent('reviewer', defineAgent({ name: 'reviewer', handleMessage: async () => ({ score: ++reviews === 1 ? 0.4 : 0.9 }) }));
    const definition: WorkflowDefinition = {
      name: 'two-step',
      maxIterations: 3,
      stages: [
        {
          name: 'draft',
          agent: 'writer',
          request: (ctx) => ({ payload: { round: ctx.iteration } }),
          result: (reply) => ({ output: {}, score: 1, content: String(reply['draft']) }),
        },
        {
          name: 'review',
          agent: 'reviewer',
          threshold: 0.8,
          revise: 'draft',
          request: () => ({ payload: {} }),
          result: (reply) => ({ output: {}, score: Number(reply['score']), problems: ['too short'] }),
        },
      ],
    };
    const outcome = await new Orchestrator({ bus, state, definition }).start({ topic: 'traced' });
    expect(outcome.status).toBe('completed');
    expect(outcome.iterations).toBe(2);

    const spans = finished(sdk.exporter);
    const run = only(spans, 'workflow two-step');
    expect(run.parentSpanId).toBeUndefined();
    expect(run.attributes).toMatchObject({
      'concord.workflow.id': outcome.workflowId,
      'concord.workflow.status': 'completed',
      'concord.workflow.accepted': true,
      'concord.workflow.iterations': 2,
    });
    // The persisted traceparent is the run's span: a resume joins this trace.
    expect(outcome.data.traceparent).toBe(`00-${run.traceId}-${run.spanId}-01`);
    expect(spans.every((s) => s.traceId === run.traceId)).toBe(true);

    const rounds = spans.filter((s) => s.name === 'workflow.round');
    expect(rounds.map((r) => [r.attributes['concord.workflow.iteration'], r.attributes['concord.workflow.decision']])).toEqual([
      [1, 'revise'],
      [2, 'accept'],
    ]);
    expect(rounds[0]?.attributes).toMatchObject({
      'concord.workflow.gate': 'review',
      'concord.workflow.score': 0.4,
      'concord.workflow.threshold': 0.8,
      'concord.workflow.revise_to': 'draft',
      'concord.workflow.problems': 1,
    });
    for (const r of rounds) expect(r.parentSpanId).toBe(run.spanId);

    const stages = spans.filter((s) => s.name.startsWith('stage '));
    expect(stages.map((s) => [s.name, s.attributes['concord.workflow.iteration'], s.attributes['concord.workflow.score']])).toEqual([
      ['stage draft', 1, 1],
      ['stage review', 1, 0.4],
      ['stage draft', 2, 1],
      ['stage review', 2, 0.9],
    ]);
    stages.forEach((s, i) => {
      expect(s.parentSpanId).toBe(rounds[i < 2 ? 0 : 1]?.spanId);
    });
    // Each draft's document write is a commit span under its stage.
    const drafts = stages.filter((s) => s.name === 'stage draft');
    for (const d of drafts) {
      const writes = spans.filter((s) => s.name === 'state.commit' && s.parentSpanId === d.spanId);
      expect(writes).toHaveLength(1);
      expect(writes[0]?.attributes['concord.document.version']).toBe(d.attributes['concord.document.version']);
    }
  });

  it('marks a failed stage, its round and the run with the error code', async () => {
    const state = newState();
    const bus = new MessageBus();
    cleanups.push(() => bus.close());
    bus.registerAgent('broken', defineAgent({ name: 'broken', handleMessage: async () => ({ score: 7 }) }));
    const definition: WorkflowDefinition = {
      name: 'failing',
      maxIterations: 1,
      stages: [
        {
          name: 'only',
          agent: 'broken',
          attempts: 1,
          request: () => ({ payload: {} }),
          result: (r) => ({ output: {}, score: Number(r['score']) }),
        },
      ],
    };
    const outcome = await new Orchestrator({ bus, state, definition }).start({ topic: 'fails' });
    expect(outcome.status).toBe('failed');
    const spans = finished(sdk.exporter);
    for (const name of ['workflow failing', 'workflow.round', 'stage only']) {
      const s = only(spans, name);
      expect(s.status.code, name).toBe(SpanStatusCode.ERROR);
      expect(s.attributes['error.type'], name).toBe('validation');
    }
  });
});

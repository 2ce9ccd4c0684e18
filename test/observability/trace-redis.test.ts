/**
 * One trace across two processes over Redis: this process sends a request to agent `writer` in a
 * child process (test/observability/child-agent.ts, its own SDK exporting spans as JSON lines on
 * stdout); the child's handler writes a document and sends a STATUS to `watcher` here. Every span
 * of both processes must form one trace with the expected parent/child links.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineAgent, MessageBus, type Message, StateManager } from '../../src/index.js';
import { SERVICES, serviceAvailable, testNamespace, waitFor } from '../helpers/services.js';
import { cleanupNamespace } from '../redis/helpers.js';
import { finished, only, registerSdk, type SpanRecord } from './otel.js';

const up = await serviceAvailable('redis');

describe.runIf(up)('a trace across processes over Redis', () => {
  const ns = testNamespace('otel');
  const url = `${SERVICES.redis.url}?namespace=${ns}`;
  let sdk: ReturnType<typeof registerSdk>;
  let child: ChildProcess;
  let childOut = '';
  let bus: MessageBus;
  let state: StateManager;
  const statuses: Message[] = [];

  beforeAll(async () => {
    sdk = registerSdk();
    child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'child-agent.ts'), url], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    child.stdout?.on('data', (d) => (childOut += d));
    await waitFor(() => childOut.includes('READY\n'), 'the child agent to serve', 20_000);
    state = new StateManager({ store: url });
    bus = new MessageBus({ transport: url });
    bus.registerAgent('watcher', defineAgent({ name: 'watcher', handleMessage: async (m) => void statuses.push(m) }));
    await bus.ready();
  }, 30_000);

  afterAll(async () => {
    child?.stdin?.end();
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    await bus?.close();
    await state?.close();
    await cleanupNamespace(ns);
  });

  const childSpans = (): SpanRecord[] =>
    childOut
      .split('\n')
      .filter((l) => l.startsWith('SPAN '))
      .map((l) => JSON.parse(l.slice(5)) as SpanRecord);

  it('links request → process in the other process → its state commit and STATUS send → the STATUS delivery here', {
    timeout: 30_000,
  }, async () => {
    const reply = await trace.getTracer('test').startActiveSpan('user operation', async (root) => {
      try {
        return await bus.request({
          sender: 'planner',
          recipient: 'writer',
          payload: { documentId: `doc-${ns}`, content: 'hello\n' },
          timeout: 10_000,
        });
      } finally {
        root.end();
      }
    });
    expect(reply.payload['version']).toBe(1);
    expect(reply.payload['pid']).toBe(child.pid);
    await waitFor(() => statuses.length === 1, 'the STATUS to reach the watcher', 10_000);
    // Spans end after the work they time: wait for both sides to export what this exchange made.
    await waitFor(() => finished(sdk.exporter).some((s) => s.name === 'process watcher'), 'the watcher span', 10_000);
    await waitFor(() => childSpans().some((s) => s.name === 'process writer'), 'the child process span', 10_000);

    const here = finished(sdk.exporter);
    const there = childSpans();
    const root = only(here, 'user operation');
    const all = [...here, ...there];
    // One trace.
    expect(new Set(all.map((s) => s.traceId))).toEqual(new Set([root.traceId]));

    const request = only(here, 'request writer');
    expect(request.kind).toBe(SpanKind.PRODUCER);
    expect(request.parentSpanId).toBe(root.spanId);
    expect(request.attributes).toMatchObject({
      'messaging.system': 'concord',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'request',
      'messaging.destination.name': 'writer',
      'messaging.message.id': reply.headers['inReplyTo'],
      'messaging.message.conversation_id': reply.correlationId,
    });

    const process_ = only(there, 'process writer');
    expect(process_.kind).toBe(SpanKind.CONSUMER);
    expect(process_.parentSpanId).toBe(request.spanId);
    expect(process_.attributes).toMatchObject({
      'messaging.system': 'concord',
      'messaging.operation.type': 'process',
      'messaging.destination.name': 'writer',
      'messaging.message.id': reply.headers['inReplyTo'],
      'messaging.concord.attempt': 1,
    });
    expect(process_.status.code).not.toBe(SpanStatusCode.ERROR);

    const commit = only(there, 'state.commit');
    expect(commit.parentSpanId).toBe(process_.spanId);
    expect(commit.attributes).toMatchObject({
      'concord.document.id': `doc-${ns}`,
      'concord.document.version': 1,
      'concord.state.action': 'create',
      'concord.state.outcome': 'committed',
    });

    const status = only(there, 'send watcher');
    expect(status.kind).toBe(SpanKind.PRODUCER);
    expect(status.parentSpanId).toBe(process_.spanId);
    expect(status.attributes['messaging.concord.message.type']).toBe('status');

    // The STATUS's delivery here is a child of its send there; the reply's of the reply's send.
    const watcher = only(here, 'process watcher');
    expect(watcher.parentSpanId).toBe(status.spanId);
    expect(statuses[0]?.headers['traceparent']).toBe(`00-${root.traceId}-${status.spanId}-01`);
    const replySend = only(there, 'reply planner', (s) => s.kind === SpanKind.PRODUCER);
    expect(replySend.parentSpanId).toBe(process_.spanId);
    expect(reply.headers['traceparent']).toBe(`00-${root.traceId}-${replySend.spanId}-01`);
  });
});

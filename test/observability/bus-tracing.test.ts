import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConcordError, defineAgent, type Message, MessageBus, MessageType, StateManager } from '../../src/index.js';
import { finished, only, registerSdk, type SpanRecord, until } from './otel.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

function newBus(options: ConstructorParameters<typeof MessageBus>[0] = {}): MessageBus {
  const bus = new MessageBus({ backoff: { initialMs: 1, jitter: 0 }, ...options });
  cleanups.push(() => bus.close());
  return bus;
}

const traceparent = (s: SpanRecord): string => `00-${s.traceId}-${s.spanId}-01`;

describe('bus spans with an SDK registered', () => {
  let sdk: ReturnType<typeof registerSdk>;
  beforeAll(() => {
    sdk = registerSdk();
  });
  afterEach(() => sdk.exporter.reset());

  it('a send is a PRODUCER span whose context the message carries; its delivery a CONSUMER span under it', async () => {
    const bus = newBus();
    const got: Message[] = [];
    bus.registerAgent('worker', defineAgent({ name: 'worker', handleMessage: async (m) => void got.push(m) }));
    const sent = await bus.send({ sender: 'app', recipient: 'worker', type: MessageType.TASK, payload: { n: 1 }, correlationId: 'conv-1' });
    await until(() => finished(sdk.exporter).some((s) => s.name === 'process worker'), 5000, 'the process span');
    const spans = finished(sdk.exporter);
    const send = only(spans, 'send worker');
    expect(send.kind).toBe(SpanKind.PRODUCER);
    expect(send.parentSpanId).toBeUndefined();
    expect(sent.headers['traceparent']).toBe(traceparent(send));
    expect(send.attributes).toEqual({
      'messaging.system': 'concord',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'send',
      'messaging.destination.name': 'worker',
      'messaging.message.id': sent.id,
      'messaging.message.conversation_id': 'conv-1',
      'messaging.concord.message.type': 'task',
      'messaging.concord.sender': 'app',
      'messaging.concord.priority': sent.priority,
      'messaging.concord.attempt': 0,
    });
    const process_ = only(spans, 'process worker');
    expect(process_.kind).toBe(SpanKind.CONSUMER);
    expect(process_.parentSpanId).toBe(send.spanId);
    expect(process_.traceId).toBe(send.traceId);
    expect(process_.attributes).toMatchObject({
      'messaging.operation.type': 'process',
      'messaging.message.id': sent.id,
      'messaging.concord.attempt': 1,
    });
    expect(got[0]?.headers['traceparent']).toBe(traceparent(send));
  });

  it('a send inside the caller’s span is its child; a handler’s sends and writes are children of its delivery', async () => {
    const state = new StateManager();
    cleanups.push(() => state.close());
    const bus = newBus({ state });
    bus.registerAgent(
      'first',
      defineAgent({
        name: 'first',
        async handleMessage(_m, ctx) {
          await state.createDocumentState({ documentId: 'd1', topic: 't', content: 'x', actor: 'first' });
          await ctx.send({ recipient: 'second', type: MessageType.STATUS, payload: {} });
        },
      }),
    );
    bus.registerAgent('second', defineAgent({ name: 'second', handleMessage: async () => {} }));
    await trace.getTracer('test').startActiveSpan('caller', async (span) => {
      await bus.send({ sender: 'app', recipient: 'first', type: MessageType.TASK, payload: {} });
      span.end();
    });
    await until(() => finished(sdk.exporter).some((s) => s.name === 'process second'), 5000, 'the second delivery');
    const spans = finished(sdk.exporter);
    const caller = only(spans, 'caller');
    const send = only(spans, 'send first');
    expect(send.parentSpanId).toBe(caller.spanId);
    const first = only(spans, 'process first');
    expect(first.parentSpanId).toBe(send.spanId);
    expect(only(spans, 'state.commit').parentSpanId).toBe(first.spanId);
    const status = only(spans, 'send second');
    expect(status.parentSpanId).toBe(first.spanId);
    expect(only(spans, 'process second').parentSpanId).toBe(status.spanId);
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([caller.traceId]));
  });

  it('a request’s reply is sent under the delivery that answered it', async () => {
    const bus = newBus();
    bus.registerAgent('echo', defineAgent({ name: 'echo', handleMessage: async (m) => ({ echoed: m.payload }) }));
    const reply = await bus.request({ sender: 'app', recipient: 'echo', payload: { a: 1 }, timeout: 5000 });
    await until(() => finished(sdk.exporter).some((s) => s.name === 'process echo'), 5000, 'the process span');
    const spans = finished(sdk.exporter);
    const request = only(spans, 'request echo');
    expect(request.kind).toBe(SpanKind.PRODUCER);
    expect(request.attributes['messaging.operation.name']).toBe('request');
    const process_ = only(spans, 'process echo');
    expect(process_.parentSpanId).toBe(request.spanId);
    const replySend = only(spans, 'reply app');
    expect(replySend.parentSpanId).toBe(process_.spanId);
    expect(replySend.attributes['messaging.destination.temporary']).toBe(true);
    expect(reply.headers['traceparent']).toBe(traceparent(replySend));
  });

  it('every retry is a delivery span under the same send, with its attempt; a failure carries the error code', async () => {
    const bus = newBus({ maxAttempts: 3 });
    let calls = 0;
    bus.registerAgent(
      'flaky',
      defineAgent({
        name: 'flaky',
        handleMessage: async () => {
          if (++calls < 3) throw new ConcordError('flaky_failure', `failure ${calls}`);
        },
      }),
    );
    await bus.send({ sender: 'app', recipient: 'flaky', type: MessageType.TASK, payload: {} });
    await until(() => finished(sdk.exporter).filter((s) => s.name === 'process flaky').length === 3, 5000, 'three deliveries');
    const spans = finished(sdk.exporter);
    const send = only(spans, 'send flaky');
    const deliveries = spans.filter((s) => s.name === 'process flaky');
    expect(deliveries.map((d) => d.attributes['messaging.concord.attempt'])).toEqual([1, 2, 3]);
    for (const d of deliveries) expect(d.parentSpanId).toBe(send.spanId);
    for (const d of deliveries.slice(0, 2)) {
      expect(d.status.code).toBe(SpanStatusCode.ERROR);
      expect(d.attributes['error.type']).toBe('flaky_failure');
      expect(d.events).toContain('exception');
    }
    expect(deliveries[2]?.status.code).not.toBe(SpanStatusCode.ERROR);
  });

  it('a dead-lettered message keeps its trace: its redrive and the delivery after it join the trace it was sent in', async () => {
    const bus = newBus({ maxAttempts: 1 });
    let fail = true;
    bus.registerAgent(
      'picky',
      defineAgent({
        name: 'picky',
        handleMessage: async () => {
          if (fail) throw new ConcordError('not_yet', 'not yet');
        },
      }),
    );
    const sent = await bus.send({ sender: 'app', recipient: 'picky', type: MessageType.TASK, payload: {} });
    await until(() => finished(sdk.exporter).some((s) => s.name === 'process picky'), 5000, 'the failed delivery');
    await until(() => (bus.metrics().deadLetters ?? 0) >= 1, 5000, 'the dead letter');
    const letters = await bus.getDeadLetters();
    expect(letters[0]?.message.headers['traceparent']).toBe(sent.headers['traceparent']);
    fail = false;
    await bus.redrive(sent.id);
    await until(() => finished(sdk.exporter).filter((s) => s.name === 'process picky').length === 2, 5000, 'the redriven delivery');
    const spans = finished(sdk.exporter);
    const send = only(spans, 'send picky');
    const redrive = only(spans, 'redrive picky');
    expect(redrive.kind).toBe(SpanKind.PRODUCER);
    expect(redrive.parentSpanId).toBe(send.spanId);
    const [failed, redriven] = spans.filter((s) => s.name === 'process picky');
    expect(failed?.attributes['error.type']).toBe('not_yet');
    expect(redriven?.parentSpanId).toBe(send.spanId);
    expect(redriven?.traceId).toBe(send.traceId);
    expect(redriven?.status.code).not.toBe(SpanStatusCode.ERROR);
  });

  it('a pulled delivery is a receive span from lease to ack, under its send', async () => {
    const bus = newBus();
    bus.registerAgent('puller');
    const sent = await bus.send({ sender: 'app', recipient: 'puller', type: MessageType.TASK, payload: {} });
    const delivery = await bus.receive('puller', { timeout: 1000 });
    expect(delivery?.id).toBe(sent.id);
    expect(finished(sdk.exporter).some((s) => s.name === 'receive puller')).toBe(false);
    await delivery?.nack(new ConcordError('later', 'later'), { delayMs: 0 });
    const again = await bus.receive('puller', { timeout: 1000 });
    await again?.ack();
    const spans = finished(sdk.exporter);
    const send = only(spans, 'send puller');
    const receives = spans.filter((s) => s.name === 'receive puller');
    expect(receives).toHaveLength(2);
    for (const r of receives) {
      expect(r.kind).toBe(SpanKind.CONSUMER);
      expect(r.parentSpanId).toBe(send.spanId);
    }
    expect(receives[0]?.attributes['error.type']).toBe('later');
    expect(receives[1]?.attributes['messaging.concord.attempt']).toBe(2);
  });

  it('a batch leased by a concurrent consumer links to each message’s send instead of parenting', async () => {
    const bus = newBus();
    // Registered without a handler first, so the messages wait; then a concurrent agent leases them together.
    const sends = [];
    bus.registerAgent('batch');
    for (let i = 0; i < 5; i++) sends.push(await bus.send({ sender: 'app', recipient: 'batch', type: MessageType.TASK, payload: { i } }));
    await bus.unregisterAgent('batch');
    let handled = 0;
    bus.registerAgent('batch', defineAgent({ name: 'batch', concurrency: 10, handleMessage: async () => void handled++ }));
    await until(
      () => handled === 5 && finished(sdk.exporter).filter((s) => s.name === 'process batch').length === 5,
      5000,
      'five deliveries',
    );
    const spans = finished(sdk.exporter);
    const leases = spans.filter((s) => s.name === 'receive batch' && s.kind === SpanKind.CLIENT);
    const linked = leases.flatMap((l) => l.links.map((k) => k.spanId));
    const sendSpans = spans.filter((s) => s.name === 'send batch');
    expect(new Set(linked)).toEqual(new Set(sendSpans.map((s) => s.spanId)));
    for (const l of leases) {
      expect(l.parentSpanId).toBeUndefined();
      expect(l.attributes['messaging.batch.message_count']).toBe(l.links.length);
    }
    // Each message's processing still parents on its own send.
    for (const p of spans.filter((s) => s.name === 'process batch')) expect(sendSpans.map((s) => s.spanId)).toContain(p.parentSpanId);
  });
});

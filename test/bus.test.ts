import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ClosedError, RecipientNotFoundError, RemoteError, RequestTimeoutError, ValidationError } from '../src/errors.js';
import { MessageType, traceIdOf, type Message } from '../src/message.js';
import { CommunicationProtocol, MessageBus, type MessageBusOptions } from '../src/bus/index.js';
import { MemoryTransport } from '../src/backends/memory/transport.js';
import { defineAgent, type AgentContext } from '../src/bus/agent.js';
import { waitFor } from './helpers/services.js';

const buses: MessageBus[] = [];
function newBus(options: MessageBusOptions = {}): MessageBus {
  const bus = new MessageBus({ backoff: { initialMs: 5, factor: 2, maxMs: 40, jitter: 0 }, ...options });
  buses.push(bus);
  return bus;
}
afterEach(async () => {
  await Promise.allSettled(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 200 })));
});

/** A pino logger writing parsed JSON lines into an array. */
function captureLogger(level = 'debug'): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

const task = (recipient: string, payload: Record<string, unknown> = {}) => ({
  sender: 'tester',
  recipient,
  type: MessageType.TASK,
  payload,
});

describe('MessageBus: construction and registration', () => {
  it('works with no options (memory) and with a memory:// URL resolved lazily', async () => {
    for (const bus of [newBus(), newBus({ transport: 'memory://' })]) {
      bus.registerAgent('echo', defineAgent({ name: 'echo', handleMessage: (m) => m.payload }));
      const reply = await bus.request({ sender: 'me', recipient: 'echo', payload: { hi: 1 } });
      expect(reply.payload).toEqual({ hi: 1 });
    }
  });

  it('lets registerAgent be followed by send without waiting', async () => {
    const bus = newBus();
    const got: string[] = [];
    bus.registerAgent('fresh', defineAgent({ name: 'fresh', handleMessage: (m) => void got.push(m.id) }));
    const m = await bus.send(task('fresh'));
    await waitFor(() => got.length === 1, 'delivery');
    expect(got).toEqual([m.id]);
  });

  it.each([
    [{ maxAttempts: 0 }, 'maxAttempts must be an integer >= 1, got `0`'],
    [{ leaseMs: -1 }, 'leaseMs must be a finite number > 0, got `-1`'],
    [{ dedupeWindowMs: Number.NaN }, 'dedupeWindowMs must be a finite number >= 0'],
    [{ backoff: { jitter: 3 } }, 'backoff.jitter must be a number in 0..1, got `3`'],
  ])('refuses bad options %o', (options, message) => {
    expect(() => new MessageBus(options as MessageBusOptions)).toThrow(ValidationError);
    expect(() => new MessageBus(options as MessageBusOptions)).toThrow(message);
  });

  it('refuses bad agent names, agents without a handler and double registration', () => {
    const bus = newBus();
    expect(() => bus.registerAgent('')).toThrow(ValidationError);
    expect(() => bus.registerAgent('_inbox.x')).toThrow(/agent name must be/);
    expect(() => bus.registerAgent('a', {} as never)).toThrow(/needs a handleMessage/);
    expect(() => bus.registerAgent('a', { name: 'a', concurrency: 0, handleMessage: () => undefined })).toThrow(
      /concurrency must be an integer 1..10000, got `0`/,
    );
    bus.registerAgent('a');
    expect(() => bus.registerAgent('a')).toThrow('agent `a` is already registered on this bus');
  });

  it('unregisters an agent: later sends fail, queued messages stay', async () => {
    const bus = newBus();
    bus.registerAgent('temp');
    await bus.send(task('temp'));
    expect(await bus.unregisterAgent('temp')).toBe(true);
    expect(await bus.unregisterAgent('temp')).toBe(false);
    await expect(bus.send(task('temp'))).rejects.toBeInstanceOf(RecipientNotFoundError);
    bus.registerAgent('temp');
    expect(await bus.receive('temp')).not.toBeNull();
  });

  it('does not close a transport it was given, and closes one it made', async () => {
    const transport = new MemoryTransport();
    const given = newBus({ transport });
    given.registerAgent('x');
    await given.ready();
    await given.close();
    expect(await transport.hasRecipient('x')).toBe(true);
    await transport.close();
  });
});

describe('MessageBus: sending', () => {
  it('validates before enqueuing anything', async () => {
    const bus = newBus();
    bus.registerAgent('w');
    await expect(bus.send({ ...task('w'), priority: 11 })).rejects.toThrow('priority must be an integer 0..10, got `11`');
    await expect(bus.send({ ...task('w'), sender: '' })).rejects.toBeInstanceOf(ValidationError);
    await expect(bus.sendBatch([task('w'), { ...task('w'), payload: { f: () => 1 } as never }])).rejects.toThrow(
      /payload.f is not JSON-serialisable/,
    );
    expect(await bus.receive('w')).toBeNull();
    expect(bus.metrics().messagesSent).toBe(0);
  });

  it('creates a W3C traceparent when absent and keeps one that was given', async () => {
    const bus = newBus();
    bus.registerAgent('w');
    const a = await bus.send(task('w'));
    expect(a.headers['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const given = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const b = await bus.send({ ...task('w'), headers: { traceparent: given } });
    expect(b.headers['traceparent']).toBe(given);
  });

  it('treats recipient "" as a publication to subscribers of the type', async () => {
    const bus = newBus();
    const seen: string[] = [];
    bus.subscribe(MessageType.CONTROL, (m) => void seen.push(m.id));
    const m = await bus.send({ sender: 's', recipient: '', type: MessageType.CONTROL, payload: { stop: true } });
    await waitFor(() => seen.length === 1, 'the publication observed');
    expect(seen).toEqual([m.id]);
    expect(bus.metrics()).toMatchObject({ messagesSent: 0, messagesPublished: 1 });
  });

  it('sends a batch in one call, dead-lettering and reporting an unknown recipient after sending the rest', async () => {
    const bus = newBus();
    bus.registerAgent('w');
    const err = await bus.sendBatch([task('w', { n: 1 }), task('ghost'), task('w', { n: 2 })]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RecipientNotFoundError);
    expect((await bus.receive('w'))?.payload).toEqual({ n: 1 });
    expect((await bus.receive('w'))?.payload).toEqual({ n: 2 });
    expect((await bus.getDeadLetters()).map((l) => l.reason)).toEqual(['recipient_not_found']);
  });

  it('never lets a slow or failing subscriber hold up or fail a send', async () => {
    const bus = newBus();
    bus.registerAgent('w');
    bus.subscribe('*', () => new Promise<void>(() => undefined));
    bus.subscribe('*', () => Promise.reject(new Error('async failure')));
    bus.subscribe(MessageType.TASK, () => {
      throw new Error('sync failure');
    });
    for (let i = 0; i < 5; i++) await bus.send(task('w'));
    await waitFor(() => bus.metrics().subscriberErrors === 10, 'ten subscriber failures counted');
    expect(bus.metrics().messagesSent).toBe(5);
  });

  it('validates subscriptions', () => {
    const bus = newBus();
    expect(() => bus.subscribe('', () => undefined)).toThrow(ValidationError);
    expect(() => bus.subscribe('x', 'nope' as never)).toThrow(/needs a handler function/);
  });
});

describe('MessageBus: fairness', () => {
  it('a consumer draining a deep backlog still lets the event loop run', async () => {
    for (const concurrency of [1, 4]) {
      const bus = newBus();
      let handled = 0;
      const total = 1_000;
      bus.registerAgent('drain'); // pull first, so the backlog builds up
      await bus.sendBatch(
        Array.from({ length: total }, (_, n) => ({ sender: 's', recipient: 'drain', type: MessageType.STATUS, payload: { n } })),
      );
      await bus.unregisterAgent('drain');
      let handledWhenProbeRan = -1;
      // Each delivery takes at least 0.1 ms, so the drain runs well past the consumer's yield budget.
      const work = (): void => {
        const until = performance.now() + 0.1;
        while (performance.now() < until);
        handled++;
      };
      bus.registerAgent('drain', defineAgent({ name: 'drain', concurrency, handleMessage: work }));
      setImmediate(() => (handledWhenProbeRan = handled));
      await waitFor(() => handled === total, 'the backlog drained');
      expect(handledWhenProbeRan).toBeGreaterThanOrEqual(0);
      expect(handledWhenProbeRan).toBeLessThan(total);
    }
  });
});

describe('MessageBus: agents and replies', () => {
  it('turns a TASK handler’s return value into a RESULT for the sender agent, keeping correlation and trace', async () => {
    const bus = newBus();
    const results: Message[] = [];
    bus.registerAgent('planner', defineAgent({ name: 'planner', handleMessage: (m) => void results.push(m) }));
    bus.registerAgent('worker', defineAgent({ name: 'worker', handleMessage: (m) => ({ done: m.payload['job'] }) }));
    const sent = await bus.send({
      sender: 'planner',
      recipient: 'worker',
      type: MessageType.TASK,
      payload: { job: 7 },
      correlationId: 'conv-9',
    });
    await waitFor(() => results.length === 1, 'the RESULT');
    const [r] = results as [Message];
    expect(r).toMatchObject({
      type: MessageType.RESULT,
      sender: 'worker',
      recipient: 'planner',
      payload: { done: 7 },
      correlationId: 'conv-9',
    });
    expect(r.headers['inReplyTo']).toBe(sent.id);
    expect(traceIdOf(r.headers['traceparent'])).toBe(traceIdOf(sent.headers['traceparent']));
    expect(r.headers['traceparent']).not.toBe(sent.headers['traceparent']);
  });

  it('wraps a non-object return value as { value }, and sends nothing for undefined or non-TASK messages', async () => {
    const bus = newBus();
    const results: Message[] = [];
    bus.registerAgent('planner', defineAgent({ name: 'planner', handleMessage: (m) => void results.push(m) }));
    bus.registerAgent(
      'answers',
      defineAgent({ name: 'answers', handleMessage: (m) => (m.payload['give'] === 'nothing' ? undefined : 42) }),
    );
    await bus.send({ sender: 'planner', recipient: 'answers', type: MessageType.TASK, payload: {} });
    await bus.send({ sender: 'planner', recipient: 'answers', type: MessageType.TASK, payload: { give: 'nothing' } });
    await bus.send({ sender: 'planner', recipient: 'answers', type: MessageType.STATUS, payload: {} });
    await waitFor(() => bus.metrics().messagesAcked === 4, 'three deliveries and the result acked');
    expect(results.map((r) => r.payload)).toEqual([{ value: 42 }]);
  });

  it('replies ERROR to the sender after the last failed attempt', async () => {
    const bus = newBus({ maxAttempts: 2 });
    const errors: Message[] = [];
    bus.registerAgent('planner', defineAgent({ name: 'planner', handleMessage: (m) => void errors.push(m) }));
    bus.registerAgent(
      'broken',
      defineAgent({
        name: 'broken',
        handleMessage() {
          throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
        },
      }),
    );
    await bus.send({ sender: 'planner', recipient: 'broken', type: MessageType.TASK, payload: {} });
    await waitFor(() => errors.length === 1, 'the ERROR reply');
    expect(errors[0]).toMatchObject({
      type: MessageType.ERROR,
      payload: { message: 'disk full', name: 'Error', code: 'ENOSPC', attempts: 2 },
    });
  });

  it('does not reply automatically to a sender that is no agent, and counts it', async () => {
    const bus = newBus();
    bus.registerAgent('worker', defineAgent({ name: 'worker', handleMessage: () => ({ ok: true }) }));
    await bus.send({ sender: 'script', recipient: 'worker', type: MessageType.TASK, payload: {} });
    await waitFor(() => bus.metrics().unroutableReplies === 1, 'the unroutable reply counted');
    expect(await bus.getDeadLetters()).toEqual([]);
    expect(bus.metrics().messagesAcked).toBe(1);
  });

  it('gives handlers a context: send continues trace and conversation, reply suppresses the automatic one', async () => {
    const bus = newBus();
    const downstream: Message[] = [];
    const replies: Message[] = [];
    let ctxSeen: AgentContext | undefined;
    bus.registerAgent('sink', defineAgent({ name: 'sink', handleMessage: (m) => void downstream.push(m) }));
    bus.registerAgent('asker', defineAgent({ name: 'asker', handleMessage: (m) => void replies.push(m) }));
    bus.registerAgent(
      'middle',
      defineAgent({
        name: 'middle',
        async handleMessage(m, ctx) {
          ctxSeen = ctx;
          expect(ctx.agent).toBe('middle');
          expect(ctx.message).toBe(m);
          expect(ctx.signal.aborted).toBe(false);
          expect(await ctx.extendLease(30_000)).toBe(true);
          ctx.log.info('working');
          await ctx.send({ recipient: 'sink', type: MessageType.TASK, payload: { forwarded: true } });
          await ctx.reply({ by: 'hand' });
          return { automatic: true };
        },
      }),
    );
    const sent = await bus.send({ sender: 'asker', recipient: 'middle', type: MessageType.TASK, payload: {} });
    await waitFor(() => downstream.length === 1 && replies.length === 1, 'the forward and the reply');
    await waitFor(() => bus.metrics().messagesAcked >= 3, 'everything acked');
    expect(replies.map((r) => r.payload)).toEqual([{ by: 'hand' }]);
    const [fwd] = downstream as [Message];
    expect(fwd).toMatchObject({ sender: 'middle', correlationId: sent.id });
    expect(traceIdOf(fwd.headers['traceparent'])).toBe(traceIdOf(sent.headers['traceparent']));
    expect(ctxSeen?.state).toBeUndefined();
  });

  it('reply() to a request without inbox whose sender is no agent throws RecipientNotFoundError', async () => {
    const bus = newBus();
    bus.registerAgent('w');
    await bus.send({ sender: 'ghost', recipient: 'w', type: MessageType.TASK, payload: {} });
    const d = await bus.receive('w');
    await expect(bus.reply(d!, { ok: true })).rejects.toBeInstanceOf(RecipientNotFoundError);
    await expect(bus.reply(null as never, {})).rejects.toBeInstanceOf(ValidationError);
  });

  it('answers pull-mode requests with reply(), and ERROR replies reject with RemoteError', async () => {
    const bus = newBus();
    bus.registerAgent('manual');
    const ok = bus.request({ sender: 'me', recipient: 'manual', payload: { q: 1 }, timeout: 5_000 });
    const failing = bus.request({ sender: 'me', recipient: 'manual', payload: { q: 2 }, timeout: 5_000 });
    const first = await bus.receive('manual', { timeout: 1_000 });
    const second = await bus.receive('manual', { timeout: 1_000 });
    const r1 = await bus.reply(first!, { a: 1 });
    await bus.reply(second!, { message: 'cannot' }, { type: MessageType.ERROR });
    await first!.ack();
    await second!.ack();
    const reply = await ok;
    expect(reply.id).toBe(r1.id);
    expect(reply.correlationId).toBe(first!.id);
    const err = (await failing.catch((e: unknown) => e)) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.message).toContain('cannot');
    expect(err.requestId).toBe(second!.id);
  });

  it('acks and counts a reply that comes after its request timed out', async () => {
    const bus = newBus();
    bus.registerAgent('late');
    const err = await bus.request({ sender: 'me', recipient: 'late', payload: {}, timeout: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RequestTimeoutError);
    const d = await bus.receive('late');
    await bus.reply(d!, { sorry: true });
    await waitFor(() => bus.metrics().lateReplies === 1, 'the late reply counted');
  });

  it('refuses a request without recipient or with a bad timeout', async () => {
    const bus = newBus();
    await expect(bus.request({ sender: 'me', recipient: '', payload: {} })).rejects.toBeInstanceOf(ValidationError);
    await expect(bus.request({ sender: 'me', recipient: 'x', payload: {}, timeout: 0 })).rejects.toThrow(
      'timeout must be a finite number > 0',
    );
    await expect(bus.request({ sender: 'me', recipient: 'nobody', payload: {} })).rejects.toBeInstanceOf(RecipientNotFoundError);
    expect(bus.metrics().pendingRequests).toBe(0);
  });

  it('a FEEDBACK request is answered like a TASK: the return value comes back as its RESULT, a throw as ERROR', async () => {
    const bus = newBus({ maxAttempts: 1 });
    const seen: string[] = [];
    bus.registerAgent(
      'writer',
      defineAgent({
        name: 'writer',
        handleMessage(msg) {
          seen.push(msg.type);
          if ((msg.payload as { fail?: boolean }).fail) throw new Error('cannot revise that');
          return { revised: true };
        },
      }),
    );
    const reply = await bus.request({
      sender: 'editor',
      recipient: 'writer',
      type: MessageType.FEEDBACK,
      payload: { problems: ['too long'] },
    });
    expect(reply.type).toBe(MessageType.RESULT);
    expect(reply.payload).toEqual({ revised: true });
    const err = await bus
      .request({ sender: 'editor', recipient: 'writer', type: MessageType.FEEDBACK, payload: { fail: true } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(seen).toEqual(['feedback', 'feedback']);
  });

  it('FEEDBACK sent with send() asks for nothing back: no automatic reply', async () => {
    const bus = newBus();
    const writer = defineAgent({ name: 'writer', handleMessage: () => ({ revised: true }) });
    bus.registerAgent('writer', writer);
    bus.registerAgent('editor');
    await bus.send({ sender: 'editor', recipient: 'writer', type: MessageType.FEEDBACK, payload: { problems: [] } });
    await waitFor(() => bus.metrics().messagesAcked === 1, 'the feedback handled');
    expect(await bus.receive('editor')).toBeNull();
    expect(bus.metrics().messagesSent).toBe(1);
  });

  it('a request must be a TASK or a FEEDBACK', async () => {
    const bus = newBus();
    bus.registerAgent('x');
    await expect(
      bus.request({ sender: 'me', recipient: 'x', payload: {}, type: MessageType.STATUS as unknown as typeof MessageType.TASK }),
    ).rejects.toThrow('request type must be `task` or `feedback`, got `status`');
    expect(bus.metrics().pendingRequests).toBe(0);
  });

  it('keeps every request rule once the inbox runs (the synchronous path): ids, correlation, trace, unknown recipients, duplicates', async () => {
    const bus = newBus();
    bus.registerAgent('echo', defineAgent({ name: 'echo', handleMessage: (m: Message) => ({ echoed: m.payload }) }));
    bus.registerAgent('puller');
    await bus.request({ sender: 'me', recipient: 'echo', payload: { warm: true } }); // starts the inbox
    const reply = await bus.request({ sender: 'me', recipient: 'echo', payload: { n: 1 }, headers: { tenant: 't1' } });
    expect(reply.payload).toEqual({ echoed: { n: 1 } });
    expect(reply.correlationId).toBe(reply.headers['inReplyTo']);
    await expect(bus.request({ sender: 'me', recipient: 'nobody', payload: {} })).rejects.toBeInstanceOf(RecipientNotFoundError);
    await expect(
      bus.request({ sender: 'me', recipient: 'echo', payload: {}, headers: { bad: 1 as unknown as string } }),
    ).rejects.toBeInstanceOf(ValidationError);
    const first = bus.request({ sender: 'me', recipient: 'puller', payload: {}, id: 'req-1' });
    await expect(bus.request({ sender: 'me', recipient: 'puller', payload: {}, id: 'req-1' })).rejects.toThrow(
      'already waiting for its reply',
    );
    const d = await bus.receive('puller', { timeout: 5_000 });
    expect(d).toMatchObject({ id: 'req-1', correlationId: 'req-1', headers: { replyTo: expect.stringMatching(/^_inbox\./) } });
    await bus.reply(d!, { ok: true });
    await d!.ack();
    const answered = await first;
    expect(answered.payload).toEqual({ ok: true });
    expect(traceIdOf(answered.headers['traceparent'])).toBe(traceIdOf(d!.headers['traceparent']));
    expect(bus.metrics().pendingRequests).toBe(0);
  });

  it('settles a pull delivery once', async () => {
    const bus = newBus();
    bus.registerAgent('w');
    await bus.send(task('w'));
    const d = await bus.receive('w');
    expect(d!.leaseDeadline).toBeGreaterThan(Date.now());
    await expect(d!.nack(undefined, { delayMs: -1 })).rejects.toBeInstanceOf(ValidationError);
    expect(await d!.extendLease(10_000)).toBe(true);
    expect(await d!.ack()).toBe(true);
    expect(await d!.ack()).toBe(false);
    expect(await d!.nack()).toBe(false);
    expect(await d!.extendLease(1_000)).toBe(false);
  });
});

describe('MessageBus: observability', () => {
  it('logs every message with id, type, sender, recipient and correlationId', async () => {
    const { logger, lines } = captureLogger('debug');
    const bus = newBus({ logger });
    bus.registerAgent('echo', defineAgent({ name: 'echo', handleMessage: (m) => m.payload }));
    const reply = await bus.request({ sender: 'me', recipient: 'echo', payload: { a: 1 }, correlationId: 'c-7' });
    const sent = lines.filter((l) => l['msg'] === 'message sent');
    expect(sent).toHaveLength(2);
    expect(sent[0]).toMatchObject({ type: 'task', sender: 'me', recipient: 'echo', correlationId: 'c-7' });
    expect(sent[1]).toMatchObject({ id: reply.id, type: 'result', sender: 'echo', recipient: 'me', correlationId: 'c-7' });
    expect(lines.some((l) => l['msg'] === 'message delivered' && l['agent'] === 'echo')).toBe(true);
    for (const l of sent) expect(l['traceparent']).toMatch(/^00-/);
  });

  it('builds no debug lines when the level is above debug', async () => {
    const { logger, lines } = captureLogger('info');
    const bus = newBus({ logger });
    bus.registerAgent('w');
    await bus.send(task('w'));
    await expect(bus.send(task('nobody'))).rejects.toBeInstanceOf(RecipientNotFoundError);
    expect(lines.map((l) => l['msg'])).toEqual(['message dead-lettered: no such recipient']);
  });

  it('reports counters, latency percentiles, and per-agent depth and in-flight', async () => {
    const bus = newBus({ maxAttempts: 1 });
    bus.registerAgent('pull');
    bus.registerAgent('bad', defineAgent({ name: 'bad', handleMessage: () => Promise.reject(new Error('x')) }));
    for (let i = 0; i < 4; i++) await bus.send(task('pull'));
    await bus.send({ sender: 'pull', recipient: 'bad', type: MessageType.STATUS, payload: {} });
    await waitFor(() => bus.metrics().deadLetters === 1, 'the failure dead-lettered');
    const d = await bus.receive('pull');
    const m = bus.metrics();
    expect(m).toMatchObject({ messagesSent: 5, messagesReceived: 2, errors: 1, deadLetters: 1, pendingRequests: 0 });
    expect(m.agents['pull']).toEqual({ queueDepth: 3, ready: 3, delayed: 0, inFlight: 1, handling: 0 });
    expect(m.agents['bad']).toMatchObject({ queueDepth: 0, inFlight: 0 });
    expect(m.averageLatencyMs).toBeGreaterThanOrEqual(0);
    expect(m.latencyMs.p50).toBeLessThanOrEqual(m.latencyMs.p95);
    expect(m.latencyMs.p95).toBeLessThanOrEqual(m.latencyMs.p99);
    await d!.ack();
    expect(bus.metrics().messagesAcked).toBe(1);
  });
});

describe('MessageBus: close', () => {
  it('rejects waiting requests, refuses new work, and is idempotent', async () => {
    const bus = newBus();
    bus.registerAgent('silent');
    const pending = bus.request({ sender: 'me', recipient: 'silent', payload: {}, timeout: 30_000 });
    await waitFor(() => bus.metrics().pendingRequests === 1, 'the request to be waiting');
    const closing = bus.close();
    expect(bus.close()).toBe(closing);
    await closing;
    await expect(pending).rejects.toBeInstanceOf(ClosedError);
    await expect(bus.send(task('silent'))).rejects.toBeInstanceOf(ClosedError);
    await expect(bus.receive('silent')).rejects.toBeInstanceOf(ClosedError);
    await expect(bus.publish({ type: MessageType.STATUS, sender: 's', payload: {} })).rejects.toBeInstanceOf(ClosedError);
    expect(() => bus.subscribe('*', () => undefined)).toThrow(ClosedError);
  });

  it('ends a waiting receive with null', async () => {
    const bus = newBus();
    bus.registerAgent('w');
    const waiting = bus.receive('w', { timeout: 30_000 });
    await bus.close();
    expect(await waiting).toBeNull();
  });

  it('aborts handler signals when the drain timeout passes', async () => {
    const bus = newBus();
    let aborted = false;
    let started = false;
    bus.registerAgent(
      'stubborn',
      defineAgent({
        name: 'stubborn',
        async handleMessage(_m, ctx) {
          started = true;
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
          aborted = true;
        },
      }),
    );
    await bus.send(task('stubborn'));
    await waitFor(() => started, 'the handler to start');
    await bus.close({ drainTimeoutMs: 50 });
    await waitFor(() => aborted, 'the signal to abort');
  });
});

describe('CommunicationProtocol', () => {
  it('requestResponse resolves with the reply payload', async () => {
    const bus = newBus();
    bus.registerAgent(
      'calc',
      defineAgent({ name: 'calc', handleMessage: (m) => ({ sum: (m.payload['a'] as number) + (m.payload['b'] as number) }) }),
    );
    expect(await CommunicationProtocol.requestResponse(bus, 'me', 'calc', { a: 2, b: 3 }, { timeout: 5_000 })).toEqual({ sum: 5 });
  });

  it('broadcast sends a CONTROL message to each recipient', async () => {
    const bus = newBus();
    const got: Message[] = [];
    for (const name of ['a', 'b', 'c']) bus.registerAgent(name, defineAgent({ name, handleMessage: (m) => void got.push(m) }));
    const sent = await CommunicationProtocol.broadcast(bus, 'boss', ['a', 'b', 'c'], { command: 'pause' });
    expect(sent.map((m) => m.recipient)).toEqual(['a', 'b', 'c']);
    await waitFor(() => got.length === 3, 'three deliveries');
    expect(got.every((m) => m.type === MessageType.CONTROL && m.payload['command'] === 'pause')).toBe(true);
    await expect(CommunicationProtocol.broadcast(bus, 'boss', ['a', 'zzz'], {})).rejects.toBeInstanceOf(RecipientNotFoundError);
    await expect(CommunicationProtocol.broadcast(bus, 'boss', 'a' as never, {})).rejects.toBeInstanceOf(ValidationError);
  });

  it('publishSubscribe publishes a STATUS on a topic', async () => {
    const bus = newBus();
    const got: Message[] = [];
    bus.subscribe('progress', (m) => void got.push(m));
    const m = await CommunicationProtocol.publishSubscribe(bus, 'progress', { pct: 10 });
    await waitFor(() => got.length === 1, 'the publication');
    expect(got[0]).toMatchObject({ id: m.id, type: MessageType.STATUS, recipient: '', sender: 'concord', payload: { pct: 10 } });
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ClosedError, ValidationError } from '../src/errors.js';
import { MemoryTransport } from '../src/backends/memory/transport.js';
import { resolveTransport } from '../src/connect.js';
import { MessageType, createMessage, type Message } from '../src/message.js';
import type { EnqueueEntry, EnqueueResult, Lease } from '../src/bus/transport.js';
import { waitFor } from './helpers/services.js';

const transports: MemoryTransport[] = [];
function open(): MemoryTransport {
  const t = new MemoryTransport();
  transports.push(t);
  return t;
}
afterEach(async () => {
  await Promise.all(transports.splice(0).map((t) => t.close()));
});

const msg = (priority = 5, n = 0): Message =>
  createMessage({ sender: 's', recipient: 'q', type: MessageType.TASK, payload: { n }, priority });
/** `lease` of what is visible now: the memory transport answers that synchronously. */
function leaseNow(t: MemoryTransport, queue: string, options: { leaseMs: number; waitMs: 0; max?: number }): Lease[] {
  const answer = t.lease(queue, options);
  if (!Array.isArray(answer)) throw new Error('expected a synchronous answer');
  return answer;
}
/** `enqueue`, which the memory transport answers synchronously. */
function enqueueNow(t: MemoryTransport, entries: EnqueueEntry[]): EnqueueResult[] {
  const answer = t.enqueue(entries);
  if (!Array.isArray(answer)) throw new Error('expected a synchronous answer');
  return answer;
}
const enqueueOne = (t: MemoryTransport, e: EnqueueEntry) => enqueueNow(t, [e])[0] as EnqueueResult;
const entry = (message: Message, over: Partial<EnqueueEntry> = {}): EnqueueEntry => ({
  queue: 'q',
  message,
  visibleAt: Date.now(),
  requireRecipient: false,
  dedupeWindowMs: 0,
  ...over,
});

function timers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

describe('MemoryTransport', () => {
  it('is what memory:// resolves to', async () => {
    const t = await resolveTransport('memory://');
    expect(t).toBeInstanceOf(MemoryTransport);
    expect(t.kind).toBe('memory');
    expect(t.url).toBe('memory://');
    await t.close();
  });

  it('keeps priority order over a deep random backlog', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 10 }), { minLength: 1, maxLength: 3_000 }), (prios) => {
        const t = new MemoryTransport();
        const ms = prios.map((p, n) => msg(p, n));
        enqueueNow(
          t,
          ms.map((m) => entry(m)),
        );
        const out = leaseNow(t, 'q', { leaseMs: 10_000, waitMs: 0, max: prios.length });
        const expected = ms.map((m, n) => ({ m, n })).sort((a, b) => b.m.priority - a.m.priority || a.n - b.n);
        expect(out.map((l) => l.message.id)).toEqual(expected.map(({ m }) => m.id));
        void t.close();
      }),
      { numRuns: 20 },
    );
  });

  it('hands each delivery its own copy of the message with its attempt, sharing the payload', async () => {
    const t = open();
    const m = msg();
    enqueueNow(t, [entry(m)]);
    const [first] = leaseNow(t, 'q', { leaseMs: 10_000, waitMs: 0 });
    expect(first?.message).not.toBe(m);
    expect(first?.message.payload).toBe(m.payload);
    expect(m.attempt).toBe(0);
    await t.requeue(first as Lease, { delayMs: 0 });
    const [second] = leaseNow(t, 'q', { leaseMs: 10_000, waitMs: 0 });
    expect(first?.message.attempt).toBe(1);
    expect(second?.message.attempt).toBe(2);
  });

  it('accepts a copied lease object, found by its token', async () => {
    const t = open();
    enqueueNow(t, [entry(msg())]);
    const [lease] = leaseNow(t, 'q', { leaseMs: 10_000, waitMs: 0 });
    const copy: Lease = { queue: lease!.queue, message: lease!.message, token: lease!.token, deadline: lease!.deadline };
    expect(await t.extendLease(copy, 20_000)).toBe(true);
    expect(await t.ack(copy)).toBe(true);
    expect(await t.ack(lease as Lease)).toBe(false);
  });

  it('answers enqueue, lease, ack and depth synchronously', async () => {
    const t = open();
    expect(enqueueNow(t, [entry(msg(1)), entry(msg(9))]).map((r) => r.status)).toEqual(['enqueued', 'enqueued']);
    expect(t.depth('q')).toEqual({ ready: 2, delayed: 0, inFlight: 0 });
    const [l] = leaseNow(t, 'q', { leaseMs: 10_000, waitMs: 0 });
    expect(l?.message.priority).toBe(9);
    expect(t.ack(l as Lease)).toBe(true);
    expect(t.ack(l as Lease)).toBe(false);
    expect(await t.depth('q')).toEqual({ ready: 1, delayed: 0, inFlight: 0 });
    expect(leaseNow(t, 'unknown', { leaseMs: 10_000, waitMs: 0 })).toEqual([]);
  });

  it('keeps the enqueue rules (priority, dedupe, recipients, delay) for single entries', async () => {
    const t = open();
    await t.addRecipient('q');
    const low = msg(1);
    const high = msg(9);
    expect(enqueueOne(t, entry(low, { requireRecipient: true })).status).toBe('enqueued');
    expect(enqueueOne(t, entry(high, { requireRecipient: true, dedupeWindowMs: 60_000 })).status).toBe('enqueued');
    expect(enqueueOne(t, entry(high, { requireRecipient: true, dedupeWindowMs: 60_000 }))).toEqual({ status: 'duplicate', original: high });
    expect(enqueueOne(t, entry(msg(), { queue: 'nobody', requireRecipient: true })).status).toBe('no_recipient');
    expect(enqueueOne(t, entry(msg(), { visibleAt: Date.now() + 60_000 })).status).toBe('enqueued');
    expect(t.depth('q')).toEqual({ ready: 2, delayed: 1, inFlight: 0 });
    const first = leaseNow(t, 'q', { leaseMs: 10_000, waitMs: 0 })[0];
    expect(first?.message).toMatchObject({ id: high.id, attempt: 1 });
    expect(leaseNow(t, 'q', { leaseMs: 10_000, waitMs: 0 })[0]?.message.id).toBe(low.id);
    expect(leaseNow(t, 'q', { leaseMs: 10_000, waitMs: 0 })[0]).toBeUndefined();
    expect(leaseNow(t, 'unknown', { leaseMs: 10_000, waitMs: 0 })[0]).toBeUndefined();
    await expect(t.lease('q', { leaseMs: 0, waitMs: 0 })).rejects.toBeInstanceOf(ValidationError);
    expect(t.ack(first as Lease)).toBe(true);
    expect(await t.hasRecipient('q')).toBe(true);
    await t.removeRecipient('q');
    expect(await t.hasRecipient('q')).toBe(false);
    expect(enqueueOne(t, entry(msg(), { requireRecipient: true })).status).toBe('no_recipient');
  });

  it('loses a lease past its deadline: the ack fails and the next lease is attempt 2', async () => {
    const t = open();
    enqueueNow(t, [entry(msg())]);
    const [lease] = leaseNow(t, 'q', { leaseMs: 5, waitMs: 0 });
    expect(lease?.deadline).toBeGreaterThan(Date.now() - 1);
    await waitFor(() => Date.now() > (lease as Lease).deadline, 'the lease to run out', 2_000);
    expect(t.ack(lease as Lease)).toBe(false); // ran out: visible again, with attempt 2 next
    const [again] = leaseNow(t, 'q', { leaseMs: 10_000, waitMs: 0 });
    expect(again?.message.attempt).toBe(2);
    expect(t.ack(again as Lease)).toBe(true);
  });

  it('hands out leases that serialise as plain data', () => {
    const t = open();
    const m = msg();
    enqueueNow(t, [entry(m)]);
    const lease = leaseNow(t, 'q', { leaseMs: 10_000, waitMs: 0 })[0] as Lease;
    const data = JSON.parse(JSON.stringify(lease)) as Record<string, unknown>;
    expect(Object.keys(data).sort()).toEqual(['deadline', 'message', 'queue', 'token']);
    expect(data).toMatchObject({ queue: 'q', token: lease.token, deadline: lease.deadline });
  });

  it('ends a later, shorter wait on time although an earlier wait left the queue timer set for later', async () => {
    const t = open();
    const first = t.lease('q', { leaseMs: 1_000, waitMs: 60_000 });
    enqueueNow(t, [entry(msg())]);
    expect(await first).toHaveLength(1);
    // Ends (with nothing) long before the test's own timeout, not when the old timer fires.
    expect(await t.lease('q', { leaseMs: 1_000, waitMs: 40 })).toEqual([]);
  });

  it('ends the waits of one signal on every queue when it aborts, and only those', async () => {
    const t = open();
    const controller = new AbortController();
    const a = t.lease('a', { leaseMs: 1_000, waitMs: 60_000, signal: controller.signal });
    const b = t.lease('b', { leaseMs: 1_000, waitMs: 60_000, signal: controller.signal });
    const other = t.lease('a', { leaseMs: 1_000, waitMs: 60_000, signal: new AbortController().signal });
    controller.abort();
    expect(await a).toEqual([]);
    expect(await b).toEqual([]);
    enqueueNow(t, [entry(msg(), { queue: 'a' })]);
    expect(await other).toHaveLength(1);
  });

  it('forgets a dedupe record once its window passed', async () => {
    const t = open();
    const m = msg();
    enqueueNow(t, [entry(m, { dedupeWindowMs: 30 })]);
    expect(enqueueNow(t, [entry(m, { dedupeWindowMs: 30 })])[0]?.status).toBe('duplicate');
    await waitFor(() => enqueueNow(t, [entry(m, { dedupeWindowMs: 30 })])[0]?.status === 'enqueued', 'the window to pass');
    expect(t.depth('q').ready).toBe(2);
  });

  it('refuses bad lease options with ValidationError', async () => {
    const t = open();
    await expect(t.lease('q', { leaseMs: 0, waitMs: 0 })).rejects.toBeInstanceOf(ValidationError);
    await expect(t.lease('q', { leaseMs: 100, waitMs: -1 })).rejects.toBeInstanceOf(ValidationError);
    await expect(t.lease('q', { leaseMs: 100, waitMs: 0, max: 0 })).rejects.toBeInstanceOf(ValidationError);
    await expect(t.lease('q', { leaseMs: -5, waitMs: 0 })).rejects.toBeInstanceOf(ValidationError);
    await expect(t.addRecipient('')).rejects.toBeInstanceOf(ValidationError);
  });

  it('isolates subscribers: one throwing does not stop the others; the same handler twice gets it twice', async () => {
    const t = open();
    const got: string[] = [];
    const handler = (m: Message): void => void got.push(m.id);
    await t.subscribe('x', () => {
      throw new Error('bad subscriber');
    });
    const offA = await t.subscribe('x', handler);
    await t.subscribe('x', handler);
    const m = msg();
    await t.publish('x', m);
    await waitFor(() => got.length === 2, 'two deliveries');
    await offA();
    await t.publish('x', m);
    await waitFor(() => got.length === 3, 'one more delivery');
  });

  it('delivers a publication on * once to * subscribers', async () => {
    const t = open();
    const got: string[] = [];
    await t.subscribe('*', (m) => void got.push(m.id));
    const m = msg();
    await t.publish('*', m);
    await t.publish('task', m);
    await waitFor(() => got.length === 2, 'two deliveries');
    await t.publish('other', msg());
    await waitFor(() => got.length === 3, 'a third');
  });

  it('holds a timer only while a consumer waits', async () => {
    const t = open();
    const before = timers();
    enqueueNow(t, [entry(msg(), { visibleAt: Date.now() + 60_000 })]);
    expect(timers()).toBe(before);
    const controller = new AbortController();
    const waiting = t.lease('q', { leaseMs: 1_000, waitMs: 30_000, signal: controller.signal });
    expect(timers()).toBe(before + 1);
    controller.abort();
    expect(await waiting).toEqual([]);
    expect(timers()).toBe(before);
  });

  it('serves waiting consumers in arrival order', async () => {
    const t = open();
    const first = t.lease('q', { leaseMs: 1_000, waitMs: 10_000 });
    const second = t.lease('q', { leaseMs: 1_000, waitMs: 10_000 });
    const [a, b] = [msg(5, 1), msg(5, 2)];
    enqueueNow(t, [entry(a!)]);
    enqueueNow(t, [entry(b!)]);
    expect((await first)[0]?.message.id).toBe(a!.id);
    expect((await second)[0]?.message.id).toBe(b!.id);
  });

  it('refuses work after close with ClosedError, and closing twice is fine', async () => {
    const t = open();
    await t.close();
    await t.close();
    await expect(t.enqueue([entry(msg())])).rejects.toBeInstanceOf(ClosedError);
    await expect(t.connect()).rejects.toBeInstanceOf(ClosedError);
    await expect(t.listDeadLetters()).rejects.toBeInstanceOf(ClosedError);
    expect(await t.lease('q', { leaseMs: 100, waitMs: 1_000 })).toEqual([]);
  });
});

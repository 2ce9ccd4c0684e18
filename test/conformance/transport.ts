/**
 * The Transport conformance suite: every message backend runs it to prove the contract.
 *
 * It talks to the backend only through the `Transport` port and `MessageBus`, so it knows no
 * backend internals. Waits are conditions with deadlines (`waitFor`), never sleeps for luck;
 * lease times are short (100–300 ms) so it runs fast against networked backends too.
 *
 * @example
 * runTransportConformance('memory', {
 *   async setup() {
 *     const transport = new MemoryTransport();
 *     return { connect: async () => transport, teardown: () => transport.close() };
 *   },
 * });
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClosedError, ConcordError, RecipientNotFoundError, RemoteError, RequestTimeoutError, ValidationError } from '../../src/errors.js';
import { MessageType, createMessage, encodeMessage, type Message, type MessageInput } from '../../src/message.js';
import type { DeadLetter, EnqueueEntry, Lease, LeaseWaiter, Transport } from '../../src/bus/transport.js';
import { MessageBus, type MessageBusOptions } from '../../src/bus/index.js';
import { defineAgent, type AgentContext } from '../../src/bus/agent.js';
import { waitFor } from '../helpers/services.js';

/** Makes isolated spaces (a fresh namespace each) on one backend. */
export interface TransportFactory {
  /**
   * Creates a fresh, empty space. `connect()` returns a transport onto that same space (for memory,
   * the same instance; for a server, a new connection: a second "process"); `teardown()` removes
   * the space and closes every transport `connect()` returned.
   */
  setup(): Promise<{ connect(): Promise<Transport>; teardown(): Promise<void> }>;
}

/** A gate a test opens when it wants a handler to continue. */
function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

/**
 * `t` with some methods replaced (fault injection): the rest are `t`'s own, bound to it, so a
 * transport's private fields keep working.
 */
function withOverrides(t: Transport, overrides: Partial<Transport>): Transport {
  return new Proxy(t, {
    get(target, prop) {
      if (Object.hasOwn(overrides, prop)) return (overrides as Record<string | symbol, unknown>)[prop];
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

const LEASE_MS = 200;
const FAST_BACKOFF = { initialMs: 5, factor: 2, maxMs: 40, jitter: 0 };

export function runTransportConformance(name: string, factory: TransportFactory): void {
  describe(`Transport conformance: ${name}`, () => {
    let space: { connect(): Promise<Transport>; teardown(): Promise<void> };
    let buses: MessageBus[] = [];

    beforeEach(async () => {
      space = await factory.setup();
      buses = [];
    });

    afterEach(async () => {
      await Promise.allSettled(buses.map((b) => b.close({ drainTimeoutMs: 500 })));
      await space.teardown();
    });

    /** A bus on its own connection to the test's space (another "process"). */
    async function newBus(options: Omit<MessageBusOptions, 'transport'> = {}): Promise<MessageBus> {
      const bus = new MessageBus({ backoff: FAST_BACKOFF, ...options, transport: await space.connect() });
      buses.push(bus);
      return bus;
    }

    const msg = (over: Partial<MessageInput> = {}): Message =>
      createMessage({ sender: 'producer', recipient: 'q', type: MessageType.TASK, payload: { n: 0 }, ...over });
    const entry = (message: Message, over: Partial<EnqueueEntry> = {}): EnqueueEntry => ({
      queue: message.recipient,
      message,
      visibleAt: Date.now(),
      requireRecipient: false,
      dedupeWindowMs: 0,
      ...over,
    });

    // ============================================================================ primitives

    describe('primitives', () => {
      it('leases the highest priority first and equal priorities in enqueue order', async () => {
        const t = await space.connect();
        const prios = [3, 7, 7, 0, 10, 3, 5, 7, 10, 0, 5, 3];
        const messages = prios.map((priority, n) => msg({ priority, payload: { n } }));
        await t.enqueue(messages.map((m) => entry(m)));
        const leased: Lease[] = [];
        for (;;) {
          const batch = await t.lease('q', { leaseMs: 5_000, waitMs: 0, max: 5 });
          if (batch.length === 0) break;
          expect(batch.length).toBeLessThanOrEqual(5);
          leased.push(...batch);
        }
        const expected = messages
          .map((m, n) => ({ m, n }))
          .sort((a, b) => b.m.priority - a.m.priority || a.n - b.n)
          .map(({ m }) => m.id);
        expect(leased.map((l) => l.message.id)).toEqual(expected);
      });

      it('carries every field of a message intact and sets attempt on lease', async () => {
        const t = await space.connect();
        const m = msg({
          priority: 8,
          correlationId: 'c-1',
          headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', x: 'y' },
          ttlMs: 60_000,
          payload: { deep: { list: [1, 'two', null] } },
        });
        await t.enqueue([entry(m)]);
        const [lease] = await t.lease('q', { leaseMs: 5_000, waitMs: 0 });
        expect(lease?.message).toEqual({ ...m, attempt: 1 });
        expect(lease?.queue).toBe('q');
        expect(typeof lease?.token).toBe('string');
      });

      it('refuses requireRecipient entries for unknown queues and knows recipients', async () => {
        const t = await space.connect();
        expect(await t.hasRecipient('agent-a')).toBe(false);
        const [missing] = await t.enqueue([entry(msg({ recipient: 'agent-a' }), { requireRecipient: true })]);
        expect(missing).toEqual({ status: 'no_recipient' });
        expect(await t.depth('agent-a')).toEqual({ ready: 0, delayed: 0, inFlight: 0 });
        await t.addRecipient('agent-a');
        const other = await space.connect();
        expect(await other.hasRecipient('agent-a')).toBe(true);
        const [ok] = await other.enqueue([entry(msg({ recipient: 'agent-a' }), { requireRecipient: true })]);
        expect(ok).toEqual({ status: 'enqueued' });
        await t.removeRecipient('agent-a');
        expect(await other.hasRecipient('agent-a')).toBe(false);
      });

      it('drops a duplicate id inside the dedupe window and returns the first message', async () => {
        const t = await space.connect();
        const first = msg({ id: 'dup-1', payload: { v: 1 } });
        const again = msg({ id: 'dup-1', payload: { v: 2 } });
        const results = await t.enqueue([entry(first, { dedupeWindowMs: 60_000 }), entry(again, { dedupeWindowMs: 60_000 })]);
        expect(results[0]).toEqual({ status: 'enqueued' });
        expect(results[1]?.status).toBe('duplicate');
        expect(results[1]?.status === 'duplicate' && results[1].original.payload).toEqual({ v: 1 });
        const [later] = await (await space.connect()).enqueue([entry(again, { dedupeWindowMs: 60_000 })]);
        expect(later?.status).toBe('duplicate');
        expect((await t.depth('q')).ready).toBe(1);
        const [undeduped] = await t.enqueue([entry(again)]);
        expect(undeduped).toEqual({ status: 'enqueued' });
      });

      it('keeps a delayed message invisible until its time, then wakes a waiting consumer', async () => {
        const t = await space.connect();
        const m = msg();
        await t.enqueue([entry(m, { visibleAt: Date.now() + 150 })]);
        expect(await t.lease('q', { leaseMs: 5_000, waitMs: 0 })).toEqual([]);
        expect(await t.depth('q')).toEqual({ ready: 0, delayed: 1, inFlight: 0 });
        const [lease] = await t.lease('q', { leaseMs: 5_000, waitMs: 5_000 });
        expect(lease?.message.id).toBe(m.id);
      });

      it('wakes a waiting lease when a message arrives, and ends an empty wait with []', async () => {
        const t = await space.connect();
        const producer = await space.connect();
        const waiting = t.lease('q', { leaseMs: 5_000, waitMs: 10_000 });
        const m = msg();
        await producer.enqueue([entry(m)]);
        expect((await waiting).map((l) => l.message.id)).toEqual([m.id]);
        expect(await t.lease('q', { leaseMs: 5_000, waitMs: 50 })).toEqual([]);
      });

      it('a lease given a waiter answers at once when a message is visible, else through the waiter, once, never from inside a call', async () => {
        const t = await space.connect();
        const producer = await space.connect();
        let inside = false;
        let calledInside = false;
        let calls = 0;
        /** One lease call with a waiter: its answer, whichever way it comes. */
        const leaseWith = (waitMs: number): { answer: Promise<Lease[]>; atOnce: boolean } => {
          let atOnce = false;
          const answer = new Promise<Lease[]>((resolve, reject) => {
            const waiter: LeaseWaiter = {
              leased(leases) {
                calls++;
                if (inside) calledInside = true;
                resolve(leases);
              },
              failed(err) {
                calls++;
                reject(err);
              },
            };
            inside = true;
            const now = t.lease('q', { leaseMs: 5_000, waitMs, waiter });
            inside = false;
            if (now !== undefined) {
              atOnce = true;
              resolve(now);
            }
          });
          return { answer, atOnce };
        };
        const m1 = msg({ payload: { n: 1 } });
        await producer.enqueue([entry(m1)]);
        const first = leaseWith(10_000);
        expect((await first.answer).map((l) => l.message.id)).toEqual([m1.id]);
        // Nothing visible: the answer comes through the waiter, when the message does.
        const second = leaseWith(10_000);
        expect(second.atOnce).toBe(false);
        const m2 = msg({ payload: { n: 2 } });
        inside = true;
        const enqueued = producer.enqueue([entry(m2)]);
        inside = false;
        await enqueued;
        expect((await second.answer).map((l) => l.message.id)).toEqual([m2.id]);
        expect(calledInside).toBe(false);
        expect(calls).toBe(first.atOnce ? 1 : 2);
      });

      it('a waiting lease given a waiter ends with [] through it when its signal aborts, and on close', async () => {
        const t = await space.connect();
        const ended: Lease[][] = [];
        const controller = new AbortController();
        const waiter: LeaseWaiter = { leased: (leases) => void ended.push(leases), failed: (err) => void ended.push([err as Lease]) };
        expect(t.lease('q', { leaseMs: 5_000, waitMs: 30_000, signal: controller.signal, waiter })).toBeUndefined();
        controller.abort();
        await waitFor(() => ended.length === 1, 'the aborted wait to end');
        expect(ended).toEqual([[]]);
        expect(t.lease('q', { leaseMs: 5_000, waitMs: 30_000, waiter })).toBeUndefined();
        await t.close();
        await waitFor(() => ended.length === 2, 'the wait to end on close');
        expect(ended).toEqual([[], []]);
      });

      it('ends a waiting lease with [] when its signal aborts', async () => {
        const t = await space.connect();
        const controller = new AbortController();
        const waiting = t.lease('q', { leaseMs: 5_000, waitMs: 30_000, signal: controller.signal });
        controller.abort();
        expect(await waiting).toEqual([]);
      });

      it('acks once: a second ack of the same lease is refused', async () => {
        const t = await space.connect();
        await t.enqueue([entry(msg())]);
        const [lease] = await t.lease('q', { leaseMs: 5_000, waitMs: 0 });
        expect(await t.depth('q')).toEqual({ ready: 0, delayed: 0, inFlight: 1 });
        expect(await t.ack(lease as Lease)).toBe(true);
        expect(await t.ack(lease as Lease)).toBe(false);
        expect(await t.depth('q')).toEqual({ ready: 0, delayed: 0, inFlight: 0 });
      });

      it('enqueues and acks in one step (enqueueAndAck), and still enqueues when the lease was lost', async () => {
        const t = await space.connect();
        if (t.enqueueAndAck === undefined) return; // optional: the bus enqueues, then acks
        const request = msg();
        await t.enqueue([entry(request)]);
        const [lease] = await t.lease('q', { leaseMs: 5_000, waitMs: 0 });
        const reply = msg({ recipient: 'replies', payload: { n: 1 } });
        const done = await t.enqueueAndAck([entry(reply)], lease as Lease);
        expect(done).toEqual({ results: [{ status: 'enqueued' }], acked: true });
        expect(await t.depth('q')).toEqual({ ready: 0, delayed: 0, inFlight: 0 });
        const [got] = await t.lease('replies', { leaseMs: 5_000, waitMs: 0 });
        expect(got?.message).toEqual({ ...reply, attempt: 1 });
        // The same lease again: lost, but the entry is enqueued all the same (as enqueue then ack).
        const again = msg({ recipient: 'replies', payload: { n: 2 } });
        expect(await t.enqueueAndAck([entry(again)], lease as Lease)).toEqual({ results: [{ status: 'enqueued' }], acked: false });
        expect((await t.depth('replies')).ready).toBe(1);
        // Refusals are reported per entry; the ack does not depend on them.
        await t.enqueue([entry(msg({ payload: { n: 3 } }))]);
        const [third] = await t.lease('q', { leaseMs: 5_000, waitMs: 0 });
        const refused = await t.enqueueAndAck([entry(msg({ recipient: 'nobody' }), { requireRecipient: true })], third as Lease);
        expect(refused).toEqual({ results: [{ status: 'no_recipient' }], acked: true });
      });

      it('keeps acks and enqueues of the same tick apart in their results', async () => {
        const t = await space.connect();
        const ms = [msg({ payload: { n: 1 } }), msg({ payload: { n: 2 } })];
        await t.enqueue(ms.map((m) => entry(m)));
        const leases = await t.lease('q', { leaseMs: 5_000, waitMs: 0, max: 2 });
        const next = msg({ payload: { n: 3 } });
        // One tick: an enqueue and two acks (a networked transport may send them as one call).
        const [sent, ackA, ackB] = await Promise.all([t.enqueue([entry(next)]), t.ack(leases[0] as Lease), t.ack(leases[1] as Lease)]);
        expect(sent).toEqual([{ status: 'enqueued' }]);
        expect([ackA, ackB]).toEqual([true, true]);
        expect(await Promise.all([t.enqueue([entry(msg({ payload: { n: 4 } }))]), t.ack(leases[0] as Lease)])).toEqual([
          [{ status: 'enqueued' }],
          false,
        ]);
        const rest = await t.lease('q', { leaseMs: 5_000, waitMs: 0, max: 10 });
        expect(rest.map((l) => l.message.payload)).toEqual([{ n: 3 }, { n: 4 }]);
      });

      it('requeues a message into its original place, with attempt + 1 on the next lease', async () => {
        const t = await space.connect();
        const [a, b, c] = [msg({ payload: { n: 'a' } }), msg({ payload: { n: 'b' } }), msg({ payload: { n: 'c' } })] as [
          Message,
          Message,
          Message,
        ];
        await t.enqueue([entry(a), entry(b), entry(c)]);
        const [leaseA] = await t.lease('q', { leaseMs: 5_000, waitMs: 0 });
        expect(leaseA?.message.id).toBe(a.id);
        expect(await t.requeue(leaseA as Lease, { delayMs: 0 })).toBe(true);
        expect(await t.requeue(leaseA as Lease, { delayMs: 0 })).toBe(false);
        const all = await t.lease('q', { leaseMs: 5_000, waitMs: 0, max: 10 });
        expect(all.map((l) => l.message.id)).toEqual([a.id, b.id, c.id]);
        expect(all.map((l) => l.message.attempt)).toEqual([2, 1, 1]);
      });

      it('requeues with a delay: invisible until it passes', async () => {
        const t = await space.connect();
        await t.enqueue([entry(msg())]);
        const [lease] = await t.lease('q', { leaseMs: 5_000, waitMs: 0 });
        await t.requeue(lease as Lease, { delayMs: 150 });
        expect(await t.lease('q', { leaseMs: 5_000, waitMs: 0 })).toEqual([]);
        expect((await t.depth('q')).delayed).toBe(1);
        const [again] = await t.lease('q', { leaseMs: 5_000, waitMs: 5_000 });
        expect(again?.message.attempt).toBe(2);
      });

      it('redelivers a message whose lease ran out, with attempt + 1, and the old lease is lost', async () => {
        const t = await space.connect();
        const m = msg();
        await t.enqueue([entry(m)]);
        const [first] = await t.lease('q', { leaseMs: LEASE_MS, waitMs: 0 });
        expect(first?.message.attempt).toBe(1);
        const other = await space.connect();
        const [second] = await other.lease('q', { leaseMs: 5_000, waitMs: 5_000 });
        expect(second?.message.id).toBe(m.id);
        expect(second?.message.attempt).toBe(2);
        expect(await t.ack(first as Lease)).toBe(false);
        expect(await t.extendLease(first as Lease, 5_000)).toBe(false);
        expect(await other.ack(second as Lease)).toBe(true);
      });

      it('extends a lease so the message is not redelivered', async () => {
        const t = await space.connect();
        await t.enqueue([entry(msg())]);
        const [lease] = await t.lease('q', { leaseMs: LEASE_MS, waitMs: 0 });
        const originalDeadline = (lease as Lease).deadline;
        expect(await t.extendLease(lease as Lease, 5_000)).toBe(true);
        await waitFor(() => Date.now() > originalDeadline + 100, 'the original deadline to pass');
        expect(await t.lease('q', { leaseMs: 5_000, waitMs: 0 })).toEqual([]);
        expect(await t.ack(lease as Lease)).toBe(true);
      });

      it('dead-letters atomically with a lease, and refuses a lost lease', async () => {
        const t = await space.connect();
        const m = msg();
        await t.enqueue([entry(m)]);
        const [lease] = await t.lease('q', { leaseMs: 5_000, waitMs: 0 });
        const letter: DeadLetter = {
          message: lease!.message,
          queue: 'q',
          reason: 'max_attempts',
          error: 'boom',
          attempts: 1,
          deadAt: new Date(),
        };
        expect(await t.deadLetter(letter, lease)).toBe(true);
        expect(await t.depth('q')).toEqual({ ready: 0, delayed: 0, inFlight: 0 });
        expect(await t.deadLetter({ ...letter, error: 'again' }, lease)).toBe(false);
        const letters = await t.listDeadLetters();
        expect(letters).toHaveLength(1);
        expect(letters[0]).toMatchObject({ queue: 'q', reason: 'max_attempts', error: 'boom', attempts: 1 });
        expect(letters[0]?.message.id).toBe(m.id);
        expect(letters[0]?.deadAt).toBeInstanceOf(Date);
      });

      it('lists dead letters oldest first, takes one by id and purges the rest', async () => {
        const t = await space.connect();
        const ms = [msg(), msg(), msg()];
        for (const m of ms) await t.deadLetter({ message: m, queue: 'q', reason: 'recipient_not_found', attempts: 0, deadAt: new Date() });
        expect((await t.listDeadLetters()).map((l) => l.message.id)).toEqual(ms.map((m) => m.id));
        expect((await t.listDeadLetters({ limit: 2 })).map((l) => l.message.id)).toEqual(ms.slice(0, 2).map((m) => m.id));
        expect((await t.takeDeadLetter(ms[1]!.id))?.message.id).toBe(ms[1]!.id);
        expect(await t.takeDeadLetter(ms[1]!.id)).toBeNull();
        expect(await t.purgeDeadLetters()).toBe(2);
        expect(await t.listDeadLetters()).toEqual([]);
      });

      it('publishes to subscribers of the topic and of *, on every connection', async () => {
        const a = await space.connect();
        const b = await space.connect();
        const onTopic: string[] = [];
        const onAll: string[] = [];
        const offTopic = await b.subscribe('news', (m) => onTopic.push(m.id));
        const offAll = await a.subscribe('*', (m) => onAll.push(m.id));
        const m1 = msg({ recipient: '' });
        const m2 = msg({ recipient: '' });
        await a.publish('news', m1);
        await a.publish('other', m2);
        await waitFor(() => onTopic.length === 1 && onAll.length === 2, 'both publications observed');
        expect(onTopic).toEqual([m1.id]);
        expect(onAll.sort()).toEqual([m1.id, m2.id].sort());
        await offTopic();
        await offAll();
        const m3 = msg({ recipient: '' });
        const probe: string[] = [];
        const offProbe = await b.subscribe('news', (m) => probe.push(m.id));
        await a.publish('news', m3);
        await waitFor(() => probe.length === 1, 'the probe subscriber observed the third publication');
        expect(onTopic).toEqual([m1.id]);
        await offProbe();
      });

      it('an entry with publish: true reaches subscribers of its type and of *, once it is enqueued', async () => {
        const a = await space.connect();
        const b = await space.connect();
        await a.addRecipient('pq');
        const onType: string[] = [];
        const onOther: string[] = [];
        const onAll: string[] = [];
        const offType = await b.subscribe(MessageType.STATUS, (m) => onType.push(m.id));
        const offOther = await b.subscribe(MessageType.TASK, (m) => onOther.push(m.id));
        const offAll = await a.subscribe('*', (m) => onAll.push(m.id));
        const published = msg({ recipient: 'pq', type: MessageType.STATUS });
        const quiet = msg({ recipient: 'pq', type: MessageType.STATUS });
        const refused = msg({ recipient: 'nobody', type: MessageType.STATUS });
        // The publish flag is the port's (EnqueueEntry.publish); built loosely until every port carries it.
        const entries = [
          { ...entry(published), publish: true },
          entry(quiet),
          { ...entry(refused, { requireRecipient: true }), publish: true },
        ] as EnqueueEntry[];
        expect((await a.enqueue(entries)).map((r) => r.status)).toEqual(['enqueued', 'enqueued', 'no_recipient']);
        await waitFor(() => onType.length === 1 && onAll.length === 1, 'the published entry observed by both subscribers');
        // A marker published after it: once it is seen, anything else the enqueue published would have been too.
        const marker = msg({ recipient: '', type: MessageType.STATUS });
        await a.publish(MessageType.STATUS, marker);
        await waitFor(() => onType.length === 2 && onAll.length === 2, 'the marker observed');
        expect(onType).toEqual([published.id, marker.id]);
        expect(onAll).toEqual([published.id, marker.id]);
        expect(onOther).toEqual([]);
        const [lease] = await a.lease('pq', { leaseMs: 5_000, waitMs: 0 });
        expect(lease?.message).toMatchObject({ id: published.id, type: MessageType.STATUS, priority: published.priority });
        await offType();
        await offOther();
        await offAll();
      });

      it('wakes a waiting lease with [] on close', async () => {
        const t = await space.connect();
        const waiting = t.lease('q', { leaseMs: 5_000, waitMs: 30_000 });
        await t.close();
        expect(await waiting).toEqual([]);
      });
    });

    // ============================================================================ the bus over the transport

    describe('MessageBus', () => {
      it('delivers point to point, and dead-letters a send to an unknown recipient', async () => {
        const bus = await newBus();
        const got: Message[] = [];
        bus.registerAgent('worker', defineAgent({ name: 'worker', handleMessage: (m) => void got.push(m) }));
        const sent = await bus.send({ sender: 'boss', recipient: 'worker', type: MessageType.TASK, payload: { job: 1 } });
        await waitFor(() => got.length === 1, 'the worker to get its message');
        expect(got[0]).toMatchObject({ id: sent.id, payload: { job: 1 }, attempt: 1 });

        const err = await bus.send({ sender: 'boss', recipient: 'nobody', type: MessageType.TASK, payload: {} }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(RecipientNotFoundError);
        expect((err as RecipientNotFoundError).recipient).toBe('nobody');
        const letters = await bus.getDeadLetters();
        expect(letters).toHaveLength(1);
        expect(letters[0]).toMatchObject({ reason: 'recipient_not_found', queue: 'nobody', attempts: 0 });
        expect(letters[0]?.message.id).toBe((err as RecipientNotFoundError).messageId);
      });

      it('sends to an agent registered on another bus of the same backend', async () => {
        const a = await newBus();
        const b = await newBus();
        const got: string[] = [];
        b.registerAgent('remote', defineAgent({ name: 'remote', handleMessage: (m) => void got.push(m.id) }));
        await b.ready();
        const m = await a.send({ sender: 'x', recipient: 'remote', type: MessageType.CONTROL, payload: {} });
        await waitFor(() => got.length === 1, 'the remote agent to receive');
        expect(got).toEqual([m.id]);
      });

      it('delivers by strict priority, FIFO within a priority (pull)', async () => {
        const bus = await newBus();
        bus.registerAgent('puller');
        const prios = [5, 1, 9, 5, 10, 0, 9, 5, 1, 10, 3];
        const sent = await bus.sendBatch(
          prios.map((priority, n) => ({ sender: 's', recipient: 'puller', type: MessageType.TASK, payload: { n }, priority })),
        );
        const order: string[] = [];
        for (;;) {
          const d = await bus.receive('puller');
          if (d === null) break;
          order.push(d.id);
          expect(await d.ack()).toBe(true);
        }
        const expected = sent
          .map((m, n) => ({ m, n }))
          .sort((x, y) => y.m.priority - x.m.priority || x.n - y.n)
          .map(({ m }) => m.id);
        expect(order).toEqual(expected);
      });

      it('lets many concurrent producers and consumers on two buses lose nothing and ack nothing twice', async () => {
        const a = await newBus({ leaseMs: 10_000 });
        const b = await newBus({ leaseMs: 10_000 });
        const handled = new Map<string, number>();
        const record = (m: Message): void => void handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
        a.registerAgent('worker', defineAgent({ name: 'worker', concurrency: 4, handleMessage: async (m) => record(m) }));
        b.registerAgent('worker', defineAgent({ name: 'worker', concurrency: 3, handleMessage: async (m) => record(m) }));
        await Promise.all([a.ready(), b.ready()]);
        const producers = 8;
        const perProducer = 150;
        const ids = (
          await Promise.all(
            Array.from({ length: producers }, async (_, p) => {
              const out: string[] = [];
              for (let i = 0; i < perProducer; i++) {
                const bus = (p + i) % 2 === 0 ? a : b;
                out.push(
                  (
                    await bus.send({
                      sender: `p${p}`,
                      recipient: 'worker',
                      type: MessageType.TASK,
                      payload: { p, i },
                      priority: (p * 7 + i) % 11,
                    })
                  ).id,
                );
              }
              return out;
            }),
          )
        ).flat();
        await waitFor(() => handled.size === ids.length, `${ids.length} messages handled`, 20_000);
        await waitFor(() => a.metrics().messagesAcked + b.metrics().messagesAcked === ids.length, 'every delivery acked', 10_000);
        expect([...handled.values()].every((n) => n === 1)).toBe(true);
        expect(new Set(handled.keys())).toEqual(new Set(ids));
        expect(a.metrics().messagesReceived + b.metrics().messagesReceived).toBe(ids.length);
        expect(await a.getDeadLetters()).toEqual([]);
      });

      it('respects an agent’s concurrency', async () => {
        const bus = await newBus();
        let running = 0;
        let peak = 0;
        let done = 0;
        const hold = gate();
        bus.registerAgent(
          'limited',
          defineAgent({
            name: 'limited',
            concurrency: 3,
            async handleMessage() {
              running++;
              peak = Math.max(peak, running);
              await hold.wait;
              running--;
              done++;
            },
          }),
        );
        for (let i = 0; i < 10; i++) await bus.send({ sender: 's', recipient: 'limited', type: MessageType.TASK, payload: { i } });
        await waitFor(() => running === 3, 'three handlers running');
        expect(bus.metrics().agents['limited']?.handling).toBe(3);
        hold.open();
        await waitFor(() => done === 10, 'all ten handled');
        expect(peak).toBe(3);
      });

      it('retries a failing handler with backoff, then dead-letters it with the last error', async () => {
        const bus = await newBus({ maxAttempts: 3 });
        const attempts: number[] = [];
        bus.registerAgent(
          'flaky',
          defineAgent({
            name: 'flaky',
            handleMessage(m) {
              attempts.push(m.attempt);
              throw new Error(`failure #${m.attempt}`);
            },
          }),
        );
        const m = await bus.send({ sender: 's', recipient: 'flaky', type: MessageType.STATUS, payload: {} });
        await waitFor(async () => (await bus.getDeadLetters()).length === 1, 'the message in the dead-letter queue');
        expect(attempts).toEqual([1, 2, 3]);
        const [letter] = await bus.getDeadLetters();
        expect(letter).toMatchObject({ reason: 'max_attempts', error: 'failure #3', attempts: 3, queue: 'flaky' });
        expect(letter?.message.id).toBe(m.id);
        expect(bus.metrics()).toMatchObject({ retries: 2, deadLetters: 1 });
      });

      it('acks a message that succeeds on a retry', async () => {
        const bus = await newBus({ maxAttempts: 5 });
        const seen: number[] = [];
        bus.registerAgent(
          'second-time',
          defineAgent({
            name: 'second-time',
            handleMessage(m) {
              seen.push(m.attempt);
              if (m.attempt < 2) throw new Error('not yet');
            },
          }),
        );
        await bus.send({ sender: 's', recipient: 'second-time', type: MessageType.TASK, payload: {} });
        await waitFor(() => bus.metrics().messagesAcked === 1, 'the retry acked');
        expect(seen).toEqual([1, 2]);
        expect(await bus.getDeadLetters()).toEqual([]);
      });

      it('redelivers a pull delivery whose lease ran out with attempt + 1', async () => {
        const bus = await newBus();
        bus.registerAgent('puller');
        const m = await bus.send({ sender: 's', recipient: 'puller', type: MessageType.TASK, payload: {} });
        const first = await bus.receive('puller', { leaseMs: LEASE_MS });
        expect(first).toMatchObject({ id: m.id, attempt: 1 });
        const second = await bus.receive('puller', { timeout: 5_000 });
        expect(second).toMatchObject({ id: m.id, attempt: 2 });
        expect(await first!.ack()).toBe(false);
        expect(await second!.ack()).toBe(true);
      });

      it('redelivers to a push handler whose lease ran out, aborting the first handler’s signal', async () => {
        const bus = await newBus({ leaseMs: LEASE_MS });
        const attempts: number[] = [];
        let firstAborted = false;
        bus.registerAgent(
          'hangs-once',
          defineAgent({
            name: 'hangs-once',
            concurrency: 2,
            async handleMessage(m, ctx: AgentContext) {
              attempts.push(m.attempt);
              if (m.attempt === 1) {
                await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
                firstAborted = true;
              }
            },
          }),
        );
        await bus.send({ sender: 's', recipient: 'hangs-once', type: MessageType.TASK, payload: {} });
        await waitFor(() => bus.metrics().messagesAcked === 1 && firstAborted, 'the redelivery acked and the first signal aborted');
        expect(attempts).toEqual([1, 2]);
      });

      it('dead-letters a message whose leases keep running out (reason max_attempts, lease expired)', async () => {
        const bus = await newBus({ maxAttempts: 2 });
        bus.registerAgent('crashy');
        const m = await bus.send({ sender: 's', recipient: 'crashy', type: MessageType.FEEDBACK, payload: {} });
        expect((await bus.receive('crashy', { leaseMs: 100 }))?.attempt).toBe(1);
        expect((await bus.receive('crashy', { leaseMs: 100, timeout: 5_000 }))?.attempt).toBe(2);
        expect(await bus.receive('crashy', { leaseMs: 100, timeout: 600 })).toBeNull();
        const letters = await bus.getDeadLetters();
        expect(letters).toHaveLength(1);
        expect(letters[0]).toMatchObject({ reason: 'max_attempts', error: 'lease expired', attempts: 2 });
        expect(letters[0]?.message.id).toBe(m.id);
      });

      it('nacks a pull delivery: retried after its delay, dead-lettered after the last attempt', async () => {
        const bus = await newBus({ maxAttempts: 2 });
        bus.registerAgent('puller');
        await bus.send({ sender: 's', recipient: 'puller', type: MessageType.TASK, payload: {} });
        const first = await bus.receive('puller');
        expect(await first!.nack(new Error('try later'), { delayMs: 100 })).toBe(true);
        expect(await bus.receive('puller')).toBeNull();
        const second = await bus.receive('puller', { timeout: 5_000 });
        expect(second?.attempt).toBe(2);
        expect(await second!.nack('gave up')).toBe(true);
        const [letter] = await bus.getDeadLetters();
        expect(letter).toMatchObject({ reason: 'max_attempts', error: 'gave up', attempts: 2 });
      });

      it('dead-letters a message whose ttl ran out before delivery (reason expired)', async () => {
        const bus = await newBus();
        bus.registerAgent('slowpoke');
        const m = await bus.send({ sender: 's', recipient: 'slowpoke', type: MessageType.TASK, payload: {}, ttlMs: 50 });
        await waitFor(() => Date.now() > m.timestamp.getTime() + 100, 'the ttl to pass');
        expect(await bus.receive('slowpoke')).toBeNull();
        const [letter] = await bus.getDeadLetters();
        expect(letter).toMatchObject({ reason: 'expired', queue: 'slowpoke' });
        expect(letter?.message.id).toBe(m.id);
      });

      it('treats a send with an id seen inside the dedupe window as a no-op returning the first message', async () => {
        const a = await newBus();
        const b = await newBus();
        a.registerAgent('once');
        await a.ready();
        const first = await a.send({ id: 'order-42', sender: 's', recipient: 'once', type: MessageType.TASK, payload: { v: 1 } });
        const again = await b.send({ id: 'order-42', sender: 's', recipient: 'once', type: MessageType.TASK, payload: { v: 2 } });
        expect(again.id).toBe(first.id);
        expect(again.payload).toEqual({ v: 1 });
        expect(again.timestamp.getTime()).toBe(first.timestamp.getTime());
        expect((await a.receive('once'))?.payload).toEqual({ v: 1 });
        expect(await a.receive('once')).toBeNull();
        expect(b.metrics()).toMatchObject({ messagesSent: 0, duplicates: 1 });
      });

      it('answers requests through the requester’s inbox without consuming any other message', async () => {
        const requester = await newBus();
        const responder = await newBus();
        requester.registerAgent('planner'); // a pull agent with its own queue
        responder.registerAgent(
          'doubler',
          defineAgent({ name: 'doubler', concurrency: 4, handleMessage: (m) => ({ doubled: (m.payload['n'] as number) * 2 }) }),
        );
        await Promise.all([requester.ready(), responder.ready()]);
        const others = await Promise.all(
          [1, 2, 3].map((n) => responder.send({ sender: 'someone', recipient: 'planner', type: MessageType.FEEDBACK, payload: { n } })),
        );
        const replies = await Promise.all(
          Array.from({ length: 12 }, (_, n) =>
            requester.request({ sender: 'planner', recipient: 'doubler', payload: { n }, timeout: 5_000 }),
          ),
        );
        expect(replies.map((r) => r.payload['doubled'])).toEqual(Array.from({ length: 12 }, (_, n) => n * 2));
        for (const r of replies) {
          expect(r.type).toBe(MessageType.RESULT);
          expect(r.sender).toBe('doubler');
          expect(r.recipient).toBe('planner');
        }
        const left: string[] = [];
        for (let d = await requester.receive('planner'); d !== null; d = await requester.receive('planner')) {
          left.push(d.id);
          await d.ack();
        }
        expect(left).toEqual(others.map((m) => m.id));
      });

      it('rejects a request with RemoteError when the handler fails for good', async () => {
        const requester = await newBus();
        const responder = await newBus({ maxAttempts: 2 });
        responder.registerAgent('grumpy', defineAgent({ name: 'grumpy', handleMessage: () => Promise.reject(new Error('no thanks')) }));
        await responder.ready();
        const err = await requester.request({ sender: 'me', recipient: 'grumpy', payload: {}, timeout: 5_000 }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(RemoteError);
        expect((err as RemoteError).payload).toMatchObject({ message: 'no thanks', attempts: 2 });
        expect((err as RemoteError).sender).toBe('grumpy');
      });

      it('rejects a request with RequestTimeoutError when no reply comes', async () => {
        const bus = await newBus();
        bus.registerAgent('silent');
        const err = await bus.request({ sender: 'me', recipient: 'silent', payload: {}, timeout: 150 }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(RequestTimeoutError);
        expect(err).toMatchObject({ recipient: 'silent', timeoutMs: 150 });
        expect(bus.metrics().pendingRequests).toBe(0);
      });

      it('lets subscribers on another bus observe types, custom topics and everything', async () => {
        const a = await newBus();
        const b = await newBus();
        a.registerAgent('sink', defineAgent({ name: 'sink', handleMessage: () => undefined }));
        const statuses: string[] = [];
        const progress: string[] = [];
        const everything: string[] = [];
        const subs = [
          b.subscribe(MessageType.STATUS, (m) => void statuses.push(m.id)),
          b.subscribe('progress', (m) => void progress.push(m.id)),
          b.subscribe('*', (m) => void everything.push(m.id)),
          b.subscribe('*', () => {
            throw new Error('a broken subscriber');
          }),
        ];
        await Promise.all(subs.map((s) => s.ready));
        await a.ready();
        const direct = await a.send({ sender: 's', recipient: 'sink', type: MessageType.STATUS, payload: { p2p: true } });
        const task = await a.send({ sender: 's', recipient: 'sink', type: MessageType.TASK, payload: {} });
        const pub = await a.publish({ type: MessageType.STATUS, sender: 's', topic: 'progress', payload: { pct: 50 } });
        await waitFor(() => everything.length === 3 && progress.length === 1 && statuses.length === 1, 'all observations');
        expect(statuses).toEqual([direct.id]);
        expect(progress).toEqual([pub.id]);
        expect(everything.sort()).toEqual([direct.id, task.id, pub.id].sort());
        expect(pub.headers['topic']).toBe('progress');
        await waitFor(() => b.metrics().subscriberErrors === 3, 'the broken subscriber counted');
        await subs[0]!.unsubscribe();
        await a.publish({ type: MessageType.STATUS, sender: 's', payload: {} });
        await waitFor(() => everything.length === 4, 'the fourth observation');
        expect(statuses).toHaveLength(1);
      });

      it('redrives a dead letter as a fresh delivery', async () => {
        const bus = await newBus({ maxAttempts: 1 });
        let fail = true;
        const handled: number[] = [];
        bus.registerAgent(
          'fixable',
          defineAgent({
            name: 'fixable',
            handleMessage(m) {
              if (fail) throw new Error('broken for now');
              handled.push(m.attempt);
            },
          }),
        );
        const m = await bus.send({ sender: 's', recipient: 'fixable', type: MessageType.TASK, payload: {} });
        await waitFor(async () => (await bus.getDeadLetters()).length === 1, 'the dead letter');
        fail = false;
        const redriven = await bus.redrive(m.id);
        expect(redriven?.id).toBe(m.id);
        await waitFor(() => handled.length === 1, 'the redriven message handled');
        expect(handled).toEqual([1]);
        expect(await bus.getDeadLetters()).toEqual([]);
        expect(await bus.redrive('no-such-id')).toBeNull();
        expect(await bus.purgeDeadLetters()).toBe(0);
      });

      it('redrive keeps the letter when the re-enqueue fails, and redrives it once it can', async () => {
        const t = await space.connect();
        let enqueueDown = false;
        const bus = new MessageBus({
          backoff: FAST_BACKOFF,
          transport: withOverrides(t, {
            enqueue: (entries) => (enqueueDown ? Promise.reject(new Error('enqueue is down')) : t.enqueue(entries)),
          }),
        });
        buses.push(bus);
        await expect(bus.send({ sender: 's', recipient: 'later', type: MessageType.TASK, payload: { keep: 'me' } })).rejects.toBeInstanceOf(
          RecipientNotFoundError,
        );
        const [letter] = await bus.getDeadLetters();
        expect(letter?.reason).toBe('recipient_not_found');
        bus.registerAgent('later');
        await bus.ready();
        enqueueDown = true;
        await expect(bus.redrive(letter!.message.id)).rejects.toThrow('enqueue is down');
        expect((await bus.getDeadLetters()).map((l) => l.message.id)).toEqual([letter!.message.id]);
        enqueueDown = false;
        expect((await bus.redrive(letter!.message.id))?.payload).toEqual({ keep: 'me' });
        expect((await bus.receive('later', { timeout: 2_000 }))?.payload).toEqual({ keep: 'me' });
        expect(await bus.getDeadLetters()).toEqual([]);
      });

      it('redrive of an unknown recipient keeps the letter where it was', async () => {
        const bus = await newBus();
        await expect(bus.send({ sender: 's', recipient: 'nobody', type: MessageType.TASK, payload: { n: 1 } })).rejects.toBeInstanceOf(
          RecipientNotFoundError,
        );
        const [letter] = await bus.getDeadLetters();
        await expect(bus.redrive(letter!.message.id)).rejects.toBeInstanceOf(RecipientNotFoundError);
        expect(await bus.getDeadLetters()).toEqual([letter]);
      });

      it('two redrives of one letter at once enqueue it once', async () => {
        const t = await space.connect();
        const hold = gate();
        let entered = 0;
        const bus = new MessageBus({
          backoff: FAST_BACKOFF,
          transport: withOverrides(t, {
            enqueue: async (entries) => {
              entered++;
              await hold.wait;
              return t.enqueue(entries);
            },
          }),
        });
        buses.push(bus);
        const m = msg({ recipient: 'twice' });
        await t.deadLetter({ message: m, queue: 'twice', reason: 'max_attempts', error: 'boom', attempts: 5, deadAt: new Date() });
        bus.registerAgent('twice');
        await bus.ready();
        const first = bus.redrive(m.id);
        await waitFor(() => entered === 1, 'the first redrive to reach its enqueue');
        const second = await bus.redrive(m.id).then(
          () => 'redriven',
          (err: unknown) => err,
        );
        expect(second).toBeInstanceOf(ConcordError);
        expect((second as ConcordError).code).toBe('redrive_in_progress');
        hold.open();
        expect((await first)?.id).toBe(m.id);
        expect(entered).toBe(1);
        expect((await bus.receive('twice', { timeout: 2_000 }))?.id).toBe(m.id);
        expect(await bus.receive('twice', { timeout: 200 })).toBeNull();
      });

      it('a redrive claim never removes a letter stored again for the same message meanwhile', async () => {
        const t = await space.connect();
        const m = msg();
        await t.deadLetter({ message: m, queue: 'q', reason: 'max_attempts', error: 'first', attempts: 5, deadAt: new Date() });
        const claim = await t.claimDeadLetter(m.id, 10_000);
        if (claim === null || claim === 'claimed') throw new Error(`expected a claim, got ${String(claim)}`);
        expect(claim.letter.error).toBe('first');
        expect(await t.claimDeadLetter(m.id, 10_000)).toBe('claimed');
        // The redriven message failed again before the redrive settled: a new letter, same id.
        await t.deadLetter({ message: m, queue: 'q', reason: 'max_attempts', error: 'second', attempts: 5, deadAt: new Date() });
        expect(await t.settleDeadLetter(m.id, claim.token, true)).toBe(false);
        expect((await t.listDeadLetters()).map((l) => l.error)).toEqual(['second']);
        // A claim nobody settles lapses.
        const lapsing = await t.claimDeadLetter(m.id, 50);
        expect(lapsing).not.toBe('claimed');
        await waitFor(async () => (await t.claimDeadLetter(m.id, 10_000)) !== 'claimed', 'the claim to lapse', 5_000);
        expect(await t.claimDeadLetter('no-such-id', 1_000)).toBeNull();
      });

      it('redrives a letter holding a stand-in from its raw bytes, or refuses and keeps it; never an empty payload', async () => {
        const bus = await newBus();
        const t = await space.connect();
        bus.registerAgent('raw');
        await bus.ready();
        const original = msg({ recipient: 'raw', payload: { data: 'precious', list: [1, 2, 3] }, headers: { replyTo: 'someone' } });
        const standIn = { ...original, payload: {}, headers: {} };
        await t.deadLetter({
          message: standIn,
          queue: 'raw',
          reason: 'malformed',
          error: 'too big here',
          attempts: 1,
          deadAt: new Date(),
          raw: encodeMessage(original),
        });
        const redriven = await bus.redrive(original.id);
        expect(redriven?.payload).toEqual(original.payload);
        const got = await bus.receive('raw', { timeout: 2_000 });
        expect(got?.payload).toEqual(original.payload);
        expect(got?.headers).toEqual(original.headers);
        await got?.ack();

        const junk = msg({ recipient: 'raw', payload: {} });
        await t.deadLetter({
          message: junk,
          queue: 'raw',
          reason: 'malformed',
          error: 'not JSON',
          attempts: 1,
          deadAt: new Date(),
          raw: '{"id":"x", not json',
        });
        const refused = await bus.redrive(junk.id).then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(refused).toBeInstanceOf(ValidationError);
        expect((refused as Error).message).toMatch(/cannot be redriven: its raw bytes are not a message/);
        const kept = await bus.getDeadLetters();
        expect(kept.map((l) => [l.message.id, l.raw])).toEqual([[junk.id, '{"id":"x", not json']]);
        expect(await bus.receive('raw', { timeout: 200 })).toBeNull();
      });

      it('redrive refuses an id that is not a string with ValidationError', async () => {
        const bus = await newBus();
        for (const id of [{}, 42, null, undefined, '']) {
          await expect(bus.redrive(id as unknown as string)).rejects.toBeInstanceOf(ValidationError);
        }
        await expect(bus.redrive({} as unknown as string)).rejects.toThrow('redrive needs the id of a dead letter');
      });

      it('closes by stopping intake and draining in-flight handlers', async () => {
        const bus = await newBus();
        const observer = await newBus();
        const hold = gate();
        let started = false;
        let finished = false;
        bus.registerAgent(
          'slow',
          defineAgent({
            name: 'slow',
            async handleMessage(_m, ctx) {
              started = true;
              await hold.wait;
              await ctx.send({ recipient: 'after', type: MessageType.STATUS, payload: { from: 'drain' } });
              finished = true;
            },
          }),
        );
        observer.registerAgent('after');
        await observer.ready();
        await bus.send({ sender: 's', recipient: 'slow', type: MessageType.TASK, payload: {} });
        await waitFor(() => started, 'the handler to start');
        const closing = bus.close({ drainTimeoutMs: 10_000 });
        await expect(bus.send({ sender: 's', recipient: 'slow', type: MessageType.TASK, payload: {} })).rejects.toBeInstanceOf(ClosedError);
        expect(() => bus.registerAgent('late')).toThrow(ClosedError);
        hold.open();
        await closing;
        expect(finished).toBe(true);
        expect(await observer.receive('after', { timeout: 2_000 })).not.toBeNull();
        // The drained message was acked: nothing left for another consumer, nothing dead.
        observer.registerAgent('slow');
        expect(await observer.receive('slow', { timeout: 300 })).toBeNull();
        expect(await observer.getDeadLetters()).toEqual([]);
      });
    });
  });
}

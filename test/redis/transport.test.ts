import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createMessage, MessageType, type Message } from '../../src/message.js';
import { TransportError } from '../../src/errors.js';
import type { EnqueueEntry, Lease } from '../../src/bus/transport.js';
import { RedisTransport, createRedisTransport } from '../../src/backends/redis/index.js';
import { resolveTransport } from '../../src/connect.js';
import { serviceAvailable, waitFor } from '../helpers/services.js';
import { cleanupNamespace, countKeys, rawClient, redisNamespace, redisUrl } from './helpers.js';

const up = await serviceAvailable('redis');

function msg(recipient: string, extra: { priority?: number; id?: string; n?: number; type?: MessageType } = {}): Message {
  return createMessage({
    sender: 'tester',
    recipient,
    type: extra.type ?? MessageType.TASK,
    payload: { n: extra.n ?? 0 },
    ...(extra.priority !== undefined ? { priority: extra.priority } : {}),
    ...(extra.id !== undefined ? { id: extra.id } : {}),
  });
}

function entry(queue: string, message: Message, more: Partial<EnqueueEntry> = {}): EnqueueEntry {
  return { queue, message, visibleAt: Date.now(), requireRecipient: false, dedupeWindowMs: 0, ...more };
}

/** Whether a connection of namespace `ns` is blocked in `cmd` (BLPOP unless told) on the server right now. */
async function blockedInCmd(ns: string, cmd: string): Promise<boolean> {
  const raw = rawClient();
  await raw.connect();
  try {
    const list = String(await raw.client('LIST'));
    const pattern = new RegExp(` cmd=${cmd}( |$)`);
    return list.split('\n').some((line) => line.includes(` name=concord:${ns}:block:`) && pattern.test(line));
  } finally {
    raw.disconnect();
  }
}

function blockedIn(ns: string): Promise<boolean> {
  return blockedInCmd(ns, 'blpop');
}

describe.runIf(up)('Redis transport primitives (real Redis)', () => {
  const ns = redisNamespace('rt');
  const url = redisUrl(ns);
  const open: RedisTransport[] = [];
  let t: RedisTransport;

  function transport(): RedisTransport {
    const tr = createRedisTransport(url);
    open.push(tr);
    return tr;
  }

  beforeAll(async () => {
    t = transport();
    await t.connect();
  });
  afterEach(async () => {
    // Each test uses its own queue names; the namespace is removed at the end.
  });
  afterAll(async () => {
    await Promise.all(open.map((tr) => tr.close()));
    await cleanupNamespace(ns);
    expect(await countKeys(ns)).toBe(0);
  });

  it('is chosen by a redis:// URL and names its namespace in every key', async () => {
    const tr = await resolveTransport(url);
    open.push(tr as RedisTransport);
    expect(tr.kind).toBe('redis');
    expect(tr).toBeInstanceOf(RedisTransport);
    expect((tr as RedisTransport).config.prefix).toBe(`concord:{${ns}}:`);
  });

  it('leases the highest priority first and keeps FIFO inside a priority', async () => {
    const q = 'prio';
    const msgs = [
      msg(q, { priority: 1, n: 1 }),
      msg(q, { priority: 9, n: 2 }),
      msg(q, { priority: 5, n: 3 }),
      msg(q, { priority: 9, n: 4 }),
      msg(q, { priority: 1, n: 5 }),
      msg(q, { priority: 10, n: 6 }),
      msg(q, { priority: 0, n: 7 }),
    ];
    const results = await t.enqueue(msgs.map((m) => entry(q, m)));
    expect(results.every((r) => r.status === 'enqueued')).toBe(true);
    const leases = await t.lease(q, { leaseMs: 10_000, waitMs: 0, max: 10 });
    expect(leases.map((l) => l.message.payload['n'])).toEqual([6, 2, 4, 3, 1, 5, 7]);
    expect(leases.every((l) => l.message.attempt === 1)).toBe(true);
    expect(leases[0]!.message.timestamp).toBeInstanceOf(Date);
    for (const l of leases) expect(await t.ack(l)).toBe(true);
    expect(await t.depth(q)).toEqual({ ready: 0, delayed: 0, inFlight: 0 });
  });

  it('keeps the original place of a requeued message', async () => {
    const q = 'requeue-order';
    await t.enqueue([1, 2, 3].map((n) => entry(q, msg(q, { n }))));
    const [first] = await t.lease(q, { leaseMs: 10_000, waitMs: 0 });
    expect(first!.message.payload['n']).toBe(1);
    expect(await t.requeue(first!, { delayMs: 0 })).toBe(true);
    const again = await t.lease(q, { leaseMs: 10_000, waitMs: 0, max: 3 });
    expect(again.map((l) => [l.message.payload['n'], l.message.attempt])).toEqual([
      [1, 2],
      [2, 1],
      [3, 1],
    ]);
    // The old token stopped working when the message was requeued.
    expect(await t.ack(first!)).toBe(false);
    for (const l of again) await t.ack(l);
  });

  it('redelivers a message whose lease ran out, with attempt + 1, and the old lease is lost', async () => {
    const q = 'expiry';
    await t.enqueue([entry(q, msg(q, { n: 1 }))]);
    const [first] = await t.lease(q, { leaseMs: 150, waitMs: 0 });
    expect(first!.message.attempt).toBe(1);
    const other = transport();
    const [second] = await other.lease(q, { leaseMs: 10_000, waitMs: 5000 });
    expect(second!.message.id).toBe(first!.message.id);
    expect(second!.message.attempt).toBe(2);
    expect(await t.ack(first!)).toBe(false);
    expect(await t.extendLease(first!, 1000)).toBe(false);
    expect(await t.requeue(first!, { delayMs: 0 })).toBe(false);
    expect(await other.ack(second!)).toBe(true);
  });

  it('acks of one tick with different lease tokens each get their own answer, in order', async () => {
    const q = 'mixed-acks';
    await t.enqueue([1, 2, 3, 4].map((n) => entry(q, msg(q, { n }))));
    // Three lease calls, three tokens (lease lengths differ); the third lease is lost before its ack.
    const a = await t.lease(q, { leaseMs: 10_000, waitMs: 0, max: 2 });
    const [b] = await t.lease(q, { leaseMs: 20_000, waitMs: 0 });
    const [c] = await t.lease(q, { leaseMs: 100, waitMs: 0 });
    expect(new Set([a[0]!.token, b!.token, c!.token]).size).toBe(3);
    await waitFor(async () => (await t.depth(q)).ready === 1, 'the short lease to run out', 5000, 20);
    // Interleaved tokens in one tick: one ack-many call, answers in the order asked.
    const acked = await Promise.all([a[0]!, c!, b!, a[1]!].map((l) => t.ack(l)));
    expect(acked).toEqual([true, false, true, true]);
    expect(await t.depth(q)).toEqual({ ready: 1, delayed: 0, inFlight: 0 });
    const [again] = await t.lease(q, { leaseMs: 10_000, waitMs: 0 });
    expect([again!.message.payload['n'], again!.message.attempt]).toEqual([4, 2]);
    expect(await t.ack(again!)).toBe(true);
  });

  it('a lease that ran out is lost even before anyone re-leases it, and the message is visible again', async () => {
    const q = 'lost';
    await t.enqueue([entry(q, msg(q)), entry(q, msg(q))]);
    const [a, b] = await t.lease(q, { leaseMs: 100, waitMs: 0, max: 2 });
    await waitFor(async () => (await t.depth(q)).ready === 2, 'both leases to run out', 5000, 20);
    expect(await t.ack(a!)).toBe(false);
    expect(await t.extendLease(b!, 10_000)).toBe(false);
    expect(await t.deadLetter({ message: a!.message, queue: q, reason: 'max_attempts', attempts: 1, deadAt: new Date() }, a)).toBe(false);
    expect((await t.listDeadLetters()).some((d) => d.message.id === a!.message.id)).toBe(false);
    const again = await t.lease(q, { leaseMs: 10_000, waitMs: 0, max: 2 });
    expect(again.map((l) => [l.message.id, l.message.attempt])).toEqual([
      [a!.message.id, 2],
      [b!.message.id, 2],
    ]);
    for (const l of again) expect(await t.ack(l)).toBe(true);
  });

  it('rejects nonsensical lease options', async () => {
    await expect(t.lease('x', { leaseMs: 0, waitMs: 0 })).rejects.toThrow(/leaseMs > 0/);
    await expect(t.lease('x', { leaseMs: 10, waitMs: -1 })).rejects.toThrow(/waitMs >= 0/);
  });

  it('extends a held lease so it is not redelivered', async () => {
    const q = 'extend';
    await t.enqueue([entry(q, msg(q, { n: 1 })), entry(q, msg(q, { n: 2 }))]);
    const [kept, dropped] = await t.lease(q, { leaseMs: 200, waitMs: 0, max: 2 });
    expect(await t.extendLease(kept!, 60_000)).toBe(true);
    // Once the un-extended sibling (same original deadline) is visible again, the extended one is still leased.
    await waitFor(async () => (await t.depth(q)).ready === 1, 'the sibling lease to expire', 5000, 20);
    expect(await t.depth(q)).toEqual({ ready: 1, delayed: 0, inFlight: 1 });
    expect(await t.ack(kept!)).toBe(true);
    await t.ack(dropped!);
  });

  it('hides a delayed message until it is due, then a waiting lease gets it', async () => {
    const q = 'delayed';
    await t.enqueue([entry(q, msg(q), { visibleAt: Date.now() + 300 })]);
    expect(await t.lease(q, { leaseMs: 1000, waitMs: 0 })).toEqual([]);
    expect(await t.depth(q)).toEqual({ ready: 0, delayed: 1, inFlight: 0 });
    const got = await t.lease(q, { leaseMs: 1000, waitMs: 5000 });
    expect(got).toHaveLength(1);
    await t.ack(got[0]!);
  });

  it('delivers a requeued message after its delay', async () => {
    const q = 'retry-delay';
    await t.enqueue([entry(q, msg(q))]);
    const [l] = await t.lease(q, { leaseMs: 1000, waitMs: 0 });
    expect(await t.requeue(l!, { delayMs: 250 })).toBe(true);
    expect((await t.depth(q)).delayed).toBe(1);
    const [again] = await t.lease(q, { leaseMs: 1000, waitMs: 5000 });
    expect(again!.message.attempt).toBe(2);
    await t.ack(again!);
  });

  it('a waiting lease wakes when another connection enqueues', async () => {
    const q = 'wake';
    const producer = transport();
    const consumer = transport();
    const waiting = consumer.lease(q, { leaseMs: 1000, waitMs: 10_000 });
    await waitFor(() => blockedIn(ns), 'the consumer to block', 5000, 10);
    await producer.enqueue([entry(q, msg(q, { n: 42 }))]);
    const got = await waiting;
    expect(got.map((l) => l.message.payload['n'])).toEqual([42]);
    await consumer.ack(got[0]!);
  });

  it('serves many concurrent waiters each with a different message', async () => {
    const q = 'fanout';
    const consumer = transport();
    const waits = Array.from({ length: 8 }, () => consumer.lease(q, { leaseMs: 5000, waitMs: 10_000 }));
    await t.enqueue(Array.from({ length: 8 }, (_, n) => entry(q, msg(q, { n }))));
    const got = (await Promise.all(waits)).flat();
    expect(got).toHaveLength(8);
    expect(new Set(got.map((l) => l.message.id)).size).toBe(8);
    await Promise.all(got.map((l) => consumer.ack(l)));
  });

  it('a wait ends empty after waitMs and when its signal aborts', async () => {
    const q = 'empty-wait';
    expect(await t.lease(q, { leaseMs: 1000, waitMs: 100 })).toEqual([]);
    const ac = new AbortController();
    const waiting = t.lease(q, { leaseMs: 1000, waitMs: 30_000, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    expect(await waiting).toEqual([]);
  });

  it('close wakes a waiting lease with []', async () => {
    const tr = transport();
    const waiting = tr.lease('closing', { leaseMs: 1000, waitMs: 30_000 });
    await waitFor(() => blockedIn(ns), 'the lease to block', 5000, 10);
    await tr.close();
    expect(await waiting).toEqual([]);
  });

  it('a lease still on its way when the transport closes resolves [], like the memory transport', async () => {
    const tr = transport();
    await tr.connect();
    const leasing = tr.lease('closing-early', { leaseMs: 1000, waitMs: 30_000 });
    const closing = tr.close();
    expect(await leasing).toEqual([]);
    await closing;
    expect(await tr.lease('closing-early', { leaseMs: 1000, waitMs: 30_000 })).toEqual([]);
  });

  it('a busy consumer’s ack brings its next message along; if it never asks, the message goes back untouched', async () => {
    const q = 'ack-next';
    const consumer = transport();
    await t.enqueue([1, 2, 3].map((n) => entry(q, msg(q, { n }))));
    // A consumer loop (it waits when the queue is empty) takes one, handles it and acks...
    const [first] = await consumer.lease(q, { leaseMs: 10_000, waitMs: 1000 });
    expect(await consumer.ack(first!)).toBe(true);
    // ... and its next ask gets the next message, on its first attempt.
    const [second] = await consumer.lease(q, { leaseMs: 10_000, waitMs: 1000 });
    expect([second!.message.payload['n'], second!.message.attempt]).toEqual([2, 1]);
    // This time it acks and stops asking: what came along goes back as if never leased.
    expect(await consumer.ack(second!)).toBe(true);
    await waitFor(async () => (await t.depth(q)).inFlight === 0, 'nothing left leased');
    expect(await t.depth(q)).toEqual({ ready: 1, delayed: 0, inFlight: 0 });
    const rest = await t.lease(q, { leaseMs: 10_000, waitMs: 0, max: 5 });
    expect(rest.map((l) => [l.message.payload['n'], l.message.attempt])).toEqual([[3, 1]]);
    await t.ack(rest[0]!);
  });

  it('a consumer with concurrency gets its next batches leased ahead, in order; if it stops asking, what is left goes back untouched', async () => {
    const q = 'lease-ahead';
    const consumer = transport();
    await t.enqueue([1, 2, 3, 4, 5, 6, 7].map((n) => entry(q, msg(q, { n }))));
    // A consumer loop asking for 3 gets 3; its next two batches (up to 6: the 4 left) are leased
    // for it meanwhile.
    const first = await consumer.lease(q, { leaseMs: 10_000, waitMs: 1000, max: 3 });
    expect(first.map((l) => l.message.payload['n'])).toEqual([1, 2, 3]);
    await waitFor(async () => (await t.depth(q)).inFlight === 7, 'the next batches leased ahead');
    for (const l of first) expect(await consumer.ack(l)).toBe(true);
    const second = await consumer.lease(q, { leaseMs: 10_000, waitMs: 1000, max: 3 });
    expect(second.map((l) => [l.message.payload['n'], l.message.attempt])).toEqual([
      [4, 1],
      [5, 1],
      [6, 1],
    ]);
    // It stops: what is left of the batches leased ahead for it (just 7) goes back as if never leased.
    consumer.forgetConsumer(q);
    await waitFor(async () => (await t.depth(q)).inFlight === 3, 'the batch taken ahead put back');
    for (const l of second) expect(await consumer.ack(l)).toBe(true);
    const rest = await t.lease(q, { leaseMs: 10_000, waitMs: 0, max: 5 });
    expect(rest.map((l) => [l.message.payload['n'], l.message.attempt])).toEqual([[7, 1]]);
    await t.ack(rest[0]!);
  });

  it('a message whose lease ran out comes back in its own place, ahead of later ones of its priority', async () => {
    const q = 'expiry-order';
    await t.enqueue([entry(q, msg(q, { n: 1 }))]);
    const [first] = await t.lease(q, { leaseMs: 100, waitMs: 0 });
    await t.enqueue([2, 3].map((n) => entry(q, msg(q, { n }))));
    await waitFor(async () => (await t.depth(q)).ready === 3, 'the lease to run out', 5000, 20);
    const again = await t.lease(q, { leaseMs: 10_000, waitMs: 0, max: 3 });
    expect(again.map((l) => [l.message.payload['n'], l.message.attempt])).toEqual([
      [1, 2],
      [2, 1],
      [3, 1],
    ]);
    expect(await t.ack(first!)).toBe(false);
    for (const l of again) await t.ack(l);
  });

  it('extending a lease gives it a new token; the old one no longer acks', async () => {
    const q = 'extend-token';
    await t.enqueue([entry(q, msg(q))]);
    const [lease] = await t.lease(q, { leaseMs: 10_000, waitMs: 0 });
    const stale: Lease = { ...lease!, message: lease!.message };
    expect(await t.extendLease(lease!, 20_000)).toBe(true);
    expect(lease!.token).not.toBe(stale.token);
    expect(await t.ack(stale)).toBe(false);
    expect(await t.ack(lease!)).toBe(true);
  });

  it('counts attempts exactly past a thousand redeliveries', { timeout: 60_000 }, async () => {
    const q = 'many-attempts';
    await t.enqueue([entry(q, msg(q))]);
    let last: Lease | undefined;
    for (let i = 1; i <= 1030; i++) {
      [last] = await t.lease(q, { leaseMs: 10_000, waitMs: 0 });
      expect(last?.message.attempt).toBe(i);
      if (i < 1030) expect(await t.requeue(last!, { delayMs: 0 })).toBe(true);
    }
    expect(await t.ack(last!)).toBe(true);
    expect(await t.depth(q)).toEqual({ ready: 0, delayed: 0, inFlight: 0 });
  });

  it('publications reach subscribers whether or not anybody listened when the message was enqueued', async () => {
    const q = 'observed';
    const watcher = transport();
    const m = msg(q, { n: 5, type: MessageType.STATUS });
    await t.enqueue([entry(q, m)]);
    const seen: string[] = [];
    const off = await watcher.subscribe(MessageType.STATUS, (x) => void seen.push(x.id));
    // The enqueue came before any subscriber; a publication later than that still reaches the
    // subscriber that came since (a moment later, as a bus's publish() would).
    await waitFor(() => Date.now() > m.timestamp.getTime() + 50, 'a moment to pass');
    await t.publish(MessageType.STATUS, m);
    await waitFor(() => seen.length === 1, 'the publication');
    // With a subscriber present, a publication right after the enqueue is seen too.
    const m2 = msg(q, { n: 6, type: MessageType.STATUS });
    await t.enqueue([entry(q, m2)]);
    await t.publish(MessageType.STATUS, m2);
    await waitFor(() => seen.length === 2, 'the second publication');
    expect(seen).toEqual([m.id, m2.id]);
    await off();
    for (const l of await t.lease(q, { leaseMs: 1000, waitMs: 0, max: 2 })) await t.ack(l);
  });

  it('dedupes a repeated id inside the window and returns the first message', async () => {
    const q = 'dedupe';
    const first = msg(q, { id: `dup-${ns}`, n: 1 });
    const second = { ...first, payload: { n: 2 } };
    const [a] = await t.enqueue([entry(q, first, { dedupeWindowMs: 60_000 })]);
    const [b] = await t.enqueue([entry(q, second, { dedupeWindowMs: 60_000 })]);
    expect(a).toEqual({ status: 'enqueued' });
    expect(b!.status).toBe('duplicate');
    if (b!.status === 'duplicate') expect(b!.original.payload).toEqual({ n: 1 });
    expect((await t.depth(q)).ready).toBe(1);
  });

  it('refuses an unregistered recipient when asked to, and knows registered ones across connections', async () => {
    const other = transport();
    expect(await t.hasRecipient('agent-x')).toBe(false);
    const [r1] = await t.enqueue([entry('agent-x', msg('agent-x'), { requireRecipient: true })]);
    expect(r1).toEqual({ status: 'no_recipient' });
    await other.addRecipient('agent-x');
    expect(await t.hasRecipient('agent-x')).toBe(true);
    const [r2] = await t.enqueue([entry('agent-x', msg('agent-x'), { requireRecipient: true })]);
    expect(r2).toEqual({ status: 'enqueued' });
    await other.removeRecipient('agent-x');
    expect(await t.hasRecipient('agent-x')).toBe(false);
  });

  it('stores dead letters, with the lease removed atomically, and lists, takes and purges them', async () => {
    const q = 'dlq';
    await t.enqueue([entry(q, msg(q, { n: 1 })), entry(q, msg(q, { n: 2 }))]);
    const [l1, l2] = await t.lease(q, { leaseMs: 5000, waitMs: 0, max: 2 });
    expect(
      await t.deadLetter({ message: l1!.message, queue: q, reason: 'max_attempts', error: 'boom', attempts: 1, deadAt: new Date() }, l1),
    ).toBe(true);
    expect(await t.ack(l1!)).toBe(false);
    await t.requeue(l2!, { delayMs: 0 });
    // A lost lease stores nothing.
    expect(await t.deadLetter({ message: l2!.message, queue: q, reason: 'max_attempts', attempts: 1, deadAt: new Date() }, l2)).toBe(false);
    const lone = msg('nobody');
    expect(await t.deadLetter({ message: lone, queue: 'nobody', reason: 'recipient_not_found', attempts: 0, deadAt: new Date() })).toBe(
      true,
    );
    const letters = await t.listDeadLetters();
    expect(letters.map((d) => [d.message.id, d.reason])).toEqual([
      [l1!.message.id, 'max_attempts'],
      [lone.id, 'recipient_not_found'],
    ]);
    expect(letters[0]!.error).toBe('boom');
    expect(letters[0]!.deadAt).toBeInstanceOf(Date);
    expect(await t.listDeadLetters({ limit: 1 })).toHaveLength(1);
    const taken = await t.takeDeadLetter(lone.id);
    expect(taken?.message.id).toBe(lone.id);
    expect(await t.takeDeadLetter(lone.id)).toBeNull();
    expect(await t.purgeDeadLetters()).toBe(1);
    expect(await t.listDeadLetters()).toEqual([]);
    expect(await t.depth(q)).toEqual({ ready: 1, delayed: 0, inFlight: 0 });
  });

  it('dead-letters malformed data found in a queue as malformed and carries on', async () => {
    const q = 'malformed';
    const raw = rawClient();
    await raw.connect();
    try {
      const base = `concord:{${ns}}:q:${q}:`;
      await raw.hset(base + 'body', 'garbage-1', '{not json', 'evil', '{"__proto__":{"x":1},"id":"evil"}');
      await raw.hset(base + 'meta', 'garbage-1', '1:0:', 'evil', '2:0:');
      // 'no-body' is in the ready index with no body at all.
      await raw.zadd(base + 'ready', 1, 'garbage-1', 2, 'evil', 3, 'no-body');
    } finally {
      raw.disconnect();
    }
    await t.enqueue([entry(q, msg(q, { n: 7 }))]);
    const got = await t.lease(q, { leaseMs: 5000, waitMs: 1000 });
    expect(got.map((l) => l.message.payload['n'])).toEqual([7]);
    await t.ack(got[0]!);
    const letters = (await t.listDeadLetters()).filter((d) => d.queue === q);
    expect(letters.map((d) => [d.message.id, d.reason, d.raw])).toEqual([
      ['garbage-1', 'malformed', '{not json'],
      ['evil', 'malformed', '{"__proto__":{"x":1},"id":"evil"}'],
      ['no-body', 'malformed', ''],
    ]);
    expect(await t.depth(q)).toEqual({ ready: 0, delayed: 0, inFlight: 0 });
    await t.purgeDeadLetters();
  });

  it('keeps a reply inbox as a plain list its owner pops, once each, with depth, requeue and dead letter', async () => {
    const q = '_inbox.bus-under-test';
    const owner = transport();
    await t.enqueue([1, 2, 3].map((n) => entry(q, msg(q, { n, type: MessageType.RESULT }))));
    const raw = rawClient();
    await raw.connect();
    try {
      const base = `concord:{${ns}}:q:${q}:`;
      expect(await raw.type(base + 'list')).toBe('list');
      expect(await raw.llen(base + 'list')).toBe(3);
      // The inbox of a bus that died goes away by itself: a day after the reply that found it empty.
      const ttl = await raw.pttl(base + 'list');
      expect(ttl).toBeGreaterThan(23 * 3600_000);
      expect(ttl).toBeLessThanOrEqual(24 * 3600_000);
      // A reply onto a non-empty inbox keeps that expiry; one onto an emptied inbox sets it again.
      await raw.pexpire(base + 'list', 1_000_000);
      await t.enqueue([entry(q, msg(q, { n: 4, type: MessageType.RESULT }))]);
      expect(await raw.pttl(base + 'list')).toBeLessThanOrEqual(1_000_000);
      await raw.del(base + 'list');
      await t.enqueue([entry(q, msg(q, { n: 5, type: MessageType.RESULT }))]);
      expect(await raw.pttl(base + 'list')).toBeGreaterThan(23 * 3600_000);
      await raw.del(base + 'list');
      await t.enqueue([1, 2, 3].map((n) => entry(q, msg(q, { n, type: MessageType.RESULT }))));
      // Nothing of a queue's machinery exists for an inbox.
      expect(await raw.exists(base + 'ready', base + 'body', base + 'meta')).toBe(0);
    } finally {
      raw.disconnect();
    }
    expect(await owner.depth(q)).toEqual({ ready: 3, delayed: 0, inFlight: 0 });

    const first = await owner.lease(q, { leaseMs: 5000, waitMs: 1000, max: 2 });
    expect(first.map((l) => [l.message.payload['n'], l.message.attempt])).toEqual([
      [1, 1],
      [2, 1],
    ]);
    expect(await owner.ack(first[0]!)).toBe(true);
    expect(await owner.ack(first[0]!)).toBe(false); // once only
    expect(await owner.extendLease(first[1]!, 1000)).toBe(true);
    // A requeued reply is visible again at once; its old lease no longer acks.
    expect(await owner.requeue(first[1]!, { delayMs: 0 })).toBe(true);
    expect(await owner.ack(first[1]!)).toBe(false);
    expect(await owner.extendLease(first[1]!, 1000)).toBe(false);
    expect(await owner.depth(q)).toEqual({ ready: 2, delayed: 0, inFlight: 0 });

    const rest = await owner.lease(q, { leaseMs: 5000, waitMs: 0, max: 10 });
    expect(rest.map((l) => l.message.payload['n'])).toEqual([3, 2]);
    const letter = { message: rest[0]!.message, queue: q, reason: 'max_attempts' as const, error: 'test', attempts: 1, deadAt: new Date() };
    expect(await owner.deadLetter(letter, rest[0]!)).toBe(true);
    expect(await owner.deadLetter(letter, rest[0]!)).toBe(false);
    expect(await owner.ack(rest[1]!)).toBe(true);
    expect(await owner.depth(q)).toEqual({ ready: 0, delayed: 0, inFlight: 0 });
    const letters = (await t.listDeadLetters()).filter((d) => d.queue === q);
    expect(letters.map((d) => [d.message.payload['n'], d.reason])).toEqual([[3, 'max_attempts']]);
    await t.purgeDeadLetters();
  });

  it('an inbox wakes its waiting owner, and a reply that comes after the wait ended is kept for the next', async () => {
    const q = '_inbox.late-replies';
    const owner = transport();
    // A waiting owner is woken by a reply sent from another connection.
    const waiting = owner.lease(q, { leaseMs: 5000, waitMs: 10_000 });
    await waitFor(() => blockedInCmd(ns, 'blmpop'), 'the inbox to block', 5000, 10);
    await t.enqueue([entry(q, msg(q, { n: 1, type: MessageType.RESULT }))]);
    expect((await waiting).map((l) => l.message.payload['n'])).toEqual([1]);

    // A wait that ends empty (aborted) while the pop is still blocked ...
    const ac = new AbortController();
    const gone = owner.lease(q, { leaseMs: 5000, waitMs: 10_000, signal: ac.signal });
    await waitFor(() => blockedInCmd(ns, 'blmpop'), 'the inbox to block again', 5000, 10);
    ac.abort();
    expect(await gone).toEqual([]);
    // ... and the reply that arrives meanwhile is not lost: the next call gets it.
    await t.enqueue([entry(q, msg(q, { n: 2, type: MessageType.RESULT }))]);
    const next = await owner.lease(q, { leaseMs: 5000, waitMs: 5000 });
    expect(next.map((l) => [l.message.payload['n'], l.message.attempt])).toEqual([[2, 1]]);
    expect(await owner.ack(next[0]!)).toBe(true);
    expect(await owner.depth(q)).toEqual({ ready: 0, delayed: 0, inFlight: 0 });
  });

  it('dead-letters an inbox entry that does not decode as malformed and hands out the rest', async () => {
    const q = '_inbox.malformed';
    const raw = rawClient();
    await raw.connect();
    try {
      await raw.rpush(`concord:{${ns}}:q:${q}:list`, '{not json');
    } finally {
      raw.disconnect();
    }
    await t.enqueue([entry(q, msg(q, { n: 9, type: MessageType.RESULT }))]);
    const got = await t.lease(q, { leaseMs: 5000, waitMs: 1000, max: 5 });
    expect(got.map((l) => l.message.payload['n'])).toEqual([9]);
    const letters = (await t.listDeadLetters()).filter((d) => d.queue === q);
    expect(letters.map((d) => [d.reason, d.raw])).toEqual([['malformed', '{not json']]);
    await t.purgeDeadLetters();
  });

  it('publishes to subscribers of the topic and of * in other connections, once each', async () => {
    const a = transport();
    const b = transport();
    const seen: string[] = [];
    const offTopic = await a.subscribe('news', (m) => seen.push(`a-news:${m.payload['n']}`));
    const offAll = await b.subscribe('*', (m) => seen.push(`b-all:${m.payload['n']}`));
    const offOther = await b.subscribe('other', (m) => seen.push(`b-other:${m.payload['n']}`));
    await t.publish('news', msg('', { n: 1, type: MessageType.STATUS }));
    await waitFor(() => seen.length >= 2, 'both subscribers');
    expect(seen.sort()).toEqual(['a-news:1', 'b-all:1']);
    await offTopic();
    await offAll();
    await offOther();
    await t.publish('news', msg('', { n: 2 }));
    await t.publish('other', msg('', { n: 3 }));
    // A later publication on a live subscription proves the earlier ones were not delivered late.
    const probe: number[] = [];
    const offProbe = await a.subscribe('probe', (m) => probe.push(Number(m.payload['n'])));
    await t.publish('probe', msg('', { n: 9 }));
    await waitFor(() => probe.length === 1, 'probe');
    expect(seen).toHaveLength(2);
    await offProbe();
  });

  it("an enqueue publishes only for subscribers of its namespace: another tenant's pattern subscription makes it publish nothing", async () => {
    // Another tenant of the server listens to every channel with a pattern (PSUBSCRIBE *).
    const tenant = rawClient();
    await tenant.connect();
    const heard: string[] = [];
    tenant.on('pmessage', (_pattern: string, channel: string) => heard.push(channel));
    await tenant.psubscribe('*');
    const raw = rawClient();
    await raw.connect();
    try {
      const q = 'published';
      const publishing = (n: number) => entry(q, msg(q, { n, type: MessageType.STATUS }), { publish: true });
      /** Enqueues, then publishes a marker: the tenant hears whatever the enqueue published before the marker. */
      const heardFrom = async (n: number): Promise<string[]> => {
        heard.length = 0;
        await t.enqueue([publishing(n)]);
        await raw.publish(`marker:${ns}`, String(n));
        await waitFor(() => heard.includes(`marker:${ns}`), 'the marker');
        return heard.filter((c) => c !== `marker:${ns}`);
      };
      // Nobody of the namespace subscribes: nothing is published, whatever other tenants listen to.
      expect(await heardFrom(1)).toEqual([]);
      // A subscriber of every topic in the namespace: published, and it gets it.
      const b = transport();
      const seen: number[] = [];
      const off = await b.subscribe('*', (m) => seen.push(Number(m.payload['n'])));
      expect(await heardFrom(2)).toEqual([`concord:{${ns}}:topic:status`]);
      await waitFor(() => seen.length === 1, 'the * subscriber');
      expect(seen).toEqual([2]);
      // It left: nothing is published again.
      await off();
      expect(await heardFrom(3)).toEqual([]);
      // A subscriber of that type alone: published.
      const offStatus = await b.subscribe(MessageType.STATUS, () => undefined);
      expect(await heardFrom(4)).toEqual([`concord:{${ns}}:topic:status`]);
      await offStatus();
      const leased = await t.lease(q, { leaseMs: 5000, waitMs: 0, max: 10 });
      expect(leased).toHaveLength(4);
    } finally {
      tenant.disconnect();
      raw.disconnect();
    }
  });

  it('sendBatch-style enqueue of many entries to several queues is one atomic call', async () => {
    const entries = Array.from({ length: 200 }, (_, n) => entry(`batch-${n % 3}`, msg(`batch-${n % 3}`, { n })));
    const results = await t.enqueue(entries);
    expect(results.filter((r) => r.status === 'enqueued')).toHaveLength(200);
    const depths = await Promise.all([0, 1, 2].map((i) => t.depth(`batch-${i}`)));
    expect(depths.map((d) => d.ready)).toEqual([67, 67, 66]);
    const leased = await t.lease('batch-0', { leaseMs: 5000, waitMs: 0, max: 100 });
    expect(leased.map((l) => l.message.payload['n'])).toEqual(Array.from({ length: 67 }, (_, i) => i * 3));
  });

  it('one enqueue call of mixed entries files each where and as it asked (property)', async () => {
    // Queue names with the characters key names escape, priorities, delays, dedupe windows and
    // recipient checks mixed in one call: the script's compact arguments must lose none of it.
    const names = ['mix', 'mix:a', 'mix%3A', 'mix%b:c'];
    await t.addRecipient('mix:a');
    let round = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            q: fc.nat(names.length - 1),
            priority: fc.integer({ min: 0, max: 10 }),
            delayed: fc.boolean(),
            dedupe: fc.boolean(),
            required: fc.boolean(),
          }),
          { minLength: 1, maxLength: 60 },
        ),
        async (specs) => {
          const tag = `r${round++}-`;
          const queueOf = (i: number) => tag + names[i]!;
          if (specs.some((s) => s.required && s.q === 1)) await t.addRecipient(queueOf(1));
          const es = specs.map((s, n) =>
            entry(queueOf(s.q), msg(queueOf(s.q), { n, priority: s.priority }), {
              visibleAt: s.delayed ? Date.now() + 60_000 : 0,
              dedupeWindowMs: s.dedupe ? 60_000 : 0,
              requireRecipient: s.required,
            }),
          );
          const results = await t.enqueue(es);
          // Only queue 1 is a recipient: a required entry elsewhere is refused.
          const refused = specs.map((s) => s.required && s.q !== 1);
          expect(results.map((r) => r.status)).toEqual(refused.map((r) => (r ? 'no_recipient' : 'enqueued')));
          for (let qi = 0; qi < names.length; qi++) {
            const mine = specs.map((s, n) => ({ ...s, n })).filter((s, n) => s.q === qi && !refused[n]);
            const depth = await t.depth(queueOf(qi));
            expect(depth).toEqual({
              ready: mine.filter((s) => !s.delayed).length,
              delayed: mine.filter((s) => s.delayed).length,
              inFlight: 0,
            });
            const leased = await t.lease(queueOf(qi), { leaseMs: 5000, waitMs: 0, max: 100 });
            const expected = mine.filter((s) => !s.delayed).sort((a, b) => b.priority - a.priority || a.n - b.n);
            expect(leased.map((l) => l.message.payload['n'])).toEqual(expected.map((s) => s.n));
            expect(leased.map((l) => l.message.priority)).toEqual(expected.map((s) => s.priority));
            for (const l of leased) await t.ack(l);
          }
          // A dedupe window holds: the same entries again are duplicates where they asked for one.
          const again = await t.enqueue(es.filter((_, n) => specs[n]!.dedupe && !refused[n]));
          expect(again.every((r) => r.status === 'duplicate')).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('escapes queue names so colons cannot collide', async () => {
    await t.enqueue([entry('a:b', msg('a:b', { n: 1 })), entry('a', msg('a', { n: 2 }))]);
    const [x] = await t.lease('a:b', { leaseMs: 1000, waitMs: 0 });
    const [y] = await t.lease('a', { leaseMs: 1000, waitMs: 0 });
    expect([x!.message.payload['n'], y!.message.payload['n']]).toEqual([1, 2]);
    await t.ack(x as Lease);
    await t.ack(y as Lease);
  });

  it('a closed transport refuses work', async () => {
    const tr = transport();
    await tr.connect();
    await tr.close();
    await expect(tr.enqueue([entry('x', msg('x'))])).rejects.toThrow(/closed/);
    expect(await tr.lease('x', { leaseMs: 1000, waitMs: 100 })).toEqual([]);
  });

  it('an unreachable server fails connect with TransportError naming the URL', async () => {
    const tr = createRedisTransport('redis://127.0.0.1:1/0?namespace=nowhere');
    const err = await tr.connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).message).toContain('redis://127.0.0.1:1/0');
    await tr.close();
  });
});

#!/usr/bin/env node
// Soak test of the Redis bus (not part of `npm test`): `npm run soak -- --minutes N`.
//
// Producers send numbered tasks (ids `p<k>-<seq>`, about 1 in 97 a "poison" task every attempt of
// which fails) to one queue served by consumer processes; meanwhile this process SIGKILLs a random
// consumer now and then (and starts a new one), CLIENT KILLs random connections of the run's own
// namespace (never another client of the server), and consumers fail a share of deliveries on
// purpose. At the end it drains the queue and checks, per id sent: acked exactly once or
// dead-lettered, nothing lost, nothing delivered again after its ack. Redeliveries before an ack
// (at-least-once) are expected and counted separately. The run's namespace is removed after.
//
//   --minutes N        how long producers send (default 10)
//   --producers N      producer processes (default 2)
//   --consumers N      consumer processes (default 3), each with --loops receive loops (default 4)
//   --rate N           messages per second per producer (default 40)
//   --url URL          Redis (default redis://127.0.0.1:6379/0)
//   --out FILE         also write the figures as JSON to FILE
//
// Bookkeeping lives in Redis under the run's namespace (`concord:{NS}:soak:*`), written by the
// consumers and producers with plain clients this process never kills:
//   soak:sent      hash producer -> ids confirmed sent (every send that resolved: 0..n-1)
//   soak:acked     hash id -> successful acks (ack() resolved true)
//   soak:started   hash id -> acks attempted (written just before ack(), so a consumer killed
//                  between its ack and the `acked` record is told apart from a loss)
//   soak:after     set of ids delivered again after an ack had succeeded (must stay empty)
//   soak:counts    hash of counters (deliveries, redeliveries, failures, ...)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';

const QUEUE = 'soak';
const LEASE_MS = 3000;
const MAX_ATTEMPTS = 4;
const FAIL_RATE = 0.03;

function parseArgs(argv = process.argv.slice(2)) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument \`${a}\``);
    const key = a.slice(2);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out[key] = true;
    else {
      out[key] = Number.isFinite(Number(next)) && next.trim() !== '' ? Number(next) : next;
      i++;
    }
  }
  return out;
}

const args = parseArgs();
const BASE = typeof args.url === 'string' ? args.url : 'redis://127.0.0.1:6379/0';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rand = (lo, hi) => lo + Math.random() * (hi - lo);

/** A plain client for bookkeeping (named so the parent can tell it apart and never kills it). */
function plainClient(name) {
  const u = new URL(BASE);
  const client = new Redis({
    host: u.hostname || '127.0.0.1',
    port: Number(u.port || 6379),
    db: Number(u.pathname.slice(1) || 0),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    connectionName: name,
  });
  client.on('error', () => {});
  return client;
}

function keys(ns) {
  const p = `concord:{${ns}}:soak:`;
  return { sent: p + 'sent', acked: p + 'acked', started: p + 'started', after: p + 'after', counts: p + 'counts' };
}

async function concord() {
  const { MessageBus, MessageType } = await import('../dist/index.js');
  const { createRedisTransport } = await import('../dist/backends/redis/index.js');
  return { MessageBus, MessageType, createRedisTransport };
}

// ------------------------------------------------------------------------------ consumer

async function consumer(ns, id) {
  const { MessageBus } = await concord();
  const k = keys(ns);
  const book = plainClient(`soak-book:${ns}:${id}`);
  const bus = new MessageBus({ transport: `${BASE}?namespace=${ns}`, leaseMs: LEASE_MS, maxAttempts: MAX_ATTEMPTS });
  bus.registerAgent(QUEUE);
  let stopping = false;
  process.on('SIGTERM', () => (stopping = true));
  const loop = async () => {
    while (!stopping) {
      let d;
      try {
        d = await bus.receive(QUEUE, { timeout: 1000 });
      } catch {
        if (stopping) break;
        await book.hincrby(k.counts, 'opErrors', 1);
        await sleep(50);
        continue;
      }
      if (d === null) continue;
      const acked = Number(await book.hget(k.acked, d.id));
      await book.hincrby(k.counts, 'deliveries', 1);
      if (d.attempt > 1) await book.hincrby(k.counts, 'redeliveries', 1);
      if (acked > 0) await book.sadd(k.after, d.id);
      try {
        if (d.payload.poison === true || Math.random() < FAIL_RATE) {
          await book.hincrby(k.counts, 'failures', 1);
          await d.nack(new Error('soak: handler failure'), { delayMs: 20 });
          continue;
        }
        await book.hincrby(k.started, d.id, 1);
        if (await d.ack()) await book.hincrby(k.acked, d.id, 1);
        else await book.hincrby(k.counts, 'acksLost', 1);
      } catch {
        // A connection killed under the call: the lease runs out and the message comes back.
        await book.hincrby(k.counts, 'opErrors', 1);
      }
    }
  };
  await Promise.all(Array.from({ length: Number(args.loops ?? 4) }, loop));
  await bus.close();
  book.disconnect();
  process.exit(0);
}

// ------------------------------------------------------------------------------ producer

async function producer(ns, id, rate) {
  const { MessageBus, MessageType } = await concord();
  const k = keys(ns);
  const book = plainClient(`soak-book:${ns}:${id}`);
  const bus = new MessageBus({ transport: `${BASE}?namespace=${ns}`, leaseMs: LEASE_MS, maxAttempts: MAX_ATTEMPTS });
  let stopping = false;
  process.on('SIGTERM', () => (stopping = true));
  const perTick = Math.max(1, Math.round(rate / 10));
  let seq = 0;
  const sendOne = async (n) => {
    // Retried with the same id until it goes through: the dedupe window makes a retry of a send
    // that did land a no-op.
    for (let tries = 0; ; tries++) {
      try {
        await bus.send({
          id: `${id}-${n}`,
          type: MessageType.TASK,
          sender: id,
          recipient: QUEUE,
          payload: { seq: n, poison: n % 97 === 0 },
        });
        return;
      } catch (err) {
        await book.hincrby(k.counts, 'sendRetries', 1);
        if (tries > 600) throw err;
        await sleep(100);
      }
    }
  };
  while (!stopping) {
    const started = Date.now();
    const batch = Array.from({ length: perTick }, (_, i) => seq + i);
    await Promise.all(batch.map(sendOne));
    seq += batch.length;
    await book.hset(k.sent, id, seq);
    await sleep(Math.max(0, 100 - (Date.now() - started)));
  }
  await bus.close();
  book.disconnect();
  process.exit(0);
}

// ------------------------------------------------------------------------------ parent

function spawnRole(role, ns, id, extra = []) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--role', role, '--ns', ns, '--id', id, '--url', BASE, ...extra], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return child;
}

async function cleanup(client, ns) {
  let cursor = '0';
  let removed = 0;
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', `concord:{${ns}}:*`, 'COUNT', 1000);
    cursor = next;
    if (found.length > 0) removed += await client.unlink(...found);
  } while (cursor !== '0');
  return removed;
}

/** Ids of the connections of namespace `ns` (Concord's own: `concord:NS:ROLE:PID:N`). */
async function concordConnections(client, ns) {
  const list = String(await client.client('LIST'));
  const out = [];
  for (const line of list.split('\n')) {
    if (!line.includes(` name=concord:${ns}:`)) continue;
    const id = /(?:^| )id=(\d+)/.exec(line)?.[1];
    const role = / name=concord:[^:]+:([a-z]+):/.exec(line)?.[1];
    if (id) out.push({ id, role });
  }
  return out;
}

async function parent() {
  const minutes = Number(args.minutes ?? 10);
  const nProducers = Number(args.producers ?? 2);
  const nConsumers = Number(args.consumers ?? 3);
  const rate = Number(args.rate ?? 40);
  const ns = `soak-${process.pid}-${randomBytes(3).toString('hex')}`;
  const k = keys(ns);
  const admin = plainClient(`soak-admin:${ns}`);
  const t0 = Date.now();
  const log = (s) => process.stderr.write(`[soak ${((Date.now() - t0) / 1000).toFixed(0).padStart(5)}s] ${s}\n`);
  log(`namespace ${ns}: ${nProducers} producers x ${rate} msg/s, ${nConsumers} consumers, ${minutes} min`);

  const { MessageBus, createRedisTransport } = await concord();
  const transport = createRedisTransport(`${BASE}?namespace=${ns}`);
  const watcher = new MessageBus({ transport, leaseMs: LEASE_MS, maxAttempts: MAX_ATTEMPTS });
  watcher.registerAgent(QUEUE); // the queue exists before the first send
  const figures = {
    namespace: ns,
    minutes,
    producers: nProducers,
    consumers: nConsumers,
    ratePerProducer: rate,
    sigkills: 0,
    clientKills: 0,
    clientKillsByRole: {},
  };
  let exitCode = 1;
  const consumers = new Map();
  let next = 0;
  const startConsumer = () => {
    const id = `c${next++}`;
    consumers.set(id, spawnRole('consumer', ns, id, ['--loops', String(args.loops ?? 4)]));
  };
  const producers = [];
  try {
    for (let i = 0; i < nConsumers; i++) startConsumer();
    await sleep(1000);
    for (let i = 0; i < nProducers; i++) producers.push(spawnRole('producer', ns, `p${i}`, ['--rate', String(rate)]));

    // Chaos while the producers send.
    const until = Date.now() + minutes * 60_000;
    let nextSigkill = Date.now() + rand(15_000, 40_000);
    let nextClientKill = Date.now() + rand(3_000, 10_000);
    let nextReport = Date.now() + 30_000;
    while (Date.now() < until) {
      await sleep(250);
      const now = Date.now();
      if (now >= nextSigkill) {
        nextSigkill = now + rand(15_000, 40_000);
        const ids = [...consumers.keys()];
        const victim = ids[Math.floor(Math.random() * ids.length)];
        const child = consumers.get(victim);
        consumers.delete(victim);
        child.kill('SIGKILL');
        await child.exited;
        figures.sigkills++;
        log(`SIGKILL consumer ${victim} (pid ${child.pid})`);
        setTimeout(startConsumer, rand(500, 3000));
      }
      if (now >= nextClientKill) {
        nextClientKill = now + rand(3_000, 10_000);
        const conns = await concordConnections(admin, ns);
        if (conns.length > 0) {
          const c = conns[Math.floor(Math.random() * conns.length)];
          await admin.client('KILL', 'ID', c.id).catch(() => 0);
          figures.clientKills++;
          figures.clientKillsByRole[c.role] = (figures.clientKillsByRole[c.role] ?? 0) + 1;
        }
      }
      if (now >= nextReport) {
        nextReport = now + 30_000;
        const sent = Object.values(await admin.hgetall(k.sent)).reduce((a, b) => a + Number(b), 0);
        const acked = await admin.hlen(k.acked);
        log(`sent ${sent}, acked ${acked}, sigkills ${figures.sigkills}, CLIENT KILLs ${figures.clientKills}`);
      }
    }

    // Producers stop (each records what it sent), then the consumers drain the queue.
    log('producers stopping');
    for (const p of producers) p.kill('SIGTERM');
    await Promise.all(producers.map((p) => p.exited));
    const sentBy = await admin.hgetall(k.sent);
    const total = Object.values(sentBy).reduce((a, b) => a + Number(b), 0);
    log(`sent ${total}; draining`);
    const drainUntil = Date.now() + 5 * 60_000;
    let dead = [];
    let empty = 0;
    for (;;) {
      const depth = await transport.depth(QUEUE).catch(() => undefined);
      const open = depth ? depth.ready + depth.delayed + depth.inFlight : NaN;
      // Nothing ready, delayed or leased, twice in a row: every message is acked or dead.
      empty = open === 0 ? empty + 1 : 0;
      if (empty >= 2) break;
      if (Date.now() > drainUntil) {
        log(`drain timed out: queue ${JSON.stringify(depth)}`);
        break;
      }
      await sleep(1000);
    }
    dead = (await watcher.getDeadLetters({ limit: 1_000_000 })).filter((l) => l.queue === QUEUE);
    for (const c of consumers.values()) c.kill('SIGTERM');
    await Promise.all([...consumers.values()].map((c) => c.exited));

    // The verdict, per id sent.
    const acked = await admin.hgetall(k.acked);
    const started = await admin.hgetall(k.started);
    const after = await admin.smembers(k.after);
    const counts = await admin.hgetall(k.counts);
    const deadIds = new Set(dead.map((l) => l.message.id));
    let ackedOnce = 0;
    let ackedTwice = 0;
    let deadAndAcked = 0;
    let ackUnrecorded = 0;
    const lost = [];
    for (const [pid, n] of Object.entries(sentBy)) {
      for (let i = 0; i < Number(n); i++) {
        const id = `${pid}-${i}`;
        const a = Number(acked[id] ?? 0);
        if (a === 1) ackedOnce++;
        if (a > 1) ackedTwice++;
        if (a > 0 && deadIds.has(id)) deadAndAcked++;
        if (a === 0 && !deadIds.has(id)) {
          // Gone from the queue (drained) with an ack attempted: its consumer was killed between
          // the ack and its record. Neither acked nor dead nor attempted: lost.
          if (Number(started[id] ?? 0) > 0) ackUnrecorded++;
          else lost.push(id);
        }
      }
    }
    const poison = Object.values(sentBy).reduce((s, n) => s + Math.ceil(Number(n) / 97), 0);
    Object.assign(figures, {
      durationS: Math.round((Date.now() - t0) / 1000),
      messages: total,
      ackedOnce,
      deadLetters: dead.length,
      deadLettersByReason: dead.reduce((m, l) => ((m[l.reason] = (m[l.reason] ?? 0) + 1), m), {}),
      poisonSent: poison,
      deliveries: Number(counts.deliveries ?? 0),
      redeliveries: Number(counts.redeliveries ?? 0),
      handlerFailures: Number(counts.failures ?? 0),
      acksLost: Number(counts.acksLost ?? 0),
      operationErrors: Number(counts.opErrors ?? 0),
      sendRetries: Number(counts.sendRetries ?? 0),
      ackUnrecorded,
      lost: lost.length,
      duplicatesAfterAck: after.length + ackedTwice,
      deadAndAcked,
    });
    if (lost.length > 0) figures.lostSample = lost.slice(0, 20);
    if (after.length > 0) figures.afterAckSample = after.slice(0, 20);
    const ok =
      lost.length === 0 &&
      after.length === 0 &&
      ackedTwice === 0 &&
      deadAndAcked === 0 &&
      ackedOnce + dead.length + ackUnrecorded === total;
    figures.verdict = ok ? 'PASS' : 'FAIL';
    exitCode = ok ? 0 : 1;
    process.stdout.write(JSON.stringify(figures, null, 2) + '\n');
    if (typeof args.out === 'string') writeFileSync(args.out, JSON.stringify(figures, null, 2) + '\n');
  } finally {
    for (const c of [...consumers.values(), ...producers]) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await watcher.close().catch(() => {});
    await transport.close().catch(() => {});
    const removed = await cleanup(admin, ns).catch(() => -1);
    log(`namespace ${ns} removed (${removed} keys)`);
    admin.disconnect();
  }
  process.exit(exitCode);
}

const role = args.role ?? 'parent';
if (role === 'consumer') await consumer(args.ns, args.id);
else if (role === 'producer') await producer(args.ns, args.id, Number(args.rate ?? 40));
else await parent();

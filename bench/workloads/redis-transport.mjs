// Workload 3a: Redis transport throughput. A producer process sends N task messages (random
// priorities) in batches; this process consumes and acks them with `concurrency` handlers.
// Result: msgs_per_s = N / (last ack - first send), clocks compared across the two processes.
// Before the timed part, every subject moves `warmup` messages the same way, untimed, so each
// figure is a steady state rather than partly JIT warm-up.
import { fileURLToPath } from 'node:url';
import {
  parseArgs,
  debug,
  priorities,
  taskInput,
  peerMessage,
  emit,
  wallMs,
  spawnRole,
  parentMessage,
  cleanupRedis,
  REDIS_URL,
  waitUntil,
  deferred,
} from '../lib/common.mjs';

const args = parseArgs();
const { subject, ns } = args;
const role = args.role ?? 'consumer';
const n = args.n ?? 50_000;
const batch = args.batch ?? 500;
const concurrency = args.concurrency ?? 1;
const warmup = args.warmup ?? Math.min(5000, Math.ceil(n / 10));
if (!ns) throw new Error('--ns is required (a namespace unique to this run)');
const concordUrl = `${REDIS_URL}?namespace=${ns}`;

async function concordBus(extra = {}) {
  const { requireConcord, busDefaults } = await import('../lib/concord.mjs');
  const { MessageBus } = await requireConcord(['MessageBus']);
  const redis = await requireConcord([], 'concord-agents/redis');
  const transport = typeof redis.createRedisTransport === 'function' ? redis.createRedisTransport(concordUrl) : concordUrl;
  const bus = new MessageBus({ ...busDefaults, transport, ...extra });
  // A transport instance passed in is the caller's to close (the bus closes only those it made).
  const close = async () => {
    await bus.close();
    if (typeof transport !== 'string') await transport.close();
  };
  return { bus, transport: typeof transport === 'string' ? null : transport, close };
}

if (role === 'producer') {
  const prio = priorities(n, 3);
  let close;
  let sendAll;
  let sendWarm;
  if (subject === 'concord') {
    const c = await concordBus();
    await c.transport?.connect(); // connect outside the timed part, as the peers do
    const make = (from, count) => Array.from({ length: count }, (_, i) => taskInput(from + i, prio[(from + i) % n]));
    const inputs = make(0, n);
    const warm = make(n, warmup);
    sendAll = async (all = inputs) => {
      for (let i = 0; i < all.length; i += batch) await c.bus.sendBatch(all.slice(i, i + batch));
    };
    sendWarm = () => sendAll(warm);
    close = c.close;
  } else {
    const peer = subject === 'bullmq' ? await import('../peers/bullmq.mjs') : await import('../peers/redis-streams-raw.mjs');
    const messages = Array.from({ length: n }, (_, i) => peerMessage(i, prio[i]));
    const warm = Array.from({ length: warmup }, (_, i) => peerMessage(n + i, prio[i % n]));
    const p = await peer.producer(ns);
    sendAll = () => p.sendAll(messages, batch);
    sendWarm = () => p.sendAll(warm, batch);
    close = p.close;
  }
  debug('producer ready');
  process.send({ type: 'ready' });
  if (warmup > 0) {
    await parentMessage('warm');
    await sendWarm();
    process.send({ type: 'warmed' });
  }
  await parentMessage('go');
  const cpu0 = process.cpuUsage();
  const start = wallMs();
  await sendAll();
  const end = wallMs();
  const cpu = process.cpuUsage(cpu0);
  process.send({ type: 'sent', start, end, cpuUs: cpu.user + cpu.system });
  debug('producer sent all');
  await close();
  debug('producer closed');
  process.disconnect();
  process.exit(0);
} else {
  let acked = 0;
  let sink = 0;
  // Counts toward the warm-up first, then toward the timed n.
  let target = warmup > 0 ? warmup : n;
  let all = deferred();
  const handler = async (msg) => {
    sink ^= msg.payload.section;
  };
  const onAck = (k) => {
    acked += k;
    if (acked >= target) all.resolve(wallMs());
  };
  let stop;
  let settled = async (t) => t; // when the last ack is known to be stored
  if (subject === 'redis-streams-raw') {
    const raw = await import('../peers/redis-streams-raw.mjs');
    await raw.prepareGroup(ns);
    stop = await raw.startConsumers(ns, concurrency, handler, onAck);
  } else if (subject === 'bullmq') {
    const bull = await import('../peers/bullmq.mjs');
    stop = await bull.startWorker(ns, concurrency, handler, onAck);
  } else if (subject === 'concord') {
    const { bus, transport, close } = await concordBus();
    bus.registerAgent('worker', {
      name: 'worker',
      concurrency,
      async handleMessage(msg) {
        await handler(msg);
        onAck(1);
      },
    });
    if (transport) {
      await waitUntil(() => transport.hasRecipient('worker'), 'the worker recipient to be registered', 10_000);
      // The handler resolving comes one round trip before Concord's ack lands: wait for it.
      settled = async () => {
        await waitUntil(
          async () => {
            const d = await transport.depth('worker');
            return d.ready === 0 && d.inFlight === 0 && d.delayed === 0;
          },
          'the last ack',
          30_000,
          0,
        );
        return wallMs();
      };
    } else await new Promise((r) => setTimeout(r, 200));
    stop = close;
  } else throw new Error(`unknown subject ${subject}`);

  const producer = await spawnRole(
    fileURLToPath(import.meta.url),
    'producer',
    process.argv.slice(2).filter((a, i, all) => a !== '--role' && all[i - 1] !== '--role'),
  );
  let result;
  try {
    await producer.message('ready');
    if (warmup > 0) {
      producer.send({ type: 'warm' });
      const warmTimeout = setTimeout(() => all.reject(new Error(`only ${acked}/${warmup} warm-up messages acked after 120 s`)), 120_000);
      await producer.message('warmed');
      await settled(await all.promise);
      clearTimeout(warmTimeout);
      if (acked !== warmup) throw new Error(`warm-up acked ${acked} messages, expected ${warmup}`);
      acked = 0;
      target = n;
      all = deferred();
      debug('warmed up');
    }
    const cpu0 = process.cpuUsage();
    producer.send({ type: 'go' });
    const sent = await producer.message('sent');
    const timeout = setTimeout(() => all.reject(new Error(`only ${acked}/${n} acked after 120 s`)), 120_000);
    const lastHandled = await all.promise;
    debug('consumer handled all');
    clearTimeout(timeout);
    const lastAck = await settled(lastHandled);
    const cpu = process.cpuUsage(cpu0);
    debug('consumer saw last ack');
    const seconds = (lastAck - sent.start) / 1000;
    // CPU (user + system) of each process while measuring: on 2 shared cores it says where the time goes.
    result = {
      seconds,
      sendSeconds: (sent.end - sent.start) / 1000,
      producer_cpu_s: (sent.cpuUs ?? 0) / 1e6,
      consumer_cpu_s: (cpu.user + cpu.system) / 1e6,
    };
  } finally {
    await stop();
    debug('consumer stopped');
    await producer.exited;
    debug('producer exited');
    await cleanupRedis(ns);
  }
  emit([{ metric: 'msgs_per_s', value: n / result.seconds }], { n, warmup, batch, concurrency, ...result, sink });
  process.exit(0);
}

// Scale curves of Redis consumers (issue 25, item 5): N consumer processes run the same agent
// (`worker`, concurrency 50 each, as redis-transport/c50) on one Redis; this process produces a backlog-free stream (sends
// in batches of 500 while they consume) and we measure the throughput, first send to last ack,
// and the CPU the consumers spend per message (summed over their processes). The table's
// companion figures (producer and Redis CPU, each consumer's share, the load average) are
// appended to $TMPDIR/concord-scale-redis-consumers.jsonl: on a 2-core machine 4 consumers +
// producer + Redis exceed the cores, which limits this curve. Redis's CPU is read from INFO: on
// a shared server it includes everyone else's commands.
//
// This file is also the consumer process (`node redis-consumers.mjs --consumer <url>`).
import { fork } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireConcord, busDefaults } from '../lib/concord.mjs';
import { redisClient } from '../lib/common.mjs';

const self = fileURLToPath(import.meta.url);
const MESSAGES = 20_000;
const BATCH = 500;
const CONCURRENCY = 50;
const FIGURES = join(tmpdir(), 'concord-scale-redis-consumers.jsonl');
const now = () => performance.timeOrigin + performance.now();

if (process.argv[2] === '--consumer') {
  const url = process.argv[3];
  await requireConcord([], 'concord-agents/redis');
  const { MessageBus } = await requireConcord(['MessageBus']);
  const bus = new MessageBus({ ...busDefaults, transport: url });
  let handled = 0;
  let lastAt = 0;
  let cpu0 = process.cpuUsage();
  let ru0 = process.resourceUsage();
  const agent = (name) => ({
    name,
    concurrency: CONCURRENCY,
    handleMessage: async () => {
      handled++;
      lastAt = now();
    },
  });
  bus.registerAgent('worker', agent('worker'));
  await bus.ready();
  process.on('message', async (m) => {
    if (m.type === 'start') {
      handled = 0;
      lastAt = 0;
      cpu0 = process.cpuUsage();
      ru0 = process.resourceUsage();
      // Backlog rounds: the queue is full already; consuming it starts now.
      if (m.agent) bus.registerAgent(m.agent, agent(m.agent));
      process.send({ type: 'started' });
    } else if (m.type === 'count') {
      const c = process.cpuUsage(cpu0);
      const ru = process.resourceUsage();
      // Preempted (involuntary) switches: the process was runnable but a core was not free.
      const preempted = ru.involuntaryContextSwitches - ru0.involuntaryContextSwitches;
      const waits = ru.voluntaryContextSwitches - ru0.voluntaryContextSwitches;
      process.send({ type: 'count', handled, lastAt, cpuMs: (c.user + c.system) / 1000, preempted, waits });
    } else if (m.type === 'stop') {
      await bus.close();
      process.exit(0);
    }
  });
  process.send({ type: 'ready' });
}

function child(url) {
  const c = fork(self, ['--consumer', url], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = [];
  c.on('message', (m) => {
    const i = waiting.findIndex((w) => w.type === m.type);
    if (i >= 0) waiting.splice(i, 1)[0].resolve(m);
  });
  c.on('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`consumer exited with ${code}`));
  });
  return {
    c,
    ask(type, reply = type, extra = {}) {
      const p = new Promise((resolve, reject) => waiting.push({ type: reply, resolve, reject }));
      if (type !== null) c.send({ type, ...extra });
      return p;
    },
  };
}

async function redisCpuMs(r) {
  const info = await r.info('cpu');
  const f = (k) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  return (f('used_cpu_user') + f('used_cpu_sys')) * 1000;
}

/** Calls per command since the server started (server-wide: a shared server counts everyone). */
async function commandCalls(r) {
  const out = {};
  for (const m of (await r.info('commandstats')).matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)) out[m[1]] = Number(m[2]);
  return out;
}

async function setup(n, ctx) {
  await requireConcord([], 'concord-agents/redis');
  const { MessageBus } = await requireConcord(['MessageBus']);
  const url = `${ctx.redisUrl}?namespace=${ctx.ns}`;
  const consumers = Array.from({ length: n }, () => child(url));
  await Promise.all(consumers.map((k) => k.ask(null, 'ready')));
  const bus = new MessageBus({ ...busDefaults, transport: url });
  await bus.ready();
  const s = { bus, consumers, redis: await redisClient(), rounds: 0 };
  await round(s, 4000, false); // warm-up
  await round(s, 4000, true);
  return s;
}

/**
 * `count` messages through the consumers; throughput and CPU figures. `backlog`: all are sent
 * first (to a queue of this round that nobody consumes yet), then the consumers start on it
 * together, so the figure is theirs alone; else they consume while the producer sends.
 */
async function round(s, count, backlog) {
  const recipient = backlog ? `work-${++s.rounds}` : 'worker';
  const inputs = Array.from({ length: count }, (_, i) => ({ sender: 'producer', recipient, type: 'task', payload: { i } }));
  const send = async () => {
    for (let i = 0; i < count; i += BATCH) await s.bus.sendBatch(inputs.slice(i, i + BATCH));
  };
  if (backlog) {
    s.bus.registerAgent(recipient); // a recipient (pull: this bus never takes from it)
    await send();
  } else await Promise.all(s.consumers.map((k) => k.ask('start', 'started')));
  const redis0 = await redisCpuMs(s.redis);
  const calls0 = await commandCalls(s.redis);
  const cpu0 = process.cpuUsage();
  const t0 = now();
  if (backlog) await Promise.all(s.consumers.map((k) => k.ask('start', 'started', { agent: recipient })));
  else await send();
  const producerCpu = process.cpuUsage(cpu0);
  const sentAt = now();
  let counts;
  for (;;) {
    counts = await Promise.all(s.consumers.map((k) => k.ask('count')));
    if (counts.reduce((a, c) => a + c.handled, 0) >= count) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const end = Math.max(...counts.map((c) => c.lastAt));
  const seconds = (end - t0) / 1000;
  const consumerCpuMs = counts.reduce((a, c) => a + c.cpuMs, 0);
  const figures = {
    mode: backlog ? 'backlog' : 'stream',
    consumers: s.consumers.length,
    msgsPerS: Math.round(count / seconds),
    sendS: +((sentAt - t0) / 1000).toFixed(2),
    seconds: +seconds.toFixed(2),
    consumerCpuUsPerMsg: +((consumerCpuMs * 1000) / count).toFixed(1),
    perConsumer: counts.map((c) => ({
      handled: c.handled,
      cpuPct: Math.round((100 * c.cpuMs) / (seconds * 1000)),
      preempted: c.preempted,
      waits: c.waits,
    })),
    producerCpuPct: Math.round((100 * (producerCpu.user + producerCpu.system)) / 1000 / (seconds * 1000)),
    redisCpuPct: Math.round((100 * ((await redisCpuMs(s.redis)) - redis0)) / (seconds * 1000)),
    load: (await import('node:os')).loadavg()[0].toFixed(1),
    callsPer1kMsgs: Object.fromEntries(
      Object.entries(await commandCalls(s.redis))
        .map(([k, v]) => [k, Math.round(((v - (calls0[k] ?? 0)) * 1000) / count)])
        .filter(([k, v]) => v > 0 && k !== 'info'),
    ),
  };
  appendFileSync(FIGURES, `${JSON.stringify({ at: new Date().toISOString(), count, ...figures })}\n`);
  return figures;
}

async function teardown(s) {
  if (!s) return;
  await Promise.all(
    s.consumers.map(
      (k) =>
        new Promise((r) => {
          k.c.once('exit', r);
          k.c.send({ type: 'stop' });
        }),
    ),
  );
  await s.bus.close();
  s.redis.disconnect();
}

const POINTS = [1, 2, 4];

export const curves = [
  {
    id: 'bus/redis/consumers',
    title: `Draining a backlog of ${MESSAGES / 1000}k messages with N consumer processes of one agent (concurrency ${CONCURRENCY} each), Redis`,
    xLabel: 'consumer processes',
    unit: 'msgs/s',
    higherIsBetter: true,
    redis: true,
    points: POINTS,
    setup,
    async measure(s) {
      return (await round(s, MESSAGES, true)).msgsPerS;
    },
    teardown,
  },
  {
    id: 'bus/redis/consumers-cpu',
    title: 'CPU per message of N consumer processes of one agent draining a backlog, Redis (summed over the consumers)',
    xLabel: 'consumer processes',
    unit: 'µs CPU/msg',
    higherIsBetter: false,
    redis: true,
    points: POINTS,
    setup,
    async measure(s) {
      return (await round(s, MESSAGES, true)).consumerCpuUsPerMsg;
    },
    teardown,
  },
  {
    id: 'bus/redis/consumers-stream',
    title: `Throughput of N consumer processes of one agent while one producer sends (${MESSAGES / 1000}k messages in batches of ${BATCH}), Redis`,
    xLabel: 'consumer processes',
    unit: 'msgs/s',
    higherIsBetter: true,
    redis: true,
    points: POINTS,
    setup,
    async measure(s) {
      return (await round(s, MESSAGES, false)).msgsPerS;
    },
    teardown,
  },
];

// Workload 1: in-process bus. N messages with random priorities, send -> handler -> ack, one
// consumer (concurrency 1). Mode `backlog`: every message is sent before the first is handled.
// Mode `interleaved`: the producer awaits each send while the consumer runs.
// Every subject first runs `--warmup` messages (default 20k) the same way, untimed, so the figure
// is the steady state of each (JIT-compiled) rather than mostly its warm-up.
// Result: msgs_per_s = N / (last ack - first send) of the timed round.
import { parseArgs, priorities, taskInput, peerMessage, emit, deferred } from '../lib/common.mjs';

const args = parseArgs();
const subject = args.subject;
const n = args.n ?? 200_000;
const warmup = args.warmup ?? Math.min(20_000, n);
const mode = args.mode ?? 'backlog';
const prio = priorities(Math.max(n, warmup), 1);

let sink = 0;
// Sanity check of what was measured: in backlog mode a priority queue must deliver in
// non-increasing priority after the first delivery (counted: deliveries that broke the order).
let lastPriority = Infinity;
let outOfOrder = 0;
/** The handler's "work": touch the payload, and check the order. */
const work = (msg) => {
  sink ^= msg.payload.section;
  if (msg.priority > lastPriority) outOfOrder++;
  lastPriority = msg.priority;
};
// Every subject runs exactly one async function per message (what a user's handler is): the peers
// this one, Concord its agent's handleMessage, which does the same work.
const handler = async (msg) => {
  work(msg);
};

// One round: `count` messages sent and acked; resolves with the nanoseconds from first send to last ack.
let acked = 0;
let target = 0;
let done = deferred();
const onAck = () => {
  if (++acked === target) done.resolve();
};
function startRound(count) {
  acked = 0;
  target = count;
  done = deferred();
  lastPriority = Infinity;
  outOfOrder = 0;
}

let round;
let close = async () => {};

if (subject === 'heap-limit') {
  const { HeapQueue } = await import('../peers/heap-limit.mjs');
  const q = new HeapQueue();
  const consumer = async (count) => {
    for (let i = 0; i < count; i++) {
      const msg = await q.take();
      await handler(msg);
      q.ack();
      onAck();
    }
  };
  round = async (count) => {
    startRound(count);
    const t0 = process.hrtime.bigint();
    if (mode === 'backlog') {
      for (let i = 0; i < count; i++) q.push(peerMessage(i, prio[i]), prio[i]);
      consumer(count);
    } else {
      consumer(count);
      for (let i = 0; i < count; i++) {
        q.push(peerMessage(i, prio[i]), prio[i]);
        await undefined; // the producer yields between sends, as an awaited send() does
      }
    }
    await done.promise;
    return process.hrtime.bigint() - t0;
  };
} else if (subject === 'eventemitter') {
  const { eventEmitterBus } = await import('../peers/eventemitter.mjs');
  const bus = eventEmitterBus(handler, onAck);
  round = async (count) => {
    startRound(count);
    const t0 = process.hrtime.bigint();
    if (mode === 'backlog') {
      for (let i = 0; i < count; i++) bus.send(peerMessage(i, prio[i]));
    } else {
      for (let i = 0; i < count; i++) {
        bus.send(peerMessage(i, prio[i]));
        await undefined;
      }
    }
    await done.promise;
    return process.hrtime.bigint() - t0;
  };
} else if (subject === 'emittery') {
  const { emitteryBus } = await import('../peers/emittery.mjs');
  const bus = emitteryBus(handler);
  round = async (count) => {
    startRound(count);
    const t0 = process.hrtime.bigint();
    if (mode === 'backlog') {
      const pending = new Array(count);
      for (let i = 0; i < count; i++) pending[i] = bus.send(peerMessage(i, prio[i])).then(onAck);
      await Promise.all(pending);
    } else {
      for (let i = 0; i < count; i++) {
        await bus.send(peerMessage(i, prio[i]));
        onAck();
      }
    }
    await done.promise;
    return process.hrtime.bigint() - t0;
  };
} else if (subject === 'concord') {
  // `--otel`: an OpenTelemetry SDK is registered first (bench/lib/otel.mjs), to measure tracing's cost.
  const { maybeRegisterOtel } = await import('../lib/otel.mjs');
  const stopOtel = await maybeRegisterOtel(args);
  const { requireConcord, busDefaults } = await import('../lib/concord.mjs');
  const { MessageBus } = await requireConcord(['MessageBus']);
  const bus = new MessageBus({ ...busDefaults });
  // Backlog: the first delivery of a round waits on a gate until every message is sent, so the
  // rest queue up in the transport (the agent has concurrency 1).
  let gate = deferred();
  let gated = false;
  bus.registerAgent('worker', {
    name: 'worker',
    async handleMessage(msg) {
      if (gated) await gate.promise; // once per round, on its first message, in backlog mode
      work(msg);
      onAck(); // the bus acks when this returns (as the heap-limit loop acks after its handler)
    },
  });
  await bus.ready(); // the registration is live before anything is sent
  round = async (count) => {
    startRound(count);
    gate = deferred();
    gated = mode === 'backlog';
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) await bus.send(taskInput(i, prio[i]));
    gated = false;
    gate.resolve();
    await done.promise;
    return process.hrtime.bigint() - t0;
  };
  close = async () => {
    await bus.close();
    await stopOtel();
  };
} else {
  throw new Error(`unknown subject ${subject}`);
}

if (warmup > 0) await round(warmup);
// CPU time of the timed round too: on a shared machine it moves less than wall time (bench/otel-overhead.mjs reads it).
const cpu0 = process.cpuUsage();
const elapsedNs = await round(n);
const cpu = process.cpuUsage(cpu0);
await close();

const seconds = Number(elapsedNs) / 1e9;
const cpu_us_per_msg = (cpu.user + cpu.system) / n;
emit([{ metric: 'msgs_per_s', value: n / seconds }], { n, warmup, mode, seconds, cpu_us_per_msg, outOfOrder, sink });

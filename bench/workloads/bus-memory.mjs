// Workload 1: in-process bus. N messages with random priorities, send -> handler -> ack, one
// consumer (concurrency 1). Mode `backlog`: every message is sent before the first is handled.
// Mode `interleaved`: the producer awaits each send while the consumer runs.
// Result: msgs_per_s = N / (last ack - first send).
import { parseArgs, priorities, taskInput, peerMessage, emit, deferred } from '../lib/common.mjs';

const args = parseArgs();
const subject = args.subject;
const n = args.n ?? 200_000;
const mode = args.mode ?? 'backlog';
const prio = priorities(n, 1);

let sink = 0;
let acked = 0;
const done = deferred();
// Sanity check of what was measured: in backlog mode a priority queue must deliver in
// non-increasing priority after the first delivery (counted: deliveries that broke the order).
let lastPriority = Infinity;
let outOfOrder = 0;
const handler = async (msg) => {
  sink ^= msg.payload.section; // touch the payload: the handler's "work"
  if (msg.priority > lastPriority) outOfOrder++;
  lastPriority = msg.priority;
};
const onAck = () => {
  if (++acked === n) done.resolve();
};

let elapsedNs;

if (subject === 'heap-limit') {
  const { HeapQueue } = await import('../peers/heap-limit.mjs');
  const q = new HeapQueue();
  const consumer = async () => {
    for (let i = 0; i < n; i++) {
      const msg = await q.take();
      await handler(msg);
      q.ack();
      onAck();
    }
  };
  const t0 = process.hrtime.bigint();
  if (mode === 'backlog') {
    for (let i = 0; i < n; i++) q.push(peerMessage(i, prio[i]), prio[i]);
    consumer();
  } else {
    consumer();
    for (let i = 0; i < n; i++) {
      q.push(peerMessage(i, prio[i]), prio[i]);
      await undefined; // the producer yields between sends, as an awaited send() does
    }
  }
  await done.promise;
  elapsedNs = process.hrtime.bigint() - t0;
} else if (subject === 'eventemitter') {
  const { eventEmitterBus } = await import('../peers/eventemitter.mjs');
  const bus = eventEmitterBus(handler, onAck);
  const t0 = process.hrtime.bigint();
  if (mode === 'backlog') {
    for (let i = 0; i < n; i++) bus.send(peerMessage(i, prio[i]));
  } else {
    for (let i = 0; i < n; i++) {
      bus.send(peerMessage(i, prio[i]));
      await undefined;
    }
  }
  await done.promise;
  elapsedNs = process.hrtime.bigint() - t0;
} else if (subject === 'emittery') {
  const { emitteryBus } = await import('../peers/emittery.mjs');
  const bus = emitteryBus(handler);
  const t0 = process.hrtime.bigint();
  if (mode === 'backlog') {
    const pending = new Array(n);
    for (let i = 0; i < n; i++) pending[i] = bus.send(peerMessage(i, prio[i])).then(onAck);
    await Promise.all(pending);
  } else {
    for (let i = 0; i < n; i++) {
      await bus.send(peerMessage(i, prio[i]));
      onAck();
    }
  }
  await done.promise;
  elapsedNs = process.hrtime.bigint() - t0;
} else if (subject === 'concord') {
  const { requireConcord, busDefaults } = await import('../lib/concord.mjs');
  const { MessageBus } = await requireConcord(['MessageBus']);
  const bus = new MessageBus({ ...busDefaults });
  // Backlog: the first delivery waits on a gate until every message is sent, so the rest queue up
  // in the transport (the agent has concurrency 1).
  const gate = deferred();
  if (mode !== 'backlog') gate.resolve();
  let gated = mode === 'backlog';
  bus.registerAgent('worker', {
    name: 'worker',
    async handleMessage(msg) {
      if (gated) await gate.promise;
      await handler(msg);
      onAck();
    },
  });
  bus.registerAgent('planner');
  await bus.send(taskInput(0, 5, 'planner', 'planner')); // warm the pull-mode inbox path, not timed
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await bus.send(taskInput(i, prio[i]));
  gated = false;
  gate.resolve();
  await done.promise;
  elapsedNs = process.hrtime.bigint() - t0;
  await bus.close();
} else {
  throw new Error(`unknown subject ${subject}`);
}

const seconds = Number(elapsedNs) / 1e9;
emit([{ metric: 'msgs_per_s', value: n / seconds }], { n, mode, seconds, outOfOrder, sink });

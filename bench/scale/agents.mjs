// Scale curves of the in-process bus as the number of agents grows (issue 25, item 1): what it
// costs to register, run and close N agents on one memory bus, what an idle agent weighs, and the
// push throughput with N agents (messages round-robin over all of them).
// Costs are CPU time (process.cpuUsage), not wall time: the machine is shared, and CPU per
// operation is what grows or not. Register and close are per agent, so a linear cost shows as a
// flat curve; at 1 agent a bus's fixed costs dominate, so those curves start at 100 (heap: below
// 100 agents the noise of a GC'd heap is larger than what is measured).
import { requireConcord, busDefaults } from '../lib/concord.mjs';

const NAME = (i) => `agent-${i}`;
const idle = { handleMessage: async () => undefined };

async function concord() {
  return requireConcord(['MessageBus']);
}

/** A connected bus (fixed costs paid), then `n` push agents registered and live. */
async function busWithAgents(n, handler = idle) {
  const { MessageBus } = await concord();
  const bus = new MessageBus({ ...busDefaults });
  await bus.ready();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) bus.registerAgent(NAME(i), { name: NAME(i), ...handler });
  await bus.ready();
  // Every consumer loop reaches its first wait (a lease that waits for a message).
  await new Promise((r) => setImmediate(r));
  return { bus, registerMs: cpuMs(c0) };
}

function cpuMs(since) {
  const c = process.cpuUsage(since);
  return (c.user + c.system) / 1000;
}

async function settledHeap() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 10));
  }
  return process.memoryUsage().heapUsed;
}

export const curves = [
  {
    id: 'bus/agents/register',
    title: 'registerAgent() of N push agents on one memory bus, until all are live',
    xLabel: 'agents',
    unit: 'µs CPU/agent',
    higherIsBetter: false,
    points: [100, 1000, 10_000],
    async measure(_s, n) {
      const { bus, registerMs } = await busWithAgents(n);
      await bus.close();
      return (registerMs * 1000) / n;
    },
  },
  {
    id: 'bus/agents/close',
    title: 'close() of a memory bus with N idle push agents',
    xLabel: 'agents',
    unit: 'µs CPU/agent',
    higherIsBetter: false,
    points: [100, 1000, 10_000],
    async measure(_s, n) {
      const { bus } = await busWithAgents(n);
      const c0 = process.cpuUsage();
      await bus.close();
      return (cpuMs(c0) * 1000) / n;
    },
  },
  {
    id: 'bus/agents/heap',
    title: 'Heap per idle push agent on a memory bus (after GC, the bus itself subtracted)',
    xLabel: 'agents',
    unit: 'B/agent',
    higherIsBetter: false,
    node: ['--expose-gc'],
    points: [100, 1000, 10_000],
    async measure(_s, n) {
      const { MessageBus } = await concord();
      const bus = new MessageBus({ ...busDefaults });
      await bus.ready();
      const before = await settledHeap();
      for (let i = 0; i < n; i++) bus.registerAgent(NAME(i), { name: NAME(i), ...idle });
      await bus.ready();
      await new Promise((r) => setImmediate(r));
      const after = await settledHeap();
      await bus.close();
      return (after - before) / n;
    },
  },
  {
    id: 'bus/agents/push',
    title: 'Push throughput with N agents on one memory bus (awaited sends, round-robin over the agents), per CPU-second',
    xLabel: 'agents',
    unit: 'msgs/CPU-s',
    higherIsBetter: true,
    points: [1, 100, 1000, 10_000],
    async setup(n) {
      const s = { handled: 0, target: 0, done: null };
      const handler = {
        handleMessage: async () => {
          if (++s.handled === s.target) s.done();
        },
      };
      const { bus } = await busWithAgents(n, handler);
      s.bus = bus;
      s.round = async (count) => {
        s.handled = 0;
        s.target = count;
        const finished = new Promise((r) => (s.done = r));
        const c0 = process.cpuUsage();
        for (let i = 0; i < count; i++) {
          await bus.send({ sender: 'producer', recipient: NAME(i % n), type: 'task', payload: { i } });
        }
        await finished;
        return cpuMs(c0) / 1000;
      };
      await s.round(Math.max(20_000, 2 * n)); // warm-up: JIT, and every agent's queue used once
      return s;
    },
    async measure(s, n) {
      const count = Math.max(50_000, 5 * n);
      return count / (await s.round(count));
    },
    async teardown(s) {
      await s?.bus.close();
    },
  },
];

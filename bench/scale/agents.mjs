// Scale curves of the in-process bus as the number of agents grows (issue 25, item 1): what it
// costs to register, run and close N agents on one memory bus, what an idle agent weighs, and the
// push throughput with N agents (messages round-robin over all of them).
// Costs are CPU time (process.cpuUsage), not wall time: the machine is shared, and CPU per
// operation is what grows or not. Register and close are per agent, so a linear cost shows as a
// flat curve; at 1 agent a bus's fixed costs dominate, so those curves start at 100. The heap
// curve starts at 1k and goes to 100k: 100 agents weigh ~70 KB, less than a GC'd heap's noise
// (one run measured -88 B, 2,608 B and 71 B per agent).
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

/** Awaited sends round-robin over `n` agents made by `make(n, handler)`; msgs per CPU-second. */
function pushCurve(id, title, make, { floor, scale = 1 } = {}) {
  return {
    id,
    title,
    xLabel: 'agents',
    unit: 'msgs/CPU-s',
    higherIsBetter: true,
    floor,
    points: [1, 100, 1000, 10_000],
    async setup(n) {
      const s = { handled: 0, target: 0, done: null };
      const handler = {
        handleMessage: async () => {
          if (++s.handled === s.target) s.done();
        },
      };
      const bus = await make(n, handler);
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
      // Warm-up: JIT, and every agent's queue used once.
      for (let k = 0; k < 3; k++) await s.round(scale * Math.max(20_000, 2 * n));
      return s;
    },
    async measure(s, n) {
      const count = scale * Math.max(50_000, 5 * n);
      return count / (await s.round(count));
    },
    async teardown(s) {
      await s?.bus.close();
    },
  };
}

/**
 * The floor of the push curve: `n` agents in plain JavaScript, no bus. A send builds its message,
 * finds the agent's queue by name and wakes the agent on a microtask; the agent runs its handler
 * on each message. What the runtime charges for spreading the same messages over `n` queues.
 */
function floorAgents(n, handler) {
  let seq = 0;
  const agents = new Map();
  for (let i = 0; i < n; i++) {
    const agent = { queue: [], scheduled: false };
    agent.drain = () => {
      agent.scheduled = false;
      const batch = agent.queue;
      agent.queue = [];
      for (const m of batch) handler.handleMessage(m).then(undefined, (err) => console.error(err));
    };
    agents.set(NAME(i), agent);
  }
  const send = async (m) => {
    const agent = agents.get(m.recipient);
    if (agent === undefined) throw new Error(`no agent \`${m.recipient}\``);
    const msg = {
      id: `m-${++seq}`,
      type: m.type,
      sender: m.sender,
      recipient: m.recipient,
      payload: m.payload,
      priority: 5,
      timestamp: Date.now(),
    };
    agent.queue.push(msg);
    if (!agent.scheduled) {
      agent.scheduled = true;
      queueMicrotask(agent.drain);
    }
    return msg.id;
  };
  return { send, close: async () => {} };
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
    points: [1000, 10_000, 100_000],
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
  pushCurve(
    'bus/agents/push',
    'Push throughput with N agents on one memory bus (awaited sends, round-robin over the agents), per CPU-second',
    async (n, handler) => {
      const { bus } = await busWithAgents(n, handler);
      return { send: (m) => bus.send(m), close: () => bus.close() };
    },
    { floor: 'bus/agents/push-floor' },
  ),
  pushCurve(
    'bus/agents/push-floor',
    'The floor: push throughput with N agents in plain JavaScript (a Map of agents, an array queue each, drained on a microtask), per CPU-second',
    async (n, handler) => floorAgents(n, handler),
    { scale: 4 }, // the floor's rounds are cheap: 4× the messages, so each is long enough to time
  ),
];

// Scale curves of in-process request/response as the number of outstanding requests grows
// (issue 25, item 4): a requester keeps N `bus.request()`s in flight to one agent (each reply
// starts the next request) and we measure CPU per request and the share of it spent in GC.
// The reply waits only in the agent's queue, so a request's lifetime grows with N; its cost
// should not. `bus/requests/floor` does the same with the least plain JavaScript that can (a Map
// of waiting resolvers, an array queue drained on a microtask), driven by the same loop: with
// 10,000 outstanding every request outlives a young-generation GC and is copied and promoted
// whatever the code, and the floor's growth shows that share.
import { GCProfiler } from 'node:v8';
import { requireConcord, busDefaults } from '../lib/concord.mjs';

const respond = async (msg) => ({ ok: true, section: msg.payload.section });

async function setup() {
  const { MessageBus } = await requireConcord(['MessageBus']);
  const bus = new MessageBus({ ...busDefaults });
  bus.registerAgent('worker', { name: 'worker', handleMessage: respond });
  await bus.ready();
  return { request: (m) => bus.request(m), close: () => bus.close() };
}

/** The floor: request/response in plain JavaScript, no bus (what the runtime charges for the same lifetimes). */
function floor() {
  let seq = 0;
  const waiting = new Map();
  let queue = [];
  let scheduled = false;
  const reply = (msg, result) => {
    const r = { id: `r-${++seq}`, inReplyTo: msg.id, sender: msg.recipient, payload: result, timestamp: Date.now() };
    const w = waiting.get(r.inReplyTo);
    waiting.delete(r.inReplyTo);
    w.resolve(r);
  };
  const drain = () => {
    scheduled = false;
    const batch = queue;
    queue = [];
    for (const msg of batch) respond(msg).then((result) => reply(msg, result));
  };
  const request = (m) => {
    const msg = { id: `m-${++seq}`, type: 'task', sender: m.sender, recipient: m.recipient, payload: m.payload, timestamp: Date.now() };
    return new Promise((resolve, reject) => {
      waiting.set(msg.id, { resolve, reject, deadline: msg.timestamp + m.timeout });
      queue.push(msg);
      if (!scheduled) {
        scheduled = true;
        queueMicrotask(drain);
      }
    });
  };
  return { request, close: async () => {} };
}

/** `total` requests, `window` of them outstanding at any time; CPU µs per request and GC ms. */
async function round(s, window, total) {
  // GC time from V8's GCProfiler: a PerformanceObserver of 'gc' entries (used before) made every
  // request here up to twice as expensive (10 outstanding: 5.6 against 3.0 µs CPU per request).
  const gc = new GCProfiler();
  gc.start();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let started = 0;
  let replied = 0;
  await new Promise((resolve, reject) => {
    const next = () => {
      const i = started++;
      s.request({ sender: 'planner', recipient: 'worker', payload: { section: i }, timeout: 60_000 }).then(() => {
        if (++replied === total) resolve();
        else if (started < total) next();
      }, reject);
    };
    for (let k = 0; k < window && started < total; k++) next();
  });
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  let gcMs = 0;
  for (const e of gc.stop().statistics) gcMs += e.cost / 1000; // µs of pause per collection
  const cpuMs = (cpu.user + cpu.system) / 1000;
  // GC pauses are wall time (a preempted pause counts whole): compared with wall time too.
  return { cpuUsPerRequest: (cpuMs * 1000) / total, gcShare: (100 * gcMs) / wallMs, wallMs };
}

const POINTS = [1, 10, 100, 1000, 10_000];
const total = (n) => Math.max(50_000, 5 * n);

/**
 * A curve of `value` ('cpu' or 'gc') over the requesters `make` builds. `floor`: the id of the
 * curve shown beside it; `scale` multiplies the requests per round (the floor's are cheap: its
 * rounds would be too short to time).
 */
function curve(id, title, make, value, { floor, scale = 1 } = {}) {
  return {
    id,
    title,
    xLabel: 'outstanding',
    unit: value === 'cpu' ? 'µs CPU/request' : '% in GC',
    higherIsBetter: false,
    floor,
    points: POINTS,
    async setup(n) {
      const s = await make();
      // Warm-up: until the JIT has settled (one short round left the 10-outstanding point 30% high).
      for (let k = 0; k < 3; k++) await round(s, n, scale * total(n));
      return s;
    },
    async measure(s, n) {
      const r = await round(s, n, scale * total(n));
      return value === 'cpu' ? r.cpuUsPerRequest : r.gcShare;
    },
    async teardown(s) {
      await s?.close();
    },
  };
}

export const curves = [
  curve('bus/requests/cpu', 'CPU per in-process request/response with N requests outstanding (one agent)', setup, 'cpu', {
    floor: 'bus/requests/floor',
  }),
  curve('bus/requests/gc', 'Share of wall time in GC pauses, in-process request/response with N requests outstanding', setup, 'gc'),
  curve(
    'bus/requests/floor',
    'The floor: CPU per request/response in plain JavaScript (a Map of resolvers, an array queue) with N outstanding',
    floor,
    'cpu',
    { scale: 4 },
  ),
];

// Scale curves of in-process request/response as the number of outstanding requests grows
// (issue 25, item 4): a requester keeps N `bus.request()`s in flight to one agent (each reply
// starts the next request) and we measure CPU per request and the share of it spent in GC.
// The reply waits only in the agent's queue, so a request's lifetime grows with N; its cost
// should not.
import { PerformanceObserver } from 'node:perf_hooks';
import { requireConcord, busDefaults } from '../lib/concord.mjs';

const respond = async (msg) => ({ ok: true, section: msg.payload.section });

async function setup() {
  const { MessageBus } = await requireConcord(['MessageBus']);
  const bus = new MessageBus({ ...busDefaults });
  bus.registerAgent('worker', { name: 'worker', handleMessage: respond });
  await bus.ready();
  return { bus };
}

/** `total` requests, `window` of them outstanding at any time; CPU µs per request and GC ms. */
async function round(bus, window, total) {
  let gcMs = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMs += e.duration;
  });
  obs.observe({ entryTypes: ['gc'] });
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let started = 0;
  let replied = 0;
  await new Promise((resolve, reject) => {
    const next = () => {
      const i = started++;
      bus.request({ sender: 'planner', recipient: 'worker', payload: { section: i }, timeout: 60_000 }).then(() => {
        if (++replied === total) resolve();
        else if (started < total) next();
      }, reject);
    };
    for (let k = 0; k < window && started < total; k++) next();
  });
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  // Entries are delivered asynchronously: let the observer see the last ones.
  await new Promise((r) => setTimeout(r, 0));
  obs.disconnect();
  const cpuMs = (cpu.user + cpu.system) / 1000;
  // GC pauses are wall time (a preempted pause counts whole): compared with wall time too.
  return { cpuUsPerRequest: (cpuMs * 1000) / total, gcShare: (100 * gcMs) / wallMs, wallMs };
}

const POINTS = [1, 10, 100, 1000, 10_000];
const total = (n) => Math.max(50_000, 5 * n);

export const curves = [
  {
    id: 'bus/requests/cpu',
    title: 'CPU per in-process request/response with N requests outstanding (one agent)',
    xLabel: 'outstanding',
    unit: 'µs CPU/request',
    higherIsBetter: false,
    points: POINTS,
    async setup(n) {
      const s = await setup();
      await round(s.bus, n, 20_000); // warm-up
      return s;
    },
    async measure(s, n) {
      return (await round(s.bus, n, total(n))).cpuUsPerRequest;
    },
    async teardown(s) {
      await s?.bus.close();
    },
  },
  {
    id: 'bus/requests/gc',
    title: 'Share of wall time in GC pauses, in-process request/response with N requests outstanding',
    xLabel: 'outstanding',
    unit: '% in GC',
    higherIsBetter: false,
    points: POINTS,
    async setup(n) {
      const s = await setup();
      await round(s.bus, n, 20_000);
      return s;
    },
    async measure(s, n) {
      return (await round(s.bus, n, total(n))).gcShare;
    },
    async teardown(s) {
      await s?.bus.close();
    },
  },
];

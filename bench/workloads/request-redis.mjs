// Workload 3b: request/response over Redis. A responder process answers; this process makes N
// sequential requests (after an unmeasured warm-up). Result: p50_us, p99_us, ops_per_s.
// The warm-up (3,000 round trips unless told, the same for every subject) brings both processes
// to their steady state: after 500, V8 has still not optimised much of the path, and Concord
// burns ~1.4x, the raw loop ~1.2x, the CPU per request they do from ~2,000 on (bench/NOTES.md,
// round 9).
import { fileURLToPath } from 'node:url';
import {
  parseArgs,
  taskInput,
  peerMessage,
  emit,
  spawnRole,
  parentMessage,
  cleanupRedis,
  REDIS_URL,
  waitUntil,
  percentilesUs,
} from '../lib/common.mjs';

const args = parseArgs();
const { subject, ns } = args;
const role = args.role ?? 'requester';
const n = args.n ?? 5000;
const warmup = args.warmup ?? Math.min(3000, n);
if (!ns) throw new Error('--ns is required (a namespace unique to this run)');
const concordUrl = `${REDIS_URL}?namespace=${ns}`;
const respond = async (msg) => ({ ok: true, section: msg.payload.section, summary: 'done' });

async function concordBus() {
  const { requireConcord, busDefaults } = await import('../lib/concord.mjs');
  const { MessageBus } = await requireConcord(['MessageBus']);
  const redis = await requireConcord([], 'concord-agents/redis');
  const transport = typeof redis.createRedisTransport === 'function' ? redis.createRedisTransport(concordUrl) : concordUrl;
  const bus = new MessageBus({ ...busDefaults, transport });
  // A transport instance passed in is the caller's to close (the bus closes only those it made).
  const close = async () => {
    await bus.close();
    if (typeof transport !== 'string') await transport.close();
  };
  return { bus, transport: typeof transport === 'string' ? null : transport, close };
}

if (role === 'responder') {
  let stop;
  if (subject === 'concord') {
    const { bus, transport, close } = await concordBus();
    bus.registerAgent('worker', { name: 'worker', handleMessage: respond });
    if (transport) await waitUntil(() => transport.hasRecipient('worker'), 'the worker recipient', 10_000);
    else await new Promise((r) => setTimeout(r, 200));
    stop = close;
  } else {
    const raw = await import('../peers/redis-lists-raw.mjs');
    stop = await raw.startResponder(ns, respond);
  }
  process.send({ type: 'ready' });
  // CPU the responder burns while the requester measures (diagnostics in the result's info).
  const { from } = await parentMessage('measure');
  const cpu0 = process.cpuUsage();
  process.send({ type: 'measuring', from });
  await parentMessage('stop');
  const cpu = process.cpuUsage(cpu0);
  process.send({ type: 'cpu', us: cpu.user + cpu.system, sys: cpu.system });
  await stop();
  process.disconnect();
  process.exit(0);
} else {
  const responder = await spawnRole(fileURLToPath(import.meta.url), 'responder', process.argv.slice(2));
  await responder.message('ready');
  let run;
  let close;
  if (subject === 'concord') {
    const c = await concordBus();
    const bus = c.bus;
    run = (i) => {
      const { type, ...input } = taskInput(i, 5);
      return bus.request({ ...input, timeout: 5000 });
    };
    close = c.close;
  } else if (subject === 'redis-lists-raw') {
    const raw = await import('../peers/redis-lists-raw.mjs');
    const req = await raw.requester(ns);
    run = (i) => req.request(peerMessage(i, 5));
    close = req.close;
  } else throw new Error(`unknown subject ${subject}`);

  const samples = new Float64Array(n);
  let seconds;
  let cpuUs = 0;
  let responderCpuUs = 0;
  let sysUs = 0;
  let responderSysUs = 0;
  try {
    for (let i = 0; i < warmup; i++) await run(i);
    responder.send({ type: 'measure', from: 0 });
    await responder.message('measuring');
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const s = process.hrtime.bigint();
      const reply = await run(warmup + i);
      samples[i] = Number(process.hrtime.bigint() - s);
      if (i === 0 && reply?.payload?.ok !== true) throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
    }
    seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    cpuUs = cpu.user + cpu.system;
    sysUs = cpu.system;
  } finally {
    responder.send({ type: 'stop' });
    const rcpu = await responder.message('cpu').catch(() => ({ us: 0, sys: 0 }));
    responderCpuUs = rcpu.us;
    responderSysUs = rcpu.sys;
    await close();
    await responder.exited;
    await cleanupRedis(ns);
  }
  const p = percentilesUs(samples);
  emit(
    [
      { metric: 'p50_us', value: p.p50_us },
      { metric: 'p99_us', value: p.p99_us },
      { metric: 'ops_per_s', value: n / seconds },
    ],
    // CPU per request (user + system, µs; and the system part alone) of each process while
    // measuring: on a shared machine a CPU-hungry subject pays twice, so this says where a
    // latency gap comes from.
    {
      n,
      warmup,
      mean_us: p.mean_us,
      requester_cpu_us: cpuUs / n,
      requester_sys_us: sysUs / n,
      responder_cpu_us: responderCpuUs / n,
      responder_sys_us: responderSysUs / n,
    },
  );
  process.exit(0);
}

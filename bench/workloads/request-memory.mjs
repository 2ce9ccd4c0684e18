// Workload 2: in-process request/response. N sequential requests (after a warm-up that is not
// measured); each latency is request start -> reply in hand. Result: p50_us, p99_us, ops_per_s.
import { parseArgs, taskPayload, peerMessage, emit, percentilesUs } from '../lib/common.mjs';

const args = parseArgs();
const subject = args.subject;
const n = args.n ?? 20_000;
const warmup = args.warmup ?? Math.min(2000, Math.ceil(n / 10));
const samples = new Float64Array(n);

const respond = async (msg) => ({ ok: true, section: msg.payload.section, summary: 'done' });

let run;
let close = async () => {};
if (subject === 'eventemitter') {
  const { eventEmitterRpc } = await import('../peers/eventemitter.mjs');
  const rpc = eventEmitterRpc(respond, { timeoutMs: 5000 });
  run = (i) => rpc.request(peerMessage(i, 5));
} else if (subject === 'concord') {
  // `--otel`: an OpenTelemetry SDK is registered first (bench/lib/otel.mjs), to measure tracing's cost.
  const { maybeRegisterOtel } = await import('../lib/otel.mjs');
  const stopOtel = await maybeRegisterOtel(args);
  const { requireConcord, busDefaults } = await import('../lib/concord.mjs');
  const { MessageBus } = await requireConcord(['MessageBus']);
  const bus = new MessageBus({ ...busDefaults });
  bus.registerAgent('worker', { name: 'worker', handleMessage: respond });
  // What a user writes (the peer gets its message made by peerMessage, the same fields).
  run = (i) => bus.request({ sender: 'planner', recipient: 'worker', payload: taskPayload(i), priority: 5, timeout: 5000 });
  close = async () => {
    await bus.close();
    await stopOtel();
  };
} else {
  throw new Error(`unknown subject ${subject}`);
}

for (let i = 0; i < warmup; i++) await run(i);
const t0 = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
for (let i = 0; i < n; i++) {
  const s = process.hrtime.bigint();
  const reply = await run(i);
  samples[i] = Number(process.hrtime.bigint() - s);
  if (i === 0 && reply?.payload?.ok !== true) throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(cpu0);
await close();
const p = percentilesUs(samples);
emit(
  [
    { metric: 'p50_us', value: p.p50_us },
    { metric: 'p99_us', value: p.p99_us },
    { metric: 'ops_per_s', value: n / seconds },
  ],
  { n, warmup, mean_us: p.mean_us, cpu_us_per_op: (cpu.user + cpu.system) / n },
);

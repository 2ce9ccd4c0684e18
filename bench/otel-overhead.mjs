// What tracing costs the in-process bus: Concord's memory workloads run alternately as
//   base       a build without the instrumentation (`--base <dir>`: a checkout built with `npm run build`),
//   no-sdk     this build, no OpenTelemetry SDK registered (the API is a no-op),
//   sdk        this build with an SDK, a batch processor and an exporter that drops spans (`--otel`),
//   sdk-no-cm  the same without the AsyncLocalStorage context manager (`--split`),
// each repetition in a rotated order so drift in machine load spreads evenly. Prints the median,
// min and max of each and the ratios to base. The figures go in bench/NOTES.md ("Tracing overhead").
//
//   npm run build && node bench/otel-overhead.mjs --base /tmp/concord-base --reps 7
// (the base checkout runs this checkout's bench/ files: copy bench/lib and bench/workloads over its own)
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from './lib/common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const opts = parseArgs();
const reps = Number(opts.reps ?? 5);
const base = typeof opts.base === 'string' ? opts.base : undefined;

const CASES = [
  {
    id: 'bus-memory/interleaved',
    file: 'bus-memory.mjs',
    args: ['--mode', 'interleaved', '--n', String(opts.n ?? 200_000)],
    metric: 'msgs_per_s',
  },
  { id: 'bus-memory/backlog', file: 'bus-memory.mjs', args: ['--mode', 'backlog', '--n', String(opts.n ?? 200_000)], metric: 'msgs_per_s' },
  { id: 'request-memory', file: 'request-memory.mjs', args: ['--n', String(opts.requests ?? 20_000)], metric: 'ops_per_s' },
];
const only = typeof opts.only === 'string' ? opts.only.split(',') : null;

const ALL_VARIANTS = [
  ...(base ? [{ name: 'base', dir: join(base, 'bench', 'workloads'), extra: [] }] : []),
  { name: 'no-sdk', dir: join(here, 'workloads'), extra: [] },
  { name: 'sdk', dir: join(here, 'workloads'), extra: ['--otel'] },
  // `--split`: also the SDK without a context manager (spans only, no AsyncLocalStorage).
  ...(opts.split ? [{ name: 'sdk-no-cm', dir: join(here, 'workloads'), extra: ['--otel', 'no-context'] }] : []),
];
// `--variants base,no-sdk`: only these (e.g. many repetitions of the no-SDK comparison alone).
const VARIANTS = typeof opts.variants === 'string' ? ALL_VARIANTS.filter((v) => opts.variants.split(',').includes(v.name)) : ALL_VARIANTS;

function run(file, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, '--subject', 'concord', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
      if (!line) reject(new Error(`${file} exited ${code} without a result:\n${out}`));
      else {
        // The CPU time per message (info.cpu_*) moves less than wall time on a shared machine: kept as a metric too.
        const { results, info } = JSON.parse(line.slice('BENCH_RESULT '.length));
        const cpu = Object.entries(info ?? {}).filter(([k, v]) => k.startsWith('cpu_') && typeof v === 'number');
        resolve([...results, ...cpu.map(([metric, value]) => ({ metric, value }))]);
      }
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (v) => (v >= 1000 ? Math.round(v).toLocaleString('en-US') : v.toPrecision(4));

const table = [];
for (const c of CASES.filter((c) => !only || only.some((p) => c.id.startsWith(p)))) {
  const got = Object.fromEntries(VARIANTS.map((v) => [v.name, {}]));
  for (let rep = 0; rep < reps; rep++) {
    const order = VARIANTS.map((_, i) => VARIANTS[(i + rep) % VARIANTS.length]);
    for (const v of order) {
      const results = await run(join(v.dir, c.file), [...c.args, ...v.extra]);
      for (const r of results) (got[v.name][r.metric] ??= []).push(r.value);
      process.stderr.write(`${c.id} rep ${rep + 1} ${v.name.padEnd(7)} ${results.map((r) => `${r.metric}=${fmt(r.value)}`).join(' ')}\n`);
    }
  }
  for (const metric of Object.keys(got[VARIANTS[0].name])) {
    const ref = got.base?.[metric] ? median(got.base[metric]) : undefined;
    for (const v of VARIANTS) {
      const xs = got[v.name][metric];
      const m = median(xs);
      table.push({
        workload: c.id,
        metric,
        variant: v.name,
        median: m,
        min: Math.min(...xs),
        max: Math.max(...xs),
        ratio: ref ? m / ref : undefined,
      });
    }
  }
}

console.log(`\n${reps} repetition(s), alternating; ratio = median ÷ base median\n`);
console.log('| workload | metric | variant | median | min | max | ÷ base |');
console.log('| --- | --- | --- | ---: | ---: | ---: | ---: |');
for (const r of table) {
  console.log(
    `| ${r.workload} | ${r.metric} | ${r.variant} | ${fmt(r.median)} | ${fmt(r.min)} | ${fmt(r.max)} | ${r.ratio === undefined ? '' : `${r.ratio.toFixed(3)}×`} |`,
  );
}

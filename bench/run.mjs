#!/usr/bin/env node
// Runs every benchmark workload: each subject (Concord and its peers) in a fresh process per
// repetition, subjects alternated between repetitions, then prints a table with ratios against
// the peers of the same run and writes bench/results/latest.json and docs/BENCHMARKS.md.
//
//   npm run bench                         full run (3 repetitions), regenerates docs/BENCHMARKS.md
//   npm run bench -- --quick              smoke run (small n, 1 repetition), under a minute
//   npm run bench -- --only redis         workloads whose id starts with any of the comma-separated prefixes
//   npm run bench -- --subjects concord,bullmq   only these subjects
//   npm run bench -- --reps 5             repetitions (default 3, quick 1)
//   npm run bench -- --profile            Concord children write V8 CPU profiles to bench/results/*.cpuprofile
//   npm run bench -- --docs / --no-docs   force / prevent regenerating docs/BENCHMARKS.md
//   npm run bench -- --render             runs nothing: rewrites docs/BENCHMARKS.md from the saved
//                                         latest results and the current bench/NOTES.md
//   npm run bench -- --scale              runs the scale curves instead (bench/scale/*.mjs, one file
//                                         per group of curves: see bench/scale/README.md) and writes
//                                         the "Scale" section of docs/BENCHMARKS.md; with --only,
//                                         curves whose id starts with a prefix (with --docs, they
//                                         replace their rows in the last full run's tables)
//
// A full run writes bench/results/latest.json (+ .meta.json) and docs/BENCHMARKS.md, whose
// "Notes and profiling" section is bench/NOTES.md (edit that file: it survives regeneration).
// A quick or partial run writes bench/results/quick.json or partial.json instead.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, redisClient, cleanupRedis } from './lib/common.mjs';
import { WORKLOADS, TARGETS, HIGHER_IS_BETTER } from './workloads.mjs';
import { summarise, evaluateTargets, machineInfo, versionsInfo, renderConsole, writeDocs } from './lib/report.mjs';
import { mergeScale, readScaleSection, renderScale, runScale, saveScale, writeScaleSection } from './lib/scale.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const opts = parseArgs();
const quick = !!opts.quick;
const reps = Number(opts.reps ?? (quick ? 1 : 3));
const only = typeof opts.only === 'string' ? opts.only.split(',') : null;
const subjectsFilter = typeof opts.subjects === 'string' ? new Set(opts.subjects.split(',')) : null;
const profile = !!opts.profile;
const partial = !!(only || subjectsFilter);
const writeDocsToo = opts.docs === true || (opts['no-docs'] !== true && !quick && !partial);
const childTimeoutMs = Number(opts.timeout ?? 240) * 1000;
const resultsDir = join(here, 'results');
const docsPath = join(root, 'docs', 'BENCHMARKS.md');
const notesPath = join(here, 'NOTES.md');

if (opts.render) {
  const rows = JSON.parse(readFileSync(join(resultsDir, 'latest.json'), 'utf8'));
  const meta = JSON.parse(readFileSync(join(resultsDir, 'latest.meta.json'), 'utf8'));
  const scale = readScaleSection(docsPath);
  writeDocs(docsPath, rows, meta, HIGHER_IS_BETTER, notesPath);
  if (scale) writeScaleSection(docsPath, scale);
  console.log(`wrote docs/BENCHMARKS.md from the full run of ${meta.date} and bench/NOTES.md`);
  process.exit(0);
}

if (opts.scale) {
  const t0 = Date.now();
  const results = await runScale({ only, reps, redisUp: await redisReachable() });
  const commit = (await versionsInfo(root, false)).commit;
  const meta = { date: new Date().toISOString(), reps, durationSeconds: Math.round((Date.now() - t0) / 1000), commit, only };
  console.log(`\nwrote bench/results/${saveScale(results, meta, !!only)}`);
  if (opts.docs === true || (!only && opts['no-docs'] !== true)) {
    // A partial run with --docs replaces its curves in the last full run's tables.
    const { results: all, meta: shown } = only ? mergeScale(results, meta) : { results, meta };
    if (only) saveScale(all, shown, false);
    writeScaleSection(docsPath, renderScale(all, shown));
    console.log('wrote the Scale section of docs/BENCHMARKS.md');
  }
  process.exit(0);
}

// A token unique to this run: every Redis key, stream and queue of the run contains it.
const runToken = `cbench${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

function banner(text) {
  const line = '!'.repeat(text.length + 8);
  console.log(`\n${line}\n!!! ${text} !!!\n${line}\n`);
}

async function redisReachable() {
  try {
    const r = await redisClient({ lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {});
    await r.connect();
    const pong = await r.ping();
    r.disconnect();
    return pong === 'PONG';
  } catch {
    return false;
  }
}

function runChild(workload, subject, rep, seq) {
  const args = { ...workload.args, ...(quick ? workload.quick : {}), subject };
  const ns = `${runToken}-${seq}`;
  const argv = [];
  for (const [k, v] of Object.entries(args)) argv.push(`--${k}`, String(v));
  argv.push('--ns', ns);
  const nodeArgs = [...(workload.node ?? [])];
  if (profile && subject === 'concord') {
    const name = `concord-${workload.id.replace(/[^A-Za-z0-9]+/g, '-')}-rep${rep + 1}.cpuprofile`;
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${resultsDir}`, `--cpu-prof-name=${name}`);
  }
  const file = join(here, 'workloads', workload.file);
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [...nodeArgs, file, ...argv], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let killed = false;
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, childTimeoutMs);
    child.on('close', async (code, signal) => {
      clearTimeout(timer);
      const seconds = (Date.now() - started) / 1000;
      if (workload.redis) await cleanupRedis(ns).catch(() => {}); // in case the child died before its own cleanup
      const resultLine = out.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
      const skipLine = out.split('\n').find((l) => l.startsWith('BENCH_SKIP '));
      if (resultLine) resolve({ ok: true, seconds, ...JSON.parse(resultLine.slice('BENCH_RESULT '.length)) });
      else if (skipLine) resolve({ skip: true, seconds, ...JSON.parse(skipLine.slice('BENCH_SKIP '.length)) });
      else {
        const tail = (err || out).trim().split('\n').slice(-12).join('\n');
        const how = killed ? `timed out (killed after ${childTimeoutMs / 1000} s)` : `exit ${code}${signal ? ` (${signal})` : ''}`;
        resolve({ failed: true, seconds, reason: `${how}: ${tail}` });
      }
    });
  });
}

const t0 = Date.now();
const redisUp = await redisReachable();
if (!redisUp) banner('Redis is not reachable at 127.0.0.1:6379: the networked workloads are SKIPPED');

const plan = WORKLOADS.filter((w) => !only || only.some((p) => w.id.startsWith(p)));
const runs = []; // { workload, subject, rep, results, info } | { ..., skip/failed }
const skipped = []; // { workload, subject, reason }
let seq = 0;
console.log(`concord bench: ${quick ? 'quick' : 'full'} run, ${reps} repetition(s), ${plan.length} workload(s), token ${runToken}`);
for (const w of plan) {
  const subjects = w.subjects.filter((s) => !subjectsFilter || subjectsFilter.has(s));
  if (w.redis && !redisUp) {
    for (const s of subjects) skipped.push({ workload: w.id, subject: s, reason: 'Redis not reachable' });
    console.log(`-- ${w.id}: SKIPPED (Redis not reachable)`);
    continue;
  }
  console.log(`-- ${w.id}: ${w.title}`);
  const gaveUp = new Set();
  for (let rep = 0; rep < reps; rep++) {
    // Alternate the order of subjects between repetitions so drift in machine load spreads evenly.
    const order = subjects.map((_, i) => subjects[(i + rep) % subjects.length]);
    for (const subject of order) {
      if (gaveUp.has(subject)) continue;
      const r = await runChild(w, subject, rep, seq++);
      if (r.ok) {
        runs.push({ workload: w.id, subject, rep, results: r.results, info: r.info });
        const shown = r.results.map((x) => `${x.metric}=${fmt(x.value)}`).join(' ');
        console.log(`   rep ${rep + 1} ${subject.padEnd(18)} ${shown}  (${r.seconds.toFixed(1)} s)`);
      } else {
        gaveUp.add(subject); // a skip or a failure will not change on the next repetition
        const reason = r.skip ? r.reason : `FAILED ${r.reason}`;
        skipped.push({ workload: w.id, subject, reason });
        if (r.skip) console.log(`   !!! ${subject} SKIPPED: ${r.reason}`);
        else console.log(`   !!! ${subject} FAILED (${r.seconds.toFixed(1)} s):\n${r.reason.replace(/^/gm, '       ')}`);
      }
    }
  }
}

function fmt(v) {
  if (v >= 1000) return Math.round(v).toLocaleString('en-US');
  return v.toPrecision(4);
}

const rows = summarise(runs);
const targets = evaluateTargets(
  rows,
  runs,
  TARGETS.filter((t) => plan.some((w) => w.id === t.workload)),
  skipped,
);
const machine = machineInfo();
const versions = await versionsInfo(root, redisUp);
const meta = {
  date: new Date().toISOString(),
  mode: quick ? 'quick' : partial ? 'partial' : 'full',
  reps,
  durationSeconds: Math.round((Date.now() - t0) / 1000),
  machine,
  versions,
  workloads: plan.map((w) => ({ id: w.id, title: w.title, args: { ...w.args, ...(quick ? w.quick : {}) }, subjects: w.subjects })),
  skipped,
  targets,
};

console.log('\n' + renderConsole(rows, targets, skipped, HIGHER_IS_BETTER, runs, quick));

// latest.json is the full run docs/BENCHMARKS.md shows; a quick or partial run writes beside it
// (quick.json, partial.json) so it never leaves latest.json out of step with the docs.
mkdirSync(resultsDir, { recursive: true });
const base = writeDocsToo || meta.mode === 'full' ? 'latest' : meta.mode;
writeFileSync(join(resultsDir, `${base}.json`), JSON.stringify(rows, null, 2) + '\n');
writeFileSync(join(resultsDir, `${base}.meta.json`), JSON.stringify({ ...meta, runs }, null, 2) + '\n');
console.log(`\nwrote bench/results/${base}.json (${rows.length} rows) and bench/results/${base}.meta.json`);
if (writeDocsToo) {
  const scale = readScaleSection(docsPath); // the --scale run's section survives a regeneration
  writeDocs(docsPath, rows, { ...meta, runs }, HIGHER_IS_BETTER, notesPath);
  if (scale) writeScaleSection(docsPath, scale);
  console.log('wrote docs/BENCHMARKS.md (notes from bench/NOTES.md)');
} else {
  console.log(`docs/BENCHMARKS.md left as is (${quick ? 'quick' : 'partial'} run; pass --docs to regenerate it)`);
}
console.log(`done in ${meta.durationSeconds} s`);
if (skipped.length) console.log(`!!! ${skipped.length} subject/workload pair(s) skipped or failed: see above`);
process.exit(0);

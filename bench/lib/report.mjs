// Summaries, ratios, targets, and the two renderings (console table, docs/BENCHMARKS.md).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';
import { redisClient } from './common.mjs';

const METRIC_ORDER = ['msgs_per_s', 'ops_per_s', 'p50_us', 'p99_us', 'bytes_per_msg'];
const UNITS = { msgs_per_s: 'msg/s', ops_per_s: 'ops/s', p50_us: 'µs', p99_us: 'µs', bytes_per_msg: 'B/msg' };

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function round(v) {
  if (!Number.isFinite(v)) return v;
  return Math.abs(v) >= 100 ? Math.round(v) : Number(v.toFixed(3));
}

/** latest.json rows: one per workload × subject × metric, median/min/max over the repetitions. */
export function summarise(runs) {
  const groups = new Map();
  for (const r of runs) {
    for (const { metric, value } of r.results) {
      const key = `${r.workload}\u0000${r.subject}\u0000${metric}`;
      if (!groups.has(key)) groups.set(key, { workload: r.workload, subject: r.subject, metric, values: [] });
      groups.get(key).values.push(value);
    }
  }
  const rows = [...groups.values()].map((g) => ({
    workload: g.workload,
    subject: g.subject,
    metric: g.metric,
    median: round(median(g.values)),
    min: round(Math.min(...g.values)),
    max: round(Math.max(...g.values)),
  }));
  // Keep workload order as run; Concord first within a workload; metrics in a fixed order.
  const wOrder = [...new Set(runs.map((r) => r.workload))];
  return rows.sort(
    (a, b) =>
      wOrder.indexOf(a.workload) - wOrder.indexOf(b.workload) ||
      (b.subject === 'concord') - (a.subject === 'concord') ||
      METRIC_ORDER.indexOf(a.metric) - METRIC_ORDER.indexOf(b.metric),
  );
}

function find(rows, workload, subject, metric) {
  return rows.find((r) => r.workload === workload && r.subject === subject && r.metric === metric);
}

/** Concord ÷ peer of the medians, and the range of the per-repetition ratios (rep i with rep i). */
export function ratio(rows, runs, workload, peer, metric) {
  const c = find(rows, workload, 'concord', metric);
  const p = find(rows, workload, peer, metric);
  if (!c || !p || !p.median) return null;
  const paired = [];
  const byRep = (subject) =>
    new Map(
      runs
        .filter((r) => r.workload === workload && r.subject === subject)
        .map((r) => [r.rep, r.results.find((x) => x.metric === metric)?.value]),
    );
  const cr = byRep('concord');
  const pr = byRep(peer);
  for (const [rep, cv] of cr) if (pr.get(rep)) paired.push(cv / pr.get(rep));
  return { value: c.median / p.median, min: paired.length ? Math.min(...paired) : null, max: paired.length ? Math.max(...paired) : null };
}

/**
 * The telling line of a skip or failure reason (which may hold a child's stderr tail): the error
 * message itself (`Error: ...`, `TypeError: ...`) when there is one, else the first line.
 */
export function reasonLine(reason) {
  const lines = String(reason)
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const error = lines.find((l) => /^([A-Z]\w*)?Error\b/.test(l) || /\bE[A-Z]{3,}\b/.test(l));
  const head = lines[0] ?? '';
  if (!error || error === head) return head;
  const prefix = /^(FAILED )?(exit|timed out)[^:]*:/.exec(head)?.[0];
  return prefix ? `${prefix} ${error}` : error;
}

/** Why `subject` has no figure for `workload` in this run: its skip or failure reason, if any. */
function notMeasured(skipped, workload, subject) {
  const s = skipped.find((x) => x.workload === workload && x.subject === subject);
  return s ? `: ${reasonLine(s.reason)}` : '';
}

export function evaluateTargets(rows, runs, targets, skipped = []) {
  return targets.map((t) => {
    const c = find(rows, t.workload, 'concord', t.metric);
    let measured = null;
    let range = null;
    let why = null;
    if (!c) why = `Concord not measured${notMeasured(skipped, t.workload, 'concord')}`;
    else if (t.peer) {
      const r = ratio(rows, runs, t.workload, t.peer, t.metric);
      if (!r) why = `${t.peer} not measured${notMeasured(skipped, t.workload, t.peer)}`;
      else {
        measured = r.value;
        range = r.min === null ? null : [r.min, r.max];
      }
    } else measured = c.median;
    const pass = measured === null ? null : t.op === '>=' ? measured >= t.bound : measured <= t.bound;
    return { ...t, measured, range, status: pass === null ? 'N/A' : pass ? 'PASS' : 'MISS', why };
  });
}

export function fmtNum(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}
/** Text safe inside a markdown table cell. */
const mdCell = (text) => text.replace(/\|/g, '\\|');
const fmtRatio = (v) => (v === null || v === undefined ? '—' : `${v >= 10 ? v.toFixed(1) : v.toFixed(2)}×`);

export function targetMeasured(t) {
  if (t.measured === null) return `— (${t.why})`;
  if (t.peer) return `${fmtRatio(t.measured)}${t.range ? ` (reps ${fmtRatio(t.range[0])}–${fmtRatio(t.range[1])})` : ''}`;
  return `${fmtNum(t.measured)} ${t.unit ?? ''}`.trim();
}

function ratioCell(rows, runs, row, higherIsBetter) {
  if (row.subject === 'concord') return '';
  const r = ratio(rows, runs ?? [], row.workload, row.subject, row.metric);
  if (!r) return '';
  const better = higherIsBetter[row.metric] ? r.value >= 1 : r.value <= 1;
  return `${fmtRatio(r.value)}${better ? '' : ' ▼'}`;
}

/** Table rows: the measured ones, and after each workload's, one per subject not measured (with why). */
function tableRows(rows, skipped, runs, higherIsBetter) {
  const out = [];
  const workloads = [...new Set([...rows.map((r) => r.workload), ...skipped.map((s) => s.workload)])];
  for (const w of workloads) {
    for (const r of rows.filter((x) => x.workload === w)) {
      out.push([r.workload, r.subject, r.metric, fmtNum(r.median), fmtNum(r.min), fmtNum(r.max), ratioCell(rows, runs, r, higherIsBetter)]);
    }
    for (const s of skipped.filter((x) => x.workload === w)) {
      out.push([w, s.subject, 'NOT MEASURED', '—', '—', '—', reasonLine(s.reason).slice(0, 100)]);
    }
  }
  return out;
}

export function renderConsole(rows, targets, skipped, higherIsBetter, runs = [], quick = false) {
  const head = ['workload', 'subject', 'metric', 'median', 'min', 'max', 'concord ÷ subject'];
  const body = tableRows(rows, skipped, runs, higherIsBetter);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => String(b[i]).length)));
  const line = (cells) => cells.map((c, i) => (i >= 3 && i <= 5 ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i]))).join('  ');
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  ')];
  let last = null;
  for (const b of body) {
    if (last !== null && b[0] !== last) out.push('');
    out.push(line(b[0] === last ? ['', ...b.slice(1)] : b));
    last = b[0];
  }
  out.push('', '(ratios are Concord ÷ subject of the medians; ▼ marks Concord worse than that subject)', '');
  out.push(quick ? 'targets (QUICK smoke run: small n, one repetition, cold JIT: indicative only, not the figures to hold):' : 'targets:');
  for (const t of targets) out.push(`  ${t.status.padEnd(4)}  ${t.text.padEnd(58)} ${targetMeasured(t)}`);
  if (skipped.length) {
    out.push('', 'skipped / failed:');
    for (const s of skipped) out.push(`  !!! ${s.workload} ${s.subject}: ${reasonLine(s.reason)}`);
  }
  return out.join('\n');
}

export function machineInfo() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

export async function versionsInfo(root, redisUp) {
  const require = createRequire(join(root, 'package.json'));
  const pkg = (name) => {
    try {
      return JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
    } catch {
      return 'not installed';
    }
  };
  const v = {
    concord: JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version,
    bullmq: pkg('bullmq'),
    ioredis: pkg('ioredis'),
    'better-sqlite3': pkg('better-sqlite3'),
    emittery: pkg('emittery'),
  };
  try {
    v.commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: root, encoding: 'utf8' }).trim();
    if (dirty) v.commit += ` + uncommitted changes in src/ (${dirty.split('\n').length} files)`;
  } catch {
    v.commit = 'unknown';
  }
  try {
    const Database = require('better-sqlite3');
    const db = new Database(':memory:');
    v.sqlite = db.prepare('select sqlite_version() as v').get().v;
    db.close();
  } catch {
    v.sqlite = 'unknown';
  }
  if (redisUp) {
    try {
      const r = await redisClient();
      const info = await r.info('server');
      r.disconnect();
      v['redis-server'] = /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? 'unknown';
    } catch {
      v['redis-server'] = 'unknown';
    }
  } else v['redis-server'] = 'not reachable';
  return v;
}

const NOTES_START = '<!-- notes:start -->';
const NOTES_END = '<!-- notes:end -->';

const METHOD = `
## What runs

Every workload runs Concord and its peers in the same run, each subject in a fresh \`node\`
process per repetition, 3 repetitions with the order of subjects rotated between repetitions
(the machine is shared, so absolute numbers are noisy; the ratios of one run are what count).
Figures are the median and range over the repetitions; a ratio is Concord ÷ peer of the
medians, with the range of the per-repetition ratios beside it. Every message is the small
JSON task of the contract (\`{ task: 'summarise', documentId: 'doc-123', section, words: 250 }\`,
type \`task\`, \`planner\` → \`worker\`, priority drawn uniformly from 0..10 by a seeded PRNG so
every subject sees the same sequence). Handlers are trivial (they read one payload field), and
every subject runs exactly one async handler function per message.

| workload | what is timed | subjects |
| --- | --- | --- |
| \`bus-memory/backlog\` | after an untimed warm-up round of 20k messages (every subject, same path), 200k messages sent (each \`await\`ed) before the first is handled, then one consumer (concurrency 1) handles and acks them all; first send → last ack | Concord memory bus (push agent; the first delivery waits on a gate until the last send), \`heap-limit\` (hand-written binary heap, one promise per \`take()\`: the in-memory limit), \`emittery\` (all \`emit()\`s issued, then awaited), \`eventemitter\` (synchronous dispatch; no queue, no priorities) |
| \`bus-memory/interleaved\` | the same (warm-up, then 200k messages), the producer awaiting each send while the consumer runs | same |
| \`request-memory\` | 20k sequential requests after a 2k warm-up; latency of each \`request\` → reply | Concord \`bus.request({ sender, recipient, payload, priority, timeout })\` to an agent that returns its result; \`eventemitter\`: a correlation-id map and a timeout per request |
| \`redis-transport/c1\`, \`/c50\` | after an untimed warm-up of 5k messages (every subject, same path), 50k messages sent by a producer **process** in batches of 500, consumed and acked in this process at concurrency 1 / 50; producer's first send → last ack stored (clocks compared across processes) | Concord (\`sendBatch\` → Redis transport → agent with \`concurrency\`), \`bullmq\` (\`Queue.addBulk\` with \`opts.priority = 11 - p\`, \`Worker\` with \`concurrency\`, \`removeOnComplete\`), \`redis-streams-raw\` (pipelined \`XADD\`; \`concurrency\` consumers each looping \`XREADGROUP COUNT 100\` + one \`XACK\` per read; no priorities: the limit) |
| \`request-redis\` | after an untimed warm-up of 3k requests (every subject, same path), 5k sequential requests, requester and responder in separate processes | Concord \`bus.request\` over the Redis transport; \`redis-lists-raw\`: requester \`LPUSH\` + \`BRPOP\` of its reply list, responder \`BLPOP\` + \`LPUSH\` |
| \`state-cas/memory\`, \`/sqlite\`, \`/redis\` | after an untimed warm-up of 10% of the run (at most 10k), sequential compare-and-swap updates of one ~500-byte, 8-line document (one line changes per update), each with \`expectedVersion\` = the version just returned | Concord \`StateManager.updateDocumentContent\` on \`memory://\`, \`sqlite:<tmp>/concord.db\`, \`redis://…?namespace=\`; raw loops on the same engine: \`memory-raw\` (Map + history array), \`sqlite-raw\` (better-sqlite3, WAL, \`synchronous=FULL\`: \`UPDATE docs … WHERE id = ? AND version = ?\` + history \`INSERT\` in one transaction), \`redis-lua-raw\` (one \`EVALSHA\`: check version, \`HSET\`, \`RPUSH\` history) |
| \`memory-rss\` | 1M task messages enqueued into Concord's memory transport (pull-mode recipient, nobody consumes); RSS growth after forced GCs ÷ 1M | Concord (\`sendBatch\` of 1000), \`heap-limit\` holding the same messages (for scale) |

Redis runs use the shared server at 127.0.0.1:6379 with a key namespace unique to each run,
removed afterwards by \`SCAN\` + \`UNLINK\` of that namespace (BullMQ queues are obliterated); if
Redis is unreachable the networked workloads are skipped with a loud line.
`;

/**
 * The "Notes and profiling" text: bench/NOTES.md when it exists (the place to write before/after
 * figures and profiling notes; it survives every regeneration), else whatever an older
 * docs/BENCHMARKS.md held between the notes markers.
 */
function notesSection(docsPath, notesPath) {
  if (notesPath && existsSync(notesPath)) return `${NOTES_START}\n${readFileSync(notesPath, 'utf8').trim()}\n${NOTES_END}`;
  if (existsSync(docsPath)) {
    const old = readFileSync(docsPath, 'utf8');
    const a = old.indexOf(NOTES_START);
    const b = old.indexOf(NOTES_END);
    if (a >= 0 && b > a) return old.slice(a, b + NOTES_END.length);
  }
  return `${NOTES_START}\n_No notes yet (write them in bench/NOTES.md)._\n${NOTES_END}`;
}

export function writeDocs(path, rows, meta, higherIsBetter, notesPath) {
  const notes = notesSection(path, notesPath);
  const runs = meta.runs ?? [];
  const out = [];
  out.push('# Benchmarks', '');
  out.push(
    'Concord side by side with what users would pick instead, measured in one run on one machine.',
    'Generated by `npm run bench` (bench/run.mjs) from a real run; the raw figures are in',
    '`bench/results/latest.json`. Regenerate with `npm run bench`; smoke-test with `npm run bench -- --quick`; after editing `bench/NOTES.md`, `node bench/run.mjs --render` rewrites this page from the saved results.',
    '',
  );
  out.push(`Run: ${meta.date} · ${meta.mode}, ${meta.reps} repetition(s), ${meta.durationSeconds} s · commit ${meta.versions.commit}`, '');
  out.push('## Targets', '', '| target | measured (Concord ÷ peer, or absolute) | status |', '| --- | --- | --- |');
  for (const t of meta.targets) out.push(`| ${t.text} | ${mdCell(targetMeasured(t))} | **${t.status}** |`);
  out.push('');
  out.push('## Results', '');
  out.push('Median over the repetitions, with min and max. Ratio: Concord ÷ that subject (▼ where Concord is worse).', '');
  const workloads = [...new Set(rows.map((r) => r.workload))];
  for (const w of workloads) {
    const info = meta.workloads.find((x) => x.id === w);
    out.push(`### ${w}${info ? ` — ${info.title}` : ''}`, '');
    if (info)
      out.push(
        `Parameters: ${Object.entries(info.args)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')}`,
        '',
      );
    out.push('| subject | metric | median | min | max | Concord ÷ subject |', '| --- | --- | ---: | ---: | ---: | ---: |');
    for (const r of rows.filter((x) => x.workload === w)) {
      out.push(
        `| ${r.subject} | ${r.metric} (${UNITS[r.metric]}) | ${fmtNum(r.median)} | ${fmtNum(r.min)} | ${fmtNum(r.max)} | ${ratioCell(rows, runs, r, higherIsBetter)} |`,
      );
    }
    const skipped = meta.skipped.filter((s) => s.workload === w);
    for (const s of skipped) out.push(`| ${s.subject} | **not measured** | — | — | — | ${mdCell(reasonLine(s.reason))} |`);
    out.push('');
  }
  const unmeasured = meta.skipped.filter((s) => !rows.some((r) => r.workload === s.workload));
  if (unmeasured.length) {
    out.push('### Not measured in this run', '');
    for (const s of unmeasured) out.push(`- ${s.workload} / ${s.subject}: ${reasonLine(s.reason)}`);
    out.push('');
  }
  out.push('## Notes and profiling', '', notes, '');
  out.push(METHOD.trim(), '');
  const m = meta.machine;
  const v = meta.versions;
  out.push('## Machine and versions', '');
  out.push(`- CPU: ${m.cpu}, ${m.cores} cores (shared with other work; load average at start ${m.loadAverageAtStart.join(' / ')})`);
  out.push(`- Memory: ${m.memoryGiB} GiB · OS: ${m.os} · Node.js ${m.node}`);
  out.push(
    `- concord ${v.concord} (commit ${v.commit}) · bullmq ${v.bullmq} · ioredis ${v.ioredis} · better-sqlite3 ${v['better-sqlite3']} (SQLite ${v.sqlite}) · emittery ${v.emittery} · redis-server ${v['redis-server']}`,
  );
  out.push(`- Date: ${meta.date}`, '');
  writeFileSync(path, out.join('\n'));
}

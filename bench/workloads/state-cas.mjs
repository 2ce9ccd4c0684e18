// Workload 4: compare-and-swap document updates per second on one engine (memory, sqlite, redis).
// One document, N sequential updates, each with expectedVersion = the version just returned; the
// content is a ~500-byte, 8-line document of which one line changes per update.
// Result: ops_per_s = N / elapsed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, emit, cleanupRedis, REDIS_URL } from '../lib/common.mjs';

const args = parseArgs();
const { subject, engine, ns } = args;
const n = args.n ?? 10_000;
// Long enough for V8 to reach its optimising tier on every subject: with 500 the first few
// thousand measured updates of the memory engine ran in the baseline tier (~20% of a 100k run).
const warmup = args.warmup ?? Math.min(10_000, Math.ceil(n / 10));
const synchronous = args.synchronous ?? 'FULL';

const LINES = Array.from(
  { length: 8 },
  (_, k) => `Section ${k + 1}: the agents summarise the findings of part ${k + 1} in about fifty words.`,
);
function contentFor(i) {
  const lines = LINES.slice();
  lines[i % 8] = `Section ${(i % 8) + 1}: revision ${i} rewrites this paragraph with the reviewer's feedback applied.`;
  return lines.join('\n');
}
const contents = Array.from({ length: 64 }, (_, i) => contentFor(i));

let dir;
const cleanup = [];
let update; // (i, expected) => Promise<newVersion>
const info = {};
const documentId = 'doc-123';

if (engine === 'sqlite') {
  dir = mkdtempSync(join(tmpdir(), 'concord-bench-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
}
if (engine === 'redis') {
  if (!ns) throw new Error('--ns is required for redis');
  cleanup.push(() => cleanupRedis(ns));
}

let version;
if (subject === 'concord') {
  const { requireConcord, stateDefaults } = await import('../lib/concord.mjs');
  const { StateManager } = await requireConcord(['StateManager']);
  let store;
  if (engine === 'memory') store = 'memory://';
  else if (engine === 'sqlite') {
    await requireConcord([], 'concord-agents/sqlite');
    store = `sqlite:${join(dir, 'concord.db')}`;
  } else if (engine === 'redis') {
    await requireConcord([], 'concord-agents/redis');
    store = `${REDIS_URL}?namespace=${ns}`;
  }
  const state = new StateManager({ ...stateDefaults, store });
  const doc = await state.createDocumentState({
    documentId,
    topic: 'benchmarks',
    requirements: ['a short report'],
    context: {},
    content: LINES.join('\n'),
  });
  version = doc.version;
  update = async (i, expected) =>
    (await state.updateDocumentContent({ documentId, content: contents[i & 63], actor: 'writer', expectedVersion: expected })).version;
  cleanup.unshift(() => state.close?.());
} else {
  const raw = await import('../peers/state-raw.mjs');
  let impl;
  if (subject === 'memory-raw' && engine === 'memory') impl = raw.memoryRaw();
  else if (subject === 'sqlite-raw' && engine === 'sqlite') {
    impl = await raw.sqliteRaw(join(dir, 'raw.db'), { synchronous });
    info.pragmas = impl.pragmas();
  } else if (subject === 'redis-lua-raw' && engine === 'redis') impl = await raw.redisLuaRaw(ns);
  else throw new Error(`unknown subject ${subject} for engine ${engine}`);
  version = await impl.create(documentId, LINES.join('\n'));
  update = (i, expected) => impl.update(documentId, expected, contents[i & 63], 'writer');
  cleanup.unshift(() => impl.close());
}

let seconds;
try {
  for (let i = 0; i < warmup; i++) version = await update(i, version);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) version = await update(warmup + i, version);
  seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (version !== 1 + warmup + n) throw new Error(`ended at version ${version}, expected ${1 + warmup + n}`);
} finally {
  for (const c of cleanup) await c();
}
emit([{ metric: 'ops_per_s', value: n / seconds }], { n, warmup, engine, seconds, ...info });
process.exit(0);

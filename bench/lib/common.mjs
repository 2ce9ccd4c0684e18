// Shared helpers for benchmark workloads: arguments, the task message, timing, stats, Redis hygiene.
// A workload is a program run in a fresh process by bench/run.mjs; it prints exactly one line
// `BENCH_RESULT {json}` (results) or `BENCH_SKIP {json}` (a subject that cannot run here).
import { performance } from 'node:perf_hooks';

/** Parses `--key value` / `--flag` pairs into an object (numbers converted). */
export function parseArgs(argv = process.argv.slice(2)) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const key = a.slice(2);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out[key] = true;
    else {
      out[key] = /^-?\d+(\.\d+)?$/.test(next) ? Number(next) : next;
      i++;
    }
  }
  // A namespace is what the run's keys are cleaned up by: refuse a short one before anything
  // is written, not after (cleanupRedis would refuse it then and leave the keys behind).
  if (out.ns !== undefined && (typeof out.ns !== 'string' || out.ns.length < 8)) {
    throw new Error(`--ns must be at least 8 characters (it names the keys to clean up), got \`${out.ns}\``);
  }
  return out;
}

/** Deterministic PRNG (mulberry32): every subject sees the same priority sequence. */
export function rng(seed = 0x5eed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random priorities 0..10 (inclusive), precomputed so drawing them is outside every timed loop's cost. */
export function priorities(n, seed) {
  const r = rng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * 11);
  return out;
}

/** The small JSON task payload of the contract. A fresh object per message, as a real producer makes. */
export function taskPayload(i) {
  return { task: 'summarise', documentId: 'doc-123', section: i % 12, words: 250 };
}

/** What a producer hands Concord's `send` (and what peers carry as their message). */
export function taskInput(i, priority, sender = 'planner', recipient = 'worker') {
  return { sender, recipient, type: 'task', payload: taskPayload(i), priority };
}

/**
 * The same message as a peer carries it: the fields Concord's Message has (a cheap counter id
 * instead of a ULID, which favours the peers slightly).
 */
export function peerMessage(i, priority, sender = 'planner', recipient = 'worker') {
  return {
    id: String(i),
    type: 'task',
    sender,
    recipient,
    payload: taskPayload(i),
    timestamp: Date.now(),
    priority,
    headers: {},
    attempt: 1,
  };
}

/** Wall-clock milliseconds with sub-ms resolution, comparable across processes on one machine. */
export function wallMs() {
  return performance.timeOrigin + performance.now();
}

export function nowNs() {
  return process.hrtime.bigint();
}

/** p50/p99 of latencies given in nanoseconds (Float64Array), in microseconds. */
export function percentilesUs(samplesNs) {
  const s = Float64Array.from(samplesNs).sort();
  const at = (q) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] / 1000;
  return { p50_us: at(0.5), p99_us: at(0.99), mean_us: s.reduce((a, b) => a + b, 0) / s.length / 1000 };
}

export function emit(results, info = {}) {
  process.stdout.write(`BENCH_RESULT ${JSON.stringify({ results, info })}\n`);
}

/** A subject that cannot run (a Concord part not built yet, Redis down, ...): loud, but not a crash. */
export function skip(reason) {
  process.stdout.write(`BENCH_SKIP ${JSON.stringify({ reason })}\n`);
}

export const REDIS_URL = process.env.CONCORD_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
export function redisHostPort(url = REDIS_URL) {
  const u = new URL(url);
  return { host: u.hostname || '127.0.0.1', port: Number(u.port || 6379), db: Number(u.pathname.slice(1) || 0) };
}

/** An ioredis client on the bench Redis. */
export async function redisClient(extra = {}) {
  const { default: Redis } = await import('ioredis');
  const { host, port, db } = redisHostPort();
  return new Redis({ host, port, db, lazyConnect: false, maxRetriesPerRequest: null, enableAutoPipelining: false, ...extra });
}

/**
 * Deletes every key containing `token` (a namespace unique to this run): SCAN + UNLINK, never FLUSH.
 * The token is random and long enough that no one else's key contains it.
 */
export async function cleanupRedis(token) {
  if (!token || token.length < 8) throw new Error(`refusing to clean Redis with a short token \`${token}\``);
  const r = await redisClient();
  let cursor = '0';
  let removed = 0;
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `*${token}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) removed += await r.unlink(...keys);
  } while (cursor !== '0');
  r.disconnect();
  return removed;
}

/** Resolves when `predicate()` is true, checking every `ms`; rejects after `timeoutMs`. */
export async function waitUntil(predicate, what, timeoutMs = 60_000, ms = 5) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, ms));
  }
}

/** A promise with its resolve/reject outside (Promise.withResolvers is Node 22+). */
export function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A logger that drops everything (pino-shaped), so no subject pays for log I/O. */
export const silentLogger = (() => {
  const noop = () => {};
  const l = { level: 'silent', trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop, silent: noop };
  l.child = () => l;
  l.isLevelEnabled = () => false;
  return l;
})();

/** For the memory workload: RSS after two forced collections. */
export async function settledRss() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 20));
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed };
}

/**
 * Spawns this same workload file in another process with `--role <role>` (producer, responder),
 * connected by IPC. `message(type)` resolves with the next IPC message of that type.
 */
export async function spawnRole(file, role, argv) {
  const { fork } = await import('node:child_process');
  const child = fork(file, [...argv, '--role', role], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: process.execArgv });
  const waiting = new Map();
  const inbox = [];
  child.on('message', (m) => {
    const w = waiting.get(m.type);
    if (w) {
      waiting.delete(m.type);
      w.resolve(m);
    } else inbox.push(m);
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  exited.then(({ code, signal }) => {
    for (const w of waiting.values())
      w.reject(new Error(`${role} exited (code ${code}, signal ${signal}) before sending the expected message`));
  });
  return {
    child,
    exited,
    send: (m) => child.send(m),
    message(type) {
      const i = inbox.findIndex((m) => m.type === type);
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
      const d = deferred();
      waiting.set(type, d);
      return d.promise;
    },
  };
}

/** In a role child: the next IPC message of `type` from the parent. */
export function parentMessage(type) {
  return new Promise((resolve) => {
    const on = (m) => {
      if (m?.type === type) {
        process.off('message', on);
        resolve(m);
      }
    };
    process.on('message', on);
  });
}

/** Progress lines on stderr when BENCH_DEBUG=1 (stdout carries only the result line). */
export function debug(...args) {
  if (process.env.BENCH_DEBUG) process.stderr.write(`[${process.pid} ${new Date().toISOString().slice(11, 23)}] ${args.join(' ')}\n`);
}

// The benchmark plan: every workload, the subjects it compares, its sizes, and the targets.
// Subject names are stable: they are the `subject` field of bench/results/latest.json.

export const WORKLOADS = [
  {
    id: 'bus-memory/backlog',
    file: 'bus-memory.mjs',
    title: 'In-process bus, deep backlog (all sent, then consumed)',
    subjects: ['concord', 'heap-limit', 'emittery', 'eventemitter'],
    args: { mode: 'backlog', n: 200_000 },
    quick: { n: 50_000 },
  },
  {
    id: 'bus-memory/interleaved',
    file: 'bus-memory.mjs',
    title: 'In-process bus, interleaved (send and consume together)',
    subjects: ['concord', 'heap-limit', 'emittery', 'eventemitter'],
    args: { mode: 'interleaved', n: 200_000 },
    quick: { n: 50_000 },
  },
  {
    id: 'request-memory',
    file: 'request-memory.mjs',
    title: 'In-process request/response (sequential)',
    subjects: ['concord', 'eventemitter'],
    args: { n: 20_000 },
    quick: { n: 5_000, warmup: 2_000 }, // a warm JIT even in a smoke run: cold figures mislead
  },
  {
    id: 'redis-transport/c1',
    file: 'redis-transport.mjs',
    title: 'Redis transport, producer and consumer processes, concurrency 1',
    subjects: ['concord', 'bullmq', 'redis-streams-raw'],
    args: { n: 50_000, concurrency: 1, batch: 500 },
    quick: { n: 3_000 },
    redis: true,
  },
  {
    id: 'redis-transport/c50',
    file: 'redis-transport.mjs',
    title: 'Redis transport, producer and consumer processes, concurrency 50',
    subjects: ['concord', 'bullmq', 'redis-streams-raw'],
    args: { n: 50_000, concurrency: 50, batch: 500 },
    quick: { n: 5_000 },
    redis: true,
  },
  {
    id: 'request-redis',
    file: 'request-redis.mjs',
    title: 'Request/response over Redis, requester and responder processes',
    subjects: ['concord', 'redis-lists-raw'],
    args: { n: 5_000 },
    quick: { n: 500 },
    redis: true,
  },
  {
    id: 'state-cas/memory',
    file: 'state-cas.mjs',
    title: 'State compare-and-swap updates, memory',
    subjects: ['concord', 'memory-raw'],
    // 300 000: a 100 000-update run lasts ~0.3 s and mostly measures V8 growing its heap (the
    // raw loop too: 0.57M/s at 100k against 0.88M/s at 300k); bench/NOTES.md, round 8.
    args: { engine: 'memory', n: 300_000 },
    quick: { n: 10_000 },
  },
  {
    id: 'state-cas/sqlite',
    file: 'state-cas.mjs',
    title: 'State compare-and-swap updates, SQLite (WAL, durable)',
    subjects: ['concord', 'sqlite-raw'],
    args: { engine: 'sqlite', n: 5_000 },
    quick: { n: 500 },
  },
  {
    id: 'state-cas/redis',
    file: 'state-cas.mjs',
    title: 'State compare-and-swap updates, Redis',
    subjects: ['concord', 'redis-lua-raw'],
    args: { engine: 'redis', n: 10_000 },
    quick: { n: 1_000 },
    redis: true,
  },
  {
    id: 'memory-rss',
    file: 'memory-rss.mjs',
    title: 'Memory per queued message (memory transport, no consumer)',
    subjects: ['concord', 'heap-limit'],
    args: { n: 1_000_000 },
    quick: { n: 100_000 },
    node: ['--expose-gc'],
  },
];

/** Higher is better for throughput; lower for latency and memory. */
export const HIGHER_IS_BETTER = { msgs_per_s: true, ops_per_s: true, p50_us: false, p99_us: false, bytes_per_msg: false };

/**
 * The targets. `peer`: a ratio Concord ÷ peer of the medians measured in the same run;
 * without `peer`: an absolute bound on Concord's median.
 */
export const TARGETS = [
  {
    text: 'memory bus, deep backlog ≥ 0.5× heap-limit',
    workload: 'bus-memory/backlog',
    metric: 'msgs_per_s',
    peer: 'heap-limit',
    op: '>=',
    bound: 0.5,
  },
  {
    text: 'memory bus, deep backlog ≥ 1× emittery',
    workload: 'bus-memory/backlog',
    metric: 'msgs_per_s',
    peer: 'emittery',
    op: '>=',
    bound: 1,
  },
  {
    text: 'memory bus, interleaved ≥ 1× emittery',
    workload: 'bus-memory/interleaved',
    metric: 'msgs_per_s',
    peer: 'emittery',
    op: '>=',
    bound: 1,
  },
  { text: 'in-process request/response p50 ≤ 10 µs', workload: 'request-memory', metric: 'p50_us', op: '<=', bound: 10, unit: 'µs' },
  { text: 'in-process request/response p99 ≤ 50 µs', workload: 'request-memory', metric: 'p99_us', op: '<=', bound: 50, unit: 'µs' },
  {
    text: 'Redis transport, concurrency 50 ≥ 2× BullMQ',
    workload: 'redis-transport/c50',
    metric: 'msgs_per_s',
    peer: 'bullmq',
    op: '>=',
    bound: 2,
  },
  {
    text: 'Redis transport, concurrency 50 ≥ 0.5× raw Streams loop',
    workload: 'redis-transport/c50',
    metric: 'msgs_per_s',
    peer: 'redis-streams-raw',
    op: '>=',
    bound: 0.5,
  },
  {
    text: 'Redis request/response p50 ≤ 2× raw list round trip',
    workload: 'request-redis',
    metric: 'p50_us',
    peer: 'redis-lists-raw',
    op: '<=',
    bound: 2,
  },
  {
    text: 'SQLite compare-and-swap ≥ 0.5× raw better-sqlite3 loop',
    workload: 'state-cas/sqlite',
    metric: 'ops_per_s',
    peer: 'sqlite-raw',
    op: '>=',
    bound: 0.5,
  },
  {
    text: 'Redis compare-and-swap ≥ 0.5× raw Lua CAS',
    workload: 'state-cas/redis',
    metric: 'ops_per_s',
    peer: 'redis-lua-raw',
    op: '>=',
    bound: 0.5,
  },
  { text: 'memory store ≥ 200k updates/s', workload: 'state-cas/memory', metric: 'ops_per_s', op: '>=', bound: 200_000, unit: '/s' },
  {
    text: 'memory transport ≤ 1 KiB per queued message',
    workload: 'memory-rss',
    metric: 'bytes_per_msg',
    op: '<=',
    bound: 1024,
    unit: 'B',
  },
];

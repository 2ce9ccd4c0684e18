// Workload 5: memory per queued message. N small task messages are enqueued (nobody consumes);
// bytes_per_msg = RSS growth after forced GCs / N (heap growth reported beside it). Run with --expose-gc.
import { parseArgs, priorities, taskInput, peerMessage, emit, settledRss } from '../lib/common.mjs';

if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');
const args = parseArgs();
const subject = args.subject;
const n = args.n ?? 1_000_000;
const chunk = 1000;
const prio = priorities(n, 5);
let keep;
let before;
let after;
let queued;

if (subject === 'concord') {
  const { requireConcord, busDefaults } = await import('../lib/concord.mjs');
  const { MessageBus } = await requireConcord(['MessageBus']);
  const bus = new MessageBus({ ...busDefaults });
  bus.registerAgent('worker'); // pull mode, and nobody pulls: every message stays queued
  for (let i = 0; i < chunk; i++) await bus.send(taskInput(i, prio[i])); // warm every code path first
  before = await settledRss();
  for (let i = 0; i < n; i += chunk) {
    const batch = [];
    for (let j = i; j < i + chunk; j++) batch.push(taskInput(j, prio[j]));
    await bus.sendBatch(batch);
  }
  after = await settledRss();
  queued = bus.metrics?.();
  keep = bus;
} else if (subject === 'heap-limit') {
  const { HeapQueue } = await import('../peers/heap-limit.mjs');
  const q = new HeapQueue();
  for (let i = 0; i < chunk; i++) q.push(peerMessage(i, prio[i]), prio[i]);
  before = await settledRss();
  for (let i = 0; i < n; i++) q.push(peerMessage(i, prio[i]), prio[i]);
  after = await settledRss();
  queued = { size: q.size };
  keep = q;
} else throw new Error(`unknown subject ${subject}`);

emit([{ metric: 'bytes_per_msg', value: (after.rss - before.rss) / n }], {
  n,
  heapBytesPerMsg: (after.heapUsed - before.heapUsed) / n,
  rssBeforeMiB: before.rss / 2 ** 20,
  rssAfterMiB: after.rss / 2 ** 20,
  keep: typeof keep,
  queued: queued?.agents?.worker ?? queued?.queueDepth ?? queued?.size ?? null,
});
process.exit(0);

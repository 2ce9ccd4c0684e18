// BullMQ: Queue.addBulk from the producer, a Worker with `concurrency` in the consumer.
// Concord priority 0..10 (higher first) maps to BullMQ priority 11 - p (1..11, lower first).
// Completed jobs are removed (removeOnComplete), as a throughput-minded user configures it.
import { Queue, Worker } from 'bullmq';
import { redisHostPort } from '../lib/common.mjs';

const connection = () => {
  const { host, port, db } = redisHostPort();
  return { host, port, db, maxRetriesPerRequest: null };
};
export const queueName = (ns) => `bench-${ns}`;
export const prefix = (ns) => `bench:${ns}:bull`;

/** Connects (outside the timed part); `sendAll` adds the messages with `addBulk`, `batch` at a time. */
export async function producer(ns) {
  const q = new Queue(queueName(ns), { connection: connection(), prefix: prefix(ns) });
  await q.waitUntilReady();
  const opts = (p) => ({ priority: 11 - p, removeOnComplete: true, removeOnFail: true });
  return {
    async sendAll(messages, batch) {
      for (let i = 0; i < messages.length; i += batch) {
        const jobs = [];
        for (let j = i; j < Math.min(i + batch, messages.length); j++)
          jobs.push({ name: 'task', data: messages[j], opts: opts(messages[j].priority) });
        await q.addBulk(jobs);
      }
    },
    close: () => q.close(),
  };
}

export async function startWorker(ns, concurrency, handler, onAck) {
  const w = new Worker(queueName(ns), async (job) => handler(job.data), { connection: connection(), prefix: prefix(ns), concurrency });
  w.on('completed', () => onAck(1));
  w.on('failed', (job, err) => console.error('bullmq job failed', err));
  await w.waitUntilReady();
  return async () => {
    await w.close();
    const q = new Queue(queueName(ns), { connection: connection(), prefix: prefix(ns) });
    await q.obliterate({ force: true });
    await q.close();
  };
}

// The Redis Streams limit: a producer pipelining XADD in batches; consumers in a group reading
// XREADGROUP COUNT 100 and acking each read with one XACK. No priorities, no retries, no dead
// letters: the least work Redis can do to move a message from one process to another and ack it.
import { redisClient } from '../lib/common.mjs';

export function streamKey(ns) {
  return `bench:${ns}:stream`;
}

/** Connects (outside the timed part); `sendAll` pipelines one XADD per message, `batch` per round trip. */
export async function producer(ns) {
  const r = await redisClient();
  await r.ping();
  const key = streamKey(ns);
  return {
    async sendAll(messages, batch) {
      for (let i = 0; i < messages.length; i += batch) {
        const p = r.pipeline();
        for (let j = i; j < Math.min(i + batch, messages.length); j++) p.xadd(key, '*', 'm', JSON.stringify(messages[j]));
        await p.exec();
      }
    },
    close: () => r.quit(),
  };
}

export async function prepareGroup(ns) {
  const r = await redisClient();
  await r.xgroup('CREATE', streamKey(ns), 'g', '$', 'MKSTREAM');
  r.disconnect();
}

/** `concurrency` consumers, each its own connection; `onAck(k)` after each XACK of k messages. */
export async function startConsumers(ns, concurrency, handler, onAck) {
  const key = streamKey(ns);
  let stopped = false;
  const loops = [];
  const conns = [];
  for (let c = 0; c < concurrency; c++) {
    const r = await redisClient();
    conns.push(r);
    loops.push(
      (async () => {
        while (!stopped) {
          const res = await r.xreadgroup('GROUP', 'g', `c${c}`, 'COUNT', 100, 'BLOCK', 100, 'STREAMS', key, '>');
          if (!res) continue;
          const entries = res[0][1];
          const ids = new Array(entries.length);
          for (let i = 0; i < entries.length; i++) {
            const [id, fields] = entries[i];
            await handler(JSON.parse(fields[1]));
            ids[i] = id;
          }
          await r.xack(key, 'g', ...ids);
          onAck(ids.length);
        }
      })(),
    );
  }
  return async () => {
    stopped = true;
    await Promise.all(loops);
    for (const r of conns) r.disconnect();
  };
}

import { afterAll, describe, expect, it } from 'vitest';
import { MessageBus, MessageType } from '../../src/index.js';
import { createRedisTransport } from '../../src/backends/redis/index.js';
import { serviceAvailable, waitFor } from '../helpers/services.js';
import { cleanupNamespace, rawClient, redisNamespace, redisUrl } from './helpers.js';

const up = await serviceAvailable('redis');

/** Connections of namespace `ns` open on the server right now, by role (`cmd`, `block`, `sub`). */
async function connections(ns: string): Promise<Record<string, number>> {
  const raw = rawClient();
  await raw.connect();
  try {
    const list = String(await raw.client('LIST'));
    const counts: Record<string, number> = {};
    for (const line of list.split('\n')) {
      const m = new RegExp(` name=concord:${ns}:([a-z]+):`).exec(line);
      if (m) counts[m[1]!] = (counts[m[1]!] ?? 0) + 1;
    }
    return counts;
  } finally {
    raw.disconnect();
  }
}

function total(counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

describe.runIf(up)('Redis transport connections (real Redis)', () => {
  const namespaces: string[] = [];
  afterAll(async () => {
    for (const ns of namespaces) await cleanupNamespace(ns);
  });

  it('waits on 200 queue names share a bounded set of blocking connections, with no listener leak', async () => {
    const ns = redisNamespace('conn');
    namespaces.push(ns);
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    const transport = createRedisTransport(`${redisUrl(ns)}&blockingConnections=8`);
    const bus = new MessageBus({ transport });
    try {
      const names = Array.from({ length: 200 }, (_, i) => `agent-${i}`);
      for (const name of names) bus.registerAgent(name);
      // Every name waits at once; measure while they all wait.
      const waits = names.map((name) => bus.receive(name, { timeout: 1500 }));
      let peak = 0;
      const watching = (async () => {
        const until = Date.now() + 1200;
        while (Date.now() < until) {
          peak = Math.max(peak, (await connections(ns))['block'] ?? 0);
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      // Messages sent meanwhile still reach the names they were sent to.
      await bus.send({ type: MessageType.TASK, sender: 'test', recipient: 'agent-7', payload: { n: 7 } });
      await bus.send({ type: MessageType.TASK, sender: 'test', recipient: 'agent-199', payload: { n: 199 } });
      const got = await Promise.all(waits);
      await watching;
      expect(got[7]?.payload).toEqual({ n: 7 });
      expect(got[199]?.payload).toEqual({ n: 199 });
      expect(got.filter((d) => d !== null)).toHaveLength(2);
      await got[7]!.ack();
      await got[199]!.ack();
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(8);
      const counts = await connections(ns);
      // The command connection plus at most the bound of blocking ones.
      expect(total(counts)).toBeLessThanOrEqual(1 + 8);
    } finally {
      await bus.close();
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  });

  it('blocking connections idle past their idle time are closed', async () => {
    const ns = redisNamespace('conn');
    namespaces.push(ns);
    const transport = createRedisTransport(`${redisUrl(ns)}&blockingIdleMs=200`);
    try {
      await transport.connect();
      await Promise.all(['a', 'b', 'c'].map((q) => transport.lease(q, { leaseMs: 1000, waitMs: 100 })));
      await waitFor(async () => ((await connections(ns))['block'] ?? 0) === 0, 'idle blocking connections to close', 5000, 50);
      expect(await connections(ns)).toEqual({ cmd: 1 });
      // And a later wait opens one again.
      const waiting = transport.lease('a', { leaseMs: 1000, waitMs: 300 });
      await waitFor(async () => ((await connections(ns))['block'] ?? 0) === 1, 'a blocking connection for the new wait', 5000, 20);
      expect(await waiting).toEqual([]);
    } finally {
      await transport.close();
    }
  });
});

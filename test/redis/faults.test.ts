import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { createMessage, MessageType, type Message } from '../../src/message.js';
import { TransportError } from '../../src/errors.js';
import type { EnqueueEntry, Lease } from '../../src/bus/transport.js';
import { createRedisStore, createRedisTransport, type RedisStore, type RedisTransport } from '../../src/backends/redis/index.js';
import { SERVICES, serviceAvailable, waitFor } from '../helpers/services.js';
import { cleanupNamespace, rawClient, redisNamespace, redisUrl } from './helpers.js';
import { ThrowawayRedis, freePort } from './server.js';

const up = await serviceAvailable('redis');

function msg(recipient: string, n: number, id?: string): Message {
  return createMessage({ sender: 'fault', recipient, type: MessageType.TASK, payload: { n }, ...(id ? { id } : {}) });
}

function entry(queue: string, message: Message, dedupeWindowMs = 0): EnqueueEntry {
  return { queue, message, visibleAt: Date.now(), requireRecipient: false, dedupeWindowMs };
}

/** Kills every connection of namespace `ns` on the shared server (only ours: matched by client name). */
async function killOurConnections(ns: string, role?: string): Promise<number> {
  const raw = rawClient();
  await raw.connect();
  try {
    const list = String(await raw.client('LIST'));
    const ids = list
      .split('\n')
      .filter((line) => line.includes(` name=concord:${ns}:${role ?? ''}`))
      .map((line) => /(?:^|\s)id=(\d+)/.exec(line)?.[1])
      .filter((id): id is string => id !== undefined);
    for (const id of ids) await raw.client('KILL', 'ID', id);
    return ids.length;
  } finally {
    raw.disconnect();
  }
}

describe('Redis down at start', () => {
  it('connect fails fast with TransportError naming the URL (transport and store)', { timeout: 5000 }, async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}/0?namespace=down`;
    const t = createRedisTransport(url);
    const s = createRedisStore(url);
    for (const attempt of [() => t.connect(), () => s.connect(), () => t.enqueue([entry('q', msg('q', 1))]), () => s.getDocument('d')]) {
      const err = await attempt().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TransportError);
      expect((err as TransportError).code).toBe('transport_unavailable');
      expect((err as TransportError).url).toContain(`127.0.0.1:${port}`);
      expect((err as Error).message).toContain(`redis://127.0.0.1:${port}/0`);
    }
    await t.close();
    await s.close();
  });

  it('a password in the URL never shows in the error', { timeout: 5000 }, async () => {
    const port = await freePort();
    const t = createRedisTransport(`redis://user:s3cret@127.0.0.1:${port}/0`);
    const err = (await t.connect().catch((e: unknown) => e)) as TransportError;
    expect(err).toBeInstanceOf(TransportError);
    expect(err.message).not.toContain('s3cret');
    expect(err.url).not.toContain('s3cret');
    await t.close();
  });
});

describe.runIf(up)('Redis faults on the shared server (own connections only)', () => {
  const ns = redisNamespace('rf');
  const url = redisUrl(ns);
  const open: (RedisTransport | RedisStore)[] = [];
  afterAll(async () => {
    await Promise.all(open.map((x) => x.close()));
    await cleanupNamespace(ns);
  });

  it('CLIENT KILL of every connection: commands, blocked consumers and subscriptions carry on', async () => {
    const t = createRedisTransport(url);
    const consumer = createRedisTransport(url);
    const store = createRedisStore(url);
    open.push(t, consumer, store);
    const seen: number[] = [];
    await consumer.subscribe('probe', (m) => seen.push(Number(m.payload['n'])));
    const changes: number[] = [];
    await store.watch((e) => changes.push(e.revision));

    // A consumer blocked on an empty queue (its own blocking connection).
    const waiting = consumer.lease('k', { leaseMs: 5000, waitMs: 20_000 });
    await waitFor(async () => (await killOurConnections(ns, 'block')) > 0, 'the blocking connection to exist and be killed', 5000, 20);
    expect(await killOurConnections(ns)).toBeGreaterThanOrEqual(4);

    await t.enqueue([entry('k', msg('k', 1))]);
    const got = await waiting;
    expect(got.map((l) => l.message.payload['n'])).toEqual([1]);
    expect(await consumer.ack(got[0]!)).toBe(true);

    // Subscriptions come back by themselves (at-most-once: publish until one arrives).
    let n = 0;
    await waitFor(
      async () => {
        await t.publish('probe', msg('', ++n));
        return seen.length > 0;
      },
      'a publication after the reconnect',
      10_000,
      50,
    );

    // The store's change feed catches up after its subscriber reconnects.
    const r = await store.commitDocument({
      document: { documentId: 'k-doc', version: 1, content: 'x', metadata: {}, createdAt: new Date(), updatedAt: new Date() },
      change: { version: 1, timestamp: new Date(), actor: 'fault', action: 'create' },
      expectedVersion: null,
      historyLimit: 10,
    });
    expect(r.ok).toBe(true);
    await waitFor(() => changes.length > 0, 'a change event after the reconnect', 10_000);
  });

  it('a blocked consumer whose connection goes silent (no close, no answer) gets a new one and carries on', {
    timeout: 40_000,
  }, async () => {
    // A TCP proxy in front of the shared server that can black-hole a connection it carries: it
    // stays open and swallows everything both ways, as after a network partition; new ones work.
    const pipes: { silent: boolean; client: Socket; server: Socket }[] = [];
    const proxy = createServer((client) => {
      const server = connect(SERVICES.redis.port, SERVICES.redis.host);
      const pipe = { silent: false, client, server };
      pipes.push(pipe);
      client.on('data', (d) => pipe.silent || server.write(d));
      server.on('data', (d) => pipe.silent || client.write(d));
      const end = () => {
        client.destroy();
        server.destroy();
      };
      client.on('error', end).on('close', end);
      server.on('error', end).on('close', end);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const port = (proxy.address() as AddressInfo).port;
    const consumer = createRedisTransport(`redis://127.0.0.1:${port}/0?namespace=${ns}`);
    const producer = createRedisTransport(url);
    open.push(producer);
    try {
      await consumer.connect();
      // pipes[0] is the command connection; the wait opens the pump's blocking one, pipes[1].
      const waiting = consumer.lease('silent', { leaseMs: 2000, waitMs: 30_000 });
      await waitFor(() => pipes.length >= 2, 'the blocking connection through the proxy', 5000, 20);
      await new Promise((r) => setTimeout(r, 200)); // its first round (a 2 s BLPOP) is in Redis
      pipes[1]!.silent = true;
      // Wakes that BLPOP: Redis leases the message to the silent connection and the reply is lost.
      await producer.enqueue([entry('silent', msg('silent', 1))]);
      // The watchdog drops the connection (its round outlived its wait by STUCK_MS); the pump
      // opens a new one and, once the lost lease ran out, leases the message again.
      const got = await waiting;
      expect(got.map((l) => l.message.payload['n'])).toEqual([1]);
      expect(got[0]!.message.attempt).toBe(2);
      expect(pipes.length).toBeGreaterThanOrEqual(3);
      expect(await consumer.ack(got[0]!)).toBe(true);
      expect(await producer.lease('silent', { leaseMs: 1000, waitMs: 0 })).toEqual([]);
    } finally {
      await consumer.close().catch(() => undefined);
      for (const p of pipes) p.client.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it('malformed data in a queue is dead-lettered as malformed while a waiting consumer carries on', async () => {
    const t = createRedisTransport(url);
    open.push(t);
    const waiting = t.lease('bad', { leaseMs: 5000, waitMs: 10_000 });
    const raw = rawClient();
    await raw.connect();
    try {
      const base = `concord:{${ns}}:q:bad:`;
      await raw.hset(base + 'body', 'junk', '\u0000\u0001 definitely not a message');
      await raw.hset(base + 'meta', 'junk', '1:0:');
      await raw.zadd(base + 'ready', 1, 'junk');
      await raw.lpush(base + 'signal', '1');
    } finally {
      raw.disconnect();
    }
    await t.enqueue([entry('bad', msg('bad', 5))]);
    const got = await waiting.then(async (first) => (first.length > 0 ? first : t.lease('bad', { leaseMs: 5000, waitMs: 10_000 })));
    expect(got.map((l) => l.message.payload['n'])).toEqual([5]);
    const letters = await t.listDeadLetters();
    expect(letters.map((d) => [d.message.id, d.reason])).toEqual([['junk', 'malformed']]);
    expect(letters[0]!.raw).toContain('definitely not a message');
  });
});

describe.runIf(up)('a throwaway redis-server restarted mid-stream (appendonly, appendfsync always)', () => {
  let server: ThrowawayRedis | undefined;
  afterAll(async () => {
    await server?.destroy();
  });

  it('loses no acknowledged message and no committed version', { timeout: 90_000 }, async () => {
    server = await ThrowawayRedis.start();
    const url = `${server.url}?namespace=restart`;
    const producer = createRedisTransport(url);
    const consumer = createRedisTransport(url);
    const store = createRedisStore(url);
    await Promise.all([producer.connect(), consumer.connect(), store.connect()]);

    const acknowledged = new Set<string>();
    const received = new Set<string>();
    const committed = new Map<number, string>();
    let stopProducers = false;
    let stopConsumer = false;
    let failures = 0;

    const produce = (async () => {
      for (let n = 0; !stopProducers; n++) {
        const m = msg('work', n, `restart-${n}`);
        // Retried with the same id until acknowledged: the dedupe window makes the retry safe.
        for (;;) {
          try {
            const [r] = await producer.enqueue([entry('work', m, 600_000)]);
            if (r?.status === 'enqueued' || r?.status === 'duplicate') break;
          } catch {
            failures++;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        acknowledged.add(m.id);
      }
    })();

    const consume = (async () => {
      while (!stopConsumer) {
        let leases: Lease[] = [];
        try {
          leases = await consumer.lease('work', { leaseMs: 1500, waitMs: 500, max: 20 });
        } catch {
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
        for (const l of leases) {
          received.add(l.message.id);
          await consumer.ack(l).catch(() => false);
        }
      }
    })();

    const commit = (async () => {
      let version = 0;
      for (let i = 0; !stopProducers; i++) {
        const content = `content ${i}`;
        for (;;) {
          try {
            const next = version + 1;
            const r = await store.commitDocument({
              document: { documentId: 'durable', version: next, content, metadata: { i }, createdAt: new Date(0), updatedAt: new Date() },
              change: { version: next, timestamp: new Date(), actor: 'fault', action: next === 1 ? 'create' : 'update_content' },
              expectedVersion: version === 0 ? null : version,
              historyLimit: 100_000,
            });
            if (r.ok) {
              version = next;
              committed.set(next, content);
              break;
            }
            // An earlier attempt was applied but its reply was lost: continue from what is stored.
            const current = r.current ?? (await store.getDocument('durable'));
            if (current) version = current.version;
          } catch {
            failures++;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      }
    })();

    await waitFor(() => acknowledged.size >= 100 && committed.size >= 50, 'traffic before the crash', 30_000);
    await server.kill();
    const atCrash = { messages: acknowledged.size, versions: committed.size };
    await server.restart();
    await waitFor(
      () => acknowledged.size >= atCrash.messages + 100 && committed.size >= atCrash.versions + 50,
      'traffic after the restart',
      60_000,
    );
    stopProducers = true;
    await Promise.all([produce, commit]);
    await waitFor(() => [...acknowledged].every((id) => received.has(id)), 'every acknowledged message to be received', 30_000, 20);
    stopConsumer = true;
    await consume;
    console.info(`restart test: ${acknowledged.size} messages, ${committed.size} versions acknowledged; ${failures} failed calls retried`);

    for (const [version, content] of committed) {
      const kept = await store.getVersion('durable', version);
      expect(kept?.content, `version ${version}`).toBe(content);
    }
    const doc = await store.getDocument('durable');
    expect(doc!.version).toBeGreaterThanOrEqual(Math.max(...committed.keys()));
    await Promise.all([producer.close(), consumer.close(), store.close()]);
  });
});

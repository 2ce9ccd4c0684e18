import { Redis } from 'ioredis';
import { SERVICES, testNamespace } from '../helpers/services.js';

/** The shared Redis URL for namespace `ns`. */
export function redisUrl(ns: string, base: string = SERVICES.redis.url): string {
  return `${base}?namespace=${ns}`;
}

/** A fresh namespace for one test file. */
export function redisNamespace(prefix = 'redis'): string {
  return testNamespace(prefix);
}

/** A plain client for poking at keys directly (fault injection, cleanup). */
export function rawClient(host: string = SERVICES.redis.host, port: number = SERVICES.redis.port): Redis {
  const client = new Redis({ host, port, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on('error', () => {});
  return client;
}

/** Deletes every key of namespace `ns` (SCAN MATCH + UNLINK): never anything else on the server. */
export async function cleanupNamespace(
  ns: string,
  host: string = SERVICES.redis.host,
  port: number = SERVICES.redis.port,
): Promise<number> {
  const client = rawClient(host, port);
  await client.connect();
  let removed = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `concord:{${ns}}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) removed += await client.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
  return removed;
}

/** How many keys namespace `ns` holds. */
export async function countKeys(ns: string): Promise<number> {
  const client = rawClient();
  await client.connect();
  let n = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `concord:{${ns}}:*`, 'COUNT', 1000);
      cursor = next;
      n += keys.length;
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
  return n;
}

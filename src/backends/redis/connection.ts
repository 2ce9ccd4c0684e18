import { Redis, type RedisOptions } from 'ioredis';
import { ConcordError, TransportError, ValidationError, redactUrl } from '../../errors.js';
import { parseBackendUrl } from '../url.js';
import { isWellFormed } from '../text.js';
import { CHANGE_FEED_RETENTION } from '../../state/store-kit.js';

/**
 * Everything a Redis transport or store needs to know about its server, parsed from
 * `redis://[user:password@]host[:port][/db][?namespace=NAME&connectTimeout=MS&feedMaxLen=N]`.
 */
export interface RedisConfig {
  /** The URL as given, credentials redacted: what errors and logs show. */
  url: string;
  host: string;
  port: number;
  db: number;
  username: string | undefined;
  password: string | undefined;
  /** `?namespace=`, default `default`. */
  namespace: string;
  /**
   * Prefix of every key: `concord:{NAMESPACE}:`. The braces are a Redis Cluster hash tag, so
   * every key of one namespace lives in one slot and a Lua script may touch any of them.
   */
  prefix: string;
  /** How long the first connection may take before `connect()` fails (default 2000 ms). */
  connectTimeoutMs: number;
  /** Approximate cap of the state change-feed stream (default 100 000 events). */
  feedMaxLen: number;
}

function positiveInt(params: URLSearchParams, name: string, fallback: number): number {
  const raw = params.get(name);
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new ValidationError(`${name} must be a positive integer, got \`${raw}\``, { field: name });
  return n;
}

/** Parses and checks a `redis://` URL. Throws `ValidationError` when it is not one. */
export function parseRedisUrl(url: string): RedisConfig {
  const parsed = parseBackendUrl(url, ['redis://host:6379/0']);
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    throw new ValidationError(`invalid Redis URL \`${redactUrl(url)}\``, { cause: err });
  }
  const dbText = u.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0) throw new ValidationError(`Redis database must be a non-negative integer, got \`${dbText}\``, { field: 'db' });
  const port = u.port === '' ? 6379 : Number(u.port);
  const namespace = parsed.namespace ?? 'default';
  return {
    url: redactUrl(url),
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port,
    db,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    namespace,
    prefix: `concord:{${namespace}}:`,
    connectTimeoutMs: positiveInt(parsed.params, 'connectTimeout', 2000),
    feedMaxLen: positiveInt(parsed.params, 'feedMaxLen', CHANGE_FEED_RETENTION),
  };
}

/**
 * Escapes a name (queue, message id, document id) for use as one `:`-separated key segment,
 * so `a:b` + `c` never collides with `a` + `b:c`.
 */
export function keySegment(name: string): string {
  // Most names (ULIDs, agent names) need no escaping: skip the regex passes (hot per message).
  if (name.indexOf('%') < 0 && name.indexOf(':') < 0 && isWellFormed(name)) return name;
  // A lone surrogate becomes %uXXXX: Redis would get U+FFFD, and two names would become one.
  return name.replace(/%/g, '%25').replace(/:/g, '%3A').replace(LONE_SURROGATE, (c) => `%u${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Inverse of `keySegment`. */
export function fromKeySegment(segment: string): string {
  if (segment.indexOf('%') < 0) return segment;
  return segment.replace(/%u([0-9A-F]{4})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))).replace(/%3A/g, ':').replace(/%25/g, '%');
}

let clientCounter = 0;

/**
 * A new, not yet connected ioredis client. `role` names it in `CLIENT LIST`
 * (`concord:NAMESPACE:ROLE:PID:N`) so an operator (or a fault test) can tell connections apart.
 *
 * After the first connection succeeds the client reconnects by itself with a capped backoff,
 * and commands issued while it is down wait in the offline queue for a few reconnect attempts.
 */
export function createClient(config: RedisConfig, role: string, extra: Partial<RedisOptions> = {}): Redis {
  const client = new Redis({
    host: config.host,
    port: config.port,
    db: config.db,
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(config.password !== undefined ? { password: config.password } : {}),
    connectionName: `concord:${config.namespace}:${role}:${process.pid}:${++clientCounter}`,
    lazyConnect: true,
    connectTimeout: config.connectTimeoutMs,
    retryStrategy: (times) => Math.min(25 * 2 ** Math.min(times, 7), 2000),
    maxRetriesPerRequest: 20,
    ...extra,
  });
  // ioredis reports every failed reconnect attempt as an 'error' event; the callers see
  // failures through the commands they issue, so the events themselves are only swallowed.
  client.on('error', () => {});
  return client;
}

/** Connects `client`, mapping any failure to a `TransportError` naming the URL (and stopping reconnects). */
export async function connectClient(client: Redis, config: RedisConfig): Promise<void> {
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    throw new TransportError(config.url, `cannot connect to Redis at ${config.host}:${config.port}: ${(err as Error).message}`, { cause: err });
  }
}

/** Wraps a driver failure as `TransportError`; Concord errors pass through unchanged. */
export function asTransportError(config: RedisConfig, what: string, err: unknown): Error {
  if (err instanceof ConcordError) return err;
  return new TransportError(config.url, `Redis ${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

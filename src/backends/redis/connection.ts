import { isIP } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import { ConcordError, TransportError, ValidationError, redactUrl } from '../../errors.js';
import { parseBackendUrl } from '../url.js';
import { isWellFormed } from '../text.js';
import { CHANGE_FEED_RETENTION } from '../../state/store-kit.js';

/** The URL forms a Redis backend takes (`rediss://` is Redis over TLS, as managed services require). */
export const REDIS_URLS = ['redis://host:6379/0', 'rediss://host:6380/0'] as const;

/**
 * Everything a Redis transport or store needs to know about its server, parsed from
 * `redis[s]://[user:password@]host[:port][/db][?namespace=NAME&connectTimeout=MS&feedMaxLen=N&blockingConnections=N&blockingIdleMs=MS]`.
 */
export interface RedisConfig {
  /** The URL as given, credentials redacted: what errors and logs show. */
  url: string;
  host: string;
  port: number;
  db: number;
  username: string | undefined;
  password: string | undefined;
  /** `rediss://`: every connection speaks TLS (certificates checked against the host name). */
  tls: boolean;
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
  /**
   * Most blocking connections one transport opens for the queues and inbox it waits on
   * (default 16; 1 = every wait shares one): see `LinePool` in transport.ts.
   */
  blockingConnections: number;
  /** How long a blocking connection may sit unused before it is closed (default 5000 ms). */
  blockingIdleMs: number;
}

function positiveInt(params: URLSearchParams, name: string, fallback: number, min = 1): number {
  const raw = params.get(name);
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new ValidationError(`${name} must be an integer >= ${min}, got \`${raw}\``, { field: name });
  return n;
}

/** Parses and checks a `redis://` or `rediss://` URL. Throws `ValidationError` (URL redacted) when it is not one. */
export function parseRedisUrl(url: string): RedisConfig {
  const parsed = parseBackendUrl(url, REDIS_URLS);
  const shown = redactUrl(url);
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    throw new ValidationError(
      `invalid Redis URL \`${shown}\`: expected redis[s]://[[user]:password@]host[:port 1..65535][/db][?namespace=NAME]`,
      { field: 'url', cause: redactedCause(err, url) },
    );
  }
  const dbText = u.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0)
    throw new ValidationError(`Redis database must be a non-negative integer, got \`${dbText}\``, { field: 'db' });
  const tls = parsed.scheme === 'rediss';
  const port = u.port === '' ? 6379 : Number(u.port);
  const namespace = parsed.namespace ?? 'default';
  return {
    url: shown,
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port,
    db,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls,
    namespace,
    prefix: `concord:{${namespace}}:`,
    connectTimeoutMs: positiveInt(parsed.params, 'connectTimeout', 2000),
    feedMaxLen: positiveInt(parsed.params, 'feedMaxLen', CHANGE_FEED_RETENTION),
    blockingConnections: positiveInt(parsed.params, 'blockingConnections', 16),
    blockingIdleMs: positiveInt(parsed.params, 'blockingIdleMs', 5000),
  };
}

/**
 * The URL parser's own error repeats the input whole (`Invalid URL: redis://:secret@...`): keep
 * its kind, not its text.
 */
function redactedCause(err: unknown, url: string): Error {
  const message = err instanceof Error ? err.message.split(url).join(redactUrl(url)) : String(err);
  const cause = new TypeError(message);
  if (err instanceof Error && 'code' in err) Object.assign(cause, { code: (err as { code: unknown }).code });
  return cause;
}

/**
 * Escapes a name (queue, message id, document id) for use as one `:`-separated key segment,
 * so `a:b` + `c` never collides with `a` + `b:c`.
 */
export function keySegment(name: string): string {
  // Most names (ULIDs, agent names) need no escaping: skip the regex passes (hot per message).
  if (name.indexOf('%') < 0 && name.indexOf(':') < 0 && isWellFormed(name)) return name;
  // A lone surrogate becomes %uXXXX: Redis would get U+FFFD, and two names would become one.
  return name
    .replace(/%/g, '%25')
    .replace(/:/g, '%3A')
    .replace(LONE_SURROGATE, (c) => `%u${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Inverse of `keySegment`. */
export function fromKeySegment(segment: string): string {
  if (segment.indexOf('%') < 0) return segment;
  return segment
    .replace(/%u([0-9A-F]{4})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
    .replace(/%3A/g, ':')
    .replace(/%25/g, '%');
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
  const client = new Redis({ ...clientOptions(config, role), ...extra });
  // ioredis reports every failed reconnect attempt as an 'error' event; the callers see
  // failures through the commands they issue, so the events themselves are only swallowed.
  client.on('error', () => {});
  return client;
}

/** The ioredis options of a client for `config` (see `createClient`). */
export function clientOptions(config: RedisConfig, role: string): RedisOptions {
  return {
    host: config.host,
    port: config.port,
    db: config.db,
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(config.password !== undefined ? { password: config.password } : {}),
    // TLS with Node's defaults: the server's certificate must be valid for the host name (SNI
    // is sent for a name; an IP address is checked against the certificate's IP entries).
    ...(config.tls ? { tls: isIP(config.host) === 0 ? { servername: config.host } : {} } : {}),
    connectionName: `concord:${config.namespace}:${role}:${process.pid}:${++clientCounter}`,
    lazyConnect: true,
    connectTimeout: config.connectTimeoutMs,
    retryStrategy: (times) => Math.min(25 * 2 ** Math.min(times, 7), 2000),
    maxRetriesPerRequest: 20,
  };
}

/** Connects `client`, mapping any failure to a `TransportError` naming the URL (and stopping reconnects). */
export async function connectClient(client: Redis, config: RedisConfig): Promise<void> {
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    throw new TransportError(
      config.url,
      `cannot connect to Redis${config.tls ? ' (TLS)' : ''} at ${config.host}:${config.port}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** Wraps a driver failure as `TransportError`; Concord errors pass through unchanged. */
export function asTransportError(config: RedisConfig, what: string, err: unknown): Error {
  if (err instanceof ConcordError) return err;
  return new TransportError(config.url, `Redis ${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

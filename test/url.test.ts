import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { MessageBus, StateManager, ValidationError } from '../src/index.js';
import { TransportError, redactUrl } from '../src/errors.js';
import { parseBackendUrl } from '../src/backends/url.js';
import { resolveStore, resolveTransport, STORE_URLS, TRANSPORT_URLS } from '../src/connect.js';
import { clientOptions, parseRedisUrl } from '../src/backends/redis/connection.js';
import { createRedisTransport } from '../src/backends/redis/index.js';

/** The error `fn` throws (or the promise rejects with). */
async function failure(fn: () => unknown): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a failure');
}

/** Every text an error shows: message, the messages of its causes, and its `url` field. */
function shown(err: Error): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    parts.push(e.message, String((e as { url?: unknown }).url ?? ''));
  }
  return parts.join('\n');
}

describe('redactUrl', () => {
  it.each([
    ['redis://:s3cret@host:6379/0', 'redis://:***@host:6379/0'],
    ['rediss://default:s3cret@cache.example.com:6380/0?namespace=a', 'rediss://default:***@cache.example.com:6380/0?namespace=a'],
    // Does not parse (port out of range): redacted all the same, the rest shown as given.
    ['redis://:s3cret@host:99999', 'redis://:***@host:99999'],
    ['redis://user:s3cret@[::1:6379/0', 'redis://user:***@[::1:6379/0'],
    // A password holding unescaped '@', '/' or '?': everything up to the last '@' is userinfo.
    ['redis://:p@ss/w?rd@host/0', 'redis://:***@host/0'],
    // A user name alone is shown (it is passed as the name, never as a password).
    ['redis://alice@host', 'redis://alice@host'],
    ['redis://alice:@host', 'redis://alice:***@host'],
    // Unknown schemes and no scheme at all.
    ['foo+bar://u:s3cret@h', 'foo+bar://u:***@h'],
    [':s3cret@host:6379', ':***@host:6379'],
    // Credentials in the query.
    ['redis://host/0?namespace=n&password=s3cret&apiKey=k3y&token=t0k', 'redis://host/0?namespace=n&password=***&apiKey=***&token=***'],
    // Nothing secret: unchanged.
    ['redis://127.0.0.1:6379/0?namespace=x', 'redis://127.0.0.1:6379/0?namespace=x'],
    ['sqlite:./state@home.db', 'sqlite:./state@home.db'],
    ['memory://', 'memory://'],
  ])('%s -> %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
  });
});

describe('backend URLs in errors never show a secret', () => {
  const secret = 'hunter2-s3cret';

  it('an unsupported scheme', async () => {
    for (const url of [`redisx://:${secret}@h:6379`, `http://u:${secret}@h/?token=${secret}`]) {
      const err = await failure(() => parseBackendUrl(url, TRANSPORT_URLS));
      expect(err).toBeInstanceOf(ValidationError);
      expect(err.message).toContain('unsupported backend URL');
      expect(shown(err)).not.toContain(secret);
      expect(shown(await failure(() => resolveTransport(url)))).not.toContain(secret);
      expect(shown(await failure(() => resolveStore(url)))).not.toContain(secret);
      expect(
        shown(
          await failure(() => new MessageBus({ transport: url }).send({ type: 'task', sender: 'a', recipient: 'b', payload: {} } as never)),
        ),
      ).not.toContain(secret);
      expect(shown(await failure(() => new StateManager({ store: url })))).not.toContain(secret);
    }
  });

  it('a Redis URL that does not parse (port 99999)', async () => {
    for (const url of [`redis://:${secret}@127.0.0.1:99999/0`, `rediss://user:${secret}@h:99999`, `redis://:${secret}@h:6379/x`]) {
      const err = await failure(() => parseRedisUrl(url));
      expect(err).toBeInstanceOf(ValidationError);
      expect(shown(err)).not.toContain(secret);
      expect(shown(await failure(() => createRedisTransport(url)))).not.toContain(secret);
    }
    const err = await failure(() => parseRedisUrl(`redis://:${secret}@127.0.0.1:99999/0`));
    expect(err.message).toContain('redis://:***@127.0.0.1:99999/0');
    expect(err.message).toContain('port 1..65535');
  });

  it('a Redis server that cannot be reached', async () => {
    const err = await failure(async () => {
      const t = createRedisTransport(`redis://u:${secret}@127.0.0.1:1/0?connectTimeout=300`);
      try {
        await t.connect();
      } finally {
        await t.close();
      }
    });
    expect(err).toBeInstanceOf(TransportError);
    expect(shown(err)).not.toContain(secret);
    expect(err.message).toContain('redis://u:***@127.0.0.1:1/0');
  });
});

describe('rediss:// (Redis over TLS)', () => {
  it('is accepted wherever redis:// is', () => {
    expect(TRANSPORT_URLS).toContain('rediss://host:6380/0');
    expect(STORE_URLS).toContain('rediss://host:6380/0');
    const config = parseRedisUrl('rediss://default:pw@cache.example.com:6380/2?namespace=app');
    expect(config).toMatchObject({
      tls: true,
      host: 'cache.example.com',
      port: 6380,
      db: 2,
      username: 'default',
      password: 'pw',
      namespace: 'app',
    });
    expect(config.url).toBe('rediss://default:***@cache.example.com:6380/2?namespace=app');
    expect(parseRedisUrl('redis://h/0').tls).toBe(false);
  });

  it('maps to ioredis TLS options (SNI for a host name, none for an address); redis:// has none', () => {
    expect(clientOptions(parseRedisUrl('rediss://cache.example.com:6380'), 'cmd').tls).toEqual({ servername: 'cache.example.com' });
    expect(clientOptions(parseRedisUrl('rediss://10.0.0.5:6380'), 'cmd').tls).toEqual({});
    expect(clientOptions(parseRedisUrl('redis://cache.example.com:6379'), 'cmd').tls).toBeUndefined();
  });

  it('opens a TLS connection (the server sees a ClientHello) and its failure is redacted', async () => {
    // A plain TCP server: it records what the client sends first, then hangs up.
    const first: Buffer[] = [];
    const server = net.createServer((socket) => {
      socket.once('data', (data) => {
        first.push(data);
        socket.destroy();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const transport = createRedisTransport(`rediss://:tls-s3cret@127.0.0.1:${port}/0?namespace=tls&connectTimeout=1000`);
      const err = await failure(async () => {
        try {
          await transport.connect();
        } finally {
          await transport.close();
        }
      });
      expect(err).toBeInstanceOf(TransportError);
      expect(shown(err)).not.toContain('tls-s3cret');
      expect(err.message).toContain(`rediss://:***@127.0.0.1:${port}/0`);
      expect(first.length).toBeGreaterThan(0);
      // TLS record type 22 (handshake), message type 1 (ClientHello): not a RESP command.
      expect(first[0]![0]).toBe(0x16);
      expect(first[0]![5]).toBe(0x01);
    } finally {
      server.close();
    }
  });
});

import type { Transport } from './bus/transport.js';
import { parseBackendUrl, schemeOf } from './backends/url.js';
import { installTransportResolver } from './bus/resolve.js';
import { installStoreResolver } from './state/resolve.js';
import type { StateStore } from './state/store.js';

// The top of the house: the one place a backend URL becomes a backend. The core (bus/, state/,
// message.ts) never imports a backend; the package entry installs these resolvers for it
// (see bus/resolve.ts and state/resolve.ts). Each scheme's URL is parsed once, by its backend (`parseSqliteUrl`,
// the Redis options parser); here only the scheme is read, to pick the backend.

export const TRANSPORT_URLS = ['memory://', 'redis://host:6379/0', 'rediss://host:6380/0'] as const;
export const STORE_URLS = ['memory://', 'sqlite:./path.db', 'redis://host:6379/0', 'rediss://host:6380/0'] as const;

/**
 * A transport from an instance or a URL (default `memory://`), not yet connected. Backends with
 * drivers are imported only when their URL is used, so nobody installs ioredis to use memory.
 */
export async function resolveTransport(spec: Transport | string | undefined): Promise<Transport> {
  if (spec !== undefined && typeof spec !== 'string') return spec;
  const url = spec ?? 'memory://';
  if (schemeOf(url, TRANSPORT_URLS) === 'memory') {
    parseBackendUrl(url, TRANSPORT_URLS); // memory has no parser of its own: this checks its namespace
    const { MemoryTransport } = await import('./backends/memory/transport.js');
    return new MemoryTransport();
  }
  // redis:// or rediss:// (TLS)
  const { createRedisTransport } = await import('./backends/redis/index.js');
  return createRedisTransport(url);
}

/** A state store from an instance or a URL (default `memory://`), not yet connected (see `resolveTransport`). */
export async function resolveStore(spec: StateStore | string | undefined): Promise<StateStore> {
  if (spec !== undefined && typeof spec !== 'string') return spec;
  const url = spec ?? 'memory://';
  switch (schemeOf(url, STORE_URLS)) {
    case 'memory': {
      parseBackendUrl(url, STORE_URLS); // memory has no parser of its own: this checks its namespace
      const { MemoryStore } = await import('./backends/memory/store.js');
      return new MemoryStore();
    }
    case 'sqlite': {
      const { createSqliteStore } = await import('./backends/sqlite/index.js');
      return createSqliteStore(url);
    }
    default: {
      const { createRedisStore } = await import('./backends/redis/index.js');
      return createRedisStore(url);
    }
  }
}

installTransportResolver(resolveTransport);
installStoreResolver({
  store: resolveStore,
  // Checked when a StateManager is made, so a bad URL fails at once rather than at first use.
  checkUrl: (url) => void parseBackendUrl(url, STORE_URLS),
});

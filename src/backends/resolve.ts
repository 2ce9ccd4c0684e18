import type { Transport } from '../bus/transport.js';
import type { StateStore } from '../state/store.js';
import { parseBackendUrl } from './url.js';

export const TRANSPORT_URLS = ['memory://', 'redis://host:6379/0', 'rediss://host:6380/0'] as const;
export const STORE_URLS = ['memory://', 'sqlite:./path.db', 'redis://host:6379/0', 'rediss://host:6380/0'] as const;

/**
 * A transport from an instance or a URL. Backends with drivers are imported only when their
 * URL is used, so nobody installs ioredis to use memory.
 */
export async function resolveTransport(spec: Transport | string | undefined): Promise<Transport> {
  if (spec !== undefined && typeof spec !== 'string') return spec;
  const parsed = parseBackendUrl(spec ?? 'memory://', TRANSPORT_URLS);
  switch (parsed.scheme) {
    case 'memory': {
      const { MemoryTransport } = await import('./memory/transport.js');
      return new MemoryTransport();
    }
    default: {
      // redis:// or rediss:// (TLS)
      const mod = (await import('./redis/index.js')) as { createRedisTransport(url: string): Transport };
      return mod.createRedisTransport(parsed.url);
    }
  }
}

/** A state store from an instance or a URL (see `resolveTransport`). */
export async function resolveStore(spec: StateStore | string | undefined): Promise<StateStore> {
  if (spec !== undefined && typeof spec !== 'string') return spec;
  const parsed = parseBackendUrl(spec ?? 'memory://', STORE_URLS);
  switch (parsed.scheme) {
    case 'memory': {
      const { MemoryStore } = await import('./memory/store.js');
      return new MemoryStore();
    }
    case 'sqlite': {
      const mod = (await import('./sqlite/index.js')) as { createSqliteStore(url: string): StateStore };
      return mod.createSqliteStore(parsed.url);
    }
    default: {
      const mod = (await import('./redis/index.js')) as { createRedisStore(url: string): StateStore };
      return mod.createRedisStore(parsed.url);
    }
  }
}

/**
 * `concord-agents/redis`: the Redis transport and state store, for agents spread over many
 * processes or machines that share one Redis. Needs the optional peer dependency `ioredis`.
 *
 * @example
 * import { MessageBus, StateManager } from 'concord-agents';
 * import { createRedisTransport, createRedisStore } from 'concord-agents/redis';
 * const url = 'redis://127.0.0.1:6379/0?namespace=docs';
 * const bus = new MessageBus({ transport: createRedisTransport(url) });
 * const state = new StateManager({ store: createRedisStore(url) });
 */
import { RedisTransport } from './transport.js';
import { RedisStore } from './store.js';

export { RedisTransport } from './transport.js';
export { RedisStore } from './store.js';
export { parseRedisUrl, type RedisConfig } from './connection.js';

/** A Redis transport for `redis://host:port/db?namespace=NAME` (not connected until first use or `connect()`). */
export function createRedisTransport(url: string): RedisTransport {
  return new RedisTransport(url);
}

/** A Redis state store for `redis://host:port/db?namespace=NAME` (not connected until first use or `connect()`). */
export function createRedisStore(url: string): RedisStore {
  return new RedisStore(url);
}

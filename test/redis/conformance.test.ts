import { describe } from 'vitest';
import { RedisStore, RedisTransport } from '../../src/backends/redis/index.js';
import type { StateStore } from '../../src/state/store.js';
import type { Transport } from '../../src/bus/transport.js';
import { runStoreConformance } from '../conformance/store.js';
import { runTransportConformance } from '../conformance/transport.js';
import { serviceAvailable } from '../helpers/services.js';
import { cleanupNamespace, redisNamespace, redisUrl } from './helpers.js';

const up = await serviceAvailable('redis');

describe.runIf(up)('Redis backend conformance (real Redis)', () => {
  runTransportConformance('redis', {
    async setup() {
      // Each test its own namespace; every connect() a new transport with its own connections:
      // two connects are two "processes" sharing one server.
      const ns = redisNamespace('rct');
      const opened: Transport[] = [];
      return {
        connect: async () => {
          const transport = new RedisTransport(redisUrl(ns));
          opened.push(transport);
          await transport.connect();
          return transport;
        },
        teardown: async () => {
          await Promise.allSettled(opened.map((t) => t.close()));
          await cleanupNamespace(ns);
        },
      };
    },
  });

  // Every wait through the shared wait (one BLPOP over all the queues that found no line free):
  // what a process waiting on more queues than `blockingConnections` does for the extra ones.
  runTransportConformance('redis, one shared blocking connection', {
    async setup() {
      const ns = redisNamespace('rcw');
      const opened: Transport[] = [];
      return {
        connect: async () => {
          const transport = new RedisTransport(`${redisUrl(ns)}&blockingConnections=1`);
          opened.push(transport);
          await transport.connect();
          return transport;
        },
        teardown: async () => {
          await Promise.allSettled(opened.map((t) => t.close()));
          await cleanupNamespace(ns);
        },
      };
    },
  });

  runStoreConformance('redis', {
    async setup() {
      // Each test its own namespace; every connect() a new store with its own connections.
      const ns = redisNamespace('rcs');
      const opened: StateStore[] = [];
      return {
        connect: async () => {
          const store = new RedisStore(redisUrl(ns));
          opened.push(store);
          return store;
        },
        teardown: async () => {
          await Promise.all(opened.map((s) => s.close()));
          await cleanupNamespace(ns);
        },
      };
    },
  });
});

import { describe } from 'vitest';
import { RedisStore } from '../../src/backends/redis/index.js';
import type { StateStore } from '../../src/state/store.js';
import { runStoreConformance } from '../conformance/store.js';
import { serviceAvailable } from '../helpers/services.js';
import { cleanupNamespace, redisNamespace, redisUrl } from './helpers.js';

const up = await serviceAvailable('redis');

describe.runIf(up)('Redis backend conformance (real Redis)', () => {
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

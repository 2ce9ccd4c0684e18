import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SqliteStore } from '../src/backends/sqlite/index.js';
import { runStoreConformance } from './conformance/store.js';

runStoreConformance('sqlite', {
  async setup() {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'concord-sqlite-'));
    const filename = path.join(dir, 'state.db');
    return {
      // A new connection per call: several managers act like several processes on one file.
      connect: async () => new SqliteStore({ filename, pollIntervalMs: 20 }),
      teardown: async () => rm(dir, { recursive: true, force: true }),
    };
  },
});

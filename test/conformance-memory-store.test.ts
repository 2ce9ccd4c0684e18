import { MemoryStore } from '../src/backends/memory/store.js';
import { runStoreConformance } from './conformance/store.js';

runStoreConformance('memory', {
  async setup() {
    const store = new MemoryStore();
    return {
      // One instance is one space: every "process" of a test shares it.
      connect: async () => store,
      teardown: async () => store.close(),
    };
  },
});

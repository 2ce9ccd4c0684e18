import { MemoryTransport } from '../src/backends/memory/transport.js';
import { runTransportConformance } from './conformance/transport.js';
import { asyncOnly } from './helpers/async-transport.js';

// The memory transport answers synchronously; here every answer is a promise, as a networked
// transport's are, so the conformance suite also runs the bus's asynchronous path without Redis.
runTransportConformance('memory (async-only)', {
  async setup() {
    const inner = new MemoryTransport();
    const transport = asyncOnly(inner);
    return { connect: async () => transport, teardown: () => inner.close() };
  },
});

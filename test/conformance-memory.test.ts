import { MemoryTransport } from '../src/backends/memory/transport.js';
import { runTransportConformance } from './conformance/transport.js';

// Memory: one transport instance is the whole "backend"; every connect() returns it, so two
// buses on it behave like two processes on one server.
runTransportConformance('memory', {
  async setup() {
    const transport = new MemoryTransport();
    return { connect: async () => transport, teardown: () => transport.close() };
  },
});

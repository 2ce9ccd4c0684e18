// The bus hardening tests again, on async-only memory transports (see bus.async.test.ts).
import { useAsyncOnlyTransports } from './helpers/async-transport.js';

useAsyncOnlyTransports();
await import('./hardening.bus.test.js');

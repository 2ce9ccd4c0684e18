// The bus tests again, with every bus made from a URL or the default on an async-only memory
// transport (every transport answer a promise, as on a networked transport): the asynchronous path
// of each operation, tested without Redis.
import { useAsyncOnlyTransports } from './helpers/async-transport.js';

useAsyncOnlyTransports();
await import('./bus.test.js');

import type { Lease, LeaseOptions, LeaseWaiter, Transport } from '../../src/bus/transport.js';
import { resolveTransport } from '../../src/connect.js';
import { installTransportResolver } from '../../src/bus/resolve.js';

/**
 * `inner` seen through a networked transport's eyes: every method answers with a promise (a
 * synchronous throw becomes a rejection), so the bus's asynchronous path runs on the memory
 * transport, without Redis. `keep` names methods left as they are (the bus tests read `depth` synchronously in
 * `metrics()`, which on a networked transport reports figures refreshed in the background).
 */
export function asyncOnly(inner: Transport, keep: readonly string[] = []): Transport {
  const methods = new Map<PropertyKey, unknown>();
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (keep.includes(String(prop))) return (value as (...args: unknown[]) => unknown).bind(target);
      let wrapped = methods.get(prop);
      if (wrapped === undefined) {
        const fn = value as (...args: unknown[]) => unknown;
        const later = (args: unknown[]): Promise<unknown> => {
          try {
            return Promise.resolve(fn.apply(target, args));
          } catch (err) {
            return Promise.reject(err);
          }
        };
        // A lease given a waiter answers through it, as every networked transport's does.
        wrapped =
          prop === 'lease'
            ? (queue: string, options: LeaseOptions & { waiter?: LeaseWaiter }): Promise<unknown> | undefined => {
                const waiter = options.waiter;
                // Its fields, not a spread: the bus's options object is a class instance with getters.
                const { leaseMs, waitMs, max, signal, consumer } = options;
                const answer = later([queue, { leaseMs, waitMs, max, signal, consumer }]) as Promise<Lease[]>;
                if (waiter === undefined) return answer;
                answer.then(
                  (leases) => waiter.leased(leases),
                  (err: unknown) => waiter.failed(err),
                );
                return undefined;
              }
            : (...args: unknown[]): Promise<unknown> => later(args);
        methods.set(prop, wrapped);
      }
      return wrapped;
    },
  });
}

/**
 * Makes every bus made from a URL or the default in this test file (a vitest worker runs one file)
 * use an async-only transport. Call it before the tests are collected.
 */
export function useAsyncOnlyTransports(): void {
  installTransportResolver(async (url) => asyncOnly(await resolveTransport(url), ['depth']));
}

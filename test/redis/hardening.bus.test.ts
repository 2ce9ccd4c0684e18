/**
 * Issue 20 on a real Redis bus: a request made while Redis pauses writes (item 1, on a throwaway
 * redis-server: never the shared one) and close() with a handler that never settles (item 3).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { RequestTimeoutError } from '../../src/errors.js';
import { MessageType, type Message } from '../../src/message.js';
import { MessageBus } from '../../src/bus/index.js';
import { defineAgent } from '../../src/bus/agent.js';
import { serviceAvailable, waitFor } from '../helpers/services.js';
import { cleanupNamespace, rawClient, redisNamespace, redisUrl } from './helpers.js';
import { ThrowawayRedis } from './server.js';

const up = await serviceAvailable('redis');
const ns = redisNamespace('hardening-bus');
afterAll(async () => {
  if (up) await cleanupNamespace(ns);
});

describe.skipIf(!up)('hardening on Redis (issue 20)', () => {
  it('a handled request() made while Redis pauses writes rejects the caller with RequestTimeoutError and nothing else', {
    timeout: 20_000,
  }, async () => {
    const server = await ThrowawayRedis.start();
    const bus = new MessageBus({ transport: `${server.url}?namespace=pause` });
    const admin = rawClient('127.0.0.1', server.port);
    try {
      bus.registerAgent('puller'); // pull mode: nobody ever answers
      await bus.ready();
      await admin.connect();
      await admin.client('PAUSE', 300, 'WRITE');
      let caught: unknown;
      try {
        await bus.request({ sender: 'me', recipient: 'puller', payload: { n: 1 }, timeout: 100 });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(RequestTimeoutError);
      // Once the pause is over the enqueue lands: the request is queued, late, and nothing escapes.
      const late = await bus.receive('puller', { timeout: 5_000 });
      expect(late?.payload).toEqual({ n: 1 });
      await late?.ack();
      expect(bus.metrics().pendingRequests).toBe(0);
    } finally {
      await admin.client('UNPAUSE').catch(() => undefined);
      admin.disconnect();
      await bus.close({ drainTimeoutMs: 100 });
      await server.destroy();
    }
  });

  it('close() returns after drainTimeoutMs with a concurrency-1 handler that never settles; another bus gets the delivery after its lease', {
    timeout: 20_000,
  }, async () => {
    const url = redisUrl(ns);
    const a = new MessageBus({ transport: url, leaseMs: 500 });
    const b = new MessageBus({ transport: url });
    try {
      let started = 0;
      a.registerAgent(
        'stuck',
        defineAgent({
          name: 'stuck',
          handleMessage: () => {
            started++;
            return new Promise<never>(() => undefined); // never settles, ignores ctx.signal
          },
        }),
      );
      await a.ready();
      const sent = await a.send({ sender: 's', recipient: 'stuck', type: MessageType.TASK, payload: { n: 7 } });
      await waitFor(() => started === 1, 'the handler to start');
      let closed = false;
      const closing = a.close({ drainTimeoutMs: 100 }).then(() => (closed = true));
      await waitFor(() => closed, 'close() to return', 5_000);
      await closing;
      const again: Message[] = [];
      b.registerAgent('stuck', defineAgent({ name: 'stuck', handleMessage: (m: Message) => void again.push(m) }));
      await waitFor(() => again.length === 1, 'the abandoned delivery to come back after its lease', 10_000);
      expect(again[0]).toMatchObject({ id: sent.id, attempt: 2, payload: { n: 7 } });
    } finally {
      await a.close();
      await b.close({ drainTimeoutMs: 100 });
    }
  });
});

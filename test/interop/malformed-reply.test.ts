/**
 * A reply that does not decode, written into a waiting requester's inbox by a foreign client,
 * must reject that request at once with an error naming the problem: not a RequestTimeoutError
 * long after (issue 23). The reply is still dead-lettered `malformed`, with its raw bytes.
 *
 * The Redis inbox pump dead-letters the undecodable entry and hands the bus a lease marked
 * `malformed` (a stand-in keeping `inReplyTo`), and the bus rejects the waiting request with it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { MessageBus, MessageType, RemoteError, RequestTimeoutError, ValidationError } from '../../src/index.js';
import { createRedisTransport } from '../../src/backends/redis/index.js';
import { serviceAvailable, testNamespace, waitFor } from '../helpers/services.js';
import { cleanupNamespace, rawClient, redisUrl } from '../redis/helpers.js';

const up = await serviceAvailable('redis');

describe.runIf(up)('a malformed reply to a waiting request', () => {
  const ns = testNamespace('badreply');
  afterAll(async () => {
    await cleanupNamespace(ns);
  });

  it('rejects the request promptly with an error naming the problem, and keeps the reply as a dead letter', async () => {
    const bus = new MessageBus({ transport: createRedisTransport(redisUrl(ns)), requestTimeoutMs: 8000 });
    bus.registerAgent('foreign');
    await bus.ready();
    const raw = rawClient();
    await raw.connect();
    try {
      const started = Date.now();
      const pending = bus.request({ sender: 'ts', recipient: 'foreign', type: MessageType.TASK, payload: { q: 1 } });
      const outcome = pending.then(
        (m) => ({ ok: true as const, m }),
        (err: unknown) => ({ ok: false as const, err }),
      );
      // The foreign agent takes the request and answers it with a reply the decoder refuses: a
      // payload key named `constructor` (the schema refused it too, but a client skipped it).
      const [, entries] = (await waitFor(async () => {
        const r = (await raw.call('FCALL', 'concord_v1_lease', 1, `concord:{${ns}}:protocol`, 'foreign', 1, 5000)) as [number, unknown[][]];
        return r[1].length > 0 ? r : undefined;
      }, 'the request leased')) as [number, [string, string, number, string][]];
      const request = JSON.parse(entries[0]![1]) as { id: string; correlationId: string; headers: Record<string, string> };
      const reply = JSON.stringify({
        id: '01JBADREPLY000000000000000',
        type: 'result',
        sender: 'foreign',
        recipient: 'ts',
        payload: { constructor: 'oops' },
        timestamp: new Date().toISOString(),
        priority: 5,
        correlationId: request.correlationId,
        headers: { inReplyTo: request.id },
        attempt: 0,
      });
      await raw.rpush(`concord:{${ns}}:q:${request.headers['replyTo']}:list`, reply);

      const result = await outcome;
      const elapsed = Date.now() - started;
      expect(result.ok, 'the request must not resolve').toBe(false);
      const err = (result as { err: unknown }).err;
      expect(err, `got ${String(err)} after ${elapsed} ms`).not.toBeInstanceOf(RequestTimeoutError);
      expect(err instanceof ValidationError || err instanceof RemoteError).toBe(true);
      expect((err as Error).message).toContain(request.id);
      expect((err as Error).message).toMatch(/constructor/);
      expect(elapsed).toBeLessThan(4000);
      // Nothing accepted is lost: the reply's bytes are kept as a malformed dead letter.
      const letters = await bus.getDeadLetters();
      const letter = letters.find((l) => l.reason === 'malformed');
      expect(letter?.raw).toBe(reply);
    } finally {
      raw.disconnect();
      await bus.close();
    }
  });
});

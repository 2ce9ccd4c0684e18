/**
 * The published concord_v1 functions (src/backends/redis/functions/concord_v1.lua) and the
 * protocol version of a namespace: what a foreign client relies on, checked against the
 * TypeScript transport that shares the same keys.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { MessageBus, MessageType, TransportError, defineAgent, type Message } from '../../src/index.js';
import { createRedisTransport } from '../../src/backends/redis/index.js';
import { FUNCTION_CODE, PROTOCOL_MAJOR, libraryRevision } from '../../src/backends/redis/functions.js';
import { encodeMessage, createMessage } from '../../src/message.js';
import { serviceAvailable, testNamespace, waitFor } from '../helpers/services.js';
import { cleanupNamespace, rawClient, redisUrl } from '../redis/helpers.js';

const up = await serviceAvailable('redis');

describe.runIf(up)('the concord_v1 function library and the protocol version', () => {
  const namespaces: string[] = [];
  let raw: Redis;
  const ns = () => {
    const n = testNamespace('fn');
    namespaces.push(n);
    return n;
  };
  const fcall = (n: string, fn: string, ...args: (string | number)[]) => raw.call('FCALL', fn, 1, `concord:{${n}}:protocol`, ...args);
  const wire = (recipient: string, payload: Record<string, unknown> = { n: 1 }, extra: Partial<Message> = {}) =>
    encodeMessage({ ...createMessage({ sender: 'foreign', recipient, type: MessageType.TASK, payload }), ...extra });

  beforeAll(async () => {
    raw = rawClient();
    await raw.connect();
  });
  afterAll(async () => {
    raw.disconnect();
    for (const n of namespaces) await cleanupNamespace(n);
  });

  it('a transport records protocol 1 in its namespace and installs the library foreign clients call', async () => {
    const n = ns();
    const bus = new MessageBus({ transport: createRedisTransport(redisUrl(n)) });
    await bus.ready();
    expect(await raw.get(`concord:{${n}}:protocol`)).toBe(String(PROTOCOL_MAJOR));
    expect(await fcall(n, 'concord_v1_protocol')).toEqual([1, libraryRevision(FUNCTION_CODE)]);
    const listed = (await raw.call('FUNCTION', 'LIST', 'LIBRARYNAME', 'concord_v1', 'WITHCODE')) as unknown[][];
    const lib = listed.find((l) => l[l.indexOf('library_name') + 1] === 'concord_v1')!;
    expect(libraryRevision(String(lib[lib.indexOf('library_code') + 1]))).toBeGreaterThanOrEqual(libraryRevision(FUNCTION_CODE));
    await bus.close();
  });

  it('a namespace of another major is refused, by the transport on connect and by every function', async () => {
    const n = ns();
    await raw.set(`concord:{${n}}:protocol`, '2');
    const transport = createRedisTransport(redisUrl(n));
    const err = await transport.connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect((err as Error).message).toMatch(/speaks Concord wire protocol "2".*this Concord speaks protocol 1/);
    await transport.close();
    await expect(fcall(n, 'concord_v1_enqueue', 'agent', wire('agent'), 0, 0, 0)).rejects.toThrow(
      /CONCORD_PROTOCOL .*speaks Concord wire protocol 2/,
    );
    await expect(fcall(n, 'concord_v1_lease', 'agent', 1, 1000)).rejects.toThrow(/CONCORD_PROTOCOL/);
    // Nothing was written next to the protocol key.
    expect(await raw.keys(`concord:{${n}}:*`)).toEqual([`concord:{${n}}:protocol`]);
  });

  it('a foreign enqueue reaches a TypeScript agent, in priority order, with its delay and dedupe', async () => {
    const n = ns();
    const bus = new MessageBus({ transport: createRedisTransport(redisUrl(n)) });
    const got: Message[] = [];
    const gotAt = new Map<unknown, number>();
    await fcall(n, 'concord_v1_register', 'ts-agent');
    const low = wire('ts-agent', { p: 1 }, { priority: 1 });
    const high = wire('ts-agent', { p: 9 }, { priority: 9 });
    expect(await fcall(n, 'concord_v1_enqueue', 'ts-agent', low, 0, 0, 1)).toEqual(['enqueued']);
    expect(await fcall(n, 'concord_v1_enqueue', 'ts-agent', high, 0, 0, 1)).toEqual(['enqueued']);
    const delayedAt = Date.now();
    expect(await fcall(n, 'concord_v1_enqueue', 'ts-agent', wire('ts-agent', { p: 'later' }), 300, 0, 1)).toEqual(['enqueued']);
    const dup = wire('ts-agent', { p: 'once' }, { id: 'same-id' });
    expect(await fcall(n, 'concord_v1_enqueue', 'ts-agent', dup, 0, 60_000, 1)).toEqual(['enqueued']);
    expect(await fcall(n, 'concord_v1_enqueue', 'ts-agent', wire('ts-agent', { p: 'twice' }, { id: 'same-id' }), 0, 60_000, 1)).toEqual([
      'duplicate',
      dup,
    ]);
    expect(await fcall(n, 'concord_v1_enqueue', 'nobody', wire('nobody'), 0, 0, 1)).toEqual(['no_recipient']);
    bus.registerAgent(
      'ts-agent',
      defineAgent({
        name: 'ts-agent',
        handleMessage: (m: Message) => {
          got.push(m);
          gotAt.set(m.payload['p'], Date.now());
        },
      }),
    );
    await waitFor(() => got.length === 4, 'four deliveries', 5000);
    // Priority 9, 5 (the default), 1; the delayed one whenever it became visible, not before.
    expect(got.map((m) => m.payload['p']).filter((p) => p !== 'later')).toEqual([9, 'once', 1]);
    expect(gotAt.get('later')! - delayedAt).toBeGreaterThanOrEqual(300 - 5);
    expect(got.every((m) => m.attempt === 1)).toBe(true);
    await bus.close();
  });

  it('a TypeScript send is leased, nacked (attempt 2), extended and acked by a foreign client', async () => {
    const n = ns();
    const transport = createRedisTransport(redisUrl(n));
    const bus = new MessageBus({ transport });
    bus.registerAgent('foreign');
    await bus.ready();
    const sent = await bus.send({ sender: 'ts', recipient: 'foreign', type: MessageType.TASK, payload: { job: 1 } });
    const [, first] = (await fcall(n, 'concord_v1_lease', 'foreign', 10, 5000)) as [number, [string, string, number, string][]];
    expect(first).toHaveLength(1);
    const [id, body, attempt, token] = first[0]!;
    expect(id).toBe(sent.id);
    expect(JSON.parse(body)).toMatchObject({ id: sent.id, payload: { job: 1 } });
    expect(attempt).toBe(1);
    expect(await fcall(n, 'concord_v1_nack', 'foreign', id, token, 0)).toBe(1);
    expect(await fcall(n, 'concord_v1_ack', 'foreign', id, token)).toBe(0); // that lease is over
    const [, second] = (await fcall(n, 'concord_v1_lease', 'foreign', 10, 5000)) as [number, [string, string, number, string][]];
    expect(second[0]![2]).toBe(2);
    const extended = String(await fcall(n, 'concord_v1_extend', 'foreign', id, second[0]![3], 60_000));
    expect(extended).not.toBe(second[0]![3]);
    expect(await fcall(n, 'concord_v1_ack', 'foreign', id, second[0]![3])).toBe(0); // the old token stopped working
    expect(await fcall(n, 'concord_v1_ack', 'foreign', id, extended)).toBe(1);
    expect(await transport.depth('foreign')).toEqual({ ready: 0, delayed: 0, inFlight: 0 });
    await bus.close();
  });

  it('a foreign dead letter is listed by the TypeScript bus; a foreign reply resolves a TypeScript request', async () => {
    const n = ns();
    const bus = new MessageBus({ transport: createRedisTransport(redisUrl(n)), requestTimeoutMs: 5000 });
    bus.registerAgent('foreign');
    await bus.ready();
    const pending = bus.request({ sender: 'ts', recipient: 'foreign', payload: { q: 1 } });
    const leased = (await waitFor(async () => {
      const [, entries] = (await fcall(n, 'concord_v1_lease', 'foreign', 1, 5000)) as [number, [string, string, number, string][]];
      return entries[0];
    }, 'the request leased')) as [string, string, number, string];
    const request = JSON.parse(leased[1]) as { id: string; headers: Record<string, string>; correlationId: string };
    const reply = encodeMessage({
      ...createMessage({
        sender: 'foreign',
        recipient: 'ts',
        type: MessageType.RESULT,
        payload: { a: 42 },
        correlationId: request.correlationId,
        headers: { inReplyTo: request.id },
      }),
    });
    expect(await fcall(n, 'concord_v1_reply', request.headers['replyTo']!, reply, 0, 'foreign', leased[0], leased[3])).toEqual([
      'enqueued',
      1,
    ]);
    expect((await pending).payload).toEqual({ a: 42 });

    const doomed = await bus.send({ sender: 'ts', recipient: 'foreign', type: MessageType.TASK, payload: { bad: 1 } });
    const [, entries] = (await fcall(n, 'concord_v1_lease', 'foreign', 1, 5000)) as [number, [string, string, number, string][]];
    const [id, body, attempt, token] = entries[0]!;
    expect(id).toBe(doomed.id);
    expect(await fcall(n, 'concord_v1_dead_letter', 'foreign', id, token, 'max_attempts', 'gave up', attempt, body, '')).toBe(1);
    const letters = await bus.getDeadLetters();
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ queue: 'foreign', reason: 'max_attempts', error: 'gave up', attempts: 1 });
    expect(letters[0]!.message.id).toBe(doomed.id);
    await expect(fcall(n, 'concord_v1_dead_letter', 'foreign', id, '', 'bored', '', 1, body, '')).rejects.toThrow(
      /CONCORD_USAGE reason must be one of/,
    );
    await bus.close();
  });
});

/**
 * Issue 20, the wire items: one size rule for send() and every decoder; the decoder holds a
 * payload to send()'s rules (depth, finite numbers), so poison is dead-lettered `malformed` at
 * once; dead-lettering never throws; redrive never delivers a stand-in's empty payload.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import {
  DEFAULT_MAX_WIRE_BYTES,
  MAX_SEND_WIRE_BYTES,
  MessageType,
  createMessage,
  decodeMessage,
  encodeMessage,
  type Message,
} from '../src/message.js';
import { MessageBus } from '../src/bus/index.js';
import { defineAgent } from '../src/bus/agent.js';
import { RedisTransport } from '../src/backends/redis/index.js';
import { serviceAvailable, waitFor } from './helpers/services.js';
import { cleanupNamespace, rawClient, redisNamespace, redisUrl } from './redis/helpers.js';

const MiB = 1024 * 1024;

async function refusal(promise: Promise<unknown>): Promise<ValidationError> {
  const outcome = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(outcome).toBeInstanceOf(ValidationError);
  return outcome as ValidationError;
}

describe('one size rule for send() and the decoder', () => {
  const bus = new MessageBus({ maxPayloadBytes: 4 * MiB });
  bus.registerAgent('sink');
  afterAll(() => bus.close());
  const send = (over: Record<string, unknown>) =>
    bus.send({ sender: 's', recipient: 'sink', type: MessageType.TASK, payload: {}, ...over });

  it('refuses a 2 MiB payload even with maxPayloadBytes: 4 MiB, naming the wire limit', async () => {
    const err = await refusal(send({ payload: { text: 'x'.repeat(2 * MiB) } }));
    expect(err.message).toContain(`message must be at most ${MAX_SEND_WIRE_BYTES} bytes in its wire form`);
    expect(err.message).toContain('maxPayloadBytes does not raise');
  });

  it('refuses a 2 MB header value', async () => {
    const err = await refusal(send({ headers: { big: 'h'.repeat(2_000_000) } }));
    expect(err.message).toContain(`at most ${MAX_SEND_WIRE_BYTES} bytes`);
  });

  it('refuses 5,000 long header keys', async () => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < 5_000; i++) headers[`${i}-${'k'.repeat(250)}`.slice(0, 256)] = 'v';
    const err = await refusal(send({ headers }));
    expect(err.message).toContain(`at most ${MAX_SEND_WIRE_BYTES} bytes`);
  });

  it('refuses a header key over the 256 name limit, and one with NUL', async () => {
    expect((await refusal(send({ headers: { ['k'.repeat(257)]: 'v' } }))).message).toMatch(/must be at most 256 characters, got 257/);
    expect((await refusal(send({ headers: { 'a\u0000b': 'v' } }))).message).toMatch(/control characters/);
    expect((await refusal(send({ headers: { constructor: 'v' } }))).message).toMatch(/forbidden key `constructor`/);
  });

  it('refuses at send() what the decoder would refuse: NUL or a lone surrogate in a name, a forbidden payload key', async () => {
    expect((await refusal(send({ sender: 'a\u0000' }))).field).toBe('sender');
    expect((await refusal(send({ sender: 'cut \ud83d' }))).message).toMatch(/sender must be well-formed Unicode, got a lone surrogate/);
    expect((await refusal(send({ payload: { nested: { constructor: 1 } } }))).message).toMatch(
      /payload.nested has the forbidden key `constructor`/,
    );
  });

  it('accepts a message just under the limit, and every consumer decodes it, attempt count included', async () => {
    const probe = createMessage({ sender: 's', recipient: 'sink', type: MessageType.TASK, payload: { text: '' } });
    const room = MAX_SEND_WIRE_BYTES - Buffer.byteLength(encodeMessage(probe));
    const m = createMessage(
      { sender: 's', recipient: 'sink', type: MessageType.TASK, payload: { text: 'é'.repeat(Math.floor(room / 2)) } },
      4 * MiB,
    );
    const wire = encodeMessage({ ...m, attempt: 123_456_789 });
    expect(Buffer.byteLength(wire)).toBeLessThanOrEqual(DEFAULT_MAX_WIRE_BYTES);
    expect(decodeMessage(wire).payload).toEqual(m.payload);
    // One more character is over.
    expect(() =>
      createMessage(
        { sender: 's', recipient: 'sink', type: MessageType.TASK, payload: { text: 'é'.repeat(Math.floor(room / 2) + 1) } },
        4 * MiB,
      ),
    ).toThrow(ValidationError);
  });

  it('measures the decoder limit in UTF-8 bytes, not UTF-16 units', () => {
    const m = createMessage({ sender: 's', recipient: 'r', type: MessageType.TASK, payload: { t: '' } });
    const base = encodeMessage(m).length;
    const wire = encodeMessage({ ...m, payload: { t: 'é'.repeat(DEFAULT_MAX_WIRE_BYTES - base) } });
    expect(wire.length).toBeLessThanOrEqual(DEFAULT_MAX_WIRE_BYTES);
    expect(() => decodeMessage(wire)).toThrow(
      `wire message must be at most ${DEFAULT_MAX_WIRE_BYTES} bytes, got ${Buffer.byteLength(wire)}`,
    );
  });

  it("says priority: '5' is the string '5'", async () => {
    const err = await refusal(send({ priority: '5' }));
    expect(err.message).toBe("priority must be an integer 0..10, got the string `'5'`");
    expect((await refusal(send({ priority: 11 }))).message).toBe('priority must be an integer 0..10, got `11`');
  });
});

describe('the decoder holds a payload to send()’s rules', () => {
  const m = createMessage({ sender: 's', recipient: 'r', type: MessageType.TASK, payload: { ok: true } });
  const withPayload = (payloadText: string) => encodeMessage(m).replace('{"ok":true}', payloadText);

  it('refuses a payload nested 100,000 deep with ValidationError, as send() refuses 257', () => {
    expect(() => decodeMessage(withPayload('['.repeat(100_000) + ']'.repeat(100_000)), 10_000_000)).toThrow(
      /payload(\[0\])+ is nested deeper than 256 levels/,
    );
    expect(() => decodeMessage(withPayload('['.repeat(257) + ']'.repeat(257)))).toThrow(ValidationError);
    expect(decodeMessage(withPayload('['.repeat(256) + ']'.repeat(256))).payload).toHaveLength(1);
    let deep: unknown = [];
    for (let i = 0; i < 256; i++) deep = [deep];
    expect(() => createMessage({ sender: 's', recipient: 'r', type: MessageType.TASK, payload: deep as unknown[] })).toThrow(
      /nested deeper than 256/,
    );
  });

  it('refuses 1e400 (Infinity once parsed), impossible dates and headers: null', () => {
    expect(() => decodeMessage(withPayload('{"n":1e400}'))).toThrow(/payload.n must be a finite number, got Infinity/);
    const wire = JSON.parse(encodeMessage(m)) as Record<string, unknown>;
    for (const timestamp of ['2024-02-31T00:00:00Z', '2025-01-31T24:00:00Z', '2023-02-29T12:00:00Z']) {
      expect(() => decodeMessage(JSON.stringify({ ...wire, timestamp }))).toThrow(/timestamp must be an ISO-8601 date-time/);
    }
    expect(() => decodeMessage(JSON.stringify({ ...wire, headers: null }))).toThrow(/headers must be an object of strings, got `null`/);
    expect(() => decodeMessage(JSON.stringify({ ...wire, sender: 'a\u0000' }))).toThrow(/sender must not contain control characters/);
    expect(() => decodeMessage(JSON.stringify({ ...wire, recipient: '\udc00' }))).toThrow(/recipient must be well-formed Unicode/);
    expect(() => decodeMessage(JSON.stringify({ ...wire, headers: { ['k'.repeat(100_000)]: 'v' } }))).toThrow(
      /must be at most 256 characters, got 100000/,
    );
  });
});

const redisUp = await serviceAvailable('redis');

describe.runIf(redisUp)('poison on a Redis queue (real Redis)', () => {
  const ns = redisNamespace('hw');
  const buses: MessageBus[] = [];
  afterAll(async () => {
    await Promise.allSettled(buses.map((b) => b.close({ drainTimeoutMs: 500 })));
    await cleanupNamespace(ns);
  });
  function newBus(options: Record<string, unknown> = {}): MessageBus {
    const bus = new MessageBus({
      transport: new RedisTransport(redisUrl(ns)),
      leaseMs: 500,
      backoff: { initialMs: 5, factor: 2, maxMs: 20, jitter: 0 },
      ...options,
    });
    buses.push(bus);
    return bus;
  }

  async function injectBody(queue: string, id: string, body: string): Promise<void> {
    const raw = rawClient();
    await raw.connect();
    try {
      const base = `concord:{${ns}}:q:${queue}:`;
      await raw.hset(base + 'body', id, body);
      await raw.zadd(base + 'ready', 1, id);
      await raw.lpush(base + 'signal', '1');
    } finally {
      raw.disconnect();
    }
  }

  it('dead-letters a payload nested 100,000 deep as malformed at once, keeping its raw bytes; redrive refuses it and keeps it', async () => {
    const bus = newBus();
    const handled: string[] = [];
    bus.registerAgent('deep', defineAgent({ name: 'deep', handleMessage: (m) => void handled.push(m.id) }));
    await bus.ready();
    const m = createMessage({ id: 'poison-1', sender: 'foreign', recipient: 'deep', type: MessageType.TASK, payload: { x: 1 } });
    const body = encodeMessage(m).replace('{"x":1}', '['.repeat(100_000) + ']'.repeat(100_000));
    await injectBody('deep', m.id, body);
    await waitFor(async () => (await bus.getDeadLetters()).some((l) => l.message.id === m.id), 'the poison dead-lettered', 10_000);
    const [letter] = (await bus.getDeadLetters()).filter((l) => l.message.id === m.id);
    expect(letter).toMatchObject({ reason: 'malformed', attempts: 1, queue: 'deep' });
    expect(letter!.error).toMatch(/nested deeper than 256/);
    expect(letter!.raw).toBe(body);
    expect(handled).toEqual([]);
    await expect(bus.redrive(m.id)).rejects.toThrow(/cannot be redriven: its raw bytes are not a message/);
    expect((await bus.getDeadLetters()).filter((l) => l.message.id === m.id)).toHaveLength(1);
    await bus.purgeDeadLetters();
  });

  it('dead-letters a message whose handler made it unencodable, keeping the stored bytes; redrive puts them back', async () => {
    const bus = newBus({ maxAttempts: 1 });
    const seen: Message[] = [];
    let corrupt = true;
    bus.registerAgent(
      'corrupting',
      defineAgent({
        name: 'corrupting',
        handleMessage(m) {
          seen.push(structuredClone(m));
          if (!corrupt) return;
          // Shared data a handler should not touch: now the message cannot be written as JSON.
          (m.payload as Record<string, unknown>)['big'] = 10n;
          throw new Error('failed after corrupting its message');
        },
      }),
    );
    await bus.ready();
    const sent = await bus.send({ sender: 's', recipient: 'corrupting', type: MessageType.TASK, payload: { keep: 'this' } });
    await waitFor(async () => (await bus.getDeadLetters()).some((l) => l.message.id === sent.id), 'the dead letter', 10_000);
    const [letter] = (await bus.getDeadLetters()).filter((l) => l.message.id === sent.id);
    expect(letter).toMatchObject({ reason: 'max_attempts' });
    expect(letter!.error).toMatch(/failed after corrupting its message; the message could not be encoded/);
    expect(decodeMessage(letter!.raw).payload).toEqual({ keep: 'this' });
    corrupt = false;
    expect((await bus.redrive(sent.id))?.payload).toEqual({ keep: 'this' });
    await waitFor(() => seen.length === 2, 'the redriven delivery');
    expect(seen[1]?.payload).toEqual({ keep: 'this' });
    expect((await bus.getDeadLetters()).filter((l) => l.message.id === sent.id)).toEqual([]);
  });
});

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { ValidationError } from '../src/errors.js';
import { MessageType, createMessage, decodeMessage, encodeMessage, type Message } from '../src/message.js';
import { MessageBus } from '../src/bus/index.js';
import { defineAgent } from '../src/bus/agent.js';
import { waitFor } from './helpers/services.js';

const schema = JSON.parse(readFileSync(new URL('../schema/message.schema.json', import.meta.url), 'utf8')) as object;
// ajv's CJS default export under NodeNext: the class may sit on `.default`.
const AjvClass = ((Ajv2020 as unknown as { default?: unknown }).default ?? Ajv2020) as typeof Ajv2020.default;
const addFormatsFn = ((addFormats as unknown as { default?: unknown }).default ?? addFormats) as typeof addFormats.default;
const ajv = new AjvClass({ strict: true, allErrors: true });
addFormatsFn(ajv);
const validateWire = ajv.compile(schema);

function expectSchemaValid(wire: string): void {
  const ok = validateWire(JSON.parse(wire));
  expect(validateWire.errors ?? [], wire).toEqual([]);
  expect(ok).toBe(true);
}

function expectRefused(raw: unknown, message?: string | RegExp): void {
  let caught: unknown;
  try {
    decodeMessage(raw);
  } catch (err) {
    caught = err;
  }
  expect(caught, `decoding ${String(raw).slice(0, 80)} should fail`).toBeInstanceOf(ValidationError);
  if (message !== undefined) expect((caught as Error).message).toMatch(message);
}

const sample = (): Message =>
  createMessage({
    sender: 'planner',
    recipient: 'writer',
    type: MessageType.TASK,
    payload: { topic: 'llamas', words: 250, tags: ['a', 'b'], nested: { ok: true, none: null } },
    priority: 7,
    correlationId: 'conv-1',
    headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
    ttlMs: 60_000,
  });

describe('wire codec', () => {
  it('round-trips a message, timestamp included', () => {
    const m = sample();
    const back = decodeMessage(encodeMessage(m));
    expect(back).toEqual(m);
    expect(back.timestamp).toBeInstanceOf(Date);
  });

  it('writes the timestamp as ISO-8601 UTC and omits absent optional fields', () => {
    const m = createMessage({ sender: 's', recipient: '', type: MessageType.STATUS, payload: [] });
    const wire = JSON.parse(encodeMessage(m)) as Record<string, unknown>;
    expect(wire['timestamp']).toBe(m.timestamp.toISOString());
    expect(wire).not.toHaveProperty('correlationId');
    expect(wire).not.toHaveProperty('ttlMs');
  });

  it('encodes messages the JSON Schema accepts, for every type and option', () => {
    for (const type of Object.values(MessageType)) {
      expectSchemaValid(encodeMessage(createMessage({ sender: 'a', recipient: 'b', type, payload: { n: 1 } })));
    }
    expectSchemaValid(encodeMessage(sample()));
    expectSchemaValid(encodeMessage({ ...sample(), attempt: 3 }));
  });

  it('encodes real bus traffic (tasks, results, errors, publications) that the schema accepts', async () => {
    const bus = new MessageBus({ maxAttempts: 1 });
    const seen: Message[] = [];
    bus.subscribe('*', (m) => void seen.push(m));
    bus.registerAgent('echo', defineAgent({ name: 'echo', handleMessage: (m) => ({ echoed: m.payload }) }));
    bus.registerAgent('fails', defineAgent({ name: 'fails', handleMessage: () => Promise.reject(new Error('nope')) }));
    await bus.request({ sender: 'me', recipient: 'echo', payload: { x: 1 } });
    await expect(bus.request({ sender: 'me', recipient: 'fails', payload: {} })).rejects.toThrow('nope');
    await bus.publish({ type: MessageType.STATUS, sender: 'me', topic: 'progress', payload: { done: 0.5 } });
    await waitFor(() => seen.length >= 5, 'five observed messages');
    for (const m of seen) expectSchemaValid(encodeMessage(m));
    expect(new Set(seen.map((m) => m.type))).toEqual(new Set(['task', 'result', 'error', 'status']));
    await bus.close();
  });

  it('refuses the schema-invalid shapes the decoder refuses', () => {
    const good = JSON.parse(encodeMessage(sample())) as Record<string, unknown>;
    for (const patch of [{ priority: 11 }, { type: 'gossip' }, { attempt: -1 }, { sender: '' }, { timestamp: 'yesterday' }, { extra: 1 }]) {
      const bad = { ...good, ...patch };
      expect(validateWire(bad)).toBe(false);
      expectRefused(JSON.stringify(bad));
    }
  });
});

describe('decodeMessage refuses malformed or hostile input with ValidationError only', () => {
  const good = JSON.parse(encodeMessage(sample())) as Record<string, unknown>;
  const withField = (patch: Record<string, unknown>): string => JSON.stringify({ ...good, ...patch });

  it.each([
    ['not a string', 42, /must be a string/],
    ['a Buffer', Buffer.from('{}'), /must be a string/],
    ['not JSON', '{"id":', /not valid JSON/],
    ['a JSON array', '[]', /must be a JSON object, got an array/],
    ['JSON null', 'null', /must be a JSON object/],
    ['a wrong id type', withField({ id: 7 }), /id must be a string, got `7`/],
    ['a wrong payload type', withField({ payload: 'text' }), /payload must be a JSON object or array/],
    ['a non-integer priority', withField({ priority: 4.5 }), /priority must be an integer 0..10, got `4.5`/],
    ['a huge priority', '{"priority":1e400}', /priority|unknown|id/],
    ['a date that is no date', withField({ timestamp: '2025-13-45T99:99:99Z' }), /timestamp must be an ISO-8601 date-time/],
    ['a numeric timestamp', withField({ timestamp: Date.now() }), /timestamp must be an ISO-8601/],
    ['headers with a number', withField({ headers: { a: 1 } }), /headers.a must be a string/],
    ['headers as an array', withField({ headers: ['x'] }), /headers must be an object/],
    ['an unknown field', withField({ admin: true }), /unknown field `admin`/],
    ['a negative ttl', withField({ ttlMs: -5 }), /ttlMs must be a positive number/],
    ['an overlong sender', withField({ sender: 's'.repeat(10_000) }), /sender must be at most 256 characters/],
  ])('%s', (_what, raw, message) => expectRefused(raw, message));

  it('refuses __proto__, constructor and prototype keys at any depth', () => {
    const raw = encodeMessage(sample());
    expectRefused(raw.replace('"topic":', '"__proto__":'), /forbidden key `__proto__`/);
    expectRefused(raw.replace('"ok":', '"constructor":'), /forbidden key `constructor`/);
    expectRefused(raw.replace('"headers":{', '"headers":{"prototype":"x",'), /forbidden key `prototype`/);
    expectRefused('{"__proto__":{"polluted":true}}', /forbidden key/);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('refuses a forbidden key however it is spelled with \\u escapes (the fast path must not miss one)', () => {
    const raw = encodeMessage(sample());
    const escaped = (key: string, mask: boolean[]) =>
      [...key].map((c, i) => (mask[i % mask.length] ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c)).join('');
    fc.assert(
      fc.property(
        fc.constantFrom('__proto__', 'constructor', 'prototype'),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 12 }),
        (key, mask) => {
          const wire = raw.replace('"topic":', `"${escaped(key, mask)}":`);
          expect(() => decodeMessage(wire)).toThrow(`forbidden key \`${key}\``);
        },
      ),
    );
  });

  it('refuses oversized input before parsing it', () => {
    expectRefused(' '.repeat(2_000_000), /wire message must be at most \d+ bytes, got 2000000/);
    const big = encodeMessage({ ...sample(), payload: { text: 'x'.repeat(2_000) } });
    expect(() => decodeMessage(big)).not.toThrow();
    expect(() => decodeMessage(big, 1000)).toThrow(ValidationError);
    expect(() => decodeMessage(big, 1000)).toThrow(/must be at most 1000 bytes/);
  });

  it('refuses absurdly deep nesting without a stack overflow escaping', () => {
    const depth = 200_000;
    const { payload: _payload, ...rest } = good;
    const raw = JSON.stringify(rest).replace(/^\{/, `{"payload":${'['.repeat(depth)}${']'.repeat(depth)},`);
    expect(raw.length).toBeGreaterThan(2 * depth);
    let caught: unknown;
    try {
      decodeMessage(raw, 10_000_000);
    } catch (err) {
      caught = err;
    }
    // Refused as ValidationError or accepted as a message; never a RangeError or anything else.
    if (caught !== undefined) expect(caught).toBeInstanceOf(ValidationError);
  });

  it('fuzz: arbitrary strings never throw anything but ValidationError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (raw) => {
        try {
          decodeMessage(raw);
        } catch (err) {
          return err instanceof ValidationError;
        }
        return true;
      }),
      { numRuns: 2_000 },
    );
  });

  it('fuzz: arbitrary JSON objects are refused with ValidationError or decoded into schema-valid messages', () => {
    const field = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.constantFrom('task', 'result', 'status', 'x', '', '2025-01-01T00:00:00.000Z', 5, 0, 11, -1, 2.5),
    );
    const keys = fc.constantFrom(
      'id',
      'type',
      'sender',
      'recipient',
      'payload',
      'timestamp',
      'priority',
      'correlationId',
      'headers',
      'attempt',
      'ttlMs',
      '__proto__',
      'constructor',
      'other',
    );
    const good = JSON.parse(encodeMessage(sample())) as Record<string, unknown>;
    fc.assert(
      fc.property(fc.dictionary(keys, field, { maxKeys: 4 }), fc.boolean(), (patch, fromGood) => {
        const raw = JSON.stringify(fromGood ? { ...good, ...patch } : patch);
        let decoded: Message;
        try {
          decoded = decodeMessage(raw);
        } catch (err) {
          return err instanceof ValidationError;
        }
        const ok = validateWire(JSON.parse(encodeMessage(decoded)));
        return ok === true;
      }),
      { numRuns: 3_000 },
    );
  });
});

/**
 * Fuzz of the wire decoder (bounded for CI: each property stops after a few seconds). The only
 * outcomes allowed for any text are a ValidationError, or a message that re-encodes to a wire
 * form that decodes to the same message (and that the JSON Schema accepts); the schema must reach
 * the decoder's verdict on the text too (what the corpus holds, tried at random).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ValidationError } from '../src/errors.js';
import { MessageType, createMessage, decodeMessage, encodeMessage, isValidName, type Message, type MessageInput } from '../src/message.js';
import { schemaAccepts } from './corpus/corpus.js';

/** Per property: stop drawing after this long (what was drawn by then still counts). */
const TIME_LIMIT_MS = 1_500;
const settings = { numRuns: 5_000, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: false };

/** Checks the allowed outcomes for `text`; returns the decoded message, if any. */
function judge(text: string): Message | undefined {
  let decoded: Message;
  try {
    decoded = decodeMessage(text);
  } catch (err) {
    if (!(err instanceof ValidationError)) throw new Error(`decodeMessage threw ${String(err)} for ${JSON.stringify(text.slice(0, 200))}`);
    expect(schemaAccepts(text), `the schema accepts what the decoder refused (${err.message}): ${text.slice(0, 300)}`).toBe(false);
    return undefined;
  }
  expect(schemaAccepts(text), `the schema refuses what the decoder accepted: ${text.slice(0, 300)}`).toBe(true);
  const wire = encodeMessage(decoded);
  const again = decodeMessage(wire);
  expect(encodeMessage(again)).toBe(wire);
  expect(again.timestamp.getTime()).toBe(decoded.timestamp.getTime());
  expect(schemaAccepts(wire)).toBe(true);
  return decoded;
}

const name = fc.string({ minLength: 1, maxLength: 12, unit: 'binary' }).filter((s) => isValidName(s));
const key = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'a'));
const payload = fc.oneof(
  fc.dictionary(key, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 }),
  fc.array(fc.jsonValue({ maxDepth: 3 }), { maxLength: 5 }),
);
const input: fc.Arbitrary<MessageInput> = fc.record(
  {
    sender: name,
    recipient: fc.oneof(fc.constant(''), name),
    type: fc.constantFrom(...Object.values(MessageType)),
    payload: payload as fc.Arbitrary<Record<string, unknown>>,
    priority: fc.integer({ min: 0, max: 10 }),
    correlationId: name,
    headers: fc.dictionary(name, fc.string({ maxLength: 20, unit: 'binary' }), { maxKeys: 3 }),
    ttlMs: fc.oneof(fc.integer({ min: 1, max: 1e9 }), fc.double({ min: 0.001, max: 1e12, noNaN: true })),
  },
  { requiredKeys: ['sender', 'recipient', 'type', 'payload'] },
);
/** Valid messages: inputs send() accepts (some drawn inputs hold a forbidden key; those are dropped). */
const message: fc.Arbitrary<Message> = input
  .map((i) => {
    try {
      return createMessage(i);
    } catch (err) {
      if (err instanceof ValidationError) return null;
      throw err;
    }
  })
  .filter((m): m is Message => m !== null)
  .chain((m) => fc.integer({ min: 0, max: 1_000 }).map((attempt) => ({ ...m, attempt })));

/** Text that tends to break decoders. */
const token = fc.constantFrom(
  '{',
  '}',
  '[',
  ']',
  '"',
  ',',
  ':',
  '\\',
  '\\u0000',
  '\\ud800',
  '\ud800',
  '\u0000',
  '1e400',
  '-0',
  '__proto__',
  '"constructor":1,',
  'null',
  'true',
  '9'.repeat(400),
  '2024-02-31',
  'T24:00:00',
  '\ufeff',
  ' ',
);
const textMutation = fc.oneof(
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), with: fc.oneof(token, fc.string({ maxLength: 3, unit: 'binary' })) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), with: fc.oneof(token, fc.string({ maxLength: 3, unit: 'binary' })) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), with: fc.integer({ min: 1, max: 8 }).map(String) }),
);
const fields = [
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
  'extra',
];
const fieldValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(
    '',
    'task',
    '2024-02-29T00:00:00Z',
    '2023-02-29T00:00:00Z',
    '2025-01-01T23:59:60Z',
    'a\u0000b',
    '\udc00',
    'x'.repeat(257),
    5,
    10,
    11,
    -1,
    0.5,
    null,
    {},
    [],
    { constructor: 'x' },
    { a: 1 },
  ),
);
const fieldMutation = fc.record({ field: fc.constantFrom(...fields), value: fc.option(fieldValue, { nil: undefined }) });

function mutateText(text: string, mutations: { kind: 'replace' | 'insert' | 'delete'; at: number; with: string }[]): string {
  let out = text;
  for (const m of mutations) {
    const at = m.at % (out.length + 1);
    if (m.kind === 'insert') out = out.slice(0, at) + m.with + out.slice(at);
    else if (m.kind === 'replace') out = out.slice(0, at) + m.with + out.slice(at + m.with.length);
    else out = out.slice(0, at) + out.slice(at + Number(m.with));
  }
  return out;
}

describe('wire decoder fuzz: a ValidationError, or a message that re-encodes to an equal message', () => {
  it('valid messages round-trip exactly, and the schema accepts them', () => {
    fc.assert(
      fc.property(message, (m) => {
        const decoded = judge(encodeMessage(m));
        expect(decoded).toBeDefined();
        expect(encodeMessage(decoded!)).toBe(encodeMessage(m));
      }),
      settings,
    );
  });

  it('valid messages mutated at random as text', () => {
    fc.assert(
      fc.property(message, fc.array(textMutation, { minLength: 1, maxLength: 4 }), (m, mutations) => {
        judge(mutateText(encodeMessage(m), mutations));
      }),
      settings,
    );
  });

  it('valid messages with fields replaced, removed or added at random', () => {
    fc.assert(
      fc.property(message, fc.array(fieldMutation, { minLength: 1, maxLength: 3 }), (m, mutations) => {
        const doc = JSON.parse(encodeMessage(m)) as Record<string, unknown>;
        for (const { field, value } of mutations) {
          if (value === undefined) delete doc[field];
          else Object.defineProperty(doc, field, { value, enumerable: true, writable: true, configurable: true });
        }
        judge(JSON.stringify(doc));
      }),
      settings,
    );
  });

  it('arbitrary JSON, and arbitrary text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null'),
          fc.string({ maxLength: 200, unit: 'binary' }),
        ),
        (text) => {
          judge(text);
        },
      ),
      settings,
    );
  });
});

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeTime, isValid } from 'ulidx';
import { ValidationError } from '../src/errors.js';
import {
  DEFAULT_PRIORITY,
  MessageType,
  STAMP_OWN_HEADERS,
  STAMP_SELF_CORRELATED,
  STAMP_TRACE,
  childTraceparent,
  createMessage,
  createTracedMessage,
  idAt,
  newId,
  newTraceparent,
  traceIdOf,
  validatePayload,
  type MessageInput,
} from '../src/message.js';

const base: MessageInput = { sender: 'planner', recipient: 'writer', type: MessageType.TASK, payload: { topic: 'llamas' } };

function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error('expected a ValidationError, nothing was thrown');
}

describe('MessageType', () => {
  it('has the six kinds of the contract', () => {
    expect(Object.values(MessageType).sort()).toEqual(['control', 'error', 'feedback', 'result', 'status', 'task']);
  });
});

describe('createMessage', () => {
  it('stamps id, timestamp, defaults and attempt 0', () => {
    const before = Date.now();
    const m = createMessage(base);
    expect(isValid(m.id)).toBe(true);
    expect(m.timestamp).toBeInstanceOf(Date);
    expect(m.timestamp.getTime()).toBeGreaterThanOrEqual(before);
    expect(m.priority).toBe(DEFAULT_PRIORITY);
    expect(m.headers).toEqual({});
    expect(m.attempt).toBe(0);
    expect(m).not.toHaveProperty('correlationId');
    expect(m).not.toHaveProperty('ttlMs');
  });

  it('keeps the fields it was given', () => {
    const m = createMessage({ ...base, id: 'my-id', priority: 9, correlationId: 'c-1', headers: { a: 'b' }, ttlMs: 500 });
    expect(m).toMatchObject({ id: 'my-id', priority: 9, correlationId: 'c-1', headers: { a: 'b' }, ttlMs: 500 });
  });

  it('copies headers, so the caller can reuse its object', () => {
    const headers = { a: 'b' };
    const m = createMessage({ ...base, headers });
    m.headers['x'] = 'y';
    expect(headers).toEqual({ a: 'b' });
  });

  it.each([
    ['an empty sender', { sender: '' }, 'sender', 'sender must not be empty'],
    ['a sender that is not a string', { sender: 42 }, 'sender', 'sender must be a string, got `42`'],
    ['an overlong recipient', { recipient: 'r'.repeat(300) }, 'recipient', 'recipient must be at most 256 characters, got 300'],
    ['an unknown type', { type: 'gossip' }, 'type', "got the string `'gossip'`"],
    ['priority 11', { priority: 11 }, 'priority', 'priority must be an integer 0..10, got `11`'],
    ['priority -1', { priority: -1 }, 'priority', 'got `-1`'],
    ['priority 2.5', { priority: 2.5 }, 'priority', 'got `2.5`'],
    ['priority as a string', { priority: '5' }, 'priority', "priority must be an integer 0..10, got the string `'5'`"],
    ['a string payload', { payload: 'hello' }, 'payload', "payload must be a JSON object or array, got the string `'hello'`"],
    ['a null payload', { payload: null }, 'payload', 'got `null`'],
    ['a zero ttl', { ttlMs: 0 }, 'ttlMs', 'ttlMs must be a positive number of milliseconds, got `0`'],
    ['an empty correlation id', { correlationId: '' }, 'correlationId', 'correlationId must not be empty'],
    ['a header that is not a string', { headers: { n: 1 } }, 'headers', 'headers.n must be a string, got `1`'],
    ['headers as an array', { headers: [] }, 'headers', 'got an array'],
  ])('refuses %s with a precise ValidationError', (_what, patch, field, message) => {
    const err = validationError(() => createMessage({ ...base, ...patch } as unknown as MessageInput));
    expect(err.field).toBe(field);
    expect(err.message).toContain(message);
  });

  it('refuses a payload over maxPayloadBytes, and accepts one at the limit', () => {
    const payload = { text: 'x'.repeat(100) };
    const size = Buffer.byteLength(JSON.stringify(payload));
    expect(() => createMessage({ ...base, payload }, size)).not.toThrow();
    const err = validationError(() => createMessage({ ...base, payload }, size - 1));
    expect(err.message).toBe(`payload must be at most ${size - 1} bytes as JSON, got ${size}`);
  });

  it('measures the size in UTF-8 bytes, not characters', () => {
    const payload = { text: 'é'.repeat(100) }; // 2 bytes each
    const size = Buffer.byteLength(JSON.stringify(payload));
    expect(size).toBeGreaterThan(JSON.stringify(payload).length);
    expect(() => createMessage({ ...base, payload }, size)).not.toThrow();
    expect(() => createMessage({ ...base, payload }, size - 1)).toThrow(ValidationError);
  });

  it('refuses the default 1 MiB limit plus one byte', () => {
    const payload = { text: 'x'.repeat(1024 * 1024) };
    expect(() => createMessage({ ...base, payload })).toThrow(/at most 1048576 bytes/);
  });
});

describe('validatePayload', () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic['self'] = cyclic;
  it.each([
    ['a function', { f: () => 1 }, 'payload.f is not JSON-serialisable (a function)'],
    ['undefined', { deep: { u: undefined } }, 'payload.deep.u is not JSON-serialisable (a undefined)'],
    ['a bigint', { list: [1, 2n] }, 'payload.list[1] is not JSON-serialisable (a bigint)'],
    ['NaN', { n: Number.NaN }, 'payload.n must be a finite number, got NaN'],
    ['Infinity', [Infinity], 'payload[0] must be a finite number, got Infinity'],
    ['a Date', { at: new Date() }, 'payload.at must be plain JSON data, got an instance of Date'],
    ['a Map', { m: new Map() }, 'got an instance of Map'],
    ['a cycle', cyclic, 'nested deeper than 256 levels (or cyclic)'],
    ['a symbol', { s: Symbol('x') }, 'payload.s is not JSON-serialisable (a symbol)'],
  ])('refuses %s, naming its path', (_what, payload, message) => {
    const err = validationError(() => validatePayload(payload, 1024 * 1024));
    expect(err.message).toContain(message);
    expect(err.field).toBe('payload');
  });

  it('accepts plain nested JSON data, arrays at the top and null-prototype objects', () => {
    expect(() => validatePayload({ a: [1, 'two', null, true, { b: -0.5 }], c: {} }, 1000)).not.toThrow();
    expect(() => validatePayload([1, 2, 3], 1000)).not.toThrow();
    expect(() => validatePayload(Object.assign(Object.create(null), { a: 1 }), 1000)).not.toThrow();
  });
});

describe('ids', () => {
  it('are ULIDs carrying the current time', () => {
    const id = newId();
    expect(isValid(id)).toBe(true);
    expect(Math.abs(decodeTime(id) - Date.now())).toBeLessThan(5_000);
  });

  it('are unique and sort in creation order, also within one millisecond', () => {
    const ids = Array.from({ length: 20_000 }, () => newId());
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });

  it('stay unique, sorted and on their millisecond however the clock moves (bursts, gaps, steps back)', () => {
    // Ids are made in chunks per millisecond; whatever the pattern of calls, each id must still
    // sort after the one before and carry its millisecond.
    const step = fc.record({
      dt: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 }), fc.integer({ min: -2, max: -1 })),
      burst: fc.integer({ min: 1, max: 80 }),
    });
    let last = ''; // across runs too: the generator's state carries over from one to the next
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
        let now = Date.now() + 1_000_000; // after anything the other tests made
        const seen = new Set<string>();
        for (const { dt, burst } of steps) {
          now += dt;
          for (let i = 0; i < burst; i++) {
            const id = idAt(now);
            expect(isValid(id)).toBe(true);
            expect(id > last).toBe(true);
            // Its own millisecond, or (the clock stepped back) the latest one an id already carries.
            expect(decodeTime(id)).toBe(last === '' ? now : Math.max(now, decodeTime(last)));
            expect(seen.has(id)).toBe(false);
            seen.add(id);
            last = id;
          }
        }
      }),
      { numRuns: 100 },
    );
  });

  it('carry the millisecond they were made in when the clock only moves forward', () => {
    let now = Date.now() + 2_000_000;
    for (let i = 0; i < 2_000; i++) {
      if (i % 7 === 0) now += 1;
      expect(decodeTime(idAt(now))).toBe(now);
    }
  });
});

describe('createTracedMessage (what the bus stamps)', () => {
  it('adds a traceparent, keeps a given one, and makes exactly the fields of a Message', () => {
    const m = createTracedMessage(base);
    expect(Object.keys(m).sort()).toEqual(['attempt', 'headers', 'id', 'payload', 'priority', 'recipient', 'sender', 'timestamp', 'type']);
    expect(Object.keys(m.headers)).toEqual(['traceparent']);
    const given = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    expect(createTracedMessage({ ...base, headers: { traceparent: given, x: 'y' } }).headers).toEqual({ traceparent: given, x: 'y' });
  });

  it('copies headers it does not own, keeps (and still checks) those it is handed', () => {
    const headers = { a: 'b' };
    expect(createTracedMessage({ ...base, headers }).headers).not.toBe(headers);
    const owned = { a: 'b' };
    expect(createTracedMessage({ ...base, headers: owned }, undefined, STAMP_TRACE | STAMP_OWN_HEADERS).headers).toBe(owned);
    expect(owned).toHaveProperty('traceparent');
    const bad = validationError(() =>
      createTracedMessage({ ...base, headers: { a: 1 as unknown as string } }, undefined, STAMP_OWN_HEADERS),
    );
    expect(bad.message).toBe('headers.a must be a string, got `1`');
  });

  it('correlates a request to its own id unless given a correlation', () => {
    const m = createTracedMessage(base, undefined, STAMP_TRACE | STAMP_SELF_CORRELATED);
    expect(m.correlationId).toBe(m.id);
    expect(createTracedMessage({ ...base, correlationId: 'c-1' }, undefined, STAMP_SELF_CORRELATED).correlationId).toBe('c-1');
    expect(createTracedMessage(base).correlationId).toBeUndefined();
  });
});

describe('traceparent helpers', () => {
  const FORMAT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/;

  it('starts new sampled traces with fresh ids', () => {
    const a = newTraceparent();
    const b = newTraceparent();
    expect(a).toMatch(FORMAT);
    expect(traceIdOf(a)).not.toBe(traceIdOf(b));
  });

  it('continues a trace with a new span and the parent flags', () => {
    const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00';
    const child = childTraceparent(parent);
    expect(traceIdOf(child)).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(child).not.toBe(parent);
    expect(child.endsWith('-00')).toBe(true);
  });

  it('starts a new trace when the parent is missing or invalid', () => {
    expect(childTraceparent(undefined)).toMatch(FORMAT);
    expect(childTraceparent('garbage')).toMatch(FORMAT);
  });

  it('continues exactly the parents the W3C format accepts (near misses start a new trace)', () => {
    const W3C = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
    const valid = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const mutated = fc
      .array(fc.record({ at: fc.integer({ min: 0, max: 54 }), char: fc.constantFrom(...'0123456789abcdefABCDEF-xg 0'.split('')) }), {
        maxLength: 3,
      })
      .map((edits) => {
        const chars = valid.split('');
        for (const { at, char } of edits) chars[at] = char;
        return chars.join('');
      });
    fc.assert(
      fc.property(fc.oneof(mutated, fc.string({ minLength: 54, maxLength: 56 })), (parent) => {
        const child = childTraceparent(parent);
        expect(child).toMatch(W3C);
        const continued = traceIdOf(child) === traceIdOf(parent) && child.slice(53) === parent.slice(53);
        expect(continued).toBe(W3C.test(parent));
      }),
      { numRuns: 2_000 },
    );
  });

  it('makes traceparents that are unique across many chunks', () => {
    const all = Array.from({ length: 5_000 }, () => newTraceparent());
    expect(new Set(all).size).toBe(all.length);
    for (const tp of all) expect(tp).toMatch(FORMAT);
  });
});

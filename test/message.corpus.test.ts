import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ValidationError } from '../src/errors.js';
import { decodeMessage, encodeMessage, type Message } from '../src/message.js';
import { caseText, corpus, schemaAccepts } from './corpus/corpus.js';

function decoderAccepts(text: string): { ok: true; message: Message } | { ok: false; error: unknown } {
  try {
    return { ok: true, message: decodeMessage(text) };
  } catch (error) {
    return { ok: false, error };
  }
}

describe('the wire corpus: the decoder and the JSON Schema accept exactly the same documents', () => {
  it.each(corpus.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const text = caseText(c);
    const decoded = decoderAccepts(text);
    if (!decoded.ok) expect(decoded.error).toBeInstanceOf(ValidationError);
    expect(decoded.ok, decoded.ok ? 'decoder accepted' : (decoded.error as Error).message).toBe(c.valid);
    expect(schemaAccepts(text), 'schema verdict').toBe(c.schemaValid ?? c.valid);
    // What is accepted is written again as a wire form that decodes to the same wire form.
    if (decoded.ok) {
      const wire = encodeMessage(decoded.message);
      expect(schemaAccepts(wire)).toBe(true);
      expect(encodeMessage(decodeMessage(wire))).toBe(wire);
    }
  });

  it('lets the schema differ from the decoder only on the size and depth rules', () => {
    for (const c of corpus.cases) if (c.schemaValid !== undefined) expect(['size', 'depth'], c.name).toContain(c.rule);
    expect(new Set(corpus.cases.map((c) => c.name)).size).toBe(corpus.cases.length);
  });

  it('agrees on random timestamps near the edges of the calendar and the clock', () => {
    const two = (lo: number, hi: number) => fc.integer({ min: lo, max: hi }).map((n) => String(n).padStart(2, '0'));
    const year = fc.oneof(
      fc.constantFrom('0000', '0001', '1900', '2000', '2023', '2024', '2100', '9998', '9999'),
      fc.integer({ min: 0, max: 9999 }).map((n) => String(n).padStart(4, '0')),
    );
    const zone = fc.oneof(
      fc.constantFrom('Z', 'z', '', '+00:00', '-00:00'),
      fc.tuple(fc.constantFrom('+', '-'), two(0, 25), two(0, 61)).map(([s, h, m]) => `${s}${h}:${m}`),
    );
    const frac = fc.oneof(
      fc.constant(''),
      fc.integer({ min: 0, max: 11 }).map((n) => '.' + '7'.repeat(n)),
    );
    const ts = fc
      .tuple(year, two(0, 13), two(0, 32), two(0, 25), two(0, 61), two(0, 61), frac, zone)
      .map(([y, mo, d, h, mi, s, f, z]) => `${y}-${mo}-${d}T${h}:${mi}:${s}${f}${z}`);
    fc.assert(
      fc.property(ts, (timestamp) => {
        const text = JSON.stringify({ ...corpus.base, timestamp });
        const decoded = decoderAccepts(text);
        expect(decoded.ok, timestamp).toBe(schemaAccepts(text));
        if (decoded.ok) expect(decodeMessage(encodeMessage(decoded.message)).timestamp).toEqual(decoded.message.timestamp);
      }),
      { numRuns: 3_000 },
    );
  });
});

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ValidationError } from '../src/errors.js';
import { DEFAULT_BACKOFF, backoffDelay, resolveBackoff } from '../src/bus/backoff.js';
import { IndexedHeap } from '../src/bus/heap.js';
import { BandedQueue, KeyedHeap } from '../src/backends/memory/heap.js';
import { LatencyRecorder, percentile } from '../src/bus/latency.js';

describe('backoffDelay', () => {
  const exact = { initialMs: 100, factor: 2, maxMs: 10_000, jitter: 0 };

  it('grows exponentially with the attempt', () => {
    expect([1, 2, 3, 4, 5].map((a) => backoffDelay(a, exact))).toEqual([100, 200, 400, 800, 1600]);
  });

  it('is capped at maxMs', () => {
    expect(backoffDelay(30, exact)).toBe(10_000);
    expect(backoffDelay(1_000, exact)).toBe(10_000);
  });

  it('spreads by ±jitter of the delay, never past maxMs or below 0', () => {
    const b = { initialMs: 1000, factor: 2, maxMs: 5000, jitter: 0.5 };
    expect(backoffDelay(1, b, () => 0)).toBe(500);
    expect(backoffDelay(1, b, () => 0.5)).toBe(1000);
    expect(backoffDelay(1, b, () => 0.999999)).toBe(1500);
    expect(backoffDelay(4, b, () => 0.999999)).toBe(5000);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
        const d = backoffDelay(attempt, b, () => r);
        const base = Math.min(5000, 1000 * 2 ** (attempt - 1));
        return d >= 0 && d <= 5000 && d >= base * 0.5 - 1 && d <= base * 1.5 + 1;
      }),
    );
  });

  it('treats attempt 0 or less as the first', () => {
    expect(backoffDelay(0, exact)).toBe(100);
  });

  it('has sane defaults', () => {
    expect(resolveBackoff(undefined)).toEqual(DEFAULT_BACKOFF);
    expect(resolveBackoff({ initialMs: 5 })).toEqual({ ...DEFAULT_BACKOFF, initialMs: 5 });
  });

  it.each([
    [{ initialMs: -1 }, 'backoff.initialMs must be a finite number >= 0, got `-1`'],
    [{ factor: 0.5 }, 'backoff.factor must be a finite number >= 1, got `0.5`'],
    [{ maxMs: Number.NaN }, 'backoff.maxMs must be a finite number >= 0, got `NaN`'],
    [{ jitter: 2 }, 'backoff.jitter must be a number in 0..1, got `2`'],
  ])('refuses %o', (options, message) => {
    expect(() => resolveBackoff(options)).toThrow(ValidationError);
    expect(() => resolveBackoff(options)).toThrow(message);
  });
});

interface Item {
  heapIndex: number;
  priority: number;
  seq: number;
}

describe('IndexedHeap', () => {
  const order = (a: Item, b: Item): boolean => a.priority > b.priority || (a.priority === b.priority && a.seq < b.seq);

  it('pops by priority desc then seq asc, and removes any item', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 10 }), { maxLength: 300 }),
        fc.array(fc.nat(), { maxLength: 50 }),
        (prios, removals) => {
          const heap = new IndexedHeap<Item>(order);
          const items = prios.map((priority, seq) => ({ heapIndex: -1, priority, seq }));
          for (const item of items) heap.push(item);
          const removed = new Set<Item>();
          for (const r of removals) {
            const item = items[r % Math.max(1, items.length)];
            if (item === undefined) continue;
            expect(heap.remove(item)).toBe(!removed.has(item));
            removed.add(item);
          }
          const expected = items.filter((i) => !removed.has(i)).sort((a, b) => (order(a, b) ? -1 : 1));
          const out: Item[] = [];
          for (let i = heap.pop(); i !== undefined; i = heap.pop()) out.push(i);
          expect(out).toEqual(expected);
          expect(out.every((i) => i.heapIndex === -1)).toBe(true);
        },
      ),
    );
  });

  it('reorders an item whose key changed', () => {
    const heap = new IndexedHeap<Item>(order);
    const a = { heapIndex: -1, priority: 1, seq: 0 };
    const b = { heapIndex: -1, priority: 2, seq: 1 };
    heap.push(a);
    heap.push(b);
    a.priority = 9;
    heap.update(a);
    expect(heap.pop()).toBe(a);
  });
});

describe('KeyedHeap', () => {
  it('pops in key order', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.double({ noNaN: true, noDefaultInfinity: true }).map((k) => (k === 0 ? 0 : k)),
          { maxLength: 500 },
        ),
        (keys) => {
          const heap = new KeyedHeap<number>();
          for (const [i, k] of keys.entries()) heap.push(i, k);
          expect(heap.size).toBe(keys.length);
          const out: number[] = [];
          while (heap.size > 0) {
            expect(heap.peekKey()).toBe(keys[heap.peek() as number]);
            out.push(keys[heap.pop() as number] as number);
          }
          expect(out).toEqual([...keys].sort((a, b) => a - b));
          expect(heap.pop()).toBeUndefined();
          expect(heap.peekKey()).toBe(Infinity);
        },
      ),
    );
  });
});

describe('BandedQueue', () => {
  const STRIDE = 1_000_000;

  it('pops by key, like a heap, whatever mix of in-order arrivals, returns to old places and aux it gets', () => {
    // Model: the items present, sorted by key. Arrivals take the next sequence number in a random
    // band (the common case, kept in rings); returns put a popped item back under its old key with
    // an aux (a retry keeping its place); pops must agree with the model every time.
    const op = fc.oneof(
      fc.record({ kind: fc.constant('arrive' as const), band: fc.integer({ min: 0, max: 10 }) }),
      fc.record({ kind: fc.constant('return' as const), pick: fc.nat(), aux: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ kind: fc.constant('pop' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 600 }), (ops) => {
        const q = new BandedQueue<string>(11, STRIDE);
        const present = new Map<string, { key: number; aux: number }>();
        const popped: { item: string; key: number }[] = [];
        let seq = 0;
        const pop = (): void => {
          const expected = [...present].sort((a, b) => a[1].key - b[1].key)[0];
          const item = q.pop();
          if (expected === undefined) {
            expect(item).toBeUndefined();
            return;
          }
          expect(item).toBe(expected[0]);
          expect(q.poppedKey).toBe(expected[1].key);
          expect(q.poppedAux).toBe(expected[1].aux);
          present.delete(expected[0]);
          popped.push({ item: expected[0], key: expected[1].key });
        };
        for (const o of ops) {
          if (o.kind === 'arrive') {
            const key = o.band * STRIDE + seq++;
            const item = `m${key}`;
            q.push(item, key);
            present.set(item, { key, aux: 0 });
          } else if (o.kind === 'return') {
            if (popped.length === 0) continue;
            const [back] = popped.splice(o.pick % popped.length, 1) as [{ item: string; key: number }];
            q.push(back.item, back.key, o.aux);
            present.set(back.item, { key: back.key, aux: o.aux });
          } else pop();
          expect(q.size).toBe(present.size);
          const min = Math.min(...[...present.values()].map((v) => v.key));
          expect(q.peekKey()).toBe(present.size === 0 ? Infinity : min);
        }
        while (present.size > 0) pop();
        expect(q.pop()).toBeUndefined();
        expect(q.size).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('grows and shrinks its rings across wrap-arounds without losing order', () => {
    const q = new BandedQueue<number>(2, STRIDE);
    let next = 0;
    let expected = 0;
    for (let round = 0; round < 50; round++) {
      const add = 1 + ((round * 37) % 400);
      for (let i = 0; i < add; i++) q.push(next, next++);
      const take = Math.min(q.size, 1 + ((round * 53) % 450));
      for (let i = 0; i < take; i++) expect(q.pop()).toBe(expected++);
    }
    while (q.size > 0) expect(q.pop()).toBe(expected++);
    expect(expected).toBe(next);
  });
});

describe('LatencyRecorder', () => {
  it('reports zeros before any sample', () => {
    expect(new LatencyRecorder().summary()).toEqual({ averageMs: 0, p50: 0, p95: 0, p99: 0 });
  });

  it('computes mean over all samples and nearest-rank percentiles over the window', () => {
    const r = new LatencyRecorder(1000);
    for (let i = 1; i <= 100; i++) r.record(i);
    expect(r.summary()).toEqual({ averageMs: 50.5, p50: 50, p95: 95, p99: 99 });
    expect(r.count).toBe(100);
  });

  it('keeps memory bounded: percentiles look at the most recent window only', () => {
    const r = new LatencyRecorder(10);
    for (let i = 0; i < 1000; i++) r.record(1000);
    for (let i = 0; i < 10; i++) r.record(1);
    expect(r.summary().p99).toBe(1);
    expect(r.count).toBe(1010);
  });

  it('percentile of an empty array is 0', () => {
    expect(percentile([], 0.5)).toBe(0);
  });
});

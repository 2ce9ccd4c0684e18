import { describe, expect, it, vi } from 'vitest';
import { RemoteError, ValidationError } from '../src/errors.js';
import { PatternTimeoutError } from '../src/errors.js';
import { agentStep, forkJoin, parallel, sequential, type RequestingBus, type Step } from '../src/patterns.js';

/** A step that resolves only when released, or rejects when its signal aborts. */
function controllable<T>() {
  let release!: (value: T) => void;
  let sawAbort: unknown;
  let started = false;
  const step: Step<unknown, T> = (_input, { signal }) =>
    new Promise<T>((resolve, reject) => {
      started = true;
      release = resolve;
      signal.addEventListener('abort', () => {
        sawAbort = signal.reason;
        reject(signal.reason);
      });
    });
  return {
    step,
    release: (v: T) => release(v),
    get started() {
      return started;
    },
    get sawAbort() {
      return sawAbort;
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

describe('sequential', () => {
  it('passes each step the previous result and resolves with the last', async () => {
    const out = await sequential([(x: number) => x + 1, async (x: number) => x * 10, (x: number) => `=${x}`], 1);
    expect(out).toBe('=20');
  });

  it('resolves with the input when there are no steps', async () => {
    expect(await sequential([], 'same')).toBe('same');
  });

  it('stops at the first failure; later steps never run', async () => {
    const later = vi.fn();
    const err = await rejection(
      sequential([
        () => 1,
        () => {
          throw new Error('step 2 failed');
        },
        later,
      ]),
    );
    expect((err as Error).message).toBe('step 2 failed');
    expect(later).not.toHaveBeenCalled();
  });

  it('a caller abort stops the running step (through its signal) and the chain', async () => {
    const c = controllable<number>();
    const later = vi.fn();
    const controller = new AbortController();
    const run = sequential([c.step, later], undefined, { signal: controller.signal });
    controller.abort(new Error('user cancelled'));
    const err = await rejection(run);
    expect((err as Error).message).toBe('user cancelled');
    expect((c.sawAbort as Error).message).toBe('user cancelled');
    expect(later).not.toHaveBeenCalled();
  });

  it('an already aborted signal runs nothing', async () => {
    const step = vi.fn();
    await rejection(sequential([step], 1, { signal: AbortSignal.abort(new Error('early')) }));
    expect(step).not.toHaveBeenCalled();
  });

  it('a timeout rejects with PatternTimeoutError and aborts the running step', async () => {
    const c = controllable<number>();
    const err = await rejection(sequential([c.step], 1, { timeout: 20 }));
    expect(err).toBeInstanceOf(PatternTimeoutError);
    expect((err as PatternTimeoutError).code).toBe('pattern_timeout');
    expect((err as PatternTimeoutError).message).toBe('sequential did not finish within its timeout of 20 ms');
    expect(c.sawAbort).toBeInstanceOf(PatternTimeoutError);
  });

  it('a step that ignores its signal does not hold the caller after a timeout', async () => {
    const ignoring: Step = () => new Promise(() => undefined);
    expect(await rejection(sequential([ignoring], 1, { timeout: 20 }))).toBeInstanceOf(PatternTimeoutError);
  });

  it('validates its arguments', async () => {
    await expect(sequential('nope' as never)).rejects.toThrow(ValidationError);
    await expect(sequential([1] as never)).rejects.toThrow(/steps\[0\] must be a function/);
    await expect(sequential([], 1, { timeout: 0 })).rejects.toThrow(/timeout must be a positive number/);
    await expect(sequential([], 1, { signal: {} as never })).rejects.toThrow(/signal must be an AbortSignal/);
  });
});

describe('parallel', () => {
  it('runs every step at once with the same input and resolves with results in step order', async () => {
    const a = controllable<string>();
    const seen: unknown[] = [];
    const run = parallel(
      [
        a.step,
        (input: unknown) => {
          seen.push(input);
          return 'b';
        },
      ],
      { input: { topic: 'x' } },
    );
    expect(a.started).toBe(true);
    a.release('a');
    expect(await run).toEqual(['a', 'b']);
    expect(seen).toEqual([{ topic: 'x' }]);
  });

  it('passes undefined as input when none is given', async () => {
    expect(await parallel([(input: unknown) => input])).toEqual([undefined]);
  });

  it('fail fast: the first failure rejects at once and aborts the other steps', async () => {
    const slow = controllable<string>();
    const ignoring: Step = () => new Promise(() => undefined);
    const err = await rejection(
      parallel([
        slow.step,
        ignoring,
        async () => {
          throw new Error('boom');
        },
      ]),
    );
    expect((err as Error).message).toBe('boom');
    expect((slow.sawAbort as Error).message).toBe('boom');
  });

  it('failFast: false waits for every step and returns every outcome in order', async () => {
    const outcomes = await parallel(
      [
        () => 1,
        () => {
          throw new Error('two');
        },
        async () => 3,
      ],
      { failFast: false },
    );
    expect(outcomes).toEqual([
      { status: 'fulfilled', value: 1 },
      { status: 'rejected', reason: new Error('two') },
      { status: 'fulfilled', value: 3 },
    ]);
  });

  it('a caller abort or a timeout aborts every step', async () => {
    const a = controllable<number>();
    const b = controllable<number>();
    const controller = new AbortController();
    const run = parallel([a.step, b.step], { signal: controller.signal, failFast: false });
    controller.abort(new Error('stop'));
    expect(((await rejection(run)) as Error).message).toBe('stop');
    expect(a.sawAbort).toBeDefined();
    expect(b.sawAbort).toBeDefined();
    const c = controllable<number>();
    expect(await rejection(parallel([c.step], { timeout: 15 }))).toBeInstanceOf(PatternTimeoutError);
    expect(c.sawAbort).toBeInstanceOf(PatternTimeoutError);
  });

  it('validates its arguments', async () => {
    await expect(parallel({} as never)).rejects.toThrow(ValidationError);
    await expect(parallel([], { failFast: 'no' as never })).rejects.toThrow(/failFast must be a boolean/);
    expect(await parallel([])).toEqual([]);
  });
});

describe('forkJoin', () => {
  it('keeps results in input order whatever order workers finish in', async () => {
    const out = await forkJoin([30, 10, 20, 0], (ms) => new Promise<number>((r) => setTimeout(() => r(ms), ms)));
    expect(out).toEqual([30, 10, 20, 0]);
  });

  it('never runs more than `concurrency` workers at once and gives each its index', async () => {
    let running = 0;
    let peak = 0;
    const indices: number[] = [];
    const out = await forkJoin(
      Array.from({ length: 20 }, (_, i) => i),
      async (item, { index }) => {
        indices.push(index);
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setImmediate(r));
        running--;
        return item * 2;
      },
      { concurrency: 3 },
    );
    expect(peak).toBe(3);
    expect(out).toEqual(Array.from({ length: 20 }, (_, i) => i * 2));
    expect(indices.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('merges the results', async () => {
    const total = await forkJoin([1, 2, 3], (x) => x * x, { merge: (parts) => parts.reduce((a, b) => a + b, 0) });
    expect(total).toBe(14);
  });

  it('the first failure rejects, aborts running workers and starts no new ones', async () => {
    const started: number[] = [];
    const aborted: number[] = [];
    const err = await rejection(
      forkJoin(
        [0, 1, 2, 3, 4, 5],
        (item, { signal }) =>
          new Promise<number>((_resolve, reject) => {
            started.push(item);
            signal.addEventListener('abort', () => {
              aborted.push(item);
              reject(signal.reason);
            });
            if (item === 1) reject(new Error('item 1 failed'));
          }),
        { concurrency: 2 },
      ),
    );
    expect((err as Error).message).toBe('item 1 failed');
    expect(started).toEqual([0, 1]);
    expect(aborted).toContain(0);
    expect(aborted.filter((i) => i > 1)).toEqual([]);
  });

  it('times out and aborts the workers', async () => {
    const seen: unknown[] = [];
    const err = await rejection(
      forkJoin(
        [1, 2],
        (_x, { signal }) =>
          new Promise((_r, reject) =>
            signal.addEventListener('abort', () => {
              seen.push(signal.reason);
              reject(signal.reason);
            }),
          ),
        { timeout: 15 },
      ),
    );
    expect(err).toBeInstanceOf(PatternTimeoutError);
    expect(seen).toHaveLength(2);
  });

  it('works with no items and with any iterable', async () => {
    expect(await forkJoin([], (x) => x)).toEqual([]);
    expect(await forkJoin(new Set(['a', 'b']), (x) => x.toUpperCase())).toEqual(['A', 'B']);
  });

  it('validates its arguments', async () => {
    await expect(forkJoin(5 as never, (x) => x)).rejects.toThrow(/iterable/);
    await expect(forkJoin([1], 'w' as never)).rejects.toThrow(/worker must be a function/);
    await expect(forkJoin([1], (x) => x, { concurrency: 0 })).rejects.toThrow(/concurrency must be a positive integer/);
    await expect(forkJoin([1], (x) => x, { concurrency: 1.5 })).rejects.toThrow(ValidationError);
    await expect(forkJoin([1], (x) => x, { merge: 'm' as never })).rejects.toThrow(/merge must be a function/);
  });
});

describe('agentStep', () => {
  function fakeBus(reply: (opts: Record<string, unknown>) => Promise<{ payload: unknown }>) {
    const calls: Record<string, unknown>[] = [];
    const bus: RequestingBus = {
      request: (opts) => {
        calls.push(opts);
        return reply(opts);
      },
    };
    return { bus, calls };
  }

  it('sends the input as a request to the agent and resolves with the reply payload', async () => {
    const { bus, calls } = fakeBus(async (opts) => ({ payload: { echoed: opts['payload'] } }));
    const step = agentStep(bus, { sender: 'lead', recipient: 'research', timeout: 5000, request: { priority: 9 } });
    expect(await step({ topic: 'x' }, { signal: new AbortController().signal })).toEqual({ echoed: { topic: 'x' } });
    expect(calls).toEqual([{ sender: 'lead', recipient: 'research', payload: { topic: 'x' }, timeout: 5000, priority: 9 }]);
  });

  it('chains agents with sequential', async () => {
    const { bus } = fakeBus(async (opts) => ({
      payload: { by: [...((opts['payload'] as { by?: string[] }).by ?? []), opts['recipient']] },
    }));
    const out = await sequential(
      [agentStep(bus, { sender: 'lead', recipient: 'a' }), agentStep(bus, { sender: 'lead', recipient: 'b' })],
      {},
    );
    expect(out).toEqual({ by: ['a', 'b'] });
  });

  it('passes the bus error through (RemoteError, RequestTimeoutError)', async () => {
    const { bus } = fakeBus(async () => {
      throw new RemoteError('research', 'req-1', { message: 'no sources' });
    });
    const err = await rejection(
      Promise.resolve(agentStep(bus, { sender: 'lead', recipient: 'research' })({}, { signal: new AbortController().signal })),
    );
    expect(err).toBeInstanceOf(RemoteError);
  });

  it('an aborted signal rejects at once even if the agent never answers', async () => {
    const { bus } = fakeBus(() => new Promise(() => undefined));
    const controller = new AbortController();
    const run = Promise.resolve(agentStep(bus, { sender: 'lead', recipient: 'slow' })({}, { signal: controller.signal }));
    controller.abort(new Error('cancelled'));
    expect(((await rejection(run)) as Error).message).toBe('cancelled');
    expect(await rejection(parallel([agentStep(bus, { sender: 'lead', recipient: 'slow' })], { timeout: 15 }))).toBeInstanceOf(
      PatternTimeoutError,
    );
  });

  it('validates its arguments', () => {
    const { bus } = fakeBus(async () => ({ payload: null }));
    expect(() => agentStep({} as never, { sender: 'a', recipient: 'b' })).toThrow(/bus with request/);
    expect(() => agentStep(bus, { sender: '', recipient: 'b' })).toThrow(/sender must be a non-empty/);
    expect(() => agentStep(bus, { sender: 'a' } as never)).toThrow(/recipient must be a non-empty/);
    expect(() => agentStep(bus, { sender: 'a', recipient: 'b', timeout: -1 })).toThrow(/timeout/);
  });
});

/**
 * Issue 20, the bus's crash, hang and overflow paths: a handled request() that killed the process,
 * close() waiting forever for a handler, durations above 2^31-1 ms, and misleading or silent
 * option mistakes. Redis variants are in test/redis/hardening.bus.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ClosedError, LockTimeoutError, RecipientNotFoundError, RequestTimeoutError, ValidationError } from '../src/errors.js';
import { MessageType, type Message } from '../src/message.js';
import { MessageBus, type MessageBusOptions } from '../src/bus/index.js';
import { MemoryTransport } from '../src/backends/memory/transport.js';
import { defineAgent, type AgentContext } from '../src/bus/agent.js';
import type { Transport } from '../src/bus/transport.js';
import { MemoryStore } from '../src/backends/memory/store.js';
import { StateManager } from '../src/state/manager.js';
import { sequential, parallel, forkJoin } from '../src/patterns.js';
import { MAX_TIMER_MS, startTimer, timerDelay } from '../src/timers.js';
import { closestName, editDistance } from '../src/options.js';
import { waitFor } from './helpers/services.js';

const buses: MessageBus[] = [];
function newBus(options: MessageBusOptions = {}): MessageBus {
  const bus = new MessageBus(options);
  buses.push(bus);
  return bus;
}
const managers: StateManager[] = [];
afterEach(async () => {
  await Promise.allSettled(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 100 })));
  await Promise.allSettled(managers.splice(0).map((m) => m.close()));
});

/** A gate a test opens when it wants: the wrapped transport's calls wait on it. */
function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

/**
 * A real memory transport seen through a networked transport's eyes: no synchronous `*Now`
 * methods (unless `keepSync`), and the named methods wait for `slow` before they run (or fail
 * with `fail` once it opens).
 */
function slowTransport(
  inner: MemoryTransport,
  methods: string[],
  slow: Promise<void>,
  options: { keepSync?: boolean; fail?: Error } = {},
): Transport {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && prop.endsWith('Now') && !options.keepSync) return undefined;
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (typeof prop === 'string' && methods.includes(prop)) {
        return async (...args: unknown[]) => {
          await slow;
          if (options.fail) throw options.fail;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  }) as unknown as Transport;
}

/** Collects the process's TimeoutOverflowWarnings (a timer given more than 2^31-1 ms fires after 1 ms). */
function overflowWarnings(): { seen: string[]; stop(): void } {
  const seen: string[] = [];
  const listener = (w: Error) => {
    if (w.name === 'TimeoutOverflowWarning') seen.push(w.message);
  };
  process.on('warning', listener);
  return { seen, stop: () => process.off('warning', listener) };
}

/** Lets timers due now and the warnings they emit (on the next tick) run. */
const turn = () => new Promise((resolve) => setTimeout(resolve, 5));

const task = (recipient: string, payload: Record<string, unknown> = {}) => ({
  sender: 'tester',
  recipient,
  type: MessageType.TASK,
  payload,
});

describe('hardening: a handled request() never leaves a rejection nobody holds (item 1)', () => {
  it('the caller’s promise rejects with RequestTimeoutError while the first enqueue is still stuck', async () => {
    const stuck = gate();
    const transport = slowTransport(new MemoryTransport(), ['enqueue'], stuck.wait);
    const bus = newBus({ transport });
    bus.registerAgent('puller');
    await bus.ready();
    const started = Date.now();
    const request = bus.request({ sender: 'me', recipient: 'puller', payload: {}, timeout: 50 });
    await expect(request).rejects.toBeInstanceOf(RequestTimeoutError);
    expect(Date.now() - started).toBeLessThan(2_000);
    stuck.open();
    // The enqueue finishes after the caller gave up: the message is queued, nothing else happens.
    const late = await bus.receive('puller', { timeout: 2_000 });
    expect(late?.headers['replyTo']).toBeDefined();
    expect(bus.metrics().pendingRequests).toBe(0);
  });

  it('an enqueue that fails after the timeout leaves the caller with RequestTimeoutError and nothing unhandled', async () => {
    const stuck = gate();
    const transport = slowTransport(new MemoryTransport(), ['enqueue'], stuck.wait, { fail: new Error('connection reset') });
    const bus = newBus({ transport });
    bus.registerAgent('puller');
    await bus.ready();
    const request = bus.request({ sender: 'me', recipient: 'puller', payload: {}, timeout: 30 });
    await expect(request).rejects.toBeInstanceOf(RequestTimeoutError);
    stuck.open();
    // The second request goes the steady-state way (inbox running): same rule.
    const again = bus.request({ sender: 'me', recipient: 'puller', payload: {}, timeout: 5_000 });
    await expect(again).rejects.toThrow('connection reset');
    expect(bus.metrics().pendingRequests).toBe(0);
  });

  it('an enqueue that fails before the timeout rejects the caller with that failure', async () => {
    const open = gate();
    open.open();
    const transport = slowTransport(new MemoryTransport(), ['enqueue'], open.wait, { fail: new Error('READONLY replica') });
    const bus = newBus({ transport });
    bus.registerAgent('puller');
    await bus.ready();
    await expect(bus.request({ sender: 'me', recipient: 'puller', payload: {}, timeout: 5_000 })).rejects.toThrow('READONLY replica');
    expect(bus.metrics().pendingRequests).toBe(0);
  });

  it('on a synchronous transport, a request to nobody whose dead-lettering outlasts the timeout rejects the caller only', async () => {
    const stuck = gate();
    const transport = slowTransport(new MemoryTransport(), ['deadLetter'], stuck.wait, { keepSync: true });
    const bus = newBus({ transport });
    bus.registerAgent('echo', defineAgent({ name: 'echo', handleMessage: (m: Message) => m.payload }));
    expect((await bus.request({ sender: 'me', recipient: 'echo', payload: { a: 1 } })).payload).toEqual({ a: 1 });
    const request = bus.request({ sender: 'me', recipient: 'nobody', payload: {}, timeout: 30 });
    await expect(request).rejects.toBeInstanceOf(RequestTimeoutError);
    stuck.open();
    await waitFor(async () => (await bus.getDeadLetters()).length === 1, 'the request to be dead-lettered');
  });
});

describe('hardening: close() returns after drainTimeoutMs whatever the handlers do (item 3)', () => {
  for (const concurrency of [1, 3]) {
    it(`with a concurrency-${concurrency} handler that never settles and ignores its signal; the delivery comes back after its lease`, async () => {
      const transport = new MemoryTransport();
      const a = newBus({ transport, leaseMs: 300 });
      let started = 0;
      a.registerAgent(
        'stuck',
        defineAgent({
          name: 'stuck',
          concurrency,
          handleMessage: () => {
            started++;
            return new Promise<never>(() => undefined);
          },
        }),
      );
      const sent = await a.send(task('stuck', { n: 1 }));
      await waitFor(() => started === 1, 'the handler to start');
      let closed = false;
      const closing = a.close({ drainTimeoutMs: 100 }).then(() => (closed = true));
      await waitFor(() => closed, 'close() to return', 3_000);
      await closing;
      // Not acked: another consumer gets it once the lease ran out.
      const b = newBus({ transport });
      const again: Message[] = [];
      b.registerAgent('stuck', defineAgent({ name: 'stuck', handleMessage: (m: Message) => void again.push(m) }));
      await waitFor(() => again.length === 1, 'the abandoned delivery to come back', 5_000);
      expect(again[0]).toMatchObject({ id: sent.id, attempt: 2, payload: { n: 1 } });
      await transport.close();
    });
  }
});

describe('hardening: unregisterAgent() returns after drainTimeoutMs whatever the handler does', () => {
  it('with a concurrency-1 handler that never settles: its signal is aborted and the delivery comes back after its lease', async () => {
    const transport = new MemoryTransport();
    const a = newBus({ transport, leaseMs: 300, drainTimeoutMs: 100 });
    let started = 0;
    let signal: AbortSignal | undefined;
    a.registerAgent(
      'stuck',
      defineAgent({
        name: 'stuck',
        handleMessage: (_m: Message, ctx: AgentContext) => {
          started++;
          signal = ctx.signal;
          return new Promise<never>(() => undefined);
        },
      }),
    );
    const sent = await a.send(task('stuck', { n: 1 }));
    await waitFor(() => started === 1, 'the handler to start');
    let done = false;
    const unregistering = a.unregisterAgent('stuck').then((v) => {
      done = true;
      return v;
    });
    await waitFor(() => done, 'unregisterAgent() to return', 3_000);
    expect(await unregistering).toBe(true);
    expect(signal?.aborted).toBe(true);
    // Not acked: the agent registered again gets it once the lease ran out.
    const again: Message[] = [];
    a.registerAgent('stuck', defineAgent({ name: 'stuck', handleMessage: (m: Message) => void again.push(m) }));
    await waitFor(() => again.length === 1, 'the abandoned delivery to come back', 5_000);
    expect(again[0]).toMatchObject({ id: sent.id, attempt: 2, payload: { n: 1 } });
  });
});

describe('hardening: durations above 2^31-1 ms are honoured, not fired after 1 ms (item 5)', () => {
  it('the timer helpers clamp and re-arm', async () => {
    expect(timerDelay(3e9)).toBe(MAX_TIMER_MS);
    expect(timerDelay(-5)).toBe(0);
    expect(timerDelay(Number.NaN)).toBe(0);
    const warnings = overflowWarnings();
    try {
      let fired = false;
      const long = startTimer(() => (fired = true), 3e9);
      let shortFired = false;
      startTimer(() => (shortFired = true), 5);
      await waitFor(() => shortFired, 'the short timer');
      await turn();
      expect(fired).toBe(false);
      long.clear();
      expect(warnings.seen).toEqual([]);
    } finally {
      warnings.stop();
    }
  });

  it('request({ timeout: 3e9 }) arms no overflowing timer and stays pending', async () => {
    const warnings = overflowWarnings();
    try {
      const bus = newBus();
      bus.registerAgent('puller');
      const request = bus.request({ sender: 'me', recipient: 'puller', payload: {}, timeout: 3e9 });
      request.catch(() => undefined);
      const d = await bus.receive('puller', { timeout: 2_000 });
      expect(d).not.toBeNull();
      await turn();
      expect(warnings.seen).toEqual([]);
      expect(bus.metrics().pendingRequests).toBe(1);
      await bus.reply(d as Message, { ok: true });
      expect((await request).payload).toEqual({ ok: true });
    } finally {
      warnings.stop();
    }
  });

  it('a lease of 3e9 ms watched through ctx.signal arms no overflowing timer', async () => {
    const warnings = overflowWarnings();
    try {
      const bus = newBus({ leaseMs: 3e9 });
      let aborted: boolean | undefined;
      bus.registerAgent(
        'w',
        defineAgent({
          name: 'w',
          handleMessage: async (_m: Message, ctx: AgentContext) => {
            const signal = ctx.signal;
            await turn();
            await turn();
            aborted = signal.aborted;
          },
        }),
      );
      await bus.send(task('w'));
      await waitFor(() => aborted !== undefined, 'the handler to finish');
      expect(aborted).toBe(false);
      expect(warnings.seen).toEqual([]);
    } finally {
      warnings.stop();
    }
  });

  it('close({ drainTimeoutMs: 3e9 }) waits for the handler instead of aborting it at once', async () => {
    const bus = newBus();
    let started = false;
    let finished = false;
    let abortedSignal = false;
    bus.registerAgent(
      'w',
      defineAgent({
        name: 'w',
        handleMessage: async (_m: Message, ctx: AgentContext) => {
          started = true;
          const signal = ctx.signal;
          await new Promise((resolve) => setTimeout(resolve, 50));
          abortedSignal = signal.aborted;
          finished = true;
        },
      }),
    );
    await bus.send(task('w'));
    await waitFor(() => started, 'the handler to start');
    await bus.close({ drainTimeoutMs: 3e9 });
    expect(finished).toBe(true);
    expect(abortedSignal).toBe(false);
  });

  it('patterns with a timeout of 3e9 do not time out after 1 ms', async () => {
    const later =
      <T>(value: T) =>
      () =>
        new Promise<T>((resolve) => setTimeout(() => resolve(value), 30));
    await expect(sequential([later(1), later(2)], undefined, { timeout: 3e9 })).resolves.toBe(2);
    await expect(parallel([later('a'), later('b')], { timeout: 3e9 })).resolves.toEqual(['a', 'b']);
    await expect(forkJoin([1, 2], (n) => later(n * 2)(), { timeout: 3e9 })).resolves.toEqual([2, 4]);
  });

  it('locks.acquire with waitMs 3e9 waits for the holder instead of failing at once', async () => {
    const state = new StateManager();
    managers.push(state);
    const first = await state.locks.acquire('k', { waitMs: 1_000 });
    const released = new Promise((resolve) => setTimeout(resolve, 50)).then(() => first.release());
    const second = await state.locks.acquire('k', { waitMs: 3e9 });
    await released;
    expect(second.held).toBe(true);
    await second.release();
    // A short wait still times out as before.
    const holder = await state.locks.acquire('k');
    await expect(state.locks.acquire('k', { waitMs: 20 })).rejects.toBeInstanceOf(LockTimeoutError);
    await holder.release();
  });

  it('a lock with ttlMs 9e9 is not renewed hundreds of times a second', async () => {
    const store = new MemoryStore();
    let renewals = 0;
    const counting = new Proxy(store, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        if (prop === 'renewLock') {
          return (...args: unknown[]) => {
            renewals++;
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
    const warnings = overflowWarnings();
    const state = new StateManager({ store: counting });
    managers.push(state);
    try {
      const lock = await state.locks.acquire('long', { ttlMs: 9e9 });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(renewals).toBe(0);
      expect(warnings.seen).toEqual([]);
      await lock.release();
    } finally {
      warnings.stop();
      await store.close();
    }
  });
});

describe('hardening: mistakes get a clear error (item 12)', () => {
  it('receive(name, 30) is refused and says to pass { timeout: 30 }', async () => {
    const bus = newBus();
    bus.registerAgent('writer');
    await expect(bus.receive('writer', 30 as never)).rejects.toThrow(ValidationError);
    await expect(bus.receive('writer', 30 as never)).rejects.toThrow('{ timeout: 30 }');
    await expect(bus.receive('writer', { timout: 30 } as never)).rejects.toThrow('did you mean `timeout`?');
  });

  it('receive of a name nobody registered throws RecipientNotFoundError', async () => {
    const transport = new MemoryTransport();
    const bus = newBus({ transport });
    const err = await bus.receive('nobody').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RecipientNotFoundError);
    expect((err as RecipientNotFoundError).recipient).toBe('nobody');
    expect((err as Error).message).toContain('`nobody`');
    // A name another bus on the same backend registered is fine.
    const other = newBus({ transport });
    other.registerAgent('elsewhere');
    await other.ready();
    expect(await bus.receive('elsewhere')).toBeNull();
  });

  it('unknown MessageBus options are refused with the known name they misspell', () => {
    expect(() => new MessageBus({ leaseMS: 5 } as never)).toThrow(ValidationError);
    expect(() => new MessageBus({ leaseMS: 5 } as never)).toThrow('unknown option `leaseMS`; did you mean `leaseMs`?');
    expect(() => new MessageBus({ colour: 'red' } as never)).toThrow(/unknown option `colour`; known options: `transport`/);
  });

  it('unknown StateManager options are refused with the known name they misspell', () => {
    expect(() => new StateManager({ stor: 'memory://' } as never)).toThrow(ValidationError);
    expect(() => new StateManager({ stor: 'memory://' } as never)).toThrow('did you mean `store`?');
  });

  it('unknown request and close options are refused', async () => {
    const bus = newBus();
    bus.registerAgent('w');
    await expect(bus.request({ sender: 'me', recipient: 'w', payload: {}, timout: 5 } as never)).rejects.toThrow('did you mean `timeout`?');
    await expect(bus.close({ drainTimeout: 5 } as never)).rejects.toThrow('did you mean `drainTimeoutMs`?');
    expect(await bus.receive('w')).toBeNull();
  });

  it('registerAgent refuses an agent defined under another name, and a misspelt agent option', () => {
    const bus = newBus();
    const y = defineAgent({ name: 'y', handleMessage: () => undefined });
    expect(() => bus.registerAgent('x', y)).toThrow(ValidationError);
    expect(() => bus.registerAgent('x', y)).toThrow('registerAgent(`x`) was given the agent named `y`');
    expect(() => bus.registerAgent('z', { name: 'z', concurency: 4, handleMessage: () => undefined } as never)).toThrow(
      'did you mean `concurrency`?',
    );
    // Its own name (and agents with extra fields of their own) still register.
    bus.registerAgent('y', y);
    bus.registerAgent('v', Object.assign(defineAgent({ name: 'v', handleMessage: () => undefined }), { sourcesDir: '/tmp' }));
  });

  it('closes with ClosedError as before', async () => {
    const bus = newBus();
    await bus.close();
    await expect(bus.receive('w', 30 as never)).rejects.toBeInstanceOf(ClosedError);
  });

  it('suggests names by edit distance', () => {
    expect(editDistance('stor', 'store')).toBe(1);
    expect(closestName('leaseMS', ['leaseMs', 'maxAttempts'])).toBe('leaseMs');
    expect(closestName('zzz', ['leaseMs'])).toBeUndefined();
  });
});

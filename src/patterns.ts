/**
 * Synchronisation patterns for agent work (docs/CONTRACT.md, "CommunicationProtocol and
 * synchronisation patterns"): run steps one after another, all at once, or fanned out over
 * items with bounded concurrency, with cancellation through `AbortSignal` and a `timeout`.
 *
 * A step is `(input, { signal }) => output | Promise<output>`. Steps that ignore the signal
 * still work (their result is simply dropped once the pattern has settled); steps that honour
 * it stop early when a sibling fails, the caller aborts, or the timeout passes.
 */
import { PatternTimeoutError, ValidationError } from './errors.js';
import { startTimer } from './timers.js';

/** What every step gets beside its input. */
export interface StepContext {
  /** Aborted when the caller aborts, the timeout passes, or (fail fast) a sibling failed. */
  signal: AbortSignal;
}

/** One unit of work. */
export type Step<I = unknown, O = unknown> = (input: I, context: StepContext) => O | Promise<O>;

/** Cancellation options shared by every pattern. */
export interface PatternOptions {
  /** Aborting it stops the pattern: pending steps see an aborted signal and the call rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Milliseconds before the pattern gives up with `PatternTimeoutError` (steps see their signal abort). */
  timeout?: number;
}

/** One outcome of `parallel(..., { failFast: false })`, shaped like `Promise.allSettled`. */
export type StepOutcome<O> = { status: 'fulfilled'; value: O } | { status: 'rejected'; reason: unknown };

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return `\`${String(value)}\` (${typeof value})`;
  return typeof value;
}

function checkSteps(steps: unknown, pattern: string): asserts steps is Step[] {
  if (!Array.isArray(steps)) throw new ValidationError(`${pattern} needs an array of steps, got ${describe(steps)}`, { field: 'steps' });
  steps.forEach((step, i) => {
    if (typeof step !== 'function') {
      throw new ValidationError(`${pattern}: steps[${i}] must be a function (input, { signal }) => output, got ${describe(step)}`, {
        field: 'steps',
      });
    }
  });
}

function checkOptions(options: unknown, pattern: string): Record<string, unknown> {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ValidationError(`${pattern} options must be an object, got ${describe(options)}`);
  }
  const o = options as Record<string, unknown>;
  const signal = o['signal'];
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new ValidationError(`${pattern}: signal must be an AbortSignal, got ${describe(signal)}`, { field: 'signal' });
  }
  const timeout = o['timeout'];
  if (timeout !== undefined && (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0)) {
    throw new ValidationError(`${pattern}: timeout must be a positive number of milliseconds, got ${describe(timeout)}`, {
      field: 'timeout',
    });
  }
  return o;
}

/**
 * A run scope: one AbortController linked to the caller's signal and the timeout. `race`
 * settles a promise early when the scope aborts; `close` detaches from the caller's signal
 * and clears the timer.
 */
class Scope {
  readonly controller = new AbortController();
  #cleanup: Array<() => void> = [];

  constructor(pattern: string, options: { signal?: AbortSignal; timeout?: number }) {
    const { signal, timeout } = options;
    if (signal) {
      if (signal.aborted) this.controller.abort(signal.reason);
      else {
        const onAbort = () => this.controller.abort(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        this.#cleanup.push(() => signal.removeEventListener('abort', onAbort));
      }
    }
    if (timeout !== undefined && !this.controller.signal.aborted) {
      const timer = startTimer(() => this.controller.abort(new PatternTimeoutError(pattern, timeout)), timeout);
      this.#cleanup.push(() => timer.clear());
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Resolves like `promise`, or rejects with the abort reason as soon as the scope aborts. */
  race<T>(promise: Promise<T>): Promise<T> {
    const signal = this.controller.signal;
    if (signal.aborted) {
      promise.catch(() => undefined);
      return Promise.reject(signal.reason);
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      promise.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }

  close(): void {
    for (const fn of this.#cleanup) fn();
    this.#cleanup = [];
  }
}

/** Calls a step, turning a synchronous throw into a rejection. */
function invoke<I, O>(step: Step<I, O>, input: I, signal: AbortSignal): Promise<O> {
  try {
    return Promise.resolve(step(input, { signal }));
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Runs steps one after another, each getting the previous step's result (the first gets
 * `input`), and resolves with the last result (`input` itself when there are no steps).
 *
 * @example
 * const report = await sequential([research, draft, review], { topic: 'Q3' }, { timeout: 60_000 });
 */
export async function sequential<T = unknown>(steps: Step<any, any>[], input?: unknown, options?: PatternOptions): Promise<T> {
  checkSteps(steps, 'sequential');
  const opts = checkOptions(options, 'sequential');
  const scope = new Scope('sequential', opts);
  try {
    let value: unknown = input;
    for (const step of steps) {
      if (scope.signal.aborted) throw scope.signal.reason;
      value = await scope.race(invoke(step, value, scope.signal));
    }
    return value as T;
  } finally {
    scope.close();
  }
}

/** Options of `parallel`. */
export interface ParallelOptions extends PatternOptions {
  /** Given to every step as its input. */
  input?: unknown;
  /**
   * true (default): the first failure rejects the call and aborts the other steps' signals.
   * false: wait for every step and resolve with every outcome (`StepOutcome[]`).
   */
  failFast?: boolean;
}

/**
 * Runs every step at once with the same `input`. With `failFast` (default) it resolves with
 * the results in step order, or rejects with the first failure after aborting the others;
 * with `failFast: false` it resolves with every outcome, in step order.
 *
 * @example
 * const [facts, sources] = await parallel([findFacts, findSources], { input: topic });
 * const outcomes = await parallel([a, b, c], { failFast: false }); // [{ status: 'fulfilled', value }, { status: 'rejected', reason }, ...]
 */
export function parallel<T = unknown>(steps: Step<any, any>[], options: ParallelOptions & { failFast: false }): Promise<StepOutcome<T>[]>;
export function parallel<T = unknown>(steps: Step<any, any>[], options?: ParallelOptions & { failFast?: true }): Promise<T[]>;
export function parallel<T = unknown>(steps: Step<any, any>[], options?: ParallelOptions): Promise<T[] | StepOutcome<T>[]>;
export async function parallel<T = unknown>(steps: Step<any, any>[], options?: ParallelOptions): Promise<T[] | StepOutcome<T>[]> {
  checkSteps(steps, 'parallel');
  const opts = checkOptions(options, 'parallel');
  const failFast = opts['failFast'] ?? true;
  if (typeof failFast !== 'boolean')
    throw new ValidationError(`parallel: failFast must be a boolean, got ${describe(failFast)}`, { field: 'failFast' });
  const scope = new Scope('parallel', opts);
  try {
    if (scope.signal.aborted) throw scope.signal.reason;
    const runs = steps.map((step) => invoke(step, opts['input'], scope.signal));
    if (!failFast) return (await scope.race(Promise.allSettled(runs))) as StepOutcome<T>[];
    const failing = runs.map((run) =>
      run.catch((err: unknown) => {
        if (!scope.signal.aborted) scope.controller.abort(err);
        throw err;
      }),
    );
    for (const run of failing) run.catch(() => undefined);
    return (await scope.race(Promise.all(failing))) as T[];
  } finally {
    scope.close();
  }
}

/** Options of `forkJoin`. */
export interface ForkJoinOptions<O, R> extends PatternOptions {
  /** How many workers run at once. Default: all items at once. */
  concurrency?: number;
  /** Combines the results (in input order) into the value `forkJoin` resolves with. */
  merge?: (results: O[]) => R | Promise<R>;
}

/**
 * Runs `worker(item, { signal, index })` for every item with at most `concurrency` running at
 * once, then resolves with the results in input order, or with `merge(results)`. The first
 * failure rejects the call and aborts the running workers; no new ones start.
 *
 * @example
 * const summary = await forkJoin(chapters, (ch, { signal }) => summarise(ch, signal), {
 *   concurrency: 4, merge: (parts) => parts.join('\n\n'),
 * });
 */
export async function forkJoin<I, O, R = O[]>(
  items: Iterable<I>,
  worker: (item: I, context: StepContext & { index: number }) => O | Promise<O>,
  options?: ForkJoinOptions<O, R>,
): Promise<R> {
  if (items === null || typeof (items as { [Symbol.iterator]?: unknown })?.[Symbol.iterator] !== 'function') {
    throw new ValidationError(`forkJoin needs an iterable of items, got ${describe(items)}`, { field: 'items' });
  }
  if (typeof worker !== 'function')
    throw new ValidationError(`forkJoin: worker must be a function, got ${describe(worker)}`, { field: 'worker' });
  const opts = checkOptions(options, 'forkJoin');
  const concurrency = opts['concurrency'] ?? Number.POSITIVE_INFINITY;
  if (concurrency !== Number.POSITIVE_INFINITY && (typeof concurrency !== 'number' || !Number.isInteger(concurrency) || concurrency < 1)) {
    throw new ValidationError(`forkJoin: concurrency must be a positive integer, got ${describe(concurrency)}`, { field: 'concurrency' });
  }
  const merge = opts['merge'];
  if (merge !== undefined && typeof merge !== 'function')
    throw new ValidationError(`forkJoin: merge must be a function, got ${describe(merge)}`, { field: 'merge' });
  const list = [...items];
  const scope = new Scope('forkJoin', opts);
  try {
    if (scope.signal.aborted) throw scope.signal.reason;
    const results = new Array<O>(list.length);
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < list.length && !scope.signal.aborted) {
        const index = next++;
        try {
          results[index] = await scope.race((async () => worker(list[index] as I, { signal: scope.signal, index }))());
        } catch (err) {
          if (!scope.signal.aborted) scope.controller.abort(err);
          throw err;
        }
      }
    };
    const lanes = Array.from({ length: Math.min(list.length, concurrency as number) }, lane);
    for (const l of lanes) l.catch(() => undefined);
    await scope.race(Promise.all(lanes));
    if (scope.signal.aborted) throw scope.signal.reason;
    return merge ? await scope.race(Promise.resolve((merge as (r: O[]) => R | Promise<R>)(results))) : (results as unknown as R);
  } finally {
    scope.close();
  }
}

/** The part of a MessageBus `agentStep` uses (typed structurally so any bus fits). */
export interface RequestingBus {
  request(options: {
    sender: string;
    recipient: string;
    payload: any;
    timeout?: number;
    [extra: string]: unknown;
  }): Promise<{ payload: unknown }>;
}

/** Options of `agentStep`. */
export interface AgentStepOptions {
  /** Who asks (the requesting agent's name). */
  sender: string;
  /** The agent that does the step. */
  recipient: string;
  /** Milliseconds to wait for the reply (the bus raises `RequestTimeoutError`). */
  timeout?: number;
  /** Extra request fields passed through to `bus.request` (priority, correlationId, headers, ...). */
  request?: Record<string, unknown>;
}

/**
 * A step that is a request to an agent over the bus: the step's input is the request payload
 * and the reply's payload is its output. An ERROR reply rejects with `RemoteError` and no
 * reply in time with `RequestTimeoutError` (both from the bus); an aborted signal rejects at
 * once (a late reply is then ignored).
 *
 * @example
 * const pipeline = [agentStep(bus, { sender: 'lead', recipient: 'research' }), agentStep(bus, { sender: 'lead', recipient: 'writer', timeout: 120_000 })];
 * const draft = await sequential(pipeline, { topic: 'Q3' });
 */
export function agentStep<I = unknown, O = unknown>(bus: RequestingBus, options: AgentStepOptions): Step<I, O> {
  if (!bus || typeof (bus as RequestingBus).request !== 'function') {
    throw new ValidationError(`agentStep needs a bus with request(), got ${describe(bus)}`, { field: 'bus' });
  }
  const opts = checkOptions(options, 'agentStep');
  for (const field of ['sender', 'recipient'] as const) {
    const value = opts[field];
    if (typeof value !== 'string' || value.length === 0) {
      throw new ValidationError(`agentStep: ${field} must be a non-empty agent name, got ${describe(value)}`, { field });
    }
  }
  const extra = opts['request'];
  if (extra !== undefined && (typeof extra !== 'object' || extra === null || Array.isArray(extra))) {
    throw new ValidationError(`agentStep: request must be an object of extra request fields, got ${describe(extra)}`, { field: 'request' });
  }
  const { sender, recipient, timeout } = options;
  return async (input, { signal }) => {
    signal?.throwIfAborted();
    const request = bus.request({
      ...(extra as Record<string, unknown> | undefined),
      sender,
      recipient,
      payload: input,
      ...(timeout !== undefined ? { timeout } : {}),
    });
    if (!signal) return (await request).payload as O;
    return new Promise<O>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      request.then(
        (reply) => {
          signal.removeEventListener('abort', onAbort);
          resolve(reply.payload as O);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  };
}

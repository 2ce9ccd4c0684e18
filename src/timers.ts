/**
 * Timers for durations users give. Node's `setTimeout` takes at most 2^31-1 ms: a longer delay
 * fires after 1 ms with a `TimeoutOverflowWarning`, which turns a three-week timeout into a busy
 * loop. Every duration that reaches a timer goes through here.
 */

/** The longest delay `setTimeout` honours (about 24.8 days). */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * `ms` as a delay `setTimeout` honours: at most {@link MAX_TIMER_MS}, at least 0 (NaN is 0). A
 * caller that re-checks its own deadline when the timer fires (and re-arms) needs nothing more.
 */
export function timerDelay(ms: number): number {
  return ms > MAX_TIMER_MS ? MAX_TIMER_MS : ms > 0 ? ms : 0;
}

/** A one-shot timer of any length (see {@link startTimer}). */
export interface Timer {
  /** Cancels it; idempotent. */
  clear(): void;
  /** Lets the process exit while only this timer is pending. */
  unref(): Timer;
}

class LongTimer implements Timer {
  readonly #fn: () => void;
  readonly #due: number;
  #handle: NodeJS.Timeout | undefined;
  #unref = false;

  constructor(fn: () => void, ms: number) {
    this.#fn = fn;
    this.#due = Date.now() + ms;
    this.#arm(ms);
  }

  #arm(ms: number): void {
    if (ms <= MAX_TIMER_MS) {
      this.#handle = setTimeout(this.#fn, ms);
    } else {
      this.#handle = setTimeout(() => this.#arm(timerDelay(this.#due - Date.now())), MAX_TIMER_MS);
    }
    if (this.#unref) this.#handle.unref();
  }

  clear(): void {
    if (this.#handle !== undefined) clearTimeout(this.#handle);
    this.#handle = undefined;
  }

  unref(): Timer {
    this.#unref = true;
    this.#handle?.unref();
    return this;
  }
}

/**
 * Calls `fn` once after `ms` milliseconds, however long that is: a delay above
 * {@link MAX_TIMER_MS} re-arms until the whole duration has passed.
 *
 * @example
 * const timer = startTimer(() => controller.abort(), 30 * 24 * 3600_000); // 30 days, not 1 ms
 * timer.clear();
 */
export function startTimer(fn: () => void, ms: number): Timer {
  return new LongTimer(fn, ms > 0 ? ms : 0);
}

/**
 * True when `done` settles within `ms` (fulfilled or rejected), false when the time runs out first;
 * the timer is cleared either way. How close and unregisterAgent bound their wait for handlers.
 */
export async function settlesWithin(done: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: Timer | undefined;
  const ended = await Promise.race([
    done.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = startTimer(() => resolve(false), ms))),
  ]);
  timer?.clear();
  return ended;
}

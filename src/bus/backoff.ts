import { ValidationError } from '../errors.js';

/** How retries are spaced: `initialMs × factor^(attempt − 1)`, capped at `maxMs`, spread by ±`jitter`. */
export interface BackoffOptions {
  /** Delay before the second attempt (default 200). */
  initialMs: number;
  /** Growth per attempt (default 2). */
  factor: number;
  /** Longest delay (default 30 000). */
  maxMs: number;
  /** Fraction 0..1 of the delay drawn at random either way, so retries of many messages spread out (default 0.2). */
  jitter: number;
}

/** The backoff used when none is given. */
export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ initialMs: 200, factor: 2, maxMs: 30_000, jitter: 0.2 });

/**
 * Completes and checks backoff options.
 * @throws ValidationError naming the field and the value that came.
 */
export function resolveBackoff(options: Partial<BackoffOptions> | undefined): BackoffOptions {
  const b = { ...DEFAULT_BACKOFF, ...options };
  const check = (field: keyof BackoffOptions, ok: boolean, expected: string): void => {
    if (!ok) throw new ValidationError(`backoff.${field} must be ${expected}, got \`${String(b[field])}\``, { field: `backoff.${field}` });
  };
  check('initialMs', typeof b.initialMs === 'number' && b.initialMs >= 0 && Number.isFinite(b.initialMs), 'a finite number >= 0');
  check('factor', typeof b.factor === 'number' && b.factor >= 1 && Number.isFinite(b.factor), 'a finite number >= 1');
  check('maxMs', typeof b.maxMs === 'number' && b.maxMs >= 0 && Number.isFinite(b.maxMs), 'a finite number >= 0');
  check('jitter', typeof b.jitter === 'number' && b.jitter >= 0 && b.jitter <= 1, 'a number in 0..1');
  return b;
}

/**
 * Milliseconds to wait before retrying a message whose `attempt`-th delivery failed: exponential
 * in the attempt, capped at `maxMs`, then spread uniformly over ±`jitter` of itself (and never
 * above `maxMs`). Pure: `random` is injectable for tests.
 *
 * @example
 * backoffDelay(3, { initialMs: 100, factor: 2, maxMs: 10_000, jitter: 0 }) // 400
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const { initialMs, factor, maxMs, jitter } = options;
  const exponent = Math.max(0, attempt - 1);
  const base = Math.min(maxMs, initialMs * factor ** exponent);
  if (jitter === 0) return Math.round(base);
  const spread = base * jitter * (2 * random() - 1);
  return Math.max(0, Math.min(maxMs, Math.round(base + spread)));
}

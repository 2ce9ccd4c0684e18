import type { MaybePromise } from './transport.js';

export type { MaybePromise };

/** Whether `value` is a promise (or any thenable): the one test the bus makes on a transport's answer. */
export function isThenable<T>(value: MaybePromise<T> | unknown): value is PromiseLike<T> {
  return value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';
}

/**
 * `fn(value)` now when `value` is a value, or once it resolves when it is a promise: how the bus
 * handles a transport that may answer synchronously, once per operation. A synchronous throw of
 * `fn` propagates to the caller; a rejection stays in the returned promise.
 */
export function andThen<T, R>(value: MaybePromise<T>, fn: (value: T) => MaybePromise<R>): MaybePromise<R> {
  return isThenable<T>(value) ? (value as Promise<T>).then(fn) : fn(value as T);
}

import type { MaybePromise } from './transport.js';

export type { MaybePromise };

/** Whether `value` is a promise (or any thenable): the one test the bus makes on a transport's answer. */
export function isThenable<T>(value: MaybePromise<T> | unknown): value is PromiseLike<T> {
  return value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';
}

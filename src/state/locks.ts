import { AsyncLocalStorage } from 'node:async_hooks';
import { ConcordError, LockTimeoutError, ValidationError } from '../errors.js';
import type { LockGrant, StateStore } from './store.js';
import * as v from './validate.js';
import { startTimer, type Timer } from '../timers.js';

/**
 * A lock lease this manager held was taken over by another holder (it expired while the
 * holder was stalled, or the store lost it). Writes made under the lost lock are refused
 * (fencing), so a stale holder cannot overwrite the new holder's work.
 */
export class LockLostError extends ConcordError {
  /** The lock's name (for `withLock`, the document id). */
  readonly key: string;
  /** The fencing number the stale holder had. */
  readonly fence: number;
  constructor(key: string, fence: number, detail = 'another holder took it over') {
    super('lock_lost', `lock \`${key}\` (fence ${fence}) is no longer held: ${detail}; the write was refused`);
    this.key = key;
    this.fence = fence;
  }
}

/** How long a lease lasts and how long to wait for one. */
export interface LockOptions {
  /** Lease length in ms; a held lock is renewed every third of it. Default from the manager (30000). */
  ttlMs?: number;
  /** How long `acquire` waits before `LockTimeoutError` (0 = try once). Default from the manager (30000). */
  waitMs?: number;
  /** Gives up waiting when aborted (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** A held lock. Release it (`withLock` does this for you). */
export interface LockHandle {
  /** The lock's name (for `withLock`, the document id). */
  readonly key: string;
  /** Fencing number: grows with every acquisition of this lock, across processes. */
  readonly fence: number;
  /** Aborted (with `LockLostError`) when the lease is lost: stop working on the guarded data. */
  readonly signal: AbortSignal;
  /** True until released or lost. */
  readonly held: boolean;
  /** Frees the lock (idempotent) and stops renewing it. */
  release(): Promise<void>;
}

/** The store key of a named lock: one namespace for the manager's per-document locks. */
export function lockStoreKey(key: string): string {
  return `doc:${key}`;
}

/** An in-process FIFO mutex per key, so same-process waiters queue instead of all polling the store. */
class KeyedMutex {
  #queues = new Map<string, Array<() => void>>();

  async lock(key: string, deadline: number, signal: AbortSignal | undefined, onTimeout: () => Error): Promise<() => void> {
    const queue = this.#queues.get(key);
    const release = () => {
      const q = this.#queues.get(key);
      const next = q?.shift();
      if (next) next();
      else this.#queues.delete(key);
    };
    if (!queue) {
      this.#queues.set(key, []);
      return release;
    }
    return new Promise<() => void>((resolve, reject) => {
      const grant = () => {
        cleanup();
        resolve(release);
      };
      const fail = (err: unknown) => {
        cleanup();
        const i = queue.indexOf(grant);
        if (i >= 0) queue.splice(i, 1);
        reject(err);
      };
      const timer = startTimer(() => fail(onTimeout()), deadline - Date.now());
      const onAbort = () => fail(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = () => {
        timer.clear();
        signal?.removeEventListener('abort', onAbort);
      };
      queue.push(grant);
    });
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * `state.locks`: named leases on the manager's store, exclusive across every manager and
 * process sharing that store. A lease is renewed in the background while held and carries a
 * fencing number; writes made inside `state.withLock` send it so the store refuses a stale
 * holder's writes.
 *
 * @example
 * const lock = await state.locks.acquire('report-42', { waitMs: 5000 });
 * try { ... } finally { await lock.release(); }
 */
export class StateLocks {
  #store: () => Promise<StateStore>;
  #defaults: { ttlMs: number; waitMs: number };
  #local = new KeyedMutex();
  #held = new Map<string, LockHandle>();

  /** @internal Made by the StateManager. */
  constructor(store: () => Promise<StateStore>, defaults: { ttlMs: number; waitMs: number }) {
    this.#store = store;
    this.#defaults = defaults;
  }

  /**
   * Waits for the lock (polling the store with a bounded back-off) and returns the held lease.
   *
   * @throws LockTimeoutError when not acquired within `waitMs`.
   */
  async acquire(key: string, options?: LockOptions): Promise<LockHandle> {
    const name = v.id(key, 'lock key');
    const opts = v.optionsObject(options, 'lock options');
    const ttlMs = v.optionalDuration(opts['ttlMs'], 'ttlMs') ?? this.#defaults.ttlMs;
    const waitMs = opts['waitMs'] === 0 ? 0 : (v.optionalDuration(opts['waitMs'], 'waitMs') ?? this.#defaults.waitMs);
    const signal = opts['signal'];
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new ValidationError(`signal must be an AbortSignal, got ${v.describe(signal)}`, { field: 'signal' });
    }
    signal?.throwIfAborted();
    const started = Date.now();
    const deadline = started + waitMs;
    const timeout = () => new LockTimeoutError(name, Date.now() - started);
    const unlockLocal = await this.#local.lock(name, deadline, signal, timeout);
    try {
      const store = await this.#store();
      for (let attempt = 0; ; attempt++) {
        const grant = await store.tryAcquireLock(lockStoreKey(name), ttlMs);
        if (grant) return this.#handle(store, name, grant, ttlMs, unlockLocal);
        const left = deadline - Date.now();
        if (left <= 0) throw timeout();
        const step = Math.min(50, 2 ** Math.min(attempt + 1, 6));
        await sleep(Math.min(left, step / 2 + Math.random() * step), signal);
      }
    } catch (err) {
      unlockLocal();
      throw err;
    }
  }

  /** Takes the lock if it is free right now, else resolves null. */
  async tryAcquire(key: string, options?: Omit<LockOptions, 'waitMs'>): Promise<LockHandle | null> {
    try {
      return await this.acquire(key, { ...options, waitMs: 0 });
    } catch (err) {
      if (err instanceof LockTimeoutError) return null;
      throw err;
    }
  }

  /** True while this manager holds `key` (acquired, not released, not lost). */
  isHeld(key: string): boolean {
    return this.#held.get(key)?.held ?? false;
  }

  /** Releases every lock this manager holds (the manager does this on close; a process exiting on a signal can do it first). */
  async releaseAll(): Promise<void> {
    await Promise.allSettled([...this.#held.values()].map((h) => h.release()));
  }

  #handle(store: StateStore, key: string, grant: LockGrant, ttlMs: number, unlockLocal: () => void): LockHandle {
    const controller = new AbortController();
    let held = true;
    let expiresAt = grant.expiresAt;
    let timer: Timer | null = null;
    const storeKey = lockStoreKey(key);
    const lose = (detail: string) => {
      if (!held) return;
      held = false;
      timer?.clear();
      if (this.#held.get(key) === handle) this.#held.delete(key);
      unlockLocal();
      controller.abort(new LockLostError(key, grant.fence, detail));
    };
    const renew = async () => {
      timer = null;
      if (!held) return;
      try {
        const ok = await store.renewLock(storeKey, grant.token, ttlMs);
        if (!held) return;
        if (!ok) return lose('its lease expired and another holder took it');
        expiresAt = Date.now() + ttlMs;
      } catch {
        if (!held) return;
        if (Date.now() >= expiresAt) return lose('its lease expired while the store could not be reached');
      }
      schedule();
    };
    const schedule = () => {
      // A third of the lease, however long: a ttl above 2^31-1 ms must not renew every millisecond.
      timer = startTimer(() => void renew(), Math.max(1, Math.floor(ttlMs / 3))).unref();
    };
    const handle: LockHandle = {
      key,
      fence: grant.fence,
      signal: controller.signal,
      get held() {
        return held;
      },
      release: async () => {
        if (!held) return;
        held = false;
        timer?.clear();
        if (this.#held.get(key) === handle) this.#held.delete(key);
        try {
          await store.releaseLock(storeKey, grant.token);
        } finally {
          unlockLocal();
        }
      },
    };
    this.#held.set(key, handle);
    schedule();
    return handle;
  }
}

/**
 * The document locks held by the code running now (`StateManager.withLock`), so that writes
 * made inside it carry the lock's fencing number. Internal.
 */
export class LockScope {
  #context = new AsyncLocalStorage<Map<string, LockHandle>>();
  /** `withLock` bodies running now; while none runs, writes skip the AsyncLocalStorage lookup. */
  #depth = 0;

  /** See `StateManager.withLock`. */
  async withLock<T>(locks: StateLocks, documentId: string, fn: (lock: LockHandle) => Promise<T> | T, options?: LockOptions): Promise<T> {
    const id = v.id(documentId, 'documentId');
    const run = v.fn<(lock: LockHandle) => Promise<T> | T>(fn, 'fn');
    const held = this.#context.getStore();
    const mine = held?.get(id);
    if (mine?.held) return run(mine);
    const lock = await locks.acquire(id, options);
    this.#depth++;
    try {
      const context = new Map(held ?? []);
      context.set(id, lock);
      return await this.#context.run(context, () => run(lock));
    } finally {
      this.#depth--;
      await lock.release().catch((err: unknown) => {
        process.emitWarning(`releasing lock \`${id}\` failed (it expires with its lease): ${(err as Error).message}`, {
          code: 'CONCORD_LOCK_RELEASE',
        });
      });
    }
  }

  /** The fence a write to the document carries: the held lock's, when inside its `withLock`. */
  fenceFor(documentId: string): { key: string; token: number } | undefined {
    if (this.#depth === 0) return undefined;
    const lock = this.#context.getStore()?.get(documentId);
    return lock ? { key: lockStoreKey(documentId), token: lock.fence } : undefined;
  }
}

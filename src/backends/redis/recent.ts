/**
 * A map that forgets: what is set stays at least `ms` and at most about twice that, in two
 * generations of plain `Map`s (the older one is dropped whole). For facts about messages that
 * only matter moments after they are recorded (a message just enqueued, about to be published):
 * a `WeakMap` would do the same, but every live entry of one is an ephemeron the garbage
 * collector must trace specially, which made scavenges of a producer sending 500-message
 * batches several times slower.
 */
export class RecentMap<K, V> {
  readonly #ms: number;
  #current = new Map<K, V>();
  #previous = new Map<K, V>();
  #since = 0;

  constructor(ms: number) {
    this.#ms = ms;
  }

  /** Records `value` for `key`; `now` is `Date.now()` as the caller read it. */
  set(key: K, value: V, now: number): void {
    if (now - this.#since > this.#ms) {
      this.#previous = this.#current.size > 0 ? this.#current : this.#previous.size > 0 ? new Map() : this.#previous;
      this.#current = new Map();
      this.#since = now;
    }
    this.#current.set(key, value);
  }

  /** What was recorded for `key` lately (possibly longer ago than `ms`; never much longer). */
  get(key: K): V | undefined {
    return this.#current.get(key) ?? this.#previous.get(key);
  }

  delete(key: K): void {
    this.#current.delete(key);
    this.#previous.delete(key);
  }
}

import { resolveTransportUrl } from './resolve.js';
import type { Transport } from './transport.js';

// A bus's link to its transport: connected once, on first use, from the instance or URL it was
// given; and the background setups (registrations, subscriptions) that sends wait for, so a send
// right after `registerAgent()` finds the recipient in place.

/** The transport of one bus and the setups under way on it. */
export class TransportLink {
  /** The transport once connected (undefined before). */
  current: Transport | undefined = undefined;
  /** True when the bus made the transport (from a URL or the default), so it closes it too. */
  readonly owned: boolean;
  readonly #spec: Transport | string | undefined;
  #opening: Promise<Transport> | undefined;
  /** Background setups under way; each settles (never rejects) when its setup ends. */
  readonly #pending = new Set<Promise<void>>();
  /** The failures of background setups, first first (`ready()` throws the first). */
  readonly errors: unknown[] = [];
  readonly #onError: (err: unknown, what: string) => void;

  constructor(spec: Transport | string | undefined, onError: (err: unknown, what: string) => void) {
    this.#spec = spec;
    this.owned = spec === undefined || typeof spec === 'string';
    this.#onError = onError;
  }

  /** A background setup is under way: a send waits for it before it takes the transport. */
  get busy(): boolean {
    return this.#pending.size > 0;
  }

  /** The transport, connected (made from the URL or the default the first time). */
  connect(): Promise<Transport> {
    if (this.current !== undefined) return Promise.resolve(this.current);
    this.#opening ??= (async () => {
      try {
        const spec = this.#spec;
        const t = spec !== undefined && typeof spec !== 'string' ? spec : await resolveTransportUrl(spec);
        await t.connect();
        this.current = t;
        return t;
      } catch (err) {
        this.#opening = undefined;
        throw err;
      }
    })();
    return this.#opening;
  }

  /** The transport, after every pending setup settled. */
  async ready(): Promise<Transport> {
    const t = this.current ?? (await this.connect());
    if (this.#pending.size > 0) await this.settle();
    return t;
  }

  /**
   * Tracks a background setup: its failure is counted, logged and kept for `ready()`, and the
   * returned promise never surfaces as an unhandled rejection when its caller ignores it.
   */
  track(promise: Promise<void>, what: string): Promise<void> {
    const tracked = promise.then(
      () => undefined,
      (err: unknown) => {
        this.errors.push(err);
        this.#onError(err, what);
        throw err;
      },
    );
    const settled = tracked.then(
      () => undefined,
      () => undefined,
    );
    this.#pending.add(settled);
    void settled.then(() => this.#pending.delete(settled));
    tracked.catch(() => undefined);
    return tracked;
  }

  /** Resolves once no setup is under way (those started meanwhile included). */
  async settle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }
}

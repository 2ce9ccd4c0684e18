import type { Message } from '../message.js';
import type { DeadLetter, Transport } from '../bus/transport.js';
import type { StateStore } from '../state/store.js';
import type { ChangeEvent } from '../state/types.js';

/** Options of {@link BackendObserver}. */
export interface BackendObserverOptions {
  /** The bus backend to watch: every message sent or published on it (all processes), and its dead letters. */
  transport?: Transport;
  /** The state backend to watch: its change feed (every committed document version and workflow write). */
  store?: StateStore;
  /** How many messages and changes are kept for late readers (default 2000 each). */
  keep?: number;
  /** How often the dead-letter queue is listed to notice new letters (default 1000 ms; 0 = never). */
  deadLetterPollMs?: number;
}

/** What an observer tells its listeners. */
export type ObservedEvent =
  | { kind: 'message'; at: number; message: Message }
  | { kind: 'change'; at: number; change: ChangeEvent }
  | { kind: 'dead_letter'; at: number; letter: DeadLetter }
  | { kind: 'redriven'; at: number; messageId: string };

/** Most dead letters read per poll. */
const DLQ_SCAN = 10_000;

/**
 * Watches a shared backend from the outside, for a dashboard or an exporter: it subscribes to
 * `'*'` on the transport (the bus publishes every point-to-point message it enqueues there, so
 * the observer sees the traffic of every process), follows the state store's change feed, and
 * lists the dead-letter queue on a timer to notice letters as they appear. It adds nothing to
 * any delivery path: what it sees is what the backend already broadcasts.
 */
export class BackendObserver {
  readonly transport: Transport | undefined;
  readonly store: StateStore | undefined;
  readonly #keep: number;
  readonly #pollMs: number;
  readonly #messages: Array<{ at: number; message: Message }> = [];
  readonly #changes: Array<{ at: number; change: ChangeEvent }> = [];
  readonly #listeners = new Set<(event: ObservedEvent) => void>();
  /** Dead letters present at the last poll, by message id. */
  #letters = new Map<string, DeadLetter>();
  #primed = false;
  #offs: Array<() => Promise<void>> = [];
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #closed = false;

  constructor(options: BackendObserverOptions) {
    this.transport = options.transport;
    this.store = options.store;
    this.#keep = options.keep ?? 2000;
    this.#pollMs = options.deadLetterPollMs ?? 1000;
  }

  /** Subscribes and starts polling; resolves once the subscriptions are live. */
  async start(): Promise<void> {
    if (this.transport) {
      this.#offs.push(await this.transport.subscribe('*', (message) => this.#onMessage(message)));
      await this.pollDeadLetters();
      if (this.#pollMs > 0) {
        this.#timer = setInterval(() => void this.pollDeadLetters(), this.#pollMs);
        this.#timer.unref();
      }
    }
    if (this.store) {
      const from = Math.max(0, (await this.store.currentRevision()) - this.#keep);
      this.#offs.push(await this.store.watch((change) => this.#onChange(change), { afterRevision: from }));
    }
  }

  /** Calls `listener` with everything observed from now on; returns the function that stops it. */
  listen(listener: (event: ObservedEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Messages seen, oldest first (at most `keep`). */
  messages(): ReadonlyArray<{ at: number; message: Message }> {
    return this.#messages;
  }

  /** State changes seen, oldest first (at most `keep`, the most recent ones since before the start included). */
  changes(): ReadonlyArray<{ at: number; change: ChangeEvent }> {
    return this.#changes;
  }

  /** The dead letters as of the last poll, oldest first. */
  deadLetters(): DeadLetter[] {
    return [...this.#letters.values()];
  }

  /** Lists the dead-letter queue now and reports letters not seen before (one poll at a time). */
  pollDeadLetters(): Promise<void> {
    if (!this.transport || this.#closed) return Promise.resolve();
    this.#polling ??= (async () => {
      try {
        const letters = await this.transport!.listDeadLetters({ limit: DLQ_SCAN });
        const next = new Map(letters.map((l) => [l.message.id, l]));
        if (this.#primed) {
          for (const [id, letter] of next) {
            const before = this.#letters.get(id);
            if (!before || before.deadAt.getTime() !== letter.deadAt.getTime()) this.#emit({ kind: 'dead_letter', at: Date.now(), letter });
          }
        }
        this.#letters = next;
        this.#primed = true;
      } catch {
        // The backend is unreachable for a moment: the next poll tries again.
      } finally {
        this.#polling = undefined;
      }
    })();
    return this.#polling;
  }

  /** Tells listeners a dead letter was put back (by this process). */
  redriven(messageId: string): void {
    this.#letters.delete(messageId);
    this.#emit({ kind: 'redriven', at: Date.now(), messageId });
  }

  /** Ends the subscriptions and the polling. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await Promise.allSettled(this.#offs.map((off) => off()));
    await this.#polling;
    this.#listeners.clear();
  }

  #onMessage(message: Message): void {
    const at = Date.now();
    this.#push(this.#messages, { at, message });
    this.#emit({ kind: 'message', at, message });
  }

  #onChange(change: ChangeEvent): void {
    const at = Date.now();
    this.#push(this.#changes, { at, change });
    this.#emit({ kind: 'change', at, change });
  }

  #push<T>(list: T[], item: T): void {
    list.push(item);
    if (list.length > this.#keep) list.splice(0, list.length - this.#keep);
  }

  #emit(event: ObservedEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // A failing listener (a closed SSE stream) must not stop the others.
      }
    }
  }
}

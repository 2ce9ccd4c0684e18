import { ValidationError } from '../errors.js';
import type { CommitRequest, HistoryRange } from './store.js';
import type { ChangeEvent } from './types.js';
import { copyEvent } from './copy.js';

/**
 * Small pieces every StateStore implementation needs: the commit sanity check and an
 * ordered, per-subscriber change fan-out. Backends import them so their own code stays thin.
 */

/** How many change-feed events a store keeps for `changesSince` (older ones are trimmed). */
export const CHANGE_FEED_RETENTION = 100_000;

/**
 * Checks what the manager asks a store to commit: the new version follows the expected one
 * and the history entry describes it. A failure here is a bug in the caller, not a conflict.
 */
export function checkCommitShape(request: CommitRequest): void {
  const { document, change, expectedVersion, historyLimit } = request;
  const next = (expectedVersion ?? 0) + 1;
  if (document.version !== next || change.version !== next) {
    throw new ValidationError(
      `commit of \`${document.documentId}\` on top of version ${expectedVersion ?? 'none'} must write version ${next}, ` +
        `got document version ${document.version} and history version ${change.version}`,
    );
  }
  if (!Number.isInteger(historyLimit) || historyLimit < 1) {
    throw new ValidationError(`historyLimit must be an integer >= 1, got \`${String(historyLimit)}\``, { field: 'historyLimit' });
  }
}

/**
 * The versions `[from, to]` of `range` within the kept versions `[oldest, current]` (from > to
 * when none): what `getHistory` returns, for stores that address versions by number.
 */
export function historySpan(oldest: number, current: number, range: HistoryRange | undefined): { from: number; to: number } {
  let from = Math.max(oldest, (range?.after ?? 0) + 1);
  let to = Math.min(current, (range?.before ?? Number.MAX_SAFE_INTEGER) - 1);
  const limit = range?.limit;
  if (limit !== undefined) {
    if (range?.after !== undefined && range.before === undefined) to = Math.min(to, from + Math.max(0, limit) - 1);
    else from = Math.max(from, to - Math.max(0, limit) + 1);
  }
  return { from, to };
}

const RESOLVED = Promise.resolve();

interface Subscriber {
  handler: (event: ChangeEvent) => void;
  /** Highest revision queued to this subscriber. */
  cursor: number;
  queue: ChangeEvent[];
  flushing: boolean;
  active: boolean;
  /** Delivers the queue; made once per subscriber, so scheduling a flush allocates no closure. */
  flush: () => void;
}

/**
 * Delivers change events to watchers in revision order, each exactly once, asynchronously
 * (never inside the commit that produced them). Events at or below a subscriber's cursor are
 * skipped, so a store may hand the same batch to everyone and replay backlogs safely. A
 * throwing handler is reported as a process warning and does not stop the feed.
 */
export class ChangeFanout {
  #subscribers = new Set<Subscriber>();

  /** Adds a subscriber that wants events after `cursor`; returns its remover. */
  add(handler: (event: ChangeEvent) => void, cursor: number): () => void {
    const sub: Subscriber = { handler, cursor, queue: [], flushing: false, active: true, flush: () => this.#flush(sub) };
    this.#subscribers.add(sub);
    return () => {
      sub.active = false;
      sub.queue.length = 0;
      this.#subscribers.delete(sub);
    };
  }

  /** Number of subscribers. */
  get size(): number {
    return this.#subscribers.size;
  }

  /** The lowest cursor among subscribers (where a poller must read from), or null when none. */
  minCursor(): number | null {
    let min: number | null = null;
    for (const sub of this.#subscribers) if (min === null || sub.cursor < min) min = sub.cursor;
    return min;
  }

  /** Queues `events` (ascending revisions) to every subscriber that has not had them yet, each a copy of its own. */
  deliver(events: readonly ChangeEvent[]): void {
    for (const event of events) this.#queue(event, false);
  }

  /**
   * Queues one event made for this call and referenced nowhere else: the first subscriber that
   * takes it gets it as is, the others copies (saves a copy per commit for the usual single
   * watcher).
   */
  deliverFresh(event: ChangeEvent): void {
    this.#queue(event, true);
  }

  #queue(event: ChangeEvent, fresh: boolean): void {
    let spare = fresh;
    for (const sub of this.#subscribers) {
      if (event.revision <= sub.cursor) continue;
      sub.queue.push(spare ? event : copyEvent(event));
      spare = false;
      sub.cursor = event.revision;
      if (!sub.flushing) {
        sub.flushing = true;
        // A promise job rather than queueMicrotask, which wraps every callback in an
        // AsyncResource: measurable when every commit schedules one.
        void RESOLVED.then(sub.flush);
      }
    }
  }

  /** Drops every subscriber. */
  clear(): void {
    for (const sub of this.#subscribers) {
      sub.active = false;
      sub.queue.length = 0;
    }
    this.#subscribers.clear();
  }

  #flush(sub: Subscriber): void {
    try {
      for (let event = sub.queue.shift(); event && sub.active; event = sub.queue.shift()) {
        try {
          sub.handler(event);
        } catch (err) {
          process.emitWarning(`a state change watcher threw: ${err instanceof Error ? err.message : String(err)}`, {
            code: 'CONCORD_WATCH_HANDLER',
          });
        }
      }
    } finally {
      sub.flushing = false;
    }
  }
}

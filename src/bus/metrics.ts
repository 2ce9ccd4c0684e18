import type { Logger } from 'pino';
import type { Message } from '../message.js';
import { LatencyRecorder } from './latency.js';
import { isThenable } from './maybe.js';
import type { QueueDepth, Transport } from './transport.js';
import type { AgentMetrics, BusMetrics } from './types.js';

// What the bus counts and how it logs a message: the counters behind `metrics()`, the queue
// depths it reports per agent, and the cached debug check every message goes through.

/** The bus's counters (see {@link BusMetrics} for each one's meaning). */
export class BusCounters {
  sent = 0;
  published = 0;
  received = 0;
  acked = 0;
  errors = 0;
  subscriberErrors = 0;
  deadLetters = 0;
  retries = 0;
  duplicates = 0;
  lateReplies = 0;
  unroutable = 0;
  readonly latency = new LatencyRecorder();

  /** The `metrics()` figure of these counters, with the request and handler counts and per-agent figures. */
  report(pendingRequests: number, inFlight: number, agents: Record<string, AgentMetrics>): BusMetrics {
    const latency = this.latency.summary();
    return {
      messagesSent: this.sent,
      messagesPublished: this.published,
      messagesReceived: this.received,
      messagesAcked: this.acked,
      averageLatencyMs: latency.averageMs,
      latencyMs: { p50: latency.p50, p95: latency.p95, p99: latency.p99 },
      errors: this.errors,
      subscriberErrors: this.subscriberErrors,
      deadLetters: this.deadLetters,
      retries: this.retries,
      duplicates: this.duplicates,
      lateReplies: this.lateReplies,
      unroutableReplies: this.unroutable,
      pendingRequests,
      inFlight,
      agents,
    };
  }
}

const EMPTY_DEPTH: QueueDepth = Object.freeze({ ready: 0, delayed: 0, inFlight: 0 });

/**
 * Queue depths for `metrics()`, which is synchronous: a transport that answers `depth` at once
 * (memory) is read live; one that answers with a promise is read in the background and the last
 * figure it gave is reported meanwhile.
 */
export class DepthGauge {
  readonly #last = new Map<string, QueueDepth>();
  readonly #reading = new Set<string>();
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  read(t: Transport, queue: string): QueueDepth {
    if (this.#reading.has(queue)) return this.#last.get(queue) ?? EMPTY_DEPTH;
    let depth: ReturnType<Transport['depth']>;
    try {
      depth = t.depth(queue);
    } catch (err) {
      this.#log.debug({ err, queue }, 'reading a queue depth failed');
      return this.#last.get(queue) ?? EMPTY_DEPTH;
    }
    if (!isThenable(depth)) return depth;
    this.#reading.add(queue);
    depth.then(
      (d) => {
        this.#last.set(queue, d);
        this.#reading.delete(queue);
      },
      (err: unknown) => {
        this.#reading.delete(queue);
        this.#log.debug({ err, queue }, 'reading a queue depth failed');
      },
    );
    return this.#last.get(queue) ?? EMPTY_DEPTH;
  }
}

/**
 * The bus's logger, with the debug check every message makes cached per logger level (pino's
 * `levelVal` changes whenever its level does).
 */
export class BusLog {
  readonly logger: Logger;
  /**
   * The bus made its own logger (silent). Only children of it ever leave the bus (`ctx.log`), and a
   * child's level is its own, so this one stays silent: no level check per message.
   */
  readonly #silent: boolean;
  #seenLevel = Number.NaN;
  #debug = false;

  constructor(logger: Logger, silent: boolean) {
    this.logger = logger;
    this.#silent = silent;
  }

  get debugging(): boolean {
    if (this.#silent) return false;
    const level = this.logger.levelVal;
    if (level !== this.#seenLevel) {
      this.#seenLevel = level;
      this.#debug = this.logger.isLevelEnabled('debug');
    }
    return this.#debug;
  }

  /** A message as log fields. */
  fields(m: Message): Record<string, unknown> {
    return {
      id: m.id,
      type: m.type,
      sender: m.sender,
      recipient: m.recipient,
      correlationId: m.correlationId,
      attempt: m.attempt,
      traceparent: m.headers['traceparent'],
    };
  }

  /** A debug line about `m`, when debug lines are wanted. */
  message(what: string, m: Message, extra?: Record<string, unknown>): void {
    if (this.debugging) this.logger.debug(extra === undefined ? this.fields(m) : { ...this.fields(m), ...extra }, what);
  }
}

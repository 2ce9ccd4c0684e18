import type { Counter, Histogram, Registry } from 'prom-client';
import { ValidationError } from '../errors.js';
import type { Agent } from '../bus/agent.js';
import type { MessageBus } from '../bus/bus.js';
import type { DeadLetterReason, Transport } from '../bus/transport.js';
import type { BackendObserver } from './observer.js';

type PromClient = typeof import('prom-client');

/** Loads prom-client, an optional peer dependency, with an error that says what to install. */
export async function loadPromClient(): Promise<PromClient> {
  try {
    const mod = (await import('prom-client')) as PromClient & { default?: PromClient };
    return mod.default ?? mod;
  } catch (err) {
    throw new ValidationError('Prometheus metrics need the optional peer dependency prom-client: npm install prom-client', { cause: err });
  }
}

/** Options of {@link createConcordMetrics}. */
export interface ConcordMetricsOptions {
  /**
   * The backend's view (queues, leases, dead letters, traffic). With a shared backend (Redis) these
   * figures are the backend's, the same whichever process is scraped: the queue gauges are read at
   * scrape time, the traffic counters count what the observer saw since it started.
   */
  observer?: BackendObserver;
  /** This process's buses: their acks and retries (counters since each bus was created). */
  buses?: MessageBus[];
  /** The registry to add to (default: a new one). */
  registry?: Registry;
  /** Latency buckets of the two duration histograms, in seconds. */
  buckets?: number[];
}

/** The collector made by {@link createConcordMetrics}. */
export interface ConcordMetrics {
  readonly registry: Registry;
  /** The Prometheus text exposition of every metric in the registry. */
  text(): Promise<string>;
  /** The content type to serve `text()` with. */
  readonly contentType: string;
  /**
   * Wraps an agent so each delivery it handles is measured: wait (message creation to handler
   * start) and processing time, and redeliveries (attempt > 1). Register the wrapper instead.
   *
   * @example
   * bus.registerAgent('writer', metrics.instrumentAgent(writer));
   */
  instrumentAgent<A extends Agent>(agent: A): A;
}

const DEFAULT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const REASONS: DeadLetterReason[] = ['recipient_not_found', 'max_attempts', 'expired', 'malformed'];

/** A counter whose value is read from a monotonic source at scrape time. */
function setCounter(counter: Counter<string>, value: number, labels?: Record<string, string>): void {
  if (labels) {
    counter.remove(labels);
    counter.inc(labels, value);
  } else {
    counter.reset();
    counter.inc(value);
  }
}

/**
 * A prom-client collector of Concord's bus and state metrics, named as RabbitMQ's exporter names
 * its own: `concord_queue_messages{queue,state}` (gauge), `concord_queue_oldest_message_age_seconds`,
 * `concord_dead_letters{reason}` (gauge), `concord_messages_sent_total{type}`,
 * `concord_messages_published_total`, `concord_messages_dead_lettered_total{reason}`,
 * `concord_state_commits_total{kind,action}`, `concord_state_conflicts_total` (from the observer);
 * `concord_messages_acked_total`, `concord_messages_redelivered_total` (from `buses`);
 * `concord_message_wait_duration_seconds` and `concord_message_process_duration_seconds`
 * histograms (from agents wrapped with `instrumentAgent`). Labels are queue names, message types,
 * dead-letter reasons and change kinds: all bounded.
 *
 * @example
 * const observer = new BackendObserver({ transport, store });
 * await observer.start();
 * const metrics = await createConcordMetrics({ observer, buses: [bus] });
 * res.end(await metrics.text());
 */
export async function createConcordMetrics(options: ConcordMetricsOptions = {}): Promise<ConcordMetrics> {
  const prom = await loadPromClient();
  const registry = options.registry ?? new prom.Registry();
  const registers = [registry];
  const observer = options.observer;
  const transport: Transport | undefined = observer?.transport;
  const buses = options.buses ?? [];

  if (transport) {
    const queues = async (): Promise<string[]> => (transport.listQueues ? transport.listQueues() : []);
    new prom.Gauge({
      name: 'concord_queue_messages',
      help: 'Messages in a queue by state: ready (visible), delayed (retry backoff or not yet visible), leased (being handled)',
      labelNames: ['queue', 'state'],
      registers,
      async collect() {
        this.reset();
        for (const queue of await queues()) {
          const d = await transport.depth(queue);
          this.set({ queue, state: 'ready' }, d.ready);
          this.set({ queue, state: 'delayed' }, d.delayed);
          this.set({ queue, state: 'leased' }, d.inFlight);
        }
      },
    });
    new prom.Gauge({
      name: 'concord_queue_oldest_message_age_seconds',
      help: 'Age of the oldest message waiting (ready or delayed) in a queue; 0 when none waits',
      labelNames: ['queue'],
      registers,
      async collect() {
        this.reset();
        if (!transport.inspectQueue) return;
        const now = Date.now();
        for (const queue of await queues()) {
          const { oldestWaitingAt } = await transport.inspectQueue(queue, { limit: 0 });
          this.set({ queue }, oldestWaitingAt === null ? 0 : Math.max(0, now - oldestWaitingAt) / 1000);
        }
      },
    });
    new prom.Gauge({
      name: 'concord_dead_letters',
      help: 'Messages in the dead-letter queue now, by reason',
      labelNames: ['reason'],
      registers,
      async collect() {
        await observer!.pollDeadLetters();
        const counts = new Map<string, number>(REASONS.map((r) => [r, 0]));
        for (const l of observer!.deadLetters()) counts.set(l.reason, (counts.get(l.reason) ?? 0) + 1);
        for (const [reason, n] of counts) this.set({ reason }, n);
      },
    });
  }

  if (observer) {
    const sent = new prom.Counter({
      name: 'concord_messages_sent_total',
      help: 'Point-to-point messages enqueued on the backend (any process), by type, since the observer started',
      labelNames: ['type'],
      registers,
    });
    const published = new prom.Counter({
      name: 'concord_messages_published_total',
      help: 'Topic publications on the backend (any process) since the observer started',
      registers,
    });
    const dead = new prom.Counter({
      name: 'concord_messages_dead_lettered_total',
      help: 'Messages that entered the dead-letter queue since the observer started, by reason',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of REASONS) dead.inc({ reason }, 0);
    const commits = new prom.Counter({
      name: 'concord_state_commits_total',
      help: 'State commits on the store (any process): document versions and workflow writes, by kind and action',
      labelNames: ['kind', 'action'],
      registers,
    });
    const conflicts = new prom.Counter({
      name: 'concord_state_conflicts_total',
      help: 'Document edits that met a concurrent change and were merged onto it (action merge in the change feed)',
      registers,
    });
    conflicts.inc(0);
    const startedAt = Date.now();
    observer.listen((event) => {
      if (event.kind === 'message') {
        if (event.message.recipient === '') published.inc();
        else sent.inc({ type: event.message.type });
      } else if (event.kind === 'dead_letter') dead.inc({ reason: event.letter.reason });
      else if (event.kind === 'change' && event.change.timestamp.getTime() >= startedAt) {
        commits.inc({ kind: event.change.kind, action: event.change.action });
        if (event.change.action === 'merge') conflicts.inc();
      }
    });
  }

  if (buses.length > 0) {
    new prom.Counter({
      name: 'concord_messages_acked_total',
      help: "Deliveries acknowledged by this process's buses",
      registers,
      collect() {
        setCounter(
          this,
          buses.reduce((n, b) => n + b.metrics().messagesAcked, 0),
        );
      },
    });
    new prom.Counter({
      name: 'concord_messages_redelivered_total',
      help: "Failed deliveries this process's buses scheduled for another attempt",
      registers,
      collect() {
        setCounter(
          this,
          buses.reduce((n, b) => n + b.metrics().retries, 0),
        );
      },
    });
  }

  const buckets = options.buckets ?? DEFAULT_BUCKETS;
  let wait: Histogram<string> | undefined;
  let proc: Histogram<string> | undefined;
  let redelivered: Counter<string> | undefined;
  const histograms = () => {
    wait ??= new prom.Histogram({
      name: 'concord_message_wait_duration_seconds',
      help: 'Time from a message’s creation to the start of its handling, by agent',
      labelNames: ['queue'],
      buckets,
      registers,
    });
    proc ??= new prom.Histogram({
      name: 'concord_message_process_duration_seconds',
      help: 'Time a handler took, by agent and outcome (ok or error)',
      labelNames: ['queue', 'outcome'],
      buckets,
      registers,
    });
    redelivered ??=
      buses.length > 0
        ? undefined
        : new prom.Counter({
            name: 'concord_messages_redelivered_total',
            help: 'Deliveries with attempt > 1 handled by instrumented agents of this process',
            registers,
          });
    return { wait, process: proc, redelivered };
  };

  return {
    registry,
    contentType: registry.contentType,
    text: () => registry.metrics(),
    instrumentAgent<A extends Agent>(agent: A): A {
      const h = histograms();
      const queue = agent.name;
      const wrapped: Agent = {
        name: agent.name,
        ...(agent.concurrency !== undefined ? { concurrency: agent.concurrency } : {}),
        async handleMessage(message, ctx) {
          const start = Date.now();
          h.wait.observe({ queue }, Math.max(0, start - message.timestamp.getTime()) / 1000);
          if (message.attempt > 1) h.redelivered?.inc();
          const end = h.process.startTimer({ queue });
          try {
            const result = await agent.handleMessage(message, ctx);
            end({ outcome: 'ok' });
            return result;
          } catch (err) {
            end({ outcome: 'error' });
            throw err;
          }
        },
      };
      return wrapped as A;
    },
  };
}

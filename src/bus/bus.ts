import { pino, type Logger } from 'pino';
import { ClosedError, ConcordError, RecipientNotFoundError, RemoteError, RequestTimeoutError, ValidationError } from '../errors.js';
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  MAX_NAME_LENGTH,
  MessageType,
  childTraceparent,
  createTracedMessage,
  decodeMessage,
  describeValue,
  newId,
  STAMP_OWN_HEADERS,
  STAMP_SELF_CORRELATED,
  STAMP_TRACE,
  type Message,
  type MessageInput,
} from '../message.js';
import { resolveTransport } from '../backends/resolve.js';
import type { StateManager } from '../state/manager.js';
import { validateAgentName, type Agent, type AgentContext } from './agent.js';
import { backoffDelay, resolveBackoff, type BackoffOptions } from './backoff.js';
import { IndexedHeap, type HeapItem } from './heap.js';
import { LatencyRecorder } from './latency.js';
import { startTimer, timerDelay, type Timer } from '../timers.js';
import { checkMisspeltNames, checkOptionNames, optionNames } from '../options.js';
import type { DeadLetter, DeadLetterReason, EnqueueEntry, EnqueueResult, Lease, QueueDepth, Transport } from './transport.js';
import { INBOX_PREFIX } from './transport.js';

// ------------------------------------------------------------------------------------ public types

/** Options of {@link MessageBus}. Every duration is in milliseconds. */
export interface MessageBusOptions {
  /** A transport instance or a URL (`memory://`, `redis://host:6379/0?namespace=app`). Default: a private memory transport. */
  transport?: Transport | string;
  /** Deliveries a message gets before it is dead-lettered with reason `max_attempts` (default 5). */
  maxAttempts?: number;
  /** Spacing of retries after a handler throws or a delivery is nacked. */
  backoff?: Partial<BackoffOptions>;
  /** How long a consumer owns a delivery before it is redelivered to someone else (default 60 000). */
  leaseMs?: number;
  /**
   * Largest payload accepted, as JSON bytes (default 1 MiB). It cannot raise the wire limit every
   * message is held to at `send()` (MAX_SEND_WIRE_BYTES, about 1 MiB + 64 KiB with headers), so
   * every consumer can decode what is sent.
   */
  maxPayloadBytes?: number;
  /** A pino logger; the bus logs nothing without one. Every message is logged at `debug`. */
  logger?: Logger;
  /** How long a producer-given message id is remembered to drop duplicate sends (default 300 000; 0 = off). */
  dedupeWindowMs?: number;
  /** Default `timeout` of `request()` (default 30 000). */
  requestTimeoutMs?: number;
  /** Default time `close()` lets in-flight handlers finish (default 10 000). */
  drainTimeoutMs?: number;
  /** A state manager handed to handlers as `ctx.state`. */
  state?: StateManager;
}

/** What `send` takes: see {@link MessageInput}. `id` makes the send idempotent within the dedupe window. */
export type SendInput<P = Record<string, unknown>> = MessageInput<P>;

/** What `publish` takes. The publication goes to subscribers of `topic ?? type` (and `'*'`). */
export interface PublishInput<P = Record<string, unknown>> {
  type: MessageType;
  sender: string;
  payload: P;
  /** A custom topic; recorded in `headers.topic`. */
  topic?: string;
  priority?: number;
  correlationId?: string;
  headers?: Record<string, string>;
  id?: string;
}

/** What `request` takes: a TASK (or FEEDBACK) to `recipient` and how long to wait for its reply. */
export interface RequestInput<P = Record<string, unknown>> {
  sender: string;
  recipient: string;
  payload: P;
  /**
   * TASK (default), or FEEDBACK for a request that sends work back with what to change (a
   * revision round): both ask for a reply, and the handler's return value becomes the RESULT.
   */
  type?: typeof MessageType.TASK | typeof MessageType.FEEDBACK;
  /** How long to wait for the reply (default: the bus's `requestTimeoutMs`). */
  timeout?: number;
  priority?: number;
  /** Defaults to the request's own id, so the whole exchange shares one correlation. */
  correlationId?: string;
  headers?: Record<string, string>;
  ttlMs?: number;
  id?: string;
}

/** Options of `receive`. */
export interface ReceiveOptions {
  /** How long to wait for a message; 0 (default) returns null at once when none is ready. */
  timeout?: number;
  /** Lease of this delivery (default: the bus's `leaseMs`). */
  leaseMs?: number;
}

/** Options of `reply`. */
export interface ReplyOptions {
  /** RESULT unless given (ERROR makes the requester's `request()` reject with `RemoteError`). */
  type?: MessageType;
  /** Who answers (default: the request's recipient). */
  sender?: string;
}

/** Options of `close`. */
export interface CloseOptions {
  /** How long in-flight handlers may still run before their `ctx.signal` is aborted and close returns. */
  drainTimeoutMs?: number;
}

/**
 * A message received in pull mode: the message's fields plus what to do with it. Exactly one of
 * `ack`/`nack` settles it; both resolve false when the lease was already lost (it ran out and the
 * message went to another consumer) or the delivery was settled before.
 */
export interface Delivery<P = Record<string, unknown>> extends Message<P> {
  /** Epoch ms when the lease runs out and the message is redelivered. */
  readonly leaseDeadline: number;
  /** Done with it: removes the message for good. */
  ack(): Promise<boolean>;
  /**
   * Failed: retried after `delayMs` (default: the bus's backoff), or dead-lettered with reason
   * `max_attempts` and this error when it was the last attempt.
   */
  nack(error?: unknown, options?: { delayMs?: number }): Promise<boolean>;
  /** Keeps the lease for another `ms` from now. */
  extendLease(ms: number): Promise<boolean>;
}

/** Called with each message a subscription matches. Failures are logged and counted, never propagated. */
export type SubscriptionHandler = (message: Message) => void | Promise<void>;

/** A live subscription. */
export interface Subscription {
  /** The topic: a message type, a custom topic or `'*'`. */
  readonly topic: string;
  /** Resolves once the subscription receives messages (immediately on the memory transport). */
  readonly ready: Promise<void>;
  /** Ends it; idempotent. */
  unsubscribe(): Promise<void>;
}

export type { DeadLetter, DeadLetterReason };

/** Queue figures of one registered agent. */
export interface AgentMetrics {
  /** Messages waiting: ready + delayed. */
  queueDepth: number;
  /** Visible, waiting for a consumer. */
  ready: number;
  /** Waiting for a retry backoff to pass. */
  delayed: number;
  /** Leased by some consumer (on any bus sharing the backend). */
  inFlight: number;
  /** Handlers of this agent running on this bus now. */
  handling: number;
}

/** What `metrics()` reports. Counters are since the bus was created. */
export interface BusMetrics {
  /** Point-to-point messages enqueued (replies included, duplicates not). */
  messagesSent: number;
  /** Topic publications (`publish`, and `send` to recipient `''`). */
  messagesPublished: number;
  /** Deliveries to handlers, `receive` callers and waiting requests (redeliveries count again). */
  messagesReceived: number;
  /** Deliveries acknowledged. */
  messagesAcked: number;
  /** Mean time from a message's timestamp to its delivery. */
  averageLatencyMs: number;
  /** Delivery latency percentiles over the most recent deliveries. */
  latencyMs: { p50: number; p95: number; p99: number };
  /** Handler failures, subscriber failures and transport failures seen by consumer loops. */
  errors: number;
  /** Of `errors`, those thrown by subscribers. */
  subscriberErrors: number;
  /** Messages this bus put in the dead-letter queue. */
  deadLetters: number;
  /** Failed deliveries scheduled for another attempt. */
  retries: number;
  /** Sends dropped as duplicates of an id seen inside the dedupe window. */
  duplicates: number;
  /** Replies that arrived for no waiting request (timed out, or not ours). */
  lateReplies: number;
  /** Automatic replies not sent because the sender is no agent and gave no reply inbox. */
  unroutableReplies: number;
  /** Requests waiting for their reply. */
  pendingRequests: number;
  /** Handlers running on this bus, all agents. */
  inFlight: number;
  /** Per registered agent (depths are synchronous on the memory transport, refreshed in the background otherwise). */
  agents: Record<string, AgentMetrics>;
}

// ------------------------------------------------------------------------------------ constants

/** How long one consumer-loop lease call blocks before looping (closing aborts it earlier). */
const LOOP_WAIT_MS = 5_000;
/** Replies taken from the inbox per lease call. */
const INBOX_BATCH = 256;
/** Pause after a transport failure in a consumer loop before trying again. */
const LOOP_ERROR_PAUSE_MS = 250;
/**
 * A consumer draining a backlog from a synchronous transport never waits for I/O. Every
 * YIELD_CHECK deliveries it looks at the clock, and after YIELD_AFTER_MS busy without waiting it
 * yields to the event loop (timers, I/O) if the backlog is really draining. If producers keep
 * refilling the queue from microtasks, yielding would only hand them the loop (they, not the
 * consumer, are what holds up I/O then), so it does not.
 */
const YIELD_CHECK = 256;
const YIELD_AFTER_MS = 20;
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The drain-or-not bookkeeping of one consumer loop (see YIELD_AFTER_MS). */
class YieldPacer {
  #sinceCheck = 0;
  #busySince = 0;
  #readyAtStart = 0;
  #deliveredSinceStart = 0;
  readonly #transport: Transport;
  readonly #queue: string;

  constructor(transport: Transport, queue: string) {
    this.#transport = transport;
    this.#queue = queue;
  }

  /** The consumer waited for work: it is not monopolising the loop. */
  waited(): void {
    this.#sinceCheck = 0;
    this.#busySince = 0;
  }

  /** Counts deliveries taken without waiting; resolves true when the consumer should yield now. */
  delivered(n: number): boolean {
    this.#sinceCheck += n;
    if (this.#sinceCheck < YIELD_CHECK) return false;
    this.#deliveredSinceStart += this.#sinceCheck;
    this.#sinceCheck = 0;
    const now = Date.now();
    const ready = this.#transport.depthNow?.(this.#queue).ready ?? 0;
    if (this.#busySince === 0) {
      this.#busySince = now;
      this.#readyAtStart = ready;
      this.#deliveredSinceStart = 0;
      return false;
    }
    if (now - this.#busySince < YIELD_AFTER_MS) return false;
    const draining = this.#readyAtStart - ready >= this.#deliveredSinceStart / 2;
    this.#busySince = 0;
    return draining;
  }
}

/** `visibleAt` of an enqueue that is visible at once (any past time is; 0 spares a clock read). */
const IMMEDIATELY = 0;

const VERDICT_OK = 0;
const VERDICT_EXPIRED = 1;
const VERDICT_EXHAUSTED = 2;

// ------------------------------------------------------------------------------------ internals

/** A push or pull agent registered on this bus. */
class Registration {
  readonly name: string;
  readonly agent: Agent | undefined;
  readonly concurrency: number;
  readonly controller = new AbortController();
  /** Handlers of this agent running now. */
  running = 0;
  stopped = false;
  setup: Promise<void> = Promise.resolve();
  loop: Promise<void> = Promise.resolve();
  /** Wakes the consumer loop when a handler slot frees up. */
  slot: (() => void) | null = null;

  constructor(name: string, agent: Agent | undefined) {
    this.name = name;
    this.agent = agent;
    this.concurrency = agent?.concurrency ?? 1;
  }
}

/** A request waiting for its reply; ordered by deadline in the bus's timeout heap. */
class PendingRequest implements HeapItem {
  heapIndex = -1;
  readonly id: string;
  readonly recipient: string;
  readonly timeoutMs: number;
  readonly deadline: number;
  readonly resolve: (message: Message) => void;
  readonly reject: (error: unknown) => void;
  readonly promise: Promise<Message>;

  constructor(id: string, recipient: string, timeoutMs: number, now: number) {
    this.id = id;
    this.recipient = recipient;
    this.timeoutMs = timeoutMs;
    this.deadline = now + timeoutMs;
    let resolve!: (message: Message) => void;
    let reject!: (error: unknown) => void;
    this.promise = new Promise<Message>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.resolve = resolve;
    this.reject = reject;
  }
}

/** What handler contexts and deliveries reach inside their bus (one object per bus, no per-message closures). */
interface BusOps {
  readonly logger: Logger;
  readonly state: StateManager | undefined;
  /** True once close() gave up draining: every handler signal is then aborted. */
  aborted(): boolean;
  sendFrom(ctx: HandlerContext, input: Omit<MessageInput<unknown>, 'sender'> & { sender?: string }): Promise<Message<unknown>>;
  reply(request: Message, payload: unknown, options: ReplyOptions | undefined): Promise<Message<unknown>>;
  extend(lease: Lease, ms: number): Promise<boolean>;
  watch(ctx: HandlerContext): void;
  ack(lease: Lease): Promise<boolean>;
  nack(lease: Lease, error: unknown, delayMs: number | undefined): Promise<boolean>;
}

/** The `ctx` a handler gets. Signal and logger are made on first use: most handlers never touch them. */
class HandlerContext implements AgentContext {
  readonly agent: string;
  readonly message: Message;
  /** Epoch ms the lease runs out (kept up to date by `extendLease`). */
  deadline: number;
  /** Set once the handler replied itself (no automatic RESULT then). */
  replied = false;
  /** Set once the handler settled. */
  finished = false;
  readonly #ops: BusOps;
  readonly #lease: Lease;
  #controller: AbortController | undefined;
  #log: Logger | undefined;

  constructor(ops: BusOps, agent: string, lease: Lease) {
    this.#ops = ops;
    this.agent = agent;
    this.message = lease.message;
    this.#lease = lease;
    this.deadline = lease.deadline;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#ops.aborted()) this.#controller.abort(new ClosedError('message bus'));
      else if (!this.finished) this.#ops.watch(this);
    }
    return this.#controller.signal;
  }

  get log(): Logger {
    return (this.#log ??= this.#ops.logger.child({ agent: this.agent, messageId: this.message.id }));
  }

  get state(): StateManager | undefined {
    return this.#ops.state;
  }

  send<P = Record<string, unknown>>(input: Omit<MessageInput<P>, 'sender'> & { sender?: string }): Promise<Message<P>> {
    return this.#ops.sendFrom(this, input) as Promise<Message<P>>;
  }

  reply<P = Record<string, unknown>>(payload: P, options?: { type?: MessageType }): Promise<Message<P>> {
    this.replied = true;
    return this.#ops.reply(this.message, payload, { type: options?.type, sender: this.agent }) as Promise<Message<P>>;
  }

  async extendLease(ms: number): Promise<boolean> {
    const ok = await this.#ops.extend(this.#lease, ms);
    if (ok) this.deadline = Date.now() + ms;
    else this.abort(new Error(`lease on message ${this.message.id} was lost`));
    return ok;
  }

  /** Aborts `signal` if anybody holds it. */
  abort(reason: unknown): void {
    if (this.#controller !== undefined && !this.#controller.signal.aborted) this.#controller.abort(reason);
  }

  /** Whether a signal was handed out (only those need watching). */
  get watched(): boolean {
    return this.#controller !== undefined;
  }
}

/** A pull-mode delivery: the message's fields plus ack/nack/extendLease. */
class PullDelivery implements Delivery {
  readonly id: string;
  readonly type: MessageType;
  readonly sender: string;
  readonly recipient: string;
  readonly payload: Record<string, unknown>;
  readonly timestamp: Date;
  readonly priority: number;
  readonly correlationId?: string;
  readonly headers: Record<string, string>;
  readonly attempt: number;
  readonly ttlMs?: number;
  readonly #ops: BusOps;
  readonly #lease: Lease;
  #settled = false;
  #deadline: number;

  constructor(ops: BusOps, lease: Lease) {
    const m = lease.message;
    this.id = m.id;
    this.type = m.type;
    this.sender = m.sender;
    this.recipient = m.recipient;
    this.payload = m.payload;
    this.timestamp = m.timestamp;
    this.priority = m.priority;
    if (m.correlationId !== undefined) this.correlationId = m.correlationId;
    this.headers = m.headers;
    this.attempt = m.attempt;
    if (m.ttlMs !== undefined) this.ttlMs = m.ttlMs;
    this.#ops = ops;
    this.#lease = lease;
    this.#deadline = lease.deadline;
  }

  get leaseDeadline(): number {
    return this.#deadline;
  }

  async ack(): Promise<boolean> {
    if (this.#settled) return false;
    this.#settled = true;
    return this.#ops.ack(this.#lease);
  }

  async nack(error?: unknown, options?: { delayMs?: number }): Promise<boolean> {
    if (this.#settled) return false;
    const delayMs = options?.delayMs;
    if (delayMs !== undefined && !(delayMs >= 0 && Number.isFinite(delayMs))) {
      throw new ValidationError(`nack delayMs must be a finite number >= 0, got \`${String(delayMs)}\``, { field: 'delayMs' });
    }
    this.#settled = true;
    return this.#ops.nack(this.#lease, error, delayMs);
  }

  async extendLease(ms: number): Promise<boolean> {
    if (this.#settled) return false;
    const ok = await this.#ops.extend(this.#lease, ms);
    if (ok) this.#deadline = Date.now() + ms;
    return ok;
  }
}

class BusSubscription implements Subscription {
  readonly topic: string;
  ready: Promise<void> = Promise.resolve();
  off: (() => Promise<void>) | undefined;
  cancelled = false;
  readonly #onEnd: (sub: BusSubscription) => void;

  constructor(topic: string, onEnd: (sub: BusSubscription) => void) {
    this.topic = topic;
    this.#onEnd = onEnd;
  }

  async unsubscribe(): Promise<void> {
    if (this.cancelled) return;
    this.cancelled = true;
    this.#onEnd(this);
    await this.ready.catch(() => undefined);
    const off = this.off;
    this.off = undefined;
    if (off !== undefined) await off();
  }
}

/**
 * Whether a handler's outcome goes back to the sender as a RESULT or ERROR: every TASK, and a
 * FEEDBACK sent by `request` (it carries the requester's reply inbox).
 */
function asksForReply(m: Message): boolean {
  return m.type === MessageType.TASK || (m.type === MessageType.FEEDBACK && m.headers['replyTo'] !== undefined);
}

/** A failure as the text a dead letter keeps. Never throws (dead-lettering must not): whatever was thrown. */
function errorText(error: unknown): string {
  try {
    if (error instanceof Error) return error.message || error.name;
    if (error === undefined) return 'nacked';
    return typeof error === 'string' ? error : (JSON.stringify(error) ?? String(error));
  } catch {
    try {
      return String(error);
    } catch {
      return 'an error that cannot be shown';
    }
  }
}

/** How long a redrive holds its claim on a letter before another may take it (it settles far sooner). */
const REDRIVE_CLAIM_MS = 30_000;

/**
 * The message a redrive enqueues: the letter's, restarted (attempt 0, no ttl); or, when the
 * letter holds a stand-in (its `raw` field), the message its raw bytes decode to.
 */
function redriveMessage(letter: DeadLetter): Message {
  let original = letter.message;
  if (letter.raw !== undefined || letter.reason === 'malformed') {
    try {
      original = decodeMessage(letter.raw);
    } catch (err) {
      throw new ValidationError(
        `dead letter ${letter.message.id} cannot be redriven: its raw bytes are not a message (${(err as Error).message}); ` +
          'it stays in the dead-letter queue, with its raw bytes (getDeadLetters)',
        { field: 'id', cause: err },
      );
    }
  }
  const { ttlMs: _ttl, ...rest } = original;
  return { ...rest, attempt: 0 };
}

function errorPayload(error: unknown, attempts: number): Record<string, unknown> {
  const payload: Record<string, unknown> = { message: errorText(error), attempts };
  if (error instanceof Error) {
    payload['name'] = error.name;
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string') payload['code'] = code;
  }
  return payload;
}

/** A handler's return value as a reply payload: objects and arrays as they are, anything else as `{ value }`. */
function resultPayload(result: unknown): Record<string, unknown> {
  return result !== null && typeof result === 'object' ? (result as Record<string, unknown>) : { value: result };
}

const noop = (): void => undefined;

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';
}

function requirePositive(field: string, value: unknown, allowZero = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new ValidationError(`${field} must be a finite number ${allowZero ? '>= 0' : '> 0'}, got \`${String(value)}\``, { field });
  }
  return value;
}

function requireTopic(topic: unknown): string {
  if (typeof topic !== 'string' || topic.length === 0 || topic.length > MAX_NAME_LENGTH) {
    throw new ValidationError(`topic must be a non-empty string of at most ${MAX_NAME_LENGTH} characters, got \`${String(topic)}\``, {
      field: 'topic',
    });
  }
  return topic;
}

/** The option names each entry point knows (checked against its interface at compile time). */
const BUS_OPTIONS = optionNames<MessageBusOptions>()([
  'transport', 'maxAttempts', 'backoff', 'leaseMs', 'maxPayloadBytes', 'logger', 'dedupeWindowMs', 'requestTimeoutMs', 'drainTimeoutMs', 'state',
]);
const REQUEST_OPTIONS = optionNames<RequestInput>()([
  'sender', 'recipient', 'payload', 'type', 'timeout', 'priority', 'correlationId', 'headers', 'ttlMs', 'id',
]);
const RECEIVE_OPTIONS = optionNames<ReceiveOptions>()(['timeout', 'leaseMs']);
const CLOSE_OPTIONS = optionNames<CloseOptions>()(['drainTimeoutMs']);
const AGENT_FIELDS = optionNames<Agent>()(['name', 'concurrency', 'handleMessage']);

const EMPTY_DEPTH: QueueDepth = Object.freeze({ ready: 0, delayed: 0, inFlight: 0 });
const NO_LEASES: Lease[] = [];
/** Placeholder message of the reused enqueue entry between calls. */
const NO_MESSAGE = Object.freeze({}) as Message;

// ------------------------------------------------------------------------------------ the bus

/**
 * The message bus: point-to-point queues with priorities, retries, dead letters and dedupe;
 * push (agents) and pull (`receive`) delivery; topic subscriptions; request/reply. Semantics live
 * here; a {@link Transport} only stores and moves messages, so every backend behaves the same.
 *
 * Decisions worth knowing:
 * - `attempt` counts leases. A message whose lease keeps running out is dead-lettered
 *   (`max_attempts`, error `lease expired`) when it comes up for its attempt `maxAttempts + 1`.
 * - `ttlMs` is checked whenever the message comes up for delivery (first or retry): an expired
 *   one is dead-lettered (`expired`) instead. There is no background sweep, so a message in a
 *   queue nobody consumes stays there until somebody does.
 * - Dedupe applies to ids the producer chose (`send({ id })`): ids the bus generates are unique,
 *   and remembering them all would keep every message alive for the whole window.
 * - Recipients are shared by every bus on a backend; `close()` keeps them (queues are durable,
 *   a restarted agent picks up where it left), `unregisterAgent()` removes them.
 * - A TASK handler's return value, and its final failure, reply to the request's inbox
 *   (`headers.replyTo`) or else to the sender's queue; a sender that is no agent gets no
 *   automatic reply (counted in `unroutableReplies`).
 *
 * @example
 * const bus = new MessageBus();
 * bus.registerAgent('echo', defineAgent({ name: 'echo', handleMessage: (m) => ({ echoed: m.payload }) }));
 * const reply = await bus.request({ sender: 'me', recipient: 'echo', payload: { hi: 1 } });
 * await bus.close();
 */
export class MessageBus {
  /** Unique id of this bus instance; its reply inbox is the queue `_inbox.<id>`. */
  readonly id: string;

  readonly #spec: Transport | string | undefined;
  readonly #ownsTransport: boolean;
  #transport: Transport | undefined;
  #opening: Promise<Transport> | undefined;

  readonly #maxAttempts: number;
  readonly #backoff: BackoffOptions;
  readonly #leaseMs: number;
  readonly #maxPayloadBytes: number;
  readonly #dedupeMs: number;
  readonly #requestTimeoutMs: number;
  readonly #drainTimeoutMs: number;
  readonly #log: Logger;
  readonly #state: StateManager | undefined;
  readonly #ops: BusOps;

  readonly #agents = new Map<string, Registration>();
  /** Names `receive` found registered by another bus on the backend (asked once each). */
  readonly #knownRecipients = new Set<string>();
  /** Background setups (registrations, subscriptions) that sends wait for. */
  readonly #pending = new Set<Promise<void>>();
  readonly #setupErrors: unknown[] = [];
  readonly #subscriptions = new Set<BusSubscription>();
  /** Aborts every wait of this bus (consumer loops, inbox, receive) when it closes. */
  readonly #stop = new AbortController();

  readonly #inbox: string;
  #inboxLoop: Promise<void> | undefined;
  readonly #requests = new Map<string, PendingRequest>();
  readonly #requestDeadlines = new IndexedHeap<PendingRequest>((a, b) => a.deadline < b.deadline);
  #requestTimer: NodeJS.Timeout | null = null;
  #requestTimerAt = Infinity;

  readonly #watched = new Set<HandlerContext>();
  #watchTimer: NodeJS.Timeout | null = null;
  #watchTimerAt = Infinity;

  /** Handlers running now (all agents). */
  #running = 0;
  #onIdle: (() => void) | null = null;
  #closing = false;
  /** close() gave up draining: handler signals are aborted. */
  #aborted = false;
  #closed = false;
  #closePromise: Promise<void> | undefined;

  #sent = 0;
  #published = 0;
  #received = 0;
  #acked = 0;
  #errors = 0;
  #subscriberErrors = 0;
  #deadLetters = 0;
  #retries = 0;
  #duplicates = 0;
  #lateReplies = 0;
  #unroutable = 0;
  readonly #latency = new LatencyRecorder();
  /**
   * The bus made its own logger (silent). Only children of it ever leave the bus (`ctx.log`), and a
   * child's level is its own, so this one stays silent: no level check per message.
   */
  readonly #silent: boolean;
  #seenLevel = Number.NaN;
  #debug = false;
  readonly #depthCache = new Map<string, QueueDepth>();
  /** The clock reading of the last synchronous ack (see `#complete`), 0 when there was none. */
  #ackClock = 0;
  readonly #oneEntry: EnqueueEntry = { queue: '', message: NO_MESSAGE, visibleAt: IMMEDIATELY, requireRecipient: true, dedupeWindowMs: 0 };
  #depthRefresh: Promise<void> | undefined;

  /**
   * @throws ValidationError when an option is out of range (named in the message).
   */
  constructor(options: MessageBusOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw new ValidationError(`MessageBus options must be an object, got \`${String(options)}\``);
    }
    checkOptionNames(options, BUS_OPTIONS, 'MessageBus options');
    this.id = newId().toLowerCase();
    this.#spec = options.transport;
    this.#ownsTransport = options.transport === undefined || typeof options.transport === 'string';
    const maxAttempts = options.maxAttempts ?? 5;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
      throw new ValidationError(`maxAttempts must be an integer >= 1, got \`${String(maxAttempts)}\``, { field: 'maxAttempts' });
    }
    this.#maxAttempts = maxAttempts;
    this.#backoff = resolveBackoff(options.backoff);
    this.#leaseMs = requirePositive('leaseMs', options.leaseMs ?? 60_000);
    this.#maxPayloadBytes = requirePositive('maxPayloadBytes', options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES);
    this.#dedupeMs = requirePositive('dedupeWindowMs', options.dedupeWindowMs ?? 300_000, true);
    this.#requestTimeoutMs = requirePositive('requestTimeoutMs', options.requestTimeoutMs ?? 30_000);
    this.#drainTimeoutMs = requirePositive('drainTimeoutMs', options.drainTimeoutMs ?? 10_000, true);
    this.#log = options.logger ?? pino({ level: 'silent' });
    this.#silent = options.logger === undefined;
    this.#state = options.state;
    this.#inbox = `${INBOX_PREFIX}${this.id}`;
    this.#ops = {
      logger: this.#log,
      state: this.#state,
      aborted: () => this.#aborted,
      sendFrom: (ctx, input) => this.#sendFrom(ctx, input),
      reply: (request, payload, opts) => this.#reply(request, payload, opts, false) as Promise<Message<unknown>>,
      extend: (lease, ms) => this.#extend(lease, ms),
      watch: (ctx) => this.#watch(ctx),
      ack: (lease) => this.#ackPull(lease),
      nack: (lease, error, delayMs) => this.#nackPull(lease, error, delayMs),
    };
  }

  /**
   * Resolves once the transport is connected and every registration and subscription made so far
   * is live; rejects with the first failure among them.
   */
  async ready(): Promise<void> {
    await this.#transportNow();
    await this.#settlePending();
    if (this.#setupErrors.length > 0) throw this.#setupErrors[0];
  }

  // -------------------------------------------------------------------------------- agents

  /**
   * Registers an agent. With `agent`, its `handleMessage` gets the agent's messages (push; up to
   * `agent.concurrency` at once); without, the messages wait for `receive(name)` (pull). Either
   * way `name` becomes a recipient on the transport, visible to every bus sharing it. The work
   * happens in the background; `send`s from this bus wait for it.
   *
   * @throws ValidationError for a bad name or agent, or a name already registered on this bus.
   * @throws ClosedError after `close()`.
   */
  registerAgent(name: string, agent?: Agent): void {
    if (this.#closing) throw new ClosedError('message bus');
    validateAgentName(name);
    if (agent !== undefined) {
      if (agent === null || typeof agent.handleMessage !== 'function') {
        throw new ValidationError(`agent \`${name}\` needs a handleMessage(message, ctx) function`, { field: 'handleMessage' });
      }
      if (agent.name !== undefined && agent.name !== name) {
        throw new ValidationError(
          `registerAgent(\`${name}\`) was given the agent named \`${String(agent.name)}\`: register an agent under its own name (registerAgent(agent.name, agent))`,
          { field: 'name' },
        );
      }
      // Agents may carry fields of their own; only a near miss of a known one is a mistake.
      checkMisspeltNames(agent, AGENT_FIELDS, `agent \`${name}\``);
      const c = agent.concurrency;
      if (c !== undefined && (!Number.isInteger(c) || c < 1 || c > 10_000)) {
        throw new ValidationError(`concurrency must be an integer 1..10000, got \`${String(c)}\``, { field: 'concurrency' });
      }
    }
    if (this.#agents.has(name)) {
      throw new ValidationError(`agent \`${name}\` is already registered on this bus`, { field: 'name' });
    }
    const reg = new Registration(name, agent);
    this.#agents.set(name, reg);
    reg.setup = this.#track(
      (async () => {
        const t = await this.#transportNow();
        await t.addRecipient(name);
        if (reg.stopped) return;
        if (reg.agent !== undefined) reg.loop = this.#consume(t, reg);
        if (this.#isDebug()) {
          this.#log.debug({ agent: name, mode: reg.agent ? 'push' : 'pull', concurrency: reg.concurrency }, 'agent registered');
        }
      })(),
      `registering agent \`${name}\``,
    );
  }

  /**
   * Stops delivering to `name` on this bus and removes it as a recipient (sends to it then fail).
   * Messages already queued stay queued; handlers running finish. Resolves false if it was not registered.
   * Note that the recipient registry is shared: other buses consuming the same name stop receiving sends too.
   */
  async unregisterAgent(name: string): Promise<boolean> {
    const reg = this.#agents.get(name);
    if (reg === undefined) return false;
    this.#agents.delete(name);
    this.#stopRegistration(reg);
    await reg.setup.catch(() => undefined);
    const t = this.#transport;
    if (t !== undefined && !this.#closed) await t.removeRecipient(name);
    await reg.loop;
    return true;
  }

  // -------------------------------------------------------------------------------- sending

  /**
   * Sends a message to `recipient`'s queue (recipient `''`: a publication to subscribers of its
   * type). Resolves with the message as stamped (id, timestamp, `traceparent`), or, when the
   * producer gave an `id` already sent within the dedupe window, with the first message of that id
   * (nothing is enqueued again): give ids to make retries safe.
   *
   * @throws ValidationError before anything is enqueued, for a bad input.
   * @throws RecipientNotFoundError when no agent is registered as `recipient`; the message is then in
   *   the dead-letter queue with reason `recipient_not_found`.
   * @throws ClosedError after `close()`.
   */
  send<P = Record<string, unknown>>(input: SendInput<P>): Promise<Message<P>> {
    if (this.#closing) return Promise.reject(new ClosedError('message bus'));
    let message: Message;
    try {
      message = this.#stamp(input);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#sendMessage(message, input.id !== undefined) as Promise<Message<P>>;
  }

  /**
   * Sends several messages in one transport call (one round trip on networked transports). All are
   * validated first: one bad input rejects the whole batch with nothing enqueued. Resolves with the
   * messages in input order (a duplicate's entry is the first message of its id).
   *
   * @throws RecipientNotFoundError naming the first unknown recipient, after every other message was
   *   sent and each message to an unknown recipient was dead-lettered.
   */
  async sendBatch<P = Record<string, unknown>>(inputs: SendInput<P>[]): Promise<Message<P>[]> {
    if (this.#closing) throw new ClosedError('message bus');
    if (!Array.isArray(inputs)) throw new ValidationError(`sendBatch takes an array of messages, got a ${typeof inputs}`);
    const messages = inputs.map((input) => this.#stamp(input));
    const t = await this.#transportReady();
    const out: Message[] = new Array(messages.length);
    const entries: EnqueueEntry[] = [];
    const slots: number[] = [];
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as Message;
      if (m.recipient === '') {
        await this.#publishOn(t, m.type, m);
        out[i] = m;
        continue;
      }
      entries.push({
        queue: m.recipient,
        message: m,
        visibleAt: IMMEDIATELY,
        requireRecipient: true,
        dedupeWindowMs: (inputs[i] as SendInput<P>).id !== undefined ? this.#dedupeMs : 0,
      });
      slots.push(i);
    }
    let missing: RecipientNotFoundError | undefined;
    if (entries.length > 0) {
      const results = await t.enqueue(entries);
      for (let k = 0; k < entries.length; k++) {
        const m = (entries[k] as EnqueueEntry).message;
        try {
          out[slots[k] as number] = await this.#afterEnqueue(t, m, results[k] as EnqueueResult, m.recipient);
        } catch (err) {
          if (!(err instanceof RecipientNotFoundError)) throw err;
          missing ??= err;
          out[slots[k] as number] = m;
        }
      }
    }
    if (missing !== undefined) throw missing;
    return out as Message<P>[];
  }

  /**
   * Publishes to the subscribers of `topic ?? type` and of `'*'`, on every bus sharing the
   * transport. At-most-once and queue-less: nobody subscribed, nobody gets it.
   */
  async publish<P = Record<string, unknown>>(input: PublishInput<P>): Promise<Message<P>> {
    if (this.#closing) throw new ClosedError('message bus');
    if (input === null || typeof input !== 'object') throw new ValidationError(`publish takes an object, got ${String(input)}`);
    const topic = input.topic === undefined ? undefined : requireTopic(input.topic);
    const headers = topic === undefined ? input.headers : { ...input.headers, topic };
    const message = this.#stamp({
      sender: input.sender,
      recipient: '',
      type: input.type,
      payload: input.payload,
      priority: input.priority,
      correlationId: input.correlationId,
      headers,
      id: input.id,
    });
    const t = await this.#transportReady();
    await this.#publishOn(t, topic ?? message.type, message);
    return message as Message<P>;
  }

  /**
   * Observes messages: `topic` is a message type (every message of that type, point-to-point ones
   * included), a custom topic (publications on it) or `'*'` (everything). Subscribers run apart
   * from the send path; a failing subscriber is logged and counted, never felt by the sender.
   */
  subscribe(topic: string, handler: SubscriptionHandler): Subscription {
    if (this.#closing) throw new ClosedError('message bus');
    requireTopic(topic);
    if (typeof handler !== 'function') throw new ValidationError(`subscribe needs a handler function, got ${typeof handler}`);
    const sub = new BusSubscription(topic, (s) => this.#subscriptions.delete(s));
    this.#subscriptions.add(sub);
    const deliver = (message: Message): void => this.#runSubscriber(handler, message, topic);
    sub.ready = this.#track(
      (async () => {
        const t = await this.#transportNow();
        const off = await t.subscribe(topic, deliver);
        if (sub.cancelled) await off();
        else sub.off = off;
      })(),
      `subscribing to \`${topic}\``,
    );
    return sub;
  }

  // -------------------------------------------------------------------------------- pull

  /**
   * Takes the next message of `agentName`'s queue (highest priority first), waiting up to
   * `timeout` ms; null when none came. The delivery is leased: `ack()` it when done, `nack()` it
   * to retry; one neither acked nor nacked comes back after its lease with `attempt + 1`.
   */
  async receive(agentName: string, options: ReceiveOptions = {}): Promise<Delivery | null> {
    if (this.#closing) throw new ClosedError('message bus');
    validateAgentName(agentName);
    if (options === null || typeof options !== 'object') {
      const hint = typeof options === 'number' ? `: pass \`{ timeout: ${options} }\` to wait ${options} ms` : '';
      throw new ValidationError(`receive options must be an object such as \`{ timeout: 1000 }\`, got \`${String(options)}\` (${typeof options})${hint}`, {
        field: 'options',
      });
    }
    checkOptionNames(options, RECEIVE_OPTIONS, 'receive options');
    const timeout = requirePositive('timeout', options.timeout ?? 0, true);
    const leaseMs = requirePositive('leaseMs', options.leaseMs ?? this.#leaseMs);
    const t = await this.#transportReady();
    if (!this.#agents.has(agentName) && !this.#knownRecipients.has(agentName)) {
      // Not registered here: ask the backend once (another bus may have registered it).
      if (!(await t.hasRecipient(agentName))) throw new RecipientNotFoundError(agentName);
      this.#knownRecipients.add(agentName);
    }
    const until = Date.now() + timeout;
    for (;;) {
      const waitMs = Math.max(0, until - Date.now());
      const [lease] = await t.lease(agentName, { leaseMs, waitMs, max: 1, signal: this.#stop.signal });
      if (lease === undefined) return null;
      const now = Date.now();
      const verdict = this.#verdict(lease.message, now);
      if (verdict !== VERDICT_OK) {
        await this.#retire(t, lease, verdict);
        continue;
      }
      this.#delivered(lease.message, now, agentName);
      return new PullDelivery(this.#ops, lease);
    }
  }

  // -------------------------------------------------------------------------------- request/reply

  /**
   * Sends a TASK (or, with `type`, a FEEDBACK) to `recipient` and resolves with its reply (the message whose `headers.inReplyTo`
   * is the request's id). The reply comes through this bus's own inbox, so waiting never consumes
   * any other message.
   *
   * @throws RemoteError when the reply is an ERROR (its payload attached).
   * @throws RequestTimeoutError when no reply comes within `timeout`.
   * @throws RecipientNotFoundError when no agent is registered as `recipient`.
   */
  request<P = Record<string, unknown>>(input: RequestInput<P>): Promise<Message> {
    let message: Message;
    let timeout: number;
    try {
      if (this.#closing) throw new ClosedError('message bus');
      if (input === null || typeof input !== 'object') throw new ValidationError(`request takes an object, got ${String(input)}`);
      checkOptionNames(input, REQUEST_OPTIONS, 'request');
      timeout = input.timeout === undefined ? this.#requestTimeoutMs : requirePositive('timeout', input.timeout);
      const type = input.type ?? MessageType.TASK;
      if (type !== MessageType.TASK && type !== MessageType.FEEDBACK) {
        throw new ValidationError(`request type must be \`task\` or \`feedback\`, got \`${String(type)}\``, { field: 'type' });
      }
      message = this.#stamp(
        {
          sender: input.sender,
          recipient: input.recipient,
          type,
          payload: input.payload,
          priority: input.priority,
          correlationId: input.correlationId,
          headers: input.headers === undefined ? { replyTo: this.#inbox } : { ...input.headers, replyTo: this.#inbox },
          ttlMs: input.ttlMs,
          id: input.id,
        },
        STAMP_TRACE | STAMP_OWN_HEADERS | STAMP_SELF_CORRELATED,
      );
      if (message.recipient === '') throw new ValidationError('request needs a recipient, got ``', { field: 'recipient' });
    } catch (err) {
      return Promise.reject(err);
    }
    const t = this.#transport;
    if (t === undefined || this.#pending.size > 0 || this.#inboxLoop === undefined) return this.#requestAsync(message, timeout);
    return this.#dispatch(t, message, timeout);
  }

  async #requestAsync(message: Message, timeout: number): Promise<Message> {
    const t = this.#transport ?? (await this.#transportReady());
    if (this.#pending.size > 0) await this.#settlePending();
    if (this.#closing) throw new ClosedError('message bus');
    if (this.#inboxLoop === undefined) this.#inboxLoop = this.#consumeInbox(t);
    // No await from here on: the reply's promise reaches the caller before any timer can run.
    return this.#dispatch(t, message, timeout);
  }

  /**
   * Arms the wait for `message`'s reply, enqueues it, and returns the reply's promise itself: the
   * caller holds it before the enqueue can finish or its timeout fire, so whatever settles it
   * first (reply, timeout, failed enqueue, close) rejects the caller's promise and nothing else.
   * A synchronous transport (memory) enqueues here, without a suspended frame.
   */
  #dispatch(t: Transport, message: Message, timeout: number): Promise<Message> {
    let pending: PendingRequest;
    try {
      pending = this.#expect(message, timeout);
    } catch (err) {
      return Promise.reject(err);
    }
    try {
      if (t.enqueueNow !== undefined) {
        const result = this.#enqueueNow(t, message.recipient, message, true, 0);
        if (result.status === 'enqueued') this.#enqueued(t, message);
        else this.#afterEnqueue(t, message, result, message.recipient).then(undefined, (err: unknown) => this.#requestFailed(pending, err));
      } else {
        t.enqueue([{ queue: message.recipient, message, visibleAt: IMMEDIATELY, requireRecipient: true, dedupeWindowMs: 0 }]).then(
          (results) => {
            const result = results[0] as EnqueueResult;
            if (result.status === 'enqueued') this.#enqueued(t, message);
            else this.#afterEnqueue(t, message, result, message.recipient).then(undefined, (err: unknown) => this.#requestFailed(pending, err));
          },
          (err: unknown) => this.#requestFailed(pending, err),
        );
      }
    } catch (err) {
      this.#requestFailed(pending, err);
    }
    return pending.promise;
  }

  /** The enqueue of a waiting request failed: its caller gets the failure, unless the wait already ended (timed out, closed). */
  #requestFailed(pending: PendingRequest, err: unknown): void {
    if (this.#requests.get(pending.id) !== pending) {
      if (this.#isDebug()) this.#log.debug({ err, requestId: pending.id }, 'enqueue of a request that already ended failed');
      return;
    }
    this.#forget(pending);
    pending.reject(err);
  }

  /** Registers the wait for `message`'s reply, with its timeout. */
  #expect(message: Message, timeout: number): PendingRequest {
    if (this.#requests.has(message.id)) {
      throw new ValidationError(`a request with id \`${message.id}\` is already waiting for its reply`, { field: 'id' });
    }
    const pending = new PendingRequest(message.id, message.recipient, timeout, message.timestamp.getTime());
    this.#requests.set(message.id, pending);
    this.#scheduleTimeout(pending);
    return pending;
  }

  /**
   * Answers `request`: a RESULT (or `options.type`) to the requester's inbox when it came through
   * `request()`, else to its sender's queue, carrying `headers.inReplyTo`, the request's correlation
   * and its trace.
   *
   * @throws RecipientNotFoundError when the request has no reply inbox and its sender is no agent.
   */
  async reply<P = Record<string, unknown>>(request: Message, payload: P, options?: ReplyOptions): Promise<Message<P>> {
    if (this.#closing) throw new ClosedError('message bus');
    return this.#reply(request, payload, options, false) as Promise<Message<P>>;
  }

  // -------------------------------------------------------------------------------- dead letters

  /** The dead-letter queue, oldest first (`limit` caps how many). */
  async getDeadLetters(options: { limit?: number } = {}): Promise<DeadLetter[]> {
    const t = await this.#transportReady();
    return t.listDeadLetters(options);
  }

  /**
   * Enqueues dead letter `id` again on its queue as a fresh delivery (attempts restart at 1 and a
   * `ttlMs` it had no longer applies), then removes it from the dead-letter queue. Resolves with
   * the message, or null when no dead letter has that id.
   *
   * The letter stays where it was until its message is enqueued: a refused or failed enqueue (or
   * a crash) loses nothing, and a second redrive of the same letter meanwhile is refused. A
   * letter whose message is only a stand-in (a `malformed` one) is redriven from its `raw` bytes
   * when they decode, and refused otherwise: never with the stand-in's empty payload.
   *
   * @throws ValidationError when `id` is no string, or the letter's raw bytes are not a message (it stays).
   * @throws RecipientNotFoundError when its recipient is still unknown (it stays in the dead-letter queue).
   * @throws ConcordError `redrive_in_progress` while another redrive of the same letter is under way.
   */
  async redrive(id: string): Promise<Message | null> {
    if (typeof id !== 'string' || id.length === 0) {
      throw new ValidationError(`redrive needs the id of a dead letter's message (a non-empty string), got ${describeValue(id)}`, { field: 'id' });
    }
    if (this.#closing) throw new ClosedError('message bus');
    const t = await this.#transportReady();
    const claim = await t.claimDeadLetter(id, REDRIVE_CLAIM_MS);
    if (claim === null) return null;
    if (claim === 'claimed') throw new ConcordError('redrive_in_progress', `dead letter ${id} is being redriven by another call`);
    const { letter, token } = claim;
    const release = () =>
      t.settleDeadLetter(id, token, false).catch((err: unknown) => {
        this.#log.warn({ err, messageId: id }, 'releasing a redrive claim failed; it lapses by itself');
      });
    let message: Message;
    try {
      message = redriveMessage(letter);
    } catch (err) {
      await release();
      throw err;
    }
    const isInbox = letter.queue.startsWith(INBOX_PREFIX);
    let result: EnqueueResult | undefined;
    try {
      [result] = await t.enqueue([{ queue: letter.queue, message, visibleAt: IMMEDIATELY, requireRecipient: !isInbox, dedupeWindowMs: 0 }]);
    } catch (err) {
      await release();
      throw err;
    }
    if (result?.status === 'no_recipient') {
      await release();
      throw new RecipientNotFoundError(letter.queue, id);
    }
    try {
      await t.settleDeadLetter(id, token, true);
    } catch (err) {
      this.#errors++;
      this.#log.error({ err, messageId: id }, 'message redriven, but its dead letter could not be removed: a later redrive would deliver it again');
    }
    this.#sent++;
    this.#logMessage('message redriven', message);
    return message;
  }

  /** Empties the dead-letter queue; resolves with how many letters were removed. */
  async purgeDeadLetters(): Promise<number> {
    const t = await this.#transportReady();
    return t.purgeDeadLetters();
  }

  // -------------------------------------------------------------------------------- metrics

  /** Counters, latency and per-agent queue figures (see {@link BusMetrics}). */
  metrics(): BusMetrics {
    const latency = this.#latency.summary();
    const t = this.#transport;
    const agents: Record<string, AgentMetrics> = {};
    let needRefresh = false;
    for (const [name, reg] of this.#agents) {
      let depth: QueueDepth;
      if (t?.depthNow !== undefined && !this.#closed) depth = t.depthNow(name);
      else {
        depth = this.#depthCache.get(name) ?? EMPTY_DEPTH;
        needRefresh = true;
      }
      agents[name] = {
        queueDepth: depth.ready + depth.delayed,
        ready: depth.ready,
        delayed: depth.delayed,
        inFlight: Math.max(depth.inFlight, reg.running),
        handling: reg.running,
      };
    }
    if (needRefresh && t !== undefined && !this.#closed) this.#refreshDepths(t);
    return {
      messagesSent: this.#sent,
      messagesPublished: this.#published,
      messagesReceived: this.#received,
      messagesAcked: this.#acked,
      averageLatencyMs: latency.averageMs,
      latencyMs: { p50: latency.p50, p95: latency.p95, p99: latency.p99 },
      errors: this.#errors,
      subscriberErrors: this.#subscriberErrors,
      deadLetters: this.#deadLetters,
      retries: this.#retries,
      duplicates: this.#duplicates,
      lateReplies: this.#lateReplies,
      unroutableReplies: this.#unroutable,
      pendingRequests: this.#requests.size,
      inFlight: this.#running,
      agents,
    };
  }

  // -------------------------------------------------------------------------------- shutdown

  /**
   * Stops intake (sends, registrations, `receive` then throw `ClosedError`), stops leasing, lets
   * in-flight handlers finish for up to `drainTimeoutMs` (then aborts their `ctx.signal` and
   * returns; their messages come back after their lease), rejects waiting requests with
   * `ClosedError`, ends subscriptions and closes the transport if the bus created it. Idempotent.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#closePromise === undefined) {
      let drainMs: number;
      try {
        if (options === null || typeof options !== 'object') throw new ValidationError(`close options must be an object, got \`${String(options)}\``);
        checkOptionNames(options, CLOSE_OPTIONS, 'close options');
        drainMs = requirePositive('drainTimeoutMs', options.drainTimeoutMs ?? this.#drainTimeoutMs, true);
      } catch (err) {
        return Promise.reject(err);
      }
      this.#closing = true;
      this.#closePromise = this.#shutdown(drainMs);
    }
    return this.#closePromise;
  }

  async #shutdown(drainMs: number): Promise<void> {
    for (const reg of this.#agents.values()) this.#stopRegistration(reg);
    this.#stop.abort(new ClosedError('message bus'));
    await this.#settlePending();
    // Drain: running handlers finish (they may still send and reply).
    let drained = true;
    if (this.#running > 0) {
      let timer: Timer | undefined;
      const idle = new Promise<boolean>((resolve) => {
        this.#onIdle = () => resolve(true);
        timer = startTimer(() => resolve(false), drainMs);
      });
      drained = await idle;
      timer?.clear();
      this.#onIdle = null;
      if (!drained) {
        this.#log.warn({ running: this.#running, drainMs }, 'close: handlers still running after the drain timeout; aborting their signals');
        this.#aborted = true;
        for (const ctx of this.#watched) ctx.abort(new ClosedError('message bus'));
      }
    }
    for (const pending of [...this.#requests.values()]) {
      this.#forget(pending);
      pending.reject(new ClosedError('message bus'));
    }
    if (this.#requestTimer !== null) clearTimeout(this.#requestTimer);
    if (this.#watchTimer !== null) clearTimeout(this.#watchTimer);
    this.#requestTimer = this.#watchTimer = null;
    // A concurrency-1 loop runs its handler inline: one still running after the drain is abandoned
    // (not acked, it comes back after its lease), and so is its loop, or close would wait forever.
    const loops: Promise<void>[] = [];
    for (const reg of this.#agents.values()) if (drained || reg.running === 0) loops.push(reg.loop);
    if (this.#inboxLoop !== undefined) loops.push(this.#inboxLoop);
    await Promise.allSettled(loops);
    await Promise.allSettled([...this.#subscriptions].map((sub) => sub.unsubscribe()));
    this.#closed = true;
    this.#watched.clear();
    const t = this.#transport;
    if (t !== undefined && this.#ownsTransport) await t.close();
    this.#log.debug({ bus: this.id }, 'bus closed');
  }

  // ================================================================================ internals

  /** The transport once connected (sync), else a promise of it. */
  #transportNow(): Promise<Transport> {
    if (this.#transport !== undefined) return Promise.resolve(this.#transport);
    this.#opening ??= (async () => {
      try {
        const t = await resolveTransport(this.#spec);
        await t.connect();
        this.#transport = t;
        return t;
      } catch (err) {
        this.#opening = undefined;
        throw err;
      }
    })();
    return this.#opening;
  }

  /** The transport, after every pending registration/subscription of this bus settled. */
  async #transportReady(): Promise<Transport> {
    const t = this.#transport ?? (await this.#transportNow());
    if (this.#pending.size > 0) await this.#settlePending();
    return t;
  }

  #track(promise: Promise<void>, what: string): Promise<void> {
    const tracked = promise.then(
      () => undefined,
      (err: unknown) => {
        this.#errors++;
        this.#setupErrors.push(err);
        this.#log.error({ err }, `${what} failed`);
        throw err;
      },
    );
    const settled = tracked.then(
      () => undefined,
      () => undefined,
    );
    this.#pending.add(settled);
    void settled.then(() => this.#pending.delete(settled));
    // Callers may ignore the returned promise: never let it surface as an unhandled rejection.
    tracked.catch(() => undefined);
    return tracked;
  }

  async #settlePending(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }

  /** Validates and stamps a message: id, timestamp, defaults and a `traceparent` when absent. */
  #stamp<P>(input: MessageInput<P>, flags = STAMP_TRACE): Message {
    return createTracedMessage(input, this.#maxPayloadBytes, flags) as Message;
  }

  #sendMessage(message: Message, dedupe: boolean): Promise<Message> {
    const t = this.#transport;
    if (t?.enqueueNow === undefined || this.#pending.size > 0 || message.recipient === '') {
      return this.#sendMessageAsync(message, dedupe);
    }
    // Synchronous transport (memory): no suspended frame and one promise per send.
    let result: EnqueueResult;
    try {
      result = this.#enqueueNow(t, message.recipient, message, true, dedupe ? this.#dedupeMs : 0);
    } catch (err) {
      return Promise.reject(err);
    }
    if (result.status === 'enqueued') {
      this.#enqueued(t, message);
      return Promise.resolve(message);
    }
    return this.#afterEnqueue(t, message, result, message.recipient);
  }

  /**
   * One immediate enqueue on a synchronous transport, without the arrays and entry object of
   * `enqueueNow` when it offers `enqueueOneNow` (the entry object is reused: transports never keep it).
   */
  #enqueueNow(t: Transport, queue: string, message: Message, requireRecipient: boolean, dedupeWindowMs: number): EnqueueResult {
    if (t.enqueueOneNow === undefined) {
      return (t.enqueueNow as NonNullable<Transport['enqueueNow']>)([
        { queue, message, visibleAt: IMMEDIATELY, requireRecipient, dedupeWindowMs },
      ])[0] as EnqueueResult;
    }
    const entry = this.#oneEntry;
    entry.queue = queue;
    entry.message = message;
    entry.requireRecipient = requireRecipient;
    entry.dedupeWindowMs = dedupeWindowMs;
    try {
      return t.enqueueOneNow(entry);
    } finally {
      entry.message = NO_MESSAGE; // hold no message after the call
    }
  }

  async #sendMessageAsync(message: Message, dedupe: boolean): Promise<Message> {
    const t = this.#transport ?? (await this.#transportNow());
    if (this.#pending.size > 0) await this.#settlePending();
    if (message.recipient === '') {
      await this.#publishOn(t, message.type, message);
      return message;
    }
    const [result] = await t.enqueue([
      {
        queue: message.recipient,
        message,
        visibleAt: IMMEDIATELY,
        requireRecipient: true,
        dedupeWindowMs: dedupe ? this.#dedupeMs : 0,
      },
    ]);
    if (result?.status === 'enqueued') {
      this.#enqueued(t, message);
      return message;
    }
    return this.#afterEnqueue(t, message, result as EnqueueResult, message.recipient);
  }

  /** Bookkeeping of a message that reached its queue: count, log, and show it to subscribers of its type. */
  #enqueued(t: Transport, message: Message): void {
    this.#sent++;
    if (this.#isDebug()) this.#logMessage('message sent', message);
    if (t.publishNow === undefined) {
      t.publish(message.type, message).then(undefined, this.#publishFailed);
      return;
    }
    try {
      t.publishNow(message.type, message);
    } catch (err) {
      this.#publishFailed(err);
    }
  }

  /** Accounting after an enqueue: count and observe, or resolve a duplicate, or dead-letter a message nobody can receive. */
  async #afterEnqueue(t: Transport, message: Message, result: EnqueueResult, queue: string): Promise<Message> {
    if (result.status === 'enqueued') {
      this.#enqueued(t, message);
      return message;
    }
    if (result.status === 'duplicate') {
      this.#duplicates++;
      if (this.#isDebug()) this.#logMessage('duplicate send ignored', message);
      return result.original;
    }
    await t.deadLetter({ message, queue, reason: 'recipient_not_found', attempts: 0, deadAt: new Date() });
    this.#deadLetters++;
    if (this.#log.isLevelEnabled('warn')) {
      this.#log.warn({ ...this.#fields(message), reason: 'recipient_not_found' }, 'message dead-lettered: no such recipient');
    }
    throw new RecipientNotFoundError(queue, message.id);
  }

  async #publishOn(t: Transport, topic: string, message: Message): Promise<void> {
    await t.publish(topic, message);
    this.#published++;
    if (this.#isDebug()) this.#log.debug({ ...this.#fields(message), topic }, 'message published');
  }

  /** One shared rejection handler (no closure per send): publishing to subscribers never fails a send. */
  readonly #publishFailed = (err: unknown): void => {
    this.#errors++;
    this.#log.error({ err }, 'publishing a sent message to its subscribers failed');
  };

  #runSubscriber(handler: SubscriptionHandler, message: Message, topic: string): void {
    if (this.#closed) return;
    try {
      const result = handler(message);
      if (isThenable(result)) result.then(undefined, (err: unknown) => this.#subscriberFailed(err, topic, message));
    } catch (err) {
      this.#subscriberFailed(err, topic, message);
    }
  }

  #subscriberFailed(err: unknown, topic: string, message: Message): void {
    this.#errors++;
    this.#subscriberErrors++;
    this.#log.error({ err, topic, ...this.#fields(message) }, 'subscriber failed');
  }

  /**
   * Whether debug lines are wanted: checked on every message, so the answer is cached per logger
   * level (pino's `levelVal` changes whenever its level does).
   */
  #isDebug(): boolean {
    if (this.#silent) return false;
    const level = this.#log.levelVal;
    if (level !== this.#seenLevel) {
      this.#seenLevel = level;
      this.#debug = this.#log.isLevelEnabled('debug');
    }
    return this.#debug;
  }

  #fields(m: Message): Record<string, unknown> {
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

  #logMessage(what: string, m: Message): void {
    if (this.#isDebug()) this.#log.debug(this.#fields(m), what);
  }

  /** A handler's `ctx.send`: from the agent, in the handled message's conversation and trace. */
  #sendFrom(ctx: HandlerContext, input: Omit<MessageInput<unknown>, 'sender'> & { sender?: string }): Promise<Message> {
    if (this.#closed) return Promise.reject(new ClosedError('message bus'));
    if (input === null || typeof input !== 'object') {
      return Promise.reject(new ValidationError(`ctx.send takes an object, got ${String(input)}`));
    }
    const handled = ctx.message;
    try {
      const message = this.#stamp({
        ...input,
        sender: input.sender ?? ctx.agent,
        correlationId: input.correlationId ?? handled.correlationId ?? handled.id,
        headers: { traceparent: childTraceparent(handled.headers['traceparent']), ...input.headers },
      });
      return this.#sendMessage(message, input.id !== undefined);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Sends the reply to `request`. `auto` (a handler's return value or final failure): a sender that
   * is no agent and left no inbox gets nothing (counted in `unroutableReplies`) instead of an error.
   */
  #reply(request: Message, payload: unknown, options: ReplyOptions | undefined, auto: boolean): Promise<Message | undefined> {
    try {
      const sent = this.#replyNow(request, payload, options, auto);
      return isThenable(sent) ? sent : Promise.resolve(sent);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * `#reply`, synchronously when the transport is (memory): the reply sent (or undefined, see
   * `auto`), a promise of it otherwise. Throws what `#reply` would reject with.
   */
  #replyNow(request: Message, payload: unknown, options: ReplyOptions | undefined, auto: boolean): Message | undefined | Promise<Message | undefined> {
    if (this.#closed) throw new ClosedError('message bus');
    if (request === null || typeof request !== 'object' || typeof request.id !== 'string' || request.headers === undefined) {
      throw new ValidationError(`reply needs the request message, got ${String(request)}`, { field: 'request' });
    }
    const replyTo = request.headers['replyTo'];
    const message = this.#stampReply(request, payload, options);
    const t = this.#transport;
    if (t?.enqueueNow === undefined) return this.#replyAsync(request, message, replyTo, auto);
    const queue = replyTo ?? request.sender;
    return this.#replied(t, request, message, queue, this.#enqueueNow(t, queue, message, replyTo === undefined, 0), auto);
  }

  async #replyAsync(request: Message, message: Message, replyTo: string | undefined, auto: boolean): Promise<Message | undefined> {
    const t = this.#transport ?? (await this.#transportNow());
    const queue = replyTo ?? request.sender;
    const entry = { queue, message, visibleAt: IMMEDIATELY, requireRecipient: replyTo === undefined, dedupeWindowMs: 0 };
    const [result] = t.enqueueNow !== undefined ? t.enqueueNow([entry]) : await t.enqueue([entry]);
    return this.#replied(t, request, message, queue, result as EnqueueResult, auto);
  }

  /** After a reply's enqueue: count it, or drop an automatic reply nobody can get, or dead-letter it. */
  #replied(t: Transport, request: Message, message: Message, queue: string, result: EnqueueResult, auto: boolean): Message | undefined | Promise<Message | undefined> {
    if (result.status === 'enqueued') {
      this.#enqueued(t, message);
      return message;
    }
    if (auto && result.status === 'no_recipient') {
      this.#unroutable++;
      if (this.#isDebug()) {
        this.#log.debug({ ...this.#fields(message), inReplyTo: request.id }, 'automatic reply not sent: the sender is no agent');
      }
      return undefined;
    }
    return this.#afterEnqueue(t, message, result, queue);
  }

  #stampReply(request: Message, payload: unknown, options: ReplyOptions | undefined): Message {
    return this.#stamp(
      {
        sender: options?.sender ?? (request.recipient || 'concord'),
        recipient: request.sender,
        type: options?.type ?? MessageType.RESULT,
        payload,
        priority: request.priority,
        correlationId: request.correlationId ?? request.id,
        headers: { inReplyTo: request.id, traceparent: childTraceparent(request.headers['traceparent']) },
      },
      STAMP_TRACE | STAMP_OWN_HEADERS,
    );
  }

  /** Sends an automatic reply, logging (never throwing) when that fails. */
  async #autoReply(request: Message, payload: unknown, type: MessageType): Promise<void> {
    try {
      await this.#reply(request, payload, { type }, true);
    } catch (err) {
      this.#errors++;
      this.#log.error({ err, ...this.#fields(request) }, `sending the ${type} reply failed`);
    }
  }

  #stopRegistration(reg: Registration): void {
    reg.stopped = true;
    reg.controller.abort(new ClosedError(`agent \`${reg.name}\``));
    const slot = reg.slot;
    reg.slot = null;
    slot?.();
  }

  // -------------------------------------------------------------------------------- delivery

  /** Whether a leased message may be delivered: not expired, not past its attempts. */
  #verdict(m: Message, now: number): number {
    if (m.ttlMs !== undefined && m.timestamp.getTime() + m.ttlMs < now) return VERDICT_EXPIRED;
    if (m.attempt > this.#maxAttempts) return VERDICT_EXHAUSTED;
    return VERDICT_OK;
  }

  /** Dead-letters a leased message the verdict refused (expired, or its leases kept running out). */
  async #retire(t: Transport, lease: Lease, verdict: number): Promise<void> {
    const m = lease.message;
    const expired = verdict === VERDICT_EXPIRED;
    const letter: DeadLetter = expired
      ? { message: m, queue: lease.queue, reason: 'expired', error: `ttl of ${m.ttlMs} ms ran out before delivery`, attempts: m.attempt - 1, deadAt: new Date() }
      : { message: m, queue: lease.queue, reason: 'max_attempts', error: 'lease expired', attempts: m.attempt - 1, deadAt: new Date() };
    try {
      if (!(await t.deadLetter(letter, lease))) return;
    } catch (err) {
      this.#errors++;
      this.#log.error({ err, ...this.#fields(m) }, 'dead-lettering failed; the message will come back after its lease');
      return;
    }
    this.#deadLetters++;
    this.#log.warn({ ...this.#fields(m), reason: letter.reason, error: letter.error }, 'message dead-lettered');
    if (!expired && asksForReply(m)) await this.#autoReply(m, errorPayload(new Error('lease expired'), m.attempt - 1), MessageType.ERROR);
  }

  #delivered(m: Message, now: number, agent: string): void {
    this.#received++;
    this.#latency.record(now - m.timestamp.getTime());
    if (this.#isDebug()) this.#log.debug({ ...this.#fields(m), agent }, 'message delivered');
  }

  /** One consumer loop per push agent: leases as many messages as it has free handler slots. */
  async #consume(t: Transport, reg: Registration): Promise<void> {
    const options = { leaseMs: this.#leaseMs, waitMs: LOOP_WAIT_MS, max: 1, signal: reg.controller.signal };
    const agent = reg.agent as Agent;
    const pacer = new YieldPacer(t, reg.name);
    // A synchronous (in-process) transport leases on this process's clock: the time of the lease,
    // deadline - leaseMs, is "now" for the delivery checks, sparing a clock read per message.
    const sameClock = t.leaseNow !== undefined;
    const leaseMs = options.leaseMs;
    if (reg.concurrency === 1) {
      // One at a time, inline: a delivery whose handler returns a promise costs one tick (awaiting
      // it), so a consumer keeps pace with a producer that awaits each send and queues stay shallow.
      // A clock reading taken for the last ack in this same synchronous run (0: none), which the
      // next lease may use: the clock is read once per delivery, not twice.
      let clock = 0;
      while (!reg.stopped) {
        // What is visible now, without waiting (one lease, no arrays, when the transport can); else wait.
        let one: Lease | undefined;
        let leases: Lease[] = NO_LEASES;
        try {
          one =
            t.leaseOneNow !== undefined
              ? t.leaseOneNow(reg.name, leaseMs, clock === 0 ? undefined : clock)
              : t.leaseNow?.(reg.name, options)[0];
          clock = 0;
          if (one === undefined) {
            pacer.waited();
            leases = await t.lease(reg.name, options);
          } else if (pacer.delivered(1)) {
            await yieldToEventLoop();
          }
        } catch (err) {
          if (reg.stopped) break;
          this.#leaseFailed(err, reg.name);
          await this.#pause(LOOP_ERROR_PAUSE_MS, reg.controller.signal);
          continue;
        }
        const count = one !== undefined ? 1 : leases.length;
        for (let i = 0; i < count; i++) {
          const lease = one ?? (leases[i] as Lease);
          this.#enter(reg);
          try {
            const ctx = this.#admit(t, reg, lease, sameClock ? lease.deadline - leaseMs : Date.now());
            if (!(ctx instanceof HandlerContext)) {
              await ctx;
              continue;
            }
            let result: unknown;
            try {
              result = agent.handleMessage(lease.message, ctx);
              if (isThenable(result)) result = await result;
            } catch (err) {
              await this.#failedIn(t, lease, ctx, err);
              continue;
            }
            const done = this.#complete(t, reg, lease, ctx, result);
            if (done !== undefined) await done;
            else if (i === count - 1) clock = this.#ackClock; // nothing runs between this ack and the next lease
          } catch (err) {
            this.#deliveryFailed(err, lease.message);
          } finally {
            this.#leave(reg);
          }
        }
      }
      return;
    }
    while (!reg.stopped) {
      const room = reg.concurrency - reg.running;
      if (room <= 0) {
        await new Promise<void>((resolve) => (reg.slot = resolve));
        continue;
      }
      options.max = room;
      let leases: Lease[];
      try {
        leases = t.leaseNow !== undefined ? t.leaseNow(reg.name, options) : [];
        if (leases.length === 0) {
          pacer.waited();
          leases = await t.lease(reg.name, options);
        } else if (pacer.delivered(leases.length)) {
          await yieldToEventLoop();
        }
      } catch (err) {
        if (reg.stopped) break;
        this.#leaseFailed(err, reg.name);
        await this.#pause(LOOP_ERROR_PAUSE_MS, reg.controller.signal);
        continue;
      }
      for (let i = 0; i < leases.length; i++) void this.#handle(t, reg, leases[i] as Lease);
    }
  }

  /**
   * Runs one delivery through its agent (concurrent consumers): ack on success, retry or
   * dead-letter on failure. Never throws. Continuations instead of an async function: a frame
   * suspended per delivery in flight is the biggest allocation of a busy consumer, and its
   * garbage collection the biggest cost after decoding.
   */
  #handle(t: Transport, reg: Registration, lease: Lease): void {
    this.#enter(reg);
    let ctx: HandlerContext | Promise<unknown>;
    let result: unknown;
    try {
      ctx = this.#admit(t, reg, lease, t.leaseNow !== undefined ? lease.deadline - this.#leaseMs : Date.now());
      if (!(ctx instanceof HandlerContext)) {
        this.#leaveAfter(reg, lease, ctx);
        return;
      }
    } catch (err) {
      this.#deliveryFailed(err, lease.message);
      this.#leave(reg);
      return;
    }
    const handlerCtx = ctx;
    try {
      result = (reg.agent as Agent).handleMessage(lease.message, handlerCtx);
      if (isThenable(result)) {
        result.then(
          (value) => this.#handled(t, reg, lease, handlerCtx, value),
          (err: unknown) => this.#handlerFailed(t, reg, lease, handlerCtx, err),
        );
        return;
      }
    } catch (err) {
      this.#handlerFailed(t, reg, lease, handlerCtx, err);
      return;
    }
    this.#handled(t, reg, lease, handlerCtx, result);
  }

  /** `#handle` once the handler returned: the reply and ack, then the slot's accounting. */
  #handled(t: Transport, reg: Registration, lease: Lease, ctx: HandlerContext, result: unknown): void {
    let done: Promise<void> | undefined;
    try {
      done = this.#complete(t, reg, lease, ctx, result);
    } catch (err) {
      this.#deliveryFailed(err, lease.message);
      this.#leave(reg);
      return;
    }
    if (done === undefined) {
      this.#leave(reg);
      return;
    }
    // The handler is done: its slot takes the next delivery while the ack is on its way (a round
    // trip on a networked transport). The bus counts the delivery as running until the ack
    // settles, so closing still waits for it.
    this.#freeSlot(reg);
    done.then(this.#stopRunningFn, (err: unknown) => {
      this.#deliveryFailed(err, lease.message);
      this.#stopRunning();
    });
  }

  /** `#handle` when the handler threw or rejected: retry or dead-letter, then the slot's accounting. */
  #handlerFailed(t: Transport, reg: Registration, lease: Lease, ctx: HandlerContext, err: unknown): void {
    let failing: Promise<unknown>;
    try {
      failing = this.#failedIn(t, lease, ctx, err);
    } catch (e) {
      this.#deliveryFailed(e, lease.message);
      this.#leave(reg);
      return;
    }
    this.#leaveAfter(reg, lease, failing);
  }

  /** Frees `reg`'s slot once `step` settles (a failure of it is logged, never thrown). */
  #leaveAfter(reg: Registration, lease: Lease, step: Promise<unknown>): void {
    step.then(
      () => this.#leave(reg),
      (err: unknown) => {
        this.#deliveryFailed(err, lease.message);
        this.#leave(reg);
      },
    );
  }

  readonly #stopRunningFn = (): void => this.#stopRunning();

  #enter(reg: Registration): void {
    reg.running++;
    this.#running++;
  }

  #leave(reg: Registration): void {
    this.#freeSlot(reg);
    this.#stopRunning();
  }

  /** One of `reg`'s handler slots is free again: its consumer loop may lease for it. */
  #freeSlot(reg: Registration): void {
    reg.running--;
    const slot = reg.slot;
    if (slot !== null) {
      reg.slot = null;
      slot();
    }
  }

  /** A delivery is settled (handled and acked, retried or dead-lettered). */
  #stopRunning(): void {
    if (--this.#running === 0 && this.#onIdle !== null) this.#onIdle();
  }

  /**
   * The checks before a handler runs: a message past its ttl or its attempts is dead-lettered
   * (the returned promise settles that); otherwise the delivery is counted and gets its context.
   */
  #admit(t: Transport, reg: Registration, lease: Lease, now: number): HandlerContext | Promise<void> {
    const m = lease.message;
    const verdict = this.#verdict(m, now);
    if (verdict !== VERDICT_OK) return this.#retire(t, lease, verdict);
    this.#delivered(m, now, reg.name);
    return new HandlerContext(this.#ops, reg.name, lease);
  }

  /**
   * After the handler resolved: the automatic RESULT of a TASK, then the ack. Synchronous (undefined)
   * when there is nothing to reply and the transport acks without I/O.
   */
  #complete(t: Transport, reg: Registration, lease: Lease, ctx: HandlerContext, result: unknown): Promise<void> | undefined {
    const m = lease.message;
    this.#ackClock = 0;
    if (result !== undefined && asksForReply(m) && !ctx.replied) {
      // A networked transport that can: the RESULT and this ack in one atomic step.
      if (t.enqueueAndAck !== undefined && t.enqueueNow === undefined) return this.#replyAndAck(t, reg, lease, ctx, result);
      // The automatic RESULT, synchronously when the transport is.
      let sent: Message | undefined | Promise<Message | undefined>;
      try {
        sent = this.#replyNow(m, resultPayload(result), { type: MessageType.RESULT, sender: reg.name }, true);
      } catch (err) {
        return this.#failedIn(t, lease, ctx, err).then(noop);
      }
      if (isThenable(sent)) return this.#replyThenAck(t, reg, lease, ctx, sent);
      ctx.replied = true;
    }
    this.#settleContext(ctx);
    if (t.ackNow === undefined) return this.#ackAsync(t, lease, reg.name);
    let acked: boolean;
    try {
      const now = Date.now();
      acked = t.ackNow(lease, now);
      this.#ackClock = now;
    } catch (err) {
      this.#ackFailed(err, m);
      return undefined;
    }
    this.#afterAck(acked, m, reg.name);
    return undefined;
  }

  async #replyThenAck(t: Transport, reg: Registration, lease: Lease, ctx: HandlerContext, sending: Promise<Message | undefined>): Promise<void> {
    try {
      await sending;
    } catch (err) {
      // The result could not be sent (not JSON, transport down): the delivery failed.
      await this.#failedIn(t, lease, ctx, err);
      return;
    }
    ctx.replied = true;
    const done = this.#complete(t, reg, lease, ctx, undefined);
    if (done !== undefined) await done;
  }

  /** The automatic RESULT of `lease`'s task and its ack, in one step (`Transport.enqueueAndAck`). */
  async #replyAndAck(t: Transport, reg: Registration, lease: Lease, ctx: HandlerContext, result: unknown): Promise<void> {
    const m = lease.message;
    let message: Message;
    let queue: string;
    let outcome: { results: EnqueueResult[]; acked: boolean };
    try {
      if (this.#closed) throw new ClosedError('message bus');
      message = this.#stampReply(m, resultPayload(result), { type: MessageType.RESULT, sender: reg.name });
      const replyTo = m.headers['replyTo'];
      queue = replyTo ?? m.sender;
      const entry = { queue, message, visibleAt: IMMEDIATELY, requireRecipient: replyTo === undefined, dedupeWindowMs: 0 };
      outcome = await (t as Required<Pick<Transport, 'enqueueAndAck'>>).enqueueAndAck([entry], lease);
    } catch (err) {
      // The result could not be sent (not JSON, transport down): the delivery failed, nothing was acked.
      await this.#failedIn(t, lease, ctx, err);
      return;
    }
    ctx.replied = true;
    this.#settleContext(ctx);
    try {
      await this.#replied(t, m, message, queue, outcome.results[0] as EnqueueResult, true);
    } catch (err) {
      this.#deliveryFailed(err, message);
    }
    this.#afterAck(outcome.acked, m, reg.name);
  }

  #ackAsync(t: Transport, lease: Lease, agent: string): Promise<void> {
    let acking: Promise<boolean>;
    try {
      acking = t.ack(lease);
    } catch (err) {
      this.#ackFailed(err, lease.message);
      return Promise.resolve();
    }
    return acking.then(
      (acked) => this.#afterAck(acked, lease.message, agent),
      (err: unknown) => this.#ackFailed(err, lease.message),
    );
  }

  #afterAck(acked: boolean, m: Message, agent: string): void {
    if (acked) this.#acked++;
    else this.#log.warn({ ...this.#fields(m), agent }, 'lease lost before ack; the message will be delivered again');
  }

  #ackFailed(err: unknown, m: Message): void {
    this.#errors++;
    this.#log.error({ err, ...this.#fields(m) }, 'ack failed; the message will come back after its lease');
  }

  #leaseFailed(err: unknown, agent: string): void {
    this.#errors++;
    this.#log.error({ err, agent }, 'leasing failed; retrying');
  }

  #deliveryFailed(err: unknown, m: Message): void {
    this.#errors++;
    this.#log.error({ err, ...this.#fields(m) }, 'delivery failed');
  }

  /** The handler threw (or its result could not be sent). */
  #failedIn(t: Transport, lease: Lease, ctx: HandlerContext, err: unknown): Promise<boolean> {
    this.#settleContext(ctx);
    return this.#failed(t, lease, err);
  }

  #settleContext(ctx: HandlerContext): void {
    ctx.finished = true;
    if (ctx.watched) this.#watched.delete(ctx);
  }

  /** A delivery failed (handler threw, or nack): retry with backoff, or dead-letter after the last attempt. */
  async #failed(t: Transport, lease: Lease, error: unknown, delayMs?: number): Promise<boolean> {
    const m = lease.message;
    this.#errors++;
    const text = errorText(error);
    try {
      if (m.attempt >= this.#maxAttempts) {
        const letter: DeadLetter = { message: m, queue: lease.queue, reason: 'max_attempts', error: text, attempts: m.attempt, deadAt: new Date() };
        if (!(await t.deadLetter(letter, lease))) return false;
        this.#deadLetters++;
        this.#log.warn({ ...this.#fields(m), reason: 'max_attempts', error: text }, 'message dead-lettered after its last attempt');
        if (asksForReply(m)) await this.#autoReply(m, errorPayload(error, m.attempt), MessageType.ERROR);
        return true;
      }
      const delay = delayMs ?? backoffDelay(m.attempt, this.#backoff);
      if (!(await t.requeue(lease, { delayMs: delay }))) return false;
      this.#retries++;
      if (this.#log.isLevelEnabled('info')) {
        this.#log.info({ ...this.#fields(m), error: text, retryInMs: delay }, 'delivery failed; retrying');
      }
      return true;
    } catch (err) {
      this.#errors++;
      this.#log.error({ err, ...this.#fields(m) }, 'retry bookkeeping failed; the message will come back after its lease');
      return false;
    }
  }

  async #ackPull(lease: Lease): Promise<boolean> {
    const t = this.#transport as Transport;
    const ok = await t.ack(lease);
    if (ok) this.#acked++;
    return ok;
  }

  #nackPull(lease: Lease, error: unknown, delayMs: number | undefined): Promise<boolean> {
    return this.#failed(this.#transport as Transport, lease, error, delayMs);
  }

  #extend(lease: Lease, ms: number): Promise<boolean> {
    requirePositive('ms', ms);
    return (this.#transport as Transport).extendLease(lease, ms);
  }

  /** A handler took its `ctx.signal`: abort it if the lease runs out before the handler ends. */
  #watch(ctx: HandlerContext): void {
    if (ctx.finished) return;
    this.#watched.add(ctx);
    this.#armWatch(ctx.deadline);
  }

  #armWatch(at: number): void {
    if (this.#watchTimer !== null && this.#watchTimerAt <= at) return;
    if (this.#watchTimer !== null) clearTimeout(this.#watchTimer);
    this.#watchTimerAt = at;
    this.#watchTimer = setTimeout(() => this.#checkLeases(), timerDelay(at - Date.now() + 1));
  }

  #checkLeases(): void {
    this.#watchTimer = null;
    this.#watchTimerAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const ctx of this.#watched) {
      if (ctx.deadline <= now) {
        this.#watched.delete(ctx);
        ctx.abort(new Error(`lease on message ${ctx.message.id} ran out before its handler finished`));
      } else if (ctx.deadline < next) next = ctx.deadline;
    }
    if (next !== Infinity && !this.#closed) this.#armWatch(next);
  }

  // -------------------------------------------------------------------------------- inbox

  /** The one loop that takes replies from this bus's inbox and settles waiting requests. */
  async #consumeInbox(t: Transport): Promise<void> {
    const options = { leaseMs: this.#leaseMs, waitMs: LOOP_WAIT_MS, max: INBOX_BATCH, signal: this.#stop.signal };
    while (!this.#stop.signal.aborted) {
      let leases: Lease[];
      try {
        leases = t.leaseNow !== undefined ? t.leaseNow(this.#inbox, options) : [];
        if (leases.length === 0) leases = await t.lease(this.#inbox, options);
      } catch (err) {
        if (this.#stop.signal.aborted) break;
        this.#errors++;
        this.#log.error({ err }, 'leasing replies failed; retrying');
        await this.#pause(LOOP_ERROR_PAUSE_MS, this.#stop.signal);
        continue;
      }
      for (let i = 0; i < leases.length; i++) this.#settleReply(t, leases[i] as Lease);
    }
  }

  #settleReply(t: Transport, lease: Lease): void {
    const m = lease.message;
    if (t.ackNow !== undefined) t.ackNow(lease);
    else t.ack(lease).then(undefined, this.#replyAckFailed);
    const id = m.headers['inReplyTo'];
    const pending = id === undefined ? undefined : this.#requests.get(id);
    if (pending === undefined) {
      this.#lateReplies++;
      if (this.#isDebug()) this.#log.debug({ ...this.#fields(m), inReplyTo: id }, 'reply for no waiting request');
      return;
    }
    this.#forget(pending);
    this.#delivered(m, Date.now(), this.#inbox);
    this.#acked++;
    if (m.type === MessageType.ERROR) pending.reject(new RemoteError(m.sender, pending.id, m.payload));
    else pending.resolve(m);
  }

  readonly #replyAckFailed = (err: unknown): void => {
    this.#errors++;
    this.#log.error({ err }, 'acking a reply failed');
  };

  #forget(pending: PendingRequest): void {
    this.#requests.delete(pending.id);
    this.#requestDeadlines.remove(pending);
  }

  #scheduleTimeout(pending: PendingRequest): void {
    this.#requestDeadlines.push(pending);
    if (this.#requestTimer !== null && this.#requestTimerAt <= pending.deadline) return;
    if (this.#requestTimer !== null) clearTimeout(this.#requestTimer);
    this.#requestTimerAt = pending.deadline;
    this.#requestTimer = setTimeout(() => this.#expireRequests(), timerDelay(pending.deadline - Date.now()));
  }

  #expireRequests(): void {
    this.#requestTimer = null;
    this.#requestTimerAt = Infinity;
    const now = Date.now();
    let p: PendingRequest | undefined;
    while ((p = this.#requestDeadlines.peek()) !== undefined && p.deadline <= now) {
      this.#forget(p);
      this.#errors++;
      this.#log.warn({ requestId: p.id, recipient: p.recipient, timeoutMs: p.timeoutMs }, 'request timed out');
      p.reject(new RequestTimeoutError(p.id, p.recipient, p.timeoutMs));
    }
    if (p !== undefined) {
      this.#requestTimerAt = p.deadline;
      this.#requestTimer = setTimeout(() => this.#expireRequests(), timerDelay(p.deadline - now));
    }
  }

  #refreshDepths(t: Transport): void {
    if (this.#depthRefresh !== undefined) return;
    this.#depthRefresh = (async () => {
      try {
        for (const name of this.#agents.keys()) this.#depthCache.set(name, await t.depth(name));
      } catch (err) {
        this.#log.debug({ err }, 'refreshing queue depths failed');
      } finally {
        this.#depthRefresh = undefined;
      }
    })();
  }

  #pause(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

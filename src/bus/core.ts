import type { Context, Tracer } from '@opentelemetry/api';
import { ClosedError, ConcordError, RecipientNotFoundError, ValidationError } from '../errors.js';
import {
  childTraceparent,
  createTracedMessage,
  type Message,
  type MessageInput,
  MessageType,
  STAMP_OWN_HEADERS,
  STAMP_TRACE,
} from '../message.js';
import {
  activeTracer,
  endSpan,
  producerOperation,
  redriveSpan,
  replyParent,
  settleSpan,
  startProducerSpan,
} from '../observability/tracing.js';
import { type BackoffOptions, backoffDelay } from './backoff.js';
import { isThenable, type MaybePromise } from './maybe.js';
import type { BusCounters, BusLog } from './metrics.js';
import { asksForReply, errorPayload, errorText, REDRIVE_CLAIM_MS, redriveMessage } from './rules.js';
import { isFinalFailure } from './schema.js';
import { type DeadLetter, type EnqueueEntry, type EnqueueResult, INBOX_PREFIX, type Lease, type Transport } from './transport.js';
import type { ReplyOptions, SubscriptionHandler } from './types.js';

/** `visibleAt` of an enqueue that is visible at once (any past time is; 0 spares a clock read). */
export const IMMEDIATELY = 0;

/** What `verdict` says of a leased message. */
export const VERDICT_OK = 0;
export const VERDICT_EXPIRED = 1;
export const VERDICT_EXHAUSTED = 2;

/** Placeholder message of the reused enqueue entry between calls. */
const NO_MESSAGE = Object.freeze({}) as Message;

/** The settings every step below reads (validated by the `MessageBus` constructor). */
export interface BusSettings {
  readonly maxAttempts: number;
  readonly backoff: BackoffOptions;
  readonly leaseMs: number;
  readonly maxPayloadBytes: number;
  readonly dedupeMs: number;
  /** This bus as the holder of its leases (`LeaseOptions.consumer`): `<host>:<pid>:<bus id>`. */
  readonly consumer: string;
}

/** A reply, stamped, and where it goes: the requester's inbox, or else its sender's queue. */
export interface OutgoingReply {
  readonly message: Message;
  readonly queue: string;
  /** A reply to an inbox needs no registered recipient; one to a sender's queue does. */
  readonly requireRecipient: boolean;
}

/**
 * The steps every operation of the bus shares, each implemented once: stamp, enqueue one message
 * (published to subscribers as part of the enqueue), settle an enqueue's result, build and send a
 * reply, ack, and retry or dead-letter a failed delivery. The facade (`bus.ts`), the consumer
 * loops (`delivery.ts`) and the request table (`requests.ts`) all go through it.
 *
 * Every transport call here may answer with a value or a promise (see `MaybePromise`); each step
 * handles both once, so a synchronous transport (memory) runs without a suspended frame.
 */
export class BusCore {
  readonly settings: BusSettings;
  readonly counters: BusCounters;
  readonly log: BusLog;
  /** Set once `close()` finished: replies and handler sends are refused. */
  closed = false;
  /** One entry array reused while the transport answers synchronously (it keeps neither, see `Transport.enqueue`). */
  #scratch: EnqueueEntry[] | undefined = [newEntry()];

  constructor(settings: BusSettings, counters: BusCounters, log: BusLog) {
    this.settings = settings;
    this.counters = counters;
    this.log = log;
  }

  /** Validates and stamps a message: id, timestamp, defaults and a `traceparent` when absent. */
  stamp(input: MessageInput<unknown>, flags = STAMP_TRACE): Message {
    return createTracedMessage(input, this.settings.maxPayloadBytes, flags) as Message;
  }

  /**
   * Enqueues `message` on `queue`, visible at once and published to its type's subscribers, then
   * `settle(result)`: at once when the transport answers synchronously, else when its answer comes.
   * A synchronous throw (of the transport or `settle`) propagates. With an OpenTelemetry SDK
   * registered, all of it runs in the message's PRODUCER span (`parent`: its parent when the bus
   * knows it, else the active span).
   */
  enqueueOne<R>(
    t: Transport,
    queue: string,
    message: Message,
    requireRecipient: boolean,
    dedupeWindowMs: number,
    settle: (t: Transport, message: Message, result: EnqueueResult, queue: string) => MaybePromise<R>,
    parent?: Context,
  ): MaybePromise<R> {
    const tracer = activeTracer();
    if (tracer !== undefined) return this.#enqueueTraced(tracer, t, queue, message, requireRecipient, dedupeWindowMs, settle, parent);
    return this.#enqueueOne(t, queue, message, requireRecipient, dedupeWindowMs, settle);
  }

  #enqueueTraced<R>(
    tracer: Tracer,
    t: Transport,
    queue: string,
    message: Message,
    requireRecipient: boolean,
    dedupeWindowMs: number,
    settle: (t: Transport, message: Message, result: EnqueueResult, queue: string) => MaybePromise<R>,
    parent: Context | undefined,
  ): MaybePromise<R> {
    const span = startProducerSpan(tracer, message, producerOperation(message), queue, parent);
    let out: MaybePromise<R>;
    try {
      out = this.#enqueueOne(t, queue, message, requireRecipient, dedupeWindowMs, settle);
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
    if (!isThenable(out)) {
      span.end();
      return out;
    }
    return Promise.resolve(out).then(
      (value) => {
        span.end();
        return value;
      },
      (err: unknown) => {
        endSpan(span, err);
        throw err;
      },
    );
  }

  #enqueueOne<R>(
    t: Transport,
    queue: string,
    message: Message,
    requireRecipient: boolean,
    dedupeWindowMs: number,
    settle: (t: Transport, message: Message, result: EnqueueResult, queue: string) => MaybePromise<R>,
  ): MaybePromise<R> {
    const entries = this.#scratch ?? [newEntry()];
    this.#scratch = undefined;
    const entry = entries[0] as EnqueueEntry;
    entry.queue = queue;
    entry.message = message;
    entry.requireRecipient = requireRecipient;
    entry.dedupeWindowMs = dedupeWindowMs;
    let answer: MaybePromise<EnqueueResult[]>;
    try {
      answer = t.enqueue(entries);
    } catch (err) {
      entry.message = NO_MESSAGE;
      this.#scratch = entries;
      throw err;
    }
    // A promise: the transport may still read the entry, so it is neither cleared nor reused.
    if (isThenable(answer)) return answer.then((results) => settle(t, message, results[0] as EnqueueResult, queue));
    entry.message = NO_MESSAGE; // hold no message after the call
    this.#scratch = entries;
    return settle(t, message, answer[0] as EnqueueResult, queue);
  }

  /**
   * After a send's enqueue: count it, or resolve a duplicate with the first message of its id, or
   * dead-letter a message nobody can receive (then reject with `RecipientNotFoundError`).
   */
  readonly settleSend = (t: Transport, message: Message, result: EnqueueResult, queue: string): MaybePromise<Message> => {
    if (result.status === 'enqueued') {
      this.counters.sent++;
      this.log.message('message sent', message);
      return message;
    }
    if (result.status === 'duplicate') {
      this.counters.duplicates++;
      this.log.message('duplicate send ignored', message);
      return result.original;
    }
    return this.#noRecipient(t, message, queue);
  };

  async #noRecipient(t: Transport, message: Message, queue: string): Promise<never> {
    await t.deadLetter({ message, queue, reason: 'recipient_not_found', attempts: 0, deadAt: new Date() });
    this.counters.deadLetters++;
    if (this.log.logger.isLevelEnabled('warn')) {
      this.log.logger.warn({ ...this.log.fields(message), reason: 'recipient_not_found' }, 'message dead-lettered: no such recipient');
    }
    throw new RecipientNotFoundError(queue, message.id);
  }

  /** The reply to `request`, stamped: from its recipient, in its conversation and trace, carrying `inReplyTo`. */
  prepareReply(request: Message, payload: unknown, options: ReplyOptions | undefined): OutgoingReply {
    if (this.closed) throw new ClosedError('message bus');
    if (request === null || typeof request !== 'object' || typeof request.id !== 'string' || request.headers === undefined) {
      throw new ValidationError(`reply needs the request message, got ${String(request)}`, { field: 'request' });
    }
    const replyTo = request.headers['replyTo'];
    const message = this.stamp(
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
    return { message, queue: replyTo ?? request.sender, requireRecipient: replyTo === undefined };
  }

  /**
   * Sends the reply to `request`. `auto` (a handler's return value or final failure): a sender that
   * is no agent and left no inbox gets nothing (counted in `unroutableReplies`) instead of an error.
   * Throws (synchronously) what stamping throws.
   */
  reply(
    t: Transport,
    request: Message,
    payload: unknown,
    options: ReplyOptions | undefined,
    auto: boolean,
  ): MaybePromise<Message | undefined> {
    const reply = this.prepareReply(request, payload, options);
    return this.enqueueOne(
      t,
      reply.queue,
      reply.message,
      reply.requireRecipient,
      0,
      (_t, _m, result) => this.settleReply(t, request, reply, result, auto),
      activeTracer() === undefined ? undefined : replyParent(request),
    );
  }

  /** After a reply's enqueue: count it, or drop an automatic reply nobody can get, or dead-letter it. */
  settleReply(
    t: Transport,
    request: Message,
    reply: OutgoingReply,
    result: EnqueueResult,
    auto: boolean,
  ): MaybePromise<Message | undefined> {
    if (auto && result.status === 'no_recipient') {
      this.counters.unroutable++;
      if (this.log.debugging)
        this.log.message('automatic reply not sent: the sender is no agent', reply.message, { inReplyTo: request.id });
      return undefined;
    }
    return this.settleSend(t, reply.message, result, reply.queue);
  }

  /** Sends an automatic reply (the ERROR of a request that failed for good), logging, never throwing, when that fails. */
  async autoReply(t: Transport, request: Message, payload: unknown, type: MessageType): Promise<void> {
    try {
      await this.reply(t, request, payload, { type }, true);
    } catch (err) {
      this.counters.errors++;
      this.log.logger.error({ err, ...this.log.fields(request) }, `sending the ${type} reply failed`);
    }
  }

  /**
   * Enqueues the message of dead letter `id` again (see `MessageBus.redrive`): claim the letter,
   * enqueue, then remove it; a failure anywhere releases the claim and leaves the letter stored.
   */
  async redrive(t: Transport, id: string): Promise<Message | null> {
    const claim = await t.claimDeadLetter(id, REDRIVE_CLAIM_MS);
    if (claim === null) return null;
    if (claim === 'claimed') throw new ConcordError('redrive_in_progress', `dead letter ${id} is being redriven by another call`);
    const { letter, token } = claim;
    const release = () =>
      t.settleDeadLetter(id, token, false).catch((err: unknown) => {
        this.log.logger.warn({ err, messageId: id }, 'releasing a redrive claim failed; it lapses by itself');
      });
    let result: EnqueueResult | undefined;
    let message: Message;
    try {
      message = redriveMessage(letter);
      const tracer = activeTracer();
      if (tracer !== undefined) redriveSpan(tracer, message, letter.queue);
      const requireRecipient = !letter.queue.startsWith(INBOX_PREFIX);
      [result] = await t.enqueue([{ queue: letter.queue, message, visibleAt: 0, requireRecipient, dedupeWindowMs: 0, publish: false }]);
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
      this.counters.errors++;
      this.log.logger.error(
        { err, messageId: id },
        'message redriven, but its dead letter could not be removed: a later redrive would deliver it again',
      );
    }
    this.counters.sent++;
    this.log.message('message redriven', message);
    return message;
  }

  /** Publishes `message` on `topic` (`bus.publish`, and `send` to recipient `''`). */
  async publish(t: Transport, topic: string, message: Message): Promise<void> {
    const tracer = activeTracer();
    const span = tracer === undefined ? undefined : startProducerSpan(tracer, message, 'publish', topic);
    try {
      await t.publish(topic, message);
    } catch (err) {
      if (span !== undefined) endSpan(span, err);
      throw err;
    }
    span?.end();
    this.counters.published++;
    if (this.log.debugging) this.log.logger.debug({ ...this.log.fields(message), topic }, 'message published');
  }

  /** Runs a subscriber on one message: its failure is logged and counted, never thrown. */
  runSubscriber(handler: SubscriptionHandler, message: Message, topic: string): void {
    if (this.closed) return;
    try {
      const result = handler(message);
      if (isThenable(result)) result.then(undefined, (err: unknown) => this.subscriberFailed(err, topic, message));
    } catch (err) {
      this.subscriberFailed(err, topic, message);
    }
  }

  subscriberFailed(err: unknown, topic: string, message: Message): void {
    this.counters.errors++;
    this.counters.subscriberErrors++;
    this.log.logger.error({ err, topic, ...this.log.fields(message) }, 'subscriber failed');
  }

  /** Whether a leased message may be delivered: not expired, not past its attempts. */
  verdict(m: Message, now: number): number {
    if (m.ttlMs !== undefined && m.timestamp.getTime() + m.ttlMs < now) return VERDICT_EXPIRED;
    if (m.attempt > this.settings.maxAttempts) return VERDICT_EXHAUSTED;
    return VERDICT_OK;
  }

  /** Counts a delivery (to a handler, a `receive` caller or a waiting request) and its latency. */
  delivered(m: Message, now: number, agent: string): void {
    this.counters.received++;
    this.counters.latency.record(now - m.timestamp.getTime());
    if (this.log.debugging) this.log.message('message delivered', m, { agent });
  }

  /** Dead-letters a leased message the verdict refused (expired, or its leases kept running out). */
  async retire(t: Transport, lease: Lease, verdict: number): Promise<void> {
    const m = lease.message;
    const expired = verdict === VERDICT_EXPIRED;
    const letter: DeadLetter = {
      message: m,
      queue: lease.queue,
      reason: expired ? 'expired' : 'max_attempts',
      error: expired ? `ttl of ${m.ttlMs} ms ran out before delivery` : 'lease expired',
      attempts: m.attempt - 1,
      deadAt: new Date(),
    };
    try {
      if (!(await t.deadLetter(letter, lease))) return;
    } catch (err) {
      this.counters.errors++;
      this.log.logger.error({ err, ...this.log.fields(m) }, 'dead-lettering failed; the message will come back after its lease');
      return;
    }
    this.counters.deadLetters++;
    const tracer = activeTracer();
    if (tracer !== undefined) settleSpan(tracer, m, lease.queue, 'dead_letter', letter.reason);
    this.log.logger.warn({ ...this.log.fields(m), reason: letter.reason, error: letter.error }, 'message dead-lettered');
    if (!expired && asksForReply(m)) await this.autoReply(t, m, errorPayload(new Error('lease expired'), m.attempt - 1), MessageType.ERROR);
  }

  /** A delivery failed (handler threw, or nack): retry with backoff, or dead-letter after the last attempt. */
  async retryOrDeadLetter(t: Transport, lease: Lease, error: unknown, delayMs?: number): Promise<boolean> {
    const m = lease.message;
    this.counters.errors++;
    const text = errorText(error);
    try {
      if (m.attempt >= this.settings.maxAttempts || isFinalFailure(error)) {
        const letter: DeadLetter = {
          message: m,
          queue: lease.queue,
          reason: 'max_attempts',
          error: text,
          attempts: m.attempt,
          deadAt: new Date(),
        };
        if (!(await t.deadLetter(letter, lease))) return false;
        this.counters.deadLetters++;
        const tracer = activeTracer();
        if (tracer !== undefined) settleSpan(tracer, m, lease.queue, 'dead_letter', letter.reason);
        this.log.logger.warn(
          { ...this.log.fields(m), reason: 'max_attempts', error: text },
          'message dead-lettered after its last attempt',
        );
        if (asksForReply(m)) await this.autoReply(t, m, errorPayload(error, m.attempt), MessageType.ERROR);
        return true;
      }
      const delay = delayMs ?? backoffDelay(m.attempt, this.settings.backoff);
      if (!(await t.requeue(lease, { delayMs: delay }))) return false;
      this.counters.retries++;
      if (this.log.logger.isLevelEnabled('info')) {
        this.log.logger.info({ ...this.log.fields(m), error: text, retryInMs: delay }, 'delivery failed; retrying');
      }
      return true;
    } catch (err) {
      this.counters.errors++;
      this.log.logger.error({ err, ...this.log.fields(m) }, 'retry bookkeeping failed; the message will come back after its lease');
      return false;
    }
  }

  /** Acks a handled delivery; a lost lease or a failed ack is logged (the message comes back), never thrown. */
  ack(t: Transport, lease: Lease, agent: string): MaybePromise<void> {
    let answer: MaybePromise<boolean>;
    try {
      answer = t.ack(lease);
    } catch (err) {
      this.ackFailed(err, lease.message);
      return undefined;
    }
    if (!isThenable(answer)) return this.afterAck(answer, lease.message, agent);
    return answer.then(
      (acked) => this.afterAck(acked, lease.message, agent),
      (err: unknown) => this.ackFailed(err, lease.message),
    );
  }

  afterAck(acked: boolean, m: Message, agent: string): void {
    if (acked) this.counters.acked++;
    else this.log.logger.warn({ ...this.log.fields(m), agent }, 'lease lost before ack; the message will be delivered again');
  }

  ackFailed(err: unknown, m: Message): void {
    this.counters.errors++;
    this.log.logger.error({ err, ...this.log.fields(m) }, 'ack failed; the message will come back after its lease');
  }

  deliveryFailed(err: unknown, m: Message): void {
    this.counters.errors++;
    this.log.logger.error({ err, ...this.log.fields(m) }, 'delivery failed');
  }
}

function newEntry(): EnqueueEntry {
  return { queue: '', message: NO_MESSAGE, visibleAt: IMMEDIATELY, requireRecipient: true, dedupeWindowMs: 0, publish: true };
}

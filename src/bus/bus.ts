import type { Context, Span } from '@opentelemetry/api';
import { hostname } from 'node:os';
import { type Logger, pino } from 'pino';
import { ClosedError, RecipientNotFoundError, ValidationError } from '../errors.js';
import { newId } from '../ids.js';
import {
  childTraceparent,
  DEFAULT_MAX_PAYLOAD_BYTES,
  describeValue,
  type Message,
  type MessageInput,
  MessageType,
  STAMP_OWN_HEADERS,
  STAMP_SELF_CORRELATED,
  STAMP_TRACE,
} from '../message.js';
import { activeTracer, endSpan, parentOf, startConsumerSpan, startProducerSpan } from '../observability/tracing.js';
import { checkOptionNames } from '../options.js';
import type { StateManager } from '../state/manager.js';
import { settlesWithin } from '../timers.js';
import { type Agent, checkRegisteredAgent, validateAgentName } from './agent.js';
import { resolveBackoff } from './backoff.js';
import { type BusOps, BusSubscription, type HandlerContext, PullDelivery, Registration } from './context.js';
import { BusCore, VERDICT_OK } from './core.js';
import { AgentConsumer, Consumers, LeaseWatch } from './delivery.js';
import { isThenable } from './maybe.js';
import { BusCounters, BusLog, DepthGauge } from './metrics.js';
import { Requests } from './requests.js';
import { TransportLink } from './link.js';
import { requirePositive, requireTopic } from './rules.js';
import { checkSchemaOption, type InferInput, type InferOutput, type SchemaLike, validateWith } from './schema.js';
import type { EnqueueEntry, EnqueueResult, Lease, Transport } from './transport.js';
import {
  AGENT_FIELDS,
  type AgentMetrics,
  BUS_OPTIONS,
  type BusMetrics,
  CLOSE_OPTIONS,
  type CloseOptions,
  type DeadLetter,
  type Delivery,
  type MessageBusOptions,
  type PublishInput,
  RECEIVE_OPTIONS,
  type ReceiveOptions,
  type ReplyOptions,
  REQUEST_OPTIONS,
  type RequestInput,
  type SendInput,
  type Subscription,
  type SubscriptionHandler,
} from './types.js';

export type * from './types.js';

/** Builds a bus's `BusOps` (assigned in the class's static block, where its private members are in reach). */
let busOps: (bus: MessageBus, logger: Logger, state: StateManager | undefined) => BusOps;

/**
 * The message bus: point-to-point queues with priorities, retries, dead letters and dedupe;
 * push (agents) and pull (`receive`) delivery; topic subscriptions; request/reply. Semantics live
 * here; a {@link Transport} only stores and moves messages, so every backend behaves the same.
 * This class is the public face; the steps it shares live in `core.ts`, push delivery in
 * `delivery.ts`, request/reply in `requests.ts` (see docs/ARCHITECTURE.md).
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
 *   (`headers.replyTo`) or else to the sender's queue; so does a FEEDBACK sent by `request()`.
 *   A sender that is no agent and left no inbox gets no automatic reply (counted in `unroutableReplies`).
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

  /** The transport, connected on first use, and the background setups sends wait for. */
  readonly #link: TransportLink;

  readonly #core: BusCore;
  readonly #counters = new BusCounters();
  readonly #log: BusLog;
  readonly #requestTimeoutMs: number;
  readonly #drainTimeoutMs: number;
  readonly #ops: BusOps;
  readonly #watch = new LeaseWatch();
  readonly #consumers: Consumers;
  readonly #requests: Requests;
  readonly #depths: DepthGauge;

  readonly #agents = new Map<string, Registration>();
  /** Names `receive` found registered by another bus on the backend (asked once each). */
  readonly #knownRecipients = new Set<string>();
  readonly #subscriptions = new Set<BusSubscription>();
  /** Aborts every wait of this bus (consumer loops, inbox, receive) when it closes. */
  readonly #stop = new AbortController();

  #closing = false;
  /** close() gave up draining: handler signals are aborted. */
  #aborted = false;
  #closePromise: Promise<void> | undefined;

  /**
   * @throws ValidationError when an option is out of range (named in the message).
   */
  constructor(options: MessageBusOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw new ValidationError(`MessageBus options must be an object, got \`${String(options)}\``);
    }
    checkOptionNames(options, BUS_OPTIONS, 'MessageBus options');
    this.id = newId().toLowerCase();
    const maxAttempts = options.maxAttempts ?? 5;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
      throw new ValidationError(`maxAttempts must be an integer >= 1, got \`${String(maxAttempts)}\``, { field: 'maxAttempts' });
    }
    const logger = options.logger ?? pino({ level: 'silent' });
    this.#log = new BusLog(logger, options.logger === undefined);
    this.#core = new BusCore(
      {
        maxAttempts,
        backoff: resolveBackoff(options.backoff),
        leaseMs: requirePositive('leaseMs', options.leaseMs ?? 60_000),
        maxPayloadBytes: requirePositive('maxPayloadBytes', options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES),
        dedupeMs: requirePositive('dedupeWindowMs', options.dedupeWindowMs ?? 300_000, true),
        consumer: `${hostname()}:${process.pid}:${newId().slice(-8)}`,
      },
      this.#counters,
      this.#log,
    );
    this.#requestTimeoutMs = requirePositive('requestTimeoutMs', options.requestTimeoutMs ?? 30_000);
    this.#drainTimeoutMs = requirePositive('drainTimeoutMs', options.drainTimeoutMs ?? 10_000, true);
    this.#ops = busOps(this, logger, options.state);
    this.#consumers = new Consumers(this.#core, this.#ops, this.#watch);
    this.#requests = new Requests(this.#core, this.id, this.#stop.signal);
    this.#depths = new DepthGauge(logger);
    this.#link = new TransportLink(options.transport, (err, what) => {
      this.#counters.errors++;
      this.#log.logger.error({ err }, `${what} failed`);
    });
  }

  /**
   * Resolves once the transport is connected and every registration and subscription made so far
   * is live; rejects with the first failure among them.
   */
  async ready(): Promise<void> {
    await this.#link.ready();
    if (this.#link.errors.length > 0) throw this.#link.errors[0];
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
    if (agent !== undefined) checkRegisteredAgent(name, agent, AGENT_FIELDS);
    if (this.#agents.has(name)) {
      throw new ValidationError(`agent \`${name}\` is already registered on this bus`, { field: 'name' });
    }
    const reg = agent === undefined ? new Registration(name, undefined) : this.#consumers.register(name, agent);
    this.#agents.set(name, reg);
    reg.setup = this.#link.track(
      (async () => {
        const t = await this.#link.connect();
        await t.addRecipient(name);
        reg.setup = undefined; // done: 10,000 agents need not keep 10,000 settled promises
        if (reg.stopped) return;
        if (reg instanceof AgentConsumer) this.#consumers.start(t, reg);
        if (this.#log.debugging) {
          this.#log.logger.debug({ agent: name, mode: reg.agent ? 'push' : 'pull', concurrency: reg.concurrency }, 'agent registered');
        }
      })(),
      `registering agent \`${name}\``,
    );
  }

  /**
   * Stops delivering to `name` on this bus and removes it as a recipient (sends to it then fail).
   * Messages already queued stay queued. A handler still running gets `drainTimeoutMs` to finish,
   * as on close; after that its `ctx.signal` is aborted and its message, not acked, comes back
   * after its lease: a stuck handler never makes this hang. Resolves false if it was not registered.
   * Note that the recipient registry is shared: other buses consuming the same name stop receiving sends too.
   */
  async unregisterAgent(name: string): Promise<boolean> {
    const reg = this.#agents.get(name);
    if (reg === undefined) return false;
    this.#agents.delete(name);
    reg.stop();
    const reason = new ClosedError(`agent \`${name}\``);
    this.#consumers.wake(reason);
    await reg.setup?.catch(() => undefined);
    const t = this.#link.current;
    if (t !== undefined && !this.#core.closed) await t.removeRecipient(name);
    if (!(await settlesWithin(reg.loopEnded(), this.#drainTimeoutMs))) {
      this.#log.logger.warn(
        { agent: name, running: reg.running, drainMs: this.#drainTimeoutMs },
        'unregisterAgent: a handler still running after the drain timeout; aborting its signal',
      );
      this.#watch.abortAgent(name, reason);
    }
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
      message = this.#core.stamp(input);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#send(message, input.id !== undefined) as Promise<Message<P>>;
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
    const messages = inputs.map((input) => this.#core.stamp(input));
    const t = await this.#link.ready();
    const out: Message[] = new Array(messages.length);
    const entries: EnqueueEntry[] = [];
    const slots: number[] = [];
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as Message;
      if (m.recipient === '') {
        await this.#core.publish(t, m.type, m);
        out[i] = m;
        continue;
      }
      const dedupeWindowMs = (inputs[i] as SendInput<P>).id !== undefined ? this.#core.settings.dedupeMs : 0;
      entries.push({ queue: m.recipient, message: m, visibleAt: 0, requireRecipient: true, dedupeWindowMs, publish: true });
      slots.push(i);
    }
    let missing: RecipientNotFoundError | undefined;
    if (entries.length > 0) {
      const tracer = activeTracer();
      const spans = tracer === undefined ? undefined : entries.map((e) => startProducerSpan(tracer, e.message, 'send', e.queue));
      let results: EnqueueResult[];
      try {
        results = await t.enqueue(entries);
      } catch (err) {
        if (spans !== undefined) for (const span of spans) endSpan(span, err);
        throw err;
      }
      for (let k = 0; k < entries.length; k++) {
        const m = (entries[k] as EnqueueEntry).message;
        try {
          out[slots[k] as number] = await this.#core.settleSend(t, m, results[k] as EnqueueResult, m.recipient);
          spans?.[k]?.end();
        } catch (err) {
          if (spans !== undefined) endSpan(spans[k] as Span, err);
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
    const message = this.#core.stamp({
      sender: input.sender,
      recipient: '',
      type: input.type,
      payload: input.payload,
      priority: input.priority,
      correlationId: input.correlationId,
      headers,
      id: input.id,
    });
    const t = await this.#link.ready();
    await this.#core.publish(t, topic ?? message.type, message);
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
    const deliver = (message: Message): void => this.#core.runSubscriber(handler, message, topic);
    sub.ready = this.#link.track(
      (async () => {
        const t = await this.#link.connect();
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
      throw new ValidationError(
        `receive options must be an object such as \`{ timeout: 1000 }\`, got \`${String(options)}\` (${typeof options})${hint}`,
        {
          field: 'options',
        },
      );
    }
    checkOptionNames(options, RECEIVE_OPTIONS, 'receive options');
    const timeout = requirePositive('timeout', options.timeout ?? 0, true);
    const leaseMs = requirePositive('leaseMs', options.leaseMs ?? this.#core.settings.leaseMs);
    const t = await this.#link.ready();
    if (!this.#agents.has(agentName) && !this.#knownRecipients.has(agentName)) {
      // Not registered here: ask the backend once (another bus may have registered it).
      if (!(await t.hasRecipient(agentName))) throw new RecipientNotFoundError(agentName);
      this.#knownRecipients.add(agentName);
    }
    const until = Date.now() + timeout;
    for (;;) {
      const waitMs = Math.max(0, until - Date.now());
      const [lease] = await t.lease(agentName, {
        leaseMs,
        waitMs,
        max: 1,
        signal: this.#stop.signal,
        consumer: this.#core.settings.consumer,
      });
      if (lease === undefined) return null;
      const now = Date.now();
      const verdict = this.#core.verdict(lease.message, now);
      if (verdict !== VERDICT_OK) {
        await this.#core.retire(t, lease, verdict);
        continue;
      }
      this.#core.delivered(lease.message, now, agentName);
      const delivery = new PullDelivery(this.#ops, lease);
      const tracer = activeTracer();
      if (tracer !== undefined) delivery.span = startConsumerSpan(tracer, lease.message, agentName, 'receive');
      return delivery;
    }
  }

  // -------------------------------------------------------------------------------- request/reply

  /**
   * Sends a TASK (or, with `type`, a FEEDBACK) to `recipient` and resolves with its reply (the
   * message whose `headers.inReplyTo` is the request's id). The reply comes through this bus's own
   * inbox, so waiting never consumes any other message.
   *
   * With `schema` (`{ input, output }`: zod or any Standard Schema), the payload is validated (and
   * typed) before anything is sent, and the reply's payload is validated and typed on the way back:
   * a reply that does not fit rejects with `ValidationError` naming the field.
   *
   * @throws RemoteError when the reply is an ERROR (its payload attached).
   * @throws RequestTimeoutError when no reply comes within `timeout`.
   * @throws RecipientNotFoundError when no agent is registered as `recipient`.
   * @throws ValidationError when the payload (or, with `schema.output`, the reply) does not fit.
   */
  request<I extends SchemaLike | undefined = undefined, O extends SchemaLike | undefined = undefined>(
    input: RequestInput<InferInput<I, Record<string, unknown>>> & { schema?: { input?: I; output?: O } },
  ): Promise<Message<InferOutput<O, Record<string, unknown>>>>;
  request<P = Record<string, unknown>>(input: RequestInput<P> & { schema?: undefined }): Promise<Message>;
  request(input: RequestInput<unknown>): Promise<Message> {
    let message: Message;
    let timeout: number;
    let output: SchemaLike | undefined;
    try {
      if (this.#closing) throw new ClosedError('message bus');
      if (input === null || typeof input !== 'object') throw new ValidationError(`request takes an object, got ${String(input)}`);
      checkOptionNames(input, REQUEST_OPTIONS, 'request');
      timeout = input.timeout === undefined ? this.#requestTimeoutMs : requirePositive('timeout', input.timeout);
      const type = input.type ?? MessageType.TASK;
      if (type !== MessageType.TASK && type !== MessageType.FEEDBACK) {
        throw new ValidationError(`request type must be \`task\` or \`feedback\`, got \`${String(type)}\``, { field: 'type' });
      }
      const schema = checkSchemaOption(input.schema, 'request schema');
      output = schema?.output;
      const payload = schema?.input === undefined ? input.payload : validateWith(schema.input, input.payload, 'payload');
      message = this.#core.stamp(
        {
          sender: input.sender,
          recipient: input.recipient,
          type,
          payload,
          priority: input.priority,
          correlationId: input.correlationId,
          headers: { ...input.headers, replyTo: this.#requests.inbox },
          ttlMs: input.ttlMs,
          id: input.id,
        },
        STAMP_TRACE | STAMP_OWN_HEADERS | STAMP_SELF_CORRELATED,
      );
      if (message.recipient === '') throw new ValidationError('request needs a recipient, got ``', { field: 'recipient' });
    } catch (err) {
      return Promise.reject(err);
    }
    const replied =
      this.#link.current === undefined || this.#link.busy
        ? this.#link.ready().then((t) => this.#dispatch(t, message, timeout))
        : this.#dispatch(this.#link.current, message, timeout);
    if (output === undefined) return replied;
    const schema = output;
    return replied.then((reply) => ({ ...reply, payload: validateWith(schema, reply.payload, 'reply payload') }) as Message);
  }

  #dispatch(t: Transport, message: Message, timeout: number): Promise<Message> {
    if (this.#closing) return Promise.reject(new ClosedError('message bus'));
    return this.#requests.dispatch(t, message, timeout);
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
    return (await this.#reply(request, payload, options)) as Message<P>;
  }

  /** A reply from a handler (`ctx.reply`) or the public `reply`. */
  #reply(request: Message, payload: unknown, options: ReplyOptions | undefined): Promise<Message> {
    const t = this.#link.current;
    if (t === undefined) return this.#link.connect().then(() => this.#reply(request, payload, options));
    try {
      return Promise.resolve(this.#core.reply(t, request, payload, options, false) as Message);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  // -------------------------------------------------------------------------------- dead letters

  /** The dead-letter queue, oldest first (`limit` caps how many). */
  async getDeadLetters(options: { limit?: number } = {}): Promise<DeadLetter[]> {
    const t = await this.#link.ready();
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
      throw new ValidationError(`redrive needs the id of a dead letter's message (a non-empty string), got ${describeValue(id)}`, {
        field: 'id',
      });
    }
    if (this.#closing) throw new ClosedError('message bus');
    return this.#core.redrive(await this.#link.ready(), id);
  }

  /** Empties the dead-letter queue; resolves with how many letters were removed. */
  async purgeDeadLetters(): Promise<number> {
    const t = await this.#link.ready();
    return t.purgeDeadLetters();
  }

  // -------------------------------------------------------------------------------- metrics

  /** Counters, latency and per-agent queue figures (see {@link BusMetrics}). */
  metrics(): BusMetrics {
    const t = this.#core.closed ? undefined : this.#link.current;
    const agents: Record<string, AgentMetrics> = {};
    for (const [name, reg] of this.#agents) {
      const depth = t === undefined ? { ready: 0, delayed: 0, inFlight: 0 } : this.#depths.read(t, name);
      agents[name] = {
        queueDepth: depth.ready + depth.delayed,
        ready: depth.ready,
        delayed: depth.delayed,
        inFlight: Math.max(depth.inFlight, reg.running),
        handling: reg.running,
      };
    }
    return this.#counters.report(this.#requests.size, this.#consumers.running, agents);
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
        if (options === null || typeof options !== 'object')
          throw new ValidationError(`close options must be an object, got \`${String(options)}\``);
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
    for (const reg of this.#agents.values()) reg.stop();
    const closed = new ClosedError('message bus');
    this.#consumers.wake(closed);
    this.#stop.abort(closed);
    await this.#link.settle();
    // Drain: running handlers finish (they may still send and reply).
    const drained = await this.#drain(drainMs);
    this.#requests.rejectAll(new ClosedError('message bus'));
    this.#watch.stop();
    // A concurrency-1 loop runs its handler inline: one still running after the drain is abandoned
    // (not acked, it comes back after its lease), and so is its loop, or close would wait forever.
    const loops: Promise<void>[] = [];
    for (const reg of this.#agents.values()) if (drained || reg.running === 0) loops.push(reg.loopEnded());
    if (this.#requests.loop !== undefined) loops.push(this.#requests.loop);
    await Promise.allSettled(loops);
    await Promise.allSettled([...this.#subscriptions].map((sub) => sub.unsubscribe()));
    this.#core.closed = true;
    this.#watch.watched.clear();
    const t = this.#link.current;
    if (t !== undefined && this.#link.owned) await t.close();
    this.#log.logger.debug({ bus: this.id }, 'bus closed');
  }

  /** Waits up to `drainMs` for running handlers; false (and their signals aborted) when some still run. */
  async #drain(drainMs: number): Promise<boolean> {
    const consumers = this.#consumers;
    if (consumers.running === 0) return true;
    const drained = await settlesWithin(new Promise<void>((resolve) => (consumers.onIdle = resolve)), drainMs);
    consumers.onIdle = null;
    if (!drained) {
      this.#log.logger.warn(
        { running: consumers.running, drainMs },
        'close: handlers still running after the drain timeout; aborting their signals',
      );
      this.#aborted = true;
      this.#watch.abortAll(new ClosedError('message bus'));
    }
    return drained;
  }

  // ================================================================================ internals

  /**
   * The one send path (`send`, `ctx.send`): enqueue (published to subscribers as part of it), then
   * settle the result. Before the transport is connected, or while a registration of this bus is
   * still under way, it first waits for them, then takes the same path.
   */
  #send(message: Message, dedupe: boolean, parent?: Context): Promise<Message> {
    const t = this.#link.current;
    if (t === undefined || this.#link.busy) return this.#link.ready().then(() => this.#send(message, dedupe, parent));
    if (message.recipient === '') return this.#core.publish(t, message.type, message).then(() => message);
    try {
      const core = this.#core;
      const sent = core.enqueueOne(t, message.recipient, message, true, dedupe ? core.settings.dedupeMs : 0, core.settleSend, parent);
      return isThenable(sent) ? sent : Promise.resolve(sent);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A handler's `ctx.send`: from the agent, in the handled message's conversation and trace. */
  #sendFromHandler(ctx: HandlerContext, input: Omit<MessageInput<unknown>, 'sender'> & { sender?: string }): Promise<Message> {
    if (this.#core.closed) return Promise.reject(new ClosedError('message bus'));
    if (input === null || typeof input !== 'object') {
      return Promise.reject(new ValidationError(`ctx.send takes an object, got ${String(input)}`));
    }
    const handled = ctx.message;
    try {
      const message = this.#core.stamp({
        ...input,
        sender: input.sender ?? ctx.agent,
        correlationId: input.correlationId ?? handled.correlationId ?? handled.id,
        headers: { traceparent: childTraceparent(handled.headers['traceparent']), ...input.headers },
      });
      // Its PRODUCER span (when tracing) is a child of the delivery being handled.
      return this.#send(message, input.id !== undefined, ctx.span === undefined ? undefined : parentOf(ctx.span));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  static {
    // What `BusOps` needs of a bus, bound once per bus (no closure per message).
    busOps = (bus, logger, state) => ({
      logger,
      state,
      aborted: () => bus.#aborted,
      sendFrom: (ctx, input) => bus.#sendFromHandler(ctx, input),
      reply: (request, payload, opts) => bus.#reply(request, payload, opts),
      extend: (lease, ms) => {
        requirePositive('ms', ms);
        return Promise.resolve((bus.#link.current as Transport).extendLease(lease, ms));
      },
      watch: (ctx) => bus.#watch.watch(ctx),
      ack: (lease) => bus.#ackPulled(lease),
      nack: (lease, error, delayMs) => bus.#core.retryOrDeadLetter(bus.#link.current as Transport, lease, error, delayMs),
    });
  }

  /** `Delivery.ack` of a pulled message: a failure rejects the caller (it decides), a lost lease resolves false. */
  async #ackPulled(lease: Lease): Promise<boolean> {
    const ok = await (this.#link.current as Transport).ack(lease);
    if (ok) this.#counters.acked++;
    return ok;
  }
}

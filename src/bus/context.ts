import type { Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { ClosedError, ConcordError, ValidationError } from '../errors.js';
import type { Message, MessageInput, MessageType } from '../message.js';
import type { StateManager } from '../state/manager.js';
import type { Agent, AgentContext } from './agent.js';
import { endSpan } from '../observability/tracing.js';
import type { Lease } from './transport.js';
import type { Delivery, ReplyOptions, Subscription } from './types.js';

// What the bus hands out per registration, delivery and subscription: the handler's `ctx`, a
// pull-mode delivery and a subscription handle. They reach back into their bus only through `BusOps`.

/** A push or pull agent registered on this bus. */
export class Registration {
  readonly name: string;
  readonly agent: Agent | undefined;
  readonly concurrency: number;
  /** Handlers of this agent running now. */
  running = 0;
  stopped = false;
  /** Its setup (the recipient added, the consumer started) while under way. */
  setup: Promise<void> | undefined = undefined;
  /** Wakes the consumer loop when a handler slot frees up. */
  slot: (() => void) | null = null;
  /** A consumer loop runs for this agent (a push agent, from its setup until the loop ends). */
  looping = false;
  /** Made when somebody waits for the loop to end (`loopEnded`), not before: most never end. */
  #ended: Promise<void> | undefined;
  #onEnded: (() => void) | undefined;

  constructor(name: string, agent: Agent | undefined) {
    this.name = name;
    this.agent = agent;
    this.concurrency = agent?.concurrency ?? 1;
  }

  /**
   * Stops delivering: wakes the loop if it waits for a free slot. A loop waiting for a message
   * ends once its bus's `Consumers.wake()` ends the wait (one signal for all loops, not one each).
   */
  stop(): void {
    this.stopped = true;
    const slot = this.slot;
    this.slot = null;
    slot?.();
  }

  /** Resolves once the consumer loop ended (at once when none runs). Call after `stop()`. */
  loopEnded(): Promise<void> {
    if (!this.looping) return SETTLED;
    return (this.#ended ??= new Promise<void>((resolve) => (this.#onEnded = resolve)));
  }

  /** The consumer loop ended (it saw `stopped`). */
  endLoop(): void {
    this.looping = false;
    this.#onEnded?.();
  }
}

const SETTLED: Promise<void> = Promise.resolve();

/** What handler contexts and deliveries reach inside their bus (one object per bus, no per-message closures). */
export interface BusOps {
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
export class HandlerContext implements AgentContext {
  readonly agent: string;
  readonly message: Message;
  /** Epoch ms the lease runs out (kept up to date by `extendLease`). */
  deadline: number;
  /** Set once the handler replied itself (no automatic RESULT then). */
  replied = false;
  /** Set once the handler settled. */
  finished = false;
  /** The handler's promise, between `handleMessage` returning it and the consumer loop taking it. */
  handling: PromiseLike<unknown> | undefined = undefined;
  /** The delivery's CONSUMER span while an OpenTelemetry SDK traces it (ended when it settles). */
  span: Span | undefined = undefined;
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
export class PullDelivery implements Delivery {
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
  /** The delivery's `receive` span while an OpenTelemetry SDK traces it (ended by ack or nack). */
  span: Span | undefined = undefined;

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
    this.#endSpan(undefined);
    return this.#ops.ack(this.#lease);
  }

  async nack(error?: unknown, options?: { delayMs?: number }): Promise<boolean> {
    if (this.#settled) return false;
    const delayMs = options?.delayMs;
    if (delayMs !== undefined && !(delayMs >= 0 && Number.isFinite(delayMs))) {
      throw new ValidationError(`nack delayMs must be a finite number >= 0, got \`${String(delayMs)}\``, { field: 'delayMs' });
    }
    this.#settled = true;
    this.#endSpan(error ?? new ConcordError('nacked', `delivery ${this.id} was nacked`));
    return this.#ops.nack(this.#lease, error, delayMs);
  }

  #endSpan(error: unknown): void {
    if (this.span === undefined) return;
    endSpan(this.span, error);
    this.span = undefined;
  }

  async extendLease(ms: number): Promise<boolean> {
    if (this.#settled) return false;
    const ok = await this.#ops.extend(this.#lease, ms);
    if (ok) this.#deadline = Date.now() + ms;
    return ok;
  }
}

export class BusSubscription implements Subscription {
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

import type { Logger } from 'pino';
import type { MessageInput, MessageType, Message } from '../message.js';
import { optionNames } from '../options.js';
import type { StateManager } from '../state/manager.js';
import type { Agent } from './agent.js';
import type { BackoffOptions } from './backoff.js';
import type { SchemaLike } from './schema.js';
import type { DeadLetter, DeadLetterReason, Transport } from './transport.js';

// The public types of the bus: its options, inputs and what it reports.

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
  /**
   * Schemas (zod, or any Standard Schema: valibot, arktype...) of the payload sent (`input`) and of
   * the reply's payload (`output`): both are validated, and typed, at the door. See "Typed messages"
   * in the README.
   */
  schema?: { input?: SchemaLike; output?: SchemaLike };
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

/** The option names each entry point knows (checked against its interface at compile time). */
export const BUS_OPTIONS = optionNames<MessageBusOptions>()([
  'transport',
  'maxAttempts',
  'backoff',
  'leaseMs',
  'maxPayloadBytes',
  'logger',
  'dedupeWindowMs',
  'requestTimeoutMs',
  'drainTimeoutMs',
  'state',
]);
export const REQUEST_OPTIONS = optionNames<RequestInput>()([
  'sender',
  'recipient',
  'payload',
  'type',
  'timeout',
  'priority',
  'correlationId',
  'headers',
  'ttlMs',
  'id',
  'schema',
]);
export const RECEIVE_OPTIONS = optionNames<ReceiveOptions>()(['timeout', 'leaseMs']);
export const CLOSE_OPTIONS = optionNames<CloseOptions>()(['drainTimeoutMs']);
export const AGENT_FIELDS = optionNames<Agent>()(['name', 'concurrency', 'handleMessage']);

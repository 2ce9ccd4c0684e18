import type { Message } from '../message.js';

/**
 * A value, or a promise of it. Per-message operations may answer synchronously when they need no
 * I/O (the memory transport); the bus handles both forms once per operation, never with a twin.
 * A failure may be thrown or come as a rejected promise: the bus handles both alike.
 */
export type MaybePromise<T> = T | Promise<T>;

/**
 * The Transport port: the primitives a message backend offers the bus. It knows nothing of
 * retry policy, dead-letter reasons' meaning, dedupe windows' length, request/reply or agents:
 * the bus decides *what* happens; a transport only stores, orders, leases and moves messages.
 *
 * Ordering every transport must keep: among messages of one queue that are visible, the one
 * with the highest `priority` is leased first; equal priority leaves in enqueue order (FIFO).
 * A requeued message keeps its original place in that order once it is visible again.
 */
export interface Transport {
  /** Short backend name: `memory`, `redis`, ... */
  readonly kind: string;
  /** The URL it was made from (credentials redacted), for errors and logs. */
  readonly url: string;

  /** Opens connections; throws `TransportError` naming the URL when the backend is unreachable. Idempotent. */
  connect(): Promise<void>;

  /** Marks `queue` as a known recipient (an agent). Shared by every bus on the same backend/namespace. */
  addRecipient(queue: string): Promise<void>;
  removeRecipient(queue: string): Promise<void>;
  hasRecipient(queue: string): Promise<boolean>;

  /**
   * Enqueues each entry atomically and in order (one round trip on networked transports).
   * Per entry: if `dedupeWindowMs > 0` and an entry with the same message id was enqueued
   * within that window, nothing is enqueued and the first message is returned; else if
   * `requireRecipient` and the queue is not a recipient, nothing is enqueued (`no_recipient`);
   * else the message is enqueued and, when `publish` is set, also fanned out to the subscribers
   * of `message.type` and of `'*'` as part of the same operation (at-most-once, like `publish`).
   * A duplicate or refused entry is not published.
   *
   * May answer synchronously (memory). It must not keep `entries` or their objects: the bus may
   * reuse them once the call has returned (for a promise: once it settled).
   */
  enqueue(entries: EnqueueEntry[]): MaybePromise<EnqueueResult[]>;

  /**
   * Leases up to `max` visible messages of `queue` (highest priority first, FIFO within one),
   * waiting up to `waitMs` for the first one without busy polling. Each leased message has
   * `attempt` set to how many times it has now been leased (1 on first delivery).
   * Leases whose deadline passed are first made visible again (crashed or hung consumers).
   * Answers `[]` when the wait ends empty or `signal` aborts.
   *
   * May answer synchronously when it need not wait: messages are visible now, or `waitMs` is 0.
   * An answer that comes later comes as a promise or, when `options.waiter` is given, through the
   * waiter: `lease` then returns `undefined` (see {@link LeaseWaiter}; a networked transport hands
   * it every answer). The bus calls it from one consumer per queue and bus; several buses
   * (processes) may lease the same queue concurrently, and each message goes to one of them.
   */
  lease(queue: string, options: WaiterLeaseOptions): Lease[] | undefined;
  lease(queue: string, options: LeaseOptions): MaybePromise<Lease[]>;

  /**
   * Removes a leased message for good. False if the lease was lost (expired and re-leased or
   * moved). The bus calls it at most once per lease, after the handler settled, and never
   * together with `requeue`, `deadLetter(…, lease)` or `enqueueAndAck` for the same lease.
   */
  ack(lease: Lease): MaybePromise<boolean>;
  /**
   * `enqueue(entries)`, then `ack(lease)`, as one atomic step: a reply and the request it answers,
   * so a crash never leaves the request acked without its reply, and a networked transport spends
   * one round trip, not two. The ack does not depend on the entries' results; `acked` is false
   * when the lease was lost (the entries are enqueued all the same, as they are by enqueue then
   * ack). When it rejects, neither happened (or, if the connection failed after the backend ran
   * it, both did).
   */
  enqueueAndAck(entries: EnqueueEntry[], lease: Lease): MaybePromise<{ results: EnqueueResult[]; acked: boolean }>;
  /** Returns a leased message to its queue, visible again after `delayMs`. False if the lease was lost. */
  requeue(lease: Lease, options: { delayMs: number }): MaybePromise<boolean>;
  /** Moves the lease deadline to now + `ms`. False if the lease was lost. Called while the handler runs. */
  extendLease(lease: Lease, ms: number): MaybePromise<boolean>;

  /**
   * Stores a dead letter. With `lease`, the leased message is removed in the same atomic step
   * (returns false, storing nothing, if that lease was lost).
   */
  deadLetter(letter: DeadLetter, lease?: Lease): Promise<boolean>;
  /** Oldest first. */
  listDeadLetters(options?: { limit?: number }): Promise<DeadLetter[]>;
  /** Removes and returns the dead letter of message `messageId`. */
  takeDeadLetter(messageId: string): Promise<DeadLetter | null>;
  /**
   * Claims the dead letter of `messageId` for a redrive, leaving it stored (and listed): resolves
   * with it and a claim token; null when there is none; `'claimed'` while another claim on it is
   * younger than `claimMs`. The redrive enqueues the message, then settles the claim: so a failure
   * anywhere (the enqueue refused or failed, the process died) leaves the letter where it was,
   * and two redrives of one letter do not both enqueue it. A claim nobody settles lapses after
   * `claimMs`. Storing a new letter for the same id (`deadLetter`) ends any claim on the old one.
   */
  claimDeadLetter(messageId: string, claimMs: number): Promise<DeadLetterClaim | 'claimed' | null>;
  /**
   * Ends a claim. With `remove`, deletes the letter, if the claim `token` still holds (a letter
   * stored since for the same id is kept); without, just releases the claim. Resolves whether
   * the claim still held.
   */
  settleDeadLetter(messageId: string, token: string, remove: boolean): Promise<boolean>;
  /** Removes every dead letter; returns how many. */
  purgeDeadLetters(): Promise<number>;

  /**
   * Fans `message` out to every subscriber of `topic` and of `'*'`, in every process. At-most-once.
   * Only `bus.publish()` calls it: messages that are also enqueued are published by `enqueue`
   * (`EnqueueEntry.publish`).
   */
  publish(topic: string, message: Message): Promise<void>;
  /** Resolves once the subscription is live; the returned function ends it. */
  subscribe(topic: string, handler: (message: Message) => void): Promise<() => Promise<void>>;

  /** How many messages of `queue` are ready, delayed (not yet visible) and leased. May answer synchronously. */
  depth(queue: string): MaybePromise<QueueDepth>;

  // Optional read-only inspection, for dashboards and exporters (never on a delivery path).

  /** Optional: the queues this backend knows (registered recipients), sorted by name. */
  listQueues?(): Promise<string[]>;
  /** Optional: what `queue` holds beyond its counts (leases, priorities, oldest message); see {@link QueueInspection}. */
  inspectQueue?(queue: string, options?: { limit?: number }): Promise<QueueInspection>;

  /** Closes connections and wakes every waiting `lease` with `[]`. Idempotent. */
  close(): Promise<void>;
}

/** What `inspectQueue` reports about one queue, as of the call. */
export interface QueueInspection {
  /** Waiting messages (ready and delayed) per priority, index = priority 0..10; null when the transport cannot say cheaply. */
  byPriority: number[] | null;
  /** Creation time (epoch ms) of the oldest waiting message; null when none waits or the transport cannot say cheaply. */
  oldestWaitingAt: number | null;
  /** Leased messages, earliest deadline first, at most `limit` (default 100). */
  leases: LeaseInfo[];
}

/** One lease as an inspector sees it. The port does not name consumers: the token identifies the lease. */
export interface LeaseInfo {
  message: Message;
  attempt: number;
  token: string;
  /** Epoch ms when the lease runs out and the message becomes visible again. */
  deadline: number;
  /** Who holds the lease: the `consumer` its lease call named (absent when none was named). */
  holder?: string;
}

/**
 * Queues whose names start with this are reply inboxes: the bus named `_inbox.<id>` consumes its
 * own and nobody else does (agent names cannot start with `_`). Replies are delivered at most once
 * and without priority order (each settles the one request waiting for it), so a transport may
 * store an inbox more cheaply than a queue (Redis: a plain list, popped by a blocking pop); lease,
 * ack, requeue, extendLease, deadLetter and depth must still work on it.
 */
export const INBOX_PREFIX = '_inbox.';

export interface EnqueueEntry {
  queue: string;
  message: Message;
  /** Epoch ms at which the message becomes visible: 0 (or any past time) for immediate delivery. */
  visibleAt: number;
  /** Refuse with `no_recipient` unless `queue` is a registered recipient. */
  requireRecipient: boolean;
  /** 0 = no dedupe. */
  dedupeWindowMs: number;
  /**
   * Also fan the message out to subscribers of `message.type` and `'*'` (as `publish` does) when,
   * and only when, it is enqueued (not a duplicate, not refused). Default false.
   */
  publish?: boolean;
}

export type EnqueueResult = { status: 'enqueued' } | { status: 'duplicate'; original: Message } | { status: 'no_recipient' };

export interface LeaseOptions {
  /** How long the consumer owns each leased message before it is redelivered. */
  leaseMs: number;
  /** How long to wait for a first message; 0 = do not wait. */
  waitMs: number;
  /** Most messages to lease at once (default 1). */
  max?: number;
  signal?: AbortSignal;
  /**
   * Who leases (the bus: `<host>:<pid>:<bus id>`, one string per bus), recorded with each lease
   * for `inspectQueue`'s `holder`. Opaque to the transport; it never changes a lease's meaning.
   */
  consumer?: string;
}

/**
 * `LeaseOptions` whose answer, when it does not come at once, goes to `waiter` (see
 * {@link LeaseWaiter}). It may be a class instance (the bus's consumer is its own options and
 * waiter): read its fields, do not copy it with a spread.
 */
export interface WaiterLeaseOptions extends LeaseOptions {
  waiter: LeaseWaiter;
}

/**
 * Takes the answer of a `lease` call that did not answer at once, instead of a promise: a caller
 * keeps one waiter (a consumer: one per agent) and gives it to each of its lease calls, so an idle
 * consumer holds no promise, closure or suspended frame, and a transport that keeps its waits as
 * records allocates nothing per wait. That is what lets 10,000 idle agents cost little memory and
 * no garbage collection work while the busy ones run.
 *
 * The transport calls exactly one of its methods, once per lease call that returned `undefined`,
 * never from inside a transport call (in a later microtask at the earliest, as a promise would),
 * and keeps no reference to it afterwards. The same waiter may be given to the next lease call
 * from inside `leased` or `failed`. Neither method may throw.
 */
export interface LeaseWaiter {
  /** The leases; `[]` when the wait ended without one (`waitMs` passed, the signal aborted, the transport closed). */
  leased(leases: Lease[]): void;
  /** The lease failed: what its promise would have rejected with. */
  failed(err: unknown): void;
}

export interface Lease {
  queue: string;
  message: Message;
  /** Identifies this lease: a message re-leased after expiry gets a new token. */
  token: string;
  /** Epoch ms. */
  deadline: number;
  /**
   * Set only on a lease from a reply inbox whose entry did not decode: why it did not. The
   * transport has already dead-lettered the data (`malformed`, with its raw bytes); `message` is a
   * stand-in with an empty payload that keeps the routing fields it could read (`correlationId`,
   * `headers.inReplyTo`), so the bus can fail the request waiting for it at once instead of
   * letting it time out. Nothing is held for such a lease: it is never acked.
   */
  malformed?: string;
}

export type DeadLetterReason = 'recipient_not_found' | 'max_attempts' | 'expired' | 'malformed';

export interface DeadLetter {
  message: Message;
  /** The queue it was on (normally the recipient). */
  queue: string;
  reason: DeadLetterReason;
  /** The last error, as text. */
  error?: string;
  attempts: number;
  deadAt: Date;
  /**
   * The message exactly as it was found, when `message` is only a stand-in for it: for
   * `malformed`, the raw data found in the queue (`message` then holds what could be salvaged,
   * with an empty payload); for a message a transport could not encode, its stored wire form.
   * `redrive` puts these bytes back, or refuses when they do not decode; never the stand-in.
   */
  raw?: string;
}

/** What `claimDeadLetter` hands a redrive: the letter, and the token that settles the claim. */
export interface DeadLetterClaim {
  letter: DeadLetter;
  token: string;
}

export interface QueueDepth {
  ready: number;
  delayed: number;
  inFlight: number;
}

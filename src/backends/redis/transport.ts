import type { Redis } from 'ioredis';
import {
  type DeadLetter,
  type DeadLetterClaim,
  type EnqueueEntry,
  type EnqueueResult,
  INBOX_PREFIX,
  type Lease,
  type LeaseOptions,
  type LeaseWaiter,
  type QueueDepth,
  type QueueInspection,
  type Transport,
  type WaiterLeaseOptions,
} from '../../bus/transport.js';
import { ClosedError, ValidationError } from '../../errors.js';
import { encodeMessage, type Message } from '../../message.js';
import type { Coalescer } from './batch.js';
import { salvage } from './codec.js';
import { RedisDeadLetters } from './dead-letters.js';
import { type RoundResult, Scripts } from './commands.js';
import { ensureProtocol } from './functions.js';
import { connectClient, createClient, fromKeySegment, keySegment, parseRedisUrl, type RedisConfig } from './connection.js';
import { INBOX_TOKEN, InboxPump, type InboxSide, inboxLeases, isInboxLease, settleInboxLease } from './inbox-pump.js';
import { inspectQueue } from './inspect.js';
import { AbortWatch, LinePool } from './lines.js';
import { CommandPipeline, type ScriptCall } from './pipeline.js';
import { PrefetchStash } from './prefetch.js';
import { Subscriptions } from './pubsub.js';
import { type ParsedRound, QueuePump, type QueueSide } from './queue-pump.js';

/**
 * How long leases taken ahead for a busy consumer (see `#leaseAhead`) wait for it to ask: it asks
 * once its acks are answered, a round trip later; one that has not asked by then has stopped.
 */
const AHEAD_HOLD_MS = 1000;
/**
 * How many batches a busy consumer leases ahead, in one lease, once its stash of them ran out:
 * with two, Redis serving a long script for somebody else (a producer's batch) no longer leaves
 * it idle (bench/NOTES.md).
 */
const AHEAD_BATCHES = 2;

/** A lease attempt asked of the lease coalescer. */
interface LeaseAsk {
  queue: string;
  leaseMs: number;
  max: number;
}

/** A reply's enqueue and the ack of the request it answers, asked of the reply coalescer. */
interface ReplyAsk {
  entries: EnqueueEntry[];
  lease: Lease;
}

/** Settled answers shared by every call that needs no round trip (a reply's ack). */
const ACKED = Promise.resolve(true);
const LOST = Promise.resolve(false);

/**
 * Transport on Redis. Per queue (scripts/enqueue-2.lua has the full layout): a sorted set of
 * ready ids scored by their order `(10 - priority) * 2^40 + sequence` (strict priority, FIFO
 * inside one), a sorted set of delayed ids scored by when they become visible, a sorted set of
 * leased ids scored by deadline and attempt (that score is the lease token), and a hash of
 * bodies. Every mutation is one Lua script, so it is atomic.
 *
 * The rooms: `Scripts` (commands.ts) builds every script's arguments and reads every reply;
 * `CommandPipeline` (pipeline.ts) writes each tick's commands in one write and coalesces
 * concurrent calls of one kind into one script call; `QueuePump` and `InboxPump` serve waiting
 * `lease()` calls on blocking connections from a bounded `LinePool` (lines.ts);
 * `Subscriptions` (pubsub.ts) is the subscriber side. This class keeps what a consumer's calls
 * share (prefetched leases, which queues are drained) and answers the port.
 *
 * Round trips and writes are what a networked queue pays for, so the transport spends few:
 * - every command of one tick leaves in one write on the command connection;
 * - consumers waiting for a message block on a per-queue signal list (BLPOP) with the lease
 *   script sent right behind it: no busy polling, and no round trip between wake-up and lease;
 * - a busy consumer loop's ack goes out on its blocking connection followed by the wait and lease
 *   its next ask needs (one round trip per message, or per batch with concurrency, not two);
 * - an entry with `publish: true` is published by the enqueue script itself, only when somebody
 *   may observe it.
 *
 * @example
 * const bus = new MessageBus({ transport: createRedisTransport('redis://127.0.0.1:6379/0?namespace=app') });
 */
export class RedisTransport implements Transport {
  /** Always `redis`. */
  readonly kind = 'redis';
  /** The URL it was made from, credentials redacted. */
  readonly url: string;

  readonly #config: RedisConfig;
  readonly #cmd: Redis;
  readonly #scripts: Scripts;
  readonly #pipeline: CommandPipeline;
  readonly #subs: Subscriptions;
  readonly #deadLetters: RedisDeadLetters;
  #connecting: Promise<void> | undefined;
  #closed = false;
  readonly #pumps = new Map<string, QueuePump>();
  readonly #inboxes = new Map<string, InboxPump>();
  /** The blocking connections every pump waits on, bounded (see `LinePool`). */
  readonly #lines: LinePool;
  /** One 'abort' listener per signal for all pumps (a bus passes one signal to every wait). */
  readonly #aborts = new AbortWatch((signal) => {
    for (const pump of this.#pumps.values()) pump.abort(signal);
    for (const inbox of this.#inboxes.values()) inbox.abort(signal);
  });
  /** Queues whose last lease attempt left nothing ready. */
  readonly #drained = new Set<string>();
  /** Per queue, epoch ms when the next delayed message or lease deadline falls due (as the last lease attempt saw it). */
  readonly #due = new Map<string, number>();
  /** Queues a consumer loop waits on in this process (lease calls that may wait), with its lease length. */
  readonly #consumers = new Map<string, number>();
  /** Per queue, the `consumer` its last lease call named (the scripts record leases as held by it). */
  readonly #holders = new Map<string, string>();
  /** Leases taken in the same round trip as an ack, or ahead, for the consumer that is about to ask again. */
  readonly #prefetched = new PrefetchStash((lease) => this.#undo(lease));
  /** A lease taken ahead for a busy consumer, on its way (see `#leaseAhead`), per queue. */
  readonly #ahead = new Map<string, { leaseMs: number; round: Promise<unknown> }>();
  /** Concurrent calls of one tick become one script call each. */
  readonly #enqueues: Coalescer<string, EnqueueEntry[], EnqueueResult[]>;
  readonly #leases: Coalescer<string, LeaseAsk, RoundResult>;
  readonly #acks: Coalescer<string, Lease, boolean>;
  readonly #replies: Coalescer<string, ReplyAsk, { results: EnqueueResult[]; acked: boolean }>;

  /** `url`: `redis://host:port/db?namespace=NAME`. Nothing connects until `connect()` or first use. */
  constructor(url: string) {
    this.#config = parseRedisUrl(url);
    this.url = this.#config.url;
    this.#scripts = new Scripts(this.#config.prefix);
    this.#cmd = createClient(this.#config, 'cmd');
    const connect = () => this.#connecting ?? this.connect();
    this.#pipeline = new CommandPipeline(this.#cmd, this.#config, connect);
    this.#deadLetters = new RedisDeadLetters(this.#pipeline, this.#scripts);
    this.#subs = new Subscriptions(this.#config, this.#scripts, connect);
    this.#lines = new LinePool(
      {
        // A wait whose connection died without a word still ends: `BlockingLine.within` drops it.
        // (ioredis's own blockingTimeout would do the same with a timer per blocking command.)
        open: () => createClient(this.#config, 'block', { maxRetriesPerRequest: 1 }),
        kick: (key) => {
          this.#pipeline
            .direct('kick', (c) => c.multi().lpush(key, '1').pexpire(key, 60_000).exec())
            .catch(() => {
              // Redis is failing: the round ends on its own timeout.
            });
        },
      },
      this.#config,
    );
    this.#enqueues = this.#pipeline.coalescer((_, calls) => this.#enqueueMany(calls), 200);
    this.#leases = this.#pipeline.coalescer((_, calls) => this.#leaseMany(calls), 1000);
    this.#acks = this.#pipeline.coalescer((queue, leases) => this.#ackMany(queue, leases), 1000);
    this.#replies = this.#pipeline.coalescer((queue, calls) => this.#enqueueAndAckMany(queue, calls), 200);
  }

  /** The parsed configuration (host, port, db, namespace, key prefix). */
  get config(): Readonly<RedisConfig> {
    return this.#config;
  }

  /** Connects the command connection; `TransportError` naming the URL when Redis is unreachable. Idempotent. */
  connect(): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    this.#connecting ??= connectClient(this.#cmd, this.#config)
      .then(() => ensureProtocol(this.#cmd, this.#config))
      .catch((err: unknown) => {
        this.#connecting = undefined;
        throw err;
      });
    return this.#connecting;
  }

  // ------------------------------------------------------------------ recipients

  /** Marks `queue` as a registered recipient, for every bus on this namespace. */
  async addRecipient(queue: string): Promise<void> {
    if (typeof queue !== 'string' || queue.length === 0) {
      throw new ValidationError(`recipient queue must be a non-empty string, got \`${String(queue)}\``, { field: 'queue' });
    }
    await this.#pipeline.direct('addRecipient', (c) => c.sadd(this.#scripts.recipientsKey, queue));
  }

  /** Unmarks `queue`; its messages stay queued. */
  async removeRecipient(queue: string): Promise<void> {
    await this.#pipeline.direct('removeRecipient', (c) => c.srem(this.#scripts.recipientsKey, queue));
  }

  /** True when some bus on this namespace registered `queue`. */
  async hasRecipient(queue: string): Promise<boolean> {
    return (await this.#pipeline.direct('hasRecipient', (c) => c.sismember(this.#scripts.recipientsKey, queue))) === 1;
  }

  // ------------------------------------------------------------------ enqueue

  /**
   * Enqueues every entry in one script call: atomic, in order, one round trip. Calls made
   * concurrently in the same tick share that one script call. An entry with `publish: true` is
   * also published, by the same script, on its message type's topic (so subscribers of that type
   * and of `'*'` see it) once it is enqueued (not when it is a duplicate or finds no recipient).
   */
  enqueue(entries: EnqueueEntry[]): Promise<EnqueueResult[]> {
    if (entries.length === 0) return Promise.resolve([]);
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    return this.#enqueues.submit('', entries);
  }

  // Not async, like the other steps of a message's way out: each suspended frame is a promise
  // and a turn more on the path of every request.
  #enqueueMany(batches: EnqueueEntry[][]): Promise<EnqueueResult[][]> {
    let call: ReturnType<Scripts['enqueue']>;
    try {
      call = this.#scripts.enqueue(batches);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<EnqueueResult[][]>((resolve, reject) => {
      const settle = (reply: unknown) => {
        try {
          resolve(this.#scripts.enqueueResults(batches, reply));
        } catch (err) {
          reject(err);
        }
      };
      this.#pipeline.push({ name: call.script, keys: call.keys, args: call.args, resolve: settle, reject, fuse: 'enqueue' });
    });
  }

  /**
   * Enqueues `entries`, then acks `lease`, in one script call (a reply and the request it
   * answers). Calls of one tick for leases of one queue share that call; like an ack, it goes out
   * with the wait for the consumer's next message when that consumer is busy (see `#ackMany`).
   */
  enqueueAndAck(entries: EnqueueEntry[], lease: Lease): Promise<{ results: EnqueueResult[]; acked: boolean }> {
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    return this.#replies.submit(lease.queue, { entries, lease });
  }

  #enqueueAndAckMany(queue: string, asks: ReplyAsk[]): Promise<{ results: EnqueueResult[]; acked: boolean }[]> {
    const batches = asks.map((a) => a.entries);
    let call: ReturnType<Scripts['enqueue']>;
    let at: number[];
    try {
      call = this.#scripts.enqueue(batches);
      at = this.#scripts.withAcks(
        call,
        queue,
        asks.map((a) => a.lease),
      );
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#armOrRun(queue, asks.length, (resolve, reject) => ({
      name: call.script,
      keys: call.keys,
      args: call.args,
      resolve,
      reject,
    })).then((reply) => {
      const results = this.#scripts.enqueueResults(batches, reply);
      const acked = this.#scripts.ackedOf(call, reply);
      return asks.map((_, i) => ({ results: results[i]!, acked: acked[at[i]!] === 1 }));
    });
  }

  // ------------------------------------------------------------------ lease

  /**
   * Leases up to `max` messages. Tries once at once; when nothing is visible and `waitMs > 0`,
   * waits on the queue's signal list (BLPOP on a connection dedicated to this queue, shared by
   * every waiting call of this transport) until a message arrives, the next delayed message or
   * expiring lease is due, the wait ends, or `signal` aborts. Like a wait that ends, a transport
   * closed before or during the call resolves `[]` (the memory transport does the same). Every
   * answer needs I/O, so with `options.waiter` every answer goes to the waiter.
   */
  lease(queue: string, options: WaiterLeaseOptions): undefined;
  lease(queue: string, options: LeaseOptions): Promise<Lease[]>;
  lease(queue: string, options: LeaseOptions & { waiter?: LeaseWaiter }): Promise<Lease[]> | undefined {
    const waiter = options.waiter;
    if (waiter === undefined) return this.#lease(queue, options);
    this.#lease(queue, options).then(
      (leases) => waiter.leased(leases),
      (err: unknown) => waiter.failed(err),
    );
    return undefined;
  }

  #lease(queue: string, options: LeaseOptions): Promise<Lease[]> {
    const { leaseMs, waitMs } = options;
    const asked = options.max ?? 1;
    if (!(leaseMs > 0) || !(waitMs >= 0) || !(asked >= 1)) {
      return Promise.reject(new ValidationError(`lease needs leaseMs > 0, waitMs >= 0 and max >= 1, got ${leaseMs}, ${waitMs}, ${asked}`));
    }
    if (this.#closed || options.signal?.aborted) return Promise.resolve([]);
    const max = Math.floor(asked);
    if (queue.startsWith(INBOX_PREFIX)) return this.#inbox(queue).take(max, leaseMs, waitMs, options.signal);
    const consumer = options.consumer;
    if (consumer !== undefined && this.#holders.get(queue) !== consumer) {
      this.#holders.set(queue, consumer);
      this.#scripts.holdAs(queue, consumer);
    }
    // A caller that waits is a consumer loop: it will ask again once it is done with these.
    if (waitMs > 0) this.#consumers.set(queue, leaseMs);
    const leasing = this.#leaseOrWait(queue, leaseMs, waitMs, max, options.signal);
    // One at a time (the usual consumer), the caller gets the wait's own promise.
    return waitMs > 0 && max >= 2 ? this.#thenLeaseAhead(queue, leaseMs, max, leasing) : leasing;
  }

  async #thenLeaseAhead(queue: string, leaseMs: number, max: number, leasing: Promise<Lease[]>): Promise<Lease[]> {
    const leases = await leasing;
    // A consumer loop with concurrency that got all it asked for is busy, and the queue has more:
    // take its next batches now, while it works on this one, instead of after (see `#leaseAhead`).
    // One at a time, the ack already carries the next lease (see `#ackMany`), and a lease of its
    // own per message would cost more than the overlap saves.
    if (leases.length === max && !this.#drained.has(queue)) this.#leaseAhead(queue, leaseMs, AHEAD_BATCHES * leases.length);
    return leases;
  }

  #leaseOrWait(queue: string, leaseMs: number, waitMs: number, max: number, signal: AbortSignal | undefined): Promise<Lease[]> {
    const coming = this.#ahead.get(queue);
    if (coming !== undefined && coming.leaseMs === leaseMs)
      return coming.round.then(() => this.#leaseOrWaitNow(queue, leaseMs, waitMs, max, signal));
    return this.#leaseOrWaitNow(queue, leaseMs, waitMs, max, signal);
  }

  // Not async: a consumer that goes back to waiting gets the wait's own promise (no frame that
  // adopts it, which would cost two more turns once its message comes).
  #leaseOrWaitNow(queue: string, leaseMs: number, waitMs: number, max: number, signal: AbortSignal | undefined): Promise<Lease[]> {
    if (this.#closed || signal?.aborted) return Promise.resolve([]);
    const ahead = this.#prefetched.take(queue, leaseMs, max);
    if (ahead.length > 0) return Promise.resolve(ahead);
    // A queue that was empty last time is most likely empty now, and a pump armed by this
    // consumer's ack is already fetching: skip the immediate try and wait in the pump (its BLPOP
    // returns at once if a wake-up token is waiting).
    const armed = this.#pumps.get(queue)?.armed ?? false;
    if (waitMs === 0 || (!this.#drained.has(queue) && !armed)) return this.#leaseThenWait(queue, leaseMs, waitMs, max, signal);
    return this.#pump(queue).wait(max, leaseMs, waitMs, signal);
  }

  /** One lease attempt now; when it brings nothing and the caller waits, the wait in the pump. */
  async #leaseThenWait(queue: string, leaseMs: number, waitMs: number, max: number, signal: AbortSignal | undefined): Promise<Lease[]> {
    let first: RoundResult;
    try {
      first = await this.#leases.submit(`${leaseMs}:${queue}`, { queue, leaseMs, max });
    } catch (err) {
      // Closed while the lease was on its way: like a wait that ends, not a failure (the
      // memory transport and the port agree). Anything else is the caller's to see.
      if (this.#closed) return [];
      throw err;
    }
    if (first.leases.length > 0 || waitMs === 0 || this.#closed || signal?.aborted) return first.leases;
    return this.#pump(queue).wait(max, leaseMs, waitMs, signal);
  }

  /**
   * Leases a busy consumer's next `max` messages now, in a write of their own before it spends
   * its CPU on the ones it just got: Redis leases them meanwhile, so when its acks are answered
   * the next batch is here (raw Streams consumers get the same overlap from many connections).
   * They are kept for its next `lease()` call, for AHEAD_HOLD_MS at most; an ack meanwhile goes
   * out with the tick's commands, not with a wait of its own.
   */
  #leaseAhead(queue: string, leaseMs: number, max: number): void {
    if (this.#closed || this.#ahead.has(queue) || this.#prefetched.has(queue)) return;
    const round = this.#leases.submit(`${leaseMs}:${queue}`, { queue, leaseMs, max }).then(
      (r) => {
        this.#ahead.delete(queue);
        if (r.leases.length > 0) this.#prefetched.keep(queue, leaseMs, r.leases, AHEAD_HOLD_MS);
      },
      () => {
        // Redis is failing: the consumer's own next call sees it.
        this.#ahead.delete(queue);
      },
    );
    this.#ahead.set(queue, { leaseMs, round });
    this.#pipeline.flush();
  }

  /** A consumer loop on `queue` stopped waiting for good (its signal aborted): leases taken ahead for it go back. @internal */
  forgetConsumer(queue: string): void {
    this.#consumers.delete(queue);
    this.#prefetched.drop(queue);
  }

  async #leaseMany(asks: LeaseAsk[]): Promise<RoundResult[]> {
    // Closed between the call and this flush: nothing is leased, every call ends empty.
    if (this.#closed) return asks.map(() => ({ leases: [], waitMs: -1 }));
    const { queue, leaseMs } = asks[0]!;
    let want = 0;
    for (const a of asks) want += a.max;
    const keys = this.#scripts.queueKeys(queue);
    const leases: Lease[] = [];
    let waitMs = -1;
    // Malformed entries are skipped; look again (a bounded number of times) to fill the batch.
    for (let round = 0; round < 8 && leases.length < want; round++) {
      const r = await this.#readLeases(queue, leaseMs, await this.#pipeline.run(this.#scripts.lease(keys, leaseMs, want - leases.length)));
      leases.push(...r.leases);
      waitMs = r.waitMs;
      if (!r.malformed) break;
    }
    let taken = 0;
    return asks.map((a) => {
      const mine = leases.slice(taken, taken + a.max);
      taken += mine.length;
      return { leases: mine, waitMs };
    });
  }

  /**
   * A lease reply's leases, noting whether `queue` is drained and when something on it falls due.
   * Data that does not decode as a message is dead-lettered with reason `malformed` (and its raw
   * text), never handed out. Synchronous unless some entry is malformed (its dead letter takes a
   * round trip): a pump's usual round costs no promise here.
   */
  #readLeases(queue: string, leaseMs: number, reply: unknown): ParsedRound | Promise<ParsedRound> {
    const r = this.#scripts.leaseReply(queue, leaseMs, reply);
    if (r.remaining > 0) this.#drained.delete(queue);
    else {
      this.#drained.add(queue);
      this.#due.set(queue, r.waitMs >= 0 ? Date.now() + r.waitMs : Infinity);
    }
    const bad = r.malformed;
    if (bad === undefined) return { leases: r.leases, waitMs: r.waitMs, malformed: 0 };
    const letters = bad.map((e) =>
      this.#deadLetterMalformed(queue, e.idseg, e.body, e.attempt, e.token, e.error).catch(() => {
        // Redis is failing: the lease runs out and the next lease attempt tries again.
      }),
    );
    return Promise.all(letters).then(() => ({ leases: r.leases, waitMs: r.waitMs, malformed: bad.length }));
  }

  /** Takes a lease back as if it had never been handed out (a wait ended before it arrived). */
  async #undo(lease: Lease): Promise<void> {
    await this.#pipeline.run(this.#scripts.requeue(lease, 0, true), true);
  }

  async #deadLetterMalformed(
    queue: string,
    idseg: string,
    body: string | null,
    attempt: number,
    token: string,
    err: unknown,
  ): Promise<void> {
    const raw = body ?? '';
    const message = salvage(raw, fromKeySegment(idseg), queue, attempt);
    const letter: DeadLetter = {
      message,
      queue,
      reason: 'malformed',
      error: err instanceof Error ? err.message : String(err),
      attempts: attempt,
      deadAt: new Date(),
      raw,
    };
    await this.#deadLetterRaw(letter, idseg, { queue, message, token, deadline: 0 });
  }

  /** Acks a lease; false if it was lost. Concurrent acks on one queue share one script call. */
  ack(lease: Lease): Promise<boolean> {
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    if (isInboxLease(lease)) return settleInboxLease(lease) ? ACKED : LOST;
    return this.#acks.submit(lease.queue, lease);
  }

  /**
   * Acks in one script call. When a consumer loop of this process is busy on the queue (not
   * waiting in it), each ack frees one of its handler slots and it is about to ask again: the ack
   * then goes out on the queue's blocking connection, followed in the same write by the wait and
   * the lease that ask needs (BullMQ fetches the next job when it completes one, for the same
   * reason). A busy consumer pays one round trip per message (per batch, with concurrency),
   * not two, and a waiting one is woken without another write.
   */
  async #ackMany(queue: string, leases: Lease[]): Promise<boolean[]> {
    const call = this.#scripts.ackMany(queue, leases);
    const fuse = { ackSegment: keySegment(queue), count: leases.length };
    const acked = (await this.#armOrRun(queue, leases.length, (resolve, reject) => ({
      name: call.script,
      keys: call.keys,
      args: call.args,
      resolve,
      reject,
      fuse,
    }))) as number[];
    return call.at.map((i) => acked[i] === 1);
  }

  /**
   * Sends a call that acks `count` leases of `queue`: on the queue's blocking connection, ahead of
   * the wait for what its busy consumer asks for next, when that connection is free; else with
   * the tick's commands.
   */
  #armOrRun(
    queue: string,
    count: number,
    call: (resolve: (reply: unknown) => void, reject: (err: unknown) => void) => ScriptCall,
  ): Promise<unknown> {
    const leaseMs = this.#consumers.get(queue);
    const pump =
      leaseMs === undefined || this.#closed || this.#prefetched.has(queue) || this.#ahead.has(queue) ? undefined : this.#pump(queue);
    return new Promise<unknown>((resolve, reject) => {
      const c = call(resolve, reject);
      if (this.#closed) reject(new ClosedError('redis transport'));
      else if (pump?.idle === true) pump.arm(leaseMs!, count, c);
      else this.#pipeline.push(c);
    });
  }

  #pump(queue: string): QueuePump {
    let pump = this.#pumps.get(queue);
    if (!pump) {
      const side: QueueSide = {
        leaseRound: (leaseMs, max) => this.#leases.submit(`${leaseMs}:${queue}`, { queue, leaseMs, max }),
        readLeases: (leaseMs, reply) => this.#readLeases(queue, leaseMs, reply),
        dueAt: () => this.#due.get(queue) ?? Infinity,
        keep: (leaseMs, leases) => this.#prefetched.keep(queue, leaseMs, leases),
        undo: (lease) => {
          this.#undo(lease).catch(() => {
            // Redis is failing: the lease runs out and the message is delivered again then.
          });
        },
        stopped: () => this.forgetConsumer(queue),
      };
      pump = new QueuePump(this.#scripts.queueKeys(queue), side, this.#room);
      this.#pumps.set(queue, pump);
    }
    return pump;
  }

  get #room() {
    return { pipeline: this.#pipeline, lines: this.#lines, aborts: this.#aborts, scripts: this.#scripts };
  }

  #inbox(queue: string): InboxPump {
    let inbox = this.#inboxes.get(queue);
    if (!inbox) {
      const key = this.#scripts.inboxKey(queue);
      const side: InboxSide = {
        pop: (max) => this.#pipeline.direct('lease', async (c) => (await c.lpop(key, max)) ?? []),
        read: (leaseMs, raw) => inboxLeases(queue, leaseMs, raw, (letter, idseg) => this.#deadLetterRaw(letter, idseg, undefined)),
      };
      inbox = new InboxPump(key, side, this.#room);
      this.#inboxes.set(queue, inbox);
    }
    return inbox;
  }

  /** Puts a leased message back, visible after `delayMs`, in its original place; false if the lease was lost. */
  async requeue(lease: Lease, options: { delayMs: number }): Promise<boolean> {
    if (isInboxLease(lease)) {
      // An inbox has no delays or attempts: the reply is visible again at once, at the end.
      if (!settleInboxLease(lease)) return false;
      const wire = encodeMessage({ ...lease.message, attempt: 0 });
      await this.#pipeline.direct('requeue', (c) => c.rpush(this.#scripts.inboxKey(lease.queue), wire));
      return true;
    }
    return (await this.#pipeline.run(this.#scripts.requeue(lease, options.delayMs, false))) === 1;
  }

  /** Moves the lease deadline to now + `ms`; false if the lease was lost. */
  async extendLease(lease: Lease, ms: number): Promise<boolean> {
    if (!(ms > 0) || !Number.isFinite(ms))
      throw new ValidationError(`lease extension must be a positive number of ms, got ${ms}`, { field: 'ms' });
    if (isInboxLease(lease)) {
      if (lease.token !== INBOX_TOKEN) return false;
      lease.deadline = Date.now() + ms;
      return true;
    }
    const now = Date.now();
    const token = Number(await this.#pipeline.run(this.#scripts.extendLease(lease, ms)));
    if (!(token > 0)) return false;
    // The token is the lease's inflight score, which holds its deadline: it changes with it.
    lease.token = String(token);
    lease.deadline = now + ms;
    return true;
  }

  // ------------------------------------------------------------------ dead letters

  /** Stores a dead letter; with `lease`, removes the leased message in the same script. */
  async deadLetter(letter: DeadLetter, lease?: Lease): Promise<boolean> {
    if (lease !== undefined && isInboxLease(lease)) {
      // Nothing of a reply taken from an inbox is held in Redis: store the letter alone.
      if (!settleInboxLease(lease)) return false;
      return this.#deadLetterRaw(letter, keySegment(letter.message.id), undefined);
    }
    return this.#deadLetterRaw(letter, keySegment(lease?.message.id ?? letter.message.id), lease);
  }

  async #deadLetterRaw(letter: DeadLetter, idseg: string, lease: Lease | undefined): Promise<boolean> {
    return (await this.#pipeline.run(this.#scripts.deadLetter(letter, idseg, lease))) === 1;
  }

  /** Dead letters, oldest first. */
  listDeadLetters(options?: { limit?: number }): Promise<DeadLetter[]> {
    return this.#deadLetters.list(options);
  }

  /** Removes and returns the dead letter of `messageId`, or null. */
  takeDeadLetter(messageId: string): Promise<DeadLetter | null> {
    return this.#deadLetters.take(messageId);
  }

  /** See {@link Transport.claimDeadLetter}. */
  claimDeadLetter(messageId: string, claimMs: number): Promise<DeadLetterClaim | 'claimed' | null> {
    return this.#deadLetters.claim(messageId, claimMs);
  }

  /** See {@link Transport.settleDeadLetter}. */
  settleDeadLetter(messageId: string, token: string, remove: boolean): Promise<boolean> {
    return this.#deadLetters.settle(messageId, token, remove);
  }

  /** Removes every dead letter; returns how many. */
  purgeDeadLetters(): Promise<number> {
    return this.#deadLetters.purge();
  }

  // ------------------------------------------------------------------ pub/sub

  /**
   * PUBLISHes `message` on the topic's channel; every subscribed process receives it once.
   * At-most-once. A plain PUBLISH in the tick's write (cheaper for Redis than a script call).
   */
  publish(topic: string, message: Message): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    let wire: string;
    try {
      wire = encodeMessage(message);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#pipeline.publish(this.#scripts.channel(topic), wire).then(() => undefined);
  }

  /**
   * Subscribes `handler` to `topic` (`'*'` = every topic) on this transport's subscriber
   * connection, created on first use. Resolves once Redis confirmed the subscription.
   */
  subscribe(topic: string, handler: (message: Message) => void): Promise<() => Promise<void>> {
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    return this.#subs.subscribe(topic, handler);
  }

  // ------------------------------------------------------------------ depth, inspection, close

  /** Ready (including due delayed and expired leases), delayed and leased counts of `queue`. */
  async depth(queue: string): Promise<QueueDepth> {
    if (queue.startsWith(INBOX_PREFIX)) {
      const ready = await this.#pipeline.direct('depth', (c) => c.llen(this.#scripts.inboxKey(queue)));
      return { ready, delayed: 0, inFlight: 0 };
    }
    const [ready, delayed, inFlight] = (await this.#pipeline.run(this.#scripts.depth(queue))) as number[];
    return { ready: Number(ready ?? 0), delayed: Number(delayed ?? 0), inFlight: Number(inFlight ?? 0) };
  }

  /** See {@link Transport.listQueues}: the namespace's registered recipients. */
  async listQueues(): Promise<string[]> {
    return (await this.#pipeline.direct('listQueues', (c) => c.smembers(this.#scripts.recipientsKey))).sort();
  }

  /** See {@link Transport.inspectQueue} (plain reads, nothing moved: see `inspectQueue` in inspect.ts). */
  async inspectQueue(queue: string, options: { limit?: number } = {}): Promise<QueueInspection> {
    if (queue.startsWith(INBOX_PREFIX)) return { byPriority: null, oldestWaitingAt: null, leases: [] };
    const keys = this.#scripts.queueKeys(queue);
    return this.#pipeline.direct('inspectQueue', (c) => inspectQueue(c, keys, options.limit ?? 100));
  }

  /** Closes every connection and wakes waiting `lease` calls with `[]`. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#pipeline.close();
    // Leases taken ahead that nobody will claim now: back to their queues before the connection goes.
    const ahead = this.#prefetched.close();
    const undone = this.#connecting && ahead.length > 0 ? this.#prefetched.undoAll(ahead) : undefined;
    const pumps = [...this.#pumps.values()];
    this.#pumps.clear();
    for (const pump of pumps) pump.close();
    // Replies popped but not yet handed out are dropped with the bus they were for.
    for (const inbox of this.#inboxes.values()) inbox.close();
    this.#inboxes.clear();
    this.#lines.close();
    this.#subs.close();
    if (this.#connecting) {
      try {
        await this.#connecting;
        await undone;
        await this.#cmd.quit();
      } catch {
        this.#cmd.disconnect();
      }
    } else {
      this.#cmd.disconnect();
    }
  }
}

import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ClosedError, ValidationError } from '../../errors.js';
import { DEFAULT_PRIORITY, MessageType, decodeMessage, encodeMessage, isValidName, newId, parseWireTimestamp, type Message } from '../../message.js';
import {
  INBOX_PREFIX,
  type DeadLetter,
  type DeadLetterClaim,
  type DeadLetterReason,
  type EnqueueEntry,
  type EnqueueResult,
  type Lease,
  type LeaseOptions,
  type QueueDepth,
  type QueueInspection,
  type Transport,
} from '../../bus/transport.js';
import {
  asTransportError,
  connectClient,
  createClient,
  fromKeySegment,
  keySegment,
  parseRedisUrl,
  type RedisConfig,
} from './connection.js';
import { SCRIPTS, isNoScript } from './scripts.js';
import { Coalescer } from './batch.js';
import { RecentMap } from './recent.js';
import { MAX_TIMER_MS } from '../../timers.js';

/**
 * Longest a blocked consumer waits before it looks at its queue again on its own. Wake-ups
 * normally come from the signal list; this bound only matters for a lease that expired in
 * another process whose consumer crashed, so redelivery happens within a second or two.
 */
const MAX_BLOCK_MS = 2000;

/** Most messages one lease script call takes. */
const MAX_ROUND = 1000;

/** How much longer than its wait a pump's round may take before its connection counts as dead. */
const STUCK_MS = 10_000;
/** How often a blocking line's watchdog looks for a round past its due time. */
const WATCHDOG_MS = 1_000;

/** How long after an enqueue found nobody subscribed its publication may be skipped. */
const UNOBSERVED_MS = 10;

/**
 * How long the wire form of an enqueued message is kept for its publication (which the bus
 * makes in the same turn): short, since a producer sending 100k messages a second keeps
 * everything it sent in the last one to two such windows alive.
 */
const ENCODED_MS = 10;

/** Longest the command connection waits for calls a pump carried to be answered (see `afterFlush`). */
const CARRY_WAIT_MS = 1000;

/** The token of a reply taken from an inbox (no lease is held in Redis), and of one acked. */
const INBOX_TOKEN = 'inbox';
const INBOX_SETTLED = 'inbox:settled';

/**
 * How long leases taken ahead for a busy consumer (see `#leaseAhead`) wait for it to ask: it asks
 * once its acks are answered, a round trip later; one that has not asked by then has stopped.
 */
const AHEAD_HOLD_MS = 1000;
/**
 * How many batches a busy consumer leases ahead, in one lease, once its stash of them ran out:
 * with two, Redis serving a long script for somebody else (a producer's batch) no longer leaves
 * it idle (c50 on the bench: 30k -> 36k msg/s).
 */
const AHEAD_BATCHES = 2;

/** Keys of one queue (see scripts/enqueue.lua for what each holds). */
interface QueueKeys {
  ready: string;
  delayed: string;
  inflight: string;
  signal: string;
  body: string;
  tries: string;
}

/** A `lease()` call waiting for a message (or, provisional, the call a busy consumer is about to make). */
interface Waiter {
  max: number;
  leaseMs: number;
  deadline: number;
  settled: boolean;
  /** Stands for the next call of a consumer that just acked: what it gets is kept for that call. */
  provisional: boolean;
  signal?: AbortSignal | undefined;
  settle(leases: Lease[]): void;
}

/** What one lease script call brought. */
interface RoundResult {
  leases: Lease[];
  /** Ms until a delayed message becomes visible or a lease expires; -1 = nothing scheduled. */
  waitMs: number;
}

/** A lease reply read (`parseLeaseReply`): its leases, and how many entries were malformed (dead-lettered). */
type ParsedRound = RoundResult & { malformed: number };

/** A script call (or a PUBLISH) waiting for the next write of the command connection (see `#run`). */
interface ScriptCall {
  name: keyof typeof SCRIPTS | 'publish';
  keys: readonly string[];
  args: readonly (string | number)[];
  /**
   * An enqueue without acks of its own, or an ack-many with the key segment of its queue: one of
   * each in the same write become one enqueue call that acks too (see `#fuse`).
   */
  fuse?: 'enqueue' | { ackSegment: string; count: number };
  resolve(reply: unknown): void;
  reject(err: unknown): void;
}

/** A pump waiting for the tick's commands to leave, or to be handed them (see `RedisTransport.afterFlush`). */
interface AfterFlush {
  resolve(carry: ScriptCall[]): void;
  canCarry: (() => boolean) | undefined;
}

const NONE: ScriptCall[] = [];

/** Leases taken ahead for the next `lease()` on their queue (see `stashPrefetched`). */
interface Prefetched {
  leaseMs: number;
  leases: Lease[];
}

/**
 * Transport on Redis. Per queue (scripts/enqueue.lua has the full layout): a sorted set of
 * ready ids scored by their order `(10 - priority) * 2^40 + sequence` (strict priority, FIFO
 * inside one), a sorted set of delayed ids scored by when they become visible, a sorted set of
 * leased ids scored by deadline and attempt (that score is the lease token), and a hash of
 * bodies. The hot path (enqueue, lease, ack) touches only those; every mutation is one Lua script
 * (`./scripts`), so it is atomic.
 *
 * Round trips and writes are what a networked queue pays for, so the transport spends few:
 * - every command of one tick (the enqueues, acks, leases and publications of all callers)
 *   leaves in one write on the command connection, each settling as its reply arrives, and
 *   concurrent calls of one kind share one script call (50 consumers acking at once);
 * - consumers waiting for a message block on a per-queue signal list (BLPOP) on a connection of
 *   their own, with the lease script sent right behind it: no busy polling, and no round trip
 *   between the wake-up and the lease;
 * - a busy consumer loop's ack goes out on that connection followed by the wait and lease its
 *   next ask needs (one round trip per message, or per batch with concurrency, not two);
 * - a publication that follows an enqueue is skipped when the enqueue script found nobody
 *   subscribed to that channel.
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
  readonly #prefix: string;
  readonly #cmd: Redis;
  #connecting: Promise<void> | undefined;
  #closed = false;
  #sub: Redis | undefined;
  #subConnecting: Promise<Redis> | undefined;
  readonly #topicHandlers = new Map<string, Set<(message: Message) => void>>();
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
  /** Leases taken in the same round trip as an ack, for the consumer that is about to ask again (see `stashPrefetched`). */
  readonly #prefetched = new Map<string, Prefetched>();
  /** A lease taken ahead for a busy consumer, on its way (see `#leaseAhead`), per queue. */
  readonly #ahead = new Map<string, { leaseMs: number; round: Promise<unknown> }>();
  /** Script calls of the current tick: they leave in one write (see `#run`). */
  #calls: ScriptCall[] = [];
  /** Pump writes waiting for the tick's commands to leave first (or to carry them, see `afterFlush`). */
  #afterFlush: AfterFlush[] = [];
  /** Settles once the calls a pump carried have their replies; the command connection waits for it. */
  #carried: Promise<void> | undefined;
  /**
   * Messages just enqueued here whose type's channel had no subscriber (and no pattern
   * subscription existed) at that moment, with when that was seen: publishing them on that
   * topic right after (`UNOBSERVED_MS`) is skipped.
   */
  readonly #unobserved = new RecentMap<Message, number>(UNOBSERVED_MS);
  /** Wire form of messages this transport just enqueued, so publishing the same message does not encode it again. */
  readonly #encoded = new RecentMap<Message, string>(ENCODED_MS);
  /** Concurrent calls of one tick become one script call each (see `Coalescer`). */
  readonly #enqueues = new Coalescer<string, EnqueueEntry[], EnqueueResult[]>((_, calls) => this.#enqueueMany(calls), 200, () => this.#schedule());
  readonly #leases = new Coalescer<string, { queue: string; leaseMs: number; max: number }, RoundResult>(
    (_, calls) => this.#leaseMany(calls),
    1000,
    () => this.#schedule(),
  );
  readonly #acks = new Coalescer<string, Lease, boolean>((queue, leases) => this.#ackMany(queue, leases), 1000, () => this.#schedule());
  readonly #replies = new Coalescer<string, { entries: EnqueueEntry[]; lease: Lease }, { results: EnqueueResult[]; acked: boolean }>(
    (queue, calls) => this.#enqueueAndAckMany(queue, calls),
    200,
    () => this.#schedule(),
  );
  #flushScheduled = false;

  /** `url`: `redis://host:port/db?namespace=NAME`. Nothing connects until `connect()` or first use. */
  constructor(url: string) {
    this.#config = parseRedisUrl(url);
    this.url = this.#config.url;
    this.#prefix = this.#config.prefix;
    // No autopipelining: it delays every lone command, and the coalescers already batch what is concurrent.
    this.#cmd = createClient(this.#config, 'cmd');
    this.#lines = new LinePool(this, this.#config);
  }

  /** The parsed configuration (host, port, db, namespace, key prefix). */
  get config(): Readonly<RedisConfig> {
    return this.#config;
  }

  /** Connects the command connection; `TransportError` naming the URL when Redis is unreachable. Idempotent. */
  connect(): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    this.#connecting ??= connectClient(this.#cmd, this.#config).catch((err: unknown) => {
      this.#connecting = undefined;
      throw err;
    });
    return this.#connecting;
  }

  async #client(): Promise<Redis> {
    if (this.#closed) throw new ClosedError('redis transport');
    await this.connect();
    return this.#cmd;
  }

  /**
   * Runs a script on the command connection. Every script call of one tick (an enqueue, the
   * publications after the previous one, 50 consumers' acks, a prefetching lease) leaves in one
   * pipelined write: on a busy host each socket write is a system call worth saving, and Redis
   * runs them back to back. Calls keep their order.
   */
  #run(name: ScriptCall['name'], keys: readonly string[], args: readonly (string | number)[], whileClosing = false): Promise<unknown> {
    if (this.#closed && !whileClosing) return Promise.reject(new ClosedError('redis transport'));
    return new Promise<unknown>((resolve, reject) => {
      this.#calls.push({ name, keys, args, resolve, reject });
      this.#schedule();
    });
  }

  /**
   * Resolves once the commands of the current tick have left, for a pump whose write goes after
   * them. A pump whose connection is ready (`canCarry`) may be handed the tick's commands instead,
   * to put in front of its own in one write: a responder's reply, the ack of the request and the
   * wait for the next one leave in one system call, as do a requester's next request and its
   * wait for the reply (a write costs tens of µs on a busy host). That happens only when the
   * command connection has nothing in flight, and the command connection's next write waits for
   * the carried calls' replies, so calls still run in the order they were made. @internal
   */
  afterFlush(canCarry?: () => boolean): Promise<ScriptCall[]> {
    return new Promise<ScriptCall[]>((resolve) => {
      this.#afterFlush.push({ resolve, canCarry });
      this.#schedule();
    });
  }

  /** Nothing sent on the command connection is waiting for its reply, and nothing carried either. */
  #cmdIdle(): boolean {
    // ioredis keeps sent commands in `commandQueue` and not yet sent ones in `offlineQueue`.
    const queues = this.#cmd as unknown as { commandQueue: { length: number }; offlineQueue?: { length: number } };
    return this.#carried === undefined && this.#cmd.status === 'ready' && queues.commandQueue.length === 0 && (queues.offlineQueue?.length ?? 0) === 0;
  }

  /** Hands `calls` to a pump's write; the command connection's next write waits until they are answered. */
  #carry(calls: ScriptCall[], to: AfterFlush): void {
    let left = calls.length;
    let done!: () => void;
    const carried = new Promise<void>((resolve) => (done = resolve));
    this.#carried = carried;
    const one = () => {
      if (--left > 0) return;
      if (this.#carried === carried) this.#carried = undefined;
      done();
    };
    const wrapped = calls.map((c): ScriptCall => ({
      ...c,
      resolve: (reply) => {
        one();
        c.resolve(reply);
      },
      reject: (err) => {
        one();
        c.reject(err);
      },
    }));
    to.resolve(wrapped);
  }

  /** Makes sure the tick's commands leave once the current chain of continuations has settled. */
  #schedule(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    process.nextTick(this.#flush);
  }

  readonly #flush = (): void => {
    // The coalesced calls of the tick join the direct ones (an enqueue's publication, then the
    // ack that follows it) in one write.
    this.#enqueues.flush();
    this.#replies.flush();
    this.#acks.flush();
    this.#leases.flush();
    this.#flushScheduled = false;
    const calls = this.#fuse(this.#calls);
    this.#calls = [];
    const after = this.#afterFlush;
    let carrier: AfterFlush | undefined;
    if (calls.length > 0 && after.length > 0 && this.#cmdIdle()) carrier = after.find((a) => a.canCarry?.() === true);
    if (carrier !== undefined) this.#carry(calls, carrier);
    else if (calls.length > 0) void this.#send(calls);
    if (after.length > 0) {
      this.#afterFlush = [];
      for (const a of after) if (a !== carrier) a.resolve(NONE);
    }
  };

  /**
   * Joins the first plain enqueue of a write and its first ack-many into one enqueue call that
   * acks too (a requester's next request and the ack of the reply it just got): Redis runs one
   * script instead of two, which costs more than either script's own work. The ack runs right
   * after the enqueue instead of later in the same write, and the two fail together; neither
   * depends on the other.
   */
  #fuse(calls: ScriptCall[]): ScriptCall[] {
    if (calls.length < 2) return calls;
    let e = -1;
    let a = -1;
    for (let i = 0; i < calls.length && (e < 0 || a < 0); i++) {
      const f = calls[i]!.fuse;
      if (f === undefined) continue;
      if (f === 'enqueue') {
        if (e < 0) e = i;
      } else if (a < 0) a = i;
    }
    if (e < 0 || a < 0) return calls;
    const enq = calls[e]!;
    const ack = calls[a]!;
    const { ackSegment, count } = ack.fuse as { ackSegment: string; count: number };
    const fused: ScriptCall = {
      name: 'enqueue',
      keys: enq.keys,
      args: [...enq.args, count, ackSegment, ...ack.args],
      resolve: (reply) => {
        const raw = reply as unknown[];
        enq.resolve(raw);
        ack.resolve(raw[raw.length - 1]);
      },
      reject: (err) => {
        enq.reject(err);
        ack.reject(err);
      },
    };
    const out = calls.filter((_, i) => i !== a);
    out[e < a ? e : e - 1] = fused;
    return out;
  }

  async #send(calls: ScriptCall[]): Promise<void> {
    const client = this.#cmd;
    try {
      // Calls a pump carried run first (they were made first). A pump connection that stopped
      // answering holds the command connection back for at most CARRY_WAIT_MS.
      if (this.#carried !== undefined) await waitAtMost(this.#carried, CARRY_WAIT_MS);
      // Closing still lets out what was queued before (undoing prefetched leases), until QUIT.
      await (this.#connecting ?? this.connect());
    } catch (err) {
      for (const c of calls) c.reject(err);
      return;
    }
    // One write for all (each reply still settles its own call as soon as it arrives).
    corked(client, () => {
      for (const c of calls) this.issue(client, c);
    });
  }

  /** Sends one call on `client` (no waiting: the caller corks), settling it when its reply comes. @internal */
  issue(client: Redis, c: ScriptCall): void {
    const reply = c.name === 'publish' ? client.publish(c.keys[0]!, String(c.args[0])) : client.evalsha(SCRIPTS[c.name].sha, c.keys.length, ...c.keys, ...c.args);
    reply.then(c.resolve, (err: unknown) => {
      // A restarted server forgot the script: EVAL it (which loads it for next time).
      if (c.name !== 'publish' && isNoScript(err)) {
        SCRIPTS[c.name].run(client, c.keys, c.args).then(c.resolve, (e: unknown) => c.reject(asTransportError(this.#config, c.name, e)));
      } else c.reject(asTransportError(this.#config, c.name, err));
    });
  }

  /** Fails calls that could not be sent. @internal */
  failCalls(calls: ScriptCall[], err: unknown): void {
    for (const c of calls) c.reject(asTransportError(this.#config, c.name, err));
  }

  #queueKeys(queue: string): QueueKeys {
    const q = `${this.#prefix}q:${keySegment(queue)}:`;
    return {
      ready: q + 'ready',
      delayed: q + 'delayed',
      inflight: q + 'inflight',
      signal: q + 'signal',
      body: q + 'body',
      tries: q + 'tries',
    };
  }

  /** The wire form of `message`; with `now` (enqueueing), kept a moment for its publication. */
  #encode(message: Message, now?: number): string {
    let wire = this.#encoded.get(message);
    if (wire === undefined || message.attempt !== 0) {
      wire = encodeMessage(message);
      if (message.attempt === 0 && now !== undefined) this.#encoded.set(message, wire, now);
    }
    return wire;
  }

  // ------------------------------------------------------------------ recipients

  /** Marks `queue` as a registered recipient, for every bus on this namespace. */
  async addRecipient(queue: string): Promise<void> {
    if (typeof queue !== 'string' || queue.length === 0) {
      throw new ValidationError(`recipient queue must be a non-empty string, got \`${String(queue)}\``, { field: 'queue' });
    }
    const client = await this.#client();
    await client.sadd(this.#prefix + 'recipients', queue).catch((err: unknown) => {
      throw asTransportError(this.#config, 'addRecipient', err);
    });
  }

  /** Unmarks `queue`; its messages stay queued. */
  async removeRecipient(queue: string): Promise<void> {
    const client = await this.#client();
    await client.srem(this.#prefix + 'recipients', queue).catch((err: unknown) => {
      throw asTransportError(this.#config, 'removeRecipient', err);
    });
  }

  /** True when some bus on this namespace registered `queue`. */
  async hasRecipient(queue: string): Promise<boolean> {
    const client = await this.#client();
    const n = await client.sismember(this.#prefix + 'recipients', queue).catch((err: unknown) => {
      throw asTransportError(this.#config, 'hasRecipient', err);
    });
    return n === 1;
  }

  // ------------------------------------------------------------------ enqueue

  /**
   * Enqueues every entry in one script call: atomic, in order, one round trip. Calls made
   * concurrently in the same tick share that one script call.
   */
  enqueue(entries: EnqueueEntry[]): Promise<EnqueueResult[]> {
    if (entries.length === 0) return Promise.resolve([]);
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    return this.#enqueues.submit('', entries).then((results) => this.#publishEnqueued(entries, results));
  }

  /**
   * Stopgap for `EnqueueEntry.publish` until publishing moves into the enqueue script (issue 21,
   * REDIS side): publishes each enqueued entry that asks for it, as the bus did after an enqueue.
   * At-most-once: a failed publication is dropped, never felt by the sender.
   */
  #publishEnqueued<R extends EnqueueResult[]>(entries: EnqueueEntry[], results: R): R {
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as EnqueueEntry;
      if (e.publish === true && results[i]?.status === 'enqueued') this.publish(e.message.type, e.message).catch(() => undefined);
    }
    return results;
  }

  // Not async, like the other steps of a message's way out: each suspended frame is a promise
  // and a turn more on the path of every request.
  #enqueueMany(calls: EnqueueEntry[][]): Promise<EnqueueResult[][]> {
    let prepared: { args: (string | number)[]; channels: string[]; count: number };
    try {
      prepared = this.#enqueueArgs(calls);
    } catch (err) {
      return Promise.reject(err);
    }
    const { args, channels, count } = prepared;
    return new Promise<EnqueueResult[][]>((resolve, reject) => {
      const settle = (raw: unknown) => {
        try {
          resolve(this.#enqueueResults(calls, raw as unknown[], channels, count));
        } catch (err) {
          reject(err);
        }
      };
      this.#calls.push({ name: 'enqueue', keys: [this.#prefix + 'seq', this.#prefix + 'recipients'], args, resolve: settle, reject, fuse: 'enqueue' });
      this.#schedule();
    });
  }

  /**
   * Enqueues `entries`, then acks `lease`, in one script call (a reply and the request it
   * answers). Calls of one tick for leases of one queue share that call; like an ack, it goes out
   * with the wait for the consumer's next message when that consumer is busy (see `#ackMany`).
   */
  enqueueAndAck(entries: EnqueueEntry[], lease: Lease): Promise<{ results: EnqueueResult[]; acked: boolean }> {
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    return this.#replies.submit(lease.queue, { entries, lease }).then((outcome) => {
      this.#publishEnqueued(entries, outcome.results);
      return outcome;
    });
  }

  #enqueueAndAckMany(queue: string, calls: { entries: EnqueueEntry[]; lease: Lease }[]): Promise<{ results: EnqueueResult[]; acked: boolean }[]> {
    const batches = calls.map((c) => c.entries);
    let prepared: { args: (string | number)[]; channels: string[]; count: number };
    try {
      prepared = this.#enqueueArgs(batches);
    } catch (err) {
      return Promise.reject(err);
    }
    const { args, channels, count } = prepared;
    const acks = ackArgs(calls.map((c) => c.lease));
    args.push(calls.length, keySegment(queue), ...acks.args);
    const call = (resolve: (reply: unknown) => void, reject: (err: unknown) => void): ScriptCall => ({
      name: 'enqueue',
      keys: [this.#prefix + 'seq', this.#prefix + 'recipients'],
      args,
      resolve,
      reject,
    });
    return this.#armOrRun(queue, calls.length, call).then((reply) => {
      const raw = reply as unknown[];
      const results = this.#enqueueResults(batches, raw, channels, count);
      const acked = (raw[count + 1] ?? []) as number[];
      return calls.map((_, i) => ({ results: results[i]!, acked: acked[acks.at[i]!] === 1 }));
    });
  }

  /** The enqueue script's arguments for `calls` (their entries in order), and the channels it looks at. */
  #enqueueArgs(calls: EnqueueEntry[][]): { args: (string | number)[]; channels: string[]; count: number } {
    const now = Date.now();
    let count = 0;
    for (const entries of calls) count += entries.length;
    // The channels the bus publishes these messages on next (their types): the script says
    // whether anybody listens there, so a publication nobody can observe is never sent.
    const channels: string[] = [];
    for (const entries of calls) {
      for (const e of entries) {
        const channel = this.#prefix + 'topic:' + e.message.type;
        if (!channels.includes(channel)) channels.push(channel);
      }
    }
    const args: (string | number)[] = [this.#prefix, count, channels.length, ...channels];
    // Four arguments per entry (see scripts/enqueue.lua): the queue only when it changes, and
    // priority, recipient check, delay and dedupe window in one.
    let queue: string | undefined;
    for (const entries of calls) {
      for (const e of entries) {
        // visibleAt is on this machine's clock; the script adds the delay to the server's.
        const delay = e.visibleAt > now ? Math.ceil(e.visibleAt - now) : 0;
        const dedupe = e.dedupeWindowMs > 0 ? Math.ceil(e.dedupeWindowMs) : 0;
        const required = e.requireRecipient ? 1 : 0;
        args.push(
          e.queue === queue ? '' : (queue = e.queue),
          keySegment(e.message.id),
          e.message.attempt === 0 ? this.#encode(e.message, now) : encodeMessage({ ...e.message, attempt: 0 }),
          delay === 0 && dedupe === 0 ? e.message.priority + 11 * required : `${e.message.priority},${required},${delay},${dedupe}`,
        );
      }
    }
    return { args, channels, count };
  }

  /** The enqueue script's reply, as one result per entry of each call. */
  #enqueueResults(calls: EnqueueEntry[][], raw: unknown[], channels: string[], count: number): EnqueueResult[][] {
    const listened = (raw[count] ?? []) as number[];
    const seen = Date.now();
    let i = 0;
    return calls.map((entries) =>
      entries.map((entry): EnqueueResult => {
        const r = raw[i++];
        if (r === 1) {
          if (listened[channels.indexOf(this.#prefix + 'topic:' + entry.message.type)] === 0) this.#unobserved.set(entry.message, seen, seen);
          return ENQUEUED;
        }
        if (r === 2) return NO_RECIPIENT;
        let original: Message;
        try {
          original = decodeMessage(String(r));
        } catch {
          original = entry.message;
        }
        return { status: 'duplicate', original };
      }),
    );
  }

  // ------------------------------------------------------------------ lease

  /**
   * Leases up to `max` messages. Tries once at once; when nothing is visible and `waitMs > 0`,
   * waits on the queue's signal list (BLPOP on a connection dedicated to this queue, shared by
   * every waiting call of this transport) until a message arrives, the next delayed message or
   * expiring lease is due, the wait ends, or `signal` aborts. Like a wait that ends, a transport
   * closed before or during the call resolves `[]` (the memory transport does the same).
   */
  lease(queue: string, options: LeaseOptions): Promise<Lease[]> {
    const { leaseMs, waitMs } = options;
    const asked = options.max ?? 1;
    if (!(leaseMs > 0) || !(waitMs >= 0) || !(asked >= 1)) {
      return Promise.reject(new ValidationError(`lease needs leaseMs > 0, waitMs >= 0 and max >= 1, got ${leaseMs}, ${waitMs}, ${asked}`));
    }
    if (this.#closed || options.signal?.aborted) return Promise.resolve([]);
    const max = Math.floor(asked);
    if (queue.startsWith(INBOX_PREFIX)) return this.#inbox(queue).take(max, leaseMs, waitMs, options.signal);
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
    if (coming !== undefined && coming.leaseMs === leaseMs) return coming.round.then(() => this.#leaseOrWaitNow(queue, leaseMs, waitMs, max, signal));
    return this.#leaseOrWaitNow(queue, leaseMs, waitMs, max, signal);
  }

  // Not async: a consumer that goes back to waiting gets the wait's own promise (no frame that
  // adopts it, which would cost two more turns once its message comes).
  #leaseOrWaitNow(queue: string, leaseMs: number, waitMs: number, max: number, signal: AbortSignal | undefined): Promise<Lease[]> {
    if (this.#closed || signal?.aborted) return Promise.resolve([]);
    const ahead = this.#takePrefetched(queue, leaseMs, max);
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
        if (r.leases.length > 0) this.stashPrefetched(queue, leaseMs, r.leases, AHEAD_HOLD_MS);
      },
      () => {
        // Redis is failing: the consumer's own next call sees it.
        this.#ahead.delete(queue);
      },
    );
    this.#ahead.set(queue, { leaseMs, round });
    this.#flush();
  }

  /** A consumer loop on `queue` stopped waiting for good (its signal aborted). @internal */
  forgetConsumer(queue: string): void {
    this.#consumers.delete(queue);
    const ahead = this.#prefetched.get(queue);
    if (ahead !== undefined) {
      this.#prefetched.delete(queue);
      void this.#undoAll(ahead.leases);
    }
  }

  /** Epoch ms when something scheduled on `queue` falls due, as far as the last lease attempt saw; Infinity = nothing known. @internal */
  dueAt(queue: string): number {
    return this.#due.get(queue) ?? Infinity;
  }

  /** Up to `max` leases prefetched for `queue` with this lease length (the rest stay for the next call). */
  #takePrefetched(queue: string, leaseMs: number, max: number): Lease[] {
    const ahead = this.#prefetched.get(queue);
    if (ahead === undefined || ahead.leaseMs !== leaseMs) return [];
    if (ahead.leases.length <= max) {
      this.#prefetched.delete(queue);
      return ahead.leases;
    }
    return ahead.leases.splice(0, max);
  }

  /**
   * Keeps leases that arrived for nobody in particular (a pump armed by an ack got them before
   * its consumer asked again, or they were leased ahead) for the next `lease()` on `queue`.
   * Whatever nobody claims by the end of this turn of the event loop, or within `holdMs` when
   * given (the consumer stopped), is put back as if never leased. @internal
   */
  stashPrefetched(queue: string, leaseMs: number, leases: Lease[], holdMs?: number): void {
    if (this.#closed) {
      void this.#undoAll(leases);
      return;
    }
    const ahead = this.#prefetched.get(queue);
    if (ahead !== undefined && ahead.leaseMs === leaseMs) ahead.leases.push(...leases);
    else {
      if (ahead !== undefined) void this.#undoAll(ahead.leases);
      this.#prefetched.set(queue, { leaseMs, leases: [...leases] });
    }
    const unclaimedBack = () => {
      const still = this.#prefetched.get(queue);
      if (still === undefined) return;
      const unclaimed = still.leases.filter((l) => leases.includes(l));
      if (unclaimed.length === 0) return;
      still.leases = still.leases.filter((l) => !leases.includes(l));
      if (still.leases.length === 0) this.#prefetched.delete(queue);
      void this.#undoAll(unclaimed);
    };
    if (holdMs === undefined) setImmediate(unclaimedBack);
    else setTimeout(unclaimedBack, holdMs).unref();
  }

  #undoAll(leases: Lease[]): Promise<unknown> {
    return Promise.all(
      leases.map((lease) =>
        this.undoLease(lease).catch(() => {
          // Redis is failing: the lease runs out and the message is delivered again then.
        }),
      ),
    );
  }

  /** The lease script's arguments for `queue`. @internal */
  leaseArgs(keys: QueueKeys, leaseMs: number, max: number): [string[], (string | number)[]] {
    return [
      [keys.ready, keys.delayed, keys.inflight, keys.signal, keys.body, keys.tries],
      [Math.min(max, MAX_ROUND), Math.ceil(leaseMs)],
    ];
  }

  async #leaseMany(calls: { queue: string; leaseMs: number; max: number }[]): Promise<RoundResult[]> {
    // Closed between the call and this flush: nothing is leased, every call ends empty.
    if (this.#closed) return calls.map(() => ({ leases: [], waitMs: -1 }));
    const { queue, leaseMs } = calls[0]!;
    let want = 0;
    for (const c of calls) want += c.max;
    const keys = this.#queueKeys(queue);
    const leases: Lease[] = [];
    let waitMs = -1;
    // Malformed entries are skipped; look again (a bounded number of times) to fill the batch.
    for (let round = 0; round < 8 && leases.length < want; round++) {
      const [k, a] = this.leaseArgs(keys, leaseMs, want - leases.length);
      const r = await this.parseLeaseReply(queue, leaseMs, await this.#run('lease', k, a));
      leases.push(...r.leases);
      waitMs = r.waitMs;
      if (!r.malformed) break;
    }
    let taken = 0;
    return calls.map((c) => {
      const mine = leases.slice(taken, taken + c.max);
      taken += mine.length;
      return { leases: mine, waitMs };
    });
  }

  /**
   * Turns the lease script's reply into leases. Data that does not decode as a message is
   * dead-lettered with reason `malformed` (and its raw text), never handed out. Synchronous
   * unless some entry is malformed (its dead letter takes a round trip): a pump's usual round
   * costs no promise here. @internal
   */
  parseLeaseReply(queue: string, leaseMs: number, reply: unknown): ParsedRound | Promise<ParsedRound> {
    const raw = reply as unknown[];
    const leases: Lease[] = [];
    const now = Date.now();
    const waitMs = Number(raw[0]);
    if (Number(raw[1]) > 0) this.#drained.delete(queue);
    else {
      this.#drained.add(queue);
      this.#due.set(queue, waitMs >= 0 ? now + waitMs : Infinity);
    }
    const deadline = now + leaseMs;
    const first = String(raw[2]);
    const n = Number(raw[3]);
    // Messages leased before: their attempt and token, by position (see lease.lua's reply).
    let again: Map<number, [number, string]> | undefined;
    for (let j = 4 + 2 * n; j + 2 < raw.length; j += 3) (again ??= new Map()).set(Number(raw[j]) - 1, [Number(raw[j + 1]), String(raw[j + 2])]);
    let bad: Promise<void>[] | undefined;
    for (let k = 0; k < n; k++) {
      const body = withoutOrder(raw[5 + 2 * k]);
      const earlier = again?.get(k);
      const attempt = earlier === undefined ? 1 : earlier[0];
      const token = earlier === undefined ? first : earlier[1];
      try {
        const message = decodeMessage(body);
        message.attempt = attempt;
        leases.push({ queue, message, token, deadline });
      } catch (err) {
        (bad ??= []).push(
          this.#deadLetterMalformed(queue, raw[4 + 2 * k] as string, body, attempt, token, err).catch(() => {
            // Redis is failing: the lease runs out and the next lease attempt tries again.
          }),
        );
      }
    }
    if (bad === undefined) return { leases, waitMs, malformed: 0 };
    const malformed = bad.length;
    return Promise.all(bad).then(() => ({ leases, waitMs, malformed }));
  }

  /** Takes a lease back as if it had never been handed out (a wait ended before it arrived). @internal */
  async undoLease(lease: Lease): Promise<void> {
    const keys = this.#queueKeys(lease.queue);
    const idseg = keySegment(lease.message.id);
    await this.#run('requeue', [keys.ready, keys.delayed, keys.inflight, keys.signal, keys.tries, keys.body], [idseg, lease.token, 0, '1'], true);
  }

  async #deadLetterMalformed(queue: string, idseg: string, body: string | null, attempt: number, token: string, err: unknown): Promise<void> {
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
    const keys = this.#queueKeys(queue);
    const { args, at } = ackArgs(leases);
    const ackKeys = [keys.ready, keys.inflight, keys.signal, keys.body, keys.tries];
    const fuse = { ackSegment: keySegment(queue), count: leases.length };
    const acked = (await this.#armOrRun(queue, leases.length, (resolve, reject) => ({ name: 'ack-many', keys: ackKeys, args, resolve, reject, fuse }))) as number[];
    return at.map((i) => acked[i] === 1);
  }

  /**
   * Sends a call that acks `count` leases of `queue`: on the queue's blocking connection, ahead of
   * the wait for what its busy consumer asks for next, when that connection is free; else with
   * the tick's commands.
   */
  #armOrRun(queue: string, count: number, call: (resolve: (reply: unknown) => void, reject: (err: unknown) => void) => ScriptCall): Promise<unknown> {
    const leaseMs = this.#consumers.get(queue);
    const pump = leaseMs === undefined || this.#closed || this.#prefetched.has(queue) || this.#ahead.has(queue) ? undefined : this.#pump(queue);
    return new Promise<unknown>((resolve, reject) => {
      const c = call(resolve, reject);
      if (this.#closed) reject(new ClosedError('redis transport'));
      else if (pump?.idle === true) pump.arm(leaseMs!, count, c);
      else {
        this.#calls.push(c);
        this.#schedule();
      }
    });
  }

  #inbox(queue: string): InboxPump {
    let inbox = this.#inboxes.get(queue);
    if (!inbox) {
      inbox = new InboxPump(this, queue, this.#inboxKey(queue));
      this.#inboxes.set(queue, inbox);
    }
    return inbox;
  }

  #inboxKey(queue: string): string {
    return `${this.#prefix}q:${keySegment(queue)}:list`;
  }

  /**
   * Replies from an inbox list's entries (attempt 1, token INBOX_TOKEN); entries that do not
   * decode are dead-lettered as malformed. Synchronous unless one is (see `parseLeaseReply`). @internal
   */
  inboxLeases(queue: string, leaseMs: number, raw: readonly string[]): Lease[] | Promise<Lease[]> {
    const deadline = Date.now() + leaseMs;
    const leases: Lease[] = [];
    let bad: Promise<unknown>[] | undefined;
    for (const body of raw) {
      try {
        const message = decodeMessage(body);
        message.attempt = 1;
        leases.push({ queue, message, token: INBOX_TOKEN, deadline });
      } catch (err) {
        const message = salvage(body, '', queue, 1);
        const letter: DeadLetter = { message, queue, reason: 'malformed', error: err instanceof Error ? err.message : String(err), attempts: 1, deadAt: new Date(), raw: body };
        (bad ??= []).push(
          this.#deadLetterRaw(letter, keySegment(message.id), undefined).catch(() => {
            // Redis is failing: a malformed reply is dropped (an inbox is at most once).
          }),
        );
      }
    }
    return bad === undefined ? leases : Promise.all(bad).then(() => leases);
  }

  /** Pops up to `max` entries of an inbox list without waiting. @internal */
  async popInbox(key: string, max: number): Promise<string[]> {
    const client = await this.#client();
    const raw = await client.lpop(key, max).catch((err: unknown) => {
      throw asTransportError(this.#config, 'lease', err);
    });
    return raw ?? [];
  }

  #pump(queue: string): QueuePump {
    let pump = this.#pumps.get(queue);
    if (!pump) {
      pump = new QueuePump(this, queue, this.#queueKeys(queue));
      this.#pumps.set(queue, pump);
    }
    return pump;
  }

  /** Puts a leased message back, visible after `delayMs`, in its original place; false if the lease was lost. */
  async requeue(lease: Lease, options: { delayMs: number }): Promise<boolean> {
    if (isInboxLease(lease)) {
      // An inbox has no delays or attempts: the reply is visible again at once, at the end.
      if (!settleInboxLease(lease)) return false;
      const client = await this.#client();
      await client.rpush(this.#inboxKey(lease.queue), encodeMessage({ ...lease.message, attempt: 0 })).catch((err: unknown) => {
        throw asTransportError(this.#config, 'requeue', err);
      });
      return true;
    }
    const keys = this.#queueKeys(lease.queue);
    const idseg = keySegment(lease.message.id);
    const delay = Math.max(0, Math.ceil(options.delayMs));
    return (
      (await this.#run('requeue', [keys.ready, keys.delayed, keys.inflight, keys.signal, keys.tries, keys.body], [idseg, lease.token, delay, '0'])) === 1
    );
  }

  /** Moves the lease deadline to now + `ms`; false if the lease was lost. */
  async extendLease(lease: Lease, ms: number): Promise<boolean> {
    if (!(ms > 0) || !Number.isFinite(ms)) throw new ValidationError(`lease extension must be a positive number of ms, got ${ms}`, { field: 'ms' });
    if (isInboxLease(lease)) {
      if (lease.token !== INBOX_TOKEN) return false;
      lease.deadline = Date.now() + ms;
      return true;
    }
    const keys = this.#queueKeys(lease.queue);
    const idseg = keySegment(lease.message.id);
    const now = Date.now();
    const token = Number(await this.#run('extend-lease', [keys.ready, keys.inflight, keys.signal, keys.tries, keys.body], [idseg, lease.token, Math.ceil(ms)]));
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
    const p = this.#prefix;
    // Without a lease the queue keys are not touched; any queue's keys fill their places.
    const k = this.#queueKeys(lease?.queue ?? letter.queue);
    const { json, attachBody } = encodeDeadLetter(letter);
    const result = await this.#run(
      'dead-letter',
      [p + 'dlq', p + 'dlq:order', p + 'seq', k.ready, k.inflight, k.signal, k.body, k.tries, p + 'dlq:claims'],
      [letter.message.id, json, idseg, lease?.token ?? '', attachBody && lease !== undefined ? '1' : '0'],
    );
    return result === 1;
  }

  /** Dead letters, oldest first. */
  async listDeadLetters(options?: { limit?: number }): Promise<DeadLetter[]> {
    const limit = options?.limit === undefined ? -1 : Math.max(0, Math.floor(options.limit));
    if (limit === 0) return [];
    const raw = (await this.#run('list-dead-letters', [this.#prefix + 'dlq', this.#prefix + 'dlq:order'], [limit])) as string[];
    const out: DeadLetter[] = [];
    for (const json of raw) {
      const letter = decodeDeadLetter(json);
      if (letter) out.push(letter);
    }
    return out;
  }

  /** Removes and returns the dead letter of `messageId`, or null. */
  async takeDeadLetter(messageId: string): Promise<DeadLetter | null> {
    const raw = await this.#run('take-dead-letter', [this.#prefix + 'dlq', this.#prefix + 'dlq:order', this.#prefix + 'dlq:claims'], [messageId]);
    return typeof raw === 'string' ? decodeDeadLetter(raw) : null;
  }

  /** See {@link Transport.claimDeadLetter}. */
  async claimDeadLetter(messageId: string, claimMs: number): Promise<DeadLetterClaim | 'claimed' | null> {
    const reply = await this.#run('claim-dead-letter', [this.#prefix + 'dlq', this.#prefix + 'dlq:claims'], [messageId, Math.max(1, Math.ceil(claimMs)), newId()]);
    if (!Array.isArray(reply)) return null;
    if (reply.length === 1) return 'claimed';
    const letter = decodeDeadLetter(String(reply[0]));
    const token = String(reply[1]);
    if (letter === null) {
      // Tampered with in Redis: not something the bus can redrive; leave it as it is.
      await this.settleDeadLetter(messageId, token, false);
      throw new ValidationError(`dead letter ${messageId} is not readable (damaged in Redis); it is left in place`, { field: 'id' });
    }
    return { letter, token };
  }

  /** See {@link Transport.settleDeadLetter}. */
  async settleDeadLetter(messageId: string, token: string, remove: boolean): Promise<boolean> {
    const p = this.#prefix;
    return (await this.#run('settle-dead-letter', [p + 'dlq', p + 'dlq:order', p + 'dlq:claims'], [messageId, token, remove ? '1' : '0'])) === 1;
  }

  /** Removes every dead letter; returns how many. */
  async purgeDeadLetters(): Promise<number> {
    return Number(await this.#run('purge-dead-letters', [this.#prefix + 'dlq', this.#prefix + 'dlq:order', this.#prefix + 'dlq:claims'], []));
  }

  // ------------------------------------------------------------------ pub/sub

  /**
   * PUBLISHes `message` on the topic's channel; every subscribed process receives it once.
   * At-most-once. Publications of one tick go out in one script call.
   */
  publish(topic: string, message: Message): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    // Published on its type right after an enqueue that found nobody listening on that channel
    // (checked in the same script, moments ago; the bus publishes in the same turn): nobody
    // could observe it, so nothing is sent. A subscription that became live meanwhile began
    // after the send.
    if (topic === message.type) {
      const seen = this.#unobserved.get(message);
      if (seen !== undefined) {
        this.#unobserved.delete(message);
        if (Date.now() - seen <= UNOBSERVED_MS) return DONE;
      }
    }
    // A plain PUBLISH in the tick's pipelined write: cheaper for Redis than a script call.
    let wire: string;
    try {
      wire = this.#encode(message);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#run('publish', [this.#prefix + 'topic:' + topic], [wire]).then(() => undefined);
  }

  /**
   * Subscribes `handler` to `topic` (`'*'` = every topic) on this transport's subscriber
   * connection, created on first use. Resolves once Redis confirmed the subscription.
   */
  async subscribe(topic: string, handler: (message: Message) => void): Promise<() => Promise<void>> {
    const sub = await this.#subscriber();
    let handlers = this.#topicHandlers.get(topic);
    if (!handlers) {
      handlers = new Set();
      this.#topicHandlers.set(topic, handlers);
    }
    const first = handlers.size === 0;
    // Wrap so the same function may be subscribed twice and removed once.
    const entry = (message: Message) => handler(message);
    handlers.add(entry);
    if (first) {
      try {
        if (topic === '*') await sub.psubscribe(this.#prefix + 'topic:*');
        else await sub.subscribe(this.#prefix + 'topic:' + topic);
      } catch (err) {
        handlers.delete(entry);
        throw asTransportError(this.#config, 'subscribe', err);
      }
    }
    let active = true;
    return async () => {
      if (!active) return;
      active = false;
      const set = this.#topicHandlers.get(topic);
      if (!set) return;
      set.delete(entry);
      if (set.size > 0) return;
      this.#topicHandlers.delete(topic);
      if (this.#closed) return;
      try {
        if (topic === '*') await sub.punsubscribe(this.#prefix + 'topic:*');
        else await sub.unsubscribe(this.#prefix + 'topic:' + topic);
      } catch {
        // The connection is gone: nothing left to unsubscribe from.
      }
    };
  }

  #subscriber(): Promise<Redis> {
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    this.#subConnecting ??= (async () => {
      await this.connect();
      const sub = createClient(this.#config, 'sub');
      const channelPrefix = this.#prefix + 'topic:';
      sub.on('message', (channel: string, data: string) => {
        this.#dispatch(this.#topicHandlers.get(channel.slice(channelPrefix.length)), data);
      });
      sub.on('pmessage', (_pattern: string, _channel: string, data: string) => {
        this.#dispatch(this.#topicHandlers.get('*'), data);
      });
      this.#sub = sub;
      await connectClient(sub, this.#config);
      return sub;
    })().catch((err: unknown) => {
      this.#subConnecting = undefined;
      throw err;
    });
    return this.#subConnecting;
  }

  #dispatch(handlers: Set<(message: Message) => void> | undefined, data: string): void {
    if (!handlers || handlers.size === 0) return;
    let message: Message;
    try {
      message = decodeMessage(data);
    } catch {
      return; // Someone published garbage on our channel: not a message, nothing to deliver.
    }
    for (const handler of handlers) {
      try {
        handler(message);
      } catch {
        // A subscriber's failure is the bus's to log; it never blocks the others.
      }
    }
  }

  // ------------------------------------------------------------------ depth, close

  /** Ready (including due delayed and expired leases), delayed and leased counts of `queue`. */
  async depth(queue: string): Promise<QueueDepth> {
    if (queue.startsWith(INBOX_PREFIX)) {
      const client = await this.#client();
      const ready = await client.llen(this.#inboxKey(queue)).catch((err: unknown) => {
        throw asTransportError(this.#config, 'depth', err);
      });
      return { ready, delayed: 0, inFlight: 0 };
    }
    const keys = this.#queueKeys(queue);
    const [ready, delayed, inFlight] = (await this.#run('depth', [keys.ready, keys.delayed, keys.inflight], [])) as number[];
    return { ready: Number(ready ?? 0), delayed: Number(delayed ?? 0), inFlight: Number(inFlight ?? 0) };
  }

  /** See {@link Transport.listQueues}: the namespace's registered recipients. */
  async listQueues(): Promise<string[]> {
    const client = await this.#client();
    const names = await client.smembers(this.#prefix + 'recipients').catch((err: unknown) => {
      throw asTransportError(this.#config, 'listQueues', err);
    });
    return names.sort();
  }

  /**
   * See {@link Transport.inspectQueue}. Plain reads (no script, nothing moved): counts per priority
   * band of `ready` (order = (10 - priority) * 2^40 + seq) plus delayed ones by their body, the
   * front of each band (FIFO, so the oldest of it) for the oldest age, and the leases by deadline.
   */
  async inspectQueue(queue: string, options: { limit?: number } = {}): Promise<QueueInspection> {
    const limit = options.limit ?? 100;
    if (queue.startsWith(INBOX_PREFIX)) return { byPriority: null, oldestWaitingAt: null, leases: [] };
    const keys = this.#queueKeys(queue);
    const client = await this.#client();
    const BAND = 2 ** 40;
    const fail = (err: unknown): never => {
      throw asTransportError(this.#config, 'inspectQueue', err);
    };
    const pipe = client.pipeline();
    for (let p = 10; p >= 0; p--) {
      const lo = (10 - p) * BAND;
      pipe.zcount(keys.ready, String(lo), `(${lo + BAND}`);
      pipe.zrangebyscore(keys.ready, String(lo), `(${lo + BAND}`, 'LIMIT', 0, 1);
    }
    pipe.zrange(keys.delayed, "0", "999");
    pipe.zrange(keys.inflight, "0", String(limit - 1), 'WITHSCORES');
    const replies = (await pipe.exec().catch(fail)) ?? [];
    const value = (i: number): unknown => {
      const [err, v] = replies[i] ?? [null, null];
      if (err) fail(err);
      return v;
    };
    const byPriority = new Array<number>(11).fill(0);
    const fronts: string[] = [];
    for (let i = 0; i < 11; i++) {
      byPriority[10 - i] = Number(value(2 * i));
      const front = (value(2 * i + 1) as string[])[0];
      if (front !== undefined) fronts.push(front);
    }
    const delayed = value(22) as string[];
    const inflight = value(23) as string[];
    const leasedIds = inflight.filter((_, i) => i % 2 === 0);
    const ids = [...fronts, ...delayed, ...leasedIds];
    const bodies = ids.length === 0 ? [] : await client.hmget(keys.body, ...ids).catch(fail);
    const messageAt = (i: number): Message | null => {
      const body = bodies[i];
      if (typeof body !== 'string') return null; // moved on between the reads
      try {
        return decodeMessage(body.slice(body.indexOf('|') + 1));
      } catch {
        return null;
      }
    };
    let oldest: number | null = null;
    for (let i = 0; i < fronts.length + delayed.length; i++) {
      const m = messageAt(i);
      if (m === null) continue;
      if (i >= fronts.length) byPriority[m.priority] = (byPriority[m.priority] ?? 0) + 1;
      const at = m.timestamp.getTime();
      if (oldest === null || at < oldest) oldest = at;
    }
    const leases: QueueInspection['leases'] = [];
    for (let j = 0; j < leasedIds.length; j++) {
      const m = messageAt(fronts.length + delayed.length + j);
      const score = inflight[2 * j + 1] ?? '0';
      if (m === null) continue;
      const n = Number(score);
      leases.push({ message: m, attempt: n % 1024, token: score, deadline: Math.floor(n / 1024) });
    }
    return { byPriority, oldestWaitingAt: oldest, leases };
  }

  /** Closes every connection and wakes waiting `lease` calls with `[]`. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Leases taken ahead that nobody will claim now: back to their queues before the connection goes.
    const ahead = [...this.#prefetched.values()].flatMap((p) => p.leases);
    this.#prefetched.clear();
    const undone = this.#connecting && ahead.length > 0 ? this.#undoAll(ahead) : undefined;
    const pumps = [...this.#pumps.values()];
    this.#pumps.clear();
    for (const pump of pumps) pump.close();
    // Replies popped but not yet handed out are dropped with the bus they were for.
    for (const inbox of this.#inboxes.values()) inbox.close();
    this.#inboxes.clear();
    this.#lines.close();
    this.#topicHandlers.clear();
    this.#sub?.disconnect();
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

  /** The pool of blocking lines the pumps wait on. @internal */
  get lines(): LinePool {
    return this.#lines;
  }

  /** Ends the waits given `signal` when it aborts (one listener per signal for the whole transport). @internal */
  watchAbort(signal: AbortSignal): void {
    this.#aborts.watch(signal);
  }

  /** Sends calls a pump could not carry (it has no line) with the tick's commands. @internal */
  sendCalls(calls: ScriptCall[]): void {
    this.#calls.push(...calls);
    this.#schedule();
  }

  /** One lease attempt on the command connection, without waiting. @internal */
  leaseRound(queue: string, leaseMs: number, max: number): Promise<RoundResult> {
    return this.#leases.submit(`${leaseMs}:${queue}`, { queue, leaseMs, max });
  }

  /** Ends the shared wait's round in flight (a token on its private list, which expires). @internal */
  kick(key: string): void {
    this.#client().then(
      (client) => client.multi().lpush(key, '1').pexpire(key, 60_000).exec(),
      () => undefined,
    ).catch(() => {
      // Redis is failing: the round ends on its own timeout.
    });
  }

  /** A new blocking connection for a queue pump. @internal */
  blockingClient(): Redis {
    // A wait whose connection died without a word still ends: `BlockingLine.within` drops a
    // connection whose round outlives its wait by STUCK_MS. (ioredis's own blockingTimeout would
    // do the same with a timer per blocking command, on the path of every message.)
    return createClient(this.#config, 'block', { maxRetriesPerRequest: 1 });
  }

  /** Loads a script the server forgot (a restart) through the command connection. @internal */
  async loadScript(name: keyof typeof SCRIPTS): Promise<void> {
    const client = await this.#client();
    await client.script('LOAD', SCRIPTS[name].lua);
  }
}

/**
 * One 'abort' listener per signal the waits of a pump use (a consumer loop passes the same signal
 * to every call) instead of one added and removed per wait, which costs more than the wait's own
 * bookkeeping: `onAbort(signal)` ends that signal's waits.
 */
class AbortWatch {
  readonly #seen = new WeakSet<AbortSignal>();
  readonly #onAbort: (signal: AbortSignal) => void;

  constructor(onAbort: (signal: AbortSignal) => void) {
    this.#onAbort = onAbort;
  }

  watch(signal: AbortSignal): void {
    if (this.#seen.has(signal)) return;
    this.#seen.add(signal);
    signal.addEventListener('abort', () => this.#onAbort(signal), { once: true });
  }
}

/**
 * The blocking connection of one pump: opened on first use, dropped when a wait on it outlives
 * its timeout by far (a connection that died without saying so), and the back-off between
 * failed rounds, which closing cuts short.
 */
class BlockingLine {
  readonly #transport: RedisTransport;
  #conn: Redis | undefined;
  #connected: Promise<void> | undefined;
  #closed = false;
  #failures = 0;
  #pause: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  /** Epoch ms by which the round in flight must have answered; 0 = none in flight. */
  #due = 0;
  #watchdog: NodeJS.Timeout | undefined;
  /** Epoch ms since when this line has sat unused in its pool (see `LinePool`). */
  idleSince = 0;

  constructor(transport: RedisTransport) {
    this.#transport = transport;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The connection can take the tick's commands in front of the next wait, right now. */
  readonly canCarry = (): boolean => !this.#closed && this.#conn?.status === 'ready' && this.#connected !== undefined;

  /** The connection when it is up (no waiting), else undefined: then `connection()`. */
  get live(): Redis | undefined {
    return this.canCarry() ? this.#conn : undefined;
  }

  async connection(): Promise<Redis> {
    if (!this.#conn) this.#conn = this.#transport.blockingClient();
    this.#connected ??= this.#conn.connect().catch((err: unknown) => {
      this.#connected = undefined;
      throw err;
    });
    await this.#connected;
    return this.#conn;
  }

  /**
   * `round` (what a write of up to `blockMs` of waiting will answer), watched: should it outlive
   * that wait by STUCK_MS (a connection that died without a word), the watchdog drops the
   * connection, ioredis fails what it held (so `round` rejects), and the next round starts over on
   * a new one. One interval timer per line does the watching, not a timer and a race per round:
   * a round is on the path of every message.
   */
  within<T>(round: Promise<T>, blockMs: number): Promise<T> {
    this.#due = Date.now() + blockMs + STUCK_MS;
    if (this.#watchdog === undefined) {
      this.#watchdog = setInterval(this.#check, WATCHDOG_MS);
      this.#watchdog.unref();
    }
    return round;
  }

  /** The round `within` watched is over (answered or failed). */
  answered(): void {
    this.#due = 0;
  }

  readonly #check = (): void => {
    if (this.#due === 0 || Date.now() <= this.#due) return;
    this.#due = 0;
    const conn = this.#conn;
    this.#conn = undefined;
    this.#connected = undefined;
    conn?.disconnect();
  };

  /** Waits after a failed round: 50 ms, doubling with each failure in a row, at most 1 s. */
  backOff(): Promise<void> {
    const ms = Math.min(50 * 2 ** this.#failures++, 1000);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pause = undefined;
        resolve();
      }, ms);
      this.#pause = { timer, resolve };
    });
  }

  /** A round went through: the next failure backs off from the start. */
  succeeded(): void {
    this.#failures = 0;
  }

  close(): void {
    this.#closed = true;
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog);
    if (this.#pause) {
      clearTimeout(this.#pause.timer);
      this.#pause.resolve();
      this.#pause = undefined;
    }
    this.#conn?.disconnect();
  }
}

/**
 * The blocking connections of one transport, bounded: at most `blockingConnections - 1` lines a
 * waiting queue (or inbox) holds while somebody waits on it, plus one shared wait for the queues
 * that found every line taken. A line a pump is done with goes back to the pool and serves the
 * next queue that waits (most queues of a busy process take their own back at once); one unused
 * for `blockingIdleMs` is closed. So a process that waits on 200 queue names, one after another
 * or all at once, holds `blockingConnections` blocking connections at most, not 200.
 */
class LinePool {
  readonly #transport: RedisTransport;
  readonly #max: number;
  readonly #idleMs: number;
  readonly #idle: BlockingLine[] = [];
  readonly #all = new Set<BlockingLine>();
  #sweeper: NodeJS.Timeout | undefined;
  #closed = false;
  readonly shared: SharedWait;

  constructor(transport: RedisTransport, config: RedisConfig) {
    this.#transport = transport;
    this.#max = config.blockingConnections - 1;
    this.#idleMs = config.blockingIdleMs;
    this.shared = new SharedWait(transport, config, this);
  }

  /** A line to wait on (`preferred`, the one the caller held last, when it is free); undefined when all are taken. */
  take(preferred: BlockingLine | undefined): BlockingLine | undefined {
    if (this.#closed) return undefined;
    const idle = this.#idle;
    if (idle.length > 0) {
      const i = preferred === undefined ? -1 : idle.lastIndexOf(preferred);
      if (i < 0 || i === idle.length - 1) return idle.pop();
      idle.splice(i, 1);
      return preferred;
    }
    if (this.#all.size >= this.#max) return undefined;
    const line = new BlockingLine(this.#transport);
    this.#all.add(line);
    return line;
  }

  /** Whether `take` would give a line now. */
  canTake(): boolean {
    return !this.#closed && (this.#idle.length > 0 || this.#all.size < this.#max);
  }

  /** A line its pump is done with, for the next. */
  give(line: BlockingLine): void {
    if (this.#closed || line.closed) {
      this.#all.delete(line);
      return;
    }
    line.idleSince = Date.now();
    this.#idle.push(line);
    this.sweepLater();
  }

  /** Makes sure idle lines (and an idle shared wait) are looked at for closing. */
  sweepLater(): void {
    if (this.#sweeper !== undefined || this.#closed) return;
    this.#sweeper = setInterval(this.#sweep, Math.max(20, Math.min(this.#idleMs / 2, 1000)));
    this.#sweeper.unref();
  }

  readonly #sweep = (): void => {
    const cutoff = Date.now() - this.#idleMs;
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      const line = this.#idle[i]!;
      if (line.idleSince > cutoff) continue;
      this.#idle.splice(i, 1);
      this.#all.delete(line);
      line.close();
    }
    const sharedOpen = this.shared.closeIfIdleSince(cutoff);
    if (this.#idle.length === 0 && !sharedOpen) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  };

  close(): void {
    this.#closed = true;
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    for (const line of this.#all) line.close();
    this.#all.clear();
    this.#idle.length = 0;
    this.shared.close();
  }
}

/** A queue (or inbox) waiting in the shared wait. */
interface SharedMember {
  deadline: number;
  resolve(value: string | null): void;
  reject(err: unknown): void;
}

/**
 * One BLPOP over the lists of every queue that found the pool's lines taken (the signal list of
 * a queue, the list of an inbox): it ends with the first element of any of them, which goes to
 * that list's waiter. A list that joins while a round is in flight kicks it (a token on a private
 * list the round also waits on), so the next round includes it.
 */
class SharedWait {
  readonly #transport: RedisTransport;
  readonly #pool: LinePool;
  readonly #kickKey: string;
  readonly #members = new Map<string, SharedMember>();
  #line: BlockingLine | undefined;
  #running = false;
  #inRound = false;
  #kicked = false;
  #closed = false;
  #idleSince = 0;

  constructor(transport: RedisTransport, config: RedisConfig, pool: LinePool) {
    this.#transport = transport;
    this.#pool = pool;
    this.#kickKey = `${config.prefix}kick:${process.pid}:${randomUUID()}`;
  }

  /** Waits up to `blockMs` for an element of list `key` and pops it: the element, or null when none came. */
  wait(key: string, blockMs: number): Promise<string | null> {
    if (this.#closed) return Promise.resolve(null);
    return new Promise<string | null>((resolve, reject) => {
      this.#members.get(key)?.resolve(null);
      this.#members.set(key, { deadline: Date.now() + blockMs, resolve, reject });
      if (!this.#running) void this.#loop();
      else if (this.#inRound && !this.#kicked) {
        this.#kicked = true;
        this.#transport.kick(this.#kickKey);
      }
    });
  }

  async #loop(): Promise<void> {
    this.#running = true;
    this.#line ??= new BlockingLine(this.#transport);
    const line = this.#line;
    try {
      while (!this.#closed && this.#members.size > 0) {
        const now = Date.now();
        let earliest = Infinity;
        for (const [key, m] of this.#members) {
          if (m.deadline <= now) {
            this.#members.delete(key);
            m.resolve(null);
          } else earliest = Math.min(earliest, m.deadline);
        }
        if (this.#members.size === 0) break;
        const blockMs = Math.max(1, Math.min(earliest - now, MAX_BLOCK_MS));
        const keys = [...this.#members.keys(), this.#kickKey];
        let reply: [string, string] | null;
        try {
          const conn = line.live ?? (await line.connection());
          this.#inRound = true;
          this.#kicked = false;
          reply = await line.within(conn.blpop(...keys, (blockMs / 1000).toFixed(3)), blockMs);
          line.answered();
          line.succeeded();
        } catch (err) {
          line.answered();
          this.#inRound = false;
          if (this.#closed) break;
          // Tell the waiters (each looks again after a pause of its own), then back off.
          for (const m of this.#members.values()) m.reject(err);
          this.#members.clear();
          await line.backOff();
          continue;
        }
        this.#inRound = false;
        if (reply === null || reply[0] === this.#kickKey) continue;
        const m = this.#members.get(reply[0]);
        this.#members.delete(reply[0]);
        // Nobody waits for it anymore (closed): a wake-up token is no loss (a lease runs after
        // every wait); an inbox's reply is dropped with the bus it was for.
        m?.resolve(reply[1]);
      }
    } finally {
      this.#running = false;
      this.#inRound = false;
      this.#idleSince = Date.now();
      if (!this.#closed && this.#members.size > 0) void this.#loop();
      else this.#pool.sweepLater();
    }
  }

  /** Closes the line when nobody has waited since `cutoff`; whether it is still open. */
  closeIfIdleSince(cutoff: number): boolean {
    if (this.#line === undefined) return false;
    if (this.#running || this.#idleSince > cutoff) return true;
    this.#line.close();
    this.#line = undefined;
    return false;
  }

  close(): void {
    this.#closed = true;
    for (const m of this.#members.values()) m.resolve(null);
    this.#members.clear();
    this.#line?.close();
    this.#line = undefined;
  }
}

/**
 * The waiting side of one queue: every `lease()` call of the transport waiting on that queue
 * registers here, and one loop serves them all on a blocking connection of its own. Each turn
 * pipelines `BLPOP signal` and the lease script (one call per lease length, asking for what
 * all waiters want together): Redis runs the lease the moment the wait ends, whether a
 * producer's wake-up token or the timeout ended it, so a wake-up costs no extra round trip.
 * The timeout is the nearest of: a waiter's deadline, the next delayed message or lease
 * deadline, and `MAX_BLOCK_MS`. While nobody waits, the connection also carries a busy
 * consumer's ack, in the same write as the wait for its next ask (`arm`).
 */
class QueuePump {
  readonly #transport: RedisTransport;
  readonly #queue: string;
  readonly #keys: QueueKeys;
  readonly #waiters = new Set<Waiter>();
  /** The blocking line this pump last held (it asks for that one again: already connected). */
  #line: BlockingLine | undefined;
  #running = false;
  #closed = false;
  /** Calls to send first in the next write (an ack that armed the pump). */
  #pre: ScriptCall[] = [];
  /** Epoch ms when the wait of the round in flight ends (Infinity until it is known). */
  #roundEnds = Infinity;

  constructor(transport: RedisTransport, queue: string, keys: QueueKeys) {
    this.#transport = transport;
    this.#queue = queue;
    this.#keys = keys;
  }

  /** `signal` aborted: the waits it was given for end now. */
  abort(signal: AbortSignal): void {
    let had = false;
    for (const w of this.#waiters) {
      if (w.signal !== signal) continue;
      had = true;
      w.settle([]);
    }
    // Its consumer is stopping: no more ask-again arming for it.
    if (had) this.#transport.forgetConsumer(this.#queue);
  }

  /** Whether some `lease()` call is waiting here. */
  get waiting(): boolean {
    return this.#waiters.size > 0;
  }

  /** Nothing in flight, nobody waiting, and a blocking line free: it can carry an ack and a wait. */
  get idle(): boolean {
    return !this.#running && this.#waiters.size === 0 && this.#transport.lines.canTake();
  }

  /** Waiting for the next call of a consumer that just acked (see `arm`). */
  get armed(): boolean {
    for (const w of this.#waiters) if (w.provisional) return true;
    return false;
  }

  /**
   * Sends `ack` on this queue's connection, followed in the same write by a wait for up to `max`
   * messages on behalf of the call its consumer makes once the ack resolves: a provisional waiter
   * whose leases are kept for that call (handed straight to it if it is already waiting).
   */
  arm(leaseMs: number, max: number, ack: ScriptCall): void {
    const waiter: Waiter = {
      max,
      leaseMs,
      deadline: Date.now() + MAX_BLOCK_MS,
      settled: false,
      provisional: true,
      settle: (leases) => {
        if (waiter.settled) return;
        waiter.settled = true;
        this.#waiters.delete(waiter);
        if (leases.length > 0) this.#transport.stashPrefetched(this.#queue, leaseMs, leases);
      },
    };
    this.#waiters.add(waiter);
    this.#pre.push(ack);
    if (!this.#running) void this.#loop();
  }

  wait(max: number, leaseMs: number, waitMs: number, signal: AbortSignal | undefined): Promise<Lease[]> {
    return new Promise<Lease[]>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        max,
        leaseMs,
        deadline: Date.now() + waitMs,
        settled: false,
        provisional: false,
        signal,
        settle: (leases) => {
          if (waiter.settled) return;
          waiter.settled = true;
          this.#waiters.delete(waiter);
          if (timer) clearTimeout(timer);
          resolve(leases);
        },
      };
      // The call a provisional waiter stood for has come: it takes over (what is on its way is
      // handed to it; nothing more is kept for later).
      for (const w of this.#waiters) if (w.provisional && w.leaseMs === leaseMs) w.settle([]);
      this.#waiters.add(waiter);
      // The loop ends every wait whose deadline its round reaches; only a call that joins a round
      // which waits longer than it may needs a timer of its own. (Longer than a timer can wait, or
      // Infinity: only a message or the signal ends it.)
      if (waitMs <= MAX_TIMER_MS && this.#running && waiter.deadline < this.#roundEnds) timer = setTimeout(() => waiter.settle([]), waitMs);
      if (signal !== undefined) this.#transport.watchAbort(signal);
      if (!this.#running) void this.#loop();
    });
  }

  async #loop(): Promise<void> {
    this.#running = true;
    let block = true;
    // A line of the transport's pool for as long as somebody waits here; none free (more queues
    // wait than the pool has lines): the shared wait, until one is (see `LinePool`).
    let line = this.#transport.lines.take(this.#line);
    try {
      while (!this.#closed && this.#waiters.size > 0) {
        // Waits whose deadline came end here (a provisional waiter: its consumer never came back).
        const turn = Date.now();
        for (const w of this.#waiters) if (w.deadline <= turn) w.settle([]);
        if (this.#waiters.size === 0) break;
        // Ask, per lease length, for what every waiter wants together.
        const groups = new Map<number, { want: number; waiters: Waiter[] }>();
        let earliest = Infinity;
        for (const w of this.#waiters) {
          earliest = Math.min(earliest, w.deadline);
          const g = groups.get(w.leaseMs);
          if (g) {
            g.want += w.max;
            g.waiters.push(w);
          } else groups.set(w.leaseMs, { want: w.max, waiters: [w] });
        }
        const now = Date.now();
        // At least 1 ms when blocking: BLPOP's timeout 0 would mean forever, and a deadline that
        // just passed is about to be settled by its own timer.
        const blockMs = block ? Math.max(1, Math.min(this.#transport.dueAt(this.#queue) - now, earliest - now, MAX_BLOCK_MS)) : 0;
        this.#roundEnds = now + blockMs;
        block = true;
        const leaseMsList = [...groups.keys()];
        line ??= this.#transport.lines.take(this.#line);
        if (line === undefined) {
          if (!(await this.#sharedRound(blockMs, leaseMsList, groups))) block = false;
          continue;
        }
        this.#line = line;
        let replies: [Error | null, unknown][];
        // Let the commands of this tick (say, the request that follows the reply just handed out)
        // leave first: they are what the other side waits for; this wait is not.
        const carried = await this.#transport.afterFlush(line.canCarry);
        const pre = carried.length > 0 ? [...carried, ...this.#pre] : this.#pre;
        this.#pre = [];
        try {
          let conn: Redis;
          try {
            conn = line.live ?? (await line.connection());
          } catch (err) {
            this.#transport.failCalls(pre, err);
            throw err;
          }
          const sent: Promise<unknown>[] = [];
          let wait: Promise<unknown> | undefined;
          corked(conn, () => {
            for (const c of pre) this.#transport.issue(conn, c);
            if (blockMs >= 1) wait = conn.blpop(this.#keys.signal, (blockMs / 1000).toFixed(3));
            for (const leaseMs of leaseMsList) {
              const [keys, args] = this.#transport.leaseArgs(this.#keys, leaseMs, groups.get(leaseMs)!.want);
              sent.push(conn.evalsha(SCRIPTS.lease.sha, keys.length, ...keys, ...args));
            }
          });
          const settled = await line.within(Promise.allSettled([wait ?? null, ...sent]), blockMs);
          line.answered();
          // The wait failing means the connection failed: start over.
          if (settled[0]!.status === 'rejected') throw settled[0]!.reason;
          replies = settled.slice(1).map((r) => (r.status === 'fulfilled' ? [null, r.value] : [r.reason as Error, null]));
        } catch {
          line.answered();
          if (this.#closed) break;
          await line.backOff();
          continue;
        }
        let failed = 0;
        for (let i = 0; i < leaseMsList.length; i++) {
          const leaseMs = leaseMsList[i]!;
          const [err, reply] = replies[i] ?? [new Error('no reply'), null];
          if (err) {
            failed++;
            // A restarted server forgot the script: load it and look again without blocking.
            if (isNoScript(err)) await this.#transport.loadScript('lease').then(() => (block = false), () => undefined);
            continue;
          }
          const parsed = this.#transport.parseLeaseReply(this.#queue, leaseMs, reply);
          const round = parsed instanceof Promise ? await parsed : parsed;
          if (round.malformed > 0) block = false; // skipped entries: there may be more to take
          this.#handOut(leaseMs, groups.get(leaseMs)!.waiters, round.leases);
        }
        if (failed > 0 && block) await line.backOff();
        else line.succeeded();
      }
    } finally {
      if (line !== undefined) this.#transport.lines.give(line);
      this.#running = false;
      this.#roundEnds = Infinity;
      // A waiter may have registered between the last check and now.
      if (!this.#closed && this.#waiters.size > 0) void this.#loop();
    }
  }

  /**
   * A round without a line of its own: the wait joins the transport's shared one (one BLPOP over
   * the signal lists of every such queue), then the lease goes out with the tick's commands.
   * False when it should look again at once.
   */
  async #sharedRound(blockMs: number, leaseMsList: number[], groups: Map<number, { want: number; waiters: Waiter[] }>): Promise<boolean> {
    if (this.#pre.length > 0) {
      this.#transport.sendCalls(this.#pre);
      this.#pre = [];
    }
    try {
      if (blockMs >= 1) await this.#transport.lines.shared.wait(this.#keys.signal, blockMs);
      if (this.#closed) return true;
      let again = false;
      for (const leaseMs of leaseMsList) {
        const round = await this.#transport.leaseRound(this.#queue, leaseMs, groups.get(leaseMs)!.want);
        this.#handOut(leaseMs, groups.get(leaseMs)!.waiters, round.leases);
        if (round.leases.length > 0) again = true;
      }
      return !again;
    } catch {
      // Redis is failing: the shared wait backs off on its own; wait out a short pause here too.
      if (!this.#closed) await new Promise((resolve) => setTimeout(resolve, 100));
      return true;
    }
  }

  /**
   * Shares leases out in arrival order: first to the waiters they were asked for, then to any
   * other waiter with the same lease length. What nobody can take anymore (their waits ended
   * meanwhile) is put back as if never leased.
   */
  #handOut(leaseMs: number, askedFor: Waiter[], leases: Lease[]): void {
    let next = 0;
    const give = (w: Waiter) => {
      if (w.settled || next >= leases.length || w.leaseMs !== leaseMs) return;
      const mine = leases.slice(next, next + w.max);
      next += mine.length;
      w.settle(mine);
    };
    // Calls that are waiting come before a provisional one (which only keeps leases for later).
    for (const w of askedFor) if (!w.provisional) give(w);
    for (const w of [...this.#waiters]) if (!w.provisional) give(w);
    for (const w of askedFor) give(w);
    for (; next < leases.length; next++) {
      this.#transport.undoLease(leases[next]!).catch(() => {
        // Redis is failing: the lease runs out and the message is delivered again then.
      });
    }
  }

  /** Ends every wait; the lines belong to the transport's pool, which the transport closes. */
  close(): void {
    this.#closed = true;
    this.#transport.failCalls(this.#pre, new ClosedError('redis transport'));
    this.#pre = [];
    for (const w of [...this.#waiters]) w.settle([]);
  }
}

/** A `lease()` call waiting on an inbox. */
interface InboxWaiter {
  max: number;
  leaseMs: number;
  deadline: number;
  signal: AbortSignal | undefined;
  settle(leases: Lease[]): void;
}

/**
 * The waiting side of one reply inbox (see `INBOX_PREFIX`): a plain list its one consumer pops
 * with BLMPOP on a connection of its own, up to what its waiting calls want, in the same write as
 * the tick's commands when it can carry them (a requester's next request leaves with the wait
 * for its reply). Nothing is leased in Redis: what is popped is this process's; what arrives for a
 * call that stopped waiting is kept for the next call, and dropped on close (at most once).
 */
class InboxPump {
  readonly #transport: RedisTransport;
  readonly #queue: string;
  readonly #key: string;
  readonly #waiters = new Set<InboxWaiter>();
  /** Replies popped after their call stopped waiting: the next call gets them first. */
  #kept: Lease[] = [];
  /** The blocking line this pump last held (see `QueuePump`). */
  #line: BlockingLine | undefined;
  #running = false;
  #closed = false;
  /** Epoch ms when the wait of the round in flight ends (Infinity until it is known). */
  #roundEnds = Infinity;

  constructor(transport: RedisTransport, queue: string, key: string) {
    this.#transport = transport;
    this.#queue = queue;
    this.#key = key;
  }

  /** `signal` aborted: the waits it was given for end now. */
  abort(signal: AbortSignal): void {
    for (const w of this.#waiters) if (w.signal === signal) w.settle([]);
  }

  take(max: number, leaseMs: number, waitMs: number, signal: AbortSignal | undefined): Promise<Lease[]> {
    if (this.#kept.length > 0) return Promise.resolve(this.#kept.splice(0, max));
    if (waitMs === 0) return this.#popNow(max, leaseMs);
    return new Promise<Lease[]>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: InboxWaiter = {
        max,
        leaseMs,
        deadline: Date.now() + waitMs,
        signal,
        settle: (leases) => {
          if (!this.#waiters.delete(waiter)) return;
          if (timer) clearTimeout(timer);
          resolve(leases);
        },
      };
      this.#waiters.add(waiter);
      // The loop ends every wait whose deadline its round reaches; only a call that joins a round
      // which waits longer than it may needs a timer of its own.
      if (waitMs <= MAX_TIMER_MS && this.#running && waiter.deadline < this.#roundEnds) timer = setTimeout(() => waiter.settle([]), waitMs);
      if (signal !== undefined) this.#transport.watchAbort(signal);
      if (!this.#running) void this.#loop();
    });
  }

  async #popNow(max: number, leaseMs: number): Promise<Lease[]> {
    return this.#transport.inboxLeases(this.#queue, leaseMs, await this.#transport.popInbox(this.#key, max));
  }

  /** Ends the waits whose deadline has come. */
  #expire(): void {
    const now = Date.now();
    for (const w of this.#waiters) if (w.deadline <= now) w.settle([]);
  }

  async #loop(): Promise<void> {
    this.#running = true;
    let line = this.#transport.lines.take(this.#line);
    try {
      while (!this.#closed && this.#waiters.size > 0) {
        this.#expire();
        if (this.#waiters.size === 0) break;
        let want = 0;
        let earliest = Infinity;
        for (const w of this.#waiters) {
          want += w.max;
          earliest = Math.min(earliest, w.deadline);
        }
        // At least 1 ms: BLMPOP's timeout 0 would mean forever.
        const now = Date.now();
        const blockMs = Math.max(1, Math.min(earliest - now, MAX_BLOCK_MS));
        this.#roundEnds = now + blockMs;
        line ??= this.#transport.lines.take(this.#line);
        let entries: string[];
        if (line === undefined) {
          // No line free: the shared wait pops one reply, the rest come without waiting.
          try {
            const first = await this.#transport.lines.shared.wait(this.#key, blockMs);
            if (first === null || this.#closed) continue;
            entries = want > 1 ? [first, ...(await this.#transport.popInbox(this.#key, want - 1))] : [first];
          } catch {
            if (!this.#closed) await new Promise((resolve) => setTimeout(resolve, 100));
            continue;
          }
        } else {
          this.#line = line;
          const carried = await this.#transport.afterFlush(line.canCarry);
          let raw: unknown;
          try {
            let conn: Redis;
            try {
              conn = line.live ?? (await line.connection());
            } catch (err) {
              this.#transport.failCalls(carried, err);
              throw err;
            }
            let popped!: Promise<unknown>;
            corked(conn, () => {
              for (const c of carried) this.#transport.issue(conn, c);
              popped = conn.blmpop((blockMs / 1000).toFixed(3), 1, this.#key, 'LEFT', 'COUNT', want);
            });
            raw = await line.within(popped, blockMs);
            line.answered();
          } catch {
            line.answered();
            if (this.#closed) break;
            await line.backOff();
            continue;
          }
          line.succeeded();
          if (raw === null) continue; // the wait ended empty: the next turn ends the waits it reached
          entries = (raw as [string, string[]])[1];
        }
        const leases = this.#transport.inboxLeases(this.#queue, this.#waiters.values().next().value?.leaseMs ?? MAX_BLOCK_MS, entries);
        this.#handOut(leases instanceof Promise ? await leases : leases);
      }
    } finally {
      if (line !== undefined) this.#transport.lines.give(line);
      this.#running = false;
      this.#roundEnds = Infinity;
      if (!this.#closed && this.#waiters.size > 0) void this.#loop();
    }
  }

  #handOut(leases: Lease[]): void {
    let next = 0;
    for (const w of [...this.#waiters]) {
      if (next >= leases.length) break;
      const mine = leases.slice(next, next + w.max);
      next += mine.length;
      w.settle(mine);
    }
    if (next < leases.length) this.#kept.push(...leases.slice(next));
  }

  close(): void {
    this.#closed = true;
    this.#kept = [];
    for (const w of [...this.#waiters]) w.settle([]);
  }
}

/** Whether `lease` is of a reply taken from an inbox (settled or not): nothing of it is held in Redis. */
function isInboxLease(lease: Lease): boolean {
  return lease.token === INBOX_TOKEN || lease.token === INBOX_SETTLED;
}

/** Settles a reply taken from an inbox (ack, requeue or dead letter): true the first time only. */
function settleInboxLease(lease: Lease): boolean {
  if (lease.token !== INBOX_TOKEN) return false;
  lease.token = INBOX_SETTLED;
  return true;
}

// ------------------------------------------------------------------ codecs

/**
 * The encoded message of a stored body `'<order>|<message>'` (see scripts/enqueue.lua); a body
 * without that prefix (written by something else) as it is; null when there is none.
 */
function withoutOrder(stored: unknown): string | null {
  if (typeof stored !== 'string') return null;
  const bar = stored.indexOf('|');
  if (bar <= 0 || bar > 20) return stored;
  for (let i = 0; i < bar; i++) {
    const c = stored.charCodeAt(i);
    if (c < 48 || c > 57) return stored;
  }
  return stored.slice(bar + 1);
}

/** Resolves when `p` settles or after `ms`, whichever comes first. */
function waitAtMost(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * Runs `issue` with `client`'s socket corked, so every command it sends leaves in one write
 * (one system call) while each keeps its own reply promise. Without a live socket the commands
 * simply queue in the client as usual.
 */
function corked(client: Redis, issue: () => void): void {
  const stream = client.status === 'ready' ? client.stream : undefined;
  if (stream === undefined || typeof stream.cork !== 'function') {
    issue();
    return;
  }
  stream.cork();
  try {
    issue();
  } finally {
    stream.uncork();
  }
}

/**
 * The ack scripts' arguments for `leases` (see lib/ack.lua): grouped by lease token, which the
 * leases of one lease call share, so an ack costs one argument, not two; and, for each lease,
 * where its flag is in the reply.
 */
function ackArgs(leases: readonly Lease[]): { args: string[]; at: number[] } {
  const first = leases[0]!.token;
  if (leases.every((l) => l.token === first)) {
    const args = [first, String(leases.length)];
    const at: number[] = [];
    for (let i = 0; i < leases.length; i++) {
      args.push(keySegment(leases[i]!.message.id));
      at.push(i);
    }
    return { args, at };
  }
  const groups = new Map<string, number[]>();
  leases.forEach((l, i) => {
    const g = groups.get(l.token);
    if (g) g.push(i);
    else groups.set(l.token, [i]);
  });
  const args: string[] = [];
  const at = new Array<number>(leases.length);
  let pos = 0;
  for (const [token, members] of groups) {
    args.push(token, String(members.length));
    for (const i of members) {
      args.push(keySegment(leases[i]!.message.id));
      at[i] = pos++;
    }
  }
  return { args, at };
}

/**
 * Builds a valid stand-in message (one the decoder accepts, so its dead letter can be listed)
 * for data that failed to decode, keeping whatever fields pass the wire rules; its payload is
 * empty: the letter's `raw` keeps the data.
 */
function salvage(raw: string, id: string, queue: string, attempt: number): Message {
  let o: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(raw);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) o = parsed as Record<string, unknown>;
  } catch {
    // Not JSON at all: every field falls back.
  }
  return standIn(o, id, queue, attempt);
}

/** A valid message from the fields of `o` that pass the wire rules, with an empty payload and no headers. */
function standIn(o: Record<string, unknown>, id: string, queue: string, attempt: number): Message {
  const name = (v: unknown, fallback: string) => (isValidName(v) ? v : fallback);
  const types: readonly string[] = Object.values(MessageType);
  const ts = parseWireTimestamp(o['timestamp'] instanceof Date ? o['timestamp'].toISOString() : o['timestamp']);
  const priority = o['priority'];
  return {
    // A letter is stored under its message id: one made up keeps letters without a usable id apart.
    id: isValidName(id) ? id : name(o['id'], newId()),
    type: (typeof o['type'] === 'string' && types.includes(o['type']) ? o['type'] : MessageType.ERROR) as MessageType,
    sender: name(o['sender'], 'unknown'),
    recipient: isValidName(o['recipient'], true) ? o['recipient'] : isValidName(queue, true) ? queue : '',
    payload: {},
    timestamp: Number.isNaN(ts.getTime()) ? new Date() : ts,
    priority: typeof priority === 'number' && Number.isInteger(priority) && priority >= 0 && priority <= 10 ? priority : DEFAULT_PRIORITY,
    headers: {},
    attempt: typeof o['attempt'] === 'number' && Number.isInteger(o['attempt']) && o['attempt'] >= 0 ? o['attempt'] : attempt,
  };
}

const ENQUEUED: EnqueueResult = Object.freeze({ status: 'enqueued' });
/** Settled answers shared by every call that needs no round trip (a reply's ack, a skipped publication). */
const ACKED = Promise.resolve(true);
const LOST = Promise.resolve(false);
const DONE = Promise.resolve();
const NO_RECIPIENT: EnqueueResult = Object.freeze({ status: 'no_recipient' });

const REASONS: ReadonlySet<string> = new Set<DeadLetterReason>(['recipient_not_found', 'max_attempts', 'expired', 'malformed']);

/**
 * A dead letter as stored. Never throws: dead-lettering must end with the message dead-lettered.
 * A message that cannot be encoded (a handler made its payload cyclic, or a BigInt) is stored as a
 * stand-in, and `attachBody` asks the script to keep the stored wire form as the letter's `raw`.
 */
function encodeDeadLetter(letter: DeadLetter): { json: string; attachBody: boolean } {
  let m: string;
  let error = letter.error;
  let attachBody = false;
  try {
    m = encodeMessage(letter.message);
  } catch (err) {
    m = encodeMessage(standIn(letter.message as unknown as Record<string, unknown>, letter.message.id, letter.queue, letter.message.attempt));
    error = `${error === undefined ? '' : error + '; '}the message could not be encoded (${err instanceof Error ? err.message : String(err)}): this letter holds a stand-in, its raw field the message as stored`;
    attachBody = letter.raw === undefined;
  }
  const json = JSON.stringify({
    m,
    q: letter.queue,
    r: letter.reason,
    ...(error !== undefined ? { e: error } : {}),
    n: letter.attempts,
    d: letter.deadAt.getTime(),
    ...(letter.raw !== undefined ? { raw: letter.raw } : {}),
  });
  return { json, attachBody };
}

function decodeDeadLetter(json: string): DeadLetter | null {
  try {
    const o = JSON.parse(json) as Record<string, unknown>;
    const reason = String(o['r']);
    if (!REASONS.has(reason)) throw new ValidationError(`unknown dead-letter reason \`${reason}\``);
    const letter: DeadLetter = {
      message: decodeMessage(o['m']),
      queue: String(o['q']),
      reason: reason as DeadLetterReason,
      attempts: Number(o['n']),
      deadAt: new Date(Number(o['d'])),
    };
    if (typeof o['e'] === 'string') letter.error = o['e'];
    if (typeof o['raw'] === 'string') letter.raw = o['raw'];
    return letter;
  } catch {
    return null; // Tampered with in Redis: not something the bus can redrive.
  }
}

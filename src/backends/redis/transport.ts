import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ClosedError, ValidationError } from '../../errors.js';
import { DEFAULT_PRIORITY, MessageType, decodeMessage, encodeMessage, type Message } from '../../message.js';
import type {
  DeadLetter,
  DeadLetterReason,
  EnqueueEntry,
  EnqueueResult,
  Lease,
  LeaseOptions,
  QueueDepth,
  Transport,
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

/**
 * Longest a blocked consumer waits before it looks at its queue again on its own. Wake-ups
 * normally come from the signal list; this bound only matters for a lease that expired in
 * another process whose consumer crashed, so redelivery happens within a second or two.
 */
const MAX_BLOCK_MS = 2000;

/** Most messages one lease script call takes. */
const MAX_ROUND = 1000;

/** setTimeout cannot wait longer than this. */
const MAX_TIMER_MS = 2_147_483_647;

/** Keys of one queue (see scripts/enqueue.lua for what each holds). */
interface QueueKeys {
  ready: string;
  delayed: string;
  inflight: string;
  signal: string;
  body: string;
  meta: string;
}

/** A `lease()` call waiting for a message. */
interface Waiter {
  max: number;
  leaseMs: number;
  deadline: number;
  settled: boolean;
  settle(leases: Lease[]): void;
}

/** What one lease script call brought. */
interface RoundResult {
  leases: Lease[];
  /** Ms until a delayed message becomes visible or a lease expires; -1 = nothing scheduled. */
  waitMs: number;
}

/**
 * Transport on Redis: per queue a sorted set of ready message ids scored by
 * `(10 - priority) * 2^40 + sequence` (strict priority, FIFO inside one), a sorted set of
 * delayed ids scored by when they become visible, a sorted set of leased ids scored by lease
 * deadline, and one hash per message. Every mutation is one Lua script (`./scripts`), so it is
 * atomic and one round trip; commands share one autopipelined connection, and calls made in
 * the same tick (50 consumers acking at once) share one script call. Consumers waiting for a
 * message block on a per-queue signal list (BLPOP) on a connection of their own, one per queue
 * that is being waited on, with the lease script pipelined behind it: no busy polling, and no
 * extra round trip between the wake-up and the lease.
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
  /** Queues whose last lease attempt came back with less than it asked for. */
  readonly #drained = new Set<string>();
  /** Wire form of messages this transport enqueued, so publishing the same message does not encode it again. */
  readonly #encoded = new WeakMap<Message, string>();
  /** Concurrent calls of one tick become one script call each (see `Coalescer`). */
  readonly #enqueues = new Coalescer<string, EnqueueEntry[], EnqueueResult[]>((_, calls) => this.#enqueueMany(calls), 200);
  readonly #leases = new Coalescer<string, { queue: string; leaseMs: number; max: number }, RoundResult>((_, calls) => this.#leaseMany(calls));
  readonly #acks = new Coalescer<string, Lease, boolean>((queue, leases) => this.#ackMany(queue, leases));
  readonly #publishes = new Coalescer<string, [string, string], void>((_, items) => this.#publishMany(items), 500);

  /** `url`: `redis://host:port/db?namespace=NAME`. Nothing connects until `connect()` or first use. */
  constructor(url: string) {
    this.#config = parseRedisUrl(url);
    this.url = this.#config.url;
    this.#prefix = this.#config.prefix;
    // No autopipelining: it delays every lone command, and the coalescers already batch what is concurrent.
    this.#cmd = createClient(this.#config, 'cmd');
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

  async #run(name: keyof typeof SCRIPTS, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    const client = await this.#client();
    try {
      return await SCRIPTS[name].run(client, keys, args);
    } catch (err) {
      throw asTransportError(this.#config, name, err);
    }
  }

  #queueKeys(queue: string): QueueKeys {
    const q = `${this.#prefix}q:${keySegment(queue)}:`;
    return {
      ready: q + 'ready',
      delayed: q + 'delayed',
      inflight: q + 'inflight',
      signal: q + 'signal',
      body: q + 'body',
      meta: q + 'meta',
    };
  }

  #encode(message: Message): string {
    let wire = this.#encoded.get(message);
    if (wire === undefined || message.attempt !== 0) {
      wire = encodeMessage(message);
      if (message.attempt === 0) this.#encoded.set(message, wire);
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
  async enqueue(entries: EnqueueEntry[]): Promise<EnqueueResult[]> {
    if (entries.length === 0) return [];
    if (this.#closed) throw new ClosedError('redis transport');
    return this.#enqueues.submit('', entries);
  }

  async #enqueueMany(calls: EnqueueEntry[][]): Promise<EnqueueResult[][]> {
    const now = Date.now();
    let count = 0;
    for (const entries of calls) count += entries.length;
    const args: (string | number)[] = [this.#prefix, count];
    for (const entries of calls) {
      for (const e of entries) {
        // visibleAt is on this machine's clock; the script adds the delay to the server's.
        const delay = e.visibleAt > now ? Math.ceil(e.visibleAt - now) : 0;
        args.push(
          keySegment(e.queue),
          e.queue,
          keySegment(e.message.id),
          e.message.attempt === 0 ? this.#encode(e.message) : encodeMessage({ ...e.message, attempt: 0 }),
          e.message.priority,
          delay,
          e.requireRecipient ? 1 : 0,
          e.dedupeWindowMs > 0 ? Math.ceil(e.dedupeWindowMs) : 0,
        );
      }
    }
    const raw = (await this.#run('enqueue', [this.#prefix + 'seq', this.#prefix + 'recipients'], args)) as unknown[];
    let i = 0;
    return calls.map((entries) =>
      entries.map((entry): EnqueueResult => {
        const r = raw[i++];
        if (r === 1) return ENQUEUED;
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
   * expiring lease is due, the wait ends, or `signal` aborts.
   */
  async lease(queue: string, options: LeaseOptions): Promise<Lease[]> {
    const { leaseMs, waitMs } = options;
    const max = options.max ?? 1;
    if (!(leaseMs > 0) || !(waitMs >= 0) || !(max >= 1)) {
      throw new ValidationError(`lease needs leaseMs > 0, waitMs >= 0 and max >= 1, got ${leaseMs}, ${waitMs}, ${max}`);
    }
    if (this.#closed || options.signal?.aborted) return [];
    let dueInMs = -1;
    // A queue that was empty last time is most likely empty now: skip the immediate try and
    // let the pump block at once (its BLPOP returns at once if a wake-up token is waiting).
    if (waitMs === 0 || !this.#drained.has(queue)) {
      const first = await this.#leases.submit(`${leaseMs}:${queue}`, { queue, leaseMs, max: Math.floor(max) });
      if (first.leases.length > 0 || waitMs === 0 || this.#closed || options.signal?.aborted) return first.leases;
      dueInMs = first.waitMs;
    }
    let pump = this.#pumps.get(queue);
    if (!pump) {
      pump = new QueuePump(this, queue, this.#queueKeys(queue));
      this.#pumps.set(queue, pump);
    }
    return pump.wait(Math.floor(max), leaseMs, waitMs, options.signal, dueInMs);
  }

  /** Remembers whether the last lease attempt on `queue` emptied it (asked for more than it got). @internal */
  noteDrained(queue: string, drained: boolean): void {
    if (drained) this.#drained.add(queue);
    else this.#drained.delete(queue);
  }

  /** The lease script's arguments for `queue`. @internal */
  leaseArgs(keys: QueueKeys, leaseMs: number, max: number): [string[], (string | number)[]] {
    return [
      [keys.ready, keys.delayed, keys.inflight, keys.signal, keys.body, keys.meta],
      [Math.min(max, MAX_ROUND), Math.ceil(leaseMs), randomBytes(9).toString('base64url')],
    ];
  }

  async #leaseMany(calls: { queue: string; leaseMs: number; max: number }[]): Promise<RoundResult[]> {
    const { queue, leaseMs } = calls[0]!;
    let want = 0;
    for (const c of calls) want += c.max;
    const keys = this.#queueKeys(queue);
    const leases: Lease[] = [];
    let waitMs = -1;
    // Malformed entries are skipped; look again (a bounded number of times) to fill the batch.
    for (let round = 0; round < 8 && leases.length < want; round++) {
      const [k, a] = this.leaseArgs(keys, leaseMs, want - leases.length);
      const r = await this.parseLeaseReply(queue, leaseMs, Number(a[0]), await this.#run('lease', k, a));
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
   * dead-lettered with reason `malformed` (and its raw text), never handed out. @internal
   */
  async parseLeaseReply(queue: string, leaseMs: number, asked: number, reply: unknown): Promise<RoundResult & { malformed: number }> {
    const raw = reply as unknown[];
    const leases: Lease[] = [];
    this.noteDrained(queue, raw.length - 1 < 4 * asked);
    const deadline = Date.now() + leaseMs;
    let malformed = 0;
    for (let i = 1; i + 3 < raw.length; i += 4) {
      const body = raw[i + 1];
      const attempt = Number(raw[i + 2]);
      const token = raw[i + 3] as string;
      try {
        const message = decodeMessage(typeof body === 'string' ? body : null);
        message.attempt = attempt;
        leases.push({ queue, message, token, deadline });
      } catch (err) {
        malformed++;
        await this.#deadLetterMalformed(queue, raw[i] as string, body, attempt, token, err).catch(() => {
          // Redis is failing: the lease runs out and the next lease attempt tries again.
        });
      }
    }
    return { leases, waitMs: Number(raw[0]), malformed };
  }

  /** Takes a lease back as if it had never been handed out (a wait ended before it arrived). @internal */
  async undoLease(lease: Lease): Promise<void> {
    const keys = this.#queueKeys(lease.queue);
    const idseg = keySegment(lease.message.id);
    await this.#run('requeue', [keys.ready, keys.delayed, keys.inflight, keys.signal, keys.meta], [idseg, lease.token, 0, '1']);
  }

  async #deadLetterMalformed(queue: string, idseg: string, body: unknown, attempt: number, token: string, err: unknown): Promise<void> {
    const raw = typeof body === 'string' ? body : '';
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
    return this.#acks.submit(lease.queue, lease);
  }

  async #ackMany(queue: string, leases: Lease[]): Promise<boolean[]> {
    const keys = this.#queueKeys(queue);
    const args: string[] = [];
    for (const l of leases) args.push(keySegment(l.message.id), l.token);
    const raw = (await this.#run('ack-many', [keys.ready, keys.inflight, keys.signal, keys.body, keys.meta], args)) as number[];
    return raw.map((r) => r === 1);
  }

  /** Puts a leased message back, visible after `delayMs`, in its original place; false if the lease was lost. */
  async requeue(lease: Lease, options: { delayMs: number }): Promise<boolean> {
    const keys = this.#queueKeys(lease.queue);
    const idseg = keySegment(lease.message.id);
    const delay = Math.max(0, Math.ceil(options.delayMs));
    return (
      (await this.#run('requeue', [keys.ready, keys.delayed, keys.inflight, keys.signal, keys.meta], [idseg, lease.token, delay, '0'])) === 1
    );
  }

  /** Moves the lease deadline to now + `ms`; false if the lease was lost. */
  async extendLease(lease: Lease, ms: number): Promise<boolean> {
    if (!(ms > 0) || !Number.isFinite(ms)) throw new ValidationError(`lease extension must be a positive number of ms, got ${ms}`, { field: 'ms' });
    const keys = this.#queueKeys(lease.queue);
    const idseg = keySegment(lease.message.id);
    const now = Date.now();
    const ok = Number(await this.#run('extend-lease', [keys.ready, keys.inflight, keys.signal, keys.meta], [idseg, lease.token, Math.ceil(ms)])) > 0;
    if (ok) lease.deadline = now + ms;
    return ok;
  }

  // ------------------------------------------------------------------ dead letters

  /** Stores a dead letter; with `lease`, removes the leased message in the same script. */
  async deadLetter(letter: DeadLetter, lease?: Lease): Promise<boolean> {
    return this.#deadLetterRaw(letter, keySegment(lease?.message.id ?? letter.message.id), lease);
  }

  async #deadLetterRaw(letter: DeadLetter, idseg: string, lease: Lease | undefined): Promise<boolean> {
    const p = this.#prefix;
    // Without a lease the queue keys are not touched; any queue's keys fill their places.
    const k = this.#queueKeys(lease?.queue ?? letter.queue);
    const result = await this.#run(
      'dead-letter',
      [p + 'dlq', p + 'dlq:order', p + 'seq', k.ready, k.inflight, k.signal, k.body, k.meta],
      [letter.message.id, encodeDeadLetter(letter), idseg, lease?.token ?? ''],
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
    const raw = await this.#run('take-dead-letter', [this.#prefix + 'dlq', this.#prefix + 'dlq:order'], [messageId]);
    return typeof raw === 'string' ? decodeDeadLetter(raw) : null;
  }

  /** Removes every dead letter; returns how many. */
  async purgeDeadLetters(): Promise<number> {
    return Number(await this.#run('purge-dead-letters', [this.#prefix + 'dlq', this.#prefix + 'dlq:order'], []));
  }

  // ------------------------------------------------------------------ pub/sub

  /**
   * PUBLISHes `message` on the topic's channel; every subscribed process receives it once.
   * At-most-once. Publications of one tick go out in one script call.
   */
  async publish(topic: string, message: Message): Promise<void> {
    if (this.#closed) throw new ClosedError('redis transport');
    await this.#publishes.submit('', [this.#prefix + 'topic:' + topic, this.#encode(message)]);
  }

  async #publishMany(items: [string, string][]): Promise<void[]> {
    await this.#run('publish-many', [], items.flat());
    return [];
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
    const keys = this.#queueKeys(queue);
    const [ready, delayed, inFlight] = (await this.#run('depth', [keys.ready, keys.delayed, keys.inflight], [])) as number[];
    return { ready: Number(ready ?? 0), delayed: Number(delayed ?? 0), inFlight: Number(inFlight ?? 0) };
  }

  /** Closes every connection and wakes waiting `lease` calls with `[]`. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const pumps = [...this.#pumps.values()];
    this.#pumps.clear();
    for (const pump of pumps) pump.close();
    this.#topicHandlers.clear();
    this.#sub?.disconnect();
    if (this.#connecting) {
      try {
        await this.#connecting;
        await this.#cmd.quit();
      } catch {
        this.#cmd.disconnect();
      }
    } else {
      this.#cmd.disconnect();
    }
  }

  /** A new blocking connection for a queue pump. @internal */
  blockingClient(): Redis {
    return createClient(this.#config, 'block', { maxRetriesPerRequest: 1 });
  }

  /** Loads a script the server forgot (a restart) through the command connection. @internal */
  async loadScript(name: keyof typeof SCRIPTS): Promise<void> {
    const client = await this.#client();
    await client.script('LOAD', SCRIPTS[name].lua);
  }
}

/**
 * The waiting side of one queue: every `lease()` call of the transport waiting on that queue
 * registers here, and one loop serves them all on a blocking connection of its own. Each turn
 * pipelines `BLPOP signal` and the lease script (one call per lease length, asking for what
 * all waiters want together): Redis runs the lease the moment the wait ends, whether a
 * producer's wake-up token or the timeout ended it, so a wake-up costs no extra round trip.
 * The timeout is the nearest of: a waiter's deadline, the next delayed message or lease
 * deadline, and `MAX_BLOCK_MS`.
 */
class QueuePump {
  readonly #transport: RedisTransport;
  readonly #queue: string;
  readonly #keys: QueueKeys;
  readonly #waiters = new Set<Waiter>();
  #conn: Redis | undefined;
  #connected: Promise<void> | undefined;
  #running = false;
  #closed = false;
  #failures = 0;
  /** Ms (from `#dueFrom`) until something scheduled falls due; Infinity = nothing known. */
  #dueIn = Infinity;
  #dueFrom = 0;
  #pause: { timer: NodeJS.Timeout; resolve: () => void } | undefined;

  constructor(transport: RedisTransport, queue: string, keys: QueueKeys) {
    this.#transport = transport;
    this.#queue = queue;
    this.#keys = keys;
  }

  wait(max: number, leaseMs: number, waitMs: number, signal: AbortSignal | undefined, dueInMs: number): Promise<Lease[]> {
    this.#noteDue(dueInMs);
    return new Promise<Lease[]>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => waiter.settle([]);
      const waiter: Waiter = {
        max,
        leaseMs,
        deadline: Date.now() + waitMs,
        settled: false,
        settle: (leases) => {
          if (waiter.settled) return;
          waiter.settled = true;
          this.#waiters.delete(waiter);
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(leases);
        },
      };
      this.#waiters.add(waiter);
      // Longer than a timer can wait (or Infinity): only a message or the signal ends it.
      if (waitMs <= MAX_TIMER_MS) timer = setTimeout(() => waiter.settle([]), waitMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (!this.#running) void this.#loop();
    });
  }

  #noteDue(dueInMs: number): void {
    if (dueInMs < 0) return;
    const now = Date.now();
    if (now + dueInMs < this.#dueFrom + this.#dueIn) {
      this.#dueFrom = now;
      this.#dueIn = dueInMs;
    }
  }

  async #loop(): Promise<void> {
    this.#running = true;
    let block = true;
    try {
      while (!this.#closed && this.#waiters.size > 0) {
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
        const blockMs = block ? Math.max(1, Math.min(this.#dueFrom + this.#dueIn - now, earliest - now, MAX_BLOCK_MS)) : 0;
        block = true;
        const leaseMsList = [...groups.keys()];
        let replies: [Error | null, unknown][];
        try {
          const conn = await this.#connection();
          const pipeline = conn.pipeline();
          if (blockMs >= 1) pipeline.blpop(this.#keys.signal, (blockMs / 1000).toFixed(3));
          for (const leaseMs of leaseMsList) {
            const [keys, args] = this.#transport.leaseArgs(this.#keys, leaseMs, groups.get(leaseMs)!.want);
            pipeline.evalsha(SCRIPTS.lease.sha, keys.length, ...keys, ...args);
          }
          replies = ((await pipeline.exec()) ?? []) as [Error | null, unknown][];
        } catch {
          if (this.#closed) break;
          await this.#sleep(Math.min(50 * 2 ** this.#failures++, 1000));
          continue;
        }
        if (blockMs >= 1) replies.shift();
        this.#dueIn = Infinity;
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
          const round = await this.#transport.parseLeaseReply(this.#queue, leaseMs, Math.min(groups.get(leaseMs)!.want, MAX_ROUND), reply);
          this.#noteDue(round.waitMs);
          if (round.malformed > 0) block = false; // skipped entries: there may be more to take
          this.#handOut(leaseMs, groups.get(leaseMs)!.waiters, round.leases);
        }
        if (failed > 0 && block) {
          await this.#sleep(Math.min(50 * 2 ** this.#failures++, 1000));
        } else this.#failures = 0;
      }
    } finally {
      this.#running = false;
      // A waiter may have registered between the last check and now.
      if (!this.#closed && this.#waiters.size > 0) void this.#loop();
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
    for (const w of askedFor) give(w);
    for (const w of [...this.#waiters]) give(w);
    for (; next < leases.length; next++) {
      this.#transport.undoLease(leases[next]!).catch(() => {
        // Redis is failing: the lease runs out and the message is delivered again then.
      });
    }
  }

  async #connection(): Promise<Redis> {
    if (!this.#conn) this.#conn = this.#transport.blockingClient();
    this.#connected ??= this.#conn.connect().catch((err: unknown) => {
      this.#connected = undefined;
      throw err;
    });
    await this.#connected;
    return this.#conn;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pause = undefined;
        resolve();
      }, ms);
      this.#pause = { timer, resolve };
    });
  }

  close(): void {
    this.#closed = true;
    if (this.#pause) {
      clearTimeout(this.#pause.timer);
      this.#pause.resolve();
      this.#pause = undefined;
    }
    for (const w of [...this.#waiters]) w.settle([]);
    this.#conn?.disconnect();
  }
}

// ------------------------------------------------------------------ codecs

/** Builds a valid stand-in message for data that failed to decode, keeping whatever fields parse. */
function salvage(raw: string, id: string, queue: string, attempt: number): Message {
  let o: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(raw);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) o = parsed as Record<string, unknown>;
  } catch {
    // Not JSON at all: every field falls back.
  }
  const str = (v: unknown, fallback: string) => (typeof v === 'string' && v.length > 0 && v.length <= 256 ? v : fallback);
  const types: readonly string[] = Object.values(MessageType);
  const ts = typeof o['timestamp'] === 'string' ? new Date(o['timestamp']) : new Date();
  const priority = o['priority'];
  return {
    id: id.length > 0 && id.length <= 256 ? id : str(o['id'], 'unknown'),
    type: (typeof o['type'] === 'string' && types.includes(o['type']) ? o['type'] : MessageType.ERROR) as MessageType,
    sender: str(o['sender'], 'unknown'),
    recipient: typeof o['recipient'] === 'string' && o['recipient'].length <= 256 ? o['recipient'] : queue,
    payload: {},
    timestamp: Number.isNaN(ts.getTime()) ? new Date() : ts,
    priority: typeof priority === 'number' && Number.isInteger(priority) && priority >= 0 && priority <= 10 ? priority : DEFAULT_PRIORITY,
    headers: {},
    attempt,
  };
}

const ENQUEUED: EnqueueResult = Object.freeze({ status: 'enqueued' });
const NO_RECIPIENT: EnqueueResult = Object.freeze({ status: 'no_recipient' });

const REASONS: ReadonlySet<string> = new Set<DeadLetterReason>(['recipient_not_found', 'max_attempts', 'expired', 'malformed']);

function encodeDeadLetter(letter: DeadLetter): string {
  return JSON.stringify({
    m: encodeMessage(letter.message),
    q: letter.queue,
    r: letter.reason,
    ...(letter.error !== undefined ? { e: letter.error } : {}),
    n: letter.attempts,
    d: letter.deadAt.getTime(),
    ...(letter.raw !== undefined ? { raw: letter.raw } : {}),
  });
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

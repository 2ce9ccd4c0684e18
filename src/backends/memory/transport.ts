import { ClosedError, ValidationError } from '../../errors.js';
import { MAX_TIMER_MS } from '../../timers.js'; // setTimeout waits no longer; longer waits re-arm
import type { Message } from '../../message.js';
import { Answers, DELAYED, DETACHED, deliveryCopy, Entry, LEASED, QueueState, readyKey, Spares, Waiter } from './queue.js';
import type {
  DeadLetter,
  DeadLetterClaim,
  EnqueueEntry,
  EnqueueResult,
  Lease,
  LeaseOptions,
  LeaseWaiter,
  QueueDepth,
  Transport,
  QueueInspection,
  WaiterLeaseOptions,
} from '../../bus/transport.js';

const ENQUEUED: EnqueueResult = Object.freeze({ status: 'enqueued' });
const NO_RECIPIENT: EnqueueResult = Object.freeze({ status: 'no_recipient' });
const RESOLVED: Promise<void> = Promise.resolve();

/** The queues an abort signal was given to waits on: usually one (a consumer loop's). */
interface SignalWaits {
  first: QueueState;
  more: Set<QueueState> | undefined;
}

/** Options of {@link MemoryTransport}. */
export interface MemoryTransportOptions {
  /** Shown in errors and logs (default `memory://`). */
  url?: string;
}

/**
 * The in-process transport, and the default. Each queue keeps its visible messages in one FIFO
 * ring per priority (plus a small heap for retries returning to their original place: see
 * `BandedQueue`), a heap of delayed messages and a heap of lease deadlines. A queue has at most one
 * timer (for its earliest event), which keeps the process alive only while a consumer waits.
 * Waiting consumers are woken synchronously by `enqueue`, without polling. A queued message costs
 * no wrapper object (the ring holds the message and its order key); each delivery gets a shallow
 * copy carrying its `attempt`, sharing the payload, so treat payloads as immutable. Per-message
 * operations answer synchronously (the port allows a value or a promise), so the bus runs without
 * a suspended frame per message. Nothing survives the process.
 *
 * Several buses given the same instance share every queue, recipient, dead letter and topic, like
 * several processes on one Redis.
 *
 * @example
 * const transport = new MemoryTransport();
 * const a = new MessageBus({ transport });
 * const b = new MessageBus({ transport }); // another "process" on the same backend
 */
export class MemoryTransport implements Transport {
  /** Always `memory`. */
  readonly kind = 'memory';
  /** `memory://` unless given. */
  readonly url: string;

  readonly #queues = new Map<string, QueueState>();
  readonly #spares = new Spares();
  /** Waits answered for a `LeaseWaiter`, on their way to it. */
  readonly #answers = new Answers();
  readonly #deadLetters = new Map<string, DeadLetter>();
  /** Redrive claims on dead letters, by message id (see `claimDeadLetter`). */
  readonly #claims = new Map<string, { token: string; until: number }>();
  #claimSeq = 0;
  readonly #dedupe = new Map<string, { message: Message; expiresAt: number }>();
  readonly #subscribers = new Map<string, Set<(message: Message) => void>>();
  /** Every signal given to a wait, with our one abort listener, and the queues it waited on. */
  readonly #signals = new WeakMap<AbortSignal, SignalWaits>();
  /** Subscriptions live on every topic (0 spares a publication its lookups). */
  #subscriberCount = 0;
  #seq = 0;
  #tokens = 0;
  #closed = false;

  constructor(options: MemoryTransportOptions = {}) {
    this.url = options.url ?? 'memory://';
  }

  /** Nothing to open; fails only after `close()`. */
  async connect(): Promise<void> {
    if (this.#closed) throw new ClosedError('memory transport');
  }

  /** Marks `queue` as an agent that may be sent to. */
  async addRecipient(queue: string): Promise<void> {
    this.#open();
    if (typeof queue !== 'string' || queue.length === 0) {
      throw new ValidationError(`recipient queue must be a non-empty string, got \`${String(queue)}\``, { field: 'queue' });
    }
    this.#queue(queue).recipient = true;
  }

  /** Forgets a recipient; messages already in its queue stay there. */
  async removeRecipient(queue: string): Promise<void> {
    this.#open();
    const q = this.#queues.get(queue);
    if (q !== undefined) q.recipient = false;
  }

  /** Whether `queue` is a registered recipient. */
  async hasRecipient(queue: string): Promise<boolean> {
    this.#open();
    return this.#queues.get(queue)?.recipient === true;
  }

  /**
   * See {@link Transport.enqueue}: answers synchronously. Wakes waiting consumers, then fans the
   * entries marked `publish` out to subscribers (in a microtask), before it returns.
   */
  enqueue(entries: EnqueueEntry[]): EnqueueResult[] | Promise<EnqueueResult[]> {
    if (this.#closed) return Promise.reject(new ClosedError('memory transport'));
    this.#clock = 0;
    if (entries.length === 1) return [this.#putOne(entries[0] as EnqueueEntry)];
    const results: EnqueueResult[] = new Array(entries.length);
    let touched: QueueState | Set<QueueState> | undefined;
    for (let i = 0; i < entries.length; i++) {
      results[i] = this.#put(entries[i] as EnqueueEntry);
      const q = this.#putInto;
      if (q !== undefined && q.first !== undefined) {
        if (touched === undefined) touched = q;
        else if (touched !== q) {
          if (!(touched instanceof Set)) touched = new Set([touched]);
          touched.add(q);
        }
      }
    }
    if (touched !== undefined) {
      const now = this.#now();
      if (touched instanceof Set) for (const q of touched) this.#wake(q, now);
      else this.#wake(touched, now);
    }
    if (this.#subscriberCount > 0) {
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i] as EnqueueEntry;
        if (e.publish === true && results[i] === ENQUEUED) this.#fanOut(e.message.type, e.message);
      }
    }
    return results;
  }

  /** One entry (the common case: a send), without the bookkeeping of several queues. */
  #putOne(entry: EnqueueEntry): EnqueueResult {
    const result = this.#put(entry);
    const q = this.#putInto;
    if (q !== undefined && q.first !== undefined) this.#wake(q, this.#now());
    if (entry.publish === true && result === ENQUEUED && this.#subscriberCount > 0) this.#fanOut(entry.message.type, entry.message);
    return result;
  }

  /**
   * The clock, read at most once per call and only when needed: an immediate send (visibleAt 0) to
   * a queue nobody waits on, without dedupe, needs none. `#clock` is reset by each public call.
   */
  #clock = 0;
  #now(): number {
    return this.#clock === 0 ? (this.#clock = Date.now()) : this.#clock;
  }

  /** The queue the last `#put` enqueued into (undefined when it enqueued nothing). */
  #putInto: QueueState | undefined;

  #put(e: EnqueueEntry): EnqueueResult {
    this.#putInto = undefined;
    const message = e.message;
    if (e.dedupeWindowMs > 0) {
      const now = this.#now();
      this.#sweepDedupe(now);
      const prior = this.#dedupe.get(message.id);
      if (prior !== undefined && prior.expiresAt > now) return { status: 'duplicate', original: prior.message };
    }
    let q: QueueState | undefined;
    if (e.requireRecipient) {
      q = this.#lookup(e.queue);
      if (q === undefined || !q.recipient) return NO_RECIPIENT;
    } else q = this.#queue(e.queue);
    const key = readyKey(message.priority, this.#seq++);
    if (e.visibleAt <= 0 || e.visibleAt <= this.#now()) {
      q.readyQueue().push(message, key, 0);
    } else {
      const entry = new Entry(q, message, key, 0, 0);
      entry.state = DELAYED;
      q.delayedHeap().push(entry, e.visibleAt);
    }
    if (e.dedupeWindowMs > 0) this.#dedupe.set(message.id, { message, expiresAt: this.#now() + e.dedupeWindowMs });
    this.#putInto = q;
    return ENQUEUED;
  }

  /**
   * See {@link Transport.lease}: synchronously when messages are visible or `waitMs` is 0; else
   * the wait is a record in the queue's list, answered through `options.waiter` or a promise.
   */
  lease(queue: string, options: WaiterLeaseOptions): Lease[] | undefined;
  lease(queue: string, options: LeaseOptions): Lease[] | Promise<Lease[]>;
  lease(queue: string, options: LeaseOptions & { waiter?: LeaseWaiter }): Lease[] | Promise<Lease[]> | undefined {
    if (this.#closed) return [];
    const { leaseMs, waitMs } = options;
    const max = options.max ?? 1;
    if (!(leaseMs > 0) || !(waitMs >= 0) || !(max >= 1)) {
      const err = new ValidationError(`lease needs leaseMs > 0, waitMs >= 0 and max >= 1, got ${leaseMs}, ${waitMs}, ${max}`);
      if (options.waiter === undefined) return Promise.reject(err);
      throw err;
    }
    // The clock only when something needs it: a consumer waiting on an idle queue for its next
    // message (the usual wait) reads none, and a read costs ~50 ns.
    let now = 0;
    let q = this.#lookup(queue);
    if (q !== undefined) {
      if (q.leased.size > 0 || q.delayed.size > 0) this.#reclaim(q, (now = Date.now()));
      if (q.ready.size > 0) {
        if (now === 0) now = Date.now();
        // Consumers that waited longer go first.
        if (q.first !== undefined) this.#serve(q, now);
        if (q.ready.size > 0)
          return max === 1 ? [this.#takeOne(q, leaseMs, now, options.consumer)] : this.#take(q, max, leaseMs, now, options.consumer);
      }
    }
    const signal = options.signal;
    if (waitMs === 0 || signal?.aborted) return [];
    q ??= this.#queue(queue);
    const w = q.spare ?? new Waiter(q);
    q.spare = undefined;
    w.max = max;
    w.leaseMs = leaseMs;
    w.consumer = options.consumer;
    w.until = waitMs === Number.POSITIVE_INFINITY ? undefined : (now || (now = Date.now())) + waitMs;
    w.signal = signal;
    let answer: Promise<Lease[]> | undefined;
    if (options.waiter !== undefined) w.target = options.waiter;
    else answer = new Promise<Lease[]>((resolve) => (w.target = resolve));
    q.enlist(w);
    if (signal !== undefined) this.#watchSignal(signal, q);
    this.#arm(q, now);
    return answer;
  }

  /** See {@link Transport.ack}: synchronous. */
  ack(lease: Lease): boolean {
    const entry = this.#owned(lease);
    if (entry === undefined) return false;
    entry.q.leased.remove(entry);
    entry.q.leaseEnded();
    entry.state = DETACHED;
    return true;
  }

  /** See {@link Transport.enqueueAndAck}: one synchronous step here, so nothing can come between. */
  enqueueAndAck(entries: EnqueueEntry[], lease: Lease): { results: EnqueueResult[]; acked: boolean } | Promise<never> {
    if (this.#closed) return Promise.reject(new ClosedError('memory transport'));
    const results = this.enqueue(entries) as EnqueueResult[];
    return { results, acked: this.ack(lease) };
  }

  /** See {@link Transport.requeue}. The message keeps its place in the priority/FIFO order. */
  requeue(lease: Lease, options: { delayMs: number }): boolean {
    const entry = this.#owned(lease);
    if (entry === undefined) return false;
    const q = entry.q;
    const now = Date.now();
    q.leased.remove(entry);
    q.leaseEnded();
    const delayMs = options.delayMs;
    if (delayMs > 0) {
      entry.state = DELAYED;
      q.delayedHeap().push(entry, now + delayMs);
      if (q.first !== undefined) this.#arm(q, now);
    } else {
      entry.state = DETACHED;
      q.readyQueue().push(entry.message, entry.key, entry.leases);
      if (q.first !== undefined) this.#wake(q, now);
    }
    return true;
  }

  /** See {@link Transport.extendLease}. */
  extendLease(lease: Lease, ms: number): boolean | Promise<boolean> {
    if (!(ms > 0)) return Promise.reject(new ValidationError(`lease extension must be a positive number of ms, got ${ms}`));
    const entry = this.#owned(lease);
    if (entry === undefined) return false;
    entry.deadline = Date.now() + ms;
    entry.q.leased.update(entry);
    lease.deadline = entry.deadline;
    return true;
  }

  /** See {@link Transport.deadLetter}. A later letter for the same message id replaces the earlier one. */
  deadLetter(letter: DeadLetter, lease?: Lease): Promise<boolean> {
    if (this.#closed) return Promise.reject(new ClosedError('memory transport'));
    if (lease !== undefined) {
      const entry = this.#owned(lease);
      if (entry === undefined) return Promise.resolve(false);
      entry.q.leased.remove(entry);
      entry.q.leaseEnded();
      entry.state = DETACHED;
    }
    this.#deadLetters.delete(letter.message.id);
    this.#deadLetters.set(letter.message.id, letter);
    this.#claims.delete(letter.message.id);
    return Promise.resolve(true);
  }

  /** Dead letters, oldest first. */
  async listDeadLetters(options: { limit?: number } = {}): Promise<DeadLetter[]> {
    this.#open();
    const limit = options.limit ?? Infinity;
    const out: DeadLetter[] = [];
    for (const letter of this.#deadLetters.values()) {
      if (out.length >= limit) break;
      out.push(letter);
    }
    return out;
  }

  /** Removes and returns the dead letter of `messageId`, or null. */
  async takeDeadLetter(messageId: string): Promise<DeadLetter | null> {
    this.#open();
    const letter = this.#deadLetters.get(messageId);
    if (letter === undefined) return null;
    this.#deadLetters.delete(messageId);
    this.#claims.delete(messageId);
    return letter;
  }

  /** See {@link Transport.claimDeadLetter}. */
  async claimDeadLetter(messageId: string, claimMs: number): Promise<DeadLetterClaim | 'claimed' | null> {
    this.#open();
    const letter = this.#deadLetters.get(messageId);
    if (letter === undefined) return null;
    const now = Date.now();
    const held = this.#claims.get(messageId);
    if (held !== undefined && held.until > now) return 'claimed';
    const token = `${now + claimMs}:${++this.#claimSeq}`;
    this.#claims.set(messageId, { token, until: now + claimMs });
    return { letter, token };
  }

  /** See {@link Transport.settleDeadLetter}. */
  async settleDeadLetter(messageId: string, token: string, remove: boolean): Promise<boolean> {
    this.#open();
    if (this.#claims.get(messageId)?.token !== token) return false;
    this.#claims.delete(messageId);
    if (remove) this.#deadLetters.delete(messageId);
    return true;
  }

  /** Removes every dead letter; returns how many. */
  async purgeDeadLetters(): Promise<number> {
    this.#open();
    const n = this.#deadLetters.size;
    this.#deadLetters.clear();
    this.#claims.clear();
    return n;
  }

  /**
   * Hands `message` to the subscribers of `topic` and of `'*'` in a microtask, so a slow or
   * failing subscriber never holds up the publisher. Each subscriber is isolated (a throw is swallowed
   * here; the bus wraps subscribers to log and count their failures).
   */
  publish(topic: string, message: Message): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('memory transport'));
    if (this.#subscriberCount > 0) this.#fanOut(topic, message);
    return RESOLVED;
  }

  /** Calls the subscribers of `topic` and of `'*'` with `message`, in a microtask. */
  #fanOut(topic: string, message: Message): void {
    const exact = this.#subscribers.get(topic);
    const all = topic === '*' ? undefined : this.#subscribers.get('*');
    if ((exact === undefined || exact.size === 0) && (all === undefined || all.size === 0)) return;
    queueMicrotask(() => {
      if (exact !== undefined) for (const handler of exact) callIsolated(handler, message);
      if (all !== undefined) for (const handler of all) callIsolated(handler, message);
    });
  }

  /** Subscribes to `topic` (`'*'` = every publication); live when it resolves. */
  async subscribe(topic: string, handler: (message: Message) => void): Promise<() => Promise<void>> {
    this.#open();
    let set = this.#subscribers.get(topic);
    if (set === undefined) this.#subscribers.set(topic, (set = new Set()));
    // A wrapper, so the same function subscribed twice counts twice and unsubscribes once.
    const entry = (message: Message): void => handler(message);
    set.add(entry);
    this.#subscriberCount++;
    return async () => {
      if (set.delete(entry) && !this.#closed) this.#subscriberCount--;
      if (set.size === 0 && this.#subscribers.get(topic) === set) this.#subscribers.delete(topic);
    };
  }

  /** Ready, delayed and leased counts of `queue`: synchronous. */
  depth(queue: string): QueueDepth {
    const q = this.#queues.get(queue);
    if (q === undefined) return { ready: 0, delayed: 0, inFlight: 0 };
    this.#reclaim(q, Date.now());
    return { ready: q.ready.size, delayed: q.delayed.size, inFlight: q.leased.size };
  }

  /** See {@link Transport.listQueues}. */
  async listQueues(): Promise<string[]> {
    return [...this.#queues.values()]
      .filter((q) => q.recipient)
      .map((q) => q.name)
      .sort();
  }

  /** See {@link Transport.inspectQueue}: the leases only (the ready and delayed heaps are not walked). */
  async inspectQueue(queue: string, options: { limit?: number } = {}): Promise<QueueInspection> {
    const q = this.#queues.get(queue);
    const limit = options.limit ?? 100;
    const leases = q === undefined ? [] : [...q.leased.values()].sort((a, b) => a.deadline - b.deadline).slice(0, limit);
    return {
      byPriority: null,
      oldestWaitingAt: null,
      leases: leases.map((e) => ({
        message: e.message,
        attempt: e.leases,
        token: e.token,
        deadline: e.deadline,
        ...(e.holder === undefined ? {} : { holder: e.holder }),
      })),
    };
  }

  /** Wakes every waiting `lease` with `[]`, stops timers and drops all data. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const q of this.#queues.values()) {
      this.#endWaits(q, ALL);
      if (q.timer !== null) clearTimeout(q.timer);
      q.timer = null;
    }
    this.#queues.clear();
    this.#subscribers.clear();
    this.#subscriberCount = 0;
    this.#dedupe.clear();
    this.#deadLetters.clear();
    this.#claims.clear();
    this.#last = undefined;
  }

  // ------------------------------------------------------------------ internals

  #open(): void {
    if (this.#closed) throw new ClosedError('memory transport');
  }

  /** The queue last looked up: a producer or consumer mostly works on one queue at a time. */
  #last: QueueState | undefined;

  /** The queue of that name, if it exists. */
  #lookup(name: string): QueueState | undefined {
    const last = this.#last;
    if (last !== undefined && last.name === name) return last;
    const q = this.#queues.get(name);
    if (q !== undefined) this.#last = q;
    return q;
  }

  #queue(name: string): QueueState {
    let q = this.#lookup(name);
    if (q === undefined) {
      this.#queues.set(name, (q = new QueueState(name, this, this.#spares)));
      this.#last = q;
    }
    return q;
  }

  /** Forgets dedupe records whose window passed (oldest first: insertion order is time order). */
  #sweepDedupe(now: number): void {
    for (const [id, record] of this.#dedupe) {
      if (record.expiresAt > now) break;
      this.#dedupe.delete(id);
    }
  }

  /** The entry a lease still owns, or undefined when the lease was lost (expired, acked, moved, or the transport closed). */
  #owned(lease: Lease, clock?: number): Entry | undefined {
    if (this.#closed) return undefined;
    let entry: Entry | undefined;
    if (lease instanceof Entry && lease.q.owner === this) entry = lease;
    else {
      // A lease object that did not come from this transport (copied or deserialised): find by token.
      const id = Number(lease.token);
      entry = this.#queues
        .get(lease.queue)
        ?.leased.values()
        .find((e) => e.id === id);
      if (entry === undefined) return undefined;
    }
    if (entry.state !== LEASED) return undefined;
    const now = clock ?? Date.now();
    if (entry.deadline <= now) {
      // Ran out: it is visible again, whoever holds this lease lost it.
      this.#reclaim(entry.q, now);
      if (entry.q.first !== undefined) this.#serve(entry.q, now);
      return undefined;
    }
    return entry;
  }

  /** Makes expired leases and due delayed messages visible. */
  #reclaim(q: QueueState, now: number): void {
    let e: Entry | undefined;
    while ((e = q.leased.peek()) !== undefined && e.deadline <= now) {
      q.leased.pop();
      q.leaseEnded();
      e.state = DETACHED;
      q.readyQueue().push(e.message, e.key, e.leases);
    }
    while (q.delayed.peekKey() <= now) {
      e = q.delayed.pop() as Entry;
      e.state = DETACHED;
      q.readyQueue().push(e.message, e.key, e.leases);
    }
  }

  /** Leases up to `max` ready messages. */
  #take(q: QueueState, max: number, leaseMs: number, now: number, consumer: string | undefined): Lease[] {
    const deadline = now + leaseMs;
    const ready = q.ready;
    // Sized up front: grown by pushes, an array for one lease took room for 17.
    const out: Lease[] = new Array(Math.min(max, ready.size));
    for (let i = 0; i < out.length; i++) {
      const message = ready.pop() as Message;
      const attempt = ready.poppedAux + 1;
      const entry = new Entry(q, deliveryCopy(message, attempt), ready.poppedKey, attempt, ++this.#tokens);
      entry.state = LEASED;
      entry.deadline = deadline;
      entry.holder = consumer;
      q.leasedHeap().push(entry);
      out[i] = entry;
    }
    q.tookReady();
    return out;
  }

  /** Leases the next ready message (there must be one). */
  #takeOne(q: QueueState, leaseMs: number, now: number, consumer: string | undefined): Entry {
    const ready = q.ready;
    const message = ready.pop() as Message;
    const attempt = ready.poppedAux + 1;
    const entry = new Entry(q, deliveryCopy(message, attempt), ready.poppedKey, attempt, ++this.#tokens);
    entry.state = LEASED;
    entry.deadline = now + leaseMs;
    entry.holder = consumer;
    q.leasedHeap().push(entry);
    q.tookReady();
    return entry;
  }

  /** Reclaims, then hands ready messages to waiting consumers in arrival order. */
  #wake(q: QueueState, now: number): void {
    this.#reclaim(q, now);
    this.#serve(q, now);
    this.#arm(q, now);
  }

  #serve(q: QueueState, now: number): void {
    let w: Waiter | undefined;
    while (q.ready.size > 0 && (w = q.first) !== undefined) {
      q.unlink(w, undefined);
      this.#finish(w, w.max === 1 ? [this.#takeOne(q, w.leaseMs, now, w.consumer)] : this.#take(q, w.max, w.leaseMs, now, w.consumer));
    }
  }

  /** Ends the waits of `q` that `ends` picks, with `[]`. */
  #endWaits(q: QueueState, ends: (w: Waiter) => boolean): void {
    let prev: Waiter | undefined;
    let w = q.first;
    while (w !== undefined) {
      const next = w.next;
      if (ends(w)) {
        q.unlink(w, prev);
        this.#finish(w, []);
      } else prev = w;
      w = next;
    }
  }

  /** Answers a wait already unlinked from its queue. */
  #finish(w: Waiter, leases: Lease[]): void {
    const q = w.queue;
    if (q.first === undefined && q.timer !== null && q.timerRefed) {
      // Nobody waits: the timer may stay (the next wait likely wants it again; clearing and setting
      // one per wait is most of the cost of a wait) but must not keep the process alive.
      q.timer.unref();
      q.timerRefed = false;
    }
    const target = w.target;
    w.signal = undefined;
    if (typeof target === 'function') {
      w.target = undefined;
      q.spare = w;
      target(leases);
      return;
    }
    // A LeaseWaiter is called in a microtask, never from inside this call (see `LeaseWaiter`).
    this.#answers.add(w, leases);
  }

  /**
   * One abort listener per signal, however many waits use it (consumer loops reuse theirs), and
   * the queues it waited on: an abort ends the waits of those queues only, so ending N waits by
   * their signals costs O(N), not O(N × queues). A wait repeating its queue's last signal (a
   * consumer loop: all of a bus's share one) does no bookkeeping.
   */
  #watchSignal(signal: AbortSignal, q: QueueState): void {
    if (q.watched === signal) return;
    const waits = this.#signals.get(signal);
    if (waits === undefined) {
      const record: SignalWaits = { first: q, more: undefined };
      this.#signals.set(signal, record);
      signal.addEventListener('abort', () => this.#abortWaits(signal, record), { once: true });
    } else if (waits.first !== q) (waits.more ??= new Set()).add(q);
    q.watched = signal;
  }

  #abortWaits(signal: AbortSignal, waits: SignalWaits): void {
    this.#signals.delete(signal);
    this.#abortWaitsOn(waits.first, signal);
    if (waits.more !== undefined) for (const q of waits.more) this.#abortWaitsOn(q, signal);
  }

  #abortWaitsOn(q: QueueState, signal: AbortSignal): void {
    if (q.first !== undefined) this.#endWaits(q, (w) => w.signal === signal);
  }

  /** Sets the queue's single timer for its next event, if anybody waits (`now`: 0 when the caller has not read the clock). */
  #arm(q: QueueState, now: number): void {
    if (q.first === undefined) return;
    let next = Infinity;
    for (let w: Waiter | undefined = q.first; w !== undefined; w = w.next) if (w.until !== undefined && w.until < next) next = w.until;
    const visibleAt = q.delayed.peekKey();
    if (visibleAt < next) next = visibleAt;
    const l = q.leased.peek();
    if (l !== undefined && l.deadline < next) next = l.deadline;
    if (next === Infinity) return;
    if (q.timer !== null) {
      if (q.timerAt <= next) {
        // Fires in time (early at worst: the tick then re-arms).
        if (!q.timerRefed) {
          q.timer.ref();
          q.timerRefed = true;
        }
        return;
      }
      clearTimeout(q.timer);
    }
    q.timerAt = next;
    q.timerRefed = true;
    const delay = next - (now || Date.now());
    q.timer = setTimeout((q.onTimer ??= () => this.#tick(q)), Math.min(MAX_TIMER_MS, Math.max(0, delay)));
  }

  #tick(q: QueueState): void {
    q.timer = null;
    q.timerAt = Infinity;
    q.timerRefed = false;
    if (this.#closed) return;
    const now = Date.now();
    this.#reclaim(q, now);
    this.#serve(q, now);
    if (q.first !== undefined) this.#endWaits(q, (w) => w.until !== undefined && w.until <= now);
    this.#arm(q, now);
  }
}

const ALL = (): boolean => true;

function callIsolated(handler: (message: Message) => void, message: Message): void {
  try {
    handler(message);
  } catch {
    // The bus wraps its subscribers to log and count failures; a raw subscriber's throw must not hurt others.
  }
}

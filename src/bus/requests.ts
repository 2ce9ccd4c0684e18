import { RemoteError, RequestTimeoutError, ValidationError } from '../errors.js';
import { type Message, MessageType } from '../message.js';
import { timerDelay } from '../timers.js';
import type { BusCore } from './core.js';
import { LOOP_ERROR_PAUSE_MS, LOOP_WAIT_MS, noop, pause, yieldToEventLoop } from './delivery.js';
import { type DeadlineItem, DeadlineQueue } from './heap.js';
import { isThenable, type MaybePromise } from './maybe.js';
import { INBOX_PREFIX, type Lease, type LeaseWaiter, type Transport, type WaiterLeaseOptions } from './transport.js';

// Request/reply: the requests of one bus waiting for their replies, their timeouts, and the one
// loop that takes replies from the bus's inbox (`_inbox.<bus id>`) and settles them.

/** Replies taken from the inbox per lease call. */
const INBOX_BATCH = 256;

/**
 * A request waiting for its reply; ordered by deadline in the timeout queue. It keeps the settling
 * functions of the caller's promise until it settles it; the promise itself only until `dispatch`
 * hands it to the caller. It lives as long as the request is outstanding, so each field is paid
 * for by every request in flight.
 */
class PendingRequest implements DeadlineItem {
  heapIndex = -1;
  slot = -1;
  readonly id: string;
  readonly recipient: string;
  readonly timeoutMs: number;
  readonly deadline: number;
  #resolve: ((message: Message) => void) | undefined;
  #reject: ((error: unknown) => void) | undefined;
  promise: Promise<Message> | undefined;

  constructor(id: string, recipient: string, timeoutMs: number, now: number) {
    this.id = id;
    this.recipient = recipient;
    this.timeoutMs = timeoutMs;
    this.deadline = now + timeoutMs;
    // One executor for every request, not a closure (and its context) per request.
    this.promise = new Promise<Message>(takeSettlers);
    this.#resolve = madeResolve;
    this.#reject = madeReject;
    madeResolve = madeReject = undefined;
  }

  // Settling lets go of both functions: a hash table the waiting Map left behind can keep a settled
  // request alive until a full GC, and must not keep its caller's promise and reply with it (NOTES round 9).

  /** Fulfils the caller's promise with the reply (once; later calls do nothing). */
  resolve(message: Message): void {
    const resolve = this.#resolve;
    this.#resolve = this.#reject = undefined;
    resolve?.(message);
  }

  /** Rejects the caller's promise (once; later calls do nothing). */
  reject(error: unknown): void {
    const reject = this.#reject;
    this.#resolve = this.#reject = undefined;
    reject?.(error);
  }
}

/** The settling functions of the promise `new Promise(takeSettlers)` just made. */
let madeResolve: ((message: Message) => void) | undefined;
let madeReject: ((error: unknown) => void) | undefined;
function takeSettlers(resolve: (message: Message) => void, reject: (error: unknown) => void): void {
  madeResolve = resolve;
  madeReject = reject;
}

/** The waiting requests of one bus and its reply inbox. */
export class Requests implements LeaseWaiter {
  /** This bus's reply inbox: the queue `request` names in `headers.replyTo`. */
  readonly inbox: string;
  readonly #core: BusCore;
  readonly #stop: AbortSignal;
  readonly #waiting = new Map<string, PendingRequest>();
  readonly #deadlines = new DeadlineQueue<PendingRequest>();
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Number.POSITIVE_INFINITY;
  /** Ends when the inbox consumer has stopped, once started (by the first request). */
  loop: Promise<void> | undefined;
  #loopEnded: () => void = noop;
  /** The transport the inbox consumer leases from, once started. */
  #transport: Transport | undefined;
  /** The options of every inbox lease call, answered through this object when they wait. */
  readonly #leaseOptions: WaiterLeaseOptions;

  constructor(core: BusCore, busId: string, stop: AbortSignal) {
    this.#core = core;
    this.inbox = `${INBOX_PREFIX}${busId}`;
    this.#stop = stop;
    const leaseMs = core.settings.leaseMs;
    this.#leaseOptions = { leaseMs, waitMs: LOOP_WAIT_MS, max: INBOX_BATCH, signal: stop, waiter: this };
  }

  /** Requests waiting for their reply. */
  get size(): number {
    return this.#waiting.size;
  }

  /**
   * Arms the wait for `message`'s reply, enqueues it, and returns the reply's promise itself: the
   * caller holds it before the enqueue can finish or its timeout fire, so whatever settles it
   * first (reply, timeout, failed enqueue, close) rejects the caller's promise and nothing else.
   */
  dispatch(t: Transport, message: Message, timeout: number): Promise<Message> {
    if (this.loop === undefined) this.#start(t);
    let pending: PendingRequest;
    try {
      pending = this.#expect(message, timeout);
    } catch (err) {
      return Promise.reject(err);
    }
    const promise = pending.promise as Promise<Message>;
    pending.promise = undefined;
    try {
      // Only a failure matters here (a refused or failed enqueue): the reply settles the request.
      const sent = this.#core.enqueueOne(t, message.recipient, message, true, 0, this.#core.settleSend);
      if (isThenable(sent)) sent.then(undefined, (err: unknown) => this.#enqueueFailed(pending, err));
    } catch (err) {
      this.#enqueueFailed(pending, err);
    }
    return promise;
  }

  /** Rejects every waiting request with `error` (the bus closes). */
  rejectAll(error: unknown): void {
    for (const pending of [...this.#waiting.values()]) {
      this.#forget(pending);
      pending.reject(error);
    }
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** The enqueue of a waiting request failed: its caller gets the failure, unless the wait already ended (timed out, closed). */
  #enqueueFailed(pending: PendingRequest, err: unknown): void {
    if (this.#waiting.get(pending.id) !== pending) {
      this.#core.log.logger.debug({ err, requestId: pending.id }, 'enqueue of a request that already ended failed');
      return;
    }
    this.#forget(pending);
    pending.reject(err);
  }

  /** Registers the wait for `message`'s reply, with its timeout. */
  #expect(message: Message, timeout: number): PendingRequest {
    if (this.#waiting.has(message.id)) {
      throw new ValidationError(`a request with id \`${message.id}\` is already waiting for its reply`, { field: 'id' });
    }
    const pending = new PendingRequest(message.id, message.recipient, timeout, message.timestamp.getTime());
    this.#waiting.set(message.id, pending);
    this.#deadlines.push(pending);
    if (this.#timer === null || this.#timerAt > pending.deadline) this.#armTimer(pending.deadline, Date.now());
    return pending;
  }

  #forget(pending: PendingRequest): void {
    this.#waiting.delete(pending.id);
    this.#deadlines.remove(pending);
  }

  #armTimer(at: number, now: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), timerDelay(at - now));
  }

  #expire(): void {
    this.#timer = null;
    this.#timerAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let p: PendingRequest | undefined = this.#deadlines.peek();
    while (p !== undefined && p.deadline <= now) {
      this.#forget(p);
      this.#core.counters.errors++;
      this.#core.log.logger.warn({ requestId: p.id, recipient: p.recipient, timeoutMs: p.timeoutMs }, 'request timed out');
      p.reject(new RequestTimeoutError(p.id, p.recipient, p.timeoutMs));
      p = this.#deadlines.peek();
    }
    if (p !== undefined) this.#armTimer(p.deadline, now);
  }

  /** Starts the inbox consumer: it runs until its first lease has to wait. */
  #start(t: Transport): void {
    this.#transport = t;
    this.loop = new Promise<void>((resolve) => {
      this.#loopEnded = resolve;
    });
    this.#run();
  }

  /**
   * The inbox consumer, as a step function like a push agent's (`Consumers`): settles the replies
   * at hand and leases again until a lease has to wait, then returns; the transport's answer
   * (`leased`, `failed`) runs it again. An async loop held a promise and a suspended frame per
   * reply, and with many requests outstanding each reply comes alone. Ends once the bus stops.
   */
  #run(): void {
    const t = this.#transport as Transport;
    while (!this.#stop.aborted) {
      let leases: Lease[] | undefined;
      try {
        leases = t.lease(this.inbox, this.#leaseOptions);
      } catch (err) {
        this.failed(err);
        return;
      }
      // Waiting: the answer goes to `leased` or `failed`.
      if (leases === undefined) return;
      if (leases.length === 0) {
        // An empty answer without waiting (a closing transport): let the event loop breathe.
        yieldToEventLoop().then(() => this.#run());
        return;
      }
      this.#settleAll(t, leases);
    }
    this.#loopEnded();
  }

  /** The inbox lease that waited answered (LeaseWaiter). */
  leased(leases: Lease[]): void {
    if (leases.length > 0) this.#settleAll(this.#transport as Transport, leases);
    else if (!this.#stop.aborted) {
      // The wait ended with nothing, the bus still open: lease again after a turn of the event loop.
      yieldToEventLoop().then(() => this.#run());
      return;
    }
    this.#run();
  }

  /** Leasing replies failed (LeaseWaiter): retry after a pause, unless the bus stopped. */
  failed(err: unknown): void {
    if (this.#stop.aborted) {
      this.#loopEnded();
      return;
    }
    this.#core.counters.errors++;
    this.#core.log.logger.error({ err }, 'leasing replies failed; retrying');
    pause(LOOP_ERROR_PAUSE_MS, this.#stop).then(() => this.#run());
  }

  #settleAll(t: Transport, leases: Lease[]): void {
    for (let i = 0; i < leases.length; i++) this.#settle(t, leases[i] as Lease);
  }

  /** A reply came: ack it, and settle the request waiting for it (a late one is only counted). */
  #settle(t: Transport, lease: Lease): void {
    const m = lease.message;
    if (lease.malformed === undefined) {
      let acked: MaybePromise<boolean>;
      try {
        acked = t.ack(lease);
        if (isThenable(acked)) acked.then(undefined, this.#ackFailed);
      } catch (err) {
        this.#ackFailed(err);
      }
    }
    const id = m.headers['inReplyTo'];
    const pending = id === undefined ? undefined : this.#waiting.get(id);
    const core = this.#core;
    if (pending === undefined) {
      core.counters.lateReplies++;
      if (core.log.debugging) core.log.message('reply for no waiting request', m, { inReplyTo: id });
      return;
    }
    this.#forget(pending);
    if (lease.malformed !== undefined) {
      pending.reject(
        new ValidationError(
          `the reply from \`${m.sender}\` to request ${pending.id} is not a valid message: ${lease.malformed}; it was dead-lettered as malformed`,
          { field: 'reply' },
        ),
      );
      return;
    }
    core.delivered(m, Date.now(), this.inbox);
    core.counters.acked++;
    if (m.type === MessageType.ERROR) pending.reject(new RemoteError(m.sender, pending.id, m.payload));
    else pending.resolve(m);
  }

  readonly #ackFailed = (err: unknown): void => {
    this.#core.counters.errors++;
    this.#core.log.logger.error({ err }, 'acking a reply failed');
  };
}

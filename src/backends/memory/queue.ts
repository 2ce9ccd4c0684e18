import { IndexedHeap, type HeapItem } from '../../bus/heap.js';
import type { Lease, LeaseWaiter } from '../../bus/transport.js';
import type { Message } from '../../message.js';
import { BandedQueue, KeyedHeap } from './heap.js';

// The records of the memory transport: a queue's state, a leased or delayed message, a waiting
// lease call and the hand-over of its answer, the spare structures queues borrow, and the order
// key of a ready message.

/** The record no longer tracks the message (it went back to the ready heap, or was acked or dead-lettered). */
export const DETACHED = 0;
export const DELAYED = 1;
export const LEASED = 2;

/**
 * A message while it is leased or delayed; a leased entry is itself the `Lease` handed out. A
 * message waiting in the ready heap has no entry (the heap keeps the message itself, its order key
 * and its lease count), so a deep backlog costs no wrapper object per message. Every lease makes a
 * new entry, so an entry is one lease: once it left the LEASED state (acked, requeued, dead-lettered
 * or reclaimed after its deadline) that lease is lost for good, whatever happens to the message next.
 */
export class Entry implements HeapItem, Lease {
  heapIndex = -1;
  state = DETACHED;
  /** Times leased so far (the `attempt` of the current delivery when leased). */
  readonly leases: number;
  /** The lease number (its token, as text); 0 for a message delayed at enqueue. */
  readonly id: number;
  /** Lease deadline (epoch ms) while leased. */
  deadline = 0;
  /** Leased: the `consumer` the lease call named. */
  holder: string | undefined = undefined;
  readonly q: QueueState;
  /** The queue's name (the `Lease` field). */
  readonly queue: string;
  /** Leased: the delivery's copy (carrying its `attempt`); delayed at enqueue: the message as sent. */
  readonly message: Message;
  /** Its place in the ready order: priority desc, then enqueue order (see `readyKey`). Kept across requeues. */
  readonly key: number;

  constructor(q: QueueState, message: Message, key: number, leases: number, id: number) {
    this.q = q;
    this.queue = q.name;
    this.message = message;
    this.key = key;
    this.leases = leases;
    this.id = id;
  }

  /** Made on demand: most leases are acked without anyone reading it. */
  get token(): string {
    return String(this.id);
  }

  /** A lease as plain data (the entry points into its queue's heaps). */
  toJSON(): Lease {
    return { queue: this.queue, message: this.message, token: this.token, deadline: this.deadline };
  }
}

/**
 * Priority and enqueue sequence folded into one number, smaller leaves first: exact in a double
 * for priorities 0..10 and 2^43 (about 8.8e12) enqueues.
 */
export function readyKey(priority: number, seq: number): number {
  return (10 - priority) * PRIORITY_STRIDE + seq;
}
/** 2^43: the span of sequence numbers within one priority of `readyKey`. */
export const PRIORITY_STRIDE = 8_796_093_022_208;

/**
 * A `lease()` call waiting for a message: a record in its queue's FIFO list of waits. A queue keeps
 * its last finished record (`spare`) for its next wait, so a consumer that waits again and again
 * allocates nothing per wait, and an idle one holds this record and nothing else.
 */
export class Waiter {
  readonly queue: QueueState;
  max = 1;
  leaseMs = 0;
  consumer: string | undefined = undefined;
  /**
   * Epoch ms when the wait ends empty; undefined when only a message or the signal ends it (not
   * Infinity: a field always holding a number gets a boxed number of its own, one more cache miss).
   */
  until: number | undefined = undefined;
  signal: AbortSignal | undefined = undefined;
  /** Where the answer goes: the caller's `LeaseWaiter`, or the resolve of the promise `lease` returned. */
  target: LeaseWaiter | ((leases: Lease[]) => void) | undefined = undefined;
  /** The answer, from the wait's end until it is handed to a `LeaseWaiter` (in a microtask). */
  leases: Lease[] | undefined = undefined;
  /** The next wait on the queue, in arrival order; once answered, the next answer to hand over. */
  next: Waiter | undefined = undefined;

  constructor(queue: QueueState) {
    this.queue = queue;
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * Waits answered for a `LeaseWaiter`, handed to their waiters in order in one microtask, never
 * from inside the call that answered them (linked through `Waiter.next`). A handed-over record
 * becomes its queue's spare.
 */
export class Answers {
  #first: Waiter | undefined;
  #last: Waiter | undefined;

  add(w: Waiter, leases: Lease[]): void {
    w.leases = leases;
    if (this.#last === undefined) {
      this.#first = w;
      // Not queueMicrotask: Node makes an async resource for each, several times the cost.
      void RESOLVED.then(this.#handOver);
    } else this.#last.next = w;
    this.#last = w;
  }

  /** Hands the answers over (a waiter may lease again, and so add more: they are handed over too). */
  readonly #handOver = (): void => {
    let w: Waiter | undefined;
    while ((w = this.#first) !== undefined) {
      this.#first = w.next;
      if (this.#first === undefined) this.#last = undefined;
      const target = w.target as LeaseWaiter;
      const leases = w.leases as Lease[];
      w.next = w.target = w.leases = undefined;
      w.queue.spare = w;
      try {
        target.leased(leases);
      } catch (err) {
        // A waiter must not throw; if one does, the others still get their answers.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  };
}

const deadlineOrder = (a: Entry, b: Entry): boolean => a.deadline < b.deadline || (a.deadline === b.deadline && a.key < b.key);

export class QueueState {
  readonly name: string;
  /** A registered recipient (`addRecipient`): sends that require one may enqueue here. */
  recipient = false;
  /**
   * Visible messages by `readyKey` (priority desc, then enqueue order), each with its lease count as
   * aux: the shared empty queue while there are none (push through `readyQueue()`, and call
   * `tookReady()` after a pop: an emptied queue goes back to the spares).
   */
  ready: BandedQueue<Message> = NO_READY;
  /**
   * Messages not visible yet (backoff, delayed sends), keyed by the time they become visible: the
   * shared empty heap until the first one (push through `delayedHeap()`), so an idle queue holds
   * nothing it does not use.
   */
  delayed: KeyedHeap<Entry> = NO_DELAYED;
  /**
   * Leased messages, earliest deadline first: the shared empty heap while there are none (push
   * through `leasedHeap()`, and call `leaseEnded()` after a removal).
   */
  leased: IndexedHeap<Entry> = NO_LEASES;
  /** The waits on this queue, oldest first (a linked list through `Waiter.next`: usually one). */
  first: Waiter | undefined = undefined;
  last: Waiter | undefined = undefined;
  /** The record of the last finished wait, for the next one. */
  spare: Waiter | undefined = undefined;
  /** The last abort signal a wait here was watched under (see `MemoryTransport.#watchSignal`). */
  watched: AbortSignal | undefined = undefined;
  /** The one timer of this queue: wakes waiters when a message becomes visible, a lease runs out or a wait ends. */
  timer: NodeJS.Timeout | null = null;
  timerAt = Infinity;
  /** Whether the timer keeps the process alive (only while somebody waits). */
  timerRefed = false;
  /** The transport this queue belongs to (a lease from another instance is not ours). */
  readonly owner: object;
  /** Where this queue's ready queue and lease heap come from and go back to. */
  readonly #spares: Spares;
  /** The timer's callback, made with the first timer. */
  onTimer: (() => void) | undefined;

  constructor(name: string, owner: object, spares: Spares) {
    this.name = name;
    this.owner = owner;
    this.#spares = spares;
  }

  /** Adds a wait at the end of the list. */
  enlist(w: Waiter): void {
    if (this.last === undefined) this.first = w;
    else this.last.next = w;
    this.last = w;
  }

  /** Removes `w`, which follows `prev` (undefined: `w` is first) in the list. */
  unlink(w: Waiter, prev: Waiter | undefined): void {
    const next = w.next;
    if (prev === undefined) this.first = next;
    else prev.next = next;
    if (this.last === w) this.last = prev;
    w.next = undefined;
  }

  /** The ready queue to push to (its own, lent by the spares while it holds messages). */
  readyQueue(): BandedQueue<Message> {
    return this.ready === NO_READY ? (this.ready = this.#spares.readyQueue()) : this.ready;
  }

  /** A message was popped from `ready`: once it is empty, it goes back to the spares. */
  tookReady(): void {
    if (this.ready.size === 0 && this.ready !== NO_READY) {
      this.#spares.giveReady(this.ready);
      this.ready = NO_READY;
    }
  }

  /** The delayed heap to push to (its own, made on first use). */
  delayedHeap(): KeyedHeap<Entry> {
    return this.delayed === NO_DELAYED ? (this.delayed = new KeyedHeap<Entry>()) : this.delayed;
  }

  /** The lease heap to push to (its own, lent by the spares while it holds leases). */
  leasedHeap(): IndexedHeap<Entry> {
    return this.leased === NO_LEASES ? (this.leased = this.#spares.leaseHeap()) : this.leased;
  }

  /** An entry was removed from `leased`: once it is empty, it goes back to the spares. */
  leaseEnded(): void {
    if (this.leased.size === 0 && this.leased !== NO_LEASES) {
      this.#spares.giveLeaseHeap(this.leased);
      this.leased = NO_LEASES;
    }
  }
}

/** How many emptied ready queues, and lease heaps, a transport keeps for its queues. */
const MAX_SPARES = 32;

/**
 * The emptied ready queues and lease heaps of one transport, lent to its queues while they hold
 * messages. An idle queue then holds neither, and when many queues take turns (10,000 agents, a
 * message to each in turn) the structure a queue gets is the one just given back, still in the
 * CPU's cache, not a cold one of its own: at that scale, cache misses are most of a message's cost.
 */
export class Spares {
  readonly #ready: BandedQueue<Message>[] = [];
  readonly #leases: IndexedHeap<Entry>[] = [];

  readyQueue(): BandedQueue<Message> {
    return this.#ready.pop() ?? new BandedQueue<Message>(11, PRIORITY_STRIDE);
  }

  giveReady(q: BandedQueue<Message>): void {
    if (this.#ready.length < MAX_SPARES) this.#ready.push(q);
  }

  leaseHeap(): IndexedHeap<Entry> {
    return this.#leases.pop() ?? new IndexedHeap<Entry>(deadlineOrder);
  }

  giveLeaseHeap(h: IndexedHeap<Entry>): void {
    if (this.#leases.length < MAX_SPARES) this.#leases.push(h);
  }
}

/** The empty queue and heaps every queue starts with; never pushed to (see `readyQueue`, `delayedHeap`, `leasedHeap`). */
const NO_READY = new BandedQueue<Message>(11, PRIORITY_STRIDE);
const NO_DELAYED = new KeyedHeap<Entry>();
const NO_LEASES = new IndexedHeap<Entry>(deadlineOrder);

/** The message as one delivery sees it: a shallow copy carrying this delivery's attempt. */
export function deliveryCopy(m: Message, attempt: number): Message {
  const c = m.correlationId;
  // The same two literal shapes as `createMessage` makes (with and without a correlation).
  const copy: Message =
    c === undefined
      ? {
          id: m.id,
          type: m.type,
          sender: m.sender,
          recipient: m.recipient,
          payload: m.payload,
          timestamp: m.timestamp,
          priority: m.priority,
          headers: m.headers,
          attempt,
        }
      : {
          id: m.id,
          type: m.type,
          sender: m.sender,
          recipient: m.recipient,
          payload: m.payload,
          timestamp: m.timestamp,
          priority: m.priority,
          headers: m.headers,
          attempt,
          correlationId: c,
        };
  if (m.ttlMs !== undefined) copy.ttlMs = m.ttlMs;
  return copy;
}

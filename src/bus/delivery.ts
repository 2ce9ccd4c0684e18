import type { Span } from '@opentelemetry/api';
import { type Message, MessageType } from '../message.js';
import {
  activeTracer,
  endSpan,
  leaseSpan,
  parentOf,
  recordError,
  startConsumerSpan,
  startProducerSpan,
  withSpan,
} from '../observability/tracing.js';
import { timerDelay } from '../timers.js';
import type { Agent } from './agent.js';
import { type BusOps, HandlerContext, Registration } from './context.js';
import { type BusCore, VERDICT_OK } from './core.js';
import { isThenable, type MaybePromise } from './maybe.js';
import { asksForReply, resultPayload } from './rules.js';
import type { Lease, LeaseWaiter, Transport, WaiterLeaseOptions } from './transport.js';

// Push delivery: one consumer per registered agent, whose loop runs while it has messages (an idle
// one holds no frame or promise: its waiting lease answers to the consumer, which runs the loop
// again); each delivery run through its handler, then acked (with the automatic reply of a request,
// in one transport step), retried or dead-lettered; and the watchdog that aborts a handler's signal
// when its lease runs out.

/**
 * How long one consumer-loop lease call waits: until a message comes or the loops' signal ends
 * it (unregistering, closing). A finite wait only woke every idle agent now and then for nothing
 * (10,000 idle agents: 2,000 empty wake-ups a second at 5 s) and kept a timer per idle queue.
 */
export const LOOP_WAIT_MS = Number.POSITIVE_INFINITY;
/** Pause after a transport failure in a consumer loop before trying again. */
export const LOOP_ERROR_PAUSE_MS = 250;
/**
 * A consumer draining a backlog from a synchronous transport never waits for I/O. Every
 * YIELD_CHECK deliveries it looks at the clock, and after YIELD_AFTER_MS busy without waiting it
 * yields to the event loop (timers, I/O) if the backlog is really draining. If producers keep
 * refilling the queue from microtasks, yielding would only hand them the loop (they, not the
 * consumer, are what holds up I/O then), so it does not.
 */
const YIELD_CHECK = 256;
const YIELD_AFTER_MS = 20;
export const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * A push agent's registration and its consumer in one object: the options of its lease calls, the
 * waiter those calls answer to when they wait, and its loop's place and pacing. An idle agent
 * holds this and the transport's record of its wait, nothing more: no suspended frame, no promise
 * (10,000 idle agents each holding both weighed ~1.7 KB apiece, and every wait's objects lived long
 * enough to burden the old generation of the garbage collector). An answer runs the loop again
 * (`Consumers.resume`). One object rather than a registration and a consumer: with 10,000 agents
 * taking turns, each object a message goes through is a cache miss.
 */
export class AgentConsumer extends Registration implements WaiterLeaseOptions, LeaseWaiter {
  readonly leaseMs: number;
  max = 1;
  signal: AbortSignal;
  readonly consumer: string;
  /** Its answers come back to it. */
  readonly waiter: LeaseWaiter = this;
  /** The transport it leases from, once connected (set by `Consumers.start`). */
  transport: Transport | undefined = undefined;
  /** The leases being delivered (undefined between batches), and the index of the next one. */
  batch: Lease[] | undefined = undefined;
  next = 0;
  /**
   * Concurrency 1: the delivery whose asynchronous handler the loop waits for, and the callbacks
   * its promise settles through. Made at the agent's first such delivery and reused, not two
   * closures (and their context) per delivery: with many requests outstanding, every object a
   * delivery leaves behind is work for the garbage collector.
   */
  inline: HandlerContext | undefined = undefined;
  inlineLease: Lease | undefined = undefined;
  onHandled: ((value: unknown) => void) | undefined = undefined;
  onFailed: ((err: unknown) => void) | undefined = undefined;
  readonly #consumers: Consumers;
  // The drain-or-not bookkeeping of the loop (see YIELD_AFTER_MS).
  #sinceCheck = 0;
  #busySince = 0;
  #readyAtStart = 0;
  #deliveredSinceStart = 0;

  constructor(consumers: Consumers, name: string, agent: Agent, leaseMs: number, signal: AbortSignal, consumer: string) {
    super(name, agent);
    this.#consumers = consumers;
    this.leaseMs = leaseMs;
    this.signal = signal;
    this.consumer = consumer;
  }

  /**
   * Every wait lasts until a message comes or the signal ends it. A getter: a field would hold a
   * boxed number of its own (Infinity is no small integer), one more cache miss per lease.
   */
  get waitMs(): number {
    return LOOP_WAIT_MS;
  }

  leased(leases: Lease[]): void {
    this.#consumers.resume(this, leases);
  }

  failed(err: unknown): void {
    this.#consumers.resumeAfterFailure(this, err);
  }

  /** The consumer waited for work: it is not monopolising the loop. */
  waited(): void {
    this.#sinceCheck = 0;
    this.#busySince = 0;
  }

  /** Counts deliveries taken without waiting; true when the consumer should yield now. */
  delivered(n: number): boolean {
    this.#sinceCheck += n;
    if (this.#sinceCheck < YIELD_CHECK) return false;
    this.#deliveredSinceStart += this.#sinceCheck;
    this.#sinceCheck = 0;
    const now = Date.now();
    const depth = (this.transport as Transport).depth(this.name);
    let ready = 0;
    // A depth that needs I/O: the backlog cannot be judged here, so yield as if it drained.
    if (isThenable(depth)) depth.then(undefined, () => undefined);
    else ready = depth.ready;
    if (this.#busySince === 0) {
      this.#busySince = now;
      this.#readyAtStart = isThenable(depth) ? Number.POSITIVE_INFINITY : ready;
      this.#deliveredSinceStart = 0;
      return false;
    }
    if (now - this.#busySince < YIELD_AFTER_MS) return false;
    const draining = this.#readyAtStart - ready >= this.#deliveredSinceStart / 2;
    this.#busySince = 0;
    return draining;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Aborts a handler's `ctx.signal` when its lease runs out before the handler ends (only for handlers that took their signal). */
export class LeaseWatch {
  readonly watched = new Set<HandlerContext>();
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Number.POSITIVE_INFINITY;
  #stopped = false;

  /** A handler took its `ctx.signal`. */
  watch(ctx: HandlerContext): void {
    if (ctx.finished || this.#stopped) return;
    this.watched.add(ctx);
    this.#arm(ctx.deadline);
  }

  /** The handler settled: its signal needs no watching any more. */
  settle(ctx: HandlerContext): void {
    ctx.finished = true;
    if (ctx.watched) this.watched.delete(ctx);
    if (ctx.span !== undefined) {
      ctx.span.end();
      ctx.span = undefined;
    }
  }

  /** Aborts every watched signal with `reason` (close gave up draining). */
  abortAll(reason: unknown): void {
    for (const ctx of this.watched) ctx.abort(reason);
  }

  /** Aborts the watched signals of `agent`'s handlers (its unregistration gave up waiting). */
  abortAgent(agent: string, reason: unknown): void {
    for (const ctx of this.watched) if (ctx.agent === agent) ctx.abort(reason);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #arm(at: number): void {
    if (this.#timer !== null && this.#timerAt <= at) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#check(), timerDelay(at - Date.now() + 1));
  }

  #check(): void {
    this.#timer = null;
    this.#timerAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const ctx of this.watched) {
      if (ctx.deadline <= now) {
        this.watched.delete(ctx);
        ctx.abort(new Error(`lease on message ${ctx.message.id} ran out before its handler finished`));
      } else if (ctx.deadline < next) next = ctx.deadline;
    }
    if (next !== Number.POSITIVE_INFINITY && !this.#stopped) this.#arm(next);
  }
}

/**
 * The consumer loops of one bus and the accounting of the handlers they run (how many run, and
 * who waits for them to finish when the bus closes).
 */
export class Consumers {
  readonly #core: BusCore;
  readonly #ops: BusOps;
  readonly #watch: LeaseWatch;
  /** Handlers running now, all agents (a delivery counts until its ack settled). */
  running = 0;
  /** Called when `running` drops to 0 (close waits for it). */
  onIdle: (() => void) | null = null;
  /**
   * What every consumer loop's wait and pause listen to: one signal for all loops (renewed by
   * each `wake`), not one per agent. An abort listener costs ~900 B in Node, more than the rest
   * of an idle agent; and ending N waits through N signals cost the memory transport O(N) each.
   */
  #loops = new AbortController();

  constructor(core: BusCore, ops: BusOps, watch: LeaseWatch) {
    this.#core = core;
    this.#ops = ops;
    this.#watch = watch;
  }

  /**
   * Ends the wait of every consumer loop: a loop whose registration stopped ends, the others wait
   * again on a new signal (a spurious wake-up each: unregistering is rare; closing ends them all).
   */
  wake(reason: unknown): void {
    const loops = this.#loops;
    this.#loops = new AbortController();
    loops.abort(reason);
  }

  /** The registration of push agent `name` (its consumer starts with `start`). */
  register(name: string, agent: Agent): AgentConsumer {
    const settings = this.#core.settings;
    return new AgentConsumer(this, name, agent, settings.leaseMs, this.#loops.signal, settings.consumer);
  }

  /** Starts the consumer of a push agent: its loop runs until its first lease has to wait. */
  start(t: Transport, c: AgentConsumer): void {
    c.transport = t;
    c.looping = true;
    this.#run(c);
  }

  /**
   * `c`'s waiting lease answered: its loop runs on. After `[]` (the wait ended: the agent stopped,
   * or another one did and all waits were woken) a live loop leases again after a turn of the event
   * loop, so a transport answering `[]` without waiting (closed under it) cannot spin it in microtasks.
   */
  resume(c: AgentConsumer, leases: Lease[]): void {
    if (leases.length > 0) this.#gotLeases(c, leases);
    else {
      c.waited();
      if (c.stopped) this.#run(c);
      else yieldToEventLoop().then(() => this.#run(c));
    }
  }

  /** `c`'s waiting lease failed: its loop runs on after a pause. */
  resumeAfterFailure(c: AgentConsumer, err: unknown): void {
    if (c.stopped) this.#run(c);
    else this.#retryLater(c, err);
  }

  #retryLater(c: AgentConsumer, err: unknown): void {
    this.#core.counters.errors++;
    this.#core.log.logger.error({ err, agent: c.name }, 'leasing failed; retrying');
    pause(LOOP_ERROR_PAUSE_MS, this.#loops.signal).then(() => this.#run(c));
  }

  /** Leases came: `c` delivers them now, or after a turn of the event loop when it has been busy too long. */
  #gotLeases(c: AgentConsumer, leases: Lease[]): void {
    c.batch = leases;
    c.next = 0;
    // An answer that came later is no proof of waiting (it may come in a microtask): pace every answer alike.
    if (c.delivered(leases.length)) yieldToEventLoop().then(() => this.#run(c));
    else this.#run(c);
  }

  /**
   * The loop of `c`, as a step function rather than an async one: delivers what is left of its
   * batch, then leases as many messages as its agent has free handler slots, and so on, until it
   * has to wait, and returns; what it waits for runs it again. It waits for a message (the lease
   * answers `c`), for a turn of the event loop, for a free handler slot, and with concurrency 1 for
   * each delivery (the loop runs it inline, so a consumer keeps pace with a producer that awaits
   * each send and queues stay shallow). It ends once the agent stopped. An idle agent thus holds
   * no frame and no promise, and a message to it costs no frame either. Never throws.
   */
  #run(c: AgentConsumer): void {
    const t = c.transport as Transport;
    for (;;) {
      const batch = c.batch;
      if (batch !== undefined) {
        if (c.next === 0 && batch.length > 1) {
          // A batch: its span links to each message's creation context (each delivery still parents on its own).
          const tracer = activeTracer();
          if (tracer !== undefined)
            leaseSpan(
              tracer,
              c.name,
              batch.map((l) => l.message),
            );
        }
        while (c.next < batch.length) {
          const lease = batch[c.next++] as Lease;
          const step = this.#deliver(t, c, lease);
          if (step === undefined) continue;
          if (!(step instanceof HandlerContext)) {
            // Settling (it never rejects): inline, the loop goes on once it is done.
            if (c.concurrency === 1) {
              step.then(() => this.#run(c));
              return;
            }
            continue;
          }
          // An asynchronous handler: settle it when it does; inline, the loop goes on after that.
          const handling = Promise.resolve(step.handling as PromiseLike<unknown>);
          step.handling = undefined;
          if (c.concurrency !== 1) {
            handling.then(
              (value) => this.#handled(t, c, lease, step, value),
              (err: unknown) => this.#handlerFailed(t, c, lease, step, err),
            );
            continue;
          }
          c.inline = step;
          c.inlineLease = lease;
          if (c.onHandled === undefined) this.#inlineCallbacks(c);
          handling.then(c.onHandled, c.onFailed);
          return;
        }
        c.batch = undefined;
      }
      if (c.stopped) {
        c.endLoop();
        return;
      }
      const room = c.concurrency - c.running;
      if (room <= 0) {
        // Runs on in a microtask, not at once: handlers finishing in the same tick then free their
        // slots first, and one lease asks for all of them (on Redis, one round trip, not one each).
        c.slot = () => void SETTLED.then(() => this.#run(c));
        return;
      }
      c.max = room;
      c.signal = this.#loops.signal;
      let leases: Lease[] | undefined;
      try {
        leases = t.lease(c.name, c);
      } catch (err) {
        if (c.stopped) continue;
        this.#retryLater(c, err);
        return;
      }
      // Waiting: the answer goes to `c` (`resume`), which runs the loop again.
      if (leases === undefined) return;
      if (leases.length > 0) {
        c.batch = leases;
        c.next = 0;
        if (!c.delivered(leases.length)) continue;
      } else c.waited(); // An empty answer without waiting (a closing transport): let the loop breathe.
      yieldToEventLoop().then(() => this.#run(c));
      return;
    }
  }

  /** Makes the callbacks of `c`'s inline deliveries (see `AgentConsumer.inline`). */
  #inlineCallbacks(c: AgentConsumer): void {
    c.onHandled = (value: unknown) => this.#inlineSettled(c, true, value);
    c.onFailed = (err: unknown) => this.#inlineSettled(c, false, err);
  }

  /** `c`'s inline delivery settled: its handler returned `outcome` (`ok`) or failed with it. */
  #inlineSettled(c: AgentConsumer, ok: boolean, outcome: unknown): void {
    const ctx = c.inline as HandlerContext;
    const lease = c.inlineLease as Lease;
    c.inline = undefined;
    c.inlineLease = undefined;
    const t = c.transport as Transport;
    this.#after(c, ok ? this.#handled(t, c, lease, ctx, outcome) : this.#handlerFailed(t, c, lease, ctx, outcome));
  }

  /** An inline delivery settled (`done`: its ack or retry still under way, never rejecting): the loop goes on. */
  #after(c: AgentConsumer, done: Promise<void> | undefined): void {
    if (done === undefined) this.#run(c);
    else done.then(() => this.#run(c));
  }

  /**
   * Runs one delivery through its agent: the checks, the handler, then ack (with the automatic
   * reply), retry or dead letter. Never throws. Undefined when all of it ran synchronously; a
   * promise of its end when only the settling is under way; the handler's context, holding its
   * promise in `handling`, when the handler answered with a promise (the loop then waits for it
   * and finishes with `#handled` or `#handlerFailed`). Continuations rather than an async
   * function: a frame suspended per delivery in flight is the biggest allocation of a busy consumer.
   */
  #deliver(t: Transport, reg: Registration, lease: Lease): Promise<void> | HandlerContext | undefined {
    this.#enter(reg);
    const m = lease.message;
    let ctx: HandlerContext;
    try {
      const now = Date.now();
      const verdict = this.#core.verdict(m, now);
      if (verdict !== VERDICT_OK) return this.#leaveAfter(reg, lease, this.#core.retire(t, lease, verdict));
      this.#core.delivered(m, now, reg.name);
      ctx = new HandlerContext(this.#ops, reg.name, lease);
      const tracer = activeTracer();
      if (tracer !== undefined) ctx.span = startConsumerSpan(tracer, m, reg.name, 'process');
    } catch (err) {
      this.#core.deliveryFailed(err, m);
      this.#leave(reg);
      return undefined;
    }
    let result: unknown;
    try {
      const agent = reg.agent as Agent;
      // The handler runs in its delivery's span (when tracing), so what it sends and writes nests
      // under it. The closure that needs lives in its own function: here it would allocate a
      // context for this frame on every delivery, traced or not.
      result = ctx.span === undefined ? agent.handleMessage(m, ctx) : handleInSpan(ctx.span, agent, m, ctx);
    } catch (err) {
      return this.#handlerFailed(t, reg, lease, ctx, err);
    }
    if (isThenable(result)) {
      ctx.handling = result;
      return ctx;
    }
    return this.#handled(t, reg, lease, ctx, result);
  }

  /** The handler returned: the reply and ack, then the slot's accounting. */
  #handled(t: Transport, reg: Registration, lease: Lease, ctx: HandlerContext, result: unknown): Promise<void> | undefined {
    let done: MaybePromise<void>;
    try {
      done = this.#complete(t, reg, lease, ctx, result);
    } catch (err) {
      this.#core.deliveryFailed(err, lease.message);
      this.#leave(reg);
      return undefined;
    }
    if (!isThenable(done)) {
      this.#leave(reg);
      return undefined;
    }
    // The handler is done: its slot takes the next delivery while the ack is on its way (a round
    // trip on a networked transport). The delivery counts as running until the ack settles, so
    // closing still waits for it.
    this.#freeSlot(reg);
    return done.then(this.#stopRunning, (err: unknown) => {
      this.#core.deliveryFailed(err, lease.message);
      this.#stopRunning();
    });
  }

  /** The handler threw or rejected: retry or dead-letter, then the slot's accounting. */
  #handlerFailed(t: Transport, reg: Registration, lease: Lease, ctx: HandlerContext, err: unknown): Promise<void> | undefined {
    let failing: Promise<unknown>;
    try {
      failing = this.#failed(t, lease, ctx, err);
    } catch (e) {
      this.#core.deliveryFailed(e, lease.message);
      this.#leave(reg);
      return undefined;
    }
    return this.#leaveAfter(reg, lease, failing);
  }

  /** After the handler resolved: the automatic reply of a request and the ack in one step, or the ack alone. */
  #complete(t: Transport, reg: Registration, lease: Lease, ctx: HandlerContext, result: unknown): MaybePromise<void> {
    if (result !== undefined && asksForReply(lease.message) && !ctx.replied) return this.#replyAndAck(t, reg, lease, ctx, result);
    this.#watch.settle(ctx);
    return this.#core.ack(t, lease, reg.name);
  }

  /**
   * The automatic RESULT of a request and the ack of the request, in one atomic transport step
   * (`Transport.enqueueAndAck`): a crash never leaves the request acked without its reply.
   */
  #replyAndAck(t: Transport, reg: Registration, lease: Lease, ctx: HandlerContext, result: unknown): MaybePromise<void> {
    const core = this.#core;
    const m = lease.message;
    let reply: ReturnType<BusCore['prepareReply']>;
    let outcome: ReturnType<Transport['enqueueAndAck']>;
    let replySpan: Span | undefined;
    try {
      reply = core.prepareReply(m, resultPayload(result), { type: MessageType.RESULT, sender: reg.name });
      const tracer = ctx.span === undefined ? undefined : activeTracer();
      if (tracer !== undefined) replySpan = startProducerSpan(tracer, reply.message, 'reply', reply.queue, parentOf(ctx.span as Span));
      outcome = t.enqueueAndAck(
        [
          {
            queue: reply.queue,
            message: reply.message,
            visibleAt: 0,
            requireRecipient: reply.requireRecipient,
            dedupeWindowMs: 0,
            publish: true,
          },
        ],
        lease,
      );
    } catch (err) {
      // The result could not be sent (not JSON, bus closed): the delivery failed, nothing was acked.
      if (replySpan !== undefined) endSpan(replySpan, err);
      return this.#failed(t, lease, ctx, err).then(noop);
    }
    // A synchronous transport answers at once: no closure for the continuation then.
    if (!isThenable(outcome)) return this.#replied(t, reg, m, ctx, reply, replySpan, outcome);
    const span = replySpan;
    return outcome.then(
      (o) => this.#replied(t, reg, m, ctx, reply, span, o),
      (err: unknown) => {
        if (span !== undefined) endSpan(span, err);
        return this.#failed(t, lease, ctx, err).then(noop);
      },
    );
  }

  /** The reply was enqueued and the request acked: the reply's accounting, then the ack's. */
  #replied(
    t: Transport,
    reg: Registration,
    m: Message,
    ctx: HandlerContext,
    reply: ReturnType<BusCore['prepareReply']>,
    replySpan: Span | undefined,
    o: { results: unknown[]; acked: boolean },
  ): MaybePromise<void> {
    const core = this.#core;
    ctx.replied = true;
    replySpan?.end();
    this.#watch.settle(ctx);
    let sent: ReturnType<BusCore['settleReply']> | undefined;
    try {
      sent = core.settleReply(t, m, reply, o.results[0] as Parameters<BusCore['settleReply']>[3], true);
    } catch (err) {
      core.deliveryFailed(err, reply.message);
    }
    core.afterAck(o.acked, m, reg.name);
    if (isThenable(sent)) return sent.then(noop, (err: unknown) => core.deliveryFailed(err, reply.message));
    return undefined;
  }

  /** The handler threw (or its result could not be sent). */
  #failed(t: Transport, lease: Lease, ctx: HandlerContext, err: unknown): Promise<boolean> {
    if (ctx.span !== undefined) recordError(ctx.span, err);
    this.#watch.settle(ctx);
    return this.#core.retryOrDeadLetter(t, lease, err);
  }

  /** Frees `reg`'s slot once `step` settles (a failure of it is logged, never thrown). */
  #leaveAfter(reg: Registration, lease: Lease, step: Promise<unknown>): Promise<void> {
    return step.then(
      () => this.#leave(reg),
      (err: unknown) => {
        this.#core.deliveryFailed(err, lease.message);
        this.#leave(reg);
      },
    );
  }

  #enter(reg: Registration): void {
    reg.running++;
    this.running++;
  }

  #leave(reg: Registration): void {
    this.#freeSlot(reg);
    this.#stopRunning();
  }

  /** One of `reg`'s handler slots is free again: its consumer loop may lease for it. */
  #freeSlot(reg: Registration): void {
    reg.running--;
    const slot = reg.slot;
    if (slot !== null) {
      reg.slot = null;
      slot();
    }
  }

  /** A delivery is settled (handled and acked, retried or dead-lettered). */
  readonly #stopRunning = (): void => {
    if (--this.running === 0 && this.onIdle !== null) this.onIdle();
  };
}

export const noop = (): void => undefined;
const SETTLED: Promise<void> = Promise.resolve();

/** `agent.handleMessage(m, ctx)` with `span` as the active span. */
function handleInSpan(span: Span, agent: Agent, m: Message, ctx: HandlerContext): unknown {
  return withSpan(span, () => agent.handleMessage(m, ctx));
}

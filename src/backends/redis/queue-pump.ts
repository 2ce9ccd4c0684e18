import type { Redis } from 'ioredis';
import type { Lease } from '../../bus/transport.js';
import { ClosedError } from '../../errors.js';
import { MAX_TIMER_MS } from '../../timers.js';
import type { QueueKeys, RoundResult, Scripts } from './commands.js';
import { type AbortWatch, type BlockingLine, type LinePool, MAX_BLOCK_MS } from './lines.js';
import { type CommandPipeline, corked, type ScriptCall } from './pipeline.js';
import { isNoScript } from './scripts.js';

/** What every pump of a transport shares: its command pipeline, its blocking lines, its scripts. */
export interface PumpRoom {
  pipeline: CommandPipeline;
  lines: LinePool;
  aborts: AbortWatch;
  scripts: Scripts;
}

/** A lease reply read: its leases, and how many entries were malformed (dead-lettered). */
export type ParsedRound = RoundResult & { malformed: number };

/** What a queue pump needs of the transport for its queue: the few operations it calls back. */
export interface QueueSide {
  /** One lease attempt on the command connection, without waiting. */
  leaseRound(leaseMs: number, max: number): Promise<RoundResult>;
  /** Reads a lease reply (malformed entries dead-lettered: then a promise). */
  readLeases(leaseMs: number, reply: unknown): ParsedRound | Promise<ParsedRound>;
  /** Epoch ms when something scheduled on the queue falls due; Infinity = nothing known. */
  dueAt(): number;
  /** Leases that came for a consumer's next call before it made it: kept for that call. */
  keep(leaseMs: number, leases: Lease[]): void;
  /** A lease nobody can take anymore: back as if never leased. */
  undo(lease: Lease): void;
  /** The queue's consumer stopped waiting for good (its signal aborted). */
  stopped(): void;
}

/** The waiters of one lease length, and how many messages they want together. */
interface Group {
  want: number;
  waiters: Waiter[];
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
export class QueuePump {
  readonly #side: QueueSide;
  readonly #room: PumpRoom;
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

  constructor(keys: QueueKeys, side: QueueSide, room: PumpRoom) {
    this.#keys = keys;
    this.#side = side;
    this.#room = room;
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
    if (had) this.#side.stopped();
  }

  /** Whether some `lease()` call is waiting here. */
  get waiting(): boolean {
    return this.#waiters.size > 0;
  }

  /** Nothing in flight, nobody waiting, and a blocking line free: it can carry an ack and a wait. */
  get idle(): boolean {
    return !this.#running && this.#waiters.size === 0 && this.#room.lines.canTake();
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
        if (leases.length > 0) this.#side.keep(leaseMs, leases);
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
      if (signal !== undefined) this.#room.aborts.watch(signal);
      if (!this.#running) void this.#loop();
    });
  }

  /** Per lease length, what every waiter wants together; and the earliest deadline among them. */
  #groups(): { groups: Map<number, Group>; earliest: number } {
    const groups = new Map<number, Group>();
    let earliest = Infinity;
    for (const w of this.#waiters) {
      earliest = Math.min(earliest, w.deadline);
      const g = groups.get(w.leaseMs);
      if (g) {
        g.want += w.max;
        g.waiters.push(w);
      } else groups.set(w.leaseMs, { want: w.max, waiters: [w] });
    }
    return { groups, earliest };
  }

  // One function on purpose (~85 lines): a round is on the path of every message, and each helper
  // awaited in it would add a promise and a turn per round.
  async #loop(): Promise<void> {
    this.#running = true;
    let block = true;
    // A line of the transport's pool for as long as somebody waits here; none free (more queues
    // wait than the pool has lines): the shared wait, until one is (see `LinePool`).
    let line = this.#room.lines.take(this.#line);
    try {
      while (!this.#closed && this.#waiters.size > 0) {
        // Waits whose deadline came end here (a provisional waiter: its consumer never came back).
        const turn = Date.now();
        for (const w of this.#waiters) if (w.deadline <= turn) w.settle([]);
        if (this.#waiters.size === 0) break;
        const { groups, earliest } = this.#groups();
        const now = Date.now();
        // At least 1 ms when blocking: BLPOP's timeout 0 would mean forever, and a deadline that
        // just passed is about to be settled by its own timer.
        const blockMs = block ? Math.max(1, Math.min(this.#side.dueAt() - now, earliest - now, MAX_BLOCK_MS)) : 0;
        this.#roundEnds = now + blockMs;
        block = true;
        const leaseMsList = [...groups.keys()];
        line ??= this.#room.lines.take(this.#line);
        if (line === undefined) {
          if (!(await this.#sharedRound(blockMs, leaseMsList, groups))) block = false;
          continue;
        }
        this.#line = line;
        let replies: [Error | null, unknown][];
        // Let the commands of this tick (say, the request that follows the reply just handed out)
        // leave first: they are what the other side waits for; this wait is not.
        const carried = await this.#room.pipeline.afterFlush(line.canCarry);
        const pre = carried.length > 0 ? [...carried, ...this.#pre] : this.#pre;
        this.#pre = [];
        try {
          let conn: Redis;
          try {
            conn = line.live ?? (await line.connection());
          } catch (err) {
            this.#room.pipeline.fail(pre, err);
            throw err;
          }
          const sent: Promise<unknown>[] = [];
          let wait: Promise<unknown> | undefined;
          corked(conn, () => {
            for (const c of pre) this.#room.pipeline.issue(conn, c);
            if (blockMs >= 1) wait = conn.blpop(this.#keys.signal, (blockMs / 1000).toFixed(3));
            for (const leaseMs of leaseMsList) {
              sent.push(this.#room.pipeline.evalOn(conn, this.#room.scripts.lease(this.#keys, leaseMs, groups.get(leaseMs)!.want)));
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
            if (isNoScript(err))
              await this.#room.pipeline.loadScript('lease').then(
                () => (block = false),
                () => undefined,
              );
            continue;
          }
          const parsed = this.#side.readLeases(leaseMs, reply);
          const round = parsed instanceof Promise ? await parsed : parsed;
          if (round.malformed > 0) block = false; // skipped entries: there may be more to take
          this.#handOut(leaseMs, groups.get(leaseMs)!.waiters, round.leases);
        }
        if (failed > 0 && block) await line.backOff();
        else line.succeeded();
      }
    } finally {
      if (line !== undefined) this.#room.lines.give(line);
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
  async #sharedRound(blockMs: number, leaseMsList: number[], groups: Map<number, Group>): Promise<boolean> {
    if (this.#pre.length > 0) {
      this.#room.pipeline.push(...this.#pre);
      this.#pre = [];
    }
    try {
      if (blockMs >= 1) await this.#room.lines.shared.wait(this.#keys.signal, blockMs);
      if (this.#closed) return true;
      let again = false;
      for (const leaseMs of leaseMsList) {
        const round = await this.#side.leaseRound(leaseMs, groups.get(leaseMs)!.want);
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
      this.#side.undo(leases[next]!);
    }
  }

  /** Ends every wait; the lines belong to the transport's pool, which the transport closes. */
  close(): void {
    this.#closed = true;
    this.#room.pipeline.fail(this.#pre, new ClosedError('redis transport'));
    this.#pre = [];
    for (const w of [...this.#waiters]) w.settle([]);
  }
}

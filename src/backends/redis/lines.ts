import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { RedisConfig } from './connection.js';

/**
 * Longest a blocked consumer waits before it looks at its queue again on its own. Wake-ups
 * normally come from the signal list; this bound only matters for a lease that expired in
 * another process whose consumer crashed, so redelivery happens within a second or two.
 */
export const MAX_BLOCK_MS = 2000;

/** How much longer than its wait a pump's round may take before its connection counts as dead. */
const STUCK_MS = 10_000;
/** How often a blocking line's watchdog looks for a round past its due time. */
const WATCHDOG_MS = 1_000;

/** What the blocking lines need of their transport. */
export interface LineSource {
  /** A new (not yet connected) blocking connection. */
  open: () => Redis;
  /** Ends the shared wait's round in flight: a token on `key` (a private list the round also waits on). */
  kick(key: string): void;
}

/**
 * One 'abort' listener per signal the waits of a pump use (a consumer loop passes the same signal
 * to every call) instead of one added and removed per wait, which costs more than the wait's own
 * bookkeeping: `onAbort(signal)` ends that signal's waits.
 */
export class AbortWatch {
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
export class BlockingLine {
  readonly #open: () => Redis;
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

  /** `open` makes a new (not yet connected) blocking connection. */
  constructor(open: () => Redis) {
    this.#open = open;
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
    if (!this.#conn) this.#conn = this.#open();
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
export class LinePool {
  readonly #lines: LineSource;
  readonly #max: number;
  readonly #idleMs: number;
  readonly #idle: BlockingLine[] = [];
  readonly #all = new Set<BlockingLine>();
  #sweeper: NodeJS.Timeout | undefined;
  #closed = false;
  readonly shared: SharedWait;

  constructor(lines: LineSource, config: RedisConfig) {
    this.#lines = lines;
    this.#max = config.blockingConnections - 1;
    this.#idleMs = config.blockingIdleMs;
    this.shared = new SharedWait(lines, config, this);
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
    const line = new BlockingLine(this.#lines.open);
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
export class SharedWait {
  readonly #lines: LineSource;
  readonly #pool: LinePool;
  readonly #kickKey: string;
  readonly #members = new Map<string, SharedMember>();
  #line: BlockingLine | undefined;
  #running = false;
  #inRound = false;
  #kicked = false;
  #closed = false;
  #idleSince = 0;

  constructor(lines: LineSource, config: RedisConfig, pool: LinePool) {
    this.#lines = lines;
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
        this.#lines.kick(this.#kickKey);
      }
    });
  }

  async #loop(): Promise<void> {
    this.#running = true;
    this.#line ??= new BlockingLine(this.#lines.open);
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

import type { Redis } from 'ioredis';
import type { DeadLetter, Lease } from '../../bus/transport.js';
import { decodeMessage } from '../../message.js';
import { salvage } from './codec.js';
import { keySegment } from './connection.js';
import { MAX_TIMER_MS } from '../../timers.js';
import { type BlockingLine, MAX_BLOCK_MS } from './lines.js';
import { corked } from './pipeline.js';
import type { PumpRoom } from './queue-pump.js';

/** The token of a reply taken from an inbox (no lease is held in Redis), and of one acked. */
export const INBOX_TOKEN = 'inbox';
const INBOX_SETTLED = 'inbox:settled';

/** What an inbox pump needs of the transport for its inbox. */
export interface InboxSide {
  /** Pops up to `max` entries of the inbox list without waiting. */
  pop(max: number): Promise<string[]>;
  /** Replies from popped entries (malformed ones dead-lettered: then a promise). */
  read(leaseMs: number, raw: readonly string[]): Lease[] | Promise<Lease[]>;
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
export class InboxPump {
  readonly #side: InboxSide;
  readonly #room: PumpRoom;
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

  constructor(key: string, side: InboxSide, room: PumpRoom) {
    this.#key = key;
    this.#side = side;
    this.#room = room;
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
      if (signal !== undefined) this.#room.aborts.watch(signal);
      if (!this.#running) void this.#loop();
    });
  }

  async #popNow(max: number, leaseMs: number): Promise<Lease[]> {
    return this.#side.read(leaseMs, await this.#side.pop(max));
  }

  /** Ends the waits whose deadline has come. */
  #expire(): void {
    const now = Date.now();
    for (const w of this.#waiters) if (w.deadline <= now) w.settle([]);
  }

  async #loop(): Promise<void> {
    this.#running = true;
    let line = this.#room.lines.take(this.#line);
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
        line ??= this.#room.lines.take(this.#line);
        let entries: string[];
        if (line === undefined) {
          // No line free: the shared wait pops one reply, the rest come without waiting.
          try {
            const first = await this.#room.lines.shared.wait(this.#key, blockMs);
            if (first === null || this.#closed) continue;
            entries = want > 1 ? [first, ...(await this.#side.pop(want - 1))] : [first];
          } catch {
            if (!this.#closed) await new Promise((resolve) => setTimeout(resolve, 100));
            continue;
          }
        } else {
          this.#line = line;
          const carried = await this.#room.pipeline.afterFlush(line.canCarry);
          let raw: unknown;
          try {
            let conn: Redis;
            try {
              conn = line.live ?? (await line.connection());
            } catch (err) {
              this.#room.pipeline.fail(carried, err);
              throw err;
            }
            let popped!: Promise<unknown>;
            corked(conn, () => {
              for (const c of carried) this.#room.pipeline.issue(conn, c);
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
        const leases = this.#side.read(this.#waiters.values().next().value?.leaseMs ?? MAX_BLOCK_MS, entries);
        this.#handOut(leases instanceof Promise ? await leases : leases);
      }
    } finally {
      if (line !== undefined) this.#room.lines.give(line);
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

/**
 * Replies from an inbox list's entries (attempt 1, token INBOX_TOKEN); entries that do not
 * decode are dead-lettered as malformed, and handed on as a settled lease marked `malformed` when
 * they name the request they answer. Synchronous unless one is.
 */
export function inboxLeases(
  queue: string,
  leaseMs: number,
  raw: readonly string[],
  deadLetter: (letter: DeadLetter, idseg: string) => Promise<unknown>,
): Lease[] | Promise<Lease[]> {
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
      const letter: DeadLetter = {
        message,
        queue,
        reason: 'malformed',
        error: err instanceof Error ? err.message : String(err),
        attempts: 1,
        deadAt: new Date(),
        raw: body,
      };
      (bad ??= []).push(
        deadLetter(letter, keySegment(message.id)).catch(() => {
          // Redis is failing: a malformed reply is dropped (an inbox is at most once).
        }),
      );
      // The requester is told at once (it would otherwise wait for its timeout): see `Lease.malformed`.
      if (message.headers['inReplyTo'] !== undefined) {
        leases.push({ queue, message, token: INBOX_SETTLED, deadline, malformed: letter.error ?? 'it did not decode' });
      }
    }
  }
  return bad === undefined ? leases : Promise.all(bad).then(() => leases);
}

/** Whether `lease` is of a reply taken from an inbox (settled or not): nothing of it is held in Redis. */
export function isInboxLease(lease: Lease): boolean {
  return lease.token === INBOX_TOKEN || lease.token === INBOX_SETTLED;
}

/** Settles a reply taken from an inbox (ack, requeue or dead letter): true the first time only. */
export function settleInboxLease(lease: Lease): boolean {
  if (lease.token !== INBOX_TOKEN) return false;
  lease.token = INBOX_SETTLED;
  return true;
}

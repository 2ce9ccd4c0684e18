import type { Lease } from '../../bus/transport.js';

/** Leases kept for the next `lease()` on one queue. */
interface Kept {
  leaseMs: number;
  leases: Lease[];
}

/**
 * Leases that arrived for nobody in particular (a pump armed by an ack got them before its
 * consumer asked again, or they were leased ahead for a busy consumer), kept per queue for the
 * next `lease()` there. What nobody claims in time is put back as if never leased (`undo`).
 */
export class PrefetchStash {
  readonly #kept = new Map<string, Kept>();
  readonly #undo: (lease: Lease) => Promise<void>;
  #closed = false;

  constructor(undo: (lease: Lease) => Promise<void>) {
    this.#undo = undo;
  }

  /** Whether leases are kept for `queue`. */
  has(queue: string): boolean {
    return this.#kept.has(queue);
  }

  /** Up to `max` leases kept for `queue` with this lease length (the rest stay for the next call). */
  take(queue: string, leaseMs: number, max: number): Lease[] {
    const kept = this.#kept.get(queue);
    if (kept === undefined || kept.leaseMs !== leaseMs) return [];
    if (kept.leases.length <= max) {
      this.#kept.delete(queue);
      return kept.leases;
    }
    return kept.leases.splice(0, max);
  }

  /**
   * Keeps `leases` for the next `lease()` on `queue`. Whatever nobody claims by the end of this
   * turn of the event loop, or within `holdMs` when given, is put back as if never leased.
   */
  keep(queue: string, leaseMs: number, leases: Lease[], holdMs?: number): void {
    if (this.#closed) {
      void this.undoAll(leases);
      return;
    }
    const kept = this.#kept.get(queue);
    if (kept !== undefined && kept.leaseMs === leaseMs) kept.leases.push(...leases);
    else {
      if (kept !== undefined) void this.undoAll(kept.leases);
      this.#kept.set(queue, { leaseMs, leases: [...leases] });
    }
    const unclaimedBack = () => {
      const still = this.#kept.get(queue);
      if (still === undefined) return;
      const unclaimed = still.leases.filter((l) => leases.includes(l));
      if (unclaimed.length === 0) return;
      still.leases = still.leases.filter((l) => !leases.includes(l));
      if (still.leases.length === 0) this.#kept.delete(queue);
      void this.undoAll(unclaimed);
    };
    if (holdMs === undefined) setImmediate(unclaimedBack);
    else setTimeout(unclaimedBack, holdMs).unref();
  }

  /** Puts back what is kept for `queue` (its consumer stopped). */
  drop(queue: string): void {
    const kept = this.#kept.get(queue);
    if (kept === undefined) return;
    this.#kept.delete(queue);
    void this.undoAll(kept.leases);
  }

  /** Puts `leases` back as if never leased; never rejects (a failing Redis lets them run out instead). */
  undoAll(leases: Lease[]): Promise<unknown> {
    return Promise.all(
      leases.map((lease) =>
        this.#undo(lease).catch(() => {
          // Redis is failing: the lease runs out and the message is delivered again then.
        }),
      ),
    );
  }

  /** Stops keeping: returns every kept lease (for the caller to put back); later ones are put back at once. */
  close(): Lease[] {
    this.#closed = true;
    const all = [...this.#kept.values()].flatMap((k) => k.leases);
    this.#kept.clear();
    return all;
  }
}

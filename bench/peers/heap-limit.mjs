// The in-memory limit: a hand-written async binary-heap priority queue, one promise per message.
// Higher priority first, FIFO within a priority (a sequence number breaks ties). The consumer
// awaits `take()` for every item; `ack()` only counts. Nothing a real bus needs (validation,
// ids, leases, retries, metrics) is here: this is what "just a heap and promises" costs.

export class HeapQueue {
  #prio = []; // parallel arrays keep the heap compact and monomorphic
  #seq = [];
  #items = [];
  #next = 0;
  #waiters = [];
  inFlight = 0;
  acked = 0;

  get size() {
    return this.#items.length;
  }

  /** Enqueues `item` with `priority` (higher first). Hands it straight to a waiting consumer if any. */
  push(item, priority) {
    const w = this.#waiters.shift();
    if (w !== undefined) {
      this.inFlight++;
      w(item);
      return;
    }
    const p = this.#prio,
      s = this.#seq,
      it = this.#items;
    let i = it.length;
    const seq = this.#next++;
    p.push(priority);
    s.push(seq);
    it.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (p[parent] > priority || (p[parent] === priority && s[parent] < seq)) break;
      p[i] = p[parent];
      s[i] = s[parent];
      it[i] = it[parent];
      i = parent;
    }
    p[i] = priority;
    s[i] = seq;
    it[i] = item;
  }

  #pop() {
    const p = this.#prio,
      s = this.#seq,
      it = this.#items;
    const top = it[0];
    const lastP = p.pop(),
      lastS = s.pop(),
      lastIt = it.pop();
    const n = it.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let c = l;
        if (r < n && (p[r] > p[l] || (p[r] === p[l] && s[r] < s[l]))) c = r;
        if (lastP > p[c] || (lastP === p[c] && lastS < s[c])) break;
        p[i] = p[c];
        s[i] = s[c];
        it[i] = it[c];
        i = c;
      }
      p[i] = lastP;
      s[i] = lastS;
      it[i] = lastIt;
    }
    return top;
  }

  /** A promise of the next item (highest priority first); waits when empty. */
  take() {
    if (this.#items.length > 0) {
      this.inFlight++;
      return Promise.resolve(this.#pop());
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  ack() {
    this.inFlight--;
    this.acked++;
  }
}

/** Runs `handler` on every item, one at a time (concurrency 1), acking after it resolves. */
export async function consume(queue, handler, count) {
  for (let i = 0; i < count; i++) {
    const item = await queue.take();
    await handler(item);
    queue.ack();
  }
}

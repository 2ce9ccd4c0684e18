/**
 * Coalesces calls made in the same tick into one backend call per key: 50 consumers that each
 * ack a message in the same turn of the event loop become one `ack-many` script, not 50.
 * By default the flush runs on `process.nextTick`, after the current chain of promise
 * continuations has settled, so it catches callers several `await`s deep; nothing waits for a
 * timer. With `schedule`, the owner decides when to call `flush()` (the Redis transport flushes
 * every coalescer right before it writes the tick's commands, so they share that write).
 */
export class Coalescer<K, Req, Res> {
  readonly #run: (key: K, requests: Req[]) => Promise<Res[]>;
  readonly #maxBatch: number;
  readonly #schedule: (() => void) | undefined;
  #pending = new Map<K, { requests: Req[]; settle: { resolve: (r: Res) => void; reject: (e: unknown) => void }[] }>();
  #scheduled = false;

  /** `run` gets every request of one key in call order and returns one result per request. */
  constructor(run: (key: K, requests: Req[]) => Promise<Res[]>, maxBatch = 1000, schedule?: () => void) {
    this.#run = run;
    this.#maxBatch = maxBatch;
    this.#schedule = schedule;
  }

  /** Adds a request to the current batch of `key`. */
  submit(key: K, request: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      let batch = this.#pending.get(key);
      if (!batch) {
        batch = { requests: [], settle: [] };
        this.#pending.set(key, batch);
      }
      batch.requests.push(request);
      batch.settle.push({ resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        if (this.#schedule) this.#schedule();
        else process.nextTick(() => this.flush());
      }
    });
  }

  /** Runs what is pending now (each key's batch starts its backend call synchronously). */
  flush(): void {
    if (!this.#scheduled) return;
    this.#scheduled = false;
    const pending = this.#pending;
    this.#pending = new Map();
    for (const [key, batch] of pending) {
      const whole = batch.requests.length <= this.#maxBatch;
      for (let i = 0; i < batch.requests.length; i += this.#maxBatch) {
        const requests = whole ? batch.requests : batch.requests.slice(i, i + this.#maxBatch);
        const settle = whole ? batch.settle : batch.settle.slice(i, i + this.#maxBatch);
        this.#run(key, requests).then(
          (results) => {
            for (let j = 0; j < settle.length; j++) settle[j]!.resolve(results[j] as Res);
          },
          (err: unknown) => {
            for (const s of settle) s.reject(err);
          },
        );
      }
    }
  }
}

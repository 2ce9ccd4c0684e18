/**
 * Coalesces calls made in the same tick into one backend call per key: 50 consumers that each
 * ack a message in the same turn of the event loop become one `ack-many` script, not 50.
 * The flush runs on `process.nextTick`, after the current chain of promise continuations has
 * settled, so it catches callers several `await`s deep; nothing waits for a timer.
 */
export class Coalescer<K, Req, Res> {
  readonly #run: (key: K, requests: Req[]) => Promise<Res[]>;
  readonly #maxBatch: number;
  #pending = new Map<K, { requests: Req[]; settle: { resolve: (r: Res) => void; reject: (e: unknown) => void }[] }>();
  #scheduled = false;

  /** `run` gets every request of one key in call order and returns one result per request. */
  constructor(run: (key: K, requests: Req[]) => Promise<Res[]>, maxBatch = 1000) {
    this.#run = run;
    this.#maxBatch = maxBatch;
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
        process.nextTick(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const pending = this.#pending;
    this.#pending = new Map();
    for (const [key, batch] of pending) {
      for (let i = 0; i < batch.requests.length; i += this.#maxBatch) {
        const requests = batch.requests.slice(i, i + this.#maxBatch);
        const settle = batch.settle.slice(i, i + this.#maxBatch);
        this.#run(key, requests).then(
          (results) => settle.forEach((s, j) => s.resolve(results[j] as Res)),
          (err: unknown) => settle.forEach((s) => s.reject(err)),
        );
      }
    }
  }
}

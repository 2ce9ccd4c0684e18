/** Latency summary in milliseconds. */
export interface LatencySummary {
  /** Mean over every delivery since the bus started. */
  averageMs: number;
  /** Percentiles over the most recent deliveries (a bounded window). */
  p50: number;
  p95: number;
  p99: number;
}

/**
 * Records delivery latencies: a running mean over all of them and a fixed-size ring of the most
 * recent ones for percentiles, so memory stays bounded and recording is O(1).
 */
export class LatencyRecorder {
  readonly #ring: Float64Array;
  #next = 0;
  #filled = 0;
  #count = 0;
  #sum = 0;

  /** `window`: how many recent samples the percentiles look at (default 8192). */
  constructor(window = 8192) {
    this.#ring = new Float64Array(window);
  }

  /** Adds one latency sample in ms. */
  record(ms: number): void {
    // biome-ignore lint/complexity/useMathMinMax: a NaN sample must count as 0, which Math.max would not do
    const v = ms > 0 ? ms : 0;
    this.#ring[this.#next] = v;
    this.#next = this.#next + 1 === this.#ring.length ? 0 : this.#next + 1;
    if (this.#filled < this.#ring.length) this.#filled++;
    this.#count++;
    this.#sum += v;
  }

  /** How many samples were recorded in all. */
  get count(): number {
    return this.#count;
  }

  /** Mean and percentiles; zeros before the first sample. */
  summary(): LatencySummary {
    if (this.#filled === 0) return { averageMs: 0, p50: 0, p95: 0, p99: 0 };
    const sorted = this.#ring.slice(0, this.#filled).sort();
    return {
      averageMs: this.#sum / this.#count,
      p50: percentile(sorted, 0.5),
      p95: percentile(sorted, 0.95),
      p99: percentile(sorted, 0.99),
    };
  }
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

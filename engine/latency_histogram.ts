// A latency histogram with fixed bucket bounds, in seconds, as Prometheus histograms are read:
// cumulative counts per upper bound, a sum and a count. The bounds run from 100 µs to 10 s,
// which covers an fsync on NVMe (tens of µs, counted in the first bucket) to one on a disk
// that has stalled, and a request from a hot fetch to a long poll. Recording is a short
// linear scan of 16 bounds and two additions: cheap enough for every fsync and every request.

import { assert } from "../record/mod.ts";

/** Upper bounds of the buckets in seconds, ascending; `+Inf` is implied after the last. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

for (let i = 1; i < LATENCY_BUCKETS_SECONDS.length; i++) {
  assert(LATENCY_BUCKETS_SECONDS[i - 1]! < LATENCY_BUCKETS_SECONDS[i]!, "histogram bounds ascend");
}

/** A histogram's state: counts per bucket (not cumulative; the last is +Inf), sum, count. */
export type HistogramSnapshot = {
  boundsSeconds: readonly number[];
  counts: number[];
  sumSeconds: number;
  count: number;
};

export class LatencyHistogram {
  readonly #counts = new Array<number>(LATENCY_BUCKETS_SECONDS.length + 1).fill(0);
  #sumSeconds = 0;
  #count = 0;

  /** Records one duration; a negative or non-finite one (a clock step) counts as 0. */
  observe(seconds: number): void {
    const value = Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS_SECONDS.length && value > LATENCY_BUCKETS_SECONDS[bucket]!) {
      bucket++;
    }
    this.#counts[bucket]!++;
    this.#sumSeconds += value;
    this.#count++;
  }

  get count(): number {
    return this.#count;
  }

  snapshot(): HistogramSnapshot {
    return {
      boundsSeconds: LATENCY_BUCKETS_SECONDS,
      counts: [...this.#counts],
      sumSeconds: this.#sumSeconds,
      count: this.#count,
    };
  }
}

// Latency histograms: HdrHistogram (hdr-histogram-js) recording microseconds with 3
// significant digits, reported in milliseconds. One histogram per interval takes the records;
// each second it is folded into the run's cumulative histogram and reset, so a message costs
// one record, not two.
//
// Worker processes send their interval histograms to the coordinator as EncodedHistogram: the
// non-empty buckets (index, count) of HdrHistogram's counts array plus the exact min and max.
// Every histogram here is built with the same parameters, so a decoded histogram has the same
// buckets as the one encoded, and merging the workers' histograms gives exactly the histogram
// of all their samples: percentiles are never averaged (test/bench/merge.test.ts).

import { build, type Histogram, type JsHistogram } from "hdr-histogram-js";

/** One hour in microseconds: anything slower is recorded as this and counted as clamped. */
export const LATENCY_MICROS_MAX = 60 * 60 * 1_000_000;
const SIGNIFICANT_DIGITS = 3;

/** The percentiles every summary reports (OMB's set, less 99.999 which needs long runs). */
export type LatencySummary = {
  count: number;
  avgMs: number;
  p50Ms: number;
  p75Ms: number;
  p95Ms: number;
  p99Ms: number;
  p999Ms: number;
  p9999Ms: number;
  maxMs: number;
};

/**
 * Points of a percentile curve: percentile key ("50.0", "99.9", ... as OMB's JSON writes its
 * Double keys; never integer-like, so the keys keep their rising order) → latency in ms.
 */
export type QuantileCurve = Record<string, number>;

/** "90.0" for 90, "99.9" for 99.9: the key of a percentile in a QuantileCurve. */
export function percentileKey(percentile: number): string {
  return Number.isInteger(percentile) ? percentile.toFixed(1) : String(percentile);
}

/**
 * The percentiles a curve samples: 0 to 99.999 in steps even on the classic HdrHistogram axis
 * (log of 1 / (1 - p)), ten per decade, plus 100 (the maximum).
 */
export const CURVE_PERCENTILES: readonly number[] = (() => {
  const points: number[] = [];
  for (let tenths = 0; tenths <= 50; tenths++) {
    const percentile = 100 * (1 - 10 ** -(tenths / 10));
    points.push(Number(percentile.toPrecision(6)));
  }
  points.push(100);
  return points;
})();

/**
 * A histogram on the wire: `buckets` holds pairs (index in HdrHistogram's counts array, count)
 * of the non-empty buckets, in rising index order; `maxMicros` and `minNonZeroMicros` are the
 * exact extremes HdrHistogram keeps beside its buckets.
 */
export type EncodedHistogram = {
  buckets: number[];
  maxMicros: number;
  minNonZeroMicros: number;
  clamped: number;
};

/** The most buckets an encoded histogram may name (the counts array is smaller). */
export const ENCODED_BUCKETS_MAX = 1 << 20;

export class LatencyHistogram {
  #histogram: Histogram;
  #clamped = 0;

  constructor() {
    this.#histogram = build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: LATENCY_MICROS_MAX,
      numberOfSignificantValueDigits: SIGNIFICANT_DIGITS,
      autoResize: false,
    });
  }

  /** The buckets, for encode and decode: build() makes a JsHistogram (no WebAssembly). */
  get #js(): JsHistogram {
    return this.#histogram as unknown as JsHistogram;
  }

  /** The histogram's buckets and extremes, exactly; see EncodedHistogram. */
  encode(): EncodedHistogram {
    const js = this.#js;
    const buckets: number[] = [];
    if (js.totalCount > 0) {
      const length = js.countsArrayLength;
      for (let index = 0; index < length; index++) {
        const count = js.getCountAtIndex(index);
        if (count > 0) buckets.push(index, count);
      }
    }
    return {
      buckets,
      maxMicros: js.totalCount > 0 ? js.maxValue : 0,
      minNonZeroMicros: js.totalCount > 0 ? js.minNonZeroValue : 0,
      clamped: this.#clamped,
    };
  }

  /**
   * Adds an encoded histogram's records to this one. The encoding comes from another process,
   * so it is validated: a bad one is a RangeError naming what is wrong, and adds nothing.
   */
  addEncoded(encoded: EncodedHistogram): void {
    const js = this.#js;
    const { buckets } = encoded;
    const length = js.countsArrayLength;
    if (!Array.isArray(buckets) || buckets.length % 2 !== 0) {
      throw new RangeError("an encoded histogram's buckets must be (index, count) pairs");
    }
    if (buckets.length > 2 * ENCODED_BUCKETS_MAX) {
      throw new RangeError(`an encoded histogram names ${buckets.length / 2} buckets`);
    }
    let total = 0;
    for (let at = 0; at < buckets.length; at += 2) {
      const index = buckets[at]!;
      const count = buckets[at + 1]!;
      if (!Number.isSafeInteger(index) || index < 0 || index >= length) {
        throw new RangeError(`encoded histogram bucket index ${index} is outside [0, ${length})`);
      }
      if (!Number.isSafeInteger(count) || count < 1) {
        throw new RangeError(`encoded histogram bucket ${index} has count ${count}`);
      }
      total += count;
    }
    const extremes = [encoded.maxMicros, encoded.minNonZeroMicros, encoded.clamped];
    if (!extremes.every((value) => Number.isSafeInteger(value) && value >= 0)) {
      throw new RangeError(`encoded histogram extremes ${JSON.stringify(extremes)} are invalid`);
    }
    if (total === 0) return;
    for (let at = 0; at < buckets.length; at += 2) {
      js.addToCountAtIndex(buckets[at]!, buckets[at + 1]!);
    }
    js.addToTotalCount(total);
    // The exact extremes, as recordValue would have left them for the same records.
    if (encoded.maxMicros > js.maxValue) js.maxValue = encoded.maxMicros;
    if (encoded.minNonZeroMicros > 0 && encoded.minNonZeroMicros < js.minNonZeroValue) {
      js.minNonZeroValue = encoded.minNonZeroMicros;
    }
    this.#clamped += encoded.clamped;
  }

  /** A histogram holding exactly the records of `encoded`. */
  static decode(encoded: EncodedHistogram): LatencyHistogram {
    const histogram = new LatencyHistogram();
    histogram.addEncoded(encoded);
    return histogram;
  }

  /** Records a latency in milliseconds (fractions kept to the microsecond). */
  recordMs(latencyMs: number): void {
    let micros = Math.round(latencyMs * 1000);
    // A clock read a hair before the stamp was written can give -0.0001 ms: that is zero.
    if (!(micros > 0)) micros = 0;
    if (micros > LATENCY_MICROS_MAX) {
      micros = LATENCY_MICROS_MAX;
      this.#clamped++;
    }
    this.#histogram.recordValue(micros);
  }

  get count(): number {
    return this.#histogram.totalCount;
  }

  /** Latencies above LATENCY_MICROS_MAX, recorded as that value. */
  get clamped(): number {
    return this.#clamped;
  }

  /** The latency at `percentile` (0-100) in ms; 0 for an empty histogram. */
  percentileMs(percentile: number): number {
    if (this.count === 0) return 0;
    const max = this.#histogram.maxValue;
    if (percentile >= 100) return max / 1000;
    // HdrHistogram answers with the top of the value's bucket, which can pass the true max.
    return Math.min(this.#histogram.getValueAtPercentile(percentile), max) / 1000;
  }

  get meanMs(): number {
    return this.count === 0 ? 0 : this.#histogram.mean / 1000;
  }

  get maxMs(): number {
    return this.count === 0 ? 0 : this.#histogram.maxValue / 1000;
  }

  summary(): LatencySummary {
    return {
      count: this.count,
      avgMs: this.meanMs,
      p50Ms: this.percentileMs(50),
      p75Ms: this.percentileMs(75),
      p95Ms: this.percentileMs(95),
      p99Ms: this.percentileMs(99),
      p999Ms: this.percentileMs(99.9),
      p9999Ms: this.percentileMs(99.99),
      maxMs: this.maxMs,
    };
  }

  /** The latency at each of CURVE_PERCENTILES, keyed by the percentile as a string. */
  curve(): QuantileCurve {
    const curve: QuantileCurve = {};
    if (this.count === 0) return curve;
    for (const percentile of CURVE_PERCENTILES) {
      curve[percentileKey(percentile)] = this.percentileMs(percentile);
    }
    return curve;
  }

  /** Adds every record of `other` to this histogram. */
  add(other: LatencyHistogram): void {
    this.#histogram.add(other.#histogram);
    this.#clamped += other.#clamped;
  }

  reset(): void {
    this.#histogram.reset();
    this.#clamped = 0;
  }
}

/**
 * Latency histograms for one measure (publish, end-to-end, ...): `interval` takes records,
 * `fold()` closes an interval (returning its summary) and adds it to `total` when it counts.
 */
export class IntervalHistogram {
  readonly interval = new LatencyHistogram();
  readonly total = new LatencyHistogram();

  recordMs(latencyMs: number): void {
    this.interval.recordMs(latencyMs);
  }

  fold(counts: boolean): LatencySummary {
    const summary = this.interval.summary();
    if (counts) this.total.add(this.interval);
    this.interval.reset();
    return summary;
  }
}

// Merging the workers' histograms: the coordinator's histogram of a run must be exactly the
// histogram of every sample every worker recorded, however the samples were split between
// workers and reports. Percentiles are never averaged.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { LATENCY_MICROS_MAX, LatencyHistogram } from "../../bench/histogram.ts";
import { LoadStats } from "../../bench/load_stats.ts";
import { RunStats } from "../../bench/stats.ts";

/** Latencies in ms from 0 to past the clamp, weighted toward the small values runs see. */
const latencyMs = fc.oneof(
  fc.double({ min: 0, max: 10, noNaN: true }),
  fc.double({ min: 0, max: 5_000, noNaN: true }),
  fc.double({ min: 0, max: (LATENCY_MICROS_MAX / 1000) * 1.01, noNaN: true }),
);

/** Samples, each with the worker (0..workers-1) that recorded it. */
const split = fc
  .integer({ min: 1, max: 8 })
  .chain((workers) =>
    fc.tuple(
      fc.constant(workers),
      fc.array(fc.tuple(latencyMs, fc.integer({ min: 0, max: workers - 1 })), { maxLength: 400 }),
    ),
  );

function same(merged: LatencyHistogram, all: LatencyHistogram): void {
  assert.deepEqual(merged.encode(), all.encode(), "the same buckets, extremes and clamp count");
  assert.deepEqual(merged.summary(), all.summary());
  assert.deepEqual(merged.curve(), all.curve());
  assert.equal(merged.percentileMs(99.999), all.percentileMs(99.999));
}

describe("merging workers' histograms", () => {
  test("the merge of the workers' histograms is the histogram of all samples", () => {
    fc.assert(
      fc.property(split, ([workers, samples]) => {
        const all = new LatencyHistogram();
        const each = Array.from({ length: workers }, () => new LatencyHistogram());
        for (const [ms, worker] of samples) {
          all.recordMs(ms);
          each[worker]!.recordMs(ms);
        }
        const merged = new LatencyHistogram();
        // Through JSON, as the reports travel between processes.
        for (const histogram of each)
          merged.addEncoded(JSON.parse(JSON.stringify(histogram.encode())));
        same(merged, all);
      }),
      { numRuns: 300 },
    );
  });

  test("reports merged by the coordinator over several samples give the run's histogram", () => {
    fc.assert(
      fc.property(split, fc.integer({ min: 1, max: 5 }), ([workers, samples], reports) => {
        const all = new LatencyHistogram();
        const each = Array.from({ length: workers }, () => new LoadStats());
        const stats = new RunStats(1);
        stats.setPhase("measure");
        const timing = { durationMs: 1000, targetRate: 1, brokerCpuPercent: null };
        // Each worker reports `reports` times, at different points of its samples.
        const cut = Math.ceil(samples.length / reports);
        for (let round = 0; round < reports; round++) {
          for (const [ms, worker] of samples.slice(round * cut, (round + 1) * cut)) {
            all.recordMs(ms);
            each[worker]!.recordAck(ms, 100);
            each[worker]!.recordReceive(ms, 100);
          }
          each.forEach((worker, i) => {
            stats.ingest(i, worker.report({ scheduled: 0, cpuMicros: 0, rssBytes: 0 }));
          });
          stats.sample({ elapsedMs: (round + 1) * 1000, ...timing });
        }
        same(stats.publish.total, all);
        same(stats.endToEnd.total, all);
        assert.equal(stats.acked, samples.length);
        assert.equal(stats.received, samples.length);
      }),
      { numRuns: 100 },
    );
  });

  test("a bad encoding from a worker is refused and adds nothing", () => {
    const histogram = new LatencyHistogram();
    histogram.recordMs(1);
    const bad = [
      { buckets: [1], maxMicros: 1, minNonZeroMicros: 1, clamped: 0 },
      { buckets: [-1, 1], maxMicros: 1, minNonZeroMicros: 1, clamped: 0 },
      { buckets: [1e12, 1], maxMicros: 1, minNonZeroMicros: 1, clamped: 0 },
      { buckets: [3, 0], maxMicros: 1, minNonZeroMicros: 1, clamped: 0 },
      { buckets: [3, 1], maxMicros: -5, minNonZeroMicros: 1, clamped: 0 },
    ];
    for (const encoded of bad) {
      assert.throws(() => histogram.addEncoded(encoded), RangeError);
    }
    assert.equal(histogram.count, 1);
  });
});

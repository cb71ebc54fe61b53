import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  CURVE_PERCENTILES,
  IntervalHistogram,
  LATENCY_MICROS_MAX,
  LatencyHistogram,
} from "../../bench/histogram.ts";
import {
  KeySource,
  PayloadSource,
  payloadTemplates,
  readStamp,
  UNIQUE_KEYS,
  writeStamp,
} from "../../bench/payload.ts";
import { LoadStats } from "../../bench/load_stats.ts";
import {
  BYTES_PER_MB,
  cpuPercent,
  mbPerSecond,
  ratePerSecond,
  RunStats,
} from "../../bench/stats.ts";
import { validateWorkload } from "../../bench/workload.ts";

/** Within 0.1%: HdrHistogram with 3 significant digits. */
function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= expected * 0.001 + 1e-9, `${what}: ${actual}`);
}

describe("latency histogram", () => {
  test("percentiles of 1..1000 ms are the matching values", () => {
    const histogram = new LatencyHistogram();
    for (let ms = 1; ms <= 1000; ms++) histogram.recordMs(ms);
    const summary = histogram.summary();
    assert.equal(summary.count, 1000);
    near(summary.p50Ms, 500, "p50");
    near(summary.p75Ms, 750, "p75");
    near(summary.p95Ms, 950, "p95");
    near(summary.p99Ms, 990, "p99");
    near(summary.p999Ms, 999, "p99.9");
    near(summary.p9999Ms, 1000, "p99.99");
    near(summary.maxMs, 1000, "max");
    near(summary.avgMs, 500.5, "mean");
  });

  test("sub-millisecond values keep microsecond resolution", () => {
    const histogram = new LatencyHistogram();
    for (let i = 0; i < 99; i++) histogram.recordMs(0.25);
    histogram.recordMs(40);
    near(histogram.percentileMs(50), 0.25, "p50");
    near(histogram.percentileMs(99), 0.25, "p99");
    near(histogram.maxMs, 40, "max");
  });

  test("an empty histogram reports zeros and an empty curve", () => {
    const histogram = new LatencyHistogram();
    assert.deepEqual(Object.values(histogram.summary()), [0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(histogram.curve(), {});
  });

  test("negative latencies count as zero; beyond an hour they are clamped and counted", () => {
    const histogram = new LatencyHistogram();
    histogram.recordMs(-0.001);
    histogram.recordMs(LATENCY_MICROS_MAX / 1000 + 5_000);
    assert.equal(histogram.count, 2);
    assert.equal(histogram.clamped, 1);
    near(histogram.maxMs, LATENCY_MICROS_MAX / 1000, "max");
  });

  test("the curve samples rising percentiles up to 99.999 and the max", () => {
    const histogram = new LatencyHistogram();
    for (let ms = 1; ms <= 100_000; ms++) histogram.recordMs(ms / 100);
    const curve = histogram.curve();
    assert.equal(Object.keys(curve).length, CURVE_PERCENTILES.length);
    assert.ok(CURVE_PERCENTILES.includes(90) && CURVE_PERCENTILES.includes(99.9));
    near(curve["90.0"]!, 900, "p90");
    near(curve["99.9"]!, 999, "p99.9");
    near(curve["100.0"]!, 1000, "max");
    const values = Object.values(curve);
    for (let i = 1; i < values.length; i++) assert.ok(values[i]! >= values[i - 1]!);
  });

  test("intervals fold into the total only while they count", () => {
    const latency = new IntervalHistogram();
    latency.recordMs(5);
    assert.equal(latency.fold(false).count, 1);
    assert.equal(latency.total.count, 0, "a warm-up interval is left out");
    latency.recordMs(7);
    latency.recordMs(9);
    const summary = latency.fold(true);
    assert.equal(summary.count, 2);
    assert.equal(latency.interval.count, 0, "the interval restarts");
    assert.equal(latency.total.count, 2);
    near(latency.total.maxMs, 9, "max");
  });
});

describe("rates", () => {
  test("rate, MB/s and CPU arithmetic", () => {
    assert.equal(ratePerSecond(5000, 2000), 2500);
    assert.equal(ratePerSecond(10, 0), 0);
    assert.equal(mbPerSecond(3 * BYTES_PER_MB, 1500), 2);
    assert.equal(cpuPercent(500_000, 1000), 50);
    assert.equal(cpuPercent(2_000_000, 1000), 200);
  });

  test("a sample merges the workers' reports into rates, backlog, lag and percentiles", () => {
    const producing = new LoadStats();
    const consuming = new LoadStats();
    for (let i = 0; i < 300; i++) {
      producing.recordSend(0.1);
      producing.recordAck(2, 1000);
    }
    for (let i = 0; i < 500; i++) consuming.recordReceive(3, 1000);
    producing.recordError(new Error("boom"));
    producing.recordError(new Error("boom"));
    const stats = new RunStats(2);
    stats.setPhase("measure");
    stats.ingest(0, producing.report({ scheduled: 340, cpuMicros: 200_000, rssBytes: 10 }));
    stats.ingest(1, consuming.report({ scheduled: 0, cpuMicros: 50_000, rssBytes: 20 }));
    const sample = stats.sample({
      elapsedMs: 1500,
      durationMs: 500,
      targetRate: 600,
      brokerCpuPercent: 12,
    });
    assert.equal(sample.publishRate, 600);
    assert.equal(sample.consumeRate, 1000);
    assert.equal(sample.publishMBps, (300 * 1000 * 2) / BYTES_PER_MB);
    assert.equal(sample.publishErrorRate, 4);
    assert.equal(sample.backlog, 300 * 2 - 500, "acknowledged × subscriptions − received");
    assert.equal(sample.scheduleLag, 340 - 300 - 2, "scheduled − acknowledged − failed");
    assert.equal(sample.cpuPercent, 50, "every worker's CPU over the sample");
    assert.equal(sample.brokerCpuPercent, 12);
    near(sample.publishLatency.p99Ms, 2, "publish p99");
    near(sample.endToEndLatency.p50Ms, 3, "e2e p50");
    assert.deepEqual(stats.errorSamples, ["boom"], "distinct messages kept once");
    assert.equal(stats.inFlight, 300 - 300 - 2);
    assert.equal(stats.rssBytesMax, 20);
    assert.deepEqual(stats.measured, {
      published: 300,
      publishedBytes: 300_000,
      consumed: 500,
      consumedBytes: 500_000,
    });
    // A worker's next report replaces its counters (they are cumulative).
    producing.recordAck(2, 1000);
    stats.ingest(0, producing.report({ scheduled: 341, cpuMicros: 300_000, rssBytes: 10 }));
    const next = stats.sample({
      elapsedMs: 2500,
      durationMs: 1000,
      targetRate: 600,
      brokerCpuPercent: null,
    });
    assert.equal(next.publishRate, 1);
    assert.equal(stats.acked, 301);
    assert.equal(next.cpuPercent, 10);
  });

  test("warm-up samples are left out of the totals", () => {
    const worker = new LoadStats();
    const stats = new RunStats(1);
    const timing = { durationMs: 1000, targetRate: 1, brokerCpuPercent: null };
    worker.recordAck(1, 10);
    stats.ingest(0, worker.report({ scheduled: 1, cpuMicros: 0, rssBytes: 0 }));
    stats.sample({ elapsedMs: 1000, ...timing });
    assert.equal(stats.publish.total.count, 0);
    assert.equal(stats.measured.published, 0);
    stats.setPhase("drain");
    worker.recordAck(1, 10);
    stats.ingest(0, worker.report({ scheduled: 2, cpuMicros: 0, rssBytes: 0 }));
    stats.sample({ elapsedMs: 2000, ...timing });
    assert.equal(stats.publish.total.count, 1, "the drain counts");
    assert.equal(
      stats.publishMeasured.count,
      0,
      "the sustained test's p99 is the measured phase's",
    );
    assert.equal(stats.acked, 2, "run totals keep everything");
  });
});

describe("payloads and keys", () => {
  const workload = validateWorkload({
    name: "p",
    topics: 1,
    partitionsPerTopic: 1,
    messageSize: 100,
    producersPerTopic: 1,
    subscriptionsPerTopic: 1,
    consumerPerSubscription: 1,
    producerRate: 1,
    testDurationSeconds: 1,
    useRandomizedPayloads: true,
    randomBytesRatio: 0.25,
    randomizedPayloadPoolSize: 3,
  });

  test("the send stamp survives a round trip through the payload's first 8 bytes", () => {
    const payload = new Uint8Array(12);
    writeStamp(payload, 123_456.789);
    assert.equal(readStamp(payload), 123_456.789);
    assert.ok(Number.isNaN(readStamp(new Uint8Array(4))));
  });

  test("each payload is fresh: one handed out is never written again", () => {
    const source = new PayloadSource([new Uint8Array(64)]);
    const first = source.next(1);
    const second = source.next(2);
    assert.equal(readStamp(first), 1);
    assert.equal(readStamp(second), 2);
    assert.equal(first.length, 64);
  });

  test("acknowledged payloads' slabs are carved again; a payload still out never is", () => {
    const source = new PayloadSource([new Uint8Array(1024)]);
    const perSlab = 1024;
    // A steady load: each payload is acknowledged a little after it was handed out.
    const out: Uint8Array[] = [];
    for (let i = 0; i < perSlab * 20; i++) {
      out.push(source.next(i));
      if (out.length > 100) source.release(out.shift()!);
    }
    assert.ok(source.slabsAllocated <= 3, `${source.slabsAllocated} slabs for a steady load`);
    // Payloads still out keep their stamps while many more are carved and released.
    const held = out.slice();
    for (let i = 0; i < perSlab * 5; i++) source.release(source.next(-1));
    for (const [i, payload] of held.entries()) {
      assert.equal(readStamp(payload), perSlab * 20 - 100 + i);
    }
  });

  test("a payload never released (its send failed) keeps its slab out of reuse", () => {
    const source = new PayloadSource([new Uint8Array(1024)]);
    const failed = source.next(7);
    for (let i = 1; i < 1024 * 10; i++) source.release(source.next(i));
    assert.equal(readStamp(failed), 7);
    assert.throws(() => {
      const again = source.next(1);
      source.release(again);
      source.release(again);
    }, /released twice/);
  });

  test("randomized payloads: a pool, randomBytesRatio random bytes then zeros", () => {
    const templates = payloadTemplates(workload);
    assert.equal(templates.length, 3);
    for (const template of templates) {
      assert.equal(template.length, 100);
      assert.ok(template.subarray(25).every((byte) => byte === 0));
    }
  });

  test("key distributors: none, round robin over the key set, clock-picked", () => {
    assert.equal(new KeySource("NO_KEY").next(), null);
    const roundRobin = new KeySource("KEY_ROUND_ROBIN");
    const first = roundRobin.next();
    for (let i = 1; i < UNIQUE_KEYS; i++) roundRobin.next();
    assert.equal(roundRobin.next(), first, "the cycle repeats after every key");
    const random = new KeySource("RANDOM_NANO").next();
    assert.equal(random?.length, 7);
  });
});

// The broker's fdatasync figures beside a run's ack latency (bench/disk_syncs.ts): parsing the
// `sluice_fsync_seconds` histogram out of /metrics text, the difference of two readings, the
// percentiles read from its buckets, and the sluice driver reading a `sluice serve` child's
// /metrics before and after fdatasyncs it caused.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ackCells, formatAckTable } from "../../bench/ack_table.ts";
import {
  diskSyncFields,
  histogramDelta,
  histogramPercentileMs,
  NO_DISK_SYNCS,
  parseDiskSyncs,
  parseHistogram,
} from "../../bench/disk_syncs.ts";
import { SluiceTcpDriver } from "../../bench/drivers/sluice.ts";
import { LatencyHistogram } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";

const NAME = "sluice_fsync_seconds";

/** A /metrics excerpt in ops/metrics.ts' format: 1 ms buckets up to 4 ms, then +Inf. */
function exposition(cumulative: number[], infinite: number, sum: number, name = NAME): string {
  const lines = [
    "# HELP sluice_up 1 while the broker runs.",
    "# TYPE sluice_up gauge",
    "sluice_up 1",
    `# HELP ${name} fdatasync of a partition segment, in seconds.`,
    `# TYPE ${name} histogram`,
    ...cumulative.map((value, i) => `${name}_bucket{le="${(i + 1) / 1000}"} ${value}`),
    `${name}_bucket{le="+Inf"} ${infinite}`,
    `${name}_sum ${sum}`,
    `${name}_count ${infinite}`,
    'sluice_request_seconds_bucket{api="Produce",le="0.001"} 7',
  ];
  return `${lines.join("\n")}\n`;
}

describe("disk syncs: the broker's fsync histogram", () => {
  test("parses cumulative buckets into counts per bucket, +Inf last", () => {
    const histogram = parseHistogram(exposition([2, 5, 5, 9], 10, 0.025), NAME);
    assert.deepEqual(histogram, {
      boundsSeconds: [0.001, 0.002, 0.003, 0.004],
      counts: [2, 3, 0, 4, 1],
      sumSeconds: 0.025,
      count: 10,
    });
  });

  test("group-commit rounds: the round histogram and the rounds by way, over the phase", () => {
    const segments = exposition([2, 5, 5, 9], 10, 0.025);
    const rounds = (cumulative: number[], count: number, syncfs: number, fdatasync: number) =>
      `${exposition(cumulative, count, 0.01, "sluice_group_sync_round_seconds")}` +
      `sluice_group_sync_rounds_total{way="syncfs"} ${syncfs}\n` +
      `sluice_group_sync_rounds_total{way="fdatasync"} ${fdatasync}\n`;
    const before = parseDiskSyncs(segments + rounds([1, 1, 1, 1], 1, 1, 0));
    const after = parseDiskSyncs(segments + rounds([1, 1, 1, 5], 5, 3, 2));
    assert.deepEqual(before?.groupSync?.rounds.counts, [1, 0, 0, 0, 0]);
    assert.equal(after?.groupSync?.flushRounds, 3);
    assert.equal(after?.groupSync?.fdatasyncRounds, 2);
    const fields = diskSyncFields(before, after);
    assert.equal(fields.syncRoundCount, 4);
    assert.equal(fields.syncRoundFlushCount, 2);
    // Every round of the phase took 3-4 ms.
    assert.equal(fields.syncRoundP50Ms, 3.5);
    assert.ok(fields.syncRoundP99Ms! > 3.9 && fields.syncRoundP99Ms! <= 4);
    // Without the counters (an older broker) the round fields are not known.
    assert.equal(parseDiskSyncs(segments)?.groupSync, null);
    assert.equal(diskSyncFields(parseDiskSyncs(segments), after).syncRoundCount, null);
    // Counters that fell (a restarted broker) are refused, not read as a quiet disk.
    assert.throws(() => diskSyncFields(after, before), RangeError);
  });

  test("a /metrics text gives both histograms; one without the queue's has it null", () => {
    const segments = exposition([2, 5, 5, 9], 10, 0.025);
    const queue = exposition([1, 1, 1, 1], 1, 0.0015, "sluice_queue_fsync_seconds");
    const reading = parseDiskSyncs(segments + queue);
    assert.deepEqual(reading?.segments.counts, [2, 3, 0, 4, 1]);
    assert.deepEqual(reading?.queueState?.counts, [1, 0, 0, 0, 0]);
    assert.equal(parseDiskSyncs(segments)?.queueState, null);
    assert.equal(parseDiskSyncs("sluice_up 1\n"), null);
  });

  test("an absent family is null; a broken one is a RangeError naming the line", () => {
    assert.equal(parseHistogram("sluice_up 1\n", NAME), null);
    assert.throws(
      () => parseHistogram(exposition([2, 1, 5, 9], 10, 0), NAME),
      (error: unknown) => error instanceof RangeError && /count 1 falls/.test(error.message),
    );
    assert.throws(
      () => parseHistogram(`${NAME}_bucket{le="0.001"} 3\n${NAME}_count 3\n`, NAME),
      (error: unknown) => error instanceof RangeError && /\+Inf/.test(error.message),
    );
    assert.throws(
      () => parseHistogram(`${NAME}_bucket{le="0.001"} x\n`, NAME),
      (error: unknown) => error instanceof RangeError && /value x/.test(error.message),
    );
  });

  test("the delta of two readings holds only what happened between them", () => {
    const before = parseHistogram(exposition([2, 5, 5, 9], 10, 0.025), NAME)!;
    const after = parseHistogram(exposition([2, 105, 105, 109], 110, 0.175), NAME)!;
    const delta = histogramDelta(before, after);
    assert.deepEqual(delta.counts, [0, 100, 0, 0, 0]);
    assert.equal(delta.count, 100);
    assert.ok(Math.abs(delta.sumSeconds - 0.15) < 1e-12);
    // Every fdatasync of the phase took 1-2 ms: the percentiles fall inside that bucket.
    assert.equal(histogramPercentileMs(delta, 50), 1.5);
    assert.equal(histogramPercentileMs(delta, 99), 1.99);
    const queueBefore = new LatencyHistogram();
    const queueAfter = new LatencyHistogram();
    queueAfter.observe(0.003);
    assert.deepEqual(
      diskSyncFields(
        { segments: before, queueState: queueBefore.snapshot() },
        { segments: after, queueState: queueAfter.snapshot() },
      ),
      {
        // No group-commit readings here: those fields are not known.
        syncRoundCount: null,
        syncRoundFlushCount: null,
        syncRoundP50Ms: null,
        syncRoundP99Ms: null,
        fsyncCount: 100,
        fsyncP50Ms: 1.5,
        fsyncP99Ms: 1.99,
        queueFsyncCount: 1,
        queueFsyncP50Ms: 3.75,
        // Interpolated in the 2.5-5 ms bucket, in the same order of operations.
        queueFsyncP99Ms: (0.0025 + (0.005 - 0.0025) * 0.99) * 1000,
      },
    );
    // A broker that restarted between the readings: its counters fell.
    assert.throws(() => histogramDelta(after, before), RangeError);
  });

  test("percentiles interpolate inside a bucket; +Inf reports the last bound", () => {
    const histogram = new LatencyHistogram();
    for (let i = 0; i < 98; i++) histogram.observe(0.0002); // the 100-250 µs bucket
    histogram.observe(0.004); // 2.5-5 ms
    histogram.observe(30); // past 10 s: +Inf
    const snapshot = histogram.snapshot();
    assert.equal(histogramPercentileMs(snapshot, 50), 0.1 + (0.15 * 50) / 98);
    assert.equal(histogramPercentileMs(snapshot, 99), 5);
    assert.equal(histogramPercentileMs(snapshot, 100), 10_000);
    assert.equal(histogramPercentileMs(new LatencyHistogram().snapshot(), 99), null);
    assert.throws(() => histogramPercentileMs(snapshot, 101), RangeError);
    assert.deepEqual(diskSyncFields(null, { segments: snapshot, queueState: null }), NO_DISK_SYNCS);
  });

  test("the ack table shows the fsync figures beside the ack latency", () => {
    const row = {
      driver: "sluice",
      ackMode: "per-message" as const,
      consumeRateAvg: 1000,
      totalMessagesReceived: 5000,
      redeliveries: 0,
      released: 0,
      answerFailures: 0,
      deadLettered: 0,
      ackLatency50pct: 3,
      ackLatency99pct: 19.8,
      ackLatency999pct: 40,
      fsyncP50Ms: 2.75,
      fsyncP99Ms: 9.5,
      queueFsyncP50Ms: 3,
      queueFsyncP99Ms: 12,
    };
    assert.deepEqual(ackCells(row).slice(-4), ["2.75", "9.50", "3.00", "12.0"]);
    assert.match(formatAckTable([row]), /fsync p50\s+fsync p99\s+ack fsync p50\s+ack fsync p99/);
  });

  test("the sluice driver reads a `sluice serve` child's /metrics", async () => {
    using dir = tempDir();
    const driver = new SluiceTcpDriver({ workDir: dir.path, options: { acks: "all" } });
    try {
      await driver.initialize();
      const before = await driver.diskSyncs();
      assert.ok(before !== null, "the child's /metrics is read");
      await driver.createTopic("t", 1);
      const producer = await driver.createProducer("t");
      for (let i = 0; i < 5; i++) await producer.sendAsync(null, new Uint8Array(100));
      await producer.close();
      const after = await driver.diskSyncs();
      const fields = diskSyncFields(before, after);
      assert.ok(fields.fsyncCount !== null && fields.fsyncCount >= 1, `${fields.fsyncCount}`);
      assert.ok(fields.fsyncP50Ms !== null && fields.fsyncP50Ms <= fields.fsyncP99Ms!);
      // No queue here: its histogram is exported, and empty over the interval.
      assert.equal(fields.queueFsyncCount, 0);
      assert.equal(fields.queueFsyncP99Ms, null);
      // Each acks=all send waited for a group-commit round of its own.
      assert.ok(fields.syncRoundCount !== null && fields.syncRoundCount >= 1, `${fields}`);
      assert.ok(fields.syncRoundFlushCount !== null);
      assert.ok(fields.syncRoundFlushCount <= fields.syncRoundCount);
      assert.ok(fields.syncRoundP50Ms !== null && fields.syncRoundP50Ms <= fields.syncRoundP99Ms!);
    } finally {
      await driver.close();
    }
  });
});

// Delayed delivery in the harness (workload `deliveryDelayMsMax`): how lateness is counted
// (payloads stamped with their due time; an early delivery counted apart, never folded into
// the percentiles), the lateness table, the RabbitMQ driver's delay options, and whole delayed
// runs against RabbitMQ (per-message TTL + dead-letter, and fixed-TTL buckets), skipped with
// the command that starts it when it is not running.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runBench } from "../../bench/cli.ts";
import { DriverUnavailableError } from "../../bench/driver.ts";
import { DRIVERS } from "../../bench/drivers/mod.ts";
import {
  bucketTtlsMs,
  createRabbitMqDriver,
  RABBITMQ_TTL_MS_MAX,
  rabbitMqOptions,
} from "../../bench/drivers/rabbitmq.ts";
import { formatLatenessTable } from "../../bench/lateness_table.ts";
import { LoadStats } from "../../bench/load_stats.ts";
import { clockStepNotice } from "../../bench/clock_step.ts";
import { type BenchResult, buildResult, latenessFields } from "../../bench/result.ts";
import { type RunOutcome, runWorkload } from "../../bench/runner.ts";
import { RunStats } from "../../bench/stats.ts";
import { ackingHandlers } from "../../bench/worker/session.ts";
import { validateWorkload } from "../../bench/workload.ts";
import { tempDir } from "../helpers.ts";

/** A payload stamped with `dueMs`, as the load generator stamps delayed messages. */
function stamped(dueMs: number): Uint8Array {
  const payload = new Uint8Array(16);
  new DataView(payload.buffer).setFloat64(0, dueMs, true);
  return payload;
}

/** A coordinator's stats after one worker reported `stats`, the interval folded as measured. */
function measuredStats(stats: LoadStats): RunStats {
  const run = new RunStats(1);
  run.setPhase("measure");
  run.ingest(0, stats.report({ scheduled: 0, cpuMicros: 0, rssBytes: 0 }));
  run.sample({ elapsedMs: 1000, durationMs: 1000, targetRate: 1, brokerCpuPercent: null });
  return run;
}

const DELAYED_FIELDS = {
  name: "tiny-delayed",
  topics: 1,
  partitionsPerTopic: 2,
  messageSize: 64,
  producersPerTopic: 1,
  subscriptionsPerTopic: 1,
  consumerPerSubscription: 2,
  producerRate: 200,
  warmupDurationSeconds: 0,
  testDurationSeconds: 3,
  ackMode: "per-message",
  deliveryDelayMsMax: 1500,
};
const DELAYED = validateWorkload(DELAYED_FIELDS, "tiny-delayed.yaml");

describe("lateness accounting", () => {
  test("early deliveries are counted apart; percentiles come from on-time and late ones", () => {
    const stats = new LoadStats({ dueTimes: true });
    let nowMs = 0;
    const handlers = ackingHandlers(stats, () => nowMs, 0);
    // Due at 100 ms each; received 5 ms and 1.5 ms early, 0.5 ms before due (within the due
    // time's 1 ms resolution: on time), exactly on time, 3 and 7 ms late.
    for (const receivedMs of [95, 98.5, 99.5, 100, 103, 107]) {
      nowMs = receivedMs;
      assert.equal(handlers.onDelivery(stamped(100), false), "accept");
    }
    const run = measuredStats(stats);
    assert.equal(run.endToEnd.total.count, 4, "only deliveries at or after their due time");
    assert.equal(run.early.total.count, 2);
    const settings = { delayPath: "test path" };
    const fields = latenessFields(DELAYED, { stats: run, settings } as unknown as RunOutcome);
    assert.equal(fields.earlyDeliveries, 2);
    assert.ok(Math.abs(fields.earlyByMsMax! - 5) < 0.01, `earliest by ${fields.earlyByMsMax}`);
    assert.ok(Math.abs(fields.latenessP50Ms! - 0) < 0.01, `p50 ${fields.latenessP50Ms}`);
    assert.ok(Math.abs(fields.latenessMaxMs! - 7) < 0.01, `max ${fields.latenessMaxMs}`);
    assert.equal(fields.delayPath, "test path");
  });

  test("without due times a negative latency is a clock hair and counts as zero", () => {
    const stats = new LoadStats();
    stats.recordDelivery(-5, false, false);
    const run = measuredStats(stats);
    assert.equal(run.early.total.count, 0);
    assert.equal(run.endToEnd.total.count, 1);
    assert.equal(run.endToEnd.total.maxMs, 0);
  });

  test("a workload without delays has no lateness fields", () => {
    const workload = validateWorkload({ ...DELAYED_FIELDS, deliveryDelayMsMax: 0 }, "plain.yaml");
    const run = measuredStats(new LoadStats());
    const fields = latenessFields(workload, { stats: run, settings: {} } as unknown as RunOutcome);
    assert.deepEqual(Object.values(fields), [null, null, null, null, null, null]);
  });

  test("the lateness table shows delayed runs with their delay path, and no others", () => {
    const row = {
      driver: "rabbitmq",
      delayPath: "ttl-dlx: per-message TTL",
      latenessP50Ms: 4321,
      latenessP99Ms: 9876,
      latenessMaxMs: 10_012,
      earlyDeliveries: 0,
      earlyByMsMax: null,
    };
    const plain = { ...row, driver: "plain", delayPath: null };
    const table = formatLatenessTable([row, plain]);
    assert.match(table, /^rabbitmq\s+4321\s+9876\s+10012\s+0\s+—\s+ttl-dlx: per-message TTL$/m);
    assert.doesNotMatch(table, /^plain/m);
    assert.equal(formatLatenessTable([plain]), "");
  });
});

describe("the rabbitmq driver's delay options", () => {
  test("the rabbitmq driver is listed as delaying messages", () => {
    assert.equal(DRIVERS.find((entry) => entry.name === "rabbitmq")?.delayedDelivery, true);
  });

  test("ttl-dlx by default; buckets split the longest delay evenly, rounding up", () => {
    const options = rabbitMqOptions({}, "per-message", 0, 10_000);
    assert.equal(options.delayPath, "ttl-dlx");
    assert.equal(options.delayQueues, 1);
    const buckets = rabbitMqOptions({ delay: "buckets" }, "per-message", 0, 10_000);
    assert.equal(buckets.delayQueues, 10);
    assert.deepEqual(bucketTtlsMs(10_000, 4), [2500, 5000, 7500, 10_000]);
    assert.deepEqual(bucketTtlsMs(10, 3), [4, 7, 10]);
  });

  test("bad delay options are RangeErrors naming the value", () => {
    assert.throws(
      () => rabbitMqOptions({ delay: "plugin" }, "per-message", 0, 1000),
      /delay=plugin is not one of ttl-dlx, buckets/,
    );
    assert.throws(
      () => rabbitMqOptions({ "delay-queues": "4" }, "per-message", 0, 1000),
      /delay-queues=4 needs delay=buckets/,
    );
    assert.throws(
      () => rabbitMqOptions({ delay: "buckets", "delay-queues": "0" }, "per-message", 0, 1000),
      /delay-queues=0 is not an integer in \[1, 100\]/,
    );
    assert.throws(
      () => rabbitMqOptions({}, "per-message", 0, RABBITMQ_TTL_MS_MAX + 1),
      new RegExp(`deliveryDelayMsMax ${RABBITMQ_TTL_MS_MAX + 1} exceeds`),
    );
    assert.throws(() => rabbitMqOptions({}, "per-message", 0, -1), /deliveryDelayMsMax -1/);
  });
});

const probe = createRabbitMqDriver({}, "per-message");
let rabbitSkip: string | false = false;
try {
  await probe.initialize();
} catch (error) {
  if (!(error instanceof DriverUnavailableError)) throw error;
  rabbitSkip = `${error.message}; ${error.hint} (bash scripts/peers.sh start rabbitmq)`;
}
await probe.close();

async function runDelayed(options: Record<string, string>): Promise<BenchResult> {
  using dir = tempDir();
  const driver = createRabbitMqDriver(options, "per-message", 0, DELAYED.deliveryDelayMsMax);
  await driver.initialize();
  try {
    const outcome = await runWorkload(driver, DELAYED, { progress: () => {} });
    return buildResult({ driverName: driver.name, workload: DELAYED, outcome, dataDir: dir.path });
  } finally {
    await driver.close();
  }
}

function checkDelivered(result: BenchResult): void {
  assert.ok(result.totalMessagesSent > 300, `sent ${result.totalMessagesSent}`);
  assert.equal(result.errors, 0, result.errorMessages.join("; "));
  assert.equal(result.totalMessagesReceived, result.totalMessagesSent);
  assert.equal(result.drained, true);
  assert.ok(Number.isFinite(result.clockStepMs), `clock step ${result.clockStepMs}`);
  // A wall-clock step during the run (the VM paused) moves due times against the harness's
  // clock: early deliveries then say nothing about the broker (bench/clock_step.ts).
  if (clockStepNotice(result.driver, result.clockStepMs) === undefined) {
    assert.equal(result.earlyDeliveries, 0, `earliest by ${result.earlyByMsMax} ms`);
    assert.equal(result.earlyByMsMax, null);
  }
  assert.ok(result.latenessP50Ms !== null && result.latenessP50Ms >= 0);
  assert.ok(result.latenessP99Ms !== null && result.latenessP99Ms >= result.latenessP50Ms);
  assert.ok(result.latenessMaxMs !== null && result.latenessMaxMs >= result.latenessP99Ms);
}

describe("delayed runs against RabbitMQ", () => {
  test("ttl-dlx: every message arrives, none before its due time", {
    skip: rabbitSkip,
  }, async () => {
    const result = await runDelayed({});
    checkDelivered(result);
    assert.match(String(result.delayPath), /^ttl-dlx: per-message TTL/);
    assert.match(formatLatenessTable([result]), /^rabbitmq\s/m);
    // A delay queue is FIFO and expires only at its head, so messages wait behind longer
    // delays: the worst lateness approaches the longest delay.
    assert.ok(result.latenessMaxMs! > 100, `lateness max ${result.latenessMaxMs} ms`);
  });

  test("buckets: every message arrives, none early, late by about a bucket at most", {
    skip: rabbitSkip,
  }, async () => {
    const result = await runDelayed({ delay: "buckets", "delay-queues": "3" });
    checkDelivered(result);
    assert.match(String(result.delayPath), /^buckets: 3 delay queues per partition/);
    // Rounded up to a 500 ms bucket; the rest is the broker and the harness.
    assert.ok(result.latenessMaxMs! < 2000, `lateness max ${result.latenessMaxMs} ms`);
  });

  test("the command with a worker process: the driver options reach the worker's producers", {
    skip: rabbitSkip,
  }, async () => {
    using dir = tempDir();
    const workloadFile = join(dir.path, "tiny-delayed.json");
    fs.writeFileSync(workloadFile, JSON.stringify(DELAYED_FIELDS));
    const out = join(dir.path, "out");
    const log: string[] = [];
    const outcome = await runBench({
      workload: workloadFile,
      drivers: "rabbitmq",
      driverOptions: "rabbitmq.delay=buckets,rabbitmq.delay-queues=3",
      out,
      workers: 1,
      limits: false,
      drainTimeoutMs: 15_000,
      log: (line) => log.push(line),
      progress: () => {},
    });
    assert.equal(outcome.exitCode, 0, log.join("\n"));
    const result = JSON.parse(fs.readFileSync(join(out, "rabbitmq.json"), "utf8")) as BenchResult;
    assert.equal(result.workers, 1);
    checkDelivered(result);
    assert.match(String(result.delayPath), /^buckets: 3 delay queues per partition/);
    // The lateness table names the delay path.
    assert.match(log.join("\n"), /^rabbitmq\s.*\s0\s+—\s+buckets: 3 delay queues/m);
  });

  test("a delay without delay queues is refused before anything is sent", {
    skip: rabbitSkip,
  }, async () => {
    const driver = createRabbitMqDriver({}, "per-message");
    await driver.initialize();
    try {
      await driver.createTopic("delay-refused", 1);
      const producer = await driver.createProducer("delay-refused");
      assert.throws(
        () => producer.sendAsync(null, new Uint8Array(16), 250),
        /a delay of 250 ms, but the driver was made without delays/,
      );
      await producer.close();
    } finally {
      await driver.close();
    }
  });
});

// The workload's `ackMode: per-message`: the field and its release ratio, the harness's answers,
// and whole runs against sluice (a queue and QueueConsumers over TCP, the server in this
// process) and RabbitMQ (one basic.ack per message; skipped with the command that starts it
// when it is not running). Each run checks that every acknowledged send ended accepted exactly
// once (no accept of one message twice), that released messages came back as redeliveries,
// and that the result's counts and ack latencies say so.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatAckTable } from "../../bench/ack_table.ts";
import { type AckingHandlers, type Driver, DriverUnavailableError } from "../../bench/driver.ts";
import { createRabbitMqDriver } from "../../bench/drivers/rabbitmq.ts";
import { SluiceTcpDriver } from "../../bench/drivers/sluice.ts";
import { SluiceEmbeddedDriver } from "../../bench/drivers/sluice_embedded.ts";
import { LoadStats } from "../../bench/load_stats.ts";
import { readStamp } from "../../bench/payload.ts";
import { type BenchResult, buildResult } from "../../bench/result.ts";
import { runWorkload } from "../../bench/runner.ts";
import { ackingHandlers } from "../../bench/worker/session.ts";
import { loadWorkload, validateWorkload, WorkloadError } from "../../bench/workload.ts";
import { tempDir } from "../helpers.ts";

const TINY = {
  name: "tiny-per-message",
  topics: 1,
  partitionsPerTopic: 4,
  messageSize: 64,
  producersPerTopic: 1,
  subscriptionsPerTopic: 1,
  consumerPerSubscription: 3,
  producerRate: 400,
  warmupDurationSeconds: 0,
  testDurationSeconds: 2,
  ackMode: "per-message",
  releaseRatio: 0.1,
};

describe("workload ackMode and releaseRatio", () => {
  test("ackMode defaults to stream, releaseRatio to 0", () => {
    const { ackMode: _a, releaseRatio: _r, ...rest } = TINY;
    const workload = validateWorkload(rest);
    assert.equal(workload.ackMode, "stream");
    assert.equal(workload.releaseRatio, 0);
  });

  test("an unknown ackMode names the field and the value", () => {
    assert.throws(
      () => validateWorkload({ ...TINY, ackMode: "each" }, "w.yaml"),
      (error: unknown) =>
        error instanceof WorkloadError &&
        error.field === "ackMode" &&
        /"each" is invalid: must be one of stream, per-message/.test(error.message),
    );
  });

  test("releaseRatio needs ackMode per-message and stays within [0, 0.5]", () => {
    assert.throws(
      () => validateWorkload({ ...TINY, ackMode: "stream" }, "w.yaml"),
      /releaseRatio = 0.1 is invalid: needs ackMode: per-message/,
    );
    assert.throws(() => validateWorkload({ ...TINY, releaseRatio: 0.9 }), /must be in \[0, 0.5\]/);
  });

  test("deliveryDelayMsMax needs ackMode per-message and stays within one year", () => {
    assert.equal(validateWorkload(TINY, "t.yaml").deliveryDelayMsMax, 0);
    assert.throws(
      () =>
        validateWorkload({ ...TINY, ackMode: "stream", releaseRatio: 0, deliveryDelayMsMax: 5 }),
      /deliveryDelayMsMax = 5 is invalid: needs ackMode: per-message/,
    );
    assert.throws(
      () => validateWorkload({ ...TINY, deliveryDelayMsMax: 31_536_000_001 }),
      /deliveryDelayMsMax/,
    );
    assert.equal(loadWorkload("delayed-1kb").deliveryDelayMsMax, 10_000);
  });

  test("queue-1kb, queue-1kb-release and the old name queue-ack-1kb load", () => {
    const queue = loadWorkload("queue-1kb");
    assert.equal(queue.ackMode, "per-message");
    assert.equal(queue.partitionsPerTopic, 16);
    assert.equal(queue.producersPerTopic, 4);
    assert.equal(queue.consumerPerSubscription, 4);
    assert.equal(queue.producerRate, 0);
    assert.equal(loadWorkload("queue-1kb-release").releaseRatio, 0.01);
    const { source: _a, name: _n, ...old } = loadWorkload("queue-ack-1kb");
    const { source: _b, name: _m, ...current } = queue;
    assert.deepEqual(old, current);
  });
});

describe("the harness's answers", () => {
  test("a first delivery is released at releaseRatio, a redelivered one always accepted", () => {
    const stats = new LoadStats();
    const draws = [0.05, 0.5, 0.05];
    const handlers = ackingHandlers(
      stats,
      () => 10,
      0.1,
      () => draws.shift() ?? 1,
    );
    const payload = new Uint8Array(16);
    new DataView(payload.buffer).setFloat64(0, 4);
    assert.equal(handlers.onDelivery(payload, false), "release");
    assert.equal(handlers.onDelivery(payload, false), "accept");
    assert.equal(handlers.onDelivery(payload, true), "accept");
    handlers.onAccepted(16, 2.5);
    handlers.onAccepted(16, null);
    const { counters } = stats;
    assert.equal(counters.released, 1);
    assert.equal(counters.redeliveries, 1);
    assert.equal(counters.received, 2, "accepts confirmed, not deliveries");
    assert.equal(stats.endToEnd.count, 2, "end-to-end latency of the accepted deliveries");
    assert.equal(stats.ack.count, 1, "an unconfirmed ack has no latency");
  });
});

/**
 * Wraps a driver so that every accept decision is checked: no payload (its stamp, unique per
 * message at one producer) is accepted twice.
 */
function checkingDistinct(driver: Driver, acceptedStamps: Set<number>): Driver {
  const createAckingConsumer = driver.createAckingConsumer?.bind(driver);
  assert.ok(createAckingConsumer !== undefined, `${driver.name} has createAckingConsumer`);
  const wrapped = (topic: string, sub: string, handlers: AckingHandlers) =>
    createAckingConsumer(topic, sub, {
      ...handlers,
      onDelivery(payload: Uint8Array, redelivered: boolean) {
        const answer = handlers.onDelivery(payload, redelivered);
        if (answer === "accept") {
          const stamp = readStamp(payload);
          assert.ok(!acceptedStamps.has(stamp), `message stamped ${stamp} accepted twice`);
          acceptedStamps.add(stamp);
        }
        return answer;
      },
    });
  // Every other member goes to the driver itself (its #private fields need it as `this`).
  return new Proxy(driver, {
    get(target, key) {
      if (key === "createAckingConsumer") return wrapped;
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function runTiny(driver: Driver): Promise<{ result: BenchResult; accepted: number }> {
  using dir = tempDir();
  const workload = validateWorkload(TINY, "tiny.yaml");
  const accepted = new Set<number>();
  await driver.initialize();
  try {
    const outcome = await runWorkload(checkingDistinct(driver, accepted), workload, {
      progress: () => {},
    });
    const result = buildResult({ driverName: driver.name, workload, outcome, dataDir: dir.path });
    return { result, accepted: accepted.size };
  } finally {
    await driver.close();
  }
}

function checkCounts(result: BenchResult, accepted: number): void {
  assert.equal(result.ackMode, "per-message");
  assert.ok(result.totalMessagesSent > 300, `sent ${result.totalMessagesSent}`);
  assert.equal(result.totalMessagesReceived, result.expectedMessagesReceived);
  assert.equal(result.totalMessagesReceived, result.totalMessagesSent);
  assert.equal(accepted, result.totalMessagesSent, "accepted = distinct messages");
  assert.ok((result.released ?? 0) > 0, "some messages were released");
  assert.equal(result.redeliveries, result.released, "each released message came back once");
  assert.equal(result.answerFailures, 0);
  assert.equal(result.errors, 0);
  assert.equal(result.drained, true);
  assert.match(formatAckTable([result]), new RegExp(`^${result.driver}\\s`, "m"));
}

const rabbit = createRabbitMqDriver({}, "per-message");
let rabbitSkip: string | false = false;
try {
  await rabbit.initialize();
} catch (error) {
  if (!(error instanceof DriverUnavailableError)) throw error;
  rabbitSkip = `${error.message}; ${error.hint} (bash scripts/peers.sh start rabbitmq)`;
}
await rabbit.close();

describe("sluice driver per-message defaults", () => {
  test("per-message mode: producers linger 5 ms (1 otherwise), fetches take up to 1,000", () => {
    const settingsOf = (options: Record<string, string>, ackMode?: "per-message") =>
      new SluiceTcpDriver({ workDir: "unused", options, ackMode }).settings();
    const perMessage = settingsOf({}, "per-message");
    assert.equal(perMessage["lingerMs"], 5);
    assert.equal(perMessage["queueFetchIntervalMs"], 0);
    assert.equal(perMessage["queueMaxRecords"], 1000);
    assert.equal(settingsOf({})["lingerMs"], 1);
    const set = settingsOf({ lingerMs: "2", queueFetchIntervalMs: "10" }, "per-message");
    assert.deepEqual([set["lingerMs"], set["queueFetchIntervalMs"]], [2, 10]);
    assert.throws(
      () => settingsOf({ queueFetchIntervalMs: "1001" }, "per-message"),
      /queueFetchIntervalMs/,
    );
  });
});

describe("per-message runs", () => {
  test("sluice: a queue with QueueConsumers accepts every message once", async () => {
    using dir = tempDir();
    const driver = new SluiceTcpDriver({
      workDir: dir.path,
      options: { server: "in-process" },
      ackMode: "per-message",
    });
    const { result, accepted } = await runTiny(driver);
    checkCounts(result, accepted);
    assert.equal(result.deadLettered, 0);
    assert.equal(result.settings["acks"], "all");
    assert.ok(result.ackLatency99pct !== null && result.ackLatency99pct > 0);
    assert.ok(result.ackLatency50pct! <= result.ackLatency99pct!);
    // The broker's own fdatasyncs over the measured phase stand beside the ack latency.
    assert.ok(result.fsyncCount !== null && result.fsyncCount > 0, `${result.fsyncCount}`);
    assert.ok(result.fsyncP50Ms !== null && result.fsyncP50Ms <= result.fsyncP99Ms!);
    // And the queue state log's commit fdatasyncs, which each confirmed accept waited for.
    assert.ok(result.queueFsyncCount !== null && result.queueFsyncCount > 0);
    assert.ok(result.queueFsyncP50Ms !== null && result.queueFsyncP50Ms <= result.queueFsyncP99Ms!);
  });

  test("sluice-embedded: a queue in the engine, its members calling it directly", async () => {
    using dir = tempDir();
    const driver = new SluiceEmbeddedDriver({
      workDir: dir.path,
      options: {},
      ackMode: "per-message",
    });
    const { result, accepted } = await runTiny(driver);
    checkCounts(result, accepted);
    assert.equal(result.deadLettered, 0);
    assert.match(String(result.settings["fsync"]), /always/);
    assert.ok(result.ackLatency99pct !== null && result.ackLatency99pct > 0);
    // The engine is in the harness: its queue state-log fdatasyncs are read directly.
    assert.ok(result.queueFsyncCount !== null && result.queueFsyncCount > 0);
  });

  test("sluice with deliveryDelayMsMax: all arrive, lateness measured from due", async () => {
    using dir = tempDir();
    const driver = new SluiceTcpDriver({
      workDir: dir.path,
      options: { server: "in-process" },
      ackMode: "per-message",
      deliveryDelayMsMax: 1500,
    });
    const workload = validateWorkload(
      { ...TINY, releaseRatio: 0, deliveryDelayMsMax: 1500, testDurationSeconds: 3 },
      "tiny-delayed.yaml",
    );
    await driver.initialize();
    try {
      const outcome = await runWorkload(driver, workload, { progress: () => {} });
      const result = buildResult({ driverName: driver.name, workload, outcome, dataDir: dir.path });
      assert.equal(result.totalMessagesReceived, result.totalMessagesSent);
      assert.equal(result.errors, 0);
      // Stamped with the due time: as lateness, the median stays well below the 1.5 s the
      // delays spread over; a message delivered before its due time is counted apart.
      const p50 = result.latenessP50Ms;
      assert.ok(p50 !== null && p50 >= 0 && p50 < 500, `lateness p50 ${p50} ms`);
      assert.equal(p50, result.aggregatedEndToEndLatency50pct);
      assert.equal(result.earlyDeliveries, 0, `earliest by ${result.earlyByMsMax} ms`);
      assert.match(String(result.delayPath), /sluice-delay-ms header/);
    } finally {
      await driver.close();
    }
  });

  test("rabbitmq: one basic.ack per message, releases as nack requeue", {
    skip: rabbitSkip,
  }, async () => {
    const { result, accepted } = await runTiny(createRabbitMqDriver({}, "per-message"));
    checkCounts(result, accepted);
    assert.equal(result.ackLatency99pct, null, "AMQP does not confirm acks");
    assert.equal(result.deadLettered, null);
    assert.match(String(result.settings["acks"]), /one basic\.ack per message/);
  });

  test("rabbitmq refuses streams in per-message mode", async () => {
    const driver = createRabbitMqDriver({ "queue-type": "stream" }, "per-message");
    await assert.rejects(driver.initialize(), /streams have no per-message acks/);
    await driver.close();
  });
});

// The workload's `priorityLevels`: validation, the priority-1kb workload, and short runs in
// which each subscription is a priority queue (sluice over TCP and embedded; RabbitMQ with
// x-max-priority, skipped with the command that starts it when it is not running). A message's
// priority is its partition; every sent message must come back accepted exactly once.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Driver, DriverUnavailableError } from "../../bench/driver.ts";
import { createRabbitMqDriver } from "../../bench/drivers/rabbitmq.ts";
import { SluiceTcpDriver } from "../../bench/drivers/sluice.ts";
import { SluiceEmbeddedDriver } from "../../bench/drivers/sluice_embedded.ts";
import { buildResult } from "../../bench/result.ts";
import { runWorkload } from "../../bench/runner.ts";
import { loadWorkload, validateWorkload } from "../../bench/workload.ts";
import { tempDir } from "../helpers.ts";

const TINY = {
  name: "tiny-priority",
  topics: 1,
  partitionsPerTopic: 4,
  messageSize: 64,
  producersPerTopic: 1,
  subscriptionsPerTopic: 1,
  consumerPerSubscription: 2,
  producerRate: 400,
  keyDistributor: "RANDOM_NANO",
  warmupDurationSeconds: 0,
  testDurationSeconds: 2,
  ackMode: "per-message",
  priorityLevels: 4,
};

describe("workload priorityLevels", () => {
  test("defaults to 0; needs per-message, 2-10 levels, one partition per level", () => {
    const { priorityLevels: _p, ...rest } = TINY;
    assert.equal(validateWorkload(rest).priorityLevels, 0);
    assert.throws(
      () => validateWorkload({ ...TINY, ackMode: "stream" }),
      /priorityLevels = 4 is invalid: needs ackMode: per-message/,
    );
    assert.throws(
      () => validateWorkload({ ...TINY, partitionsPerTopic: 3 }),
      /priorityLevels = 4 is invalid: must equal partitionsPerTopic/,
    );
    assert.throws(() => validateWorkload({ ...TINY, priorityLevels: 1 }), /0 \(none\) or 2-10/);
    assert.throws(() => validateWorkload({ ...TINY, priorityLevels: 11 }), /priorityLevels/);
  });

  test("priority-1kb: 10 levels on 10 partitions, per-message", () => {
    const workload = loadWorkload("priority-1kb");
    assert.equal(workload.priorityLevels, 10);
    assert.equal(workload.partitionsPerTopic, 10);
    assert.equal(workload.ackMode, "per-message");
  });
});

async function runTiny(driver: Driver) {
  using dir = tempDir();
  const workload = validateWorkload(TINY, "tiny.yaml");
  await driver.initialize();
  try {
    const outcome = await runWorkload(driver, workload, { progress: () => {} });
    return buildResult({ driverName: driver.name, workload, outcome, dataDir: dir.path });
  } finally {
    await driver.close();
  }
}

const rabbit = createRabbitMqDriver({}, "per-message", 4);
let rabbitSkip: string | false = false;
try {
  await rabbit.initialize();
} catch (error) {
  if (!(error instanceof DriverUnavailableError)) throw error;
  rabbitSkip = `${error.message}; ${error.hint} (bash scripts/peers.sh start rabbitmq)`;
}
await rabbit.close();

describe("priority runs", () => {
  const config = { ackMode: "per-message" as const, priorityLevels: 4 };
  test("sluice: the subscription is a priority queue; every message accepted", async () => {
    using dir = tempDir();
    const options = { server: "in-process" };
    const result = await runTiny(new SluiceTcpDriver({ workDir: dir.path, options, ...config }));
    assert.ok(result.totalMessagesSent > 300, `sent ${result.totalMessagesSent}`);
    assert.equal(result.totalMessagesReceived, result.totalMessagesSent);
    assert.equal(result.errors, 0);
    assert.match(String(result.settings["priorities"]), /4 levels/);
  });

  test("sluice-embedded: the same in the engine", async () => {
    using dir = tempDir();
    const driver = new SluiceEmbeddedDriver({ workDir: dir.path, options: {}, ...config });
    const result = await runTiny(driver);
    assert.equal(result.totalMessagesReceived, result.totalMessagesSent);
    assert.match(String(result.settings["priorities"]), /4 levels/);
  });

  test("rabbitmq: x-max-priority, priority = partition", { skip: rabbitSkip }, async () => {
    const result = await runTiny(createRabbitMqDriver({}, "per-message", 4));
    assert.equal(result.totalMessagesReceived, result.totalMessagesSent);
    assert.equal(result.settings["maxPriority"], 4);
  });
});

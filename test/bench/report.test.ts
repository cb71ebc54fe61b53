// The runner against an in-memory driver (a loopback that can lose messages), the result it
// builds, the table and the HTML report.

import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import type { Driver, MessageCallback } from "../../bench/driver.ts";
import { renderReport } from "../../bench/report.ts";
import { type BenchResult, buildResult } from "../../bench/result.ts";
import { runWorkload } from "../../bench/runner.ts";
import { logTicks, niceTicks } from "../../bench/svg_chart.ts";
import { deliveryVerdict, formatTable } from "../../bench/table.ts";
import { validateWorkload } from "../../bench/workload.ts";
import { tempDir } from "../helpers.ts";

/** Delivers each send to every subscription of its topic at once; drops every dropEvery-th. */
function memoryDriver(name: string, dropEvery = 0): Driver {
  const subscriptions = new Map<string, Map<string, MessageCallback[]>>();
  let sent = 0;
  return {
    name,
    initialize: async () => {},
    settings: () => ({ transport: "memory <loopback>", dropEvery }),
    durability: () => "none: memory only, acknowledged at once",
    createTopic: async () => {},
    createProducer: async (topic) => ({
      sendAsync: async (_key, payload) => {
        sent++;
        if (dropEvery > 0 && sent % dropEvery === 0) return;
        for (const consumers of subscriptions.get(topic)?.values() ?? []) {
          consumers[sent % consumers.length]!(payload);
        }
      },
      close: async () => {},
    }),
    createConsumer: async (topic, subscription, onMessage) => {
      const topicSubscriptions = subscriptions.get(topic) ?? new Map();
      subscriptions.set(topic, topicSubscriptions);
      topicSubscriptions.set(subscription, [
        ...(topicSubscriptions.get(subscription) ?? []),
        onMessage,
      ]);
      return { close: async () => {} };
    },
    deleteTopic: async () => {},
    close: async () => {},
  };
}

const workload = validateWorkload(
  {
    name: "memory",
    topics: 2,
    partitionsPerTopic: 1,
    messageSize: 64,
    producersPerTopic: 1,
    subscriptionsPerTopic: 2,
    consumerPerSubscription: 2,
    producerRate: 1000,
    warmupDurationSeconds: 0,
    testDurationSeconds: 1,
  },
  "memory.yaml",
);

async function run(driver: Driver, drainIdleMs = 10_000): Promise<BenchResult> {
  using dir = tempDir();
  const outcome = await runWorkload(driver, workload, { progress: () => {}, drainIdleMs });
  return buildResult({ driverName: driver.name, workload, outcome, dataDir: dir.path });
}

describe("results and report", () => {
  // Three one-second runs side by side: two clean drivers and one that loses 1% of messages.
  let clean: BenchResult[] = [];
  let lossy: BenchResult;
  before(async () => {
    const runs = await Promise.all([
      run(memoryDriver("memory-a")),
      run(memoryDriver("memory-b")),
      run(memoryDriver("lossy", 100), 200),
    ]);
    clean = runs.slice(0, 2);
    lossy = runs[2]!;
  });

  test("a run's result adds up: sent, received per subscription, rates", () => {
    const result = clean[0]!;
    assert.ok(result.totalMessagesSent >= 900, `sent ${result.totalMessagesSent}`);
    assert.equal(result.totalMessagesReceived, result.totalMessagesSent * 2);
    assert.equal(result.drained, true);
    assert.equal(result.consumersPerTopic, 4);
    assert.equal(result.publishRate.length, 1);
    assert.ok(Math.abs(result.publishRateAvg - 1000) < 150, `rate ${result.publishRateAvg}`);
    assert.equal(deliveryVerdict(result), "ok");
    assert.equal(result.workloadSpec.payloadFile, null);
    assert.ok(Object.keys(result.aggregatedEndToEndLatencyQuantiles).length > 10);
  });

  test("lost messages are reported, never hidden", () => {
    const result = lossy;
    assert.equal(result.drained, false);
    const missing = result.expectedMessagesReceived - result.totalMessagesReceived;
    assert.ok(missing > 0);
    assert.equal(deliveryVerdict(result), `MISSING ${missing.toLocaleString("en-US")}`);
    assert.match(
      result.errorMessages.join("\n"),
      /drain gave up after .* of \d+ messages received/,
    );
    assert.match(formatTable([result]), /MISSING/);
  });

  test("the report is one self-contained page with four charts and escaped text", () => {
    const html = renderReport(clean);
    assert.match(html, /^<!doctype html>/);
    assert.equal(html.match(/<svg /g)?.length, 4);
    assert.doesNotMatch(html, /<script|<link|src="http/, "no external resources");
    for (const name of ["memory-a", "memory-b"]) assert.ok(html.includes(`${name}</td>`));
    assert.ok(html.includes("memory &lt;loopback&gt;"), "settings are escaped");
    assert.ok(html.includes("Publish latency by percentile"));
    assert.ok(html.includes("99.99%"), "the percentile axis");
    assert.throws(() => renderReport([]), /at least one result/);
  });

  test("axis ticks are round numbers", () => {
    assert.deepEqual(niceTicks(0, 10_000), [0, 2000, 4000, 6000, 8000, 10_000]);
    assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(logTicks(1, 1000), [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]);
    assert.deepEqual(logTicks(0.01, 1e5), [0.01, 0.1, 1, 10, 100, 1000, 10_000, 100_000]);
  });
});

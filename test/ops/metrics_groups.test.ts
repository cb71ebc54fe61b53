// /metrics for consumer groups (members, generation, state, rebalances) and for the engine's
// group commit across partitions (rounds by way, files covered, syncfs in use, round seconds),
// read through an independent parser of the Prometheus text format.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import parsePrometheusTextFormat, { type PrometheusFamily } from "parse-prometheus-text-format";
import { encodeRecordBatch } from "../../engine/mod.ts";
import { startOpsHttp } from "../../ops/http.ts";
import { Consumer } from "../../protocol/client/mod.ts";
import { waitFor } from "../helpers.ts";
import { startTestServer } from "../protocol/server/serving.ts";

const PARTITIONS = 3;

function family(families: PrometheusFamily[], name: string): PrometheusFamily {
  const found = families.find((f) => f.name === name);
  assert.ok(found !== undefined, `metric family ${name}`);
  return found;
}

function value(families: PrometheusFamily[], name: string, labels: Record<string, string> = {}) {
  const metric = family(families, name).metrics.find((m) =>
    Object.entries(labels).every(([k, v]) => m.labels?.[k] === v),
  );
  assert.ok(metric !== undefined, `${name} ${JSON.stringify(labels)}`);
  return Number(metric.value);
}

describe("/metrics: groups and group sync", () => {
  test("group state and group-commit rounds are exported", async () => {
    await using served = await startTestServer({
      engineOptions: { partitionSync: "fdatasync", onWarning: () => {} },
    });
    const engine = served.server.engine;
    await engine.createTopic("t", { partitions: PARTITIONS, config: { fsync: "always" } });
    const http = await startOpsHttp({ host: "127.0.0.1", port: 0, engine });
    const consumers: Consumer[] = [];
    try {
      http.ready(served.server);
      // One append to each partition in the same task: one round covering every log.
      const batch = encodeRecordBatch([{ value: Uint8Array.of(1) }]);
      await Promise.all(
        Array.from({ length: PARTITIONS }, (_, p) => engine.append("t", p, batch.slice())),
      );
      for (let i = 0; i < 2; i++) {
        const consumer = new Consumer({ host: "127.0.0.1", port: served.port, group: "g1" });
        consumer.subscribe(["t"], { fromBeginning: true });
        consumers.push(consumer);
      }
      await waitFor(
        async () => {
          await Promise.all(consumers.map((c) => c.poll({ maxWaitMs: 20 })));
          const g = http.snapshot().groups.find((group) => group.group === "g1");
          return g?.memberCount === 2 && g.state === "stable";
        },
        "two members in a stable group",
        20_000,
      );
      const text = await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();
      const families = parsePrometheusTextFormat(text);
      assert.equal(value(families, "sluice_group_members", { group: "g1" }), 2);
      assert.equal(family(families, "sluice_group_members").type, "GAUGE");
      const generation = value(families, "sluice_group_generation", { group: "g1" });
      assert.ok(generation >= 2, `generation ${generation}: one rebalance per join`);
      assert.equal(value(families, "sluice_group_state", { group: "g1", state: "stable" }), 1);
      const rebalances = value(families, "sluice_group_rebalances_total");
      assert.equal(family(families, "sluice_group_rebalances_total").type, "COUNTER");
      assert.ok(rebalances >= generation, `${rebalances} rebalances`);
      // Group commit: partitionSync "fdatasync", so no round used syncfs.
      assert.equal(value(families, "sluice_group_sync_syncfs"), 0);
      assert.equal(value(families, "sluice_group_sync_rounds_total", { way: "syncfs" }), 0);
      const rounds = value(families, "sluice_group_sync_rounds_total", { way: "fdatasync" });
      assert.equal(rounds, engine.groupSync.rounds);
      assert.ok(rounds >= 1, `${rounds} rounds`);
      const files = value(families, "sluice_group_sync_files_total");
      assert.ok(files >= PARTITIONS, `${files} files in ${rounds} rounds`);
      const seconds = family(families, "sluice_group_sync_round_seconds");
      assert.equal(seconds.type, "HISTOGRAM");
      assert.equal(Number(seconds.metrics[0]!.count), rounds, "every round timed once");
      assert.equal(seconds.metrics[0]!.buckets?.["+Inf"], String(rounds));
    } finally {
      for (const consumer of consumers) await consumer.close();
      await http.close();
    }
  });
});

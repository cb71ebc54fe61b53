// The broker's log lines for notable events, captured from a Logger in both formats: group
// membership changes with the generation, producers fenced by a newer epoch, slow fsyncs. The
// lines come from the events an Engine (onSlowFsync) and a SluiceServer (onEvent) report; here
// they are driven by a real engine and server, not built by hand.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { logServerEvent, logSlowFsync } from "../../bin/serve_command.ts";
import { Engine, encodeRecordBatch } from "../../engine/mod.ts";
import { Logger } from "../../ops/log.ts";
import { Consumer } from "../../protocol/client/mod.ts";
import { API } from "../../protocol/codec/frames.ts";
import { writeProduceRequest } from "../../protocol/codec/produce.ts";
import { SluiceServer } from "../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { connected } from "../protocol/server/serving.ts";

function capture(format: "text" | "json") {
  const lines: string[] = [];
  const log = new Logger({ format, write: (line) => lines.push(line), nowMs: () => 0 });
  return { log, lines };
}

describe("log lines for notable events", () => {
  test("group rebalances: a member joined and left, with the generation", async () => {
    using dir = tempDir();
    const { log, lines } = capture("text");
    const server = await SluiceServer.start({
      dataDir: dir.path,
      port: 0,
      heartbeatIntervalMs: 50,
      log: () => {},
      onEvent: (event) => logServerEvent(log, event),
    });
    try {
      await server.engine.createTopic("t");
      const consumer = new Consumer({ port: server.port, group: "billing" });
      consumer.subscribe(["t"]);
      await waitFor(async () => {
        await consumer.poll({ maxWaitMs: 20 });
        // The client must have its member id and epoch (its join answered) to leave.
        return lines.length >= 1 && consumer.assignment().length === 1;
      }, "the joined line");
      await consumer.close();
      await waitFor(() => lines.length >= 2, "the left line");
    } finally {
      await server.close();
    }
    const joined =
      /^1970-01-01T00:00:00\.000Z info {2}group member joined group=billing member=\S+/;
    assert.match(lines[0]!, joined);
    assert.match(lines[0]!, / generation=1 members=1$/);
    assert.match(lines[1]!, /info {2}group member left group=billing .* generation=2 members=0$/);
  });

  test("a fenced producer is a warn line naming topic, partition and epochs (JSON)", async () => {
    using dir = tempDir();
    const { log, lines } = capture("json");
    const server = await SluiceServer.start({
      dataDir: dir.path,
      port: 0,
      log: () => {},
      onEvent: (event) => logServerEvent(log, event),
    });
    try {
      await server.engine.createTopic("orders");
      const batch = (producerEpoch: number) =>
        encodeRecordBatch([{ value: new Uint8Array([1]) }], {
          producerId: 3,
          producerEpoch,
          baseSequence: 0,
        });
      await server.engine.append("orders", 0, batch(2));
      // The refusal has to come through the wire for the server to see it.
      using client = await connected(server.port);
      const id = client.request(API.Produce, (w) =>
        writeProduceRequest(w, {
          acks: 1,
          timeoutMs: 5000,
          topics: [{ topic: "orders", partitions: [{ partition: 0, records: batch(1) }] }],
        }),
      );
      await client.response(id);
    } finally {
      await server.close();
    }
    assert.equal(lines.length, 1);
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(line["level"], "warn");
    assert.equal(line["msg"], "producer fenced");
    assert.equal(line["topic"], "orders");
    assert.equal(line["partition"], 0);
    assert.match(String(line["detail"]), /Producer 3 epoch 1 is older than 2/);
  });

  test("a classic group's rebalance names its generation and the protocol", () => {
    const { log, lines } = capture("text");
    const event = { groupId: "legacy", groupEpoch: 3, members: 2 } as const;
    logServerEvent(log, { type: "classicGroup", kind: "joined", memberId: "m-1", ...event });
    logServerEvent(log, { type: "classicGroup", kind: "rebalanced", memberId: "", ...event });
    assert.deepEqual(lines, [
      "1970-01-01T00:00:00.000Z info  group member joined group=legacy member=m-1 generation=3 " +
        "members=2 protocol=classic",
      "1970-01-01T00:00:00.000Z info  group rebalanced group=legacy generation=3 members=2 " +
        "protocol=classic",
    ]);
  });

  test("a slow fsync is a warn line with its duration and the threshold", async () => {
    using dir = tempDir();
    const { log, lines } = capture("text");
    let clockMs = 0;
    const engine = await Engine.open(dir.path, {
      onWarning: () => {},
      // Every timed fdatasync "takes" 750 ms on this clock.
      monotonicMs: () => (clockMs += 750),
      slowFsyncMs: 500,
      onSlowFsync: (event) => logSlowFsync(log, event),
    });
    try {
      await engine.createTopic("audit", { config: { fsync: "always" } });
      await engine.append("audit", 0, encodeRecordBatch([{ value: new Uint8Array([1]) }]));
    } finally {
      await engine.close();
    }
    assert.ok(lines.length >= 1);
    assert.equal(
      lines[0],
      "1970-01-01T00:00:00.000Z warn  slow fsync log=audit-0 ms=750 thresholdMs=500",
    );
  });
});

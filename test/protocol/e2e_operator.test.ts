// End to end over loopback: the operator APIs. ListGroups (31) lists live groups with state,
// epoch and member count, and groups known only by their commits as "empty"; an empty broker
// answers an empty list. AlterTopicConfigs (32) changes a live topic's config, which a
// restarted server still has, and refuses a bad value with INVALID_CONFIG naming the field,
// changing nothing. The server's events (onEvent) report members joining, leaving and being
// fenced with the group's generation, and producers fenced by a newer epoch.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Admin, Consumer, ServerError } from "../../protocol/client/mod.ts";
import { type Fields, writeMsgpack } from "../../protocol/codec/control.ts";
import { WIRE_ERRORS } from "../../protocol/codec/errors.ts";
import { API, finishFrame, startRequest } from "../../protocol/codec/frames.ts";
import { readProduceResponse, writeProduceRequest } from "../../protocol/codec/produce.ts";
import { type ServerEvent, SluiceServer } from "../../protocol/server/mod.ts";
import { encodeRecordBatch } from "../../record/mod.ts";
import { PROJECT_ROOT, tempDir, waitFor } from "../helpers.ts";
import { hexBlocks } from "./spec_examples.ts";
import { connected, startTestServer } from "./server/serving.ts";

describe("end to end: operator APIs", () => {
  test("ListGroups: none, then a live group and a group known by its commits", async () => {
    // A session of 3 s: a leave lost under load (below) expires well within waitFor's bound.
    await using served = await startTestServer({ heartbeatIntervalMs: 50, sessionTimeoutMs: 3000 });
    await using admin = new Admin({ port: served.port });
    assert.deepEqual(await admin.listGroups(), []);
    await admin.createTopics([{ name: "t", partitions: 2 }]);
    await admin.commitOffsets("archived", [{ topic: "t", partition: 0, offset: 0 }]);
    const consumer = new Consumer({ port: served.port, group: "live" });
    try {
      consumer.subscribe(["t"]);
      await waitFor(async () => {
        await consumer.poll({ maxWaitMs: 20 });
        return consumer.assignment().length === 2;
      }, "the member's assignment");
      // A join retried under load is a new generation: the epoch is at least 1, not exactly.
      let groups = await admin.listGroups();
      await waitFor(async () => {
        groups = await admin.listGroups();
        return groups.some((g) => g.groupId === "live" && g.state === "stable");
      }, "the live group, stable");
      const live = groups.find((g) => g.groupId === "live")!;
      assert.ok(live.groupEpoch >= 1, `epoch ${live.groupEpoch}`);
      assert.deepEqual(groups, [
        {
          groupId: "archived",
          state: "empty",
          protocolType: "consumer",
          groupEpoch: 0,
          members: 0,
        },
        {
          groupId: "live",
          state: "stable",
          protocolType: "consumer",
          groupEpoch: live.groupEpoch,
          members: 1,
        },
      ]);
    } finally {
      await consumer.close();
    }
    // close() sends the leave and waits for its answer; a leave lost to a loaded machine
    // (its error swallowed by close) ends with the session timeout instead.
    let ids: string[] = [];
    await waitFor(async () => {
      ids = (await admin.listGroups()).map((g) => g.groupId);
      return ids.length === 1;
    }, "the live group gone after its member left");
    assert.deepEqual(
      ids,
      ["archived"],
      "a group whose last member left is known only by its commits",
    );
  });

  test("AlterTopicConfigs: applied live, kept across a restart, refused whole", async () => {
    using dir = tempDir();
    const first = await SluiceServer.start({ dataDir: dir.path, port: 0, log: () => {} });
    try {
      await using admin = new Admin({ port: first.port });
      await admin.createTopics([{ name: "t", config: { fsync: "never" } }]);
      const config = await admin.alterTopicConfigs("t", {
        retentionMs: 3_600_000,
        retentionBytes: 1_048_576,
        fsync: "always",
      });
      assert.equal(config["retentionMs"], 3_600_000);
      assert.equal(config["fsync"], "always");
      assert.equal(first.engine.partition("t", 0).config.fsync, "always", "live");
      await assert.rejects(
        admin.alterTopicConfigs("t", { retentionMs: -2, fsync: "never" }),
        (e) => {
          assert.ok(e instanceof ServerError);
          assert.equal(e.code, "INVALID_CONFIG");
          assert.match(e.message, /retentionMs = -2/);
          return true;
        },
      );
      await assert.rejects(
        admin.alterTopicConfigs("t", { indexIntervalBytes: 8 } as never),
        /indexIntervalBytes .*cannot be changed/,
      );
      await assert.rejects(admin.alterTopicConfigs("gone", { retentionMs: 1 }), {
        code: "UNKNOWN_TOPIC",
      });
      assert.equal(first.engine.partition("t", 0).config.fsync, "always", "nothing changed");
    } finally {
      await first.close();
    }
    const second = await SluiceServer.start({ dataDir: dir.path, port: 0, log: () => {} });
    try {
      await using admin = new Admin({ port: second.port });
      const { topics } = await admin.metadata(["t"]);
      assert.equal(topics[0]?.config?.["retentionMs"], 3_600_000);
      assert.equal(topics[0]?.config?.["retentionBytes"], 1_048_576);
      assert.equal(topics[0]?.config?.["fsync"], "always");
    } finally {
      await second.close();
    }
  });

  test("hostile AlterTopicConfigs bodies: typed errors, the server serves on", async () => {
    await using served = await startTestServer();
    using client = await connected(served.port);
    for (const body of [{}, { topic: 7, config: {} }, { topic: "t" }, { topic: "t", config: 3 }]) {
      const id = client.request(API.AlterTopicConfigs, (w) => writeMsgpack(w, body));
      const { errorCode } = await client.response(id);
      assert.equal(errorCode, WIRE_ERRORS.INVALID_REQUEST, `for ${JSON.stringify(body)}`);
    }
    const id = client.request(API.ListGroups, (w) => writeMsgpack(w, {}));
    assert.equal((await client.response(id)).errorCode, 0);
  });
});

describe("PROTOCOL.md section 14", () => {
  test("the worked example is what a real server exchanges, byte for byte", async () => {
    const spec = fs.readFileSync(join(PROJECT_ROOT, "protocol", "PROTOCOL.md"), "utf8");
    const section = spec.slice(spec.indexOf("## 14. Worked example: listing groups"));
    const blocks = hexBlocks(section);
    assert.equal(blocks.length, 4);
    await using served = await startTestServer();
    await using admin = new Admin({ port: served.port });
    await admin.createTopics([{ name: "demo" }]);
    await admin.commitOffsets("billing", [{ topic: "demo", partition: 0, offset: 0 }]);
    using client = await connected(served.port);
    const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
    const exchanges: [number, number, Fields][] = [
      [API.ListGroups, 20, {}],
      [
        API.AlterTopicConfigs,
        21,
        { topic: "demo", config: { retentionMs: 3_600_000, fsync: "always" } },
      ],
    ];
    for (const [i, [apiKey, correlationId, body]] of exchanges.entries()) {
      const writer = startRequest({ apiKey, apiVersion: 1, correlationId });
      writeMsgpack(writer, body);
      const request = finishFrame(writer);
      assert.equal(hex(request), blocks[2 * i], `request ${apiKey}`);
      client.send(request);
      await client.response(correlationId);
      const frame = client.frames.find(
        (f) => new DataView(f.buffer).getUint32(0) === correlationId,
      )!;
      const size = new Uint8Array(4);
      new DataView(size.buffer).setUint32(0, frame.length);
      assert.equal(hex(size) + hex(frame), blocks[2 * i + 1], `response ${apiKey}`);
    }
  });
});

describe("end to end: server events", () => {
  test("members joining and leaving, with the group's generation", async () => {
    const events: ServerEvent[] = [];
    await using served = await startTestServer({
      heartbeatIntervalMs: 50,
      onEvent: (event) => events.push(event),
    });
    await using admin = new Admin({ port: served.port });
    await admin.createTopics([{ name: "t" }]);
    const consumer = new Consumer({ port: served.port, group: "g" });
    consumer.subscribe(["t"]);
    await waitFor(async () => {
      await consumer.poll({ maxWaitMs: 20 });
      // The client must have its member id and epoch (its join answered) to leave.
      return events.length >= 1 && consumer.assignment().length === 1;
    }, "the joined event");
    await consumer.close();
    await waitFor(() => events.length >= 2, "the left event");
    const shown = events.map((e) =>
      e.type === "group" ? [e.kind, e.groupId, e.groupEpoch, e.members] : e.type,
    );
    // Each change is a new generation; the first event is the join, the last the leave.
    assert.deepEqual(shown[0], ["joined", "g", 1, 1], JSON.stringify(shown));
    const last = shown.at(-1) as [string, string, number, number];
    assert.deepEqual([last[0], last[1], last[3]], ["left", "g", 0]);
    assert.equal(last[2], 1 + (shown.length - 1), "one generation per change");
  });

  test("a member heartbeating with a stale epoch is reported fenced", async () => {
    const events: ServerEvent[] = [];
    await using served = await startTestServer({ onEvent: (event) => events.push(event) });
    using client = await connected(served.port);
    const heartbeat = async (body: Record<string, unknown>) => {
      const id = client.request(API.GroupHeartbeat, (w) => writeMsgpack(w, body));
      return (await client.response(id)).reader;
    };
    await heartbeat({ groupId: "g", memberId: "m1", memberEpoch: 0, topics: [] });
    await heartbeat({ groupId: "g", memberId: "m1", memberEpoch: 99 });
    const fenced = events.find((e) => e.type === "group" && e.kind === "fenced");
    assert.deepEqual(fenced, {
      type: "group",
      kind: "fenced",
      groupId: "g",
      memberId: "m1",
      groupEpoch: 2,
      members: 0,
    });
  });

  test("a producer epoch older than the partition's is reported fenced", async () => {
    const events: ServerEvent[] = [];
    await using served = await startTestServer({ onEvent: (event) => events.push(event) });
    await using admin = new Admin({ port: served.port });
    await admin.createTopics([{ name: "t" }]);
    using client = await connected(served.port);
    const produce = async (producerEpoch: number) => {
      const records = encodeRecordBatch([{ value: new Uint8Array([1]) }], {
        producerId: 7,
        producerEpoch,
        baseSequence: 0,
      });
      const id = client.request(API.Produce, (w) =>
        writeProduceRequest(w, {
          acks: 1,
          timeoutMs: 5000,
          topics: [{ topic: "t", partitions: [{ partition: 0, records }] }],
        }),
      );
      const { reader } = await client.response(id);
      return readProduceResponse(reader).topics[0]!.partitions[0]!.errorCode;
    };
    assert.equal(await produce(1), 0);
    assert.equal(await produce(0), WIRE_ERRORS.INVALID_PRODUCER_EPOCH);
    assert.equal(events.length, 1);
    const event = events[0]!;
    assert.ok(event.type === "producerFenced");
    assert.equal(event.topic, "t");
    assert.equal(event.partition, 0);
    assert.match(event.message ?? "", /Producer 7 epoch 0 is older than 1/);
  });
});

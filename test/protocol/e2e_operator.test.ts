// End to end over loopback: the operator APIs. ListGroups (31) lists live groups with state,
// epoch and member count, and groups known only by their commits as "empty"; an empty broker
// answers an empty list. AlterTopicConfigs (32) changes a live topic's config, which a
// restarted server still has, and refuses a bad value with INVALID_CONFIG naming the field,
// changing nothing. The server's events (onEvent) report members joining, leaving and being
// fenced with the group's generation, and producers fenced by a newer epoch.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Admin, Consumer, ServerError } from "../../protocol/client/mod.ts";
import { writeMsgpack } from "../../protocol/codec/control.ts";
import { WIRE_ERRORS } from "../../protocol/codec/errors.ts";
import { API } from "../../protocol/codec/frames.ts";
import { readProduceResponse, writeProduceRequest } from "../../protocol/codec/produce.ts";
import { type ServerEvent, SluiceServer } from "../../protocol/server/mod.ts";
import { encodeRecordBatch } from "../../record/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { connected, startTestServer } from "./server/serving.ts";

describe("end to end: operator APIs", () => {
  test("ListGroups: none, then a live group and a group known by its commits", async () => {
    await using served = await startTestServer({ heartbeatIntervalMs: 50 });
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
      const groups = await admin.listGroups();
      assert.deepEqual(groups, [
        {
          groupId: "archived",
          state: "empty",
          protocolType: "consumer",
          groupEpoch: 0,
          members: 0,
        },
        { groupId: "live", state: "stable", protocolType: "consumer", groupEpoch: 1, members: 1 },
      ]);
    } finally {
      await consumer.close();
    }
    assert.deepEqual(
      (await admin.listGroups()).map((g) => g.groupId),
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
      return events.length >= 1;
    }, "the joined event");
    await consumer.close();
    await waitFor(() => events.length >= 2, "the left event");
    const shown = events.map((e) =>
      e.type === "group" ? [e.kind, e.groupId, e.groupEpoch, e.members] : e.type,
    );
    assert.deepEqual(shown, [
      ["joined", "g", 1, 1],
      ["left", "g", 2, 0],
    ]);
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

// The Admin client against the fake server: topics, offsets by time, committed offsets and a
// group's description with lag. Each failure names the item and the wire code.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { Admin } from "../../../protocol/client/admin.ts";
import { ServerError } from "../../../protocol/codec/errors.ts";
import { FakeServer } from "./fake_server.ts";

async function withAdmin(run: (admin: Admin, server: FakeServer) => Promise<void>) {
  const server = await FakeServer.start();
  const admin = new Admin({ port: server.port });
  try {
    await run(admin, server);
  } finally {
    await admin.close();
    await server.close();
  }
}

describe("Admin", () => {
  test("creates, lists, describes and deletes topics", () =>
    withAdmin(async (admin) => {
      await admin.createTopics([{ name: "a", partitions: 3 }, { name: "b" }]);
      assert.deepEqual((await admin.listTopics()).sort(), ["a", "b"]);
      const metadata = await admin.metadata(["a", "nope"]);
      assert.deepEqual(metadata.brokers.length, 1);
      assert.equal(metadata.topics[0]!.name, "a");
      assert.equal(metadata.topics[0]!.errorCode, 0);
      assert.deepEqual(
        metadata.topics[0]!.partitions.map((p) => p.partition),
        [0, 1, 2],
      );
      assert.equal(metadata.topics[1]!.errorCode, 10);
      await assert.rejects(admin.createTopics([{ name: "a" }]), (error: unknown) => {
        assert.ok(error instanceof ServerError);
        assert.equal(error.code, "TOPIC_EXISTS");
        assert.match(error.message, /create topic a/);
        return true;
      });
      await admin.createTopics([{ name: "a" }], { ifNotExists: true });
      await admin.deleteTopics(["b"]);
      await assert.rejects(admin.deleteTopics(["b"]), { code: "UNKNOWN_TOPIC" });
      await admin.deleteTopics(["b"], { ifExists: true });
      assert.deepEqual(await admin.listTopics(), ["a"]);
    }));

  test("lists offsets at the start, the end and by timestamp", () =>
    withAdmin(async (admin, server) => {
      server.createTopic("t", 1);
      const records = [10, 20, 30].map((timestamp) => ({ value: null, timestamp }));
      server.appendTo("t", 0, encodeRecordBatch(records));
      const offsets = await admin.listOffsets([
        { topic: "t", partition: 0, at: "earliest" },
        { topic: "t", partition: 0, at: "latest" },
        { topic: "t", partition: 0, at: 15 },
        { topic: "t", partition: 0, at: 99 },
      ]);
      assert.deepEqual(
        offsets.map((o) => o.offset),
        [0, 3, 1, -1],
      );
      await assert.rejects(admin.listOffsets([{ topic: "t", partition: 0, at: -5 }]), RangeError);
    }));

  test("commits and fetches offsets; describes a group with its lag", () =>
    withAdmin(async (admin, server) => {
      server.createTopic("t", 2);
      server.appendTo("t", 0, encodeRecordBatch([{ value: null }, { value: null }]));
      await admin.commitOffsets("g", [{ topic: "t", partition: 0, offset: 1, metadata: "m" }]);
      const fetched = await admin.fetchOffsets("g", [{ topic: "t", partitions: [0, 1] }]);
      assert.deepEqual(
        fetched.map((o) => [o.partition, o.offset]),
        [
          [0, 1],
          [1, -1],
        ],
      );
      const group = await admin.describeGroup("g");
      assert.equal(group.groupId, "g");
      assert.deepEqual(group.offsets, [
        { topic: "t", partition: 0, committed: 1, highWatermark: 2, lag: 1 },
      ]);
      assert.equal((await admin.stats()).serverVersion, "fake");
    }));

  test("bad arguments throw at once", () =>
    withAdmin(async (admin) => {
      await assert.rejects(admin.createTopics("t" as never), TypeError);
      await assert.rejects(admin.deleteTopics([1 as never]), TypeError);
      assert.throws(() => admin.describeGroup(5 as never), TypeError);
      assert.throws(() => new Admin({ port: 0 }), RangeError);
    }));
});

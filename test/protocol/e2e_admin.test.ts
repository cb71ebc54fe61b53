// End to end over loopback: the Admin client against the real server. Topics are created,
// listed and deleted; offsets are listed at the start, the end and by timestamp; a group's
// description shows its members, their partitions and the lag of its commits.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Admin, Consumer, Producer, ServerError } from "../../protocol/client/mod.ts";
import { SluiceServer } from "../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";

async function withAdmin(run: (admin: Admin, port: number) => Promise<void>): Promise<void> {
  using dir = tempDir();
  const logs: string[] = [];
  const server = await SluiceServer.start({
    dataDir: dir.path,
    port: 0,
    heartbeatIntervalMs: 50,
    log: (message) => logs.push(message),
  });
  const admin = new Admin({ port: server.port });
  try {
    await run(admin, server.port);
  } catch (error) {
    if (logs.length > 0) console.error(`server log:\n${logs.join("\n")}`);
    throw error;
  } finally {
    await admin.close();
    await server.close();
  }
}

function rejectsWith(code: string, pattern: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof ServerError, String(error));
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  };
}

describe("end to end: admin", () => {
  test("creates, lists and deletes topics", () =>
    withAdmin(async (admin, port) => {
      await admin.createTopics([
        { name: "orders", partitions: 3, config: { retentionMs: 60_000, fsync: "never" } },
        { name: "audit" },
      ]);
      assert.deepEqual((await admin.listTopics()).sort(), ["audit", "orders"]);
      const { topics, brokers } = await admin.metadata(["orders"]);
      assert.deepEqual(brokers, [{ host: "127.0.0.1", port }]);
      assert.deepEqual(
        topics[0]!.partitions.map((p) => [p.partition, p.logStartOffset, p.highWatermark]),
        [
          [0, 0, 0],
          [1, 0, 0],
          [2, 0, 0],
        ],
      );
      assert.equal(topics[0]!.config?.["retentionMs"], 60_000);
      assert.equal(topics[0]!.config?.["fsync"], "never");

      await assert.rejects(
        admin.createTopics([{ name: "orders" }]),
        rejectsWith("TOPIC_EXISTS", /orders/),
      );
      await admin.createTopics([{ name: "orders" }], { ifNotExists: true });
      await assert.rejects(
        admin.createTopics([{ name: "__internal" }]),
        rejectsWith("INVALID_TOPIC", /__internal/),
      );
      await assert.rejects(
        admin.createTopics([{ name: "bad", config: { segmentBytes: 1 } }]),
        rejectsWith("INVALID_CONFIG", /segmentBytes/),
      );
      // A partition count out of range is that topic's INVALID_CONFIG (PROTOCOL.md section 8):
      // the other topics of the request are created.
      for (const partitions of [0, 10_001]) {
        await assert.rejects(
          admin.createTopics([{ name: `fine-${partitions}` }, { name: "many", partitions }]),
          rejectsWith("INVALID_CONFIG", new RegExp(`Partition count ${partitions} .*many`)),
        );
        assert.ok((await admin.listTopics()).includes(`fine-${partitions}`));
        await admin.deleteTopics([`fine-${partitions}`]);
      }
      await assert.rejects(
        admin.createTopics([{ name: "bad", config: { retentionMs: -5 } }]),
        rejectsWith("INVALID_CONFIG", /retentionMs = -5 .*must be -1 \(no limit\) or in \[0, /),
      );

      const producer = new Producer({ port, lingerMs: 0 });
      await producer.send({ topic: "audit", value: "a" });
      await producer.close();
      await admin.deleteTopics(["audit"]);
      assert.deepEqual(await admin.listTopics(), ["orders"]);
      await assert.rejects(admin.deleteTopics(["audit"]), rejectsWith("UNKNOWN_TOPIC", /audit/));
      await admin.deleteTopics(["audit"], { ifExists: true });
      // A topic created again under the same name starts empty.
      await admin.createTopics([{ name: "audit" }]);
      const [audit] = await admin.listOffsets([{ topic: "audit", partition: 0, at: "latest" }]);
      assert.equal(audit!.offset, 0);
    }));

  test("lists offsets at the earliest, the latest and by timestamp", () =>
    withAdmin(async (admin, port) => {
      await admin.createTopics([{ name: "times", partitions: 1 }]);
      const producer = new Producer({ port, lingerMs: 0 });
      try {
        for (const timestamp of [1_000, 2_000, 3_000, 3_000, 4_000]) {
          await producer.send({ topic: "times", value: String(timestamp), timestamp });
        }
      } finally {
        await producer.close();
      }
      const at = ["earliest", "latest", 0, 1_000, 1_500, 3_000, 4_000, 4_001] as const;
      const offsets = await admin.listOffsets(
        at.map((spec) => ({ topic: "times", partition: 0, at: spec })),
      );
      assert.deepEqual(
        offsets.map((o) => o.offset),
        [0, 5, 0, 0, 1, 2, 4, -1],
      );
      await assert.rejects(
        admin.listOffsets([{ topic: "times", partition: 7, at: "latest" }]),
        rejectsWith("UNKNOWN_PARTITION", /times-7/),
      );
    }));

  test("describes a group: members, their partitions, commits and lag", () =>
    withAdmin(async (admin, port) => {
      await admin.createTopics([{ name: "work", partitions: 2 }]);
      const producer = new Producer({ port, lingerMs: 0 });
      try {
        for (let i = 0; i < 10; i++)
          await producer.send({ topic: "work", partition: i % 2, value: "x" });
      } finally {
        await producer.close();
      }
      const empty = await admin.describeGroup("workers");
      assert.deepEqual(empty, { groupId: "workers", groupEpoch: 0, members: [], offsets: [] });

      const consumer = new Consumer({ port, group: "workers", autoCommit: false, maxWaitMs: 20 });
      try {
        consumer.subscribe(["work"], { fromBeginning: true });
        let received = 0;
        await waitFor(async () => {
          received += (await consumer.poll()).length;
          return received >= 10;
        }, "10 records");
        await consumer.commit([{ topic: "work", partition: 0, offset: 2 }]);
        const group = await admin.describeGroup("workers");
        assert.equal(group.members.length, 1);
        const [member] = group.members;
        assert.equal(member!.memberId, consumer.memberId);
        assert.ok(member!.memberEpoch >= 1);
        assert.deepEqual(member!.topics, ["work"]);
        assert.deepEqual(member!.assignment, [{ topic: "work", partitions: [0, 1] }]);
        assert.deepEqual(group.offsets, [
          { topic: "work", partition: 0, committed: 2, highWatermark: 5, lag: 3 },
        ]);
        await consumer.commit();
        const after = await admin.describeGroup("workers");
        assert.deepEqual(after.offsets.map((o) => [o.partition, o.committed, o.lag]).sort(), [
          [0, 5, 0],
          [1, 5, 0],
        ]);
      } finally {
        await consumer.close();
      }
      // Leaving empties the group; its commits stay.
      const left = await admin.describeGroup("workers");
      assert.deepEqual(left.members, []);
      assert.equal(left.offsets.length, 2);
    }));

  test("a commit of 10,000 offsets goes as requests within the server's body limits", () =>
    withAdmin(async (admin) => {
      await admin.createTopics([{ name: "wide", partitions: 100 }]);
      // 10,000 entries, 50,000 msgpack entries as one body: past the 32,768 a server decodes.
      const offsets = Array.from({ length: 10_000 }, (_, i) => ({
        topic: "wide",
        partition: i % 100,
        offset: i,
      }));
      await admin.commitOffsets("wide-readers", offsets);
      const fetched = await admin.fetchOffsets("wide-readers", [
        { topic: "wide", partitions: [0, 99] },
      ]);
      assert.deepEqual(
        fetched.map((o) => [o.partition, o.offset]),
        [
          [0, 9_900],
          [99, 9_999],
        ],
      );
    }));
});

// The Consumer against the fake server: assigned partitions with start positions from an
// offset, the reset policy or the group's commit; group membership through GroupHeartbeat
// (join, assignment, rebalance, fencing, leave); commits; seeks; async iteration.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { readMsgpack } from "../../../protocol/codec/control.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { Admin } from "../../../protocol/client/admin.ts";
import {
  Consumer,
  type ConsumerOptions,
  type ConsumerRecord,
} from "../../../protocol/client/consumer.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { waitFor } from "../../helpers.ts";
import { FakeServer } from "./fake_server.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();

async function withServer(
  run: (server: FakeServer, options: ConsumerOptions) => Promise<void>,
  heartbeatIntervalMs = 3_000,
): Promise<void> {
  const server = await FakeServer.start({ heartbeatIntervalMs });
  server.createTopic("t", 1);
  try {
    await run(server, { port: server.port, maxWaitMs: 20, retryBackoffMs: 1 });
  } finally {
    await server.close();
  }
}

/** Appends one batch of string values, each with timestamp 1000 + its index in `values`. */
function append(server: FakeServer, partition: number, values: string[], topic = "t"): void {
  const records = values.map((value, i) => ({ value: utf8.encode(value), timestamp: 1_000 + i }));
  server.appendTo(topic, partition, encodeRecordBatch(records));
}

/** Polls until `count` records came (or fails after the helper's wait limit). */
async function pollFor(consumer: Consumer, count: number): Promise<ConsumerRecord[]> {
  const records: ConsumerRecord[] = [];
  await waitFor(async () => {
    records.push(...(await consumer.poll()));
    return records.length >= count;
  }, `${count} records`);
  return records;
}

const valuesOf = (records: ConsumerRecord[]) => records.map((r) => text.decode(r.value!));

describe("Consumer with assigned partitions", () => {
  test("reads from the given offset, skipping earlier records of the first batch", () =>
    withServer(async (server, options) => {
      append(server, 0, ["a", "b", "c", "d"]);
      append(server, 0, ["e", "f"]);
      const consumer = new Consumer(options);
      try {
        consumer.assign([{ topic: "t", partition: 0, offset: 2 }]);
        const records = await pollFor(consumer, 4);
        assert.deepEqual(valuesOf(records), ["c", "d", "e", "f"]);
        assert.deepEqual(
          records.map((r) => r.offset),
          [2, 3, 4, 5],
        );
        assert.equal(records[0]!.topic, "t");
        assert.equal(records[0]!.partition, 0);
        assert.equal(records[0]!.key, null);
        assert.equal(records[0]!.timestamp, 1_002);
        assert.deepEqual(await consumer.poll(), []);
      } finally {
        await consumer.close();
      }
    }));

  test("starts at the earliest or the latest offset per autoOffsetReset", () =>
    withServer(async (server, options) => {
      append(server, 0, ["old1", "old2"]);
      const earliest = new Consumer({ ...options, autoOffsetReset: "earliest" });
      const latest = new Consumer({ ...options, autoOffsetReset: "latest" });
      try {
        earliest.assign([{ topic: "t", partition: 0 }]);
        latest.assign([{ topic: "t", partition: 0 }]);
        assert.deepEqual(valuesOf(await pollFor(earliest, 2)), ["old1", "old2"]);
        assert.deepEqual(await latest.poll(), []);
        append(server, 0, ["new"]);
        assert.deepEqual(valuesOf(await pollFor(latest, 1)), ["new"]);
      } finally {
        await Promise.all([earliest.close(), latest.close()]);
      }
    }));

  test("OFFSET_OUT_OF_RANGE resets the position per autoOffsetReset", () =>
    withServer(async (server, options) => {
      append(server, 0, ["a", "b"]);
      const consumer = new Consumer({ ...options, autoOffsetReset: "earliest" });
      try {
        consumer.assign([{ topic: "t", partition: 0, offset: 50 }]);
        assert.deepEqual(valuesOf(await pollFor(consumer, 2)), ["a", "b"]);
      } finally {
        await consumer.close();
      }
    }));

  test("seek and seekToTimestamp move the position", () =>
    withServer(async (server, options) => {
      append(server, 0, ["a", "b", "c", "d", "e"]);
      const consumer = new Consumer({ ...options, autoOffsetReset: "earliest" });
      try {
        consumer.assign([{ topic: "t", partition: 0 }]);
        await pollFor(consumer, 5);
        consumer.seek({ topic: "t", partition: 0, offset: 3 });
        assert.deepEqual(valuesOf(await pollFor(consumer, 2)), ["d", "e"]);
        await consumer.seekToTimestamp(1_001);
        assert.deepEqual(valuesOf(await pollFor(consumer, 4)), ["b", "c", "d", "e"]);
        // No record that late: the position goes to the end.
        await consumer.seekToTimestamp(9_999);
        append(server, 0, ["f"]);
        assert.deepEqual(valuesOf(await pollFor(consumer, 1)), ["f"]);
        assert.throws(() => consumer.seek({ topic: "t", partition: 7, offset: 0 }), RangeError);
        assert.throws(() => consumer.seek({ topic: "t", partition: 0, offset: -1 }), RangeError);
      } finally {
        await consumer.close();
      }
    }));

  test("paused partitions are not fetched until resumed", () =>
    withServer(async (server, options) => {
      append(server, 0, ["a"]);
      const consumer = new Consumer({ ...options, autoOffsetReset: "earliest" });
      try {
        consumer.assign([{ topic: "t", partition: 0 }]);
        consumer.pause([{ topic: "t", partition: 0 }]);
        assert.deepEqual(await consumer.poll({ maxWaitMs: 5 }), []);
        const fetches = server.connections.flatMap((c) => c.apiKeys).filter((k) => k === API.Fetch);
        assert.equal(fetches.length, 0);
        consumer.resume([{ topic: "t", partition: 0 }]);
        assert.deepEqual(valuesOf(await pollFor(consumer, 1)), ["a"]);
      } finally {
        await consumer.close();
      }
    }));

  test("commits without membership are unchecked and the next consumer starts there", () =>
    withServer(async (server, options) => {
      append(server, 0, ["a", "b", "c", "d"]);
      const first = new Consumer({ ...options, group: "g", autoOffsetReset: "earliest" });
      try {
        first.assign([{ topic: "t", partition: 0 }]);
        await pollFor(first, 4);
        first.seek({ topic: "t", partition: 0, offset: 3 });
        await first.commit();
        const commit = server.commits.at(-1)!;
        assert.equal(commit["memberId"], null);
        assert.equal(commit["memberEpoch"], -1);
      } finally {
        await first.close();
      }
      const second = new Consumer({ ...options, group: "g", autoOffsetReset: "earliest" });
      try {
        second.assign([{ topic: "t", partition: 0 }]);
        assert.deepEqual(valuesOf(await pollFor(second, 1)), ["d"]);
      } finally {
        await second.close();
      }
    }));

  test("groupId is the group by Kafka's name; a group and a different groupId are refused", () =>
    withServer(async (server, options) => {
      append(server, 0, ["a", "b"]);
      const consumer = new Consumer({
        ...options,
        groupId: "kafka-named",
        autoOffsetReset: "earliest",
      });
      try {
        consumer.assign([{ topic: "t", partition: 0 }]);
        await pollFor(consumer, 2);
        await consumer.commit();
        assert.equal(server.commits.at(-1)!["groupId"], "kafka-named");
      } finally {
        await consumer.close();
      }
      assert.throws(() => new Consumer({ ...options, group: "a", groupId: "b" }), TypeError);
    }));

  test("async iteration yields records one by one; close commits what was delivered", () =>
    withServer(async (server, options) => {
      append(server, 0, ["a", "b", "c"]);
      const consumer = new Consumer({ ...options, group: "g", autoOffsetReset: "earliest" });
      consumer.assign([{ topic: "t", partition: 0 }]);
      const seen: string[] = [];
      for await (const record of consumer) {
        seen.push(text.decode(record.value!));
        if (seen.length === 2) break;
      }
      assert.deepEqual(seen, ["a", "b"]);
      await consumer.close();
      assert.equal(server.committedOffset("g", "t", 0), 2);
    }));

  test("auto-commit commits only the records the application is done with", () =>
    withServer(async (server, options) => {
      append(server, 0, ["a", "b", "c"]);
      const consumer = new Consumer({
        ...options,
        group: "g",
        autoOffsetReset: "earliest",
        autoCommitIntervalMs: 5,
      });
      try {
        consumer.assign([{ topic: "t", partition: 0 }]);
        await pollFor(consumer, 3);
        // The records of that poll count as processed once the next poll starts.
        await waitFor(() => server.committedOffset("g", "t", 0) === 0, "the start committed");
        await consumer.poll({ maxWaitMs: 1 });
        await waitFor(() => server.committedOffset("g", "t", 0) === 3, "offset 3 committed");
      } finally {
        await consumer.close();
      }
    }));

  test("bad arguments and misuse throw at once", () =>
    withServer(async (_server, options) => {
      const consumer = new Consumer(options);
      try {
        assert.throws(() => consumer.subscribe(["t"]), /needs a group/);
        assert.throws(() => consumer.assign([{ topic: "t", partition: -1 }]), RangeError);
        await assert.rejects(consumer.commit(), TypeError);
        consumer.assign([{ topic: "t", partition: 0 }]);
        assert.throws(() => consumer.subscribe(["t"], { group: "g" }), TypeError);
        const polling = consumer.poll();
        await assert.rejects(consumer.poll(), /another poll is running/);
        await polling;
        assert.throws(() => new Consumer({ autoOffsetReset: "middle" as "earliest" }), TypeError);
        assert.throws(() => new Consumer({ maxWaitMs: 70_000 }), RangeError);
      } finally {
        await consumer.close();
      }
    }));
});

describe("Consumer in a group", () => {
  test("joins, gets its partitions, starts at the committed offset, commits as a member", () =>
    withServer(async (server, options) => {
      append(server, 0, ["a", "b", "c", "d"]);
      const admin = new Admin(options);
      await admin.commitOffsets("g", [{ topic: "t", partition: 0, offset: 1 }]);
      await admin.close();
      const consumer = new Consumer({ ...options, group: "g" });
      try {
        consumer.subscribe(["t"], { fromBeginning: true });
        assert.deepEqual(valuesOf(await pollFor(consumer, 3)), ["b", "c", "d"]);
        assert.deepEqual(consumer.assignment(), [{ topic: "t", partition: 0 }]);
        const join = server.heartbeats[0]!;
        assert.equal(join["memberEpoch"], 0);
        assert.equal(join["memberId"], null);
        assert.deepEqual(join["topics"], ["t"]);
        await consumer.commit();
        const commit = server.commits.at(-1)!;
        assert.equal(commit["memberId"], consumer.memberId);
        assert.ok((commit["memberEpoch"] as number) >= 1);
        assert.equal(server.committedOffset("g", "t", 0), 4);
      } finally {
        await consumer.close();
      }
      const leave = server.heartbeats.at(-1)!;
      assert.equal(leave["memberEpoch"], -1);
      assert.equal(server.groups.describe("g").members.length, 0);
    }));

  test("a second member takes half the partitions; leaving gives them back", () =>
    withServer(async (server, options) => {
      server.createTopic("wide", 4);
      const first = new Consumer({ ...options, group: "g" });
      const second = new Consumer({ ...options, group: "g" });
      try {
        first.subscribe(["wide"]);
        await waitFor(() => first.assignment().length === 4, "all four partitions to the first");
        second.subscribe(["wide"]);
        await waitFor(
          () => first.assignment().length === 2 && second.assignment().length === 2,
          "two partitions each",
        );
        const owned = [...first.assignment(), ...second.assignment()].map((p) => p.partition);
        assert.deepEqual(owned.sort(), [0, 1, 2, 3]);
        await second.close();
        await waitFor(() => first.assignment().length === 4, "all four back to the first");
      } finally {
        await Promise.all([first.close(), second.close()]);
      }
    }, 5));

  test("a fenced member drops its partitions and rejoins with epoch 0", () =>
    withServer(async (server, options) => {
      let heartbeats = 0;
      server.hook = (request) => {
        if (request.apiKey !== API.GroupHeartbeat) return false;
        heartbeats++;
        if (heartbeats !== 3) return false;
        readMsgpack(request.body, "heartbeat");
        request.connection.respondMsgpack(request.correlationId, {
          errorCode: WIRE_ERRORS.FENCED_MEMBER_EPOCH,
          errorMessage: "stale",
          memberId: null,
          memberEpoch: -1,
          heartbeatIntervalMs: 0,
          assignment: null,
        });
        return true;
      };
      const consumer = new Consumer({ ...options, group: "g" });
      try {
        consumer.subscribe(["t"]);
        await waitFor(() => heartbeats >= 5, "heartbeats after the fencing");
        const epochs = server.heartbeats.map((h) => h["memberEpoch"]);
        assert.equal(epochs[0], 0);
        assert.equal(epochs[2], 0, "the rejoin after the fenced heartbeat");
        await waitFor(() => consumer.assignment().length === 1, "the partition back");
      } finally {
        await consumer.close();
      }
    }, 5));

  test("an invalid group id fails the next poll", () =>
    withServer(async (_server, options) => {
      const consumer = new Consumer({ ...options, group: "" });
      try {
        consumer.subscribe(["t"]);
        await assert.rejects(
          waitFor(async () => (await consumer.poll()).length > 0, "never"),
          { code: "INVALID_GROUP_ID" },
        );
      } finally {
        await consumer.close();
      }
    }));
});

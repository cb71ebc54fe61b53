// Where the server and PROTOCOL.md disagreed, the spec is right. Each test is a request a
// client written from the spec alone would send, over a raw socket, and the answer the spec
// promises: INVALID_GROUP_ID from every API, a fenced member served again soon after it
// rejoins, UNSUPPORTED_COMPRESSION for an unknown codec, TOO_MANY_IN_FLIGHT answered (not held)
// for request 1,025, the batches before a bad one appended, and timestamps past ±2^53 refused.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { type Fields, readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { writeFetchRequest } from "../../../protocol/codec/fetch.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { readProduceResponse, writeProduceRequest } from "../../../protocol/codec/produce.ts";
import {
  ATTRIBUTES_AT,
  BASE_TIMESTAMP_AT,
  CRC_AT,
  computeBatchCrc,
  MAX_TIMESTAMP_AT,
  writeInt32,
} from "../../../record/mod.ts";
import { decodeRead } from "../../engine/partition_log_helpers.ts";
import { waitFor } from "../../helpers.ts";
import type { RawClient } from "./raw_client.ts";
import { connected, startTestServer } from "./serving.ts";

async function call(
  client: RawClient,
  apiKey: number,
  body: Fields,
): Promise<{ errorCode: number; fields: Fields }> {
  const id = client.request(apiKey, (w) => writeMsgpack(w, body));
  const { errorCode, reader } = await client.response(id);
  assert.equal(errorCode, 0, errorCode === 0 ? "" : reader.string("error_message"));
  return { errorCode, fields: readMsgpack(reader, "response") };
}

const text = new TextEncoder();

function batchOf(value: string, timestamp = 1_700_000_000_000): Uint8Array {
  return encodeRecordBatch([{ value: text.encode(value) }], { timestamp });
}

/** Changes header bytes of a batch and gives it a CRC that matches again. */
function restamped(batch: Uint8Array, change: (bytes: Uint8Array) => void): Uint8Array {
  const bytes = batch.slice();
  change(bytes);
  const crc = computeBatchCrc(bytes, 0, bytes.length);
  writeInt32(bytes, CRC_AT, crc);
  return bytes;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return joined;
}

async function produce(client: RawClient, topic: string, records: Uint8Array) {
  const id = client.request(API.Produce, (w) =>
    writeProduceRequest(w, {
      acks: 1,
      timeoutMs: 30_000,
      topics: [{ topic, partitions: [{ partition: 0, records }] }],
    }),
  );
  const { errorCode, reader } = await client.response(id);
  assert.equal(errorCode, 0);
  return readProduceResponse(reader).topics[0]!.partitions[0]!;
}

describe("the server answers as PROTOCOL.md says", () => {
  test("every API answers an invalid group id with INVALID_GROUP_ID", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    const invalidIds = ["", "g".repeat(256), "é".repeat(128)];
    for (const groupId of invalidIds) {
      const requests: [number, Fields][] = [
        [API.OffsetCommit, { groupId, offsets: [] }],
        [API.OffsetFetch, { groupId }],
        [API.GroupHeartbeat, { groupId, memberId: null, memberEpoch: 0, topics: [] }],
        [API.DescribeGroup, { groupId }],
      ];
      for (const [apiKey, body] of requests) {
        const { fields } = await call(client, apiKey, body);
        assert.equal(
          fields["errorCode"],
          WIRE_ERRORS.INVALID_GROUP_ID,
          `api ${apiKey}, group id of ${groupId.length} characters`,
        );
      }
    }
    // The longest valid id is 255 bytes.
    const { fields } = await call(client, API.OffsetFetch, { groupId: `${"é".repeat(127)}g` });
    assert.equal(fields["errorCode"], 0);
  });

  test("a fenced member that rejoins is served within a few heartbeats", async () => {
    const heartbeatIntervalMs = 50;
    await using t = await startTestServer({ heartbeatIntervalMs, sessionTimeoutMs: 60_000 });
    await t.server.engine.createTopic("work", { partitions: 4 });
    using client = await connected(t.port);
    const join = { groupId: "g", memberId: null, memberEpoch: 0, topics: ["work"] };
    const joined = (await call(client, API.GroupHeartbeat, join)).fields;
    assert.deepEqual(joined["assignment"], [{ topic: "work", partitions: [0, 1, 2, 3] }]);
    // Its last heartbeat answer was lost, say: the epoch it sends is not the one it has.
    const stale = { groupId: "g", memberId: joined["memberId"], memberEpoch: 99 };
    const fenced = (await call(client, API.GroupHeartbeat, stale)).fields;
    assert.equal(fenced["errorCode"], WIRE_ERRORS.FENCED_MEMBER_EPOCH);
    // As the spec says: drop the partitions and rejoin with epoch 0 and no member id.
    let member = (await call(client, API.GroupHeartbeat, join)).fields;
    const startedMs = Date.now();
    let owned: unknown = member["assignment"];
    await waitFor(
      async () => {
        if (JSON.stringify(owned) === JSON.stringify([{ topic: "work", partitions: [0, 1, 2, 3] }]))
          return true;
        const beat = {
          groupId: "g",
          memberId: member["memberId"],
          memberEpoch: member["memberEpoch"],
        };
        member = (await call(client, API.GroupHeartbeat, beat)).fields;
        assert.equal(member["errorCode"], 0, String(member["errorMessage"]));
        if (member["assignment"] !== null) owned = member["assignment"];
        return false;
      },
      "the rejoined member to get the partitions",
      10 * heartbeatIntervalMs,
    );
    assert.ok(Date.now() - startedMs < 10 * heartbeatIntervalMs);
    // The fenced member id is gone: it may no longer commit.
    const commit = {
      groupId: "g",
      memberId: joined["memberId"],
      memberEpoch: joined["memberEpoch"],
      offsets: [{ topic: "work", partition: 0, offset: 0 }],
    };
    const answer = (await call(client, API.OffsetCommit, commit)).fields;
    assert.equal(answer["errorCode"], WIRE_ERRORS.UNKNOWN_MEMBER_ID);
  });

  test("a batch naming an unknown compression codec gets UNSUPPORTED_COMPRESSION", async () => {
    await using t = await startTestServer();
    await t.server.engine.createTopic("codecs");
    using client = await connected(t.port);
    for (const codec of [5, 6, 7]) {
      const batch = restamped(batchOf("x"), (bytes) => {
        bytes[ATTRIBUTES_AT + 1] = (bytes[ATTRIBUTES_AT + 1]! & ~0x07) | codec;
      });
      const result = await produce(client, "codecs", batch);
      assert.equal(result.errorCode, WIRE_ERRORS.UNSUPPORTED_COMPRESSION, result.errorMessage!);
    }
    assert.equal(t.server.engine.partition("codecs", 0).highWatermark, 0);
    assert.equal((await produce(client, "codecs", batchOf("ok"))).errorCode, 0);
  });

  test("request 1,025 in flight is answered TOO_MANY_IN_FLIGHT, not held", async () => {
    await using t = await startTestServer();
    await t.server.engine.createTopic("polls", { config: { fsync: "never" } });
    using client = await connected(t.port);
    const polls: number[] = [];
    for (let i = 0; i < 1024; i++) {
      polls.push(
        client.request(API.Fetch, (w) =>
          writeFetchRequest(w, {
            maxWaitMs: 60_000,
            minBytes: 1,
            maxBytes: 1024,
            topics: [
              {
                topic: "polls",
                partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 1024 }],
              },
            ],
          }),
        ),
      );
    }
    const extra = client.request(API.Stats, (w) => writeMsgpack(w, {}));
    // The server has read the extra request once it has refused it: its answer is queued
    // behind the 1,024 long polls (answers keep request order), which new data completes.
    await waitFor(() => t.server.stats()["refusedRequests"] === 1, "request 1,025 refused");
    await t.server.engine.append("polls", 0, batchOf("wake"));
    for (const id of polls) assert.equal((await client.response(id)).errorCode, 0);
    const { errorCode } = await client.response(extra);
    assert.equal(errorCode, WIRE_ERRORS.TOO_MANY_IN_FLIGHT);
    const after = client.request(API.Stats, (w) => writeMsgpack(w, {}));
    assert.equal((await client.response(after)).errorCode, 0);
  });

  // The large one arrives split across received chunks and waits as a joined copy of its parts.
  for (const [kind, value] of [
    ["small", "later"],
    ["split", "x".repeat(300_000)],
  ] as const) {
    const name = `an acks-0 Produce (${kind}) at the in-flight limit waits for a slot`;
    test(`${name} and is appended`, () => acksZeroWaits(value));
  }

  async function acksZeroWaits(value: string): Promise<void> {
    await using t = await startTestServer({ limits: { inFlightMax: 4 } });
    await t.server.engine.createTopic("quiet", { config: { fsync: "never" } });
    using client = await connected(t.port);
    const polls = [];
    for (let i = 0; i < 4; i++) {
      polls.push(
        client.request(API.Fetch, (w) =>
          writeFetchRequest(w, {
            maxWaitMs: 60_000,
            minBytes: 1,
            maxBytes: 1024,
            topics: [
              {
                topic: "quiet",
                partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 1 }],
              },
            ],
          }),
        ),
      );
    }
    client.request(API.Produce, (w) =>
      writeProduceRequest(w, {
        acks: 0,
        timeoutMs: 30_000,
        topics: [{ topic: "quiet", partitions: [{ partition: 0, records: batchOf(value) }] }],
      }),
    );
    await waitFor(() => t.server.stats()["pausedConnections"] === 1, "the produce to wait");
    assert.equal(t.server.stats()["refusedRequests"], 0);
    await t.server.engine.append("quiet", 0, batchOf("wake"));
    for (const id of polls) assert.equal((await client.response(id)).errorCode, 0);
    const log = t.server.engine.partition("quiet", 0);
    await waitFor(() => log.highWatermark === 2, "the waiting produce to be appended");
    const [waited] = decodeRead(log.read(1, 1 << 21));
    const stored = waited!.records[0]!.value;
    assert.equal(stored, Buffer.from(value).toString("hex"), "appended whole and intact");
  }

  test("a topic deleted and created again in one pipeline is whole", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    const create = { topics: [{ name: "again", partitions: 1, config: { fsync: "never" } }] };
    const first = (await call(client, API.CreateTopics, create)).fields["results"] as Fields[];
    assert.equal(first[0]!["errorCode"], 0);
    const deleted = client.request(API.DeleteTopics, (w) => writeMsgpack(w, { topics: ["again"] }));
    const created = client.request(API.CreateTopics, (w) => writeMsgpack(w, create));
    for (const id of [deleted, created]) {
      const { errorCode, reader } = await client.response(id);
      assert.equal(errorCode, 0);
      const results = readMsgpack(reader, "results")["results"] as Fields[];
      assert.equal(results[0]!["errorCode"], 0, String(results[0]!["errorMessage"]));
    }
    assert.equal((await produce(client, "again", batchOf("kept"))).errorCode, 0);
    // Its files are all there: the server closes it cleanly (a removed directory made this throw).
    await t.server.close();
  });

  test("batches before a corrupt one are appended, and the answer says so", async () => {
    await using t = await startTestServer();
    await t.server.engine.createTopic("partial", { config: { fsync: "never" } });
    using client = await connected(t.port);
    assert.equal((await produce(client, "partial", batchOf("first"))).baseOffset, 0);
    const corrupt = batchOf("bad");
    corrupt[corrupt.length - 1] = corrupt[corrupt.length - 1]! ^ 0xff;
    const records = concat([batchOf("a"), batchOf("b"), corrupt, batchOf("c")]);
    const result = await produce(client, "partial", records);
    assert.equal(result.errorCode, WIRE_ERRORS.CORRUPT_BATCH);
    assert.equal(result.baseOffset, 1, "base_offset is where the appended batches start");
    assert.match(result.errorMessage!, /batch 2/);
    assert.equal(t.server.engine.partition("partial", 0).highWatermark, 3);
  });

  test("a timestamp beyond ±2^53 is INVALID_BATCH and the log stays writable", async () => {
    await using t = await startTestServer();
    await t.server.engine.createTopic("times");
    using client = await connected(t.port);
    const cases = [
      [MAX_TIMESTAMP_AT, 0x0040_0000], // 2^54
      [BASE_TIMESTAMP_AT, 0x0040_0000],
      [MAX_TIMESTAMP_AT, 0x8000_0000 | 0], // -2^63
      [BASE_TIMESTAMP_AT, 0xffe0_0000 | 0], // -2^53
    ] as const;
    for (const [at, high] of cases) {
      const batch = restamped(batchOf("far"), (bytes) => {
        writeInt32(bytes, at, high);
        writeInt32(bytes, at + 4, 0);
      });
      const result = await produce(client, "times", batch);
      assert.equal(result.errorCode, WIRE_ERRORS.INVALID_BATCH, `high word ${high} at ${at}`);
      assert.match(result.errorMessage!, /timestamp/i);
    }
    assert.equal((await produce(client, "times", batchOf("near"))).errorCode, 0);
    assert.equal(t.server.engine.partition("times", 0).highWatermark, 1);
  });
});

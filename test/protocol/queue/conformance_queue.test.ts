// Where the server and PROTOCOL.md sections 7a and 7b disagreed, found by a client written from
// the spec alone. Each test sends, over a raw socket, the bytes such a client writes (binary
// requests field by field in the grammar's order) and checks the answer the spec promises:
// null taken for QueueDeclare's `int | null` settings, names too long refused as the declare's
// or binding's own INVALID_QUEUE / INVALID_EXCHANGE, the default exchange refused as
// INVALID_EXCHANGE whatever is asked of it, a member id past 255 bytes INVALID_REQUEST in
// QueueFetch and QueueAck too, a batch failing its CRC-32C in an ExchangePublish answered
// CORRUPT_BATCH without stopping the batches after it however it would have been routed, and
// refusals that name the value. Beside them, what such a client checks of any binary body: cut
// short anywhere, it is INVALID_REQUEST and nothing of it is applied.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { type Fields, readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { API } from "../../../protocol/codec/frames.ts";
import type { Reader, Writer } from "../../../protocol/codec/wire.ts";
import type { RawClient } from "../server/raw_client.ts";
import { assertServing, connected, startTestServer } from "../server/serving.ts";

const utf8 = new TextEncoder();

/** A control request; the answer's body map (the header's code must be 0). */
async function control(client: RawClient, apiKey: number, body: Fields): Promise<Fields> {
  const id = client.request(apiKey, (w) => writeMsgpack(w, body));
  const { errorCode, reader } = await client.response(id);
  assert.equal(errorCode, 0, errorCode === 0 ? "" : reader.string("error_message"));
  return readMsgpack(reader, "response");
}

/** A binary request; the header's code and, when it is not 0, the error message. */
async function binary(
  client: RawClient,
  apiKey: number,
  body: (writer: Writer) => void,
  apiVersion = 1,
): Promise<{ errorCode: number; message: string | null; reader: Reader }> {
  const { errorCode, reader } = await client.response(client.request(apiKey, body, apiVersion));
  return { errorCode, message: errorCode === 0 ? null : reader.string("error_message"), reader };
}

/** QueueFetch's request, as section 7a writes it: no piggy-backed acks. */
function queueFetch(queue: string, memberId: string) {
  return (w: Writer) => {
    w.u32(0).u32(100).u32(1_048_576).string(queue).string(memberId).u16(0);
  };
}

/** QueueAck's request with one range of one partition. */
function queueAck(queue: string, memberId: string, first: number, last: number, type: number) {
  return (w: Writer) => {
    w.string(queue).string(memberId).u16(1).u32(0).u16(1).i64(first).i64(last).u8(type);
  };
}

/** ExchangePublish's request: acks 1, the batches concatenated in `records`. */
function exchangePublish(exchange: string, batches: Uint8Array[]) {
  return (w: Writer) => {
    w.i8(1).u32(30_000).string(exchange);
    w.u32(batches.reduce((sum, batch) => sum + batch.length, 0));
    for (const batch of batches) w.raw(batch);
  };
}

type BatchEntry = { errorCode: number; errorMessage: string | null; destinations: number };

function readPublishAnswer(reader: Reader): { entries: BatchEntry[]; unroutable: number[] } {
  const entries: BatchEntry[] = [];
  const unroutable: number[] = [];
  const count = reader.u16();
  for (let i = 0; i < count; i++) {
    entries.push({
      errorCode: reader.i16(),
      errorMessage: reader.nullableString(),
      destinations: reader.u32(),
    });
    unroutable.push(reader.u32());
  }
  reader.expectEnd("ExchangePublishResponse");
  return { entries, unroutable };
}

function batchOf(key: string, value: string): Uint8Array {
  return encodeRecordBatch([{ key: utf8.encode(key), value: utf8.encode(value) }]);
}

/** The batch with its last value byte flipped: its CRC-32C no longer matches. */
function damaged(batch: Uint8Array): Uint8Array {
  const bytes = batch.slice();
  bytes[bytes.length - 2]! ^= 0xff;
  return bytes;
}

describe("the queue and exchange APIs answer as PROTOCOL.md says", () => {
  test("the default exchange is INVALID_EXCHANGE to declare, delete, bind or unbind", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    await control(client, API.CreateTopics, { topics: [{ name: "jobs", partitions: 1 }] });
    const asks: [number, Fields][] = [
      [API.ExchangeDeclare, { name: "", type: "direct" }],
      [API.ExchangeDelete, { name: "" }],
      [API.ExchangeBind, { exchange: "", topic: "jobs" }],
      [API.ExchangeUnbind, { exchange: "", topic: "jobs" }],
    ];
    for (const [apiKey, body] of asks) {
      const answer = await control(client, apiKey, body);
      assert.equal(answer["errorCode"], WIRE_ERRORS.INVALID_EXCHANGE, `api ${apiKey}`);
      assert.match(String(answer["errorMessage"]), /default exchange '' exists always/);
    }
    // A named exchange that does not exist is still UNKNOWN_EXCHANGE.
    const missing = await control(client, API.ExchangeDelete, { name: "nowhere" });
    assert.equal(missing["errorCode"], WIRE_ERRORS.UNKNOWN_EXCHANGE);
  });

  test("QueueDeclare takes null for each `int | null` setting, as their default", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    await control(client, API.CreateTopics, { topics: [{ name: "jobs", partitions: 1 }] });
    const nulls = {
      messageTtlMs: null,
      maxLength: null,
      maxLengthBytes: null,
      priorities: null,
      priorityRatio: null,
      deadLetterTopic: null,
      retry: null,
    };
    const declared = await control(client, API.QueueDeclare, {
      name: "work",
      topic: "jobs",
      ...nulls,
    });
    assert.equal(declared["errorCode"], 0, String(declared["errorMessage"]));
    const queue = declared["queue"] as Fields;
    for (const key of Object.keys(nulls)) assert.equal(queue[key], null, key);
    // The same queue without the keys: the same settings, so no QUEUE_EXISTS.
    const again = await control(client, API.QueueDeclare, { name: "work", topic: "jobs" });
    assert.equal(again["errorCode"], 0, String(again["errorMessage"]));
    // A null where the grammar has a plain `int` is still a malformed body.
    const id = client.request(API.QueueDeclare, (w) =>
      writeMsgpack(w, { name: "other", topic: "jobs", lockMs: null }),
    );
    assert.equal((await client.response(id)).errorCode, WIRE_ERRORS.INVALID_REQUEST);
  });

  test("a name past 249 bytes is the declare's own error, not a malformed body", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    await control(client, API.CreateTopics, { topics: [{ name: "jobs", partitions: 1 }] });
    const long = "n".repeat(250);
    const queue = await control(client, API.QueueDeclare, { name: long, topic: "jobs" });
    assert.equal(queue["errorCode"], WIRE_ERRORS.INVALID_QUEUE);
    assert.match(String(queue["errorMessage"]), /^Queue name 'n+' is longer than 249/);
    const exchange = await control(client, API.ExchangeDeclare, { name: long, type: "direct" });
    assert.equal(exchange["errorCode"], WIRE_ERRORS.INVALID_EXCHANGE);
    assert.match(String(exchange["errorMessage"]), /^Exchange name 'n+' is longer than 249/);
    await control(client, API.ExchangeDeclare, { name: "x", type: "direct" });
    // A binding's queue that cannot be a queue's name is INVALID_QUEUE, a topic INVALID_TOPIC.
    const toQueue = await control(client, API.ExchangeBind, { exchange: "x", queue: "a b" });
    assert.equal(toQueue["errorCode"], WIRE_ERRORS.INVALID_QUEUE);
    assert.match(String(toQueue["errorMessage"]), /^Queue name 'a b'/);
    const toTopic = await control(client, API.ExchangeBind, { exchange: "x", topic: long });
    assert.equal(toTopic["errorCode"], WIRE_ERRORS.INVALID_TOPIC);
  });

  test("a member id past 255 bytes is INVALID_REQUEST in QueueFetch and QueueAck", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    await control(client, API.CreateTopics, { topics: [{ name: "jobs", partitions: 1 }] });
    const declared = await control(client, API.QueueDeclare, { name: "work", topic: "jobs" });
    assert.equal(declared["errorCode"], 0);
    const long = "m".repeat(256);
    for (const version of [1, 2]) {
      const fetched = await binary(client, API.QueueFetch, queueFetch("work", long), version);
      assert.equal(fetched.errorCode, WIRE_ERRORS.INVALID_REQUEST, `QueueFetch v${version}`);
      assert.equal(fetched.message, "member_id of 256 bytes exceeds 255");
      const acked = await binary(client, API.QueueAck, queueAck("work", long, 0, 0, 1), version);
      assert.equal(acked.errorCode, WIRE_ERRORS.INVALID_REQUEST, `QueueAck v${version}`);
      assert.equal(acked.message, "member_id of 256 bytes exceeds 255");
    }
    // 255 bytes is a well-formed id that no member has: answered in the body.
    const unknown = await binary(client, API.QueueFetch, queueFetch("work", "m".repeat(255)));
    assert.equal(unknown.errorCode, 0);
    assert.equal(unknown.reader.i16(), WIRE_ERRORS.UNKNOWN_MEMBER_ID);
    // So is QueueLeave's, the msgpack API with the same limit.
    const leave = client.request(API.QueueLeave, (w) =>
      writeMsgpack(w, { queue: "work", memberId: long }),
    );
    assert.equal((await client.response(leave)).errorCode, WIRE_ERRORS.INVALID_REQUEST);
    await assertServing(t.port);
  });

  test("a batch failing its CRC-32C does not stop the batches after it", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    await control(client, API.CreateTopics, { topics: [{ name: "jobs", partitions: 1 }] });
    await control(client, API.ExchangeDeclare, { name: "x", type: "direct" });
    await control(client, API.ExchangeBind, { exchange: "x", topic: "jobs", routingKey: "k" });
    // First damaged where it would reach a topic, then where no binding would take it: the
    // answer is the same either way, and the good batch behind it is routed.
    for (const key of ["k", "nobody"]) {
      const publish = exchangePublish("x", [damaged(batchOf(key, "bad")), batchOf("k", key)]);
      const { errorCode, reader } = await binary(client, API.ExchangePublish, publish);
      assert.equal(errorCode, 0);
      const { entries, unroutable } = readPublishAnswer(reader);
      assert.equal(entries.length, 2, key);
      assert.equal(entries[0]!.errorCode, WIRE_ERRORS.CORRUPT_BATCH, key);
      assert.match(entries[0]!.errorMessage ?? "", /CRC-32C/);
      assert.equal(entries[0]!.destinations, 0);
      assert.deepEqual(entries[1], { errorCode: 0, errorMessage: null, destinations: 1 }, key);
      assert.deepEqual(unroutable, [0, 0], key);
    }
    // The two good batches, and nothing of the damaged ones, are in the topic.
    const offsets = await control(client, API.ListOffsets, {
      topics: [{ topic: "jobs", partitions: [{ partition: 0, timestamp: -1 }] }],
    });
    const topics = offsets["topics"] as Fields[];
    const partitions = topics[0]!["partitions"] as Fields[];
    assert.equal(partitions[0]!["offset"], 2);
  });

  test("refusals name the value: a missing topic, an offset past 2^53 - 1", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    await control(client, API.CreateTopics, { topics: [{ name: "jobs", partitions: 1 }] });
    const declared = await control(client, API.QueueDeclare, { name: "work", topic: "absent" });
    assert.equal(declared["errorCode"], WIRE_ERRORS.INVALID_QUEUE);
    assert.equal(declared["errorMessage"], "Queue 'work': topic 'absent' does not exist");
    assert.equal(declared["queue"], null);
    await control(client, API.QueueDeclare, { name: "work", topic: "jobs" });
    const joined = await control(client, API.QueueJoin, { queue: "work" });
    const member = String(joined["memberId"]);
    const past = 2 ** 53;
    const acked = await binary(client, API.QueueAck, (w) => {
      // i64 2^53: high word 0x00200000, low word 0, written by hand (past a safe integer).
      w.string("work").string(member).u16(1).u32(0).u16(1).u32(0x20_0000).u32(0);
      w.i64(0).u8(1);
    });
    assert.equal(acked.errorCode, WIRE_ERRORS.INVALID_REQUEST);
    assert.match(acked.message ?? "", new RegExp(`first_offset ${past} at position \\d+`));
    await assertServing(t.port);
  });

  test("cut-short QueueFetch, QueueAck, ExchangePublish: refused, none applied", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    await control(client, API.CreateTopics, { topics: [{ name: "jobs", partitions: 1 }] });
    await control(client, API.QueueDeclare, { name: "work", topic: "jobs", from: "beginning" });
    const member = String((await control(client, API.QueueJoin, { queue: "work" }))["memberId"]);
    const published = await binary(
      client,
      API.ExchangePublish,
      exchangePublish("", [batchOf("work", "1")]),
    );
    assert.deepEqual(readPublishAnswer(published.reader).entries[0]?.destinations, 1);
    const fetched = await binary(client, API.QueueFetch, queueFetch("work", member));
    assert.equal(fetched.errorCode, 0);
    // Whole requests, as the grammar writes them: a fetch carrying a release of offset 0, an
    // ack releasing it after a delay (type 5 and its delay_ms), a publish of one batch.
    const bodies: [number, (w: Writer) => void][] = [
      [
        API.QueueFetch,
        (w) => {
          w.u32(0).u32(1).u32(1_048_576).string("work").string(member);
          w.u16(1).u32(0).u16(1).i64(0).i64(0).u8(2);
        },
      ],
      [
        API.QueueAck,
        (w) => {
          w.string("work").string(member).u16(1).u32(0).u16(1).i64(0).i64(0).u8(5).i64(1_000);
        },
      ],
      [API.ExchangePublish, exchangePublish("", [batchOf("work", "2")])],
    ];
    for (const [apiKey, write] of bodies) {
      const whole = client.frame(apiKey, write).subarray(12);
      for (let length = 0; length < whole.length; length++) {
        const { errorCode, message } = await binary(client, apiKey, (w) => {
          w.raw(whole.subarray(0, length));
        });
        assert.equal(errorCode, WIRE_ERRORS.INVALID_REQUEST, `api ${apiKey}, ${length} bytes`);
        assert.ok(message !== null && message.length > 0);
      }
    }
    // Offset 0 is still held by the member, and nothing more reached the topic.
    const listed = await control(client, API.QueueList, { names: ["work"] });
    const stats = (listed["queues"] as Fields[])[0]!["stats"] as Fields;
    assert.equal(stats["acquired"], 1);
    assert.equal(stats["delayed"], 0);
    const partitions = stats["partitions"] as Fields[];
    assert.equal(partitions[0]!["highWatermark"], 1);
    await assertServing(t.port);
  });
});

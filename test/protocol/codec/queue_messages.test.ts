// The queue codecs (PROTOCOL.md section 7a) against golden bytes written field by field, and
// against hostile input: every refusal is a ProtocolError (INVALID_REQUEST) naming the value.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ProtocolError } from "../../../protocol/codec/errors.ts";
import { writeMsgpack } from "../../../protocol/codec/control.ts";
import { ChunkedFrame } from "../../../protocol/codec/frames.ts";
import {
  ACK_RANGES_MAX,
  type QueueAckRequest,
  readQueueAckRequest,
  readQueueAckResponse,
  readQueueAckResponseV2,
  writeQueueAckRequest,
  writeQueueAckResponse,
  writeQueueAckResponseV2,
} from "../../../protocol/codec/queue_ack.ts";
import {
  readQueueDeclareRequest,
  readQueueDeclareResponse,
  readQueueJoinRequest,
  readQueueJoinResponse,
  readQueueLeaveRequest,
  readQueueListResponse,
  writeQueueDeclareRequest,
  writeQueueDeclareResponse,
  writeQueueJoinRequest,
  writeQueueJoinResponse,
  writeQueueLeaveRequest,
  writeQueueListResponse,
} from "../../../protocol/codec/queue_control.ts";
import {
  type QueueFetchRequest,
  type QueueFetchResponse,
  readQueueFetchRequest,
  readQueueFetchResponse,
  writeQueueFetchRequest,
  writeQueueFetchResponse,
} from "../../../protocol/codec/queue_fetch.ts";
import { Reader, Writer } from "../../../protocol/codec/wire.ts";

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function fromHex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replace(/\s+/g, ""), "hex"));
}

function bodyOf(write: (writer: Writer) => void): Uint8Array {
  const writer = new Writer(1);
  write(writer);
  return writer.finish().slice();
}

function refused(bytes: Uint8Array, read: (reader: Reader) => unknown, pattern: RegExp): void {
  assert.throws(
    () => read(new Reader(bytes)),
    (error: unknown) => {
      assert.ok(error instanceof ProtocolError, String(error));
      assert.equal(error.code, "INVALID_REQUEST");
      assert.match(error.message, pattern);
      return true;
    },
  );
}

/** queue "q", member "m", then the acks list given as hex. */
function ackRequestBytes(acksHex: string): Uint8Array {
  return fromHex(`0001 71  0001 6d ${acksHex}`);
}

const FETCH_REQUEST: QueueFetchRequest = {
  maxWaitMs: 500,
  maxRecords: 100,
  maxBytes: 1_048_576,
  queue: "q",
  memberId: "m",
  acks: [
    {
      partition: 2,
      ranges: [
        { first: 5, last: 7, type: "accept" },
        { first: 9, last: 9, type: "renew" },
      ],
    },
  ],
};

const FETCH_REQUEST_HEX = [
  "000001f4 00000064 00100000", // max_wait_ms 500, max_records 100, max_bytes 1 MiB
  "0001 71 0001 6d", // queue "q", member_id "m"
  "0001 00000002 0002", // acks: 1 partition, partition 2, 2 ranges
  "0000000000000005 0000000000000007 01", // 5..7 accept
  "0000000000000009 0000000000000009 04", // 9..9 renew
].join("");

describe("QueueFetch v1", () => {
  test("a request is the golden bytes and reads back the same", () => {
    const bytes = bodyOf((writer) => writeQueueFetchRequest(writer, FETCH_REQUEST));
    assert.equal(hex(bytes), FETCH_REQUEST_HEX.replace(/\s+/g, ""));
    assert.deepEqual(readQueueFetchRequest(new Reader(bytes)), FETCH_REQUEST);
  });

  test("a response carries acquired ranges beside the record views, not copied", () => {
    const batch = fromHex("aabbccdd");
    const response: QueueFetchResponse = {
      errorCode: 0,
      errorMessage: null,
      lockMs: 30_000,
      acks: [{ partition: 2, errorCode: 54, errorMessage: "late" }],
      partitions: [
        {
          partition: 1,
          errorCode: 0,
          acquired: [
            { first: 3, last: 4, deliveryCount: 1 },
            { first: 8, last: 8, deliveryCount: 3 },
          ],
          records: [batch],
        },
      ],
    };
    const frame = new ChunkedFrame(7);
    writeQueueFetchResponse(frame, response);
    const chunks = frame.finish();
    assert.ok(chunks.includes(batch), "the records go out as the view they were given");
    const joined = fromHex(chunks.map(hex).join(""));
    const expected = [
      "00000054 00000007 0000", // size 84, correlation_id 7, error_code 0 (header)
      "0000 ffff 00007530", // error_code 0, error_message null, lock_ms 30000
      "0001 00000002 0036 0004 6c617465", // acks: partition 2, LOCK_EXPIRED, "late"
      "0001 00000001 0000 00000002", // partitions: 1; partition 1, error 0, 2 runs
      "0000000000000003 0000000000000004 0001", // 3..4, first delivery
      "0000000000000008 0000000000000008 0003", // 8..8, third delivery
      "00000004 aabbccdd", // records: 4 bytes
    ].join("");
    assert.equal(hex(joined), expected.replace(/\s+/g, ""));
    // Read back from the body split at an awkward place: records stay views.
    const body = joined.subarray(10);
    const read = readQueueFetchResponse([body.subarray(0, 30), body.subarray(30)]);
    assert.deepEqual({ ...read, partitions: [] }, { ...response, partitions: [] });
    const [partition] = read.partitions;
    assert.deepEqual(partition!.acquired, response.partitions[0]!.acquired);
    assert.equal(hex(fromHex(partition!.records.map(hex).join(""))), "aabbccdd");
    assert.ok(partition!.records.every((view) => view.buffer === joined.buffer));
  });

  test("limits out of range are refused naming the value", () => {
    const request = (records: number, bytes: number) =>
      bodyOf((writer) =>
        writeQueueFetchRequest(writer, {
          ...FETCH_REQUEST,
          maxRecords: records,
          maxBytes: bytes,
        }),
      );
    refused(request(0, 1), readQueueFetchRequest, /max_records 0 is not in \[1, 100000\]/);
    refused(request(100_001, 1), readQueueFetchRequest, /max_records 100001/);
    refused(request(1, 0), readQueueFetchRequest, /max_bytes 0/);
  });

  test("an acquired count larger than the bytes left is refused before allocating", () => {
    const body = fromHex("0000 ffff 00007530 0000 0001 00000000 0000 ffffffff 00000000");
    assert.throws(() => readQueueFetchResponse(body), /acquired count 4294967295 needs/);
  });
});

describe("QueueFetch v2 and QueueAck v2", () => {
  test("a v2 fetch response carries the ack sequence after the acks: golden bytes", () => {
    const response: QueueFetchResponse = {
      errorCode: 0,
      errorMessage: null,
      lockMs: 30_000,
      acks: [{ partition: 0, errorCode: 0, errorMessage: null }],
      ackSeq: {
        ackSeq: 5,
        durableThrough: 3,
        failures: [{ ackSeq: 4, partition: 1, errorCode: 25, errorMessage: "full" }],
      },
      partitions: [],
    };
    const frame = new ChunkedFrame(7);
    writeQueueFetchResponse(frame, response, 2);
    const joined = fromHex(frame.finish().map(hex).join(""));
    const expected = [
      "00000040 00000007 0000", // size 64, correlation_id 7, error_code 0 (header)
      "0000 ffff 00007530", // error_code 0, error_message null, lock_ms 30000
      "0001 00000000 0000 ffff", // acks: partition 0 applied
      "0000000000000005 0000000000000003", // ack_seq 5, acks_durable_through 3
      "0001 0000000000000004 00000001 0019 0004 66756c6c", // failure: seq 4, partition 1
      "0000", // partitions: 0
    ].join("");
    assert.equal(hex(joined), expected.replace(/\s+/g, ""));
    assert.deepEqual(readQueueFetchResponse(joined.subarray(10), 2), response);
    // The same bytes are not a v1 response: the sequence is where v1 has its partitions.
    assert.throws(() => readQueueFetchResponse(joined.subarray(10), 1), ProtocolError);
  });

  test("hostile v2 sequence fields are refused naming the value", () => {
    const negative = fromHex("0000 ffff 00007530 0000 ffffffffffffffff 0000000000000000 0000 0000");
    assert.throws(() => readQueueFetchResponse(negative, 2), /ack_seq -1/);
    const tooMany = fromHex("0000 ffff 00007530 0000 0000000000000001 0000000000000000 ffff");
    assert.throws(() => readQueueFetchResponse(tooMany, 2), /ack failures count 65535 needs/);
  });

  test("a v2 ack response is v1's followed by the sequence state", () => {
    const response = {
      errorCode: 0,
      errorMessage: null,
      partitions: [],
      durableThrough: 9,
      failures: [],
    };
    const bytes = bodyOf((writer) => writeQueueAckResponseV2(writer, response));
    assert.equal(hex(bytes), "0000ffff0000" + "0000000000000009" + "0000");
    assert.deepEqual(readQueueAckResponseV2(new Reader(bytes)), response);
    const negative = fromHex("0000 ffff 0000 ffffffffffffffff 0000");
    assert.throws(() => readQueueAckResponseV2(new Reader(negative)), /acks_durable_through -1/);
  });
});

describe("QueueAck v1", () => {
  const request: QueueAckRequest = {
    queue: "q",
    memberId: "m",
    partitions: [
      { partition: 0, ranges: [{ first: 0, last: 9, type: "accept" }] },
      {
        partition: 3,
        ranges: [
          { first: 4, last: 4, type: "release" },
          { first: 6, last: 6, type: "reject" },
        ],
      },
    ],
  };

  test("a request is the golden bytes and reads back the same", () => {
    const bytes = bodyOf((writer) => writeQueueAckRequest(writer, request));
    const expected = [
      "0001 71 0001 6d 0002", // queue "q", member "m", partitions: 2
      "00000000 0001 0000000000000000 0000000000000009 01", // p0: 0..9 accept
      "00000003 0002 0000000000000004 0000000000000004 02", // p3: 4 release,
      "0000000000000006 0000000000000006 03", // 6 reject
    ].join("");
    assert.equal(hex(bytes), expected.replace(/\s+/g, ""));
    assert.deepEqual(readQueueAckRequest(new Reader(bytes)), request);
  });

  test("a release with a delay is type 5 followed by delay_ms, and reads back the same", () => {
    const delayed: QueueAckRequest = {
      queue: "q",
      memberId: "m",
      partitions: [
        {
          partition: 1,
          ranges: [
            { first: 2, last: 3, type: "release", delayMs: 1500 },
            { first: 4, last: 4, type: "release" },
          ],
        },
      ],
    };
    const bytes = bodyOf((writer) => writeQueueAckRequest(writer, delayed));
    const expected = [
      "0001 71 0001 6d 0001", // queue "q", member "m", partitions: 1
      "00000001 0002 0000000000000002 0000000000000003 05 00000000000005dc", // 2..3 after 1500 ms
      "0000000000000004 0000000000000004 02", // 4 release now
    ].join("");
    assert.equal(hex(bytes), expected.replace(/\s+/g, ""));
    assert.deepEqual(readQueueAckRequest(new Reader(bytes)), delayed);
    const bad = (delayMs: string) =>
      ackRequestBytes(
        `0001 00000000 0001 ${"1".padStart(16, "0")}${"1".padStart(16, "0")}05${delayMs}`,
      );
    refused(bad("0000000000000000"), readQueueAckRequest, /delay_ms 0 on partition 0 is not in/);
    refused(bad("ffffffffffffffff"), readQueueAckRequest, /delay_ms -1 on partition 0/);
    refused(bad("0000000757b12c01"), readQueueAckRequest, /delay_ms 31536000001/);
  });

  test("a response is the golden bytes and reads back the same", () => {
    const response = {
      errorCode: 0,
      errorMessage: null,
      partitions: [
        { partition: 0, errorCode: 0, errorMessage: null },
        { partition: 3, errorCode: 53, errorMessage: "x" },
      ],
    };
    const bytes = bodyOf((writer) => writeQueueAckResponse(writer, response));
    const expected = "0000 ffff 0002 00000000 0000 ffff 00000003 0035 0001 78";
    assert.equal(hex(bytes), expected.replace(/\s+/g, ""));
    assert.deepEqual(readQueueAckResponse(new Reader(bytes)), response);
  });

  test("bad acks are refused naming the value, whole", () => {
    const range = (first: string, last: string, type: string) =>
      `${first.padStart(16, "0")}${last.padStart(16, "0")}${type}`;
    const one = (partition: string, ranges: string[]) =>
      partition.padStart(8, "0") + ranges.length.toString(16).padStart(4, "0") + ranges.join("");
    const acks = (...partitions: string[]) =>
      `${partitions.length.toString(16).padStart(4, "0")}${partitions.join("")}`;
    const read = readQueueAckRequest;
    refused(ackRequestBytes(acks(one("0", [range("1", "1", "09")]))), read, /ack type 9/);
    refused(ackRequestBytes(acks(one("0", [range("1", "1", "00")]))), read, /ack type 0/);
    refused(
      ackRequestBytes(acks(one("0", [range("5", "4", "01")]))),
      read,
      /last_offset 4 is below/,
    );
    refused(
      ackRequestBytes(acks(one("0", [range("ffffffffffffffff", "1", "01")]))),
      read,
      /first_offset -1 .* negative/,
    );
    refused(
      ackRequestBytes(acks(one("0", [range("1", "5", "01"), range("5", "6", "02")]))),
      read,
      /ack ranges 1..5 and 5..6 of partition 0 overlap/,
    );
    refused(
      ackRequestBytes(acks(one("2", [range("1", "1", "01")]), one("2", [range("3", "3", "01")]))),
      read,
      /partition 2 appears twice/,
    );
    refused(ackRequestBytes("0001 00000000 ffff"), read, /ranges count 65535 needs/);
  });

  test("more than ACK_RANGES_MAX ranges are refused", () => {
    const ranges = Array.from({ length: ACK_RANGES_MAX + 1 }, (_, i) => ({
      first: i * 2,
      last: i * 2,
      type: "accept" as const,
    }));
    const bytes = bodyOf((writer) =>
      writeQueueAckRequest(writer, {
        queue: "q",
        memberId: "m",
        partitions: [{ partition: 0, ranges }],
      }),
    );
    refused(bytes, readQueueAckRequest, /more than 10000 ack ranges/);
  });
});

describe("queue control messages v1", () => {
  test("a join request is one MessagePack map: golden bytes", () => {
    const bytes = bodyOf((writer) => writeQueueJoinRequest(writer, { queue: "w" }));
    // map16 of 1 (msgpackr writes every map as map16): "queue" → "w"
    assert.equal(hex(bytes), "de0001a57175657565a177");
    assert.deepEqual(readQueueJoinRequest(new Reader(bytes)), { queue: "w" });
  });

  test("a declare leaves out unset settings and reads back the same", () => {
    const request = { name: "w", topic: "t", from: "beginning" as const, lockMs: 1000 };
    const bytes = bodyOf((writer) => writeQueueDeclareRequest(writer, request));
    // map16 of 4: name "w", topic "t", from "beginning", lockMs 1000 (uint16)
    const expected =
      "de0004a46e616d65a177a5746f706963a174a466726f6da9626567696e6e696e67a66c6f636b4d73cd03e8";
    assert.equal(hex(bytes), expected);
    assert.deepEqual(readQueueDeclareRequest(new Reader(bytes)), request);
  });

  test("responses read back what was written", () => {
    const queue = {
      name: "w",
      topic: "t",
      from: "end" as const,
      deadLetterTopic: null,
      deliveryLimit: 20,
      lockMs: 30_000,
      prefetch: 1000,
      maxInFlight: 2000,
      fsync: "always" as const,
      messageTtlMs: 60_000,
      messageTtlHeader: "ignore" as const,
      maxLength: 5,
      maxLengthBytes: 4096,
      overflow: "reject-publish" as const,
      singleActiveConsumer: true,
      priorities: 2,
      priorityRatio: 10,
      retry: { minMs: 100, maxMs: 60_000, factor: 2.5 },
      startOffsets: [0, 5],
      createdMs: 1_700_000_000_000,
    };
    const declared = { errorCode: 0, errorMessage: null, queue };
    const read = <T>(write: (w: Writer) => void, reader: (r: Reader) => T) =>
      reader(new Reader(bodyOf(write)));
    assert.deepEqual(
      read((w) => writeQueueDeclareResponse(w, declared), readQueueDeclareResponse),
      declared,
    );
    const joined = {
      errorCode: 0,
      errorMessage: null,
      memberId: "m-1",
      topic: "t",
      partitions: 2,
      lockMs: 30_000,
      prefetch: 1000,
    };
    assert.deepEqual(
      read((w) => writeQueueJoinResponse(w, joined), readQueueJoinResponse),
      joined,
    );
    const stats = {
      members: 1,
      ready: 2,
      acquired: 3,
      deadLettering: 0,
      delivered: 9,
      accepted: 4,
      deadLettered: 1,
      discarded: 0,
      expired: 7,
      overflowed: 2,
      readyBytes: 1234,
      activeMember: "m-1",
      delayed: 3,
      oldestReadyAgeMs: null,
      memoryBytes: 1920,
      partitions: [{ partition: 0, floor: 1, next: 4, highWatermark: 6, ready: 2, acquired: 3 }],
    };
    const list = {
      queues: [
        { name: "w", errorCode: 0, errorMessage: null, config: queue, stats },
        { name: "x", errorCode: 50, errorMessage: "no", config: null, stats: null },
      ],
    };
    assert.deepEqual(
      read((w) => writeQueueListResponse(w, list), readQueueListResponse),
      list,
    );
  });

  test("max length and single active consumer: written, read, defaulted when absent", () => {
    const request = {
      name: "w",
      maxLength: 10,
      maxLengthBytes: 1_000_000,
      overflow: "reject-publish" as const,
      singleActiveConsumer: true,
      priorities: 4,
      priorityRatio: 100,
    };
    const bytes = bodyOf((writer) => writeQueueDeclareRequest(writer, request));
    assert.deepEqual(readQueueDeclareRequest(new Reader(bytes)), request);
    // A QueueInfo from a server older than these settings: no limit, drop-head, off.
    const old = {
      name: "w",
      topic: "t",
      from: "end",
      deadLetterTopic: null,
      deliveryLimit: 20,
      lockMs: 30_000,
      prefetch: 1000,
      maxInFlight: 2000,
      fsync: "always",
      startOffsets: [0],
      createdMs: 1,
    };
    const response = bodyOf((w) =>
      writeMsgpack(w, { errorCode: 0, errorMessage: null, queue: old }),
    );
    const { queue } = readQueueDeclareResponse(new Reader(response));
    assert.equal(queue?.maxLength, null);
    assert.equal(queue?.maxLengthBytes, null);
    assert.equal(queue?.overflow, "drop-head");
    assert.equal(queue?.singleActiveConsumer, false);
    assert.equal(queue?.priorities, null);
    assert.equal(queue?.priorityRatio, null);
  });

  test("wrong types are refused naming the key", () => {
    const leave = bodyOf((writer) =>
      writeQueueLeaveRequest(writer, { queue: "w", memberId: 7 as unknown as string }),
    );
    refused(leave, readQueueLeaveRequest, /memberId = 7 must be a string/);
    const declare = bodyOf((writer) =>
      writeQueueDeclareRequest(writer, { name: "w", topic: "t", lockMs: 1.5 }),
    );
    refused(declare, readQueueDeclareRequest, /lockMs = 1.5 must be an integer/);
    const ttl = bodyOf((writer) =>
      writeQueueDeclareRequest(writer, {
        name: "w",
        messageTtlMs: "100" as unknown as number,
      }),
    );
    refused(ttl, readQueueDeclareRequest, /messageTtlMs = "?100"? must be an integer/);
    const bytes = bodyOf((writer) =>
      writeQueueDeclareRequest(writer, { name: "w", maxLengthBytes: 10.5 }),
    );
    refused(bytes, readQueueDeclareRequest, /maxLengthBytes = 10.5 must be an integer/);
  });
});

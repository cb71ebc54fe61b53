import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import {
  readFetchRequest,
  readFetchResponse,
  writeFetchRequest,
} from "../../../protocol/codec/fetch.ts";
import {
  ChunkedFrame,
  finishFrame,
  readRequestHeader,
  startRequest,
} from "../../../protocol/codec/frames.ts";
import {
  readHandshakeRequest,
  readHandshakeResponse,
  writeHandshakeRequest,
  writeHandshakeResponse,
} from "../../../protocol/codec/handshake.ts";
import {
  type ProduceRequest,
  readProduceRequest,
  readProduceResponse,
  writeProduceRequest,
  writeProduceResponse,
} from "../../../protocol/codec/produce.ts";
import { readFetchRequestColumns, writeFetchResponse } from "../../../protocol/codec/fetch.ts";
import { ProtocolError } from "../../../protocol/codec/errors.ts";
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

describe("wire primitives", () => {
  test("a writer grows past its capacity without losing bytes of any width", () => {
    const writer = new Writer(1);
    for (let i = 0; i < 100; i++) {
      writer
        .i8(-1)
        .u16(0xbeef)
        .i16(-2)
        .u32(0xdead_beef)
        .i64(-3)
        .string("é")
        .raw(new Uint8Array([9]));
    }
    const reader = new Reader(writer.finish());
    for (let i = 0; i < 100; i++) {
      assert.equal(reader.i8(), -1);
      assert.equal(reader.u16(), 0xbeef);
      assert.equal(reader.i16(), -2);
      assert.equal(reader.u32(), 0xdead_beef);
      assert.equal(reader.i64(), -3);
      assert.equal(reader.string(), "é");
      assert.deepEqual([...reader.raw(1)], [9]);
    }
    reader.expectEnd("test");
  });

  test("i64 round-trips the safe range and rejects what is outside it", () => {
    for (const value of [
      0,
      1,
      -1,
      2 ** 32,
      -(2 ** 32) - 5,
      Number.MAX_SAFE_INTEGER,
      -Number.MAX_SAFE_INTEGER,
    ]) {
      assert.equal(new Reader(bodyOf((w) => w.i64(value))).i64(), value);
    }
    assert.throws(() => new Reader(fromHex("7fffffffffffffff")).i64(), ProtocolError);
    assert.throws(() => new Writer().i64(2 ** 60), RangeError);
  });

  test("reading past the end, bad UTF-8 and impossible counts are INVALID_REQUEST", () => {
    const invalid = (error: unknown) =>
      error instanceof ProtocolError && error.code === "INVALID_REQUEST";
    assert.throws(() => new Reader(fromHex("00")).u16(), invalid);
    assert.throws(() => new Reader(fromHex("0005 6162")).string(), invalid);
    assert.throws(() => new Reader(fromHex("0002 ffff")).string(), invalid);
    assert.throws(() => new Reader(fromHex("ffff")).count("topics", 4), invalid);
    assert.throws(() => new Reader(fromHex("fffe")).nullableString(), invalid);
    assert.equal(new Reader(fromHex("ffff")).nullableString(), null);
  });
});

describe("golden bytes", () => {
  test("request header and Handshake", () => {
    const writer = startRequest({ apiKey: 0, apiVersion: 1, correlationId: 7 });
    writeHandshakeRequest(writer, { clientName: "cli", clientVersion: "1.0" });
    const frame = finishFrame(writer);
    assert.equal(
      hex(frame),
      "00000012" + "0000" + "0001" + "00000007" + "0003636c69" + "0003312e30",
    );
    const reader = new Reader(frame, 4);
    assert.deepEqual(readRequestHeader(reader), { apiKey: 0, apiVersion: 1, correlationId: 7 });
    assert.deepEqual(readHandshakeRequest(reader), { clientName: "cli", clientVersion: "1.0" });
  });

  test("Handshake response", () => {
    const response = {
      serverVersion: "0.1.0",
      frameBytesMax: 65_536,
      inFlightMax: 16,
      apis: [{ apiKey: 4, min: 1, max: 1 }],
    };
    const body = bodyOf((w) => writeHandshakeResponse(w, response));
    assert.equal(hex(body), "0005302e312e30" + "00010000" + "0010" + "0001" + "000400010001");
    assert.deepEqual(readHandshakeResponse(new Reader(body)), response);
  });

  test("Produce request and response", () => {
    const request: ProduceRequest = {
      acks: -1,
      timeoutMs: 1000,
      topics: [{ topic: "t", partitions: [{ partition: 2, records: fromHex("aabb") }] }],
    };
    const body = bodyOf((w) => writeProduceRequest(w, request));
    assert.equal(
      hex(body),
      "ff" + "000003e8" + "0001" + "000174" + "0001" + "00000002" + "00000002aabb",
    );
    const decoded = readProduceRequest(new Reader(body));
    assert.deepEqual(
      {
        ...decoded,
        topics: decoded.topics.map((t) => ({
          ...t,
          partitions: t.partitions.map((p) => ({ ...p, records: [...p.records] })),
        })),
      },
      {
        ...request,
        topics: [{ topic: "t", partitions: [{ partition: 2, records: [0xaa, 0xbb] }] }],
      },
    );
    const response = {
      topics: [
        {
          topic: "t",
          partitions: [
            { partition: 2, errorCode: 0, baseOffset: 42, logStartOffset: 0, errorMessage: null },
          ],
        },
      ],
    };
    const responseBody = bodyOf((w) => writeProduceResponse(w, response));
    assert.equal(
      hex(responseBody),
      "0001" +
        "000174" +
        "0001" +
        "00000002" +
        "0000" +
        "000000000000002a" +
        "0000000000000000" +
        "ffff",
    );
    assert.deepEqual(readProduceResponse(new Reader(responseBody)), response);
  });

  test("Fetch request and a chunked response whose records are attached views", () => {
    const request = {
      maxWaitMs: 500,
      minBytes: 1,
      maxBytes: 1_048_576,
      topics: [
        { topic: "t", partitions: [{ partition: 0, fetchOffset: 5, partitionMaxBytes: 65_536 }] },
      ],
    };
    const body = bodyOf((w) => writeFetchRequest(w, request));
    assert.equal(
      hex(body),
      "000001f4" +
        "00000001" +
        "00100000" +
        "0001" +
        "000174" +
        "0001" +
        "00000000" +
        "0000000000000005" +
        "00010000",
    );
    assert.deepEqual(readFetchRequest(new Reader(body)), request);
    // The server's reading of the same bytes: the entries in columns.
    assert.deepEqual(readFetchRequestColumns(new Reader(body)), {
      maxWaitMs: 500,
      minBytes: 1,
      maxBytes: 1_048_576,
      topics: [
        {
          topic: "t",
          partitions: Uint32Array.of(0),
          fetchOffsets: Float64Array.of(5),
          partitionMaxBytes: Uint32Array.of(65_536),
        },
      ],
    });
    const records = fromHex("0102030405");
    const frame = new ChunkedFrame(9);
    writeFetchResponse(frame, {
      topics: [
        {
          topic: "t",
          partitions: [
            { partition: 0, errorCode: 0, highWatermark: 6, logStartOffset: 0, records: [records] },
          ],
        },
      ],
    });
    const chunks = frame.finish();
    assert.ok(chunks.includes(records), "the records view is sent as it is, not copied");
    const whole = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      whole.set(chunk, at);
      at += chunk.length;
    }
    assert.equal(new DataView(whole.buffer).getUint32(0), whole.length - 4);
    const decoded = readFetchResponse(whole.subarray(10));
    assert.deepEqual([...decoded.topics[0]!.partitions[0]!.records[0]!], [1, 2, 3, 4, 5]);
    assert.equal(decoded.topics[0]!.partitions[0]!.highWatermark, 6);
  });

  test("a chunked frame writes the fields around its views into one buffer", () => {
    const views = [fromHex("0102"), fromHex("03"), fromHex("040506")];
    const partitions = views.map((view, partition) => ({
      partition,
      errorCode: 0,
      highWatermark: 9,
      logStartOffset: 0,
      records: partition === 1 ? [] : [view],
    }));
    const frame = new ChunkedFrame(4, 512);
    writeFetchResponse(frame, { topics: [{ topic: "t", partitions }] });
    const chunks = frame.finish();
    const fields = chunks.filter((chunk) => !views.includes(chunk));
    assert.equal(fields.length, 2, "the fields before and between the two views");
    assert.ok(
      fields.every((chunk) => chunk.buffer === fields[0]!.buffer),
      "one buffer",
    );
    const whole = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      whole.set(chunk, at);
      at += chunk.length;
    }
    assert.equal(new DataView(whole.buffer).getUint32(0), whole.length - 4);
    const decoded = readFetchResponse(whole.subarray(10)).topics[0]!.partitions;
    assert.deepEqual(
      decoded.map((p) => p.records.flatMap((view) => [...view])),
      [[1, 2], [], [4, 5, 6]],
    );
  });

  test("Produce v2 response: v1 followed by accepted_batches per partition", () => {
    const response = {
      topics: [
        {
          topic: "t",
          partitions: [
            {
              partition: 0,
              errorCode: 21,
              baseOffset: 7,
              logStartOffset: 0,
              errorMessage: null,
              acceptedBatches: 2,
            },
          ],
        },
      ],
    };
    const v1 = bodyOf((w) => writeProduceResponse(w, response));
    const v2 = bodyOf((w) => writeProduceResponse(w, response, 2));
    // topics: 1, "t", partitions: 1, then partition 0, CORRUPT_BATCH, base_offset 7,
    // log_start_offset 0, error_message null; version 2 adds accepted_batches 2.
    const v1Hex = "0001000174000100000000001500000000000000070000000000000000ffff";
    assert.equal(hex(v1), v1Hex);
    assert.equal(hex(v2), `${v1Hex}00000002`);
    assert.deepEqual(readProduceResponse(new Reader(v2), 2), response);
    const { acceptedBatches: _, ...v1Fields } = response.topics[0]!.partitions[0]!;
    assert.deepEqual(readProduceResponse(new Reader(v1)).topics[0]!.partitions[0], v1Fields);
  });

  test("Fetch v2 response: resume_offset before the records", () => {
    const records = fromHex("0102");
    const result = {
      partition: 1,
      errorCode: 21,
      highWatermark: 9,
      logStartOffset: 0,
      resumeOffset: 5,
      records: [records],
    };
    const frame = new ChunkedFrame(3);
    writeFetchResponse(frame, { topics: [{ topic: "t", partitions: [result] }] }, 2);
    const chunks = frame.finish();
    const whole = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      whole.set(chunk, at);
      at += chunk.length;
    }
    assert.equal(
      hex(whole.subarray(10)),
      "0001" +
        "000174" +
        "0001" +
        "00000001" +
        "0015" +
        "0000000000000009" +
        "0000000000000000" +
        "0000000000000005" +
        "00000002" +
        "0102",
    );
    const decoded = readFetchResponse(whole.subarray(10), 2).topics[0]!.partitions[0]!;
    assert.equal(decoded.resumeOffset, 5);
    assert.deepEqual([...decoded.records[0]!], [1, 2]);
  });

  test("msgpack bodies are plain maps", () => {
    const body = bodyOf((w) => writeMsgpack(w, { topics: ["a"] }));
    // msgpackr writes every map as a map16 (0xde): valid MessagePack, and any reader takes it.
    assert.equal(hex(body), "de0001a6746f70696373" + "91a161");
    assert.deepEqual(readMsgpack(new Reader(body), "x"), { topics: ["a"] });
  });
});

describe("decoders on random bytes", () => {
  const readers: [string, (reader: Reader) => unknown][] = [
    ["handshake", readHandshakeRequest],
    ["produce", readProduceRequest],
    ["fetch", readFetchRequest],
    ["fetch (columns)", readFetchRequestColumns],
    ["produce response", readProduceResponse],
    ["fetch response", (reader) => readFetchResponse(reader.raw(reader.remaining))],
    ["msgpack", (reader) => readMsgpack(reader, "body")],
  ];

  test("only ever succeed or throw ProtocolError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        for (const [, read] of readers) {
          try {
            read(new Reader(bytes));
          } catch (error) {
            if (!(error instanceof ProtocolError)) throw error;
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("decode(encode(x)) round-trips produce and fetch requests", () => {
    const name = fc.string({ maxLength: 20 });
    const produce = fc.record({
      acks: fc.constantFrom(-1 as const, 0 as const, 1 as const),
      timeoutMs: fc.nat(),
      topics: fc.array(
        fc.record({
          topic: name,
          partitions: fc.array(
            fc.record({ partition: fc.nat(), records: fc.uint8Array({ maxLength: 40 }) }),
            { maxLength: 4 },
          ),
        }),
        { maxLength: 4 },
      ),
    });
    fc.assert(
      fc.property(produce, (request) => {
        const decoded = readProduceRequest(
          new Reader(bodyOf((w) => writeProduceRequest(w, request))),
        );
        assert.deepEqual(
          bodyOf((w) => writeProduceRequest(w, decoded)),
          bodyOf((w) => writeProduceRequest(w, request)),
        );
      }),
      { numRuns: 300 },
    );
    const fetch = fc.record({
      maxWaitMs: fc.nat(),
      minBytes: fc.nat(),
      maxBytes: fc.nat(),
      topics: fc.array(
        fc.record({
          topic: name,
          partitions: fc.array(
            fc.record({
              partition: fc.nat(),
              fetchOffset: fc.maxSafeNat(),
              partitionMaxBytes: fc.nat(),
            }),
            { maxLength: 4 },
          ),
        }),
        { maxLength: 4 },
      ),
    });
    fc.assert(
      fc.property(fetch, (request) => {
        // fast-check's records have no prototype: compare by value, through JSON.
        const body = bodyOf((w) => writeFetchRequest(w, request));
        const decoded = readFetchRequest(new Reader(body));
        assert.deepEqual(JSON.parse(JSON.stringify(decoded)), JSON.parse(JSON.stringify(request)));
        // The columns hold the same entries, in order.
        const columns = readFetchRequestColumns(new Reader(body));
        assert.deepEqual(
          columns.topics.map((t) => ({
            topic: t.topic,
            partitions: [...t.partitions].map((partition, i) => ({
              partition,
              fetchOffset: t.fetchOffsets[i],
              partitionMaxBytes: t.partitionMaxBytes[i],
            })),
          })),
          JSON.parse(JSON.stringify(request.topics)),
        );
      }),
      { numRuns: 300 },
    );
  });
});

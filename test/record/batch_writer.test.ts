// The one batch writer: what it writes decodes to what was added (offsets with gaps, headers,
// timestamps earlier than the first), the header is back-patched, compression happens once and
// falls back to plain bytes when it would not fit, the room in front of the batch is left
// alone, the CRC follows every stamp, and the portable CRC-32C agrees with the native one.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ATTRIBUTES_AT,
  BATCH_HEADER_BYTES,
  BatchWriter,
  type BufferSource,
  checkBatch,
  COMPRESSION,
  crc32c,
  crc32cPortable,
  decodeRecordBatch,
  encodeRecordBatch,
  readBatchHeader,
} from "../../record/mod.ts";
import { mulberry32 } from "../helpers.ts";

const utf8 = new TextEncoder();

function record(value: string, timestamp: number, key: string | null = null) {
  return {
    key: key === null ? null : utf8.encode(key),
    value: utf8.encode(value),
    headers: [{ key: "h-ü", value: utf8.encode(value) }],
    timestamp,
  };
}

describe("BatchWriter", () => {
  test("records added one by one decode to the same records, offset gaps included", () => {
    const writer = new BatchWriter({ batchBytesMax: 1 << 20 });
    assert.ok(writer.tryAdd(record("a", 1000, "k1")));
    assert.ok(writer.tryAdd(record("b", 900), 5), "a gap to offset delta 5");
    assert.ok(writer.tryAdd(record("c", 1200)));
    writer.seal({ baseOffset: 40 });
    const batch = writer.stamp({ producerId: 7, producerEpoch: 1, baseSequence: 3 });
    assert.equal(checkBatch(batch, 0, batch.length, { sizeMax: 1 << 20, checkCrc: true }), "ok");
    const decoded = decodeRecordBatch(batch);
    assert.deepEqual(
      decoded.records.map((r) => [r.offset, r.timestamp, new TextDecoder().decode(r.value!)]),
      [
        [40, 1000, "a"],
        [45, 900, "b"],
        [46, 1200, "c"],
      ],
    );
    assert.equal(decoded.lastOffsetDelta, 6);
    assert.equal(decoded.maxTimestamp, 1200);
    assert.equal(decoded.baseTimestamp, 1000, "the first record's timestamp is the base");
    assert.deepEqual([decoded.producerId, decoded.producerEpoch, decoded.baseSequence], [7, 1, 3]);
    assert.equal(decoded.records[0]!.headers[0]!.key, "h-ü");
  });

  test("writes the same bytes as encodeRecordBatch", () => {
    const inputs = [record("x", 5, "a"), record("yy", 6), record("zzz", 4, "c")];
    const writer = new BatchWriter({ batchBytesMax: 1 << 20 });
    for (const input of inputs) assert.ok(writer.tryAdd(input));
    writer.seal({ compression: "none" });
    assert.deepEqual(writer.stamp(), encodeRecordBatch(inputs));
  });

  test("refuses a record that would pass batchBytesMax, but always takes the first", () => {
    const value = "v".repeat(100);
    const one = BATCH_HEADER_BYTES + 100 + 20;
    const writer = new BatchWriter({ batchBytesMax: one + 50 });
    assert.ok(writer.tryAdd(record(value, 1)));
    const before = writer.sizeBytes;
    assert.equal(writer.tryAdd(record(value, 2)), false);
    assert.equal(writer.sizeBytes, before, "a refused record leaves nothing behind");
    assert.equal(writer.count, 1);
    const small = new BatchWriter({ batchBytesMax: BATCH_HEADER_BYTES });
    assert.ok(small.tryAdd(record(value, 1)), "the first record is the caller's to check");
  });

  test("compresses the records section once; the header stays plain", () => {
    const writer = new BatchWriter({ batchBytesMax: 1 << 20, prefixRoomBytes: 9 });
    writer.buffer.fill(0xee, 0, 9);
    for (let i = 0; i < 200; i++) assert.ok(writer.tryAdd(record("same value again", i)));
    const plainBytes = writer.sizeBytes;
    writer.seal({ compression: "gzip" });
    assert.ok(writer.sizeBytes < plainBytes / 4, `${writer.sizeBytes} < ${plainBytes} / 4`);
    const batch = writer.stamp();
    assert.equal(batch[ATTRIBUTES_AT + 1]! & 0x07, COMPRESSION.gzip);
    assert.equal(readBatchHeader(batch).recordCount, 200);
    assert.equal(decodeRecordBatch(batch).records.length, 200);
    assert.equal(writer.buffer.length, 9 + batch.length, "the compressed copy is exact");
  });

  test("keeps incompressible records plain when compressing would pass batchBytesMax", () => {
    const random = mulberry32(7);
    const noise = new Uint8Array(4000).map(() => Math.floor(random() * 256));
    const writer = new BatchWriter({ batchBytesMax: BATCH_HEADER_BYTES + 4010 });
    assert.ok(writer.tryAdd({ value: noise, timestamp: 1 }));
    writer.seal({ compression: "gzip" });
    const batch = writer.stamp();
    assert.equal(batch[ATTRIBUTES_AT + 1]! & 0x07, COMPRESSION.none);
    assert.deepEqual(decodeRecordBatch(batch).records[0]!.value, noise);
  });

  test("a new stamp rewrites identity and CRC in place; the room in front is untouched", () => {
    const writer = new BatchWriter({ batchBytesMax: 4096, prefixRoomBytes: 5 });
    writer.buffer.fill(0xab, 0, 5);
    assert.ok(writer.tryAdd(record("a", 1)));
    const first = writer.stamp({ producerId: 1, producerEpoch: 0, baseSequence: 0 }).slice();
    const second = writer.stamp({ producerId: 1, producerEpoch: 0, baseSequence: 10 });
    assert.equal(checkBatch(second, 0, second.length, { sizeMax: 4096, checkCrc: true }), "ok");
    assert.notDeepEqual(first, second);
    assert.equal(decodeRecordBatch(second).baseSequence, 10);
    assert.deepEqual([...writer.buffer.subarray(0, 5)], [0xab, 0xab, 0xab, 0xab, 0xab]);
  });

  test("grows through its pool and gives back what it outgrew", () => {
    const given: number[] = [];
    const pool: BufferSource = {
      take: (capacity) => new Uint8Array(capacity),
      give: (buffer) => given.push(buffer.length),
    };
    const writer = new BatchWriter({ batchBytesMax: 1 << 20, pool });
    const value = "x".repeat(1000);
    for (let i = 0; i < 100; i++) assert.ok(writer.tryAdd(record(value, i)));
    assert.ok(given.length > 0, "outgrown buffers went back");
    writer.release();
    writer.release();
    assert.equal(given.filter((n) => n === writer.buffer.length).length, 1, "released once");
  });

  test("tryAdd after seal and an empty seal are caller errors", () => {
    const writer = new BatchWriter({ batchBytesMax: 4096 });
    assert.throws(() => writer.seal(), RangeError);
    assert.ok(writer.tryAdd(record("a", 1)));
    writer.seal();
    assert.throws(() => writer.tryAdd(record("b", 2)), TypeError);
    assert.throws(() => new BatchWriter({ batchBytesMax: 10 }), RangeError);
  });
});

describe("CRC-32C", () => {
  test("the portable implementation agrees with the one in use, also when continued", () => {
    const random = mulberry32(11);
    for (const size of [0, 1, 7, 8, 9, 63, 64, 65, 1000, 65_537]) {
      const bytes = new Uint8Array(size).map(() => Math.floor(random() * 256));
      assert.equal(crc32cPortable(bytes), crc32c(bytes) >>> 0, `size ${size}`);
      const cut = Math.floor(size / 3);
      const continued = crc32cPortable(bytes.subarray(cut), crc32cPortable(bytes.subarray(0, cut)));
      assert.equal(continued, crc32c(bytes) >>> 0, `continued at ${cut} of ${size}`);
    }
    assert.equal(crc32cPortable(utf8.encode("123456789")), 0xe3069283, "the check value");
  });
});

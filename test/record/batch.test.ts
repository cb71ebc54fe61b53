import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  BASE_OFFSET_AT,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_AT,
  baseOffsetAt,
  CRC_AT,
  checkBatch,
  computeBatchCrc,
  LAST_OFFSET_DELTA_AT,
  LEADER_EPOCH_AT,
  MAGIC_AT,
  patchBaseOffset,
  RECORD_COUNT_AT,
  readBatchHeader,
  readInt16,
  readInt32,
  readInt64,
  readUint32,
  writeInt32,
  writeInt64,
} from "../../record/mod.ts";
import { GOLDEN_BATCH_HEX, hexToBytes } from "./fixtures/record_batch_golden.ts";

const require = createRequire(import.meta.url);
// kafkajs's own CRC-32C, an implementation independent of @node-rs/crc32.
const kafkajsCrc32c = require("kafkajs/src/protocol/recordBatch/crc32C/index.js") as (
  bytes: Buffer,
) => number;

const CHECK = { sizeMax: 1024 * 1024, checkCrc: true };

function golden(): Uint8Array {
  return hexToBytes(GOLDEN_BATCH_HEX);
}

function int64Bytes(hex: string): Uint8Array {
  return hexToBytes(hex);
}

/** A copy of the golden batch with `edit` applied and its CRC recomputed. */
function editedGolden(edit: (bytes: Uint8Array) => void): Uint8Array {
  const bytes = golden();
  edit(bytes);
  writeInt32(bytes, CRC_AT, computeBatchCrc(bytes, 0, bytes.length));
  return bytes;
}

describe("record_batch integers", () => {
  test("readInt64 reads -1, zero and values around 2^32", () => {
    assert.equal(readInt64(int64Bytes("ffffffffffffffff"), 0), -1);
    assert.equal(readInt64(int64Bytes("0000000000000000"), 0), 0);
    assert.equal(readInt64(int64Bytes("00000000ffffffff"), 0), 2 ** 32 - 1);
    assert.equal(readInt64(int64Bytes("0000000100000000"), 0), 2 ** 32);
    assert.equal(readInt64(int64Bytes("ffffffff00000000"), 0), -(2 ** 32));
    assert.equal(readInt64(int64Bytes("0000018bcfe56800"), 0), 1_700_000_000_000);
  });

  test("readInt64 is exact at the edges of the safe-integer range", () => {
    assert.equal(readInt64(int64Bytes("001fffffffffffff"), 0), Number.MAX_SAFE_INTEGER);
    assert.equal(readInt64(int64Bytes("ffe0000000000001"), 0), Number.MIN_SAFE_INTEGER);
  });

  test("readInt64 gives NaN for values outside the safe-integer range", () => {
    assert.ok(Number.isNaN(readInt64(int64Bytes("0020000000000000"), 0)), "2^53");
    assert.ok(Number.isNaN(readInt64(int64Bytes("ffe0000000000000"), 0)), "-2^53");
    assert.ok(Number.isNaN(readInt64(int64Bytes("7fffffffffffffff"), 0)), "i64 max");
    assert.ok(Number.isNaN(readInt64(int64Bytes("8000000000000000"), 0)), "i64 min");
  });

  test("writeInt64 and readInt64 round-trip every safe integer", () => {
    const bytes = new Uint8Array(10);
    fc.assert(
      fc.property(fc.maxSafeInteger(), (value) => {
        writeInt64(bytes, 1, value);
        assert.equal(readInt64(bytes, 1), value);
        assert.equal(readBigInt64(bytes, 1), BigInt(value));
      }),
      { numRuns: 300 },
    );
  });

  test("writeInt64 refuses an unsafe value as a bug, not as input", () => {
    assert.throws(() => writeInt64(new Uint8Array(8), 0, 2 ** 53), /invariant/);
  });

  test("readInt32, readUint32 and readInt16 keep their signs", () => {
    const bytes = hexToBytes("fffffffe8000");
    assert.equal(readInt32(bytes, 0), -2);
    assert.equal(readUint32(bytes, 0), 0xffff_fffe);
    assert.equal(readInt16(bytes, 4), -0x8000);
    assert.equal(readInt16(hexToBytes("7fff"), 0), 0x7fff);
  });
});

function readBigInt64(bytes: Uint8Array, at: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset).getBigInt64(at);
}

describe("checkBatch", () => {
  test("passes the golden batch", () => {
    const bytes = golden();
    assert.equal(checkBatch(bytes, 0, bytes.length, CHECK), "ok");
  });

  test("reports truncated for fewer bytes than the header or the batch", () => {
    const bytes = golden();
    assert.equal(checkBatch(bytes, 0, BATCH_HEADER_BYTES - 1, CHECK), "truncated");
    assert.equal(checkBatch(bytes, 0, bytes.length - 1, CHECK), "truncated");
    assert.equal(checkBatch(new Uint8Array(0), 0, 0, CHECK), "truncated");
  });

  test("reports bad-length for a batchLength below the header or above sizeMax", () => {
    const short = golden();
    writeInt32(short, BATCH_LENGTH_AT, BATCH_HEADER_BYTES - 12 - 1);
    assert.equal(checkBatch(short, 0, short.length, CHECK), "bad-length");
    const negative = golden();
    writeInt32(negative, BATCH_LENGTH_AT, -1);
    assert.equal(checkBatch(negative, 0, negative.length, CHECK), "bad-length");
    const bytes = golden();
    const options = { sizeMax: bytes.length - 1, checkCrc: true };
    assert.equal(checkBatch(bytes, 0, bytes.length, options), "bad-length");
  });

  test("reports bad-magic for a magic other than 2", () => {
    for (const magic of [0, 1, 3, 0xff]) {
      const bytes = golden();
      bytes[MAGIC_AT] = magic;
      assert.equal(checkBatch(bytes, 0, bytes.length, CHECK), "bad-magic", `magic ${magic}`);
    }
  });

  test("reports bad-offsets for negative counts and an unsafe baseOffset", () => {
    const delta = editedGolden((bytes) => writeInt32(bytes, LAST_OFFSET_DELTA_AT, -1));
    assert.equal(checkBatch(delta, 0, delta.length, CHECK), "bad-offsets");
    const count = editedGolden((bytes) => writeInt32(bytes, RECORD_COUNT_AT, -2));
    assert.equal(checkBatch(count, 0, count.length, CHECK), "bad-offsets");
    const base = golden();
    base.set(hexToBytes("0020000000000000"), BASE_OFFSET_AT);
    assert.equal(checkBatch(base, 0, base.length, CHECK), "bad-offsets");
  });

  test("reports bad-crc for a flipped bit the CRC covers, unless told not to check", () => {
    const bytes = golden();
    bytes[bytes.length - 2]! ^= 0x01;
    assert.equal(checkBatch(bytes, 0, bytes.length, CHECK), "bad-crc");
    assert.equal(checkBatch(bytes, 0, bytes.length, { ...CHECK, checkCrc: false }), "ok");
    const crc = golden();
    crc[CRC_AT]! ^= 0x80;
    assert.equal(checkBatch(crc, 0, crc.length, CHECK), "bad-crc");
  });

  test("checks a batch at a position inside a larger buffer", () => {
    const batch = golden();
    const buffer = new Uint8Array(batch.length + 10);
    buffer.set(batch, 5);
    assert.equal(checkBatch(buffer, 5, 5 + batch.length, CHECK), "ok");
    assert.equal(checkBatch(buffer, 5, 5 + batch.length - 1, CHECK), "truncated");
  });

  test("never throws on random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, checkCrc) => {
        const problem = checkBatch(bytes, 0, bytes.length, { sizeMax: 150, checkCrc });
        assert.equal(typeof problem, "string");
      }),
      { numRuns: 300 },
    );
  });
});

describe("computeBatchCrc and patchBaseOffset", () => {
  test("the CRC agrees with kafkajs's independent CRC-32C", () => {
    const bytes = golden();
    const ours = computeBatchCrc(bytes, 0, bytes.length);
    assert.equal(ours, readUint32(bytes, CRC_AT));
    assert.equal(ours, kafkajsCrc32c(Buffer.from(bytes.subarray(21))) >>> 0);
  });

  test("patchBaseOffset assigns offsets and keeps the CRC valid", () => {
    const bytes = golden();
    const crcBefore = readUint32(bytes, CRC_AT);
    patchBaseOffset(bytes, 0, 123_456_789_012);
    assert.equal(baseOffsetAt(bytes, 0), 123_456_789_012);
    assert.equal(readUint32(bytes, CRC_AT), crcBefore);
    assert.equal(checkBatch(bytes, 0, bytes.length, CHECK), "ok");
  });

  test("the leader epoch, like baseOffset, lies outside the CRC", () => {
    const bytes = golden();
    writeInt32(bytes, LEADER_EPOCH_AT, 99);
    assert.equal(checkBatch(bytes, 0, bytes.length, CHECK), "ok");
  });

  test("readBatchHeader reads every field of the golden batch", () => {
    assert.deepEqual(readBatchHeader(golden()), {
      baseOffset: 7,
      batchLength: 77,
      partitionLeaderEpoch: 3,
      magic: 2,
      crc: 0x01c28de7,
      attributes: 0,
      lastOffsetDelta: 1,
      baseTimestamp: 1_700_000_000_000,
      maxTimestamp: 1_700_000_000_005,
      producerId: 1000,
      producerEpoch: 2,
      baseSequence: 5,
      recordCount: 2,
    });
  });
});

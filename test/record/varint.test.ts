import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  cursorOver,
  readVarint,
  readVarlong,
  VARINT_BYTES_MAX,
  VARLONG_BYTES_MAX,
  varintFailureAt,
  varintSize,
  varlongSize,
  writeVarint,
  writeVarlong,
} from "../../record/mod.ts";
import { bytesToHex, hexToBytes } from "./fixtures/record_batch_golden.ts";

const require = createRequire(import.meta.url);
type KafkajsEncoder = {
  writeVarInt(value: number): KafkajsEncoder;
  writeVarLong(value: number): KafkajsEncoder;
  buffer: Buffer;
};
type KafkajsDecoder = { readVarInt(): number; readVarLong(): { toString(): string } };
const Encoder = require("kafkajs/src/protocol/encoder.js") as new () => KafkajsEncoder;
const Decoder = require("kafkajs/src/protocol/decoder.js") as new (
  buffer: Buffer,
) => KafkajsDecoder;

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

function varintHex(value: number): string {
  const bytes = new Uint8Array(VARINT_BYTES_MAX);
  return bytesToHex(bytes.subarray(0, writeVarint(bytes, 0, value)));
}

function varlongHex(value: number): string {
  const bytes = new Uint8Array(VARLONG_BYTES_MAX);
  return bytesToHex(bytes.subarray(0, writeVarlong(bytes, 0, value)));
}

describe("varint encoding", () => {
  test("writes Kafka's zigzag bytes for known values", () => {
    const cases: [number, string][] = [
      [0, "00"],
      [-1, "01"],
      [1, "02"],
      [63, "7e"],
      [-64, "7f"],
      [64, "8001"],
      [300, "d804"],
      [INT32_MAX, "feffffff0f"],
      [INT32_MIN, "ffffffff0f"],
    ];
    for (const [value, hex] of cases) {
      assert.equal(varintHex(value), hex, `varint ${value}`);
      assert.equal(varlongHex(value), hex, `varlong ${value}`);
      assert.equal(varintSize(value), hex.length / 2);
    }
  });

  test("writes varlongs beyond 32 bits and up to the safe-integer edge", () => {
    assert.equal(varlongHex(2 ** 31), "8080808010");
    assert.equal(varlongHex(-(2 ** 31) - 1), "8180808010");
    assert.equal(varlongHex(Number.MAX_SAFE_INTEGER), "feffffffffffff1f");
    assert.equal(varlongHex(Number.MIN_SAFE_INTEGER), "fdffffffffffff1f");
  });

  test("matches kafkajs's encoder for every i32 and safe integer tried", () => {
    fc.assert(
      fc.property(fc.integer({ min: INT32_MIN, max: INT32_MAX }), (value) => {
        assert.equal(varintHex(value), new Encoder().writeVarInt(value).buffer.toString("hex"));
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.maxSafeInteger(), (value) => {
        const theirs = new Encoder().writeVarLong(value).buffer.toString("hex");
        assert.equal(varlongHex(value), theirs);
        assert.equal(varlongSize(value), theirs.length / 2);
      }),
      { numRuns: 300 },
    );
  });

  test("refuses values outside the type as a RangeError", () => {
    const bytes = new Uint8Array(16);
    assert.throws(() => writeVarint(bytes, 0, INT32_MAX + 1), RangeError);
    assert.throws(() => writeVarint(bytes, 0, 1.5), RangeError);
    assert.throws(() => varintSize(Number.NaN), RangeError);
    assert.throws(() => writeVarlong(bytes, 0, 2 ** 53), RangeError);
    assert.throws(() => varlongSize(Number.NEGATIVE_INFINITY), RangeError);
  });
});

describe("varint decoding", () => {
  test("reads back what it writes and advances the cursor", () => {
    fc.assert(
      fc.property(fc.integer({ min: INT32_MIN, max: INT32_MAX }), fc.maxSafeInteger(), (a, b) => {
        const bytes = new Uint8Array(20);
        const middle = writeVarint(bytes, 1, a);
        const end = writeVarlong(bytes, middle, b);
        const cursor = cursorOver(bytes, 1, end);
        assert.equal(readVarint(cursor), a);
        assert.equal(cursor.position, middle);
        assert.equal(readVarlong(cursor), b);
        assert.equal(cursor.position, end);
      }),
      { numRuns: 300 },
    );
  });

  test("reads what kafkajs writes", () => {
    fc.assert(
      fc.property(fc.integer({ min: INT32_MIN, max: INT32_MAX }), fc.maxSafeInteger(), (a, b) => {
        const encoded = new Encoder().writeVarInt(a).writeVarLong(b).buffer;
        const cursor = cursorOver(new Uint8Array(encoded));
        assert.equal(readVarint(cursor), a);
        assert.equal(readVarlong(cursor), b);
        const decoder = new Decoder(encoded);
        assert.equal(decoder.readVarInt(), a);
        assert.equal(decoder.readVarLong().toString(), String(b));
      }),
      { numRuns: 300 },
    );
  });

  test("accepts a padded encoding within the byte limit, as Kafka does", () => {
    assert.equal(readVarint(cursorOver(hexToBytes("8000"))), 0);
    assert.equal(readVarint(cursorOver(hexToBytes("8280808000"))), 1);
    assert.equal(readVarlong(cursorOver(hexToBytes("80808080808080808000"))), 0);
  });

  const failures: [string, string, number, string][] = [
    // [what, hex, bytesMax, failure]
    ["an empty varint", "", VARINT_BYTES_MAX, "truncated"],
    ["a varint cut after a continuation byte", "80", VARINT_BYTES_MAX, "truncated"],
    ["a varint of six bytes", "808080808000", VARINT_BYTES_MAX, "too-long"],
    ["a varint of 33 bits", "8080808010", VARINT_BYTES_MAX, "out-of-range"],
    ["a varlong cut short", "ffffffffff", VARLONG_BYTES_MAX, "truncated"],
    ["a varlong of eleven bytes", "8080808080808080808000", VARLONG_BYTES_MAX, "too-long"],
    ["a varlong of 2^53", "8080808080808020", VARLONG_BYTES_MAX, "out-of-range"],
    ["a varlong of -2^53", "ffffffffffffff1f", VARLONG_BYTES_MAX, "out-of-range"],
    ["the largest i64", "feffffffffffffffff01", VARLONG_BYTES_MAX, "out-of-range"],
  ];
  for (const [what, hex, bytesMax, failure] of failures) {
    test(`reports ${what} as ${failure}, leaving the cursor in place`, () => {
      const bytes = hexToBytes(hex);
      const cursor = cursorOver(bytes);
      const read = bytesMax === VARINT_BYTES_MAX ? readVarint : readVarlong;
      assert.ok(Number.isNaN(read(cursor)));
      assert.equal(cursor.position, 0);
      assert.equal(varintFailureAt(bytes, 0, bytes.length, bytesMax), failure);
    });
  }

  test("never reads past the cursor's end", () => {
    const bytes = hexToBytes("d804");
    assert.ok(Number.isNaN(readVarint(cursorOver(bytes, 0, 1))));
    assert.equal(readVarint(cursorOver(bytes, 0, 2)), 300);
    assert.equal(varintFailureAt(bytes, 0, 2, VARINT_BYTES_MAX), null);
  });

  test("gives an integer or NaN for any bytes, never an exception", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), (bytes) => {
        for (const read of [readVarint, readVarlong]) {
          const cursor = cursorOver(bytes);
          const value = read(cursor);
          if (Number.isNaN(value)) {
            assert.equal(cursor.position, 0);
          } else {
            assert.ok(Number.isSafeInteger(value));
            assert.ok(cursor.position > 0);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, test } from "node:test";
import fc from "fast-check";
import { isCompressionAvailable } from "../../record/mod.ts";
import { isSluiceError, SluiceError } from "../../record/mod.ts";
import {
  ATTRIBUTES_AT,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_AT,
  type CompressionName,
  CRC_AT,
  computeBatchCrc,
  LAST_OFFSET_DELTA_AT,
  LOG_OVERHEAD_BYTES,
  RECORD_COUNT_AT,
  writeInt32,
} from "../../record/mod.ts";
import {
  decodeRecordBatch,
  decodeRecordBatches,
  encodeRecordBatch,
  forEachRecordBatch,
  type LogRecord,
  type RecordInput,
} from "../../record/mod.ts";
import {
  bytesToHex,
  GOLDEN_BATCH_HEX,
  GOLDEN_BATCH_OPTIONS,
  GOLDEN_RECORDS,
  hexToBytes,
} from "./fixtures/record_batch_golden.ts";

// kafkajs is an independent implementation of RecordBatch v2 (CommonJS, loaded with require so
// the same lines work under Bun and Deno). Its gzip is built in; its zstd needs a plugin, so the
// cross-checks cover none and gzip.
const require = createRequire(import.meta.url);
type KafkajsHeaders = Record<string, Buffer | null | (Buffer | null)[]>;
type KafkajsRecord = {
  offset: string;
  timestamp: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: KafkajsHeaders;
};
type KafkajsBatch = {
  firstOffset: string;
  firstTimestamp: string;
  maxTimestamp: string;
  partitionLeaderEpoch: number;
  lastOffsetDelta: number;
  producerId: string;
  producerEpoch: number;
  firstSequence: number;
  inTransaction: boolean;
  records: KafkajsRecord[];
};
type KafkajsRecordInput = {
  offsetDelta: number;
  timestampDelta: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer[]>;
};
const KAFKAJS = "kafkajs/src/protocol";
const KafkajsDecoder = require(`${KAFKAJS}/decoder.js`) as new (buffer: Buffer) => unknown;
const kafkajsDecodeBatch = require(`${KAFKAJS}/recordBatch/v0/decoder.js`) as (
  decoder: unknown,
) => Promise<KafkajsBatch>;
const kafkajsRecord = require(`${KAFKAJS}/recordBatch/record/v0/index.js`) as (
  record: KafkajsRecordInput,
) => unknown;
const { RecordBatch: kafkajsRecordBatch } = require(`${KAFKAJS}/recordBatch/v0/index.js`) as {
  RecordBatch: (options: Record<string, unknown>) => Promise<{ buffer: Buffer }>;
};
const kafkajsLong = require("kafkajs/src/utils/long.js") as { fromValue(value: bigint): unknown };
const KAFKAJS_CODEC = { none: 0, gzip: 1 } as const;

const text = (value: string): Uint8Array => new TextEncoder().encode(value);
const CODECS: CompressionName[] = ["none", "gzip", "zstd"];
const zstdSkip = isCompressionAvailable("zstd") ? false : "this runtime's node:zlib has no zstd";
const skipFor = (codec: CompressionName) => (codec === "zstd" ? zstdSkip : false);

/** The records decodeRecordBatch should return for `inputs` encoded at `baseOffset`. */
function expected(inputs: RecordInput[], baseOffset: number, timestamp: number): LogRecord[] {
  return inputs.map((input, index) => ({
    offset: input.offset ?? baseOffset + index,
    timestamp: input.timestamp ?? timestamp,
    key: input.key ?? null,
    value: input.value,
    headers: input.headers ?? [],
  }));
}

function randomBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    bytes[i] = state >>> 24;
  }
  return bytes;
}

function assertSluice(code: string, pattern?: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(isSluiceError(error), `expected a SluiceError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  };
}

describe("record codec: golden bytes", () => {
  test("encodes the hand-laid batch byte for byte", () => {
    const inputs = GOLDEN_RECORDS.map(({ key, value, headers, timestamp }) => ({
      key,
      value,
      headers,
      timestamp,
    }));
    const bytes = encodeRecordBatch(inputs, GOLDEN_BATCH_OPTIONS);
    assert.equal(bytesToHex(bytes), GOLDEN_BATCH_HEX);
  });

  test("decodes the hand-laid batch to its exact value", () => {
    assert.deepEqual(decodeRecordBatch(hexToBytes(GOLDEN_BATCH_HEX)), {
      baseOffset: 7,
      sizeBytes: 89,
      partitionLeaderEpoch: 3,
      attributes: 0,
      compression: "none",
      timestampType: "create-time",
      transactional: false,
      control: false,
      lastOffsetDelta: 1,
      baseTimestamp: 1_700_000_000_000,
      maxTimestamp: 1_700_000_000_005,
      producerId: 1000,
      producerEpoch: 2,
      baseSequence: 5,
      records: GOLDEN_RECORDS,
    });
  });

  test("decoded keys and values are plain views of the input, even of a Buffer", () => {
    const input = Buffer.from(hexToBytes(GOLDEN_BATCH_HEX));
    const [first] = decodeRecordBatch(input).records;
    assert.equal(Object.getPrototypeOf(first!.value), Uint8Array.prototype);
    assert.equal(first!.value!.buffer, input.buffer);
  });
});

const SHAPES: [string, RecordInput[]][] = [
  ["one record with a null key and a null value", [{ value: null }]],
  ["empty key and empty value, which are not null", [{ key: new Uint8Array(0), value: text("") }]],
  [
    "headers: duplicate keys, null and empty values, non-ASCII and empty keys",
    [
      {
        key: text("k"),
        value: text("v"),
        headers: [
          { key: "trace", value: text("a") },
          { key: "trace", value: text("b") },
          { key: "nothing", value: null },
          { key: "empty", value: new Uint8Array(0) },
          { key: "clé-🚀-ключ", value: text("x") },
          { key: "", value: text("no name") },
        ],
      },
    ],
  ],
  [
    "a 1 MiB value and a 64 KiB key",
    [{ key: randomBytes(65_536, 1), value: randomBytes(2 ** 20, 2) }],
  ],
  [
    "5000 small records",
    Array.from({ length: 5000 }, (_, i) => ({ key: text(`key-${i % 37}`), value: text(`v${i}`) })),
  ],
  [
    "timestamps out of order (negative deltas), negative, and far apart",
    [
      { value: text("a"), timestamp: 1_700_000_000_000 },
      { value: text("b"), timestamp: 1_699_999_999_000 },
      { value: text("c"), timestamp: -1 },
      { value: text("d"), timestamp: -1_000_000_000_000_000 },
      { value: text("e"), timestamp: 4_000_000_000_000_000 },
    ],
  ],
  [
    "explicit offsets with gaps, as in a compacted log",
    [
      { value: text("a"), offset: 2 ** 40 },
      { value: text("b"), offset: 2 ** 40 + 5 },
      { value: text("c"), offset: 2 ** 40 + 2 ** 31 - 1 },
    ],
  ],
];

describe("record codec: round trips", () => {
  for (const codec of CODECS) {
    for (const [shape, inputs] of SHAPES) {
      test(`${codec}: ${shape}`, { skip: skipFor(codec) }, () => {
        const baseOffset = inputs[0]!.offset ?? 1000;
        const options = { baseOffset, compression: codec, timestamp: 1_600_000_000_000 };
        const bytes = encodeRecordBatch(inputs, options);
        const batch = decodeRecordBatch(bytes);
        assert.deepEqual(batch.records, expected(inputs, baseOffset, options.timestamp));
        assert.equal(batch.compression, codec);
        assert.equal(batch.sizeBytes, bytes.length);
        assert.equal(batch.lastOffsetDelta, batch.records.at(-1)!.offset - baseOffset);
        const timestamps = batch.records.map((record) => record.timestamp);
        assert.equal(batch.baseTimestamp, timestamps[0]);
        assert.equal(batch.maxTimestamp, Math.max(...timestamps));
      });
    }
  }

  test("header options round-trip: producer, epochs, sequence, flags", () => {
    const bytes = encodeRecordBatch([{ value: text("x") }], {
      baseOffset: 42,
      partitionLeaderEpoch: 17,
      producerId: 2 ** 40,
      producerEpoch: 0x7fff,
      baseSequence: 0x7fff_ffff,
      transactional: true,
      control: true,
      compression: "gzip",
      timestamp: 5,
    });
    const { records, ...header } = decodeRecordBatch(bytes);
    assert.deepEqual(header, {
      baseOffset: 42,
      sizeBytes: bytes.length,
      partitionLeaderEpoch: 17,
      attributes: 0x31,
      compression: "gzip",
      timestampType: "create-time",
      transactional: true,
      control: true,
      lastOffsetDelta: 0,
      baseTimestamp: 5,
      maxTimestamp: 5,
      producerId: 2 ** 40,
      producerEpoch: 0x7fff,
      baseSequence: 0x7fff_ffff,
    });
    assert.equal(records.length, 1);
  });

  test("defaults: offset 0, no producer, unknown leader epoch, timestamps of now", () => {
    const before = Date.now();
    const batch = decodeRecordBatch(encodeRecordBatch([{ value: null }, { value: null }]));
    const after = Date.now();
    assert.equal(batch.baseOffset, 0);
    assert.deepEqual(
      [batch.producerId, batch.producerEpoch, batch.baseSequence, batch.partitionLeaderEpoch],
      [-1, -1, -1, -1],
    );
    assert.deepEqual(
      batch.records.map((record) => record.offset),
      [0, 1],
    );
    assert.ok(batch.baseTimestamp >= before && batch.baseTimestamp <= after);
    assert.equal(batch.maxTimestamp, batch.baseTimestamp);
  });

  test("a header key with a lone surrogate is written as U+FFFD, as TextEncoder writes it", () => {
    const bytes = encodeRecordBatch([{ value: null, headers: [{ key: "a\ud800b", value: null }] }]);
    assert.equal(decodeRecordBatch(bytes).records[0]!.headers[0]!.key, "a\ufffdb");
  });

  test("log-append time gives every record the batch's maxTimestamp", () => {
    const bytes = encodeRecordBatch(
      [
        { value: null, timestamp: 10 },
        { value: null, timestamp: 30 },
        { value: null, timestamp: 20 },
      ],
      { timestampType: "log-append-time" },
    );
    const batch = decodeRecordBatch(bytes);
    assert.equal(batch.timestampType, "log-append-time");
    assert.deepEqual(
      batch.records.map((record) => record.timestamp),
      [30, 30, 30],
    );
  });

  test("arbitrary records round-trip under every codec", () => {
    const codecs = CODECS.filter((codec) => isCompressionAvailable(codec));
    fc.assert(
      fc.property(
        fc.array(recordArbitrary(false), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 2 ** 50 }),
        fc.constantFrom(...codecs),
        (inputs, baseOffset, compression) => {
          const bytes = encodeRecordBatch(inputs, { baseOffset, compression, timestamp: 0 });
          const batch = decodeRecordBatch(bytes);
          assert.deepEqual(batch.records, expected(inputs, baseOffset, 0));
        },
      ),
      { numRuns: 150 },
    );
  });
});

/**
 * Records as fast-check draws them. For kafkajs (`forKafkajs`), header values are never null,
 * which its encoder cannot write, and header keys are never names Object.prototype holds
 * ("toString", "__proto__"), which its decoder's fold of headers into a plain object mangles.
 */
function recordArbitrary(forKafkajs: boolean): fc.Arbitrary<RecordInput> {
  const bytes = fc.uint8Array({ maxLength: 48 });
  const headerValue = forKafkajs ? bytes : fc.option(bytes, { nil: null });
  let headerKey = fc.string({ unit: "binary", maxLength: 8 });
  if (forKafkajs) headerKey = headerKey.filter((key) => !(key in Object.prototype));
  return fc.record({
    key: fc.option(bytes, { nil: null }),
    value: fc.option(bytes, { nil: null }),
    headers: fc.array(
      fc.record({ key: headerKey, value: headerValue }, { noNullPrototype: true }),
      { maxLength: 3 },
    ),
    timestamp: fc.integer({ min: -1, max: 2 ** 45 }),
  });
}

describe("record codec: argument errors", () => {
  test("no records is a RangeError", () => {
    assert.throws(() => encodeRecordBatch([]), RangeError);
  });

  test("a value, key or header that is not bytes is a TypeError", () => {
    const bad = [
      { value: "text" },
      { key: "k", value: null },
      { value: null, headers: [{ key: 1, value: null }] },
      { value: null, headers: [{ key: "k", value: "v" }] },
    ];
    for (const record of bad) {
      assert.throws(() => encodeRecordBatch([record as unknown as RecordInput]), TypeError);
    }
  });

  test("offsets that do not increase, or bad header fields, are RangeErrors", () => {
    const decreasing = [
      { value: null, offset: 5 },
      { value: null, offset: 5 },
    ];
    assert.throws(
      () => encodeRecordBatch(decreasing, { baseOffset: 5 }),
      /offset 5 is not an integer in \[6, /,
    );
    assert.throws(
      () => encodeRecordBatch([{ value: null, offset: 4 }], { baseOffset: 5 }),
      RangeError,
    );
    assert.throws(() => encodeRecordBatch([{ value: null }], { baseOffset: -1 }), RangeError);
    const edge = { baseOffset: Number.MAX_SAFE_INTEGER };
    assert.throws(() => encodeRecordBatch([{ value: null }, { value: null }], edge), RangeError);
    const far = [{ value: null }, { value: null, offset: 2 ** 31 }];
    assert.throws(() => encodeRecordBatch(far), /offset 2147483648 is not an integer in \[1, /);
    assert.throws(
      () => encodeRecordBatch([{ value: null }], { producerEpoch: 0x8000 }),
      RangeError,
    );
    assert.throws(() => encodeRecordBatch([{ value: null, timestamp: 0.5 }]), RangeError);
    const unknown = { compression: "brotli" as CompressionName };
    assert.throws(() => encodeRecordBatch([{ value: null }], unknown), TypeError);
  });

  test("snappy and lz4 are UNSUPPORTED_COMPRESSION", () => {
    for (const compression of ["snappy", "lz4"] as const) {
      assert.throws(
        () => encodeRecordBatch([{ value: null }], { compression }),
        assertSluice("UNSUPPORTED_COMPRESSION", new RegExp(compression)),
      );
    }
  });
});

describe("record codec: concatenated batches", () => {
  const first = encodeRecordBatch([{ value: text("a") }, { value: text("b") }], { baseOffset: 0 });
  const second = encodeRecordBatch([{ value: text("c") }], {
    baseOffset: 2,
    compression: "gzip",
  });
  const third = encodeRecordBatch([{ value: text("d") }], { baseOffset: 3 });
  const joined = new Uint8Array(first.length + second.length + third.length);
  joined.set(first, 0);
  joined.set(second, first.length);
  joined.set(third, first.length + second.length);

  function offsetsOf(bytes: Uint8Array, partialTail?: "skip" | "error"): number[] {
    const offsets: number[] = [];
    for (const batch of decodeRecordBatches(bytes, partialTail ? { partialTail } : {})) {
      for (const record of batch.records) offsets.push(record.offset);
    }
    return offsets;
  }

  test("yields every batch in order", () => {
    assert.deepEqual(offsetsOf(joined), [0, 1, 2, 3]);
    assert.deepEqual(offsetsOf(new Uint8Array(0)), []);
  });

  test("a partial final batch ends the iteration, or is an error when asked", () => {
    for (const cut of [1, 12, BATCH_HEADER_BYTES, third.length - 1]) {
      const partial = joined.subarray(0, joined.length - cut);
      assert.deepEqual(offsetsOf(partial), [0, 1, 2]);
      assert.throws(() => offsetsOf(partial, "error"), assertSluice("INVALID_BATCH", /truncated/));
    }
    const iterator = decodeRecordBatches(joined.subarray(0, joined.length - 1));
    let step = iterator.next();
    while (step.done !== true) step = iterator.next();
    assert.equal(step.value, first.length + second.length);
  });

  test("a corrupt batch in the middle is an error, not the end of the data", () => {
    const corrupt = joined.slice();
    corrupt[first.length + second.length - 1]! ^= 0xff;
    assert.throws(() => offsetsOf(corrupt), assertSluice("CORRUPT_BATCH"));
  });

  test("forEachRecordBatch visits what the generator yields and stops at the same byte", () => {
    for (const cut of [0, 1, 12, BATCH_HEADER_BYTES, third.length - 1]) {
      const bytes = joined.subarray(0, joined.length - cut);
      const visited: number[] = [];
      const context = { visited };
      const decodedBytes = forEachRecordBatch(bytes, {}, context, (into, batch) => {
        for (const record of batch.records) into.visited.push(record.offset);
      });
      assert.deepEqual(visited, offsetsOf(bytes));
      assert.equal(decodedBytes, cut === 0 ? joined.length : first.length + second.length);
      if (cut === 0) continue;
      const visit = () => undefined;
      const error = assertSluice("INVALID_BATCH", /truncated/);
      assert.throws(
        () => forEachRecordBatch(bytes, { partialTail: "error" }, context, visit),
        error,
      );
    }
    const corrupt = joined.slice();
    corrupt[first.length + second.length - 1]! ^= 0xff;
    const noop = () => undefined;
    assert.throws(() => forEachRecordBatch(corrupt, {}, 0, noop), assertSluice("CORRUPT_BATCH"));
  });

  test("decodeRecordBatch refuses bytes after its one batch", () => {
    const bytes = joined.subarray(0, first.length + 1);
    assert.throws(() => decodeRecordBatch(bytes), assertSluice("INVALID_BATCH", /1 bytes follow/));
  });
});

/** Hex of bytes or null, so values from either side compare whatever their class. */
function hexOrNull(bytes: Uint8Array | null): string | null {
  return bytes === null ? null : bytesToHex(bytes);
}

/** Our record in the shape kafkajs decodes to: headers folded into an object by key. */
function asKafkajs(record: LogRecord) {
  const headers: Record<string, string | null | (string | null)[]> = Object.create(null);
  for (const { key, value } of record.headers) {
    const hex = hexOrNull(value);
    const seen = headers[key];
    if (seen === undefined) headers[key] = hex;
    else headers[key] = Array.isArray(seen) ? [...seen, hex] : [seen, hex];
  }
  return {
    offset: String(record.offset),
    timestamp: String(record.timestamp),
    key: hexOrNull(record.key),
    value: hexOrNull(record.value),
    headers,
  };
}

function kafkajsRecordPlain(record: KafkajsRecord) {
  const headers: Record<string, string | null | (string | null)[]> = Object.create(null);
  for (const [key, value] of Object.entries(record.headers)) {
    headers[key] = Array.isArray(value) ? value.map(hexOrNull) : hexOrNull(value);
  }
  return {
    offset: record.offset,
    timestamp: record.timestamp,
    key: hexOrNull(record.key),
    value: hexOrNull(record.value),
    headers,
  };
}

/** Encodes `inputs` with kafkajs, offsets consecutive from `baseOffset`. */
async function kafkajsEncode(
  inputs: RecordInput[],
  baseOffset: number,
  compression: "none" | "gzip",
): Promise<Uint8Array> {
  const timestamps = inputs.map((input) => input.timestamp ?? 0);
  const records = inputs.map((input, index) => {
    const headers: Record<string, Buffer[]> = Object.create(null);
    for (const { key, value } of input.headers ?? []) {
      const values = headers[key] ?? [];
      values.push(Buffer.from(value ?? new Uint8Array(0)));
      headers[key] = values;
    }
    return kafkajsRecord({
      offsetDelta: index,
      timestampDelta: timestamps[index]! - timestamps[0]!,
      key: input.key ? Buffer.from(input.key) : null,
      value: input.value ? Buffer.from(input.value) : null,
      headers,
    });
  });
  const batch = await kafkajsRecordBatch({
    compression: KAFKAJS_CODEC[compression],
    firstOffset: kafkajsLong.fromValue(BigInt(baseOffset)),
    firstTimestamp: timestamps[0],
    maxTimestamp: Math.max(...timestamps),
    lastOffsetDelta: inputs.length - 1,
    records,
  });
  return new Uint8Array(batch.buffer);
}

describe("record codec: cross-check with kafkajs", () => {
  const shapes = SHAPES.filter(([shape]) => !shape.startsWith("explicit offsets"));
  for (const compression of ["none", "gzip"] as const) {
    for (const [shape, inputs] of shapes) {
      test(`${compression}: kafkajs decodes what we encode: ${shape}`, async () => {
        const options = { baseOffset: 77, compression, timestamp: 1_600_000_000_000 };
        const bytes = encodeRecordBatch(inputs, options);
        const theirs = await kafkajsDecodeBatch(new KafkajsDecoder(Buffer.from(bytes)));
        const ours = decodeRecordBatch(bytes);
        assert.deepEqual(theirs.records.map(kafkajsRecordPlain), ours.records.map(asKafkajs));
        assert.equal(theirs.firstOffset, "77");
        assert.equal(theirs.firstTimestamp, String(ours.baseTimestamp));
        assert.equal(theirs.maxTimestamp, String(ours.maxTimestamp));
        assert.equal(theirs.lastOffsetDelta, ours.lastOffsetDelta);
      });

      test(`${compression}: we decode what kafkajs encodes: ${shape}`, async () => {
        // kafkajs cannot write a null header value; it writes empty bytes in its place here.
        const nonNull = inputs.map((input) => ({
          ...input,
          headers: (input.headers ?? []).map(({ key, value }) => ({
            key,
            value: value ?? new Uint8Array(0),
          })),
        }));
        const bytes = await kafkajsEncode(nonNull, 1234, compression);
        const batch = decodeRecordBatch(bytes);
        assert.equal(batch.compression, compression);
        const theirs = await kafkajsDecodeBatch(new KafkajsDecoder(Buffer.from(bytes)));
        assert.deepEqual(batch.records.map(asKafkajs), theirs.records.map(kafkajsRecordPlain));
        assert.equal(batch.records.length, inputs.length);
      });
    }
  }

  test("arbitrary records agree both ways", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(recordArbitrary(true), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 0, max: 2 ** 50 }),
        fc.constantFrom("none" as const, "gzip" as const),
        async (inputs, baseOffset, compression) => {
          const ours = encodeRecordBatch(inputs, { baseOffset, compression, timestamp: 0 });
          const theirs = await kafkajsEncode(inputs, baseOffset, compression);
          for (const bytes of [ours, theirs]) {
            const decoded = await kafkajsDecodeBatch(new KafkajsDecoder(Buffer.from(bytes)));
            assert.deepEqual(
              decodeRecordBatch(bytes).records.map(asKafkajs),
              decoded.records.map(kafkajsRecordPlain),
            );
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  test("uncompressed, our bytes equal kafkajs's for the same header fields", async () => {
    const inputs: RecordInput[] = [
      {
        key: text("k"),
        value: text("v1"),
        headers: [{ key: "h", value: text("x") }],
        timestamp: 9,
      },
      { key: null, value: text("v2"), timestamp: 4 },
    ];
    const theirs = await kafkajsEncode(inputs, 5, "none");
    // kafkajs writes leader epoch 0, producer epoch 0 and sequence 0 where ours default to -1.
    const options = { baseOffset: 5, partitionLeaderEpoch: 0, producerEpoch: 0, baseSequence: 0 };
    assert.equal(bytesToHex(encodeRecordBatch(inputs, options)), bytesToHex(theirs));
  });
});

/** A batch around `section`: its header claims `count` records and lastOffsetDelta 1000. */
function batchAround(section: Uint8Array, count: number, attributes = 0): Uint8Array {
  const bytes = encodeRecordBatch([{ value: null }]);
  const batch = new Uint8Array(BATCH_HEADER_BYTES + section.length);
  batch.set(bytes.subarray(0, BATCH_HEADER_BYTES));
  batch.set(section, BATCH_HEADER_BYTES);
  writeInt32(batch, BATCH_LENGTH_AT, batch.length - LOG_OVERHEAD_BYTES);
  writeInt32(batch, RECORD_COUNT_AT, count);
  batch[ATTRIBUTES_AT + 1] = attributes;
  writeInt32(batch, LAST_OFFSET_DELTA_AT, 1000);
  return withCrc(batch);
}

function withCrc(batch: Uint8Array): Uint8Array {
  writeInt32(batch, CRC_AT, computeBatchCrc(batch, 0, batch.length));
  return batch;
}

/** Decodes and accepts success or a SluiceError; anything else fails the property. */
function decodesOrRejects(bytes: Uint8Array): void {
  try {
    const batch = decodeRecordBatch(bytes, { decompressedBytesMax: 1 << 20 });
    let previous = batch.baseOffset - 1;
    for (const record of batch.records) {
      assert.ok(record.offset > previous && Number.isSafeInteger(record.offset));
      assert.ok(Number.isSafeInteger(record.timestamp));
      previous = record.offset;
    }
  } catch (error) {
    if (!(error instanceof SluiceError)) throw error;
  }
}

describe("record codec: hostile input", () => {
  const valid = [
    hexToBytes(GOLDEN_BATCH_HEX),
    encodeRecordBatch(
      [
        { key: text("k"), value: text("value ".repeat(20)), headers: [{ key: "h", value: null }] },
        { value: text("second"), timestamp: 2 ** 40 },
      ],
      { compression: "gzip", timestamp: 3 },
    ),
  ];

  test("every truncation of a valid batch is INVALID_BATCH", () => {
    const bytes = valid[0]!;
    for (let length = 0; length < bytes.length; length++) {
      assert.throws(
        () => decodeRecordBatch(bytes.subarray(0, length)),
        assertSluice("INVALID_BATCH"),
      );
    }
  });

  test("random bytes give a SluiceError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        assert.throws(() => decodeRecordBatch(bytes), SluiceError);
      }),
      { numRuns: 300 },
    );
  });

  test("random records behind a valid header and CRC decode or give a SluiceError", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: -1, max: 2 ** 31 - 1 })),
        fc.integer({ min: 0, max: 0x3f }),
        (section, count, attributes) => decodesOrRejects(batchAround(section, count, attributes)),
      ),
      { numRuns: 300 },
    );
  });

  test("mutations of valid batches decode or give a SluiceError, CRC fixed or not", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...valid),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.boolean(),
        (original, edits, fixCrc) => {
          const bytes = original.slice();
          for (const [at, value] of edits) bytes[at % bytes.length] = value;
          decodesOrRejects(fixCrc ? withCrc(bytes) : bytes);
        },
      ),
      { numRuns: 300 },
    );
  });

  test("a flipped bit under the CRC is CORRUPT_BATCH naming both CRCs", () => {
    const bytes = valid[0]!.slice();
    bytes[70]! ^= 0x04;
    assert.throws(
      () => decodeRecordBatch(bytes),
      assertSluice("CORRUPT_BATCH", /stored 0x1c28de7, computed 0x[0-9a-f]+/),
    );
  });

  // The smallest record: length 6, attributes, deltas 0, null key, empty value, no headers.
  const small = "0c 00 00 00 01 00 00";
  const withValue = (offsetDelta: string) => `14 00 00 ${offsetDelta} 01 08 aabbccdd 00`;
  const cases: [string, string, number, RegExp][] = [
    // [what, records section hex, recordCount, message]
    ["a recordCount far beyond the bytes", small, 2 ** 31 - 1, /claims 2147483647 records in 7/],
    [
      "fewer records than recordCount",
      `${withValue("00")} ${withValue("02")}`,
      3,
      /Record 2 .*length varint is truncated/,
    ],
    ["bytes after the last record", `${small} 00`, 1, /1 bytes after its 1 records/],
    ["a record length varint of six bytes", "80 80 80 80 80 00 00", 1, /length varint is too-long/],
    ["a record length past the section", "7e 00 00 00 01 00 00", 1, /length 63 is outside/],
    ["a key length past the record", "0c 00 00 00 40 00 00", 1, /key length 32 is outside/],
    ["a key length below -1", "0c 00 00 00 03 00 00", 1, /key length -2 is outside/],
    ["a negative header count", "0c 00 00 00 01 00 01", 1, /header count -1 is outside/],
    ["a null header key", "10 00 00 00 01 00 02 01 00", 1, /header 0 key length -1/],
    ["a record longer than its fields", "10 00 00 00 01 00 00 00 00", 1, /leaves 2 bytes after/],
    ["an offsetDelta past lastOffsetDelta", "0e 00 00 d2 0f 01 00 00", 1, /offsetDelta 1001 is/],
    [
      "offsets that do not increase",
      "0c 00 00 02 01 00 00 0c 00 00 02 01 00 00",
      2,
      /offset 1 does not increase/,
    ],
    [
      "a timestampDelta varlong of eleven bytes",
      "20 00 ffffffffffffffffffff 01 00 01 00 00",
      1,
      /timestampDelta varlong is too-long/,
    ],
  ];
  for (const [what, hex, count, message] of cases) {
    test(`${what} is INVALID_BATCH`, () => {
      const bytes = batchAround(hexToBytes(hex.replaceAll(" ", "")), count);
      assert.throws(() => decodeRecordBatch(bytes), assertSluice("INVALID_BATCH", message));
    });
  }

  test("unknown compression ids are INVALID_BATCH; snappy and lz4 UNSUPPORTED_COMPRESSION", () => {
    const section = hexToBytes(small.replaceAll(" ", ""));
    for (const id of [5, 6, 7]) {
      assert.throws(
        () => decodeRecordBatch(batchAround(section, 1, id)),
        assertSluice("INVALID_BATCH", new RegExp(`compression id ${id}`)),
      );
    }
    assert.throws(
      () => decodeRecordBatch(batchAround(section, 1, 2)),
      assertSluice("UNSUPPORTED_COMPRESSION", /snappy/),
    );
    assert.throws(
      () => decodeRecordBatch(batchAround(section, 1, 3)),
      assertSluice("UNSUPPORTED_COMPRESSION", /lz4/),
    );
  });

  test("a negative baseOffset, or one whose last offset is unsafe, is INVALID_BATCH", () => {
    for (const [baseOffset, message] of [
      ["ffffffffffffffff", /baseOffset -1 /],
      ["001fffffffffffff", /baseOffset 9007199254740991 and lastOffsetDelta 1/],
    ] as const) {
      const bytes = valid[0]!.slice();
      bytes.set(hexToBytes(baseOffset), 0);
      assert.throws(() => decodeRecordBatch(bytes), assertSluice("INVALID_BATCH", message));
    }
  });

  test("a batch larger than batchBytesMax is refused before it is read", () => {
    const bytes = valid[0]!;
    assert.throws(
      () => decodeRecordBatch(bytes, { batchBytesMax: bytes.length - 1 }),
      assertSluice("INVALID_BATCH", /batchBytesMax 88/),
    );
  });
});

describe("record codec: compression bombs", () => {
  const zeros = new Uint8Array(80 * 2 ** 20);
  for (const codec of ["gzip", "zstd"] as const) {
    test(`${codec}: records inflating past the default limit are BATCH_TOO_LARGE`, {
      skip: skipFor(codec),
    }, () => {
      const bomb = encodeRecordBatch([{ value: zeros }], {
        compression: codec,
        compressionLevel: 1,
      });
      assert.ok(bomb.length < 1_000_000, `${codec} bomb of ${bomb.length} bytes`);
      assert.throws(
        () => decodeRecordBatch(bomb),
        assertSluice("BATCH_TOO_LARGE", /decompressedBytesMax 67108864/),
      );
    });

    test(`${codec}: decompressedBytesMax sets the limit`, { skip: skipFor(codec) }, () => {
      const bytes = encodeRecordBatch([{ value: new Uint8Array(4096) }], { compression: codec });
      assert.throws(
        () => decodeRecordBatch(bytes, { decompressedBytesMax: 4096 }),
        assertSluice("BATCH_TOO_LARGE"),
      );
      assert.equal(decodeRecordBatch(bytes, { decompressedBytesMax: 5000 }).records.length, 1);
    });
  }
});

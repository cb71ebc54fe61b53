// Kafka RecordBatch v2, the unit of storage and of the wire. This file holds the header layout
// and the hot-path checks: the engine validates a batch by its header and CRC, patches its
// baseOffset, and never decodes records on the produce or fetch path. Record-level encoding and
// decoding live in types.ts.
//
//   offset  size  field
//   ------  ----  -----------------------------------------------------------------------
//        0     8  baseOffset            i64   assigned by the log (patched on append)
//        8     4  batchLength           i32   bytes after this field: total = 12 + batchLength
//       12     4  partitionLeaderEpoch  i32
//       16     1  magic                 i8    always 2
//       17     4  crc                   u32   CRC-32C of bytes 21 .. end
//       21     2  attributes            i16   bits 0-2 compression, 3 timestamp type,
//                                             4 transactional, 5 control
//       23     4  lastOffsetDelta       i32
//       27     8  baseTimestamp         i64
//       35     8  maxTimestamp          i64
//       43     8  producerId            i64
//       51     2  producerEpoch         i16
//       53     4  baseSequence          i32
//       57     4  recordCount           i32
//       61     …  records (varint-encoded, possibly compressed)
//
// Offsets and timestamps are JavaScript numbers: exact up to 2^53 - 1, which a log appending
// 10 million records a second reaches after 28 years. A larger value in untrusted bytes is
// rejected as invalid, never rounded.

import { crc32c } from "./crc32c.ts";
import { assert } from "./errors.ts";

export const BASE_OFFSET_AT = 0;
export const BATCH_LENGTH_AT = 8;
export const LEADER_EPOCH_AT = 12;
export const MAGIC_AT = 16;
export const CRC_AT = 17;
export const ATTRIBUTES_AT = 21;
export const LAST_OFFSET_DELTA_AT = 23;
export const BASE_TIMESTAMP_AT = 27;
export const MAX_TIMESTAMP_AT = 35;
export const PRODUCER_ID_AT = 43;
export const PRODUCER_EPOCH_AT = 51;
export const BASE_SEQUENCE_AT = 53;
export const RECORD_COUNT_AT = 57;
export const BATCH_HEADER_BYTES = 61;
/** The fields before batchLength's end: a batch's total size is this plus batchLength. */
export const LOG_OVERHEAD_BYTES = 12;
export const MAGIC_V2 = 2;

export const COMPRESSION_MASK = 0x07;
export const TIMESTAMP_TYPE_BIT = 0x08;
export const TRANSACTIONAL_BIT = 0x10;
export const CONTROL_BIT = 0x20;

export const COMPRESSION = { none: 0, gzip: 1, snappy: 2, lz4: 3, zstd: 4 } as const;
export type CompressionName = keyof typeof COMPRESSION;

assert(Math.max(...Object.values(COMPRESSION)) === 4, "COMPRESSION_ID_MAX names the last codec");
assert(RECORD_COUNT_AT + 4 === BATCH_HEADER_BYTES, "header layout adds up to 61 bytes");
assert(CRC_AT + 4 === ATTRIBUTES_AT, "the CRC covers everything after itself");

const TWO_32 = 0x1_0000_0000;

export function readInt32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!;
}

export function readUint32(bytes: Uint8Array, at: number): number {
  return readInt32(bytes, at) >>> 0;
}

export function readInt16(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16)) >> 16;
}

/** Reads an i64 as a number; NaN when it is outside the safe-integer range. */
export function readInt64(bytes: Uint8Array, at: number): number {
  const high = readInt32(bytes, at);
  const low = readUint32(bytes, at + 4);
  // |value| < 2^53 needs the high word within [-2^21, 2^21); at high = -2^21 the low word must
  // be nonzero too, since -2^53 itself is not safe. Outside, the product may round, but never
  // back into the safe range, so one check covers both.
  const value = high * TWO_32 + low;
  return Number.isSafeInteger(value) ? value : Number.NaN;
}

export function writeInt32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 24;
  bytes[at + 1] = value >>> 16;
  bytes[at + 2] = value >>> 8;
  bytes[at + 3] = value;
}

/** Writes a safe integer as a big-endian i64. */
export function writeInt64(bytes: Uint8Array, at: number, value: number): void {
  // The message is built only on failure: a template literal here formatted a number into a
  // string on every call (five per batch header written, one per append's base offset).
  if (!Number.isSafeInteger(value)) assert(false, `int64 value ${value} is a safe integer`);
  const high = Math.floor(value / TWO_32);
  writeInt32(bytes, at, high | 0);
  writeInt32(bytes, at + 4, (value - high * TWO_32) >>> 0);
}

/** Total size in bytes of the batch at `at` according to its header (not yet validated). */
export function batchSizeAt(bytes: Uint8Array, at: number): number {
  return LOG_OVERHEAD_BYTES + readInt32(bytes, at + BATCH_LENGTH_AT);
}

export function baseOffsetAt(bytes: Uint8Array, at: number): number {
  return readInt64(bytes, at + BASE_OFFSET_AT);
}

export function lastOffsetDeltaAt(bytes: Uint8Array, at: number): number {
  return readInt32(bytes, at + LAST_OFFSET_DELTA_AT);
}

export function maxTimestampAt(bytes: Uint8Array, at: number): number {
  return readInt64(bytes, at + MAX_TIMESTAMP_AT);
}

export function recordCountAt(bytes: Uint8Array, at: number): number {
  return readInt32(bytes, at + RECORD_COUNT_AT);
}

/** The codec id in a batch's attributes (bits 0-2); `COMPRESSION` names ids 0 to 4. */
export function compressionIdAt(bytes: Uint8Array, at: number): number {
  // attributes is a big-endian i16: bits 0-2 are in its second byte.
  return bytes[at + ATTRIBUTES_AT + 1]! & COMPRESSION_MASK;
}

/** The largest codec id with a name in `COMPRESSION`; 5 to 7 name no codec. */
export const COMPRESSION_ID_MAX = 4;

/**
 * Which of a batch's header timestamps lies outside ±(2^53 - 1), or undefined when both are
 * within. Appends refuse such a batch (a number would round it); stored batches are not
 * checked for it, so data written before this check existed stays readable.
 */
export function timestampOutOfRange(
  bytes: Uint8Array,
  at: number,
): "baseTimestamp" | "maxTimestamp" | undefined {
  if (Number.isNaN(readInt64(bytes, at + BASE_TIMESTAMP_AT))) return "baseTimestamp";
  if (Number.isNaN(readInt64(bytes, at + MAX_TIMESTAMP_AT))) return "maxTimestamp";
  return undefined;
}

/** Computes the CRC-32C a batch of `size` bytes at `at` should carry. */
export function computeBatchCrc(bytes: Uint8Array, at: number, size: number): number {
  return crc32c(bytes.subarray(at + ATTRIBUTES_AT, at + size)) >>> 0;
}

/** Assigns offsets to a batch in place: only baseOffset changes, so the CRC stays valid. */
export function patchBaseOffset(bytes: Uint8Array, at: number, baseOffset: number): void {
  writeInt64(bytes, at + BASE_OFFSET_AT, baseOffset);
}

/**
 * Why a batch failed its checks; "ok" when it passed. Scanners (recovery, index rebuild, read)
 * use the reason to decide between a torn tail and corruption; the append path turns it into a
 * SluiceError.
 */
export type BatchProblem =
  | "ok"
  | "truncated" // fewer bytes remain than the header or its batchLength needs
  | "bad-length" // batchLength below the header size or above the limit
  | "bad-magic" // magic is not 2
  | "bad-offsets" // lastOffsetDelta or recordCount negative, or baseOffset not a safe integer
  | "bad-crc"; // the CRC-32C does not match

/**
 * Checks the batch at `at` within `bytes[at .. end)`: sizes, magic, offset fields, and (when
 * `checkCrc`) its CRC. Never throws on any bytes.
 */
export function checkBatch(
  bytes: Uint8Array,
  at: number,
  end: number,
  options: { sizeMax: number; checkCrc: boolean },
): BatchProblem {
  if (end - at < BATCH_HEADER_BYTES) return "truncated";
  const size = batchSizeAt(bytes, at);
  if (size < BATCH_HEADER_BYTES) return "bad-length";
  if (size > options.sizeMax) return "bad-length";
  if (bytes[at + MAGIC_AT] !== MAGIC_V2) return "bad-magic";
  if (size > end - at) return "truncated";
  if (lastOffsetDeltaAt(bytes, at) < 0) return "bad-offsets";
  if (recordCountAt(bytes, at) < 0) return "bad-offsets";
  if (Number.isNaN(baseOffsetAt(bytes, at))) return "bad-offsets";
  if (options.checkCrc) {
    if (computeBatchCrc(bytes, at, size) !== readUint32(bytes, at + CRC_AT)) return "bad-crc";
  }
  return "ok";
}

/** The header fields of a batch as a plain object: for tools, tests and embedders. */
export type BatchHeader = {
  baseOffset: number;
  batchLength: number;
  partitionLeaderEpoch: number;
  magic: number;
  crc: number;
  attributes: number;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
};

export function readBatchHeader(bytes: Uint8Array, at = 0): BatchHeader {
  return {
    baseOffset: readInt64(bytes, at + BASE_OFFSET_AT),
    batchLength: readInt32(bytes, at + BATCH_LENGTH_AT),
    partitionLeaderEpoch: readInt32(bytes, at + LEADER_EPOCH_AT),
    magic: bytes[at + MAGIC_AT]!,
    crc: readUint32(bytes, at + CRC_AT),
    attributes: readInt16(bytes, at + ATTRIBUTES_AT),
    lastOffsetDelta: readInt32(bytes, at + LAST_OFFSET_DELTA_AT),
    baseTimestamp: readInt64(bytes, at + BASE_TIMESTAMP_AT),
    maxTimestamp: readInt64(bytes, at + MAX_TIMESTAMP_AT),
    producerId: readInt64(bytes, at + PRODUCER_ID_AT),
    producerEpoch: readInt16(bytes, at + PRODUCER_EPOCH_AT),
    baseSequence: readInt32(bytes, at + BASE_SEQUENCE_AT),
    recordCount: readInt32(bytes, at + RECORD_COUNT_AT),
  };
}

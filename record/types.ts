// Record-level encoding and decoding of Kafka RecordBatch v2, for clients, embedders and queue
// features. The engine's own produce and fetch paths never come here: they check a batch's
// header and CRC (batch.ts) and move its bytes whole.
//
// A batch is the 61-byte header described in batch.ts followed by `recordCount` records,
// the whole records section compressed as one block when the attributes name a codec:
//
//   Record =>
//     length          varint   bytes of the record after this field
//     attributes      int8     unused by v2; written as 0, ignored on read (as Kafka does)
//     timestampDelta  varlong  timestamp - baseTimestamp
//     offsetDelta     varint   offset - baseOffset
//     keyLength       varint   -1 for a null key
//     key             bytes
//     valueLength     varint   -1 for a null value
//     value           bytes
//     headerCount     varint
//     Header =>
//       keyLength     varint   never -1: header keys are non-null UTF-8 strings
//       key           bytes
//       valueLength   varint   -1 for a null value
//       value         bytes
//
// This file holds the grammar and the record types; encode.ts and decode.ts hold the functions
// (record/mod.ts exports both). Decoding treats its input as untrusted: any problem is
// a SluiceError (CORRUPT_BATCH for a CRC mismatch, BATCH_TOO_LARGE for records that would
// decompress past the limit, UNSUPPORTED_COMPRESSION for snappy and lz4, INVALID_BATCH for
// everything else). Decoded keys, values and header values are views (`subarray`) of the input,
// or of the decompressed records: copy them before reusing the input buffer.

import type { CompressionName } from "./batch.ts";

export type RecordHeader = { key: string; value: Uint8Array | null };

/** A record decoded from a batch. Offsets and timestamps (ms since the epoch) are absolute. */
export type LogRecord = {
  offset: number;
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: readonly RecordHeader[];
};

/** A record to encode. */
export type RecordInput = {
  key?: Uint8Array | null;
  value: Uint8Array | null;
  headers?: readonly RecordHeader[];
  /** Milliseconds since the epoch; defaults to the batch's `timestamp` option. */
  timestamp?: number;
  /**
   * The record's absolute offset; defaults to one past the previous record's (baseOffset for
   * the first). Offsets must increase; gaps are allowed, as in a compacted log.
   */
  offset?: number;
};

/** create-time: each record carries its own; log-append-time: all records take maxTimestamp. */
export type TimestampType = "create-time" | "log-append-time";

export type EncodeBatchOptions = {
  baseOffset?: number; // default 0
  compression?: CompressionName; // default "none"
  /** The codec's own level (gzip 1-9, zstd 1-22); the codec's default when absent. */
  compressionLevel?: number;
  partitionLeaderEpoch?: number; // default -1, "unknown"
  producerId?: number; // default -1, "not an idempotent producer"
  producerEpoch?: number; // default -1
  baseSequence?: number; // default -1
  timestampType?: TimestampType; // default "create-time"
  transactional?: boolean; // default false
  control?: boolean; // default false
  /** The timestamp of records that carry none; defaults to Date.now() at the call. */
  timestamp?: number;
};

export type DecodeBatchOptions = {
  /** Reject a batch whose header claims more bytes than this. */
  batchBytesMax?: number;
  /** Reject compressed records that inflate past this many bytes (compression.ts). */
  decompressedBytesMax?: number;
  /**
   * Check each batch's CRC-32C (default true). False skips only the hash: a reader that trusts
   * its source, as Kafka's `check.crcs=false`; every other check stays.
   */
  checkCrc?: boolean;
  /**
   * Builds each decoded record (default: a plain LogRecord). A reader that hands records on in
   * a shape of its own (the client's consumer adds topic and partition) builds that shape here,
   * once per record, instead of copying every decoded record into a second object.
   */
  makeRecord?: RecordMaker;
};

/** Builds one decoded record from its fields; the result must carry them unchanged. */
export type RecordMaker = (
  offset: number,
  timestamp: number,
  key: Uint8Array | null,
  value: Uint8Array | null,
  headers: readonly RecordHeader[],
) => LogRecord;

export type DecodedRecordBatch = {
  baseOffset: number;
  /** Bytes the batch takes, header included: the next batch starts this far on. */
  sizeBytes: number;
  partitionLeaderEpoch: number;
  /** The raw attributes; the fields below decode the bits Kafka defines. */
  attributes: number;
  compression: CompressionName;
  timestampType: TimestampType;
  transactional: boolean;
  control: boolean;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  records: LogRecord[];
};

// The one writer of RecordBatch v2 bytes (the grammar is in types.ts, the header in batch.ts).
// The client's producer builds its batches with it record by record, and `encodeRecordBatch`
// (encode.ts) uses it for whole batches, so there is one encoder of records in sluice.
//
// Records are written into a growable buffer as they are added (one copy of each key and value);
// the writer knows the exact size of the batch at every step, so a caller can stop before a
// record would push the batch past `batchBytesMax`. The header's fields are back-patched once the
// records are known (`seal`), the records section is compressed once, in place of the plain
// bytes, and the producer fields and the CRC-32C come last (`stamp`), again whenever they change
// (a retried idempotent batch takes a new sequence).
//
// The buffer may keep room in front of the batch for the bytes that precede it on the wire (a
// produce request's frame size, request header, topic and partition entries), so a request goes
// to the socket as one view per batch, with no copy:
//
//   buffer: [ room (prefixRoomBytes) ][ 61-byte header | records ... ][ unused capacity ]
//                                     ^ batch starts here
//
// Life of a batch: tryAdd* → seal (header, compression) → stamp (producer id, epoch, base
// sequence, CRC-32C; again on every change) → release (buffer back to its pool).

import {
  ATTRIBUTES_AT,
  BASE_OFFSET_AT,
  BASE_SEQUENCE_AT,
  BASE_TIMESTAMP_AT,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_AT,
  COMPRESSION,
  type CompressionName,
  CRC_AT,
  computeBatchCrc,
  LAST_OFFSET_DELTA_AT,
  LEADER_EPOCH_AT,
  LOG_OVERHEAD_BYTES,
  MAGIC_AT,
  MAGIC_V2,
  MAX_TIMESTAMP_AT,
  PRODUCER_EPOCH_AT,
  PRODUCER_ID_AT,
  RECORD_COUNT_AT,
  writeInt32,
  writeInt64,
} from "./batch.ts";
import { compressRecords } from "./compression.ts";
import { assert } from "./errors.ts";
import type { RecordHeader } from "./types.ts";
import { varintSize, varlongSize, writeVarint, writeVarlong } from "./varint.ts";

const INT32_MAX = 0x7fff_ffff;

/** The largest batch the writer produces: batchLength is an i32. */
export const ENCODED_BATCH_BYTES_MAX = INT32_MAX;
/** The smallest capacity a growing buffer starts with. */
export const BATCH_CAPACITY_MIN = 16 * 1024;
/** Each step of the capacity ladder is this many times the one before. */
const CAPACITY_STEP = 4;

assert(BATCH_CAPACITY_MIN > BATCH_HEADER_BYTES, "the smallest buffer holds a header");

/**
 * The capacity for a buffer that must hold `needed` bytes, on the ladder 16 KiB, 64 KiB,
 * 256 KiB, ... up to `top` (the largest batch plus its prefix room): a step that would come
 * within half of `top` goes to `top` at once, so a batch never grows by a few bytes at the
 * cost of a whole copy. Growing by 4 copies at most a third of the final size on the way.
 * A single record larger than `top` gets exactly what it needs.
 */
export function nextCapacity(needed: number, top: number): number {
  let capacity = BATCH_CAPACITY_MIN;
  while (capacity < needed && capacity * 2 < top) capacity *= CAPACITY_STEP;
  if (capacity * 2 >= top) capacity = top;
  return Math.max(capacity, needed);
}

/** Where a writer's buffers come from and go back to (the client's BufferPool is one). */
export interface BufferSource {
  /** A buffer of exactly `capacity` bytes; its contents may be anything. */
  take(capacity: number): Uint8Array;
  /** The buffer is no longer read by anyone and may be handed out again. */
  give(buffer: Uint8Array): void;
  /** The buffer is not coming back (left to whatever may still read it). */
  forget?(buffer: Uint8Array): void;
}

/** A record as the writer takes it: bytes only, and a timestamp in ms since the epoch. */
export type WriterRecord = {
  key?: Uint8Array | null;
  value: Uint8Array | null;
  headers?: readonly RecordHeader[];
  timestamp: number;
};

/** The producer id, epoch and base sequence a batch carries (-1 each when not idempotent). */
export type BatchIdentity = { producerId: number; producerEpoch: number; baseSequence: number };

/** Header fields fixed when the batch is sealed. */
export type SealOptions = {
  compression?: CompressionName; // default "none"
  compressionLevel?: number; // the codec's own default when absent
  baseOffset?: number; // default 0: a broker assigns offsets when it appends
  partitionLeaderEpoch?: number; // default -1
  /** Attribute bits other than compression (timestamp type, transactional, control). */
  flags?: number; // default 0
};

export type BatchWriterOptions = {
  /** The largest batch `tryAdd` lets the batch grow to, header included. */
  batchBytesMax: number;
  /** Bytes kept free in front of the batch in `buffer`. */
  prefixRoomBytes?: number;
  /** Where buffers come from and go back to; without one, every buffer is new. */
  pool?: BufferSource;
  /** The size this batch will likely reach, to start at that capacity on the ladder. */
  expectedBytes?: number;
  /** The exact size of the batch when the caller already knows it: one allocation, no slack. */
  exactBytes?: number;
};

const NO_HEADERS: readonly RecordHeader[] = Object.freeze([]);
const NO_IDENTITY: BatchIdentity = Object.freeze({
  producerId: -1,
  producerEpoch: -1,
  baseSequence: -1,
});
const utf8Encoder = new TextEncoder();

export class BatchWriter {
  readonly batchBytesMax: number;
  /** Bytes free in front of the batch in `buffer`. */
  readonly prefixRoomBytes: number;
  #pool: BufferSource | undefined;
  #buffer: Uint8Array;
  /** Bytes of the batch written so far, header included. */
  #sizeBytes = BATCH_HEADER_BYTES;
  #count = 0;
  #lastOffsetDelta = -1;
  #baseTimestamp = 0;
  #maxTimestamp = Number.MIN_SAFE_INTEGER;
  #sealed = false;
  /** The buffer goes back to the pool on release; false once it holds a compressed copy. */
  #pooled = true;

  constructor(options: BatchWriterOptions) {
    const { batchBytesMax } = options;
    if (!Number.isSafeInteger(batchBytesMax) || batchBytesMax < BATCH_HEADER_BYTES) {
      throw new RangeError(`batchBytesMax ${batchBytesMax} is not an integer ≥ 61`);
    }
    if (batchBytesMax > ENCODED_BATCH_BYTES_MAX) {
      throw new RangeError(
        `batchBytesMax ${batchBytesMax} exceeds ENCODED_BATCH_BYTES_MAX ${ENCODED_BATCH_BYTES_MAX}`,
      );
    }
    this.batchBytesMax = batchBytesMax;
    this.prefixRoomBytes = options.prefixRoomBytes ?? 0;
    this.#pool = options.pool;
    if (options.exactBytes !== undefined) {
      this.#buffer = new Uint8Array(this.prefixRoomBytes + options.exactBytes);
      this.#pooled = false;
    } else {
      const expected = Math.min(options.expectedBytes ?? 0, batchBytesMax);
      this.#buffer = this.#take(this.prefixRoomBytes + Math.max(expected, BATCH_HEADER_BYTES));
    }
  }

  /** The exact size of the batch: uncompressed while open; as sent once sealed. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  get count(): number {
    return this.#count;
  }

  /** The buffer holding the batch at `prefixRoomBytes`; replaced when it grows or compresses. */
  get buffer(): Uint8Array {
    return this.#buffer;
  }

  #take(needed: number): Uint8Array {
    const capacity = nextCapacity(needed, this.prefixRoomBytes + this.batchBytesMax);
    return this.#pool?.take(capacity) ?? new Uint8Array(capacity);
  }

  /**
   * Adds the record when the batch stays within batchBytesMax; returns false otherwise. The
   * first record of an empty batch is always taken: the caller checks it fits on its own.
   * `offsetDelta` defaults to one past the previous record's; it must increase (gaps allowed).
   * The record is trusted: bytes or null, a safe-integer timestamp (callers validate input).
   */
  tryAdd(record: WriterRecord, offsetDelta = this.#lastOffsetDelta + 1): boolean {
    const timestampDelta = this.#count === 0 ? 0 : record.timestamp - this.#baseTimestamp;
    return this.#add(record, offsetDelta, recordBodyBytes(record, offsetDelta, timestampDelta));
  }

  /**
   * `tryAdd` for a record whose body size at offset delta 0 and timestamp delta 0 is known
   * (`recordBodyBytes(record, 0, 0)`, worked out once when the record was prepared): its size
   * here differs only by the two delta varints, so the record's fields are not sized again.
   */
  tryAddSizedAtZero(record: WriterRecord, bodyBytesAtZero: number): boolean {
    const offsetDelta = this.#lastOffsetDelta + 1;
    const timestampDelta = this.#count === 0 ? 0 : record.timestamp - this.#baseTimestamp;
    // At deltas 0 each delta varint takes one byte.
    const body = bodyBytesAtZero - 2 + varlongSize(timestampDelta) + varintSize(offsetDelta);
    if (body > INT32_MAX) throw new RangeError(`A record of ${body} bytes passes the i32 range`);
    return this.#add(record, offsetDelta, body);
  }

  /**
   * `tryAdd` for an encoder that has already worked out the record's body size with
   * `recordBodyBytes` at this offset delta and timestamp delta (encode.ts sizes a whole batch
   * before it allocates), so the record is not sized twice.
   */
  addSized(record: WriterRecord, offsetDelta: number, bodyBytes: number): boolean {
    return this.#add(record, offsetDelta, bodyBytes);
  }

  #add(record: WriterRecord, offsetDelta: number, body: number): boolean {
    if (this.#sealed) throw new TypeError("tryAdd on a sealed batch");
    assert(offsetDelta > this.#lastOffsetDelta, "offset deltas increase");
    const count = this.#count;
    const timestampDelta = count === 0 ? 0 : record.timestamp - this.#baseTimestamp;
    const bytes = varintSize(body) + body;
    if (count > 0 && this.#sizeBytes + bytes > this.batchBytesMax) return false;
    if (this.#sizeBytes + bytes > ENCODED_BATCH_BYTES_MAX) {
      throw new RangeError(
        `Batch of ${this.#sizeBytes + bytes} bytes exceeds ENCODED_BATCH_BYTES_MAX ` +
          `${ENCODED_BATCH_BYTES_MAX}`,
      );
    }
    const at = this.prefixRoomBytes + this.#sizeBytes;
    if (at + bytes > this.#buffer.length) this.#grow(at + bytes);
    const end = writeRecord(this.#buffer, at, record, body, offsetDelta, timestampDelta);
    assert(end === at + bytes, "a record fills exactly the size worked out for it");
    if (count === 0) this.#baseTimestamp = record.timestamp;
    if (record.timestamp > this.#maxTimestamp) this.#maxTimestamp = record.timestamp;
    this.#sizeBytes += bytes;
    this.#count = count + 1;
    this.#lastOffsetDelta = offsetDelta;
    return true;
  }

  /** Moves the batch to a larger buffer; the old one goes back to the pool. */
  #grow(needed: number): void {
    const old = this.#buffer;
    const room = this.prefixRoomBytes;
    this.#buffer = this.#take(needed);
    this.#buffer.set(old.subarray(room, room + this.#sizeBytes), room);
    if (this.#pooled) this.#pool?.give(old);
    this.#pooled = true;
  }

  /**
   * Writes the header fields that the records fix and compresses the records section once when
   * asked. A compressed batch that would come out larger than batchBytesMax (incompressible
   * records plus the codec's framing) stays uncompressed instead: that one fits, by
   * construction. Sealing twice is a no-op.
   */
  seal(options: SealOptions = {}): void {
    if (this.#sealed) return;
    if (this.#count === 0) throw new RangeError("A record batch needs at least one record");
    this.#sealed = true;
    const compression = options.compression ?? "none";
    const bytes = this.#buffer;
    const at = this.prefixRoomBytes;
    writeInt64(bytes, at + BASE_OFFSET_AT, options.baseOffset ?? 0);
    writeInt32(bytes, at + LEADER_EPOCH_AT, options.partitionLeaderEpoch ?? -1);
    bytes[at + MAGIC_AT] = MAGIC_V2;
    writeInt16(bytes, at + ATTRIBUTES_AT, (options.flags ?? 0) | COMPRESSION.none);
    writeInt32(bytes, at + LAST_OFFSET_DELTA_AT, this.#lastOffsetDelta);
    writeInt64(bytes, at + BASE_TIMESTAMP_AT, this.#baseTimestamp);
    writeInt64(bytes, at + MAX_TIMESTAMP_AT, this.#maxTimestamp);
    writeInt32(bytes, at + RECORD_COUNT_AT, this.#count);
    this.#writeIdentity(NO_IDENTITY);
    if (compression !== "none") this.#compress(compression, options);
    writeInt32(this.#buffer, at + BATCH_LENGTH_AT, this.#sizeBytes - LOG_OVERHEAD_BYTES);
  }

  /** Replaces the records section by its compressed form, in a buffer of its own. */
  #compress(compression: CompressionName, options: SealOptions): void {
    const room = this.prefixRoomBytes;
    const recordsStart = room + BATCH_HEADER_BYTES;
    const plain = this.#buffer.subarray(recordsStart, room + this.#sizeBytes);
    const compressed = compressRecords(compression, plain, { level: options.compressionLevel });
    const sizeBytes = BATCH_HEADER_BYTES + compressed.length;
    if (sizeBytes > this.batchBytesMax) return;
    const buffer = new Uint8Array(room + sizeBytes);
    buffer.set(this.#buffer.subarray(room, recordsStart), room);
    buffer.set(compressed, recordsStart);
    writeInt16(buffer, room + ATTRIBUTES_AT, (options.flags ?? 0) | COMPRESSION[compression]);
    this.release();
    this.#buffer = buffer;
    this.#pooled = false;
    this.#sizeBytes = sizeBytes;
  }

  /**
   * Writes the producer id, epoch and base sequence, then the CRC-32C; returns a view of the
   * whole batch. Seals the batch (uncompressed) when it is still open.
   */
  stamp(identity: BatchIdentity = NO_IDENTITY): Uint8Array {
    if (!this.#sealed) this.seal();
    this.#writeIdentity(identity);
    const at = this.prefixRoomBytes;
    const batch = this.#buffer.subarray(at, at + this.#sizeBytes);
    writeInt32(batch, CRC_AT, computeBatchCrc(batch, 0, batch.length));
    return batch;
  }

  #writeIdentity(identity: BatchIdentity): void {
    const at = this.prefixRoomBytes;
    writeInt64(this.#buffer, at + PRODUCER_ID_AT, identity.producerId);
    writeInt16(this.#buffer, at + PRODUCER_EPOCH_AT, identity.producerEpoch);
    writeInt32(this.#buffer, at + BASE_SEQUENCE_AT, identity.baseSequence);
  }

  /**
   * Moves the batch to a buffer of its own, leaving the old one to whatever still reads it: a
   * request that timed out may still sit in a connection's queue, and a retry must not write
   * its prefix or a new sequence into bytes that request will send. The old buffer never goes
   * back to the pool.
   */
  detach(): void {
    const room = this.prefixRoomBytes;
    const buffer = new Uint8Array(room + this.#sizeBytes);
    buffer.set(this.#buffer.subarray(room, room + this.#sizeBytes), room);
    this.abandon();
    this.#buffer = buffer;
  }

  /**
   * Gives the buffer back to the pool. Only when nothing will read it again: the batch was
   * acknowledged (every byte went out) or never sent. The writer is unusable afterwards.
   */
  release(): void {
    if (this.#pooled) this.#pool?.give(this.#buffer);
    this.#pooled = false;
  }

  /**
   * Lets the buffer go without giving it back: something may still read it (a request that
   * may yet be written). The pool stops counting it as out.
   */
  abandon(): void {
    if (this.#pooled) this.#pool?.forget?.(this.#buffer);
    this.#pooled = false;
  }
}

/** The bytes one record takes in a batch at this offset and timestamp delta. */
export function recordBytes(
  record: Pick<WriterRecord, "key" | "value" | "headers">,
  offsetDelta: number,
  timestampDelta: number,
): number {
  const body = recordBodyBytes(record, offsetDelta, timestampDelta);
  return varintSize(body) + body;
}

/** The record's bytes after its length field, at this offset and timestamp delta. */
export function recordBodyBytes(
  record: Pick<WriterRecord, "key" | "value" | "headers">,
  offsetDelta: number,
  timestampDelta: number,
): number {
  let size =
    1 + // attributes
    varlongSize(timestampDelta) +
    varintSize(offsetDelta) +
    bytesFieldSize(record.key ?? null) +
    bytesFieldSize(record.value);
  const headers = record.headers ?? NO_HEADERS;
  size += varintSize(headers.length);
  for (let i = 0; i < headers.length; i++) {
    const header = headers[i]!;
    const keyBytes = utf8Length(header.key);
    size += varintSize(keyBytes) + keyBytes + bytesFieldSize(header.value);
  }
  if (size > INT32_MAX) throw new RangeError(`A record of ${size} bytes passes the i32 range`);
  return size;
}

function bytesFieldSize(bytes: Uint8Array | null): number {
  if (bytes === null) return 1;
  if (bytes.length > INT32_MAX) throw new RangeError(`${bytes.length} bytes pass the i32 range`);
  return varintSize(bytes.length) + bytes.length;
}

/** UTF-8 length of a string, counting a lone surrogate as U+FFFD (3 bytes), as TextEncoder. */
export function utf8Length(text: string): number {
  let length = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) {
      length += 1;
    } else if (code >= 0xd800 && code < 0xdc00 && isLowSurrogate(text.charCodeAt(i + 1))) {
      length += 2; // a pair: two UTF-16 units become four bytes
      i++;
    } else {
      length += 2;
    }
  }
  return length;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code < 0xe000;
}

/** Writes one record at `at` (its length varint first); returns the position after it. */
function writeRecord(
  bytes: Uint8Array,
  at: number,
  record: WriterRecord,
  body: number,
  offsetDelta: number,
  timestampDelta: number,
): number {
  let position = writeVarint(bytes, at, body);
  bytes[position++] = 0; // attributes
  position = writeVarlong(bytes, position, timestampDelta);
  position = writeVarint(bytes, position, offsetDelta);
  position = writeBytesField(bytes, position, record.key ?? null);
  position = writeBytesField(bytes, position, record.value);
  const headers = record.headers ?? NO_HEADERS;
  position = writeVarint(bytes, position, headers.length);
  for (let i = 0; i < headers.length; i++) {
    const header = headers[i]!;
    position = writeUtf8Field(bytes, position, header.key);
    position = writeBytesField(bytes, position, header.value);
  }
  return position;
}

function writeBytesField(bytes: Uint8Array, at: number, field: Uint8Array | null): number {
  if (field === null) return writeVarint(bytes, at, -1);
  const position = writeVarint(bytes, at, field.length);
  if (field.length <= 16) {
    // Short fields (keys, small values): a loop beats the call into TypedArray.set.
    for (let i = 0; i < field.length; i++) bytes[position + i] = field[i]!;
  } else {
    bytes.set(field, position);
  }
  return position + field.length;
}

function writeUtf8Field(bytes: Uint8Array, at: number, text: string): number {
  const length = utf8Length(text);
  const position = writeVarint(bytes, at, length);
  if (length === text.length) {
    // ASCII, the common case for header keys: no encoder call and no subarray.
    for (let i = 0; i < length; i++) bytes[position + i] = text.charCodeAt(i);
  } else {
    utf8Encoder.encodeInto(text, bytes.subarray(position, position + length));
  }
  return position + length;
}

function writeInt16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 8;
  bytes[at + 1] = value;
}

// The producer's per-partition batch under construction. Records are encoded into the batch's
// buffer as they are added (one copy of each key and value, into memory reused from a pool), and
// the builder knows the exact size the batch has, so it is sealed before a record would push it
// past `batchBytesMax`: what the producer sends never exceeds a topic's maxBatchBytes, header
// included.
//
//   record = length:varint attributes:i8 timestampDelta:varlong offsetDelta:varint
//            keyLength:varint key valueLength:varint value headerCount:varint headers
//   header = keyLength:varint key valueLength:varint value
//
// The buffer keeps room in front of the batch for the bytes that precede it in a Produce request
// (frame size, request header, topic and partition entries: produce_frame.ts writes them there),
// so a request goes to the socket as one view per batch, with no copy and no small writes:
//
//   buffer: [ room (prefixRoomBytes) ][ 61-byte header | records ... ][ unused capacity ]
//                                     ^ batchStart
//
// Life of a batch: tryAdd* → seal (header fields, compression) → stamp (producer id, epoch,
// base sequence, CRC-32C; again whenever its sequence changes) → release (buffer to the pool).
import { crc32c } from "../../record/mod.ts";
import {
  ATTRIBUTES_AT,
  BASE_SEQUENCE_AT,
  BASE_TIMESTAMP_AT,
  BATCH_LENGTH_AT,
  CRC_AT,
  LAST_OFFSET_DELTA_AT,
  LEADER_EPOCH_AT,
  LOG_OVERHEAD_BYTES,
  MAGIC_AT,
  MAGIC_V2,
  MAX_TIMESTAMP_AT,
  PRODUCER_EPOCH_AT,
  PRODUCER_ID_AT,
  RECORD_COUNT_AT,
  BATCH_HEADER_BYTES,
  COMPRESSION,
  type CompressionName,
  decodeRecordBatch,
  encodeRecordBatch,
  type RecordHeader,
  type RecordInput,
  varlongSize,
  writeInt32,
  writeInt64,
  writeVarint,
  writeVarlong,
} from "../../record/mod.ts";
import { type BufferPool, nextCapacity } from "./buffer_pool.ts";

/** Keys, values and header values may be given as bytes or as text (sent as UTF-8). */
export type BytesInput = Uint8Array | string | null;
export type HeadersInput =
  | Readonly<Record<string, Uint8Array | string | null>>
  | readonly { key: string; value: Uint8Array | string | null }[];

/** A record ready for a batch: bytes only, and a timestamp fixed when it was sent. */
export type PreparedRecord = RecordInput & { timestamp: number; sizeBytes: number };

const utf8 = new TextEncoder();
const NO_HEADERS: readonly RecordHeader[] = Object.freeze([]);

export function toBytes(value: BytesInput | undefined, what: string): Uint8Array | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return utf8.encode(value);
  if (value instanceof Uint8Array) return value;
  throw new TypeError(`${what} must be a Uint8Array, a string or null, not ${typeof value}`);
}

export function toHeaders(headers: HeadersInput | undefined): readonly RecordHeader[] {
  if (headers === undefined) return NO_HEADERS;
  if (typeof headers !== "object" || headers === null) {
    throw new TypeError("headers must be an object or an array of { key, value }");
  }
  const entries = Array.isArray(headers)
    ? (headers as readonly { key: string; value: BytesInput }[]).map((h) => [h?.key, h?.value])
    : Object.entries(headers);
  return entries.map(([key, value]) => {
    if (typeof key !== "string") throw new TypeError(`header key ${String(key)} is not a string`);
    return { key, value: toBytes(value as BytesInput, `header ${key}`) };
  });
}

/** The record's bytes after its length field, as the encoder will write them. */
function recordBodyBytes(
  record: PreparedRecord,
  offsetDelta: number,
  timestampDelta: number,
): number {
  let bytes = 1 + varlongSize(timestampDelta) + varlongSize(offsetDelta);
  bytes += lengthPrefixed(record.key ?? null) + lengthPrefixed(record.value);
  const headers = record.headers ?? NO_HEADERS;
  bytes += varlongSize(headers.length);
  for (const header of headers) {
    const keyBytes = utf8.encode(header.key).length;
    bytes += varlongSize(keyBytes) + keyBytes + lengthPrefixed(header.value);
  }
  return bytes;
}

function lengthPrefixed(bytes: Uint8Array | null): number {
  return bytes === null ? 1 : varlongSize(bytes.length) + bytes.length;
}

/** The bytes one record takes in a batch at this offset and timestamp delta. */
export function recordBytes(
  record: PreparedRecord,
  offsetDelta: number,
  timestampDelta: number,
): number {
  const body = recordBodyBytes(record, offsetDelta, timestampDelta);
  return varlongSize(body) + body;
}

/** Bytes of a batch holding just this record: the least any batch with it can take. */
export function aloneBatchBytes(record: PreparedRecord): number {
  return BATCH_HEADER_BYTES + recordBytes(record, 0, 0);
}

/**
 * Builds a record for a batch. Its `sizeBytes` is its size alone in a batch, used to account
 * for buffered memory; the exact size in a batch depends on its position, see `tryAdd`.
 */
export function prepareRecord(
  input: { key?: BytesInput; value: BytesInput; headers?: HeadersInput; timestamp?: number },
  nowMs: number,
): PreparedRecord {
  const timestamp = input.timestamp ?? nowMs;
  if (!Number.isSafeInteger(timestamp)) {
    throw new RangeError(`timestamp ${timestamp} is not a safe integer of milliseconds`);
  }
  const record: PreparedRecord = {
    key: toBytes(input.key, "key"),
    value: toBytes(input.value, "value"),
    headers: toHeaders(input.headers),
    timestamp,
    sizeBytes: 0,
  };
  record.sizeBytes = aloneBatchBytes(record);
  return record;
}

/** `prepareRecord` into an existing object, so that the producer's hot path allocates none. */
export function prepareInto(
  target: PreparedRecord,
  input: { key?: BytesInput; value: BytesInput; headers?: HeadersInput; timestamp?: number },
  nowMs: number,
): PreparedRecord {
  const timestamp = input.timestamp ?? nowMs;
  if (!Number.isSafeInteger(timestamp)) {
    throw new RangeError(`timestamp ${timestamp} is not a safe integer of milliseconds`);
  }
  target.key = toBytes(input.key, "key");
  target.value = toBytes(input.value, "value");
  target.headers = toHeaders(input.headers);
  target.timestamp = timestamp;
  target.sizeBytes = aloneBatchBytes(target);
  return target;
}

/** The producer id, epoch and base sequence a batch carries (-1 each when not idempotent). */
export type BatchIdentity = { producerId: number; producerEpoch: number; baseSequence: number };

export type BatchBuilderOptions = {
  /** Bytes kept free in front of the batch for the request that carries it. */
  prefixRoomBytes?: number;
  /** Where buffers come from and go back to; without one, every buffer is new. */
  pool?: BufferPool;
  /** The size this batch will likely reach (the last one's), to start at that capacity. */
  expectedBytes?: number;
};

export class BatchBuilder<Done> {
  readonly dones: Done[] = [];
  readonly createdMs: number;
  readonly batchBytesMax: number;
  /** Bytes free in front of the batch in `buffer`. */
  readonly prefixRoomBytes: number;
  #pool: BufferPool | undefined;
  #buffer: Uint8Array;
  /** Bytes of the batch written so far, header included. */
  #sizeBytes = BATCH_HEADER_BYTES;
  #count = 0;
  #baseTimestamp = 0;
  #maxTimestamp = Number.MIN_SAFE_INTEGER;
  #sealed = false;
  /** The buffer goes back to the pool on release; false once it holds a compressed copy. */
  #pooled = true;

  constructor(batchBytesMax: number, createdMs: number, options: BatchBuilderOptions = {}) {
    this.batchBytesMax = batchBytesMax;
    this.createdMs = createdMs;
    this.prefixRoomBytes = options.prefixRoomBytes ?? 0;
    this.#pool = options.pool;
    const expected = Math.min(options.expectedBytes ?? 0, batchBytesMax);
    this.#buffer = this.#take(this.prefixRoomBytes + Math.max(expected, BATCH_HEADER_BYTES));
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
   */
  tryAdd(record: PreparedRecord, done: Done): boolean {
    if (this.#sealed) throw new TypeError("tryAdd on a sealed batch");
    const count = this.#count;
    const timestampDelta = count === 0 ? 0 : record.timestamp - this.#baseTimestamp;
    const body = recordBodyBytes(record, count, timestampDelta);
    const bytes = varlongSize(body) + body;
    if (count > 0 && this.#sizeBytes + bytes > this.batchBytesMax) return false;
    const at = this.prefixRoomBytes + this.#sizeBytes;
    if (at + bytes > this.#buffer.length) this.#grow(at + bytes);
    const end = writeRecord(this.#buffer, at, record, body, count, timestampDelta);
    if (end !== at + bytes) throw new Error(`record wrote ${end - at} bytes, not ${bytes}`);
    if (count === 0) this.#baseTimestamp = record.timestamp;
    if (record.timestamp > this.#maxTimestamp) this.#maxTimestamp = record.timestamp;
    this.#sizeBytes += bytes;
    this.#count = count + 1;
    this.dones.push(done);
    return true;
  }

  /** Moves the batch to a larger buffer; the old one goes back to the pool. */
  #grow(needed: number): void {
    const old = this.#buffer;
    const room = this.prefixRoomBytes;
    this.#buffer = this.#take(needed);
    this.#buffer.set(old.subarray(room, room + this.#sizeBytes), room);
    this.#pool?.give(old);
  }

  /**
   * Writes the header fields that the records fix and compresses the records when asked. A
   * compressed batch that would come out larger than batchBytesMax (incompressible records plus
   * the codec's framing) is sent uncompressed instead: it fits, by construction.
   */
  seal(compression: CompressionName = "none"): void {
    if (this.#sealed) return;
    if (this.#count === 0) throw new RangeError("A record batch needs at least one record");
    this.#sealed = true;
    this.#writeHeader();
    if (compression !== "none") this.#compress(compression);
  }

  #writeHeader(): void {
    const bytes = this.#buffer;
    const at = this.prefixRoomBytes;
    writeInt32(bytes, at, 0); // baseOffset: assigned by the server
    writeInt32(bytes, at + 4, 0);
    writeInt32(bytes, at + BATCH_LENGTH_AT, this.#sizeBytes - LOG_OVERHEAD_BYTES);
    writeInt32(bytes, at + LEADER_EPOCH_AT, -1);
    bytes[at + MAGIC_AT] = MAGIC_V2;
    writeI16(bytes, at + ATTRIBUTES_AT, COMPRESSION.none);
    writeInt32(bytes, at + LAST_OFFSET_DELTA_AT, this.#count - 1);
    writeInt64(bytes, at + BASE_TIMESTAMP_AT, this.#baseTimestamp);
    writeInt64(bytes, at + MAX_TIMESTAMP_AT, this.#maxTimestamp);
    writeInt32(bytes, at + RECORD_COUNT_AT, this.#count);
    this.#writeIdentity({ producerId: -1, producerEpoch: -1, baseSequence: -1 });
  }

  /** Re-encodes the sealed batch through the engine's codec, which owns compression. */
  #compress(compression: CompressionName): void {
    const plain = this.stamp({ producerId: -1, producerEpoch: -1, baseSequence: -1 });
    const { records } = decodeRecordBatch(plain);
    const compressed = encodeRecordBatch(records, { compression, timestamp: this.#baseTimestamp });
    if (compressed.length > this.batchBytesMax) return;
    const buffer = new Uint8Array(this.prefixRoomBytes + compressed.length);
    buffer.set(compressed, this.prefixRoomBytes);
    this.release();
    this.#buffer = buffer;
    this.#pooled = false;
    this.#sizeBytes = compressed.length;
  }

  /**
   * Writes the producer id, epoch and base sequence, then the CRC-32C; returns a view of the
   * whole batch. Called before each first send and whenever the batch's sequence changes.
   */
  stamp(identity: BatchIdentity): Uint8Array {
    if (!this.#sealed) this.seal();
    this.#writeIdentity(identity);
    const at = this.prefixRoomBytes;
    const end = at + this.#sizeBytes;
    const crc = crc32c(this.#buffer.subarray(at + ATTRIBUTES_AT, end));
    writeInt32(this.#buffer, at + CRC_AT, crc | 0);
    return this.#buffer.subarray(at, end);
  }

  #writeIdentity(identity: BatchIdentity): void {
    const at = this.prefixRoomBytes;
    writeInt64(this.#buffer, at + PRODUCER_ID_AT, identity.producerId);
    writeI16(this.#buffer, at + PRODUCER_EPOCH_AT, identity.producerEpoch);
    writeInt32(this.#buffer, at + BASE_SEQUENCE_AT, identity.baseSequence);
  }

  /**
   * Moves the batch to a buffer of its own, leaving the old one to whatever still reads it: a
   * request that timed out may still sit in the connection's queue, and a retry must not write
   * its prefix or a new sequence into bytes that request will send. The old buffer never goes
   * back to the pool.
   */
  detach(): void {
    const room = this.prefixRoomBytes;
    const buffer = new Uint8Array(room + this.#sizeBytes);
    buffer.set(this.#buffer.subarray(room, room + this.#sizeBytes), room);
    this.#buffer = buffer;
    this.#pooled = false;
  }

  /**
   * Gives the buffer back to the pool. Only when nothing will read it again: the batch was
   * acknowledged (every byte went out) or never sent. The builder is unusable afterwards.
   */
  release(): void {
    if (this.#pooled) this.#pool?.give(this.#buffer);
    this.#pooled = false;
  }
}

/** Writes one record at `at` (its length varint first); returns the position after it. */
function writeRecord(
  bytes: Uint8Array,
  at: number,
  record: PreparedRecord,
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
  for (const header of headers) {
    position = writeBytesField(bytes, position, utf8.encode(header.key));
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

function writeI16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 8;
  bytes[at + 1] = value;
}

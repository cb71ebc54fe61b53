// The delay path's batches written and read without decoding records (queue_delay.ts): the
// due log's batches merged from stored one-record batches, the stored batches and tier entry
// batches themselves, and the carried delivery counts of due records. Each takes only the
// fields it needs from RecordBatch v2 bytes (record/types.ts has the grammar):
//
//   batch   = header (61 bytes) record*
//   record  = length:varint attributes:int8 timestampDelta:varlong offsetDelta:varint
//             keyLength:varint key valueLength:varint value headerCount:varint header*
//   header  = keyLength:varint key valueLength:varint value
//
// Merging rewrites only each record's length, timestamp delta and offset delta; the rest of the
// record (key, value, headers) is copied as stored. One CRC-32C is computed for the merged
// batch. A batch these functions cannot take as plain (compressed, log-append time,
// transactional, more than one record where one is expected, bad varints) makes them return
// undefined and the caller takes the decoding path, which reports damage as it always has.

import {
  ATTRIBUTES_AT,
  BASE_TIMESTAMP_AT,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_AT,
  batchSizeAt,
  baseOffsetAt,
  COMPRESSION_MASK,
  CRC_AT,
  computeBatchCrc,
  cursorOver,
  LAST_OFFSET_DELTA_AT,
  LEADER_EPOCH_AT,
  LOG_OVERHEAD_BYTES,
  MAGIC_AT,
  MAGIC_V2,
  MAX_TIMESTAMP_AT,
  PRODUCER_EPOCH_AT,
  PRODUCER_ID_AT,
  BASE_SEQUENCE_AT,
  RECORD_COUNT_AT,
  TIMESTAMP_TYPE_BIT,
  assert,
  lastOffsetDeltaAt,
  readInt16,
  readInt64,
  readVarint,
  readVarlong,
  recordCountAt,
  varintSize,
  varlongSize,
  writeInt32,
  writeInt64,
  writeVarint,
  writeVarlong,
} from "../record/mod.ts";
import { type DelayRef, REF_BYTES } from "./queue_delay_refs.ts";
import { decimalDigits } from "./queue_ttl.ts";

const REF_VERSION = 1;
/** Entries one encodeRefBatch call writes at most (their offset deltas stay 3-byte varints). */
export const REF_BATCH_ENTRIES_MAX = 10_000;
/** A header key this file searches for is at most this long (a 1-byte length varint). */
const HEADER_KEY_BYTES_MAX = 63;

assert(varintSize(REF_BATCH_ENTRIES_MAX) <= 3, "an entry's offset delta takes at most 3 bytes");

/** Writes the fixed part of a batch header; the caller writes the CRC last. */
function writeHeader(
  batch: Uint8Array,
  fields: { count: number; baseTimestampMs: number; maxTimestampMs: number },
): void {
  writeInt64(batch, 0, 0);
  writeInt32(batch, BATCH_LENGTH_AT, batch.length - LOG_OVERHEAD_BYTES);
  writeInt32(batch, LEADER_EPOCH_AT, -1);
  batch[MAGIC_AT] = MAGIC_V2;
  batch[ATTRIBUTES_AT] = 0;
  batch[ATTRIBUTES_AT + 1] = 0;
  writeInt32(batch, LAST_OFFSET_DELTA_AT, fields.count - 1);
  writeInt64(batch, BASE_TIMESTAMP_AT, fields.baseTimestampMs);
  writeInt64(batch, MAX_TIMESTAMP_AT, fields.maxTimestampMs);
  writeInt64(batch, PRODUCER_ID_AT, -1);
  batch[PRODUCER_EPOCH_AT] = 0xff;
  batch[PRODUCER_EPOCH_AT + 1] = 0xff;
  writeInt32(batch, BASE_SEQUENCE_AT, -1);
  writeInt32(batch, RECORD_COUNT_AT, fields.count);
}

function stampCrc(batch: Uint8Array): Uint8Array {
  writeInt32(batch, CRC_AT, computeBatchCrc(batch, 0, batch.length));
  return batch;
}

/**
 * One batch of tier entries, byte for byte what encodeRecordBatch writes for records with key
 * null, no headers, value encodeRef(ref) and timestamp `timestampMs` each, without building
 * a record object per entry.
 */
export function encodeRefBatch(refs: readonly DelayRef[], timestampMs: number): Uint8Array {
  assert(refs.length > 0 && refs.length <= REF_BATCH_ENTRIES_MAX, "an entry batch is not empty");
  // body = attributes, timestampDelta 0, offsetDelta, key -1, value length, value, 0 headers
  const bodyFixed = 1 + 1 + 1 + 1 + REF_BYTES + 1;
  let size = BATCH_HEADER_BYTES;
  for (let i = 0; i < refs.length; i++) {
    const body = bodyFixed + varintSize(i);
    size += varintSize(body) + body;
  }
  // The buffer first: asking a new small Uint8Array for its buffer makes the runtime move its
  // bytes out of line (`get buffer` was ~1% of the broker's samples at 10,000 delays/s).
  const buffer = new ArrayBuffer(size);
  const batch = new Uint8Array(buffer);
  const view = new DataView(buffer);
  let at = BATCH_HEADER_BYTES;
  for (let i = 0; i < refs.length; i++) {
    const ref = refs[i]!;
    assert(Number.isSafeInteger(ref.offset) && ref.offset >= 0, "a store offset is safe");
    at = writeVarint(batch, at, bodyFixed + varintSize(i));
    batch[at++] = 0; // attributes
    batch[at++] = 0; // timestampDelta 0
    at = writeVarint(batch, at, i);
    batch[at++] = 0x01; // key length -1: null
    batch[at++] = REF_BYTES * 2; // value length (zigzag)
    view.setUint8(at, REF_VERSION);
    view.setUint8(at + 1, ref.store);
    view.setFloat64(at + 2, ref.offset);
    view.setFloat64(at + 10, ref.dueMs);
    view.setFloat64(at + 18, ref.exitMs);
    at += REF_BYTES;
    batch[at++] = 0; // header count
  }
  assert(at === size, "an entry batch is filled exactly");
  writeHeader(batch, {
    count: refs.length,
    baseTimestampMs: timestampMs,
    maxTimestampMs: timestampMs,
  });
  return stampCrc(batch);
}

/** A stored record's parts: its timestamp and the bytes after its offset delta. */
type StoredParts = { attributes: number; timestampMs: number; rest: Uint8Array };

/** The one record of a plain stored batch, or undefined when it is not one. */
function storedParts(batch: Uint8Array): StoredParts | undefined {
  if (batch.length < BATCH_HEADER_BYTES || batchSizeAt(batch, 0) !== batch.length) return undefined;
  if (batch[MAGIC_AT] !== MAGIC_V2 || readInt16(batch, ATTRIBUTES_AT) !== 0) return undefined;
  if (recordCountAt(batch, 0) !== 1 || lastOffsetDeltaAt(batch, 0) !== 0) return undefined;
  const cursor = cursorOver(batch, BATCH_HEADER_BYTES);
  const length = readVarint(cursor);
  if (Number.isNaN(length) || cursor.position + length !== batch.length) return undefined;
  const attributes = batch[cursor.position++]!;
  const timestampDelta = readVarlong(cursor);
  const offsetDelta = readVarint(cursor);
  if (Number.isNaN(timestampDelta) || offsetDelta !== 0) return undefined;
  const timestampMs = readInt64(batch, BASE_TIMESTAMP_AT) + timestampDelta;
  if (!Number.isSafeInteger(timestampMs)) return undefined;
  return { attributes, timestampMs, rest: batch.subarray(cursor.position) };
}

/**
 * One batch holding the records of `batches`, each a stored one-record batch (uncompressed,
 * create time), in the order given; undefined when one of them is not such a batch. The
 * callers' CRCs are not checked here: the store's read checked them.
 */
export function mergeStored(batches: readonly Uint8Array[]): Uint8Array | undefined {
  assert(batches.length > 0, "a merge takes at least one batch");
  const parts: StoredParts[] = [];
  let baseTimestampMs = Number.POSITIVE_INFINITY;
  let maxTimestampMs = Number.NEGATIVE_INFINITY;
  for (const batch of batches) {
    const part = storedParts(batch);
    if (part === undefined) return undefined;
    parts.push(part);
    baseTimestampMs = Math.min(baseTimestampMs, part.timestampMs);
    maxTimestampMs = Math.max(maxTimestampMs, part.timestampMs);
  }
  const bodies: number[] = [];
  let size = BATCH_HEADER_BYTES;
  for (const [i, part] of parts.entries()) {
    const body =
      1 + varlongSize(part.timestampMs - baseTimestampMs) + varintSize(i) + part.rest.length;
    bodies.push(body);
    size += varintSize(body) + body;
  }
  const merged = new Uint8Array(size);
  let at = BATCH_HEADER_BYTES;
  for (const [i, part] of parts.entries()) {
    at = writeVarint(merged, at, bodies[i]!);
    merged[at++] = part.attributes;
    at = writeVarlong(merged, at, part.timestampMs - baseTimestampMs);
    at = writeVarint(merged, at, i);
    merged.set(part.rest, at);
    at += part.rest.length;
  }
  assert(at === size, "a merged batch is filled exactly");
  writeHeader(merged, { count: parts.length, baseTimestampMs, maxTimestampMs });
  return stampCrc(merged);
}

/**
 * Calls `each(offset, n)` for every record of an uncompressed batch with a header named `key`
 * (at most 63 bytes) whose value is decimal digits (at most `digitsMax`), n being the last
 * such value, as headerInteger (queue_delay.ts) reads it; reads no other field and decodes
 * nothing. False when the batch cannot be walked so (the caller decodes it instead).
 */
export function eachHeaderInteger(
  batch: Uint8Array,
  header: { key: Uint8Array; digitsMax: number },
  each: (offset: number, value: number) => void,
): boolean {
  const keys = [header.key];
  return eachHeaderIntegers(batch, { keys, digitsMax: header.digitsMax }, (offset, _, found) => {
    const value = found[0];
    if (value !== undefined) each(offset, value);
  });
}

/**
 * Calls `each(offset, timestampMs, found)` for every record of an uncompressed batch, found[i]
 * being the last value of a header named keys[i] (each at most 63 bytes) that is decimal
 * digits (at most `digitsMax`), or undefined: what headerInteger (queue_delay.ts) reads from
 * the decoded record, and the record's timestamp as the decoder gives it. Decodes nothing and
 * allocates nothing per record; `found` is reused between calls. The CRC is the reader's to
 * check. False when the batch cannot be walked so (the caller decodes it instead); `each` may
 * have been called for records before the one that stopped the walk.
 */
export function eachHeaderIntegers(
  batch: Uint8Array,
  header: { keys: readonly Uint8Array[]; digitsMax: number },
  each: (
    offset: number,
    timestampMs: number,
    found: readonly (number | undefined)[],
    where: RecordWhere,
  ) => void,
): boolean {
  const { keys, digitsMax } = header;
  assert(keys.length <= 30, "a record's named keys fit the bits of `named`");
  assert(
    keys.every((key) => key.length <= HEADER_KEY_BYTES_MAX),
    "a searched header key has a 1-byte length",
  );
  if (batch.length < BATCH_HEADER_BYTES || batchSizeAt(batch, 0) !== batch.length) return false;
  const attributes = readInt16(batch, ATTRIBUTES_AT);
  if (batch[MAGIC_AT] !== MAGIC_V2 || (attributes & COMPRESSION_MASK) !== 0) return false;
  // With log-append time the broker stamped the batch: its max timestamp is every record's.
  const stamped = (attributes & TIMESTAMP_TYPE_BIT) !== 0;
  const stampedMs = stamped ? readInt64(batch, MAX_TIMESTAMP_AT) : undefined;
  const baseTimestampMs = readInt64(batch, BASE_TIMESTAMP_AT);
  const base = baseOffsetAt(batch, 0);
  const cursor = cursorOver(batch, BATCH_HEADER_BYTES);
  const count = recordCountAt(batch, 0);
  const found: (number | undefined)[] = keys.map(() => undefined);
  const where: RecordWhere = {
    fieldsAt: 0,
    countAt: 0,
    headersAt: 0,
    headerCount: 0,
    end: 0,
    named: 0,
  };
  for (let i = 0; i < count; i++) {
    const length = readVarint(cursor);
    if (Number.isNaN(length) || length < 0 || cursor.position + length > batch.length) {
      return false;
    }
    const end = cursor.position + length;
    cursor.end = end;
    cursor.position++; // attributes
    const timestampDelta = readVarlong(cursor);
    const offsetDelta = readVarint(cursor);
    if (Number.isNaN(timestampDelta) || Number.isNaN(offsetDelta)) return false;
    // Not checked here: a caller that uses it checks that it is a safe integer.
    const timestampMs = stampedMs ?? baseTimestampMs + timestampDelta;
    where.fieldsAt = cursor.position;
    if (!skipBytes(cursor) || !skipBytes(cursor)) return false;
    where.countAt = cursor.position;
    const headers = readVarint(cursor);
    if (Number.isNaN(headers) || headers < 0) return false;
    where.headersAt = cursor.position;
    where.headerCount = headers;
    where.end = end;
    if (!readNamedHeaders(batch, cursor, { keys, digitsMax, found, where })) return false;
    if (cursor.position !== end) return false;
    cursor.end = batch.length;
    each(base + offsetDelta, timestampMs, found, where);
  }
  return cursor.position === batch.length;
}

/**
 * Where the parts of one record of a batch lie (eachHeaderIntegers reuses one for every
 * record): its key field at fieldsAt, then its value field, its header count at countAt, its
 * headers from headersAt to end. Bit k of `named` is set when a header is named keys[k],
 * whatever its value.
 */
export type RecordWhere = {
  fieldsAt: number;
  countAt: number;
  headersAt: number;
  headerCount: number;
  end: number;
  named: number;
};

/**
 * The one-record batch of a stored record made from a record of a plain batch as it lies:
 * its key, value and headers copied as bytes, `extra` headers after them (each value a
 * non-negative integer, written in decimal as String() writes it), at `timestampMs`. Byte for
 * byte what encodeStored writes for the decoded record with those headers added.
 */
export function storedFromRecord(
  batch: Uint8Array,
  where: Readonly<RecordWhere>,
  timestampMs: number,
  extra: readonly { key: Uint8Array; value: number }[],
): Uint8Array {
  assert(Number.isSafeInteger(timestampMs), "a stored record's timestamp is a safe integer");
  assert(where.fieldsAt < where.countAt && where.headersAt <= where.end, "a record is located");
  const headerCount = where.headerCount + extra.length;
  let extraBytes = 0;
  for (const header of extra) {
    const digits = decimalSize(header.value);
    extraBytes += bytesFieldSize(header.key) + varintSize(digits) + digits;
  }
  const body =
    3 +
    (where.countAt - where.fieldsAt) +
    varintSize(headerCount) +
    (where.end - where.headersAt) +
    extraBytes;
  const stored = new Uint8Array(BATCH_HEADER_BYTES + varintSize(body) + body);
  let at = writeVarint(stored, BATCH_HEADER_BYTES, body);
  stored[at++] = 0; // attributes
  stored[at++] = 0; // timestampDelta 0
  stored[at++] = 0; // offsetDelta 0
  stored.set(batch.subarray(where.fieldsAt, where.countAt), at);
  at += where.countAt - where.fieldsAt;
  at = writeVarint(stored, at, headerCount);
  stored.set(batch.subarray(where.headersAt, where.end), at);
  at += where.end - where.headersAt;
  for (const header of extra) {
    at = writeBytesField(stored, at, header.key);
    at = writeVarint(stored, at, decimalSize(header.value));
    at = writeDecimal(stored, at, header.value);
  }
  assert(at === stored.length, "a stored batch is filled exactly");
  writeHeader(stored, { count: 1, baseTimestampMs: timestampMs, maxTimestampMs: timestampMs });
  return stampCrc(stored);
}

/** Reads one record's headers (at the cursor, up to where.end) into `found` and where.named. */
function readNamedHeaders(
  batch: Uint8Array,
  cursor: ReturnType<typeof cursorOver>,
  into: {
    keys: readonly Uint8Array[];
    digitsMax: number;
    found: (number | undefined)[];
    where: RecordWhere;
  },
): boolean {
  const { keys, digitsMax, found, where } = into;
  where.named = 0;
  found.fill(undefined);
  for (let h = 0; h < where.headerCount; h++) {
    const keyLength = readVarint(cursor);
    if (Number.isNaN(keyLength) || keyLength < 0 || cursor.position + keyLength > where.end) {
      return false;
    }
    const keyAt = cursor.position;
    cursor.position += keyLength;
    const valueLength = readVarint(cursor);
    if (Number.isNaN(valueLength) || !skipBytesOf(cursor, valueLength)) return false;
    for (let k = 0; k < keys.length; k++) {
      const key = keys[k]!;
      if (keyLength !== key.length || !sameBytes(batch, keyAt, key)) continue;
      where.named |= 1 << k;
      if (valueLength < 0) continue;
      found[k] =
        decimalAt(batch, cursor.position - valueLength, valueLength, digitsMax) ?? found[k];
    }
  }
  return true;
}

/**
 * decimalDigits (queue_ttl.ts) of bytes[at .. at + length), read where they lie: no view is
 * made unless the value is past 2^53 (decimalDigits then parses the text).
 */
function decimalAt(
  bytes: Uint8Array,
  at: number,
  length: number,
  digitsMax: number,
): number | undefined {
  if (length === 0 || length > digitsMax) return undefined;
  let value = 0;
  for (let i = at; i < at + length; i++) {
    const digit = bytes[i]! - 0x30;
    if (digit < 0 || digit > 9) return undefined;
    value = value * 10 + digit;
  }
  return Number.isSafeInteger(value)
    ? value
    : decimalDigits(bytes.subarray(at, at + length), digitsMax);
}

/** Digits of a non-negative safe integer written in decimal, as String(n) writes it. */
function decimalSize(n: number): number {
  assert(Number.isSafeInteger(n) && n >= 0, "a header number is a non-negative safe integer");
  let digits = 1;
  for (let rest = n; rest >= 10; rest = Math.floor(rest / 10)) digits++;
  return digits;
}

/** Writes `n` in decimal ASCII at `at` (no TextEncoder, no string); returns the end. */
function writeDecimal(bytes: Uint8Array, at: number, n: number): number {
  const end = at + decimalSize(n);
  let rest = n;
  for (let i = end - 1; i >= at; i--) {
    bytes[i] = 0x30 + (rest % 10);
    rest = Math.floor(rest / 10);
  }
  return end;
}

function sameBytes(bytes: Uint8Array, at: number, key: Uint8Array): boolean {
  for (let i = 0; i < key.length; i++) if (bytes[at + i] !== key[i]) return false;
  return true;
}

/** Skips a length-prefixed bytes field (length -1: null). */
function skipBytes(cursor: ReturnType<typeof cursorOver>): boolean {
  const length = readVarint(cursor);
  return !Number.isNaN(length) && skipBytesOf(cursor, length);
}

function skipBytesOf(cursor: ReturnType<typeof cursorOver>, length: number): boolean {
  if (length === -1) return true;
  if (length < -1 || cursor.position + length > cursor.end) return false;
  cursor.position += length;
  return true;
}

const utf8 = new TextEncoder();

/** Bytes of a length-prefixed bytes field (null: length -1). */
function bytesFieldSize(bytes: Uint8Array | null): number {
  return bytes === null ? 1 : varintSize(bytes.length) + bytes.length;
}

function writeBytesField(batch: Uint8Array, at: number, bytes: Uint8Array | null): number {
  if (bytes === null) return writeVarint(batch, at, -1);
  const after = writeVarint(batch, at, bytes.length);
  batch.set(bytes, after);
  return after + bytes.length;
}

/**
 * The one-record batch of a stored record (its key, value, timestamp and headers as given,
 * header keys as UTF-8), byte for byte what encodeRecordBatch([record], { timestamp }) writes,
 * without its checking pass: the record was decoded from a log, or built by the delay path.
 */
export function encodeStored(record: {
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: readonly { key: Uint8Array; value: Uint8Array | null }[];
  timestamp: number;
}): Uint8Array {
  const { key, value, headers, timestamp } = record;
  assert(Number.isSafeInteger(timestamp), "a stored record's timestamp is a safe integer");
  // attributes, timestampDelta 0, offsetDelta 0, key, value, header count, headers
  let body = 3 + bytesFieldSize(key) + bytesFieldSize(value) + varintSize(headers.length);
  for (const header of headers) body += bytesFieldSize(header.key) + bytesFieldSize(header.value);
  const batch = new Uint8Array(BATCH_HEADER_BYTES + varintSize(body) + body);
  let at = writeVarint(batch, BATCH_HEADER_BYTES, body);
  batch[at++] = 0;
  batch[at++] = 0;
  batch[at++] = 0;
  at = writeBytesField(batch, at, key);
  at = writeBytesField(batch, at, value);
  at = writeVarint(batch, at, headers.length);
  for (const header of headers) {
    at = writeBytesField(batch, at, header.key);
    at = writeBytesField(batch, at, header.value);
  }
  assert(at === batch.length, "a stored batch is filled exactly");
  writeHeader(batch, { count: 1, baseTimestampMs: timestamp, maxTimestampMs: timestamp });
  return stampCrc(batch);
}

/** A header key as UTF-8 bytes: the delay path's own keys are encoded once. */
export function headerKeyBytes(key: string, known: ReadonlyMap<string, Uint8Array>): Uint8Array {
  return known.get(key) ?? utf8.encode(key);
}

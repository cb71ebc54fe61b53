// The routing fast path: for an uncompressed batch, walk its records' varints once (no objects
// per record, no copies) and note where each record's fields lie, in columns of integers
// reused from batch to batch. Routing reads only a record's key and headers, so from the
// columns it learns whether every record has the same key and the same headers (then the
// batch routes as its first record does and is appended whole with its own bytes), and the
// splitting path (exchange_split.ts) copies records between batches without decoding them.
// When the batch is compressed or a record does not parse, the caller decodes the batch as
// usual, and the decoder reports whatever is wrong with it. See record/types.ts:
//
//   record  length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
//           keyLength varint | key | valueLength varint | value | headerCount varint | headers
//           ▲start          ▲body                                 ▲offsetDelta ▲after   ▲headers

import {
  ATTRIBUTES_AT,
  BATCH_HEADER_BYTES,
  type ByteCursor,
  COMPRESSION_MASK,
  readInt16,
  readVarint,
  readVarlong,
  type RecordHeader,
  recordCountAt,
} from "../record/mod.ts";

/** What routing reads of the records of a batch that all route alike. */
export type UniformRouting = {
  key: Uint8Array | null;
  headers: RecordHeader[];
  records: number;
};

/**
 * Where each record of the last scanned batch lies, one entry per record in each column.
 * Valid until the next scan: the columns are reused.
 */
export type RecordSpans = {
  count: number;
  /** The record's first byte (its length varint) and the byte after it. */
  start: Int32Array;
  end: Int32Array;
  /** The attributes byte, right after the length varint. */
  body: Int32Array;
  /** The offsetDelta varint, and the byte after it (the key length). */
  offsetDelta: Int32Array;
  afterOffsetDelta: Int32Array;
  timestampDelta: Float64Array;
  /** The key's bytes (keyLength -1: a null key). */
  keyAt: Int32Array;
  keyLength: Int32Array;
  /** The header count varint; headers run to `end`. */
  headersAt: Int32Array;
};

/** Records a scan notes before its columns grow (they double as needed). */
const SPANS_INITIAL = 1_024;

const spans: RecordSpans = allocate(SPANS_INITIAL);
/** One cursor for every varint the scan reads, so reading allocates nothing. */
const cursor: ByteCursor = { bytes: new Uint8Array(0), position: 0, end: 0 };
const decoder = new TextDecoder();

function allocate(size: number): RecordSpans {
  return {
    count: 0,
    start: new Int32Array(size),
    end: new Int32Array(size),
    body: new Int32Array(size),
    offsetDelta: new Int32Array(size),
    afterOffsetDelta: new Int32Array(size),
    timestampDelta: new Float64Array(size),
    keyAt: new Int32Array(size),
    keyLength: new Int32Array(size),
    headersAt: new Int32Array(size),
  };
}

function grow(wanted: number): void {
  let size = spans.start.length;
  while (size < wanted) size *= 2;
  const bigger = allocate(size);
  for (const column of Object.keys(bigger) as (keyof RecordSpans)[]) {
    if (column === "count") continue;
    (bigger[column] as Int32Array).set(spans[column] as Int32Array);
    (spans as Record<string, unknown>)[column] = bigger[column];
  }
}

/** Notes record `index` at the cursor; false when its bytes do not parse. */
function scanRecord(index: number, limit: number): boolean {
  const start = cursor.position;
  const length = readVarint(cursor);
  if (Number.isNaN(length) || length < 1 || cursor.position + length > limit) return false;
  const end = cursor.position + length;
  spans.start[index] = start;
  spans.body[index] = cursor.position;
  spans.end[index] = end;
  cursor.end = end;
  cursor.position++;
  const timestampDelta = readVarlong(cursor);
  spans.offsetDelta[index] = cursor.position;
  if (Number.isNaN(timestampDelta) || Number.isNaN(readVarint(cursor))) return false;
  spans.timestampDelta[index] = timestampDelta;
  spans.afterOffsetDelta[index] = cursor.position;
  const keyLength = readVarint(cursor);
  if (Number.isNaN(keyLength) || keyLength < -1) return false;
  spans.keyAt[index] = cursor.position;
  spans.keyLength[index] = keyLength;
  if (keyLength > 0) cursor.position += keyLength;
  const valueLength = readVarint(cursor);
  if (Number.isNaN(valueLength) || valueLength < -1 || cursor.position > end) return false;
  if (valueLength > 0) cursor.position += valueLength;
  if (cursor.position >= end) return false;
  spans.headersAt[index] = cursor.position;
  cursor.position = end;
  cursor.end = limit;
  return true;
}

/**
 * Notes where every record of an uncompressed batch lies. Undefined when the batch is
 * compressed or its records do not parse (or do not fill the batch exactly).
 */
export function scanRecords(batch: Uint8Array): RecordSpans | undefined {
  if (batch.length < BATCH_HEADER_BYTES) return;
  if ((readInt16(batch, ATTRIBUTES_AT) & COMPRESSION_MASK) !== 0) return;
  const records = recordCountAt(batch, 0);
  // Every record takes at least 7 bytes; a count beyond what the batch can hold is refused
  // before the columns grow for it.
  if (records < 1 || records * 7 > batch.length - BATCH_HEADER_BYTES) return;
  if (records > spans.start.length) grow(records);
  cursor.bytes = batch;
  cursor.position = BATCH_HEADER_BYTES;
  cursor.end = batch.length;
  spans.count = 0;
  for (let index = 0; index < records; index++) {
    if (!scanRecord(index, batch.length)) return;
  }
  if (cursor.position !== batch.length) return;
  spans.count = records;
  return spans;
}

function equalRanges(bytes: Uint8Array, a: number, b: number, length: number): boolean {
  for (let i = 0; i < length; i++) if (bytes[a + i] !== bytes[b + i]) return false;
  return true;
}

/** True when records `a` and `b` of the scanned batch have the same key and headers. */
export function routeAlike(batch: Uint8Array, found: RecordSpans, a: number, b: number): boolean {
  const keyLength = found.keyLength[a]!;
  if (keyLength !== found.keyLength[b]) return false;
  if (keyLength > 0 && !equalRanges(batch, found.keyAt[a]!, found.keyAt[b]!, keyLength)) {
    return false;
  }
  const headersLength = found.end[a]! - found.headersAt[a]!;
  if (headersLength !== found.end[b]! - found.headersAt[b]!) return false;
  return equalRanges(batch, found.headersAt[a]!, found.headersAt[b]!, headersLength);
}

/** The headers of record `index` (a count, then key and value pairs), or undefined. */
export function headersOf(
  batch: Uint8Array,
  found: RecordSpans,
  index: number,
): RecordHeader[] | undefined {
  const end = found.end[index]!;
  const reader: ByteCursor = { bytes: batch, position: found.headersAt[index]!, end };
  const count = readVarint(reader);
  if (Number.isNaN(count) || count < 0 || count > end - reader.position) return;
  const out: RecordHeader[] = [];
  for (let i = 0; i < count; i++) {
    const keyLength = readVarint(reader);
    if (Number.isNaN(keyLength) || keyLength < 0 || reader.position + keyLength > end) return;
    const key = decoder.decode(batch.subarray(reader.position, reader.position + keyLength));
    reader.position += keyLength;
    const valueLength = readVarint(reader);
    if (Number.isNaN(valueLength) || valueLength < -1) return;
    if (reader.position + Math.max(valueLength, 0) > end) return;
    const at = reader.position;
    reader.position += Math.max(valueLength, 0);
    out.push({ key, value: valueLength === -1 ? null : batch.subarray(at, reader.position) });
  }
  return reader.position === end ? out : undefined;
}

/** The key of record `index`, as a view (null: a null key). */
export function keyOf(batch: Uint8Array, found: RecordSpans, index: number): Uint8Array | null {
  const length = found.keyLength[index]!;
  if (length === -1) return null;
  const at = found.keyAt[index]!;
  return batch.subarray(at, at + length);
}

/**
 * The key and headers every record of `batch` shares, or undefined when the batch is
 * compressed, its records differ in key or headers, or its bytes do not parse.
 */
export function uniformRouting(batch: Uint8Array): UniformRouting | undefined {
  const found = scanRecords(batch);
  if (found === undefined) return;
  for (let index = 1; index < found.count; index++) {
    if (!routeAlike(batch, found, 0, index)) return;
  }
  const headers = headersOf(batch, found, 0);
  if (headers === undefined) return;
  return { key: keyOf(batch, found, 0), headers, records: found.count };
}

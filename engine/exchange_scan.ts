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
/** What the cursor holds between reads, so that it never keeps a batch alive. */
const EMPTY = new Uint8Array(0);
/** One cursor for every varint the scan reads, so reading allocates nothing. */
const cursor: ByteCursor = { bytes: EMPTY, position: 0, end: 0 };
const decoder = new TextDecoder();

/** Where the last `varintAt` ended. */
let next = 0;

/**
 * The zigzag varint at `at` (before `end`), with the position after it in `next`; NaN when
 * the bytes do not hold one. One- and two-byte varints (lengths below 8 KiB, small deltas)
 * are read inline; longer ones by readVarint.
 */
function varintAt(bytes: Uint8Array, at: number, end: number): number {
  if (at < end) {
    const low = bytes[at]!;
    if (low < 0x80) {
      next = at + 1;
      return (low >>> 1) ^ -(low & 1);
    }
    if (at + 1 < end && bytes[at + 1]! < 0x80) {
      const zigzag = (low & 0x7f) | (bytes[at + 1]! << 7);
      next = at + 2;
      return (zigzag >>> 1) ^ -(zigzag & 1);
    }
  }
  cursor.bytes = bytes;
  cursor.position = at;
  cursor.end = end;
  const value = readVarint(cursor);
  next = cursor.position;
  cursor.bytes = EMPTY;
  return value;
}

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

/** The zigzag varlong at `at`, as varintAt reads varints (NaN: not a safe integer). */
function varlongAt(bytes: Uint8Array, at: number, end: number): number {
  if (at < end && bytes[at]! < 0x80) return varintAt(bytes, at, end);
  cursor.bytes = bytes;
  cursor.position = at;
  cursor.end = end;
  const value = readVarlong(cursor);
  next = cursor.position;
  cursor.bytes = EMPTY;
  return value;
}

/** Notes record `index` starting at `start`; its end, or -1 when its bytes do not parse. */
function scanRecord(bytes: Uint8Array, index: number, start: number, limit: number): number {
  const length = varintAt(bytes, start, limit);
  if (Number.isNaN(length) || length < 1 || next + length > limit) return -1;
  const body = next;
  const end = body + length;
  spans.start[index] = start;
  spans.body[index] = body;
  spans.end[index] = end;
  const timestampDelta = varlongAt(bytes, body + 1, end);
  if (Number.isNaN(timestampDelta)) return -1;
  spans.timestampDelta[index] = timestampDelta;
  spans.offsetDelta[index] = next;
  if (Number.isNaN(varintAt(bytes, next, end))) return -1;
  spans.afterOffsetDelta[index] = next;
  const keyLength = varintAt(bytes, next, end);
  if (Number.isNaN(keyLength) || keyLength < -1) return -1;
  spans.keyAt[index] = next;
  spans.keyLength[index] = keyLength;
  const valueLength = varintAt(bytes, next + Math.max(keyLength, 0), end);
  if (Number.isNaN(valueLength) || valueLength < -1) return -1;
  const headersAt = next + Math.max(valueLength, 0);
  // The header count takes at least one byte.
  if (headersAt >= end) return -1;
  spans.headersAt[index] = headersAt;
  return end;
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
  spans.count = 0;
  let at = BATCH_HEADER_BYTES;
  for (let index = 0; index < records && at !== -1; index++) {
    at = scanRecord(batch, index, at, batch.length);
  }
  if (at !== batch.length) return;
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

/** The first record's key (its length varint included) and headers, as byte ranges. */
type FirstRecord = {
  keyStart: number;
  keyBytes: number;
  headersStart: number;
  headersBytes: number;
};

/** Key bytes held as words by walkAlike (AMQP's 255-byte routing keys and their length). */
const KEY_WORDS_MAX = 64;
/** The first record's key, four bytes at a time (big-endian words), for walkAlike. */
const keyWords = new Int32Array(KEY_WORDS_MAX);

/**
 * Walks the records from `at` to the batch's end, each only to its key and its headers,
 * compared with the first record's: the end of the batch when every one is alike, else -1.
 * The hot loop of the one-key path, so it reads as little as it can: the first record's key
 * is held as words and compared four bytes at a time; the timestamp and offset deltas are
 * skipped (routing does not read them).
 */
function walkAlike(batch: Uint8Array, view: DataView, at: number, first: FirstRecord): number {
  const limit = batch.length;
  const { keyStart, keyBytes, headersStart, headersBytes } = first;
  // A longer key (routing reads it whole, so it may be long) is compared byte by byte.
  const words = keyBytes >>> 2 <= KEY_WORDS_MAX ? keyBytes >>> 2 : 0;
  for (let w = 0; w < words; w++) keyWords[w] = view.getInt32(keyStart + 4 * w);
  const tailStart = 4 * words;
  let position = at;
  for (let records = recordCountAt(batch, 0) - 1; records > 0; records--) {
    const length = varintAt(batch, position, limit);
    const end = next + length;
    if (!(length >= 1) || end > limit) return -1;
    let key = next + 1;
    while (key < end && batch[key]! >= 0x80) key++;
    key++;
    while (key < end && batch[key]! >= 0x80) key++;
    key++;
    if (key + keyBytes > end) return -1;
    for (let w = 0; w < words; w++) if (view.getInt32(key + 4 * w) !== keyWords[w]) return -1;
    for (let i = tailStart; i < keyBytes; i++) {
      if (batch[key + i] !== batch[keyStart + i]) return -1;
    }
    const valueLength = varintAt(batch, key + keyBytes, end);
    if (!(valueLength >= -1)) return -1;
    const headersAt = next + Math.max(valueLength, 0);
    if (end - headersAt !== headersBytes) return -1;
    for (let i = 0; i < headersBytes; i++) {
      if (batch[headersAt + i] !== batch[headersStart + i]) return -1;
    }
    position = end;
  }
  return position;
}

/** The headers of a record that has none (count 0): shared, never handed out to be changed. */
const NO_HEADERS: RecordHeader[] = Object.freeze([]) as unknown as RecordHeader[];

/**
 * The key and headers every record of `batch` shares, or undefined when the batch is
 * compressed, its records differ in key or headers, or its bytes do not parse. The first
 * record is read whole; every other one is only walked to its key (compared with the first's
 * key, its length varint included) and its headers (compared likewise), which is all routing
 * reads. The batch is then appended as a plain produce appends one: records undecoded.
 */
export function uniformRouting(batch: Uint8Array): UniformRouting | undefined {
  if (batch.length < BATCH_HEADER_BYTES) return;
  if ((readInt16(batch, ATTRIBUTES_AT) & COMPRESSION_MASK) !== 0) return;
  const records = recordCountAt(batch, 0);
  if (records < 1 || records * 7 > batch.length - BATCH_HEADER_BYTES) return;
  spans.count = 0;
  const firstEnd = scanRecord(batch, 0, BATCH_HEADER_BYTES, batch.length);
  if (firstEnd === -1) return;
  const keyStart = spans.afterOffsetDelta[0]!;
  const first: FirstRecord = {
    keyStart,
    keyBytes: spans.keyAt[0]! + Math.max(spans.keyLength[0]!, 0) - keyStart,
    headersStart: spans.headersAt[0]!,
    headersBytes: firstEnd - spans.headersAt[0]!,
  };
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  if (walkAlike(batch, view, firstEnd, first) !== batch.length) return;
  spans.count = 1;
  // A header count of 0 is one byte, 0x00: no header list to build.
  const headers =
    first.headersBytes === 1 && batch[first.headersStart] === 0
      ? NO_HEADERS
      : headersOf(batch, spans, 0);
  if (headers === undefined) return;
  return { key: keyOf(batch, spans, 0), headers, records };
}

// Decoding of RecordBatch v2 (the grammar is in types.ts). The input is untrusted: every
// length is checked against the bytes that remain before anything is sliced or allocated, reads
// of a record's fields are confined to its declared length, and every problem becomes a
// SluiceError that names the batch's position, the record's index and the offending value.
//
// `decodeRecordBatchViews` decodes a batch that lies across several buffers (as a socket
// delivers a large response, in chunks) without joining them: the CRC runs over the pieces in
// turn, records inside one piece are read in place, and only a record that straddles two pieces
// is copied. Anything irregular goes to the one-buffer decoder on a joined copy, so both report
// every problem the same way.

import { crc32c } from "./crc32c.ts";
import { compressionName, decompressRecords } from "./compression.ts";
import { SluiceError } from "./errors.ts";
import {
  ATTRIBUTES_AT,
  BASE_OFFSET_AT,
  BASE_SEQUENCE_AT,
  BASE_TIMESTAMP_AT,
  BATCH_HEADER_BYTES,
  type BatchProblem,
  baseOffsetAt,
  batchSizeAt,
  COMPRESSION_MASK,
  CONTROL_BIT,
  type CompressionName,
  CRC_AT,
  checkBatch,
  computeBatchCrc,
  LEADER_EPOCH_AT,
  LOG_OVERHEAD_BYTES,
  lastOffsetDeltaAt,
  MAGIC_AT,
  MAX_TIMESTAMP_AT,
  PRODUCER_EPOCH_AT,
  PRODUCER_ID_AT,
  readInt16,
  readInt32,
  readInt64,
  recordCountAt,
  TIMESTAMP_TYPE_BIT,
  TRANSACTIONAL_BIT,
} from "./batch.ts";
import type {
  DecodeBatchOptions,
  DecodedRecordBatch,
  LogRecord,
  RecordHeader,
  RecordMaker,
} from "./types.ts";
import {
  type ByteCursor,
  cursorOver,
  readVarint,
  readVarlong,
  VARINT_BYTES_MAX,
  VARLONG_BYTES_MAX,
  varintFailureAt,
} from "./varint.ts";

const MIB = 1024 * 1024;

/**
 * The default largest batch the decoder accepts: the largest `maxBatchBytes` a sluice log can be
 * configured with. A batch header claiming more is rejected before its bytes are looked at.
 */
export const BATCH_BYTES_MAX_DEFAULT = 256 * MIB;
/**
 * The fewest bytes a record can take: length, attributes, timestampDelta, offsetDelta, key
 * length, value length and header count, one byte each. It bounds recordCount by the bytes.
 */
export const RECORD_BYTES_MIN = 7;
/** The fewest bytes a header can take: a key length and a value length. */
const HEADER_BYTES_MIN = 2;

const EMPTY_HEADERS: readonly RecordHeader[] = Object.freeze([]);
// Lenient like Kafka's own String decoding: a malformed header key reads with U+FFFD rather than
// making the whole batch unreadable. ignoreBOM keeps a leading U+FEFF as part of the key.
const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true });

type BatchContext = {
  baseOffset: number;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  logAppendTime: boolean;
  /** Where the batch starts in the caller's bytes, for error messages. */
  batchPosition: number;
  makeRecord: RecordMaker;
};

/** The default record shape: the decoded fields and nothing else. */
const plainRecord: RecordMaker = (offset, timestamp, key, value, headers) => ({
  offset,
  timestamp,
  key,
  value,
  headers,
});

/**
 * Decodes the one batch that `bytes` holds, checking its header, CRC and every record. Throws
 * SluiceError on any problem with the bytes, including bytes left over after the batch.
 */
export function decodeRecordBatch(
  bytes: Uint8Array,
  options: DecodeBatchOptions = {},
): DecodedRecordBatch {
  const batch = decodeBatchAt(bytes, 0, options);
  if (batch.sizeBytes !== bytes.length) {
    const trailingBytes = bytes.length - batch.sizeBytes;
    throw invalid(`${trailingBytes} bytes follow the batch of ${batch.sizeBytes}`, {
      trailingBytes,
    });
  }
  return batch;
}

/**
 * Decodes concatenated batches, such as a fetch returns, in order. A fetch may end inside a
 * batch (its byte limit cuts the last one short): with `partialTail` "skip", the default, a
 * truncated final batch ends the iteration quietly, as Kafka consumers do; with "error" it is
 * an INVALID_BATCH. The generator's return value is the number of bytes decoded.
 */
export function* decodeRecordBatches(
  bytes: Uint8Array,
  options: DecodeBatchOptions & { partialTail?: "skip" | "error" } = {},
): Generator<DecodedRecordBatch, number, undefined> {
  const sizeMax = batchBytesMax(options);
  let position = 0;
  while (position < bytes.length) {
    const problem = checkBatch(bytes, position, bytes.length, batchChecks(sizeMax, false));
    if (problem === "truncated" && options.partialTail !== "error") return position;
    const batch = decodeBatchAt(bytes, position, options);
    position += batch.sizeBytes;
    yield batch;
  }
  return position;
}

/**
 * decodeRecordBatches as a visitor: `visit(context, batch)` for each batch in order, with no
 * generator or iterator result per call (a consumer decodes a one-record batch per fetch at
 * 10,000 a second). Same checks, errors and partial-tail rule; returns the bytes decoded.
 */
export function forEachRecordBatch<C>(
  bytes: Uint8Array,
  options: DecodeBatchOptions & { partialTail?: "skip" | "error" },
  context: C,
  visit: (context: C, batch: DecodedRecordBatch) => void,
): number {
  const sizeMax = batchBytesMax(options);
  let position = 0;
  while (position < bytes.length) {
    const problem = checkBatch(bytes, position, bytes.length, batchChecks(sizeMax, false));
    if (problem === "truncated" && options.partialTail !== "error") return position;
    const batch = decodeBatchAt(bytes, position, options);
    position += batch.sizeBytes;
    visit(context, batch);
  }
  return position;
}

/**
 * checkBatch's options, one object for the module: checkBatch reads them before it returns
 * and calls out to nothing, so no other check can run between the filling and the reading.
 * Two objects fewer per decoded batch (a consumer's one-record batches at 10,000 a second).
 */
const BATCH_CHECKS = { sizeMax: 0, checkCrc: true };

function batchChecks(sizeMax: number, checkCrc: boolean): { sizeMax: number; checkCrc: boolean } {
  BATCH_CHECKS.sizeMax = sizeMax;
  BATCH_CHECKS.checkCrc = checkCrc;
  return BATCH_CHECKS;
}

function batchBytesMax(options: DecodeBatchOptions): number {
  const sizeMax = options.batchBytesMax ?? BATCH_BYTES_MAX_DEFAULT;
  if (!Number.isSafeInteger(sizeMax) || sizeMax < BATCH_HEADER_BYTES) {
    throw new RangeError(`batchBytesMax ${sizeMax} is not an integer >= ${BATCH_HEADER_BYTES}`);
  }
  return sizeMax;
}

function decodeBatchAt(
  input: Uint8Array,
  at: number,
  options: DecodeBatchOptions,
): DecodedRecordBatch {
  const bytes = asPlainView(input);
  const sizeMax = batchBytesMax(options);
  const checkCrc = options.checkCrc !== false;
  const problem = checkBatch(bytes, at, bytes.length, batchChecks(sizeMax, checkCrc));
  if (problem !== "ok") throw batchProblem(problem, bytes, at, sizeMax);
  const sizeBytes = batchSizeAt(bytes, at);
  const attributes = readInt16(bytes, at + ATTRIBUTES_AT);
  const compression = compressionName(attributes);
  if (compression === undefined) {
    throw invalid(`Batch at ${at} names unknown compression id ${attributes & COMPRESSION_MASK}`, {
      position: at,
      attributes,
    });
  }
  const context = batchContext(bytes, at, attributes, options);
  const section = recordsSection(bytes, at, sizeBytes, compression, options);
  const records = decodeRecords(section, recordCountAt(bytes, at), context);
  return decodedBatch(bytes, at, sizeBytes, compression, context, records);
}

/** What decoding a batch's records needs from its header (already checked). */
function batchContext(
  bytes: Uint8Array,
  at: number,
  attributes: number,
  options: DecodeBatchOptions,
): BatchContext {
  return {
    baseOffset: checkedBaseOffset(bytes, at),
    lastOffsetDelta: lastOffsetDeltaAt(bytes, at),
    baseTimestamp: checkedInt64(bytes, at, BASE_TIMESTAMP_AT, "baseTimestamp"),
    maxTimestamp: checkedInt64(bytes, at, MAX_TIMESTAMP_AT, "maxTimestamp"),
    logAppendTime: (attributes & TIMESTAMP_TYPE_BIT) !== 0,
    batchPosition: at,
    makeRecord: options.makeRecord ?? plainRecord,
  };
}

function decodedBatch(
  bytes: Uint8Array,
  at: number,
  sizeBytes: number,
  compression: CompressionName,
  context: BatchContext,
  records: LogRecord[],
): DecodedRecordBatch {
  const attributes = readInt16(bytes, at + ATTRIBUTES_AT);
  return {
    baseOffset: context.baseOffset,
    sizeBytes,
    partitionLeaderEpoch: readInt32(bytes, at + LEADER_EPOCH_AT),
    attributes,
    compression,
    timestampType: context.logAppendTime ? "log-append-time" : "create-time",
    transactional: (attributes & TRANSACTIONAL_BIT) !== 0,
    control: (attributes & CONTROL_BIT) !== 0,
    lastOffsetDelta: context.lastOffsetDelta,
    baseTimestamp: context.baseTimestamp,
    maxTimestamp: context.maxTimestamp,
    producerId: checkedInt64(bytes, at, PRODUCER_ID_AT, "producerId"),
    producerEpoch: readInt16(bytes, at + PRODUCER_EPOCH_AT),
    baseSequence: readInt32(bytes, at + BASE_SEQUENCE_AT),
    records,
  };
}

/** baseOffset, once it and the batch's last offset are known to be safe, non-negative numbers. */
function checkedBaseOffset(bytes: Uint8Array, at: number): number {
  // checkBatch has ruled out an unsafe baseOffset but not a negative one, which the log would
  // patch on append; a decoded record's offset is final, so it must be a real one.
  const baseOffset = baseOffsetAt(bytes, at);
  const lastOffsetDelta = lastOffsetDeltaAt(bytes, at);
  if (baseOffset < 0 || baseOffset > Number.MAX_SAFE_INTEGER - lastOffsetDelta) {
    throw invalid(
      `Batch at ${at} has baseOffset ${baseOffset} and lastOffsetDelta ${lastOffsetDelta}, ` +
        `offsets outside [0, ${Number.MAX_SAFE_INTEGER}]`,
      { position: at, baseOffset, lastOffsetDelta },
    );
  }
  return baseOffset;
}

function checkedInt64(bytes: Uint8Array, at: number, fieldAt: number, name: string): number {
  const value = readInt64(bytes, at + fieldAt);
  if (Number.isNaN(value)) {
    const hex = hexAt(bytes, at + fieldAt, 8);
    throw invalid(`Batch at ${at} has ${name} 0x${hex}, outside the safe-integer range`, {
      position: at,
      field: name,
    });
  }
  return value;
}

/** `length` bytes at `at` in hex, for naming a raw value that does not fit a number. */
function hexAt(bytes: Uint8Array, at: number, length: number): string {
  const view = bytes.subarray(at, at + length);
  return Array.from(view, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The records section as a cursor: a view of the batch, or its decompressed copy. */
function recordsSection(
  bytes: Uint8Array,
  at: number,
  sizeBytes: number,
  compression: CompressionName,
  options: DecodeBatchOptions,
): ByteCursor {
  const start = at + BATCH_HEADER_BYTES;
  const end = at + sizeBytes;
  // An empty section is how Kafka writes a batch whose records were all compacted away, even
  // when the attributes name a codec.
  if (compression === "none" || start === end) return cursorOver(bytes, start, end);
  const decompressed = decompressRecords(compression, bytes.subarray(start, end), {
    decompressedBytesMax: options.decompressedBytesMax,
  });
  return cursorOver(decompressed);
}

function decodeRecords(cursor: ByteCursor, count: number, context: BatchContext): LogRecord[] {
  const available = cursor.end - cursor.position;
  // recordCount is untrusted: bound it by the bytes before looping or allocating on its word.
  if (count > available / RECORD_BYTES_MIN) {
    throw invalid(
      `Batch at ${context.batchPosition} claims ${count} records in ${available} bytes ` +
        `of records, fewer than ${RECORD_BYTES_MIN} bytes each`,
      { position: context.batchPosition, recordCount: count, recordsBytes: available },
    );
  }
  const records: LogRecord[] = [];
  let previousOffset = context.baseOffset - 1;
  for (let index = 0; index < count; index++) {
    const record = decodeRecord(cursor, index, context);
    if (record.offset <= previousOffset) {
      throw invalidRecord(context, index, `offset ${record.offset} does not increase`);
    }
    previousOffset = record.offset;
    records.push(record);
  }
  if (cursor.position !== cursor.end) {
    throw invalid(
      `Batch at ${context.batchPosition} has ${cursor.end - cursor.position} bytes after ` +
        `its ${count} records`,
      { position: context.batchPosition, trailingBytes: cursor.end - cursor.position },
    );
  }
  return records;
}

function decodeRecord(cursor: ByteCursor, index: number, context: BatchContext): LogRecord {
  const bodySize = readVarint(cursor);
  if (Number.isNaN(bodySize)) throw varintError(cursor, context, index, "length");
  const sectionEnd = cursor.end;
  const bodyAt = cursor.position;
  if (bodySize < RECORD_BYTES_MIN - 1 || bodySize > sectionEnd - bodyAt) {
    throw invalidRecord(
      context,
      index,
      `length ${bodySize} is outside [${RECORD_BYTES_MIN - 1}, ${sectionEnd - bodyAt}]`,
    );
  }
  // Confine every read of the record's fields to its declared length.
  cursor.end = bodyAt + bodySize;
  cursor.position = bodyAt + 1; // attributes, unused in v2
  const timestampDelta = readVarlong(cursor);
  if (Number.isNaN(timestampDelta)) throw varintError(cursor, context, index, "timestampDelta");
  const offsetDelta = readVarint(cursor);
  if (Number.isNaN(offsetDelta)) throw varintError(cursor, context, index, "offsetDelta");
  const key = readBytesField(cursor, context, index, "key");
  const value = readBytesField(cursor, context, index, "value");
  const headers = readHeaders(cursor, context, index);
  if (cursor.position !== cursor.end) {
    const left = cursor.end - cursor.position;
    throw invalidRecord(
      context,
      index,
      `length ${bodySize} leaves ${left} bytes after its headers`,
    );
  }
  cursor.end = sectionEnd;
  if (offsetDelta < 0 || offsetDelta > context.lastOffsetDelta) {
    throw invalidRecord(
      context,
      index,
      `offsetDelta ${offsetDelta} is outside [0, lastOffsetDelta ${context.lastOffsetDelta}]`,
    );
  }
  const timestamp = recordTimestamp(context, index, timestampDelta);
  return context.makeRecord(context.baseOffset + offsetDelta, timestamp, key, value, headers);
}

function recordTimestamp(context: BatchContext, index: number, timestampDelta: number): number {
  // With log-append time the broker stamped the batch: maxTimestamp is every record's time.
  if (context.logAppendTime) return context.maxTimestamp;
  const timestamp = context.baseTimestamp + timestampDelta;
  if (!Number.isSafeInteger(timestamp)) {
    throw invalidRecord(
      context,
      index,
      `timestamp ${context.baseTimestamp} + ${timestampDelta} is not a safe integer`,
    );
  }
  return timestamp;
}

function readBytesField(
  cursor: ByteCursor,
  context: BatchContext,
  index: number,
  field: string,
): Uint8Array | null {
  const length = readVarint(cursor);
  if (Number.isNaN(length)) throw varintError(cursor, context, index, `${field} length`);
  if (length === -1) return null;
  const remaining = cursor.end - cursor.position;
  if (length < -1 || length > remaining) {
    throw invalidRecord(context, index, `${field} length ${length} is outside [-1, ${remaining}]`);
  }
  const start = cursor.position;
  cursor.position = start + length;
  return cursor.bytes.subarray(start, start + length);
}

function readHeaders(
  cursor: ByteCursor,
  context: BatchContext,
  index: number,
): readonly RecordHeader[] {
  const count = readVarint(cursor);
  if (Number.isNaN(count)) throw varintError(cursor, context, index, "header count");
  if (count === 0) return EMPTY_HEADERS;
  const countMax = Math.floor((cursor.end - cursor.position) / HEADER_BYTES_MIN);
  if (count < 0 || count > countMax) {
    throw invalidRecord(context, index, `header count ${count} is outside [0, ${countMax}]`);
  }
  const headers: RecordHeader[] = [];
  for (let h = 0; h < count; h++) {
    const keyLength = readVarint(cursor);
    if (Number.isNaN(keyLength)) throw varintError(cursor, context, index, `header ${h} key`);
    const remaining = cursor.end - cursor.position;
    if (keyLength < 0 || keyLength > remaining) {
      throw invalidRecord(
        context,
        index,
        `header ${h} key length ${keyLength} is outside [0, ${remaining}]`,
      );
    }
    const keyAt = cursor.position;
    cursor.position = keyAt + keyLength;
    const key = utf8Decoder.decode(cursor.bytes.subarray(keyAt, keyAt + keyLength));
    headers.push({ key, value: readBytesField(cursor, context, index, `header ${h} value`) });
  }
  return headers;
}

function invalid(message: string, details: Record<string, number | string>): SluiceError {
  return new SluiceError("INVALID_BATCH", message, details);
}

function invalidRecord(context: BatchContext, index: number, what: string): SluiceError {
  return invalid(`Record ${index} of the batch at ${context.batchPosition}: ${what}`, {
    position: context.batchPosition,
    record: index,
  });
}

function varintError(
  cursor: ByteCursor,
  context: BatchContext,
  index: number,
  field: string,
): SluiceError {
  const bytesMax = field === "timestampDelta" ? VARLONG_BYTES_MAX : VARINT_BYTES_MAX;
  const failure = varintFailureAt(cursor.bytes, cursor.position, cursor.end, bytesMax);
  const kind = bytesMax === VARLONG_BYTES_MAX ? "varlong" : "varint";
  return invalidRecord(context, index, `${field} ${kind} is ${failure ?? "unreadable"}`);
}

const PROBLEM_TEXT: Readonly<Record<Exclude<BatchProblem, "ok">, string>> = {
  truncated: "is truncated",
  "bad-length": "has a batchLength outside the header size and batchBytesMax",
  "bad-magic": "has a magic byte other than 2",
  "bad-offsets": "has a negative lastOffsetDelta or recordCount, or an unsafe baseOffset",
  "bad-crc": "fails its CRC-32C",
};

function batchProblem(
  problem: Exclude<BatchProblem, "ok">,
  bytes: Uint8Array,
  at: number,
  sizeMax: number,
): SluiceError {
  const available = bytes.length - at;
  const size = available >= LOG_OVERHEAD_BYTES ? batchSizeAt(bytes, at) : Number.NaN;
  const details: Record<string, number | string> = { position: at, problem, available };
  if (!Number.isNaN(size)) details["sizeBytes"] = size;
  let facts = Number.isNaN(size)
    ? `${available} bytes available, fewer than the ${BATCH_HEADER_BYTES}-byte header`
    : `size ${size}, ${available} bytes available, batchBytesMax ${sizeMax}`;
  if (problem === "bad-magic") facts = `magic ${bytes[at + MAGIC_AT]}`;
  if (problem === "bad-crc") {
    const stored = readInt32(bytes, at + CRC_AT) >>> 0;
    const computed = computeBatchCrc(bytes, at, size);
    facts = `stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)}`;
    return new SluiceError("CORRUPT_BATCH", `Batch at ${at} ${PROBLEM_TEXT[problem]} (${facts})`, {
      ...details,
      crcStored: stored,
      crcComputed: computed,
    });
  }
  if (problem === "bad-offsets") {
    const baseOffset = hexAt(bytes, at + BASE_OFFSET_AT, 8);
    const count = recordCountAt(bytes, at);
    facts = `baseOffset 0x${baseOffset}, lastOffsetDelta ${lastOffsetDeltaAt(bytes, at)}, `;
    facts += `recordCount ${count}`;
  }
  return invalid(`Batch at ${at} ${PROBLEM_TEXT[problem]} (${facts})`, details);
}

/**
 * Decodes the one batch that `views` hold between them, in order, as `decodeRecordBatch` does
 * on their concatenation, without making it: keys and values are views of `views`, except for
 * a record that straddles two of them, which is copied alone. Same checks, same errors.
 */
export function decodeRecordBatchViews(
  views: readonly Uint8Array[],
  options: DecodeBatchOptions = {},
): DecodedRecordBatch {
  if (views.length === 1) return decodeRecordBatch(views[0]!, options);
  let decoded: DecodedRecordBatch | undefined;
  try {
    decoded = decodeInPlace(views.map(asPlainView), options);
  } catch {
    decoded = undefined;
  }
  // The joined copy gives every problem its usual error (and handles compressed batches).
  return decoded ?? decodeRecordBatch(joinViews(views), options);
}

/** The regular case of `decodeRecordBatchViews`; undefined (or a throw) for anything else. */
function decodeInPlace(
  views: readonly Uint8Array[],
  options: DecodeBatchOptions,
): DecodedRecordBatch | undefined {
  let total = 0;
  for (const view of views) total += view.length;
  if (total < BATCH_HEADER_BYTES) return undefined;
  const header = gather(views, 0, 0, BATCH_HEADER_BYTES);
  const sizeMax = batchBytesMax(options);
  // Without the CRC, checkBatch reads the header only; `total` stands for the bytes after it.
  const problem = checkBatch(header, 0, total, batchChecks(sizeMax, false));
  const attributes = readInt16(header, ATTRIBUTES_AT);
  const compression = compressionName(attributes);
  if (problem !== "ok" || compression !== "none" || batchSizeAt(header, 0) !== total) {
    return undefined;
  }
  if (options.checkCrc !== false) {
    if (crcOfViews(views, ATTRIBUTES_AT) !== readInt32(header, CRC_AT) >>> 0) return undefined;
  }
  const context = batchContext(header, 0, attributes, options);
  const records = decodeRecordsAcross(views, recordCountAt(header, 0), context);
  if (records === undefined) return undefined;
  return decodedBatch(header, 0, total, compression, context, records);
}

/** CRC-32C of the views' bytes from position `from` on, one piece after another. */
function crcOfViews(views: readonly Uint8Array[], from: number): number {
  let crc = 0;
  let skip = from;
  for (const view of views) {
    if (skip >= view.length) {
      skip -= view.length;
      continue;
    }
    crc = crc32c(skip === 0 ? view : view.subarray(skip), crc);
    skip = 0;
  }
  return crc >>> 0;
}

/**
 * The records after the header, read where they lie: a cursor over the piece holding a record,
 * or over a copy of a record that straddles pieces. Undefined when the bytes do not hold
 * exactly `count` well-formed records.
 */
function decodeRecordsAcross(
  views: readonly Uint8Array[],
  count: number,
  context: BatchContext,
): LogRecord[] | undefined {
  let left = -BATCH_HEADER_BYTES;
  for (const view of views) left += view.length;
  if (count > left / RECORD_BYTES_MIN) return undefined;
  const place = { index: 0, at: BATCH_HEADER_BYTES };
  settle(views, place);
  const records: LogRecord[] = [];
  let previousOffset = context.baseOffset - 1;
  // One cursor, moved from record to record: no allocation per record but the record itself.
  const scratch = cursorOver(views[place.index] ?? new Uint8Array(0));
  for (let index = 0; index < count; index++) {
    const cursor = recordCursor(views, place, left, scratch);
    if (cursor === undefined) return undefined;
    left -= cursor.end - cursor.position;
    const record = decodeRecord(cursor, index, context);
    if (cursor.position !== cursor.end || record.offset <= previousOffset) return undefined;
    previousOffset = record.offset;
    records.push(record);
  }
  return left === 0 ? records : undefined;
}

/** A cursor over the next record (its length varint and body), advancing `place` past it. */
function recordCursor(
  views: readonly Uint8Array[],
  place: { index: number; at: number },
  left: number,
  cursor: ByteCursor,
): ByteCursor | undefined {
  if (left <= 0) return undefined;
  const view = views[place.index]!;
  const start = place.at;
  // The length varint, read in place; from a copy of its bytes when it runs past this piece.
  cursor.bytes = view;
  cursor.position = start;
  cursor.end = Math.min(view.length, start + left);
  let bodySize = readVarint(cursor);
  if (Number.isNaN(bodySize) && cursor.end === view.length) {
    const head = cursorOver(gather(views, place.index, start, Math.min(VARINT_BYTES_MAX, left)));
    bodySize = readVarint(head);
    cursor.position = start + head.position;
  }
  if (Number.isNaN(bodySize) || bodySize < 0) return undefined;
  const recordBytes = cursor.position - start + bodySize;
  if (recordBytes > left) return undefined;
  if (start + recordBytes <= view.length) {
    place.at += recordBytes;
    settle(views, place);
    cursor.position = start;
    cursor.end = start + recordBytes;
    return cursor;
  }
  const copy = gather(views, place.index, start, recordBytes);
  advance(views, place, recordBytes);
  cursor.bytes = copy;
  cursor.position = 0;
  cursor.end = recordBytes;
  return cursor;
}

/** Moves `place` off the end of a piece onto the start of the next non-empty one. */
function settle(views: readonly Uint8Array[], place: { index: number; at: number }): void {
  while (place.index < views.length && place.at >= views[place.index]!.length) {
    place.at -= views[place.index]!.length;
    place.index++;
  }
}

function advance(
  views: readonly Uint8Array[],
  place: { index: number; at: number },
  length: number,
): void {
  place.at += length;
  settle(views, place);
}

/**
 * `length` bytes from piece `index` at `at` on, as one buffer: a view when they lie in one
 * piece, else a copy (shorter when the pieces end first).
 */
function gather(
  views: readonly Uint8Array[],
  index: number,
  at: number,
  length: number,
): Uint8Array {
  const first = views[index]!;
  if (at + length <= first.length) return first.subarray(at, at + length);
  const out = new Uint8Array(length);
  let filled = 0;
  let piece = index;
  let position = at;
  while (filled < length && piece < views.length) {
    const view = views[piece]!;
    const take = Math.min(length - filled, view.length - position);
    out.set(view.subarray(position, position + take), filled);
    filled += take;
    piece++;
    position = 0;
  }
  return filled === length ? out : out.subarray(0, filled);
}

/** One new buffer holding the views in order (always a copy). */
export function joinViews(views: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const view of views) total += view.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const view of views) {
    out.set(view, at);
    at += view.length;
  }
  return out;
}

function asPlainView(bytes: Uint8Array): Uint8Array {
  if (Object.getPrototypeOf(bytes) === Uint8Array.prototype) return bytes;
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

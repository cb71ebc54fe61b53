// Encoding of RecordBatch v2 (the grammar is in types.ts). One sizing pass checks every
// record and works out its deltas and length; one writing pass fills a single allocation of
// exactly the batch's size (or of the records section, which is then compressed); the CRC-32C
// comes last, over the finished bytes.

import { compressRecords } from "./compression.ts";
import { assert } from "./errors.ts";
import {
  ATTRIBUTES_AT,
  BASE_OFFSET_AT,
  BASE_SEQUENCE_AT,
  BASE_TIMESTAMP_AT,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_AT,
  COMPRESSION,
  CONTROL_BIT,
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
  TIMESTAMP_TYPE_BIT,
  TRANSACTIONAL_BIT,
  writeInt32,
  writeInt64,
} from "./batch.ts";
import type { EncodeBatchOptions, RecordHeader, RecordInput } from "./types.ts";
import { varintSize, varlongSize, writeVarint, writeVarlong } from "./varint.ts";

const INT32_MAX = 0x7fff_ffff;

/** The largest batch the encoder writes: batchLength is an i32. */
export const ENCODED_BATCH_BYTES_MAX = INT32_MAX;

const EMPTY_HEADERS: readonly RecordHeader[] = Object.freeze([]);
const utf8Encoder = new TextEncoder();

type EncodeSettings = {
  baseOffset: number;
  attributes: number;
  compression: CompressionName;
  compressionLevel: number | undefined;
  partitionLeaderEpoch: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  timestamp: number;
};

/** What the sizing pass learns about the records, for the writing pass. */
type RecordPlan = {
  bodySizes: Int32Array;
  offsetDeltas: Int32Array;
  timestampDeltas: Float64Array;
  recordsBytes: number;
  baseTimestamp: number;
  maxTimestamp: number;
};

/**
 * Encodes `records` as one RecordBatch v2 with a valid CRC-32C. Throws TypeError or RangeError
 * for bad arguments: no records, a value that is not bytes, offsets that do not increase, a
 * batch larger than ENCODED_BATCH_BYTES_MAX.
 */
export function encodeRecordBatch(
  records: readonly RecordInput[],
  options: EncodeBatchOptions = {},
): Uint8Array {
  if (!Array.isArray(records)) throw new TypeError("records must be an array");
  if (records.length === 0) throw new RangeError("A record batch needs at least one record");
  const settings = resolveEncodeOptions(options);
  const plan = planRecords(records, settings);
  let batch: Uint8Array;
  if (settings.compression === "none") {
    batch = new Uint8Array(checkedBatchSize(plan.recordsBytes));
    writeRecords(batch, BATCH_HEADER_BYTES, records, plan);
  } else {
    const section = new Uint8Array(plan.recordsBytes);
    writeRecords(section, 0, records, plan);
    const compressed = compressRecords(settings.compression, section, {
      level: settings.compressionLevel,
    });
    batch = new Uint8Array(checkedBatchSize(compressed.length));
    batch.set(compressed, BATCH_HEADER_BYTES);
  }
  writeHeader(batch, settings, plan, records.length);
  writeInt32(batch, CRC_AT, computeBatchCrc(batch, 0, batch.length));
  return batch;
}

function checkedBatchSize(recordsBytes: number): number {
  const size = BATCH_HEADER_BYTES + recordsBytes;
  if (size > ENCODED_BATCH_BYTES_MAX) {
    throw new RangeError(
      `Batch of ${size} bytes exceeds ENCODED_BATCH_BYTES_MAX ${ENCODED_BATCH_BYTES_MAX}`,
    );
  }
  return size;
}

function resolveEncodeOptions(options: EncodeBatchOptions): EncodeSettings {
  const compression = options.compression ?? "none";
  if (!Object.hasOwn(COMPRESSION, compression)) {
    throw new TypeError(`Unknown compression ${String(compression)}`);
  }
  const timestampType = options.timestampType ?? "create-time";
  if (timestampType !== "create-time" && timestampType !== "log-append-time") {
    throw new TypeError(`Unknown timestampType ${String(timestampType)}`);
  }
  let attributes = COMPRESSION[compression];
  if (timestampType === "log-append-time") attributes |= TIMESTAMP_TYPE_BIT;
  if (options.transactional === true) attributes |= TRANSACTIONAL_BIT;
  if (options.control === true) attributes |= CONTROL_BIT;
  return {
    baseOffset: integerIn("baseOffset", options.baseOffset ?? 0, 0, Number.MAX_SAFE_INTEGER),
    attributes,
    compression,
    compressionLevel:
      options.compressionLevel === undefined
        ? undefined
        : integerIn("compressionLevel", options.compressionLevel, -(2 ** 31), INT32_MAX),
    partitionLeaderEpoch: integerIn(
      "partitionLeaderEpoch",
      options.partitionLeaderEpoch ?? -1,
      -1,
      INT32_MAX,
    ),
    producerId: integerIn("producerId", options.producerId ?? -1, -1, Number.MAX_SAFE_INTEGER),
    producerEpoch: integerIn("producerEpoch", options.producerEpoch ?? -1, -1, 0x7fff),
    baseSequence: integerIn("baseSequence", options.baseSequence ?? -1, -1, INT32_MAX),
    timestamp: safeTimestamp("timestamp", options.timestamp ?? Date.now()),
  };
}

function integerIn(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} ${value} is not an integer in [${min}, ${max}]`);
  }
  return value;
}

function safeTimestamp(name: string, value: number): number {
  if (!Number.isSafeInteger(value)) throw new RangeError(`${name} ${value} is not a safe integer`);
  return value;
}

/** The sizing pass: checks every record and works out each one's deltas and body size. */
function planRecords(records: readonly RecordInput[], settings: EncodeSettings): RecordPlan {
  const count = records.length;
  const plan: RecordPlan = {
    bodySizes: new Int32Array(count),
    offsetDeltas: new Int32Array(count),
    timestampDeltas: new Float64Array(count),
    recordsBytes: 0,
    baseTimestamp: 0,
    maxTimestamp: Number.MIN_SAFE_INTEGER,
  };
  let offsetDelta = -1;
  for (let index = 0; index < count; index++) {
    const record = records[index]!;
    checkRecord(record, index);
    offsetDelta = nextOffsetDelta(record, index, offsetDelta, settings.baseOffset);
    const timestamp =
      record.timestamp === undefined
        ? settings.timestamp
        : safeTimestamp(`records[${index}].timestamp`, record.timestamp);
    // Kafka takes the first record's timestamp as the base: later ones may be earlier.
    if (index === 0) plan.baseTimestamp = timestamp;
    if (timestamp > plan.maxTimestamp) plan.maxTimestamp = timestamp;
    const timestampDelta = timestamp - plan.baseTimestamp;
    safeTimestamp(`records[${index}].timestamp delta`, timestampDelta);
    const bodySize = recordBodySize(record, timestampDelta, offsetDelta);
    plan.bodySizes[index] = bodySize;
    plan.offsetDeltas[index] = offsetDelta;
    plan.timestampDeltas[index] = timestampDelta;
    plan.recordsBytes += varintSize(bodySize) + bodySize;
    if (plan.recordsBytes > ENCODED_BATCH_BYTES_MAX) checkedBatchSize(plan.recordsBytes);
  }
  return plan;
}

function checkRecord(record: RecordInput, index: number): void {
  if (typeof record !== "object" || record === null) {
    throw new TypeError(`records[${index}] is not a record object`);
  }
  if (!isBytesOrNull(record.value)) {
    throw new TypeError(`records[${index}].value must be a Uint8Array or null`);
  }
  if (record.key !== undefined && !isBytesOrNull(record.key)) {
    throw new TypeError(`records[${index}].key must be a Uint8Array, null or absent`);
  }
  const headers = record.headers;
  if (headers === undefined) return;
  if (!Array.isArray(headers)) throw new TypeError(`records[${index}].headers must be an array`);
  for (let h = 0; h < headers.length; h++) {
    const header = headers[h] as RecordHeader | null | undefined;
    if (typeof header?.key !== "string") {
      throw new TypeError(`records[${index}].headers[${h}].key must be a string`);
    }
    if (!isBytesOrNull(header.value)) {
      throw new TypeError(`records[${index}].headers[${h}].value must be a Uint8Array or null`);
    }
  }
}

function isBytesOrNull(value: unknown): value is Uint8Array | null {
  return value === null || value instanceof Uint8Array;
}

/** The record's offsetDelta: the one after `previousDelta` unless it names its own offset. */
function nextOffsetDelta(
  record: RecordInput,
  index: number,
  previousDelta: number,
  baseOffset: number,
): number {
  const min = baseOffset + previousDelta + 1;
  const max = Math.min(baseOffset + INT32_MAX, Number.MAX_SAFE_INTEGER);
  const offset = record.offset ?? min;
  if (!Number.isSafeInteger(offset) || offset < min || offset > max) {
    throw new RangeError(
      `records[${index}].offset ${offset} is not an integer in [${min}, ${max}]: offsets ` +
        `increase from baseOffset, stay within ${INT32_MAX} of it, and are safe integers`,
    );
  }
  return offset - baseOffset;
}

function recordBodySize(record: RecordInput, timestampDelta: number, offsetDelta: number): number {
  let size =
    1 + // attributes
    varlongSize(timestampDelta) +
    varintSize(offsetDelta) +
    bytesFieldSize(record.key ?? null) +
    bytesFieldSize(record.value);
  const headers = record.headers ?? EMPTY_HEADERS;
  size += varintSize(headers.length);
  for (const header of headers) {
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
function utf8Length(text: string): number {
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

/** The writing pass: writes the records section at `at`, exactly `plan.recordsBytes` long. */
function writeRecords(
  bytes: Uint8Array,
  at: number,
  records: readonly RecordInput[],
  plan: RecordPlan,
): void {
  let position = at;
  for (let index = 0; index < records.length; index++) {
    const record = records[index]!;
    const bodySize = plan.bodySizes[index]!;
    position = writeVarint(bytes, position, bodySize);
    const bodyStart = position;
    bytes[position++] = 0; // attributes
    position = writeVarlong(bytes, position, plan.timestampDeltas[index]!);
    position = writeVarint(bytes, position, plan.offsetDeltas[index]!);
    position = writeBytesField(bytes, position, record.key ?? null);
    position = writeBytesField(bytes, position, record.value);
    const headers = record.headers ?? EMPTY_HEADERS;
    position = writeVarint(bytes, position, headers.length);
    for (const header of headers) {
      position = writeUtf8Field(bytes, position, header.key);
      position = writeBytesField(bytes, position, header.value);
    }
    assert(position - bodyStart === bodySize, "each record fills the size its plan gave it");
  }
  assert(position - at === plan.recordsBytes, "the records section fills its planned size");
}

function writeBytesField(bytes: Uint8Array, at: number, field: Uint8Array | null): number {
  if (field === null) return writeVarint(bytes, at, -1);
  const position = writeVarint(bytes, at, field.length);
  bytes.set(field, position);
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

function writeHeader(
  batch: Uint8Array,
  settings: EncodeSettings,
  plan: RecordPlan,
  count: number,
): void {
  writeInt64(batch, BASE_OFFSET_AT, settings.baseOffset);
  writeInt32(batch, BATCH_LENGTH_AT, batch.length - LOG_OVERHEAD_BYTES);
  writeInt32(batch, LEADER_EPOCH_AT, settings.partitionLeaderEpoch);
  batch[MAGIC_AT] = MAGIC_V2;
  writeInt16(batch, ATTRIBUTES_AT, settings.attributes);
  writeInt32(batch, LAST_OFFSET_DELTA_AT, plan.offsetDeltas[count - 1]!);
  writeInt64(batch, BASE_TIMESTAMP_AT, plan.baseTimestamp);
  writeInt64(batch, MAX_TIMESTAMP_AT, plan.maxTimestamp);
  writeInt64(batch, PRODUCER_ID_AT, settings.producerId);
  writeInt16(batch, PRODUCER_EPOCH_AT, settings.producerEpoch);
  writeInt32(batch, BASE_SEQUENCE_AT, settings.baseSequence);
  writeInt32(batch, RECORD_COUNT_AT, count);
}

function writeInt16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 8;
  bytes[at + 1] = value;
}

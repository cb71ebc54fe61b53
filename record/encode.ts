// Encoding of whole RecordBatch v2 batches from a list of records (the grammar is in types.ts).
// A checking pass validates every record (bytes or null, increasing offsets, safe timestamps)
// and works out the batch's exact size; the one batch writer (batch_writer.ts) then writes it
// into a single allocation of exactly that size, compressing the records section once when
// asked, and the CRC-32C comes last, over the finished bytes.

import {
  BATCH_HEADER_BYTES,
  COMPRESSION,
  CONTROL_BIT,
  TIMESTAMP_TYPE_BIT,
  TRANSACTIONAL_BIT,
} from "./batch.ts";
import {
  BatchWriter,
  ENCODED_BATCH_BYTES_MAX,
  recordBodyBytes,
  type SealOptions,
  type WriterRecord,
} from "./batch_writer.ts";
import type { EncodeBatchOptions, RecordHeader, RecordInput } from "./types.ts";
import { varintSize } from "./varint.ts";

export { ENCODED_BATCH_BYTES_MAX } from "./batch_writer.ts";

const INT32_MAX = 0x7fff_ffff;

type EncodeSettings = SealOptions & {
  baseOffset: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  timestamp: number;
};

/** What the checking pass learns: each record's offset delta and timestamp, and the total. */
type RecordPlan = {
  offsetDeltas: Int32Array;
  timestamps: Float64Array;
  bodySizes: Int32Array;
  batchBytes: number;
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
  const writer = new BatchWriter({
    batchBytesMax: ENCODED_BATCH_BYTES_MAX,
    exactBytes: plan.batchBytes,
  });
  // One object carries each record into the writer, with its timestamp filled in.
  const record: WriterRecord = { key: null, value: null, headers: undefined, timestamp: 0 };
  for (let index = 0; index < records.length; index++) {
    const input = records[index]!;
    record.key = input.key ?? null;
    record.value = input.value;
    record.headers = input.headers;
    record.timestamp = plan.timestamps[index]!;
    writer.addSized(record, plan.offsetDeltas[index]!, plan.bodySizes[index]!);
  }
  writer.seal(settings);
  return writer.stamp(settings);
}

function checkedBatchSize(size: number): number {
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
  let flags = 0;
  if (timestampType === "log-append-time") flags |= TIMESTAMP_TYPE_BIT;
  if (options.transactional === true) flags |= TRANSACTIONAL_BIT;
  if (options.control === true) flags |= CONTROL_BIT;
  return {
    baseOffset: integerIn("baseOffset", options.baseOffset ?? 0, 0, Number.MAX_SAFE_INTEGER),
    flags,
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

/** The checking pass: checks every record, works out its deltas and the batch's exact size. */
function planRecords(records: readonly RecordInput[], settings: EncodeSettings): RecordPlan {
  const count = records.length;
  const plan: RecordPlan = {
    offsetDeltas: new Int32Array(count),
    timestamps: new Float64Array(count),
    bodySizes: new Int32Array(count),
    batchBytes: BATCH_HEADER_BYTES,
  };
  let offsetDelta = -1;
  let baseTimestamp = 0;
  for (let index = 0; index < count; index++) {
    const record = records[index]!;
    checkRecord(record, index);
    offsetDelta = nextOffsetDelta(record, index, offsetDelta, settings.baseOffset);
    const timestamp =
      record.timestamp === undefined
        ? settings.timestamp
        : safeTimestamp(`records[${index}].timestamp`, record.timestamp);
    // Kafka takes the first record's timestamp as the base: later ones may be earlier.
    if (index === 0) baseTimestamp = timestamp;
    const timestampDelta = timestamp - baseTimestamp;
    safeTimestamp(`records[${index}].timestamp delta`, timestampDelta);
    plan.offsetDeltas[index] = offsetDelta;
    plan.timestamps[index] = timestamp;
    const body = recordBodyBytes(record, offsetDelta, timestampDelta);
    plan.bodySizes[index] = body;
    plan.batchBytes = checkedBatchSize(plan.batchBytes + varintSize(body) + body);
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

// The producer's per-partition batch under construction: record/'s one BatchWriter, plus what
// the producer keeps with it (each record's completion, the batch's creation time). Records are
// written into the batch's buffer as they are added (one copy of each key and value, into
// memory reused from a pool), and the writer knows the exact size the batch has, so it is sealed
// before a record would push it past `batchBytesMax`: what the producer sends never exceeds a
// topic's maxBatchBytes, header included. The writer keeps room in front of the batch for the
// bytes that precede it in a Produce request (produce_frame.ts writes them there), so a
// request goes to the socket as one view per batch.

import {
  BATCH_HEADER_BYTES,
  BatchWriter,
  type BufferSource,
  type RecordHeader,
  recordBodyBytes,
  recordBytes,
  varintSize,
  type WriterRecord,
} from "../../record/mod.ts";

/** Keys, values and header values may be given as bytes or as text (sent as UTF-8). */
export type BytesInput = Uint8Array | string | null;
export type HeadersInput =
  | Readonly<Record<string, Uint8Array | string | null>>
  | readonly { key: string; value: Uint8Array | string | null }[];

/**
 * A record ready for a batch: bytes only, and a timestamp fixed when it was sent. `bodyBytes` is
 * its body size at offset and timestamp delta 0 (`recordBodyBytes(record, 0, 0)`), worked out
 * once here so a batch sizes the record from it without walking its fields again.
 */
export type PreparedRecord = WriterRecord & { sizeBytes: number; bodyBytes: number };

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
  const record: PreparedRecord = {
    key: null,
    value: null,
    timestamp: 0,
    sizeBytes: 0,
    bodyBytes: 0,
  };
  return prepareInto(record, input, nowMs);
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
  const body = recordBodyBytes(target, 0, 0);
  target.bodyBytes = body;
  // What aloneBatchBytes gives, from the body size just worked out.
  target.sizeBytes = BATCH_HEADER_BYTES + varintSize(body) + body;
  return target;
}

export type { BatchIdentity } from "../../record/mod.ts";

export type BatchBuilderOptions = {
  /** Bytes kept free in front of the batch for the request that carries it. */
  prefixRoomBytes?: number;
  /** Where buffers come from and go back to; without one, every buffer is new. */
  pool?: BufferSource;
  /** The size this batch will likely reach (the last one's), to start at that capacity. */
  expectedBytes?: number;
};

export class BatchBuilder<Done> extends BatchWriter {
  readonly dones: Done[] = [];
  readonly createdMs: number;

  constructor(batchBytesMax: number, createdMs: number, options: BatchBuilderOptions = {}) {
    super({ batchBytesMax, ...options });
    this.createdMs = createdMs;
  }

  /** `tryAdd` that keeps the record's completion with the batch when it was taken. */
  tryAddRecord(record: PreparedRecord, done: Done): boolean {
    if (!this.tryAddSizedAtZero(record, record.bodyBytes)) return false;
    this.dones.push(done);
    return true;
  }
}

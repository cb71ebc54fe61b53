// The producer's per-partition batch under construction. It knows the exact size the encoded
// batch will have (header plus every record's varint-framed bytes, uncompressed), so a batch is
// sealed before a record would push it past `batchBytesMax`: what the producer sends never
// exceeds a topic's maxBatchBytes, header included.
//
//   record = length:varint attributes:i8 timestampDelta:varlong offsetDelta:varint
//            keyLength:varint key valueLength:varint value headerCount:varint headers
//   header = keyLength:varint key valueLength:varint value

import { BATCH_HEADER_BYTES, type RecordHeader, type RecordInput } from "../../engine/mod.ts";

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

/** Bytes of a zigzag varint (or varlong) holding `value`. */
export function zigzagBytes(value: number): number {
  let zigzag = value >= 0 ? value * 2 : -value * 2 - 1;
  let bytes = 1;
  while (zigzag >= 128) {
    zigzag = Math.floor(zigzag / 128);
    bytes++;
  }
  return bytes;
}

/** The record's bytes after its length field, as the encoder will write them. */
function recordBodyBytes(
  record: PreparedRecord,
  offsetDelta: number,
  timestampDelta: number,
): number {
  let bytes = 1 + zigzagBytes(timestampDelta) + zigzagBytes(offsetDelta);
  bytes += lengthPrefixed(record.key ?? null) + lengthPrefixed(record.value);
  const headers = record.headers ?? NO_HEADERS;
  bytes += zigzagBytes(headers.length);
  for (const header of headers) {
    const keyBytes = utf8.encode(header.key).length;
    bytes += zigzagBytes(keyBytes) + keyBytes + lengthPrefixed(header.value);
  }
  return bytes;
}

function lengthPrefixed(bytes: Uint8Array | null): number {
  return bytes === null ? 1 : zigzagBytes(bytes.length) + bytes.length;
}

/** The bytes one record takes in a batch at this offset and timestamp delta. */
export function recordBytes(
  record: PreparedRecord,
  offsetDelta: number,
  timestampDelta: number,
): number {
  const body = recordBodyBytes(record, offsetDelta, timestampDelta);
  return zigzagBytes(body) + body;
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

export class BatchBuilder<Done> {
  readonly records: PreparedRecord[] = [];
  readonly dones: Done[] = [];
  readonly createdMs: number;
  readonly batchBytesMax: number;
  #sizeBytes = BATCH_HEADER_BYTES;

  constructor(batchBytesMax: number, createdMs: number) {
    this.batchBytesMax = batchBytesMax;
    this.createdMs = createdMs;
  }

  /** The exact size of the batch encoded without compression. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  get count(): number {
    return this.records.length;
  }

  /**
   * Adds the record when the batch stays within batchBytesMax; returns false otherwise. The
   * first record of an empty batch is always taken: the caller checks it fits on its own.
   */
  tryAdd(record: PreparedRecord, done: Done): boolean {
    const first = this.records[0];
    const timestampDelta = first === undefined ? 0 : record.timestamp - first.timestamp;
    const bytes = recordBytes(record, this.records.length, timestampDelta);
    if (first !== undefined && this.#sizeBytes + bytes > this.batchBytesMax) return false;
    this.records.push(record);
    this.dones.push(done);
    this.#sizeBytes += bytes;
    return true;
  }
}

// The routing fast path: for an uncompressed batch, walk its records' varints (no objects, no
// copies) to learn whether every record has the same key and the same headers, the only
// fields routing reads. When they do, the batch routes as its first record does, and it is
// appended whole with its own bytes; when they do not (or the batch is compressed, or a
// record does not parse), the caller decodes the batch as usual, and the decoder reports
// whatever is wrong with it. See record/types.ts for the record grammar.

import {
  ATTRIBUTES_AT,
  BATCH_HEADER_BYTES,
  type ByteCursor,
  COMPRESSION_MASK,
  cursorOver,
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

type Span = { at: number; end: number };

const decoder = new TextDecoder();

/** Reads `length` bytes' span at the cursor (length -1: null); undefined when they overrun. */
function span(cursor: ByteCursor, length: number): Span | null | undefined {
  if (Number.isNaN(length) || length < -1) return undefined;
  if (length === -1) return null;
  const at = cursor.position;
  if (at + length > cursor.end) return undefined;
  cursor.position += length;
  return { at, end: at + length };
}

function equalSpans(bytes: Uint8Array, a: Span | null, b: Span | null): boolean {
  if (a === null || b === null) return a === b;
  const length = a.end - a.at;
  if (length !== b.end - b.at) return false;
  for (let i = 0; i < length; i++) if (bytes[a.at + i] !== bytes[b.at + i]) return false;
  return true;
}

/** One record's key span and headers span; the cursor moves to the record's end. */
function scanRecord(cursor: ByteCursor): { key: Span | null; headers: Span } | undefined {
  const length = readVarint(cursor);
  if (Number.isNaN(length) || length < 1 || cursor.position + length > cursor.end) return;
  const end = cursor.position + length;
  const inside = cursorOver(cursor.bytes, cursor.position + 1, end);
  if (Number.isNaN(readVarlong(inside)) || Number.isNaN(readVarint(inside))) return;
  const key = span(inside, readVarint(inside));
  if (key === undefined) return;
  if (span(inside, readVarint(inside)) === undefined) return;
  cursor.position = end;
  return { key, headers: { at: inside.position, end } };
}

/** The headers of a span (a count, then key and value pairs), or undefined on bad bytes. */
function headersOf(bytes: Uint8Array, headers: Span): RecordHeader[] | undefined {
  const cursor = cursorOver(bytes, headers.at, headers.end);
  const count = readVarint(cursor);
  if (Number.isNaN(count) || count < 0 || count > headers.end - headers.at) return;
  const out: RecordHeader[] = [];
  for (let i = 0; i < count; i++) {
    const key = span(cursor, readVarint(cursor));
    const value = span(cursor, readVarint(cursor));
    if (key === undefined || key === null || value === undefined) return;
    out.push({
      key: decoder.decode(bytes.subarray(key.at, key.end)),
      value: value === null ? null : bytes.subarray(value.at, value.end),
    });
  }
  return cursor.position === headers.end ? out : undefined;
}

/**
 * The key and headers every record of `batch` shares, or undefined when the batch is
 * compressed, its records differ in key or headers, or its bytes do not parse.
 */
export function uniformRouting(batch: Uint8Array): UniformRouting | undefined {
  if (batch.length < BATCH_HEADER_BYTES) return;
  if ((readInt16(batch, ATTRIBUTES_AT) & COMPRESSION_MASK) !== 0) return;
  const records = recordCountAt(batch, 0);
  const cursor = cursorOver(batch, BATCH_HEADER_BYTES, batch.length);
  const first = scanRecord(cursor);
  if (first === undefined || records < 1) return;
  for (let index = 1; index < records; index++) {
    const next = scanRecord(cursor);
    if (next === undefined) return;
    if (!equalSpans(batch, first.key, next.key)) return;
    if (!equalSpans(batch, first.headers, next.headers)) return;
  }
  if (cursor.position !== batch.length) return;
  const headers = headersOf(batch, first.headers);
  if (headers === undefined) return;
  const key = first.key === null ? null : batch.subarray(first.key.at, first.key.end);
  return { key, headers, records };
}

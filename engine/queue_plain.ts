// Batches a queue fetch need not judge again. A fetch judges the batch at each partition's
// `next` for expired records (message TTL) and for records published with a due time (delay
// tiers) before it takes new records, and it builds those judges afresh each time: a batch
// that many small fetches take a few records from at a time was read and searched byte by
// byte once per fetch. An uncompressed batch whose bytes name neither TTL_HEADER nor a
// due-time header can, on a queue without a queue-wide TTL, never expire and is never held,
// whatever the time: its verdict is kept, per partition the last batch looked at.
//
// Most batches carry no headers at all (every record's header count is 0). Walking the
// records' length prefixes settles those in a few varints per record; only a batch with
// headers is searched byte by byte for the three names (three passes over all its bytes).

import { Buffer } from "node:buffer";
import {
  ATTRIBUTES_AT,
  BATCH_HEADER_BYTES,
  baseOffsetAt,
  batchSizeAt,
  COMPRESSION_MASK,
  lastOffsetDeltaAt,
  readInt16,
  readVarint,
  recordCountAt,
  TTL_HEADER,
} from "../record/mod.ts";
import { DELAY_HEADER, DELIVER_AT_HEADER } from "./queue_delay.ts";

const text = new TextEncoder();
/** Header names that can hold a record back; a batch naming none of them is plain. */
const NAMES = [TTL_HEADER, DELAY_HEADER, DELIVER_AT_HEADER].map((name) => text.encode(name));

/** A varlong takes at most 10 bytes. */
const VARLONG_BYTES = 10;

/** Whether a whole batch names no header that could hold its records back. */
export function isPlainBatch(batch: Uint8Array): boolean {
  if ((readInt16(batch, ATTRIBUTES_AT) & COMPRESSION_MASK) !== 0) return false;
  if (recordsHaveNoHeaders(batch)) return true;
  const bytes = Buffer.from(batch.buffer, batch.byteOffset, batch.length);
  for (const name of NAMES) if (bytes.indexOf(name) >= 0) return false;
  return true;
}

/**
 * True when every record of an uncompressed batch declares 0 headers. Walks each record's
 * length, skips its attributes, timestamp and offset deltas and its key and value, and reads
 * its header count; the walk stays inside each record's declared length. Any varint or length
 * that does not add up answers false, and the caller falls back to the byte search (the
 * fetch's own read and decode deal with damage): this only ever settles the clean case.
 */
export function recordsHaveNoHeaders(batch: Uint8Array): boolean {
  if (batch.length < BATCH_HEADER_BYTES) return false;
  const count = recordCountAt(batch, 0);
  if (count < 0) return false;
  const cursor = { bytes: batch, position: BATCH_HEADER_BYTES, end: batch.length };
  for (let index = 0; index < count; index++) {
    const bodyBytes = readVarint(cursor);
    if (!(bodyBytes > 0) || bodyBytes > batch.length - cursor.position) return false;
    const recordEnd = cursor.position + bodyBytes;
    cursor.end = recordEnd;
    cursor.position += 1; // attributes
    if (!skipVarint(cursor, VARLONG_BYTES)) return false; // timestampDelta
    if (Number.isNaN(readVarint(cursor))) return false; // offsetDelta
    for (let field = 0; field < 2; field++) {
      // Key, then value: a length (-1 for null) and that many bytes.
      const length = readVarint(cursor);
      if (!(length >= -1) || length > cursor.end - cursor.position) return false;
      if (length > 0) cursor.position += length;
    }
    if (readVarint(cursor) !== 0) return false;
    if (cursor.position !== recordEnd) return false;
    cursor.end = batch.length;
  }
  return cursor.position === batch.length;
}

/** Moves past one varint of at most `bytesMax` bytes; false when it does not end in time. */
function skipVarint(
  cursor: { bytes: Uint8Array; position: number; end: number },
  bytesMax: number,
) {
  const limit = Math.min(cursor.end, cursor.position + bytesMax);
  for (let position = cursor.position; position < limit; position++) {
    if (cursor.bytes[position]! < 0x80) {
      cursor.position = position + 1;
      return true;
    }
  }
  return false;
}

type BatchSource = { read(offset: number, maxBytes: number): { views: Uint8Array[] } };

/** Per partition, the last batch looked at and whether it is plain. */
export class PlainBatches {
  readonly #base: Float64Array;
  readonly #last: Float64Array;
  readonly #plain: Uint8Array;

  constructor(partitions: number) {
    this.#base = new Float64Array(partitions).fill(-1);
    this.#last = new Float64Array(partitions).fill(-1);
    this.#plain = new Uint8Array(partitions);
  }

  /** True when the batch holding `offset` is known to be plain. */
  covers(partition: number, offset: number): boolean {
    return (
      this.#plain[partition] === 1 &&
      this.#base[partition]! <= offset &&
      offset <= this.#last[partition]!
    );
  }

  /**
   * Looks at the batch holding `offset` (below the high watermark) once: later calls for an
   * offset in it return at once. Returns whether that batch is plain.
   */
  note(partition: number, log: BatchSource, offset: number): boolean {
    if (this.#base[partition]! <= offset && offset <= this.#last[partition]!) {
      return this.#plain[partition] === 1;
    }
    const view = log.read(offset, 1).views[0];
    if (view === undefined) return false;
    return this.noteBatch(partition, view.subarray(0, batchSizeAt(view, 0)));
  }

  /**
   * Looks at one whole batch of `partition` already read (a fetch's read takes several):
   * remembers it as the partition's last batch looked at, and returns whether it is plain.
   */
  noteBatch(partition: number, batch: Uint8Array): boolean {
    // A batch cut short says nothing about its missing bytes: not plain, and not remembered.
    if (batch.length < BATCH_HEADER_BYTES || batchSizeAt(batch, 0) !== batch.length) return false;
    const base = baseOffsetAt(batch, 0);
    const plain = isPlainBatch(batch);
    this.#base[partition] = base;
    this.#last[partition] = base + lastOffsetDeltaAt(batch, 0);
    this.#plain[partition] = plain ? 1 : 0;
    return plain;
  }
}

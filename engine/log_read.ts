// The read path. A read finds the segment holding the offset, asks the sparse index for a
// position at or before it, skips whole batches by their headers up to the batch that holds
// the offset, and returns views of whole batches from there: subarrays of the tail cache, of a
// sealed segment's mapping, or of one positional read. No record is decoded and nothing is
// copied in user space. Every returned batch has passed its CRC-32C check, so damage on disk
// is reported (CORRUPT_BATCH) and never served.

import { assert, SluiceError } from "./errors.ts";
import { MAX_BATCH_BYTES_MAX } from "./log_config.ts";
import {
  BATCH_HEADER_BYTES,
  baseOffsetAt,
  batchSizeAt,
  checkBatch,
  lastOffsetDeltaAt,
  MAGIC_AT,
  MAGIC_V2,
  maxTimestampAt,
} from "./record_batch.ts";
import { decodeRecordBatch } from "./record_codec.ts";
import type { Segment } from "./segment.ts";
import type { Corruption } from "./segment_scan.ts";

export type ReadResult = {
  /** Views of whole batches in offset order; a view may hold several batches. */
  views: Uint8Array[];
  sizeBytes: number;
  /** Where the next read should start: after the last batch returned. */
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
};

export type ReadRequest = { name: string; offset: number; maxBytes: number; highWatermark: number };

/** The first read of a segment asks for this much past maxBytes to cover the index gap. */
const READ_AHEAD_BYTES = 64 * 1024;

/** Index of the last segment whose base offset is <= offset (0 if none). */
function floorSegment(segments: Segment[], offset: number): number {
  let low = 0;
  let high = segments.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >>> 1;
    if (segments[middle]!.baseOffset <= offset) low = middle;
    else high = middle - 1;
  }
  return low;
}

function checkRequest(request: ReadRequest, logStartOffset: number): void {
  const { offset, maxBytes } = request;
  if (!Number.isSafeInteger(offset)) throw new TypeError(`offset ${offset} is not an integer`);
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
    throw new RangeError(`maxBytes ${maxBytes} must be a positive integer`);
  }
  if (offset < logStartOffset || offset > request.highWatermark) {
    throw new SluiceError(
      "OFFSET_OUT_OF_RANGE",
      `Offset ${offset} is outside log ${request.name}: [${logStartOffset}, ` +
        `${request.highWatermark}]`,
      { offset, logStartOffset, highWatermark: request.highWatermark },
    );
  }
}

export function readLog(
  segments: Segment[],
  corruptions: Corruption[],
  request: ReadRequest,
): ReadResult {
  const logStartOffset = segments[0]!.baseOffset;
  checkRequest(request, logStartOffset);
  const result: ReadResult = {
    views: [],
    sizeBytes: 0,
    nextOffset: request.offset,
    highWatermark: request.highWatermark,
    logStartOffset,
  };
  for (let i = floorSegment(segments, request.offset); i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment.visiblePosition === 0 || segment.visibleNextOffset <= request.offset) continue;
    collect(segment, request, result, corruptions);
    if (result.views.length > 0) break;
  }
  return result;
}

/** Appends to `result` the batches of one segment that answer the request. */
function collect(
  segment: Segment,
  request: ReadRequest,
  result: ReadResult,
  corruptions: Corruption[],
): void {
  let position = segment.offsetIndex.lookup(request.offset - segment.baseOffset);
  const end = segment.visiblePosition;
  while (position < end) {
    const first = result.sizeBytes === 0;
    const want = first ? request.maxBytes + READ_AHEAD_BYTES : request.maxBytes - result.sizeBytes;
    let view = segment.viewAt(position, Math.max(want, BATCH_HEADER_BYTES));
    if (view.length >= BATCH_HEADER_BYTES && batchSizeAt(view, 0) > view.length) {
      // A batch larger than the view: read exactly that batch (bounded by the batch limit).
      view = segment.viewAt(position, Math.min(batchSizeAt(view, 0), MAX_BATCH_BYTES_MAX));
    }
    const step = scanView(view, request, result);
    if (step.problem !== undefined) {
      if (result.sizeBytes > 0) return;
      throw corruptError(segment, position + step.consumed, request, corruptions);
    }
    if (step.done || step.consumed === 0) return;
    position += step.consumed;
  }
}

type ScanStep = { consumed: number; done: boolean; problem: string | undefined };

/** Skips batches before the offset and takes whole valid batches up to maxBytes. */
function scanView(view: Uint8Array, request: ReadRequest, result: ReadResult): ScanStep {
  let at = 0;
  let takenFrom = -1;
  let done = false;
  let problem: string | undefined;
  while (at + BATCH_HEADER_BYTES <= view.length) {
    const size = batchSizeAt(view, at);
    if (size < BATCH_HEADER_BYTES || view[at + MAGIC_AT] !== MAGIC_V2) {
      problem = "bad header";
      break;
    }
    if (at + size > view.length) break;
    const nextOffset = baseOffsetAt(view, at) + lastOffsetDeltaAt(view, at) + 1;
    if (nextOffset <= request.offset && takenFrom === -1) {
      at += size;
      continue;
    }
    if (result.sizeBytes > 0 && result.sizeBytes + size > request.maxBytes) {
      done = true;
      break;
    }
    const check = checkBatch(view, at, view.length, { sizeMax: size, checkCrc: true });
    if (check !== "ok") {
      problem = check;
      break;
    }
    if (takenFrom === -1) takenFrom = at;
    result.sizeBytes += size;
    result.nextOffset = nextOffset;
    at += size;
  }
  if (takenFrom !== -1) result.views.push(view.subarray(takenFrom, at));
  if (problem === undefined && at < view.length && at + BATCH_HEADER_BYTES > view.length) {
    // A header cut by the view's end at the end of visible data is damage, not a short read.
    if (at === 0) problem = "truncated";
  }
  return { consumed: at, done, problem };
}

function corruptError(
  segment: Segment,
  position: number,
  request: ReadRequest,
  corruptions: Corruption[],
): SluiceError {
  const known = corruptions.find(
    (c) =>
      c.segmentBaseOffset === segment.baseOffset &&
      position >= c.fromPosition &&
      position < c.toPosition,
  );
  const nextValidOffset = known?.nextValidOffset ?? nextIndexedOffset(segment, position);
  return new SluiceError(
    "CORRUPT_BATCH",
    `Log ${request.name} has a damaged batch at position ${position} of segment ` +
      `${segment.baseOffset} (reading offset ${request.offset}); it is not served` +
      (nextValidOffset === undefined ? "" : `; reading may resume at offset ${nextValidOffset}`),
    {
      log: request.name,
      segment: segment.baseOffset,
      position,
      offset: request.offset,
      nextValidOffset,
    },
  );
}

/** The offset of the first indexed batch after `position`, a place a reader may resume. */
function nextIndexedOffset(segment: Segment, position: number): number | undefined {
  const index = segment.offsetIndex;
  for (let entry = 0; entry < index.count; entry++) {
    if (index.positionAt(entry) > position)
      return segment.baseOffset + index.relativeOffsetAt(entry);
  }
  return undefined;
}

/**
 * The first offset whose record timestamp is >= `timestampMs` (Kafka's ListOffsets by time),
 * or undefined when every visible record is older.
 */
export function offsetForTimestamp(
  segments: Segment[],
  name: string,
  timestampMs: number,
): number | undefined {
  if (!Number.isSafeInteger(timestampMs)) {
    throw new TypeError(`timestamp ${timestampMs} is not an integer`);
  }
  for (const segment of segments) {
    if (segment.visiblePosition === 0 || segment.maxTimestamp < timestampMs) continue;
    const relativeOffset = segment.timeIndex.lookup(timestampMs);
    let position = segment.offsetIndex.lookup(relativeOffset);
    while (position < segment.visiblePosition) {
      const header = segment.viewAt(position, BATCH_HEADER_BYTES);
      assert(header.length >= BATCH_HEADER_BYTES, "visible batches are whole");
      const size = batchSizeAt(header, 0);
      if (maxTimestampAt(header, 0) >= timestampMs) {
        const batch = segment.viewAt(position, size);
        const found = firstOffsetAtOrAfter(batch, timestampMs);
        if (found !== undefined) return found;
      }
      if (size < BATCH_HEADER_BYTES) {
        throw new SluiceError("CORRUPT_BATCH", `Log ${name} has a damaged batch at ${position}`);
      }
      position += size;
    }
  }
  return undefined;
}

/** Decodes one batch (off the hot path) to find its first record at or after a timestamp. */
function firstOffsetAtOrAfter(batch: Uint8Array, timestampMs: number): number | undefined {
  for (const record of decodeRecordBatch(batch).records) {
    if (record.timestamp >= timestampMs) return record.offset;
  }
  return undefined;
}

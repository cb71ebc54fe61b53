// The read path. A read finds the segment holding the offset, asks the sparse index for a
// position at or before it, skips whole batches by their headers up to the batch that holds
// the offset, and returns views of whole batches from there: subarrays of the tail cache, of a
// sealed segment's mapping, or of one positional read. No record is decoded and nothing is
// copied in user space. Every returned batch has passed its CRC-32C check in this process, so
// damage on disk is reported (CORRUPT_BATCH) and never served. A batch is hashed once: the
// segment remembers which byte ranges passed (engine/verified_ranges.ts), batches appended by
// this process passed on append, and later reads of them only walk the headers.

import { SluiceError } from "../record/mod.ts";
import { MAX_BATCH_BYTES_MAX } from "./log_config.ts";
import {
  BATCH_HEADER_BYTES,
  baseOffsetAt,
  batchSizeAt,
  checkBatch,
  lastOffsetDeltaAt,
} from "../record/mod.ts";
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

export type ReadRequest = {
  name: string;
  offset: number;
  maxBytes: number;
  highWatermark: number;
  /** Check the CRC of every batch read, also of batches checked before (PartitionLog.read). */
  checkEveryCrc?: boolean;
  /** Memory a positional read may fill instead of a new buffer (PartitionLog.read). */
  scratch?: Uint8Array;
};

/**
 * The first read of a segment asks for up to this much past maxBytes to cover the gap from
 * the index entry to the offset: at most two index intervals (a batch lies at most about one
 * interval past its entry), so a small positional read of an unmapped segment (a delay store
 * reads one ~1 KiB record) copies a few KiB, not 64 (bench/RESULTS.md, issue 13, d18).
 */
export const READ_AHEAD_BYTES_MAX = 64 * 1024;

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
  // Most logs have no damage on record: no search, and no closure made for one.
  const known =
    corruptions.length === 0
      ? undefined
      : corruptions.find(
          (c) => c.fromOffset <= request.offset && request.offset < (c.nextValidOffset ?? 0),
        );
  if (known !== undefined) {
    throw corruptError(request, known.segmentBaseOffset, known.fromPosition, known.nextValidOffset);
  }
  for (let i = floorSegment(segments, request.offset); i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment.visiblePosition === 0 || segment.visibleNextOffset <= request.offset) continue;
    collect(segment, request, result, {
      corruptions,
      nextSegmentBase: segments[i + 1]?.baseOffset,
    });
    if (result.views.length > 0) break;
  }
  return result;
}

/**
 * Prepares a read at `offset` of up to `maxBytes` (Segment.prepareRead): a promise when the
 * bytes it would start with are being read on the thread pool (cold_read.ts), settling
 * (never rejecting) once the read may be made; undefined when it may be made now. Offsets
 * outside the log, or in damage on record, are left to the read to answer.
 */
export function prepareReadLog(
  segments: Segment[],
  offset: number,
  maxBytes: number,
  highWatermark: number,
): Promise<void> | undefined {
  if (!Number.isSafeInteger(offset) || offset < segments[0]!.baseOffset) return undefined;
  if (offset >= highWatermark || !(maxBytes >= 1)) return undefined;
  const segment = segments[floorSegment(segments, offset)]!;
  if (segment.visibleNextOffset <= offset || segment.visiblePosition === 0) return undefined;
  // The entry is not checked against the batch it names here (that reads the file at its
  // position, and a page fault there is what this is to avoid): the read checks it.
  const entry = segment.offsetIndex.lookupEntry(offset - segment.baseOffset);
  const readAheadBytes = Math.min(READ_AHEAD_BYTES_MAX, 2 * segment.indexIntervalBytes);
  return segment.prepareRead(entry.position, maxBytes + readAheadBytes);
}

type DamageContext = { corruptions: Corruption[]; nextSegmentBase: number | undefined };

/** A place in a segment: a byte position and the base offset the batch there must have. */
type Cursor = { position: number; expected: number };

/** Appends to `result` the batches of one segment that answer the request. */
export function collect(
  segment: Segment,
  request: ReadRequest,
  result: ReadResult,
  damage: DamageContext,
): void {
  // A catch-up read served from cold-read buffers reads on from where it stopped.
  segment.readAheadFrom(collectFrom(segment, request, result, damage));
}

/** collect's walk; answers the position where it stopped. */
function collectFrom(
  segment: Segment,
  request: ReadRequest,
  result: ReadResult,
  damage: DamageContext,
): number {
  // The cursor is this call's own (trustedStart makes it): moved in place, not made anew.
  let cursor = trustedStart(segment, request.offset);
  while (cursor.position < segment.visiblePosition) {
    const view = viewFor(segment, cursor.position, request, result);
    if (view === undefined) break;
    const step = scanView(view, segment, cursor, request, result);
    cursor.position += step.consumed;
    cursor.expected = step.expected;
    if (step.problem === undefined) {
      if (step.done) break;
      continue;
    }
    if (result.sizeBytes > 0) break;
    cursor = resumeAfterDamage(segment, cursor, request, damage);
  }
  return cursor.position;
}

/**
 * A view at `position` holding at least the whole batch that starts there (or everything up
 * to the visible end, when its length field points past it: the scan reports that). Undefined
 * when that batch would not fit what is left of maxBytes.
 */
function viewFor(
  segment: Segment,
  position: number,
  request: ReadRequest,
  result: ReadResult,
): Uint8Array | undefined {
  const first = result.sizeBytes === 0;
  const readAheadBytes = Math.min(READ_AHEAD_BYTES_MAX, 2 * segment.indexIntervalBytes);
  const want = first ? request.maxBytes + readAheadBytes : request.maxBytes - result.sizeBytes;
  // The scratch takes only a read whose view nothing answered yet holds: a second positional
  // read of the same request would overwrite batches already in result.views.
  const scratch = result.views.length === 0 ? request.scratch : undefined;
  const view = segment.viewAt(position, Math.max(want, BATCH_HEADER_BYTES), scratch);
  if (view.length < BATCH_HEADER_BYTES) return view;
  const size = batchSizeAt(view, 0);
  if (size <= view.length || size < BATCH_HEADER_BYTES || size > MAX_BATCH_BYTES_MAX) return view;
  // A batch past what is left of maxBytes would be read whole only to be dropped.
  if (!first && result.sizeBytes + size > request.maxBytes) return undefined;
  return segment.viewAt(position, size, scratch);
}

/**
 * The index position to start reading `offset` from, after checking that the entry points at
 * the batch it names. A wrong entry (a damaged index file that passed its checks at open) makes
 * the segment rebuild its indexes from the log; while unwritten bytes make that impossible,
 * the read starts from the segment's first batch instead, slower but right.
 */
export function trustedStart(segment: Segment, offset: number): Cursor {
  const entry = segment.offsetIndex.lookupEntry(offset - segment.baseOffset);
  if (!segment.entryHolds(entry)) {
    if (segment.hasUnwritten) return { position: 0, expected: segment.baseOffset };
    // A failure to write the rebuilt index files (a full disk) does not fail the read: the
    // rebuilt indexes in memory serve it (Segment.rewriteIndexFiles).
    segment.rebuildIndexes();
    return trustedStart(segment, offset);
  }
  return { position: entry.position, expected: segment.baseOffset + entry.relativeOffset };
}

type ScanStep = { consumed: number; expected: number; done: boolean; problem: string | undefined };

/**
 * scanView's answer and checkBatch's options, one of each for the module: reads are
 * synchronous and never nested, and each caller reads them before the next scan. A read of
 * a tailing partition made about a dozen objects, most of them these (bench/RESULTS.md,
 * issue 16).
 */
const SCAN_STEP: ScanStep = { consumed: 0, expected: 0, done: false, problem: undefined };
const SCAN_CHECKS = { sizeMax: MAX_BATCH_BYTES_MAX, checkCrc: true };

/**
 * Walks the whole batches of a view: each must start at the expected offset and pass its
 * CRC-32C (unless the segment has seen it pass already), also those skipped on the way to the
 * requested offset (a damaged length or offset delta must not make the walk skip, or land
 * inside, a record the reader asked for). Takes batches from the requested offset up to
 * maxBytes, and records the batches that passed as verified.
 */
function scanView(
  view: Uint8Array,
  segment: Segment,
  start: Cursor,
  request: ReadRequest,
  result: ReadResult,
): ScanStep {
  let at = 0;
  let takenFrom = -1;
  let done = false;
  let problem: string | undefined;
  let next = start.expected;
  // Bytes of this view before verifiedAt are in batches already checked in this process.
  const verifiedAt =
    request.checkEveryCrc === true ? 0 : segment.verifiedEndFrom(start.position) - start.position;
  while (at + BATCH_HEADER_BYTES <= view.length) {
    const size = batchSizeAt(view, at);
    if (size > view.length - at && at > 0 && size <= MAX_BATCH_BYTES_MAX) break;
    SCAN_CHECKS.checkCrc = at + size > verifiedAt;
    const check = checkBatch(view, at, view.length, SCAN_CHECKS);
    if (check !== "ok" || baseOffsetAt(view, at) !== next) {
      problem = check === "ok" ? "unexpected base offset" : check;
      break;
    }
    const batchNext = next + lastOffsetDeltaAt(view, at) + 1;
    if (batchNext <= request.offset) {
      at += size;
      next = batchNext;
      continue;
    }
    if (result.sizeBytes > 0 && result.sizeBytes + size > request.maxBytes) {
      done = true;
      break;
    }
    if (takenFrom === -1) takenFrom = at;
    result.sizeBytes += size;
    result.nextOffset = batchNext;
    at += size;
    next = batchNext;
  }
  if (takenFrom !== -1) result.views.push(view.subarray(takenFrom, at));
  if (at > verifiedAt) segment.markVerified(start.position, start.position + at);
  // Bytes too few for a header where a batch must start: damage (batches end at the visible end).
  if (problem === undefined && at === 0) problem = "truncated";
  const step = SCAN_STEP;
  step.consumed = at;
  step.expected = next;
  step.done = done;
  step.problem = problem;
  return step;
}

/**
 * After damage at the cursor: where valid batches start again (a region found at open, or a
 * search forward). Reading goes on from there when the requested offset is at or past it;
 * otherwise the requested offset lies in the damage and the read fails with CORRUPT_BATCH,
 * naming an offset after it where reading may resume.
 */
function resumeAfterDamage(
  segment: Segment,
  cursor: Cursor,
  request: ReadRequest,
  damage: DamageContext,
): Cursor {
  const known = damage.corruptions.find(
    (c) =>
      c.segmentBaseOffset === segment.baseOffset &&
      c.fromPosition <= cursor.position &&
      cursor.position < c.toPosition,
  );
  const next =
    known === undefined
      ? segment.findValidBatch(cursor.position, cursor.expected)
      : known.nextValidOffset === undefined || known.toPosition >= segment.visiblePosition
        ? undefined
        : { position: known.toPosition, baseOffset: known.nextValidOffset };
  if (next === undefined || next.baseOffset > request.offset) {
    const resumeAt = next?.baseOffset ?? damage.nextSegmentBase;
    throw corruptError(request, segment.baseOffset, cursor.position, resumeAt);
  }
  return { position: next.position, expected: next.baseOffset };
}

function corruptError(
  request: ReadRequest,
  segmentBaseOffset: number,
  position: number,
  nextValidOffset: number | undefined,
): SluiceError {
  return new SluiceError(
    "CORRUPT_BATCH",
    `Log ${request.name} has damaged data at position ${position} of segment ` +
      `${segmentBaseOffset} (reading offset ${request.offset}); it is not served` +
      (nextValidOffset === undefined ? "" : `; reading may resume at offset ${nextValidOffset}`),
    {
      log: request.name,
      segment: segmentBaseOffset,
      position,
      offset: request.offset,
      nextValidOffset,
    },
  );
}

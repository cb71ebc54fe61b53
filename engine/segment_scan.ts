// Reading a segment's log file batch by batch to learn its state and rebuild its indexes:
// used when a partition opens. Every batch is checked (size, magic, offsets, CRC). What to do
// with a bad batch depends on where it is, and is the caller's decision; this file finds it,
// and looks past it for the next valid batch so that damage in the middle of a segment is
// told apart from a torn tail.
//
//   torn tail:   [ok][ok][ok][partial...]<EOF>          nothing valid after the bad bytes
//   corruption:  [ok][ok][bit-flipped][ok][ok]<EOF>     valid batches follow the bad bytes

import type { FileIO } from "./io.ts";
import { MAX_BATCH_BYTES_MAX } from "./log_config.ts";
import {
  BATCH_HEADER_BYTES,
  type BatchProblem,
  baseOffsetAt,
  batchSizeAt,
  checkBatch,
  lastOffsetDeltaAt,
  MAGIC_AT,
  MAGIC_V2,
  maxTimestampAt,
} from "../record/mod.ts";
import { type IndexCursor, indexBatch, OffsetIndex, TimeIndex } from "./sparse_index.ts";

/** Bytes read from the file at a time while scanning. */
const SCAN_WINDOW_BYTES = 8 * 1024 * 1024;

/** A damaged region skipped by a scan: bytes [fromPosition, toPosition) of one segment. */
export type Corruption = {
  segmentBaseOffset: number;
  fromPosition: number;
  toPosition: number;
  problem: BatchProblem;
  /** The first offset that may be missing, and the base offset of the next valid batch. */
  fromOffset: number;
  nextValidOffset: number | undefined;
};

export type ScanResult = IndexCursor & {
  /** Position after the last valid batch. */
  validEnd: number;
  nextOffset: number;
  firstTimestamp: number;
  corruptions: Corruption[];
  /** Set when bad bytes were found with nothing valid after them, up to the file's end. */
  tornAt: number | undefined;
  tornProblem: BatchProblem | undefined;
};

/** Reads a file through a sliding window so that scans make few large reads. */
class Window {
  #fd: number;
  #io: FileIO;
  #fileBytes: number;
  #start = 0;
  #bytes: Uint8Array = new Uint8Array(0);

  constructor(fd: number, io: FileIO, fileBytes: number) {
    this.#fd = fd;
    this.#io = io;
    this.#fileBytes = fileBytes;
  }

  /** A view at `position` of at least `need` bytes, or fewer only at the end of the file. */
  at(position: number, need: number): { bytes: Uint8Array; at: number; end: number } {
    const end = this.#start + this.#bytes.length;
    if (position < this.#start || position + need > end) {
      const length = Math.min(Math.max(need, SCAN_WINDOW_BYTES), this.#fileBytes - position);
      this.#bytes = this.#io.readAt(this.#fd, position, Math.max(0, length));
      this.#start = position;
    }
    return { bytes: this.#bytes, at: position - this.#start, end: this.#bytes.length };
  }
}

export type ScanOptions = {
  fileBytes: number;
  baseOffset: number;
  /** Where to start, with the indexes and state as they are up to that position. */
  from: { position: number; nextOffset: number; cursor: IndexCursor; firstTimestamp: number };
  sizeMax: number;
  indexIntervalBytes: number;
};

/** A fresh start for a full scan of a segment from position 0. */
export function fullScanStart(baseOffset: number): ScanOptions["from"] {
  const cursor: IndexCursor = {
    baseOffset,
    offsetIndex: new OffsetIndex(),
    timeIndex: new TimeIndex(),
    maxTimestamp: -1,
    bytesSinceIndexEntry: 0,
  };
  return { position: 0, nextOffset: baseOffset, cursor, firstTimestamp: -1 };
}

function checkAt(window: Window, position: number, options: ScanOptions): BatchProblem {
  const head = window.at(position, BATCH_HEADER_BYTES);
  if (head.end - head.at < BATCH_HEADER_BYTES) return "truncated";
  const size = batchSizeAt(head.bytes, head.at);
  if (size < BATCH_HEADER_BYTES || size > options.sizeMax) return "bad-length";
  const whole = window.at(position, Math.min(size, options.fileBytes - position));
  return checkBatch(whole.bytes, whole.at, whole.end, { sizeMax: options.sizeMax, checkCrc: true });
}

/** Scans from `options.from` to the end of the file, indexing every valid batch. */
export function scanSegment(fd: number, io: FileIO, options: ScanOptions): ScanResult {
  const window = new Window(fd, io, options.fileBytes);
  const { cursor } = options.from;
  const result: ScanResult = {
    ...cursor,
    validEnd: options.from.position,
    nextOffset: options.from.nextOffset,
    firstTimestamp: options.from.firstTimestamp,
    corruptions: [],
    tornAt: undefined,
    tornProblem: undefined,
  };
  let position = options.from.position;
  while (position < options.fileBytes) {
    const problem = checkAt(window, position, options);
    const head = window.at(position, BATCH_HEADER_BYTES);
    const baseOffset = problem === "ok" ? baseOffsetAt(head.bytes, head.at) : -1;
    // Offsets are assigned contiguously and the CRC does not cover baseOffset: a batch that
    // does not start at the expected offset is damaged, however valid the rest of it is.
    if (problem === "ok" && baseOffset === result.nextOffset) {
      const size = batchSizeAt(head.bytes, head.at);
      const maxTimestamp = maxTimestampAt(head.bytes, head.at);
      indexBatch(result, { baseOffset, position, size, maxTimestamp }, options.indexIntervalBytes);
      if (result.firstTimestamp === -1) result.firstTimestamp = maxTimestamp;
      result.nextOffset = baseOffset + lastOffsetDeltaAt(head.bytes, head.at) + 1;
      position += size;
      result.validEnd = position;
      continue;
    }
    const next = findNextBatch(window, position + 1, result.nextOffset, options);
    if (next === undefined) {
      result.tornAt = position;
      result.tornProblem = problem === "ok" ? "bad-offsets" : problem;
      break;
    }
    result.corruptions.push({
      segmentBaseOffset: options.baseOffset,
      fromPosition: position,
      toPosition: next.position,
      problem: problem === "ok" ? "bad-offsets" : problem,
      fromOffset: result.nextOffset,
      nextValidOffset: next.baseOffset,
    });
    result.nextOffset = next.baseOffset;
    position = next.position;
  }
  return result;
}

/**
 * The first position at or after `from` holding a fully valid batch (CRC included) whose base
 * offset is at least `minOffset`. Candidates are found by the magic byte; a false match also
 * needs a matching CRC-32C, which random bytes give once in four billion.
 */
function findNextBatch(
  window: Window,
  from: number,
  minOffset: number,
  options: ScanOptions,
): { position: number; baseOffset: number } | undefined {
  for (let position = from; position + BATCH_HEADER_BYTES <= options.fileBytes; position++) {
    const head = window.at(position, BATCH_HEADER_BYTES);
    if (head.bytes[head.at + MAGIC_AT] !== MAGIC_V2) continue;
    if (checkAt(window, position, options) !== "ok") continue;
    const again = window.at(position, BATCH_HEADER_BYTES);
    const baseOffset = baseOffsetAt(again.bytes, again.at);
    if (baseOffset >= minOffset) return { position, baseOffset };
  }
  return undefined;
}

/**
 * The first fully valid batch at or after `from` in `fd[0 .. fileBytes)` with a base offset
 * of at least `minOffset`: where reading may resume after damage found by a read.
 */
export function findValidBatch(
  fd: number,
  io: FileIO,
  from: number,
  fileBytes: number,
  minOffset: number,
): { position: number; baseOffset: number } | undefined {
  const options: ScanOptions = {
    fileBytes,
    baseOffset: minOffset,
    from: fullScanStart(minOffset),
    sizeMax: MAX_BATCH_BYTES_MAX,
    indexIntervalBytes: Number.MAX_SAFE_INTEGER,
  };
  return findNextBatch(new Window(fd, io, fileBytes), from, minOffset, options);
}

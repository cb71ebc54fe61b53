// Opening a partition directory: find the segments, decide how much of each to check, recover
// from an unclean stop, and hand back ready Segment objects. Nothing is mapped until this has
// finished, so recovery may truncate the active segment safely.
//
//   <data>/<topic>-<partition>/
//     00000000000000000000.log        batches, append-only
//     00000000000000000000.index      sparse offset index (derived, rebuilt when wrong)
//     00000000000000000000.timeindex  sparse time index (derived, rebuilt when wrong)
//     recovery-point                  "<offset>\n": every batch below it was fsynced (a log
//                                     of an engine keeps it in the engine's one checkpoint,
//                                     recovery_checkpoint.ts, and reads this file only to
//                                     migrate from it)
//     .clean-shutdown                 present only between a clean close and the next open
//
// After a clean close each segment's indexes are loaded and checked, and only the bytes after
// the last index entry are scanned. After an unclean stop, every segment that may hold bytes
// at or past the recovery point is scanned in full and its indexes rebuilt; the active segment
// is truncated at the first invalid batch when nothing valid follows it (a torn write), and
// damage with valid batches after it is reported and skipped, never served, never discarded.

import fs from "node:fs";
import { join } from "node:path";
import { ioError } from "./errors.ts";
import type { FileBudget } from "./file_budget.ts";
import type { TailCacheBudget } from "./tail_cache_budget.ts";
import type { FileIO } from "./io.ts";
import { MAX_BATCH_BYTES_MAX } from "./log_config.ts";
import { baseOffsetAt, batchSizeAt, maxTimestampAt } from "../record/mod.ts";
import { DIRECT_BLOCK_BYTES, type DirectWrites } from "./direct_io.ts";
import { DELETED_SUFFIX, parseSegmentFileName, Segment, segmentFileName } from "./segment.ts";
import { type Corruption, fullScanStart, type ScanResult, scanSegment } from "./segment_scan.ts";
import { OffsetIndex, TimeIndex } from "./sparse_index.ts";

export const CLEAN_SHUTDOWN_FILE = ".clean-shutdown";
export const RECOVERY_POINT_FILE = "recovery-point";

export type OpenOptions = {
  io: FileIO;
  indexIntervalBytes: number;
  tailCacheBytes: number;
  /** Where segment descriptors are counted and closed when idle (file_budget.ts). */
  budget: FileBudget;
  /** Where segment chunks are counted and shed when idle (tail_cache_budget.ts). */
  tailCacheBudget: TailCacheBudget;
  /** False: segments are never mapped (PartitionLogOptions.mapSegments). */
  mapSegments?: boolean;
  /** Set: active segments are appended to with O_DIRECT (direct_io.ts). */
  direct?: DirectWrites;
  /** Told about every truncation and every damaged region found while opening. */
  onWarning: (message: string) => void;
  /**
   * The engine-wide checkpoint's recovery point for this directory, by its inode (see
   * recovery_checkpoint.ts); absent for a log kept alone, which has its own file only.
   */
  checkpointed?: (ino: number) => number | undefined;
};

export type OpenedLog = {
  segments: Segment[];
  corruptions: Corruption[];
  recoveryPoint: number;
  wasClean: boolean;
  /** The directory's inode, which ties it to its entry in the engine's checkpoint. */
  ino: number;
  /** Whether a per-log `recovery-point` file was found (to remove once migrated). */
  hasRecoveryPointFile: boolean;
};

export function readRecoveryPoint(dir: string): number {
  return readRecoveryPointFile(dir) ?? 0;
}

/** The per-log checkpoint: undefined when there is none, 0 when it cannot be read. */
function readRecoveryPointFile(dir: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(join(dir, RECOVERY_POINT_FILE), "utf8");
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return undefined;
    // Unreadable: recover everything, which is always safe.
    return 0;
  }
  const value = Number(text.trim());
  return Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

/**
 * Where recovery may start: the lower of the per-log file's value and the engine checkpoint's
 * (each was true when written, so the lower is true now), or 0 with neither.
 */
function startingRecoveryPoint(dir: string, ino: number, o: OpenOptions) {
  const fromFile = readRecoveryPointFile(dir);
  const fromCheckpoint = o.checkpointed?.(ino);
  let recoveryPoint = fromFile ?? fromCheckpoint ?? 0;
  if (fromCheckpoint !== undefined) recoveryPoint = Math.min(recoveryPoint, fromCheckpoint);
  return { recoveryPoint, hasRecoveryPointFile: fromFile !== undefined };
}

function listSegmentBases(dir: string): number[] {
  const bases: number[] = [];
  for (const name of fs.readdirSync(dir)) {
    if (name.endsWith(".tmp")) fs.rmSync(join(dir, name), { force: true, recursive: true });
    // A segment whose deletion had begun (Segment.deleteFilesLater): finished here.
    if (name.endsWith(DELETED_SUFFIX)) fs.rmSync(join(dir, name), { force: true });
    const base = parseSegmentFileName(name);
    if (base !== undefined) bases.push(base);
  }
  return bases.sort((a, b) => a - b);
}

function readWholeFile(path: string): Uint8Array | undefined {
  try {
    return new Uint8Array(fs.readFileSync(path));
  } catch {
    return undefined;
  }
}

/** Indexes from disk when they pass their checks, as the starting point of a tail scan. */
function loadIndexes(dir: string, baseOffset: number, fileBytes: number) {
  const offsetBytes = readWholeFile(join(dir, segmentFileName(baseOffset, "index")));
  const timeBytes = readWholeFile(join(dir, segmentFileName(baseOffset, "timeindex")));
  if (offsetBytes === undefined || timeBytes === undefined) return undefined;
  const offsetIndex = OffsetIndex.decode(offsetBytes, fileBytes);
  if (offsetIndex === undefined) return undefined;
  const last = offsetIndex.count - 1;
  const lastRelative = last === -1 ? 0 : offsetIndex.relativeOffsetAt(last);
  const timeIndex = TimeIndex.decode(timeBytes, lastRelative + 1);
  if (timeIndex === undefined) return undefined;
  return { offsetIndex, timeIndex, lastRelative, lastPosition: offsetIndex.lastPosition };
}

/** Whether a batch with base offset `offset` starts at `position` of the file. */
function batchAt(fd: number, io: FileIO, position: number, offset: number): boolean {
  const head = io.readAt(fd, position, 61);
  return head.length === 61 && head[16] === 2 && baseOffsetAt(head, 0) === offset;
}

function firstTimestampOf(fd: number, io: FileIO, fileBytes: number): number {
  if (fileBytes < 61) return -1;
  const head = io.readAt(fd, 0, 61);
  return batchSizeAt(head, 0) >= 61 ? maxTimestampAt(head, 0) : -1;
}

/**
 * Where a tail scan starts: the last offset-index entry. A time index that is empty while the
 * offset index is not was lost (every indexed batch adds a time entry unless its timestamps
 * stopped growing, and the first always grows past -1): the scan starts over from the first
 * batch then, so that the segment's newest timestamp is not underestimated.
 */
function tailStart(offsetIndex: OffsetIndex, timeIndex: TimeIndex): number {
  if (offsetIndex.count > 0 && timeIndex.count === 0) return 0;
  return offsetIndex.lastPosition;
}

/** Scans only past the indexed part; undefined when the indexes must be rebuilt. */
function tailScan(fd: number, dir: string, baseOffset: number, fileBytes: number, o: OpenOptions) {
  const loaded = loadIndexes(dir, baseOffset, fileBytes);
  if (loaded === undefined) return undefined;
  const start = tailStart(loaded.offsetIndex, loaded.timeIndex);
  const trimmed = start < loaded.lastPosition;
  // Entries past the start are indexed again by the scan, exactly as appends indexed them.
  loaded.offsetIndex.truncateToPosition(start + 1);
  const entries = loaded.offsetIndex.count;
  const startRelative = entries === 0 ? 0 : loaded.offsetIndex.relativeOffsetAt(entries - 1);
  const cursor = {
    baseOffset,
    offsetIndex: loaded.offsetIndex,
    timeIndex: loaded.timeIndex,
    maxTimestamp: loaded.timeIndex.lastTimestamp,
    // The batch at the start is indexed already; the scan re-reads it without re-indexing.
    bytesSinceIndexEntry: 0,
  };
  const persisted = { offsetEntries: entries, timeEntries: loaded.timeIndex.count };
  if (start > 0 && !batchAt(fd, o.io, start, baseOffset + startRelative)) return undefined;
  const scan = scanSegment(fd, o.io, {
    fileBytes,
    baseOffset,
    from: {
      position: start,
      nextOffset: baseOffset + startRelative,
      cursor,
      firstTimestamp: firstTimestampOf(fd, o.io, fileBytes),
    },
    sizeMax: MAX_BATCH_BYTES_MAX,
    indexIntervalBytes: o.indexIntervalBytes,
  });
  // The batch at the start must be where the index says, with the offset it says.
  const landed = scan.validEnd > start || start === 0;
  if (!landed || scan.corruptions.some((c) => c.fromPosition === start)) return undefined;
  return { scan, persisted, trimmed };
}

function fullScan(fd: number, baseOffset: number, fileBytes: number, o: OpenOptions): ScanResult {
  return scanSegment(fd, o.io, {
    fileBytes,
    baseOffset,
    from: fullScanStart(baseOffset),
    sizeMax: MAX_BATCH_BYTES_MAX,
    indexIntervalBytes: o.indexIntervalBytes,
  });
}

/**
 * Whether [from, fileBytes) is the zero padding of a direct write: fewer than
 * DIRECT_BLOCK_BYTES bytes, all zero, ending on a block boundary. A torn direct write that
 * reached past it leaves more, or non-zero bytes, and is reported as any torn tail is.
 */
function isZeroPadding(fd: number, from: number, fileBytes: number, io: FileIO): boolean {
  if (fileBytes % DIRECT_BLOCK_BYTES !== 0 || fileBytes - from >= DIRECT_BLOCK_BYTES) return false;
  const bytes = io.readAt(fd, from, fileBytes - from);
  return bytes.length === fileBytes - from && bytes.every((byte) => byte === 0);
}

type SegmentPlan = {
  baseOffset: number;
  nextBase: number | undefined;
  isLast: boolean;
  mustScan: boolean;
};

function openOneSegment(dir: string, plan: SegmentPlan, o: OpenOptions) {
  const path = join(dir, segmentFileName(plan.baseOffset, "log"));
  const fd = fs.openSync(path, "r+");
  const fileBytes = fs.fstatSync(fd).size;
  const tail = plan.mustScan ? undefined : tailScan(fd, dir, plan.baseOffset, fileBytes, o);
  const scan = tail?.scan ?? fullScan(fd, plan.baseOffset, fileBytes, o);
  let size = fileBytes;
  if (scan.tornAt !== undefined && isZeroPadding(fd, scan.tornAt, fileBytes, o.io)) {
    // What a direct write left past the last batch (direct_io.ts), not damage: cut quietly.
    o.io.truncate(fd, scan.tornAt);
    size = scan.tornAt;
  } else if (scan.tornAt !== undefined) {
    const what = `${path}: invalid batch (${scan.tornProblem}) at position ${scan.tornAt}`;
    if (plan.isLast) {
      o.onWarning(`${what}; truncating ${fileBytes - scan.tornAt} bytes of torn tail`);
      o.io.truncate(fd, scan.tornAt);
    } else {
      o.onWarning(`${what} with nothing valid after it; bytes past it are never served`);
      // The offsets between here and the next segment are lost: reads of them must fail.
      scan.corruptions.push({
        segmentBaseOffset: plan.baseOffset,
        fromPosition: scan.tornAt,
        toPosition: fileBytes,
        problem: scan.tornProblem ?? "truncated",
        fromOffset: scan.nextOffset,
        nextValidOffset: plan.nextBase,
      });
    }
    size = scan.tornAt;
  }
  for (const c of scan.corruptions) {
    o.onWarning(
      `${path}: damaged bytes [${c.fromPosition}, ${c.toPosition}) (${c.problem}); ` +
        `offsets ${c.fromOffset} to ${(c.nextValidOffset ?? c.fromOffset) - 1} are unreadable`,
    );
  }
  const segment = new Segment(
    dir,
    plan.baseOffset,
    fd,
    { ...scan, size },
    {
      io: o.io,
      indexIntervalBytes: o.indexIntervalBytes,
      tailCacheBytes: o.tailCacheBytes,
      budget: o.budget,
      tailCacheBudget: o.tailCacheBudget,
      mapSegments: o.mapSegments,
      ...(o.direct === undefined ? {} : { direct: o.direct }),
    },
  );
  if (tail === undefined || tail.trimmed) {
    const failure = segment.rewriteIndexFiles();
    if (failure !== undefined) o.onWarning(`${failure.message}; the indexes are kept in memory`);
  } else {
    segment.markIndexesPersisted(tail.persisted.offsetEntries, tail.persisted.timeEntries);
  }
  return { segment, corruptions: scan.corruptions };
}

/** Creates an empty segment's three files and returns it. */
export function createSegment(dir: string, baseOffset: number, o: OpenOptions): Segment {
  const path = join(dir, segmentFileName(baseOffset, "log"));
  const fd = fs.openSync(path, "w+");
  o.io.writeFile(join(dir, segmentFileName(baseOffset, "index")), new Uint8Array(0));
  o.io.writeFile(join(dir, segmentFileName(baseOffset, "timeindex")), new Uint8Array(0));
  const start = fullScanStart(baseOffset);
  return new Segment(
    dir,
    baseOffset,
    fd,
    { ...start.cursor, size: 0, nextOffset: baseOffset, firstTimestamp: -1 },
    {
      io: o.io,
      indexIntervalBytes: o.indexIntervalBytes,
      tailCacheBytes: o.tailCacheBytes,
      budget: o.budget,
      tailCacheBudget: o.tailCacheBudget,
      mapSegments: o.mapSegments,
      ...(o.direct === undefined ? {} : { direct: o.direct }),
    },
  );
}

/**
 * A crash right after a roll can leave an empty last segment whose base offset counts batches
 * that never reached the segment before it (they were still in memory). Such empty segments
 * are removed, so the log goes on where its data really ends, without an offset gap. The
 * segment before becomes the active one again: a torn tail it had is truncated now.
 */
function dropEmptyTail(segments: Segment[], corruptions: Corruption[], o: OpenOptions): void {
  while (segments.length > 1) {
    const last = segments.at(-1)!;
    const previous = segments.at(-2)!;
    if (last.size > 0 || previous.nextOffset >= last.baseOffset) return;
    o.onWarning(`${last.path("log")}: empty segment past the end of the log removed`);
    last.close();
    last.deleteFiles();
    segments.pop();
    const torn = corruptions.findIndex(
      (c) => c.segmentBaseOffset === previous.baseOffset && c.toPosition >= previous.size,
    );
    if (torn !== -1 && corruptions[torn]!.fromPosition === previous.size) {
      o.io.truncate(previous.fd, previous.size);
      corruptions.splice(torn, 1);
    }
  }
}

/** Opens (creating when new) a partition directory and recovers it. */
export function openLogDirectory(dir: string, o: OpenOptions): OpenedLog {
  const segments: Segment[] = [];
  try {
    fs.mkdirSync(dir, { recursive: true });
    const markerPath = join(dir, CLEAN_SHUTDOWN_FILE);
    let wasClean = fs.existsSync(markerPath);
    const ino = fs.statSync(dir).ino;
    const { recoveryPoint, hasRecoveryPointFile } = startingRecoveryPoint(dir, ino, o);
    const bases = listSegmentBases(dir);
    const corruptions: Corruption[] = [];
    bases.forEach((baseOffset, i) => {
      const nextBase = bases[i + 1];
      const isLast = nextBase === undefined;
      // A segment may hold unsynced bytes when the recovery point is not below its end.
      const mustScan = !wasClean && (isLast || nextBase > recoveryPoint);
      const opened = openOneSegment(dir, { baseOffset, nextBase, isLast, mustScan }, o);
      segments.push(opened.segment);
      corruptions.push(...opened.corruptions);
    });
    dropEmptyTail(segments, corruptions, o);
    if (segments.length === 0) {
      segments.push(createSegment(dir, 0, o));
      // A new partition is clean: with the marker, closing it untouched writes nothing. Not
      // fsynced: a marker lost to a crash only costs a scan of an empty segment.
      o.io.writeFile(markerPath, "");
      wasClean = true;
    }
    for (const segment of segments.slice(0, -1)) segment.seal();
    // A checkpoint past the end (damaged, or from data since lost) would spare too much. After
    // a clean close everything was fsynced, whatever a checkpoint says.
    const end = segments.at(-1)!.nextOffset;
    // The marker stays until the first change (PartitionLog removes it, durably, before it
    // writes anything): a partition that is opened and closed untouched costs no write at all.
    return {
      segments,
      corruptions,
      recoveryPoint: wasClean ? end : Math.min(recoveryPoint, end),
      wasClean,
      ino,
      hasRecoveryPointFile,
    };
  } catch (error) {
    for (const segment of segments) segment.close();
    throw ioError(error, `opening partition directory ${dir}`);
  }
}

// One segment of a partition log: `<20-digit baseOffset>.log` with its `.index` and
// `.timeindex`. The active (last) segment takes appends into in-memory chunks that the
// partition's flusher writes with positional writes; the chunks stay in memory as the tail
// cache, so consumers at the tail read views of memory, not the file. Sealed segments are
// immutable and are read through a read-only mapping (Bun) or positional reads.
//
//   active segment, by byte position:
//
//   0                   cacheStart        writtenPosition     visiblePosition      size
//   |-- file only ---------|== chunks (tail cache) ==================================|
//                          |-- written to the file --|-- not yet written ------------|
//   readers see [0, visiblePosition): written, and fsynced when the policy says so.
//   (visiblePosition <= writtenPosition when fsync is "always"; equal otherwise.)
//
// Chunks count against the tail-cache budget of the process or engine (tail_cache_budget.ts):
// past it, the segments appended to least recently shed their written chunks, the next append
// to such a segment taking a new chunk, and reads take the shed bytes from the file.

import fs from "node:fs";
import { join } from "node:path";
import { assert, type SluiceError } from "../record/mod.ts";
import { ioError } from "./errors.ts";
import {
  type AnsweredMemory,
  ColdReader,
  forgetLentMemory,
  lendMemory,
  looksCold,
  tailViewsLendable,
} from "./cold_read.ts";
import { DirectAppender, type DirectWrites } from "./direct_io.ts";
import type { BudgetedFile, FileBudget } from "./file_budget.ts";
import type { FileIO } from "./io.ts";
import { MAX_BATCH_BYTES_MAX } from "./log_config.ts";
import {
  BATCH_HEADER_BYTES,
  type BatchParts,
  batchBytesOf,
  baseOffsetAt,
  MAGIC_AT,
  MAGIC_V2,
  patchBaseOffset,
} from "../record/mod.ts";
import { findValidBatch, fullScanStart, scanSegment } from "./segment_scan.ts";
import type { TailCacheBudget, TailCacheHolder } from "./tail_cache_budget.ts";
import {
  type IndexCursor,
  type IndexEntry,
  indexBatch,
  type OffsetIndex,
  type TimeIndex,
} from "./sparse_index.ts";
import { VerifiedRanges } from "./verified_ranges.ts";

/** Appends are copied into chunks of this size (a larger batch gets a chunk of its own). */
export const WRITE_CHUNK_BYTES = 1024 * 1024;
/** Written chunks kept in memory per active segment for tail reads. */
export const TAIL_CACHE_BYTES_DEFAULT = 8 * 1024 * 1024;
/**
 * The written prefix of an active segment is mapped (where the runtime maps files) once it
 * holds this much more than the last mapping: reads below the tail cache then get views of the
 * mapping instead of a positional read into a fresh buffer, which cost ~345 µs per 1 MiB read
 * on a VM whose fresh pages are slow to touch. Between remaps, bytes past the mapping and
 * below the tail cache are read with pread. A consumer 300,000 records of 1 KiB behind over
 * 16 partitions (~19 MB each, past the 8 MiB tail cache) reads from a mapping at this step;
 * each remap is one mmap call, and a 1 GiB segment is mapped at most 64 times.
 */
export const ACTIVE_MAP_STEP_BYTES = 16 * 1024 * 1024;
/**
 * A read below the tail cache of an active segment maps a window of this many bytes of the
 * file (from a MAP_WINDOW_ALIGN_BYTES boundary at or below the read), not the whole file. The
 * collector counts a mapping's whole length as heap until it collects it, and a catch-up reader
 * remapping the whole growing file every step counted the square of the file's size over a
 * segment (a starved queue's TTL check kept 207-677 MB counted live; bench/RESULTS.md, issue
 * 13, dly19). A window costs the same each step: at most two steps mapped per step read.
 */
export const ACTIVE_MAP_WINDOW_BYTES = 2 * ACTIVE_MAP_STEP_BYTES;
/**
 * Windows kept per active segment, the least recently used replaced: a queue's delivery
 * cursor and its TTL check read at two places in the same segment, and one window would be
 * remapped at each turn between them.
 */
export const ACTIVE_MAP_WINDOWS_MAX = 2;
const MAP_WINDOW_ALIGN_BYTES = 1024 * 1024;
assert(ACTIVE_MAP_WINDOW_BYTES >= ACTIVE_MAP_STEP_BYTES + MAP_WINDOW_ALIGN_BYTES);
assert(ACTIVE_MAP_STEP_BYTES % MAP_WINDOW_ALIGN_BYTES === 0);

/**
 * The bytes a tail-cache chunk counts for: its filled length, except a pooled chunk closed
 * early by a lent batch after it, which counts its whole capacity. Small and large batches
 * taking turns would otherwise hold a mostly empty 1 MiB chunk per small batch uncounted.
 */
function heldBytes(chunks: readonly Chunk[], index: number): number {
  const chunk = chunks[index]!;
  const next = chunks[index + 1];
  const closedEarly = chunk.lease === undefined && next?.lease !== undefined;
  return closedEarly ? chunk.bytes.length : chunk.length;
}

export function segmentFileName(baseOffset: number, extension: string): string {
  return `${String(baseOffset).padStart(20, "0")}.${extension}`;
}

/** The base offset named by a `.log` file name, or undefined for any other name. */
/** The suffix of a segment file being deleted: an open removes any it finds. */
export const DELETED_SUFFIX = ".deleted";

/** A segment's files, the log first (a segment exists while its log file does). */
const SEGMENT_FILES = ["log", "index", "timeindex"] as const;

export function parseSegmentFileName(name: string): number | undefined {
  const match = /^(\d{20})\.log$/.exec(name);
  if (match === null) return undefined;
  const baseOffset = Number(match[1]);
  return Number.isSafeInteger(baseOffset) ? baseOffset : undefined;
}

/**
 * Memory lent to the log with a batch (`PartitionLog.appendChecked`): the active segment may
 * keep a view of the caller's bytes as a chunk of its own instead of copying them, and then
 * patches the base offset in those bytes. The lender keeps the memory unchanged from the
 * append on; `retain` is called once per view kept, and `release` once that view is no longer
 * held by the segment (written and dropped from the tail cache, or the segment sealed) and was
 * never given to a reader. A view a reader saw is never released: its memory is left to the
 * collector, never reused under the reader.
 */
export interface BatchLease {
  retain(): void;
  release(): void;
}

/**
 * Lent batches this large are kept as views, not copied. Smaller ones are copied into chunks:
 * a view keeps the whole buffer it lies in alive (a received chunk of up to 512 KiB), and a
 * chunk per small batch would cost a write vector and a chunk entry each.
 */
export const LENT_BATCH_BYTES_MIN = 64 * 1024;

/** A mapping of `bytes.length` bytes of the file from `position` (see ACTIVE_MAP_WINDOW_BYTES). */
type MapWindow = { position: number; bytes: Uint8Array };

/**
 * `escaped`: a reader was given a view of it outside a lending scope, so its memory may never
 * be reused. `lent`: views of it went into fetch answers (cold_read.ts's `framed` counts those
 * the sockets have not taken yet; `dropped`: the tail cache let go of it meanwhile). `lease`:
 * the chunk is a lent batch (a view of the caller's memory, exactly the batch, or one of its
 * parts), not a pooled chunk. `continues`: the chunk is a lent part after a batch's first (the
 * batch began in the chunk before it), so a read of that batch spans chunks:
 *
 *   chunks:  [ pooled: b1 b2 b3 ][ lent: b4 ][ lent: b5 part 1 ][ b5 part 2 ][ b5 part 3 ]
 *                                                                continues    continues
 */
type Chunk = AnsweredMemory & {
  position: number;
  bytes: Uint8Array;
  length: number;
  escaped: boolean;
  lent: boolean;
  lease: BatchLease | undefined;
  continues: boolean;
};

/**
 * Written chunks no reader holds a view of, kept for reuse: writing into memory already
 * touched is several times faster than into fresh pages. A producer with no tail reader
 * recycles every chunk, and so does one whose tail readers are the server's fetches: their
 * views are lent (cold_read.ts) and come back as the sockets take them. Before, a tailing
 * consumer made every chunk escape: a fresh 1 MiB chunk per 1 MiB appended, each left to the
 * collector ~13 s later at 10,000 msg/s; lent, the broker's heap in bench:tcp's latency runs
 * was 347 MB instead of 375 and their e2e p99 medians 1.50-1.63 ms instead of 1.50-1.94
 * (p99.9 unchanged; bench/RESULTS.md, issue 16). Shared by all segments of the process,
 * bounded.
 */
const chunkPool: Uint8Array[] = [];
const CHUNK_POOL_MAX = 32;

function poolChunk(memory: AnsweredMemory): void {
  const chunk = memory as Chunk;
  const reusable = !chunk.escaped && chunk.bytes.length === WRITE_CHUNK_BYTES;
  if (!reusable || chunkPool.length >= CHUNK_POOL_MAX) return;
  // The chunk that takes this memory up next counts its views anew: views of the memory
  // retained or written from then on are that chunk's, never this one's.
  if (chunk.lent) forgetLentMemory(chunk.bytes.buffer);
  chunkPool.push(chunk.bytes);
}

function recycle(chunk: Chunk): void {
  if (chunk.lease !== undefined) {
    if (!chunk.escaped) chunk.lease.release();
    return;
  }
  // A chunk with views in answers not yet written goes back once the last is (poolChunk).
  chunk.dropped = true;
  if (chunk.framed === 0) poolChunk(chunk);
}

/** A view of `chunk` is handed out: lent in a lending scope (pooled chunks only), else kept. */
function viewed(chunk: Chunk): void {
  if (chunk.lease === undefined && tailViewsLendable()) {
    if (!chunk.lent) {
      chunk.lent = true;
      lendMemory(chunk.bytes.buffer, chunk);
    }
    return;
  }
  chunk.escaped = true;
}

/** A chunk's state when it enters the tail cache. */
function newChunk(
  position: number,
  bytes: Uint8Array,
  length: number,
  lease: BatchLease | undefined,
  continues: boolean,
): Chunk {
  return {
    position,
    bytes,
    length,
    escaped: false,
    lent: false,
    framed: 0,
    dropped: false,
    idle: poolChunk,
    lease,
    continues,
  };
}

/** What a segment knows about itself after it has been opened and checked. */
export type SegmentState = {
  size: number;
  nextOffset: number;
  maxTimestamp: number;
  firstTimestamp: number;
  offsetIndex: OffsetIndex;
  timeIndex: TimeIndex;
  bytesSinceIndexEntry: number;
};

/** Segments sealed in this process, by every log: an idle scrubber looks again when it moves. */
let segmentsSealedCount = 0;

export function segmentsSealed(): number {
  return segmentsSealedCount;
}

export class Segment implements TailCacheHolder {
  readonly baseOffset: number;
  readonly dir: string;
  /** The `.log` file's descriptor, which the open-files budget may close while it is idle. */
  #file: BudgetedFile;
  #io: FileIO;
  #interval: number;
  #tailCacheBytes: number;
  /** Where the chunks' bytes are counted, and who asks this segment to shed written ones. */
  #cacheBudget: TailCacheBudget;

  // Positions and offsets are the segment's own: they change only through its methods
  // (append, markWritten, publish, truncateTo), each of which asserts the order
  // visiblePosition <= writtenPosition <= size.
  #size: number;
  #writtenPosition: number;
  #visiblePosition: number;
  #nextOffset: number;
  /** The offset after the last batch in the file, and after the last batch readers see. */
  #writtenNextOffset: number;
  #visibleNextOffset: number;
  /** Timestamp of the first batch, for time-based roll; -1 while empty. */
  #firstTimestamp: number;
  /** The indexes and the indexing rule's state, shared with recovery's scan (indexBatch). */
  #cursor: IndexCursor;
  #persistedOffsetEntries = 0;
  #persistedTimeEntries = 0;
  #chunks: Chunk[] = [];
  /**
   * The last copy #joinedView made, by the span it holds. A queue fetch reads the batch at a
   * partition's next offset twice (to look at it, then to take its records), and a batch kept
   * in parts is copied whole on each read without this. Bytes below the visible position never
   * change until truncateTo, which forgets the copy (as do seal, close, and the tail cache
   * dropping the batch's parts).
   */
  #lastJoined: { position: number; stop: number; bytes: Uint8Array } | undefined;
  #mapping: Uint8Array | undefined;
  /**
   * Mappings of windows of the active segment's file as it was when mapped, most recently used
   * last (see ACTIVE_MAP_WINDOW_BYTES). Only bytes below the visible position are ever read
   * from them; truncation only cuts at or past the written position (a failed round's
   * rollback), so no read reaches a cut page.
   */
  #windows: MapWindow[] = [];
  /** Whether the file was ever mapped (a dropped mapping lives until the collector frees it). */
  #everMapped = false;
  #mapSegments: boolean;
  #sealed = false;
  /** Byte ranges whose batches passed their CRC check in this process (log_read.ts). */
  #verified: VerifiedRanges;
  #budget: FileBudget;
  /** Set: appends are written with O_DIRECT (direct_io.ts), through #appender. */
  #direct: DirectWrites | undefined;
  #appender: DirectAppender | undefined;
  /** A direct write may have left zero padding past the written bytes (see direct_io.ts). */
  #padded = false;
  /** Reads of bytes not in the page cache, ahead of the reads they serve (cold_read.ts). */
  #cold: ColdReader | undefined;

  constructor(
    dir: string,
    baseOffset: number,
    fd: number,
    state: SegmentState,
    options: {
      io: FileIO;
      indexIntervalBytes: number;
      tailCacheBytes: number;
      budget: FileBudget;
      tailCacheBudget: TailCacheBudget;
      /** False: never map the file; every read below the tail cache is a positional read. */
      mapSegments?: boolean;
      /** Write appends with O_DIRECT (direct_io.ts); absent: through the page cache. */
      direct?: DirectWrites;
    },
  ) {
    this.dir = dir;
    this.baseOffset = baseOffset;
    this.#file = options.budget.adopt(join(dir, segmentFileName(baseOffset, "log")), fd);
    this.#io = options.io;
    this.#interval = options.indexIntervalBytes;
    this.#tailCacheBytes = options.tailCacheBytes;
    this.#cacheBudget = options.tailCacheBudget;
    this.#mapSegments = options.mapSegments ?? true;
    this.#budget = options.budget;
    this.#direct = options.direct;
    this.#size = state.size;
    this.#writtenPosition = state.size;
    this.#visiblePosition = state.size;
    this.#nextOffset = state.nextOffset;
    this.#writtenNextOffset = state.nextOffset;
    this.#visibleNextOffset = state.nextOffset;
    this.#firstTimestamp = state.firstTimestamp;
    this.#verified = new VerifiedRanges(state.size);
    this.#cursor = {
      baseOffset,
      offsetIndex: state.offsetIndex,
      timeIndex: state.timeIndex,
      maxTimestamp: state.maxTimestamp,
      bytesSinceIndexEntry: state.bytesSinceIndexEntry,
    };
  }

  /**
   * The `.log` file's descriptor, reopened if the budget closed it: for synchronous use only
   * (see BudgetedFile.fd); asynchronous writes and fsyncs go through `withFd`.
   */
  get fd(): number {
    return this.#file.fd;
  }

  /** Runs a write or fsync with the descriptor held open until it settles. */
  withFd<T>(operation: (fd: number) => Promise<T>): Promise<T> {
    return this.#file.use(operation);
  }

  /**
   * The descriptor, held open until `unpinFd`: `withFd` without a callback, for the flush
   * round's writes (no closure per write). Every pin is matched by one unpin.
   */
  pinFd(): number {
    return this.#file.pin();
  }

  unpinFd(): void {
    this.#file.unpin();
  }

  /** Bytes between sparse index entries: a batch lies at most about this far past its entry. */
  get indexIntervalBytes(): number {
    return this.#interval;
  }

  /** Bytes appended, written or not. */
  get size(): number {
    return this.#size;
  }

  /** Bytes in the file. */
  get writtenPosition(): number {
    return this.#writtenPosition;
  }

  /** Bytes readers see: written, and fsynced when the policy says so. */
  get visiblePosition(): number {
    return this.#visiblePosition;
  }

  /** The offset the next appended batch takes. */
  get nextOffset(): number {
    return this.#nextOffset;
  }

  get writtenNextOffset(): number {
    return this.#writtenNextOffset;
  }

  get visibleNextOffset(): number {
    return this.#visibleNextOffset;
  }

  get maxTimestamp(): number {
    return this.#cursor.maxTimestamp;
  }

  /** Timestamp of the first batch, for time-based roll; -1 while empty. */
  get firstTimestamp(): number {
    return this.#firstTimestamp;
  }

  get offsetIndex(): OffsetIndex {
    return this.#cursor.offsetIndex;
  }

  get timeIndex(): TimeIndex {
    return this.#cursor.timeIndex;
  }

  path(extension: "log" | "index" | "timeindex"): string {
    return join(this.dir, segmentFileName(this.baseOffset, extension));
  }

  get sealed(): boolean {
    return this.#sealed;
  }

  get hasUnwritten(): boolean {
    return this.#writtenPosition < this.#size;
  }

  /** Whether the flusher writes this segment's appends with `writeDirect`. */
  get writesDirect(): boolean {
    return this.#direct !== undefined && !this.#sealed;
  }

  /**
   * Writes `buffers` (the views collectUnwritten gave) at `position`, the written end, with
   * O_DIRECT: whole blocks, the last padded with zeros (direct_io.ts). Only where writesDirect.
   */
  writeDirect(buffers: readonly Uint8Array[], position: number): Promise<void> {
    assert(this.writesDirect, "direct writes are on for an active segment");
    assert(position === this.#writtenPosition, "a direct write starts at the written end");
    this.#appender ??= new DirectAppender(
      this.path("log"),
      this.#budget,
      this.#direct!,
      (at, length) => this.#writtenBytes(at, length),
    );
    this.#padded = true;
    return this.#appender.write(buffers, position);
  }

  /**
   * The written bytes [at, at + length): a view of the tail cache where one chunk holds them,
   * a copy where they span chunks, else read from the file (the cache no longer holds them).
   */
  #writtenBytes(at: number, length: number): Uint8Array {
    assert(at + length <= this.#writtenPosition, "only written bytes are asked for");
    const end = at + length;
    const first = this.#chunks[0];
    if (first !== undefined && first.position <= at) {
      let copy: Uint8Array | undefined;
      for (const chunk of this.#chunks) {
        const chunkEnd = chunk.position + chunk.length;
        if (chunkEnd <= at) continue;
        if (chunk.position <= at && chunkEnd >= end) {
          return chunk.bytes.subarray(at - chunk.position, end - chunk.position);
        }
        copy ??= new Uint8Array(length);
        const from = Math.max(at, chunk.position);
        const to = Math.min(end, chunkEnd);
        copy.set(chunk.bytes.subarray(from - chunk.position, to - chunk.position), from - at);
        if (to === end) return copy;
      }
    }
    return this.#io.readAt(this.fd, at, length);
  }

  /**
   * Cuts the zero padding direct writes left past the written bytes; true if there was any
   * to cut. Done at seal and at a clean close, before their fsync.
   */
  trimPadding(): boolean {
    if (!this.#padded) return false;
    this.#io.truncate(this.fd, this.#writtenPosition);
    this.#padded = false;
    return true;
  }

  /**
   * Copies one validated batch to the end of the segment (or, lent with a `lease` and at least
   * LENT_BATCH_BYTES_MIN long, keeps a view of it), patches its base offset, and indexes it.
   * The bytes become visible only once the flusher has written them.
   */
  append(
    batch: Uint8Array | BatchParts,
    offsets: { baseOffset: number; lastOffset: number; maxTimestamp: number },
    lease?: BatchLease,
  ): void {
    assert(!this.#sealed, "append to an active segment");
    const { baseOffset, lastOffset, maxTimestamp } = offsets;
    const position = this.#size;
    const size = batchBytesOf(batch);
    if (lease !== undefined && size >= LENT_BATCH_BYTES_MIN) {
      this.#keepLent(batch, baseOffset, lease);
    } else {
      const chunk = this.#chunkFor(size);
      const at = chunk.length;
      if (batch instanceof Uint8Array) chunk.bytes.set(batch, at);
      else
        for (let i = 0, to = at; i < batch.length; to += batch[i]!.length, i++) {
          chunk.bytes.set(batch[i]!, to);
        }
      patchBaseOffset(chunk.bytes, at, baseOffset);
      chunk.length += size;
    }
    assert(baseOffset === this.#nextOffset, "a batch takes the segment's next offset");
    indexBatch(this.#cursor, { baseOffset, position, size, maxTimestamp }, this.#interval);
    if (this.#firstTimestamp === -1) this.#firstTimestamp = maxTimestamp;
    this.#size += size;
    this.#nextOffset = lastOffset + 1;
    this.#cacheBudget.touch(this);
  }

  /** Keeps a lent batch (whole, or each of its parts) as chunks of its own, offset patched. */
  #keepLent(batch: Uint8Array | BatchParts, baseOffset: number, lease: BatchLease): void {
    const parts = batch instanceof Uint8Array ? [batch] : batch;
    assert(parts[0]!.length >= BATCH_HEADER_BYTES, "a batch's first part holds its header");
    patchBaseOffset(parts[0]!, 0, baseOffset);
    let position = this.#size;
    for (let i = 0; i < parts.length; i++) {
      const bytes = parts[i]!;
      // An empty part would be a chunk no read could land in.
      if (bytes.length === 0) continue;
      lease.retain();
      const continues = i > 0;
      this.#pushChunk(newChunk(position, bytes, bytes.length, lease, continues));
      position += bytes.length;
    }
  }

  #chunkFor(size: number): Chunk {
    const last = this.#chunks.at(-1);
    // A lent chunk is the lender's memory, exactly one batch: nothing else is ever written in it.
    const open = last !== undefined && last.lease === undefined;
    if (open && last.bytes.length - last.length >= size) return last;
    const pooled = size <= WRITE_CHUNK_BYTES ? chunkPool.pop() : undefined;
    const bytes = pooled ?? new Uint8Array(Math.max(size, WRITE_CHUNK_BYTES));
    const chunk = newChunk(this.#size, bytes, 0, undefined, false);
    this.#pushChunk(chunk);
    return chunk;
  }

  /** Adds a chunk at the end, counted against the budget (which may ask others to shed). */
  #pushChunk(chunk: Chunk): void {
    this.#chunks.push(chunk);
    this.#cacheBudget.take(this, chunk.bytes.length);
  }

  /** Drops the oldest chunk, written, back to the pool or its lender; returns its budget bytes. */
  #dropOldest(): number {
    const oldest = this.#chunks.shift()!;
    assert(oldest.position + oldest.length <= this.#writtenPosition, "only written bytes leave");
    this.#cacheBudget.release(this, oldest.bytes.length);
    recycle(oldest);
    return oldest.bytes.length;
  }

  /** Gives every chunk's bytes back to the budget (sealed, closed: the chunks are dropped). */
  #releaseChunks(chunks: readonly Chunk[]): void {
    let bytes = 0;
    for (const chunk of chunks) bytes += chunk.bytes.length;
    if (bytes > 0) this.#cacheBudget.release(this, bytes);
  }

  /**
   * Sheds written chunks, oldest first, until `bytes` of budget were given back or nothing
   * written is left in memory (the budget asks, least recently appended segments first). A
   * batch kept in parts leaves whole, so the cache still starts at a batch's start; the open
   * chunk goes too once written, and the next append takes a new one.
   */
  shedTailCache(bytes: number): void {
    let shed = 0;
    while (shed < bytes) {
      let last = 0;
      while (this.#chunks[last + 1]?.continues === true) last++;
      const lastChunk = this.#chunks[last];
      if (lastChunk === undefined) break;
      if (lastChunk.position + lastChunk.length > this.#writtenPosition) break;
      for (let i = 0; i <= last; i++) shed += this.#dropOldest();
    }
    this.#forgetJoinedBelowCache();
    assert(this.#chunks[0]?.continues !== true, "the tail cache starts at a batch's start");
  }

  /**
   * The joined copy lives no longer than its parts in the tail cache: a segment keeps at most
   * one batch twice, and only while the cache holds it.
   */
  #forgetJoinedBelowCache(): void {
    const cacheStart = this.#chunks[0]?.position ?? this.#size;
    if (this.#lastJoined !== undefined && this.#lastJoined.position < cacheStart) {
      this.#lastJoined = undefined;
    }
  }

  /**
   * Pushes views of the bytes not yet written, in order (they start at writtenPosition), onto
   * `buffers`, and returns where they end. The caller's list is reused round after round.
   */
  collectUnwritten(buffers: Uint8Array[]): number {
    for (const chunk of this.#chunks) {
      const chunkEnd = chunk.position + chunk.length;
      if (chunkEnd <= this.#writtenPosition) continue;
      const from = Math.max(0, this.#writtenPosition - chunk.position);
      buffers.push(chunk.bytes.subarray(from, chunk.length));
    }
    return this.#size;
  }

  /** Records that bytes up to `end` (offsets below `nextOffset`) are in the file. */
  markWritten(end: number, nextOffset: number): void {
    assert(end >= this.#writtenPosition, "the written range only grows");
    assert(end <= this.#size, "the written range stays inside the segment");
    this.#writtenPosition = end;
    this.#writtenNextOffset = nextOffset;
    let cached = 0;
    for (let i = 0; i < this.#chunks.length; i++) cached += heldBytes(this.#chunks, i);
    // The newest chunk stays (with the parts before it, if it continues a batch), and the cache
    // starts at a batch's start: the rest of a batch kept in parts leaves with its first part
    // (a read below the cache takes the whole batch from the file).
    let newest = this.#chunks.length - 1;
    while (newest > 0 && this.#chunks[newest]!.continues) newest--;
    while ((newest > 0 && cached > this.#tailCacheBytes) || this.#chunks[0]?.continues === true) {
      const oldest = this.#chunks[0]!;
      if (oldest.position + oldest.length > this.#writtenPosition) break;
      cached -= heldBytes(this.#chunks, 0);
      this.#dropOldest();
      newest--;
    }
    this.#forgetJoinedBelowCache();
    assert(this.#chunks[0]?.continues !== true, "the tail cache starts at a batch's start");
    // Bytes just written may be what lets segments past the budget shed (this one included).
    this.#cacheBudget.trim();
  }

  /** Makes everything written so far visible to readers (after its fsync, when required). */
  publish(): void {
    assert(this.#visiblePosition <= this.#writtenPosition, "visible never passes written");
    this.#visiblePosition = this.#writtenPosition;
    this.#visibleNextOffset = this.#writtenNextOffset;
  }

  /** Index bytes not yet in the index files, with the positions to write them at. */
  unpersistedIndexes(): { offset: Uint8Array; offsetAt: number; time: Uint8Array; timeAt: number } {
    const offset = this.offsetIndex.encode(this.#persistedOffsetEntries);
    const time = this.timeIndex.encode(this.#persistedTimeEntries);
    return {
      offset,
      offsetAt: this.#persistedOffsetEntries * 8,
      time,
      timeAt: this.#persistedTimeEntries * 12,
    };
  }

  /** Records that the index files hold the first entries of each index (all, by default). */
  markIndexesPersisted(
    offsetEntries = this.offsetIndex.count,
    timeEntries = this.timeIndex.count,
  ): void {
    assert(offsetEntries <= this.offsetIndex.count, "persisted offset entries exist");
    assert(timeEntries <= this.timeIndex.count, "persisted time entries exist");
    this.#persistedOffsetEntries = offsetEntries;
    this.#persistedTimeEntries = timeEntries;
  }

  /**
   * A view starting at `position` of up to `want` bytes (fewer at a chunk or visible end),
   * served from the tail cache, the mapping, or a positional read (into `scratch` when it is
   * given and large enough: the caller's to reuse). Never empty when position < visiblePosition.
   */
  viewAt(position: number, want: number, scratch?: Uint8Array): Uint8Array {
    const end = this.#visiblePosition;
    assert(position < end, "view inside the visible segment");
    if (this.#cold !== undefined) {
      const cold = this.#cold.view(position, want, end);
      if (cold !== undefined) return cold;
    }
    const mapping = this.#mapping ?? this.#mapIfSealed();
    if (mapping !== undefined) return mapping.subarray(position, Math.min(end, position + want));
    const cacheStart = this.#chunks[0]?.position ?? this.#size;
    if (position >= cacheStart) {
      for (let i = this.#chunks.length - 1; i >= 0; i--) {
        const chunk = this.#chunks[i]!;
        if (position < chunk.position) continue;
        const wantEnd = Math.min(end, position + want);
        if (chunk.position + chunk.length < wantEnd && this.#chunks[i + 1]?.continues === true) {
          // A window that holds the batch serves it without a copy (a catch-up read may have
          // mapped past it by the time it reaches the tail cache). A tail read never maps anew:
          // the collector counts every mapping's length as heap until it is collected, and a
          // tailing queue remapping every 16 MiB kept ~50 MB per partition live and drove full
          // collections (bench/RESULTS.md, issue 13, dly19).
          return this.#heldView(position, wantEnd) ?? this.#joinedView(i, position, wantEnd);
        }
        const stop = Math.min(end, chunk.position + chunk.length, position + want) - chunk.position;
        viewed(chunk);
        return chunk.bytes.subarray(position - chunk.position, stop);
      }
    }
    const stop = Math.min(end, cacheStart, position + want);
    const mapped = this.#heldView(position, stop) ?? this.#mapWindow(position, stop);
    if (mapped !== undefined) return mapped;
    try {
      return this.#io.readAt(this.fd, position, stop - position, scratch);
    } catch (error) {
      throw ioError(error, `reading ${this.path("log")} at position ${position}`);
    }
  }

  /**
   * Prepares a read of up to `want` bytes from `position` (visible): when those bytes are below
   * the tail cache and the page cache does not hold them, starts reading them on the thread
   * pool (cold_read.ts) and answers a promise that settles, never rejecting, once a read here
   * is served from memory. Undefined: read now (tail cache, page cache, or no cold reads).
   */
  prepareRead(position: number, want: number): Promise<void> | undefined {
    const direct = this.#direct;
    if (direct?.residentPages === undefined || this.#cold?.failed === true) return undefined;
    const end = this.#visiblePosition;
    if (position >= end) return undefined;
    const cacheStart = this.#chunks[0]?.position ?? this.#size;
    if (position >= cacheStart) return undefined;
    if (this.#cold?.holds(position, want, end) === true) return undefined;
    const stop = Math.min(end, cacheStart, position + want);
    const mapped = this.#sealed
      ? (this.#mapping ?? this.#mapIfSealed())?.subarray(position, stop)
      : (this.#heldView(position, stop) ?? this.#mapWindow(position, stop));
    if (mapped === undefined || !looksCold(direct, mapped)) return undefined;
    if (this.#cold === undefined) {
      this.#cold = new ColdReader(this.path("log"), this.#budget, direct);
      // From here on the segment is read cold where its pages are not in the page cache: its
      // mappings stop the kernel's readahead (see DirectWrites.adviseRandom).
      if (this.#mapping !== undefined) direct.adviseRandom?.(this.#mapping);
      for (const window of this.#windows) direct.adviseRandom?.(window.bytes);
    }
    return this.#cold.read(position, want, this.#writtenPosition);
  }

  /** A read that a cold-read buffer served stopped at `position`: reads ahead from there. */
  readAheadFrom(position: number): void {
    this.#cold?.readAheadFrom(position, Math.min(this.#writtenPosition, this.#visiblePosition));
  }

  /**
   * A copy of [position, end) from chunk `index` on, through the chunks that continue its
   * batch: readers take a batch as one view, and a batch kept in parts (see Chunk) has none.
   * Stops early where the parts end (the next batch starts a chunk of its own).
   */
  #joinedView(index: number, position: number, end: number): Uint8Array {
    let last = index;
    while (this.#chunks[last + 1]?.continues === true) last++;
    const lastChunk = this.#chunks[last]!;
    const stop = Math.min(end, lastChunk.position + lastChunk.length);
    const cached = this.#lastJoined;
    if (cached !== undefined && cached.position === position && cached.stop === stop) {
      return cached.bytes;
    }
    const joined = new Uint8Array(stop - position);
    for (let i = index; i <= last; i++) {
      const chunk = this.#chunks[i]!;
      const from = Math.max(position, chunk.position) - chunk.position;
      const to = Math.min(stop, chunk.position + chunk.length) - chunk.position;
      if (to > from) joined.set(chunk.bytes.subarray(from, to), chunk.position + from - position);
    }
    this.#lastJoined = { position, stop, bytes: joined };
    return joined;
  }

  /** A view of [position, end) from a window already mapped, or undefined. */
  #heldView(position: number, end: number): Uint8Array | undefined {
    const windows = this.#windows;
    for (let i = windows.length - 1; i >= 0; i--) {
      const window = windows[i]!;
      if (position < window.position) continue;
      if (end > window.position + window.bytes.length) continue;
      // Most recently used last, moved without an allocation (there are at most a few).
      for (let j = i; j < windows.length - 1; j++) windows[j] = windows[j + 1]!;
      windows[windows.length - 1] = window;
      return window.bytes.subarray(position - window.position, end - window.position);
    }
    return undefined;
  }

  /**
   * Maps a window holding [position, end) and answers a view of it, or undefined (a
   * positional read serves it) where the runtime maps nothing or the window would not pay:
   * a new window must serve at least a step from `position`, or the file must have grown a
   * step past every window (a reader just below the tail cache, as before windows).
   */
  #mapWindow(position: number, end: number): Uint8Array | undefined {
    if (!this.#mapSegments) return undefined;
    const start = position - (position % MAP_WINDOW_ALIGN_BYTES);
    const bytes = Math.max(ACTIVE_MAP_WINDOW_BYTES, end - start);
    let mappedEnd = 0;
    for (const window of this.#windows) {
      mappedEnd = Math.max(mappedEnd, window.position + window.bytes.length);
    }
    const serves = Math.min(start + bytes, this.#writtenPosition) - position;
    const grown = this.#writtenPosition - mappedEnd;
    if (serves < ACTIVE_MAP_STEP_BYTES && grown < ACTIVE_MAP_STEP_BYTES) return undefined;
    let mapping: Uint8Array | undefined;
    try {
      mapping = this.#io.mapFile(this.path("log"), { position: start, bytes });
    } catch {
      // A mapping is an optimisation; positional reads serve the segment without one.
      mapping = undefined;
    }
    if (mapping === undefined) return undefined;
    if (this.#cold !== undefined) this.#direct?.adviseRandom?.(mapping);
    assert(mapping.length <= bytes, "a window maps at most the bytes asked");
    this.#everMapped = true;
    if (this.#windows.length >= ACTIVE_MAP_WINDOWS_MAX) this.#windows.shift();
    this.#windows.push({ position: start, bytes: mapping });
    return end <= start + mapping.length
      ? mapping.subarray(position - start, end - start)
      : undefined;
  }

  #mapIfSealed(): Uint8Array | undefined {
    if (!this.#sealed || this.#size === 0 || !this.#mapSegments) return undefined;
    try {
      this.#mapping = this.#io.mapFile(this.path("log"));
      this.#everMapped ||= this.#mapping !== undefined;
      if (this.#mapping !== undefined && this.#cold !== undefined) {
        this.#direct?.adviseRandom?.(this.#mapping);
      }
    } catch {
      // A mapping is an optimisation; positional reads serve the segment without one.
      this.#mapping = undefined;
    }
    return this.#mapping;
  }

  /** Every byte in [position, end) is in a batch that passed its CRC check (see there). */
  verifiedEndFrom(position: number): number {
    return this.#verified.endFrom(position);
  }

  /** Records that the whole batches in [from, to) passed their CRC check. */
  markVerified(from: number, to: number): void {
    this.#verified.add(from, to);
  }

  /** Damage found at `position` after it was checked: the next read there checks again. */
  forgetVerified(position: number): void {
    this.#verified.forgetFrom(position, this.#size);
  }

  /**
   * Whether the batch an index entry names really starts where it says. Index files are
   * derived data checked only at their tail on open; a read checks the entry it uses.
   */
  entryHolds(entry: IndexEntry): boolean {
    if (entry.checked) return true;
    if (entry.position + BATCH_HEADER_BYTES > this.#visiblePosition) return false;
    const head = this.viewAt(entry.position, BATCH_HEADER_BYTES);
    if (head.length < BATCH_HEADER_BYTES || head[MAGIC_AT] !== MAGIC_V2) return false;
    if (baseOffsetAt(head, 0) !== this.baseOffset + entry.relativeOffset) return false;
    this.offsetIndex.markChecked(entry.entry);
    return true;
  }

  /** Where valid batches start again after damage at `position` (see findValidBatch). */
  findValidBatch(position: number, minOffset: number) {
    return findValidBatch(this.fd, this.#io, position + 1, this.#visiblePosition, minOffset);
  }

  /**
   * Replaces the indexes with ones rebuilt from the log, in memory and on disk; returns the
   * error when the files could not be written (see rewriteIndexFiles).
   */
  rebuildIndexes(): SluiceError | undefined {
    assert(!this.hasUnwritten, "indexes are rebuilt from written bytes only");
    const scan = scanSegment(this.fd, this.#io, {
      fileBytes: this.#visiblePosition,
      baseOffset: this.baseOffset,
      from: fullScanStart(this.baseOffset),
      sizeMax: MAX_BATCH_BYTES_MAX,
      indexIntervalBytes: this.#interval,
    });
    this.#cursor.offsetIndex = scan.offsetIndex;
    this.#cursor.timeIndex = scan.timeIndex;
    this.#cursor.bytesSinceIndexEntry = scan.bytesSinceIndexEntry;
    return this.rewriteIndexFiles();
  }

  /**
   * Writes both index files whole from the indexes in memory. Index files are derived data, so
   * a failure (a full disk) is returned, not thrown: the indexes in memory are right and serve
   * reads, the files stay marked unpersisted and are written again by the next checkpoint, and
   * an index file left stale is caught by its checks and rebuilt at the next open. Opening or
   * reading a log never needs free disk space.
   */
  rewriteIndexFiles(): SluiceError | undefined {
    this.markIndexesPersisted(0, 0);
    const { offset, time } = this.unpersistedIndexes();
    try {
      this.#io.writeFile(this.path("index"), offset);
      this.#io.writeFile(this.path("timeindex"), time);
    } catch (error) {
      return ioError(error, `writing the indexes of ${this.path("log")}`);
    }
    this.markIndexesPersisted();
    return undefined;
  }

  /** Makes the segment immutable once everything is written; it is then read by mapping. */
  seal(): void {
    assert(!this.hasUnwritten, "seal after every byte is written");
    try {
      this.trimPadding();
    } catch {
      // Left as it is: zero padding past the last batch is cut when the log is next opened
      // (log_open.ts), and readers never go past the segment's size.
    }
    this.#appender?.close();
    this.#appender = undefined;
    this.#sealed = true;
    segmentsSealedCount++;
    this.#windows = [];
    this.#releaseChunks(this.#chunks);
    for (const chunk of this.#chunks) recycle(chunk);
    this.#chunks = [];
    this.#lastJoined = undefined;
  }

  /**
   * Forgets everything at or past `position`: unwritten chunks, index entries, and (when the
   * file holds bytes there) the file itself. Used to roll back a failed write and in recovery.
   */
  truncateTo(position: number, nextOffset: number): void {
    assert(!this.#sealed, "only an active segment is truncated");
    this.#io.truncate(this.fd, position);
    this.#cold?.truncated();
    this.#padded = false;
    this.#verified.truncateTo(position);
    this.#windows = [];
    this.#lastJoined = undefined;
    this.#releaseChunks(this.#chunks.filter((chunk) => chunk.position >= position));
    this.#chunks = this.#chunks.filter((chunk) => chunk.position < position);
    const last = this.#chunks.at(-1);
    if (last !== undefined) last.length = Math.min(last.length, position - last.position);
    this.#size = position;
    this.#writtenPosition = Math.min(this.#writtenPosition, position);
    this.#visiblePosition = Math.min(this.#visiblePosition, position);
    this.#nextOffset = nextOffset;
    this.#writtenNextOffset = Math.min(this.#writtenNextOffset, nextOffset);
    this.#visibleNextOffset = Math.min(this.#visibleNextOffset, nextOffset);
    this.offsetIndex.truncateToPosition(position);
    this.timeIndex.truncateToRelativeOffset(nextOffset - this.baseOffset);
    this.#persistedOffsetEntries = Math.min(this.#persistedOffsetEntries, this.offsetIndex.count);
    this.#persistedTimeEntries = Math.min(this.#persistedTimeEntries, this.timeIndex.count);
  }

  /**
   * Closes the file and drops the segment's own views. Returns whether its file was ever
   * mapped: only then may a view the collector has not freed yet still hold the file's blocks
   * after it is deleted (see releaseDeletedMappings in io.ts).
   */
  close(): boolean {
    this.#releaseChunks(this.#chunks);
    this.#chunks = [];
    this.#lastJoined = undefined;
    this.#mapping = undefined;
    this.#windows = [];
    this.#appender?.close();
    this.#appender = undefined;
    this.#cold?.close();
    this.#cold = undefined;
    this.#file.close();
    return this.#everMapped;
  }

  /** Removes the segment's files. Safe while views of a mapping are alive: unlink, not truncate. */
  deleteFiles(): void {
    for (const extension of SEGMENT_FILES) {
      fs.rmSync(this.path(extension), { force: true });
    }
  }

  /**
   * Removes a sealed segment's files without holding the caller for the device: each is renamed
   * to NAME.deleted at once, the log file first (an open lists `.log` files only, and removes
   * `.deleted` ones, so from the first rename on a crash never brings the segment back), then
   * unlinked on the thread pool. Unlinking a 1 GiB segment took 230-290 ms here (ext4 mounted
   * with `discard` frees and discards its extents inside the unlink): retention deleting a
   * segment of each of 16 partitions on the event loop would have held the broker ~4 s.
   * Settles when the files are gone; a failed unlink goes to `onError` (the file stays, named
   * .deleted, until the next open removes it). Safe while views of a mapping are alive.
   */
  deleteFilesLater(onError: (error: unknown) => void): Promise<void> {
    const doomed: string[] = [];
    for (const extension of SEGMENT_FILES) {
      const path = this.path(extension);
      try {
        fs.renameSync(path, `${path}${DELETED_SUFFIX}`);
        doomed.push(`${path}${DELETED_SUFFIX}`);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
        // Not renamed: removed here, as before.
        fs.rmSync(path, { force: true });
      }
    }
    return Promise.all(
      doomed.map((path) => fs.promises.rm(path, { force: true }).catch(onError)),
    ).then(() => undefined);
  }
}

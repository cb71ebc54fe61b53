// Cold reads: segment bytes the page cache does not hold, read ahead of the read that serves
// them, on the thread pool, with O_DIRECT, into block-aligned buffers the segment then serves
// views of (Segment.viewAt).
//
// Why: a read below the tail cache is served from a mapping of the file, and touching a page
// the page cache does not hold blocks the event loop for the device, a page-fault's readahead
// at a time. Segments written direct (direct_io.ts) are not in the page cache at all, so a
// catch-up consumer of them read ~470 MB/s through the mapping (bun, 4 MiB steps, cold 2 GiB
// file), and every other connection of the broker waited while it did; the same file read
// with O_DIRECT on the thread pool, 4 MiB a read, two in flight, ran 1.4-1.6 GB/s with the
// event loop free (bench/RESULTS.md, "Cold reads").
//
// How: the server asks each partition of a fetch (and a queue fetch) where its read would
// start (PartitionLog.prepareRead); when that is below the tail cache and any sampled page of
// the range is not resident (mincore on the segment's mapping), the segment starts a read of
// the range here and the fetch is answered once it is done, from the buffer, through the usual
// read path (batches are checked as always: CRC once per process, log_read.ts). A read served
// from a buffer starts the next one where it stopped (read-ahead), so a catch-up consumer's
// next fetch finds its bytes read while the last answer was being written to its socket. A
// segment read cold has its mappings advised MADV_RANDOM (DirectWrites.adviseRandom).
//
// Bounds: one read in flight per segment, at most COLD_BUFFERS_PER_SEGMENT buffers per
// segment and COLD_READ_BYTES_MAX in the process (least recently used dropped first); their
// memory is reused once no answer holds a view of it (ColdMemory below), and up to
// IDLE_BYTES_MAX of it waits idle for the next reads. A failed read
// (EIO, EINVAL from a file system that takes O_DIRECT writes but not reads) turns the
// segment's cold reads off: the mapping serves it, and reports any error, as before.
// Correctness does not depend on any of it: bytes below a segment's written position never
// change (truncateTo drops the buffers and discards reads in flight), O_DIRECT reads are
// coherent with the page cache, and a buffer only serves whole batches it holds.

import fs from "node:fs";
import { BATCH_HEADER_BYTES, assert, batchSizeAt, IndexedSet } from "../record/mod.ts";
import { DIRECT_BLOCK_BYTES, type DirectWrites } from "./direct_io.ts";
import type { BudgetedFile, FileBudget } from "./file_budget.ts";

/** Bytes of cold-read buffers the process keeps (least recently used dropped first). */
export const COLD_READ_BYTES_MAX = 256 * 1024 * 1024;
/** The most one cold read takes (a fetch's partition share is at most 64 MiB). */
export const COLD_READ_BYTES_PER_READ_MAX = 16 * 1024 * 1024;
/** The least one cold read takes: a smaller read would spend a thread-pool trip on little. */
export const COLD_READ_BYTES_MIN = 1024 * 1024;
/** Buffers a segment keeps: the one being served, the one read ahead, one more reader's. */
export const COLD_BUFFERS_PER_SEGMENT = 3;
/**
 * How a range is checked for residency: one mincore over it, looking at every this-many-th
 * page. Pages come and go in readahead-sized runs, so a sample tells; a read's first pages
 * alone do not (a mapping's read-around brings in the pages just past the last read).
 */
const RESIDENCY_SAMPLE_STRIDE_PAGES = 8;

/**
 * A cold read's bytes: the file's from `position` (a block boundary). Batches lie end to end
 * in it from `batchStart` (where the read was asked to start) to `wholeEnd`, the end of the
 * last batch it holds whole.
 */
type ColdBuffer = {
  reader: ColdReader;
  memory: ColdMemory;
  position: number;
  bytes: Uint8Array;
  batchStart: number;
  wholeEnd: number;
  /** Its place in buffersInUse (record/indexed_set.ts). */
  indexedAt: number;
};

/**
 * The memory of cold reads, reused: a buffer returns to the idle pool once its reader dropped
 * it and no view of it can still be held. Views are only handed out between `beginColdViews`
 * and `endColdViews` (reads whose views go into fetch answers, or are used before they
 * return); the server counts the views it puts in an answer (`retainColdView`) and tells when
 * its socket took them (`coldViewWritten`). A view that never comes back (an answer dropped
 * with its connection, a TLS socket that may keep what it is given) keeps its memory out of
 * the pool for good, and the collector frees it. Fresh 4 MiB buffers per read, 27 GB of them over
 * bench:tcp's two catch-up passes, left the broker's end-to-end p99 at 10,000 msg/s after them
 * ~1.5x worse than reused ones (bench/RESULTS.md, "Cold reads").
 */
type ColdMemory = AnsweredMemory & { bytes: Uint8Array };

/**
 * Memory whose views go out in answers and are counted while they are out, by its buffer: the
 * cold-read buffers here, and the tail-cache chunks of segment.ts (`lendMemory`). `framed`:
 * views in answers that no socket has taken yet; `dropped`: its owner let go of it; `idle` is
 * called once both hold (dropped, nothing framed): the memory may then be reused.
 */
export type AnsweredMemory = {
  framed: number;
  dropped: boolean;
  idle: (memory: AnsweredMemory) => void;
};

const memoryOf = new WeakMap<ArrayBufferLike, AnsweredMemory>();
/**
 * Whether any counted memory was made: until then every view is another's and the server's
 * per-view calls (each answer's views, each chunk its sockets wrote) skip the map lookup.
 */
let coldMemoryMade = false;

/**
 * Counts `memory`'s views (those of `buffer`) from now on, as the cold-read buffers' are: the
 * views of it that reads answer in a scope opened with `beginColdViews({ lendTail: true })`
 * must be counted with `retainColdView` and given back by `coldViewWritten`, or used before the
 * scope closes.
 */
export function lendMemory(buffer: ArrayBufferLike, memory: AnsweredMemory): void {
  memoryOf.set(buffer, memory);
  coldMemoryMade = true;
}

/**
 * Stops counting `buffer`'s views: its memory is about to serve as another's (a pooled chunk
 * taken up by a new one), which counts its own views from scratch if it is lent.
 */
export function forgetLentMemory(buffer: ArrayBufferLike): void {
  memoryOf.delete(buffer);
}
/**
 * Idle memory, the most recently given back last. Capacities are multiples of
 * COLD_MEMORY_STEP_BYTES and vary with the reads (a fetch's partition share, block alignment,
 * a segment's end), so a read takes the smallest idle memory that fits it, up to
 * IDLE_FIT_FACTOR times its size, and memory given back to a full pool pushes the oldest out.
 * A pool keyed by exact capacity, capped by bytes, filled up with sizes no later read asked
 * for and then sent what came back to the collector: bench:tcp's two catch-up passes made the
 * memory of about half their cold reads fresh (6,700 buffers, 33 GB, in one run), and the
 * broker's resident size grew by 2 GB over them (the allocator keeps what it freed:
 * ops/gc_tuning.ts).
 */
const idleMemory: ColdMemory[] = [];
let idleBytes = 0;
const COLD_MEMORY_STEP_BYTES = 1024 * 1024;
/**
 * Idle memory kept for reuse (more goes to the collector, oldest first). A catch-up fetch's
 * answer gives back all its partitions' buffers at once when its socket took it (16 of ~5 MiB
 * in bench:tcp): with 64 MiB kept, 27 % of bench:tcp's cold reads still made their memory
 * fresh and the broker's resident size grew 1.4 GB over its catch-up passes; with 192 MiB, 1 %
 * (103 of 11,429) and 0.6 GB.
 */
const IDLE_BYTES_MAX = 192 * 1024 * 1024;
/** The most a read's memory may exceed what it needs: twice (a 2 MiB read in 4 MiB). */
const IDLE_FIT_FACTOR = 2;

/** Between beginColdViews and endColdViews: reads may be served from cold-read buffers. */
let coldViewsOpen = false;
/** Between beginColdViews({ lendTail: true }) and endColdViews: tail-cache views are lent. */
let tailViewsLent = false;

/**
 * Opens a scope, closed by `endColdViews` (in a `finally`), in which reads may be served from
 * cold-read buffers: every view such a read answers must either be used before the scope
 * closes or be counted with `retainColdView` and given back by `coldViewWritten`. With
 * `lendTail`, views of the tail cache are lent on the same terms (segment.ts reuses a chunk
 * whose views all came back), where otherwise a chunk a reader saw is never reused: for scopes
 * whose every retained view goes into an answer frame as it is, so that its socket's
 * `coldViewWritten` comes once per retained view.
 */
export function beginColdViews(options?: { lendTail?: boolean }): void {
  coldViewsOpen = true;
  tailViewsLent = options?.lendTail === true;
}

export function endColdViews(): void {
  coldViewsOpen = false;
  tailViewsLent = false;
}

/** True in a scope whose reads may lend views of the tail cache (see beginColdViews). */
export function tailViewsLendable(): boolean {
  return tailViewsLent;
}

/** `view` goes into an answer: its memory is not reused until `coldViewWritten(view)`. */
export function retainColdView(view: Uint8Array): void {
  if (!coldMemoryMade) return;
  const memory = memoryOf.get(view.buffer);
  if (memory !== undefined) memory.framed++;
}

/** A socket took `view` (retained before): its memory may be reused once nothing holds it. */
export function coldViewWritten(view: Uint8Array): void {
  if (!coldMemoryMade) return;
  const memory = memoryOf.get(view.buffer);
  if (memory === undefined) return;
  // Never below 0: a view written that was never retained (an answer built outside the
  // rules) keeps its memory out of reuse rather than freeing it early for another view.
  if (memory.framed === 0) return;
  memory.framed--;
  if (memory.framed === 0 && memory.dropped) memory.idle(memory);
}

function takeMemory(direct: DirectWrites, length: number): ColdMemory {
  const capacity = Math.ceil(length / COLD_MEMORY_STEP_BYTES) * COLD_MEMORY_STEP_BYTES;
  let fit = -1;
  for (let i = idleMemory.length - 1; i >= 0; i--) {
    const size = idleMemory[i]!.bytes.length;
    if (size < capacity || size > capacity * IDLE_FIT_FACTOR) continue;
    if (fit < 0 || size < idleMemory[fit]!.bytes.length) fit = i;
    if (size === capacity) break;
  }
  if (fit >= 0) {
    const reused = idleMemory.splice(fit, 1)[0]!;
    idleBytes -= reused.bytes.length;
    reused.dropped = false;
    coldReadCounts.memoryReused++;
    return reused;
  }
  const memory: ColdMemory = {
    bytes: direct.alignedBuffer(capacity),
    framed: 0,
    dropped: false,
    idle: giveBack,
  };
  lendMemory(memory.bytes.buffer, memory);
  coldReadCounts.memoryMade++;
  return memory;
}

function giveBack(answered: AnsweredMemory): void {
  const memory = answered as ColdMemory;
  const capacity = memory.bytes.length;
  if (capacity > IDLE_BYTES_MAX) return;
  while (idleBytes + capacity > IDLE_BYTES_MAX) idleBytes -= idleMemory.shift()!.bytes.length;
  idleMemory.push(memory);
  idleBytes += capacity;
}

/** The buffer's reader let go of it: its memory is reused once no answer holds a view of it. */
function release(memory: ColdMemory): void {
  memory.dropped = true;
  if (memory.framed === 0) giveBack(memory);
}

/**
 * Every buffer of every reader, least recently used first. Not a Set: its members are made per
 * read and moved at each use, and what a JavaScriptCore Set deleted, and the tables it rebuilt,
 * outlived young collections (record/indexed_set.ts).
 */
const buffersInUse = new IndexedSet<ColdBuffer>();
let bufferBytesInUse = 0;

function keep(buffer: ColdBuffer): void {
  buffersInUse.add(buffer);
  bufferBytesInUse += buffer.bytes.length;
  for (const oldest of buffersInUse.values()) {
    if (bufferBytesInUse <= COLD_READ_BYTES_MAX || oldest === buffer) break;
    oldest.reader.drop(oldest);
  }
}

function forget(buffer: ColdBuffer): void {
  if (!buffersInUse.delete(buffer)) return;
  bufferBytesInUse -= buffer.bytes.length;
  release(buffer.memory);
}

/** Bytes held in cold-read buffers by the process (for tests and metrics). */
export function coldReadBytesHeld(): number {
  return bufferBytesInUse;
}

/**
 * Cold reads served, started and failed by the process, and the buffers' memory made fresh or
 * reused (for tests and metrics).
 */
export const coldReadCounts = { started: 0, served: 0, failed: 0, memoryMade: 0, memoryReused: 0 };

/**
 * Whether any page of `view` (of a mapping) is not in the page cache (sampled:
 * RESIDENCY_SAMPLE_STRIDE_PAGES). Not a share: the kernel's readahead for a mapping keeps a
 * few hundred KiB past the last page read resident, so a read of a cold range that starts
 * where the last one stopped finds its first pages in, and the rest would fault in one
 * readahead window at a time.
 */
export function looksCold(direct: DirectWrites, view: Uint8Array): boolean {
  const { resident, sampled } = direct.residentPages!(view, RESIDENCY_SAMPLE_STRIDE_PAGES);
  return resident < sampled;
}

/** One segment's cold reads: its O_DIRECT descriptor, buffers and the read in flight. */
export class ColdReader {
  #direct: DirectWrites;
  #file: BudgetedFile;
  #buffers: ColdBuffer[] = [];
  #inFlight: { batchStart: number; to: number; done: Promise<void> } | undefined;
  /** Bumped by `truncated` and `close`: a read started before answers into nothing. */
  #generation = 0;
  #closed = false;
  #failed = false;
  /** The last view was served from a buffer (see `readAheadFrom`). */
  #served = false;
  #lastReadBytes = COLD_READ_BYTES_MIN;

  constructor(path: string, budget: FileBudget, direct: DirectWrites) {
    this.#direct = direct;
    this.#file = budget.open(path, direct.readFlags);
  }

  get failed(): boolean {
    return this.#failed;
  }

  /**
   * A view from `position` (a batch's start) of up to `want` bytes, none at or past `end`,
   * from a buffer that holds the batch there whole; undefined where none does.
   */
  view(position: number, want: number, end: number): Uint8Array | undefined {
    if (!coldViewsOpen) return undefined;
    const buffers = this.#buffers;
    for (let i = buffers.length - 1; i >= 0; i--) {
      const buffer = buffers[i]!;
      const from = position - buffer.position;
      if (from < 0 || from >= buffer.bytes.length) continue;
      const stop = Math.min(end, position + want);
      let view: Uint8Array | undefined;
      if (buffer.batchStart <= position && position < buffer.wholeEnd) {
        // Batches lie end to end from batchStart: [position, wholeEnd) is whole batches.
        view = buffer.bytes.subarray(from, Math.min(stop, buffer.wholeEnd) - buffer.position);
      } else {
        view = wholeBatches(buffer.bytes, from, stop - buffer.position);
      }
      if (view === undefined) continue;
      buffersInUse.moveToBack(buffer);
      this.#served = true;
      coldReadCounts.served++;
      return view;
    }
    return undefined;
  }

  /** Whether the buffers hold the batches in [position, min(end, position + want)) whole. */
  holds(position: number, want: number, end: number): boolean {
    return this.#wholeUpTo(position) >= Math.min(end, position + want);
  }

  /**
   * From `position` (a batch's start), the end of the batches the buffers hold whole, one
   * after another; `position` itself when no buffer holds its batch.
   */
  #wholeUpTo(position: number): number {
    let at = position;
    for (let moved = true; moved; ) {
      moved = false;
      for (const buffer of this.#buffers) {
        if (buffer.batchStart <= at && at < buffer.wholeEnd) {
          at = buffer.wholeEnd;
          moved = true;
        }
      }
    }
    return at;
  }

  /**
   * Reads what the buffers lack of the batches in [position, position + want) (`position` a
   * batch's start), cut at `fileEnd` (bytes in the file, a batch boundary); settles (never
   * rejects) when it is there, or when the read failed and the mapping is to serve it
   * instead. A read in flight that starts at or before the first batch lacking is waited
   * for, not repeated; another one is waited for first (one in flight per segment).
   */
  read(position: number, want: number, fileEnd: number): Promise<void> {
    assert(!this.#closed, "a closed segment is not read");
    const stop = Math.min(fileEnd, position + want);
    const lacking = this.#wholeUpTo(position);
    if (lacking >= stop) return Promise.resolve();
    const inFlight = this.#inFlight;
    if (inFlight !== undefined) {
      if (inFlight.batchStart <= lacking && lacking < inFlight.to) return inFlight.done;
      return inFlight.done.then(() => {
        if (this.#closed || this.#failed) return;
        return this.read(position, want, fileEnd);
      });
    }
    const bytes = Math.min(COLD_READ_BYTES_PER_READ_MAX, Math.max(COLD_READ_BYTES_MIN, want));
    const from = lacking - (lacking % DIRECT_BLOCK_BYTES);
    const to = Math.min(fileEnd, lacking + bytes);
    const length = Math.ceil((to - from) / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES;
    this.#lastReadBytes = bytes;
    const generation = this.#generation;
    const memory = takeMemory(this.#direct, length);
    const buffer = memory.bytes.subarray(0, length);
    coldReadCounts.started++;
    const done = this.#file
      .use((fd) => readInto(fd, buffer, from))
      .then(
        (read) => {
          // Past fileEnd the file may hold zero padding (direct_io.ts) or nothing yet.
          const bytes = buffer.subarray(0, Math.max(0, Math.min(read, to - from)));
          const wholeEnd = from + wholeEndIn(bytes, lacking - from);
          if (generation !== this.#generation || wholeEnd <= lacking) {
            release(memory);
            return;
          }
          this.#add({
            reader: this,
            memory,
            position: from,
            bytes,
            batchStart: lacking,
            wholeEnd,
            indexedAt: -1,
          });
        },
        () => {
          release(memory);
          coldReadCounts.failed++;
          this.#failed = true;
        },
      )
      .finally(() => {
        this.#inFlight = undefined;
        if (this.#closed) this.#file.close();
      });
    this.#inFlight = { batchStart: lacking, to, done };
    return done;
  }

  /**
   * After a read that a buffer served and that stopped at `position`: reads on from there
   * (the next read of a catch-up consumer), unless a buffer or the read in flight has it.
   */
  readAheadFrom(position: number, fileEnd: number): void {
    if (!this.#served) return;
    this.#served = false;
    if (this.#closed || this.#failed || this.#inFlight !== undefined) return;
    if (position >= fileEnd || this.holds(position, this.#lastReadBytes, fileEnd)) return;
    void this.read(position, this.#lastReadBytes, fileEnd);
  }

  #add(buffer: ColdBuffer): void {
    if (this.#buffers.length >= COLD_BUFFERS_PER_SEGMENT) this.drop(this.#buffers[0]!);
    this.#buffers.push(buffer);
    keep(buffer);
  }

  /** Drops one buffer (the process is over COLD_READ_BYTES_MAX, or this segment keeps enough). */
  drop(buffer: ColdBuffer): void {
    const index = this.#buffers.indexOf(buffer);
    if (index !== -1) this.#buffers.splice(index, 1);
    forget(buffer);
  }

  /** The segment was cut: buffers and the read in flight may hold bytes it no longer has. */
  truncated(): void {
    this.#generation++;
    for (const buffer of this.#buffers) forget(buffer);
    this.#buffers = [];
  }

  /** Drops every buffer and closes the descriptor (once the read in flight has settled). */
  close(): void {
    if (this.#closed) return;
    this.truncated();
    this.#closed = true;
    if (this.#inFlight === undefined) this.#file.close();
  }
}

/** Where the batches of `bytes` from `from` (a batch's start) stop being whole. */
function wholeEndIn(bytes: Uint8Array, from: number): number {
  let at = from;
  while (at + BATCH_HEADER_BYTES <= bytes.length) {
    const size = batchSizeAt(bytes, at);
    if (size < BATCH_HEADER_BYTES || at + size > bytes.length) break;
    at += size;
  }
  return at;
}

/** A view of the whole batches of `bytes` from `from` up to `stop`; undefined if none is whole. */
function wholeBatches(bytes: Uint8Array, from: number, stop: number): Uint8Array | undefined {
  const end = wholeEndIn(bytes.subarray(0, Math.min(stop, bytes.length)), from);
  return end === from ? undefined : bytes.subarray(from, end);
}

/** Fills `buffer` from `position` of `fd` on the thread pool; answers the bytes read. */
async function readInto(fd: number, buffer: Uint8Array, position: number): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const read = await new Promise<number>((resolve, reject) => {
      fs.read(fd, buffer, filled, buffer.length - filled, position + filled, (error, count) =>
        error === null ? resolve(count) : reject(error),
      );
    });
    if (read === 0) break;
    filled += read;
    // O_DIRECT moves whole blocks; a short read not on one is the end of the file.
    if (filled % DIRECT_BLOCK_BYTES !== 0) break;
  }
  return filled;
}

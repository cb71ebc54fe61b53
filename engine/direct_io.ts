// Direct segment appends: the flusher writes an active segment's new bytes with O_DIRECT from
// reused, block-aligned staging buffers instead of through the page cache.
//
// Why: a buffered append dirties page-cache pages that drop-behind (page_cache.ts) then frees,
// at the broker's write rate. On the VMs sluice is benchmarked on, freed memory is handed back
// to the host by the kernel's free page reporting every ~2 s, and each pass stalled every
// process of a run at once for 20-80 ms (bench/RESULTS.md, "Free page reporting"); without
// drop-behind the stalls went, but every new page-cache page was one the host faulted in
// (broker CPU +50 %). A direct write takes no page-cache page and frees none: a throwaway
// append of 1 GiB in 1 MiB writes cost 82-124 ms of system CPU per GiB direct against
// 320-343 ms buffered with drop-behind. Readers near the tail are served by the tail cache
// (segment.ts) as before; reads below it go to the file (mapping or pread), which the kernel
// keeps coherent with direct writes.
//
// The file format does not change. A direct write covers whole blocks, so:
//
//   file:  ... | block k-1 | block k                      |
//                          |<- head ->|<- new bytes ->|000|   (zero padding up to the block)
//                                     ^ position          ^ end of the segment's bytes
//
// - the first block of a write starts at or below `position`: the bytes of that block before
//   `position` (the head, already in the file) are written again, unchanged; the segment
//   gives them from its tail cache, which holds its newest bytes, or reads them back from the
//   file when it no longer holds them (after a reopen, or once its budget shed them). No copy
//   is kept per segment: at 100,000 partitions a 4 KiB head each would be 400 MB. Rewriting
//   unchanged bytes is safe on power loss: each sector holds the same bytes before and
//   after, and bytes already acknowledged are never changed.
// - the last block is padded with zeros, so the file may be up to DIRECT_BLOCK_BYTES - 1 bytes
//   longer than the segment. The next write overwrites the padding. Sealing a segment and a
//   clean close cut the file to its exact length; after a crash, opening the log cuts zero
//   padding quietly (log_open.ts), as it cuts any torn tail.
//
// Where O_DIRECT cannot be had (Deno, another OS, a file system that refuses it, no FFI for
// the alignment), `loadDirectWrites` answers undefined and segments are written buffered.

import fs from "node:fs";
import { join } from "node:path";
import { assert } from "../record/mod.ts";
import type { BudgetedFile, FileBudget } from "./file_budget.ts";
import { WRITE_PIECE_BYTES_MAX, writeInFlight, writevOnce } from "./io.ts";

/**
 * The unit of every direct write: position, length and buffer address are multiples of it.
 * 4 KiB covers the logical block size of the disks and file systems sluice runs on (512 B or
 * 4 KiB) and the page size.
 */
export const DIRECT_BLOCK_BYTES = 4096;
/** Bytes a staging buffer holds: one write piece (see WRITE_PIECE_BYTES_MAX in io.ts). */
const STAGING_BYTES = WRITE_PIECE_BYTES_MAX;
/**
 * Staging buffers the process keeps for reuse at most (64 MiB). Below that it keeps as many as
 * were in use at once (WRITE_PIECES_IN_FLIGHT per segment written in a round: 32 for 16 busy
 * partitions): a buffer made anew is fresh memory, which the copy into it fills at a fraction of
 * the speed of a reused one on the VMs sluice is measured on (bench/RESULTS.md: with a cap of 8
 * the broker spent 1.47-1.52 ms of CPU per MB published at 16 partitions, with 64 1.32-1.37).
 */
const STAGING_POOL_MAX = 64;
assert(STAGING_BYTES % DIRECT_BLOCK_BYTES === 0, "pieces are whole blocks");

/** Which flush rounds are written direct (PartitionLogOptions.directRounds). */
export type DirectRounds = "synced" | "all";

/** What direct writes need from the runtime: aligned memory and the open flags. */
export interface DirectWrites {
  /** A new buffer of `bytes` bytes whose address is a multiple of DIRECT_BLOCK_BYTES. */
  alignedBuffer(bytes: number): Uint8Array;
  /** The flags a segment's direct descriptor is opened with (write-only, O_DIRECT). */
  readonly openFlags: number;
  /** The flags of a segment's cold-read descriptor (read-only, O_DIRECT; cold_read.ts). */
  readonly readFlags: number;
  /**
   * Of the pages `view` (of a file mapping) spans, every `stride`-th from the first: how many
   * were looked at and how many of those are in the page cache (mincore). Absent where it
   * cannot be asked, and then there are no cold reads (cold_read.ts).
   */
  residentPages?(view: Uint8Array, stride: number): { resident: number; sampled: number };
  /**
   * Turns the kernel's readahead off for a mapping (madvise MADV_RANDOM), where cold reads
   * are on: a fault on a mapped page then reads that page alone. With readahead, a fault read
   * up to the device's readahead size (8 MiB on the disks sluice is benchmarked on) into the
   * page cache on the event loop, and left the next read's range resident, so it was served
   * through the mapping again at page-cache-fill speed (~400 MB/s) instead of read cold.
   */
  adviseRandom?(mapping: Uint8Array): void;
}

type BunPtr = (view: Uint8Array) => number;
type BunFfi = {
  ptr: BunPtr;
  dlopen: (
    path: string,
    symbols: Record<string, { args: string[]; returns: string }>,
  ) => {
    symbols: {
      mincore: (address: number, length: number, vector: Uint8Array) => number;
      madvise: (address: number, length: number, advice: number) => number;
    };
  };
};

/**
 * Direct writes where they work, probed once per data directory: Bun on Linux (bun:ffi's `ptr`
 * gives the address to align to), with a file system that takes an O_DIRECT write in `dir`.
 * Undefined anywhere else: segments are then written through the page cache.
 */
export async function loadDirectWrites(dir: string): Promise<DirectWrites | undefined> {
  if (process.platform !== "linux") return undefined;
  if ((globalThis as { Bun?: unknown }).Bun === undefined) return undefined;
  const O_DIRECT = fs.constants.O_DIRECT;
  if (typeof O_DIRECT !== "number" || O_DIRECT === 0) return undefined;
  let ffi: BunFfi;
  try {
    ffi = (await import("bun:ffi" as string)) as BunFfi;
  } catch {
    return undefined;
  }
  const { ptr } = ffi;
  const direct: DirectWrites = {
    alignedBuffer(bytes) {
      const raw = new Uint8Array(bytes + DIRECT_BLOCK_BYTES);
      const skip = (DIRECT_BLOCK_BYTES - (ptr(raw) % DIRECT_BLOCK_BYTES)) % DIRECT_BLOCK_BYTES;
      return raw.subarray(skip, skip + bytes);
    },
    openFlags: fs.constants.O_WRONLY | O_DIRECT,
    readFlags: fs.constants.O_RDONLY | O_DIRECT,
    ...residency(ffi),
  };
  return probe(dir, direct) ? direct : undefined;
}

/**
 * `residentPages` and `adviseRandom` through libc's mincore and madvise, or neither where libc
 * cannot be loaded. mincore's answer vector is reused: one byte per page, grown as needed.
 */
function residency(ffi: BunFfi): Pick<DirectWrites, "residentPages" | "adviseRandom"> {
  let mincore: (address: number, length: number, vector: Uint8Array) => number;
  let madvise: (address: number, length: number, advice: number) => number;
  try {
    const libc = ffi.dlopen("libc.so.6", {
      mincore: { args: ["u64", "u64", "ptr"], returns: "i32" },
      madvise: { args: ["u64", "u64", "i32"], returns: "i32" },
    });
    mincore = libc.symbols.mincore;
    madvise = libc.symbols.madvise;
  } catch {
    return {};
  }
  const MADV_RANDOM = 1;
  let vector = new Uint8Array(64);
  // The answer, refilled per call (read before the next).
  const answer = { resident: 0, sampled: 0 };
  return {
    residentPages(view, stride) {
      answer.resident = 0;
      answer.sampled = 0;
      if (view.length === 0) return answer;
      const address = ffi.ptr(view);
      const start = address - (address % DIRECT_BLOCK_BYTES);
      const length = address + view.length - start;
      const pages = Math.ceil(length / DIRECT_BLOCK_BYTES);
      if (vector.length < pages) vector = new Uint8Array(pages);
      const failed = mincore(start, length, vector) !== 0;
      for (let i = 0; i < pages; i += stride) {
        answer.sampled++;
        // A failure (ENOMEM: not a mapping) counts as resident: the mapping serves the read.
        if (failed || (vector[i]! & 1) === 1) answer.resident++;
      }
      return answer;
    },
    adviseRandom(mapping) {
      if (mapping.length === 0) return;
      const address = ffi.ptr(mapping);
      // A mapping starts on a page; an answer other than 0 leaves readahead on (a hint).
      if (address % DIRECT_BLOCK_BYTES === 0) madvise(address, mapping.length, MADV_RANDOM);
    },
  };
}

/** Whether a direct write of one block to a new file in `dir` succeeds. */
function probe(dir: string, direct: DirectWrites): boolean {
  const path = join(dir, `.direct-probe-${process.pid}.tmp`);
  let fd: number | undefined;
  try {
    fd = fs.openSync(path, fs.constants.O_CREAT | fs.constants.O_TRUNC | direct.openFlags, 0o600);
    return fs.writeSync(fd, direct.alignedBuffer(DIRECT_BLOCK_BYTES), 0, DIRECT_BLOCK_BYTES, 0) > 0;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(path, { force: true });
  }
}

/** Staging buffers no write holds, shared by every appender of the process. */
const stagingPool: Uint8Array[] = [];
/** Staging buffers held by writes now, and the most held at once (capped). */
let stagingOut = 0;
let stagingOutPeak = 0;

function takeStaging(direct: DirectWrites): Uint8Array {
  stagingOut++;
  if (stagingOut > stagingOutPeak) stagingOutPeak = Math.min(stagingOut, STAGING_POOL_MAX);
  return stagingPool.pop() ?? direct.alignedBuffer(STAGING_BYTES);
}

function returnStaging(buffer: Uint8Array): void {
  stagingOut--;
  if (stagingPool.length + stagingOut < stagingOutPeak) stagingPool.push(buffer);
}

const EMPTY = new Uint8Array(0);

/**
 * Copies bytes [from, from + into.length) of the concatenation `head` + `sources` into `into`
 * (a staging buffer's piece), zeros where the concatenation ends first.
 */
function fillPiece(
  head: Uint8Array,
  sources: readonly Uint8Array[],
  from: number,
  into: Uint8Array,
): void {
  let filled = 0;
  let skip = from;
  const take = (source: Uint8Array): boolean => {
    if (skip >= source.length) {
      skip -= source.length;
      return false;
    }
    const part = source.subarray(skip, skip + (into.length - filled));
    into.set(part, filled);
    filled += part.length;
    skip = 0;
    return filled === into.length;
  };
  if (!take(head)) {
    for (const source of sources) if (take(source)) break;
  }
  into.fill(0, filled);
}

/**
 * The direct writer of one active segment: a descriptor opened with O_DIRECT, counted in the
 * open-files budget and closed when idle like any segment descriptor.
 */
export class DirectAppender {
  #direct: DirectWrites;
  #file: BudgetedFile;
  /** The file's bytes [position, position + length), already written (a write's head). */
  #written: (position: number, length: number) => Uint8Array;
  #writing = false;

  constructor(
    path: string,
    budget: FileBudget,
    direct: DirectWrites,
    written: (position: number, length: number) => Uint8Array,
  ) {
    this.#direct = direct;
    this.#written = written;
    this.#file = budget.open(path, direct.openFlags);
  }

  /**
   * Writes `buffers` at `position` (the segment's written end) in whole blocks, the last one
   * padded with zeros, in pieces of STAGING_BYTES (io.ts writeInFlight: a few on the thread
   * pool at once; on a failure it waits for those in flight and rejects with the first error,
   * and the caller then truncates).
   */
  async write(buffers: readonly Uint8Array[], position: number): Promise<void> {
    assert(!this.#writing, "one direct write at a time per segment");
    this.#writing = true;
    const start = position - (position % DIRECT_BLOCK_BYTES);
    const head = this.#headFor(start, position);
    let total = head.length;
    for (const buffer of buffers) total += buffer.length;
    const padded = Math.ceil(total / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES;
    const fd = this.#file.pin();
    // Each piece is copied into its staging buffer as its write starts, so only the pieces in
    // flight hold one.
    const writePiece = async (index: number) => {
      const from = index * STAGING_BYTES;
      const staging = takeStaging(this.#direct);
      try {
        const piece = staging.subarray(0, Math.min(STAGING_BYTES, padded - from));
        fillPiece(head, buffers, from, piece);
        await this.#writePiece(fd, piece, start + from);
      } finally {
        returnStaging(staging);
      }
    };
    try {
      await writeInFlight(Math.ceil(padded / STAGING_BYTES), writePiece);
    } finally {
      this.#file.unpin();
      this.#writing = false;
    }
  }

  /** The file's bytes [start, position): the first block's head, written again unchanged. */
  #headFor(start: number, position: number): Uint8Array {
    const length = position - start;
    if (length === 0) return EMPTY;
    const head = this.#written(start, length);
    if (head.length !== length) {
      throw new Error(
        `direct write: read ${head.length} of the ${length} bytes before ${position}`,
      );
    }
    return head;
  }

  /** Writes one piece whole; a short write goes on from the last whole block it wrote. */
  async #writePiece(fd: number, piece: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < piece.length) {
      const written = await writevOnce(fd, [piece.subarray(done)], position + done);
      const whole = written - (written % DIRECT_BLOCK_BYTES);
      if (whole === 0) {
        const message = `direct write of ${piece.length - done} bytes wrote ${written}`;
        throw Object.assign(new Error(message), { code: "EIO" });
      }
      done += whole;
    }
  }

  /** Closes the direct descriptor for good (the segment was sealed or closed). */
  close(): void {
    this.#file.close();
  }
}

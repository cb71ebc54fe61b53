// The byte side of a queue fetch: which whole batches go out beside the acquired ranges. A
// fetch never decodes a record: it reads batch headers (base offset, last offset delta, size)
// to know which batches hold the acquired offsets, and returns views (subarrays) of those
// batches as the log handed them out. A batch may hold records that were not acquired (before
// `next`, or held by another member): the ranges say which records are the fetcher's.
//
//   partition log:  [b0: 0..9][b1: 10..19][b2: 20..29][b3: 30..39]
//   acquired:             3          12..14            25..39
//   views:          [b0]      [b1]           [b2 b3]   (adjacent batches of one read merge)

import { assert, baseOffsetAt, batchSizeAt, lastOffsetDeltaAt } from "../record/mod.ts";
import type { ReadResult } from "./partition_log.ts";

const MIB = 1024 * 1024;
export const FETCH_RECORDS_MAX = 100_000;
/** Kafka's max.poll.records. */
export const FETCH_RECORDS_DEFAULT = 500;
export const FETCH_BYTES_MAX = 64 * MIB;
export const FETCH_BYTES_DEFAULT = 1 * MIB;

export type QueueFetchOptions = {
  /** Records to acquire at most (default 500). */
  maxRecords?: number;
  /** Bytes of batches to return at most; the first batch always goes (default 1 MiB). */
  maxBytes?: number;
};

/** What one fetch may still take, shared by its partitions. */
export type FetchBudget = { records: number; bytes: number; batches: number };

function checkLimit(what: string, value: unknown, fallback: number, max: number): number {
  const resolved = value ?? fallback;
  if (typeof resolved !== "number" || !Number.isSafeInteger(resolved)) {
    throw new TypeError(`${what} must be an integer: ${String(resolved)}`);
  }
  if (resolved < 1 || resolved > max) {
    throw new RangeError(`${what} ${resolved} is not in [1, ${max}]`);
  }
  return resolved;
}

export function fetchLimits(options: QueueFetchOptions): { maxRecords: number; maxBytes: number } {
  if (typeof options !== "object" || options === null) {
    throw new TypeError("fetch options must be an object");
  }
  return {
    maxRecords: checkLimit(
      "maxRecords",
      options.maxRecords,
      FETCH_RECORDS_DEFAULT,
      FETCH_RECORDS_MAX,
    ),
    maxBytes: checkLimit("maxBytes", options.maxBytes, FETCH_BYTES_DEFAULT, FETCH_BYTES_MAX),
  };
}

type Entry = { base: number; last: number; view: Uint8Array };

/** Whole batches gathered for one partition of a fetch: no duplicates, in offset order. */
export class BatchViews {
  #entries: Entry[] = [];

  covers(offset: number): boolean {
    return this.#entries.some((entry) => entry.base <= offset && offset <= entry.last);
  }

  has(base: number): boolean {
    return this.#entries.some((entry) => entry.base === base);
  }

  add(base: number, last: number, view: Uint8Array): void {
    assert(!this.has(base), "a batch is added once");
    this.#entries.push({ base, last, view });
  }

  /** The views in offset order; batches adjacent in one buffer become one view. */
  views(): Uint8Array[] {
    const sorted = this.#entries.sort((a, b) => a.base - b.base);
    const views: Uint8Array[] = [];
    for (const { view } of sorted) {
      const previous = views.at(-1);
      const adjacent =
        previous !== undefined &&
        previous.buffer === view.buffer &&
        previous.byteOffset + previous.length === view.byteOffset;
      if (adjacent) {
        views[views.length - 1] = new Uint8Array(
          previous.buffer,
          previous.byteOffset,
          previous.length + view.length,
        );
      } else {
        views.push(view);
      }
    }
    return views;
  }
}

/** What a single-batch read needs of a log (PartitionLog, or BatchAtReads in front of one). */
export type BatchSource = { read(offset: number, maxBytes: number): { views: Uint8Array[] } };

/**
 * The reads of one partition during one fetch, in front of its log: the due-time check, the
 * TTL check and the admission each ask for the batch holding an offset (`read(offset, 1)`),
 * usually the same batch, and each read of a batch kept in parts joins it by a copy
 * (segment.ts). The last batch such a read found answers again. Lives for one synchronous
 * fetch turn: the log cannot change under it.
 */
export class BatchAtReads implements BatchSource {
  readonly #log: BatchSource;
  #batch: Uint8Array | undefined;
  #base = 0;
  #last = -1;

  constructor(log: BatchSource) {
    this.#log = log;
  }

  read(offset: number, maxBytes: number): { views: Uint8Array[] } {
    const batch = this.#batch;
    if (maxBytes === 1 && batch !== undefined && this.#base <= offset && offset <= this.#last) {
      return { views: [batch] };
    }
    const read = this.#log.read(offset, maxBytes);
    const first = read.views[0];
    if (maxBytes === 1 && first !== undefined) {
      this.#batch = first.subarray(0, batchSizeAt(first, 0));
      this.#base = baseOffsetAt(first, 0);
      this.#last = this.#base + lastOffsetDeltaAt(first, 0);
      assert(this.#base <= offset && offset <= this.#last, "a read returns the offset's batch");
    }
    return read;
  }
}

/**
 * Adds the batch holding `offset` when the budget allows (the fetch's first batch always
 * does); false when it would not fit, and nothing is taken.
 */
export function admitBatchOf(
  log: BatchSource,
  offset: number,
  views: BatchViews,
  budget: FetchBudget,
): boolean {
  if (views.covers(offset)) return true;
  // CRCs are checked once per process (log_read.ts); damage found is never delivered.
  const read = log.read(offset, 1);
  const first = read.views[0];
  assert(first !== undefined, "a read below the high watermark returns a batch");
  const batch = first.subarray(0, batchSizeAt(first, 0));
  if (budget.batches > 0 && batch.length > budget.bytes) return false;
  const base = baseOffsetAt(batch, 0);
  views.add(base, base + lastOffsetDeltaAt(batch, 0), batch);
  budget.bytes -= batch.length;
  budget.batches++;
  return true;
}

/**
 * Takes the batches of a read made at `next` while they fit the budget and start at or
 * before `lastWanted`. Returns the last offset the taken batches cover (next - 1 for none).
 */
export function takeNewBatches(
  read: ReadResult,
  next: number,
  lastWanted: number,
  views: BatchViews,
  budget: FetchBudget,
): number {
  let covered = next - 1;
  for (const view of read.views) {
    for (let at = 0; at < view.length; ) {
      const size = batchSizeAt(view, at);
      const base = baseOffsetAt(view, at);
      const last = base + lastOffsetDeltaAt(view, at);
      if (base > lastWanted) return covered;
      if (!views.has(base)) {
        if (budget.batches > 0 && size > budget.bytes) return covered;
        views.add(base, last, view.subarray(at, at + size));
        budget.bytes -= size;
        budget.batches++;
      }
      covered = last;
      at += size;
    }
  }
  return covered;
}

// The background scrubber: re-checks the CRC-32C of every batch of every sealed segment, at a
// bounded rate, over and over. Reads check a batch once per process (engine/verified_ranges.ts),
// so a bit that rots on disk after that check would be served to consumers (whose own batch
// CRC checks catch it, as Kafka's consumers do); the scrubber finds such damage within one
// pass, forgets the segment's checks from there on so that the next read checks again and
// reports CORRUPT_BATCH, and warns. Batches it finds whole count as checked, so reads of
// segments it has passed cost no hash at all.
//
//   every tickMs:  budget = scrubBytesPerSec × tickMs / 1000
//   while budget > 0:  check the batch at the cursor ─► advance (or warn and skip the segment)
//   at the end of the last sealed segment of the last log, start over with a fresh list.
//
// The active segment is left out: its appended bytes were checked on append and it is still
// being written. The hashing runs on the event loop in slices of about one tick's budget, so a
// slice costs at most about budget / 5 GB/s of CPU (0.3 ms at the default rate). The reading
// does not: bytes the page cache lacks are read first on the thread pool, with O_DIRECT, as a
// consumer's cold reads are (Segment.prepareRead, cold_read.ts), and the slice resumes once
// they are in memory. Reading them through the segment's mapping instead blocked the event
// loop in page faults: once 16 sealed segments of a busy queue were scrubbed, ~4,700 major
// faults a second held the broker to ~55 % of a core and its queue fell behind for good
// (bench/RESULTS.md, "The scrubber and the event loop"). Where cold reads are not available
// (no O_DIRECT or mincore, e.g. Deno) the mapping serves, as before.

import { BATCH_HEADER_BYTES, batchSizeAt, checkBatch } from "../record/mod.ts";
import { beginColdViews, endColdViews } from "./cold_read.ts";
import { MAX_BATCH_BYTES_MAX } from "./log_config.ts";
import type { PartitionLog } from "./partition_log.ts";
import { type Segment, segmentsSealed } from "./segment.ts";

/** Default scrub rate: a 1 TB log is re-checked about every 18 hours, for ~0.3% of one core. */
export const SCRUB_BYTES_PER_SEC_DEFAULT = 16 * 1024 * 1024;
/** How often a slice of scrubbing runs. */
export const SCRUB_TICK_MS = 100;
/**
 * Ticks skipped after a slice found nothing to check (no sealed segment anywhere): listing the
 * segments of every log is not free with many partitions, so an idle scrubber looks again
 * only every 10 seconds, or at the next tick after a segment is sealed.
 */
export const SCRUB_IDLE_TICKS = 100;

export type ScrubberOptions = {
  /** Bytes checked per second at most; 0 turns the scrubber off. */
  bytesPerSec: number;
  /** The logs to scrub, asked again at the start of each pass. */
  logs: () => PartitionLog[];
  onWarning: (message: string) => void;
};

/**
 * Where the scrubber is: a sealed segment of a log and a byte position in it, and how far from
 * there memory was last found to hold the segment's bytes in this slice.
 */
type ScrubCursor = {
  log: PartitionLog;
  segment: Segment;
  position: number;
  inMemoryTo: number;
  /**
   * The position a cold read was last made for: a slice resuming there checks the batch with
   * whatever memory holds (a buffer, else the mapping), so that a batch no read can hold whole
   * (over COLD_READ_BYTES_PER_READ_MAX) or a buffer dropped meanwhile cannot loop.
   */
  readFor: number;
};

export class Scrubber {
  #options: ScrubberOptions;
  #pending: { log: PartitionLog; segment: Segment }[] = [];
  #cursor: ScrubCursor | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #idleTicks = 0;
  /** A slice waits for a cold read: ticks do nothing until it has run. */
  #waiting = false;
  /** segmentsSealed() when the scrubber went idle: a segment sealed since ends the idle. */
  #sealedWhenIdle = 0;
  /** The damaged position last reported per segment. */
  #reported = new WeakMap<Segment, number>();
  /** Bytes checked since the scrubber was made, and damaged batches found. */
  bytesChecked = 0;
  damageFound = 0;

  constructor(options: ScrubberOptions) {
    if (!Number.isSafeInteger(options.bytesPerSec) || options.bytesPerSec < 0) {
      throw new RangeError(
        `scrubBytesPerSec ${options.bytesPerSec} must be a non-negative integer`,
      );
    }
    this.#options = options;
  }

  start(): void {
    if (this.#options.bytesPerSec === 0 || this.#timer !== undefined) return;
    const budget = Math.max(1, Math.floor((this.#options.bytesPerSec * SCRUB_TICK_MS) / 1000));
    this.#timer = setInterval(() => this.#tick(budget), SCRUB_TICK_MS);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  #tick(budget: number): void {
    if (this.#waiting) return;
    if (this.#idleTicks > 0) {
      // Idle because nothing was sealed: a count compared, not a listing of every log.
      if (segmentsSealed() === this.#sealedWhenIdle) {
        this.#idleTicks--;
        return;
      }
      this.#idleTicks = 0;
    }
    this.#runSlice(budget);
  }

  /** A tick's slice; one that stops for a cold read runs what is left of it once it is in. */
  #runSlice(budget: number): void {
    const sealed = segmentsSealed();
    let slice: { checked: number; readFirst?: Promise<void> };
    beginColdViews();
    try {
      // Views of cold-read buffers are hashed and dropped before the scope closes.
      slice = this.#checkUpTo(budget, true);
    } finally {
      endColdViews();
    }
    const { checked, readFirst } = slice;
    if (readFirst !== undefined) {
      this.#waiting = true;
      void readFirst.then(() => {
        this.#waiting = false;
        if (this.#timer !== undefined) this.#runSlice(Math.max(1, budget - checked));
      });
      return;
    }
    if (checked === 0) {
      this.#idleTicks = SCRUB_IDLE_TICKS;
      this.#sealedWhenIdle = sealed;
    }
  }

  /** True while it skips ticks because the last slice found no sealed segment anywhere. */
  get idle(): boolean {
    return this.#idleTicks > 0;
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Checks whole batches until `budgetBytes` are checked or every sealed segment has been
   * visited once in this call; returns the bytes checked. A batch larger than the budget is
   * checked whole (at most MAX_BATCH_BYTES_MAX).
   */
  step(budgetBytes: number): number {
    return this.#checkUpTo(budgetBytes, false).checked;
  }

  /**
   * `step`; with `readCold` it stops before a batch whose bytes are not in memory yet, having
   * started their read, and answers that read as `readFirst` (it never rejects; a failed read
   * leaves the mapping to serve, and report, the bytes). The caller opens the cold-views scope.
   */
  #checkUpTo(
    budgetBytes: number,
    readCold: boolean,
  ): { checked: number; readFirst?: Promise<void> } {
    let readFirst: Promise<void> | undefined;
    let checked = 0;
    let fresh = false;
    // What memory held at the last slice may have been dropped since: asked again.
    if (this.#cursor !== undefined) this.#cursor.inMemoryTo = 0;
    // Nothing is deleted while this synchronous call runs, so a segment still in its log now
    // stays there until the call returns.
    if (this.#cursor !== undefined && !this.#stillOpen(this.#cursor)) this.#cursor = undefined;
    while (checked < budgetBytes) {
      const cursor = this.#cursor ?? this.#nextSegment();
      if (cursor === undefined) {
        if (fresh) break;
        this.#pending = this.#sealedSegments();
        fresh = true;
        if (this.#pending.length === 0) break;
        continue;
      }
      try {
        const done = this.#checkOne(
          cursor,
          readCold ? Math.max(1, budgetBytes - checked) : undefined,
        );
        if (typeof done !== "number") {
          readFirst = done;
          break;
        }
        checked += done;
      } catch (error) {
        // A read that failed (an I/O error): the segment is skipped in this pass; a consumer
        // reading it gets the same error.
        this.#cursor = undefined;
        this.#options.onWarning(
          `Scrub of log ${cursor.log.name} skipped segment ${cursor.segment.baseOffset}: ` +
            (error instanceof Error ? error.message : String(error)),
        );
      }
    }
    this.bytesChecked += checked;
    return { checked, readFirst };
  }

  /** A segment deleted or closed since the pass began: its descriptor may name another file. */
  #stillOpen(cursor: { log: PartitionLog; segment: Segment }): boolean {
    return cursor.log.sealedSegments().includes(cursor.segment);
  }

  #sealedSegments(): { log: PartitionLog; segment: Segment }[] {
    const found: { log: PartitionLog; segment: Segment }[] = [];
    for (const log of this.#options.logs()) {
      for (const segment of log.sealedSegments()) found.push({ log, segment });
    }
    return found.reverse();
  }

  #nextSegment(): ScrubCursor | undefined {
    let next = this.#pending.pop();
    while (next !== undefined && !this.#stillOpen(next)) next = this.#pending.pop();
    this.#cursor =
      next === undefined ? undefined : { ...next, position: 0, inMemoryTo: 0, readFor: -1 };
    return this.#cursor;
  }

  /**
   * Checks the batch at the cursor and moves past it; returns the bytes it covered. With
   * `readAhead` (bytes the slice may still check), bytes the page cache lacks are read cold
   * first: it then answers that read instead, the cursor unmoved.
   */
  #checkOne(cursor: ScrubCursor, readAhead?: number): number | Promise<void> {
    const { log, segment, position } = cursor;
    if (position >= segment.visiblePosition) {
      this.#cursor = undefined;
      return 0;
    }
    const known = log.corruptions.find(
      (c) => c.segmentBaseOffset === segment.baseOffset && c.fromPosition <= position,
    );
    if (known !== undefined && position < known.toPosition) {
      // Damage found at open: reported then, and reads into it fail already.
      cursor.position = known.toPosition;
      return 0;
    }
    const readCold = readAhead !== undefined && cursor.readFor !== position;
    if (readCold && position + BATCH_HEADER_BYTES > cursor.inMemoryTo) {
      // Undefined when memory holds the bytes (the tail cache, the page cache, a cold buffer).
      const want = Math.max(BATCH_HEADER_BYTES, readAhead);
      const read = segment.prepareRead(position, want);
      if (read !== undefined) {
        cursor.readFor = position;
        return read;
      }
      cursor.inMemoryTo = position + want;
    }
    const head = segment.viewAt(position, BATCH_HEADER_BYTES);
    const size = head.length < BATCH_HEADER_BYTES ? 0 : batchSizeAt(head, 0);
    const whole = size < BATCH_HEADER_BYTES || size > MAX_BATCH_BYTES_MAX ? head : undefined;
    if (whole === undefined && readCold && position + size > cursor.inMemoryTo) {
      // A batch larger than what was read ahead for it is read whole first.
      const read = segment.prepareRead(position, size);
      if (read !== undefined) {
        cursor.readFor = position;
        return read;
      }
      cursor.inMemoryTo = position + size;
    }
    const view = whole ?? segment.viewAt(position, size);
    const problem = checkBatch(view, 0, view.length, {
      sizeMax: MAX_BATCH_BYTES_MAX,
      checkCrc: true,
    });
    if (problem !== "ok") {
      this.#reportDamage(cursor, problem);
      return view.length;
    }
    segment.markVerified(position, position + size);
    cursor.position = position + size;
    return size;
  }

  #reportDamage(cursor: ScrubCursor, problem: string): void {
    const { log, segment, position } = cursor;
    const served = segment.verifiedEndFrom(position) > position;
    segment.forgetVerified(position);
    this.#cursor = undefined;
    // Each damaged place is reported once, not on every pass.
    if (this.#reported.get(segment) === position) return;
    this.#reported.set(segment, position);
    this.damageFound++;
    this.#options.onWarning(
      `Scrub of log ${log.name} found a damaged batch (${problem}) at position ${position} of ` +
        `segment ${segment.baseOffset}${served ? ", after it had passed its check" : ""}; ` +
        "reads from there report CORRUPT_BATCH",
    );
  }
}

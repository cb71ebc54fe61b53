// Max length in bytes of a queue (RabbitMQ's `x-max-length-bytes`): the bytes of its ready
// records it keeps, with the same overflow modes as `maxLength` (queue_maxlen.ts).
//
// A record's size is its share of the batch that holds it in the log, as stored: the batch's
// bytes (header, keys, values, headers, framing; compressed when compressed) divided evenly
// over the offsets it spans, rounded so that the shares of a batch's records add up to the
// batch exactly (offsets [a, b) of a batch of S bytes spanning n offsets from `base` weigh
// floor(S*(b-base)/n) - floor(S*(a-base)/n)). RabbitMQ counts message bodies only; sluice
// counts what the records take on disk, which it can sum from batch headers alone.
//
// Memory is independent of the backlog: per partition, one running sum of the bytes of the
// offsets [next, scanned) and the two ends. The sum follows the log: batches appended since
// the last count are added by walking their headers (no record decoded), and records a fetch
// or a drop took from `next` are subtracted by walking theirs, so each batch is walked once
// as it arrives and once as it leaves. Nothing is persisted: after a restart the first count
// walks the backlog's batch headers once. Records given back (available in the window, below
// `next`) are looked up one by one when counted: their number is bounded by the window.
// Drop-head checks a bound first (the last sum plus the bytes the log grew by since), so a
// queue under its limit walks new batches only once the bound says it might not be.
//
//     log:     [ floor ... next ) [ next ........ scanned ) [ scanned ... end )
//     ready:     given back          sum (running)            walked at the next count

import { baseOffsetAt, batchSizeAt, lastOffsetDeltaAt } from "../record/mod.ts";
import type { PartitionLog } from "./partition_log.ts";
import type { OffsetRun, QueueCursor } from "./queue_cursor.ts";

/** The largest maxLengthBytes accepted. */
export const MAX_LENGTH_BYTES_MAX = Number.MAX_SAFE_INTEGER;
/** Bytes asked of the log per read while walking batch headers: the first, and at most. */
const WALK_READ_BYTES_FIRST = 16 * 1024;
const WALK_READ_BYTES = 1024 * 1024;
/** Rounds of one drop; a larger excess waits for the next append, fetch or sweep. */
const DROP_ROUNDS_MAX = 1_024;

type Cursor = Pick<
  QueueCursor,
  | "partition"
  | "availableCount"
  | "availableOffsets"
  | "room"
  | "next"
  | "readyHead"
  | "expireReadyHead"
  | "takeNew"
>;

/** The bytes of offsets [from, to) of one batch at `base` spanning `span` offsets, `size` bytes. */
function shareOf(size: number, base: number, span: number, from: number, to: number): number {
  const upTo = (offset: number) => Math.floor((size * (offset - base)) / span);
  return upTo(to) - upTo(from);
}

/**
 * Calls `visit(base, span, size)` for every batch holding offsets in [from, to), in order,
 * until it answers false. Offsets below the log start are gone (retention) and weigh nothing;
 * a batch the log cannot read (damaged) ends the walk, so what lies past it weighs nothing.
 */
function walkBatches(
  log: PartitionLog,
  from: number,
  to: number,
  visit: (base: number, span: number, size: number) => boolean,
): void {
  let offset = Math.max(from, log.logStartOffset);
  // One offset: the batch holding it is enough (a read always returns its first batch whole).
  let readBytes = to - from === 1 ? 1 : WALK_READ_BYTES_FIRST;
  while (offset < to && offset < log.highWatermark) {
    let result: ReturnType<PartitionLog["read"]>;
    try {
      result = log.read(offset, readBytes);
    } catch {
      return;
    }
    if (result.views.length === 0 || result.nextOffset <= offset) return;
    for (const view of result.views) {
      for (let at = 0; at < view.length; ) {
        const size = batchSizeAt(view, at);
        const base = baseOffsetAt(view, at);
        if (base >= to || !visit(base, lastOffsetDeltaAt(view, at) + 1, size)) return;
        at += size;
      }
    }
    offset = result.nextOffset;
    readBytes = Math.min(readBytes * 2, WALK_READ_BYTES);
  }
}

/** Bytes of offsets [from, to) of `log`. */
export function bytesBetween(log: PartitionLog, from: number, to: number): number {
  let bytes = 0;
  walkBatches(log, from, to, (base, span, size) => {
    const first = Math.max(from, base);
    const end = Math.min(to, base + span);
    if (first < end) bytes += shareOf(size, base, span, first, end);
    return true;
  });
  return bytes;
}

/** The running sum of one partition: bytes of offsets [base, scanned). */
class PartitionBytes {
  base = 0;
  scanned = 0;
  sum = 0;
  /** The log's size in bytes when `scanned` was last moved. */
  logBytes = 0;

  /**
   * At least the bytes past `next`, without walking: the sum before subtracting what `next`
   * passed, plus every byte the log grew by since the last walk. Infinity when the log shrank.
   */
  upperBound(log: PartitionLog): number {
    const grown = log.sizeBytes - this.logBytes;
    return grown < 0 ? Number.POSITIVE_INFINITY : this.sum + grown;
  }

  /** Bytes of the offsets from `next` up to `end`, brought up to date. */
  pastNext(log: PartitionLog, next: number, end: number): number {
    // Records retention deleted cannot be walked out again: count afresh from `next`.
    const gone = this.base < log.logStartOffset;
    if (gone || next < this.base || next >= this.scanned) {
      this.base = next;
      this.scanned = next;
      this.sum = 0;
    } else if (next > this.base) {
      this.sum -= bytesBetween(log, this.base, next);
      this.base = next;
    }
    if (end > this.scanned) {
      const logBytes = log.sizeBytes;
      this.sum += bytesBetween(log, this.scanned, end);
      this.scanned = end;
      this.logBytes = logBytes;
    }
    return this.sum;
  }
}

/** Ready bytes of one queue: a running sum per partition. */
export class ReadyBytes {
  readonly #parts: PartitionBytes[];

  constructor(partitions: number) {
    this.#parts = Array.from({ length: partitions }, () => new PartitionBytes());
  }

  /** Ready bytes of one partition: given back, plus those past `next` below `end`. */
  of(cursor: Cursor, log: PartitionLog, end = log.highWatermark): number {
    let bytes = this.#parts[cursor.partition]!.pastNext(log, cursor.next, end);
    if (cursor.availableCount > 0) {
      for (const offset of cursor.availableOffsets()) {
        bytes += bytesBetween(log, offset, offset + 1);
      }
    }
    return bytes;
  }

  /** Whether the queue may hold more than `maxBytes` ready bytes (false: it surely does not). */
  #mayExceed(cursors: readonly Cursor[], logs: readonly PartitionLog[], maxBytes: number) {
    let bound = 0;
    for (const cursor of cursors) {
      const log = logs[cursor.partition]!;
      bound += this.#parts[cursor.partition]!.upperBound(log);
      for (const offset of cursor.availableOffsets()) {
        bound += bytesBetween(log, offset, offset + 1);
      }
      if (bound > maxBytes) return true;
    }
    return false;
  }

  /** Ready bytes of the queue, counting visible records (below each high watermark). */
  total(cursors: readonly Cursor[], logs: readonly PartitionLog[]): number {
    let bytes = 0;
    for (const cursor of cursors) bytes += this.of(cursor, logs[cursor.partition]!);
    return bytes;
  }

  /**
   * How many of the records a reject-publish queue takes now, the bytes of the first k of them
   * being `prefixBytes(k)` (k = 0..count): as many as keep the queue at or below `maxBytes`.
   * Records appended but not yet visible (below the log end offset) count as ready.
   */
  publishRoom(
    maxBytes: number,
    cursors: readonly Cursor[],
    logs: readonly PartitionLog[],
    count: number,
    prefixBytes: (k: number) => number,
  ): number {
    let ready = 0;
    for (const cursor of cursors) {
      const log = logs[cursor.partition]!;
      ready += this.of(cursor, log, log.logEndOffset);
    }
    let taken = 0;
    while (taken < count && ready + prefixBytes(taken + 1) <= maxBytes) taken++;
    return taken;
  }

  /** The partition with the most ready bytes (or the lowest level with some) a drop can reach. */
  #fullest(
    cursors: readonly Cursor[],
    logs: readonly PartitionLog[],
    lowestFirst: boolean,
  ): Cursor | undefined {
    let best: Cursor | undefined;
    let bestBytes = 0;
    for (const cursor of cursors) {
      const log = logs[cursor.partition]!;
      const reachable =
        cursor.availableCount > 0 || (cursor.room > 0 && log.highWatermark > cursor.next);
      const bytes = this.of(cursor, log);
      if (reachable && bytes > 0 && lowestFirst) return cursor;
      if (reachable && bytes > bestBytes) {
        best = cursor;
        bestBytes = bytes;
      }
    }
    return best;
  }

  /**
   * Takes the oldest ready records off the queue until its ready bytes are at most
   * `maxBytes`: given back ones first, then from `next`, from the partition with the most
   * ready bytes, handed to `drop` as queue_maxlen.ts's dropHead does. Returns the records
   * dropped; fewer than needed when the windows have no room (later rounds take the rest).
   */
  dropHead(
    maxBytes: number,
    cursors: readonly Cursor[],
    logs: readonly PartitionLog[],
    drop: (partition: number, runs: OffsetRun[]) => void,
    lowestFirst = false,
  ): number {
    let dropped = 0;
    if (!this.#mayExceed(cursors, logs, maxBytes)) return 0;
    for (let round = 0; round < DROP_ROUNDS_MAX; round++) {
      let excess = this.total(cursors, logs) - maxBytes;
      if (excess <= 0) break;
      const cursor = this.#fullest(cursors, logs, lowestFirst);
      if (cursor === undefined) break;
      const log = logs[cursor.partition]!;
      const runs: OffsetRun[] = [];
      for (let head = cursor.readyHead(); head !== undefined && excess > 0; ) {
        excess -= bytesBetween(log, head, head + 1);
        cursor.expireReadyHead(head, runs);
        head = cursor.readyHead();
      }
      const take = excess > 0 ? this.#newToDrop(cursor, log, excess) : 0;
      if (take > 0) cursor.takeNew(take, () => true, runs);
      let count = 0;
      for (const run of runs) count += run.last - run.first + 1;
      if (count === 0) break;
      dropped += count;
      drop(cursor.partition, runs);
    }
    return dropped;
  }

  /** How many records from `next` weigh at least `excess` bytes (bounded by the window room). */
  #newToDrop(cursor: Cursor, log: PartitionLog, excess: number): number {
    const limit = Math.min(cursor.next + cursor.room, log.highWatermark);
    let bytes = 0;
    let offset = cursor.next;
    walkBatches(log, cursor.next, limit, (base, span, size) => {
      while (bytes < excess && offset < Math.min(limit, base + span)) {
        if (offset >= base) bytes += shareOf(size, base, span, offset, offset + 1);
        offset++;
      }
      return bytes < excess;
    });
    return offset - cursor.next;
  }
}

// Priority queues (RabbitMQ's `x-max-priority`): a queue declared with `priorities` levels
// (2-10) reads a topic with one partition per level, partition p holding level p's records.
// The log keeps each level in publish order (FIFO within a level) and durably, whatever the
// backlog, and the queue's memory stays one window per level: the sort of the whole backlog
// is done once, at publish, by the partition a record is appended to.
//
//   publish (ExchangePublish, the default exchange)      the queue's topic
//   record  sluice-priority: 7 ─► level min(7, levels-1) ─► partition 3  ████████ ← served first
//   record  (no header)       ─► level 0                ─► partition 2  ███
//                                                          partition 1  █████
//                                                          partition 0  ██████████ ← served last
//
// A fetch serves the partitions highest level first (given back records of a level before its
// new ones, as in every queue), so within one fetch and across fetches a lower level gets
// records only when every higher level has none ready (or its window is full of held records).
// With `priorityRatio` R, a lower level with ready records is not starved: once R records have
// been handed out from levels above the lowest level that has ready records, the next fetch
// starts at that level (then goes on highest first), and the count starts again.
//
// Costs: a batch whose records carry different priorities is split into one batch per level
// (decoded and re-encoded, as a batch split by routing is); a uniform batch is appended whole
// to its level. One partition (files, a window of `maxInFlight`) per level. A plain Produce to
// the topic chooses the level by choosing the partition; the header is read by ExchangePublish.

import type { PartitionLog } from "./partition_log.ts";
import type { QueueCursor } from "./queue_cursor.ts";

export const PRIORITIES_MIN = 2;
/** RabbitMQ recommends at most 10 levels (each costs a partition here, resources there). */
export const PRIORITIES_MAX = 10;
/** Records from higher levels in a row, at most, before a waiting lower level is served. */
export const PRIORITY_RATIO_MAX = 1_000_000;
/** The largest priority a header may give (AMQP's octet); larger values are unreadable. */
const PRIORITY_VALUE_MAX = 255;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/** The level of a record whose priority header holds `value` (null or absent: level 0). */
export function priorityLevel(value: Uint8Array | null | undefined, levels: number): number {
  if (value === null || value === undefined || value.length === 0 || value.length > 3) return 0;
  let priority = 0;
  for (const byte of value) {
    if (byte < DIGIT_0 || byte > DIGIT_9) return 0;
    priority = priority * 10 + (byte - DIGIT_0);
  }
  if (priority > PRIORITY_VALUE_MAX) return 0;
  return Math.min(priority, levels - 1);
}

type Cursor = Pick<QueueCursor, "availableCount" | "next">;

/** The fetch order of a priority queue's partitions, and the anti-starvation count. */
export class PriorityOrder {
  readonly #levels: number;
  readonly #ratio: number | null;
  /** Records handed out from levels above the lowest waiting one since it was last served. */
  #servedAbove = 0;
  #lowestWaiting: number | undefined;

  constructor(levels: number, ratio: number | null) {
    this.#levels = levels;
    this.#ratio = ratio;
  }

  /** The partitions in the order one fetch serves them. */
  order(cursors: readonly Cursor[], logs: readonly PartitionLog[]): number[] {
    this.#lowestWaiting = undefined;
    for (let level = 0; level < this.#levels; level++) {
      const cursor = cursors[level]!;
      if (cursor.availableCount > 0 || logs[level]!.highWatermark > cursor.next) {
        this.#lowestWaiting = level;
        break;
      }
    }
    const highestFirst = Array.from({ length: this.#levels }, (_, i) => this.#levels - 1 - i);
    const lowest = this.#lowestWaiting;
    const due = this.#ratio !== null && this.#servedAbove >= this.#ratio;
    if (!due || lowest === undefined) return highestFirst;
    return [lowest, ...highestFirst.filter((level) => level !== lowest)];
  }

  /** Counts what a fetch handed out, per level, after `order`. */
  served(level: number, records: number): void {
    const lowest = this.#lowestWaiting;
    if (lowest === undefined || records === 0) return;
    if (level === lowest) this.#servedAbove = 0;
    else if (level > lowest) this.#servedAbove += records;
  }
}

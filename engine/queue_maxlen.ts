// Max length of a queue (RabbitMQ's `x-max-length`): how many ready records it keeps, and what
// it does when a record would make it longer (`overflow`).
//
// Only ready records count: those waiting to be acquired, in a partition's window (given back)
// or past its `next` (never handed out). Acquired records and records on their way to the
// dead-letter topic do not, as in RabbitMQ, where unacknowledged messages are not counted.
//
//   drop-head       (default) the queue keeps the newest `maxLength` ready records: the oldest
//                   ready ones go, dead-lettered with reason "maxlen" when the queue has a
//                   dead-letter topic, else discarded, and counted (`overflowed`). Oldest means:
//                   records given back first (they lie below `next`), then from `next` on.
//
//     ready:   [ given back ] [ next ... highWatermark )      maxLength = 4
//     append:   r1 r2          r3 r4 r5 r6                    6 ready, 2 too many
//     drop:     r1 r2   ────► dead-letter topic (reason maxlen) or discarded
//
//   reject-publish  a publish through an exchange (the default exchange included) takes the
//                   records of a batch one by one while the queue has room; the rest of the
//                   batch is refused with QUEUE_FULL and the answer counts them. Nothing is
//                   dropped.
//
// Drops happen where records arrive (every append to the queue's topic, with or without
// members), before every fetch, at every sweep, and at open (records given back by a restart
// count again). The dropped records are taken into the window like acquired ones (no record is
// decoded unless it is dead-lettered), so one round drops at most the window's free room; with
// no dead-letter topic the window frees itself at once and rounds go on, with one the next
// round starts when the dead letters are written.
//
// A topic read by several queues: drop-head acts per queue (each queue forgets its own oldest
// records; the log keeps them for the others), and a publish is taken only while every
// reject-publish queue reading the topic has room for it (the fewest room decides), since the
// topic has one copy for all of them. A plain Produce to the topic is not refused (its batches
// are whole, idempotent, and Kafka's semantics): a reject-publish queue may then be longer than
// `maxLength`, and publishes through exchanges are refused until it is below.

import type { PartitionLog } from "./partition_log.ts";
import type { OffsetRun, QueueCursor } from "./queue_cursor.ts";

/** What a full queue does with one more record. */
export type QueueOverflow = "drop-head" | "reject-publish";

/** The largest maxLength accepted: any count of records a log can hold. */
export const MAX_LENGTH_MAX = Number.MAX_SAFE_INTEGER;
/** Rounds of one drop; a larger excess waits for the next append, fetch or sweep. */
const DROP_ROUNDS_MAX = 1_024;

type Cursor = Pick<
  QueueCursor,
  "partition" | "availableCount" | "room" | "next" | "readyHead" | "expireReadyHead" | "takeNew"
>;

/** Ready records of one partition: given back, plus those past `next` below `end`. */
function readyOf(cursor: Cursor, end: number): number {
  return cursor.availableCount + Math.max(0, end - cursor.next);
}

/** Ready records of a queue, counting visible records (below each high watermark). */
export function readyCount(cursors: readonly Cursor[], logs: readonly PartitionLog[]): number {
  let ready = 0;
  for (const cursor of cursors) ready += readyOf(cursor, logs[cursor.partition]!.highWatermark);
  return ready;
}

/**
 * How many of `count` records a reject-publish queue takes now. Records appended but not yet
 * visible (below the log end offset, which an append moves at once) count as ready, so that
 * publishes in flight together never overfill the queue.
 */
export function publishRoom(
  maxLength: number,
  cursors: readonly Cursor[],
  logs: readonly PartitionLog[],
  count: number,
): number {
  let ready = 0;
  for (const cursor of cursors) ready += readyOf(cursor, logs[cursor.partition]!.logEndOffset);
  return Math.max(0, Math.min(count, maxLength - ready));
}

/**
 * The partition a drop takes from now, if any can: the one with the most ready records or, with
 * `lowestFirst` (a priority queue, partition = level), the lowest level with ready records.
 */
function fullest(
  cursors: readonly Cursor[],
  logs: readonly PartitionLog[],
  lowestFirst: boolean,
): Cursor | undefined {
  let best: Cursor | undefined;
  let bestReady = 0;
  for (const cursor of cursors) {
    const end = logs[cursor.partition]!.highWatermark;
    const reachable = cursor.availableCount > 0 || (cursor.room > 0 && end > cursor.next);
    const ready = readyOf(cursor, end);
    if (reachable && ready > 0 && lowestFirst) return cursor;
    if (reachable && ready > bestReady) {
      best = cursor;
      bestReady = ready;
    }
  }
  return best;
}

/**
 * Takes the oldest ready records past `maxLength` off the queue: marked for dead-lettering in
 * their cursors and handed to `drop` (which dead-letters or discards them), a partition's runs
 * at a time, from the partition with the most ready records (`lowestFirst`: from the lowest
 * priority level that has ready records). Returns how many were dropped;
 * fewer than the excess when the windows have no room (later rounds take the rest).
 */
export function dropHead(
  maxLength: number,
  cursors: readonly Cursor[],
  logs: readonly PartitionLog[],
  drop: (partition: number, runs: OffsetRun[]) => void,
  lowestFirst = false,
): number {
  let dropped = 0;
  for (let round = 0; round < DROP_ROUNDS_MAX; round++) {
    const excess = readyCount(cursors, logs) - maxLength;
    if (excess <= 0) break;
    const cursor = fullest(cursors, logs, lowestFirst);
    if (cursor === undefined) break;
    const runs: OffsetRun[] = [];
    let wanted = excess;
    for (let head = cursor.readyHead(); head !== undefined && wanted > 0; wanted--) {
      cursor.expireReadyHead(head, runs);
      head = cursor.readyHead();
    }
    const end = logs[cursor.partition]!.highWatermark;
    const take = Math.min(wanted, cursor.room, end - cursor.next);
    if (take > 0) cursor.takeNew(take, () => true, runs);
    let count = 0;
    for (const run of runs) count += run.last - run.first + 1;
    if (count === 0) break;
    dropped += count;
    // With no dead-letter topic the records are done here and now, freeing the window.
    drop(cursor.partition, runs);
  }
  return dropped;
}

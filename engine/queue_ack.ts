// The shape of a queue acknowledgement and its checks. An ack request is a list of ranges,
// each with one outcome, as Kafka's ShareAcknowledge carries (FirstOffset, LastOffset, type):
//
//   accept   done: the record will not be delivered again
//   release  give it back now: available to any member (delivery count unchanged; it was
//            counted when acquired), or dead-lettered when it has reached the delivery limit
//   reject   poison: dead-letter it (or discard it when the queue has no dead-letter topic)
//   renew    keep holding it: the lock runs lockMs from now
//
// The whole request is checked before any of it is applied, so a refused request changes
// nothing: its shape here (TypeError, RangeError, UNKNOWN_PARTITION), and record by record in
// the cursor (INVALID_RECORD_STATE, LOCK_EXPIRED).

import { SluiceError } from "../record/mod.ts";
import { DELAY_MS_MAX } from "./queue_delay.ts";

export type QueueAckType = "accept" | "release" | "reject" | "renew";

export type QueueAck = {
  partition: number;
  first: number;
  last: number;
  type: QueueAckType;
  /**
   * Release only: the record is available again no sooner than this many ms from now (1 to
   * DELAY_MS_MAX, one year); 0 or absent: at once (or after the queue's retry backoff).
   */
  delayMs?: number;
};

/** Ranges in one ack call at most. */
export const ACK_RANGES_MAX = 10_000;

const TYPES: ReadonlySet<string> = new Set(["accept", "release", "reject", "renew"]);

function offsetField(what: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} ${String(value)} is not an offset (a safe integer >= 0)`);
  }
  return value;
}

function checkOne(entry: unknown, index: number, where: { queue: string; partitions: number }) {
  if (typeof entry !== "object" || entry === null) {
    throw new TypeError(`ack ${index} must be an object: ${String(entry)}`);
  }
  const { partition, first, last, type, delayMs } = entry as Record<string, unknown>;
  if (typeof type !== "string" || !TYPES.has(type)) {
    throw new TypeError(
      `ack ${index}: type ${JSON.stringify(type) ?? "undefined"} is not one of ` +
        "accept, release, reject, renew",
    );
  }
  if (typeof partition !== "number" || !Number.isSafeInteger(partition)) {
    throw new TypeError(`ack ${index}: partition ${String(partition)} is not an integer`);
  }
  if (partition < 0 || partition >= where.partitions) {
    throw new SluiceError(
      "UNKNOWN_PARTITION",
      `Queue '${where.queue}' has no partition ${partition} (it has ${where.partitions})`,
      { queue: where.queue, partition },
    );
  }
  const from = offsetField(`ack ${index}: first`, first);
  const to = offsetField(`ack ${index}: last`, last);
  if (to < from) throw new RangeError(`ack ${index}: last ${to} is below first ${from}`);
  if (delayMs !== undefined && delayMs !== 0) {
    if (type !== "release") {
      throw new RangeError(`ack ${index}: delayMs ${String(delayMs)} is allowed only on release`);
    }
    const integer = typeof delayMs === "number" && Number.isSafeInteger(delayMs);
    if (!integer || delayMs < 0 || delayMs > DELAY_MS_MAX) {
      throw new RangeError(
        `ack ${index}: delayMs ${String(delayMs)} must be an integer in [0, ${DELAY_MS_MAX}] ` +
          "(one year)",
      );
    }
  }
  const delay = typeof delayMs === "number" ? delayMs : 0;
  return { partition, first: from, last: to, type: type as QueueAckType, delayMs: delay };
}

/**
 * The ranges of an ack request, checked and sorted by partition and offset. Throws on the
 * first problem; overlapping ranges are refused since one record gets one outcome.
 */
export function checkAcks(
  acks: unknown,
  where: { queue: string; partitions: number },
): Required<QueueAck>[] {
  if (!Array.isArray(acks)) throw new TypeError("acks must be an array");
  if (acks.length > ACK_RANGES_MAX) {
    throw new RangeError(`${acks.length} ack ranges exceed ACK_RANGES_MAX ${ACK_RANGES_MAX}`);
  }
  const checked = acks.map((entry, index) => checkOne(entry, index, where));
  checked.sort((a, b) => a.partition - b.partition || a.first - b.first);
  for (let i = 1; i < checked.length; i++) {
    const before = checked[i - 1]!;
    const after = checked[i]!;
    if (before.partition === after.partition && after.first <= before.last) {
      throw new RangeError(
        `ack ranges ${before.first}..${before.last} and ${after.first}..${after.last} of ` +
          `partition ${after.partition} overlap`,
      );
    }
  }
  return checked;
}

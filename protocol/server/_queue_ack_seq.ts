// The ack sequence of one connection (PROTOCOL.md section 7a, QueueFetch v2): each QueueFetch
// v2 whose piggy-backed acks were applied gets the next sequence number, its answer goes out at
// once, and its acks' durability is confirmed later by `acks_durable_through` in the answers
// that follow on the same connection.
//
//   v2 fetch with acks ─► applied now (results in its answer) ─► seq n = ++last
//        durability of n's partitions ─► settled {n} ─► durableThrough moves past every
//        settled run from durableThrough + 1 ─► waiters (long polls, QueueAck v2 barriers) run
//
// A partition whose durability fails (DISK_FULL, LOG_FENCED) becomes an ack failure, reported
// once in the connection's next v2 answer, no later than the answer whose acks_durable_through
// first covers its sequence. Nothing is confirmed before it is durable: durableThrough moves
// only over sequences every partition of which has settled.
//
// Bounds: unsettled sequences are bounded by the acks in flight, which the records members
// hold bound (an ack names held records, and the queue's prefetch bounds those); failures wait
// in a list of at most ACK_FAILURES_MAX (more are reported in the answers after).

import { assert } from "../../engine/mod.ts";
import { CallbackList } from "../../record/mod.ts";
import type { AckFailure, AckSeqState } from "../codec/queue_ack.ts";
import { errorToWire } from "../codec/errors.ts";
import type { ServerConnection } from "./connection.ts";

/** Failures one answer carries at most; the rest go in the answers after it. */
export const ACK_FAILURES_PER_ANSWER_MAX = 1_000;

export type DurablePartition = { partition: number; durable: Promise<void> };

export class AckSequence {
  /** The last sequence given (0: none yet). */
  #last = 0;
  #durableThrough = 0;
  /**
   * Sequences above durableThrough + 1 whose partitions have all settled (out of order). In
   * order, the usual case, a sequence moves durableThrough without entering it: a Set's
   * members and tables under add/delete churn outlive young collections (record/id_table.ts).
   */
  readonly #settled = new Set<number>();
  #failures: AckFailure[] = [];
  /** The acks_durable_through the last answer carried. */
  #told = 0;
  /** Long polls and barriers waiting for durableThrough to move (record/callback_list.ts). */
  #waiters = new CallbackList();
  readonly #now: () => number;
  /** How long the last sequence to settle took from its ack's apply (ms; 0 before any). */
  #lastSettleMs = 0;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  get last(): number {
    return this.#last;
  }

  get durableThrough(): number {
    return this.#durableThrough;
  }

  /**
   * How long the last sequence to settle took from its apply to its last partition's outcome
   * (ms): about one group commit of the queue's state log, as this connection saw it last.
   */
  get lastSettleMs(): number {
    return this.#lastSettleMs;
  }

  /** Whether the connection has yet to be told of settled sequences or failures. */
  get untold(): boolean {
    return this.#durableThrough > this.#told || this.#failures.length > 0;
  }

  /** Whether an ack given a sequence has yet to settle. */
  get waiting(): boolean {
    return this.#durableThrough < this.#last;
  }

  /** Gives the applied partitions one sequence; 0 when there are none (nothing to wait for). */
  track(partitions: readonly DurablePartition[]): number {
    if (partitions.length === 0) return 0;
    const seq = ++this.#last;
    let left = partitions.length;
    const appliedMs = this.#now();
    const settle = () => {
      left--;
      assert(left >= 0, "a sequence's partitions settle once each");
      if (left > 0) return;
      this.#lastSettleMs = this.#now() - appliedMs;
      this.#settle(seq);
    };
    for (const { partition, durable } of partitions) {
      durable.then(settle, (error: unknown) => {
        // errorToWire throws a broken invariant on: as for a v1 ack, it stops the server.
        const { code, message } = errorToWire(error);
        this.#failures.push({ ackSeq: seq, partition, errorCode: code, errorMessage: message });
        settle();
      });
    }
    return seq;
  }

  /** The state an answer carries now: takes up to ACK_FAILURES_PER_ANSWER_MAX failures. */
  take(): AckSeqState {
    // Failures are reported before the answer that first covers their sequence: one is
    // pushed before its sequence settles, and a sequence is covered only once settled.
    const failures = this.#failures.splice(0, ACK_FAILURES_PER_ANSWER_MAX);
    let durableThrough = this.#durableThrough;
    let held: AckFailure | undefined;
    for (const failure of this.#failures) {
      if (held === undefined || failure.ackSeq < held.ackSeq) held = failure;
    }
    // Failures left for a later answer hold the confirmation back to just below them.
    if (held !== undefined) durableThrough = Math.min(durableThrough, held.ackSeq - 1);
    assert(durableThrough >= this.#told, "acks_durable_through never goes down");
    this.#told = durableThrough;
    return { durableThrough, failures };
  }

  /** Resolves when durableThrough next moves or a failure arrives; `cancel` drops the wait. */
  changed(): { promise: Promise<void>; cancel: () => void } {
    let cancel = () => {};
    const promise = new Promise<void>((resolve) => {
      cancel = this.#waiters.add(resolve);
    });
    return { promise, cancel };
  }

  /** Resolves once every sequence given so far has settled. */
  async settledThrough(seq: number): Promise<void> {
    while (this.#durableThrough < seq) await this.changed().promise;
  }

  #settle(seq: number): void {
    assert(seq > this.#durableThrough, "a sequence settles once");
    if (seq !== this.#durableThrough + 1) {
      this.#settled.add(seq);
      return;
    }
    this.#durableThrough = seq;
    if (this.#settled.size > 0) {
      while (this.#settled.delete(this.#durableThrough + 1)) this.#durableThrough++;
    }
    // The waiters of this move only: one added while they run waits for the next.
    const waiters = this.#waiters;
    if (waiters.size === 0) return;
    this.#waiters = new CallbackList();
    waiters.callAll();
  }
}

const sequences = new WeakMap<ServerConnection, AckSequence>();

/** The connection's ack sequence, made at its first v2 request. */
export function ackSequenceOf(connection: ServerConnection): AckSequence {
  let sequence = sequences.get(connection);
  if (sequence === undefined) {
    sequence = new AckSequence();
    sequences.set(connection, sequence);
  }
  return sequence;
}

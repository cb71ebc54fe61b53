// Confirmations of a fetch connection's QueueFetch v2 acks (PROTOCOL.md section 7a): a v2
// answer says its acks were applied (ack_seq n) and, in that answer or a later one on the same
// connection, acks_durable_through m ≥ n says they are durable (or ack_failures says which
// partition's outcome failed). Answers wait here until then, so `message.accept()` resolves
// only once the broker has made the accept durable.
//
//   v2 answer ─► observe(state): failures kept by sequence, durableThrough moves ─► waiters
//              at or below it settle
//   waiting, and no fetch outstanding on the connection for ackFlushMs ─► barrier: a
//              QueueAck v2 with no partitions, answered once every sequence is settled
//   connection lost ─► fail(error): every waiter rejects (applied or not: unknown)
//
// Bounds: one waiter per v2 fetch that carried acks, at most the fetches in flight plus those
// answered and not yet confirmed (the broker confirms within a few fdatasyncs).

import type { AckFailure, AckSeqState } from "../codec/queue_ack.ts";

type Waiter = {
  seq: number;
  resolve: (failures: AckFailure[]) => void;
  reject: (error: Error) => void;
};

export class AckConfirmations {
  #durableThrough = 0;
  /** Failures of sequences not yet confirmed, by sequence. */
  readonly #failures = new Map<number, AckFailure[]>();
  #waiters: Waiter[] = [];
  #failed: Error | undefined;

  /** Whether an ack awaits its confirmation. */
  get waiting(): boolean {
    return this.#waiters.length > 0;
  }

  /** Takes what a v2 answer says of the connection's sequenced acks. */
  observe(state: AckSeqState): void {
    for (const failure of state.failures) {
      const list = this.#failures.get(failure.ackSeq) ?? [];
      list.push(failure);
      this.#failures.set(failure.ackSeq, list);
    }
    if (state.durableThrough <= this.#durableThrough) return;
    this.#durableThrough = state.durableThrough;
    const still: Waiter[] = [];
    for (const waiter of this.#waiters) {
      if (waiter.seq > this.#durableThrough) {
        still.push(waiter);
        continue;
      }
      waiter.resolve(this.#failures.get(waiter.seq) ?? []);
      this.#failures.delete(waiter.seq);
    }
    this.#waiters = still;
  }

  /** Resolves with the failures of sequence `seq` once the broker has settled it. */
  wait(seq: number): Promise<AckFailure[]> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed);
    if (seq <= this.#durableThrough) {
      const failures = this.#failures.get(seq) ?? [];
      this.#failures.delete(seq);
      return Promise.resolve(failures);
    }
    return new Promise((resolve, reject) => {
      this.#waiters.push({ seq, resolve, reject });
    });
  }

  /** The connection is gone: no confirmation will come for what waits. */
  fail(error: Error): void {
    this.#failed ??= error;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.reject(error);
  }
}

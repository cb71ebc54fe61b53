// Idempotent producers: per partition, the last batches each producer id wrote, so that a
// batch retried after a lost acknowledgement is recognised and not written twice (Kafka's
// producer state, KIP-98). Sequences count records: a producer's next batch must start at the
// previous batch's baseSequence + recordCount, wrapping at 2^31.
//
// The state is rebuilt when a partition opens, from the batch headers of the log (see
// PartitionLog), so a retry that spans a broker restart is still recognised.

import { SluiceError, IndexedSet } from "../record/mod.ts";

/** Batches remembered per producer for duplicate detection (Kafka keeps 5 in flight). */
export const PRODUCER_BATCHES_KEPT = 5;
/** Producer ids tracked per partition; the least recently written is forgotten first. */
export const PRODUCERS_MAX = 10_000;
const SEQUENCE_MODULUS = 2 ** 31;

type BatchRecord = { baseSequence: number; recordCount: number; baseOffset: number };
type Producer = {
  id: number;
  epoch: number;
  batches: BatchRecord[];
  /** Its place in the recency order (record/indexed_set.ts). */
  indexedAt: number;
};

export type ProducerBatch = {
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
};

/** What to do with an idempotent batch: append it, or answer with where it already is. */
export type SequenceCheck = { duplicateOf: number | undefined };

export class ProducerState {
  #producers = new Map<number, Producer>();
  /**
   * Least recently written first. Not the Map's own order by deleting and re-inserting at
   * each write: JavaScriptCore's Map rebuilds its table under such churn, and each table left
   * behind outlived young collections (record/indexed_set.ts).
   */
  #recency = new IndexedSet<Producer>();

  get size(): number {
    return this.#producers.size;
  }

  /**
   * Checks a batch before it is appended. Returns the base offset of the earlier copy for a
   * duplicate, undefined for a batch to append; throws for a sequence or epoch out of order.
   */
  check(batch: ProducerBatch, log: string): number | undefined {
    const producer = this.#producers.get(batch.producerId);
    if (producer === undefined || batch.producerEpoch > producer.epoch) {
      // A new producer, or a new epoch of one, starts its sequence anywhere: after a restart
      // that lost state, or after retention removed its batches, nothing better is known.
      return undefined;
    }
    if (batch.producerEpoch < producer.epoch) {
      throw new SluiceError(
        "INVALID_PRODUCER_EPOCH",
        `Producer ${batch.producerId} epoch ${batch.producerEpoch} is older than ` +
          `${producer.epoch} on ${log}`,
        { producerId: batch.producerId, producerEpoch: batch.producerEpoch },
      );
    }
    for (const seen of producer.batches) {
      if (seen.baseSequence === batch.baseSequence && seen.recordCount === batch.recordCount) {
        return seen.baseOffset;
      }
    }
    const last = producer.batches.at(-1)!;
    const expected = (last.baseSequence + last.recordCount) % SEQUENCE_MODULUS;
    if (batch.baseSequence !== expected) {
      throw new SluiceError(
        "OUT_OF_ORDER_SEQUENCE",
        `Producer ${batch.producerId} sent sequence ${batch.baseSequence} on ${log}; ` +
          `expected ${expected}`,
        { producerId: batch.producerId, baseSequence: batch.baseSequence, expected },
      );
    }
    return undefined;
  }

  /** Records a batch that was appended (or found while rebuilding from the log). */
  record(batch: ProducerBatch, baseOffset: number): void {
    let producer = this.#producers.get(batch.producerId);
    if (producer === undefined || batch.producerEpoch > producer.epoch) {
      if (producer !== undefined) this.#recency.delete(producer);
      producer = { id: batch.producerId, epoch: batch.producerEpoch, batches: [], indexedAt: -1 };
      this.#producers.set(batch.producerId, producer);
    }
    this.#recency.moveToBack(producer);
    producer.batches.push({
      baseSequence: batch.baseSequence,
      recordCount: batch.recordCount,
      baseOffset,
    });
    if (producer.batches.length > PRODUCER_BATCHES_KEPT) producer.batches.shift();
    if (this.#producers.size > PRODUCERS_MAX) {
      const oldest = this.#recency.first();
      if (oldest !== undefined) this.#forget(oldest);
    }
  }

  /** Forgets batches at or past `offset` (after a rollback of the log). */
  truncateFrom(offset: number): void {
    for (const producer of this.#producers.values()) {
      producer.batches = producer.batches.filter((batch) => batch.baseOffset < offset);
      if (producer.batches.length === 0) this.#forget(producer);
    }
  }

  #forget(producer: Producer): void {
    this.#producers.delete(producer.id);
    this.#recency.delete(producer);
  }
}

// Which partition a record goes to, as Kafka's producer decides it: the record's own partition
// when it names one; else murmur2 of the key, made positive and taken modulo the partition
// count (so a key lands on the same partition as with a Kafka client); else, for records
// without a key, a "sticky" partition that keyless records share until a batch for it is
// sealed, then the next one round-robin (KIP-480: fuller batches than record-by-record
// round-robin, and still an even spread).

import { murmur2, toPositive } from "../../record/mod.ts";

export { murmur2, toPositive };

/** The partition Kafka's default partitioner picks for a key. */
export function partitionForKey(key: Uint8Array, partitionCount: number): number {
  return toPositive(murmur2(key)) % partitionCount;
}

/** Chooses a partition for each record; `batchSealed` lets a sticky choice move on. */
export interface Partitioner {
  partition(topic: string, key: Uint8Array | null, partitionCount: number): number;
  batchSealed(topic: string, partition: number): void;
}

export class DefaultPartitioner implements Partitioner {
  #sticky = new Map<string, number>();
  #random: () => number;

  /** `random` picks the first sticky partition of each topic; tests pass a fixed one. */
  constructor(random: () => number = Math.random) {
    this.#random = random;
  }

  partition(topic: string, key: Uint8Array | null, partitionCount: number): number {
    if (!Number.isSafeInteger(partitionCount) || partitionCount < 1) {
      throw new RangeError(`partitionCount ${partitionCount} is not a positive integer`);
    }
    if (key !== null) return partitionForKey(key, partitionCount);
    const current = this.#sticky.get(topic) ?? Math.floor(this.#random() * partitionCount);
    const sticky = current % partitionCount;
    this.#sticky.set(topic, sticky);
    return sticky;
  }

  batchSealed(topic: string, partition: number): void {
    // The next partition round-robin; `partition()` wraps it at the partition count.
    const sticky = this.#sticky.get(topic);
    if (sticky === partition) this.#sticky.set(topic, sticky + 1);
  }
}

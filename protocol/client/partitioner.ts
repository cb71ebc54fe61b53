// Which partition a record goes to, as Kafka's producer decides it: the record's own partition
// when it names one; else murmur2 of the key, made positive and taken modulo the partition
// count (so a key lands on the same partition as with a Kafka client); else, for records
// without a key, a "sticky" partition that keyless records share until a batch for it is
// sealed, then the next one round-robin (KIP-480: fuller batches than record-by-record
// round-robin, and still an even spread).

/**
 * Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2): MurmurHash2, 32-bit, seed
 * 0x9747b28c, little-endian blocks. Returns a signed 32-bit integer, as Java does.
 */
export function murmur2(data: Uint8Array): number {
  const m = 0x5bd1e995;
  const length = data.length;
  let h = 0x9747b28c ^ length;
  const blocksEnd = length - (length % 4);
  for (let i = 0; i < blocksEnd; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = length % 4;
  // Java's switch falls through from 3 to 2 to 1; written out, that is three ifs.
  if (tail >= 3) h ^= data[blocksEnd + 2]! << 16;
  if (tail >= 2) h ^= data[blocksEnd + 1]! << 8;
  if (tail >= 1) {
    h ^= data[blocksEnd]!;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's Utils.toPositive: clears the sign bit (not Math.abs, which overflows at -2^31). */
export function toPositive(value: number): number {
  return value & 0x7fff_ffff;
}

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

// Buffers for record batches under construction, kept for reuse once a batch is done with. Why:
// writing into fresh memory costs a page fault per 4 KiB (the kernel maps and zeroes each page
// on first touch), and a producer at full speed fills a megabyte batch every millisecond or so;
// in a profile of the producer, copying into fresh buffers ran at a fifth of the speed of
// copying into reused ones.
//
//   take(capacity) ──► a pooled buffer of exactly that capacity, or a new one
//   give(buffer)   ──► kept while the pool holds less than bytesMax, else left to the GC
//
// Capacities come from a short ladder (`nextCapacity` in record/batch_writer.ts), so a few sizes
// cover every batch and a buffer given back fits the next batch that asks for its size. A buffer
// is given back only when nothing can read it any more: the batch it held was acknowledged (so
// the socket has sent every byte of it) or never sent.

import type { BufferSource } from "../../record/mod.ts";

export class BufferPool implements BufferSource {
  readonly bytesMax: number;
  #free = new Map<number, Uint8Array[]>();
  #bytes = 0;

  constructor(bytesMax: number) {
    if (!Number.isSafeInteger(bytesMax) || bytesMax < 0) {
      throw new RangeError(`bytesMax ${bytesMax} is not a non-negative integer`);
    }
    this.bytesMax = bytesMax;
  }

  /** Bytes held for reuse now. */
  get sizeBytes(): number {
    return this.#bytes;
  }

  /** A buffer of exactly `capacity` bytes; its contents are whatever its last user left. */
  take(capacity: number): Uint8Array {
    const free = this.#free.get(capacity);
    const buffer = free?.pop();
    if (buffer === undefined) return new Uint8Array(capacity);
    this.#bytes -= capacity;
    return buffer;
  }

  /** Keeps `buffer` for a later `take` of its capacity, while the pool has room. */
  give(buffer: Uint8Array): void {
    const capacity = buffer.length;
    if (this.#bytes + capacity > this.bytesMax) return;
    let free = this.#free.get(capacity);
    if (free === undefined) {
      free = [];
      this.#free.set(capacity, free);
    }
    free.push(buffer);
    this.#bytes += capacity;
  }
}

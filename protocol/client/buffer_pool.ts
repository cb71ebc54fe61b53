// Buffers for record batches under construction, kept for reuse once a batch is done with. Why:
// writing into fresh memory costs a page fault per 4 KiB (the kernel maps and zeroes each page
// on first touch), and a producer at full speed fills a megabyte batch every millisecond or so;
// in a profile of the producer, copying into fresh buffers ran at a fifth of the speed of
// copying into reused ones.
//
//   take(capacity) ──► a pooled buffer of exactly that capacity, or a new one
//   give(buffer)   ──► kept while the pool and the buffers out together stay within the
//                      larger of bytesMax and the most that was ever out at once; else left
//                      to the GC
//   forget(buffer) ──► a buffer taken that will not be given back (left to a request that may
//                      still send it)
//
// Why the buffers out count: the pool must cover the swing between few and many batches in
// flight, and what is in flight is counted in buffer capacity (a batch sealed by its linger at
// 300 KiB sits in a 1 MiB buffer), which passes bufferBytesMax (counted in record bytes) by up
// to the batches' unused room. A pool capped at bufferBytesMax alone dropped ~1 buffer in 4 of
// bench:tcp's publish phase and made it again from fresh memory (bench/RESULTS.md). Keeping
// what was once out at the same time never raises the producer's peak memory: the pool holds
// only what was in use at once before.
//
// Capacities come from a short ladder (`nextCapacity` in record/batch_writer.ts), so a few sizes
// cover every batch and a buffer given back fits the next batch that asks for its size. A buffer
// is given back only when nothing can read it any more: the batch it held was acknowledged (so
// the socket has sent every byte of it) or never sent.

import type { BufferSource } from "../../record/mod.ts";

/**
 * How far past bytesMax the pool and the buffers out may reach together: the batches' unused
 * room at most triples what bytesMax counts (a linger-sealed batch at just over a quarter of
 * its buffer), so a peak beyond this is not a working set worth keeping.
 */
const OUT_PEAK_FACTOR = 3;

export class BufferPool implements BufferSource {
  readonly bytesMax: number;
  #free = new Map<number, Uint8Array[]>();
  #bytes = 0;
  /** Bytes of buffers taken and not yet given back or forgotten. */
  #outBytes = 0;
  /** The most #outBytes has been, capped at OUT_PEAK_FACTOR × bytesMax. */
  #outPeakBytes = 0;

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

  /** Bytes of buffers taken and not yet given back or forgotten. */
  get outBytes(): number {
    return this.#outBytes;
  }

  /** A buffer of exactly `capacity` bytes; its contents are whatever its last user left. */
  take(capacity: number): Uint8Array {
    this.#outBytes += capacity;
    if (this.#outBytes > this.#outPeakBytes) {
      this.#outPeakBytes = Math.min(this.#outBytes, OUT_PEAK_FACTOR * this.bytesMax);
    }
    const free = this.#free.get(capacity);
    const buffer = free?.pop();
    if (buffer === undefined) return new Uint8Array(capacity);
    this.#bytes -= capacity;
    return buffer;
  }

  /** A buffer taken is not coming back (nothing is kept): it no longer counts as out. */
  forget(buffer: Uint8Array): void {
    this.#outBytes = Math.max(0, this.#outBytes - buffer.length);
  }

  /** Keeps `buffer` for a later `take` of its capacity, while the pool has room (see above). */
  give(buffer: Uint8Array): void {
    const capacity = buffer.length;
    this.#outBytes = Math.max(0, this.#outBytes - capacity);
    const room = Math.max(this.bytesMax, this.#outPeakBytes);
    if (this.#bytes + this.#outBytes + capacity > room) return;
    let free = this.#free.get(capacity);
    if (free === undefined) {
      free = [];
      this.#free.set(capacity, free);
    }
    free.push(buffer);
    this.#bytes += capacity;
  }
}

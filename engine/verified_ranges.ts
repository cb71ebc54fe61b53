// Which byte ranges of one segment have passed their CRC-32C check since the segment was
// opened in this process. A read checks a batch's CRC only where it is not yet covered, so a
// batch is hashed once, when it is first served, and not on every read (the hash ran at about
// 5 GB/s and was the whole cost of a lookup into a 1 MiB batch).
//
//   position:  0 ....... a ====== b ....... c ==== d ......... trustedFrom =====================►
//              unchecked   checked   unchecked  checked  unchecked   appended by this process
//
// Nothing carries over between opens: a file can change while no process has it open. Bytes
// appended by this process were checked on append (PartitionLog validates every batch before
// it is copied in), so everything from `trustedFrom` on counts as checked. Bit rot after the
// check is caught by the scrubber (engine/scrubber.ts) and by clients that check batch CRCs.

import { assert } from "../record/mod.ts";

/**
 * Disjoint checked ranges kept per segment at most; past it the shortest is forgotten (its
 * batches are checked again when next read, which costs time and never correctness).
 */
export const VERIFIED_RANGES_MAX = 64;

export class VerifiedRanges {
  /** Sorted, disjoint, non-adjacent [from, to) pairs: starts[i] < ends[i] < starts[i + 1]. */
  #starts: number[] = [];
  #ends: number[] = [];
  #trustedFrom: number;

  /** `trustedFrom`: where this process's appends begin (the segment's size at open). */
  constructor(trustedFrom: number) {
    assert(trustedFrom >= 0, "trusted bytes start inside the segment");
    this.#trustedFrom = trustedFrom;
  }

  get rangeCount(): number {
    return this.#starts.length;
  }

  /**
   * The end of the checked run that holds `position`: every byte in [position, end) is
   * checked. Equals `position` when that byte is not checked; Infinity in appended bytes.
   */
  endFrom(position: number): number {
    if (position >= this.#trustedFrom) return Number.POSITIVE_INFINITY;
    const index = this.#floor(position);
    if (index < 0) return position;
    const end = this.#ends[index]!;
    if (end <= position) return position;
    return end >= this.#trustedFrom ? Number.POSITIVE_INFINITY : end;
  }

  /** Records that the whole batches in [from, to) passed their check. */
  add(from: number, to: number): void {
    assert(from >= 0 && from <= to, "a checked range is well formed");
    if (from === to || from >= this.#trustedFrom) return;
    // Merge with every range that overlaps or touches [from, to).
    let first = this.#floor(from);
    if (first < 0 || this.#ends[first]! < from) first++;
    let last = first;
    let start = from;
    let end = to;
    while (last < this.#starts.length && this.#starts[last]! <= to) {
      start = Math.min(start, this.#starts[last]!);
      end = Math.max(end, this.#ends[last]!);
      last++;
    }
    this.#starts.splice(first, last - first, start);
    this.#ends.splice(first, last - first, end);
    if (this.#starts.length > VERIFIED_RANGES_MAX) this.#dropShortest();
  }

  /**
   * Forgets every check at or past `position`, the appended bytes included: the scrubber found
   * damage there, so the next read checks again and reports it. Appends after this call are
   * trusted again from the current end (`appendEnd`).
   */
  forgetFrom(position: number, appendEnd: number): void {
    assert(position <= appendEnd, "forgotten bytes are inside the segment");
    let keep = this.#floor(position);
    if (keep >= 0 && this.#starts[keep]! < position) {
      this.#ends[keep] = Math.min(this.#ends[keep]!, position);
      keep++;
    } else if (keep < 0) {
      keep = 0;
    }
    this.#starts.length = keep;
    this.#ends.length = keep;
    this.#trustedFrom = Math.max(this.#trustedFrom, appendEnd);
  }

  /** The segment was cut at `position`: bytes appended there later are this process's own. */
  truncateTo(position: number): void {
    this.forgetFrom(position, position);
    this.#trustedFrom = Math.min(this.#trustedFrom, position);
  }

  /** Index of the last range starting at or before `position`, or -1. */
  #floor(position: number): number {
    let low = 0;
    let high = this.#starts.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (this.#starts[middle]! <= position) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found;
  }

  #dropShortest(): void {
    let shortest = 0;
    for (let i = 1; i < this.#starts.length; i++) {
      const length = this.#ends[i]! - this.#starts[i]!;
      if (length < this.#ends[shortest]! - this.#starts[shortest]!) shortest = i;
    }
    this.#starts.splice(shortest, 1);
    this.#ends.splice(shortest, 1);
  }
}

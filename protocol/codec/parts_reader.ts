// Reads a frame kept as the views of the received chunks it arrived in (frame_reader.ts,
// `split`), with Reader's checks and messages, so that a large Produce is decoded without
// being assembled first. Small fields that straddle two parts are copied (a few bytes);
// `bytes32` hands out the views its bytes lie in:
//
//   parts:   [hdr acks timeout topics | records.....][.........records.........][...records]
//   bytes32: ─────────────────────────► [view of 1st,  whole 2nd,                 view of 3rd]
//
// The parts are read, never changed; a span inside one part comes back as one view.

import { ProtocolError } from "./errors.ts";
import { checkCount, decodeUtf8, STRING_BYTES_MAX } from "./wire.ts";

/** The bytes of a field: one view, or the views of consecutive parts it spans (two or more). */
export type Span = Uint8Array | readonly Uint8Array[];

export class PartsReader {
  readonly #parts: readonly Uint8Array[];
  /** The part holding the next byte, and where in it. */
  #index = 0;
  #at = 0;
  #position = 0;
  readonly end: number;

  constructor(parts: readonly Uint8Array[], position = 0) {
    let end = 0;
    for (const part of parts) end += part.length;
    // Every part holds a byte: a part read to its end is always followed by one that does.
    this.#parts = parts.some((part) => part.length === 0)
      ? parts.filter((part) => part.length > 0)
      : parts;
    this.end = end;
    if (position < 0 || position > end) {
      throw new RangeError(`position ${position} is outside the ${end} bytes of the parts`);
    }
    this.#span(position, "start");
  }

  get position(): number {
    return this.#position;
  }

  get remaining(): number {
    return this.end - this.#position;
  }

  #need(length: number, what: string): void {
    if (length > this.remaining) {
      throw ProtocolError.invalid(
        `${what} needs ${length} bytes at position ${this.#position} but ${this.remaining} remain`,
      );
    }
  }

  /** The next `length` bytes as views (see Span), after checking that they are there. */
  #span(length: number, what: string): Span {
    this.#need(length, what);
    this.#position += length;
    let views: Uint8Array[] | undefined;
    let single: Uint8Array | undefined;
    let left = length;
    while (left > 0) {
      const part = this.#parts[this.#index]!;
      const take = Math.min(left, part.length - this.#at);
      const view = part.subarray(this.#at, this.#at + take);
      if (single === undefined && views === undefined) single = view;
      else {
        views ??= [single!];
        views.push(view);
      }
      left -= take;
      this.#at += take;
      this.#stepPastEnd(part);
    }
    return views ?? single ?? new Uint8Array(0);
  }

  /** Moves to the next part once `part` (the current one) is read to its end, but the last. */
  #stepPastEnd(part: Uint8Array): void {
    if (this.#at === part.length && this.#index < this.#parts.length - 1) {
      this.#index++;
      this.#at = 0;
    }
  }

  /** The next `length` bytes as one view, copied when they straddle parts (small fields). */
  #bytes(length: number, what: string): Uint8Array {
    const span = this.#span(length, what);
    if (span instanceof Uint8Array) return span;
    const joined = new Uint8Array(length);
    let at = 0;
    for (const view of span) {
      joined.set(view, at);
      at += view.length;
    }
    return joined;
  }

  /**
   * The next `length` (at most 4) bytes as a big-endian unsigned number, read in place: a
   * request of many partitions reads three numbers per partition, and a view each would be an
   * allocation each.
   */
  #number(length: number, what: string): number {
    this.#need(length, what);
    this.#position += length;
    let value = 0;
    for (let i = 0; i < length; i++) {
      const part = this.#parts[this.#index]!;
      value = value * 256 + part[this.#at++]!;
      this.#stepPastEnd(part);
    }
    return value;
  }

  i8(what = "i8"): number {
    return (this.#number(1, what) << 24) >> 24;
  }

  u16(what = "u16"): number {
    return this.#number(2, what);
  }

  u32(what = "u32"): number {
    return this.#number(4, what);
  }

  /** A `[T]` count, checked as `Reader.count` checks it. */
  count(what: string, itemBytesMin: number): number {
    return checkCount(what, this.u16(`${what} count`), itemBytesMin, this.remaining);
  }

  string(what = "string"): string {
    const length = this.u16(`${what} length`);
    if (length > STRING_BYTES_MAX) {
      throw ProtocolError.invalid(`${what} of ${length} bytes exceeds ${STRING_BYTES_MAX}`);
    }
    return decodeUtf8(this.#bytes(length, what), what);
  }

  /** The views (not copies) of a u32-length-prefixed field. */
  bytes32(what = "bytes"): Span {
    return this.#span(this.u32(`${what} length`), what);
  }

  /** Throws unless every byte of the frame was consumed. */
  expectEnd(what: string): void {
    if (this.remaining !== 0) {
      throw ProtocolError.invalid(`${this.remaining} unexpected bytes after ${what}`);
    }
  }
}

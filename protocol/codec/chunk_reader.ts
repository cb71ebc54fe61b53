// Reads a message body that arrived as several views (the FrameReader's `pushChunks` hands out a
// large frame as the views of the chunks it lies in), or as one. Fixed-size fields come through
// a Reader over the next few bytes (a view, or a small copy where they straddle two chunks);
// variable-length bytes (a Fetch response's records) come out as views, never copied. Running
// short of bytes, or a count larger than the bytes left, is a ProtocolError (INVALID_REQUEST),
// as with the Reader.
//
//   views:  [hdr|topic|part..][..ition|records....][....records]
//   reader(26) over "part..ition" → a 26-byte copy; views(n) over the records → two views

import { ProtocolError } from "./errors.ts";
import { Reader, STRING_BYTES_MAX } from "./wire.ts";

const textDecoder = new TextDecoder("utf-8", { fatal: true });

export class ChunkReader {
  #views: readonly Uint8Array[];
  #index = 0;
  #at = 0;
  #remaining = 0;
  /** A DataView over views[#dataViewIndex], made once per view that fields are read from. */
  #dataView: DataView | undefined;
  #dataViewIndex = -1;

  constructor(views: readonly Uint8Array[]) {
    this.#views = views;
    for (const view of views) this.#remaining += view.length;
    this.#skipEmpty();
  }

  get remaining(): number {
    return this.#remaining;
  }

  #skipEmpty(): void {
    while (this.#index < this.#views.length && this.#at === this.#views[this.#index]!.length) {
      this.#index++;
      this.#at = 0;
    }
  }

  #need(length: number, what: string): void {
    if (length > this.#remaining) {
      throw ProtocolError.invalid(
        `${what} needs ${length} bytes but ${this.#remaining} remain in the response`,
      );
    }
  }

  /** Moves past `length` bytes that lie in the current view. */
  #advance(length: number): void {
    this.#at += length;
    this.#remaining -= length;
    this.#skipEmpty();
  }

  /**
   * A Reader over exactly the next `length` bytes, which it moves past. Bytes within one view
   * (nearly always) are read in place: no list of views and no sub-view per field.
   */
  reader(length: number, what: string): Reader {
    const current = this.#views[this.#index];
    const from = this.#at;
    if (current !== undefined && length <= current.length - from) {
      this.#advance(length);
      return new Reader(current, from, from + length);
    }
    const views = this.views(length, what);
    if (views.length === 1) return new Reader(views[0]!);
    const joined = new Uint8Array(length);
    let at = 0;
    for (const view of views) {
      joined.set(view, at);
      at += view.length;
    }
    return new Reader(joined);
  }

  /** The next `length` bytes as views, in order, which it moves past. */
  views(length: number, what: string): Uint8Array[] {
    this.#need(length, what);
    const views: Uint8Array[] = [];
    let left = length;
    while (left > 0) {
      const view = this.#views[this.#index]!;
      const take = Math.min(left, view.length - this.#at);
      views.push(view.subarray(this.#at, this.#at + take));
      this.#at += take;
      left -= take;
      this.#skipEmpty();
    }
    this.#remaining -= length;
    return views.length === 0 ? [new Uint8Array(0)] : views;
  }

  /**
   * The DataView of the current view when the next `length` bytes lie inside it: fixed-size
   * fields are read in place, with no Reader or DataView per field.
   */
  #fieldView(length: number): DataView | undefined {
    const current = this.#views[this.#index];
    if (current === undefined || length > current.length - this.#at) return undefined;
    if (this.#dataViewIndex !== this.#index) {
      this.#dataView = new DataView(current.buffer, current.byteOffset, current.byteLength);
      this.#dataViewIndex = this.#index;
    }
    return this.#dataView;
  }

  i16(what: string): number {
    const view = this.#fieldView(2);
    if (view === undefined) return this.reader(2, what).i16(what);
    const value = view.getInt16(this.#at);
    this.#advance(2);
    return value;
  }

  u32(what: string): number {
    const view = this.#fieldView(4);
    if (view === undefined) return this.reader(4, what).u32(what);
    const value = view.getUint32(this.#at);
    this.#advance(4);
    return value;
  }

  /** An i64 that must be a safe integer (as Reader.i64). */
  i64(what: string): number {
    const view = this.#fieldView(8);
    if (view === undefined) return this.reader(8, what).i64(what);
    const high = view.getInt32(this.#at);
    const low = view.getUint32(this.#at + 4);
    if (high >= 0x20_0000 || high < -0x20_0000) {
      throw ProtocolError.invalid(`${what} is outside ±(2^53 - 1)`);
    }
    this.#advance(8);
    return high * 2 ** 32 + low;
  }

  u16(what: string): number {
    return this.#u16(what, "");
  }

  /** u16, with `suffix` joined to `what` only when the name is needed (a split field). */
  #u16(what: string, suffix: string): number {
    const current = this.#views[this.#index];
    const at = this.#at;
    if (current !== undefined && 2 <= current.length - at) {
      this.#advance(2);
      return (current[at]! << 8) | current[at + 1]!;
    }
    const named = `${what}${suffix}`;
    return this.reader(2, named).u16(named);
  }

  /** A `[T]` count, checked against the bytes left: each item takes at least `itemBytesMin`. */
  count(what: string, itemBytesMin: number): number {
    const count = this.#u16(what, " count");
    if (count * itemBytesMin > this.#remaining) {
      throw ProtocolError.invalid(
        `${what} count ${count} needs at least ${count * itemBytesMin} bytes; ` +
          `${this.#remaining} remain`,
      );
    }
    return count;
  }

  string(what: string): string {
    const length = this.#u16(what, " length");
    if (length > STRING_BYTES_MAX) {
      throw ProtocolError.invalid(`${what} of ${length} bytes exceeds ${STRING_BYTES_MAX}`);
    }
    // Decoded in place when the bytes lie in one view (nearly always): no Reader for it.
    const current = this.#views[this.#index];
    const from = this.#at;
    let bytes: Uint8Array;
    if (current !== undefined && length <= current.length - from) {
      bytes = current.subarray(from, from + length);
      this.#advance(length);
    } else {
      bytes = this.reader(length, what).raw(length, what);
    }
    try {
      return textDecoder.decode(bytes);
    } catch {
      throw ProtocolError.invalid(`${what} is not valid UTF-8`);
    }
  }

  expectEnd(what: string): void {
    if (this.#remaining !== 0) {
      throw ProtocolError.invalid(`${this.#remaining} unexpected bytes after ${what}`);
    }
  }
}

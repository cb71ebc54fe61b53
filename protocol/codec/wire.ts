// The byte-level tools every codec uses: a growable Writer that backpatches lengths, and a
// bounds-checked Reader over one frame. Reading past the end, an over-long string, or a count
// larger than the bytes that remain throws a ProtocolError (INVALID_REQUEST), never a
// RangeError from a DataView and never an allocation from an unchecked length.

import { slabBytes } from "../../record/mod.ts";
import { ProtocolError } from "./errors.ts";

const INITIAL_WRITER_BYTES = 256;
export const STRING_BYTES_MAX = 32_767;
const TWO_32 = 0x1_0000_0000;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

function isAscii(value: string): boolean {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) >= 0x80) return false;
  return true;
}

export class Writer {
  #bytes: Uint8Array;
  #length = 0;

  constructor(capacity = INITIAL_WRITER_BYTES) {
    // From a slab: `finish` hands out a view, which of a fresh buffer would cost the collector an
    // ArrayBuffer per frame (record/slab.ts).
    this.#bytes = slabBytes(capacity);
  }

  get length(): number {
    return this.#length;
  }

  #reserve(bytes: number): number {
    const at = this.#length;
    const needed = at + bytes;
    if (needed > this.#bytes.length) {
      const grown = slabBytes(Math.max(needed, this.#bytes.length * 2));
      grown.set(this.#bytes);
      this.#bytes = grown;
    }
    this.#length = needed;
    return at;
  }

  i8(value: number): this {
    const at = this.#reserve(1);
    this.#bytes[at] = value;
    return this;
  }

  u8(value: number): this {
    const at = this.#reserve(1);
    this.#bytes[at] = value;
    return this;
  }

  u16(value: number): this {
    const at = this.#reserve(2);
    putU16(this.#bytes, at, value);
    return this;
  }

  i16(value: number): this {
    const at = this.#reserve(2);
    putU16(this.#bytes, at, value);
    return this;
  }

  u32(value: number): this {
    const at = this.#reserve(4);
    putU32(this.#bytes, at, value);
    return this;
  }

  i64(value: number): this {
    if (!Number.isSafeInteger(value)) throw new RangeError(`int64 value ${value} is not safe`);
    const at = this.#reserve(8);
    const high = Math.floor(value / TWO_32);
    putU32(this.#bytes, at, high);
    putU32(this.#bytes, at + 4, value - high * TWO_32);
    return this;
  }

  raw(bytes: Uint8Array): this {
    // Reserve first: it may replace #bytes with a larger buffer.
    const at = this.#reserve(bytes.length);
    this.#bytes.set(bytes, at);
    return this;
  }

  string(value: string): this {
    // Names (topics, groups) are nearly always ASCII: written straight into the buffer, with
    // no encoded copy per string.
    if (value.length <= STRING_BYTES_MAX && isAscii(value)) {
      const at = this.#reserve(2 + value.length);
      putU16(this.#bytes, at, value.length);
      const bytes = this.#bytes;
      for (let i = 0; i < value.length; i++) bytes[at + 2 + i] = value.charCodeAt(i);
      return this;
    }
    const bytes = textEncoder.encode(value);
    if (bytes.length > STRING_BYTES_MAX) {
      throw new RangeError(`string of ${bytes.length} bytes exceeds ${STRING_BYTES_MAX}`);
    }
    return this.u16(bytes.length).raw(bytes);
  }

  nullableString(value: string | null): this {
    if (value === null) return this.i16(-1);
    return this.string(value);
  }

  /** Reserves a u32 to fill in later with `patchU32`, for lengths known only afterwards. */
  placeholderU32(): number {
    return this.#reserve(4);
  }

  patchU32(at: number, value: number): void {
    putU32(this.#bytes, at, value);
  }

  /** The bytes written so far (a view; the writer must not be used afterwards). */
  finish(): Uint8Array {
    return this.#bytes.subarray(0, this.#length);
  }
}

// Writer and Reader store and read big-endian fields in their bytes directly: a DataView per
// Reader and per Writer (several per request and answer) was a cell of its own, and made the
// runtime build an ArrayBuffer object for the bytes as well.
/** The low 16 bits of `value`, big-endian (signed or not: a Uint8Array stores mod 256). */
function putU16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 8;
  bytes[at + 1] = value;
}

/** The low 32 bits of `value`, big-endian. */
function putU32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 24;
  bytes[at + 1] = value >>> 16;
  bytes[at + 2] = value >>> 8;
  bytes[at + 3] = value;
}

function u16At(bytes: Uint8Array, at: number): number {
  return (bytes[at]! << 8) | bytes[at + 1]!;
}

/** A signed 32-bit big-endian integer (>>> 0 makes it unsigned). */
function i32At(bytes: Uint8Array, at: number): number {
  return (bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!;
}

export class Reader {
  readonly bytes: Uint8Array;
  #at: number;
  readonly end: number;

  constructor(bytes: Uint8Array, at = 0, end = bytes.length) {
    this.bytes = bytes;
    this.#at = at;
    this.end = end;
  }

  get position(): number {
    return this.#at;
  }

  get remaining(): number {
    return this.end - this.#at;
  }

  /**
   * `suffix` completes `what` in the error message (" length", " count"): callers pass the two
   * apart so that the name is joined only for an error, not as a string per field read.
   */
  #take(bytes: number, what: string, suffix = ""): number {
    if (bytes > this.end - this.#at) {
      throw ProtocolError.invalid(
        `${what}${suffix} needs ${bytes} bytes at position ${this.#at} ` +
          `but ${this.remaining} remain`,
      );
    }
    const at = this.#at;
    this.#at += bytes;
    return at;
  }

  i8(what = "i8"): number {
    return (this.bytes[this.#take(1, what)]! << 24) >> 24;
  }

  u8(what = "u8"): number {
    return this.bytes[this.#take(1, what)]!;
  }

  u16(what = "u16"): number {
    return u16At(this.bytes, this.#take(2, what));
  }

  i16(what = "i16"): number {
    return (u16At(this.bytes, this.#take(2, what)) << 16) >> 16;
  }

  u32(what = "u32"): number {
    return i32At(this.bytes, this.#take(4, what)) >>> 0;
  }

  i64(what = "i64"): number {
    const at = this.#take(8, what);
    const high = i32At(this.bytes, at);
    const low = i32At(this.bytes, at + 4) >>> 0;
    if (high >= 0x20_0000 || high < -0x20_0000) {
      const value = new DataView(this.bytes.buffer, this.bytes.byteOffset + at, 8).getBigInt64(0);
      throw ProtocolError.invalid(`${what} ${value} at position ${at} is outside ±(2^53 - 1)`);
    }
    return high * TWO_32 + low;
  }

  /** A view (not a copy) of the next `length` bytes. */
  raw(length: number, what = "bytes"): Uint8Array {
    const at = this.#take(length, what);
    return this.bytes.subarray(at, at + length);
  }

  bytes32(what = "bytes"): Uint8Array {
    return this.raw(i32At(this.bytes, this.#take(4, what, " length")) >>> 0, what);
  }

  /** A string of at most `bytesMax` UTF-8 bytes (a field's own limit, where it has one). */
  string(what = "string", bytesMax = STRING_BYTES_MAX): string {
    const length = u16At(this.bytes, this.#take(2, what, " length"));
    if (length > bytesMax) {
      throw ProtocolError.invalid(`${what} of ${length} bytes exceeds ${bytesMax}`);
    }
    return decodeUtf8(this.raw(length, what), what);
  }

  nullableString(what = "string"): string | null {
    const length = (u16At(this.bytes, this.#take(2, what, " length")) << 16) >> 16;
    if (length === -1) return null;
    if (length < 0) throw ProtocolError.invalid(`${what} length ${length} is invalid`);
    return decodeUtf8(this.raw(length, what), what);
  }

  /** A `[T]` count, checked against the bytes left: each item takes at least `itemBytesMin`. */
  count(what: string, itemBytesMin: number): number {
    const count = u16At(this.bytes, this.#take(2, what, " count"));
    return checkCount(what, count, itemBytesMin, this.remaining);
  }

  /** Throws unless every byte of the frame was consumed. */
  expectEnd(what: string): void {
    if (this.remaining !== 0) {
      throw ProtocolError.invalid(`${this.remaining} unexpected bytes after ${what}`);
    }
  }
}

export function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return textDecoder.decode(bytes);
  } catch {
    throw ProtocolError.invalid(`${what} is not valid UTF-8`);
  }
}

/**
 * Checks a `[T]` count against the bytes left before anything is allocated for it: each item
 * takes at least `itemBytesMin`, so a count the frame cannot hold is rejected at once.
 */
export function checkCount(
  what: string,
  count: number,
  itemBytesMin: number,
  remaining: number,
): number {
  if (count * itemBytesMin > remaining) {
    throw ProtocolError.invalid(
      `${what} count ${count} needs at least ${count * itemBytesMin} bytes; ${remaining} remain`,
    );
  }
  return count;
}

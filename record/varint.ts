// Kafka's variable-length integers, as records in a RecordBatch v2 use them. A value is zigzag
// encoded (0, -1, 1, -2, ... become 0, 1, 2, 3, ...) so small negative numbers stay short, then
// written seven bits at a time, least significant group first, with the high bit of each byte
// saying "more follows":
//
//   value 300  ->  zigzag 600 = 0b100_1011000  ->  bytes 0xd8 0x04
//
// A varint carries an i32 and takes at most 5 bytes; a varlong carries an i64 and takes at most
// 10. Varlongs here are JavaScript numbers, so they are exact up to 2^53 - 1 in magnitude: the
// encoder refuses anything larger and the decoder reports it as out of range, never rounds it.
//
// Decoders read through a cursor and never throw on bad bytes. On failure they return NaN and
// leave the cursor where it was, so the caller can name the position in its own typed error;
// `varintFailureAt` then says why, off the hot path. Like Kafka's own reader, the decoders accept
// a padded encoding (`0x80 0x00` for 0) as long as it fits the type's byte limit: encoders never
// write one, but refusing them would reject bytes that Kafka itself accepts.

import { assert } from "./errors.ts";

/** The most bytes an i32 varint may take: 5 * 7 = 35 bits hold 32. */
export const VARINT_BYTES_MAX = 5;
/** The most bytes an i64 varlong may take: 10 * 7 = 70 bits hold 64. */
export const VARLONG_BYTES_MAX = 10;

const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;
const TWO_7 = 0x80;

assert(VARINT_BYTES_MAX * 7 >= 32, "a varint's bytes hold an i32");
assert(VARLONG_BYTES_MAX * 7 >= 64, "a varlong's bytes hold an i64");

/** A read position within `bytes[.. end)`. Decoders advance `position` past what they read. */
export type ByteCursor = { bytes: Uint8Array; position: number; end: number };

/** Why a varint could not be read. */
export type VarintFailure =
  | "truncated" // the bytes end before the last byte of the varint
  | "too-long" // more bytes than the type allows (5 for a varint, 10 for a varlong)
  | "out-of-range"; // the bytes fit the byte limit but not the type (i32, or a safe integer)

export function cursorOver(bytes: Uint8Array, position = 0, end = bytes.length): ByteCursor {
  return { bytes, position, end };
}

/** Bytes the zigzag varint of an i32 takes. */
export function varintSize(value: number): number {
  checkInt32(value);
  const zigzag = ((value << 1) ^ (value >> 31)) >>> 0;
  if (zigzag < 0x80) return 1;
  if (zigzag < 0x4000) return 2;
  if (zigzag < 0x20_0000) return 3;
  if (zigzag < 0x1000_0000) return 4;
  return 5;
}

/** Bytes the zigzag varlong of a safe integer takes. */
export function varlongSize(value: number): number {
  checkSafe(value);
  if (value >= -0x4000_0000 && value < 0x4000_0000) return varintSize(value);
  // The zigzag value is 2m or 2m + 1 where m fits 53 bits: count m's 7-bit groups after the
  // first byte, which holds six bits of m beside the sign.
  let rest = Math.floor((value >= 0 ? value : -value - 1) / 64);
  let size = 1;
  while (rest > 0) {
    rest = Math.floor(rest / TWO_7);
    size++;
  }
  return size;
}

/** Writes the zigzag varint of an i32 at `at`; returns the position after it. */
export function writeVarint(bytes: Uint8Array, at: number, value: number): number {
  checkInt32(value);
  let zigzag = ((value << 1) ^ (value >> 31)) >>> 0;
  let position = at;
  while (zigzag >= 0x80) {
    bytes[position++] = (zigzag & 0x7f) | 0x80;
    zigzag >>>= 7;
  }
  bytes[position++] = zigzag;
  return position;
}

/** Writes the zigzag varlong of a safe integer at `at`; returns the position after it. */
export function writeVarlong(bytes: Uint8Array, at: number, value: number): number {
  checkSafe(value);
  if (value >= INT32_MIN && value <= INT32_MAX) return writeVarint(bytes, at, value);
  // zigzag(value) = 2m + sign with m = |value| (or |value| - 1 when negative). 2m + 1 may not be
  // exact above 2^53, so the sign bit and m's groups are written separately.
  const sign = value < 0 ? 1 : 0;
  let rest = value >= 0 ? value : -value - 1;
  let position = at;
  let group = ((rest % 64) << 1) | sign;
  rest = Math.floor(rest / 64);
  while (rest > 0) {
    bytes[position++] = group | 0x80;
    group = rest % TWO_7;
    rest = Math.floor(rest / TWO_7);
  }
  bytes[position++] = group;
  return position;
}

/**
 * Reads a zigzag varint (an i32) at the cursor and advances past it. Returns NaN, with the
 * cursor unchanged, when the bytes are truncated, too long or beyond 32 bits.
 */
export function readVarint(cursor: ByteCursor): number {
  const bytes = cursor.bytes;
  const end = cursor.end;
  let position = cursor.position;
  let zigzag = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (position >= end) return Number.NaN;
    const byte = bytes[position++]!;
    zigzag |= (byte & 0x7f) << shift;
    if (byte < 0x80) {
      cursor.position = position;
      return (zigzag >>> 1) ^ -(zigzag & 1);
    }
  }
  if (position >= end) return Number.NaN;
  // The fifth byte holds the top four bits; anything above is a sixth byte or a 33rd bit.
  const last = bytes[position++]!;
  if (last > 0x0f) return Number.NaN;
  zigzag |= last << 28;
  cursor.position = position;
  return (zigzag >>> 1) ^ -(zigzag & 1);
}

/**
 * Reads a zigzag varlong at the cursor and advances past it. Returns NaN, with the cursor
 * unchanged, when the bytes are truncated or too long, or the value is not a safe integer.
 */
export function readVarlong(cursor: ByteCursor): number {
  // Most varlongs (timestamp deltas within a batch) are small: take the i32 path when the
  // varlong ends within four bytes, where its 28 bits cannot overflow an i32.
  const bytes = cursor.bytes;
  const fastEnd = Math.min(cursor.end, cursor.position + 4);
  for (let position = cursor.position; position < fastEnd; position++) {
    if (bytes[position]! < 0x80) return readVarint(cursor);
  }
  return readLongVarlong(cursor);
}

/** The slow path of `readVarlong`, exact for every safe integer. */
function readLongVarlong(cursor: ByteCursor): number {
  const bytes = cursor.bytes;
  const limit = Math.min(cursor.end, cursor.position + VARLONG_BYTES_MAX);
  let position = cursor.position;
  if (position >= limit) return Number.NaN;
  // The first byte holds the sign and six bits of the magnitude m; later bytes hold seven bits
  // of m each. Sums stay exact while m < 2^53, and rounding never brings a larger m back below
  // 2^53, so the final range check is sound.
  let byte = bytes[position++]!;
  const sign = byte & 1;
  let magnitude = (byte & 0x7f) >>> 1;
  let scale = 64;
  while (byte >= 0x80) {
    if (position >= limit) return Number.NaN;
    byte = bytes[position++]!;
    magnitude += (byte & 0x7f) * scale;
    scale *= TWO_7;
  }
  const value = sign === 0 ? magnitude : -magnitude - 1;
  if (!Number.isSafeInteger(value)) return Number.NaN;
  cursor.position = position;
  return value;
}

/**
 * Why the varint (`bytesMax` 5) or varlong (`bytesMax` 10) at `at` cannot be read, or null when
 * it can. For error messages after a decoder returned NaN.
 */
export function varintFailureAt(
  bytes: Uint8Array,
  at: number,
  end: number,
  bytesMax: number,
): VarintFailure | null {
  const cursor = cursorOver(bytes, at, end);
  if (bytesMax === VARINT_BYTES_MAX && !Number.isNaN(readVarint(cursor))) return null;
  if (bytesMax === VARLONG_BYTES_MAX && !Number.isNaN(readVarlong(cursor))) return null;
  for (let position = at; position < end; position++) {
    if (position - at >= bytesMax) return "too-long";
    if (bytes[position]! < 0x80) return "out-of-range";
  }
  return end - at >= bytesMax ? "too-long" : "truncated";
}

function checkInt32(value: number): void {
  if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) {
    throw new RangeError(`varint value ${value} is not an i32 in [${INT32_MIN}, ${INT32_MAX}]`);
  }
}

function checkSafe(value: number): void {
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`varlong value ${value} is not a safe integer`);
  }
}

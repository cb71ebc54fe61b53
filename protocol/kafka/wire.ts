// Kafka's primitive types on the wire (the protocol guide's "Protocol Primitive Types"), read
// and written big-endian. Flexible versions add the compact forms: a length as an unsigned
// varint holding N + 1 (0 = null) and a tagged-fields section at the end of every struct.
//
//   int8 int16 int32 int64 uint16   fixed width, two's complement (uint16 unsigned)
//   varint / uvarint                zig-zag (signed) / unsigned LEB128, at most 5 bytes
//   string         int16 N, N bytes UTF-8    (nullable: N = -1)
//   compact string uvarint N+1, N bytes      (nullable: 0)
//   bytes          int32 N, N bytes          (nullable: N = -1)
//   compact bytes  uvarint N+1, N bytes      (nullable: 0)
//   array          int32 N, N items          (nullable: N = -1)
//   compact array  uvarint N+1, N items      (nullable: 0)
//   uuid           16 bytes
//
// Every length read is checked against the bytes left before anything is allocated for it, so
// a hostile length costs nothing: it fails as INVALID_REQUEST naming the field and the value.

import { ProtocolError } from "../codec/errors.ts";
import { joinViews } from "../../record/mod.ts";

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** Longest uvarint Kafka writes for a 32-bit value. */
const UVARINT_BYTES_MAX = 5;

export class KafkaReader {
  readonly bytes: Uint8Array;
  #view: DataView;
  #at: number;
  #end: number;

  constructor(bytes: Uint8Array, at = 0, end = bytes.length) {
    this.bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#at = at;
    this.#end = end;
  }

  get position(): number {
    return this.#at;
  }

  get remaining(): number {
    return this.#end - this.#at;
  }

  #take(size: number, what: string): number {
    if (size > this.#end - this.#at) {
      throw ProtocolError.invalid(
        `${what} needs ${size} bytes but ${this.#end - this.#at} remain at byte ${this.#at}`,
      );
    }
    const at = this.#at;
    this.#at += size;
    return at;
  }

  int8(what = "int8"): number {
    return this.#view.getInt8(this.#take(1, what));
  }

  int16(what = "int16"): number {
    return this.#view.getInt16(this.#take(2, what));
  }

  uint16(what = "uint16"): number {
    return this.#view.getUint16(this.#take(2, what));
  }

  int32(what = "int32"): number {
    return this.#view.getInt32(this.#take(4, what));
  }

  int64(what = "int64"): number {
    const value = this.#view.getBigInt64(this.#take(8, what));
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw ProtocolError.invalid(`${what} ${value} is outside the safe integer range`);
    }
    return Number(value);
  }

  float64(what = "float64"): number {
    return this.#view.getFloat64(this.#take(8, what));
  }

  bool(what = "bool"): boolean {
    return this.#view.getUint8(this.#take(1, what)) !== 0;
  }

  uvarint(what = "uvarint"): number {
    let value = 0;
    for (let i = 0; i < UVARINT_BYTES_MAX; i++) {
      const byte = this.bytes[this.#take(1, what)]!;
      value += (byte & 0x7f) * 2 ** (7 * i);
      if ((byte & 0x80) === 0) {
        if (value > 0xffff_ffff) throw ProtocolError.invalid(`${what} ${value} exceeds 32 bits`);
        return value;
      }
    }
    throw ProtocolError.invalid(`${what} is longer than ${UVARINT_BYTES_MAX} bytes`);
  }

  varint(what = "varint"): number {
    const raw = this.uvarint(what);
    return raw % 2 === 0 ? raw / 2 : -(raw + 1) / 2;
  }

  uuid(what = "uuid"): Uint8Array {
    const at = this.#take(16, what);
    return this.bytes.subarray(at, at + 16);
  }

  /** A length (or null as -1) in the classic or compact form, checked against what is left. */
  length(compact: boolean, wide: boolean, itemBytesMin: number, what: string): number {
    const n = compact ? this.uvarint(what) - 1 : wide ? this.int32(what) : this.int16(what);
    if (n < -1) throw ProtocolError.invalid(`${what} has length ${n}`);
    if (n > 0 && n * itemBytesMin > this.remaining) {
      throw ProtocolError.invalid(
        `${what} of ${n} items (or bytes) cannot fit in the ${this.remaining} bytes left`,
      );
    }
    return n;
  }

  string(compact: boolean, what = "string"): string | null {
    const n = this.length(compact, false, 1, what);
    if (n === -1) return null;
    const at = this.#take(n, what);
    try {
      return decoder.decode(this.bytes.subarray(at, at + n));
    } catch {
      throw ProtocolError.invalid(`${what} at byte ${at} is not valid UTF-8`);
    }
  }

  /** Bytes as a view of the request (valid only while the request is being served). */
  bytesView(compact: boolean, what = "bytes"): Uint8Array | null {
    const n = this.length(compact, true, 1, what);
    if (n === -1) return null;
    const at = this.#take(n, what);
    return this.bytes.subarray(at, at + n);
  }

  skip(size: number, what: string): void {
    this.#take(size, what);
  }
}

/**
 * A growable writer of one response. `attach` adds a borrowed view (record batches) as its own
 * chunk without copying it; `finish` returns the chunks with the frame's size prefix filled in.
 */
export class KafkaWriter {
  #buffer: Uint8Array;
  #view: DataView;
  #at = 0;
  #chunks: Uint8Array[] = [];
  #sizeBytes = 0;

  constructor(capacity = 256) {
    this.#buffer = new Uint8Array(capacity);
    this.#view = new DataView(this.#buffer.buffer);
  }

  /**
   * Room for `size` more bytes, growing the buffer if needed: callers take the position first
   * and only then read `#buffer`/`#view`, which the growth replaces.
   */
  #reserve(size: number): number {
    if (this.#at + size > this.#buffer.length) {
      const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#at + size));
      grown.set(this.#buffer.subarray(0, this.#at));
      this.#buffer = grown;
      this.#view = new DataView(grown.buffer);
    }
    const at = this.#at;
    this.#at += size;
    return at;
  }

  int8(value: number): this {
    const at = this.#reserve(1);
    this.#view.setInt8(at, value);
    return this;
  }

  int16(value: number): this {
    const at = this.#reserve(2);
    this.#view.setInt16(at, value);
    return this;
  }

  uint16(value: number): this {
    const at = this.#reserve(2);
    this.#view.setUint16(at, value);
    return this;
  }

  int32(value: number): this {
    const at = this.#reserve(4);
    this.#view.setInt32(at, value);
    return this;
  }

  int64(value: number): this {
    const at = this.#reserve(8);
    this.#view.setBigInt64(at, BigInt(value));
    return this;
  }

  float64(value: number): this {
    const at = this.#reserve(8);
    this.#view.setFloat64(at, value);
    return this;
  }

  bool(value: boolean): this {
    return this.int8(value ? 1 : 0);
  }

  uvarint(value: number): this {
    let rest = value;
    while (rest >= 0x80) {
      const at = this.#reserve(1);
      this.#buffer[at] = (rest % 0x80) | 0x80;
      rest = Math.floor(rest / 0x80);
    }
    const at = this.#reserve(1);
    this.#buffer[at] = rest;
    return this;
  }

  varint(value: number): this {
    return this.uvarint(value >= 0 ? value * 2 : -value * 2 - 1);
  }

  raw(bytes: Uint8Array): this {
    const at = this.#reserve(bytes.length);
    this.#buffer.set(bytes, at);
    return this;
  }

  /** A length in the classic or compact form; -1 is null. */
  length(n: number, compact: boolean, wide: boolean): this {
    if (compact) return this.uvarint(n + 1);
    return wide ? this.int32(n) : this.int16(n);
  }

  string(value: string | null, compact: boolean): this {
    if (value === null) return this.length(-1, compact, false);
    const bytes = encoder.encode(value);
    return this.length(bytes.length, compact, false).raw(bytes);
  }

  bytes(value: Uint8Array | null, compact: boolean): this {
    if (value === null) return this.length(-1, compact, true);
    return this.length(value.length, compact, true).raw(value);
  }

  /** Record batches as borrowed views: written as one bytes field, never copied. */
  views(value: readonly Uint8Array[] | null, compact: boolean): this {
    if (value === null) return this.length(-1, compact, true);
    let size = 0;
    for (const view of value) size += view.length;
    this.length(size, compact, true);
    for (const view of value) this.attach(view);
    return this;
  }

  attach(view: Uint8Array): void {
    if (view.length === 0) return;
    this.#flush();
    this.#chunks.push(view);
    this.#sizeBytes += view.length;
  }

  #flush(): void {
    if (this.#at === 0) return;
    const bytes = this.#buffer.subarray(0, this.#at);
    this.#chunks.push(bytes);
    this.#sizeBytes += bytes.length;
    this.#buffer = new Uint8Array(Math.max(64, this.#buffer.length - this.#at));
    this.#view = new DataView(this.#buffer.buffer);
    this.#at = 0;
  }

  /** The chunks written, in order (a writer started with `frame` gets its size prefix). */
  finish(): Uint8Array[] {
    this.#flush();
    return this.#chunks;
  }

  get sizeBytes(): number {
    return this.#sizeBytes + this.#at;
  }
}

/** Joins chunks into one buffer (tests and small responses). */
export const concatChunks: (chunks: readonly Uint8Array[]) => Uint8Array = joinViews;

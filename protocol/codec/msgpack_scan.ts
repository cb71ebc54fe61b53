// A pre-scan of one MessagePack value that checks its shape against limits before anything
// decodes it. msgpackr builds every map and string it meets, and a body of 5 million keys held
// the event loop for seconds; this walk allocates nothing (one preallocated stack of counts),
// reads each header byte once, and refuses as soon as a limit is passed, usually from a single
// count in a header:
//
//   bytes   the body's length, checked first, before any byte is read
//   depth   containers nested in one another; the body's own map is depth 1
//   entries the sum of every array's items and every map's pairs, counted from the headers as
//           they are met, so a map32 header announcing 5 M pairs is refused at once
//
// It also refuses what no control-plane body needs and a decoder might mishandle: extension
// types (msgpackr gives some of them meaning, such as records and timestamps), the never-used
// byte 0xc1, map keys that are not strings, a count or length that runs past the body's end,
// and bytes left over after the value.
//
//   stack:  pending[1] = 2·pairs left in the body's map
//           pending[2] = items left in the array being read inside it ... (≤ depthMax levels)

import { assert } from "../../record/mod.ts";
import { ProtocolError } from "./errors.ts";

export type MsgpackLimits = {
  /** Most bytes the body may have. */
  bytesMax: number;
  /** Most containers nested in one another, the outermost counted as 1. */
  depthMax: number;
  /** Most array items plus map pairs in the whole body. */
  entriesMax: number;
};

/** The deepest nesting any limit may allow: the scan's stack is preallocated to it. */
export const MSGPACK_DEPTH_MAX_LIMIT = 64;

// Values still to read at each open level; a map's level counts keys and values separately.
const pending = new Float64Array(MSGPACK_DEPTH_MAX_LIMIT + 1);
// 1 where the level is a map, whose even-numbered values (counting down) are keys.
const isMap = new Uint8Array(MSGPACK_DEPTH_MAX_LIMIT + 1);

function refuse(what: string, message: string): ProtocolError {
  return ProtocolError.invalid(`${what} ${message}`);
}

/**
 * Checks that `bytes` hold exactly one MessagePack value within `limits`; throws a
 * ProtocolError (INVALID_REQUEST) naming `what`, the rule and the value otherwise.
 */
export function scanMsgpack(bytes: Uint8Array, limits: MsgpackLimits, what: string): void {
  assert(limits.depthMax <= MSGPACK_DEPTH_MAX_LIMIT, "depthMax is within the scan's stack");
  if (bytes.length > limits.bytesMax) {
    throw refuse(what, `of ${bytes.length} bytes exceeds ${limits.bytesMax} bytes`);
  }
  const end = bytes.length;
  let at = 0;
  let depth = 0;
  let entries = 0;
  pending[0] = 1;
  isMap[0] = 0;
  while (true) {
    while (depth > 0 && pending[depth] === 0) depth--;
    if (pending[depth] === 0) break;
    const key = isMap[depth] === 1 && pending[depth]! % 2 === 0;
    pending[depth]!--;
    if (at >= end) throw refuse(what, `ends at byte ${at} inside a value`);
    const type = bytes[at]!;
    if (key && !isStringType(type)) {
      throw refuse(
        what,
        `has a map key of type 0x${type.toString(16)} at byte ${at}; keys are strings`,
      );
    }
    const container = containerSize(bytes, at, end, what);
    if (container === undefined) {
      at += scalarBytes(bytes, at, end, what);
      if (at > end) throw refuse(what, `ends inside the value at byte ${at}`);
      continue;
    }
    at += container.headerBytes;
    entries += container.count;
    if (entries > limits.entriesMax) {
      throw refuse(what, `has more than ${limits.entriesMax} entries (at byte ${at})`);
    }
    const values = container.map ? container.count * 2 : container.count;
    // Every value takes at least one byte: a count larger than what is left is a lie.
    if (values > end - at) {
      throw refuse(what, `announces ${values} values at byte ${at} but ${end - at} bytes remain`);
    }
    if (depth + 1 > limits.depthMax) {
      throw refuse(what, `nests deeper than depth ${limits.depthMax} (at byte ${at})`);
    }
    if (values === 0) continue;
    depth++;
    pending[depth] = values;
    isMap[depth] = container.map ? 1 : 0;
  }
  if (at !== end) throw refuse(what, `has ${end - at} bytes after its value`);
}

function isStringType(type: number): boolean {
  return (type >= 0xa0 && type <= 0xbf) || (type >= 0xd9 && type <= 0xdb);
}

/** An array or map header at `at`: its item (or pair) count; undefined for other types. */
function containerSize(
  bytes: Uint8Array,
  at: number,
  end: number,
  what: string,
): { count: number; headerBytes: number; map: boolean } | undefined {
  const type = bytes[at]!;
  if (type >= 0x80 && type <= 0x8f) return { count: type & 0x0f, headerBytes: 1, map: true };
  if (type >= 0x90 && type <= 0x9f) return { count: type & 0x0f, headerBytes: 1, map: false };
  if (type === 0xdc || type === 0xde) {
    return { count: readLength(bytes, at, 2, end, what), headerBytes: 3, map: type === 0xde };
  }
  if (type === 0xdd || type === 0xdf) {
    return { count: readLength(bytes, at, 4, end, what), headerBytes: 5, map: type === 0xdf };
  }
  return undefined;
}

/** Bytes taken by the scalar at `at` (header and payload); may point past `end`. */
function scalarBytes(bytes: Uint8Array, at: number, end: number, what: string): number {
  const type = bytes[at]!;
  if (type <= 0x7f || type >= 0xe0) return 1; // positive and negative fixint
  if (type >= 0xa0 && type <= 0xbf) return 1 + (type & 0x1f); // fixstr
  const fixed = FIXED_BYTES[type - 0xc0];
  if (fixed !== undefined && fixed > 0) return fixed;
  switch (type) {
    case 0xc4: // bin8
    case 0xd9: // str8
      return 2 + readLength(bytes, at, 1, end, what);
    case 0xc5: // bin16
    case 0xda: // str16
      return 3 + readLength(bytes, at, 2, end, what);
    case 0xc6: // bin32
    case 0xdb: // str32
      return 5 + readLength(bytes, at, 4, end, what);
  }
  if ((type >= 0xc7 && type <= 0xc9) || (type >= 0xd4 && type <= 0xd8)) {
    throw refuse(what, `has an extension type at byte ${at}; control bodies use none`);
  }
  throw refuse(what, `has the invalid type byte 0x${type.toString(16)} at byte ${at}`);
}

/** Sizes of the fixed-size types from 0xc0, by type - 0xc0; 0 for the others. */
const FIXED_BYTES: readonly number[] = [
  1, // c0 nil
  0, // c1 never used
  1, // c2 false
  1, // c3 true
  0,
  0,
  0,
  0,
  0,
  0, // c4-c9 bin, ext
  5, // ca float32
  9, // cb float64
  2, // cc uint8
  3, // cd uint16
  5, // ce uint32
  9, // cf uint64
  2, // d0 int8
  3, // d1 int16
  5, // d2 int32
  9, // d3 int64
];

/** A big-endian length of `width` bytes after the type byte at `at`. */
function readLength(
  bytes: Uint8Array,
  at: number,
  width: 1 | 2 | 4,
  end: number,
  what: string,
): number {
  if (at + 1 + width > end) throw refuse(what, `ends inside the header at byte ${at}`);
  let length = 0;
  for (let i = 1; i <= width; i++) length = length * 256 + bytes[at + i]!;
  return length;
}

assert(FIXED_BYTES.length === 0xd4 - 0xc0, "one size for every type from 0xc0 to 0xd3");

// A pre-scan of one MessagePack value that checks its shape against limits before anything
// decodes it. msgpackr builds every map and string it meets, and a body of 5 million keys held
// the event loop for seconds; this walk allocates nothing (preallocated tables), reads each
// header once, and refuses as soon as a limit is passed, usually from a single header:
//
//   bytes    the body's length, checked first, before any byte is read
//   depth    containers nested in one another; the body's own map is depth 1
//   entries  every array's items plus every map's pairs, counted from the headers as they are
//            met, so a map32 header announcing 5 M pairs is refused at once
//   keys     distinct map keys in the whole body. A real control body has a dozen (the names
//            of the grammar's fields); distinct keys are what costs a decoder most (each makes
//            a new string and a new object shape), so a few thousand maps of fresh keys cost
//            ten times what the same entries with repeated keys do.
//
// It also refuses what no control-plane body needs and a decoder might mishandle: extension
// types (msgpackr gives some of them meaning, such as records and timestamps), the never-used
// byte 0xc1, map keys that are not strings, a count or length that runs past the body's end,
// and bytes left over after the value.
//
//   stack:  pending[1] = 2·pairs left in the body's map (keys and values counted apart)
//           pending[2] = items left in the array being read inside it ... (≤ depthMax levels)
//   keys:   an open-addressing table of key hashes (FNV-1a), marked with the scan's number so
//           that it never needs clearing; colliding keys count once, which errs on accepting

import { assert } from "../../record/mod.ts";
import { ProtocolError } from "./errors.ts";

export type MsgpackLimits = {
  /** Most bytes the body may have. */
  bytesMax: number;
  /** Most containers nested in one another, the outermost counted as 1. */
  depthMax: number;
  /** Most array items plus map pairs in the whole body. */
  entriesMax: number;
  /** Most distinct map keys in the whole body. */
  keysMax: number;
};

/** The deepest nesting any limit may allow: the scan's stack is preallocated to it. */
export const MSGPACK_DEPTH_MAX_LIMIT = 64;
/** The most distinct keys any limit may allow: the key table is preallocated for it. */
export const MSGPACK_KEYS_MAX_LIMIT = 512;

const KEY_TABLE_SLOTS = 2048;

// Values still to read at each open level; a map's level counts keys and values apart. A
// level holds at most one value per byte of the body (checked before it is stored), and bodies
// are below 2^32 bytes: a u32 holds it.
const pending = new Uint32Array(MSGPACK_DEPTH_MAX_LIMIT + 1);
// 1 where the level is a map, whose even-numbered values (counting down) are keys.
const isMap = new Uint8Array(MSGPACK_DEPTH_MAX_LIMIT + 1);
const keyHashes = new Uint32Array(KEY_TABLE_SLOTS);
const keyMarks = new Uint32Array(KEY_TABLE_SLOTS);
let scanMark = 0;
/** Distinct keys met by the scan running now. */
let keysSeen = 0;

assert(KEY_TABLE_SLOTS >= 4 * MSGPACK_KEYS_MAX_LIMIT, "the key table stays at most 1/4 full");
assert((KEY_TABLE_SLOTS & (KEY_TABLE_SLOTS - 1)) === 0, "the key table's size is a power of 2");

function refuse(what: string, message: string): ProtocolError {
  return ProtocolError.invalid(`${what} ${message}`);
}

/**
 * Checks that `bytes` hold exactly one MessagePack value within `limits`; throws a
 * ProtocolError (INVALID_REQUEST) naming `what`, the rule and the value otherwise.
 */
export function scanMsgpack(bytes: Uint8Array, limits: MsgpackLimits, what: string): void {
  assert(limits.depthMax <= MSGPACK_DEPTH_MAX_LIMIT, "depthMax is within the scan's stack");
  assert(limits.keysMax <= MSGPACK_KEYS_MAX_LIMIT, "keysMax is within the key table");
  if (bytes.length > limits.bytesMax) {
    throw refuse(what, `of ${bytes.length} bytes exceeds ${limits.bytesMax} bytes`);
  }
  assert(bytes.length <= 0xffff_ffff, "a body's values fit the scan's u32 counts");
  scanMark = (scanMark + 1) >>> 0 || 1;
  keysSeen = 0;
  const end = bytes.length;
  let at = 0;
  let depth = 0;
  let entries = 0;
  pending[0] = 1;
  isMap[0] = 0;
  while (true) {
    while (depth > 0 && pending[depth] === 0) depth--;
    if (pending[depth] === 0) break;
    const key = isMap[depth] === 1 && (pending[depth]! & 1) === 0;
    pending[depth]!--;
    if (at >= end) throw refuse(what, `ends at byte ${at} inside a value`);
    if (key) {
      const start = at;
      at = skipKey(bytes, at, end, what);
      if (keysSeen > limits.keysMax) {
        throw refuse(what, `has more than ${limits.keysMax} distinct map keys (at byte ${start})`);
      }
      continue;
    }
    if (!readContainer(bytes, at, end, what)) {
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

/** The container header readContainer found last: reused, never reallocated. */
const container = { count: 0, headerBytes: 0, map: false };

/** True when `at` holds an array or map header, which it reads into `container`. */
function readContainer(bytes: Uint8Array, at: number, end: number, what: string): boolean {
  const type = bytes[at]!;
  if (type >= 0x80 && type <= 0x9f) {
    container.count = type & 0x0f;
    container.headerBytes = 1;
  } else if (type === 0xdc || type === 0xde) {
    container.count = readLength(bytes, at, 2, end, what);
    container.headerBytes = 3;
  } else if (type === 0xdd || type === 0xdf) {
    container.count = readLength(bytes, at, 4, end, what);
    container.headerBytes = 5;
  } else {
    return false;
  }
  container.map = type <= 0x8f || type === 0xde || type === 0xdf;
  return true;
}

/** Skips the map key at `at` (a string, or the body is refused), counting it if new. */
function skipKey(bytes: Uint8Array, at: number, end: number, what: string): number {
  const type = bytes[at]!;
  const length = stringBytes(bytes, at, end);
  if (length < 0) {
    throw refuse(
      what,
      `has a map key of type 0x${type.toString(16)} at byte ${at}; keys are strings`,
    );
  }
  const start = at + stringHeaderBytes(type);
  const stop = start + length;
  if (stop > end) throw refuse(what, `ends inside the key at byte ${start}`);
  if (newKey(bytes, start, stop)) keysSeen++;
  return stop;
}

/** The length of the string whose header is at `at`; -1 when it is not a string. */
function stringBytes(bytes: Uint8Array, at: number, end: number): number {
  const type = bytes[at]!;
  if (type >= 0xa0 && type <= 0xbf) return type & 0x1f;
  if (type === 0xd9) return readLength(bytes, at, 1, end, "key");
  if (type === 0xda) return readLength(bytes, at, 2, end, "key");
  if (type === 0xdb) return readLength(bytes, at, 4, end, "key");
  return -1;
}

function stringHeaderBytes(type: number): number {
  if (type <= 0xbf) return 1;
  return type === 0xd9 ? 2 : type === 0xda ? 3 : 5;
}

/** Records the key in bytes[start, stop); true when this scan had not seen it. */
function newKey(bytes: Uint8Array, start: number, stop: number): boolean {
  let hash = 0x811c_9dc5;
  for (let i = start; i < stop; i++) hash = Math.imul(hash ^ bytes[i]!, 0x0100_0193);
  hash >>>= 0;
  let slot = hash & (KEY_TABLE_SLOTS - 1);
  while (keyMarks[slot] === scanMark) {
    if (keyHashes[slot] === hash) return false;
    slot = (slot + 1) & (KEY_TABLE_SLOTS - 1);
  }
  keyMarks[slot] = scanMark;
  keyHashes[slot] = hash;
  return true;
}

/** Bytes taken by the scalar at `at` (header and payload); may point past `end`. */
function scalarBytes(bytes: Uint8Array, at: number, end: number, what: string): number {
  const type = bytes[at]!;
  if (type <= 0x7f || type >= 0xe0) return 1; // positive and negative fixint
  if (type >= 0xa0 && type <= 0xbf) return 1 + (type & 0x1f); // fixstr
  switch (type) {
    case 0xc0: // nil
    case 0xc2: // false
    case 0xc3: // true
      return 1;
    case 0xcc: // uint8
    case 0xd0: // int8
      return 2;
    case 0xcd: // uint16
    case 0xd1: // int16
      return 3;
    case 0xca: // float32
    case 0xce: // uint32
    case 0xd2: // int32
      return 5;
    case 0xcb: // float64
    case 0xcf: // uint64
    case 0xd3: // int64
      return 9;
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

/** A big-endian length of `width` bytes after the type byte at `at`. */
function readLength(
  bytes: Uint8Array,
  at: number,
  width: 1 | 2 | 4,
  end: number,
  what: string,
): number {
  if (at + 1 + width > end) throw refuse(what, `ends inside the header at byte ${at}`);
  if (width === 1) return bytes[at + 1]!;
  if (width === 2) return (bytes[at + 1]! << 8) | bytes[at + 2]!;
  return (
    ((bytes[at + 1]! << 24) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 8) | bytes[at + 4]!) >>> 0
  );
}

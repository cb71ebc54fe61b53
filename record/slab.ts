// Small, short-lived byte buffers carved from shared slabs, so that taking views of them costs
// the garbage collector nothing.
//
// Why: JavaScriptCore keeps a typed array's bytes without an ArrayBuffer object until something
// asks for one: `subarray`, `.buffer`, a DataView, a view handed to native code. From then on the
// bytes are an ArrayBuffer the collector tracks on its own, and when the array dies, sweeping
// that ArrayBuffer (and freeing its memory) happens in the collection's final stop-the-world
// pause. One such buffer per message (a received chunk read through a view, a response written
// and then cut to length) made every pause of the broker 3-8 ms at 10,000 messages a second,
// against about 1 ms without them (bench/RESULTS.md, "GC pauses and ArrayBuffers"). Views of a
// long-lived buffer cost none of that: a slab's ArrayBuffer is made once per SLAB_BYTES, and the
// views carved from it are plain cells.
//
//   slab (256 KiB):  [frame 1.1 KiB][answer 256 B][frame 1.1 KiB][ ... ][free →]
//                   carved front to back; never reused; the next slab when this one is full
//
// Nothing carved is ever reused (the slab is only collected once no view of it is left), so a
// view may be kept for as long as the caller likes, exactly like a fresh buffer; the price is
// that one kept view keeps its whole slab (at most SLAB_BYTES) alive. Allocations above
// SLAB_CARVE_BYTES_MAX get a buffer of their own: their ArrayBuffer is amortized over enough
// bytes, and a large kept view must not pin a slab's worth of neighbours besides.

import { assert } from "./errors.ts";

/** Bytes of one slab. */
export const SLAB_BYTES = 256 * 1024;
/** Allocations larger than this get a buffer of their own, not a slab's carve. */
export const SLAB_CARVE_BYTES_MAX = 32 * 1024;
/** Carves start at multiples of this, so that typed arrays of wider elements may view them. */
const SLAB_ALIGN_BYTES = 8;

assert(SLAB_CARVE_BYTES_MAX * 4 <= SLAB_BYTES, "a slab holds several of the largest carves");
assert(SLAB_BYTES % SLAB_ALIGN_BYTES === 0);

let slab = new ArrayBuffer(SLAB_BYTES);
/** Where the next carve may start in `slab`. */
let slabAt = 0;

/**
 * A zero-filled buffer of `length` bytes that is never reused: from the current slab when it
 * is small, else of its own.
 */
export function slabBytes(length: number): Uint8Array {
  if (length > SLAB_CARVE_BYTES_MAX) return new Uint8Array(length);
  let at = slabAt;
  if (at + length > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    at = 0;
  }
  const bytes = new Uint8Array(slab, at, length);
  slabAt = alignUp(at + length);
  return bytes;
}

/** A copy of `bytes` that is never reused (see slabBytes). */
export function slabCopy(bytes: Uint8Array): Uint8Array {
  const copy = slabBytes(bytes.length);
  copy.set(bytes);
  return copy;
}

function alignUp(position: number): number {
  return Math.ceil(position / SLAB_ALIGN_BYTES) * SLAB_ALIGN_BYTES;
}

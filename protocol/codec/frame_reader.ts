// Splits a byte stream into frames (`size:u32 payload`) in a drain loop. A frame that arrives
// whole inside one received chunk is handed out as a view of that chunk, with no copy; only a
// frame split across chunks is assembled in a buffer of its own, allocated once its size has
// been checked against the limit. A size over the limit is reported before anything is read
// or allocated for it.
//
//   chunk:  [size|payload][size|payl]   →  frame 1 as a view, then "ayl.." kept for later
//   chunk:  [oad][size|payload]          →  frame 2 completed in its own buffer, frame 3 a view
//
// Assembly buffers for large frames come from a small pool shared by every connection and go
// back to it once the frame has been handled: a frame's view is valid only during `frame()`
// (the handlers copy what they keep: the engine copies appended batches into its own chunks).
// Why: a produce request of several MiB assembled in fresh memory costs a page fault per 4 KiB
// touched, which made the copy run at a fraction of memory speed; reused memory is already
// mapped. Small frames (control requests) still get a buffer of their own.
//
//   pool (≤ ASSEMBLY_POOL_BYTES_MAX):  [4 MiB][16 MiB]   take: smallest that fits, else a new
//                                                        power-of-two buffer; give back after

/** Frames at least this large are assembled in pooled buffers; smaller ones in their own. */
export const POOLED_FRAME_BYTES_MIN = 64 * 1024;
/** Bytes of assembly buffers kept for reuse across all connections of the process. */
export const ASSEMBLY_POOL_BYTES_MAX = 64 * 1024 * 1024;
const ASSEMBLY_POOL_COUNT_MAX = 8;

const assemblyPool: Uint8Array[] = [];
let assemblyPoolBytes = 0;

/** A buffer of at least `size` bytes for assembling one frame (a view of exactly `size`). */
function takeAssembly(size: number): Uint8Array {
  if (size < POOLED_FRAME_BYTES_MIN) return new Uint8Array(size);
  let best = -1;
  for (let i = 0; i < assemblyPool.length; i++) {
    const length = assemblyPool[i]!.length;
    if (length >= size && (best === -1 || length < assemblyPool[best]!.length)) best = i;
  }
  if (best === -1) return new Uint8Array(2 ** Math.ceil(Math.log2(size))).subarray(0, size);
  const buffer = assemblyPool[best]!;
  assemblyPool[best] = assemblyPool[assemblyPool.length - 1]!;
  assemblyPool.pop();
  assemblyPoolBytes -= buffer.length;
  return buffer.subarray(0, size);
}

/** Returns an assembly buffer once its frame has been handled; kept while the pool has room. */
function giveBackAssembly(frame: Uint8Array): void {
  if (frame.length < POOLED_FRAME_BYTES_MIN) return;
  const buffer = new Uint8Array(frame.buffer, 0, frame.buffer.byteLength);
  const fits = assemblyPoolBytes + buffer.length <= ASSEMBLY_POOL_BYTES_MAX;
  if (!fits || assemblyPool.length >= ASSEMBLY_POOL_COUNT_MAX) return;
  assemblyPool.push(buffer);
  assemblyPoolBytes += buffer.length;
}

/** Bytes held by the assembly pool now (for tests and stats). */
export function assemblyPoolSizeBytes(): number {
  return assemblyPoolBytes;
}

export type FrameSink = {
  /** A whole frame's payload; valid only during the call: its memory is reused afterwards. */
  frame(payload: Uint8Array): void;
  /** The peer announced a frame larger than the limit: the stream cannot continue. */
  oversized(sizeBytes: number, limitBytes: number): void;
};

export class FrameReader {
  /** Bytes of a frame (prefix included) that arrived split across chunks. */
  #partial: Uint8Array | undefined;
  #partialLength = 0;
  #header = new Uint8Array(4);
  #headerLength = 0;
  #failed = false;
  frameBytesMax: number;

  constructor(frameBytesMax: number) {
    this.frameBytesMax = frameBytesMax;
  }

  /** Bytes held for an incomplete frame. */
  get bufferedBytes(): number {
    return this.#headerLength + this.#partialLength;
  }

  push(chunk: Uint8Array, sink: FrameSink): void {
    let at = 0;
    while (at < chunk.length && !this.#failed) {
      if (this.#partial !== undefined || this.#headerLength > 0) {
        at = this.#continue(chunk, at, sink);
        continue;
      }
      if (chunk.length - at < 4) {
        this.#header.set(chunk.subarray(at));
        this.#headerLength = chunk.length - at;
        return;
      }
      const size = readSize(chunk, at);
      if (!this.#sizeAllowed(size, sink)) return;
      const end = at + 4 + size;
      if (end <= chunk.length) {
        sink.frame(chunk.subarray(at + 4, end));
        at = end;
      } else {
        this.#startPartial(size, chunk.subarray(at));
        return;
      }
    }
  }

  #sizeAllowed(size: number, sink: FrameSink): boolean {
    if (size <= this.frameBytesMax) return true;
    this.#failed = true;
    sink.oversized(size, this.frameBytesMax);
    return false;
  }

  #startPartial(size: number, bytes: Uint8Array): void {
    this.#partial = takeAssembly(size);
    this.#partial.set(bytes.subarray(4));
    this.#partialLength = bytes.length - 4;
  }

  /** Continues a split header or frame; returns the position in `chunk` after what it used. */
  #continue(chunk: Uint8Array, at: number, sink: FrameSink): number {
    if (this.#partial === undefined) {
      const take = Math.min(4 - this.#headerLength, chunk.length - at);
      this.#header.set(chunk.subarray(at, at + take), this.#headerLength);
      this.#headerLength += take;
      if (this.#headerLength < 4) return at + take;
      const size = readSize(this.#header, 0);
      this.#headerLength = 0;
      if (!this.#sizeAllowed(size, sink)) return chunk.length;
      this.#partial = takeAssembly(size);
      this.#partialLength = 0;
      return this.#fill(chunk, at + take, sink);
    }
    return this.#fill(chunk, at, sink);
  }

  #fill(chunk: Uint8Array, at: number, sink: FrameSink): number {
    const partial = this.#partial!;
    const take = Math.min(partial.length - this.#partialLength, chunk.length - at);
    partial.set(chunk.subarray(at, at + take), this.#partialLength);
    this.#partialLength += take;
    if (this.#partialLength === partial.length) {
      this.#partial = undefined;
      this.#partialLength = 0;
      try {
        sink.frame(partial);
      } finally {
        giveBackAssembly(partial);
      }
    }
    return at + take;
  }
}

function readSize(bytes: Uint8Array, at: number): number {
  return (
    ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0
  );
}

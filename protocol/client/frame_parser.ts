// Splits the bytes a connection receives into frames (`size:u32 payload`) in a drain loop, with
// no concatenation of chunks. A frame that lies whole inside one received chunk is handed out
// as a view of that chunk; a frame split across chunks is assembled in a buffer of exactly its
// size, allocated once the size has been checked against the limit. Views stay valid forever:
// node:net hands every `data` event a fresh buffer and nothing here is ever written twice, so a
// record's key or value may be kept by the application without a copy.
//
//   chunk 1:  [size|payload][size|pay        → frame A as a view; "size|pay" starts frame B
//   chunk 2:  load][si                        → frame B completed in its own buffer
//   chunk 3:  ze|payload]                     → the size prefix itself may be split

import { FRAME_PREFIX_BYTES } from "../codec/frames.ts";

export type FrameHandler = (payload: Uint8Array) => void;

export class FrameParser {
  #partial: Uint8Array | undefined;
  #partialLength = 0;
  #prefix = new Uint8Array(FRAME_PREFIX_BYTES);
  #prefixLength = 0;
  /** Frames announcing more payload bytes than this fail the stream before any allocation. */
  frameBytesMax: number;

  constructor(frameBytesMax: number) {
    if (!Number.isSafeInteger(frameBytesMax) || frameBytesMax < 0) {
      throw new RangeError(`frameBytesMax ${frameBytesMax} is not a non-negative integer`);
    }
    this.frameBytesMax = frameBytesMax;
  }

  /** Bytes held for a frame that has not arrived whole yet. */
  get bufferedBytes(): number {
    return this.#prefixLength + this.#partialLength;
  }

  /**
   * Feeds one received chunk; calls `onFrame` for every frame it completes, in order. Throws a
   * RangeError naming the size when a frame is larger than `frameBytesMax`: the stream cannot
   * continue after that, and the caller closes the connection.
   */
  push(chunk: Uint8Array, onFrame: FrameHandler): void {
    let at = 0;
    if (this.#prefixLength > 0 || this.#partial !== undefined) at = this.#resume(chunk, onFrame);
    while (at < chunk.length) {
      const left = chunk.length - at;
      if (left < FRAME_PREFIX_BYTES) {
        this.#prefix.set(chunk.subarray(at));
        this.#prefixLength = left;
        return;
      }
      const size = this.#checkedSize(readU32(chunk, at));
      const end = at + FRAME_PREFIX_BYTES + size;
      if (end > chunk.length) {
        this.#partial = new Uint8Array(size);
        this.#partial.set(chunk.subarray(at + FRAME_PREFIX_BYTES));
        this.#partialLength = chunk.length - at - FRAME_PREFIX_BYTES;
        return;
      }
      onFrame(chunk.subarray(at + FRAME_PREFIX_BYTES, end));
      at = end;
    }
  }

  /** Continues a frame begun in an earlier chunk; returns where in `chunk` it stopped. */
  #resume(chunk: Uint8Array, onFrame: FrameHandler): number {
    let at = 0;
    if (this.#partial === undefined) {
      const take = Math.min(FRAME_PREFIX_BYTES - this.#prefixLength, chunk.length);
      this.#prefix.set(chunk.subarray(0, take), this.#prefixLength);
      this.#prefixLength += take;
      at = take;
      if (this.#prefixLength < FRAME_PREFIX_BYTES) return at;
      this.#prefixLength = 0;
      this.#partial = new Uint8Array(this.#checkedSize(readU32(this.#prefix, 0)));
      this.#partialLength = 0;
    }
    const partial = this.#partial;
    const take = Math.min(partial.length - this.#partialLength, chunk.length - at);
    partial.set(chunk.subarray(at, at + take), this.#partialLength);
    this.#partialLength += take;
    if (this.#partialLength === partial.length) {
      this.#partial = undefined;
      this.#partialLength = 0;
      onFrame(partial);
    }
    return at + take;
  }

  #checkedSize(size: number): number {
    if (size > this.frameBytesMax) {
      throw new RangeError(`Frame of ${size} bytes exceeds frameBytesMax ${this.frameBytesMax}`);
    }
    return size;
  }
}

function readU32(bytes: Uint8Array, at: number): number {
  return (
    ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0
  );
}

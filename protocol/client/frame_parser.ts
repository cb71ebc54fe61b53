// Splits the bytes a connection receives into frames (`size:u32 payload`) in a drain loop, with
// no concatenation of chunks. A frame that lies whole inside one received chunk is handed out
// as a view of that chunk. A frame split across chunks is either assembled in a buffer of
// exactly its size, allocated once the size has been checked against the limit (`push`), or,
// when it is at least `segmentBytesMin` long, handed out as the list of views of the chunks it
// lies in (`pushSegments`): a fetch response of many megabytes then costs no copy at all, where
// assembling it meant writing every byte again into fresh memory. Views stay valid forever:
// sockets hand every `data` event a fresh buffer and nothing here is ever written twice, so a
// record's key or value may be kept by the application without a copy.
//
//   chunk 1:  [size|payload][size|pay        → frame A as a view; "size|pay" starts frame B
//   chunk 2:  load][si                        → frame B completed (assembled, or [pay, load])
//   chunk 3:  ze|payload]                     → the size prefix itself may be split

import { FRAME_PREFIX_BYTES } from "../codec/frames.ts";

export type FrameHandler = (payload: Uint8Array) => void;
/** A frame's payload as views, in order: one when it arrived whole or was assembled. */
export type SegmentsHandler = (segments: Uint8Array[]) => void;

export class FrameParser {
  /** The frame in progress: its payload size, and the bytes of it received so far. */
  #size = 0;
  #filled = 0;
  #partial: Uint8Array | undefined;
  #parts: Uint8Array[] | undefined;
  #prefix = new Uint8Array(FRAME_PREFIX_BYTES);
  #prefixLength = 0;
  /** Frames announcing more payload bytes than this fail the stream before any allocation. */
  frameBytesMax: number;
  /** With `pushSegments`: frames this large that span chunks come as views of the chunks. */
  segmentBytesMin: number;

  constructor(frameBytesMax: number, options: { segmentBytesMin?: number } = {}) {
    if (!Number.isSafeInteger(frameBytesMax) || frameBytesMax < 0) {
      throw new RangeError(`frameBytesMax ${frameBytesMax} is not a non-negative integer`);
    }
    this.frameBytesMax = frameBytesMax;
    this.segmentBytesMin = options.segmentBytesMin ?? 64 * 1024;
  }

  /** Bytes held for a frame that has not arrived whole yet. */
  get bufferedBytes(): number {
    return this.#prefixLength + this.#filled;
  }

  /**
   * Feeds one received chunk; calls `onFrame` for every frame it completes, in order. Throws a
   * RangeError naming the size when a frame is larger than `frameBytesMax`: the stream cannot
   * continue after that, and the caller closes the connection.
   */
  push(chunk: Uint8Array, onFrame: FrameHandler): void {
    this.#push(chunk, false, (segments) => onFrame(segments[0]!));
  }

  /** `push`, handing out large frames split across chunks as views of those chunks. */
  pushSegments(chunk: Uint8Array, onFrame: SegmentsHandler): void {
    this.#push(chunk, true, onFrame);
  }

  #push(chunk: Uint8Array, segmented: boolean, onFrame: SegmentsHandler): void {
    let at = 0;
    if (this.#prefixLength > 0 || this.#inFrame) at = this.#resume(chunk, segmented, onFrame);
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
        this.#start(size, segmented);
        this.#take(chunk.subarray(at + FRAME_PREFIX_BYTES));
        return;
      }
      onFrame([chunk.subarray(at + FRAME_PREFIX_BYTES, end)]);
      at = end;
    }
  }

  get #inFrame(): boolean {
    return this.#partial !== undefined || this.#parts !== undefined;
  }

  #start(size: number, segmented: boolean): void {
    this.#size = size;
    this.#filled = 0;
    if (segmented && size > 0 && size >= this.segmentBytesMin) this.#parts = [];
    else this.#partial = new Uint8Array(size);
  }

  /** Adds bytes (no more than the frame still needs) to the frame in progress. */
  #take(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.#parts !== undefined) this.#parts.push(bytes);
    else this.#partial!.set(bytes, this.#filled);
    this.#filled += bytes.length;
  }

  /** Continues a frame begun in an earlier chunk; returns where in `chunk` it stopped. */
  #resume(chunk: Uint8Array, segmented: boolean, onFrame: SegmentsHandler): number {
    let at = 0;
    if (!this.#inFrame) {
      const take = Math.min(FRAME_PREFIX_BYTES - this.#prefixLength, chunk.length);
      this.#prefix.set(chunk.subarray(0, take), this.#prefixLength);
      this.#prefixLength += take;
      at = take;
      if (this.#prefixLength < FRAME_PREFIX_BYTES) return at;
      this.#prefixLength = 0;
      this.#start(this.#checkedSize(readU32(this.#prefix, 0)), segmented);
    }
    const take = Math.min(this.#size - this.#filled, chunk.length - at);
    this.#take(chunk.subarray(at, at + take));
    if (this.#filled === this.#size) {
      const segments = this.#parts ?? [this.#partial!];
      this.#partial = undefined;
      this.#parts = undefined;
      this.#filled = 0;
      onFrame(segments);
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

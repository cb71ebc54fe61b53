// Splits a byte stream into frames (`size:u32 payload`) in a drain loop. A frame that arrives
// whole inside one received chunk is handed out as a view of that chunk, with no copy; only a
// frame split across chunks is assembled in a buffer of its own, allocated once its size has
// been checked against the limit. A size over the limit is reported before anything is read
// or allocated for it.
//
//   chunk:  [size|payload][size|payl]   →  frame 1 as a view, then "ayl.." kept for later
//   chunk:  [oad][size|payload]          →  frame 2 completed in its own buffer, frame 3 a view

export type FrameSink = {
  /** A whole frame's payload; the view is valid only during the call. */
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
    this.#partial = new Uint8Array(size);
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
      this.#partial = new Uint8Array(size);
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
      sink.frame(partial);
    }
    return at + take;
  }
}

function readSize(bytes: Uint8Array, at: number): number {
  return (
    ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0
  );
}

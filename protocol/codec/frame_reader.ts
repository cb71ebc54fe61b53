// Splits a byte stream into frames (`size:u32 payload`) in a drain loop, for both ends of a
// connection. A frame that arrives whole inside one received chunk is handed out as a view of
// that chunk, with no copy of its own; a chunk of at most SLAB_CARVE_BYTES_MAX is first copied
// into a slab (record/slab.ts: a view of the socket's fresh buffer would give it an ArrayBuffer
// the collector sweeps in its pause), larger ones are viewed in place. A frame split across
// chunks is either assembled in a buffer of its own, allocated only once its size has been
// checked against the limit (`push`), or, when it is at least `chunkedBytesMin` long, handed out
// as the list of views of the chunks it lies in (`pushChunks`): a fetch response of many
// megabytes then costs no copy at all. A size over the limit is refused from the prefix alone,
// before anything is read or allocated for it.
//
//   chunk 1:  [size|payload][size|pay        → frame A as a view; "size|pay" starts frame B
//   chunk 2:  load][si                        → frame B completed (assembled, or [pay, load])
//   chunk 3:  ze|payload]                     → the size prefix itself may be split
//
// Where assembled frames live is the one choice that differs between the two ends:
//
//   "owned"  (the client, the default): a fresh buffer of exactly the frame's size, never
//            reused. With sockets that hand every read a fresh buffer (the client's do), every
//            view handed out stays valid for ever, so a record's key or value may be kept by
//            the application without a copy.
//   "pooled" (the server): frames of POOLED_FRAME_BYTES_MIN or more are assembled in buffers
//            from a pool shared by every connection of the process, given back once the
//            callback returns and every view kept through its lease is released (the engine
//            keeps large produced batches as views until it has written them; see below).
//            Why: a produce request of several MiB assembled in fresh memory costs a page
//            fault per 4 KiB touched, which made the copy run at a fraction of memory speed;
//            reused memory is already mapped.
//
//   pool (≤ ASSEMBLY_POOL_BYTES_MAX):  [4 MiB][16 MiB]   take: smallest that fits, else a new
//                                                        power-of-two buffer; give back after
//
//            The pool is sized for what lent batches keep out of it: the engine keeps a large
//            produced batch as a view until it leaves a partition's tail cache, so with 16
//            partitions about 128 MiB of tail cache holds a few dozen assembly buffers at once,
//            and they come back in bursts. With room for 8 buffers (64 MiB) most of a burst was
//            dropped and the next frames were assembled in fresh memory again. Measured on a
//            loaded machine (bench/RESULTS.md): at ~100 MB/s of publish, 0.74-1.26 GB of fresh
//            buffers in 10 s with 8 / 64 MiB against 0.26-0.34 GB with 16 / 128 MiB; at
//            190-310 MB/s, 0.51-0.60 against 0.39-0.52 GB per GB published (bursts then still
//            overflow 16). Broker CPU per MB: 0.88-0.89x in two pairs at 32 / 256 MiB, within
//            noise (0.94-1.54x) at 16 / 128 MiB. The pinning itself (a lent batch keeps its
//            whole frame's buffer) is gone for the server's plaintext Produce frames, which
//            are split instead (below); what still comes here is other large frames, Produce
//            under ACLs or TLS, and the rare Produce whose head is cut by a chunk's end.
//
// Keeping views past the call: `push` hands each frame a FrameLease. A handler that keeps a view
// of the payload calls `retain` once per view kept and `release` when done with it; a pooled
// assembly buffer goes back to the pool only when the call has returned and every retain is
// released, so a buffer is never reused under a kept view. A frame that is a view of a pushed
// chunk, or assembled "owned", gets a lease that counts nothing (its memory is never reused)
// when the reader was told that pushed chunks are fresh (`freshChunks`: the server's sockets,
// test/protocol/receive_chunks.test.ts); otherwise no lease, and the handler copies.
//
// `pushChunks` keeps views of earlier chunks until their frame completes: feed it only chunks
// that are never reused. One reader is fed by `push` or by `pushChunks`, not both.
//
// Splitting (`split`, the server's Produce requests): a frame that does not arrive whole in one
// chunk, at least `bytesMin` long, whose first `headBytes` arrive with its size and pass
// `select`, is not assembled either: `push` hands it to its `onParts` handler as the views of
// the chunks it lies in, with the chunks' lease (so only with `freshChunks`). Its large batches
// then reach the engine as those views, never copied whole by sluice (engine: BatchParts).
// Assembled in a pooled buffer, such a frame cost the broker's main thread its largest share:
// `set` was 39% of its profile samples in bench:tcp's publish, 2% after (bench/RESULTS.md).
//
// Discarding (`discard`, the server): a frame that does not arrive whole in one chunk is shown
// to `screen` with its first `headBytes` payload bytes (the request header) as soon as they
// arrive with its size. If the screen refuses it, the rest of its bytes are counted as they
// arrive and dropped, never assembled, and `onDiscarded` gets a copy of the head once the
// frame's last byte is in: the stream stays in step, at no memory cost for the body. A frame
// whose head is itself split across chunks is assembled as usual (and checked whole later).

import { assert, SLAB_CARVE_BYTES_MAX, slabBytes, slabCopy } from "../../record/mod.ts";
import { FRAME_PREFIX_BYTES } from "./frames.ts";

/** With "pooled" assembly, frames at least this large are assembled in pooled buffers. */
export const POOLED_FRAME_BYTES_MIN = 64 * 1024;
/** Bytes of assembly buffers kept for reuse across all connections of the process. */
export const ASSEMBLY_POOL_BYTES_MAX = 128 * 1024 * 1024;
/** Assembly buffers kept for reuse, at most (whatever their sizes). */
export const ASSEMBLY_POOL_COUNT_MAX = 16;
/** `pushChunks` hands out frames this large that span chunks as views, unless told otherwise. */
export const CHUNKED_FRAME_BYTES_MIN_DEFAULT = 64 * 1024;

// The pool must be able to keep at least one buffer of the smallest pooled size.
assert(POOLED_FRAME_BYTES_MIN <= ASSEMBLY_POOL_BYTES_MAX);

const assemblyPool: Uint8Array[] = [];
let assemblyPoolBytes = 0;

/** A buffer of at least `size` bytes for assembling one frame (a view of exactly `size`). */
function takeAssembly(size: number): Uint8Array {
  if (size < POOLED_FRAME_BYTES_MIN) return slabBytes(size);
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

/** Buffers held by the assembly pool now (for tests and stats). */
export function assemblyPoolCount(): number {
  return assemblyPool.length;
}

export type FrameAssembly = "owned" | "pooled";

/** Lets a frame's handler keep views of its payload after the call (see above). */
export interface FrameLease {
  retain(): void;
  release(): void;
}

/** The lease of memory that is never reused: nothing to count. */
export const FREE_LEASE: FrameLease = Object.freeze({ retain() {}, release() {} });

/** Counts the views kept of one pooled assembly buffer; gives it back when none is left. */
class PooledLease implements FrameLease {
  #count = 1;
  readonly #frame: Uint8Array;

  constructor(frame: Uint8Array) {
    this.#frame = frame;
  }

  retain(): void {
    assert(this.#count > 0, "a pooled frame is retained only while it is held");
    this.#count++;
  }

  release(): void {
    assert(this.#count > 0, "a pooled frame is released once per retain");
    this.#count--;
    if (this.#count === 0) giveBackAssembly(this.#frame);
  }
}

export type FrameReaderOptions = {
  /**
   * Chunks pushed are never reused by their source, so a frame lying in one may be kept (its
   * FrameLease counts nothing). Default false: such frames get no lease.
   */
  freshChunks?: boolean;
  /** Where frames split across chunks are assembled (see above); default "owned". */
  assembly?: FrameAssembly;
  /** With `pushChunks`: frames this large that span chunks come as views of the chunks. */
  chunkedBytesMin?: number;
  /** Frames to drop unassembled, chosen from their head and size (see above). */
  discard?: FrameDiscard;
  /** Frames to hand out in parts instead of assembling them (see above); needs freshChunks. */
  split?: FrameSplit;
};

export type FrameSplit = {
  headBytes: number;
  bytesMin: number;
  /** True to hand out the frame of `sizeBytes` whose payload starts with `head` in parts. */
  select: (head: Uint8Array, sizeBytes: number) => boolean;
};

export type FrameDiscard = {
  headBytes: number;
  /** True to drop the frame of `sizeBytes` whose payload starts with `head` (a view). */
  screen: (head: Uint8Array, sizeBytes: number) => boolean;
  /** A dropped frame's last byte arrived; `head` is a copy the callee may keep. */
  onDiscarded: (head: Uint8Array, sizeBytes: number) => void;
};

/**
 * A whole frame's payload, valid during the call; with a `lease`, views of it may be kept
 * past the call (retain, then release). Without one, the handler copies what it keeps.
 */
export type FrameHandler = (payload: Uint8Array, lease: FrameLease | undefined) => void;
/** A frame's payload as views, in order: one when it arrived whole or was assembled. */
export type ChunksHandler = (chunks: Uint8Array[]) => void;
/** A split frame's payload as the views of the chunks it lies in, with their lease. */
export type PartsHandler = (parts: Uint8Array[], lease: FrameLease) => void;

/** The peer announced a frame larger than the limit: the stream cannot continue. */
export class FrameTooLargeError extends RangeError {
  override name = "FrameTooLargeError";
  readonly sizeBytes: number;
  readonly limitBytes: number;

  constructor(sizeBytes: number, limitBytes: number) {
    super(`Frame of ${sizeBytes} bytes exceeds frameBytesMax ${limitBytes}`);
    this.sizeBytes = sizeBytes;
    this.limitBytes = limitBytes;
  }
}

export class FrameReader {
  /** The frame in progress: its payload size, and the bytes of it received so far. */
  #size = 0;
  #filled = 0;
  #partial: Uint8Array | undefined;
  #parts: Uint8Array[] | undefined;
  #prefix = new Uint8Array(FRAME_PREFIX_BYTES);
  #prefixLength = 0;
  #failure: FrameTooLargeError | undefined;
  /** The head of the frame in progress when it is being dropped, not assembled. */
  #discardedHead: Uint8Array | undefined;
  readonly #discard: FrameDiscard | undefined;
  readonly #split: FrameSplit | undefined;
  /** The frame in progress is collected in #parts for `push`'s onParts (split), not onChunks. */
  #splitting = false;
  readonly #pooled: boolean;
  /** The lease of frames that are views of pushed chunks, or assembled "owned". */
  readonly #freshLease: FrameLease | undefined;
  /** Frames announcing more payload bytes than this fail the stream before any allocation. */
  frameBytesMax: number;
  /** With `pushChunks`: frames this large that span chunks come as views of the chunks. */
  chunkedBytesMin: number;

  constructor(frameBytesMax: number, options: FrameReaderOptions = {}) {
    const { assembly = "owned", chunkedBytesMin = CHUNKED_FRAME_BYTES_MIN_DEFAULT } = options;
    if (!Number.isSafeInteger(frameBytesMax) || frameBytesMax < 0) {
      throw new RangeError(`frameBytesMax ${frameBytesMax} is not a non-negative integer`);
    }
    if (!Number.isSafeInteger(chunkedBytesMin) || chunkedBytesMin < 0) {
      throw new RangeError(`chunkedBytesMin ${chunkedBytesMin} is not a non-negative integer`);
    }
    if (assembly !== "owned" && assembly !== "pooled") {
      throw new TypeError(`assembly ${String(assembly)} is not "owned" or "pooled"`);
    }
    this.frameBytesMax = frameBytesMax;
    this.chunkedBytesMin = chunkedBytesMin;
    this.#pooled = assembly === "pooled";
    this.#freshLease = options.freshChunks === true ? FREE_LEASE : undefined;
    this.#discard = options.discard;
    if (options.split !== undefined && this.#freshLease === undefined) {
      throw new TypeError("split needs freshChunks: parts are views of the pushed chunks");
    }
    this.#split = options.split;
  }

  /**
   * True from the moment a frame's size has arrived until its last byte has: what the server's
   * per-frame read deadline (frameReadTimeoutMs) times. Bytes of a size prefix alone do not count.
   */
  get readingFrame(): boolean {
    return this.#inFrame;
  }

  /** Bytes held for a frame that has not arrived whole yet. */
  get bufferedBytes(): number {
    return this.#prefixLength + this.#filled;
  }

  /**
   * Feeds one received chunk; calls `onFrame` for every frame it completes, in order. Throws a
   * FrameTooLargeError (a RangeError naming the size) when a frame is larger than
   * `frameBytesMax`: the stream cannot continue after that, every later call throws it again,
   * and the caller closes the connection.
   */
  push(chunk: Uint8Array, onFrame: FrameHandler, onParts?: PartsHandler): void {
    assert(this.#split === undefined || onParts !== undefined, "a split reader is given onParts");
    this.#onParts = onParts;
    this.#drain(chunk, onFrame, undefined);
  }

  #onParts: PartsHandler | undefined;

  /** `push`, handing out large frames split across chunks as views of those chunks. */
  pushChunks(chunk: Uint8Array, onFrame: ChunksHandler): void {
    this.#drain(chunk, undefined, onFrame);
  }

  #drain(received: Uint8Array, onFrame?: FrameHandler, onChunks?: ChunksHandler): void {
    if (this.#failure !== undefined) throw this.#failure;
    // A small chunk is copied into a slab before any view of it is taken: a view of the socket's
    // own fresh buffer would give it an ArrayBuffer of its own, which costs the collector's pause
    // (record/slab.ts). Large chunks are viewed in place, their ArrayBuffer amortized.
    const chunk = received.length <= SLAB_CARVE_BYTES_MAX ? slabCopy(received) : received;
    let at = 0;
    if (this.#prefixLength > 0 || this.#inFrame) at = this.#resume(chunk, onFrame, onChunks);
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
        this.#start(size, onChunks !== undefined, chunk.subarray(at + FRAME_PREFIX_BYTES));
        this.#take(chunk.subarray(at + FRAME_PREFIX_BYTES));
        return;
      }
      const payload = chunk.subarray(at + FRAME_PREFIX_BYTES, end);
      if (onFrame !== undefined) onFrame(payload, this.#freshLease);
      else onChunks!([payload]);
      at = end;
    }
  }

  get #inFrame(): boolean {
    return (
      this.#partial !== undefined || this.#parts !== undefined || this.#discardedHead !== undefined
    );
  }

  /** Begins a frame of `size` payload bytes, of which `first` holds the ones received so far. */
  #start(size: number, chunked: boolean, first: Uint8Array): void {
    this.#size = size;
    this.#filled = 0;
    const discard = this.#discard;
    if (discard !== undefined && first.length >= discard.headBytes && size >= discard.headBytes) {
      const head = first.subarray(0, discard.headBytes);
      if (discard.screen(head, size)) {
        this.#discardedHead = head.slice();
        return;
      }
    }
    if (chunked && size > 0 && size >= this.chunkedBytesMin) this.#parts = [];
    else if (this.#splits(size, first)) {
      this.#parts = [];
      this.#splitting = true;
    } else this.#partial = this.#pooled ? takeAssembly(size) : slabBytes(size);
  }

  #splits(size: number, first: Uint8Array): boolean {
    const split = this.#split;
    if (split === undefined || size < split.bytesMin) return false;
    if (first.length < split.headBytes || size < split.headBytes) return false;
    return split.select(first.subarray(0, split.headBytes), size);
  }

  /** Adds bytes (no more than the frame still needs) to the frame in progress. */
  #take(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    // A frame being dropped only counts its bytes.
    if (this.#discardedHead === undefined) {
      if (this.#parts !== undefined) this.#parts.push(bytes);
      else this.#partial!.set(bytes, this.#filled);
    }
    this.#filled += bytes.length;
  }

  /** Continues a frame begun in an earlier chunk; returns where in `chunk` it stopped. */
  #resume(chunk: Uint8Array, onFrame?: FrameHandler, onChunks?: ChunksHandler): number {
    let at = 0;
    if (!this.#inFrame) {
      const take = Math.min(FRAME_PREFIX_BYTES - this.#prefixLength, chunk.length);
      this.#prefix.set(chunk.subarray(0, take), this.#prefixLength);
      this.#prefixLength += take;
      at = take;
      if (this.#prefixLength < FRAME_PREFIX_BYTES) return at;
      this.#prefixLength = 0;
      const size = this.#checkedSize(readU32(this.#prefix, 0));
      this.#start(size, onChunks !== undefined, chunk.subarray(at, at + size));
    }
    const take = Math.min(this.#size - this.#filled, chunk.length - at);
    this.#take(chunk.subarray(at, at + take));
    if (this.#filled === this.#size) this.#finish(onFrame, onChunks);
    return at + take;
  }

  /** Hands out the completed frame; a pooled assembly buffer goes back once the call returns. */
  #finish(onFrame?: FrameHandler, onChunks?: ChunksHandler): void {
    const parts = this.#parts;
    const partial = this.#partial;
    const discardedHead = this.#discardedHead;
    this.#parts = undefined;
    this.#partial = undefined;
    this.#discardedHead = undefined;
    this.#filled = 0;
    if (discardedHead !== undefined) {
      this.#discard!.onDiscarded(discardedHead, this.#size);
      return;
    }
    if (parts !== undefined && this.#splitting) {
      this.#splitting = false;
      assert(this.#onParts !== undefined, "a split frame is finished by push with onParts");
      this.#onParts(parts, this.#freshLease!);
      return;
    }
    if (parts !== undefined) {
      assert(onChunks !== undefined, "a frame begun by pushChunks was finished by push");
      onChunks(parts);
      return;
    }
    if (onFrame === undefined) {
      try {
        onChunks!([partial!]);
      } finally {
        if (this.#pooled) giveBackAssembly(partial!);
      }
      return;
    }
    // An owned buffer is never reused; a pooled one is once the call and every kept view end.
    const lease = this.#pooled ? new PooledLease(partial!) : FREE_LEASE;
    try {
      onFrame(partial!, lease);
    } finally {
      if (this.#pooled) lease.release();
    }
  }

  #checkedSize(size: number): number {
    if (size > this.frameBytesMax) {
      this.#failure = new FrameTooLargeError(size, this.frameBytesMax);
      throw this.#failure;
    }
    return size;
  }
}

function readU32(bytes: Uint8Array, at: number): number {
  return (
    ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0
  );
}

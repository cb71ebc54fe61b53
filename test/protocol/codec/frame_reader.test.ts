// The one FrameReader of both ends: frames out of any split of the byte stream; with "owned"
// assembly (the client) every frame handed out stays valid, with "pooled" assembly (the server)
// large frames are assembled in pooled buffers that are reused once a frame has been handled,
// the pool bounded; `pushChunks` hands out large split frames as views of the chunks; and an
// oversized frame is refused from its size prefix, before anything is allocated for it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ASSEMBLY_POOL_BYTES_MAX,
  ASSEMBLY_POOL_COUNT_MAX,
  assemblyPoolCount,
  assemblyPoolSizeBytes,
  FREE_LEASE,
  type FrameLease,
  FrameReader,
  FrameTooLargeError,
  POOLED_FRAME_BYTES_MIN,
} from "../../../protocol/codec/frame_reader.ts";
import { SLAB_CARVE_BYTES_MAX } from "../../../record/mod.ts";

function stream(sizes: number[]): { bytes: Uint8Array; payloads: Uint8Array[] } {
  const payloads = sizes.map((size, i) => new Uint8Array(size).map((_, j) => (i * 7 + j) & 0xff));
  const bytes = new Uint8Array(payloads.reduce((n, p) => n + 4 + p.length, 0));
  let at = 0;
  for (const payload of payloads) {
    new DataView(bytes.buffer).setUint32(at, payload.length);
    bytes.set(payload, at + 4);
    at += 4 + payload.length;
  }
  return { bytes, payloads };
}

/** Feeds `chunks`; returns copies of the frames, taken during the call as the contract says. */
function read(
  reader: FrameReader,
  chunks: Uint8Array[],
): { frames: Uint8Array[]; views: Uint8Array[] } {
  const frames: Uint8Array[] = [];
  const views: Uint8Array[] = [];
  for (const chunk of chunks) {
    reader.push(chunk, (payload) => {
      frames.push(payload.slice());
      views.push(payload);
    });
  }
  return { frames, views };
}

function join(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** `bytes` cut at `cuts`, each piece a copy in a buffer of its own, as a socket delivers. */
function cut(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let from = 0;
  for (const at of [...cuts, bytes.length]) {
    out.push(bytes.slice(from, at));
    from = at;
  }
  return out;
}

describe("FrameReader with pooled assembly (the server)", () => {
  test("any two cuts of the stream give the same frames", () => {
    const { bytes, payloads } = stream([0, 5, 300, 2, 70_000, 9]);
    const reader = new FrameReader(1 << 20, { assembly: "pooled" });
    for (let i = 0; i <= bytes.length; i += 101) {
      for (let j = i; j <= bytes.length; j += 3_001) {
        const chunks = [bytes.slice(0, i), bytes.slice(i, j), bytes.slice(j)];
        assert.deepEqual(read(reader, chunks).frames, payloads, `cuts at ${i}, ${j}`);
        assert.equal(reader.bufferedBytes, 0);
      }
    }
  });

  test("large frames split across chunks reuse one pooled buffer, one after another", () => {
    const size = POOLED_FRAME_BYTES_MIN * 4;
    const { bytes, payloads } = stream([size, size, size]);
    const reader = new FrameReader(1 << 24, { assembly: "pooled" });
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < bytes.length; at += 100_000) chunks.push(bytes.slice(at, at + 100_000));
    const { frames, views } = read(reader, chunks);
    assert.deepEqual(frames, payloads);
    assert.equal(views[1]!.buffer, views[0]!.buffer, "the second frame reused the first's memory");
    assert.equal(views[2]!.buffer, views[0]!.buffer);
    assert.ok(assemblyPoolSizeBytes() >= size);
    assert.ok(assemblyPoolSizeBytes() <= ASSEMBLY_POOL_BYTES_MAX);
  });

  test("a pooled frame kept through its lease is never reused until every view is released", () => {
    const size = POOLED_FRAME_BYTES_MIN * 4;
    const { bytes, payloads } = stream([size, size, size]);
    const reader = new FrameReader(1 << 24, { assembly: "pooled" });
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < bytes.length; at += 100_000) chunks.push(bytes.slice(at, at + 100_000));
    const kept: { view: Uint8Array; lease: FrameLease }[] = [];
    for (const chunk of chunks) {
      reader.push(chunk, (payload, lease) => {
        assert.ok(lease !== undefined, "a pooled frame comes with a lease");
        // Two views of the first frame kept, as the engine keeps two lent batches.
        if (kept.length === 0) {
          lease.retain();
          lease.retain();
        }
        kept.push({ view: payload, lease });
      });
    }
    const [first, second, third] = kept;
    assert.notEqual(second!.view.buffer, first!.view.buffer, "a kept buffer is not reused");
    assert.equal(third!.view.buffer, second!.view.buffer, "an unkept one is reused");
    assert.deepEqual(first!.view, payloads[0], "the kept frame still holds its bytes");
    first!.lease.release();
    const next = read(reader, cut(stream([size]).bytes, [70_000]));
    assert.notEqual(next.views[0]!.buffer, first!.view.buffer, "one view is still kept");
    first!.lease.release();
    assert.throws(() => first!.lease.release(), /released once per retain/);
    const last = read(reader, cut(stream([size]).bytes, [70_000]));
    assert.deepEqual(last.frames[0], payloads[0]);
    assert.ok(
      last.views[0]!.buffer === first!.view.buffer || last.views[0]!.buffer === second!.view.buffer,
      "both buffers are back in the pool",
    );
  });

  test("a burst of 12 kept frames released together all go back to the pool", () => {
    // Lent batches keep assembly buffers out of the pool until the engine lets them go, which
    // it does in bursts: the pool must keep a burst, or the next frames get fresh memory.
    const size = (1 << 20) + 1;
    const kept: FrameLease[] = [];
    const reader = new FrameReader(1 << 24, { assembly: "pooled" });
    const burst = 12;
    for (let i = 0; i < burst; i++) {
      for (const chunk of cut(stream([size]).bytes, [500_000])) {
        reader.push(chunk, (_, lease) => {
          lease!.retain();
          kept.push(lease!);
        });
      }
    }
    assert.equal(kept.length, burst);
    for (const lease of kept) lease.release();
    assert.ok(burst <= ASSEMBLY_POOL_COUNT_MAX);
    assert.ok(assemblyPoolCount() >= burst, `${assemblyPoolCount()} buffers kept of ${burst}`);
    assert.ok(assemblyPoolCount() <= ASSEMBLY_POOL_COUNT_MAX);
    assert.ok(assemblyPoolSizeBytes() <= ASSEMBLY_POOL_BYTES_MAX);
  });

  test("frames that are views of fresh chunks may be kept; of other chunks, not", () => {
    const { bytes } = stream([10, 20]);
    const leases: (FrameLease | undefined)[] = [];
    new FrameReader(100, { assembly: "pooled", freshChunks: true }).push(bytes, (_, lease) =>
      leases.push(lease),
    );
    new FrameReader(100, { assembly: "pooled" }).push(bytes, (_, lease) => leases.push(lease));
    assert.deepEqual(leases, [FREE_LEASE, FREE_LEASE, undefined, undefined]);
  });

  test("a frame larger than the limit is reported from its prefix, and the stream stops", () => {
    const reader = new FrameReader(100, { assembly: "pooled" });
    const onFrame = () => assert.fail("nothing is read past an oversized prefix");
    reader.push(new Uint8Array([0, 0]), onFrame);
    const refused = (error: unknown) =>
      error instanceof FrameTooLargeError &&
      error.sizeBytes === 256 &&
      error.limitBytes === 100 &&
      error.message === "Frame of 256 bytes exceeds frameBytesMax 100";
    assert.throws(() => reader.push(new Uint8Array([1, 0, 9, 9, 9]), onFrame), refused);
    assert.throws(() => reader.push(new Uint8Array([0, 0, 0, 1, 7]), onFrame), refused);
  });
});

describe("FrameReader with owned assembly (the client)", () => {
  /** Response-like frames: size prefix, then `payloadBytes` bytes counting up from `seed`. */
  function frameStream(payloadSizes: number[]): { stream: Uint8Array; payloads: Uint8Array[] } {
    const payloads = payloadSizes.map((size, i) =>
      new Uint8Array(size).map((_, j) => (i * 31 + j) & 0xff),
    );
    const stream = new Uint8Array(payloads.reduce((n, p) => n + 4 + p.length, 0));
    let at = 0;
    for (const payload of payloads) {
      new DataView(stream.buffer).setUint32(at, payload.length);
      stream.set(payload, at + 4);
      at += 4 + payload.length;
    }
    return { stream, payloads };
  }

  function parseChunks(chunks: Uint8Array[], frameBytesMax = 1 << 20): Uint8Array[] {
    const parser = new FrameReader(frameBytesMax);
    const frames: Uint8Array[] = [];
    for (const chunk of chunks) parser.push(chunk, (frame) => frames.push(frame));
    assert.equal(parser.bufferedBytes, 0);
    return frames;
  }

  test("a stream split at every byte boundary yields the same frames", () => {
    const { stream, payloads } = frameStream([6, 0, 1, 3, 300, 5000, 7, 4]);
    for (let split = 0; split <= stream.length; split++) {
      // Copies, so that every chunk is its own buffer as a socket delivers them.
      const frames = parseChunks([stream.slice(0, split), stream.slice(split)]);
      assert.deepEqual(frames, payloads, `split at ${split}`);
    }
  });

  test("every pair of split points, and one byte at a time, yield the same frames", () => {
    const { stream, payloads } = frameStream([0, 1, 2, 3, 4, 10, 6]);
    for (let i = 0; i <= stream.length; i++) {
      for (let j = i; j <= stream.length; j++) {
        const chunks = [stream.slice(0, i), stream.slice(i, j), stream.slice(j)];
        assert.deepEqual(parseChunks(chunks), payloads, `splits at ${i}, ${j}`);
      }
    }
    const bytes = Array.from(stream, (_, i) => stream.slice(i, i + 1));
    assert.deepEqual(parseChunks(bytes), payloads);
  });

  test("frames handed out stay valid after later chunks arrive", () => {
    const { stream, payloads } = frameStream([50, 60, 70]);
    const parser = new FrameReader(1024);
    const frames: Uint8Array[] = [];
    for (let at = 0; at < stream.length; at += 17) {
      parser.push(stream.slice(at, at + 17), (frame) => frames.push(frame));
    }
    assert.deepEqual(frames, payloads);
  });

  test("large frames split across chunks get buffers of their own, never reused", () => {
    const size = POOLED_FRAME_BYTES_MIN * 2;
    const { stream: bytes, payloads } = frameStream([size, size]);
    const parser = new FrameReader(1 << 24);
    const frames: Uint8Array[] = [];
    for (let at = 0; at < bytes.length; at += 50_000) {
      parser.push(bytes.slice(at, at + 50_000), (frame) => frames.push(frame));
    }
    assert.deepEqual(frames, payloads);
    assert.notEqual(frames[1]!.buffer, frames[0]!.buffer);
  });

  test("a frame over the limit is refused from its size prefix alone", () => {
    const parser = new FrameReader(100);
    const prefix = new Uint8Array([0x7f, 0xff, 0xff, 0xff]);
    parser.push(prefix.subarray(0, 2), () => {});
    assert.throws(
      () => parser.push(prefix.subarray(2), () => {}),
      /Frame of 2147483647 bytes exceeds frameBytesMax 100/,
    );
  });

  test("bad limits and an unknown assembly are refused", () => {
    assert.throws(() => new FrameReader(-1), RangeError);
    assert.throws(() => new FrameReader(10, { chunkedBytesMin: 1.5 }), RangeError);
    assert.throws(() => new FrameReader(10, { assembly: "shared" as "owned" }), TypeError);
  });
});

describe("FrameReader.pushChunks", () => {
  test("a large frame split across chunks comes as views of the chunks, in order", () => {
    const payload = new Uint8Array(200).map((_, i) => i);
    const stream = new Uint8Array(4 + payload.length);
    new DataView(stream.buffer).setUint32(0, payload.length);
    stream.set(payload, 4);
    const parser = new FrameReader(1000, { chunkedBytesMin: 100 });
    for (let i = 1; i < stream.length; i += 7) {
      for (let j = i; j < stream.length; j += 11) {
        const chunks = cut(stream, [i, j]);
        const frames: Uint8Array[][] = [];
        for (const chunk of chunks) parser.pushChunks(chunk, (frame) => frames.push(frame));
        assert.equal(frames.length, 1);
        assert.deepEqual(join(frames[0]!), payload, `cuts at ${i}, ${j}`);
        // One view per chunk the payload lies in (of the chunk's slab copy: record/slab.ts),
        // never assembled.
        let spanned = 0;
        let from = 0;
        for (const chunk of chunks) {
          const to = from + chunk.length;
          if (to > Math.max(from, 4)) spanned++;
          from = to;
        }
        assert.equal(frames[0]!.length, spanned, `cuts at ${i}, ${j}: a view per chunk`);
      }
    }
  });

  test("a large frame in large chunks comes as views of the pushed chunks themselves", () => {
    const payload = new Uint8Array(3 * SLAB_CARVE_BYTES_MAX).map((_, i) => i * 7);
    const stream = new Uint8Array(4 + payload.length);
    new DataView(stream.buffer).setUint32(0, payload.length);
    stream.set(payload, 4);
    const cuts = [SLAB_CARVE_BYTES_MAX + 1, 2 * SLAB_CARVE_BYTES_MAX + 2];
    const chunks = cut(stream, cuts);
    const parser = new FrameReader(stream.length, { chunkedBytesMin: 100 });
    const frames: Uint8Array[][] = [];
    for (const chunk of chunks) parser.pushChunks(chunk, (frame) => frames.push(frame));
    assert.equal(frames.length, 1);
    assert.deepEqual(join(frames[0]!), payload);
    assert.equal(frames[0]!.length, chunks.length);
    for (const [i, view] of frames[0]!.entries()) {
      assert.equal(view.buffer, chunks[i]!.buffer, "a view of the pushed chunk, not a copy");
    }
  });

  test("frames below chunkedBytesMin are assembled into one buffer", () => {
    const stream = new Uint8Array([0, 0, 0, 3, 1, 2, 3]);
    const parser = new FrameReader(1000, { chunkedBytesMin: 100 });
    const frames: Uint8Array[][] = [];
    for (const chunk of cut(stream, [5])) parser.pushChunks(chunk, (f) => frames.push(f));
    assert.deepEqual(frames, [[new Uint8Array([1, 2, 3])]]);
  });
});

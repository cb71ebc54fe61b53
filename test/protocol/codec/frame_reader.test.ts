// The server's FrameReader: frames out of any split of the byte stream, large frames assembled
// in pooled buffers that are reused once a frame has been handled, the pool bounded, and an
// oversized frame refused from its size prefix.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ASSEMBLY_POOL_BYTES_MAX,
  assemblyPoolSizeBytes,
  FrameReader,
  POOLED_FRAME_BYTES_MIN,
} from "../../../protocol/codec/frame_reader.ts";

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
    reader.push(chunk, {
      frame: (payload) => {
        frames.push(payload.slice());
        views.push(payload);
      },
      oversized: () => assert.fail("no frame is over the limit"),
    });
  }
  return { frames, views };
}

describe("FrameReader", () => {
  test("any two cuts of the stream give the same frames", () => {
    const { bytes, payloads } = stream([0, 5, 300, 2, 70_000, 9]);
    const reader = new FrameReader(1 << 20);
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
    const reader = new FrameReader(1 << 24);
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < bytes.length; at += 100_000) chunks.push(bytes.slice(at, at + 100_000));
    const { frames, views } = read(reader, chunks);
    assert.deepEqual(frames, payloads);
    assert.equal(views[1]!.buffer, views[0]!.buffer, "the second frame reused the first's memory");
    assert.equal(views[2]!.buffer, views[0]!.buffer);
    assert.ok(assemblyPoolSizeBytes() >= size);
    assert.ok(assemblyPoolSizeBytes() <= ASSEMBLY_POOL_BYTES_MAX);
  });

  test("a frame larger than the limit is reported from its prefix, and the stream stops", () => {
    const reader = new FrameReader(100);
    const reports: number[] = [];
    const sink = {
      frame: () => assert.fail("nothing is read past an oversized prefix"),
      oversized: (size: number) => reports.push(size),
    };
    reader.push(new Uint8Array([0, 0]), sink);
    reader.push(new Uint8Array([1, 0, 9, 9, 9]), sink);
    assert.deepEqual(reports, [256]);
  });
});

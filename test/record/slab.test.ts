// Slabs (record/slab.ts): small buffers carved front to back from shared 256 KiB ArrayBuffers,
// zero-filled, never overlapping and never reused; large ones with memory of their own. The
// frame reader copies small received chunks into them, so that the views it hands out never
// give a fresh socket buffer an ArrayBuffer of its own.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FrameReader } from "../../protocol/codec/frame_reader.ts";
import { Writer } from "../../protocol/codec/wire.ts";
import { SLAB_BYTES, SLAB_CARVE_BYTES_MAX, slabBytes, slabCopy } from "../../record/mod.ts";

describe("slabBytes", () => {
  test("small buffers are zero-filled views of one slab that never overlap", () => {
    const sizes = [1, 7, 8, 100, 1000, 3, SLAB_CARVE_BYTES_MAX];
    const views = sizes.map((size) => slabBytes(size));
    for (const [i, view] of views.entries()) {
      assert.equal(view.length, sizes[i]);
      assert.equal(view.buffer.byteLength, SLAB_BYTES);
      assert.ok(
        view.every((byte) => byte === 0),
        "zero-filled",
      );
      assert.equal(view.byteOffset % 8, 0, "carves start 8-byte aligned");
      view.fill(i + 1);
    }
    // Filling each one left every other intact: no two overlap.
    for (const [i, view] of views.entries()) {
      assert.ok(
        view.every((byte) => byte === i + 1),
        `carve ${i} intact`,
      );
    }
  });

  test("a full slab starts another; views of the old one keep their bytes", () => {
    const first = slabBytes(16);
    first.fill(0xab);
    const carves: Uint8Array[] = [];
    const count = Math.ceil(SLAB_BYTES / SLAB_CARVE_BYTES_MAX) + 1;
    for (let i = 0; i < count; i++) carves.push(slabBytes(SLAB_CARVE_BYTES_MAX).fill(i));
    assert.notEqual(carves.at(-1)!.buffer, first.buffer, "a later carve is in a new slab");
    assert.ok(first.every((byte) => byte === 0xab));
    for (const [i, carve] of carves.entries()) assert.ok(carve.every((byte) => byte === i));
  });

  test("buffers larger than SLAB_CARVE_BYTES_MAX have memory of their own", () => {
    const large = slabBytes(SLAB_CARVE_BYTES_MAX + 1);
    assert.equal(large.buffer.byteLength, SLAB_CARVE_BYTES_MAX + 1);
    assert.equal(large.byteOffset, 0);
  });

  test("slabCopy is a copy: changing the original later changes nothing", () => {
    const original = new Uint8Array([1, 2, 3, 4]);
    const copy = slabCopy(original);
    original.fill(9);
    assert.deepEqual([...copy], [1, 2, 3, 4]);
  });

  test("a writer's frame is a view of a slab, also after it grew", () => {
    const writer = new Writer(4);
    for (let i = 0; i < 100; i++) writer.u32(i);
    const bytes = writer.finish();
    assert.equal(bytes.length, 400);
    assert.equal(bytes.buffer.byteLength, SLAB_BYTES);
    assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getUint32(396), 99);
  });
});

describe("the frame reader and slabs", () => {
  test("a small received chunk is copied before its frames are handed out", () => {
    const chunk = new Uint8Array([0, 0, 0, 3, 7, 8, 9, 0, 0, 0, 1, 5]);
    const frames: Uint8Array[] = [];
    new FrameReader(100).push(chunk, (payload) => frames.push(payload));
    chunk.fill(0xff);
    assert.deepEqual(
      frames.map((frame) => [...frame]),
      [[7, 8, 9], [5]],
    );
    for (const frame of frames) assert.equal(frame.buffer.byteLength, SLAB_BYTES);
  });

  test("a large received chunk is viewed in place", () => {
    const size = SLAB_CARVE_BYTES_MAX + 100;
    const chunk = new Uint8Array(4 + size);
    new DataView(chunk.buffer).setUint32(0, size);
    const frames: Uint8Array[] = [];
    new FrameReader(size).push(chunk, (payload) => frames.push(payload));
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.buffer, chunk.buffer);
    assert.equal(frames[0]!.byteOffset, 4);
  });
});

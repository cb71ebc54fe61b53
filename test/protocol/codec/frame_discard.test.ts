// FrameReader's `discard`: a frame split across chunks whose head the screen refuses is counted
// and dropped, never assembled, and reported once whole with a copy of its head; the frames
// around it come out intact from every split of the stream; a frame whose head is split is
// assembled as usual; frames that arrive whole are never screened.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type FrameDiscard, FrameReader } from "../../../protocol/codec/frame_reader.ts";

const HEAD_BYTES = 4;

/** A frame as a short string (its length, first byte and a checksum) for cheap comparison. */
function digest(payload: Uint8Array): string {
  let sum = 0;
  for (const byte of payload) sum = (sum * 31 + byte) >>> 0;
  return `${payload.length}:${payload[0]}:${sum}`;
}

/** Frames of `sizes`; each payload starts with its index in the first byte (its "head"). */
function stream(sizes: number[]): { bytes: Uint8Array; payloads: Uint8Array[] } {
  const payloads = sizes.map((size, i) => new Uint8Array(size).map((_, j) => (j === 0 ? i : j)));
  const bytes = new Uint8Array(payloads.reduce((n, p) => n + 4 + p.length, 0));
  let at = 0;
  for (const payload of payloads) {
    new DataView(bytes.buffer).setUint32(at, payload.length);
    bytes.set(payload, at + 4);
    at += 4 + payload.length;
  }
  return { bytes, payloads };
}

function split(bytes: Uint8Array, pieceBytes: number): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += pieceBytes) {
    pieces.push(bytes.slice(at, Math.min(bytes.length, at + pieceBytes)));
  }
  return pieces;
}

function readWithDiscard(pieces: Uint8Array[], dropIndex: number) {
  const frames: string[] = [];
  const dropped: { head: number[]; sizeBytes: number }[] = [];
  let screened = 0;
  const discard: FrameDiscard = {
    headBytes: HEAD_BYTES,
    screen: (head) => {
      screened++;
      return head[0] === dropIndex;
    },
    onDiscarded: (head, sizeBytes) => dropped.push({ head: [...head], sizeBytes }),
  };
  const reader = new FrameReader(1 << 20, { assembly: "pooled", discard });
  for (const piece of pieces) reader.push(piece, (payload) => frames.push(digest(payload)));
  return { frames, dropped, screened, reader };
}

describe("FrameReader discard", () => {
  test("a refused split frame is dropped and reported; the others come out intact", () => {
    const sizes = [10, 50_000, 300, 70_000, 5];
    const { bytes, payloads } = stream(sizes);
    // Every piece size splits frame 1 but keeps its size prefix and head (bytes 14 to 21) in one.
    for (const pieceBytes of [24, 100, 4096, 30_000]) {
      const { frames, dropped, reader } = readWithDiscard(split(bytes, pieceBytes), 1);
      const context = `pieces of ${pieceBytes} bytes`;
      assert.deepEqual(frames, payloads.filter((_, i) => i !== 1).map(digest), context);
      assert.deepEqual(dropped, [{ head: [1, 1, 2, 3], sizeBytes: 50_000 }], context);
      assert.equal(reader.readingFrame, false, context);
      assert.equal(reader.bufferedBytes, 0, context);
    }
  });

  test("frames that arrive whole are not screened; a frame with a split head is assembled", () => {
    const { bytes, payloads } = stream([100, 200]);
    const whole = readWithDiscard([bytes], 0);
    assert.equal(whole.screened, 0);
    assert.equal(whole.frames.length, 2);
    // The first frame's size and 2 bytes of its head in one piece: its head is split.
    const headSplit = readWithDiscard([bytes.slice(0, 6), bytes.slice(6)], 0);
    assert.deepEqual(headSplit.dropped, []);
    assert.deepEqual(headSplit.frames, payloads.map(digest));
  });

  test("a refused frame counts as in progress until its last byte", () => {
    const { bytes } = stream([1000]);
    const { reader, dropped } = readWithDiscard([bytes.slice(0, 500)], 0);
    assert.equal(reader.readingFrame, true);
    assert.equal(dropped.length, 0);
  });
});

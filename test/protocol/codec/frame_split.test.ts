// The server's split frames (frame_reader.ts, `split`): a large selected frame that spans
// received chunks is handed out as views of those chunks, never assembled; every other frame
// comes whole as before; and PartsReader reads a request from such views with Reader's checks.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FrameReader, type FrameSplit } from "../../../protocol/codec/frame_reader.ts";
import { PartsReader } from "../../../protocol/codec/parts_reader.ts";
import { ProtocolError } from "../../../protocol/codec/errors.ts";
import { Reader, Writer } from "../../../protocol/codec/wire.ts";
import { SLAB_BYTES } from "../../../record/mod.ts";
import { readProduceRequest, writeProduceRequest } from "../../../protocol/codec/produce.ts";

/** Frames whose first payload byte is 1 are split; 64 bytes or more. */
const SPLIT: FrameSplit = { headBytes: 1, bytesMin: 64, select: (head) => head[0] === 1 };

function framed(payloads: Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(payloads.reduce((n, p) => n + 4 + p.length, 0));
  let at = 0;
  for (const payload of payloads) {
    new DataView(bytes.buffer).setUint32(at, payload.length);
    bytes.set(payload, at + 4);
    at += 4 + payload.length;
  }
  return bytes;
}

function payload(first: number, size: number): Uint8Array {
  return new Uint8Array(size).map((_, j) => (j === 0 ? first : (j * 13) & 0xff));
}

function joined(parts: readonly Uint8Array[]): Uint8Array {
  return new Uint8Array(parts.flatMap((part) => [...part]));
}

describe("split frames", () => {
  test("a selected frame spanning chunks comes as views of them; others come whole", () => {
    const payloads = [payload(1, 1000), payload(2, 1000), payload(1, 40), payload(1, 300)];
    const bytes = framed(payloads);
    for (const chunkBytes of [7, 64, 333, 1000, bytes.length]) {
      const chunks: Uint8Array[] = [];
      for (let at = 0; at < bytes.length; at += chunkBytes) {
        chunks.push(bytes.slice(at, at + chunkBytes));
      }
      const reader = new FrameReader(1 << 20, { freshChunks: true, split: SPLIT });
      const seen: { bytes: Uint8Array; parts: number }[] = [];
      for (const chunk of chunks) {
        reader.push(
          chunk,
          (frame) => seen.push({ bytes: frame.slice(), parts: 0 }),
          (parts) => {
            // Chunks this small are copied into a slab as they arrive (record/slab.ts): the
            // parts are views of those copies, one per chunk the frame lies in.
            for (const part of parts) {
              assert.equal(part.buffer.byteLength, SLAB_BYTES, "a view of a received chunk");
            }
            seen.push({ bytes: joined(parts), parts: parts.length });
          },
        );
      }
      assert.deepEqual(
        seen.map((s) => s.bytes),
        payloads,
        `chunks of ${chunkBytes}`,
      );
      // The frames of 1000 and 300 bytes starting with 1 span chunks below their size.
      const split = seen.filter((s) => s.parts > 1).length;
      if (chunkBytes <= 64) assert.equal(split, 2, `chunks of ${chunkBytes}`);
      if (chunkBytes === bytes.length) assert.equal(split, 0, "whole in one chunk: no split");
      assert.ok(seen[1]!.parts === 0, "an unselected frame is assembled whole");
    }
  });

  test("split frames need chunks that are never reused", () => {
    assert.throws(() => new FrameReader(1 << 20, { split: SPLIT }), TypeError);
  });
});

describe("PartsReader", () => {
  test("reads a Produce request from any cut of its bytes as the whole-frame reader does", () => {
    const records = [payload(9, 5000), payload(8, 70)];
    const writer = new Writer();
    writeProduceRequest(writer, {
      acks: -1,
      timeoutMs: 30_000,
      topics: [
        { topic: "orders", partitions: [{ partition: 3, records: records[0]! }] },
        { topic: "ü-topic", partitions: [{ partition: 0, records: records[1]! }] },
      ],
    });
    const bytes = writer.finish();
    const expected = readProduceRequest(new Reader(bytes));
    const cutsList = [[1], [2, 3, 4, 5, 6, 7, 8], [11, 12, 100, 4000], [bytes.length - 1]];
    // Empty parts, too: a number or a field may begin right after one.
    cutsList.push([0, 5, 5, 20, 20, 21, bytes.length]);
    for (const cuts of cutsList) {
      const parts: Uint8Array[] = [];
      let from = 0;
      for (const to of [...cuts, bytes.length]) {
        parts.push(bytes.slice(from, to));
        from = to;
      }
      const read = readProduceRequest(new PartsReader(parts));
      const flat = {
        ...read,
        topics: read.topics.map((t) => ({
          ...t,
          partitions: t.partitions.map((p) => ({
            partition: p.partition,
            records: p.records instanceof Uint8Array ? p.records : joined(p.records),
          })),
        })),
      };
      assert.deepEqual(flat, expected, `cut at ${cuts}`);
    }
  });

  test("truncated or trailing bytes fail with the reader's ProtocolError", () => {
    const writer = new Writer();
    writeProduceRequest(writer, {
      acks: 1,
      timeoutMs: 1,
      topics: [{ topic: "t", partitions: [{ partition: 0, records: payload(1, 100) }] }],
    });
    const bytes = writer.finish();
    const short = [bytes.slice(0, 20), bytes.slice(20, bytes.length - 1)];
    assert.throws(() => readProduceRequest(new PartsReader(short)), ProtocolError);
    const long = [bytes.slice(0, 20), bytes.slice(20), new Uint8Array(3)];
    assert.throws(() => readProduceRequest(new PartsReader(long)), /3 unexpected bytes/);
    assert.throws(() => new PartsReader([bytes], bytes.length + 1), RangeError);
  });
});

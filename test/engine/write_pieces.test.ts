// Segment rounds are written in bounded pieces (engine/io.ts): large rounds in pieces of at
// most WRITE_PIECE_BYTES_MAX, a few in flight, small ones on the calling thread. Whatever the
// cut, the file must hold exactly the round's bytes at the round's position.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  realFileIO,
  WRITE_PIECE_BYTES_MAX,
  WRITE_SYNC_BYTES_MAX,
  writePieces,
} from "../../engine/io.ts";
import { mulberry32, tempDir } from "../helpers.ts";

function randomBuffers(random: () => number, count: number, sizeMax: number): Uint8Array[] {
  return Array.from({ length: count }, () => {
    const buffer = new Uint8Array(Math.floor(random() * sizeMax));
    for (let i = 0; i < buffer.length; i += 97) buffer[i] = Math.floor(random() * 256);
    return buffer;
  });
}

function joined(buffers: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(buffers.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const buffer of buffers) {
    out.set(buffer, at);
    at += buffer.length;
  }
  return out;
}

describe("bounded segment writes", () => {
  test("pieces are consecutive, at most the limit, and hold the round's bytes in order", () => {
    const random = mulberry32(1601);
    for (let trial = 0; trial < 200; trial++) {
      const pieceBytes = 1 + Math.floor(random() * 5000);
      const buffers = randomBuffers(random, Math.floor(random() * 12), 9000);
      const position = Math.floor(random() * 100_000);
      const pieces = writePieces(buffers, position, pieceBytes);
      const context = `trial ${trial}, piece limit ${pieceBytes}`;
      let at = position;
      for (const [index, piece] of pieces.entries()) {
        const length = piece.buffers.reduce((n, b) => n + b.length, 0);
        assert.equal(piece.position, at, `${context}: piece ${index} starts where the last ended`);
        assert.ok(length > 0 && length <= pieceBytes, `${context}: piece ${index} of ${length}`);
        if (index < pieces.length - 1) assert.equal(length, pieceBytes, `${context}: full`);
        at += length;
      }
      const expected = joined(buffers);
      assert.equal(at - position, expected.length, context);
      assert.deepEqual(joined(pieces.flatMap((p) => p.buffers)), expected, context);
    }
  });

  test("rounds small and large land whole at their position in the file", async () => {
    using dir = tempDir();
    const path = join(dir.path, "segment.log");
    const random = mulberry32(1602);
    const sizes = [
      100,
      WRITE_SYNC_BYTES_MAX,
      WRITE_SYNC_BYTES_MAX + 1,
      3 * WRITE_PIECE_BYTES_MAX + 12_345,
    ];
    const fd = fs.openSync(path, "w+");
    try {
      let position = 0;
      const written: Uint8Array[] = [];
      for (const size of sizes) {
        // An empty buffer in a round is allowed: the flusher may hand one over.
        const round: Uint8Array[] = [new Uint8Array(0)];
        let left = size;
        while (left > 0) {
          const piece = Math.min(left, 1 + Math.floor(random() * 300_000));
          const bytes = new Uint8Array(piece);
          for (let i = 0; i < piece; i += 61) bytes[i] = Math.floor(random() * 256);
          round.push(bytes);
          left -= piece;
        }
        await realFileIO.writeAll(fd, round, position);
        written.push(...round);
        position += size;
      }
      const file = new Uint8Array(fs.readFileSync(path));
      assert.equal(file.length, position);
      assert.ok(
        Buffer.from(file).equals(Buffer.from(joined(written))),
        "the file holds the rounds",
      );
    } finally {
      fs.closeSync(fd);
    }
  });

  test("a failed write rejects once the writes in flight are done", async () => {
    using dir = tempDir();
    const path = join(dir.path, "read-only.log");
    fs.writeFileSync(path, "");
    const fd = fs.openSync(path, "r");
    try {
      const round = [new Uint8Array(3 * WRITE_PIECE_BYTES_MAX)];
      await assert.rejects(realFileIO.writeAll(fd, round, 0), { code: "EBADF" });
      await assert.rejects(realFileIO.writeAll(fd, [new Uint8Array(10)], 0), { code: "EBADF" });
    } finally {
      fs.closeSync(fd);
    }
  });
});

// ChunkReader reads fixed-size fields in place when they lie in one received view (the common
// case of a fetch response's partition results), joins them only where they straddle two
// views, and hands variable-length bytes out as views either way.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChunkReader } from "../../../protocol/codec/chunk_reader.ts";
import { ProtocolError } from "../../../protocol/codec/errors.ts";

describe("ChunkReader", () => {
  test("fields within one view are read over that view, not a copy or a sub-view", () => {
    const bytes = new Uint8Array([0, 3, 0, 0, 0, 7, 0xff, 0xfe, 9, 9]);
    const reader = new ChunkReader([bytes]);
    assert.equal(reader.u16("count"), 3);
    const fields = reader.reader(6, "fields");
    assert.equal(fields.bytes, bytes, "the reader reads the received view in place");
    assert.equal(fields.u32("a"), 7);
    assert.equal(fields.i16("b"), -2);
    assert.equal(fields.remaining, 0);
    assert.equal(reader.remaining, 2);
    assert.throws(() => fields.u8("past the field"), ProtocolError);
  });

  test("fields across two views are joined; every byte is read once, in order", () => {
    const reader = new ChunkReader([
      new Uint8Array([0]),
      new Uint8Array([5, 0, 0]),
      new Uint8Array([]),
      new Uint8Array([1, 2, 3, 4, 0xaa]),
    ]);
    assert.equal(reader.u16("split u16"), 5);
    const fields = reader.reader(4, "split u32");
    assert.equal(fields.u32("value"), 0x0102);
    const tail = reader.views(2, "tail");
    assert.deepEqual(
      tail.map((view) => [...view]),
      [[3, 4]],
    );
    assert.equal(reader.remaining, 1);
    assert.throws(() => reader.reader(2, "short"), /short needs 2 bytes but 1 remain/);
  });
});

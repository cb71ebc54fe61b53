// ChunkReader reads fixed-size fields in place when they lie in one received view (the common
// case of a fetch response's partition results), joins them only where they straddle two
// views, and hands variable-length bytes out as views either way.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChunkReader } from "../../../protocol/codec/chunk_reader.ts";
import { ProtocolError } from "../../../protocol/codec/errors.ts";
import { Writer } from "../../../protocol/codec/wire.ts";

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

  test("i16, u32 and i64 read the same values for every split of the bytes", () => {
    const writer = new Writer(64);
    writer
      .i16(-2)
      .u32(0xdead_beef)
      .i64(2 ** 53 - 1)
      .i64(-(2 ** 40))
      .u32(7);
    const bytes = writer.finish();
    for (let first = 0; first <= bytes.length; first++) {
      for (let second = first; second <= bytes.length; second++) {
        const views = [bytes.slice(0, first), bytes.slice(first, second), bytes.slice(second)];
        const reader = new ChunkReader(views);
        const where = `split at ${first} and ${second}`;
        assert.equal(reader.i16("a"), -2, where);
        assert.equal(reader.u32("b"), 0xdead_beef, where);
        assert.equal(reader.i64("c"), 2 ** 53 - 1, where);
        assert.equal(reader.i64("d"), -(2 ** 40), where);
        assert.equal(reader.u32("e"), 7, where);
        assert.equal(reader.remaining, 0, where);
        assert.throws(() => reader.u32("past the end"), ProtocolError, where);
      }
    }
  });

  test("an i64 past 2^53 is a ProtocolError, in place or joined", () => {
    const writer = new Writer(16);
    writer.u32(0x0020_0000).u32(0);
    const bytes = writer.finish();
    assert.throws(() => new ChunkReader([bytes]).i64("big"), /big is outside/);
    const split = [bytes.subarray(0, 3), bytes.subarray(3)];
    assert.throws(() => new ChunkReader(split).i64("big"), ProtocolError);
  });
});

describe("strings", () => {
  test("ASCII and other names are written as UTF-8 with their byte length, exactly", () => {
    const writer = new Writer(4);
    writer.string("t-1").string("tópico").string("名前");
    assert.deepEqual(
      [...writer.finish()],
      [
        ...[0, 3, 0x74, 0x2d, 0x31],
        ...[0, 7, 0x74, 0xc3, 0xb3, 0x70, 0x69, 0x63, 0x6f],
        ...[0, 6, 0xe5, 0x90, 0x8d, 0xe5, 0x89, 0x8d],
      ],
    );
  });

  test("strings are read in one view and across views alike, and bad UTF-8 is refused", () => {
    const writer = new Writer();
    writer.string("topic-a").string("tópico").string("名前");
    const bytes = writer.finish();
    for (let cut = 0; cut <= bytes.length; cut++) {
      const reader = new ChunkReader([bytes.subarray(0, cut), bytes.subarray(cut)]);
      assert.equal(reader.string("first"), "topic-a", `cut at ${cut}`);
      assert.equal(reader.string("second"), "tópico", `cut at ${cut}`);
      assert.equal(reader.string("third"), "名前", `cut at ${cut}`);
      assert.equal(reader.remaining, 0);
    }
    const bad = new ChunkReader([new Uint8Array([0, 2, 0xc3, 0x28])]);
    assert.throws(() => bad.string("name"), /name is not valid UTF-8/);
    const short = new ChunkReader([new Uint8Array([0])]);
    assert.throws(() => short.string("name"), /name length needs 2 bytes/);
  });
});

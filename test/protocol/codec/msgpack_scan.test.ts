// The MessagePack pre-scan (protocol/codec/msgpack_scan.ts): it passes every body msgpackr
// writes for the control plane, refuses what breaks a limit or the format from the headers
// alone, and never throws anything but a ProtocolError, whatever the bytes.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { Packr } from "msgpackr";
import { ProtocolError } from "../../../protocol/codec/errors.ts";
import { type MsgpackLimits, scanMsgpack } from "../../../protocol/codec/msgpack_scan.ts";

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
const roomy: MsgpackLimits = { bytesMax: 1 << 20, depthMax: 64, entriesMax: 1 << 20, keysMax: 512 };

function refusal(bytes: Uint8Array, limits: MsgpackLimits = roomy): string {
  try {
    scanMsgpack(bytes, limits, "body");
  } catch (error) {
    assert.ok(error instanceof ProtocolError, String(error));
    assert.equal(error.code, "INVALID_REQUEST");
    return error.message;
  }
  assert.fail("the body was accepted");
}

describe("msgpack pre-scan", () => {
  test("passes control-plane bodies and counts their entries and depth exactly", () => {
    const body = packr.pack({
      groupId: "g",
      offsets: [
        { topic: "t", partition: 0, offset: 12, metadata: "" },
        { topic: "t", partition: 1, offset: 2 ** 40, metadata: "é" },
      ],
    });
    // 2 pairs + 2 items + 4 + 4 pairs = 12 entries; map, array, map = depth 3; 6 distinct keys.
    const exact = { bytesMax: body.length, depthMax: 3, entriesMax: 12, keysMax: 6 };
    scanMsgpack(body, exact, "body");
    assert.match(refusal(body, { ...exact, entriesMax: 11 }), /11 entries/);
    assert.match(refusal(body, { ...exact, depthMax: 2 }), /depth 2/);
    assert.match(refusal(body, { ...exact, bytesMax: body.length - 1 }), /bytes/);
    assert.match(refusal(body, { ...exact, keysMax: 5 }), /5 distinct map keys/);
  });

  test("counts distinct keys over the whole body, however many maps repeat them", () => {
    const repeated = packr.pack({ list: Array.from({ length: 1000 }, (_, i) => ({ a: i, b: i })) });
    scanMsgpack(repeated, { ...roomy, keysMax: 3 }, "body");
    const fresh = packr.pack({ list: Array.from({ length: 100 }, (_, i) => ({ [`k${i}`]: i })) });
    assert.match(refusal(fresh, { ...roomy, keysMax: 64 }), /more than 64 distinct map keys/);
    // A new scan starts with no keys seen.
    scanMsgpack(packr.pack({ a: 1, b: 2, list: 3 }), { ...roomy, keysMax: 3 }, "body");
  });

  test("refuses a map announcing 5 M pairs from its header alone", () => {
    const header = new Uint8Array([0xdf, 0x00, 0x4c, 0x4b, 0x40]);
    assert.match(refusal(header, { ...roomy, entriesMax: 65_536 }), /more than 65536 entries/);
    assert.match(refusal(header, { ...roomy, entriesMax: 2 ** 31 }), /announces 10000000 values/);
  });

  test("refuses extension types, 0xc1, non-string keys, truncation and trailing bytes", () => {
    const cases: [number[], RegExp][] = [
      [[0x81, 0xa1, 0x61, 0xd4, 0x01, 0x00], /extension/],
      [[0x81, 0xa1, 0x61, 0xc7, 0x01, 0x72, 0x00], /extension/],
      [[0x81, 0xa1, 0x61, 0xc1], /invalid type/],
      [[0x81, 0x01, 0x02], /keys are strings/],
      [[0x81, 0x91, 0xa1, 0x61, 0x02], /keys are strings/],
      [[0x82, 0xa1, 0x61, 0x01], /announces 4 values|ends/],
      [[0x81, 0xa1, 0x61, 0xdb, 0x00, 0x00, 0x00, 0x05, 0x61], /ends inside/],
      [[0x81, 0xa1, 0x61, 0xcb, 0x00], /ends inside/],
      [[0x80, 0xc0], /1 bytes after/],
      [[], /ends at byte 0/],
    ];
    for (const [bytes, reason] of cases) assert.match(refusal(new Uint8Array(bytes)), reason);
  });

  test("any value msgpackr writes passes, and any bytes pass or throw ProtocolError", () => {
    const value = fc.letrec((tie) => ({
      node: fc.oneof(
        { depthSize: "small" },
        fc.constantFrom(null, true, false),
        fc.integer(),
        fc.maxSafeInteger(),
        fc.double(),
        fc.string(),
        fc.array(tie("node"), { maxLength: 5 }),
        fc.dictionary(fc.string(), tie("node"), { maxKeys: 5 }),
      ),
    })).node;
    fc.assert(
      fc.property(value, (v) => scanMsgpack(packr.pack({ v }), roomy, "body")),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          scanMsgpack(bytes, roomy, "body");
        } catch (error) {
          if (!(error instanceof ProtocolError)) throw error;
        }
      }),
      { numRuns: 5000 },
    );
  });
});

// decodeRecordBatchViews: a batch that arrived in several pieces decodes as its concatenation
// does, with keys and values left where they lie, and every problem reported as the one-buffer
// decoder reports it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { SluiceError } from "../../record/mod.ts";
import { CRC_AT } from "../../record/mod.ts";
import {
  decodeRecordBatch,
  decodeRecordBatchViews,
  encodeRecordBatch,
  type RecordInput,
} from "../../record/mod.ts";

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

/** `bytes` cut at `cuts` (sorted positions), each piece a copy in a buffer of its own. */
function pieces(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(bytes.slice(from, cut));
    from = cut;
  }
  return out;
}

const records: RecordInput[] = [
  { key: text("k1"), value: text("first value"), headers: [{ key: "h", value: text("x") }] },
  { key: null, value: null, timestamp: 2 ** 40 },
  { value: text("v".repeat(300)), headers: [{ key: "é", value: null }] },
  { key: text("last"), value: text("!") },
];
const batch = encodeRecordBatch(records, { baseOffset: 100, producerId: 7, baseSequence: 3 });

describe("decodeRecordBatchViews", () => {
  test("every cut into two or three pieces decodes as the whole batch does", () => {
    const expected = decodeRecordBatch(batch);
    for (let i = 0; i <= batch.length; i += 3) {
      assert.deepEqual(decodeRecordBatchViews(pieces(batch, [i])), expected, `cut at ${i}`);
      for (let j = i; j <= batch.length; j += 37) {
        assert.deepEqual(decodeRecordBatchViews(pieces(batch, [i, j])), expected, `${i}, ${j}`);
      }
    }
  });

  test("a record inside one piece is read in place; one across pieces is copied alone", () => {
    const cut = batch.length - 10;
    const views = pieces(batch, [cut]);
    const decoded = decodeRecordBatchViews(views);
    const third = decoded.records[2]!.value!;
    assert.equal(third.buffer, views[0]!.buffer, "a value inside the first piece is a view of it");
    const last = decoded.records[3]!;
    assert.deepEqual(last.key, text("last"));
    assert.notEqual(last.key!.buffer, views[0]!.buffer);
    assert.notEqual(last.key!.buffer, views[1]!.buffer);
  });

  test("a damaged batch in pieces gives the one-buffer decoder's error", () => {
    const damaged = batch.slice();
    damaged[damaged.length - 5]! ^= 0x40;
    const expected = captureError(() => decodeRecordBatch(damaged));
    assert.equal(expected.code, "CORRUPT_BATCH");
    const actual = captureError(() => decodeRecordBatchViews(pieces(damaged, [70, 200])));
    assert.equal(actual.message, expected.message);
    const cutShort = pieces(batch.subarray(0, batch.length - 1), [100]);
    assert.equal(captureError(() => decodeRecordBatchViews(cutShort)).code, "INVALID_BATCH");
  });

  test("compressed batches in pieces decode through a joined copy", () => {
    const gzip = encodeRecordBatch(records, { compression: "gzip", timestamp: 5 });
    assert.deepEqual(decodeRecordBatchViews(pieces(gzip, [50, 90])), decodeRecordBatch(gzip));
  });

  test("random batches and cuts agree with the one-buffer decoder, or fail as it does", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            key: fc.option(fc.uint8Array({ maxLength: 40 })),
            value: fc.option(fc.uint8Array({ maxLength: 400 })),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        fc.array(fc.nat(), { maxLength: 5 }),
        fc.option(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 }))),
        (inputs, rawCuts, flip) => {
          const bytes = encodeRecordBatch(inputs, { timestamp: 1 });
          const after = CRC_AT + 4;
          if (flip !== null) bytes[after + (flip[0] % (bytes.length - after))]! ^= flip[1];
          const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))];
          cuts.sort((a, b) => a - b);
          const one = attempt(() => decodeRecordBatch(bytes));
          const many = attempt(() => decodeRecordBatchViews(pieces(bytes, cuts)));
          assert.deepEqual(many, one);
        },
      ),
      { numRuns: 300 },
    );
  });
});

function captureError(run: () => unknown): SluiceError {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof SluiceError, String(error));
    return error;
  }
  assert.fail("expected a SluiceError");
}

function attempt(run: () => unknown): unknown {
  try {
    return run();
  } catch (error) {
    assert.ok(error instanceof SluiceError, String(error));
    return { code: error.code, message: error.message };
  }
}

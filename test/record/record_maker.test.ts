// DecodeBatchOptions.makeRecord: a reader that wants records in a shape of its own (the client's
// consumer adds topic and partition) gets each record built once, by its maker, with the same
// fields the default decoder gives, on every decoding path (one buffer, pieces, compressed).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  decodeRecordBatch,
  decodeRecordBatches,
  decodeRecordBatchViews,
  encodeRecordBatch,
  type LogRecord,
  type RecordHeader,
  type RecordInput,
} from "../../record/mod.ts";

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

const records: RecordInput[] = [
  { key: text("k1"), value: text("first value"), headers: [{ key: "h", value: text("x") }] },
  { key: null, value: null, timestamp: 2 ** 40 },
  { value: text("v".repeat(300)), headers: [{ key: "é", value: null }] },
  { key: text("last"), value: text("!") },
];

type Tagged = LogRecord & { tag: string };

/** A maker that builds records with one extra field, and counts its calls. */
function tagging(): { calls: number; make: Parameters<typeof decodeRecordBatch>[1] } {
  const state = {
    calls: 0,
    make: {
      makeRecord: (
        offset: number,
        timestamp: number,
        key: Uint8Array | null,
        value: Uint8Array | null,
        headers: readonly RecordHeader[],
      ): Tagged => {
        state.calls++;
        return { tag: "made", offset, timestamp, key, value, headers };
      },
    },
  };
  return state;
}

function untagged(decoded: readonly LogRecord[]): LogRecord[] {
  return decoded.map((record) => {
    assert.equal((record as Tagged).tag, "made", `record ${record.offset} was built by the maker`);
    const { offset, timestamp, key, value, headers } = record;
    return { offset, timestamp, key, value, headers };
  });
}

describe("makeRecord", () => {
  const batch = encodeRecordBatch(records, { baseOffset: 100 });

  test("builds each record of a batch once, with the fields the default decoder gives", () => {
    const expected = decodeRecordBatch(batch).records;
    const maker = tagging();
    const decoded = decodeRecordBatch(batch, maker.make).records;
    assert.equal(maker.calls, records.length);
    assert.deepEqual(untagged(decoded), expected);
  });

  test("builds the records of a batch decoded across pieces", () => {
    const expected = decodeRecordBatch(batch).records;
    for (const cut of [70, 100, batch.length - 10]) {
      const maker = tagging();
      const views = [batch.slice(0, cut), batch.slice(cut)];
      const decoded = decodeRecordBatchViews(views, maker.make).records;
      assert.deepEqual(untagged(decoded), expected, `cut at ${cut}`);
    }
  });

  test("builds the records of compressed batches and of concatenated batches", () => {
    const gzip = encodeRecordBatch(records, { baseOffset: 7, compression: "gzip" });
    const both = new Uint8Array(batch.length + gzip.length);
    both.set(gzip);
    both.set(batch, gzip.length);
    const expected = [...decodeRecordBatches(both)].flatMap((b) => b.records);
    const maker = tagging();
    const decoded = [...decodeRecordBatches(both, maker.make)].flatMap((b) => b.records);
    assert.equal(maker.calls, 2 * records.length);
    assert.deepEqual(untagged(decoded), expected);
  });
});

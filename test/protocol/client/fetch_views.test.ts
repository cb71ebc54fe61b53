// Fetch responses read where they arrived: the frame reader hands out a large frame split
// across chunks as views of those chunks (tested in ../codec/frame_reader.test.ts), the Fetch
// response is read from the views, and a partition's records decode from them. Every split of
// the bytes must give what the one-buffer path gives.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { ChunkedFrame } from "../../../protocol/codec/frames.ts";
import { readFetchResponse, writeFetchResponse } from "../../../protocol/codec/fetch.ts";
import { recordsFrom, wholeBatchRuns } from "../../../protocol/client/consumer_fetch.ts";

const utf8 = new TextEncoder();

function join(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** `bytes` cut at `cuts`, each piece a copy in a buffer of its own, as a socket delivers. */
function cut(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let from = 0;
  for (const at of [...cuts, bytes.length]) {
    out.push(bytes.slice(from, at));
    from = at;
  }
  return out;
}

const batch = (baseOffset: number, values: string[]) =>
  encodeRecordBatch(
    values.map((value) => ({ value: utf8.encode(value) })),
    { baseOffset, timestamp: 7 },
  );

const records = [
  batch(0, ["a", "b", "c"]),
  batch(3, ["d".repeat(200), "e"]),
  batch(5, ["f", "g".repeat(90)]),
];
const recordBytes = join(records);

/** A Fetch response body (without the response header) holding `recordBytes` twice. */
function responseBody(): Uint8Array {
  const frame = new ChunkedFrame(1);
  const result = (partition: number) => ({
    partition,
    errorCode: 0,
    highWatermark: 7,
    logStartOffset: 0,
    records: [recordBytes],
  });
  writeFetchResponse(frame, {
    topics: [
      { topic: "t", partitions: [result(0), result(1)] },
      { topic: "ü", partitions: [result(2)] },
    ],
  });
  return join(frame.finish()).subarray(4 + 6);
}

describe("Fetch responses from views", () => {
  test("every cut reads as the one-buffer reader reads the joined bytes", () => {
    const body = responseBody();
    const expected = readFetchResponse(body);
    for (let i = 0; i <= body.length; i += 5) {
      for (let j = i; j <= body.length; j += 97) {
        const response = readFetchResponse(cut(body, [i, j]));
        for (const [t, topic] of response.topics.entries()) {
          const want = expected.topics[t]!;
          assert.equal(topic.topic, want.topic);
          for (const [p, result] of topic.partitions.entries()) {
            const { records: wantRecords, ...wantRest } = want.partitions[p]!;
            const { records: views, ...rest } = result;
            assert.deepEqual(rest, wantRest);
            assert.deepEqual(join(views), join(wantRecords), `cuts at ${i}, ${j}`);
          }
        }
      }
    }
  });

  test("a response shorter than its counts say is INVALID_REQUEST, as the Reader says", () => {
    const body = responseBody();
    assert.throws(() => readFetchResponse(cut(body.subarray(0, 50), [20])), {
      code: "INVALID_REQUEST",
    });
  });

  test("records decode from any cut as from one buffer; batches inside a piece stay views", () => {
    const expected = recordsFrom("t", 0, 1, recordBytes);
    assert.equal(expected.records.length, 6);
    for (let i = 0; i <= recordBytes.length; i++) {
      const pieces = cut(recordBytes, [i, Math.min(recordBytes.length, i + 150)]);
      assert.deepEqual(recordsFrom("t", 0, 1, pieces), expected, `cut at ${i}`);
    }
    const whole = cut(recordBytes, [records[0]!.length + records[1]!.length]);
    const runs = [...wholeBatchRuns(whole)];
    assert.equal(runs.length, 2, "two runs of whole batches, each inside its piece");
    assert.ok(runs.every((run) => run instanceof Uint8Array));
  });

  test("a batch cut short at the end of the views is left for the next fetch", () => {
    const short = recordBytes.subarray(0, recordBytes.length - 3);
    const { records: decoded, nextOffset } = recordsFrom("t", 0, 0, cut(short, [40, 200]));
    assert.equal(decoded.length, 5);
    assert.equal(nextOffset, 5);
  });
});

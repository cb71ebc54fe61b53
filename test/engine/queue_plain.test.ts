// Batches a queue fetch need not judge again (engine/queue_plain.ts): a batch naming no TTL or
// due-time header is judged once, not once per fetch that takes records from it, and a later
// batch that does name one is still judged.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Engine, encodeRecordBatch, type RecordHeader } from "../../engine/mod.ts";
import { isPlainBatch, recordsHaveNoHeaders } from "../../engine/queue_plain.ts";
import { ExpiryReader } from "../../engine/queue_ttl.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { Clock, deliveriesOf, openEngine, START_MS } from "./queue_helpers.ts";

const encoder = new TextEncoder();

function batchOf(values: string[], headers: RecordHeader[] = [], compression = "none" as const) {
  const records = values.map((value) => ({ value: encoder.encode(value), headers }));
  return encodeRecordBatch(records, { timestamp: START_MS, compression });
}

function header(key: string, value: string): RecordHeader {
  return { key, value: encoder.encode(value) };
}

async function setup(dir: string): Promise<{ engine: Engine; clock: Clock }> {
  const clock = new Clock();
  const { engine } = await openEngine(dir, clock);
  await engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
  await engine.declareQueue("q", { topic: "t" });
  return { engine, clock };
}

describe("plain batches on the fetch path", () => {
  test("a batch is plain only when uncompressed and naming no TTL or due-time header", () => {
    assert.equal(isPlainBatch(batchOf(["a", "b"], [header("origin", "x")])), true);
    for (const key of ["sluice-ttl-ms", "sluice-delay-ms", "sluice-deliver-at-ms"]) {
      assert.equal(isPlainBatch(batchOf(["a"], [header(key, "5")])), false, key);
    }
    const gzip = encodeRecordBatch([{ value: encoder.encode("a") }], { compression: "gzip" });
    assert.equal(isPlainBatch(gzip), false);
  });

  test("a batch without headers is settled by its records' header counts alone", () => {
    const bare = encodeRecordBatch(
      [
        { value: encoder.encode("a") },
        { key: encoder.encode("k"), value: null },
        { value: new Uint8Array(1024) },
      ],
      { timestamp: START_MS },
    );
    assert.equal(recordsHaveNoHeaders(bare), true);
    assert.equal(isPlainBatch(bare), true);
    // One record with a header (any header): the walk says no, and the name search decides.
    const mixed = encodeRecordBatch(
      [{ value: encoder.encode("a") }, { value: encoder.encode("b"), headers: [header("x", "")] }],
      { timestamp: START_MS },
    );
    assert.equal(recordsHaveNoHeaders(mixed), false);
    assert.equal(isPlainBatch(mixed), true);
    const delayed = batchOf(["a"], [header("sluice-delay-ms", "5")]);
    assert.equal(recordsHaveNoHeaders(delayed), false);
    assert.equal(isPlainBatch(delayed), false);
  });

  test("a batch whose records do not add up is never called headerless", () => {
    const bare = encodeRecordBatch([{ value: encoder.encode("abc") }, { value: null }], {
      timestamp: START_MS,
    });
    // Cut short, or with bytes after the last record.
    assert.equal(recordsHaveNoHeaders(bare.subarray(0, bare.length - 1)), false);
    const longer = new Uint8Array(bare.length + 1);
    longer.set(bare);
    assert.equal(recordsHaveNoHeaders(longer), false);
    assert.equal(recordsHaveNoHeaders(bare.subarray(0, 60)), false);
    // The first record's length varint (at 61) made larger than the batch: no walk past it.
    const overlong = bare.slice();
    overlong[61] = 0x7e;
    assert.equal(recordsHaveNoHeaders(overlong), false);
    // A record count larger than the records there.
    const counted = bare.slice();
    new DataView(counted.buffer).setInt32(57, 3);
    assert.equal(recordsHaveNoHeaders(counted), false);
    // The last record's header count (its last byte) made 1.
    const headed = bare.slice();
    headed[headed.length - 1] = 2;
    assert.equal(recordsHaveNoHeaders(headed), false);
  });

  test("fetches taking one record at a time from a batch read it once each", async () => {
    using dir = tempDir();
    const { engine } = await setup(dir.path);
    try {
      const values = Array.from({ length: 50 }, (_, i) => `r${i}`);
      await engine.append("t", 0, batchOf(values));
      const log = engine.partition("t", 0);
      const read = log.read.bind(log);
      let reads = 0;
      log.read = (offset: number, maxBytes: number) => {
        reads++;
        return read(offset, maxBytes);
      };
      const member = engine.joinQueue("q");
      const got: string[] = [];
      for (let i = 0; i < values.length; i++) {
        got.push(
          ...deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 1 })).map((d) => d.value),
        );
      }
      assert.deepEqual(got, values);
      // One read per fetch for the records it takes, and the first fetch's three to judge and
      // look at the batch: not the expiry and due-time judges' two more on every fetch.
      assert.ok(reads <= values.length + 3, `${reads} reads for ${values.length} fetches`);
    } finally {
      await engine.close();
    }
  });

  test("fetches taking one record at a time from a plain batch never judge it", async () => {
    using dir = tempDir();
    const { engine } = await setup(dir.path);
    const judge = ExpiryReader.prototype.judge;
    let judged = 0;
    ExpiryReader.prototype.judge = function (this: ExpiryReader, batch: Uint8Array) {
      judged++;
      return judge.call(this, batch);
    };
    try {
      const values = Array.from({ length: 50 }, (_, i) => `r${i}`);
      await engine.append("t", 0, batchOf(values));
      const member = engine.joinQueue("q");
      for (let i = 0; i < values.length; i++) {
        assert.equal(engine.fetchQueue("q", member, { maxRecords: 1 }).partitions.length, 1);
      }
      // The fetches look at it once, find it plain and never judge it (a judge reads the batch
      // whole for each header name); a later batch that names one is still judged (below).
      assert.equal(judged, 0, `${judged} judgements for ${values.length} fetches`);
    } finally {
      ExpiryReader.prototype.judge = judge;
      await engine.close();
    }
  });

  test("a batch with a TTL after a plain one still expires", async () => {
    using dir = tempDir();
    const { engine, clock } = await setup(dir.path);
    try {
      await engine.append("t", 0, batchOf(["p1", "p2"]));
      await engine.append("t", 0, batchOf(["short"], [header("sluice-ttl-ms", "10")]));
      const member = engine.joinQueue("q");
      const first = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 1 }));
      assert.deepEqual(
        first.map((d) => d.value),
        ["p1"],
      );
      clock.advance(100);
      const rest = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 10 }));
      assert.deepEqual(
        rest.map((d) => d.value),
        ["p2"],
      );
      await waitFor(() => engine.queueStats("q").expired === 1, "1 expired");
    } finally {
      await engine.close();
    }
  });
});

// Splitting a batch by destination without decoding it (engine/exchange_split.ts), checked
// against a model: the records each destination takes, decoded from the batch built for it
// (CRC and every record checked by the decoder), equal the source's records that route there,
// in order, numbered from 0, with their keys, values, headers and timestamps unchanged; records
// of one destination stay one batch whatever their keys; bytes that do not parse are left to
// the decoding path; a damaged mixed batch is refused through publish with nothing appended.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { scanRecords, uniformRouting } from "../../engine/exchange_scan.ts";
import { splitBatch } from "../../engine/exchange_split.ts";
import { decodeRecordBatch, type Engine, encodeRecordBatch } from "../../engine/mod.ts";
import {
  computeBatchCrc,
  CRC_AT,
  type LogRecord,
  type RecordHeader,
  type RecordInput,
  writeInt32,
} from "../../record/mod.ts";
import { mulberry32, tempDir } from "../helpers.ts";
import { Clock, failsWith, openEngine } from "./queue_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const TOPICS = ["a", "b", "c", "d"];

function randomBytes(random: () => number, max: number): Uint8Array {
  return Uint8Array.from({ length: Math.floor(random() * max) }, () => random() * 256);
}

function randomRecords(random: () => number): RecordInput[] {
  const count = 1 + Math.floor(random() * 40);
  const base = 1_700_000_000_000 + Math.floor(random() * 1e9);
  let offset = 0;
  return Array.from({ length: count }, () => {
    // Gaps in the offsets (as a compacted log has) and timestamps out of order, some far apart.
    offset += 1 + (random() < 0.2 ? Math.floor(random() * 300) : 0);
    const headers: RecordHeader[] = Array.from({ length: Math.floor(random() * 3) }, () => ({
      key: random() < 0.5 ? "route" : "h",
      value: random() < 0.2 ? null : encoder.encode(String(Math.floor(random() * 3))),
    }));
    return {
      key: random() < 0.2 ? null : encoder.encode(`k${Math.floor(random() * 6)}`),
      value: random() < 0.1 ? null : randomBytes(random, random() < 0.1 ? 400 : 20),
      headers,
      timestamp: base + Math.floor((random() - 0.3) * (random() < 0.1 ? 1e10 : 1e4)),
      offset,
    };
  });
}

/** A routing of keys to topic subsets, drawn per run: the same key always routes alike. */
function randomRouter(random: () => number): (key: Uint8Array | null) => string[] {
  const table = new Map<string, string[]>();
  return (key) => {
    const name = key === null ? "<null>" : decoder.decode(key);
    let topics = table.get(name);
    if (topics === undefined) {
      topics = TOPICS.filter(() => random() < 0.4);
      table.set(name, topics);
    }
    return topics;
  };
}

function plain(record: { key?: Uint8Array | null; value: Uint8Array | null }): object {
  return { key: record.key ?? null, value: record.value };
}

describe("splitting a batch by destination", () => {
  test("each destination's batch holds its records as the model says (seeded)", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const random = mulberry32(seed);
      const inputs = randomRecords(random);
      const source = encodeRecordBatch(inputs);
      const route = randomRouter(random);
      const split = splitBatch(source, (key) => route(key));
      assert.ok(split !== undefined, `seed ${seed}: the batch scans`);
      const decoded = decodeRecordBatch(source).records;
      assert.equal(split.records, inputs.length);
      assert.equal(split.unroutable, decoded.filter((r) => route(r.key).length === 0).length);
      for (const topic of TOPICS) {
        const expected = decoded.filter((record) => route(record.key).includes(topic));
        const group = split.byTopic.get(topic);
        if (expected.length === 0) {
          assert.equal(group, undefined, `seed ${seed}: ${topic} takes nothing`);
          continue;
        }
        assert.ok(group !== undefined, `seed ${seed}: ${topic} takes a batch`);
        assert.equal(group.records, expected.length);
        assert.deepEqual(group.firstKey, expected[0]!.key);
        if (expected.length === decoded.length) {
          // A destination that takes every record takes the source's own bytes.
          assert.equal(group.bytes, source);
          continue;
        }
        const batch = decodeRecordBatch(group.bytes);
        assert.equal(batch.lastOffsetDelta, expected.length - 1);
        assert.equal(batch.maxTimestamp, Math.max(...expected.map((r) => r.timestamp)));
        const want = expected.map((record, index) => ({ ...record, offset: index }));
        assert.deepEqual(batch.records, want, `seed ${seed}: ${topic}'s records`);
      }
    }
  });

  test("records of different keys with the same destinations stay one batch", () => {
    const keys = ["eu.1", "us.1", "eu.2", "eu.3", "us.2"];
    const source = encodeRecordBatch(
      keys.map((key) => ({ key: encoder.encode(key), value: encoder.encode(key) })),
    );
    const split = splitBatch(source, (key) =>
      decoder.decode(key!).startsWith("eu") ? ["a", "c"] : ["b"],
    );
    assert.ok(split !== undefined);
    assert.deepEqual([...split.byTopic.keys()], ["a", "c", "b"]);
    const values = (topic: string): string[] =>
      decodeRecordBatch(split.byTopic.get(topic)!.bytes).records.map((r) =>
        decoder.decode(r.value!),
      );
    assert.deepEqual(values("a"), ["eu.1", "eu.2", "eu.3"]);
    assert.deepEqual(values("c"), ["eu.1", "eu.2", "eu.3"]);
    assert.deepEqual(values("b"), ["us.1", "us.2"]);
  });

  test("with log-append time the batch's maxTimestamp is kept", () => {
    const source = encodeRecordBatch(
      [
        { key: encoder.encode("x"), value: null, timestamp: 5 },
        { key: encoder.encode("y"), value: null, timestamp: 9 },
      ],
      { timestampType: "log-append-time" },
    );
    const split = splitBatch(source, (key) => (decoder.decode(key!) === "x" ? ["a"] : ["b"]));
    const a = decodeRecordBatch(split!.byTopic.get("a")!.bytes);
    assert.equal(a.timestampType, "log-append-time");
    assert.equal(a.maxTimestamp, decodeRecordBatch(source).maxTimestamp);
  });

  test("records whose bytes do not parse are left to the decoder (undefined)", () => {
    const source = encodeRecordBatch([
      { key: encoder.encode("x"), value: encoder.encode("1") },
      { key: encoder.encode("y"), value: encoder.encode("2") },
    ]);
    for (let at = 61; at < source.length; at++) {
      for (const value of [0x7f, 0xff, 0x00]) {
        const damaged = source.slice();
        damaged[at] = value;
        let first = true;
        // Never throws; what still scans is split into batches that scan again, whole.
        const split = splitBatch(damaged, () => {
          const topics = first ? ["a"] : ["b"];
          first = false;
          return topics;
        });
        if (split === undefined) continue;
        for (const group of split.byTopic.values()) {
          if (group.bytes === damaged) continue;
          const rescanned = scanRecords(group.bytes);
          assert.equal(rescanned?.count, group.records, `byte ${at} = ${value}`);
        }
      }
    }
    const truncatedCount = source.slice();
    writeInt32(truncatedCount, 57, 3);
    assert.equal(
      splitBatch(truncatedCount, () => ["a"]),
      undefined,
      "a count past the records",
    );
    const hugeCount = source.slice();
    writeInt32(hugeCount, 57, 0x7fff_ffff);
    assert.equal(
      splitBatch(hugeCount, () => ["a"]),
      undefined,
      "a count no batch can hold",
    );
  });
});

function sameRouting(a: LogRecord, b: LogRecord): boolean {
  return JSON.stringify([a.key, a.headers]) === JSON.stringify([b.key, b.headers]);
}

describe("the one-key scan", () => {
  test("finds a batch uniform exactly when the decoder finds one key and headers (seeded)", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const random = mulberry32(seed);
      const inputs = randomRecords(random);
      // Most runs give every record the first one's key and headers; some differ in one.
      const uniform = random() < 0.7;
      for (const input of inputs) {
        if (!uniform && random() < 0.5) continue;
        input.key = inputs[0]!.key ?? null;
        input.headers = inputs[0]!.headers ?? [];
      }
      const source = encodeRecordBatch(inputs);
      const decoded = decodeRecordBatch(source).records;
      const expected = decoded.every((record) => sameRouting(record, decoded[0]!));
      const found = uniformRouting(source);
      assert.equal(found !== undefined, expected, `seed ${seed}`);
      if (found === undefined) continue;
      assert.equal(found.records, decoded.length);
      assert.deepEqual(found.key, decoded[0]!.key);
      assert.deepEqual(found.headers, decoded[0]!.headers);
    }
  });

  test("damaged bytes never throw; what still scans as uniform has the first record's key", () => {
    const key = encoder.encode("k");
    const source = encodeRecordBatch([
      { key, value: encoder.encode("1"), headers: [{ key: "h", value: key }] },
      { key, value: encoder.encode("22"), headers: [{ key: "h", value: key }] },
    ]);
    for (let at = 0; at < source.length; at++) {
      for (const value of [0x00, 0x01, 0x7f, 0x80, 0xff]) {
        const damaged = source.slice();
        damaged[at] = value;
        const found = uniformRouting(damaged);
        if (found === undefined || found.key === null) continue;
        assert.ok(found.key.length <= damaged.length, `byte ${at} = ${value}`);
      }
    }
  });
});

async function withEngine(work: (engine: Engine) => Promise<void>): Promise<void> {
  using dir = tempDir();
  const { engine } = await openEngine(dir.path, new Clock());
  try {
    await work(engine);
  } finally {
    await engine.close();
  }
}

describe("publishing a batch that splits", () => {
  test("a damaged mixed batch is refused and nothing is appended", async () => {
    await withEngine(async (engine) => {
      for (const name of ["a", "b"]) {
        await engine.createTopic(name, { config: { fsync: "never" } });
      }
      await engine.declareExchange("x", { type: "direct" });
      await engine.bindExchange("x", { topic: "a", routingKey: "ka" });
      await engine.bindExchange("x", { topic: "b", routingKey: "kb" });
      const batch = encodeRecordBatch([
        { key: encoder.encode("ka"), value: encoder.encode("1") },
        { key: encoder.encode("kb"), value: encoder.encode("2") },
      ]);
      const flipped = batch.slice();
      flipped[flipped.length - 3]! ^= 0xff;
      await failsWith(() => engine.publish("x", flipped), "CORRUPT_BATCH");
      // A record length that overruns, under a CRC made to match: refused by the decoder.
      const overrun = batch.slice();
      overrun[61] = 0x7e;
      writeInt32(overrun, CRC_AT, computeBatchCrc(overrun, 0, overrun.length));
      await failsWith(() => engine.publish("x", overrun), "INVALID_BATCH");
      for (const name of ["a", "b"]) {
        assert.equal(engine.partition(name, 0).logEndOffset, 0, `${name} took nothing`);
      }
      const result = await engine.publish("x", batch);
      assert.deepEqual(result, {
        destinations: 2,
        records: 2,
        unroutable: 0,
        rejected: 0,
        fullQueue: null,
      });
      const stored = engine.partition("b", 0).read(0, 1 << 20).views[0]!;
      assert.deepEqual(decodeRecordBatch(stored).records.map(plain), [
        plain({ key: encoder.encode("kb"), value: encoder.encode("2") }),
      ]);
    });
  });
});

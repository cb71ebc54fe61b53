// The delay path's batches written and read as bytes (engine/queue_delay_batches.ts): tier
// entry batches equal what the record encoder writes; stored one-record batches merged into a
// due batch decode to the same records as decoding and encoding them again; the carried
// delivery count is read as headerInteger reads it; batches that are not plain are refused
// (the caller decodes). Also: positions.json is fsynced off the event loop when the FileIO can.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  DelayTiers,
  decodeRecordBatches,
  encodeRecordBatch,
  type LogRecord,
  type RecordHeader,
  realFileIO,
} from "../../engine/mod.ts";
import {
  eachHeaderInteger,
  encodeRefBatch,
  encodeStored,
  mergeStored,
  storedFromRecord,
} from "../../engine/queue_delay_batches.ts";
import {
  DueReader,
  eachDelayable,
  headerInteger,
  type LyingRecord,
  publishedDueMs,
} from "../../engine/queue_delay.ts";
import { decodeRef, eachRef, encodeRef, refValuesOf } from "../../engine/queue_delay_refs.ts";
import { tempDir } from "../helpers.ts";
import { Clock } from "./queue_helpers.ts";

const encoder = new TextEncoder();
const KEY = encoder.encode("sluice-delay-deliveries");

/** A seeded PRNG (mulberry32): failures replay from the seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

type Input = {
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: RecordHeader[];
  timestamp: number;
};

function randomRecord(random: () => number, i: number): Input {
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(random() * 256));
  const headers: RecordHeader[] = [];
  for (let h = Math.floor(random() * 4); h > 0; h--) {
    headers.push({ key: `h${h}`, value: random() < 0.2 ? null : bytes(Math.floor(random() * 9)) });
  }
  headers.push({ key: "sluice-due-ms", value: encoder.encode(String(1_700_000_000_000 + i)) });
  headers.push({
    key: "sluice-delay-deliveries",
    value: encoder.encode(String(Math.floor(random() * 4))),
  });
  return {
    key: random() < 0.3 ? null : bytes(Math.floor(random() * 20)),
    value: random() < 0.1 ? null : bytes(Math.floor(random() * 3000)),
    headers,
    // Timestamps out of order, some far apart: the merged batch's deltas go both ways.
    timestamp: 1_700_000_000_000 + Math.floor((random() - 0.5) * 2 ** 40),
  };
}

/** What eachDelayable tells, in order: each record as it lies (`lying`) or decoded. */
function delayables(
  log: Parameters<typeof eachDelayable>[0],
  span: Parameters<typeof eachDelayable>[1],
) {
  type Found = { offset: number; publishedDueMs: number | undefined } & (
    | { lying: LyingRecord }
    | { record: LogRecord }
  );
  const found: Found[] = [];
  eachDelayable(log, span, (offset, publishedDueMs, it) => {
    found.push(
      "where" in it
        ? { offset, publishedDueMs, lying: it }
        : { offset, publishedDueMs, record: it },
    );
  });
  return found;
}

function decodedOf(batch: Uint8Array) {
  return [...decodeRecordBatches(batch)].flatMap((decoded) =>
    decoded.records.map((r) => ({
      offset: r.offset,
      timestamp: r.timestamp,
      key: r.key === null ? null : [...r.key],
      value: r.value === null ? null : [...r.value],
      headers: r.headers.map((h) => ({
        key: h.key,
        value: h.value === null ? null : [...h.value],
      })),
    })),
  );
}

describe("delay batches as bytes", () => {
  test("an entry batch is byte for byte what the record encoder writes", () => {
    const random = prng(7);
    for (const count of [1, 2, 63, 64, 65, 8191, 8192, 10_000]) {
      const refs = Array.from({ length: count }, (_, i) => ({
        store: Math.floor(random() * 9),
        offset: Math.floor(random() * 2 ** 40) + i,
        dueMs: 1_700_000_000_000 + Math.floor(random() * 1e10),
        exitMs: 1_700_000_000_000 + Math.floor(random() * 1e10),
      }));
      const nowMs = 1_700_000_123_456;
      const expected = encodeRecordBatch(
        refs.map((ref) => ({ key: null, value: encodeRef(ref), timestamp: nowMs })),
        { timestamp: nowMs },
      );
      assert.deepEqual(encodeRefBatch(refs, nowMs), expected, `${count} entries`);
    }
  });

  test("entries decoded where they lie equal decodeRef of their values, damage included", () => {
    const random = prng(3);
    const refs = Array.from({ length: 500 }, () => ({
      store: Math.floor(random() * 12),
      offset: Math.floor(random() * 2 ** 40),
      dueMs: random() < 0.05 ? Number.NaN : Math.floor(random() * 1e13),
      exitMs: Math.floor(random() * 1e13),
    }));
    const batch = encodeRefBatch(refs, 99).slice();
    batch[61 + 3] = 7; // the first entry's version byte: not an entry this version writes
    const values = refValuesOf(batch, 300, refs.length);
    assert.ok(values !== undefined);
    // Every 7th entry's store offset made unsafe (2^60): damage the decoder refuses.
    for (let i = 0; i < values.length; i += 7) {
      const value = values[i]!.value;
      new DataView(value.buffer, value.byteOffset, value.length).setFloat64(2, 2 ** 60);
    }
    const expected = values.map(({ offset, value }) => ({ offset, ref: decodeRef(value, 9) }));
    assert.equal(expected[0]!.ref, undefined);
    assert.ok(expected.some(({ ref }) => ref !== undefined));
    const position = { baseOffset: 300, recordCount: refs.length, stores: 9 };
    const told: { offset: number; ref: unknown }[] = [];
    const all = eachRef(batch, position, (offset, ref) => told.push({ offset, ref }) > 0);
    assert.equal(all, true);
    assert.deepEqual(told, expected);
    // A batch that is not all entries is told of none.
    told.length = 0;
    const cut = batch.subarray(0, batch.length - 1);
    assert.equal(
      eachRef(cut, position, (offset, ref) => told.push({ offset, ref }) > 0),
      undefined,
    );
    assert.equal(told.length, 0);
    // An answer of false stops the walk there.
    assert.equal(
      eachRef(batch, position, (offset, ref) => told.push({ offset, ref }) < 3),
      false,
    );
    assert.deepEqual(told, expected.slice(0, 3));
  });

  test("a stored batch is byte for byte what the record encoder writes", () => {
    const random = prng(21);
    for (let i = 0; i < 200; i++) {
      const input = randomRecord(random, i);
      input.headers.push({ key: "ключ-é", value: encoder.encode("ü") });
      const headers = input.headers.map((h) => ({ key: encoder.encode(h.key), value: h.value }));
      assert.deepEqual(
        encodeStored({ ...input, headers }),
        encodeRecordBatch([input], { timestamp: input.timestamp }),
        `record ${i}`,
      );
    }
  });

  test("stored records merged as bytes decode as the records themselves", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const random = prng(seed);
      const inputs = Array.from({ length: 1 + Math.floor(random() * 60) }, (_, i) =>
        randomRecord(random, i),
      );
      const stored = inputs.map((input) =>
        encodeRecordBatch([input], { timestamp: input.timestamp, baseOffset: 1000 }),
      );
      const merged = mergeStored(stored);
      assert.ok(merged !== undefined, `seed ${seed}`);
      assert.deepEqual(decodedOf(merged), decodedOf(encodeRecordBatch(inputs)), `seed ${seed}`);
    }
  });

  test("batches that are not plain stored records are refused, not merged", () => {
    const record = { key: null, value: encoder.encode("x"), headers: [], timestamp: 5 };
    const plain = encodeRecordBatch([record], { timestamp: 5 });
    const refused = [
      encodeRecordBatch([record, record], { timestamp: 5 }),
      encodeRecordBatch([record], { timestamp: 5, compression: "gzip" }),
      encodeRecordBatch([record], { timestamp: 5, timestampType: "log-append-time" }),
      encodeRecordBatch([record], { timestamp: 5, transactional: true }),
      plain.subarray(0, plain.length - 1),
    ];
    const cut = plain.slice();
    cut[61] = 0x7f; // a record length past the batch's end
    refused.push(cut);
    for (const [i, bad] of refused.entries()) {
      assert.equal(mergeStored([plain, bad]), undefined, `case ${i}`);
    }
    assert.ok(mergeStored([plain, plain]) !== undefined);
  });

  test("carried deliveries are read as headerInteger reads them, or the batch is refused", () => {
    const random = prng(11);
    const values = ["0", "3", "", "x1", "17", "12345678901234567", null];
    const inputs = Array.from({ length: 300 }, (_, i) => {
      const headers: RecordHeader[] = [{ key: "other", value: encoder.encode("9") }];
      for (let h = Math.floor(random() * 3); h > 0; h--) {
        const value = values[Math.floor(random() * values.length)]!;
        headers.push({
          key: random() < 0.2 ? "sluice-delay-deliverieX" : "sluice-delay-deliveries",
          value: value === null ? null : encoder.encode(value),
        });
      }
      return { key: null, value: encoder.encode(`v${i}`), headers, timestamp: i };
    });
    const batch = encodeRecordBatch(inputs, { baseOffset: 40 });
    const seen = new Map<number, number>();
    assert.ok(eachHeaderInteger(batch, { key: KEY, digitsMax: 16 }, (o, n) => seen.set(o, n)));
    const expected = new Map<number, number>();
    for (const decoded of decodeRecordBatches(batch)) {
      for (const record of decoded.records) {
        const n = headerInteger(record.headers, "sluice-delay-deliveries");
        if (n !== undefined) expected.set(record.offset, n);
      }
    }
    assert.deepEqual(seen, expected);
    const gzip = encodeRecordBatch(inputs, { compression: "gzip" });
    assert.equal(
      eachHeaderInteger(gzip, { key: KEY, digitsMax: 16 }, () => {}),
      false,
    );
  });

  test("due times read where they lie equal publishedDueMs of the decoded records", () => {
    const random = prng(13);
    const nowMs = 1_000_000;
    const keys = ["sluice-delay-ms", "sluice-deliver-at-ms", "sluice-delay-mX", "other"];
    const values = ["0", "500", "2000", "", "x1", "31536000001", "999999", null];
    const inputs = Array.from({ length: 400 }, (_, i) => {
      const headers: RecordHeader[] = [];
      for (let h = Math.floor(random() * 4); h > 0; h--) {
        const value = values[Math.floor(random() * values.length)]!;
        headers.push({
          key: keys[Math.floor(random() * keys.length)]!,
          value: value === null ? null : encoder.encode(value),
        });
      }
      const timestamp = nowMs - 1500 + Math.floor(random() * 3000);
      return { key: null, value: encoder.encode(`v${i}`), headers, timestamp };
    });
    const log = { read: () => ({ views: [] }) };
    const judged = (batch: Uint8Array) => new DueReader(log, nowMs).judge(batch).notDue;
    for (const timestampType of ["create-time", "log-append-time"] as const) {
      const batch = encodeRecordBatch(inputs, { baseOffset: 70, timestampType });
      const expected = new Map<number, number>();
      for (const decoded of decodeRecordBatches(batch)) {
        for (const record of decoded.records) {
          const dueMs = publishedDueMs(record);
          if (dueMs !== undefined && dueMs > nowMs) expected.set(record.offset, dueMs);
        }
      }
      assert.ok(expected.size > 50, "the case holds records not yet due");
      assert.deepEqual(judged(batch), expected, timestampType);
      // A compressed batch takes the decoding path, with the same answer.
      const gzip = encodeRecordBatch(inputs, {
        baseOffset: 70,
        timestampType,
        compression: "gzip",
      });
      assert.deepEqual(judged(gzip), expected, `${timestampType}, gzip`);
    }
  });

  test("records delayed as they lie store the bytes the decoded record would", () => {
    const random = prng(17);
    const keys = ["sluice-delay-ms", "sluice-deliver-at-ms", "trace", "x"];
    const inputs = Array.from({ length: 200 }, (_, i) => {
      const headers: RecordHeader[] = [];
      for (let h = Math.floor(random() * 4); h > 0; h--) {
        const value = random() < 0.2 ? null : encoder.encode(String(Math.floor(random() * 9e3)));
        headers.push({ key: keys[Math.floor(random() * keys.length)]!, value });
      }
      const key = random() < 0.5 ? null : encoder.encode(`k${i}`);
      const value = random() < 0.1 ? null : encoder.encode("v".repeat(i));
      return { key, value, headers, timestamp: 5_000 + Math.floor(random() * 100) };
    });
    const batch = encodeRecordBatch(inputs, { baseOffset: 300 });
    const log = { read: () => ({ views: [batch], nextOffset: 500 }) };
    const span = { first: 310, last: 449, logStartOffset: 0, highWatermark: 500 };
    const found = delayables(log, span);
    assert.deepEqual(
      found.map((d) => d.offset),
      Array.from({ length: 140 }, (_, i) => 310 + i),
    );
    const extra = (dueMs: number) => [
      { key: encoder.encode("sluice-due-ms"), value: encoder.encode(String(dueMs)) },
      { key: encoder.encode("sluice-delay-deliveries"), value: encoder.encode("2") },
    ];
    const numbers = (dueMs: number) => [
      { key: encoder.encode("sluice-due-ms"), value: dueMs },
      { key: encoder.encode("sluice-delay-deliveries"), value: 2 },
    ];
    for (const delayable of found) {
      assert.ok("lying" in delayable, `${delayable.offset} is read as it lies`);
      const record = inputs[delayable.offset - 300]!;
      assert.equal(delayable.publishedDueMs, publishedDueMs(record), `${delayable.offset}`);
      const { batch: lies, where, timestampMs } = delayable.lying;
      // Due times of every width, 0 and 10 included, written as String() writes them.
      const dueMs = [0, 7, 10, 99, 1_800_000_000_123][delayable.offset % 5]!;
      const expected = encodeStored({
        key: record.key,
        value: record.value,
        timestamp: record.timestamp,
        headers: [
          ...record.headers.map((h) => ({ key: encoder.encode(h.key), value: h.value })),
          ...extra(dueMs),
        ],
      });
      assert.deepEqual(storedFromRecord(lies, where, timestampMs, numbers(dueMs)), expected);
    }
    // A record naming one of the delay path's own headers is decoded (those are replaced).
    const internal = encodeRecordBatch([
      { key: null, value: null, headers: [{ key: "sluice-due-ms", value: encoder.encode("1") }] },
    ]);
    const decoded = delayables(
      { read: () => ({ views: [internal], nextOffset: 1 }) },
      { first: 0, last: 0, logStartOffset: 0, highWatermark: 1 },
    );
    assert.equal(decoded.length, 1);
    assert.ok("record" in decoded[0]!);
  });

  test("a large add lets timers run between its slices", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const host = { io: realFileIO, now: clock.now, warn: () => {}, fsync: false };
    const delays = await DelayTiers.open(dir.path, host);
    try {
      const entry = (i: number) => ({
        record: { key: null, value: new Uint8Array(100), headers: [], timestamp: 0 },
        dueMs: clock.nowMs + 5_000 + (i % 50),
        deliveries: 0,
      });
      // Opens the store and tiers the large add uses, so it finds every log open.
      await delays.add(Array.from({ length: 50 }, (_, i) => entry(i)));
      let fired = false;
      // tidy: allow-timeout a timer that is due, not a wait: whether it runs mid-add is tested
      setTimeout(() => {
        fired = true;
      }, 0);
      let firedBeforeDone = false;
      await delays.add(Array.from({ length: 2_000 }, (_, i) => entry(i))).then(() => {
        firedBeforeDone = fired;
      });
      assert.ok(firedBeforeDone, "a timer due during the add ran before the add was done");
    } finally {
      await delays.close();
    }
  });

  test("positions.json is fsynced on the thread pool when the FileIO can", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const calls: string[] = [];
    const io = {
      ...realFileIO,
      writeFileAtomic(
        at: string,
        name: string,
        bytes: Uint8Array | string,
        options?: {
          sync?: boolean;
        },
      ) {
        if (name === "positions.json") calls.push(options?.sync === false ? "plain" : "sync");
        realFileIO.writeFileAtomic(at, name, bytes, options);
      },
      async writeFileAtomicAsync(at: string, name: string, bytes: Uint8Array | string) {
        if (name === "positions.json") calls.push("async");
        await realFileIO.writeFileAtomicAsync!(at, name, bytes);
      },
    };
    const delays = await DelayTiers.open(dir.path, {
      io,
      now: clock.now,
      warn: () => {},
      fsync: true,
    });
    try {
      const record = { key: null, value: new Uint8Array(10), headers: [], timestamp: 0 };
      await delays.add([{ record, dueMs: clock.nowMs + 100, deliveries: 1 }]);
      clock.advance(100);
      while ((await delays.moveDue()) > 0) {}
      // Two saves at once: they run one after the other, the later positions last.
      await Promise.all([delays.persistPositions(), delays.persistPositions()]);
      assert.ok(calls.length > 0, "the positions were written");
      assert.deepEqual(new Set(calls), new Set(["async"]));
      const saved = JSON.parse(fs.readFileSync(join(dir.path, "delay", "positions.json"), "utf8"));
      assert.ok(Array.isArray(saved.refs) && Array.isArray(saved.intake), "positions were saved");
      const left = fs.readdirSync(join(dir.path, "delay")).filter((n) => n.endsWith(".tmp"));
      assert.deepEqual(left, [], "no temp file is left behind");
    } finally {
      await delays.close();
    }
  });
});

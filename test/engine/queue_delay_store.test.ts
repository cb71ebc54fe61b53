// The delay store behind the tiers (engine/queue_delay.ts, queue_delay_refs.ts): a delayed
// record is written once to a store and its tier entries are small references; tiers of whole
// copies written by earlier versions still deliver after an upgrade; damage in a store or a
// tier (torn tail, bad CRC) is reported, loses no other record and delivers none early.
// Virtual clock throughout.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  DELIVERIES_HEADER,
  DelayTiers,
  DUE_HEADER,
  decodeRecordBatches,
  encodeRecordBatch,
  PartitionLog,
  realFileIO,
} from "../../engine/mod.ts";
import { decodeRef, encodeRef, refValuesOf } from "../../engine/queue_delay_refs.ts";
import { TAIL_CACHE_BYTES_DEFAULT } from "../../engine/segment.ts";
import { tempDir } from "../helpers.ts";
import { Clock, crashImage } from "./queue_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

type Arrived = { value: string; due: number; deliveries: number; key: string | null };

/** Every record of the due log, in order. */
function dueRecords(delays: DelayTiers): Arrived[] {
  const out: Arrived[] = [];
  let offset = delays.due.logStartOffset;
  while (offset < delays.due.highWatermark) {
    const read = delays.due.read(offset, 1024 * 1024);
    for (const view of read.views) {
      for (const batch of decodeRecordBatches(view)) {
        for (const record of batch.records) {
          const header = (key: string) =>
            Number(decoder.decode(record.headers.find((h) => h.key === key)?.value ?? undefined));
          assert.ok(
            !record.headers.some((h) => h.key === "sluice-delay-exit-ms"),
            "no tier header reaches the due log",
          );
          out.push({
            value: decoder.decode(record.value ?? new Uint8Array()),
            key: record.key === null ? null : decoder.decode(record.key),
            due: header(DUE_HEADER),
            deliveries: header(DELIVERIES_HEADER),
          });
        }
      }
    }
    offset = read.nextOffset;
  }
  return out;
}

/** Advances the clock 1 ms at a time to `untilMs`, moving at each step. */
async function runTo(clock: Clock, delays: DelayTiers, untilMs: number): Promise<void> {
  while (clock.nowMs < untilMs) {
    clock.advance(1);
    while ((await delays.moveDue()) > 0) {}
  }
}

function logBytes(dir: string, prefix: string): number {
  let total = 0;
  for (const name of fs.readdirSync(dir).filter((n) => n.startsWith(prefix))) {
    for (const file of fs.readdirSync(join(dir, name)).filter((f) => f.endsWith(".log"))) {
      total += fs.statSync(join(dir, name, file)).size;
    }
  }
  return total;
}

function record(value: string) {
  return { key: null, value: encoder.encode(value), headers: [], timestamp: 0 };
}

function hostOf(clock: Clock, warnings: string[], fsync = true) {
  return { io: realFileIO, now: clock.now, warn: (m: string) => warnings.push(m), fsync };
}

describe("delay store", () => {
  test("tier entries read in place match the full decoder, and odd batches are refused", () => {
    const refs = Array.from({ length: 300 }, (_, i) => ({
      store: i % 35,
      offset: i * 1_000_003,
      dueMs: 1_796_000_000_000 + i * 7,
      exitMs: 1_796_000_000_000 + i,
    }));
    const records = refs.map((ref, i) => ({ key: null, value: encodeRef(ref), timestamp: i }));
    const batch = encodeRecordBatch(records, { baseOffset: 5000 });
    const inPlace = refValuesOf(batch, 5000, refs.length);
    assert.ok(inPlace !== undefined);
    const decoded = [...decodeRecordBatches(batch)].flatMap((b) => b.records);
    assert.deepEqual(
      inPlace.map(({ offset, value }) => ({ offset, ref: decodeRef(value, 35) })),
      decoded.map(({ offset, value }) => ({ offset, ref: decodeRef(value, 35) })),
    );
    assert.deepEqual(
      inPlace.map((r) => decodeRef(r.value, 35)),
      refs,
    );
    // A record with a header, or a value of another length: not an entry read in place.
    const withHeader = encodeRecordBatch([
      { ...records[0]!, headers: [{ key: "h", value: new Uint8Array(1) }] },
    ]);
    assert.equal(refValuesOf(withHeader, 0, 1), undefined);
    const longer = encodeRecordBatch([{ key: null, value: new Uint8Array(27) }]);
    assert.equal(refValuesOf(longer, 0, 1), undefined);
    assert.equal(refValuesOf(batch.subarray(0, batch.length - 3), 5000, refs.length), undefined);
  });

  test("a record is written once to its store; each tier visit writes a small entry", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const warnings: string[] = [];
    const delays = await DelayTiers.open(dir.path, hostOf(clock, warnings, false));
    try {
      const big = "x".repeat(1000);
      // 1,023 ms = 2^9 + ... + 2^0: every record visits tiers 9 down to 0.
      const entries = Array.from({ length: 100 }, (_, i) => ({
        record: record(`${i}${big}`),
        dueMs: clock.nowMs + 1023,
        deliveries: 2,
      }));
      await delays.add(entries);
      assert.equal(delays.storeReferences(2), 100, "tier 9's records are in store 2");
      await runTo(clock, delays, clock.nowMs + 1023);
      const arrived = dueRecords(delays);
      assert.equal(arrived.length, 100);
      assert.deepEqual(
        arrived.map((a) => a.value),
        entries.map((e) => decoder.decode(e.record.value)),
      );
      assert.ok(arrived.every((a) => a.deliveries === 2 && a.due === clock.nowMs));
      const delayDir = join(dir.path, "delay");
      const stored = logBytes(delayDir, "store-");
      const tiers = logBytes(delayDir, "ref-");
      assert.ok(stored < 100 * 1200, `the store holds each record once (${stored} bytes)`);
      // Ten visits of 100 entries: well under one record's size per visit.
      assert.ok(tiers < 100 * 10 * 100, `tier entries are small (${tiers} bytes)`);
      assert.deepEqual(warnings, []);
    } finally {
      await delays.close();
    }
  });

  test("a move round reads store records into one reused buffer and keeps each whole", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const warnings: string[] = [];
    // Store files only: how many positional reads were given a buffer to fill, and how many not.
    const reads = { into: 0, fresh: 0 };
    const io = {
      ...realFileIO,
      readAt(fd: number, position: number, length: number, into?: Uint8Array) {
        const path = fs.readlinkSync(`/proc/self/fd/${fd}`);
        if (path.includes("store-")) {
          if (into === undefined) reads.fresh++;
          else reads.into++;
        }
        return realFileIO.readAt(fd, position, length, into);
      },
    };
    // Small segments: the store's records are read from sealed, unmapped segments with pread.
    const host = { ...hostOf(clock, warnings, false), io, segmentBytes: 16 * 1024 };
    const delays = await DelayTiers.open(dir.path, host);
    try {
      // Records i and i + 100 share a due time, 100 records apart in store 2 (300-600 ms): a
      // round releases both, read by two reads of the shared buffer, and the first must be
      // kept whole across the second. Due times are shuffled against the store's order.
      const order = Array.from({ length: 100 }, (_, i) => (i * 37) % 100);
      const entries = Array.from({ length: 200 }, (_, i) => ({
        record: record(`${i} ${"z".repeat(700 + (i % 7))}`),
        dueMs: clock.nowMs + 300 + 3 * order[i % 100]!,
        deliveries: 0,
      }));
      await delays.add(entries);
      await runTo(clock, delays, clock.nowMs + 600);
      const arrived = dueRecords(delays);
      const expected = [...entries]
        .sort((a, b) => a.dueMs - b.dueMs)
        .map((e) => ({ value: decoder.decode(e.record.value), due: e.dueMs }));
      assert.deepEqual(
        arrived
          .map((a) => ({ value: a.value, due: a.due }))
          .sort((a, b) => a.due - b.due || (a.value < b.value ? -1 : 1)),
        expected.sort((a, b) => a.due - b.due || (a.value < b.value ? -1 : 1)),
      );
      if (fs.existsSync("/proc/self/fd")) {
        assert.ok(reads.into >= 100, `store reads into the shared buffer: ${reads.into}`);
        assert.equal(reads.fresh, 0, "no store read of a move round takes a new buffer");
      }
      assert.deepEqual(warnings, []);
    } finally {
      await delays.close();
    }
  });

  test("records that wait 256 ms - 4 s leave from the store's tail cache, past 8 MiB", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const warnings: string[] = [];
    let storeReads = 0;
    const io = {
      ...realFileIO,
      readAt(fd: number, position: number, length: number, into?: Uint8Array) {
        if (fs.readlinkSync(`/proc/self/fd/${fd}`).includes("store-02")) storeReads++;
        return realFileIO.readAt(fd, position, length, into);
      },
    };
    const delays = await DelayTiers.open(dir.path, { ...hostOf(clock, warnings, false), io });
    try {
      // More than the logs' default tail cache, all in store 2 (300-399 ms to go).
      const value = "v".repeat(1000);
      const count = Math.ceil((TAIL_CACHE_BYTES_DEFAULT + 2 * 1024 * 1024) / 1000);
      for (let i = 0; i < count; i += 1000) {
        await delays.add(
          Array.from({ length: Math.min(1000, count - i) }, (_, j) => ({
            record: record(`${i + j} ${value}`),
            dueMs: clock.nowMs + 300 + ((i + j) % 100),
            deliveries: 0,
          })),
        );
      }
      assert.equal(delays.storeReferences(2), count);
      await runTo(clock, delays, clock.nowMs + 400);
      assert.equal(dueRecords(delays).length, count);
      if (fs.existsSync("/proc/self/fd"))
        assert.equal(storeReads, 0, "no record read from the file");
      assert.deepEqual(warnings, []);
    } finally {
      await delays.close();
    }
  });

  test("a long delay does not keep the store segments of short ones", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const warnings: string[] = [];
    const host = { ...hostOf(clock, warnings), segmentBytes: 8 * 1024 };
    const delays = await DelayTiers.open(dir.path, host);
    try {
      await delays.add([{ record: record("a year"), dueMs: clock.nowMs + 2 ** 34, deliveries: 0 }]);
      for (let i = 0; i < 40; i++) {
        await delays.add([
          {
            record: record(`short ${i} ${"y".repeat(500)}`),
            dueMs: clock.nowMs + 40,
            deliveries: 0,
          },
        ]);
      }
      await runTo(clock, delays, clock.nowMs + 40);
      delays.durableDueFloor = () => Promise.resolve(0);
      await delays.persistPositions();
      // 40 ms: tier 5, store 1; a year: tier 34, store 8.
      assert.equal(delays.storeReferences(1), 0);
      assert.equal(delays.storeReferences(8), 1);
      const segments = fs
        .readdirSync(join(dir.path, "delay", "store-01"))
        .filter((f) => f.endsWith(".log"));
      assert.equal(segments.length, 1, "only the active segment of the short store is left");
      assert.equal(dueRecords(delays).length, 40);
    } finally {
      await delays.close();
    }
  });

  test("tiers of whole copies from earlier versions still deliver after upgrade", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const warnings: string[] = [];
    const start = clock.nowMs;
    // What earlier versions left: tier-05 with copies, its first one already moved out.
    const delayDir = join(dir.path, "delay");
    fs.mkdirSync(delayDir, { recursive: true });
    const legacy = await PartitionLog.open(join(delayDir, "tier-05"), { fsync: "always" });
    const copy = (value: string, dueMs: number, exitMs: number) => ({
      key: encoder.encode(`k-${value}`),
      value: encoder.encode(value),
      timestamp: start - 5,
      headers: [
        { key: "app", value: encoder.encode("kept") },
        { key: DUE_HEADER, value: encoder.encode(String(dueMs)) },
        { key: DELIVERIES_HEADER, value: encoder.encode("3") },
        { key: "sluice-delay-exit-ms", value: encoder.encode(String(exitMs)) },
      ],
    });
    await legacy.append(
      encodeRecordBatch([
        copy("moved", start + 10, start + 10),
        copy("at-exit", start + 32, start + 32),
        copy("later", start + 52, start + 32),
      ]),
    );
    await legacy.close();
    const positions = Array.from({ length: 35 }, (_, k) => (k === 5 ? 1 : null));
    fs.writeFileSync(join(delayDir, "positions.json"), `${JSON.stringify(positions)}\n`);
    const delays = await DelayTiers.open(dir.path, hostOf(clock, warnings));
    try {
      assert.equal(delays.waiting, 2);
      await runTo(clock, delays, start + 31);
      assert.deepEqual(dueRecords(delays), [], "nothing before its exit");
      await runTo(clock, delays, start + 51);
      assert.deepEqual(
        dueRecords(delays).map((a) => a.value),
        ["at-exit"],
        "the one due at its exit, not the later one",
      );
      await runTo(clock, delays, start + 52);
      const arrived = dueRecords(delays);
      assert.deepEqual(
        arrived.map(({ value, due, deliveries, key }) => ({ value, due, deliveries, key })),
        [
          { value: "at-exit", due: start + 32, deliveries: 3, key: "k-at-exit" },
          { value: "later", due: start + 52, deliveries: 3, key: "k-later" },
        ],
      );
      assert.equal(delays.waiting, 0);
      assert.deepEqual(warnings, []);
    } finally {
      await delays.close();
    }
  });

  test("crash: damage in the store and tiers loses no other record, none comes early", async () => {
    using dir = tempDir();
    using image = tempDir();
    const clock = new Clock();
    const warnings: string[] = [];
    const start = clock.nowMs;
    const delays = await DelayTiers.open(dir.path, hostOf(clock, warnings));
    const values = ["a", "b-DAMAGED", "c", "d", "e-TORN"];
    try {
      for (const [i, value] of values.entries()) {
        // 100-120 ms: every record in tier 6 and store 1, one batch each.
        await delays.add([{ record: record(value), dueMs: start + 100 + i * 5, deliveries: 1 }]);
      }
      // Saved positions: every record below the stores' intake has its entry on disk.
      await delays.persistPositions();
      crashImage(dir.path, image.path);
    } finally {
      await delays.close();
    }
    const storeDir = join(image.path, "delay", "store-01");
    const [segment] = fs.readdirSync(storeDir).filter((f) => f.endsWith(".log"));
    const path = join(storeDir, segment!);
    const bytes = fs.readFileSync(path);
    // A bit flipped in b's value (its CRC fails) and e's record torn off the store's tail, as
    // when the crash came before the store's fdatasync of an add that never resolved.
    const damaged = bytes.indexOf("DAMAGED");
    bytes[damaged] = bytes[damaged]! ^ 0x01;
    const torn = bytes.lastIndexOf("e-TORN");
    fs.writeFileSync(path, bytes.subarray(0, torn - 20));
    const reopened = await DelayTiers.open(image.path, hostOf(clock, warnings));
    try {
      await runTo(clock, reopened, start + 99);
      assert.deepEqual(dueRecords(reopened), [], "none before its due time");
      await runTo(clock, reopened, start + 130);
      const arrived = dueRecords(reopened);
      assert.deepEqual(
        arrived.map((a) => a.value),
        ["a", "c", "d"],
        "every undamaged record, in due order",
      );
      for (const a of arrived) assert.ok(a.due <= start + 115);
      assert.ok(
        warnings.some((w) => w.includes("store 1")),
        warnings.join("\n"),
      );
    } finally {
      await reopened.close();
    }
  });

  test("crash: entries not on disk yet are rebuilt from the store, none comes early", async () => {
    using dir = tempDir();
    using image = tempDir();
    const clock = new Clock();
    const warnings: string[] = [];
    const start = clock.nowMs;
    const delays = await DelayTiers.open(dir.path, hostOf(clock, warnings));
    try {
      // Tier 6 (store 1), then saved positions; then tier 12 (store 3), whose entry the crash
      // takes: an add resolves once its record is synced, its entry is synced by positions.
      await delays.add([{ record: record("saved"), dueMs: start + 100, deliveries: 1 }]);
      await delays.persistPositions();
      await delays.add([{ record: record("rebuilt"), dueMs: start + 5000, deliveries: 4 }]);
      crashImage(dir.path, image.path);
    } finally {
      await delays.close();
    }
    const tierDir = join(image.path, "delay", "ref-12");
    for (const file of fs.readdirSync(tierDir).filter((f) => f.endsWith(".log"))) {
      fs.truncateSync(join(tierDir, file), 0);
    }
    const reopened = await DelayTiers.open(image.path, hostOf(clock, warnings));
    try {
      assert.equal(reopened.waiting, 2, "both records wait again");
      await runTo(clock, reopened, start + 4999);
      assert.deepEqual(
        dueRecords(reopened).map((a) => a.value),
        ["saved"],
        "the saved one once, the rebuilt one not before its due time",
      );
      await runTo(clock, reopened, start + 5000);
      const arrived = dueRecords(reopened);
      assert.deepEqual(
        arrived.map(({ value, due, deliveries }) => ({ value, due, deliveries })),
        [
          { value: "saved", due: start + 100, deliveries: 1 },
          { value: "rebuilt", due: start + 5000, deliveries: 4 },
        ],
      );
      assert.ok(
        warnings.some((w) => w.includes("got their entries again")),
        warnings.join("\n"),
      );
      await reopened.persistPositions();
    } finally {
      await reopened.close();
    }
    // The rebuilt entries were saved: a second start rebuilds nothing.
    warnings.length = 0;
    const again = await DelayTiers.open(image.path, hostOf(clock, warnings));
    try {
      assert.equal(again.waiting, 0);
      assert.deepEqual(warnings, []);
    } finally {
      await again.close();
    }
  });

  test("a bad CRC in a tier skips that batch only", async () => {
    using dir = tempDir();
    using image = tempDir();
    const clock = new Clock();
    const warnings: string[] = [];
    const start = clock.nowMs;
    const delays = await DelayTiers.open(dir.path, hostOf(clock, warnings));
    try {
      for (let i = 0; i < 4; i++) {
        await delays.add([{ record: record(`r${i}`), dueMs: start + 100 + i, deliveries: 1 }]);
      }
      // Saved positions: every record below the stores' intake has its entry on disk.
      await delays.persistPositions();
      crashImage(dir.path, image.path);
    } finally {
      await delays.close();
    }
    const tierDir = join(image.path, "delay", "ref-06");
    const [segment] = fs.readdirSync(tierDir).filter((f) => f.endsWith(".log"));
    const path = join(tierDir, segment!);
    const bytes = fs.readFileSync(path);
    // The second batch (one entry each): flip a byte of its entry's due time.
    const batchBytes = bytes.length / 4;
    assert.ok(Number.isInteger(batchBytes), "four batches of one entry each");
    bytes[batchBytes + batchBytes - 10] = bytes[batchBytes + batchBytes - 10]! ^ 0x40;
    fs.writeFileSync(path, bytes);
    const reopened = await DelayTiers.open(image.path, hostOf(clock, warnings));
    try {
      await runTo(clock, reopened, start + 99);
      assert.deepEqual(dueRecords(reopened), [], "none before its due time");
      await runTo(clock, reopened, start + 110);
      assert.deepEqual(
        dueRecords(reopened).map((a) => a.value),
        ["r0", "r2", "r3"],
      );
      assert.ok(
        warnings.some((w) => w.includes("delay tier 6")),
        warnings.join("\n"),
      );
    } finally {
      await reopened.close();
    }
  });
});

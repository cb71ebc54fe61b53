// Damaged files on disk: torn tails, bit flips in sealed and active segments, broken index
// files and hostile files in the partition directory. The rules under test (log_open.ts):
// a torn tail of the last segment is truncated; damage with valid batches after it is reported
// and skipped, never served and never discarded; every batch a read returns has passed its
// CRC-32C; indexes are derived data, rebuilt when wrong. Random trials print their seed.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE } from "../../engine/log_open.ts";
import {
  decodeRecordBatches,
  encodeRecordBatch,
  isSluiceError,
  type LogConfig,
  PartitionLog,
  type SluiceError,
} from "../../engine/mod.ts";
import { baseOffsetAt, batchSizeAt, lastOffsetDeltaAt } from "../../record/mod.ts";
import { segmentFileName } from "../../engine/segment.ts";
import { mulberry32, tempDir } from "../helpers.ts";

const BASE_TIMESTAMP_MS = 1_700_000_000_000;
/** Random trials start from this seed; set SLUICE_TEST_SEED to replay a failure. */
const FIRST_SEED = Number(process.env["SLUICE_TEST_SEED"] ?? Date.now() % 1_000_000);

function randomInt(random: () => number, below: number): number {
  return Math.floor(random() * below);
}

function flip(bytes: Uint8Array, at: number, mask: number): void {
  bytes[at] = bytes[at]! ^ mask;
}

/**
 * Batch number `n` of a test log: 1 to 5 records of 10 to 200 random bytes. Timestamps grow
 * with `n` but jitter inside a batch, so a time lookup has to look inside batches.
 */
function testBatch(random: () => number, n: number): Uint8Array {
  const records = [];
  const count = 1 + randomInt(random, 5);
  for (let i = 0; i < count; i++) {
    const value = new Uint8Array(10 + randomInt(random, 190));
    for (let b = 0; b < value.length; b++) value[b] = randomInt(random, 256);
    records.push({ value, timestamp: BASE_TIMESTAMP_MS + n * 100 + randomInt(random, 150) });
  }
  return encodeRecordBatch(records, { timestamp: BASE_TIMESTAMP_MS + n * 100 });
}

/** One batch as it lies on disk. */
type StoredBatch = {
  segment: number;
  position: number;
  baseOffset: number;
  lastOffset: number;
  bytes: Uint8Array;
};

function logFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((name) => /^\d{20}\.log$/.test(name))
    .sort();
}

/** Every batch of every segment file, read straight from disk (the files must be intact). */
function layoutOf(dir: string): StoredBatch[] {
  const batches: StoredBatch[] = [];
  for (const name of logFiles(dir)) {
    const bytes = new Uint8Array(fs.readFileSync(join(dir, name)));
    for (let at = 0; at < bytes.length; at += batchSizeAt(bytes, at)) {
      const baseOffset = baseOffsetAt(bytes, at);
      batches.push({
        segment: Number(name.slice(0, 20)),
        position: at,
        baseOffset,
        lastOffset: baseOffset + lastOffsetDeltaAt(bytes, at),
        bytes: bytes.slice(at, at + batchSizeAt(bytes, at)),
      });
    }
  }
  return batches;
}

type Snapshot = Map<string, Uint8Array>;

function snapshot(dir: string): Snapshot {
  const files: Snapshot = new Map();
  for (const name of fs.readdirSync(dir)) {
    files.set(name, new Uint8Array(fs.readFileSync(join(dir, name))));
  }
  return files;
}

function restore(dir: string, files: Snapshot): void {
  for (const name of fs.readdirSync(dir)) fs.rmSync(join(dir, name), { force: true });
  for (const [name, bytes] of files) fs.writeFileSync(join(dir, name), bytes);
}

function testBatches(count: number, seed: number): Uint8Array[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, (_, n) => testBatch(random, n));
}

/** Writes `batches` into a new log in `dir`, closes it cleanly, and returns its layout. */
async function writeLog(dir: string, config: Partial<LogConfig>, batches: Uint8Array[]) {
  const log = await PartitionLog.open(dir, { fsync: "never", ...config });
  for (const batch of batches) await log.append(batch);
  await log.close();
  return layoutOf(dir);
}

type Opened = { log: PartitionLog; warnings: string[] } & AsyncDisposable;

async function openLog(dir: string, config: Partial<LogConfig> = {}): Promise<Opened> {
  const warnings: string[] = [];
  const log = await PartitionLog.open(dir, config, {
    onWarning: (message) => warnings.push(message),
  });
  return { log, warnings, [Symbol.asyncDispose]: () => log.close() };
}

/** Makes the next open a recovery from scratch: no clean marker, recovery point 0. */
function forgetCleanShutdown(dir: string): void {
  fs.rmSync(join(dir, CLEAN_SHUTDOWN_FILE), { force: true });
  fs.writeFileSync(join(dir, RECOVERY_POINT_FILE), "0\n");
}

function sameBytes(actual: Uint8Array, expected: Uint8Array): boolean {
  return actual.length === expected.length && actual.every((byte, i) => byte === expected[i]);
}

/** The batches of a read, each checked against its CRC by decoding it. */
function batchesOf(views: Uint8Array[]): Uint8Array[] {
  const batches: Uint8Array[] = [];
  for (const view of views) {
    let at = 0;
    for (const decoded of decodeRecordBatches(view, { partialTail: "error" })) {
      batches.push(view.subarray(at, at + decoded.sizeBytes));
      at += decoded.sizeBytes;
    }
  }
  return batches;
}

/** Reads the whole log in one pass and checks it is exactly `expected`. */
function assertLogHolds(log: PartitionLog, expected: StoredBatch[], context: string): void {
  const found: Uint8Array[] = [];
  let offset = log.logStartOffset;
  while (offset < log.highWatermark) {
    const read = log.read(offset, 4096);
    assert.ok(read.views.length > 0, `${context}: read at ${offset} returned nothing`);
    found.push(...batchesOf(read.views));
    offset = read.nextOffset;
  }
  assert.equal(found.length, expected.length, `${context}: batch count`);
  found.forEach((bytes, i) => {
    assert.ok(sameBytes(bytes, expected[i]!.bytes), `${context}: batch ${i} differs`);
  });
}

/** Runs `body`, prefixing the message of anything it throws with `context`. */
async function withContext(context: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    if (error instanceof Error) error.message = `${context}: ${error.message}`;
    throw error;
  }
}

function catchSluiceError(action: () => unknown): SluiceError | undefined {
  try {
    action();
    return undefined;
  } catch (error) {
    if (isSluiceError(error)) return error;
    throw error;
  }
}

describe("torn tail", () => {
  test("every prefix of the last batch is truncated away and appends go on", async () => {
    using dir = tempDir();
    const source = join(dir.path, "source");
    // The last batch, the one torn, is about 300 bytes: two records of 100 bytes.
    const value = new Uint8Array(100).fill(7);
    const torn = encodeRecordBatch([{ value }, { value }], { timestamp: BASE_TIMESTAMP_MS });
    const layout = await writeLog(source, {}, [...testBatches(3, 7), torn]);
    const last = layout.at(-1)!;
    const name = segmentFileName(0, "log");
    const full = fs.readFileSync(join(source, name));
    const work = join(dir.path, "work");
    const next = testBatches(1, 8)[0]!;
    for (let kept = 0; kept < last.bytes.length; kept++) {
      const context = `${kept} of ${last.bytes.length} bytes of the last batch left`;
      fs.rmSync(work, { recursive: true, force: true });
      fs.mkdirSync(work);
      fs.writeFileSync(join(work, name), full.subarray(0, last.position + kept));
      // The recovery point is that of a torn write: the last batch was never synced.
      for (const extension of ["index", "timeindex"]) {
        const indexName = segmentFileName(0, extension);
        fs.copyFileSync(join(source, indexName), join(work, indexName));
      }
      fs.writeFileSync(join(work, RECOVERY_POINT_FILE), `${last.baseOffset}\n`);
      {
        await using opened = await openLog(work);
        const { log, warnings } = opened;
        assert.equal(log.logEndOffset, last.baseOffset, `${context}: log end`);
        assert.deepEqual(log.corruptions, [], `${context}: no corruption`);
        assert.equal(warnings.length, kept === 0 ? 0 : 1, `${context}: ${warnings.join("; ")}`);
        for (const warning of warnings) assert.match(warning, /torn tail/, context);
        assert.equal(fs.statSync(join(work, name)).size, last.position, `${context}: file size`);
        assertLogHolds(log, layout.slice(0, -1), context);
        const appended = await log.append(next);
        assert.equal(appended.baseOffset, last.baseOffset, `${context}: next append's offset`);
      }
      await using reopened = await openLog(work);
      assert.deepEqual(reopened.warnings, [], `${context}: the second open is clean`);
      assert.equal(reopened.log.logEndOffset, last.baseOffset + 1 + lastOffsetDeltaAt(next, 0));
    }
  });
});

/** Where bit flips may land: every byte the CRC covers, and batchLength, magic and crc. */
function flippableAt(random: () => number, size: number): number {
  // baseOffset (0-7) and partitionLeaderEpoch (12-15) sit outside the CRC by design, so a flip
  // there cannot be told from a legitimate value; they are left out.
  const headerOnly = random() < 0.3;
  for (;;) {
    const at = headerOnly ? 8 + randomInt(random, 53) : 8 + randomInt(random, size - 8);
    if (at < 12 || at >= 16) return at;
  }
}

/**
 * Flips 1 to 3 bits of each chosen batch in the files of `dir`. Returns the batches whose bytes
 * changed (two flips of one bit cancel out).
 */
function flipBits(dir: string, layout: StoredBatch[], targets: number[], random: () => number) {
  const files = new Map<number, Uint8Array>();
  for (const target of targets) {
    const batch = layout[target]!;
    const path = join(dir, segmentFileName(batch.segment, "log"));
    const bytes = files.get(batch.segment) ?? new Uint8Array(fs.readFileSync(path));
    files.set(batch.segment, bytes);
    const flips = 1 + randomInt(random, 3);
    for (let f = 0; f < flips; f++) {
      const at = batch.position + flippableAt(random, batch.bytes.length);
      flip(bytes, at, 1 << randomInt(random, 8));
    }
  }
  for (const [segment, bytes] of files) {
    fs.writeFileSync(join(dir, segmentFileName(segment, "log")), bytes);
  }
  return new Set(
    targets.filter((target) => {
      const { segment, position, bytes } = layout[target]!;
      const now = files.get(segment)!.subarray(position, position + bytes.length);
      return !sameBytes(now, bytes);
    }),
  );
}

/** Reads batch `i` by its base offset: its exact bytes, or CORRUPT_BATCH when damaged. */
function checkOneBatch(log: PartitionLog, layout: StoredBatch[], i: number, damaged: boolean) {
  const batch = layout[i]!;
  let first: Uint8Array | undefined;
  const error = catchSluiceError(() => {
    first = batchesOf(log.read(batch.baseOffset, 1).views)[0];
  });
  if (!damaged) {
    assert.equal(error, undefined, `intact batch ${i} reads without error: ${error?.message}`);
    assert.ok(first !== undefined && sameBytes(first, batch.bytes), `batch ${i} reads as written`);
    return;
  }
  const shown = first === undefined ? "nothing" : `offset ${baseOffsetAt(first, 0)}`;
  assert.equal(error?.code, "CORRUPT_BATCH", `damaged batch ${i} is reported, not ${shown}`);
  const resume = error.details["nextValidOffset"];
  if (resume === undefined) return;
  assert.equal(typeof resume, "number");
  const landing = layout.find((b) => b.baseOffset === resume);
  assert.ok(landing !== undefined, `nextValidOffset ${resume} is the start of a batch`);
  assert.ok(Number(resume) > batch.lastOffset, `nextValidOffset ${resume} is past batch ${i}`);
}

/** Reads the log front to back, resuming after each error at the next batch on disk. */
function sweep(
  log: PartitionLog,
  layout: StoredBatch[],
  damaged: Set<number>,
  random: () => number,
) {
  let next = 0;
  while (next < layout.length) {
    const expected = layout[next]!;
    let batches: Uint8Array[] = [];
    const error = catchSluiceError(() => {
      batches = batchesOf(log.read(expected.baseOffset, 1 + randomInt(random, 8192)).views);
    });
    if (error !== undefined) {
      const resume = error.details["nextValidOffset"];
      const progress = resume === undefined || Number(resume) > expected.baseOffset;
      assert.ok(progress, `nextValidOffset ${resume} moves a reader past ${expected.baseOffset}`);
      assert.ok(damaged.has(next), `read at intact batch ${next} failed: ${error.message}`);
      next++;
      continue;
    }
    assert.ok(batches.length > 0, `read at batch ${next} returned nothing`);
    for (const bytes of batches) {
      assert.ok(!damaged.has(next), `damaged batch ${next} was served`);
      assert.ok(sameBytes(bytes, layout[next]!.bytes), `batch ${next} reads as written`);
      next++;
    }
  }
}

async function checkDamagedLog(
  dir: string,
  layout: StoredBatch[],
  damaged: Set<number>,
  random: () => number,
) {
  await using opened = await openLog(dir);
  const { log } = opened;
  // Nothing is truncated: the end of the log is where it was (the damage is in sealed segments).
  assert.equal(log.logEndOffset, layout.at(-1)!.lastOffset + 1, "log end");
  for (let i = 0; i < layout.length; i++) checkOneBatch(log, layout, i, damaged.has(i));
  sweep(log, layout, damaged, random);
}

/** A log of four or more segments with no index entries: a read walks each from position 0. */
async function sealedLog(dir: string) {
  const config = { segmentBytes: 4 * 1024, indexIntervalBytes: 1024 * 1024 };
  const layout = await writeLog(dir, config, testBatches(40, 11));
  const secondBase = layout.find((b) => b.segment > 0)!.segment;
  const segmentOne = layout.filter((b) => b.segment === secondBase);
  assert.ok(segmentOne.length >= 5 && logFiles(dir).length >= 4, "segment 1 is sealed and long");
  return { layout, segmentOne };
}

/** Changes the bytes of one stored batch in place, through `edit(bytes, position)`. */
function damage(dir: string, batch: StoredBatch, edit: (bytes: Uint8Array, at: number) => void) {
  const path = join(dir, segmentFileName(batch.segment, "log"));
  const bytes = new Uint8Array(fs.readFileSync(path));
  edit(bytes, batch.position);
  fs.writeFileSync(path, bytes);
}

async function inBothOpenModes(
  dir: string,
  prepare: () => void,
  check: (log: PartitionLog, mode: string) => void,
): Promise<void> {
  const pristine = snapshot(dir);
  for (const mode of ["clean", "unclean"]) {
    restore(dir, pristine);
    prepare();
    if (mode === "unclean") forgetCleanShutdown(dir);
    await using opened = await openLog(dir);
    check(opened.log, `${mode} open`);
  }
}

describe("bit flips in sealed segments", () => {
  test("a batch length pointing past the segment end is reported, not skipped", async () => {
    using dir = tempDir();
    const { layout, segmentOne } = await sealedLog(dir.path);
    const target = segmentOne[2]!;
    const index = layout.indexOf(target);
    const prepare = () =>
      damage(dir.path, target, (bytes, at) => {
        flip(bytes, at + 8, 0x08); // batchLength grows by 128 MiB
      });
    await inBothOpenModes(dir.path, prepare, (log, mode) => {
      const error = catchSluiceError(() => log.read(target.baseOffset, 1024));
      assert.equal(error?.code, "CORRUPT_BATCH", `${mode}: a read of the damaged batch fails`);
      checkOneBatch(log, layout, index + 1, false);
    });
  });

  test("damage to the last batch of a sealed segment is reported, not skipped", async () => {
    using dir = tempDir();
    const { segmentOne } = await sealedLog(dir.path);
    const target = segmentOne.at(-1)!;
    const prepare = () =>
      damage(dir.path, target, (bytes, at) => {
        flip(bytes, at + 70, 0x01); // a record byte: the CRC fails
      });
    await inBothOpenModes(dir.path, prepare, (log, mode) => {
      let served = "nothing";
      const error = catchSluiceError(() => {
        const views = log.read(target.baseOffset, 1024).views;
        if (views[0] !== undefined) served = `offset ${baseOffsetAt(views[0], 0)}`;
      });
      assert.equal(
        error?.code,
        "CORRUPT_BATCH",
        `${mode}: offset ${target.baseOffset} read ${served}`,
      );
    });
  });

  test("intact batches after a damaged header stay readable by their offsets", async () => {
    using dir = tempDir();
    const { layout, segmentOne } = await sealedLog(dir.path);
    const target = segmentOne[1]!;
    const index = layout.indexOf(target);
    // One flipped bit in a header field each: [field, byte in the batch, bit mask].
    const edits: [string, number, number][] = [
      ["magic", 16, 0x01],
      ["lastOffsetDelta", 25, 0x01],
      ["batchLength", 11, 0x10],
    ];
    for (const [field, byte, mask] of edits) {
      const prepare = () => damage(dir.path, target, (bytes, at) => flip(bytes, at + byte, mask));
      await inBothOpenModes(dir.path, prepare, (log, mode) => {
        const context = `${field} of batch ${index} damaged, ${mode}`;
        for (const later of segmentOne.slice(2)) {
          const error = catchSluiceError(() =>
            checkOneBatch(log, layout, layout.indexOf(later), false),
          );
          assert.equal(
            error,
            undefined,
            `${context}: offset ${later.baseOffset}: ${error?.message}`,
          );
        }
      });
    }
  });

  test("a damaged batch is never served, always reported, and skippable", async () => {
    using dir = tempDir();
    const config = { segmentBytes: 8 * 1024, indexIntervalBytes: 1024 };
    const layout = await writeLog(dir.path, config, testBatches(120, 1));
    const sealed = layout.filter((b) => b.segment !== layout.at(-1)!.segment).length;
    assert.ok(logFiles(dir.path).length >= 4, "the test log has several sealed segments");
    const pristine = snapshot(dir.path);
    for (let trial = 0; trial < 100; trial++) {
      const seed = FIRST_SEED + trial;
      const random = mulberry32(seed);
      const targets = Array.from({ length: 1 + randomInt(random, 3) }, () =>
        randomInt(random, sealed),
      );
      for (const clean of [true, false]) {
        restore(dir.path, pristine);
        const damaged = flipBits(dir.path, layout, targets, mulberry32(seed ^ 0x5eed));
        if (!clean) forgetCleanShutdown(dir.path);
        const context = `seed ${seed}, ${clean ? "clean" : "unclean"} open, batches ${targets}`;
        await withContext(context, () => checkDamagedLog(dir.path, layout, damaged, random));
      }
    }
  });
});

describe("damage in the active segment", () => {
  test("a bit flip with valid batches after it is reported and skipped, not cut", async () => {
    using dir = tempDir();
    const layout = await writeLog(dir.path, {}, testBatches(10, 3));
    const damaged = layout[4]!;
    const path = join(dir.path, segmentFileName(0, "log"));
    const bytes = fs.readFileSync(path);
    // A byte of the first record: the header still parses, the CRC fails.
    flip(bytes, damaged.position + 70, 0x04);
    fs.writeFileSync(path, bytes);
    forgetCleanShutdown(dir.path);
    await using opened = await openLog(dir.path);
    const { log, warnings } = opened;
    assert.equal(warnings.length, 1, warnings.join("; "));
    assert.match(warnings[0]!, /damaged bytes/);
    assert.equal(log.corruptions.length, 1);
    assert.deepEqual(
      { ...log.corruptions[0]!, problem: undefined },
      {
        segmentBaseOffset: 0,
        fromPosition: damaged.position,
        toPosition: layout[5]!.position,
        problem: undefined,
        fromOffset: damaged.baseOffset,
        nextValidOffset: layout[5]!.baseOffset,
      },
    );
    assert.equal(fs.statSync(path).size, bytes.length, "nothing is truncated");
    assert.equal(log.logEndOffset, layout.at(-1)!.lastOffset + 1);
    for (let i = 0; i < layout.length; i++) checkOneBatch(log, layout, i, i === 4);
    const error = catchSluiceError(() => log.read(damaged.lastOffset, 1024));
    assert.equal(error?.details["nextValidOffset"], layout[5]!.baseOffset);
    // Batches before the damage come back from a read that runs into it.
    const before = batchesOf(log.read(0, 1024 * 1024).views);
    assert.equal(before.length, 4);
    const appended = await log.append(testBatches(1, 4)[0]!);
    assert.equal(appended.baseOffset, layout.at(-1)!.lastOffset + 1);
    await log.close();
    // Later opens, clean or not, keep the damaged bytes and keep refusing to serve them.
    for (const mode of ["clean", "unclean"]) {
      if (mode === "unclean") forgetCleanShutdown(dir.path);
      await using reopened = await openLog(dir.path);
      assert.equal(reopened.log.logEndOffset, appended.lastOffset + 1, mode);
      for (let i = 0; i < layout.length; i++) checkOneBatch(reopened.log, layout, i, i === 4);
    }
  });

  test("a flipped bit in a base offset does not truncate the valid batches after it", async () => {
    using dir = tempDir();
    const layout = await writeLog(dir.path, {}, testBatches(10, 5));
    const path = join(dir.path, segmentFileName(0, "log"));
    const bytes = fs.readFileSync(path);
    // baseOffset is outside the CRC: one flipped bit makes batch 4 claim offset 2^36 + 4.
    flip(bytes, layout[4]!.position + 3, 0x10);
    fs.writeFileSync(path, bytes);
    forgetCleanShutdown(dir.path);
    await using opened = await openLog(dir.path);
    const { log, warnings } = opened;
    assert.equal(fs.statSync(path).size, bytes.length, "nothing is truncated");
    assert.ok(warnings.length > 0, "the damage is reported");
    assert.equal(log.logEndOffset, layout.at(-1)!.lastOffset + 1, "the log end stays");
    for (let i = 5; i < layout.length; i++) checkOneBatch(log, layout, i, false);
  });
});

/** What a log answers: each batch read by its first and last offset, and time lookups. */
function answers(log: PartitionLog, layout: StoredBatch[]): string[] {
  const out: string[] = [];
  for (const batch of layout) {
    for (const offset of new Set([batch.baseOffset, batch.lastOffset])) {
      const first = batchesOf(log.read(offset, 1).views)[0];
      out.push(`read ${offset}: ${first === undefined ? "-" : baseOffsetAt(first, 0)}`);
    }
  }
  for (const timestamp of timestampsToAsk(layout)) {
    out.push(`time ${timestamp}: ${log.offsetForTimestamp(timestamp)}`);
  }
  return out;
}

/** Every record timestamp, one below and one above each, and times outside the log. */
function timestampsToAsk(layout: StoredBatch[]): number[] {
  const times = new Set<number>([0, BASE_TIMESTAMP_MS * 2]);
  for (const batch of layout) {
    for (const decoded of decodeRecordBatches(batch.bytes)) {
      for (const record of decoded.records) {
        for (const delta of [-1, 0, 1]) times.add(record.timestamp + delta);
      }
    }
  }
  return [...times].sort((a, b) => a - b);
}

/** The first offset with a timestamp >= t, straight from the records. */
function modelTimeAnswers(layout: StoredBatch[]): string[] {
  const records = layout.flatMap((b) => [...decodeRecordBatches(b.bytes)][0]!.records);
  return timestampsToAsk(layout).map((t) => {
    return `time ${t}: ${records.find((record) => record.timestamp >= t)?.offset}`;
  });
}

type IndexDamage = [string, (bytes: Uint8Array, random: () => number) => Uint8Array | undefined];

const INDEX_DAMAGES: IndexDamage[] = [
  ["deleted", () => undefined],
  ["emptied", () => new Uint8Array(0)],
  ["cut mid-entry", (bytes) => bytes.subarray(0, Math.max(1, bytes.length - 3))],
  ["cut by whole entries", (bytes) => bytes.subarray(0, bytes.length - 24)],
  [
    "random garbage",
    (_, random) =>
      Uint8Array.from({ length: 1 + randomInt(random, 400) }, () => randomInt(random, 256)),
  ],
  [
    "garbage of whole entries",
    (_, random) =>
      Uint8Array.from({ length: 24 * (1 + randomInt(random, 8)) }, () => randomInt(random, 256)),
  ],
];

describe("damaged index files", () => {
  test("deleted, cut or garbage index files are rebuilt and answer as before", async () => {
    using dir = tempDir();
    const config = { segmentBytes: 8 * 1024, indexIntervalBytes: 512 };
    const layout = await writeLog(dir.path, config, testBatches(80, 21));
    const pristine = snapshot(dir.path);
    const segments = logFiles(dir.path).map((name) => Number(name.slice(0, 20)));
    assert.ok(segments.length >= 3, "the log has sealed segments and an active one");
    let expected: string[];
    {
      await using opened = await openLog(dir.path);
      expected = answers(opened.log, layout);
      assert.deepEqual(
        expected.filter((a) => a.startsWith("time")),
        modelTimeAnswers(layout),
      );
    }
    const random = mulberry32(FIRST_SEED);
    for (const segment of [segments[0]!, segments.at(-1)!]) {
      for (const extension of ["index", "timeindex"]) {
        for (const [kind, edit] of INDEX_DAMAGES) {
          for (const mode of ["clean", "unclean"]) {
            const context = `seed ${FIRST_SEED}: ${extension} of ${segment} ${kind}, ${mode}`;
            restore(dir.path, pristine);
            const name = segmentFileName(segment, extension);
            const damaged = edit(pristine.get(name)!, random);
            if (damaged === undefined) fs.rmSync(join(dir.path, name));
            else fs.writeFileSync(join(dir.path, name), damaged);
            if (mode === "unclean") forgetCleanShutdown(dir.path);
            await withContext(context, async () => {
              {
                await using opened = await openLog(dir.path);
                assert.deepEqual(opened.log.corruptions, []);
                assert.deepEqual(answers(opened.log, layout), expected);
              }
              await using reopened = await openLog(dir.path);
              assert.deepEqual(answers(reopened.log, layout), expected, "reopened");
            });
          }
        }
      }
    }
  });
});

/** Rewrites the middle entry of an index file in place through `edit(view, at)`. */
function editIndexEntry(
  dir: string,
  name: string,
  entryBytes: number,
  edit: (view: DataView, at: number) => void,
): void {
  const bytes = new Uint8Array(fs.readFileSync(join(dir, name)));
  const entry = Math.floor(bytes.length / entryBytes / 2);
  edit(new DataView(bytes.buffer), entry * entryBytes);
  fs.writeFileSync(join(dir, name), bytes);
}

describe("index files that look valid but are wrong", () => {
  test("an offset index entry pointing inside a batch is not trusted", async () => {
    using dir = tempDir();
    const config = { segmentBytes: 8 * 1024, indexIntervalBytes: 512 };
    const layout = await writeLog(dir.path, config, testBatches(80, 21));
    let expected: string[];
    {
      await using opened = await openLog(dir.path);
      expected = answers(opened.log, layout);
    }
    // Still well formed (increasing, inside the log) but one byte past a batch start, as one
    // flipped low bit of the position makes it.
    editIndexEntry(dir.path, segmentFileName(0, "index"), 8, (view, at) => {
      view.setUint32(at + 4, view.getUint32(at + 4) + 1);
    });
    await using opened = await openLog(dir.path);
    const got = catchSluiceError(() => answers(opened.log, layout));
    assert.equal(got, undefined, `reads of intact batches fail: ${got?.message}`);
    assert.deepEqual(answers(opened.log, layout), expected);
  });

  test("a time index entry with a too small timestamp is not trusted", async () => {
    using dir = tempDir();
    const config = { segmentBytes: 8 * 1024, indexIntervalBytes: 512 };
    const layout = await writeLog(dir.path, config, testBatches(80, 21));
    let expected: string[];
    {
      await using opened = await openLog(dir.path);
      expected = answers(opened.log, layout);
    }
    // Still increasing: one above the entry before it, far below the true largest timestamp.
    editIndexEntry(dir.path, segmentFileName(0, "timeindex"), 12, (view, at) => {
      view.setBigInt64(at, view.getBigInt64(at - 12) + 1n);
    });
    await using opened = await openLog(dir.path);
    assert.deepEqual(answers(opened.log, layout), expected);
  });
});

/** Checks that an opened log serves `expected`, takes an append, and reopens without warnings. */
async function assertUsable(opened: Opened, dir: string, expected: StoredBatch[], context: string) {
  const { log } = opened;
  assertLogHolds(log, expected, context);
  const end = log.logEndOffset;
  const batch = testBatches(1, 77)[0]!;
  const appended = await log.append(batch);
  assert.equal(appended.baseOffset, end, `${context}: an append goes at the end`);
  await log.close();
  await using reopened = await openLog(dir);
  assert.deepEqual(reopened.warnings, [], `${context}: the next open is clean`);
  assert.equal(reopened.log.logEndOffset, appended.lastOffset + 1, context);
  const read = batchesOf(reopened.log.read(end, 1024 * 1024).views);
  assert.ok(read[0] !== undefined && sameBytes(read[0].subarray(8), batch.subarray(8)), context);
}

function randomBytes(random: () => number, length: number): Uint8Array {
  return Uint8Array.from({ length }, () => randomInt(random, 256));
}

describe("hostile files in the partition directory", () => {
  test("a log file of random garbage is truncated and the log starts over", async () => {
    using dir = tempDir();
    const random = mulberry32(FIRST_SEED);
    for (const clean of [true, false]) {
      const context = `seed ${FIRST_SEED}, ${clean ? "with" : "without"} the clean marker`;
      fs.rmSync(dir.path, { recursive: true, force: true });
      fs.mkdirSync(dir.path);
      fs.writeFileSync(join(dir.path, segmentFileName(0, "log")), randomBytes(random, 10_000));
      if (clean) fs.writeFileSync(join(dir.path, CLEAN_SHUTDOWN_FILE), "");
      await using opened = await openLog(dir.path);
      assert.equal(opened.log.logEndOffset, 0, context);
      assert.ok(opened.warnings.length > 0, `${context}: the truncation is reported`);
      await assertUsable(opened, dir.path, [], context);
    }
  });

  test("a sealed segment of random garbage is reported and its neighbours read", async () => {
    using dir = tempDir();
    const { layout, segmentOne } = await sealedLog(dir.path);
    const random = mulberry32(FIRST_SEED);
    const garbageBase = segmentOne[0]!.segment;
    for (const mode of ["clean", "unclean"]) {
      const name = segmentFileName(garbageBase, "log");
      const size = fs.statSync(join(dir.path, name)).size;
      fs.writeFileSync(join(dir.path, name), randomBytes(random, size));
      if (mode === "unclean") forgetCleanShutdown(dir.path);
      const context = `seed ${FIRST_SEED}, ${mode}`;
      await using opened = await openLog(dir.path);
      const intact = layout.filter((b) => b.segment !== garbageBase);
      for (const batch of intact) checkOneBatch(opened.log, layout, layout.indexOf(batch), false);
      const error = catchSluiceError(() => opened.log.read(garbageBase, 1024));
      assert.equal(error?.code, "CORRUPT_BATCH", `${context}: offsets of the garbage fail`);
    }
  });

  test("a zero-length log file is an empty segment", async () => {
    using dir = tempDir();
    // The only segment.
    fs.writeFileSync(join(dir.path, segmentFileName(0, "log")), new Uint8Array(0));
    {
      await using opened = await openLog(dir.path);
      assert.deepEqual(opened.warnings, []);
      await assertUsable(opened, dir.path, [], "only segment");
    }
    // A new last segment after a roll, without its index files.
    using second = tempDir();
    const layout = await writeLog(second.path, { segmentBytes: 4096 }, testBatches(30, 5));
    const end = layout.at(-1)!.lastOffset + 1;
    fs.writeFileSync(join(second.path, segmentFileName(end, "log")), new Uint8Array(0));
    for (const mode of ["clean", "unclean"]) {
      if (mode === "unclean") forgetCleanShutdown(second.path);
      await using opened = await openLog(second.path);
      assert.equal(opened.log.logEndOffset, end, mode);
      assertLogHolds(opened.log, layout, mode);
    }
  });

  test("a recovery point of garbage text means recover everything", async () => {
    using dir = tempDir();
    const layout = await writeLog(dir.path, { segmentBytes: 4096 }, testBatches(30, 6));
    const pristine = snapshot(dir.path);
    const texts = ["", "garbage", "-7\n", "3.5", "NaN", "1e400", "123456789012345678901234567890"];
    texts.push("\u0000\u00ff\u0001", " 12 \n 13", "9007199254740993");
    for (const text of texts) {
      for (const mode of ["clean", "unclean"]) {
        const context = `recovery-point ${JSON.stringify(text)}, ${mode}`;
        restore(dir.path, pristine);
        if (mode === "unclean") fs.rmSync(join(dir.path, CLEAN_SHUTDOWN_FILE));
        fs.writeFileSync(join(dir.path, RECOVERY_POINT_FILE), text);
        await using opened = await openLog(dir.path);
        assert.deepEqual(opened.warnings, [], context);
        assert.ok(opened.log.recoveryPoint <= opened.log.logEndOffset, context);
        await assertUsable(opened, dir.path, layout, context);
        const written = fs.readFileSync(join(dir.path, RECOVERY_POINT_FILE), "utf8");
        assert.match(written, /^\d+\n$/, `${context}: a clean close writes a valid checkpoint`);
      }
    }
  });

  test("a recovery point past the end of the log is not believed", async () => {
    using dir = tempDir();
    const layout = await writeLog(dir.path, { segmentBytes: 4096 }, testBatches(30, 6));
    fs.rmSync(join(dir.path, CLEAN_SHUTDOWN_FILE));
    fs.writeFileSync(join(dir.path, RECOVERY_POINT_FILE), "1000000\n");
    await using opened = await openLog(dir.path);
    assert.ok(opened.log.recoveryPoint <= opened.log.logEndOffset, `${opened.log.recoveryPoint}`);
    await assertUsable(opened, dir.path, layout, "recovery point 1000000");
  });

  test("stray temporary files are removed and unrelated files left alone", async () => {
    using dir = tempDir();
    const layout = await writeLog(dir.path, { segmentBytes: 4096 }, testBatches(30, 8));
    const random = mulberry32(FIRST_SEED);
    const strays = ["recovery-point.tmp", `${segmentFileName(0, "log")}.tmp`, "x.tmp"];
    for (const name of strays) fs.writeFileSync(join(dir.path, name), randomBytes(random, 100));
    const unrelated = ["notes.txt", "123.log", `${segmentFileName(7, "index")}`];
    for (const name of unrelated) fs.writeFileSync(join(dir.path, name), randomBytes(random, 50));
    for (const mode of ["clean", "unclean"]) {
      if (mode === "unclean") forgetCleanShutdown(dir.path);
      await using opened = await openLog(dir.path);
      assert.deepEqual(opened.warnings, [], mode);
      for (const name of strays) assert.ok(!fs.existsSync(join(dir.path, name)), `${name} gone`);
      for (const name of unrelated) assert.ok(fs.existsSync(join(dir.path, name)), `${name} kept`);
      assertLogHolds(opened.log, layout, mode);
    }
  });
});

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { LogConfig } from "../../engine/log_config.ts";
import {
  type AppendResult,
  PartitionLog,
  type PartitionLogOptions,
} from "../../engine/partition_log.ts";
import {
  BATCH_HEADER_BYTES,
  baseOffsetAt,
  batchSizeAt,
  CRC_AT,
  computeBatchCrc,
  RECORD_COUNT_AT,
  writeInt32,
} from "../../record/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import {
  BASE_TIMESTAMP_MS,
  batchOfSpecs,
  copyDir,
  decodeRead,
  expectedRecord,
  assertSameIndexFiles,
  FaultyIO,
  fileSize,
  indexFiles,
  logFileSizes,
  type PlainRecord,
  type RecordSpec,
  readAll,
  segmentPath,
  simpleBatch,
  sluiceCode,
} from "./partition_log_helpers.ts";

const FAST: Partial<LogConfig> = { fsync: "never" };

async function openLog(
  dir: string,
  config: Partial<LogConfig> = {},
  options: PartitionLogOptions = {},
): Promise<PartitionLog> {
  return PartitionLog.open(dir, { ...FAST, ...config }, { onWarning: () => {}, ...options });
}

/** Appends batches of the given record counts, tagging records by their expected offsets. */
async function appendCounts(
  log: PartitionLog,
  counts: number[],
  valueBytes = 16,
): Promise<{ results: AppendResult[]; expected: PlainRecord[] }> {
  const results: AppendResult[] = [];
  const expected: PlainRecord[] = [];
  for (const count of counts) {
    const first = log.logEndOffset;
    const specs: RecordSpec[] = [];
    for (let i = 0; i < count; i++) {
      specs.push({ tag: first + i, valueBytes, timestamp: BASE_TIMESTAMP_MS + first + i });
    }
    results.push(await log.append(batchOfSpecs(specs)));
    for (const [i, spec] of specs.entries()) expected.push(expectedRecord(spec, first + i));
  }
  return { results, expected };
}

/** Checks nothing changed since `before` was taken, and that appends still work. */
async function assertUnchangedAndUsable(
  log: PartitionLog,
  before: { logEndOffset: number; sizeBytes: number; records: PlainRecord[] },
): Promise<void> {
  assert.equal(log.logEndOffset, before.logEndOffset);
  assert.equal(log.highWatermark, before.logEndOffset);
  assert.equal(log.sizeBytes, before.sizeBytes);
  assert.deepEqual(readAll(log), before.records);
  const result = await log.append(simpleBatch(2, { firstTag: 900 }));
  assert.equal(result.baseOffset, before.logEndOffset);
  assert.equal(result.lastOffset, before.logEndOffset + 1);
  assert.equal(readAll(log).length, before.records.length + 2);
}

async function snapshot(log: PartitionLog) {
  return { logEndOffset: log.logEndOffset, sizeBytes: log.sizeBytes, records: readAll(log) };
}

describe("PartitionLog appends", () => {
  test("a new log is empty and starts at offset 0", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    assert.deepEqual(
      [log.logStartOffset, log.logEndOffset, log.highWatermark, log.sizeBytes],
      [0, 0, 0, 0],
    );
    assert.deepEqual(log.segmentBaseOffsets(), [0]);
    assert.deepEqual(log.corruptions, []);
    const result = log.read(0, 1000);
    assert.deepEqual([result.views.length, result.sizeBytes, result.nextOffset], [0, 0, 0]);
    assert.equal(log.offsetForTimestamp(0), undefined);
    for (const extension of ["log", "index", "timeindex"]) {
      assert.ok(fs.existsSync(segmentPath(dir.path, 0, extension)), `${extension} file exists`);
    }
    await log.close();
  });

  test("offsets are assigned consecutively across batches of different record counts", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    const { results, expected } = await appendCounts(log, [1, 3, 7, 2, 1]);
    assert.deepEqual(
      results.map((r) => [r.baseOffset, r.lastOffset, r.logStartOffset]),
      [
        [0, 0, 0],
        [1, 3, 0],
        [4, 10, 0],
        [11, 12, 0],
        [13, 13, 0],
      ],
    );
    assert.equal(log.logEndOffset, 14);
    assert.equal(log.highWatermark, 14);
    assert.deepEqual(readAll(log), expected);
    await log.close();
  });

  test("concurrent appends get consecutive offsets in call order", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    const counts = [2, 5, 1, 3, 4, 1, 1, 6];
    let tag = 0;
    const pending = counts.map((count) => {
      const batch = simpleBatch(count, { firstTag: tag });
      tag += count;
      return log.append(batch);
    });
    const results = await Promise.all(pending);
    let next = 0;
    for (const [i, result] of results.entries()) {
      assert.deepEqual([result.baseOffset, result.lastOffset], [next, next + counts[i]! - 1]);
      next += counts[i]!;
    }
    const records = readAll(log);
    assert.deepEqual(
      records.map((r) => r.offset),
      Array.from({ length: next }, (_, i) => i),
    );
    await log.close();
  });

  test("the stored batch carries the offsets the log assigned", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    await appendCounts(log, [3, 4]);
    const result = log.read(3, 1 << 20);
    assert.equal(result.views.length, 1);
    const view = result.views[0]!;
    assert.equal(baseOffsetAt(view, 0), 3);
    assert.equal(batchSizeAt(view, 0), view.length);
    await log.close();
  });
});

describe("PartitionLog reads", () => {
  test("a read returns whole batches starting with the batch that holds the offset", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    const { expected } = await appendCounts(log, [5, 5, 5]);
    for (const offset of [5, 7, 9]) {
      const result = log.read(offset, 1 << 20);
      const batches = decodeRead(result);
      assert.deepEqual(
        batches.map((b) => b.baseOffset),
        [5, 10],
      );
      assert.deepEqual(
        batches.flatMap((b) => b.records),
        expected.slice(5),
      );
      assert.equal(result.nextOffset, 15);
      assert.equal(result.highWatermark, 15);
      assert.equal(result.logStartOffset, 0);
    }
    await log.close();
  });

  test("a read returns one whole batch when maxBytes is smaller than it", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    await appendCounts(log, [4, 4], 200);
    for (const maxBytes of [1, BATCH_HEADER_BYTES, 500]) {
      const result = log.read(2, maxBytes);
      const batches = decodeRead(result);
      assert.deepEqual(
        batches.map((b) => b.baseOffset),
        [0],
      );
      assert.ok(result.sizeBytes > maxBytes);
      assert.equal(result.nextOffset, 4);
    }
    await log.close();
  });

  test("a read stops before the first batch that would pass maxBytes", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    await appendCounts(log, [2, 2, 2, 2, 2], 100);
    const size = log.sizeBytes / 5;
    assert.ok(Number.isInteger(size), "equal batches");
    const cases: [number, number][] = [
      [size, 1],
      [2 * size - 1, 1],
      [2 * size, 2],
      [2 * size + Math.floor(size / 2), 2],
      [5 * size, 5],
      [100 * size, 5],
    ];
    for (const [maxBytes, batchCount] of cases) {
      const result = log.read(0, maxBytes);
      assert.equal(decodeRead(result).length, batchCount, `maxBytes ${maxBytes}`);
      assert.equal(result.sizeBytes, batchCount * size);
      assert.equal(result.nextOffset, 2 * batchCount);
    }
    await log.close();
  });

  test("a read at the high watermark returns no batches", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    await appendCounts(log, [3]);
    const result = log.read(3, 1000);
    assert.deepEqual(result.views, []);
    assert.equal(result.sizeBytes, 0);
    assert.equal(result.nextOffset, 3);
    assert.equal(result.highWatermark, 3);
    await log.close();
  });

  test("reads outside [logStartOffset, highWatermark] fail with OFFSET_OUT_OF_RANGE", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    await appendCounts(log, [3]);
    assert.throws(() => log.read(4, 1000), sluiceCode("OFFSET_OUT_OF_RANGE"));
    assert.throws(() => log.read(1_000_000, 1000), sluiceCode("OFFSET_OUT_OF_RANGE"));
    assert.throws(() => log.read(-1, 1000), sluiceCode("OFFSET_OUT_OF_RANGE"));
    assert.throws(() => log.read(1.5, 1000), TypeError);
    assert.throws(() => log.read(Number.NaN, 1000), TypeError);
    assert.throws(() => log.read(0, 0), RangeError);
    assert.throws(() => log.read(0, -5), RangeError);
    assert.throws(() => log.read(0, 2.5), RangeError);
    await log.close();
  });

  test("reads from the file match reads from the in-memory tail", async () => {
    using dir = tempDir();
    // A tail cache of 0 keeps only the newest chunk; chunks are 1 MiB, so most of ~3 MiB of
    // log is read back from the file, while the default cache serves it all from memory.
    const cold = await openLog(join(dir.path, "cold"), {}, { tailCacheBytes: 0 });
    const warm = await openLog(join(dir.path, "warm"));
    for (const log of [cold, warm]) await appendCounts(log, [1, 3, 2, 1, 3, 2, 1, 2], 300_000);
    for (const maxBytes of [1, 500_000, 1_000_000, 4_000_000]) {
      for (let offset = 0; offset < cold.highWatermark; offset++) {
        const a = cold.read(offset, maxBytes);
        const b = warm.read(offset, maxBytes);
        assert.deepEqual(decodeRead(a), decodeRead(b), `offset ${offset} maxBytes ${maxBytes}`);
        assert.equal(a.nextOffset, b.nextOffset);
      }
    }
    await cold.close();
    await warm.close();
  });
});

describe("PartitionLog segments", () => {
  test("a segment rolls before a batch would take it past segmentBytes", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, { segmentBytes: 4096 });
    const sizes: number[] = [];
    const bases: number[] = [];
    for (let i = 0; i < 14; i++) {
      const batch = simpleBatch(1 + (i % 3), { firstTag: i, valueBytes: 300 + 37 * i });
      sizes.push(batch.length);
      bases.push((await log.append(batch)).baseOffset);
    }
    const segments = log.segmentBaseOffsets();
    assert.ok(segments.length >= 4, `rolled into ${segments.length} segments`);
    assert.equal(segments[0], 0);
    const onDisk = logFileSizes(dir.path);
    assert.deepEqual([...onDisk.keys()], segments);
    // Every segment starts at a batch, holds at most segmentBytes, and was rolled only because
    // the next batch did not fit.
    for (const [i, base] of segments.entries()) {
      const first = bases.indexOf(base);
      assert.ok(first >= 0, `segment ${base} starts at a batch`);
      const size = onDisk.get(base)!;
      assert.ok(size <= 4096, `segment ${base} holds ${size} bytes`);
      const nextBase = segments[i + 1];
      if (nextBase === undefined) continue;
      const next = bases.indexOf(nextBase);
      const held = sizes.slice(first, next).reduce((a, b) => a + b, 0);
      assert.equal(held, size);
      assert.ok(size + sizes[next]! > 4096, `segment ${base} rolled only when full`);
    }
    assert.equal(
      log.sizeBytes,
      sizes.reduce((a, b) => a + b, 0),
    );
    await log.close();
  });

  test("a segment rolls segmentMs after its first append", async () => {
    using dir = tempDir();
    let nowMs = 10_000;
    const log = await openLog(dir.path, { segmentMs: 1000 }, { now: () => nowMs });
    const appendAt = async (timeMs: number) => {
      nowMs = timeMs;
      return log.append(simpleBatch(1, { timestamp: timeMs }));
    };
    await appendAt(10_000);
    await appendAt(10_999);
    assert.deepEqual(log.segmentBaseOffsets(), [0]);
    await appendAt(11_000);
    assert.deepEqual(log.segmentBaseOffsets(), [0, 2]);
    await appendAt(11_999);
    assert.deepEqual(log.segmentBaseOffsets(), [0, 2]);
    await appendAt(12_000);
    assert.deepEqual(log.segmentBaseOffsets(), [0, 2, 4]);
    assert.equal(readAll(log).length, 5);
    await log.close();
  });

  test("a segment's age counts from its first append, not from when the log opened", async () => {
    using dir = tempDir();
    let nowMs = 0;
    const log = await openLog(dir.path, { segmentMs: 1000 }, { now: () => nowMs });
    nowMs = 50_000;
    await log.append(simpleBatch(1, { timestamp: nowMs }));
    nowMs = 50_500;
    await log.append(simpleBatch(1, { timestamp: nowMs }));
    assert.deepEqual(log.segmentBaseOffsets(), [0], "half a segmentMs after the first append");
    nowMs = 51_000;
    await log.append(simpleBatch(1, { timestamp: nowMs }));
    assert.deepEqual(log.segmentBaseOffsets(), [0, 2]);
    await log.close();
  });

  test("reads continue across segment boundaries", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, { segmentBytes: 2048 });
    const { expected } = await appendCounts(log, [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5], 150);
    const segments = log.segmentBaseOffsets();
    assert.ok(segments.length >= 3, `rolled into ${segments.length} segments`);
    for (const maxBytes of [1, 700, 5000, 1 << 20]) {
      assert.deepEqual(readAll(log, 0, maxBytes), expected, `maxBytes ${maxBytes}`);
    }
    for (let offset = 0; offset < log.highWatermark; offset++) {
      const batches = decodeRead(log.read(offset, 1));
      assert.equal(batches.length, 1);
      const records = batches[0]!.records;
      assert.ok(records[0]!.offset <= offset && offset <= records.at(-1)!.offset);
    }
    await log.close();
  });
});

describe("PartitionLog reopen and indexes", () => {
  const config: Partial<LogConfig> = { segmentBytes: 32 * 1024, indexIntervalBytes: 512 };

  /** A closed log of several segments with many index entries; returns what it holds. */
  async function buildLog(dir: string): Promise<PlainRecord[]> {
    const log = await openLog(dir, config);
    const counts = Array.from({ length: 150 }, (_, i) => 1 + ((i * 7) % 5));
    const { expected } = await appendCounts(log, counts, 120);
    assert.ok(log.segmentBaseOffsets().length >= 3);
    await log.close();
    return expected;
  }

  /** For every offset, the base offset of the batch a one-byte read starts with. */
  function lookups(log: PartitionLog): number[] {
    const bases: number[] = [];
    for (let offset = log.logStartOffset; offset < log.highWatermark; offset++) {
      bases.push(decodeRead(log.read(offset, 1))[0]!.baseOffset);
    }
    return bases;
  }

  function timeLookups(log: PartitionLog): (number | undefined)[] {
    const found: (number | undefined)[] = [];
    for (let t = BASE_TIMESTAMP_MS - 2; t < BASE_TIMESTAMP_MS + log.logEndOffset + 2; t++) {
      found.push(log.offsetForTimestamp(t));
    }
    return found;
  }

  test("a clean reopen keeps every record and appends continue at the log end", async () => {
    using dir = tempDir();
    const expected = await buildLog(dir.path);
    const log = await openLog(dir.path, config);
    assert.deepEqual(log.corruptions, []);
    assert.equal(log.logStartOffset, 0);
    assert.equal(log.logEndOffset, expected.length);
    assert.equal(log.highWatermark, expected.length);
    assert.equal(log.recoveryPoint, expected.length);
    assert.deepEqual(readAll(log), expected);
    const segments = log.segmentBaseOffsets();
    assert.deepEqual([...logFileSizes(dir.path).keys()], segments);
    const result = await log.append(simpleBatch(3, { firstTag: 7777 }));
    assert.deepEqual(
      [result.baseOffset, result.lastOffset],
      [expected.length, expected.length + 2],
    );
    await log.close();
    const again = await openLog(dir.path, config);
    assert.equal(again.logEndOffset, expected.length + 3);
    assert.deepEqual(readAll(again).slice(0, expected.length), expected);
    await again.close();
  });

  test("index files are written by close and reused by a clean reopen", async () => {
    using dir = tempDir();
    await buildLog(dir.path);
    const files = indexFiles(dir.path);
    for (const [name, bytes] of files) {
      const entryBytes = name.endsWith(".timeindex") ? 12 : 8;
      assert.ok(bytes.length > 0, `${name} has entries`);
      assert.equal((bytes.length / 2) % entryBytes, 0, `${name} holds whole entries`);
    }
    const io = new FaultyIO();
    const log = await openLog(dir.path, config, { io });
    // A clean open reads only what follows each segment's last index entries (and a header or
    // two per segment): far less than the log, never a full rescan.
    assert.ok(io.bytesRead < log.sizeBytes / 5, `read ${io.bytesRead} of ${log.sizeBytes}`);
    assertSameIndexFiles(indexFiles(dir.path), files, "reopen");
    await log.close();
    assertSameIndexFiles(indexFiles(dir.path), files, "reopen");
  });

  test("deleted index files are rebuilt on reopen with identical lookups", async () => {
    using dir = tempDir();
    await buildLog(dir.path);
    const files = indexFiles(dir.path);
    const reference = await openLog(dir.path, config);
    const offsets = lookups(reference);
    const times = timeLookups(reference);
    await reference.close();
    for (const name of files.keys()) fs.rmSync(join(dir.path, name));
    const io = new FaultyIO();
    const log = await openLog(dir.path, config, { io });
    assert.ok(io.bytesRead >= log.sizeBytes, "every segment was scanned");
    assertSameIndexFiles(indexFiles(dir.path), files, "reopen");
    assert.deepEqual(lookups(log), offsets);
    assert.deepEqual(timeLookups(log), times);
    await log.close();
  });

  test("damaged index files are rebuilt on reopen with identical lookups", async () => {
    using dir = tempDir();
    const expected = await buildLog(join(dir.path, "original"));
    const files = indexFiles(join(dir.path, "original"));
    const reference = await openLog(join(dir.path, "original"), config);
    const offsets = lookups(reference);
    const times = timeLookups(reference);
    await reference.close();
    const name = [...files.keys()].find((n) => n.endsWith(".index"))!;
    const timeName = name.replace(/\.index$/, ".timeindex");
    const original = Buffer.from(files.get(name)!, "hex");
    const damages: [string, string, (bytes: Buffer) => Uint8Array][] = [
      ["odd size", name, (b) => b.subarray(0, b.length - 3)],
      ["garbage", name, (b) => new Uint8Array(b.length).fill(0xab)],
      ["zeroes", name, (b) => new Uint8Array(b.length)],
      [
        "entries swapped",
        name,
        (b) => Buffer.concat([b.subarray(8, 16), b.subarray(0, 8), b.subarray(16)]),
      ],
      ["last entry inside a batch", name, (b) => bumpLastPosition(b)],
      ["cut short", name, (b) => b.subarray(0, b.length - 16)],
      ["empty", name, () => new Uint8Array(0)],
      ["time index garbage", timeName, (b) => new Uint8Array(b.length).fill(0x7f)],
      ["time index odd size", timeName, (b) => b.subarray(0, b.length - 5)],
    ];
    for (const [what, file, damage] of damages) {
      const copy = join(dir.path, what.replaceAll(" ", "_"));
      copyDir(join(dir.path, "original"), copy);
      const bytes = Buffer.from(files.get(file)!, "hex");
      fs.writeFileSync(join(copy, file), damage(bytes));
      const log = await openLog(copy, config);
      assert.deepEqual(readAll(log), expected, what);
      assert.deepEqual(lookups(log), offsets, what);
      assert.deepEqual(timeLookups(log), times, what);
      await log.close();
      assertSameIndexFiles(indexFiles(copy), files, `${what}: after close`);
    }
    assert.ok(original.length >= 24, "the damaged index has at least three entries");
  });

  test("well-formed index entries that point at the wrong batch are rebuilt", async () => {
    using dir = tempDir();
    await buildLog(join(dir.path, "original"));
    const files = indexFiles(join(dir.path, "original"));
    const name = [...files.keys()].find((n) => n.endsWith(".index"))!;
    const damages: [string, (bytes: Buffer) => void][] = [
      // The second entry's position moves one byte into its batch.
      ["position inside a batch", (b) => b.writeUInt32BE(b.readUInt32BE(12) + 1, 12)],
      // The second entry claims its batch starts one offset earlier than it does.
      ["offset one too low", (b) => b.writeUInt32BE(b.readUInt32BE(8) - 1, 8)],
    ];
    // Every variant runs, and the failures of all of them are reported together.
    const problems: string[] = [];
    for (const [what, damage] of damages) {
      const copy = join(dir.path, what.replaceAll(" ", "_"));
      copyDir(join(dir.path, "original"), copy);
      const bytes = Buffer.from(files.get(name)!, "hex");
      damage(bytes);
      fs.writeFileSync(join(copy, name), bytes);
      const log = await openLog(copy, config);
      for (let offset = 0; offset < log.highWatermark; offset++) {
        try {
          const first = decodeRead(log.read(offset, 1))[0]!.records;
          if (first[0]!.offset > offset || offset > first.at(-1)!.offset) {
            problems.push(`${what}: read(${offset}) starts at offset ${first[0]!.offset}`);
          }
        } catch (error) {
          problems.push(`${what}: read(${offset}) throws ${(error as Error).message}`);
        }
      }
      await log.close();
      const differing = [...files].filter(([n, b]) => indexFiles(copy).get(n) !== b);
      if (differing.length > 0) problems.push(`${what}: ${differing.length} index files differ`);
    }
    assert.deepEqual(problems, []);
  });
});

describe("PartitionLog time index damage", () => {
  const config: Partial<LogConfig> = {
    segmentBytes: 16 * 1024,
    indexIntervalBytes: 512,
    retentionMs: 100_000,
  };
  const HIGH_MS = BASE_TIMESTAMP_MS + 1_000_000;

  test("a sealed segment keeps its newest timestamp when its time index was emptied", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, config);
    // The first record of segment 0 carries its newest timestamp; all later ones are older.
    await log.append(batchOfSpecs([{ tag: 0, valueBytes: 100, timestamp: HIGH_MS }]));
    while (log.segmentBaseOffsets().length < 3) {
      const tag = log.logEndOffset;
      await log.append(
        batchOfSpecs([{ tag, valueBytes: 300, timestamp: BASE_TIMESTAMP_MS + tag }]),
      );
    }
    assert.equal(log.offsetForTimestamp(HIGH_MS - 1), 0);
    const expected = readAll(log);
    await log.close();
    const files = indexFiles(dir.path);
    fs.writeFileSync(segmentPath(dir.path, 0, "timeindex"), new Uint8Array(0));
    const reopened = await openLog(dir.path, config);
    // Segment 0's newest record is 50 s old at this time, well inside retentionMs.
    assert.equal(await reopened.applyRetention(HIGH_MS + 50_000), 0, "segment 0 is kept");
    assert.equal(reopened.offsetForTimestamp(HIGH_MS - 1), 0, "found by its newest timestamp");
    assert.deepEqual(readAll(reopened), expected);
    await reopened.close();
    assertSameIndexFiles(indexFiles(dir.path), files, "after close");
  });
});

/** An index whose last entry points one byte into its batch. */
function bumpLastPosition(bytes: Buffer): Uint8Array {
  const copy = Buffer.from(bytes);
  const at = copy.length - 4;
  copy.writeUInt32BE(copy.readUInt32BE(at) + 1, at);
  return copy;
}

describe("PartitionLog offsetForTimestamp", () => {
  // Timestamps out of order inside batches and across them, as producers with skewed clocks
  // send them: the answer is the first offset (in offset order) at or after the target.
  const batches: number[][] = [
    [100, 90, 120],
    [95, 130],
    [110],
    [80, 85],
    [140, 125, 126],
    [60],
    [150, 100, 150],
  ];

  function modelAnswer(timestamps: number[], target: number): number | undefined {
    const index = timestamps.findIndex((ts) => ts >= target);
    return index === -1 ? undefined : index;
  }

  async function fill(log: PartitionLog, repeat: number): Promise<number[]> {
    const timestamps: number[] = [];
    for (let round = 0; round < repeat; round++) {
      for (const batch of batches) {
        const specs = batch.map((ts) => ({
          tag: timestamps.length,
          valueBytes: 200,
          timestamp: BASE_TIMESTAMP_MS + round * 100 + ts,
        }));
        await log.append(batchOfSpecs(specs));
        timestamps.push(...specs.map((s) => s.timestamp));
      }
    }
    return timestamps;
  }

  function checkAll(log: PartitionLog, timestamps: number[], when: string): void {
    const low = Math.min(...timestamps) - 3;
    const high = Math.max(...timestamps) + 3;
    for (let target = low; target <= high; target++) {
      assert.equal(
        log.offsetForTimestamp(target),
        modelAnswer(timestamps, target),
        `${when}: offsetForTimestamp(${target})`,
      );
    }
  }

  for (const [name, config] of [
    ["one segment", { indexIntervalBytes: 4096 }],
    ["small segments and dense indexes", { segmentBytes: 2048, indexIntervalBytes: 1 }],
  ] as const) {
    test(`finds the first offset at or after the timestamp (${name})`, async () => {
      using dir = tempDir();
      const log = await openLog(dir.path, config);
      const timestamps = await fill(log, 4);
      checkAll(log, timestamps, "from the tail");
      assert.equal(log.offsetForTimestamp(0), 0, "before every record: the first offset");
      assert.equal(log.offsetForTimestamp(Number.MAX_SAFE_INTEGER), undefined);
      await log.close();
      const reopened = await openLog(dir.path, config);
      checkAll(reopened, timestamps, "after a reopen");
      await reopened.close();
      for (const name of fs.readdirSync(dir.path)) {
        if (name.endsWith("index")) fs.rmSync(join(dir.path, name));
      }
      const rebuilt = await openLog(dir.path, config);
      checkAll(rebuilt, timestamps, "after an index rebuild");
      await rebuilt.close();
    });
  }

  test("rejects a timestamp that is not an integer", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    assert.throws(() => log.offsetForTimestamp(1.5), TypeError);
    assert.throws(() => log.offsetForTimestamp(Number.NaN), TypeError);
    await log.close();
  });
});

describe("PartitionLog retention", () => {
  /** Appends one batch per timestamp; returns the base offset of each. */
  async function appendAtTimes(log: PartitionLog, timestamps: number[]): Promise<number[]> {
    const bases: number[] = [];
    for (const [i, timestamp] of timestamps.entries()) {
      bases.push(
        (await log.append(simpleBatch(2, { firstTag: i, valueBytes: 900, timestamp }))).baseOffset,
      );
    }
    return bases;
  }

  /** A log of 4 KiB segments kept to 9,000 bytes (not by time), 20 batches appended. */
  async function sizeRetainedLog(dir: string): Promise<PartitionLog> {
    const log = await openLog(dir, { segmentBytes: 4096, retentionBytes: 9000, retentionMs: -1 });
    await appendAtTimes(log, Array(20).fill(BASE_TIMESTAMP_MS));
    return log;
  }

  test("retention by bytes deletes the oldest whole sealed segments", async () => {
    using dir = tempDir();
    const log = await sizeRetainedLog(dir.path);
    const segments = log.segmentBaseOffsets();
    const sizes = logFileSizes(dir.path);
    const before = readAll(log);
    // Kafka's rule: delete the oldest while what remains without it is still >= the limit.
    let total = log.sizeBytes;
    let expectedDeleted = 0;
    for (const base of segments.slice(0, -1)) {
      if (total - sizes.get(base)! < 9000) break;
      total -= sizes.get(base)!;
      expectedDeleted++;
    }
    assert.ok(expectedDeleted >= 2, `the setup deletes ${expectedDeleted} segments`);
    assert.equal(await log.applyRetention(), expectedDeleted);
    const start = segments[expectedDeleted]!;
    assert.deepEqual(log.segmentBaseOffsets(), segments.slice(expectedDeleted));
    assert.equal(log.logStartOffset, start);
    assert.equal(log.sizeBytes, total);
    assert.deepEqual([...logFileSizes(dir.path).keys()], segments.slice(expectedDeleted));
    for (const base of segments.slice(0, expectedDeleted)) {
      for (const extension of ["log", "index", "timeindex"]) {
        assert.ok(!fs.existsSync(segmentPath(dir.path, base, extension)), `${base}.${extension}`);
      }
    }
    assert.throws(() => log.read(start - 1, 1000), sluiceCode("OFFSET_OUT_OF_RANGE"));
    assert.throws(() => log.read(0, 1000), sluiceCode("OFFSET_OUT_OF_RANGE"));
    assert.deepEqual(readAll(log), before.slice(start));
    assert.equal(log.offsetForTimestamp(0), start);
    assert.equal(await log.applyRetention(), 0, "a second pass finds nothing more");
    const result = await log.append(simpleBatch(1));
    assert.equal(result.logStartOffset, start);
    await log.close();
    const reopened = await openLog(dir.path, { segmentBytes: 4096 });
    assert.equal(reopened.logStartOffset, start);
    assert.deepEqual(readAll(reopened).slice(0, -1), before.slice(start));
    await reopened.close();
  });

  test("retention unlinks off the event loop; an open ends a cut-short deletion", async () => {
    using dir = tempDir();
    const log = await sizeRetainedLog(dir.path);
    const first = log.segmentBaseOffsets()[0]!;
    const copy = fs.readFileSync(segmentPath(dir.path, first, "log"));
    const deleted = await log.applyRetention();
    assert.ok(deleted >= 2, `the setup deletes ${deleted} segments`);
    const start = log.logStartOffset;
    // Gone under their own names at once (renamed); close waits for the unlinks.
    assert.ok(!fs.existsSync(segmentPath(dir.path, first, "log")));
    await log.close();
    const leftovers = () => fs.readdirSync(dir.path).filter((name) => name.endsWith(".deleted"));
    assert.deepEqual(leftovers(), [], "every unlink finished before close returned");
    // A crash between the rename and the unlink leaves the file under its .deleted name: the
    // next open removes it and does not bring the segment back.
    fs.writeFileSync(`${segmentPath(dir.path, first, "log")}.deleted`, copy);
    fs.writeFileSync(`${segmentPath(dir.path, first, "index")}.deleted`, new Uint8Array(8));
    const reopened = await openLog(dir.path, { segmentBytes: 4096 });
    try {
      assert.equal(reopened.logStartOffset, start, "the deleted segment stays deleted");
      assert.deepEqual(leftovers(), [], "the open removed the leftovers");
      assert.throws(() => reopened.read(first, 1000), sluiceCode("OFFSET_OUT_OF_RANGE"));
    } finally {
      await reopened.close();
    }
  });

  test("retention by time deletes sealed segments whose newest record has expired", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, { segmentBytes: 4096, retentionMs: 10_000 });
    const timestamps = Array.from({ length: 16 }, (_, i) => BASE_TIMESTAMP_MS + i * 1000);
    const bases = await appendAtTimes(log, timestamps);
    const segments = log.segmentBaseOffsets();
    assert.ok(segments.length >= 4);
    // The newest timestamp in each segment: of its last batch.
    const newest = segments.map((base, i) => {
      const next = segments[i + 1] ?? Number.POSITIVE_INFINITY;
      const last = bases.filter((b) => b >= base && b < next).length - 1;
      return timestamps[bases.indexOf(base) + last]!;
    });
    // At a time when the first two segments' newest records are older than retentionMs.
    const nowMs = newest[1]! + 10_001;
    assert.ok(newest[2]! >= nowMs - 10_000, "the third segment is still in retention");
    assert.equal(await log.applyRetention(newest[0]! + 10_000), 0, "exactly at retentionMs: kept");
    assert.equal(await log.applyRetention(nowMs), 2);
    assert.equal(log.logStartOffset, segments[2]);
    assert.throws(() => log.read(segments[2]! - 1, 10), sluiceCode("OFFSET_OUT_OF_RANGE"));
    assert.equal(await log.applyRetention(newest.at(-1)! + 1_000_000), segments.length - 3);
    assert.deepEqual(log.segmentBaseOffsets(), segments.slice(-1), "the active one stays");
    await log.close();
  });

  test("retention uses the injected clock by default", async () => {
    using dir = tempDir();
    let nowMs = BASE_TIMESTAMP_MS;
    const log = await openLog(
      dir.path,
      { segmentBytes: 4096, retentionMs: 1000 },
      { now: () => nowMs },
    );
    await appendAtTimes(log, Array(10).fill(BASE_TIMESTAMP_MS));
    assert.ok(log.segmentBaseOffsets().length >= 3);
    assert.equal(await log.applyRetention(), 0);
    nowMs += 1001;
    const sealed = log.segmentBaseOffsets().length - 1;
    assert.equal(await log.applyRetention(), sealed);
    assert.equal(log.segmentBaseOffsets().length, 1);
    await log.close();
  });

  test("retention right after a roll leaves the log writable", async () => {
    using dir = tempDir();
    // With fsync "never" a rolled segment is fsynced in the background after its last append
    // is acknowledged; retention may run before that fsync has finished.
    const log = await openLog(dir.path, { segmentBytes: 4096, retentionBytes: 1, retentionMs: -1 });
    for (let i = 0; i < 6; i++) await log.append(simpleBatch(1, { firstTag: i, valueBytes: 1500 }));
    assert.deepEqual(log.segmentBaseOffsets(), [0, 2, 4]);
    assert.equal(await log.applyRetention(), 2);
    await log.flush();
    const result = await log.append(simpleBatch(1, { firstTag: 6 }));
    assert.equal(result.baseOffset, 6);
    assert.equal(result.logStartOffset, 4);
    await log.close();
    const reopened = await openLog(dir.path);
    assert.deepEqual(
      readAll(reopened).map((r) => r.offset),
      [4, 5, 6],
    );
    await reopened.close();
  });

  test("retention never deletes the active segment", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, { retentionBytes: 1, retentionMs: 1 });
    await appendAtTimes(log, [0, 1, 2]);
    assert.equal(await log.applyRetention(Number.MAX_SAFE_INTEGER), 0);
    assert.equal(readAll(log).length, 6);
    await log.close();
  });
});

describe("PartitionLog invalid appends", () => {
  async function withLog(check: (log: PartitionLog) => Promise<void>): Promise<void> {
    using dir = tempDir();
    const log = await openLog(dir.path, { maxBatchBytes: 4096 });
    await appendCounts(log, [2, 3]);
    const before = await snapshot(log);
    await check(log);
    await assertUnchangedAndUsable(log, before);
    await log.close();
    const reopened = await openLog(dir.path);
    assert.equal(reopened.logEndOffset, before.logEndOffset + 2);
    await reopened.close();
  }

  test("a batch failing its CRC rejects with CORRUPT_BATCH and changes nothing", async () => {
    await withLog(async (log) => {
      const batch = simpleBatch(3);
      batch[batch.length - 2]! ^= 0x01;
      await assert.rejects(log.append(batch), sluiceCode("CORRUPT_BATCH"));
      const header = simpleBatch(3);
      header[CRC_AT]! ^= 0x80;
      await assert.rejects(log.append(header), sluiceCode("CORRUPT_BATCH"));
    });
  });

  test("appendBuilt checks a batch's shape but not its CRC; the next open does", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, { maxBatchBytes: 4096 });
    try {
      const truncated = simpleBatch(3);
      assert.throws(
        () => log.appendBuilt(truncated.subarray(0, truncated.length - 1)),
        sluiceCode("INVALID_BATCH"),
      );
      assert.equal(log.logEndOffset, 0);
      // A builder that stamped a wrong CRC is a bug the append no longer catches; the next
      // open (and the scrubber) still do.
      const wrong = simpleBatch(2);
      wrong[CRC_AT]! ^= 0x80;
      assert.throws(() => log.appendChecked(wrong), sluiceCode("CORRUPT_BATCH"));
      await log.appendBuilt(wrong);
      assert.equal(log.logEndOffset, 2);
    } finally {
      await log.close();
    }
    const reopened = await openLog(dir.path);
    try {
      // The open's scan of the unsynced tail finds the bad CRC and ends the log before it.
      assert.equal(reopened.logEndOffset, 0);
      assert.deepEqual(reopened.read(0, 4096).views, []);
    } finally {
      await reopened.close();
    }
  });

  test("truncated, empty or garbage bytes reject with INVALID_BATCH", async () => {
    await withLog(async (log) => {
      const batch = simpleBatch(3);
      const garbage = new Uint8Array(200).map((_, i) => (i * 131 + 7) & 0xff);
      const badMagic = simpleBatch(1);
      badMagic[16] = 1;
      for (const bytes of [
        batch.subarray(0, batch.length - 1),
        batch.subarray(0, BATCH_HEADER_BYTES),
        batch.subarray(0, 30),
        new Uint8Array(0),
        garbage,
        new Uint8Array(100),
        badMagic,
      ]) {
        await assert.rejects(log.append(bytes), sluiceCode("INVALID_BATCH"), `${bytes.length}`);
      }
    });
  });

  test("a batch over maxBatchBytes rejects with BATCH_TOO_LARGE", async () => {
    await withLog(async (log) => {
      const batch = simpleBatch(1, { valueBytes: 5000 });
      await assert.rejects(log.append(batch), (error: unknown) => {
        sluiceCode("BATCH_TOO_LARGE")(error);
        assert.match((error as Error).message, new RegExp(`${batch.length}.*4096`));
        return true;
      });
    });
  });

  test("two batches in one append reject with INVALID_BATCH", async () => {
    await withLog(async (log) => {
      const one = simpleBatch(2);
      const two = new Uint8Array(one.length * 2);
      two.set(one, 0);
      two.set(one, one.length);
      await assert.rejects(log.append(two), sluiceCode("INVALID_BATCH"));
      const trailing = new Uint8Array(one.length + 1);
      trailing.set(one);
      await assert.rejects(log.append(trailing), sluiceCode("INVALID_BATCH"));
    });
  });

  test("a batch whose recordCount disagrees with lastOffsetDelta rejects", async () => {
    await withLog(async (log) => {
      for (const recordCount of [0, 2, 4]) {
        const batch = simpleBatch(3);
        writeInt32(batch, RECORD_COUNT_AT, recordCount);
        writeInt32(batch, CRC_AT, computeBatchCrc(batch, 0, batch.length));
        await assert.rejects(log.append(batch), sluiceCode("INVALID_BATCH"), `${recordCount}`);
      }
    });
  });

  test("append of anything but a Uint8Array throws TypeError", async () => {
    await withLog(async (log) => {
      const batch = simpleBatch(1);
      const wrong: unknown[] = [undefined, null, "batch", [...batch], batch.buffer, { length: 3 }];
      for (const value of wrong) {
        assert.throws(() => log.append(value as Uint8Array), TypeError);
      }
    });
  });
});

describe("PartitionLog buffers", () => {
  test("append leaves the caller's buffer as it was", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    await appendCounts(log, [4]);
    const batch = simpleBatch(3, { firstTag: 40 });
    const copy = batch.slice();
    await log.append(batch);
    assert.deepEqual(batch, copy);
    assert.equal(baseOffsetAt(batch, 0), 0, "the caller's baseOffset field is not patched");
    await log.close();
  });

  test("changing the caller's buffer after append does not change what was stored", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    const batch = simpleBatch(3, { firstTag: 40, valueBytes: 64 });
    const pending = log.append(batch);
    const original = decodeRead({
      views: [batch.slice()],
      sizeBytes: batch.length,
      nextOffset: 0,
      highWatermark: 0,
      logStartOffset: 0,
    });
    batch.fill(0xee);
    await pending;
    assert.deepEqual(readAll(log), original[0]!.records);
    await log.close();
    const reopened = await openLog(dir.path);
    assert.deepEqual(readAll(reopened), original[0]!.records);
    await reopened.close();
  });
});

describe("PartitionLog fsync policies", () => {
  for (const fsync of ["always", "never", { intervalMs: 5 }] as const) {
    test(`fsync ${JSON.stringify(fsync)}: appends are readable and survive a reopen`, async () => {
      using dir = tempDir();
      const log = await openLog(dir.path, { fsync, segmentBytes: 4096 });
      const { expected } = await appendCounts(log, [1, 2, 3, 4, 5, 6, 7, 8], 200);
      assert.deepEqual(readAll(log), expected);
      await log.flush();
      assert.equal(log.recoveryPoint, log.logEndOffset);
      await log.close();
      const reopened = await openLog(dir.path, { fsync });
      assert.deepEqual(readAll(reopened), expected);
      await reopened.close();
    });
  }

  test('fsync "always" acks after fdatasync and commits waiting appends together', async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, { fsync: "always" }, { io });
    await log.append(simpleBatch(1));
    assert.ok(io.syncCount >= 1, "the first append was fsynced");
    assert.equal(log.recoveryPoint, 1);
    assert.equal(log.highWatermark, 1);
    const syncsBefore = io.syncCount;
    const pending = Array.from({ length: 20 }, (_, i) =>
      log.append(simpleBatch(1, { firstTag: i })),
    );
    await Promise.all(pending);
    assert.ok(io.syncCount - syncsBefore <= 2, `${io.syncCount - syncsBefore} fsyncs for 20`);
    assert.equal(log.recoveryPoint, 21);
    await log.close();
  });

  test('fsync "never" fsyncs only when flushed', async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, { fsync: "never" }, { io });
    for (let i = 0; i < 5; i++) await log.append(simpleBatch(2));
    assert.equal(io.syncCount, 0);
    assert.equal(log.highWatermark, 10, "written appends are visible before any fsync");
    assert.equal(log.recoveryPoint, 0);
    await log.flush();
    assert.ok(io.syncCount >= 1);
    assert.equal(log.recoveryPoint, 10);
    await log.close();
  });

  test("fsync { intervalMs } fsyncs in the background", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, { fsync: { intervalMs: 2 } }, { io });
    for (let i = 0; i < 5; i++) await log.append(simpleBatch(2));
    assert.equal(log.highWatermark, 10);
    await waitFor(() => log.recoveryPoint === 10, "the background fsync");
    assert.ok(io.syncCount >= 1);
    await log.close();
  });
});

describe("PartitionLog close", () => {
  test("append, read, flush and offsetForTimestamp after close fail with LOG_CLOSED", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    await appendCounts(log, [2]);
    await log.close();
    await assert.rejects(log.append(simpleBatch(1)), sluiceCode("LOG_CLOSED"));
    await assert.rejects(log.flush(), sluiceCode("LOG_CLOSED"));
    assert.throws(() => log.read(0, 100), sluiceCode("LOG_CLOSED"));
    assert.throws(() => log.offsetForTimestamp(0), sluiceCode("LOG_CLOSED"));
    await log.close();
  });

  test("close writes the appends still in flight first", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, { fsync: "always" });
    const pending = Array.from({ length: 10 }, (_, i) =>
      log.append(simpleBatch(1, { firstTag: i })),
    );
    await log.close();
    const results = await Promise.all(pending);
    assert.deepEqual(
      results.map((r) => r.baseOffset),
      Array.from({ length: 10 }, (_, i) => i),
    );
    const reopened = await openLog(dir.path);
    assert.equal(reopened.logEndOffset, 10);
    assert.equal(readAll(reopened).length, 10);
    await reopened.close();
  });

  test("two overlapping close calls both resolve", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    await appendCounts(log, [2]);
    await Promise.all([log.close(), log.close()]);
    const reopened = await openLog(dir.path);
    assert.equal(reopened.logEndOffset, 2);
    await reopened.close();
  });

  test("a reopen after close starts from the files alone", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, { segmentBytes: 4096 });
    await appendCounts(log, [5, 5, 5, 5, 5, 5], 300);
    await log.close();
    const sizes = logFileSizes(dir.path);
    const reopened = await openLog(dir.path, { segmentBytes: 4096 });
    let total = 0;
    for (const size of sizes.values()) total += size;
    assert.equal(reopened.sizeBytes, total);
    assert.equal(fileSize(segmentPath(dir.path, 0, "log")), sizes.get(0));
    await reopened.close();
  });
});

// A batch's CRC is checked once per process: on append, on its first read after an open, or by
// the scrubber; later reads only walk headers. These tests pin down both halves of that: what
// was checked is not hashed again (damage written under a checked batch is served until the
// scrubber finds it), and what was not checked never reaches a reader unchecked.

import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, test } from "node:test";
import { join } from "node:path";
import { Engine } from "../../engine/engine.ts";
import { PartitionLog } from "../../engine/partition_log.ts";
import { Scrubber } from "../../engine/scrubber.ts";
import { VERIFIED_RANGES_MAX, VerifiedRanges } from "../../engine/verified_ranges.ts";
import { baseOffsetAt, batchSizeAt, isSluiceError } from "../../record/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { ACTIVE_MAP_STEP_BYTES } from "../../engine/segment.ts";
import { FaultyIO, segmentPath, simpleBatch } from "./partition_log_helpers.ts";

const INF = Number.POSITIVE_INFINITY;

describe("VerifiedRanges", () => {
  test("checked ranges merge when they touch and answer how far a position is checked", () => {
    const ranges = new VerifiedRanges(1000);
    ranges.add(100, 200);
    ranges.add(300, 400);
    assert.equal(ranges.endFrom(50), 50);
    assert.equal(ranges.endFrom(100), 200);
    assert.equal(ranges.endFrom(199), 200);
    assert.equal(ranges.endFrom(200), 200, "the end is exclusive");
    ranges.add(200, 300);
    assert.equal(ranges.rangeCount, 1);
    assert.equal(ranges.endFrom(150), 400);
    ranges.add(0, 1000);
    assert.equal(ranges.endFrom(0), INF, "a run reaching the appended bytes never ends");
    assert.equal(ranges.endFrom(5000), INF, "bytes appended in this process are trusted");
  });

  test("past the range limit the shortest range is forgotten, never a wrong one kept", () => {
    const ranges = new VerifiedRanges(1_000_000);
    for (let i = 0; i <= VERIFIED_RANGES_MAX; i++) ranges.add(i * 100, i * 100 + 10 + (i % 7));
    assert.equal(ranges.rangeCount, VERIFIED_RANGES_MAX);
    for (let i = 0; i <= VERIFIED_RANGES_MAX; i++) {
      const end = ranges.endFrom(i * 100);
      assert.ok(end === i * 100 || end === i * 100 + 10 + (i % 7), `range ${i}: end ${end}`);
      assert.equal(ranges.endFrom(i * 100 + 50), i * 100 + 50, `gap ${i} stays unchecked`);
    }
  });

  test("forgetting from a position drops checks there and in the appended bytes", () => {
    const ranges = new VerifiedRanges(500);
    ranges.add(0, 300);
    ranges.forgetFrom(200, 800);
    assert.equal(ranges.endFrom(0), 200);
    assert.equal(ranges.endFrom(250), 250);
    assert.equal(ranges.endFrom(600), 600, "bytes appended before the damage was found");
    assert.equal(ranges.endFrom(800), INF, "appends after it are trusted again");
    ranges.truncateTo(100);
    assert.equal(ranges.endFrom(0), INF, "a checked run up to the cut joins the appended bytes");
    const gapped = new VerifiedRanges(1000);
    gapped.add(0, 50);
    gapped.truncateTo(100);
    assert.equal(gapped.endFrom(0), 50);
    assert.equal(gapped.endFrom(60), 60);
    assert.equal(gapped.endFrom(100), INF, "bytes appended after a cut are this process's own");
  });
});

/** A log of sealed segments of single-record batches, closed cleanly; returns its batches. */
async function writeSealedLog(dir: string): Promise<number> {
  const log = await PartitionLog.open(dir, { fsync: "never", segmentBytes: 4096 });
  for (let i = 0; i < 60; i++) await log.append(simpleBatch(1, { firstTag: i, valueBytes: 200 }));
  await log.close();
  return 60;
}

/**
 * Flips one byte of the stored batch at `offset` in place, found by walking the segment file
 * (not through the log, which would check it): the file may be mapped, so it is not rewritten.
 */
function damageInPlace(log: PartitionLog, offset: number): void {
  const segment = [...log.segmentBaseOffsets()].reverse().find((base) => base <= offset)!;
  const path = segmentPath(log.dir, segment, "log");
  const bytes = new Uint8Array(fs.readFileSync(path));
  let position = 0;
  while (position < bytes.length && baseOffsetAt(bytes, position) !== offset) {
    position += batchSizeAt(bytes, position);
  }
  assert.ok(position < bytes.length, `batch ${offset} is in segment ${segment}`);
  // A byte of the record's value: the header still parses, the CRC fails.
  const at = position + batchSizeAt(bytes, position) - 3;
  const fd = fs.openSync(path, "r+");
  try {
    fs.writeSync(fd, Uint8Array.of(bytes[at]! ^ 0x10), 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}

function readCode(log: PartitionLog, offset: number): string {
  try {
    log.read(offset, 1);
    return "served";
  } catch (error) {
    if (isSluiceError(error)) return error.code;
    throw error;
  }
}

describe("reads check each batch once", () => {
  test("a checked batch is not hashed again; the scrubber finds later damage", async () => {
    using dir = tempDir();
    await writeSealedLog(dir.path);
    const warnings: string[] = [];
    const log = await PartitionLog.open(dir.path, {}, { onWarning: (m) => warnings.push(m) });
    try {
      const sealed = log.sealedSegments();
      assert.ok(sealed.length >= 3, "the log has sealed segments");
      const target = sealed[1]!.baseOffset + 2;
      assert.equal(readCode(log, target), "served", "the first read checks and serves");
      damageInPlace(log, target);
      // The batch passed its check in this process: the read walks its header only.
      assert.equal(readCode(log, target), "served", "a checked batch is not hashed again");
      const scrubber = new Scrubber({
        bytesPerSec: 1,
        logs: () => [log],
        onWarning: (m) => warnings.push(m),
      });
      scrubber.step(Number.MAX_SAFE_INTEGER);
      assert.equal(scrubber.damageFound, 1, warnings.join("\n"));
      assert.match(warnings.at(-1)!, /after it had passed its check/);
      assert.equal(readCode(log, target), "CORRUPT_BATCH", "after the scrub the read checks");
      scrubber.step(Number.MAX_SAFE_INTEGER);
      assert.equal(scrubber.damageFound, 1, "one damaged place is reported once");
    } finally {
      await log.close();
    }
  });

  test("damage past the checked bytes is caught on its first read", async () => {
    using dir = tempDir();
    await writeSealedLog(dir.path);
    const log = await PartitionLog.open(dir.path);
    try {
      const base = log.sealedSegments()[1]!.baseOffset;
      assert.equal(readCode(log, base), "served");
      damageInPlace(log, base + 3);
      assert.equal(readCode(log, base + 3), "CORRUPT_BATCH");
      assert.equal(readCode(log, base + 4), "served", "the batch after the damage reads");
    } finally {
      await log.close();
    }
  });

  test("a fresh open trusts nothing read by an earlier one", async () => {
    using dir = tempDir();
    await writeSealedLog(dir.path);
    const first = await PartitionLog.open(dir.path);
    const target = first.sealedSegments()[0]!.baseOffset + 1;
    assert.equal(readCode(first, target), "served");
    damageInPlace(first, target);
    await first.close();
    const second = await PartitionLog.open(dir.path, {}, { onWarning: () => {} });
    try {
      assert.equal(readCode(second, target), "CORRUPT_BATCH");
    } finally {
      await second.close();
    }
  });

  test("a scrub pass checks every sealed byte of a whole log, without warnings", async () => {
    using dir = tempDir();
    await writeSealedLog(dir.path);
    const warnings: string[] = [];
    const log = await PartitionLog.open(dir.path);
    try {
      const scrubber = new Scrubber({
        bytesPerSec: 1,
        logs: () => [log],
        onWarning: (m) => warnings.push(m),
      });
      let sealedBytes = 0;
      for (const segment of log.sealedSegments()) sealedBytes += segment.visiblePosition;
      assert.equal(scrubber.step(Number.MAX_SAFE_INTEGER), sealedBytes);
      assert.deepEqual(warnings, []);
      for (const segment of log.sealedSegments()) {
        assert.ok(segment.verifiedEndFrom(0) >= segment.visiblePosition, "checked whole");
      }
      assert.equal(scrubber.step(1), 270, "a small budget checks one batch at a time");
      assert.throws(() => new Scrubber({ bytesPerSec: -1, logs: () => [], onWarning() {} }), {
        name: "RangeError",
        message: /scrubBytesPerSec -1/,
      });
    } finally {
      await log.close();
    }
  });
});

describe("reads of a long active segment", () => {
  test("the written prefix is mapped; a rollback after it leaves reads right", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await PartitionLog.open(
      dir.path,
      { fsync: "never" },
      { io, tailCacheBytes: 1024 * 1024 },
    );
    try {
      const batch = (i: number) => simpleBatch(4, { firstTag: i * 4, valueBytes: 64 * 1024 });
      let bytes = 0;
      let count = 0;
      while (bytes < ACTIVE_MAP_STEP_BYTES + 4 * 1024 * 1024) {
        const appended = batch(count++);
        bytes += appended.length;
        await log.append(appended);
      }
      assert.equal(log.sealedSegments().length, 0, "one active segment");
      // A round that fails after the mapping was made is cut back; reads below it stay right.
      assert.equal(readCode(log, 0), "served");
      io.onWrite = () => ({ code: "EIO", shortBytes: 1000 });
      await assert.rejects(log.append(batch(count)));
      io.onWrite = undefined;
      const before = io.bytesRead;
      for (let offset = 0; offset < log.highWatermark; offset += 4) {
        const read = log.read(offset, 1);
        assert.equal(baseOffsetAt(read.views[0]!, 0), offset);
      }
      const mapped = typeof (globalThis as { Bun?: unknown }).Bun === "object";
      // Bun maps the prefix: only the bytes past the mapping are read with pread.
      if (mapped) assert.ok(io.bytesRead - before < 8 * 1024 * 1024, `${io.bytesRead - before}`);
    } finally {
      await log.close().catch(() => {});
    }
  });
});

describe("the engine's scrubber", () => {
  test("finds damage that appears in a sealed segment while it runs, with no read", async () => {
    using dir = tempDir();
    const first = await Engine.open(dir.path, { onWarning: () => {}, scrubBytesPerSec: 0 });
    await first.createTopic("t", { partitions: 1, config: { segmentBytes: 4096 } });
    for (let i = 0; i < 40; i++) await first.append("t", 0, simpleBatch(1, { valueBytes: 200 }));
    await first.close();
    const warnings: string[] = [];
    const engine = await Engine.open(dir.path, {
      onWarning: (m) => warnings.push(m),
      scrubBytesPerSec: 10 * 1024 * 1024,
    });
    // Rot in the first segment's second batch while the engine runs, with no read of it.
    const names = fs.readdirSync(join(dir.path, "t-0")).filter((n) => n.endsWith(".log"));
    const path = join(dir.path, "t-0", names.sort()[0]!);
    const bytes = new Uint8Array(fs.readFileSync(path));
    const second = batchSizeAt(bytes, 0);
    const target = baseOffsetAt(bytes, second);
    const at = second + batchSizeAt(bytes, second) - 3;
    const fd = fs.openSync(path, "r+");
    fs.writeSync(fd, Uint8Array.of(bytes[at]! ^ 0x10), 0, 1, at);
    fs.closeSync(fd);
    try {
      await waitFor(
        () => warnings.some((m) => /Scrub of log t-0/.test(m)),
        `the scrub warning: ${warnings}`,
      );
      assert.match(warnings.join("\n"), /damaged batch \(bad-crc\)/);
      assert.throws(() => engine.read("t", 0, target, 1), { code: "CORRUPT_BATCH" });
    } finally {
      await engine.close();
    }
    await assert.rejects(Engine.open(dir.path, { scrubBytesPerSec: -5 }), {
      name: "RangeError",
      message: /scrubBytesPerSec -5/,
    });
    const reopened = await Engine.open(dir.path, { onWarning: () => {}, scrubBytesPerSec: 0 });
    await reopened.close();
  });

  test("an idle scrubber starts at the next tick after a segment is sealed", async () => {
    using dir = tempDir();
    const log = await PartitionLog.open(dir.path, { fsync: "never", segmentBytes: 4096 });
    const scrubber = new Scrubber({
      bytesPerSec: 10 * 1024 * 1024,
      logs: () => [log],
      onWarning: () => {},
    });
    try {
      assert.equal(log.sealedSegments().length, 0);
      scrubber.start();
      // Nothing sealed: the first slice finds nothing, and the scrubber idles for ten seconds
      // (SCRUB_IDLE_TICKS) unless a seal ends the idle.
      await waitFor(() => scrubber.idle, "the scrubber to go idle");
      for (let i = 0; log.sealedSegments().length === 0; i++) {
        await log.append(simpleBatch(1, { firstTag: i, valueBytes: 200 }));
      }
      await waitFor(() => scrubber.bytesChecked > 0, "a scrub of the sealed segment", 3_000);
      assert.equal(scrubber.idle, false);
    } finally {
      scrubber.stop();
      await log.close();
    }
  });
});

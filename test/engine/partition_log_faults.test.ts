// Disk faults injected through a wrapped FileIO: ENOSPC on a write (whole, short, or during a
// segment roll), EIO on fdatasync, failures of the background fsync of a rolled segment; and,
// where this machine lets us mount one, a real ENOSPC from a tiny tmpfs.
//
// The contract under test: an append rejected with DISK_FULL left nothing behind (the log, its
// files and its offsets are as they were before it), so the caller may retry it; any failed
// fsync fences the log (LOG_FENCED) until it is reopened, and the reopen recovers every
// acknowledged batch.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { setImmediate as nextTurn } from "node:timers";
import { isSluiceError, type SluiceError } from "../../record/mod.ts";
import type { LogConfig } from "../../engine/log_config.ts";
import { Engine } from "../../engine/mod.ts";
import { PartitionLog, type PartitionLogOptions } from "../../engine/partition_log.ts";
import { runtimeArgv, tempDir, waitFor } from "../helpers.ts";
import { mountTinyTmpfs, tmpfsUnavailable, unmount } from "../tmpfs.ts";
import {
  assertConsistent,
  assertReopensWith,
  FaultyIO,
  fileSize,
  readAll,
  segmentPath,
  simpleBatch,
  sluiceCode,
} from "./partition_log_helpers.ts";

const CLEAN_SHUTDOWN_FILE = ".clean-shutdown";

async function openLog(
  dir: string,
  config: Partial<LogConfig>,
  options: PartitionLogOptions = {},
): Promise<PartitionLog> {
  return PartitionLog.open(dir, config, { onWarning: () => {}, ...options });
}

/** The rejection of `promise`, which must reject. */
async function rejectionOf(promise: Promise<unknown>): Promise<SluiceError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isSluiceError(error), `a SluiceError, not ${String(error)}`);
    return error;
  }
  assert.fail("expected the promise to reject");
}

/** Tags are unique across a test so that every record read back shows which append made it. */
let nextTag = 0;

function batch(count: number, valueBytes = 100): Uint8Array {
  const bytes = simpleBatch(count, { firstTag: nextTag, valueBytes });
  nextTag += count;
  return bytes;
}

/** Appends and waits, returning the records the log now holds (all acknowledged). */
async function appendAcked(log: PartitionLog, counts: number[], valueBytes = 100) {
  for (const count of counts) await log.append(batch(count, valueBytes));
  return readAll(log);
}

describe("ENOSPC on a write", () => {
  for (const fsync of ["never", "always"] as const) {
    test(`rejects the waiting appends with DISK_FULL and rolls back (fsync ${fsync})`, async () => {
      using dir = tempDir();
      const io = new FaultyIO();
      const log = await openLog(dir.path, { fsync }, { io });
      const acked = await appendAcked(log, [1, 3, 2]);
      io.onWrite = () => ({ code: "ENOSPC" });
      const failures = await Promise.all([
        rejectionOf(log.append(batch(2))),
        rejectionOf(log.append(batch(4))),
      ]);
      for (const error of failures) {
        assert.equal(error.code, "DISK_FULL", error.message);
        assert.equal(error.retriable, true);
      }
      assertConsistent(log, dir.path, acked);
      // Still full: the log is not fenced, each append simply fails again.
      assert.equal((await rejectionOf(log.append(batch(1)))).code, "DISK_FULL");
      // With nothing waiting to be written, a flush has nothing that can fail.
      await log.flush();
      assertConsistent(log, dir.path, acked);
      io.onWrite = undefined;
      const result = await log.append(batch(2));
      assert.deepEqual([result.baseOffset, result.lastOffset], [acked.length, acked.length + 1]);
      const all = readAll(log);
      assert.deepEqual(all.slice(0, acked.length), acked);
      assertConsistent(log, dir.path, all);
      await log.close();
      await assertReopensWith(dir.path, { fsync }, all);
    });
  }

  test("appends made while the failing write was in flight are rolled back too", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, { fsync: "never", segmentBytes: 4096 }, { io });
    const acked = await appendAcked(log, [1, 2]);
    let release = () => {};
    io.writeGate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const writesBefore = io.writeCount;
    const first = rejectionOf(log.append(batch(2)));
    await waitFor(() => io.writeCount > writesBefore, "the write to start");
    // These arrive while that write is in flight; the last ones roll a new segment.
    const later = [1, 2, 3, 4, 5, 6].map(() => rejectionOf(log.append(batch(1, 900))));
    assert.ok(log.segmentBaseOffsets().length > 1, "a segment rolled during the write");
    io.onWrite = () => ({ code: "ENOSPC" });
    io.writeGate = undefined;
    release();
    for (const error of await Promise.all([first, ...later])) {
      assert.equal(error.code, "DISK_FULL", error.message);
    }
    assert.deepEqual(log.segmentBaseOffsets(), [0]);
    assertConsistent(log, dir.path, acked);
    io.onWrite = undefined;
    assert.equal((await log.append(batch(1))).baseOffset, acked.length);
    const all = readAll(log);
    await log.close();
    await assertReopensWith(dir.path, {}, all);
  });

  test("a short write followed by ENOSPC leaves no partial batch behind", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, { fsync: "never" }, { io });
    let acked = await appendAcked(log, [2, 2]);
    for (const shortBytes of [1, 61, 150, 299]) {
      io.onWrite = () => ({ code: "ENOSPC", shortBytes });
      const error = await rejectionOf(log.append(batch(3)));
      assert.equal(error.code, "DISK_FULL", `after ${shortBytes} bytes: ${error.message}`);
      assert.equal(fileSize(segmentPath(dir.path, 0, "log")), log.sizeBytes, `${shortBytes}`);
      assertConsistent(log, dir.path, acked);
      io.onWrite = undefined;
      await log.append(batch(1));
      acked = readAll(log);
    }
    await log.close();
    const warnings = await assertReopensWith(dir.path, {}, acked);
    assert.deepEqual(warnings, [], "a clean reopen finds no torn bytes to truncate");
  });
});

describe("ENOSPC during a segment roll", () => {
  const config: Partial<LogConfig> = { fsync: "never", segmentBytes: 4096 };

  /** Fails every write at position 0 after the first: the first write to a new segment. */
  function failNewSegmentWrites(io: FaultyIO): void {
    io.onWrite = (call) => (call.position === 0 ? { code: "ENOSPC" } : undefined);
  }

  test("a roll whose first write fails leaves one segment and the acknowledged data", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, config, { io });
    const acked = await appendAcked(log, [1, 1, 1], 1100);
    failNewSegmentWrites(io);
    // The segment holds about 3.4 KiB: this batch rolls, and is the round's only write.
    const error = await rejectionOf(log.append(batch(1, 1100)));
    assert.equal(error.code, "DISK_FULL", error.message);
    assert.deepEqual(log.segmentBaseOffsets(), [0]);
    assertConsistent(log, dir.path, acked);
    assert.ok(!fs.existsSync(segmentPath(dir.path, 3, "log")), "the new segment is removed");
    io.onWrite = undefined;
    const result = await log.append(batch(1, 1100));
    assert.equal(result.baseOffset, 3);
    assert.deepEqual(log.segmentBaseOffsets(), [0, 3]);
    const all = readAll(log);
    assertConsistent(log, dir.path, all);
    await log.close();
    await assertReopensWith(dir.path, config, all);
  });

  test("a round writing both the old and the new segment rolls both back", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, config, { io });
    const acked = await appendAcked(log, [1, 1], 900);
    failNewSegmentWrites(io);
    // One round: two batches fill the old segment (its write succeeds), the third rolls and
    // its write to the new segment fails. None of the three was acknowledged.
    const pending = [log.append(batch(1, 900)), log.append(batch(1, 900))];
    pending.push(log.append(batch(1, 900)));
    assert.equal(log.segmentBaseOffsets().length, 2, "the third batch rolled");
    for (const error of await Promise.all(pending.map(rejectionOf))) {
      assert.equal(error.code, "DISK_FULL", error.message);
    }
    assert.deepEqual(log.segmentBaseOffsets(), [0]);
    assertConsistent(log, dir.path, acked);
    io.onWrite = undefined;
    const result = await log.append(batch(1, 900));
    assert.equal(result.baseOffset, acked.length, "the next append takes the next offset");
    const all = readAll(log);
    assert.deepEqual(all.slice(0, acked.length), acked);
    assert.equal(all.length, acked.length + 1, "no rejected record became readable");
    await log.close();
    await assertReopensWith(dir.path, config, all);
  });
});

describe("failed fsyncs", () => {
  test('EIO from fdatasync with fsync "always" fences the log until it is reopened', async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, { fsync: "always" }, { io });
    const acked = await appendAcked(log, [2, 1]);
    io.onSync = () => ({ code: "EIO" });
    const rejectedBatch = batch(2);
    const error = await rejectionOf(log.append(rejectedBatch));
    assert.equal(error.code, "LOG_FENCED", error.message);
    assert.equal(error.retriable, false);
    assert.match(String((error.cause as Error | undefined)?.message), /EIO/);
    io.onSync = undefined;
    for (let i = 0; i < 3; i++) {
      assert.equal((await rejectionOf(log.append(batch(1)))).code, "LOG_FENCED");
    }
    await assert.rejects(log.flush(), sluiceCode("LOG_FENCED"));
    // Readers still see what was acknowledged, and nothing that was not.
    assert.equal(log.highWatermark, acked.length);
    assert.deepEqual(readAll(log), acked);
    await log.close();
    assert.ok(!fs.existsSync(join(dir.path, CLEAN_SHUTDOWN_FILE)), "a fenced close is unclean");
    const reopened = await openLog(dir.path, { fsync: "always" });
    const records = readAll(reopened);
    assert.deepEqual(records.slice(0, acked.length), acked, "every acknowledged record");
    // The write before the failed fsync may or may not have reached the disk; if it did, it is
    // there whole (two records), never in part.
    assert.ok([acked.length, acked.length + 2].includes(records.length), `${records.length}`);
    const result = await reopened.append(batch(1));
    assert.equal(result.baseOffset, records.length);
    await reopened.close();
  });

  test("EIO on a write fences the log; a reopen recovers the acknowledged data", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, { fsync: "never" }, { io });
    const acked = await appendAcked(log, [3]);
    io.onWrite = () => ({ code: "EIO", shortBytes: 40 });
    assert.equal((await rejectionOf(log.append(batch(2)))).code, "LOG_FENCED");
    io.onWrite = undefined;
    assert.equal((await rejectionOf(log.append(batch(2)))).code, "LOG_FENCED");
    await log.close();
    // The 40 bytes of the failed write are a torn tail: recovery truncates them.
    const warnings = await assertReopensWith(dir.path, {}, acked);
    assert.ok(
      warnings.some((w) => /truncat/.test(w)),
      warnings.join("\n"),
    );
  });

  test("an append rejected with DISK_FULL is never stored, even if fdatasync failed", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, { fsync: "always" }, { io });
    const acked = await appendAcked(log, [2]);
    io.onSync = () => ({ code: "ENOSPC" });
    const error = await rejectionOf(log.append(batch(3)));
    io.onSync = undefined;
    if (error.code === "LOG_FENCED") {
      // Treating it like any failed fsync is correct too; the fenced path is tested above.
      await log.close();
      return;
    }
    assert.equal(error.code, "DISK_FULL", error.message);
    assertConsistent(log, dir.path, acked);
    const result = await log.append(batch(1));
    assert.equal(result.baseOffset, acked.length, "the rejected offsets are given out again");
    const all = readAll(log);
    assert.equal(all.length, acked.length + 1, "the rejected records never became readable");
    await log.close();
    await assertReopensWith(dir.path, { fsync: "always" }, all);
  });

  test("a failed fsync of a rolled segment fails the appends waiting on it", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, { fsync: "always", segmentBytes: 4096 }, { io });
    await log.append(batch(1, 1500));
    const firstFd = io.writes[0]!.fd;
    await log.append(batch(1, 1500));
    // The next append rolls; its round fsyncs the old segment once more, and sealing it then
    // fsyncs it a last time in the background. That last fsync fails.
    const syncsOfFirst = () => io.syncs.filter((call) => call.fd === firstFd).length;
    const failAt = syncsOfFirst() + 2;
    io.onSync = (call) =>
      call.fd === firstFd && syncsOfFirst() === failAt ? { code: "EIO" } : undefined;
    await log.append(batch(1, 1500));
    assert.deepEqual(log.segmentBaseOffsets(), [0, 2]);
    // This append's round waits for the sealing fsync, which failed: it must not be acked.
    const error = await rejectionOf(log.append(batch(1, 100)));
    assert.equal(error.code, "LOG_FENCED", error.message);
    assert.equal((await rejectionOf(log.append(batch(1)))).code, "LOG_FENCED");
    await log.close();
  });

  test('flush rejects when a rolled segment\'s fsync failed (fsync "never")', async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await openLog(dir.path, { fsync: "never", segmentBytes: 4096 }, { io });
    await log.append(batch(1, 1500));
    const firstFd = io.writes[0]!.fd;
    // Only the first segment's fsync fails: the one made when it is sealed after the roll.
    io.onSync = (call) => (call.fd === firstFd ? { code: "EIO" } : undefined);
    for (let i = 0; i < 3; i++) await log.append(batch(1, 1500));
    assert.deepEqual(log.segmentBaseOffsets(), [0, 2]);
    await assert.rejects(log.flush(), sluiceCode("LOG_FENCED"));
    await log.close();
  });
});

/**
 * Runs one scenario of partition_log_full_disk_child.ts on a fresh 256 KiB tmpfs. The child
 * process does the async work, so that however it fails (an assertion, a hang, an unhandled
 * rejection that ends it) this synchronous test always unmounts.
 */
function runOnFullDisk(scenario: string, fsync: string): void {
  const mount = mountTinyTmpfs(256 * 1024);
  if ("reason" in mount) assert.fail(mount.reason);
  let result: ReturnType<typeof spawnSync>;
  try {
    const script = join(import.meta.dirname, "partition_log_full_disk_child.ts");
    const [command, args] = runtimeArgv(script, [scenario, mount.path, fsync]);
    result = spawnSync(command, args, { encoding: "utf8", timeout: 20_000 });
  } finally {
    unmount(mount.path);
  }
  const output = `${result.stdout}${result.stderr}`.trim();
  assert.equal(result.error, undefined, `the child ran: ${String(result.error)}`);
  assert.equal(result.status, 0, output);
}

describe("a real full disk (tmpfs of 256 KiB)", () => {
  const skip = tmpfsUnavailable();
  for (const fsync of ["never", "always"] as const) {
    test(`running out of space gives DISK_FULL and a whole log (fsync ${fsync})`, { skip }, () => {
      runOnFullDisk("fill", fsync);
    });
  }

  for (const fsync of ["never", "always"] as const) {
    test(`the engine fences nothing on a full disk and restarts on one (fsync ${fsync})`, {
      skip,
    }, () => {
      runOnFullDisk("engine", fsync);
    });
  }

  test("an append whose recovery-point checkpoint hits ENOSPC still settles", { skip }, () => {
    runOnFullDisk("checkpoint", "always");
  });
});

describe("disk space", () => {
  const skip = tmpfsUnavailable();

  test("deleting a topic gives its space back at once, mapped segments included", {
    skip,
  }, async () => {
    const mount = mountTinyTmpfs(32 * 1024 * 1024);
    if ("reason" in mount) assert.fail(mount.reason);
    const usedBytes = () => {
      const stats = fs.statfsSync(mount.path);
      return (stats.blocks - stats.bfree) * stats.bsize;
    };
    try {
      const engine = await Engine.open(join(mount.path, "data"), { onWarning: () => {} });
      await engine.createTopic("t", { config: { fsync: "never", segmentBytes: 1024 * 1024 } });
      for (let i = 0; i < 100; i++) await engine.append("t", 0, batch(1, 100_000));
      await engine.partition("t", 0).flush();
      // Read everything, so that the sealed segments are mapped (on Bun).
      let offset = 0;
      while (offset < engine.partition("t", 0).highWatermark) {
        offset = engine.read("t", 0, offset, 1024 * 1024).nextOffset;
      }
      const before = usedBytes();
      await engine.deleteTopic("t");
      const after = usedBytes();
      await engine.close();
      assert.ok(before > 9_000_000, `the topic used ${before} bytes`);
      assert.ok(after < before / 4, `${after} of ${before} bytes still used after the delete`);
    } finally {
      unmount(mount.path);
    }
  });
});

// Last in the file: were the timer's rejections unhandled, a test runner could pin them on
// whichever test runs next.
describe("background fsync failures", () => {
  test("a failing background fsync ({ intervalMs }) raises no unhandled rejection", async () => {
    using dir = tempDir();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => {
      unhandled.push(reason);
    };
    process.on("unhandledRejection", onUnhandled);
    try {
      const io = new FaultyIO();
      io.onSync = () => ({ code: "EIO" });
      const log = await openLog(dir.path, { fsync: { intervalMs: 1 } }, { io });
      await log.append(batch(1));
      await waitFor(() => io.syncCount > 0, "the background fsync");
      await waitFor(async () => {
        const outcome = await log.append(batch(1)).then(
          () => "stored",
          (error: unknown) => (isSluiceError(error, "LOG_FENCED") ? "fenced" : String(error)),
        );
        return outcome === "fenced";
      }, "the failed fsync to fence the log");
      // The timer's sync waiter was in the failed round; give its rejection a few turns of the
      // event loop to surface as unhandled, as it would in a server.
      for (let i = 0; i < 20; i++) await new Promise((resolve) => nextTurn(resolve));
      await log.close();
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
    assert.deepEqual(unhandled.map(String), []);
  });
});

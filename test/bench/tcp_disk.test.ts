// bench:tcp's disk yardstick (bench/tcp/disk.ts): dd with O_DIRECT in a directory, one stream
// then two, and the files gone afterwards.

import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { measureDisk } from "../../bench/tcp/disk.ts";

const MIB = 1024 * 1024;

test("the disk yardstick writes and reads back with O_DIRECT, and leaves no file", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-disk-"));
  try {
    let disk: Awaited<ReturnType<typeof measureDisk>>;
    try {
      disk = await measureDisk(dir, 8 * MIB);
    } catch (error) {
      // A temporary directory on a file system without O_DIRECT: dd's own refusal, named.
      assert.match((error as Error).message, /^dd .*oflag=direct/);
      t.skip(`no O_DIRECT in ${dir}: ${(error as Error).message}`);
      return;
    }
    assert.equal(disk.bytes, 8 * MIB);
    for (const run of [disk.oneStream, disk.twoStreams]) {
      assert.ok(run.writeMBps > 0 && run.readMBps > 0, JSON.stringify(run));
    }
    assert.equal(disk.writeMBps, Math.max(disk.oneStream.writeMBps, disk.twoStreams.writeMBps));
    assert.equal(disk.readMBps, Math.max(disk.oneStream.readMBps, disk.twoStreams.readMBps));
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the disk yardstick rejects with dd's error where it cannot write", async () => {
  const dir = join(tmpdir(), "sluice-disk-missing", String(process.pid));
  await assert.rejects(measureDisk(dir, 2 * MIB), (error: Error) => {
    assert.match(error.message, /^dd .*of=.*sluice-disk-missing.* exited 1: /);
    return true;
  });
});

// The open-files budget: 2,000 partitions under round-robin traffic hold no more segment
// descriptors than `openFilesMax`, counted from /proc/self/fd; closing and reopening a
// descriptor is invisible to writers, readers and fsync; a descriptor in use by a write is never
// closed under it; the default budget is half the process's file limit.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { decodeRecordBatches, Engine, encodeRecordBatch } from "../../engine/mod.ts";
import { FileBudget, openFilesMaxDefault, processFileLimit } from "../../engine/file_budget.ts";
import { tempDir } from "../helpers.ts";

const quiet = { onWarning: () => {} };
const hasProcFd = fs.existsSync("/proc/self/fd");

function openDescriptors(): number {
  return fs.readdirSync("/proc/self/fd").length;
}

function valuesOf(views: Uint8Array[]): string[] {
  const values: string[] = [];
  for (const view of views) {
    for (const batch of decodeRecordBatches(view)) {
      for (const record of batch.records) values.push(new TextDecoder().decode(record.value!));
    }
  }
  return values;
}

function writeAt(fd: number, text: string, position: number): void {
  const bytes = new TextEncoder().encode(text);
  fs.writeSync(fd, bytes, 0, bytes.length, position);
}

const PARTITIONS = 2000;
const BUDGET = 100;
/**
 * Descriptors the engine opens for a moment outside the budget, which a count of
 * /proc/self/fd can catch under load: the recovery checkpoint's temp file (written on a 1 s
 * timer) and a directory opened for its fsync. Segment descriptors alone obey the budget.
 */
const TRANSIENT = 2;
/** Partitions flushed at once, more than BUDGET. */
const FLUSHED = 500;
/** Appends in flight at once: each pins its active segment's descriptor while it is written. */
const WAVE = 50;

describe("open-files budget", { skip: hasProcFd ? false : "needs /proc/self/fd" }, () => {
  test("2,000 partitions with round-robin traffic stay within openFilesMax 100", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, { ...quiet, openFilesMax: BUDGET });
    let reopened: Engine | undefined;
    try {
      // One durable append first, so the engine's fixed machinery (the thread that flushes the
      // file system for the group commit starts on the first flush) is in the baseline and
      // only segment descriptors are counted.
      await engine.createTopic("warm", { config: { fsync: "always" } });
      await engine.append("warm", 0, encodeRecordBatch([{ value: new Uint8Array(1) }]));
      const baseline = openDescriptors();
      await engine.createTopic("wide", { partitions: PARTITIONS, config: { fsync: "always" } });
      assert.ok(
        openDescriptors() - baseline <= BUDGET + TRANSIENT,
        "within the budget after the create",
      );
      let most = 0;
      for (let round = 0; round < 2; round++) {
        for (let first = 0; first < PARTITIONS; first += WAVE) {
          const appends: Promise<unknown>[] = [];
          for (let p = first; p < Math.min(PARTITIONS, first + WAVE); p++) {
            const value = new TextEncoder().encode(`r${round}-p${p}`);
            appends.push(engine.append("wide", p, encodeRecordBatch([{ value }])));
          }
          most = Math.max(most, openDescriptors() - baseline);
          await Promise.all(appends);
          most = Math.max(most, openDescriptors() - baseline);
        }
      }
      assert.ok(
        most <= BUDGET + WAVE + TRANSIENT,
        `${most} descriptors, budget ${BUDGET} + ${WAVE}`,
      );
      assert.ok(
        openDescriptors() - baseline <= BUDGET + TRANSIENT,
        "within the budget once appends settle",
      );
      assert.ok(engine.fileBudget.openCount <= BUDGET);
      for (let p = 0; p < PARTITIONS; p++) {
        const read = engine.read("wide", p, 0, 1 << 20);
        assert.deepEqual(valuesOf(read.views), [`r0-p${p}`, `r1-p${p}`], `partition ${p}`);
      }
      assert.ok(
        openDescriptors() - baseline <= BUDGET + TRANSIENT,
        "within the budget after reading all",
      );
      await engine.close();
      reopened = await Engine.open(dir.path, { ...quiet, openFilesMax: BUDGET });
      assert.ok(
        openDescriptors() - baseline <= BUDGET + TRANSIENT,
        "within the budget after a restart",
      );
      const read = reopened.read("wide", PARTITIONS - 1, 0, 1 << 20);
      assert.deepEqual(valuesOf(read.views), [`r0-p${PARTITIONS - 1}`, `r1-p${PARTITIONS - 1}`]);
    } finally {
      await engine.close();
      await reopened?.close();
    }
  });

  test("sealed segments are read back after their descriptors were closed", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, { ...quiet, openFilesMax: 4 });
    try {
      const config = { segmentBytes: 1024, fsync: "always" as const };
      await engine.createTopic("rolls", { partitions: 3, config });
      const value = new Uint8Array(300);
      for (let i = 0; i < 20; i++) {
        for (let p = 0; p < 3; p++) await engine.append("rolls", p, encodeRecordBatch([{ value }]));
      }
      assert.ok(engine.fileBudget.openCount <= 4, `${engine.fileBudget.openCount} open`);
      for (let p = 0; p < 3; p++) {
        let offset = 0;
        let records = 0;
        for (let reads = 0; reads < 100 && offset < 20; reads++) {
          const read = engine.read("rolls", p, offset, 512);
          records += valuesOf(read.views).length;
          offset = read.nextOffset;
        }
        assert.equal(records, 20, `partition ${p} reads all 20 records`);
      }
      assert.ok(engine.fileBudget.openCount <= 4, `${engine.fileBudget.openCount} open`);
    } finally {
      await engine.close();
    }
  });

  test("a reopened descriptor writes, reads and fsyncs the same file", async () => {
    using dir = tempDir();
    const budget = new FileBudget(4);
    const files = Array.from({ length: 6 }, (_, i) => {
      const path = join(dir.path, `f${i}`);
      return budget.adopt(path, fs.openSync(path, "w+"), "w+");
    });
    try {
      for (const [i, file] of files.entries()) {
        await file.use(async (fd) => {
          writeAt(fd, `a${i}`, 0);
        });
      }
      assert.equal(budget.openCount, 4);
      assert.equal(files[0]!.isOpen, false, "the least recently used was closed");
      // Reopening must not truncate: "w+" files come back as "r+".
      writeAt(files[0]!.fd, "b", 2);
      await files[0]!.use(async (fd) => fs.fdatasyncSync(fd));
      assert.equal(fs.readFileSync(join(dir.path, "f0"), "utf8"), "a0b");
      assert.equal(budget.openCount, 4);
    } finally {
      for (const file of files) file.close();
    }
    assert.equal(budget.openCount, 0);
  });

  test("a descriptor pinned by a write is never closed under it", async () => {
    using dir = tempDir();
    const budget = new FileBudget(4);
    const path = join(dir.path, "pinned");
    const pinned = budget.adopt(path, fs.openSync(path, "w+"));
    const others = Array.from({ length: 8 }, (_, i) => {
      const other = join(dir.path, `o${i}`);
      return budget.adopt(other, fs.openSync(other, "w+"));
    });
    try {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const write = pinned.use(async (fd) => {
        for (const other of others) void other.fd;
        await gate;
        writeAt(fd, "still mine", 0);
      });
      assert.equal(pinned.isOpen, true, "pinned while in use");
      release();
      await write;
      assert.equal(fs.readFileSync(path, "utf8"), "still mine");
      void others[0]!.fd;
      assert.ok(budget.openCount <= 4, "back within the budget once unpinned and others used");
    } finally {
      pinned.close();
      for (const other of others) other.close();
    }
  });

  test("with more files pinned than the budget, a descriptor handed out stays open", async () => {
    using dir = tempDir();
    const budget = new FileBudget(4);
    const files = Array.from({ length: 7 }, (_, i) => {
      const path = join(dir.path, `p${i}`);
      return budget.adopt(path, fs.openSync(path, "w+"));
    });
    try {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const pinned = files.slice(0, 6).map((file, i) =>
        file.use(async (fd) => {
          await gate;
          writeAt(fd, `pinned ${i}`, 0);
        }),
      );
      // Six pinned, budget four: the seventh must still get a descriptor that stays open.
      writeAt(files[6]!.fd, "seventh", 0);
      await files[6]!.use(async (fd) => fs.fdatasyncSync(fd));
      release();
      await Promise.all(pinned);
      for (let i = 0; i < 6; i++) {
        assert.equal(fs.readFileSync(join(dir.path, `p${i}`), "utf8"), `pinned ${i}`);
      }
      assert.equal(fs.readFileSync(join(dir.path, "p6"), "utf8"), "seventh");
    } finally {
      for (const file of files) file.close();
    }
  });

  test("500 partitions flushed at once, all pinned past the budget, stay usable", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, { ...quiet, openFilesMax: BUDGET });
    try {
      await engine.createTopic("wide", { partitions: FLUSHED, config: { fsync: "never" } });
      const batch = encodeRecordBatch([{ value: new TextEncoder().encode("x") }]);
      for (let p = 0; p < FLUSHED; p++) await engine.append("wide", p, batch);
      // Every partition's fdatasync in flight at once: 500 descriptors pinned, budget 100.
      await Promise.all(
        Array.from({ length: FLUSHED }, (_, p) => engine.partition("wide", p).flush()),
      );
      assert.ok(engine.fileBudget.openCount <= BUDGET, "back within the budget afterwards");
      for (let p = 0; p < FLUSHED; p++) {
        assert.deepEqual(valuesOf(engine.read("wide", p, 0, 1 << 20).views), ["x"]);
      }
    } finally {
      await engine.close();
    }
  });

  test("the default budget is half of ulimit -n", () => {
    const shell = spawnSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" });
    const limit = shell.stdout.trim();
    if (shell.status !== 0 || limit === "unlimited") return;
    assert.equal(processFileLimit(), Number(limit));
    assert.equal(openFilesMaxDefault(), Math.floor(Number(limit) / 2));
    assert.throws(() => new FileBudget(2), RangeError);
  });
});

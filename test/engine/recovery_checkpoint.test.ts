// The engine's one recovery-point checkpoint (engine/recovery_checkpoint.ts): one file write
// for every partition, a crash between its write and its rename, a damaged file, a stale
// entry, and the migration from per-partition `recovery-point` files.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Engine, encodeRecordBatch } from "../../engine/mod.ts";
import { type FileIO, realFileIO } from "../../engine/io.ts";
import { RECOVERY_POINT_FILE } from "../../engine/log_open.ts";
import {
  CHECKPOINT_FILE,
  decodeCheckpoint,
  encodeCheckpoint,
} from "../../engine/recovery_checkpoint.ts";
import { mulberry32, runtimeArgv, tempDir, waitFor } from "../helpers.ts";

function batch(bytes = 10): Uint8Array {
  return encodeRecordBatch([{ value: new Uint8Array(bytes).fill(7) }], { timestamp: 1 });
}

/** A FileIO that counts whole-file writes by path. */
class CountingIO implements FileIO {
  fileWrites: string[] = [];
  writeAll = realFileIO.writeAll;
  datasync = realFileIO.datasync;
  readAt = realFileIO.readAt;
  truncate = realFileIO.truncate;
  mapFile = realFileIO.mapFile;
  writeFileAt = realFileIO.writeFileAt;
  syncDirectory = realFileIO.syncDirectory;
  writeFileAtomic = realFileIO.writeFileAtomic;
  writeFile(path: string, bytes: Uint8Array | string): void {
    this.fileWrites.push(path);
    realFileIO.writeFile(path, bytes);
  }
  syncFile = realFileIO.syncFile;
}

const checkpointPath = (data: string) => join(data, "__meta", CHECKPOINT_FILE);

function readCheckpoint(data: string) {
  const decoded = decodeCheckpoint(new Uint8Array(fs.readFileSync(checkpointPath(data))));
  assert.ok(typeof decoded !== "string", `the checkpoint decodes: ${String(decoded)}`);
  return decoded;
}

const CHILD = join(import.meta.dirname, "recovery_checkpoint_child.ts");

/** Runs the child broker until it prints "ready", then SIGKILLs it; returns what it printed. */
async function runUntilKilled(
  dir: string,
  options: { batches: number; batchBytes?: number; segmentBytes?: number; hold?: boolean },
): Promise<{ recoveryPoint: number; logEndOffset: number }> {
  const args = [
    dir,
    String(options.batches),
    String(options.batchBytes ?? 10),
    String(options.segmentBytes ?? 1024 * 1024),
    options.hold === true ? "hold" : "none",
  ];
  const [command, argv] = runtimeArgv(CHILD, args);
  const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let ended: string | undefined;
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (text: string) => {
    stdout += text;
    if (stdout.includes("\n")) child.kill("SIGKILL");
  });
  child.stderr.on("data", (text: string) => {
    stderr += text;
  });
  child.on("close", (code, signal) => {
    ended = signal ?? `exit code ${code}`;
  });
  try {
    await waitFor(() => ended !== undefined, "the child to be ready and killed", 60_000);
  } finally {
    if (ended === undefined) child.kill("SIGKILL");
  }
  const [word, recoveryPoint, logEndOffset] = stdout.trim().split(" ");
  assert.equal(word, "ready", `the child said "${stdout}" and ended ${ended}: ${stderr}`);
  assert.equal(ended, "SIGKILL");
  return { recoveryPoint: Number(recoveryPoint), logEndOffset: Number(logEndOffset) };
}

describe("engine recovery checkpoint", () => {
  test("1,000 partitions are checkpointed with one file write", async () => {
    using dir = tempDir();
    const io = new CountingIO();
    const engine = await Engine.open(dir.path, { io, onWarning: () => {} });
    try {
      await engine.createTopic("t", { partitions: 1000, config: { fsync: "always" } });
      await Promise.all(Array.from({ length: 1000 }, (_, p) => engine.append("t", p, batch())));
      io.fileWrites.length = 0;
      const writesBefore = engine.checkpoint.writes;
      await engine.checkpoint.flush();
      // The engine's 1 s timer may write one more checkpoint meanwhile on a loaded machine;
      // every file write is still the one checkpoint file, never a file per partition. The
      // two counts are bounded apart, not matched: a timer write in flight when they were
      // read had made its file write before (writeFile comes first) and counts itself after.
      const written = engine.checkpoint.writes - writesBefore;
      assert.ok(written >= 1 && written <= 2, `${written} checkpoints written`);
      const files = io.fileWrites.map((path) => path.slice(dir.path.length + 1));
      assert.ok(files.length >= 1 && files.length <= 2, `${files.length} file writes`);
      assert.deepEqual(
        files,
        Array.from({ length: files.length }, () => `__meta/${CHECKPOINT_FILE}.tmp`),
        "one file write for every partition",
      );
      const entries = readCheckpoint(dir.path);
      for (let p = 0; p < 1000; p++) {
        assert.equal(entries.get(`t-${p}`)?.recoveryPoint, 1, `t-${p} is durable up to 1`);
        assert.ok(!fs.existsSync(join(dir.path, `t-${p}`, RECOVERY_POINT_FILE)), `t-${p}`);
      }
    } finally {
      await engine.close();
    }
  });

  test("the checkpoint is written on its own once recovery points move", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, { onWarning: () => {} });
    try {
      await engine.createTopic("t", { partitions: 2, config: { fsync: "always" } });
      await engine.append("t", 1, batch());
      await engine.append("t", 1, batch());
      await waitFor(
        () =>
          fs.existsSync(checkpointPath(dir.path)) &&
          readCheckpoint(dir.path).get("t-1")?.recoveryPoint === 2,
        "the interval's checkpoint",
      );
    } finally {
      await engine.close();
    }
  });

  test("a crash between the checkpoint's write and its rename keeps the previous one", async () => {
    using dir = tempDir();
    const ready = await runUntilKilled(dir.path, { batches: 10, hold: true });
    assert.deepEqual(ready, { recoveryPoint: 10, logEndOffset: 10 }, "all 10 were durable");
    assert.ok(fs.existsSync(`${checkpointPath(dir.path)}.tmp`), "the kill left the temp file");
    assert.equal(readCheckpoint(dir.path).get("t-0")?.recoveryPoint, 5, "the previous one");
    const reopened = await Engine.open(dir.path, { onWarning: () => {} });
    try {
      assert.ok(!fs.existsSync(`${checkpointPath(dir.path)}.tmp`), "the temp file is removed");
      const log = reopened.partition("t", 0);
      assert.equal(log.recoveryPoint, 5, "recovery starts at the previous checkpoint");
      assert.equal(log.logEndOffset, 10, "every acknowledged batch is there");
      assert.equal(log.read(0, 1 << 20).nextOffset, 10);
    } finally {
      await reopened.close();
    }
  });

  test("a damaged checkpoint is reported and recovery scans every segment", async () => {
    for (const good of [true, false]) {
      using dir = tempDir();
      const ready = await runUntilKilled(dir.path, {
        batches: 40,
        batchBytes: 1000,
        segmentBytes: 16 * 1024,
      });
      assert.ok(ready.recoveryPoint === 40, `every batch durable: ${JSON.stringify(ready)}`);
      // Damage in the first batch of the first sealed segment: only a full scan finds it, as
      // its index lets an open with a good checkpoint scan past the last entry only.
      const first = join(dir.path, "t-0", "00000000000000000000.log");
      const bytes = fs.readFileSync(first);
      bytes[200] = bytes[200]! ^ 0xff;
      fs.writeFileSync(first, bytes);
      if (!good) {
        const checkpoint = fs.readFileSync(checkpointPath(dir.path));
        checkpoint[checkpoint.length - 1] = checkpoint[checkpoint.length - 1]! ^ 0x01;
        fs.writeFileSync(checkpointPath(dir.path), checkpoint);
      }
      const warnings: string[] = [];
      const opened = await Engine.open(dir.path, { onWarning: (m) => warnings.push(m) });
      try {
        const log = opened.partition("t", 0);
        const reported = warnings.some((m) => m.includes(CHECKPOINT_FILE) && m.includes("damaged"));
        assert.equal(reported, !good, `the damaged checkpoint is reported (${warnings})`);
        assert.equal(log.corruptions.length > 0, !good, "only a full scan finds the damage");
        assert.equal(log.logEndOffset, 40, "every batch is still there");
      } finally {
        await opened.close();
      }
    }
  });

  test("per-partition recovery-point files migrate into the engine checkpoint", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, { onWarning: () => {} });
    await engine.createTopic("t", { partitions: 2, config: { fsync: "always" } });
    for (let i = 0; i < 6; i++) await engine.append("t", i % 2, batch());
    await engine.close();
    // The layout of a data directory from before the engine checkpoint, after a crash.
    fs.rmSync(checkpointPath(dir.path));
    for (const p of [0, 1]) {
      fs.rmSync(join(dir.path, `t-${p}`, ".clean-shutdown"));
      fs.writeFileSync(join(dir.path, `t-${p}`, RECOVERY_POINT_FILE), `${p + 1}\n`);
    }
    const reopened = await Engine.open(dir.path, { onWarning: () => {} });
    try {
      for (const p of [0, 1]) {
        const log = reopened.partition("t", p);
        assert.equal(log.recoveryPoint, p + 1, `t-${p} starts from its own file`);
        assert.equal(log.logEndOffset, 3);
        assert.ok(!fs.existsSync(join(dir.path, `t-${p}`, RECOVERY_POINT_FILE)), "file removed");
        assert.equal(readCheckpoint(dir.path).get(`t-${p}`)?.recoveryPoint, p + 1);
      }
    } finally {
      await reopened.close();
    }
  });

  test("an entry for another directory of the same name is not believed", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, { onWarning: () => {} });
    await engine.createTopic("t", { partitions: 1, config: { fsync: "always" } });
    for (let i = 0; i < 3; i++) await engine.append("t", 0, batch());
    await engine.close();
    fs.rmSync(join(dir.path, "t-0", ".clean-shutdown"));
    const ino = fs.statSync(join(dir.path, "t-0")).ino;
    const stale = new Map([["t-0", { recoveryPoint: 3, ino: ino + 1 }]]);
    fs.writeFileSync(checkpointPath(dir.path), encodeCheckpoint(stale));
    const reopened = await Engine.open(dir.path, { onWarning: () => {} });
    try {
      assert.equal(reopened.partition("t", 0).recoveryPoint, 0, "recovery scans everything");
      assert.equal(reopened.partition("t", 0).logEndOffset, 3);
    } finally {
      await reopened.close();
    }
  });

  test("a deleted topic's partitions leave the checkpoint", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, { onWarning: () => {} });
    try {
      await engine.createTopic("t", { partitions: 3, config: { fsync: "always" } });
      await engine.append("t", 0, batch());
      await engine.checkpoint.flush();
      assert.equal(readCheckpoint(dir.path).size, 3);
      await engine.deleteTopic("t");
      await engine.checkpoint.flush();
      assert.equal(readCheckpoint(dir.path).size, 0);
    } finally {
      await engine.close();
    }
  });

  test("mutated checkpoint bytes decode to entries or a reason, never a throw", () => {
    const entries = new Map<string, { recoveryPoint: number; ino: number }>();
    for (let p = 0; p < 20; p++) entries.set(`topic-${p}`, { recoveryPoint: p * 1000, ino: p });
    const good = encodeCheckpoint(entries);
    assert.deepEqual(decodeCheckpoint(good), entries, "a round trip keeps every entry");
    const random = mulberry32(16);
    for (let round = 0; round < 2000; round++) {
      const bytes = good.slice(0, Math.floor(random() * (good.length + 1)));
      const flips = Math.floor(random() * 4);
      for (let i = 0; i < flips && bytes.length > 0; i++) {
        const at = Math.floor(random() * bytes.length);
        bytes[at] = bytes[at]! ^ (1 + Math.floor(random() * 255));
      }
      const decoded = decodeCheckpoint(bytes);
      if (typeof decoded !== "string") {
        for (const entry of decoded.values()) {
          assert.ok(Number.isSafeInteger(entry.recoveryPoint) && entry.recoveryPoint >= 0);
        }
      }
    }
  });
});

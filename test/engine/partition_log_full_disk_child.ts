// Child process of partition_log_faults.test.ts: runs one scenario against a real, tiny tmpfs
// that the parent mounted (and unmounts, whatever happens here).
//
//   partition_log_full_disk_child.ts fill <mount> <fsync>
//     Appends until the disk is full: the failing append gets DISK_FULL, the log and its files
//     hold exactly the acknowledged batches, appends work again once space is freed, and a
//     reopen finds exactly what was acknowledged.
//   partition_log_full_disk_child.ts engine <mount> <fsync>
//     The whole engine on a disk that fills up while segments roll and offsets are committed:
//     the failing appends and commits get DISK_FULL, nothing is fenced, both work again once
//     space is freed, and the engine reopens on a disk that is full again.
//   partition_log_full_disk_child.ts checkpoint <mount> always
//     The log's last page still has room for a small batch but a new file has none, so the
//     recovery-point checkpoint of the fsync round fails: the append must still settle.
//
// Exits 0 when the scenario holds; otherwise prints why and exits non-zero.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { isSluiceError, type SluiceError } from "../../record/mod.ts";
import type { FsyncPolicy } from "../../engine/log_config.ts";
import { Engine } from "../../engine/mod.ts";
import { PartitionLog } from "../../engine/partition_log.ts";
import { waitFor } from "../helpers.ts";
import {
  assertConsistent,
  assertReopensWith,
  readAll,
  simpleBatch,
} from "./partition_log_helpers.ts";

process.on("unhandledRejection", (reason) => {
  console.error(`unhandled rejection: ${reason instanceof Error ? reason.stack : reason}`);
  process.exit(3);
});

let nextTag = 0;

function batch(valueBytes: number): Uint8Array {
  return simpleBatch(1, { firstTag: nextTag++, valueBytes });
}

/** Fills the rest of the file system with `path`, down to the last byte. */
function fillUp(path: string): void {
  const fd = fs.openSync(path, "w");
  try {
    for (const chunkBytes of [4096, 1]) {
      const chunk = new Uint8Array(chunkBytes);
      try {
        for (;;) fs.writeSync(fd, chunk);
      } catch (error) {
        assert.equal((error as NodeJS.ErrnoException).code, "ENOSPC");
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

async function fill(root: string, fsync: FsyncPolicy): Promise<void> {
  const dir = join(root, "topic-0");
  const filler = join(root, "filler");
  fs.writeFileSync(filler, new Uint8Array(64 * 1024));
  const log = await PartitionLog.open(dir, { fsync }, { onWarning: () => {} });
  let error: SluiceError | undefined;
  for (let i = 0; i < 200 && error === undefined; i++) {
    await log.append(batch(3000)).catch((e: unknown) => {
      assert.ok(isSluiceError(e), String(e));
      error = e;
    });
  }
  assert.ok(error !== undefined, "the disk filled up");
  assert.equal(error.code, "DISK_FULL", error.message);
  assert.equal(error.retriable, true);
  const acked = readAll(log);
  assert.ok(acked.length > 10, `${acked.length} batches fitted`);
  assertConsistent(log, dir, acked);
  fs.rmSync(filler);
  const result = await log.append(batch(3000));
  assert.equal(result.baseOffset, acked.length);
  const all = readAll(log);
  assertConsistent(log, dir, all);
  await log.close();
  await assertReopensWith(dir, { fsync }, all);
}

async function checkpoint(root: string): Promise<void> {
  const dir = join(root, "topic-0");
  // Each call is 2 s later, so every fsync round is due to checkpoint the recovery point.
  let nowMs = 0;
  const log = await PartitionLog.open(
    dir,
    { fsync: "always" },
    { now: () => (nowMs += 2000), onWarning: () => {} },
  );
  await log.append(batch(10));
  fillUp(join(root, "filler"));
  let outcome = "pending";
  log.append(batch(10)).then(
    () => {
      outcome = "acknowledged";
    },
    (error: unknown) => {
      outcome = isSluiceError(error) ? error.code : String(error);
    },
  );
  await waitFor(() => outcome !== "pending", "the append to settle", 5000);
  assert.ok(["acknowledged", "DISK_FULL", "LOG_FENCED"].includes(outcome), outcome);
  fs.rmSync(join(root, "filler"));
  await log.close();
}

async function engineOnFullDisk(root: string, fsync: FsyncPolicy): Promise<void> {
  const dir = join(root, "data");
  const filler = join(root, "filler");
  fs.writeFileSync(filler, new Uint8Array(64 * 1024));
  const quiet = { onWarning: () => {} };
  let engine = await Engine.open(dir, quiet);
  // Small segments: the disk fills up across rolls, sealing and index writes.
  await engine.createTopic("t", { partitions: 1, config: { fsync, segmentBytes: 16 * 1024 } });
  let full: SluiceError | undefined;
  let acked = 0;
  for (let i = 0; i < 400 && full === undefined; i++) {
    await engine.append("t", 0, batch(2000)).then(
      () => acked++,
      (e: unknown) => {
        assert.ok(isSluiceError(e), String(e));
        full = e;
      },
    );
  }
  assert.ok(full !== undefined, "the disk filled up");
  assert.equal(full.code, "DISK_FULL", full.message);
  // A full disk fences nothing: later calls fail with DISK_FULL or succeed, never LOG_FENCED.
  const small = await engine.append("t", 0, batch(10)).then(
    () => "ok",
    (e: unknown) => (isSluiceError(e) ? e.code : String(e)),
  );
  assert.ok(["ok", "DISK_FULL"].includes(small), `a small append: ${small}`);
  if (small === "ok") acked++;
  const commit = await engine.offsets.commit("g", [{ topic: "t", partition: 0, offset: 1 }]).then(
    () => "ok",
    (e: unknown) => (isSluiceError(e) ? e.code : String(e)),
  );
  assert.ok(["ok", "DISK_FULL"].includes(commit), `a commit on a full disk: ${commit}`);
  fs.rmSync(filler);
  await engine.append("t", 0, batch(2000));
  acked++;
  await engine.offsets.commit("g", [{ topic: "t", partition: 0, offset: 2 }]);
  await engine.close();
  fillUp(filler);
  engine = await Engine.open(dir, quiet);
  try {
    assert.equal(engine.partition("t", 0).logEndOffset, acked, "every acknowledged append");
    assert.equal(engine.offsets.fetch("g", "t", 0)?.offset, 2);
  } finally {
    await engine.close();
  }
}

const [scenario, root, fsyncName] = process.argv.slice(2);
assert.ok(root !== undefined && fsyncName !== undefined, "usage: <scenario> <mount> <fsync>");
const fsync = fsyncName as FsyncPolicy;
if (scenario === "fill") await fill(root, fsync);
else if (scenario === "checkpoint") await checkpoint(root);
else if (scenario === "engine") await engineOnFullDisk(root, fsync);
else throw new RangeError(`unknown scenario ${scenario}`);
console.log(`${scenario} (fsync ${fsyncName}): ok`);

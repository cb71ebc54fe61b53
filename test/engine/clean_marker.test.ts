// The clean-shutdown marker's removal before a log's first append: durable before anything is
// written, but fsynced on the thread pool rather than on the event loop (one such fsync per
// partition blocked a broker for seconds as records first spread over 1,000 partitions).

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { type FileIO, realFileIO } from "../../engine/io.ts";
import { CLEAN_SHUTDOWN_FILE } from "../../engine/log_open.ts";
import { PartitionLog } from "../../engine/partition_log.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { simpleBatch } from "./partition_log_helpers.ts";

/** realFileIO, with directory fsyncs counted and the thread-pool one held until released. */
function heldIO() {
  const state = {
    eventLoopSyncs: 0,
    asyncSyncs: 0,
    writes: 0,
    release: () => {},
    fail: undefined as Error | undefined,
  };
  const held = new Promise<void>((resolve) => {
    state.release = resolve;
  });
  const io: FileIO = {
    ...realFileIO,
    syncDirectory(path) {
      state.eventLoopSyncs++;
      realFileIO.syncDirectory(path);
    },
    async syncDirectoryAsync(path) {
      state.asyncSyncs++;
      await held;
      if (state.fail !== undefined) throw state.fail;
      await realFileIO.syncDirectoryAsync!(path);
    },
    writeAll(fd, buffers, position) {
      state.writes++;
      return realFileIO.writeAll(fd, buffers, position);
    },
  };
  return { io, state };
}

async function cleanLog(dir: string): Promise<void> {
  const log = await PartitionLog.open(dir, { fsync: "always" });
  await log.close();
  assert.ok(fs.existsSync(join(dir, CLEAN_SHUTDOWN_FILE)), "a new log is marked clean");
}

describe("clean-shutdown marker", () => {
  test("the first append waits for the marker's removal to be durable before writing", async () => {
    using dir = tempDir();
    await cleanLog(dir.path);
    const { io, state } = heldIO();
    const log = await PartitionLog.open(dir.path, { fsync: "always" }, { io });
    try {
      const appended = log.append(simpleBatch(1));
      assert.ok(!fs.existsSync(join(dir.path, CLEAN_SHUTDOWN_FILE)), "the marker is gone");
      assert.equal(state.eventLoopSyncs, 0, "no directory fsync on the event loop");
      await waitFor(() => state.asyncSyncs === 1, "the directory fsync on the thread pool");
      assert.equal(state.writes, 0, "nothing is written while the removal is not durable");
      state.release();
      assert.equal((await appended).baseOffset, 0);
      assert.ok(state.writes >= 1, "written once the removal was durable");
    } finally {
      state.release();
      await log.close();
    }
  });

  test("a failed directory fsync of the marker's removal fences the log", async () => {
    using dir = tempDir();
    await cleanLog(dir.path);
    const { io, state } = heldIO();
    state.fail = Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" });
    const log = await PartitionLog.open(dir.path, { fsync: "always" }, { io });
    try {
      const appended = log.append(simpleBatch(1));
      state.release();
      await assert.rejects(appended, (error: { code?: string }) => error.code === "LOG_FENCED");
      assert.equal(state.writes, 0, "nothing was written");
      assert.throws(() => log.appendChecked(simpleBatch(1)), { code: "LOG_FENCED" });
    } finally {
      await log.close();
    }
    const reopened = await PartitionLog.open(dir.path, { fsync: "always" });
    try {
      assert.equal(reopened.logEndOffset, 0, "the refused append left nothing");
    } finally {
      await reopened.close();
    }
  });
});

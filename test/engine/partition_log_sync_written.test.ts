// PartitionLog.syncWritten: an fdatasync of what is written, beside the flusher. Under fsync
// "never" (the delay tiers' logs) appends stay readable at once while it runs, and everything
// readable when it was called survives a power loss once it resolves.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type FileIO, realFileIO } from "../../engine/mod.ts";
import { PartitionLog } from "../../engine/partition_log.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { readAll, simpleBatch } from "./partition_log_helpers.ts";
import { PowerLossIO } from "./power_loss_io.ts";

const NEVER = { fsync: "never" as const };

describe("PartitionLog.syncWritten", () => {
  test("what was readable when called survives a power loss; later appends need not", async () => {
    using dir = tempDir();
    const io = new PowerLossIO();
    const log = await PartitionLog.open(dir.path, NEVER, { io, onWarning: () => {} });
    await log.append(simpleBatch(2, { firstTag: 0 }));
    await log.append(simpleBatch(3, { firstTag: 2 }));
    await log.syncWritten();
    await log.append(simpleBatch(4, { firstTag: 5 }));
    assert.equal(log.highWatermark, 9, "every append is readable under fsync never");
    io.crashAt = io.operations; // the power goes out now
    await log.close().catch(() => {});
    io.powerLoss("synced-only", () => 0.5);
    const reopened = await PartitionLog.open(dir.path, NEVER, { onWarning: () => {} });
    try {
      assert.deepEqual(reopened.corruptions, []);
      assert.equal(reopened.highWatermark, 5, "the synced records, and none written after");
      assert.equal(readAll(reopened).length, 5);
    } finally {
      await reopened.close();
    }
  });

  test("appends stay readable at once while its fdatasync is held (flush holds them)", async () => {
    using dir = tempDir();
    const held: { holding: boolean; waiting: (() => void)[] } = { holding: true, waiting: [] };
    const releaseSync = () => {
      held.holding = false;
      for (const resolve of held.waiting.splice(0)) resolve();
    };
    const io: FileIO = {
      ...realFileIO,
      datasync: async (fd: number) => {
        if (held.holding) await new Promise<void>((resolve) => held.waiting.push(resolve));
        return realFileIO.datasync(fd);
      },
    };
    const log = await PartitionLog.open(dir.path, NEVER, { io, onWarning: () => {} });
    try {
      await log.append(simpleBatch(1));
      let synced = false;
      const syncing = log.syncWritten().then(() => {
        synced = true;
      });
      await waitFor(() => held.waiting.length > 0, "the fdatasync started and is held");
      await log.append(simpleBatch(2, { firstTag: 1 }));
      assert.equal(log.highWatermark, 3, "appended while the fdatasync is held, and readable");
      assert.equal(readAll(log).length, 3);
      assert.equal(synced, false, "syncWritten waits for its fdatasync");
      releaseSync();
      await syncing;
      assert.equal(synced, true);
    } finally {
      releaseSync();
      await log.close();
    }
  });
});

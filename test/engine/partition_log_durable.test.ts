// PartitionLog.appendDurable: an append acknowledged once fsynced, whatever the log's fsync
// policy, in the one flush round that writes it (a produce with acks=all, which before made
// an append, then a flush taking a round of its own).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type FileIO, realFileIO } from "../../engine/mod.ts";
import { PartitionLog } from "../../engine/partition_log.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { readAll, simpleBatch } from "./partition_log_helpers.ts";
import { PowerLossIO } from "./power_loss_io.ts";

/** A policy that never syncs by itself within a test: only appendDurable asks for a sync. */
const INTERVAL = { fsync: { intervalMs: 600_000 } };

/** realFileIO with every write and fdatasync counted, and fdatasyncs held until released. */
function countingIO() {
  const counts = { writes: 0, datasyncs: 0, held: [] as (() => void)[], holding: true };
  const io: FileIO = {
    ...realFileIO,
    writeAll: (fd, buffers, position) => {
      counts.writes++;
      return realFileIO.writeAll(fd, buffers, position);
    },
    datasync: async (fd) => {
      counts.datasyncs++;
      if (counts.holding) await new Promise<void>((resolve) => counts.held.push(resolve));
      return realFileIO.datasync(fd);
    },
  };
  const release = () => {
    counts.holding = false;
    for (const resolve of counts.held.splice(0)) resolve();
  };
  return { io, counts, release };
}

describe("PartitionLog.appendDurable", () => {
  test("what it acknowledged survives a power loss; a plain append's need not", async () => {
    using dir = tempDir();
    const io = new PowerLossIO();
    const log = await PartitionLog.open(dir.path, INTERVAL, { io, onWarning: () => {} });
    await log.appendDurable(simpleBatch(2, { firstTag: 0 }));
    await log.appendChecked(simpleBatch(3, { firstTag: 2 }));
    io.crashAt = io.operations; // the power goes out now
    await log.close().catch(() => {});
    io.powerLoss("synced-only", () => 0.5);
    const reopened = await PartitionLog.open(dir.path, INTERVAL, { onWarning: () => {} });
    try {
      assert.deepEqual(reopened.corruptions, []);
      assert.equal(reopened.highWatermark, 2, "the durable append's records, not the later ones");
      assert.equal(readAll(reopened).length, 2);
    } finally {
      await reopened.close();
    }
  });

  test("resolves only after its fdatasync, which the round that wrote it made", async () => {
    using dir = tempDir();
    const { io, counts, release } = countingIO();
    const log = await PartitionLog.open(dir.path, INTERVAL, { io, onWarning: () => {} });
    try {
      let acknowledged = false;
      let told = 0;
      log.onData(() => told++);
      const appended = log.appendDurable(simpleBatch(3)).then((result) => {
        acknowledged = true;
        return result;
      });
      await waitFor(() => counts.held.length === 1, "the round's fdatasync started");
      assert.equal(counts.writes, 1, "one write before the fdatasync");
      assert.equal(acknowledged, false, "not acknowledged while its fdatasync is held");
      // Under an interval policy readers do not wait for the fdatasync; acknowledgements do.
      assert.equal(log.highWatermark, 3, "readable while its fdatasync is held");
      assert.equal(readAll(log).length, 3);
      assert.equal(told, 1, "readers told of the data once it was written");
      release();
      const result = await appended;
      assert.equal(result.baseOffset, 0);
      assert.equal(result.lastOffset, 2);
      assert.equal(counts.writes, 1, "no second round wrote");
      assert.equal(counts.datasyncs, 1, "one fdatasync for the append");
      assert.equal(log.recoveryPoint, 3, "the recovery point moved past the synced records");
      assert.equal(told, 1, "readers are not told of the same data again after its sync");
    } finally {
      release();
      await log.close();
    }
  });

  test("a plain append queued beside it is synced in the same round", async () => {
    using dir = tempDir();
    const { io, counts, release } = countingIO();
    release();
    const log = await PartitionLog.open(dir.path, INTERVAL, { io, onWarning: () => {} });
    try {
      await Promise.all([
        log.appendChecked(simpleBatch(1)),
        log.appendDurable(simpleBatch(2, { firstTag: 1 })),
      ]);
      assert.equal(counts.datasyncs, 1);
      assert.equal(log.recoveryPoint, 3);
      // Without a durable append, nothing asks the next round for a sync.
      await log.appendChecked(simpleBatch(1, { firstTag: 3 }));
      assert.equal(counts.datasyncs, 1, "a plain append under an interval policy is not synced");
      assert.equal(log.recoveryPoint, 3);
    } finally {
      await log.close();
    }
  });

  test("a failed fdatasync rejects it and fences the log", async () => {
    using dir = tempDir();
    const io: FileIO = {
      ...realFileIO,
      datasync: () => Promise.reject(Object.assign(new Error("EIO: i/o error"), { code: "EIO" })),
    };
    const log = await PartitionLog.open(dir.path, INTERVAL, { io, onWarning: () => {} });
    try {
      await assert.rejects(log.appendDurable(simpleBatch(1)), { code: "LOG_FENCED" });
      assert.throws(() => log.appendDurable(simpleBatch(1, { firstTag: 1 })), {
        code: "LOG_FENCED",
      });
    } finally {
      await log.close().catch(() => {});
    }
  });
});

// With fsync on an interval, a log fsyncs on its timer only when something was appended since
// its last fsync: an idle partition costs no fdatasync (10,000 idle partitions used to cost
// 10,000 thread-pool fsyncs a second). A log that does take appends keeps being fsynced.

import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { PartitionLog } from "../../engine/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { FaultyIO, simpleBatch } from "./partition_log_helpers.ts";

const INTERVAL_MS = 5;

describe("interval fsync", () => {
  test("an idle log is not fsynced on its timer; a busy one is", async () => {
    using dir = tempDir();
    const idleIO = new FaultyIO();
    const busyIO = new FaultyIO();
    const config = { fsync: { intervalMs: INTERVAL_MS } };
    const idle = await PartitionLog.open(join(dir.path, "idle"), config, {
      io: idleIO,
      onWarning: () => {},
    });
    const busy = await PartitionLog.open(join(dir.path, "busy"), config, {
      io: busyIO,
      onWarning: () => {},
    });
    await idle.append(simpleBatch(2));
    await waitFor(() => idle.recoveryPoint === 2, "the idle log's one append fsynced");
    const idleSyncs = idleIO.syncCount;
    // The busy log appends and is fsynced over many of its intervals, which the idle log's
    // timer also runs through.
    for (let round = 0; round < 20; round++) {
      const before = busyIO.syncCount;
      await busy.append(simpleBatch(1));
      await waitFor(() => busyIO.syncCount > before, "the busy log's append fsynced");
    }
    assert.equal(idleIO.syncCount, idleSyncs, "no fsync of the idle log after its last append");
    await idle.close();
    await busy.close();
  });
});

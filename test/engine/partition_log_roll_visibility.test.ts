// The high watermark across a segment roll: an append that rolls the log starts a new segment
// at the end of what was appended, while the rolled segment's last write may still be in
// flight. Until it is done, every offset below the high watermark must be readable: queue
// reads assert it, and a consumer must never be told of records it cannot fetch.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type FileIO, realFileIO } from "../../engine/mod.ts";
import { PartitionLog } from "../../engine/partition_log.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { simpleBatch } from "./partition_log_helpers.ts";

/** A FileIO whose writes wait, once `hold` is called, until `release` is called. */
function heldWrites() {
  const waiting: (() => void)[] = [];
  let holding = false;
  const io: FileIO = {
    ...realFileIO,
    writeAll: async (fd, buffers, position) => {
      if (holding) await new Promise<void>((resolve) => waiting.push(resolve));
      return realFileIO.writeAll(fd, buffers, position);
    },
  };
  const release = () => {
    holding = false;
    for (const resolve of waiting.splice(0)) resolve();
  };
  const hold = () => {
    holding = true;
  };
  return { io, waiting, hold, release };
}

function assertReadableBelowWatermark(log: PartitionLog): void {
  for (let offset = log.logStartOffset; offset < log.highWatermark; offset++) {
    const read = log.read(offset, 1);
    assert.ok(read.views.length > 0, `offset ${offset} < high watermark ${log.highWatermark}`);
  }
}

describe("the high watermark across a segment roll", () => {
  test("stays at the rolled segment's visible end until its write is done", async () => {
    using dir = tempDir();
    const held = heldWrites();
    const config = { fsync: "never" as const, segmentBytes: 64 * 1024 };
    const log = await PartitionLog.open(dir.path, config, { io: held.io, onWarning: () => {} });
    try {
      await log.append(simpleBatch(1, { valueBytes: 100 }));
      assert.equal(log.highWatermark, 1);
      held.hold();
      const first = log.append(simpleBatch(1, { firstTag: 1, valueBytes: 40 * 1024 }));
      await waitFor(() => held.waiting.length > 0, "the first big write is in flight");
      // Rolls: the active segment holds 40 KiB appended, and 40 KiB more does not fit.
      const second = log.append(simpleBatch(1, { firstTag: 2, valueBytes: 40 * 1024 }));
      assert.equal(log.highWatermark, 1, "nothing past the written records is announced");
      assertReadableBelowWatermark(log);
      held.release();
      await Promise.all([first, second]);
      assert.equal(log.highWatermark, 3);
      assertReadableBelowWatermark(log);
    } finally {
      held.release();
      await log.close();
    }
  });
});

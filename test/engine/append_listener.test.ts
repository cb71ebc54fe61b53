// PartitionLog.appendTo: the append whose outcome is told to a listener instead of a promise
// (the broker's acks 0/1 produce path). It must keep every promise of appendChecked: told
// once, never during the call, only after the round wrote (and published) the batch, with the
// same offsets; refusals before anything is written throw at once; a failed write reaches the
// listener as the same error an awaited append gets.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { AppendResult } from "../../engine/mod.ts";
import { PartitionLog } from "../../engine/partition_log.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { FaultyIO, readAll, simpleBatch, sluiceCode } from "./partition_log_helpers.ts";

class Recorder {
  readonly appended: AppendResult[] = [];
  readonly refused: Error[] = [];
  /** The log's high watermark when the outcome was told: readers see the batch by then. */
  readonly highWatermarks: number[] = [];
  #log: PartitionLog;

  constructor(log: PartitionLog) {
    this.#log = log;
  }

  get told(): number {
    return this.appended.length + this.refused.length;
  }

  listener() {
    return {
      appended: (result: AppendResult) => {
        this.appended.push(result);
        this.highWatermarks.push(this.#log.highWatermark);
      },
      refused: (error: Error) => {
        this.refused.push(error);
      },
    };
  }
}

describe("PartitionLog.appendTo", () => {
  for (const fsync of ["never", "always"] as const) {
    test(`tells its listener once, after the round wrote the batch (fsync ${fsync})`, async () => {
      using dir = tempDir();
      const log = await PartitionLog.open(dir.path, { fsync }, { onWarning: () => {} });
      try {
        const recorder = new Recorder(log);
        log.appendTo(simpleBatch(2, { firstTag: 0 }), undefined, recorder.listener());
        log.appendTo(simpleBatch(3, { firstTag: 2 }), undefined, recorder.listener());
        assert.equal(recorder.told, 0, "never told during the call");
        await waitFor(() => recorder.told === 2, "both appends told");
        assert.deepEqual(
          recorder.appended.map((r) => [r.baseOffset, r.lastOffset, r.logStartOffset]),
          [
            [0, 1, 0],
            [2, 4, 0],
          ],
        );
        assert.deepEqual(recorder.highWatermarks, [5, 5], "published before it is told");
        // The same offsets an awaited append gets next.
        const next = await log.appendChecked(simpleBatch(1, { firstTag: 5 }));
        assert.equal(next.baseOffset, 5);
        assert.deepEqual(
          readAll(log).map((r) => r.offset),
          [0, 1, 2, 3, 4, 5],
        );
        assert.equal(recorder.told, 2, "told once each");
      } finally {
        await log.close();
      }
    });
  }

  test("a batch refused before anything is written throws at once and is never told", async () => {
    using dir = tempDir();
    const log = await PartitionLog.open(dir.path, { fsync: "never" }, { onWarning: () => {} });
    try {
      const recorder = new Recorder(log);
      const damaged = simpleBatch(1);
      damaged[damaged.length - 1]! ^= 0xff;
      assert.throws(
        () => log.appendTo(damaged, undefined, recorder.listener()),
        sluiceCode("CORRUPT_BATCH"),
      );
      await log.flush();
      assert.equal(recorder.told, 0);
      assert.equal(log.highWatermark, 0);
    } finally {
      await log.close();
    }
  });

  test("a write that fails with ENOSPC is told as DISK_FULL, and nothing stays", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const log = await PartitionLog.open(dir.path, { fsync: "never" }, { io, onWarning: () => {} });
    try {
      await log.appendChecked(simpleBatch(1));
      io.onWrite = () => ({ code: "ENOSPC" });
      const recorder = new Recorder(log);
      log.appendTo(simpleBatch(2, { firstTag: 1 }), undefined, recorder.listener());
      await waitFor(() => recorder.told === 1, "the failure told");
      assert.equal(recorder.appended.length, 0);
      assert.ok(sluiceCode("DISK_FULL")(recorder.refused[0]));
      assert.equal(log.highWatermark, 1);
      io.onWrite = undefined;
      const retried = new Recorder(log);
      log.appendTo(simpleBatch(2, { firstTag: 1 }), undefined, retried.listener());
      await waitFor(() => retried.told === 1, "the retry told");
      assert.deepEqual(
        retried.appended.map((r) => [r.baseOffset, r.lastOffset]),
        [[1, 2]],
      );
    } finally {
      await log.close();
    }
  });
});

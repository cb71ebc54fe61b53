// Power loss, simulated at every operation of a workload: a PowerLossIO (power_loss_io.ts)
// lets the first N file operations happen and fails the rest, then rewrites each file as a disk
// could have kept it (only what an fsync covered; or, "torn", a random prefix of the later writes
// cut at a sector). The log (appends with fsync always across segment rolls and retention) and
// the committed-offsets store must then open, and hold every acknowledged record and commit.
// Crash points: every operation of the workload, in both modes. SLUICE_POWER_LOSS_STEP > 1
// samples fewer points; SLUICE_SEED changes the torn prefixes.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OffsetStore } from "../../engine/offset_store.ts";
import { PartitionLog } from "../../engine/partition_log.ts";
import { mulberry32, tempDir } from "../helpers.ts";
import { type PlainRecord, readAll, recordValue, simpleBatch } from "./partition_log_helpers.ts";
import { type PowerLossMode, PowerLossIO } from "./power_loss_io.ts";

const SEED = Number(process.env["SLUICE_SEED"] ?? 20261203);
const STEP = Math.max(1, Number(process.env["SLUICE_POWER_LOSS_STEP"] ?? 1));
const MODES: PowerLossMode[] = ["synced-only", "torn"];

/** Small segments so that the workload rolls and retention deletes, at every crash point. */
const LOG_CONFIG = {
  fsync: "always" as const,
  segmentBytes: 4096,
  maxBatchBytes: 4096,
  indexIntervalBytes: 256,
  retentionBytes: 12 * 1024,
};
const APPENDS = 100;

function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** Appends tagged batches (two in flight) until done or the power goes; returns the acked. */
async function appendWorkload(log: PartitionLog): Promise<Map<number, string>> {
  const acked = new Map<number, string>();
  const one = async (tag: number) => {
    const result = await log.append(simpleBatch(1, { firstTag: tag, valueBytes: 200 }));
    acked.set(result.baseOffset, hexOf(recordValue(tag, 200)));
  };
  try {
    for (let tag = 0; tag < APPENDS; tag += 2) {
      await Promise.all([one(tag), one(tag + 1)]);
      if (tag % 10 === 0) await log.applyRetention();
    }
  } catch {
    // The power went out: what was acknowledged before is what must survive.
  }
  return acked;
}

/** Every acknowledged record that retention has not removed is there, with its bytes. */
function assertLogKeeps(records: PlainRecord[], logStart: number, acked: Map<number, string>) {
  const found = new Map(records.map((r) => [r.offset, r.value]));
  for (const [offset, value] of acked) {
    if (offset < logStart) continue;
    assert.equal(found.get(offset), value, `acknowledged offset ${offset} survives`);
  }
}

/** The file operations `run` makes when the power stays on. */
async function countOperations(
  run: (io: PowerLossIO, dir: string) => Promise<void>,
): Promise<number> {
  using dir = tempDir();
  const io = new PowerLossIO();
  await run(io, dir.path);
  return io.operations;
}

describe("power loss", () => {
  test("a partition log keeps every acknowledged record at every crash point", async () => {
    const total = await countOperations(async (io, dir) => {
      const log = await PartitionLog.open(dir, LOG_CONFIG, { io, onWarning: () => {} });
      await appendWorkload(log);
      await log.close();
    });
    assert.ok(total > 100, `the workload makes ${total} file operations`);
    const random = mulberry32(SEED);
    let points = 0;
    for (const mode of MODES) {
      for (let crashAt = 1; crashAt <= total; crashAt += STEP) {
        using dir = tempDir();
        const io = new PowerLossIO(crashAt);
        const options = { io, onWarning: () => {} };
        const log = await PartitionLog.open(dir.path, LOG_CONFIG, options).catch(() => undefined);
        const acked = log === undefined ? new Map<number, string>() : await appendWorkload(log);
        await log?.close().catch(() => {});
        io.powerLoss(mode, random);
        const reopened = await PartitionLog.open(dir.path, LOG_CONFIG, { onWarning: () => {} });
        try {
          const context = `${mode}, crash at operation ${crashAt} of ${total}`;
          assert.deepEqual(reopened.corruptions, [], context);
          assertLogKeeps(readAll(reopened), reopened.logStartOffset, acked);
          const next = await reopened.append(simpleBatch(1, { firstTag: 999 }));
          assert.equal(next.baseOffset, reopened.logEndOffset - 1, `appends resume: ${context}`);
        } finally {
          await reopened.close();
        }
        points++;
      }
    }
    console.log(`power loss, partition log: ${points} crash points over ${total} operations`);
  });

  test("the offset store keeps every acknowledged commit at every crash point", async () => {
    const workload = async (store: OffsetStore, acked: Map<string, number>) => {
      try {
        for (let i = 1; i <= 80; i++) {
          const group = `g${i % 3}`;
          await store.commit(group, [{ topic: "t", partition: i % 4, offset: i }]);
          acked.set(`${group}/${i % 4}`, i);
        }
      } catch {
        // The power went out.
      }
    };
    // A small compaction threshold makes the workload compact (snapshot, rename) too.
    const options = { compactAfterBytes: 2048 };
    const total = await countOperations(async (io, dir) => {
      const store = await OffsetStore.open(dir, { ...options, io });
      await workload(store, new Map());
      await store.close();
    });
    const random = mulberry32(SEED + 1);
    let points = 0;
    for (const mode of MODES) {
      for (let crashAt = 1; crashAt <= total; crashAt += STEP) {
        using dir = tempDir();
        const io = new PowerLossIO(crashAt);
        const acked = new Map<string, number>();
        const store = await OffsetStore.open(dir.path, { ...options, io }).catch(() => undefined);
        if (store !== undefined) {
          await workload(store, acked);
          await store.close().catch(() => {});
        }
        io.powerLoss(mode, random);
        const reopened = await OffsetStore.open(dir.path, options);
        try {
          for (const [key, offset] of acked) {
            const [group, partition] = key.split("/") as [string, string];
            // A later commit may survive unacknowledged; an acknowledged one is never lost.
            const found = reopened.fetch(group, "t", Number(partition))?.offset ?? -1;
            assert.ok(found >= offset, `${mode}, crash at ${crashAt}: ${key} ${found} < ${offset}`);
          }
        } finally {
          await reopened.close();
        }
        points++;
      }
    }
    console.log(`power loss, offset store: ${points} crash points over ${total} operations`);
  });
});

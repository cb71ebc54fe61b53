import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch, isSluiceError, PartitionLog } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";

function idempotentBatch(producerId: number, epoch: number, sequence: number, count: number) {
  const records = Array.from({ length: count }, (_, i) => ({
    value: new TextEncoder().encode(`p${producerId}-s${sequence + i}`),
  }));
  return encodeRecordBatch(records, {
    producerId,
    producerEpoch: epoch,
    baseSequence: sequence,
    timestamp: 1_000,
  });
}

const quiet = { onWarning: () => {} };

describe("idempotent producers", () => {
  test("a retried batch is written once and acknowledged with its first offsets", async () => {
    using dir = tempDir();
    const log = await PartitionLog.open(dir.path, { fsync: "never" }, quiet);
    try {
      const first = await log.append(idempotentBatch(7, 0, 0, 3));
      const second = await log.append(idempotentBatch(7, 0, 3, 2));
      const retry = await log.append(idempotentBatch(7, 0, 0, 3));
      assert.deepEqual([retry.baseOffset, retry.lastOffset], [first.baseOffset, first.lastOffset]);
      assert.equal(log.logEndOffset, 5);
      const retrySecond = await log.append(idempotentBatch(7, 0, 3, 2));
      assert.equal(retrySecond.baseOffset, second.baseOffset);
      assert.equal(log.logEndOffset, 5);
    } finally {
      await log.close();
    }
  });

  test("a duplicate sent while the original is in flight is written once", async () => {
    using dir = tempDir();
    const log = await PartitionLog.open(dir.path, { fsync: "always" }, quiet);
    try {
      const batch = idempotentBatch(1, 0, 0, 4);
      const [a, b] = await Promise.all([log.append(batch), log.append(batch)]);
      assert.equal(a.baseOffset, b.baseOffset);
      assert.equal(log.logEndOffset, 4);
    } finally {
      await log.close();
    }
  });

  test("duplicates are still recognised after a reopen", async () => {
    using dir = tempDir();
    const first = await PartitionLog.open(dir.path, {}, quiet);
    await first.append(idempotentBatch(3, 0, 0, 2));
    await first.close();
    const log = await PartitionLog.open(dir.path, {}, quiet);
    try {
      const retry = await log.append(idempotentBatch(3, 0, 0, 2));
      assert.equal(retry.baseOffset, 0);
      assert.equal(log.logEndOffset, 2);
      const next = await log.append(idempotentBatch(3, 0, 2, 1));
      assert.equal(next.baseOffset, 2);
    } finally {
      await log.close();
    }
  });

  test("a gap in sequences is OUT_OF_ORDER_SEQUENCE and writes nothing", async () => {
    using dir = tempDir();
    const log = await PartitionLog.open(dir.path, {}, quiet);
    try {
      await log.append(idempotentBatch(9, 0, 0, 2));
      await assert.rejects(
        () => log.append(idempotentBatch(9, 0, 5, 1)),
        (error: unknown) =>
          isSluiceError(error, "OUT_OF_ORDER_SEQUENCE") && /expected 2/.test(error.message),
      );
      assert.equal(log.logEndOffset, 2);
    } finally {
      await log.close();
    }
  });

  test("a new epoch restarts the sequence and fences the old epoch", async () => {
    using dir = tempDir();
    const log = await PartitionLog.open(dir.path, {}, quiet);
    try {
      await log.append(idempotentBatch(4, 0, 0, 2));
      await log.append(idempotentBatch(4, 1, 0, 1));
      await assert.rejects(
        () => log.append(idempotentBatch(4, 0, 2, 1)),
        (error: unknown) => isSluiceError(error, "INVALID_PRODUCER_EPOCH"),
      );
      assert.equal(log.logEndOffset, 3);
    } finally {
      await log.close();
    }
  });

  test("batches without a producer id are never deduplicated", async () => {
    using dir = tempDir();
    const log = await PartitionLog.open(dir.path, {}, quiet);
    try {
      const batch = encodeRecordBatch([{ value: new Uint8Array([1]) }], { timestamp: 1 });
      await log.append(batch);
      await log.append(batch);
      assert.equal(log.logEndOffset, 2);
    } finally {
      await log.close();
    }
  });
});

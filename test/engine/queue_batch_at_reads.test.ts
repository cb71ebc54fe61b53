import assert from "node:assert/strict";
import { test } from "node:test";
import { PartitionLog } from "../../engine/partition_log.ts";
import { BatchAtReads } from "../../engine/queue_fetch.ts";
import { tempDir } from "../helpers.ts";
import { BASE_TIMESTAMP_MS, batchOfSpecs } from "./partition_log_helpers.ts";

test("BatchAtReads reads each batch once for the offsets it holds", async () => {
  using dir = tempDir();
  const log = await PartitionLog.open(dir.path, { fsync: "never" }, { onWarning: () => {} });
  const spec = (tag: number) => ({ tag, valueBytes: 100, timestamp: BASE_TIMESTAMP_MS + tag });
  await log.append(batchOfSpecs([spec(0), spec(1), spec(2)]));
  await log.append(batchOfSpecs([spec(3), spec(4)]));
  const asked: number[] = [];
  const reads = new BatchAtReads({
    read(offset, maxBytes) {
      asked.push(offset);
      return log.read(offset, maxBytes);
    },
  });
  const bases = [0, 1, 2, 2, 3, 4].map((offset) => {
    const view = reads.read(offset, 1).views[0]!;
    return Number(new DataView(view.buffer, view.byteOffset).getBigInt64(0));
  });
  assert.deepEqual(bases, [0, 0, 0, 0, 3, 3], "each offset answered with its own batch");
  assert.deepEqual(asked, [0, 3], "the log read once per batch");
  // A read of more than one byte is never answered from the remembered batch.
  reads.read(3, 4096);
  assert.deepEqual(asked, [0, 3, 3]);
  await log.close();
});

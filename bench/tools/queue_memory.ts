// Memory a queue holds per in-flight record, measured on the engine in one process (no
// sockets): a topic of small records in 16 partitions, a queue with a full window in every
// partition (each record acquired by one of 4 members, locks running), and the growth of the
// heap from before the first fetch to after the last (after a forced collection), divided by
// the records in flight. Run it under Bun: its heapUsed includes typed arrays, where the
// cursors keep their windows (Deno reports them in neither heapUsed nor arrayBuffers). Prints
// one JSON line: heapBytesPerRecord (the whole growth, the queue's fixed costs per partition
// included) and marginalBytesPerRecord (the growth from half-full windows to full ones, per
// record: what each further record in flight costs). The target is at most 16 bytes a
// record.
//
//   bun bench/tools/queue_memory.ts [--partitions 16] [--max-in-flight 100000]

import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Engine, encodeRecordBatch } from "../../engine/mod.ts";

const { values } = parseArgs({
  options: {
    partitions: { type: "string", default: "16" },
    "max-in-flight": { type: "string", default: "100000" },
  },
});
const partitions = Number(values.partitions);
const maxInFlight = Number(values["max-in-flight"]);
if (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > 256) {
  throw new RangeError(`--partitions ${values.partitions} is not an integer in [1, 256]`);
}
if (!Number.isSafeInteger(maxInFlight) || maxInFlight < 1 || maxInFlight > 100_000) {
  throw new RangeError(`--max-in-flight ${values["max-in-flight"]} is not in [1, 100000]`);
}
const MEMBERS = 4;
const BATCH_RECORDS = 1_000;

function collect(): void {
  (globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc(true);
  (globalThis as { gc?: () => void }).gc?.();
}

function heapUsedBytes(): number {
  collect();
  return process.memoryUsage().heapUsed;
}

const dir = fs.mkdtempSync(join(os.tmpdir(), "sluice-queue-memory-"));
try {
  const engine = await Engine.open(dir, { scrubBytesPerSec: 0 });
  await engine.createTopic("t", { partitions, config: { fsync: "never" } });
  await engine.declareQueue("q", {
    topic: "t",
    fsync: "never",
    maxInFlight,
    prefetch: Math.ceil((maxInFlight * partitions) / MEMBERS),
  });
  const value = new Uint8Array(8);
  for (let partition = 0; partition < partitions; partition++) {
    for (let sent = 0; sent < maxInFlight; sent += BATCH_RECORDS) {
      const records = Array.from({ length: BATCH_RECORDS }, () => ({ value }));
      await engine.append("t", partition, encodeRecordBatch(records, { timestamp: Date.now() }));
    }
  }
  const members = Array.from({ length: MEMBERS }, () => engine.joinQueue("q"));
  const before = heapUsedBytes();
  let inFlight = 0;
  // The heap is also read when the windows are half full: the growth from there to full is what
  // each further in-flight record costs, without the queue's fixed costs per partition.
  let half: { heap: number; inFlight: number } | undefined;
  for (let round = 0; inFlight < partitions * maxInFlight && round < 100_000; round++) {
    if (half === undefined && inFlight >= (partitions * maxInFlight) / 2) {
      half = { heap: heapUsedBytes(), inFlight };
    }
    const member = members[round % MEMBERS]!;
    const fetched = engine.fetchQueue("q", member, { maxRecords: 10_000 });
    let got = 0;
    for (const part of fetched.partitions) {
      for (const range of part.ranges) got += range.last - range.first + 1;
    }
    if (got === 0) break;
    inFlight += got;
  }
  const after = heapUsedBytes();
  const stats = engine.queueStats("q");
  console.log(
    JSON.stringify({
      partitions,
      maxInFlight,
      inFlight,
      acquired: stats.acquired,
      heapBytesPerRecord: Number(((after - before) / inFlight).toFixed(2)),
      marginalBytesPerRecord:
        half === undefined || inFlight === half.inFlight
          ? null
          : Number(((after - half.heap) / (inFlight - half.inFlight)).toFixed(2)),
    }),
  );
  await engine.close();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}

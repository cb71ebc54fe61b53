// A broker process for recovery_checkpoint.test.ts, killed by its parent: it writes a topic of
// one partition, makes the engine checkpoint durable, and prints "ready" once the state the
// parent asked for is on disk. With "hold", it then appends more and starts a checkpoint
// whose temp file's fdatasync never returns, so the kill lands between the checkpoint's write
// and its rename.
//
//   recovery_checkpoint_child.ts DIR BATCHES BATCH_BYTES SEGMENT_BYTES hold|none

import fs from "node:fs";
import { Engine, encodeRecordBatch } from "../../engine/mod.ts";
import { type FileIO, realFileIO } from "../../engine/io.ts";
import { CHECKPOINT_FILE } from "../../engine/recovery_checkpoint.ts";

const [dir, batchesText, bytesText, segmentText, mode] = process.argv.slice(2);
const batches = Number(batchesText);
const batchBytes = Number(bytesText);
let holding = false;
const io: FileIO = {
  ...realFileIO,
  syncFile(path) {
    if (holding && path.endsWith(`${CHECKPOINT_FILE}.tmp`)) return new Promise(() => {});
    return realFileIO.syncFile(path);
  },
};
const batch = encodeRecordBatch([{ value: new Uint8Array(batchBytes).fill(7) }], {
  timestamp: 1,
});
const engine = await Engine.open(dir!, { io, onWarning: () => {} });
const config = { fsync: "always" as const, segmentBytes: Number(segmentText) };
await engine.createTopic("t", { partitions: 1, config });
const log = engine.partition("t", 0);
const first = mode === "hold" ? Math.floor(batches / 2) : batches;
for (let i = 0; i < first; i++) await engine.append("t", 0, batch);
// Rolled segments are sealed (and fsynced) in the background: wait for every one.
while (log.recoveryPoint < log.logEndOffset) await log.flush();
await engine.checkpoint.flush();
if (mode === "hold") {
  holding = true;
  for (let i = first; i < batches; i++) await engine.append("t", 0, batch);
  void engine.checkpoint.flush();
  // writeFile of the temp is synchronous: it is there once flush() has started.
  if (!fs.existsSync(`${engine.checkpoint.path}.tmp`)) throw new Error("no checkpoint temp");
}
process.stdout.write(`ready ${log.recoveryPoint} ${log.logEndOffset}\n`);
// Kept alive until the parent's SIGKILL.
setInterval(() => {}, 1 << 30);

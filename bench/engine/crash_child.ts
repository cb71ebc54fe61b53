// The victim of the recovery benchmark: appends 1 MiB batches with fsync "never" to a log,
// prints "ready" once `bytes` are acknowledged (in the page cache, never fsynced), and goes on
// appending until the parent kills it with SIGKILL, so the log is left mid-flight, unclosed.
// Should the parent die first, the closed stdin pipe ends this process, and appends stop at
// twice the target so an orphan never fills the disk.
//
//   bun bench/engine/crash_child.ts <dir> <bytes> <inFlight>

import { type AppendResult, PartitionLog } from "../../engine/mod.ts";
import { BATCH_BYTES_LIMIT, makeBatchPool } from "./workload.ts";

const [dir, bytesText, inFlightText] = process.argv.slice(2);
const targetBytes = Number(bytesText);
const inFlight = Number(inFlightText);
if (dir === undefined || !(targetBytes > 0) || !(inFlight > 0)) {
  process.stderr.write("usage: crash_child.ts <dir> <bytes> <inFlight>\n");
  process.exit(2);
}

process.stdin.on("end", () => process.exit(1));
process.stdin.resume();

const { batches, batchBytes } = makeBatchPool(BATCH_BYTES_LIMIT);
const log = await PartitionLog.open(dir, { fsync: "never" });
const ring: Promise<AppendResult>[] = [];
const readyAt = Math.ceil(targetBytes / batchBytes);
for (let i = 0; i < readyAt * 2; i++) {
  const slot = i % inFlight;
  if (i >= inFlight) await ring[slot];
  const appended = log.append(batches[i % batches.length]!);
  appended.catch(() => {});
  ring[slot] = appended;
  if (i + 1 === readyAt) {
    await Promise.all(ring);
    process.stdout.write("ready\n");
  }
}
// Wait, unclosed, for the SIGKILL (the stdin listener keeps the process alive).

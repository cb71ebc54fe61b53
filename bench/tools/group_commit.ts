// The group commit across partitions alone, on the engine in one process (no sockets, no
// client): how many fsync "always" appends a second one engine makes durable when they are
// spread over many partitions. `--requests` produce-like requests stay in flight; each appends
// a one-record batch of `--record-bytes` to each of `--per-request` partitions drawn in turn
// from `--partitions`, waits until all of them are acknowledged (durable), and starts again.
// Prints records/s, rounds of the group commit, and one JSON object as the last line.
//
//   bun bench/tools/group_commit.ts [--partitions 1000] [--per-request 60] [--requests 4]
//       [--seconds 5] [--record-bytes 1024] [--partition-sync auto|fdatasync|flush]
//
// For an A/B, alternate runs of the two modes (or of two checkouts), e.g.:
//   for i in 1 2; do for m in auto fdatasync; do
//     bun bench/tools/group_commit.ts --partition-sync $m; done; done

import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Engine, encodeRecordBatch, PARTITION_SYNCS } from "../../engine/mod.ts";

const { values } = parseArgs({
  options: {
    partitions: { type: "string", default: "1000" },
    "per-request": { type: "string", default: "60" },
    requests: { type: "string", default: "4" },
    seconds: { type: "string", default: "5" },
    "record-bytes": { type: "string", default: "1024" },
    "partition-sync": { type: "string", default: "auto" },
  },
});

function positive(name: string): number {
  const value = Number(values[name as keyof typeof values]);
  if (!Number.isSafeInteger(value) || value < 1) {
    console.error(`--${name} ${values[name as keyof typeof values]} must be a positive integer`);
    process.exit(2);
  }
  return value;
}

const partitions = positive("partitions");
const perRequest = Math.min(positive("per-request"), partitions);
const requests = positive("requests");
const seconds = positive("seconds");
const recordBytes = positive("record-bytes");
const mode = PARTITION_SYNCS.find((known) => known === values["partition-sync"]);
if (mode === undefined) {
  console.error(`--partition-sync ${values["partition-sync"]} must be auto, fdatasync or flush`);
  process.exit(2);
}

const dir = fs.mkdtempSync(join(os.tmpdir(), "sluice-group-commit-"));
const engine = await Engine.open(dir, {
  topicDefaults: { fsync: "always" },
  partitionSync: mode,
  onWarning: () => {},
});
try {
  await engine.createTopic("g", { partitions });
  const batch = encodeRecordBatch([{ value: new Uint8Array(recordBytes).fill(0x62) }]);
  const endMs = performance.now() + seconds * 1000;
  let next = 0;
  let records = 0;
  const roundsBefore = engine.groupSync.rounds;
  const loop = async () => {
    while (performance.now() < endMs) {
      const appends = [];
      for (let i = 0; i < perRequest; i++) {
        appends.push(engine.append("g", next, batch));
        next = (next + 1) % partitions;
      }
      await Promise.all(appends);
      records += perRequest;
    }
  };
  const startMs = performance.now();
  await Promise.all(Array.from({ length: requests }, loop));
  const elapsedS = (performance.now() - startMs) / 1000;
  const rounds = engine.groupSync.rounds - roundsBefore;
  const summary = {
    partitionSync: mode,
    fileSystemFlush: engine.groupSync.flushesFileSystem,
    partitions,
    perRequest,
    requests,
    recordsPerSec: Math.round(records / elapsedS),
    roundsPerSec: Math.round(rounds / elapsedS),
    recordsPerRound: Number((records / Math.max(rounds, 1)).toFixed(1)),
    ...engine.groupSync.costs,
  };
  console.log(
    `${mode} (file-system flush ${summary.fileSystemFlush}): ${summary.recordsPerSec} records/s, ` +
      `${summary.roundsPerSec} rounds/s, ${summary.recordsPerRound} records per round; ` +
      `cost of a flush ${summary.flushMs?.toFixed(1)} ms, of an fdatasync ` +
      `${summary.fileMs?.toFixed(2)} ms`,
  );
  console.log(JSON.stringify(summary));
} finally {
  await engine.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

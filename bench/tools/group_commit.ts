// The group commit across partitions alone, on the engine in one process (no sockets, no
// client): how many fsync "always" appends a second one engine makes durable when they are
// spread over many partitions. `--requests` produce-like requests stay in flight; each appends
// a batch of `--records-per-batch` records of `--record-bytes` to each of `--per-request`
// partitions drawn in turn from `--partitions`, waits until all of them are acknowledged
// (durable), and starts again. Prints records/s, rounds of the group commit, and one JSON
// object as the last line. `--every-second` also prints one line a second (records/s, MB/s,
// rounds, round p99, the process's CPU, the machine's Dirty + Writeback), to see whether a
// rate decays over a minute in the engine alone.
//
//   bun bench/tools/group_commit.ts [--partitions 1000] [--per-request 60] [--requests 4]
//       [--seconds 5] [--record-bytes 1024] [--records-per-batch 1] [--every-second]
//       [--partition-sync auto|fdatasync|flush] [--drop-behind on|off]
//
// The 16-partition harness workload at acks=all is close to (client batches of ~16 KiB):
//   bun bench/tools/group_commit.ts --partitions 16 --per-request 16 --requests 8 \
//       --records-per-batch 16 --seconds 60 --every-second
//
// For an A/B, alternate runs of the two modes (or of two checkouts), e.g.:
//   for i in 1 2; do for m in auto fdatasync; do
//     bun bench/tools/group_commit.ts --partition-sync $m; done; done

import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { histogramDelta, histogramPercentileMs } from "../disk_syncs.ts";
import { machineDirtyBytes } from "../runner.ts";
import { Engine, encodeRecordBatch, PARTITION_SYNCS } from "../../engine/mod.ts";

const { values } = parseArgs({
  options: {
    partitions: { type: "string", default: "1000" },
    "per-request": { type: "string", default: "60" },
    requests: { type: "string", default: "4" },
    seconds: { type: "string", default: "5" },
    "record-bytes": { type: "string", default: "1024" },
    "records-per-batch": { type: "string", default: "1" },
    "every-second": { type: "boolean", default: false },
    "drop-behind": { type: "string", default: "on" },
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
const recordsPerBatch = positive("records-per-batch");
const mode = PARTITION_SYNCS.find((known) => known === values["partition-sync"]);
if (mode === undefined) {
  console.error(`--partition-sync ${values["partition-sync"]} must be auto, fdatasync or flush`);
  process.exit(2);
}

const dropBehind = values["drop-behind"];
if (dropBehind !== "on" && dropBehind !== "off") {
  console.error(`--drop-behind ${dropBehind} must be on or off`);
  process.exit(2);
}

const dir = fs.mkdtempSync(join(os.tmpdir(), "sluice-group-commit-"));
const engine = await Engine.open(dir, {
  topicDefaults: { fsync: "always" },
  partitionSync: mode,
  dropBehind: dropBehind === "on",
  onWarning: () => {},
});
try {
  await engine.createTopic("g", { partitions });
  const record = { value: new Uint8Array(recordBytes).fill(0x62) };
  const batch = encodeRecordBatch(Array.from({ length: recordsPerBatch }, () => record));
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
      records += perRequest * recordsPerBatch;
    }
  };
  const startMs = performance.now();
  const ticker = values["every-second"] ? everySecond(() => records) : undefined;
  await Promise.all(Array.from({ length: requests }, loop));
  if (ticker !== undefined) clearInterval(ticker);
  const elapsedS = (performance.now() - startMs) / 1000;
  const rounds = engine.groupSync.rounds - roundsBefore;
  const summary = {
    partitionSync: mode,
    dropBehind,
    fileSystemFlush: engine.groupSync.flushesFileSystem,
    partitions,
    perRequest,
    requests,
    recordsPerBatch,
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

/** Prints one line a second: records/s, MB/s, rounds, round p99, CPU and dirty pages. */
function everySecond(recordsNow: () => number): ReturnType<typeof setInterval> {
  let last = {
    ms: performance.now(),
    records: recordsNow(),
    rounds: engine.groupSync.roundSeconds.snapshot(),
    cpu: process.cpuUsage(),
  };
  let second = 0;
  return setInterval(() => {
    const now = {
      ms: performance.now(),
      records: recordsNow(),
      rounds: engine.groupSync.roundSeconds.snapshot(),
      cpu: process.cpuUsage(),
    };
    const elapsedS = (now.ms - last.ms) / 1000;
    const rate = (now.records - last.records) / elapsedS;
    const rounds = histogramDelta(last.rounds, now.rounds);
    const cpuMicros = now.cpu.user + now.cpu.system - last.cpu.user - last.cpu.system;
    const dirty = machineDirtyBytes();
    console.log(
      `${String(++second).padStart(3)} s  ${Math.round(rate)} records/s ` +
        `${((rate * recordBytes) / 1e6).toFixed(1)} MB/s  rounds ${rounds.count} ` +
        `p99 ${histogramPercentileMs(rounds, 99)?.toFixed(1)} ms  cpu ` +
        `${Math.round(cpuMicros / 10_000 / elapsedS)}% (sys ` +
        `${Math.round((now.cpu.system - last.cpu.system) / 10_000 / elapsedS)}%)  dirty ` +
        `${dirty === undefined ? "?" : (dirty / 1e6).toFixed(0)} MB`,
    );
    last = now;
  }, 1000);
}

// How long retention holds the event loop when it deletes big segments: one partition log of
// --segments sealed segments of --segment-mib each (written as 1 MiB batches), then one
// retention pass that deletes all but the active one, while a 1 ms timer measures the event
// loop's lateness. Prints one JSON line: the pass's own duration, the timer's worst lateness
// over the pass and until the files are gone, and how long the files took to go.
//
//   bun bench/tools/retention_stall.ts [--segments 4] [--segment-mib 1024] [--dir DIR]
//
// The data directory (a temp dir under --dir, default the OS temp dir) is removed at the end.
// Use a directory on the disk whose deletes are to be measured (its mount's `discard` option
// makes unlinks of big files slow).

import fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { encodeRecordBatch, PartitionLog } from "../../engine/mod.ts";

const { values } = parseArgs({
  options: {
    segments: { type: "string", default: "4" },
    "segment-mib": { type: "string", default: "1024" },
    dir: { type: "string", default: tmpdir() },
  },
});
const segments = Number(values.segments);
const segmentMib = Number(values["segment-mib"]);
if (!Number.isSafeInteger(segments) || segments < 1) throw new RangeError("--segments");
if (!Number.isSafeInteger(segmentMib) || segmentMib < 2 || segmentMib > 2047) {
  throw new RangeError("--segment-mib must be 2 to 2047");
}

const dir = fs.mkdtempSync(join(values.dir, "sluice-retention-"));
try {
  const log = await PartitionLog.open(dir, {
    segmentBytes: segmentMib * 1024 * 1024,
    retentionBytes: -1,
    retentionMs: -1,
    fsync: "never",
  });
  const value = new Uint8Array(1000).fill(7);
  const batch = encodeRecordBatch(Array.from({ length: 1000 }, () => ({ value })));
  const batchesPerSegment = Math.floor((segmentMib * 1024 * 1024) / batch.length);
  for (let i = 0; i < segments * batchesPerSegment + 1; i++) await log.append(batch);
  await log.flush();
  const sealed = log.segmentBaseOffsets().length - 1;
  await log.close();
  // Reopened with a limit that deletes every sealed segment.
  const reopened = await PartitionLog.open(dir, {
    segmentBytes: segmentMib * 1024 * 1024,
    retentionBytes: 1,
    retentionMs: -1,
    fsync: "never",
  });
  let worstLateMs = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    worstLateMs = Math.max(worstLateMs, now - last - 1);
    last = now;
  }, 1);
  // Let the timer settle.
  await new Promise((resolve) => setTimeout(resolve, 50));
  worstLateMs = 0;
  const started = performance.now();
  const deleted = await reopened.applyRetention();
  const passMs = performance.now() - started;
  const files = () => fs.readdirSync(dir).filter((name) => /\.(log|index|timeindex)/.test(name));
  while (files().length > 3) await new Promise((resolve) => setTimeout(resolve, 5));
  const goneMs = performance.now() - started;
  // A few more ticks, so that a pass that held the loop shows in the timer's lateness.
  await new Promise((resolve) => setTimeout(resolve, 20));
  clearInterval(timer);
  await reopened.close();
  console.log(
    JSON.stringify({
      segments: sealed,
      segmentMib,
      deleted,
      retentionPassMs: Math.round(passMs * 10) / 10,
      eventLoopWorstLateMs: Math.round(worstLateMs * 10) / 10,
      filesGoneMs: Math.round(goneMs),
    }),
  );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}

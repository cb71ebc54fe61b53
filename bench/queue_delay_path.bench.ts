// bench:queue-delay-path: the delay tiers alone (engine/queue_delay.ts), on a virtual clock:
// `--records` records of `--record-bytes` are added in batches of 500 every 50 ms of virtual
// time (10,000 a second), each due after a delay uniform in [0, --delay-ms-max] ms, and the
// clock advances 1 ms at a time, moving at every step, until every record is in the due log.
// No producer, consumer or socket: the figures are the CPU time (user + system) and the bytes
// written (/proc/self/io write_bytes; null where there is none) per delayed record. `--root`
// loads the engine from another checkout, for an A/B against other delay code.
//
//   bun bench/queue_delay_path.bench.ts [--records 20000] [--record-bytes 1024]
//                                       [--delay-ms-max 10000] [--fsync never] [--root DIR]
//
// The last stdout line is one JSON object: { records, due, cpuMsPerRecord,
// writeBytesPerRecord, wallSeconds, ... }.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

const BATCH_RECORDS = 500;
const BATCH_EVERY_MS = 50;
const PERSIST_EVERY_MS = 100;

const { values } = parseArgs({
  options: {
    records: { type: "string", default: "20000" },
    "record-bytes": { type: "string", default: "1024" },
    "delay-ms-max": { type: "string", default: "10000" },
    fsync: { type: "string", default: "never" },
    root: { type: "string", default: resolve(import.meta.dirname ?? ".", "..") },
  },
});
const records = Number(values.records);
const recordBytes = Number(values["record-bytes"]);
const delayMsMax = Number(values["delay-ms-max"]);
for (const [name, value] of [
  ["records", records],
  ["record-bytes", recordBytes],
  ["delay-ms-max", delayMsMax],
] as const) {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`--${name} ${value}`);
}
const fsync = values.fsync === "always";

// biome-ignore lint/suspicious/noExplicitAny: another checkout's engine, loaded by path
const engine: any = await import(join(values.root, "engine/mod.ts"));

function writeBytes(): number | null {
  try {
    const match = /^write_bytes: (\d+)$/m.exec(readFileSync("/proc/self/io", "utf8"));
    return match === null ? null : Number(match[1]);
  } catch {
    return null;
  }
}

/** A seeded PRNG (mulberry32), so A and B delay the same records by the same amounts. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let nowMs = 1_800_000_000_000;
const dir = mkdtempSync(join(tmpdir(), "sluice-bench-delay-path-"));
const warnings: string[] = [];
const delays = await engine.DelayTiers.open(dir, {
  io: engine.realFileIO,
  now: () => nowMs,
  warn: (message: string) => warnings.push(message),
  fsync,
});
const random = prng(13);
const value = new Uint8Array(recordBytes).fill(120);
const header = [{ key: "app", value: new TextEncoder().encode("bench") }];
const cpuBefore = process.cpuUsage();
const writtenBefore = writeBytes();
const startedMs = performance.now();
let added = 0;
let due = 0;
try {
  while (added < records || delays.waiting > 0) {
    if (added < records && nowMs % BATCH_EVERY_MS === 0) {
      const count = Math.min(BATCH_RECORDS, records - added);
      const entries = Array.from({ length: count }, () => ({
        record: { key: null, value, headers: header, timestamp: nowMs },
        dueMs: nowMs + Math.floor(random() * (delayMsMax + 1)),
        deliveries: 0,
      }));
      await delays.add(entries);
      added += count;
    }
    nowMs += 1;
    while ((await delays.moveDue()) > 0) {}
    if (nowMs % PERSIST_EVERY_MS === 0) await delays.persistPositions();
  }
  due = delays.due.highWatermark;
} finally {
  await delays.close();
}
const cpu = process.cpuUsage(cpuBefore);
const writtenAfter = writeBytes();
const written =
  writtenAfter === null || writtenBefore === null ? null : writtenAfter - writtenBefore;
rmSync(dir, { recursive: true, force: true });
const report = {
  root: values.root,
  records,
  recordBytes,
  delayMsMax,
  fsync: fsync ? "always" : "never",
  due,
  warnings: warnings.length,
  cpuMsPerRecord:
    records > 0 ? Number(((cpu.user + cpu.system) / 1000 / records).toFixed(4)) : null,
  writeBytesPerRecord: records > 0 && written !== null ? Math.round(written / records) : null,
  wallSeconds: Number(((performance.now() - startedMs) / 1000).toFixed(1)),
};
console.log(JSON.stringify(report));

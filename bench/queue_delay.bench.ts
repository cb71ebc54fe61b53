// bench:queue-delay: how late delayed records reach a queue's consumer, in one process on the
// engine (no sockets). A producer appends records at a fixed rate for `--seconds`, each with a
// `sluice-delay-ms` header drawn uniformly from [0, --delay-ms-max]; one member fetches
// (woken by onQueueReady) and accepts everything. A record's lateness is the time it was
// fetched minus its due time (its timestamp plus its delay); none may come early. Producer,
// delay tiers and consumer share one JavaScript thread, so the figures include the cost of the
// load itself; on a shared machine they are "loaded" figures.
//
//   bun bench/queue_delay.bench.ts [--rate 10000] [--seconds 10] [--delay-ms-max 10000]
//                                  [--record-bytes 1024] [--partitions 4] [--fsync never]
//                                  [--json]
//
// The last stdout line is one JSON object: { sent, received, early, latenessMs: { p50, p99,
// max }, cpuMsPerRecord, writeBytesPerRecord, heapCellsPerRecord, ... }: the process's CPU
// time (user + system), the bytes it wrote (/proc/self/io write_bytes; null where there is
// none) and the JS heap cells it allocated (Bun; see heapCells) from the first record
// produced to the last one received, per record sent.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { decodeRecordBatches, Engine, encodeRecordBatch } from "../engine/mod.ts";

const TICK_MS = 10;
const FETCH_RECORDS = 2_000;

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "10000" },
    seconds: { type: "string", default: "10" },
    "delay-ms-max": { type: "string", default: "10000" },
    "record-bytes": { type: "string", default: "1024" },
    partitions: { type: "string", default: "4" },
    fsync: { type: "string", default: "never" },
    json: { type: "boolean", default: false },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const delayMsMax = Number(values["delay-ms-max"]);
const recordBytes = Number(values["record-bytes"]);
const partitions = Number(values.partitions);
for (const [name, value] of [
  ["rate", rate],
  ["seconds", seconds],
  ["delay-ms-max", delayMsMax],
  ["record-bytes", recordBytes],
  ["partitions", partitions],
] as const) {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`--${name} ${value}`);
}
const fsync = values.fsync === "always" ? "always" : "never";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const payload = new Uint8Array(recordBytes).fill(120);
const dir = mkdtempSync(join(tmpdir(), "sluice-bench-delay-"));
const engine = await Engine.open(dir);
const lateness: number[] = [];
let sent = 0;
let early = 0;
let cpuBefore: NodeJS.CpuUsage | undefined;
let cpuMs = 0;
let writtenBefore: number | null = null;
let written: number | null = null;
let cellsBefore: number | null = null;
let cells: number | null = null;

/**
 * The JS heap's live cells (Bun), or null. Their growth over the run is what it allocated only
 * when nothing was collected: run with a collection budget larger than the run allocates and
 * the GC timers off (NO_GC_ENV in ops/gc_tuning.ts, BUN_JSC_logGC=1 to see
 * that no collection ran); otherwise heapCellsPerRecord is meaningless.
 */
async function heapCells(): Promise<number | null> {
  if ((process.versions as Record<string, string | undefined>)["bun"] === undefined) return null;
  type Stats = { objectTypeCounts: Record<string, number> };
  const jsc = (await import("bun:jsc")) as { heapStats(): Stats };
  let count = 0;
  for (const n of Object.values(jsc.heapStats().objectTypeCounts)) count += n;
  return count;
}

/** Bytes this process has written to storage so far (Linux), or null. */
function writeBytes(): number | null {
  try {
    const match = /^write_bytes: (\d+)$/m.exec(readFileSync("/proc/self/io", "utf8"));
    return match === null ? null : Number(match[1]);
  } catch {
    return null;
  }
}
try {
  await engine.createTopic("delayed", { partitions, config: { fsync: "never" } });
  await engine.declareQueue("q", { topic: "delayed", fsync, prefetch: 1_000_000 });
  const member = engine.joinQueue("q");
  cellsBefore = await heapCells();
  cpuBefore = process.cpuUsage();
  writtenBefore = writeBytes();
  const producing = produce();
  let wake: (() => void) | undefined;
  const stop = engine.onQueueReady("q", () => wake?.());
  const deadline = Date.now() + seconds * 1000 + delayMsMax + 30_000;
  let producerDone = false;
  void producing.then(() => {
    producerDone = true;
  });
  while (!(producerDone && lateness.length + early >= sent) && Date.now() < deadline) {
    const ready = new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, 50);
    });
    const result = engine.fetchQueue("q", member, { maxRecords: FETCH_RECORDS });
    const nowMs = Date.now();
    const acks = [];
    for (const part of result.partitions) {
      const wanted = (offset: number) =>
        part.ranges.some((range) => range.first <= offset && offset <= range.last);
      for (const view of part.views) {
        for (const batch of decodeRecordBatches(view)) {
          for (const record of batch.records) {
            if (!wanted(record.offset)) continue;
            const header = record.headers.find((h) => h.key === "sluice-delay-ms");
            const delayMs = Number(decoder.decode(header?.value ?? new Uint8Array()));
            const late = nowMs - (record.timestamp + delayMs);
            if (late < 0) early++;
            else lateness.push(late);
          }
        }
      }
      for (const { first, last } of part.ranges) {
        acks.push({ partition: part.partition, first, last, type: "accept" as const });
      }
    }
    if (acks.length > 0) await engine.ackQueue("q", member, acks);
    else await ready;
  }
  stop();
  const cpu = process.cpuUsage(cpuBefore);
  cpuMs = (cpu.user + cpu.system) / 1000;
  const cellsAfter = await heapCells();
  cells = cellsAfter === null || cellsBefore === null ? null : cellsAfter - cellsBefore;
  const writtenAfter = writeBytes();
  written = writtenAfter === null || writtenBefore === null ? null : writtenAfter - writtenBefore;
} finally {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
}

lateness.sort((a, b) => a - b);
const at = (q: number) => lateness[Math.min(lateness.length - 1, Math.floor(q * lateness.length))];
const report = {
  rate,
  seconds,
  delayMsMax,
  recordBytes,
  partitions,
  fsync,
  sent,
  received: lateness.length + early,
  early,
  latenessMs: { p50: at(0.5) ?? null, p99: at(0.99) ?? null, max: lateness.at(-1) ?? null },
  cpuMsPerRecord: sent > 0 ? Number((cpuMs / sent).toFixed(4)) : null,
  writeBytesPerRecord: sent > 0 && written !== null ? Math.round(written / sent) : null,
  heapCellsPerRecord: sent > 0 && cells !== null ? Number((cells / sent).toFixed(1)) : null,
};
if (!values.json) {
  console.log(
    `sent ${sent}, received ${report.received}, early ${early}; lateness p50 ` +
      `${report.latenessMs.p50} ms, p99 ${report.latenessMs.p99} ms, ` +
      `max ${report.latenessMs.max} ms`,
  );
}
console.log(JSON.stringify(report));

/** Appends `rate` records a second for `seconds`, in ticks of TICK_MS, round robin. */
async function produce(): Promise<void> {
  const startMs = Date.now();
  const endMs = startMs + seconds * 1000;
  let partition = 0;
  while (Date.now() < endMs) {
    const due = Math.floor(((Date.now() - startMs) * rate) / 1000);
    // At most 500 records (about 0.5 MiB) a batch: a late tick catches up over several.
    const count = Math.min(500, due - sent);
    if (count > 0) {
      const timestamp = Date.now();
      const records = Array.from({ length: count }, () => ({
        value: payload,
        headers: [
          {
            key: "sluice-delay-ms",
            value: encoder.encode(String(Math.floor(Math.random() * (delayMsMax + 1)))),
          },
        ],
      }));
      sent += count;
      await engine.append("delayed", partition, encodeRecordBatch(records, { timestamp }));
      partition = (partition + 1) % partitions;
    }
    if (count < 500) await new Promise((resolve) => setTimeout(resolve, TICK_MS));
  }
}

// Heap cells (JavaScript objects of every kind) the engine allocates per delayed record, by
// type, counted and not sampled. One process: an engine with a queue over a 4-partition topic;
// records of 1 KiB with `sluice-delay-ms` drawn uniformly from 0..--delay-ms-max are appended
// at --rate for --seconds and fetched as they become due, their ranges accepted without
// decoding them. The window runs with a collection budget larger than it allocates and every
// GC timer off (ops/gc_tuning.ts's NO_GC_ENV: the tool starts itself again with it), so the
// difference of two `heapStats()` counts is what the window allocated. The cells of encoding
// the appended batches are counted apart (the same number of batches encoded alone) and
// subtracted. Per-record figures include what each move round, fetch and accept costs per
// call, divided by the records it carried, so they move a little with how the machine paces
// the rounds: compare alternated runs. Bun only (bun:jsc).
//
//   bun bench/tools/delay_cells.ts [--rate 10000] [--seconds 5] [--delay-ms-max 3000]
//                                  [--root DIR] [--json]
//
// `--root DIR` runs another checkout's engine (for an A/B). The last stdout line is one JSON
// object: { sent, cellsPerRecord, byType: { Object: …, … }, collections }. `collections`
// counts BUN_JSC_logGC's collections in the window per heap: the main heap (the large one)
// should have none, or the figures are low; the fsync worker's small heap may have some.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { NO_GC_ENV } from "../../ops/gc_tuning.ts";

const OWN_ROOT = resolve(import.meta.dirname, "..", "..");
const PARTITIONS = 4;
const RECORD_BYTES = 1024;
const FETCH_RECORDS = 2_000;
const TICK_MS = 10;
const WINDOW_MARK = "[delay-cells] window opens";

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "10000" },
    seconds: { type: "string", default: "5" },
    "delay-ms-max": { type: "string", default: "3000" },
    root: { type: "string" },
    json: { type: "boolean", default: false },
    child: { type: "boolean", default: false },
  },
});

function positiveInteger(name: "rate" | "seconds" | "delay-ms-max"): number {
  const value = Number(values[name]);
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`--${name} ${values[name]}`);
  return value;
}
const rate = positiveInteger("rate");
const seconds = positiveInteger("seconds");
const delayMsMax = positiveInteger("delay-ms-max");
const root = resolve(values.root ?? OWN_ROOT);

if (!values.child) {
  const args = [import.meta.filename, ...process.argv.slice(2), "--child"];
  const run = spawnSync(process.execPath, args, {
    env: { ...process.env, ...NO_GC_ENV },
    encoding: "utf8",
    maxBuffer: 1 << 30,
  });
  if (run.status !== 0) throw new Error(`the counting process failed: ${run.stderr.slice(-2000)}`);
  const report = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as Record<string, unknown>;
  // Collections after the window opened, per heap with the largest size one started at: the
  // engine's fsync worker thread has a heap of its own (under 1 MB) that collects regardless.
  const logged = run.stderr.slice(run.stderr.indexOf(WINDOW_MARK));
  const heaps: Record<string, { collections: number; startKbMax: number }> = {};
  for (const [, heap, kb] of logged.matchAll(/\[GC<(\w+)>: START \w+ (\d+)kb/g)) {
    heaps[heap!] ??= { collections: 0, startKbMax: 0 };
    const seen = heaps[heap!]!;
    seen.collections++;
    seen.startKbMax = Math.max(seen.startKbMax, Number(kb));
  }
  report["collections"] = heaps;
  if (!values.json) {
    const byType = Object.entries(report["byType"] as Record<string, number>).slice(0, 12);
    console.log(`sent ${report["sent"]}, cells per record ${report["cellsPerRecord"]}`);
    for (const [type, cells] of byType) console.log(`  ${type.padEnd(32)} ${cells}`);
  }
  console.log(JSON.stringify(report));
  process.exit(0);
}

const { heapStats } = (await import("bun:jsc")) as {
  heapStats(): { objectTypeCounts: Record<string, number> };
};
const engineModule = join(root, "engine/mod.ts");
const { Engine, encodeRecordBatch } = (await import(
  engineModule
)) as typeof import("../../engine/mod.ts");

type Counts = Record<string, number>;
const counts = (): Counts => ({ ...heapStats().objectTypeCounts });
function grown(before: Counts, after: Counts): Counts {
  const out: Counts = {};
  for (const type of new Set([...Object.keys(before), ...Object.keys(after)])) {
    out[type] = (after[type] ?? 0) - (before[type] ?? 0);
  }
  return out;
}

const payload = new Uint8Array(RECORD_BYTES).fill(120);
const text = new TextEncoder();
function encodeBatch(count: number): Uint8Array {
  const records = Array.from({ length: count }, () => ({
    value: payload,
    headers: [
      {
        key: "sluice-delay-ms",
        value: text.encode(String(Math.floor(Math.random() * (delayMsMax + 1)))),
      },
    ],
  }));
  return encodeRecordBatch(records, { timestamp: Date.now() });
}

const dir = mkdtempSync(join(tmpdir(), "sluice-delay-cells-"));
const engine = await Engine.open(dir);
let sent = 0;
let received = 0;
try {
  await engine.createTopic("delayed", { partitions: PARTITIONS, config: { fsync: "never" } });
  await engine.declareQueue("q", { topic: "delayed", fsync: "never", prefetch: 1_000_000 });
  const member = engine.joinQueue("q");
  // What encoding the run's batches costs on its own (batches of TICK_MS worth of records).
  const perTick = Math.max(1, Math.round((rate * TICK_MS) / 1000));
  const encodeBefore = counts();
  for (let i = 0; i < Math.ceil((rate * seconds) / perTick); i++) encodeBatch(perTick);
  const encoding = grown(encodeBefore, counts());

  process.stderr.write(`${WINDOW_MARK}\n`);
  const before = counts();
  let wake: (() => void) | undefined;
  const stop = engine.onQueueReady("q", () => wake?.());
  let producing = true;
  const producer = (async () => {
    const startMs = Date.now();
    let partition = 0;
    while (Date.now() < startMs + seconds * 1000) {
      const count = Math.min(500, Math.floor(((Date.now() - startMs) * rate) / 1000) - sent);
      if (count > 0) {
        sent += count;
        await engine.append("delayed", partition, encodeBatch(count));
        partition = (partition + 1) % PARTITIONS;
      }
      await new Promise((resolve) => setTimeout(resolve, TICK_MS));
    }
  })().finally(() => {
    producing = false;
  });
  const deadlineMs = Date.now() + (seconds + 30) * 1000 + delayMsMax;
  while ((producing || received < sent) && Date.now() < deadlineMs) {
    const ready = new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, 50);
    });
    const result = engine.fetchQueue("q", member, { maxRecords: FETCH_RECORDS });
    const acks = [];
    for (const part of result.partitions) {
      for (const { first, last } of part.ranges) {
        received += last - first + 1;
        acks.push({ partition: part.partition, first, last, type: "accept" as const });
      }
    }
    if (acks.length > 0) await engine.ackQueue("q", member, acks);
    else await ready;
  }
  await producer;
  stop();
  if (received < sent) throw new Error(`${received} of ${sent} records came back in time`);
  const window = grown(before, counts());
  const byType: Counts = {};
  let total = 0;
  for (const [type, cells] of Object.entries(window)) {
    const net = (cells - (encoding[type] ?? 0)) / sent;
    total += net;
    if (Math.abs(net) >= 0.005) byType[type] = Number(net.toFixed(2));
  }
  const sorted = Object.fromEntries(Object.entries(byType).sort((a, b) => b[1] - a[1]));
  const report = {
    sent,
    rate,
    seconds,
    delayMsMax,
    root,
    cellsPerRecord: Number(total.toFixed(1)),
  };
  console.log(JSON.stringify({ ...report, byType: sorted }));
} finally {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
}

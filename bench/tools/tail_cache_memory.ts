// What the tail cache holds with many partitions, in the engine alone (no sockets): appends
// batches of `--records-per-batch` records of `--record-bytes` round-robin over `--partitions`
// partitions at about `--mb-per-sec` for `--seconds`, then for `--idle-seconds` appends to the
// first `--hot-partitions` only (the rest idle), and prints every `--every-seconds` the
// process's RSS, the collector's heap, and the bytes the engine's tail-cache budget holds
// (null on a checkout without one). The last line is one JSON object, with the process's CPU
// per MB appended (cpuMsPerMB).
//
//   bun bench/tools/tail_cache_memory.ts [--partitions 1000] [--seconds 30] [--mb-per-sec 40]
//       [--records-per-batch 16] [--record-bytes 1024] [--hot-partitions 16]
//       [--idle-seconds 0] [--every-seconds 5] [--tail-cache-total-mib N]
//
// For an A/B run the same command from this checkout and from one without the budget,
// alternating (the file can be copied there: it only uses the embedder API).

import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Engine, encodeRecordBatch } from "../../engine/mod.ts";

const { values } = parseArgs({
  options: {
    partitions: { type: "string", default: "1000" },
    seconds: { type: "string", default: "30" },
    "mb-per-sec": { type: "string", default: "40" },
    "records-per-batch": { type: "string", default: "16" },
    "record-bytes": { type: "string", default: "1024" },
    "hot-partitions": { type: "string", default: "16" },
    "idle-seconds": { type: "string", default: "0" },
    "every-seconds": { type: "string", default: "5" },
    "tail-cache-total-mib": { type: "string" },
  },
});

function count(name: keyof typeof values, min: number): number {
  const value = Number(values[name]);
  if (!Number.isSafeInteger(value) || value < min) {
    console.error(`--${name} ${values[name]} must be an integer of at least ${min}`);
    process.exit(2);
  }
  return value;
}

const partitions = count("partitions", 1);
const seconds = count("seconds", 1);
const mbPerSec = count("mb-per-sec", 1);
const recordsPerBatch = count("records-per-batch", 1);
const recordBytes = count("record-bytes", 1);
const hotPartitions = Math.min(count("hot-partitions", 1), partitions);
const idleSeconds = count("idle-seconds", 0);
const everySeconds = count("every-seconds", 1);
const totalMib = values["tail-cache-total-mib"];

type Sample = { s: number; rssMB: number; heapMB: number; tailCacheMB: number | null };

/** The engine's held tail-cache bytes where the checkout has a budget, else null. */
function tailCacheBytes(engine: Engine): number | null {
  const budget = (engine as unknown as { tailCacheBudget?: { heldBytes: number } }).tailCacheBudget;
  return budget === undefined ? null : budget.heldBytes;
}

/**
 * The collector's heap size: JSC's heapSize under Bun (it counts typed-array backing stores, what
 * drives its collections), V8's heapUsed plus arrayBuffers under Deno.
 */
const jsc =
  (process.versions as Record<string, string | undefined>)["bun"] === undefined
    ? undefined
    : ((await import("bun:jsc")) as { heapSize(): number });
function heapBytes(): number {
  if (jsc !== undefined) return jsc.heapSize();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

const dir = fs.mkdtempSync(join(os.tmpdir(), "sluice-tail-cache-"));
const engine = await Engine.open(dir, {
  onWarning: () => {},
  ...(totalMib === undefined ? {} : { tailCacheTotalBytes: Number(totalMib) * 1024 * 1024 }),
});
const samples: Sample[] = [];
const cpuStart = process.cpuUsage();
const cpu = () => {
  const used = process.cpuUsage(cpuStart);
  return (used.user + used.system) / 1000;
};
const startMs = performance.now();
const sample = () => {
  const mb = (bytes: number) => Math.round(bytes / 1e5) / 10;
  const held = tailCacheBytes(engine);
  const entry = {
    s: Math.round((performance.now() - startMs) / 100) / 10,
    rssMB: mb(process.memoryUsage().rss),
    heapMB: mb(heapBytes()),
    tailCacheMB: held === null ? null : mb(held),
  };
  samples.push(entry);
  console.error(JSON.stringify(entry));
};
try {
  await engine.createTopic("t", { partitions });
  const record = { value: new Uint8Array(recordBytes).fill(0x62) };
  const batch = encodeRecordBatch(Array.from({ length: recordsPerBatch }, () => record));
  const batchesPerSec = (mbPerSec * 1e6) / batch.length;
  const ticker = setInterval(sample, everySeconds * 1000);
  let next = 0;
  let appended = 0;
  // Paced in 10 ms slices: each slice appends what the rate allows so far, then waits for them.
  const run = async (untilS: number, spread: number) => {
    while (performance.now() - startMs < untilS * 1000) {
      const due = Math.floor(((performance.now() - startMs) / 1000) * batchesPerSec) - appended;
      const appends = [];
      for (let i = 0; i < due; i++) {
        appends.push(engine.append("t", next, batch));
        next = (next + 1) % spread;
      }
      appended += due;
      await Promise.all(appends);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  await run(seconds, partitions);
  await run(seconds + idleSeconds, hotPartitions);
  clearInterval(ticker);
  sample();
  const last = samples.at(-1)!;
  const peak = (key: "rssMB" | "heapMB") => Math.max(...samples.map((entry) => entry[key]));
  console.log(
    JSON.stringify({
      partitions,
      seconds,
      idleSeconds,
      mbPerSec,
      appendedMB: Math.round((appended * batch.length) / 1e6),
      tailCacheTotalMib: totalMib === undefined ? null : Number(totalMib),
      rssMB: last.rssMB,
      heapMB: last.heapMB,
      tailCacheMB: last.tailCacheMB,
      peakRssMB: peak("rssMB"),
      peakHeapMB: peak("heapMB"),
      // The process's CPU (user + system) over the run, per MB appended.
      cpuMsPerMB: Math.round((cpu() / ((appended * batch.length) / 1e6)) * 100) / 100,
    }),
  );
} finally {
  await engine.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

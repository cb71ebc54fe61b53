// bench:exchange: what routing through an exchange costs against appending to the topic
// directly, in one process on the engine (no sockets, so the figure is the broker's own work:
// decode, match, append). Each round runs every mode for --seconds, modes alternated round by
// round so that a loaded machine slows them alike:
//
//   direct        engine.append of a 100-record batch to one topic (plain produce)
//   topic-100     engine.publish of the same batch through a topic exchange with 100
//                 bindings (`orders.k<i>.*` → topic t<i>), exactly one matching each record;
//                 the batch holds one routing key, as the Publisher sends them
//   topic-grouped the same exchange, each record of the batch a different key, ten records
//                 to each of ten destinations (`orders.k<i>.r<j>`): one batch per destination
//   topic-mixed   the same exchange, each record of the batch a different key: the batch is
//                 split into one batch per destination (the worst case)
//
//   bun bench/exchange.bench.ts [--seconds 2] [--rounds 5] [--record-bytes 1024] [--json]
//                               [--modes direct,topic-100,topic-grouped,topic-mixed] [--root DIR]
//
// The last stdout line is one JSON object: records/s per mode (median over rounds),
// `topic100Cost` = 1 − topic-100 / direct of those medians (the target: ≤ 0.20), and
// `topic100CostPerRound`, the median over rounds of 1 − topic-100 / direct within the round:
// on a loaded machine the rate moves between rounds more than between two modes of one round,
// so many short rounds of `--modes direct,topic-100` give the steadier figure.
// `topic100CpuCost` is the same per-round median from the process's CPU time per record
// (`cpuUsPerRecord`, user + system) instead of wall time: on a shared machine the time this
// process waits for a core counts in neither mode, so it moves less than the rates do.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Engine } from "../engine/mod.ts";

const BINDINGS = 100;
const RECORDS_PER_BATCH = 100;

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "2" },
    rounds: { type: "string", default: "5" },
    "record-bytes": { type: "string", default: "1024" },
    json: { type: "boolean", default: false },
    modes: { type: "string", default: "direct,topic-100,topic-grouped,topic-mixed" },
    root: { type: "string", default: resolve(import.meta.dirname ?? ".", "..") },
  },
});
// `--root DIR` measures the engine of another checkout with this same driver (an A/B).
const { Engine: EngineClass, encodeRecordBatch } = (await import(
  join(values.root, "engine/mod.ts")
)) as typeof import("../engine/mod.ts");
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const recordBytes = Number(values["record-bytes"]);
for (const [name, value] of [
  ["seconds", seconds],
  ["rounds", rounds],
  ["record-bytes", recordBytes],
] as const) {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`--${name} ${value} is invalid`);
}

const encoder = new TextEncoder();
const value = new Uint8Array(recordBytes).fill(120);

function batchOfKeys(keys: string[]): Uint8Array {
  return encodeRecordBatch(keys.map((key) => ({ key: encoder.encode(key), value })));
}

/** One batch per binding, all records with that binding's key. */
const singleKeyBatches = Array.from({ length: BINDINGS }, (_, i) =>
  batchOfKeys(Array.from({ length: RECORDS_PER_BATCH }, () => `orders.k${i}.eu`)),
);
const mixedBatches = Array.from({ length: BINDINGS }, (_, i) =>
  batchOfKeys(
    Array.from({ length: RECORDS_PER_BATCH }, (_, j) => `orders.k${(i + j) % BINDINGS}.eu`),
  ),
);

/** Ten destinations per batch, ten records each, every record its own routing key. */
const groupedBatches = Array.from({ length: BINDINGS }, (_, i) =>
  batchOfKeys(
    Array.from(
      { length: RECORDS_PER_BATCH },
      (_, j) => `orders.k${(i + (j % 10)) % BINDINGS}.r${j}`,
    ),
  ),
);

type Mode = "direct" | "topic-100" | "topic-grouped" | "topic-mixed";
const ALL_MODES: Mode[] = ["direct", "topic-100", "topic-grouped", "topic-mixed"];
const MODES = values.modes.split(",") as Mode[];
for (const mode of MODES) {
  if (!ALL_MODES.includes(mode))
    throw new RangeError(`--modes: ${mode} is not one of ${ALL_MODES}`);
}
const BATCHES: Record<Exclude<Mode, "direct">, Uint8Array[]> = {
  "topic-100": singleKeyBatches,
  "topic-grouped": groupedBatches,
  "topic-mixed": mixedBatches,
};

/**
 * Appends for `seconds`, 64 batches in flight; returns records per second and the process's
 * CPU time (user + system, every thread) per record in microseconds.
 */
async function run(engine: Engine, mode: Mode): Promise<{ rate: number; cpuUs: number }> {
  const endMs = performance.now() + seconds * 1000;
  let batches = 0;
  const cpuStart = process.cpuUsage();
  const startedMs = performance.now();
  while (performance.now() < endMs) {
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 64; i++) {
      const index = (batches + i) % BINDINGS;
      if (mode === "direct") pending.push(engine.append(`t${index}`, 0, singleKeyBatches[index]!));
      else pending.push(engine.publish("x", BATCHES[mode][index]!));
    }
    await Promise.all(pending);
    batches += pending.length;
  }
  const records = batches * RECORDS_PER_BATCH;
  const rate = records / ((performance.now() - startedMs) / 1000);
  const cpu = process.cpuUsage(cpuStart);
  return { rate, cpuUs: (cpu.user + cpu.system) / records };
}

/** The median of `list`; NaN (null in the JSON) for a mode that did not run. */
function median(list: number[]): number {
  const sorted = [...list].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

const dir = mkdtempSync(join(tmpdir(), "sluice-exchange-bench-"));
const rates: Record<Mode, number[]> = {
  direct: [],
  "topic-100": [],
  "topic-grouped": [],
  "topic-mixed": [],
};
const cpuUs: Record<Mode, number[]> = {
  direct: [],
  "topic-100": [],
  "topic-grouped": [],
  "topic-mixed": [],
};
try {
  for (let round = 0; round < rounds; round++) {
    // A fresh directory each round keeps the disk use of a long run bounded.
    const roundDir = join(dir, String(round));
    const engine = await EngineClass.open(roundDir, {
      topicDefaults: { fsync: "never" },
      onWarning: () => {},
    });
    try {
      await engine.declareExchange("x", { type: "topic" });
      for (let i = 0; i < BINDINGS; i++) {
        await engine.createTopic(`t${i}`);
        await engine.bindExchange("x", { topic: `t${i}`, routingKey: `orders.k${i}.*` });
      }
      // One untimed append per topic: a log's first append after open removes its
      // clean-shutdown marker with an fsync, which would otherwise be timed in whichever mode
      // runs first.
      for (let i = 0; i < BINDINGS; i++) await engine.append(`t${i}`, 0, singleKeyBatches[i]!);
      // Odd rounds run the modes in reverse, so that neither always runs first.
      for (const mode of round % 2 === 0 ? MODES : [...MODES].reverse()) {
        const { rate, cpuUs: cpu } = await run(engine, mode);
        rates[mode].push(rate);
        cpuUs[mode].push(cpu);
        if (!values.json) console.log(`round ${round + 1} ${mode}: ${Math.round(rate)} records/s`);
      }
    } finally {
      await engine.close();
      rmSync(roundDir, { recursive: true, force: true });
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const direct = median(rates.direct);
const topic100 = median(rates["topic-100"]);
const result = {
  root: values.root,
  recordBytes,
  recordsPerBatch: RECORDS_PER_BATCH,
  bindings: BINDINGS,
  seconds,
  rounds,
  directRecordsPerSec: Math.round(direct),
  topic100RecordsPerSec: Math.round(topic100),
  topicGroupedRecordsPerSec: Math.round(median(rates["topic-grouped"])),
  topicMixedRecordsPerSec: Math.round(median(rates["topic-mixed"])),
  topic100Cost: Number((1 - topic100 / direct).toFixed(3)),
  topic100CostPerRound: Number(
    median(rates.direct.map((rate, round) => 1 - rates["topic-100"][round]! / rate)).toFixed(3),
  ),
  topic100CpuCost: Number(
    median(cpuUs.direct.map((cpu, round) => 1 - cpu / cpuUs["topic-100"][round]!)).toFixed(3),
  ),
  perRound: rates,
  cpuUsPerRecord: cpuUs,
};
console.log(JSON.stringify(result));

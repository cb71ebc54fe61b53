// bench:queue-ttl: what judging records for message TTL costs a queue's fetch and accept path,
// in one process on the engine (no sockets). Each round fills a topic with 100-record batches,
// then one member fetches (500 records at most) and accepts until the queue is empty, timed;
// after one untimed warm-up round, modes alternate round by round so that a loaded machine
// slows them alike:
//
//   plain        no TTL anywhere (every batch is still walked for a `sluice-ttl-ms` header)
//   queue-ttl    the queue's messageTtlMs set, every record live
//   header-ttl   every record carries a `sluice-ttl-ms` header, every record live
//   ignore       queue-ttl with messageTtlHeader "ignore": judged from batch headers only
//
//   bun bench/queue_ttl.bench.ts [--records 200000] [--rounds 3] [--record-bytes 1024]
//                                [--root DIR] [--modes plain,queue-ttl] [--compression gzip]
//                                [--batch-records 100] [--fetch-records 500] [--json]
//
// `--batch-records 50 --fetch-records 30` is near queue-1kb's shape at 40,000 records a second
// (0.017 Produce requests a record: a keyless producer's lingered batch goes to one partition;
// 0.034 QueueFetch requests a record); smaller batches weigh each batch's judging more.
//
// `--root` loads the engine from another checkout (an A/B against code without TTL, which
// only runs `plain`). The last stdout line is one JSON object: accepted records/s per mode
// (median over rounds).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    records: { type: "string", default: "200000" },
    rounds: { type: "string", default: "3" },
    "record-bytes": { type: "string", default: "1024" },
    root: { type: "string", default: resolve(import.meta.dirname ?? ".", "..") },
    modes: { type: "string", default: "plain,queue-ttl,header-ttl" },
    compression: { type: "string", default: "none" },
    "batch-records": { type: "string", default: "100" },
    "fetch-records": { type: "string", default: "500" },
    json: { type: "boolean", default: false },
  },
});
const records = Number(values.records);
/** Records per appended batch, and the most one fetch takes. */
const RECORDS_PER_BATCH = Number(values["batch-records"]);
const FETCH_RECORDS = Number(values["fetch-records"]);
const rounds = Number(values.rounds);
const recordBytes = Number(values["record-bytes"]);
for (const [name, value] of [
  ["records", records],
  ["rounds", rounds],
  ["record-bytes", recordBytes],
  ["batch-records", RECORDS_PER_BATCH],
  ["fetch-records", FETCH_RECORDS],
] as const) {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`--${name} ${value}`);
}
const modes = values.modes.split(",");
for (const mode of modes) {
  const known = ["plain", "queue-ttl", "header-ttl", "ignore"];
  if (!known.includes(mode)) throw new RangeError(`mode ${mode}`);
}

// biome-ignore lint/suspicious/noExplicitAny: the engine may come from another checkout.
const engineModule: any = await import(join(values.root, "engine/mod.ts"));
const { Engine, encodeRecordBatch } = engineModule;

const encoder = new TextEncoder();
const value = new Uint8Array(recordBytes).fill(120);

function batchFor(mode: string): Uint8Array {
  const headers =
    mode === "header-ttl" ? [{ key: "sluice-ttl-ms", value: encoder.encode("3600000") }] : [];
  const list = Array.from({ length: RECORDS_PER_BATCH }, (_, i) => ({
    key: encoder.encode(`k${i}`),
    value,
    headers,
  }));
  return encodeRecordBatch(list, { timestamp: Date.now(), compression: values.compression });
}

/** Accepted records per second for one mode: fill, then fetch and accept everything. */
async function runOnce(mode: string): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-ttl-"));
  const engine = await Engine.open(dir, {});
  try {
    await engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
    const ttl =
      mode === "queue-ttl"
        ? { messageTtlMs: 3_600_000 }
        : mode === "ignore"
          ? { messageTtlMs: 3_600_000, messageTtlHeader: "ignore" }
          : {};
    await engine.declareQueue("q", { topic: "t", fsync: "never", maxInFlight: 100_000, ...ttl });
    const batch = batchFor(mode);
    for (let sent = 0; sent < records; sent += RECORDS_PER_BATCH) {
      await engine.append("t", 0, batch.slice());
    }
    const member = engine.joinQueue("q");
    const started = performance.now();
    let accepted = 0;
    for (let fetches = 0; accepted < records && fetches < records; fetches++) {
      const result = engine.fetchQueue("q", member, { maxRecords: FETCH_RECORDS });
      const acks = [];
      for (const part of result.partitions) {
        for (const range of part.ranges) {
          acks.push({
            partition: part.partition,
            first: range.first,
            last: range.last,
            type: "accept",
          });
          accepted += range.last - range.first + 1;
        }
      }
      if (acks.length > 0) await engine.ackQueue("q", member, acks);
    }
    if (accepted !== records) throw new Error(`accepted ${accepted} of ${records}`);
    return records / ((performance.now() - started) / 1000);
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// One untimed round first: the first engine of a process runs cold (JIT), whatever its mode.
for (const mode of modes) await runOnce(mode);
const perMode = new Map<string, number[]>(modes.map((mode) => [mode, []]));
for (let round = 0; round < rounds; round++) {
  for (const mode of modes) {
    const rate = await runOnce(mode);
    perMode.get(mode)!.push(rate);
    console.error(`round ${round + 1} ${mode}: ${Math.round(rate)} records/s`);
  }
}
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
const summary = Object.fromEntries(
  [...perMode].map(([mode, rates]) => [mode, Math.round(median(rates))]),
);
const { compression } = values;
console.log(
  JSON.stringify({ root: values.root, records, recordBytes, compression, rounds, ...summary }),
);

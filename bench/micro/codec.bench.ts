// Micro-benchmarks of the record codec and the batch checks, on a 1 MiB batch of 1 KiB records,
// uncompressed. Prints mitata's table, then each case's mean time and throughput in MB/s
// (10^6 bytes per second of batch bytes), so runs on different machines compare directly.
//
//   bun bench/micro/codec.bench.ts          (npm run bench:micro)

import { crc32c } from "@node-rs/crc32";
import { bench, do_not_optimize, run } from "mitata";
import { checkBatch } from "../../record/mod.ts";
import { decodeRecordBatch, encodeRecordBatch, type RecordInput } from "../../record/mod.ts";

const RECORD_VALUE_BYTES = 1024;
const RECORD_COUNT = 1024;
const TIMESTAMP_MS = 1_700_000_000_000;

/** Pseudo-random bytes (an LCG): incompressible enough to be honest, the same on every run. */
function filler(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    bytes[i] = state >>> 24;
  }
  return bytes;
}

const records: RecordInput[] = Array.from({ length: RECORD_COUNT }, (_, i) => ({
  key: null,
  value: filler(RECORD_VALUE_BYTES, i + 1),
}));
const options = { timestamp: TIMESTAMP_MS };
const batch = encodeRecordBatch(records, options);
const mebibyte = filler(1024 * 1024, 7);
const checkOptions = { sizeMax: 2 * batch.length, checkCrc: true };

if (decodeRecordBatch(batch).records.length !== RECORD_COUNT) throw new Error("bad round trip");
if (checkBatch(batch, 0, batch.length, checkOptions) !== "ok") throw new Error("bad batch");

/** Bytes each case moves, by name: the batch for the codec and checks, 1 MiB for the CRC. */
const caseBytes = new Map<string, number>();

function measured(name: string, bytes: number, fn: () => unknown): void {
  caseBytes.set(name, bytes);
  bench(name, fn);
}

measured(`encodeRecordBatch ${RECORD_COUNT} x 1 KiB`, batch.length, () =>
  do_not_optimize(encodeRecordBatch(records, options)),
);
measured(`decodeRecordBatch ${RECORD_COUNT} x 1 KiB`, batch.length, () =>
  do_not_optimize(decodeRecordBatch(batch)),
);
measured("checkBatch with CRC, 1 MiB batch", batch.length, () =>
  do_not_optimize(checkBatch(batch, 0, batch.length, checkOptions)),
);
measured("crc32c over 1 MiB", mebibyte.length, () => do_not_optimize(crc32c(mebibyte)));

const { benchmarks } = await run();

console.log(`\nbatch: ${RECORD_COUNT} records of ${RECORD_VALUE_BYTES} B, ${batch.length} bytes`);
for (const trial of benchmarks) {
  const stats = trial.runs[0]?.stats;
  const bytes = caseBytes.get(trial.alias);
  if (stats === undefined || bytes === undefined) continue;
  const megabytesPerSecond = (bytes / stats.avg) * 1e3;
  const line = `${trial.alias.padEnd(36)} ${(stats.avg / 1e3).toFixed(1).padStart(9)} µs/op`;
  console.log(`${line} ${megabytesPerSecond.toFixed(0).padStart(7)} MB/s`);
}

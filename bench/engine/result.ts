// The result of one storage-engine benchmark run: headline figures at the top level of one flat
// JSON object (what scripts compare), the ratios to dd and to each other that the targets are
// stated in, and every phase's details underneath.

import type { AppendFigures } from "./append_phase.ts";
import type { DdSummary } from "./dd.ts";
import type { MachineInfo } from "./machine.ts";
import type { EngineBenchOptions } from "./options.ts";
import type { LookupFigures, ReadPhaseFigures } from "./read_phase.ts";
import type { RecoverFigures } from "./recover_phase.ts";
import { type BatchPool, formatBytes, RECORD_VALUE_BYTES, round } from "./workload.ts";

export type PhaseFigures = {
  date: string;
  machine: MachineInfo & { loadAverage1mEnd: number };
  options: EngineBenchOptions;
  pool: BatchPool;
  smallPool: BatchPool;
  readMaxBytes: number;
  dd: DdSummary;
  append: AppendFigures;
  appendFsync: AppendFigures;
  read: ReadPhaseFigures;
  smallLookup: LookupFigures & { openMs: number; firstAfterOpen: LookupFigures };
  recover: RecoverFigures;
};

export type TargetCheck = { name: string; value: number; target: string; pass: boolean };

export type EngineBenchResult = {
  benchmark: "bench:engine";
  date: string;
  machine: PhaseFigures["machine"];
  params: Record<string, number | string>;
  units: string;
  appendMBps: number;
  appendBytes: number;
  appendFsyncMBps: number;
  appendFsyncBytes: number;
  readMBps: number;
  readBytes: number;
  readWhat: string;
  readFirstMBps: number;
  readChecksumMBps: number;
  readActiveSegmentMBps: number;
  readActiveSegmentWhat: string;
  lookupNs: number;
  lookupP99Ns: number;
  lookupWhat: string;
  lookupSmallBatchNs: number;
  lookupSmallBatchP99Ns: number;
  lookupSmallBatchWhat: string;
  lookupSmallBatchFirstNs: number;
  recoverMs: number;
  recoverBytes: number;
  recoverWhat: string;
  openCleanMs: number;
  openCleanSmallBatchMs: number;
  ddWriteMBps: number;
  ddReadMBps: number;
  ddBytes: number;
  ddWriteSegmentedMBps: number;
  appendVsDd: number;
  appendVsDdSegmented: number;
  readVsDd: number;
  fsyncVsAppend: number;
  targets: TargetCheck[];
  details: Omit<PhaseFigures, "date" | "machine" | "options" | "pool" | "smallPool">;
};

function params(f: PhaseFigures): Record<string, number | string> {
  return {
    bytes: f.options.bytes,
    fsyncBytes: f.options.fsyncBytes,
    recoverBytesTarget: f.options.recoverBytes,
    recordValueBytes: RECORD_VALUE_BYTES,
    recordsPerBatch: f.pool.recordsPerBatch,
    batchBytes: f.pool.batchBytes,
    poolBatches: f.pool.batches.length,
    inFlight: f.options.inFlight,
    readMaxBytes: f.readMaxBytes,
    lookups: f.options.lookups,
    engineConfig: "defaults (segmentBytes 1 GiB, maxBatchBytes 1 MiB, indexIntervalBytes 4 KiB)",
    dir: f.options.dir,
  };
}

function lookupWhat(f: PhaseFigures): string {
  return (
    `mean wall time of log.read(randomOffset, 1) over ${f.read.lookup.count} seeded random ` +
    `offsets of the ${formatBytes(f.append.bytes)} log after a fresh open (page cache warm); ` +
    "each returns the whole batch holding the offset (" +
    `${formatBytes(f.read.lookup.viewBytesMean)}), after the catch-up reads have had every ` +
    "batch's CRC-32C checked once (as appending or the scrubber does in a running broker)"
  );
}

function smallLookupWhat(f: PhaseFigures): string {
  return (
    `as lookupNs, on a log of one-record batches (${f.smallPool.batchBytes} bytes each, ` +
    "16 MiB segments): the segment search, the sparse-index search and the header skip to " +
    "the batch, after one catch-up read checked every batch; lookupSmallBatchFirstNs is the " +
    "same right after the open, when a read checks the CRC of each batch it reaches first"
  );
}

function targetChecks(r: EngineBenchResult): TargetCheck[] {
  return [
    { name: "appendVsDd", value: r.appendVsDd, target: ">= 0.9", pass: r.appendVsDd >= 0.9 },
    {
      name: "appendVsDdSegmented",
      value: r.appendVsDdSegmented,
      target: ">= 0.9",
      pass: r.appendVsDdSegmented >= 0.9,
    },
    { name: "readVsDd", value: r.readVsDd, target: ">= 0.5", pass: r.readVsDd >= 0.5 },
    {
      name: "fsyncVsAppend",
      value: r.fsyncVsAppend,
      target: ">= 0.6",
      pass: r.fsyncVsAppend >= 0.6,
    },
    { name: "lookupNs", value: r.lookupNs, target: "<= 20000", pass: r.lookupNs <= 20_000 },
    {
      name: "lookupSmallBatchNs",
      value: r.lookupSmallBatchNs,
      target: "<= 2000",
      pass: r.lookupSmallBatchNs <= 2000,
    },
  ];
}

export function summarize(f: PhaseFigures): EngineBenchResult {
  const { date, machine, options, pool, smallPool, ...details } = f;
  const result: EngineBenchResult = {
    benchmark: "bench:engine",
    date,
    machine,
    params: params(f),
    units: "MB/s with MB = 10^6 bytes (as dd); ns and ms of wall time",
    appendMBps: f.append.mbps,
    appendBytes: f.append.bytes,
    appendFsyncMBps: f.appendFsync.mbps,
    appendFsyncBytes: f.appendFsync.bytes,
    readMBps: f.read.read.mbps,
    readBytes: f.read.read.bytes,
    readWhat:
      "catch-up read of the whole log in 1 MiB reads after a fresh open, each view copied " +
      "out into one reused buffer; second pass, once the first (readFirstMBps) has had each " +
      "batch's CRC-32C checked, as appending or the scrubber does in a running broker",
    readFirstMBps: f.read.firstRead.mbps,
    readChecksumMBps: f.read.checksum.mbps,
    readActiveSegmentMBps: f.recover.activeRead.mbps,
    readActiveSegmentWhat:
      `catch-up read, as readMBps, of the recovered ${formatBytes(f.recover.logBytes)} log: ` +
      "one active segment, served by positional reads (sealed segments are mapped)",
    lookupNs: f.read.lookup.meanNs,
    lookupP99Ns: f.read.lookup.p99Ns,
    lookupWhat: lookupWhat(f),
    lookupSmallBatchNs: f.smallLookup.meanNs,
    lookupSmallBatchP99Ns: f.smallLookup.p99Ns,
    lookupSmallBatchWhat: smallLookupWhat(f),
    lookupSmallBatchFirstNs: f.smallLookup.firstAfterOpen.meanNs,
    recoverMs: f.recover.ms,
    recoverBytes: f.recover.scannedBytes,
    recoverWhat:
      "PartitionLog.open of a log whose writer was SIGKILLed mid-append with fsync never: " +
      "no clean-shutdown marker, recovery point 0; recoverBytes = bytes the open read",
    openCleanMs: f.read.openMs,
    openCleanSmallBatchMs: f.smallLookup.openMs,
    ddWriteMBps: f.dd.writeMBps,
    ddReadMBps: f.dd.readMBps,
    ddBytes: f.dd.bytes,
    ddWriteSegmentedMBps: f.dd.segmented.writeMBps,
    appendVsDd: round(f.append.mbps / f.dd.writeMBps, 3),
    appendVsDdSegmented: round(f.append.mbps / f.dd.segmented.writeMBps, 3),
    readVsDd: round(f.read.read.mbps / f.dd.readMBps, 3),
    fsyncVsAppend: round(f.appendFsync.mbps / f.append.mbps, 3),
    targets: [],
    details,
  };
  result.targets = targetChecks(result);
  return result;
}

/** A short table for people; the JSON line that follows is for scripts. */
export function printSummary(r: EngineBenchResult): void {
  const rows: [string, string][] = [
    ["append (fsync never)", `${r.appendMBps} MB/s  (${formatBytes(r.appendBytes)})`],
    ["append (fsync always)", `${r.appendFsyncMBps} MB/s  (${formatBytes(r.appendFsyncBytes)})`],
    ["catch-up read, first", `${r.readFirstMBps} MB/s  (engine checks each batch's CRC)`],
    ["catch-up read", `${r.readMBps} MB/s  (+CRC-32C pass: ${r.readChecksumMBps} MB/s)`],
    ["lookup, 1 MiB batches", `${r.lookupNs} ns mean, ${r.lookupP99Ns} ns p99`],
    [
      "lookup, 1-record batches",
      `${r.lookupSmallBatchNs} ns mean, ${r.lookupSmallBatchP99Ns} ns p99 ` +
        `(first after open: ${r.lookupSmallBatchFirstNs} ns)`,
    ],
    ["recover", `${r.recoverMs} ms, scanned ${formatBytes(r.recoverBytes)}`],
    ["catch-up read, active seg.", `${r.readActiveSegmentMBps} MB/s`],
    ["clean open", `${r.openCleanMs} ms (1-record batches: ${r.openCleanSmallBatchMs} ms)`],
    ["dd write / read (mean)", `${r.ddWriteMBps} / ${r.ddReadMBps} MB/s`],
    ["dd write, fsync per segment", `${r.ddWriteSegmentedMBps} MB/s`],
  ];
  const lines = rows.map(([name, value]) => `  ${name.padEnd(28)} ${value}`);
  for (const t of r.targets) {
    lines.push(`  ${t.name.padEnd(28)} ${t.value} (target ${t.target}) ${t.pass ? "ok" : "MISS"}`);
  }
  process.stdout.write(
    `sluice storage engine, ${r.machine.runtime}, ${r.date}\n${lines.join("\n")}\n`,
  );
}

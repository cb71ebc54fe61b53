// The storage-engine benchmark: how close the engine comes to the disk and the page cache on
// this machine. It runs dd on the same file system in the same run and reports the engine's
// figures as ratios to dd's, so results from noisy or different machines stay comparable.
//
//   npm run bench:engine -- [--bytes 4G] [--fsync-bytes 1G] [--json] [--dir DIR]
//
//   phase         what is timed
//   -----------   ----------------------------------------------------------------------------
//   dd            dd bs=1M conv=fdatasync of --bytes, then dd of the file to /dev/null; run
//                 before the append and after the reads; then once more written in
//                 segment-sized (1 GiB) pieces, each with its own fdatasync, as the engine does
//   append        --bytes of 1 KiB records in ~1 MiB batches, fsync "never", --in-flight
//                 appends un-awaited, clock stopped after a final flush() (fdatasync)
//   read          fresh open of that log, catch-up read from offset 0 in 1 MiB reads, counting
//                 bytes; then again with a CRC-32C over every view (proof the bytes are there)
//   lookup        read(randomOffset, 1) on that log, and on a log of one-record batches
//   fsync append  --fsync-bytes as for append, with fsync "always" (group commit)
//   recover       open of a log left by a child killed with SIGKILL mid-append; then a
//                 catch-up read of it (one active segment: positional reads, no mapping)
//
// Progress goes to stderr; the last stdout line is one JSON object. Every log lives in a
// temporary directory that is removed at the end, also on error or Ctrl-C.

import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { LOG_CONFIG_DEFAULTS } from "../engine/mod.ts";
import { appendPhase } from "./engine/append_phase.ts";
import { DD_BLOCK_SIZES, ddPhase, ddSegmentedWrite, summarizeDd } from "./engine/dd.ts";
import { checkFreeSpace, machineInfo } from "./engine/machine.ts";
import {
  ENGINE_BENCH_USAGE,
  type EngineBenchOptions,
  parseEngineBenchArgs,
} from "./engine/options.ts";
import { lookupPhase, READ_MAX_BYTES, readPhase } from "./engine/read_phase.ts";
import { recoverPhase } from "./engine/recover_phase.ts";
import { type EngineBenchResult, printSummary, summarize } from "./engine/result.ts";
import {
  BATCH_BYTES_LIMIT,
  type BatchPool,
  formatBytes,
  makeBatchPool,
  progress,
  RECORD_VALUE_BYTES,
} from "./engine/workload.ts";

const MIB = 1024 * 1024;
/** The one-record-batch log for lookups: small, in segments small enough that most are sealed. */
const SMALL_LOG_BYTES = 64 * MIB;
const SMALL_LOG_SEGMENT_BYTES = 16 * MIB;
/** Room for index files, the recovery child overshooting its target, and the file system. */
const SPACE_MARGIN_BYTES = 512 * MIB;

function spaceNeeded(options: EngineBenchOptions): number {
  // Phases run one after another and each deletes its files, so the largest one decides.
  const largest = Math.max(options.bytes, options.fsyncBytes, 2 * options.recoverBytes);
  return Math.ceil(largest * 1.05) + SPACE_MARGIN_BYTES;
}

/** dd, then the big log's append, reads and lookups, then dd again: the headline figures. */
async function measureBigLog(root: string, options: EngineBenchOptions, pool: BatchPool) {
  // dd runs before the engine's append and again after its reads: the figures are ratios to
  // dd, and on a shared machine the disk's speed drifts, so both runs count.
  const ddBefore = DD_BLOCK_SIZES.map((block) => ddPhase(root, options.bytes, block));
  const dir = join(root, "big-0");
  progress(`append: ${formatBytes(options.bytes)} with fsync "never"`);
  const append = await appendPhase({
    dir,
    pool,
    targetBytes: options.bytes,
    fsync: "never",
    inFlight: options.inFlight,
  });
  const ddBeforeMBps = ddBefore.map((run) => run.writeMBps).join(" / ");
  progress(`append: ${append.mbps} MB/s (dd write before it, bs 1M / 256K: ${ddBeforeMBps} MB/s)`);
  const read = await readPhase(dir, options.lookups);
  fs.rmSync(dir, { recursive: true, force: true });
  const ddAfter = DD_BLOCK_SIZES.map((block) => ddPhase(root, options.bytes, block));
  const ddSegmented = DD_BLOCK_SIZES.map((blockBytes) =>
    ddSegmentedWrite(root, options.bytes, {
      pieceBytes: LOG_CONFIG_DEFAULTS.segmentBytes,
      blockBytes,
    }),
  );
  return { dd: summarizeDd([...ddBefore, ...ddAfter], ddSegmented), append, read };
}

/** Lookups where the index, not the CRC of a 1 MiB batch, decides: one record per batch. */
async function measureSmallBatchLookups(root: string, options: EngineBenchOptions) {
  const dir = join(root, "small-0");
  // A batch limit just above one record's batch size gives one 1 KiB record per batch.
  const smallPool = makeBatchPool(RECORD_VALUE_BYTES + 128);
  const bytes = Math.min(SMALL_LOG_BYTES, options.bytes);
  progress(`lookup: ${formatBytes(bytes)} log of one-record batches`);
  await appendPhase({
    dir,
    pool: smallPool,
    targetBytes: bytes,
    fsync: "never",
    inFlight: options.inFlight,
    config: { segmentBytes: SMALL_LOG_SEGMENT_BYTES },
  });
  const smallLookup = await lookupPhase(dir, options.lookups);
  fs.rmSync(dir, { recursive: true, force: true });
  return { smallPool, smallLookup };
}

async function runPhases(root: string, options: EngineBenchOptions): Promise<EngineBenchResult> {
  const machine = machineInfo(root);
  const date = new Date().toISOString();
  const pool = makeBatchPool(BATCH_BYTES_LIMIT);
  progress(
    `pool: ${pool.batches.length} batches of ${pool.recordsPerBatch} records, ` +
      `${pool.batchBytes} bytes each; ${options.inFlight} appends in flight`,
  );
  const big = await measureBigLog(root, options, pool);
  const small = await measureSmallBatchLookups(root, options);

  const fsyncDir = join(root, "fsync-0");
  progress(`append: ${formatBytes(options.fsyncBytes)} with fsync "always"`);
  const appendFsync = await appendPhase({
    dir: fsyncDir,
    pool,
    targetBytes: options.fsyncBytes,
    fsync: "always",
    inFlight: options.inFlight,
  });
  progress(`append fsync always: ${appendFsync.mbps} MB/s`);
  fs.rmSync(fsyncDir, { recursive: true, force: true });

  const recover = await recoverPhase(join(root, "crash-0"), options.recoverBytes, options.inFlight);
  return summarize({
    date,
    machine: { ...machine, loadAverage1mEnd: os.loadavg()[0] ?? 0 },
    options,
    pool,
    readMaxBytes: READ_MAX_BYTES,
    ...big,
    ...small,
    appendFsync,
    recover,
  });
}

async function main(): Promise<number> {
  const options = parseEngineBenchArgs(process.argv.slice(2));
  if (options.help) {
    process.stderr.write(`${ENGINE_BENCH_USAGE}\n`);
    return 0;
  }
  fs.mkdirSync(options.dir, { recursive: true });
  const needed = spaceNeeded(options);
  const available = checkFreeSpace(options.dir, needed);
  progress(
    `disk: ${formatBytes(available)} available in ${options.dir}, ${formatBytes(needed)} needed`,
  );
  const root = fs.mkdtempSync(join(options.dir, "sluice-bench-engine-"));
  const removeRoot = () => fs.rmSync(root, { recursive: true, force: true });
  const onSignal = (signal: NodeJS.Signals) => {
    progress(`${signal}: removing ${root}`);
    removeRoot();
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const result = await runPhases(root, options);
    if (!options.json) printSummary(result);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  } finally {
    removeRoot();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

try {
  process.exitCode = await main();
} catch (error) {
  // A bad flag is the user's mistake, told in one line; anything else gets its stack.
  const shown = error instanceof RangeError ? error.message : error;
  progress(`failed: ${shown instanceof Error ? (shown.stack ?? shown.message) : String(shown)}`);
  process.exitCode = 1;
}

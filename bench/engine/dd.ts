// The yardstick: dd writing the same number of bytes to the same file system with
// conv=fdatasync (the clock includes the final fdatasync, as the append figure does), then
// reading the file back to /dev/null right away (from the page cache, as the engine's
// catch-up read does). Rates are computed from dd's own byte count and seconds.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { mbPerSecond, nowMs, progress, round } from "./workload.ts";

export type DdFigures = {
  bytes: number;
  /** dd's bs: the write size of each write(2) call. */
  blockBytes: number;
  writeSeconds: number;
  writeMBps: number;
  readSeconds: number;
  readMBps: number;
};

export type DdWriteFigures = {
  bytes: number;
  blockBytes: number;
  writeSeconds: number;
  writeMBps: number;
  pieceBytes: number;
};

const DD_BLOCK_BYTES = 1024 * 1024;
/**
 * dd writes at both block sizes and the faster counts: on VMs whose host reclaims free guest
 * memory, 1 MiB writes get large page-cache folios that are slow to touch the first time
 * (measured: bs=1M 410-891 MB/s, bs=256K 1,500-1,600 MB/s on one machine), so one block
 * size alone can make the yardstick, and every ratio to it, swing 2x.
 */
export const DD_BLOCK_SIZES = [DD_BLOCK_BYTES, 256 * 1024] as const;

/** dd's environment: LC_ALL=C, as a locale with a decimal comma would change its summary. */
export function ddEnvironment(): NodeJS.ProcessEnv {
  return { ...process.env, LC_ALL: "C" };
}

/** The bytes and seconds of dd's summary line on stderr, if it printed one. */
export function ddSummary(stderr: string): { bytes: number; seconds: number } | undefined {
  // "4294967296 bytes (4.3 GB, 4.0 GiB) copied, 5.01 s, 857 MB/s"
  const match = /(\d+) bytes .*copied, ([\d.e+-]+) s/.exec(stderr);
  return match === null ? undefined : { bytes: Number(match[1]), seconds: Number(match[2]) };
}

/** Runs dd and returns the bytes and seconds from its summary line (else wall time). */
function runDd(args: string[], expectedBytes: number): { bytes: number; seconds: number } {
  const startMs = nowMs();
  const run = spawnSync("dd", args, { env: ddEnvironment(), encoding: "utf8" });
  const wallSeconds = (nowMs() - startMs) / 1000;
  if (run.error !== undefined) throw new Error(`dd could not start: ${run.error.message}`);
  if (run.status !== 0) throw new Error(`dd ${args.join(" ")} failed: ${run.stderr}`);
  return ddSummary(run.stderr) ?? { bytes: expectedBytes, seconds: wallSeconds };
}

/**
 * dd write (conv=fdatasync) and read of `bytes` (rounded up to whole MiB) in `dir`, in blocks
 * of `blockBytes` (a divisor of 1 MiB).
 */
export function ddPhase(dir: string, bytes: number, blockBytes = DD_BLOCK_BYTES): DdFigures {
  const file = join(dir, "dd.bin");
  const count = Math.ceil(bytes / DD_BLOCK_BYTES) * (DD_BLOCK_BYTES / blockBytes);
  const total = count * blockBytes;
  try {
    progress(`dd: writing ${total / DD_BLOCK_BYTES} MiB, bs=${blockBytes}, conv=fdatasync`);
    const write = runDd(
      ["if=/dev/zero", `of=${file}`, `bs=${blockBytes}`, `count=${count}`, "conv=fdatasync"],
      total,
    );
    progress(`dd: write ${mbPerSecond(write.bytes, write.seconds)} MB/s; reading it back`);
    const read = runDd([`if=${file}`, "of=/dev/null", "bs=1M"], total);
    progress(`dd: read ${mbPerSecond(read.bytes, read.seconds)} MB/s`);
    return {
      bytes: write.bytes,
      blockBytes,
      writeSeconds: round(write.seconds, 3),
      writeMBps: mbPerSecond(write.bytes, write.seconds),
      readSeconds: round(read.seconds, 3),
      readMBps: mbPerSecond(read.bytes, read.seconds),
    };
  } finally {
    fs.rmSync(file, { force: true });
  }
}

/**
 * dd writing the same bytes in pieces of `pieceBytes`, each with its own conv=fdatasync, timed
 * over all pieces. The engine fsyncs each segment when it rolls (in the background, while
 * appends go on), and on some machines that beats one fdatasync at the end by a wide margin:
 * this is the stronger yardstick for the append figure.
 */
export function ddSegmentedWrite(
  dir: string,
  bytes: number,
  options: { pieceBytes: number; blockBytes: number },
): DdWriteFigures {
  const { blockBytes } = options;
  const file = join(dir, "dd-segmented.bin");
  const count = Math.ceil(bytes / DD_BLOCK_BYTES) * (DD_BLOCK_BYTES / blockBytes);
  const pieceCount = Math.max(1, Math.floor(options.pieceBytes / blockBytes));
  progress(
    `dd: writing ${(count * blockBytes) / DD_BLOCK_BYTES} MiB in ` +
      `${(pieceCount * blockBytes) / DD_BLOCK_BYTES} MiB pieces, bs=${blockBytes}, ` +
      "conv=fdatasync each",
  );
  let written = 0;
  let seconds = 0;
  try {
    for (let seek = 0; seek < count; seek += pieceCount) {
      const blocks = Math.min(pieceCount, count - seek);
      const args = [`of=${file}`, `bs=${blockBytes}`, `count=${blocks}`, `seek=${seek}`];
      const piece = runDd(["if=/dev/zero", ...args, "conv=fdatasync,notrunc"], blocks * blockBytes);
      written += piece.bytes;
      seconds += piece.seconds;
    }
  } finally {
    fs.rmSync(file, { force: true });
  }
  progress(`dd: segmented write ${mbPerSecond(written, seconds)} MB/s`);
  return {
    bytes: written,
    blockBytes,
    writeSeconds: round(seconds, 3),
    writeMBps: mbPerSecond(written, seconds),
    pieceBytes: pieceCount * blockBytes,
  };
}

export type DdSummary = {
  bytes: number;
  /**
   * The write rate of the faster block size, each block size's rate the mean of its runs; the
   * read rate the mean of all runs. On a shared machine the runs differ, so all are kept.
   */
  writeMBps: number;
  readMBps: number;
  runs: DdFigures[];
  /** The write in segment-sized pieces, each fdatasynced, at the faster block size. */
  segmented: DdWriteFigures;
  segmentedRuns: DdWriteFigures[];
};

/** The faster block size's mean write rate over runs, and the mean read rate of all runs. */
export function summarizeDd(runs: DdFigures[], segmentedRuns: DdWriteFigures[]): DdSummary {
  const mean = (of: DdFigures[], pick: (run: DdFigures) => number) =>
    round(of.reduce((sum, run) => sum + pick(run), 0) / Math.max(1, of.length), 1);
  const writeByBlock = DD_BLOCK_SIZES.map((block) =>
    mean(
      runs.filter((run) => run.blockBytes === block),
      (run) => run.writeMBps,
    ),
  );
  const fastest = segmentedRuns.reduce((best, run) =>
    run.writeMBps > best.writeMBps ? run : best,
  );
  return {
    bytes: runs[0]?.bytes ?? 0,
    writeMBps: Math.max(...writeByBlock),
    readMBps: mean(runs, (run) => run.readMBps),
    runs,
    segmented: fastest,
    segmentedRuns,
  };
}

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
  writeSeconds: number;
  writeMBps: number;
  readSeconds: number;
  readMBps: number;
};

export type DdWriteFigures = {
  bytes: number;
  writeSeconds: number;
  writeMBps: number;
  pieceBytes: number;
};

const DD_BLOCK_BYTES = 1024 * 1024;

/** Runs dd and returns the bytes and seconds from its summary line (else wall time). */
function runDd(args: string[], expectedBytes: number): { bytes: number; seconds: number } {
  const startMs = nowMs();
  // LC_ALL=C: a locale with a decimal comma would change the summary line.
  const run = spawnSync("dd", args, { env: { ...process.env, LC_ALL: "C" }, encoding: "utf8" });
  const wallSeconds = (nowMs() - startMs) / 1000;
  if (run.error !== undefined) throw new Error(`dd could not start: ${run.error.message}`);
  if (run.status !== 0) throw new Error(`dd ${args.join(" ")} failed: ${run.stderr}`);
  // "4294967296 bytes (4.3 GB, 4.0 GiB) copied, 5.01 s, 857 MB/s"
  const match = /(\d+) bytes .*copied, ([\d.e+-]+) s/.exec(run.stderr);
  if (match === null) return { bytes: expectedBytes, seconds: wallSeconds };
  return { bytes: Number(match[1]), seconds: Number(match[2]) };
}

/** dd write (conv=fdatasync) and read of `bytes` (rounded up to whole MiB) in `dir`. */
export function ddPhase(dir: string, bytes: number): DdFigures {
  const file = join(dir, "dd.bin");
  const count = Math.ceil(bytes / DD_BLOCK_BYTES);
  try {
    progress(`dd: writing ${count} MiB with conv=fdatasync`);
    const write = runDd(
      ["if=/dev/zero", `of=${file}`, "bs=1M", `count=${count}`, "conv=fdatasync"],
      count * DD_BLOCK_BYTES,
    );
    progress(`dd: write ${mbPerSecond(write.bytes, write.seconds)} MB/s; reading it back`);
    const read = runDd([`if=${file}`, "of=/dev/null", "bs=1M"], count * DD_BLOCK_BYTES);
    progress(`dd: read ${mbPerSecond(read.bytes, read.seconds)} MB/s`);
    return {
      bytes: write.bytes,
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
export function ddSegmentedWrite(dir: string, bytes: number, pieceBytes: number): DdWriteFigures {
  const file = join(dir, "dd-segmented.bin");
  const count = Math.ceil(bytes / DD_BLOCK_BYTES);
  const pieceCount = Math.max(1, Math.floor(pieceBytes / DD_BLOCK_BYTES));
  progress(`dd: writing ${count} MiB in ${pieceCount} MiB pieces, conv=fdatasync each`);
  let written = 0;
  let seconds = 0;
  try {
    for (let seek = 0; seek < count; seek += pieceCount) {
      const blocks = Math.min(pieceCount, count - seek);
      const args = [`of=${file}`, "bs=1M", `count=${blocks}`, `seek=${seek}`];
      const piece = runDd(
        ["if=/dev/zero", ...args, "conv=fdatasync,notrunc"],
        blocks * DD_BLOCK_BYTES,
      );
      written += piece.bytes;
      seconds += piece.seconds;
    }
  } finally {
    fs.rmSync(file, { force: true });
  }
  progress(`dd: segmented write ${mbPerSecond(written, seconds)} MB/s`);
  return {
    bytes: written,
    writeSeconds: round(seconds, 3),
    writeMBps: mbPerSecond(written, seconds),
    pieceBytes: pieceCount * DD_BLOCK_BYTES,
  };
}

export type DdSummary = {
  bytes: number;
  /** Means over the runs; on a shared machine the runs differ, so all are kept. */
  writeMBps: number;
  readMBps: number;
  runs: DdFigures[];
  /** The write in segment-sized pieces, each fdatasynced (see ddSegmentedWrite). */
  segmented: DdWriteFigures;
};

/** Means of several dd runs (one before and one after the engine's append, for fairness). */
export function summarizeDd(runs: DdFigures[], segmented: DdWriteFigures): DdSummary {
  const mean = (pick: (run: DdFigures) => number) =>
    round(runs.reduce((sum, run) => sum + pick(run), 0) / runs.length, 1);
  return {
    bytes: runs[0]?.bytes ?? 0,
    writeMBps: mean((run) => run.writeMBps),
    readMBps: mean((run) => run.readMBps),
    runs,
    segmented,
  };
}

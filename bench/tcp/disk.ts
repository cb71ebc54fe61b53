// The disk yardstick of bench:tcp: how fast this machine's disk takes and gives back bytes
// with O_DIRECT in the broker's data directory, measured in the same run as the broker's
// figures. The broker writes the publish phase's topics (fsync never, acks=1) with O_DIRECT
// (`sluice serve --direct-writes all`, the default, on Linux), and its catch-up fetches read
// bytes the page cache does not hold with O_DIRECT too, so on a machine whose disk is slower
// than loopback the disk, not sluice, bounds publishMBps and consumeMBps. The loopback ratio
// alone cannot tell the two apart; publishVsDisk and consumeVsDisk can.
//
// dd writes `bytes` in 1 MiB blocks with oflag=direct, once as one stream and once as two
// streams of half each at the same time (the broker has several writes in flight: 16
// partitions, two 1 MiB pieces each); the faster counts. The reads go the same way over the
// files just written (iflag=direct: from the disk, not the page cache). The VM's disk swings
// several-fold within minutes (bench/RESULTS.md), so both runs are kept and reported.

import { spawn } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { ddEnvironment, ddSummary } from "../engine/dd.ts";
import { mbPerSecond } from "../engine/workload.ts";

const BLOCK_BYTES = 1024 * 1024;

export type DiskFigures = {
  /** The faster of one stream and two, MB/s (10^6 bytes). */
  writeMBps: number;
  readMBps: number;
  oneStream: { writeMBps: number; readMBps: number };
  twoStreams: { writeMBps: number; readMBps: number };
  bytes: number;
};

/** Runs dd; resolves to the bytes it copied and its seconds (its own summary line). */
function dd(args: string[]): Promise<{ bytes: number; seconds: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn("dd", args, { env: ddEnvironment() });
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text: string) => (stderr += text));
    child.once("error", (error) => reject(new Error(`dd could not start: ${error.message}`)));
    child.once("close", (code) => {
      if (code !== 0) {
        reject(new Error(`dd ${args.join(" ")} exited ${code}: ${stderr.trim()}`));
        return;
      }
      const summary = ddSummary(stderr);
      if (summary === undefined) {
        reject(new Error(`dd ${args.join(" ")}: no summary line in ${JSON.stringify(stderr)}`));
        return;
      }
      resolve(summary);
    });
  });
}

/** Streams at once, each over its own file of `bytes / streams`; MB/s over the slowest. */
async function streams(dir: string, count: number, bytes: number) {
  const blocks = Math.max(1, Math.floor(bytes / count / BLOCK_BYTES));
  const files = Array.from({ length: count }, (_, i) => join(dir, `disk-yardstick-${i}.bin`));
  try {
    const bs = `bs=${BLOCK_BYTES}`;
    const writes = await Promise.all(
      files.map((file) =>
        dd(["if=/dev/zero", `of=${file}`, bs, `count=${blocks}`, "oflag=direct"]),
      ),
    );
    const reads = await Promise.all(
      files.map((file) => dd([`if=${file}`, "of=/dev/null", bs, "iflag=direct"])),
    );
    const rate = (runs: { bytes: number; seconds: number }[]) =>
      mbPerSecond(
        runs.reduce((sum, run) => sum + run.bytes, 0),
        Math.max(...runs.map((run) => run.seconds)),
      );
    return { writeMBps: rate(writes), readMBps: rate(reads) };
  } finally {
    for (const file of files) fs.rmSync(file, { force: true });
  }
}

/**
 * The disk's O_DIRECT write and read rates in `dir` over `bytes` (whole MiB). Throws when dd
 * is missing or the file system refuses O_DIRECT (tmpfs): the caller reports the figures as
 * absent then.
 */
export async function measureDisk(dir: string, bytes: number): Promise<DiskFigures> {
  const oneStream = await streams(dir, 1, bytes);
  const twoStreams = await streams(dir, 2, bytes);
  return {
    writeMBps: Math.max(oneStream.writeMBps, twoStreams.writeMBps),
    readMBps: Math.max(oneStream.readMBps, twoStreams.readMBps),
    oneStream,
    twoStreams,
    bytes: Math.floor(bytes / BLOCK_BYTES) * BLOCK_BYTES,
  };
}

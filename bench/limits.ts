// The machine's physical limits, measured in the same run as the brokers so that every
// figure can be read as a fraction of them: sequential disk write with fdatasync (as dd
// conv=fdatasync), and loopback TCP between two processes (bench/tcp/loopback.ts).

import fs from "node:fs";
import { join } from "node:path";
import { measureLoopbackMBps } from "./tcp/loopback.ts";

export type MachineLimits = {
  diskWriteFdatasyncMBps: number;
  diskWriteBytes: number;
  loopbackTcpMBps: number;
  loopbackBytes: number;
  what: string;
};

const CHUNK_BYTES = 1024 * 1024;

/** Writes `bytes` in 1 MiB writes to a file in `dir`, then fdatasyncs; the clock includes it. */
export function measureDiskWriteMBps(dir: string, bytes: number): number {
  const path = join(dir, `.disk-limit-${process.pid}`);
  const chunk = new Uint8Array(CHUNK_BYTES).fill(0x5a);
  const fd = fs.openSync(path, "w");
  try {
    const started = performance.now();
    for (let written = 0; written < bytes; written += CHUNK_BYTES) fs.writeSync(fd, chunk);
    fs.fdatasyncSync(fd);
    return bytes / 1e6 / ((performance.now() - started) / 1000);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(path, { force: true });
  }
}

export async function measureLimits(
  dir: string,
  sizes: { diskBytes: number; loopbackBytes: number },
): Promise<MachineLimits> {
  const diskWriteFdatasyncMBps = measureDiskWriteMBps(dir, sizes.diskBytes);
  const loopbackTcpMBps = await measureLoopbackMBps(sizes.loopbackBytes);
  return {
    diskWriteFdatasyncMBps: Number(diskWriteFdatasyncMBps.toFixed(1)),
    diskWriteBytes: sizes.diskBytes,
    loopbackTcpMBps: Number(loopbackTcpMBps.toFixed(1)),
    loopbackBytes: sizes.loopbackBytes,
    what:
      "disk: sequential 1 MiB writes then one fdatasync, in the results directory's file " +
      "system; loopback: bytes pushed from this process to a child process over 127.0.0.1 " +
      "(MB = 10^6 bytes)",
  };
}

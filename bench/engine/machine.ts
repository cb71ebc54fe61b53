// Where a benchmark ran: enough to tell two result files apart (CPU, memory, kernel, runtime,
// file system, load), and the up-front free-space check.

import fs from "node:fs";
import os from "node:os";
import { resolve } from "node:path";
import { formatBytes } from "./workload.ts";

export type MachineInfo = {
  cpus: number;
  model: string;
  memoryBytes: number;
  kernel: string;
  platform: string;
  arch: string;
  runtime: string;
  /** The file system holding the benchmark directory, from /proc/mounts where there is one. */
  fileSystem: string;
  /** 1-minute load average when the run started: a busy machine makes every figure noisy. */
  loadAverage1m: number;
};

function runtimeName(): string {
  const global = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string } } };
  if (global.Bun !== undefined) return `bun ${global.Bun.version}`;
  if (global.Deno !== undefined) return `deno ${global.Deno.version.deno}`;
  return `node ${process.version}`;
}

/** "ext4 /dev/vda on /" for the mount point holding `dir` (the longest matching prefix). */
function fileSystemOf(dir: string): string {
  let text: string;
  try {
    text = fs.readFileSync("/proc/mounts", "utf8");
  } catch {
    return "unknown";
  }
  const path = resolve(dir);
  let best = { mount: "", described: "unknown" };
  for (const line of text.split("\n")) {
    const [device, mount, type] = line.split(" ");
    if (device === undefined || mount === undefined || type === undefined) continue;
    const inside = path === mount || path.startsWith(mount === "/" ? "/" : `${mount}/`);
    if (inside && mount.length >= best.mount.length) {
      best = { mount, described: `${type} ${device} on ${mount}` };
    }
  }
  return best.described;
}

export function machineInfo(dir: string): MachineInfo {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    model: cpus[0]?.model ?? "unknown",
    memoryBytes: os.totalmem(),
    kernel: os.release(),
    platform: os.platform(),
    arch: os.arch(),
    runtime: runtimeName(),
    fileSystem: fileSystemOf(dir),
    loadAverage1m: os.loadavg()[0] ?? 0,
  };
}

/**
 * Throws with the figures when `dir` has less than `neededBytes` available: a RangeError, as
 * the sizes asked for are what does not fit.
 */
export function checkFreeSpace(dir: string, neededBytes: number): number {
  const stats = fs.statfsSync(dir);
  const availableBytes = stats.bavail * stats.bsize;
  if (availableBytes < neededBytes) {
    throw new RangeError(
      `Not enough disk space in ${dir}: ${formatBytes(availableBytes)} available, ` +
        `${formatBytes(neededBytes)} needed; pass smaller --bytes / --fsync-bytes or another --dir`,
    );
  }
  return availableBytes;
}

// Recovery after a crash: a child process appends with fsync "never" and is killed with SIGKILL
// while still appending, so the log has no clean-shutdown marker and a recovery point that was
// never advanced (fsync "never" checkpoints only on flush, roll or close). Then the parent times
// `PartitionLog.open`, which must scan and CRC-check every batch past the recovery point and
// rebuild the indexes. A counting FileIO tells how many bytes that scan read.

import { spawn } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PartitionLog } from "../../engine/mod.ts";
import { type CatchUpFigures, catchUp, READ_MAX_BYTES } from "./read_phase.ts";
import { countingIO, formatBytes, mbPerSecond, nowMs, progress, round } from "./workload.ts";

export type RecoverFigures = {
  ms: number;
  /** Bytes the engine read from the log files while opening (the recovery scan). */
  scannedBytes: number;
  /** Size of the .log files the crash left behind. */
  logBytes: number;
  scanMBps: number;
  /** Records readable after recovery. */
  records: number;
  /**
   * A catch-up read of the recovered log right after the open: one segment, the active one,
   * so it is served by positional reads rather than a mapping.
   */
  activeRead: CatchUpFigures & { preadBytes: number };
};

const CHILD_PATH = fileURLToPath(new URL("./crash_child.ts", import.meta.url));
/** The child must have written its target well within this, or the run is stuck. */
const CHILD_READY_TIMEOUT_MS = 10 * 60 * 1000;

function runtimeArgs(script: string, args: string[]): string[] {
  const deno = (globalThis as { Deno?: unknown }).Deno !== undefined;
  return deno ? ["run", "-A", script, ...args] : [script, ...args];
}

/** Starts the child, waits for "ready", kills it with SIGKILL, and waits for its exit. */
async function crashChild(dir: string, bytes: number, inFlight: number): Promise<void> {
  const child = spawn(
    process.execPath,
    runtimeArgs(CHILD_PATH, [dir, String(bytes), String(inFlight)]),
    {
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      // tidy: allow-timeout a stuck child must not hang the benchmark forever.
      const timer = setTimeout(
        () => reject(new Error("crash child never got ready")),
        CHILD_READY_TIMEOUT_MS,
      );
      let text = "";
      child.stdout!.on("data", (chunk: Uint8Array) => {
        text += new TextDecoder().decode(chunk);
        if (text.includes("ready\n")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`crash child exited early (code ${code}, signal ${signal})`));
      });
    });
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
}

function logFileBytes(dir: string): number {
  let total = 0;
  for (const name of fs.readdirSync(dir)) {
    if (name.endsWith(".log")) total += fs.statSync(join(dir, name)).size;
  }
  return total;
}

export async function recoverPhase(
  dir: string,
  bytes: number,
  inFlight: number,
): Promise<RecoverFigures> {
  progress(`recover: a child appends ${formatBytes(bytes)} (fsync never), then SIGKILL`);
  await crashChild(dir, bytes, inFlight);
  if (fs.existsSync(join(dir, ".clean-shutdown"))) {
    throw new Error("the killed child left a clean-shutdown marker; recovery would not run");
  }
  const logBytes = logFileBytes(dir);
  const { io, counts } = countingIO();
  const startMs = nowMs();
  const log = await PartitionLog.open(dir, {}, { io, onWarning: (m) => progress(`recover: ${m}`) });
  const ms = nowMs() - startMs;
  const records = log.highWatermark - log.logStartOffset;
  const scannedBytes = counts.readBytes;
  let activeRead: RecoverFigures["activeRead"];
  try {
    const read = catchUp(log, READ_MAX_BYTES, () => {});
    activeRead = { ...read, preadBytes: counts.readBytes - scannedBytes };
  } finally {
    await log.close();
  }
  const figures: RecoverFigures = {
    ms: round(ms, 1),
    scannedBytes,
    logBytes,
    scanMBps: mbPerSecond(scannedBytes, ms / 1000),
    records,
    activeRead,
  };
  progress(
    `recover: ${figures.ms} ms, scanned ${formatBytes(scannedBytes)}; then read it back at ` +
      `${activeRead.mbps} MB/s with ${formatBytes(activeRead.preadBytes)} of pread`,
  );
  return figures;
}

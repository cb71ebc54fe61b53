// Phase isolation and load labels for bench:tcp, read from Linux's /proc.
//
// The publish phase writes gigabytes through the page cache. Left alone, the kernel writes
// them back during the next phase, and once Dirty passes the dirty limits it throttles every
// writer, the broker's small latency-phase writes included. The latency phase therefore starts
// only after the publish topics are deleted (the broker fsyncs each log as it closes it, so their
// writeback is over when the delete answers) and Dirty + Writeback have drained below a
// threshold, with a bounded wait whose outcome is logged.
//
// Each latency run is also labelled with the machine's CPU pressure over the run (Linux PSI,
// /proc/pressure/cpu "some": the share of wall time in which at least one runnable task waited
// for a core). On a shared 2-core machine that figure says how much of a tail is other load.

import { readFileSync } from "node:fs";

/** What the isolation wait reports: the figures before and after, and how long it waited. */
export type DrainOutcome = {
  dirtyMBBefore: number;
  dirtyMBAfter: number;
  waitedMs: number;
  drained: boolean;
};

/** Reads a /proc file, or undefined where it does not exist (not Linux, or no PSI). */
export type ProcReader = (path: string) => string | undefined;

export const readProc: ProcReader = (path) => {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
};

/**
 * Dirty + Writeback from /proc/meminfo text, in MB (10^6 bytes); undefined when either line is
 * missing or malformed.
 */
export function dirtyMB(meminfo: string): number | undefined {
  const dirty = /^Dirty:\s+(\d+) kB$/m.exec(meminfo);
  const writeback = /^Writeback:\s+(\d+) kB$/m.exec(meminfo);
  if (dirty === null || writeback === null) return undefined;
  return ((Number(dirty[1]) + Number(writeback[1])) * 1024) / 1e6;
}

/** The "some" total stall time from /proc/pressure/cpu text, in µs; undefined if absent. */
export function cpuPressureTotalUs(pressure: string): number | undefined {
  const some = /^some .*\btotal=(\d+)$/m.exec(pressure);
  return some === null ? undefined : Number(some[1]);
}

/** A CPU-pressure window: start it before a phase, read the share of wall time after. */
export function cpuPressureWindow(
  read: ProcReader = readProc,
  nowMs: () => number = () => performance.now(),
): { pressurePct(): number | undefined } {
  const text = read("/proc/pressure/cpu");
  const startUs = text === undefined ? undefined : cpuPressureTotalUs(text);
  const startMs = nowMs();
  return {
    pressurePct() {
      const end = read("/proc/pressure/cpu");
      const endUs = end === undefined ? undefined : cpuPressureTotalUs(end);
      const wallMs = nowMs() - startMs;
      if (startUs === undefined || endUs === undefined || wallMs <= 0) return undefined;
      return (100 * (endUs - startUs)) / 1000 / wallMs;
    },
  };
}

export type DrainOptions = {
  /** Stop waiting once Dirty + Writeback is at or below this. */
  thresholdMB: number;
  /** Give up after this long; the outcome then says `drained: false`. */
  waitMsMax: number;
  /** How often to look again. */
  pollMs?: number;
  read?: ProcReader;
  nowMs?: () => number;
  /** Waits between looks (a timer in the bench; tests pass one that advances their clock). */
  pause?: (ms: number) => Promise<void>;
};

const POLL_MS_DEFAULT = 100;

/**
 * Waits, at most `waitMsMax`, for the machine's Dirty + Writeback to fall to `thresholdMB`.
 * Returns undefined where /proc/meminfo cannot be read (nothing to wait for).
 */
export async function waitForWritebackDrain(
  options: DrainOptions,
): Promise<DrainOutcome | undefined> {
  const { thresholdMB, waitMsMax } = options;
  if (!(thresholdMB >= 0)) throw new RangeError(`thresholdMB ${thresholdMB} is invalid`);
  if (!(waitMsMax >= 0)) throw new RangeError(`waitMsMax ${waitMsMax} is invalid`);
  const read = options.read ?? readProc;
  const nowMs = options.nowMs ?? (() => performance.now());
  const pause =
    options.pause ??
    // tidy: allow-timeout polling /proc/meminfo, which offers nothing to wait on
    ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const look = () => {
    const text = read("/proc/meminfo");
    return text === undefined ? undefined : dirtyMB(text);
  };
  const before = look();
  if (before === undefined) return undefined;
  const started = nowMs();
  let now = before;
  while (now > thresholdMB && nowMs() - started < waitMsMax) {
    await pause(options.pollMs ?? POLL_MS_DEFAULT);
    now = look() ?? now;
  }
  return {
    dirtyMBBefore: before,
    dirtyMBAfter: now,
    waitedMs: nowMs() - started,
    drained: now <= thresholdMB,
  };
}

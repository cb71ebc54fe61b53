// Event-loop stalls of the process it runs in, each classified by where the main thread's
// time went, from Linux's /proc/thread-self/schedstat (ns on a core, ns waiting on the run
// queue): on a core (garbage collection or other work on the thread), waiting for a core
// (other processes, this machine's other sluice process, GC helper threads), or neither
// (blocked: a synchronous write, fsync or page-cache throttling on the thread).
//
// A 1 ms interval looks at the clock; a tick that comes STALL_MS_MIN or more late is a stall.
// Used by bench/tools/tail_stalls.ts: imported by the client, preloaded into the broker
// (`bun --preload`), writing lines to the file named by SLUICE_STALL_FILE.

import { appendFileSync, readFileSync } from "node:fs";

/** A tick this late (ms) is recorded as a stall. */
export const STALL_MS_MIN = 4;
const LINES_BUFFERED_MAX = 64;

/** One stall: when it began (epoch ms) and how its ms were spent. */
export type Stall = { atMs: number; stallMs: number; cpuMs: number; runQueueMs: number };

function schedstatMs(): [number, number] | undefined {
  try {
    const [run, wait] = readFileSync("/proc/thread-self/schedstat", "utf8").split(" ");
    return [Number(run) / 1e6, Number(wait) / 1e6];
  } catch {
    return undefined;
  }
}

/**
 * Starts watching; stalls go to `file`, one JSON object a line, flushed at exit or by `stop`
 * (which also ends the watch, so a file removed afterwards is not written again).
 */
export function watchStalls(file: string): { stop(): void } {
  const lines: string[] = [];
  const flush = () => {
    if (lines.length > 0) appendFileSync(file, `${lines.splice(0).join("\n")}\n`);
  };
  let last = performance.now();
  let sched = schedstatMs() ?? [0, 0];
  const timer = setInterval(() => {
    const now = performance.now();
    const next = schedstatMs() ?? sched;
    const late = now - last - 1;
    if (late >= STALL_MS_MIN) {
      const stall: Stall = {
        atMs: performance.timeOrigin + last,
        stallMs: late,
        cpuMs: next[0] - sched[0],
        runQueueMs: next[1] - sched[1],
      };
      lines.push(JSON.stringify(stall));
      if (lines.length >= LINES_BUFFERED_MAX) flush();
    }
    last = now;
    sched = next;
  }, 1).unref();
  process.on("exit", flush);
  process.on("SIGTERM", flush);
  return {
    stop() {
      clearInterval(timer);
      flush();
      process.off("exit", flush);
      process.off("SIGTERM", flush);
    },
  };
}

const preloadFile = process.env["SLUICE_STALL_FILE"];
if (preloadFile !== undefined && process.env["SLUICE_STALL_PRELOAD"] === "1") {
  watchStalls(preloadFile);
}

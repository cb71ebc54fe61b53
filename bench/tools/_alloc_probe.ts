// Counts what a process schedules (timers, immediates, queueMicrotask calls) and, on SIGUSR2,
// writes one line to stderr with those counts and the JS heap's size:
//
//   [alloc-probe] {"timeouts":N,"intervals":N,"immediates":N,"microtasks":N,"heapBytes":N}
//
// Used by bench/tools/alloc_per_msg.ts, preloaded into the broker and both client processes
// (`bun --preload`). The line goes to the same stderr as BUN_JSC_logGC's collection lines, so
// the collections between two probe lines are exactly those of the window between the two
// signals. Promises are not counted: async functions create them inside the engine, where no
// JavaScript hook sees them.

import { heapStats } from "bun:jsc";

const counts = { timeouts: 0, intervals: 0, immediates: 0, microtasks: 0 };

const realSetTimeout = globalThis.setTimeout;
const realSetInterval = globalThis.setInterval;
const realSetImmediate = globalThis.setImmediate;
const realQueueMicrotask = globalThis.queueMicrotask;

globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
  counts.timeouts++;
  return realSetTimeout(...args);
}) as typeof setTimeout;
globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => {
  counts.intervals++;
  return realSetInterval(...args);
}) as typeof setInterval;
globalThis.setImmediate = ((...args: Parameters<typeof setImmediate>) => {
  counts.immediates++;
  return realSetImmediate(...args);
}) as typeof setImmediate;
globalThis.queueMicrotask = (callback: () => void) => {
  counts.microtasks++;
  realQueueMicrotask(callback);
};

// With SLUICE_ALLOC_TYPES=1 each probe also writes the heap's object count per type:
//
//   [alloc-types] {"Object":N,"Promise":N,...}
//
// Run with a collection budget larger than the window allocates (and Bun's and JSC's timers
// off: ops/gc_tuning.ts), no cell is freed between two probes, and the difference of their
// counts is what the window allocated, per type.
const typesWanted = process.env["SLUICE_ALLOC_TYPES"] === "1";

process.on("SIGUSR2", () => {
  const stats = heapStats();
  // First: a reader that waits for the probe line finds the types beside it.
  if (typesWanted) {
    process.stderr.write(`[alloc-types] ${JSON.stringify(stats.objectTypeCounts)}\n`);
  }
  const line = JSON.stringify({ ...counts, heapBytes: stats.heapSize });
  process.stderr.write(`[alloc-probe] ${line}\n`);
});

// Garbage-collector and allocator settings for sluice's Bun processes (the broker and its
// clients).
//
// JavaScriptCore starts a young-generation ("eden") collection for two reasons: the bytes
// allocated since the last one pass a budget (at least `largeHeapSize`, which Bun sets to
// 8 MiB), or a timer runs out that JSC arms after allocation, due sooner the more was
// allocated per MB of heap (`percentCPUPerMBForEdenTimer`). At 10,000 messages/s the broker
// allocates ~8-10 KB and a consumer ~3-5 KB per message, and the timer fires first: in
// bench:tcp's latency phase most collections (32 of 36 in the broker's log, 29 of 45 in the
// consumer's) were timer-started, three to five a second per process, each pausing the
// event loop for 1-10 ms. Every pause delays the messages that arrive during it, which is
// what sets the end-to-end p99 at that rate. The first two settings lengthen the timer
// 40-fold and raise the budget to 64 MiB: 2.5-4.5 times fewer collections, and half as many
// pauses over 1 ms or fewer (bench/RESULTS.md, "GC and allocator settings (issue 16)").
//
// Bun's native side allocates with mimalloc, which by default gives freed memory back to the
// system 10 ms after it was freed (`purge_delay`); the next allocation then faults fresh
// pages in, which is slow on the VMs sluice is measured on. (Which of sluice's buffers come
// from mimalloc rather than JSC's own heap was not traced; the page-fault counts were.) MIMALLOC_PURGE_DELAY=-1 keeps
// freed memory for reuse: 2.5-4 times fewer page faults in the same runs (and catch-up
// consume 1.2-2.4× faster, loaded), at the cost of a resident size that stays at its
// high-water mark (+50-90 MB in the latency runs, +0.2-1.2 GB after bench:tcp's catch-up
// reads: after a burst that allocated a lot, the memory is kept for the next one). What a
// process frees in a burst therefore matters after it: cold-read buffers made fresh left the
// broker at 3.1-4.4 GB resident after bench:tcp's catch-up passes and its latency runs worse
// than a fresh broker's, until their pool reused them (engine/cold_read.ts; 2.3-2.5 GB now,
// the rest the publish phase's socket reads). Returning freed memory after 1 s instead
// (MIMALLOC_PURGE_DELAY=1000) cost publish and catch-up throughput 5-20 % (bench/RESULTS.md).
//
// JSC and mimalloc read these once, when the runtime starts, from the environment: they
// cannot be set from inside a running process. So they are applied to the environment of
// processes sluice starts (bench:tcp's broker and client, the Docker image) and documented
// for deployments (README.md, "GC settings"); `sluice serve` logs those in effect. A variable
// already set in the environment wins over these values.
//
// JSC marks with one thread per core by default (up to 8): on 2 cores a helper thread marks
// beside the collector while the broker and its clients already use both cores. With
// `numberOfGCMarkers=1` the collector's own thread marks alone: a collection comes in more
// increments (median 11 instead of 2 in bench:tcp's latency runs) over a longer cycle, its
// first increment no longer reaches 3 ms (90th percentile 1.3 ms against 3.0), its last is
// unchanged (2-4 ms for a young collection, 4-8 ms for a full one), and the sum of its
// pauses is about twice as large. What moved is the end-to-end tail: in bench:tcp's latency
// runs (`--phases latency`) p99.9 went from 4.7-5.5 to 3.3-4.4 ms and p99 from 1.4-1.9 to
// 1.3-1.4 (five alternated pairs; the broker's and the client's share measured apart: both
// count), with no throughput phase slower (bench/RESULTS.md, "One GC marker"). A machine
// with more cores than busy processes may do better with the default: an operator's own
// value wins, as for the others.
//
// Not set here, measured (bench/RESULTS.md, "Latency tail at 10,000 msg/s (issue 16)"): with the
// eden timer lengthened, Bun's own collection timer starts most collections (every 1.00-1.05 s
// while the heap grows, below the budget). `BUN_GC_TIMER_DISABLE=1` (with JSC's full timer,
// `BUN_JSC_percentCPUPerMBForFullTimer`, lengthened ~10-fold) took the collections of the broker
// and the latency client to ~0.55 times as many, but cost ~30 % more resident memory and did not
// bring bench:tcp's p99 down in the least loaded runs there were; an operator can set them.

/** The JSC and mimalloc options (environment variables) sluice's processes run with. */
export const GC_TUNING_ENV: Readonly<Record<string, string>> = Object.freeze({
  // JSC's default is 0.0025: a collection about every 100-300 ms while allocating.
  BUN_JSC_percentCPUPerMBForEdenTimer: "0.0000625",
  // 64 MiB: the allocation budget between collections of a small heap (Bun's default 8 MiB).
  BUN_JSC_largeHeapSize: String(64 * 1024 * 1024),
  // mimalloc's default is 10 (ms): freed memory goes back to the system and faults in again.
  MIMALLOC_PURGE_DELAY: "-1",
  // JSC's default is one marker per core, up to 8: on 2 cores a helper thread marks beside
  // the collector. One marker: the collection's work comes in more, shorter increments.
  BUN_JSC_numberOfGCMarkers: "1",
});

/**
 * For measuring what code allocates, not for running it: nothing is collected in a short
 * window (a 4 GB budget, JSC's and Bun's collection timers off), so the heap's growth over
 * the window is what it allocated; BUN_JSC_logGC=1 shows that no collection ran. Used by the
 * allocation-counting tools in bench/tools.
 */
export const NO_GC_ENV: Readonly<Record<string, string>> = Object.freeze({
  BUN_GC_TIMER_DISABLE: "1",
  BUN_JSC_percentCPUPerMBForEdenTimer: "0.000001",
  BUN_JSC_percentCPUPerMBForFullTimer: "0.000001",
  BUN_JSC_largeHeapSize: "4000000000",
  BUN_JSC_logGC: "1",
});

/** `tuned` runs with GC_TUNING_ENV; `default` leaves every one of them to JSC's default. */
export type GcMode = "tuned" | "default";

export function parseGcMode(text: string | undefined): GcMode {
  if (text === "tuned" || text === "default") return text;
  throw new RangeError(`--gc ${text} is not tuned or default`);
}

/**
 * The environment for a process started in `mode`: `tuned` adds each of GC_TUNING_ENV's
 * variables that `base` does not set already; `default` removes them all.
 */
export function gcEnvironment(
  base: Readonly<Record<string, string | undefined>>,
  mode: GcMode,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(base)) if (value !== undefined) env[name] = value;
  for (const [name, value] of Object.entries(GC_TUNING_ENV)) {
    if (mode === "default") delete env[name];
    else env[name] ??= value;
  }
  // What `sluice serve` asks for (ops/gc_exec.ts): otherwise it would start itself again with
  // the settings under `default`, or without them under a SLUICE_GC=default inherited.
  env["SLUICE_GC"] = mode;
  return env;
}

/**
 * Whether a process whose environment is `env` runs as `mode` asks: under `tuned` every
 * variable is set (to sluice's value or the operator's own), under `default` none is.
 */
export function gcModeHolds(env: Readonly<Record<string, string | undefined>>, mode: GcMode) {
  const names = Object.keys(GC_TUNING_ENV);
  if (mode === "tuned") return names.every((name) => env[name] !== undefined);
  return names.every((name) => env[name] === undefined);
}

/**
 * The GC settings a process runs with, for its start-up log line: each variable's value, or
 * "default" where JSC's own applies; `settings` is "tuned" (all set), "default" (none) or
 * "partial".
 */
export function describeGc(env: Readonly<Record<string, string | undefined>>) {
  const settings = gcModeHolds(env, "tuned")
    ? "tuned"
    : gcModeHolds(env, "default")
      ? "default"
      : "partial";
  const fields: Record<string, string> = { settings };
  for (const name of Object.keys(GC_TUNING_ENV)) fields[name] = env[name] ?? "default";
  return fields;
}

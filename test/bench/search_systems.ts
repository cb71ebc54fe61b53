// What the max-rate search tests feed a RateSearch (bench/rate_control.ts): one second of a
// synthetic system as a WindowSample, and a run of a search against such a system.

import type { LatencyHistogram } from "../../bench/histogram.ts";
import type { RateSearch } from "../../bench/rate_control.ts";
import type { WindowSample } from "../../bench/sustain.ts";

/**
 * Second `at` at `rate`, having published `published` with `lag` behind its schedule; its
 * publish latencies as a histogram, or as their p99 alone (no histogram to merge).
 */
export function secondOf(
  at: number,
  rate: number,
  published: number,
  lag: number,
  latencies: LatencyHistogram | number,
): WindowSample {
  return {
    elapsedMs: at * 1000,
    targetRate: rate,
    publishRate: published,
    consumeRate: published,
    backlog: 0,
    scheduleLag: lag,
    ...(typeof latencies === "number"
      ? { publishLatency: { p99Ms: latencies } }
      : { publishLatency: { p99Ms: latencies.percentileMs(99) }, publishHistogram: latencies }),
  };
}

/** Runs `search` against `system` for `seconds`; the rate it ends with. */
export function runSearch(
  search: RateSearch,
  system: (rate: number) => WindowSample,
  seconds: number,
): number {
  let rate = search.rate;
  for (let s = 0; s < seconds; s++) rate = search.observe(system(rate));
  return search.finish();
}

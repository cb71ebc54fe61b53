// When does a system sustain a rate? A window of one-second samples at a target rate R counts
// as sustained when none of these fails (each failure is named in the verdict):
//
//   keep-up      producers published ≥ 95% of R on average, and consumers received ≥ 95% of
//                that per subscription;
//   p99 bound    publish p99 stays at or under the bound (default 100 ms): the p99 of every
//                latency of the window, merged exactly from the per-second histograms (the
//                highest per-second p99 when the histograms are not at hand);
//   lag slope    the schedule lag (messages due and not yet acknowledged) does not grow: its
//                slope over the window, in seconds of schedule (lag / R), adds up to at most a
//                quarter of the bound over the window, or LAG_GROWTH_MESSAGES_MIN messages,
//                whichever is more (at 100 msg/s one message is 10 ms of schedule: a lag
//                wandering by a message or two is not a climb). By Little's law this is the
//                mean publish latency growing, read from counts instead of percentiles;
//   p99 slope    (10 or more samples: fewer seconds' p99s are mostly noise) the fitted
//                publish p99 rises by at most a quarter of the bound over the window;
//   backlog      the backlog (acknowledged × subscriptions − received) does not grow (OMB's
//                backlog rule): its fitted rise over the window is at most 0.1 s of messages
//                or 1% per second of the window, whichever is more; and it averages under
//                half a second of messages beyond those the broker holds by design (a
//                delayed workload's messages wait their delay: uniform 0-D ms holds D/2 s
//                of messages, SustainOptions.heldSeconds, which the average is judged above).
//
// Slopes are Theil–Sen estimates (the median of the slopes between every pair of samples):
// a climb moves every pair, a spike or two only a few, so one stalled second is not read as
// a trend while a steady rise is. A rate whose latency climbs (the sender falling behind its
// schedule, so every later message waits longer) fails the lag and p99 slopes long before
// its p99 crosses the bound: the climb from 100 ms to 2.7 s that the old one-second test let
// through fails here within a few seconds (test/bench/sustain.test.ts).

import { LatencyHistogram } from "./histogram.ts";

export const PUBLISH_P99_MS_MAX_DEFAULT = 100;
export const KEEP_UP_RATIO = 0.95;
/** How much of the p99 bound the lag or the p99 may grow by over a window. */
export const LATENCY_GROWTH_SHARE_MAX = 0.25;
/** The lag may always grow by this many messages over a window (whole messages are coarse). */
export const LAG_GROWTH_MESSAGES_MIN = 2;
/** Backlog growth allowed over a window: at least this many seconds of messages... */
export const BACKLOG_GROWTH_SECONDS_MIN = 0.1;
/** ...or this share of the rate per second of the window. */
export const BACKLOG_GROWTH_RATIO_PER_SECOND = 0.01;
/** The mean backlog may hold at most this many seconds of messages. */
export const BACKLOG_SECONDS_MAX = 0.5;
/**
 * The p99 slope is judged from this many samples on: a few seconds' p99s are mostly noise,
 * and a short window's climb shows in the schedule lag, read from exact counts.
 */
export const P99_SLOPE_SAMPLES_MIN = 10;

/** What the test reads from each one-second sample. */
export type WindowSample = {
  elapsedMs: number;
  targetRate: number;
  publishRate: number;
  consumeRate: number;
  backlog: number;
  scheduleLag: number;
  publishLatency: { p99Ms: number };
  /** The second's publish latencies, to merge the window's exact p99 from. */
  publishHistogram?: LatencyHistogram;
  /**
   * The machine's dirty page cache at the end of the second (/proc/meminfo Dirty +
   * Writeback), in bytes; undefined where unknown. The search's settling reads it.
   */
  dirtyBytes?: number;
};

export type SustainOptions = {
  subscriptions: number;
  publishP99MsMax: number;
  /** The window's publish p99 when known exactly (the measured phase's aggregate). */
  windowP99Ms?: number;
  /**
   * Seconds of messages the broker holds by design, not behind: a delayed workload's mean
   * delay (heldSecondsOf). The mean backlog is judged above it; its growth is judged as is.
   */
  heldSeconds?: number;
};

/** The seconds of messages a workload's delays hold: uniform over [0, max] ms, half of max. */
export function heldSecondsOf(workload: { deliveryDelayMsMax?: number }): number {
  return (workload.deliveryDelayMsMax ?? 0) / 2000;
}

/** What the test found, with the reasons it failed (empty when sustained). */
export type SustainVerdict = {
  sustained: boolean;
  reasons: string[];
  samples: number;
  targetRate: number;
  publishRate: number;
  consumeRate: number;
  publishP99Ms: number;
  /** Fitted growth over the window: schedule lag in seconds of schedule. */
  lagGrowthSeconds: number;
  /** Fitted growth over the window: backlog in seconds of messages. */
  backlogGrowthSeconds: number;
  /** Fitted growth over the window of the per-second publish p99 (0 under 3 samples). */
  p99GrowthMs: number;
};

/** The least-squares slope of y over x; 0 for fewer than two distinct x. Kept for reports. */
export function slope(points: readonly (readonly [number, number])[]): number {
  const n = points.length;
  if (n < 2) return 0;
  let sumX = 0;
  let sumY = 0;
  for (const [x, y] of points) {
    sumX += x;
    sumY += y;
  }
  const meanX = sumX / n;
  const meanY = sumY / n;
  let numerator = 0;
  let denominator = 0;
  for (const [x, y] of points) {
    numerator += (x - meanX) * (y - meanY);
    denominator += (x - meanX) ** 2;
  }
  return denominator > 0 ? numerator / denominator : 0;
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((sum, v) => sum + v, 0) / values.length;
}

/**
 * The Theil–Sen slope of y over x: the median of the slopes between every pair of points
 * with different x; 0 when there is no such pair.
 */
export function robustSlope(points: readonly (readonly [number, number])[]): number {
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const [xi, yi] = points[i]!;
      const [xj, yj] = points[j]!;
      if (xj !== xi) slopes.push((yj - yi) / (xj - xi));
    }
  }
  if (slopes.length === 0) return 0;
  slopes.sort((a, b) => a - b);
  const middle = slopes.length >> 1;
  return slopes.length % 2 === 1 ? slopes[middle]! : (slopes[middle - 1]! + slopes[middle]!) / 2;
}

/** Fitted growth of `pick` over a window of n one-second samples: slope × n seconds. */
function growth(window: readonly WindowSample[], pick: (s: WindowSample) => number): number {
  const points = window.map((s) => [s.elapsedMs / 1000, pick(s)] as const);
  return robustSlope(points) * window.length;
}

function round(value: number, digits = 3): number {
  return Number(value.toFixed(digits));
}

/** The p99 of the window's latencies: merged histograms, else the highest per-second p99. */
function windowP99(window: readonly WindowSample[]): number {
  if (window.every((s) => s.publishHistogram !== undefined)) {
    const merged = new LatencyHistogram();
    for (const sample of window) merged.add(sample.publishHistogram!);
    return merged.percentileMs(99);
  }
  return Math.max(...window.map((s) => s.publishLatency.p99Ms));
}

/** Judges one window of samples; see the file header for the rules. */
export function judgeWindow(
  window: readonly WindowSample[],
  options: SustainOptions,
): SustainVerdict {
  if (window.length === 0) throw new RangeError("a window to judge needs at least one sample");
  const { subscriptions, publishP99MsMax } = options;
  const rate = Math.max(mean(window.map((s) => s.targetRate)), Number.MIN_VALUE);
  const publishRate = mean(window.map((s) => s.publishRate));
  const consumeRate = mean(window.map((s) => s.consumeRate));
  const p99 = options.windowP99Ms ?? windowP99(window);
  const latencyGrowthMaxMs = LATENCY_GROWTH_SHARE_MAX * publishP99MsMax;
  const lagGrowthSeconds = growth(window, (s) => s.scheduleLag) / rate;
  const backlogGrowthSeconds = growth(window, (s) => s.backlog) / (rate * subscriptions);
  const p99GrowthMs =
    window.length >= P99_SLOPE_SAMPLES_MIN ? growth(window, (s) => s.publishLatency.p99Ms) : 0;
  const backlogSeconds =
    mean(window.map((s) => s.backlog)) / (rate * subscriptions) - (options.heldSeconds ?? 0);
  const reasons: string[] = [];
  if (publishRate < KEEP_UP_RATIO * rate) {
    reasons.push(`published ${Math.round(publishRate)} of ${Math.round(rate)} msg/s`);
  }
  if (consumeRate < KEEP_UP_RATIO * publishRate * subscriptions) {
    reasons.push(`consumed ${Math.round(consumeRate)} msg/s`);
  }
  if (p99 > publishP99MsMax) {
    reasons.push(`publish p99 ${p99.toFixed(1)} ms > ${publishP99MsMax} ms`);
  }
  const lagGrowthMaxSeconds = Math.max(latencyGrowthMaxMs / 1000, LAG_GROWTH_MESSAGES_MIN / rate);
  if (lagGrowthSeconds > lagGrowthMaxSeconds) {
    reasons.push(
      `producers fell ${(lagGrowthSeconds * 1000).toFixed(0)} ms behind their schedule ` +
        `in ${window.length} s`,
    );
  }
  if (p99GrowthMs > latencyGrowthMaxMs) {
    reasons.push(`publish p99 rose ${p99GrowthMs.toFixed(0)} ms in ${window.length} s`);
  }
  const backlogGrowthMax = Math.max(
    BACKLOG_GROWTH_SECONDS_MIN,
    BACKLOG_GROWTH_RATIO_PER_SECOND * window.length,
  );
  if (backlogGrowthSeconds > backlogGrowthMax) {
    reasons.push(
      `backlog grew ${backlogGrowthSeconds.toFixed(2)} s of messages in ${window.length} s`,
    );
  }
  if (backlogSeconds > BACKLOG_SECONDS_MAX) {
    const held = options.heldSeconds ?? 0;
    reasons.push(
      held > 0
        ? `backlog averaged ${backlogSeconds.toFixed(2)} s of messages beyond the ` +
            `${held.toFixed(2)} s its delays hold`
        : `backlog averaged ${backlogSeconds.toFixed(2)} s of messages`,
    );
  }
  return {
    sustained: reasons.length === 0,
    reasons,
    samples: window.length,
    targetRate: round(rate, 1),
    publishRate: round(publishRate, 1),
    consumeRate: round(consumeRate, 1),
    publishP99Ms: round(p99),
    lagGrowthSeconds: round(lagGrowthSeconds, 4),
    backlogGrowthSeconds: round(backlogGrowthSeconds, 4),
    p99GrowthMs: round(p99GrowthMs, 2),
  };
}

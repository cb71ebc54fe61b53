// The broker's own fdatasync latency over a run's measured phase: the driver reads the broker's
// `sluice_fsync_seconds` (partition segments) and `sluice_queue_fsync_seconds` (queue state
// logs' commits) histograms (ops/metrics.ts, Prometheus text) when the measured phase starts
// and when it ends, and the difference is the fdatasyncs the disk served meanwhile. An fsynced
// ack cannot be confirmed sooner than its state log's fdatasync, so these figures stand next
// to the ack latency: they say whether an ack target is reachable on the machine at all.
//
//   before = parseDiskSyncs(text at measure start)   { segments, queueState } histograms
//   after  = parseDiskSyncs(text at measure end)
//   delta  = histogramDelta(before.x, after.x)   ─► histogramPercentileMs(delta, 50 | 99)
//
// Percentiles are interpolated linearly inside the bucket that holds the rank, as Prometheus'
// histogram_quantile does; a rank in the +Inf bucket reports the last finite bound.

import type { HistogramSnapshot } from "../engine/mod.ts";

/** One reading of the broker's fdatasync histograms (cumulative since it started). */
export type DiskSyncReading = {
  /** `sluice_fsync_seconds`: fdatasyncs of partition segments. */
  segments: HistogramSnapshot;
  /** `sluice_queue_fsync_seconds`: commit fdatasyncs of queue state logs (null: not exported). */
  queueState: HistogramSnapshot | null;
  /**
   * The group commit across partitions: `sluice_group_sync_round_seconds` (each round from its
   * dispatch until its last log is durable) and `sluice_group_sync_rounds_total` by way.
   * Absent or null: not exported (an older broker).
   */
  groupSync?: GroupSyncReading | null;
};

export type GroupSyncReading = {
  rounds: HistogramSnapshot;
  /** Rounds made durable by one file-system flush (syncfs) so far. */
  flushRounds: number;
  /** Rounds made durable log by log (fdatasync) so far. */
  fdatasyncRounds: number;
};

/** The broker's fdatasync figures over the measured phase (all null when not known). */
export type DiskSyncFields = {
  /** Partition segment fdatasyncs the broker finished during the measured phase. */
  fsyncCount: number | null;
  fsyncP50Ms: number | null;
  fsyncP99Ms: number | null;
  /** Queue state-log commit fdatasyncs (what an fsynced accept waits for) in the same phase. */
  queueFsyncCount: number | null;
  queueFsyncP50Ms: number | null;
  queueFsyncP99Ms: number | null;
  /**
   * Group-commit rounds finished in the phase, how many of them were one syncfs, and their
   * p50 and p99 in ms (dispatch to last log durable): what an acks=all produce waits for on
   * the server, beside the fdatasyncs above (each log's own).
   */
  syncRoundCount: number | null;
  syncRoundFlushCount: number | null;
  syncRoundP50Ms: number | null;
  syncRoundP99Ms: number | null;
};

/** The group-commit fields when the broker's round figures are not known. */
const NO_SYNC_ROUNDS = {
  syncRoundCount: null,
  syncRoundFlushCount: null,
  syncRoundP50Ms: null,
  syncRoundP99Ms: null,
} as const;

export const NO_DISK_SYNCS: DiskSyncFields = {
  ...NO_SYNC_ROUNDS,
  fsyncCount: null,
  fsyncP50Ms: null,
  fsyncP99Ms: null,
  queueFsyncCount: null,
  queueFsyncP50Ms: null,
  queueFsyncP99Ms: null,
};

/** The histograms out of a /metrics text; null when it has no `sluice_fsync_seconds`. */
export function parseDiskSyncs(text: string): DiskSyncReading | null {
  const segments = parseHistogram(text, "sluice_fsync_seconds");
  if (segments === null) return null;
  const queueState = parseHistogram(text, "sluice_queue_fsync_seconds");
  const rounds = parseHistogram(text, "sluice_group_sync_round_seconds");
  const flushRounds = counterSample(text, 'sluice_group_sync_rounds_total{way="syncfs"}');
  const fdatasyncRounds = counterSample(text, 'sluice_group_sync_rounds_total{way="fdatasync"}');
  const groupSync =
    rounds === null || flushRounds === null || fdatasyncRounds === null
      ? null
      : { rounds, flushRounds, fdatasyncRounds };
  return { segments, queueState, groupSync };
}

/** The value of one sample (`NAME{labels}` exactly as exported); null when absent. */
function counterSample(text: string, series: string): number | null {
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (!trimmed.startsWith(`${series} `)) continue;
    const raw = trimmed.slice(series.length + 1).trim();
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(`${series}: value ${raw} is not a finite count`);
    }
    return value;
  }
  return null;
}

/** A histogram's series line: `NAME_bucket{...le="B"...} V`, `NAME_sum V` or `NAME_count V`. */
const SERIES = /^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)$/;
const LE_LABEL = /(?:^|,)le="([^"]*)"/;

/**
 * One unlabelled histogram (besides `le`) out of a Prometheus text exposition, as counts per
 * bucket (not cumulative; the last is +Inf). Null when the family is absent. A malformed
 * value, a bucket count that falls as `le` grows, or a missing +Inf bucket is a RangeError
 * naming the line, so a broken scrape is never read as a quiet disk.
 */
export function parseHistogram(text: string, name: string): HistogramSnapshot | null {
  const bounds: number[] = [];
  const cumulative: number[] = [];
  let infinite: number | undefined;
  let sumSeconds = 0;
  let count: number | undefined;
  for (const line of text.split("\n")) {
    const match = SERIES.exec(line.trim());
    if (match === null) continue;
    const [, series, labels, raw] = match;
    if (series !== `${name}_bucket` && series !== `${name}_sum` && series !== `${name}_count`) {
      continue;
    }
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(`histogram ${name}: value ${raw} is not a finite count (${line})`);
    }
    if (series === `${name}_sum`) sumSeconds = value;
    else if (series === `${name}_count`) count = value;
    else {
      const le = LE_LABEL.exec(labels ?? "")?.[1];
      if (le === undefined) throw new RangeError(`histogram ${name}: bucket without le (${line})`);
      if (le === "+Inf") infinite = value;
      else {
        const bound = Number(le);
        const last = bounds.length - 1;
        if (!Number.isFinite(bound) || (last >= 0 && bound <= bounds[last]!)) {
          throw new RangeError(`histogram ${name}: bucket le="${le}" out of order (${line})`);
        }
        if (last >= 0 && value < cumulative[last]!) {
          throw new RangeError(`histogram ${name}: cumulative count ${value} falls (${line})`);
        }
        bounds.push(bound);
        cumulative.push(value);
      }
    }
  }
  if (bounds.length === 0 && infinite === undefined && count === undefined) return null;
  if (infinite === undefined) throw new RangeError(`histogram ${name} has no le="+Inf" bucket`);
  const counts = cumulative.map((value, i) => value - (i === 0 ? 0 : cumulative[i - 1]!));
  counts.push(infinite - (cumulative.at(-1) ?? 0));
  if (counts.at(-1)! < 0) throw new RangeError(`histogram ${name}: +Inf bucket ${infinite} falls`);
  return { boundsSeconds: bounds, counts, sumSeconds, count: count ?? infinite };
}

/** What was observed between two readings of one histogram (same bounds, after ≥ before). */
export function histogramDelta(
  before: HistogramSnapshot,
  after: HistogramSnapshot,
): HistogramSnapshot {
  const sameBounds =
    before.boundsSeconds.length === after.boundsSeconds.length &&
    before.boundsSeconds.every((bound, i) => bound === after.boundsSeconds[i]);
  if (!sameBounds) throw new RangeError("histogram bounds changed between the two readings");
  const counts = after.counts.map((value, i) => value - (before.counts[i] ?? 0));
  const fell = counts.findIndex((value) => value < 0);
  if (fell >= 0) {
    // A broker restarted between the readings: its counters began again.
    throw new RangeError(
      `histogram bucket ${fell} fell from ${before.counts[fell]} to ` +
        `${after.counts[fell]} between the two readings`,
    );
  }
  return {
    boundsSeconds: after.boundsSeconds,
    counts,
    sumSeconds: after.sumSeconds - before.sumSeconds,
    count: after.count - before.count,
  };
}

/** The `percentile` (0-100) in ms, interpolated inside its bucket; null for an empty one. */
export function histogramPercentileMs(
  histogram: HistogramSnapshot,
  percentile: number,
): number | null {
  if (!(percentile >= 0 && percentile <= 100)) {
    throw new RangeError(`percentile ${percentile} is not in [0, 100]`);
  }
  const total = histogram.counts.reduce((sum, value) => sum + value, 0);
  if (total === 0) return null;
  const rank = (percentile / 100) * total;
  const bounds = histogram.boundsSeconds;
  let below = 0;
  for (let i = 0; i < histogram.counts.length; i++) {
    const inBucket = histogram.counts[i]!;
    if (below + inBucket >= rank && inBucket > 0) {
      if (i >= bounds.length) return bounds.at(-1)! * 1000;
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      const upper = bounds[i]!;
      return (lower + ((upper - lower) * (rank - below)) / inBucket) * 1000;
    }
    below += inBucket;
  }
  return bounds.at(-1)! * 1000;
}

/** The result fields of the fdatasyncs between two readings (null readings: not known). */
export function diskSyncFields(
  before: DiskSyncReading | null,
  after: DiskSyncReading | null,
): DiskSyncFields {
  if (before === null || after === null) return NO_DISK_SYNCS;
  const segments = histogramDelta(before.segments, after.segments);
  const queue =
    before.queueState === null || after.queueState === null
      ? null
      : histogramDelta(before.queueState, after.queueState);
  return {
    ...syncRoundFields(before.groupSync, after.groupSync),
    fsyncCount: segments.count,
    fsyncP50Ms: histogramPercentileMs(segments, 50),
    fsyncP99Ms: histogramPercentileMs(segments, 99),
    queueFsyncCount: queue === null ? null : queue.count,
    queueFsyncP50Ms: queue === null ? null : histogramPercentileMs(queue, 50),
    queueFsyncP99Ms: queue === null ? null : histogramPercentileMs(queue, 99),
  };
}

/** The group-commit rounds between two readings (null fields when either lacks them). */
function syncRoundFields(
  before: GroupSyncReading | null | undefined,
  after: GroupSyncReading | null | undefined,
): Pick<DiskSyncFields, keyof typeof NO_SYNC_ROUNDS> {
  if (before === null || before === undefined || after === null || after === undefined) {
    return NO_SYNC_ROUNDS;
  }
  const rounds = histogramDelta(before.rounds, after.rounds);
  const flushCount = after.flushRounds - before.flushRounds;
  if (flushCount < 0 || after.fdatasyncRounds < before.fdatasyncRounds) {
    throw new RangeError("group-commit round counters fell between the two readings");
  }
  return {
    syncRoundCount: rounds.count,
    syncRoundFlushCount: flushCount,
    syncRoundP50Ms: histogramPercentileMs(rounds, 50),
    syncRoundP99Ms: histogramPercentileMs(rounds, 99),
  };
}

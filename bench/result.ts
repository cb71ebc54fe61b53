// The result file of one driver's run: the OpenMessaging Benchmark's TestResult fields (so
// OMB's tools and charts read it), then what sluice adds: message counts for the drain check,
// errors, the driver's settings and durability, the harness's CPU use, the workload, the
// machine, and the samples of every phase for the report's charts.
//
// Units follow OMB: latencies in milliseconds, except the publish *delay* latencies (how late
// a send left against its intended time), which OMB reports in whole microseconds. Per-sample
// lists (publishRate, publishLatency50pct, ...) hold one entry per second of the measured
// phase; the aggregated fields cover the measured phase and the drain after it.

import { machineInfo, type MachineInfo } from "./engine/machine.ts";
import type { LatencyHistogram, LatencySummary, QuantileCurve } from "./histogram.ts";
import type { ClientCpu, RunOutcome } from "./runner.ts";
import type { RateSearchStep } from "./rate_control.ts";
import type { Sample } from "./stats.ts";
import type { Workload } from "./workload.ts";
import { BYTES_PER_MB } from "./stats.ts";

export const RESULT_FORMAT_VERSION = 1;

type Stat = "Avg" | "50pct" | "75pct" | "95pct" | "99pct" | "999pct" | "9999pct" | "Max";
type Percentiles<Prefix extends string> = { [K in `${Prefix}${Stat}`]: number };
type PercentileLists<Prefix extends string> = { [K in `${Prefix}${Stat}`]: number[] };

export type BenchResult = {
  workload: string;
  driver: string;
  messageSize: number;
  topics: number;
  partitions: number;
  producersPerTopic: number;
  consumersPerTopic: number;
  publishRate: number[];
  publishErrorRate: number[];
  consumeRate: number[];
  backlog: number[];
  aggregatedPublishLatencyQuantiles: QuantileCurve;
  aggregatedEndToEndLatencyQuantiles: QuantileCurve;
  aggregatedPublishDelayLatencyQuantiles: QuantileCurve;
  /** sluice: sends acknowledged over the whole run (warm-up included). */
  totalMessagesSent: number;
  /** sluice: messages received over all subscriptions (warm-up included). */
  totalMessagesReceived: number;
  /** sluice: totalMessagesSent × subscriptionsPerTopic; equal to received when drained. */
  expectedMessagesReceived: number;
  drained: boolean;
  drainSeconds: number;
  /** Failed sends. */
  errors: number;
  /** The first distinct error messages, and run problems (drain shortfall, close failures). */
  errorMessages: string[];
  settings: Record<string, string | number | boolean>;
  durability: string;
  clientCpu: ClientCpu;
  /** Averages over the measured phase. */
  publishRateAvg: number;
  consumeRateAvg: number;
  publishThroughputMBps: number;
  consumeThroughputMBps: number;
  workloadSpec: Omit<Workload, "source" | "payloadFile"> & { payloadFile: string | null };
  rateSearch: { steps: RateSearchStep[]; heldRate: number } | null;
  samples: Sample[];
  machine: MachineInfo;
  startedAt: string;
  formatVersion: number;
} & Percentiles<"aggregatedPublishLatency"> &
  Percentiles<"aggregatedEndToEndLatency"> &
  Percentiles<"aggregatedPublishDelayLatency"> &
  PercentileLists<"publishLatency"> &
  PercentileLists<"endToEndLatency"> &
  PercentileLists<"publishDelayLatency"> & {
    aggregatedPublishLatency99999pct: number;
    aggregatedEndToEndLatency99999pct: number;
  };

/** The aggregated fields of one histogram, scaled by `scale` (1 for ms, 1000 for µs). */
function aggregated<P extends string>(prefix: P, h: LatencyHistogram, scale = 1): Percentiles<P> {
  const round = scale === 1 ? (v: number) => v : (v: number) => Math.round(v * scale);
  const s = h.summary();
  return {
    [`${prefix}Avg`]: round(s.avgMs),
    [`${prefix}50pct`]: round(s.p50Ms),
    [`${prefix}75pct`]: round(s.p75Ms),
    [`${prefix}95pct`]: round(s.p95Ms),
    [`${prefix}99pct`]: round(s.p99Ms),
    [`${prefix}999pct`]: round(s.p999Ms),
    [`${prefix}9999pct`]: round(s.p9999Ms),
    [`${prefix}Max`]: round(s.maxMs),
  } as Percentiles<P>;
}

/** Per-sample lists of one latency, from the measured phase's samples. */
function lists<P extends string>(
  prefix: P,
  samples: readonly Sample[],
  pick: (sample: Sample) => LatencySummary,
  scale = 1,
): PercentileLists<P> {
  const round = scale === 1 ? (v: number) => v : (v: number) => Math.round(v * scale);
  const of = (field: keyof LatencySummary) => samples.map((s) => round(pick(s)[field]));
  return {
    [`${prefix}Avg`]: of("avgMs"),
    [`${prefix}50pct`]: of("p50Ms"),
    [`${prefix}75pct`]: of("p75Ms"),
    [`${prefix}95pct`]: of("p95Ms"),
    [`${prefix}99pct`]: of("p99Ms"),
    [`${prefix}999pct`]: of("p999Ms"),
    [`${prefix}9999pct`]: of("p9999Ms"),
    [`${prefix}Max`]: of("maxMs"),
  } as PercentileLists<P>;
}

export type ResultInput = {
  driverName: string;
  settings: Record<string, string | number | boolean>;
  durability: string;
  workload: Workload;
  outcome: RunOutcome;
  /** Where the run kept its data, for the machine description (file system). */
  dataDir: string;
};

export function buildResult(input: ResultInput): BenchResult {
  const { workload, outcome } = input;
  const { stats } = outcome;
  const measured = outcome.samples.filter((sample) => sample.phase === "measure");
  const seconds = Math.max(outcome.measuredSeconds, 1e-9);
  const { source: _source, payloadFile, ...spec } = workload;
  return {
    workload: workload.name,
    driver: input.driverName,
    messageSize: workload.messageSize,
    topics: workload.topics,
    partitions: workload.partitionsPerTopic,
    producersPerTopic: workload.producersPerTopic,
    consumersPerTopic: workload.subscriptionsPerTopic * workload.consumerPerSubscription,
    publishRate: measured.map((s) => s.publishRate),
    publishErrorRate: measured.map((s) => s.publishErrorRate),
    consumeRate: measured.map((s) => s.consumeRate),
    backlog: measured.map((s) => s.backlog),
    ...lists("publishLatency", measured, (s) => s.publishLatency),
    ...lists("endToEndLatency", measured, (s) => s.endToEndLatency),
    ...lists("publishDelayLatency", measured, (s) => s.publishDelayLatency, 1000),
    ...aggregated("aggregatedPublishLatency", stats.publish.total),
    aggregatedPublishLatency99999pct: stats.publish.total.percentileMs(99.999),
    ...aggregated("aggregatedEndToEndLatency", stats.endToEnd.total),
    aggregatedEndToEndLatency99999pct: stats.endToEnd.total.percentileMs(99.999),
    ...aggregated("aggregatedPublishDelayLatency", stats.publishDelay.total, 1000),
    aggregatedPublishLatencyQuantiles: stats.publish.total.curve(),
    aggregatedEndToEndLatencyQuantiles: stats.endToEnd.total.curve(),
    aggregatedPublishDelayLatencyQuantiles: stats.publishDelay.total.curve(),
    totalMessagesSent: stats.acked,
    totalMessagesReceived: stats.received,
    expectedMessagesReceived: stats.acked * workload.subscriptionsPerTopic,
    drained: outcome.drained,
    drainSeconds: outcome.drainMs / 1000,
    errors: stats.errors,
    errorMessages: [...stats.errorSamples, ...outcome.problems],
    settings: input.settings,
    durability: input.durability,
    clientCpu: outcome.clientCpu,
    publishRateAvg: stats.measured.published / seconds,
    consumeRateAvg: stats.measured.consumed / seconds,
    publishThroughputMBps: stats.measured.publishedBytes / seconds / BYTES_PER_MB,
    consumeThroughputMBps: stats.measured.consumedBytes / seconds / BYTES_PER_MB,
    workloadSpec: { ...spec, payloadFile: payloadFile ?? null },
    rateSearch: outcome.rateSearch ?? null,
    samples: outcome.samples,
    machine: machineInfo(input.dataDir),
    startedAt: outcome.startedAt,
    formatVersion: RESULT_FORMAT_VERSION,
  };
}

/** The fields every result file must have (the contract tests check). */
export const RESULT_CONTRACT_FIELDS = [
  "workload",
  "driver",
  "messageSize",
  "topics",
  "partitions",
  "producersPerTopic",
  "consumersPerTopic",
  "publishRate",
  "consumeRate",
  "backlog",
  "publishLatencyAvg",
  "publishLatency50pct",
  "publishLatency99pct",
  "publishLatencyMax",
  "aggregatedPublishLatencyAvg",
  "aggregatedPublishLatency50pct",
  "aggregatedPublishLatency75pct",
  "aggregatedPublishLatency95pct",
  "aggregatedPublishLatency99pct",
  "aggregatedPublishLatency999pct",
  "aggregatedPublishLatency9999pct",
  "aggregatedPublishLatencyMax",
  "endToEndLatencyAvg",
  "endToEndLatency50pct",
  "endToEndLatency99pct",
  "aggregatedEndToEndLatencyAvg",
  "aggregatedEndToEndLatency50pct",
  "aggregatedEndToEndLatency99pct",
  "aggregatedEndToEndLatency999pct",
  "aggregatedEndToEndLatencyMax",
  "totalMessagesSent",
  "totalMessagesReceived",
  "errors",
  "settings",
  "durability",
  "clientCpu",
] as const;

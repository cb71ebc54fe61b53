// The result file of one driver's run: the OpenMessaging Benchmark's TestResult fields (so
// OMB's tools and charts read it), then what sluice adds: message counts for the drain check,
// errors, the driver's settings and durability, whether the rate was sustained, the CPU of the
// broker and of the load workers, the workload, the machine, and the samples of every phase
// for the report's charts.
//
// Units follow OMB: latencies in milliseconds, except the publish *delay* latencies (how late
// a send left against its intended time), which OMB reports in whole microseconds. Per-sample
// lists (publishRate, publishLatency50pct, ...) hold one entry per second of the measured
// phase; the aggregated fields cover the measured phase and the drain after it.

import { machineInfo, type MachineInfo } from "./engine/machine.ts";
import type { LatencyHistogram, LatencySummary, QuantileCurve } from "./histogram.ts";
import type { BrokerCpu, ClientCpu, RateSearchResult, RunOutcome, WorkerInfo } from "./runner.ts";
import type { SustainVerdict } from "./sustain.ts";
import { NO_DISK_SYNCS } from "./disk_syncs.ts";
import { boundOf } from "./bound.ts";
import type { PageReporting } from "./page_reporting.ts";
import type { MachineCpu } from "./proc_cpu.ts";
import type { Sample } from "./stats.ts";
import type { Workload } from "./workload.ts";
import { BYTES_PER_MB } from "./stats.ts";
import { IN_PROCESS_LABEL } from "./worker/in_process.ts";

export const RESULT_FORMAT_VERSION = 2;

type Stat = "Avg" | "50pct" | "75pct" | "95pct" | "99pct" | "999pct" | "9999pct" | "Max";
type Percentiles<Prefix extends string> = { [K in `${Prefix}${Stat}`]: number };
type PercentileLists<Prefix extends string> = { [K in `${Prefix}${Stat}`]: number[] };

/** One fixed-rate run of `--latency-at-load`: the latencies at one load. */
export type LatencyPoint = {
  /** "50% of own", "80% of own" or "common". */
  label: string;
  rate: number;
  publishRateAvg: number;
  sustained: boolean;
  publishP50Ms: number;
  publishP99Ms: number;
  publishP999Ms: number;
  endToEndP50Ms: number;
  endToEndP99Ms: number;
  endToEndP999Ms: number;
  brokerCpuPercent: number | null;
  clientCpuPercent: number;
};

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
  /**
   * How far the wall clock moved against the harness's monotonic clock over the run, ms: ~0
   * normally; a step (a clock adjustment, a VM pause) shifts latencies that span it and the
   * lateness of delayed deliveries by up to its size (bench/clock_step.ts).
   */
  clockStepMs: number;
  settings: Record<string, string | number | boolean>;
  durability: string;
  /** The load workers' CPU over the measured phase (every worker process). */
  clientCpu: ClientCpu;
  /** Load worker processes (0: the load ran in the coordinator process). */
  workers: number;
  workerProcesses: WorkerInfo[];
  /**
   * The measured phase held its rate: keep-up, publish p99 under the bound, no growth of
   * schedule lag, p99 or backlog (bench/sustain.ts). False for a partial run.
   */
  sustained: boolean;
  sustainedVerdict: SustainVerdict | null;
  /** The bound on publish p99 a sustained rate must meet, ms. */
  publishP99BoundMs: number;
  /** The broker's processes over the measured phase, % of one core (null: not measured). */
  brokerCpuPercent: number | null;
  /** Every load worker process over the measured phase, % of one core. */
  clientCpuPercent: number;
  /** Messages published per second of broker CPU time (null: broker CPU not measured). */
  msgsPerBrokerCoreSecond: number | null;
  brokerCpu: BrokerCpu;
  /** The whole machine over the measured phase: busy and stolen CPU, % of one core. */
  machineCpu: MachineCpu | null;
  /**
   * The kernel's free page reporting (virtio-balloon) over the measured phase: each pass stalls
   * the whole VM (bench/page_reporting.ts). Null where the kernel has none; absent in results
   * saved before it was recorded.
   */
  pageReporting?: PageReporting | null;
  /**
   * CPU the run did not use over the measured phase (machine busy − broker − workers −
   * coordinator), % of one core: other programs competing with the run. Null when unknown.
   */
  otherCpuPercent: number | null;
  /** A load worker was at its limit over the measured phase (bench/bound.ts). */
  clientBound: boolean;
  /** What bound the run (client, machine, or neither), with the CPU figures behind it. */
  boundBy: string;
  /** Why the run stopped early (a worker died): its figures are partial. */
  failure: string | null;
  /**
   * The workload's ackMode. With `per-message`, totalMessagesReceived counts accepts the broker
   * confirmed (each message accepted once: distinct accepted messages; a surplus shows as
   * duplicates) and consumeRate accepts per second.
   */
  ackMode: Workload["ackMode"];
  /** Per-message mode: deliveries flagged redelivered, over the whole run (null otherwise). */
  redeliveries: number | null;
  /** Per-message mode: deliveries the consumers released (the workload's releaseRatio). */
  released: number | null;
  /** Per-message mode: answers refused by the broker or lost on the way (they come again). */
  answerFailures: number | null;
  /** Per-message mode: messages the broker dead-lettered (null: not known). */
  deadLettered: number | null;
  /**
   * Per-message mode: from a consumer's accept() to the broker's confirmation that it is
   * durable, ms, over the measured phase and the drain, the workers' histograms merged exactly
   * (null: stream mode, or a system that does not confirm acks).
   */
  ackLatency50pct: number | null;
  ackLatency99pct: number | null;
  ackLatency999pct: number | null;
  ackLatencyMax: number | null;
  /**
   * Delayed workloads (deliveryDelayMsMax > 0), else null: how the driver delayed messages
   * (its `delayPath` setting), and the due-time lateness (receive − due, ms) of the deliveries
   * at or after their due time over the measured phase and the drain, the workers' histograms
   * merged exactly. An early delivery is not among them: it is counted in earlyDeliveries,
   * and earlyByMsMax says by how much the earliest came before its due time.
   */
  delayPath: string | null;
  latenessP50Ms: number | null;
  latenessP99Ms: number | null;
  latenessMaxMs: number | null;
  /**
   * Deliveries the consumers saw before their due time, of those timed (every delivery but
   * the ones released: released deliveries are never timed, early or late).
   */
  earlyDeliveries: number | null;
  earlyByMsMax: number | null;
  /**
   * The broker's own fdatasyncs over the measured phase (its `sluice_fsync_seconds` histogram
   * read as the phase starts and ends, bench/disk_syncs.ts): how many, and their p50 and p99
   * in ms, interpolated inside the histogram's buckets. An fsynced ack is confirmed no sooner
   * than the disk's fdatasync. Null: the driver does not know (not sluice, or no /metrics).
   */
  fsyncCount: number | null;
  fsyncP50Ms: number | null;
  fsyncP99Ms: number | null;
  /** The same from `sluice_queue_fsync_seconds`: the queue state logs' commit fdatasyncs. */
  queueFsyncCount: number | null;
  queueFsyncP50Ms: number | null;
  queueFsyncP99Ms: number | null;
  /**
   * The broker's group-commit rounds over the measured phase (`sluice_group_sync_*`): how
   * many, how many were one syncfs of the file system (the rest: an fdatasync per log), and
   * their p50 and p99 in ms from dispatch until the round's last log was durable. Null: not
   * known (not sluice, or a broker without these metrics).
   */
  syncRoundCount: number | null;
  syncRoundFlushCount: number | null;
  syncRoundP50Ms: number | null;
  syncRoundP99Ms: number | null;
  /** With --latency-at-load: fixed-rate runs at 50% and 80% of this driver's rate and at one
   * rate common to every driver. */
  latencyAtLoad?: LatencyPoint[];
  /** Averages over the measured phase. */
  publishRateAvg: number;
  consumeRateAvg: number;
  publishThroughputMBps: number;
  consumeThroughputMBps: number;
  workloadSpec: Omit<Workload, "source" | "payloadFile"> & { payloadFile: string | null };
  /** The max-rate search: its steps (with any backoff of the measured phase) and rules. */
  rateSearch: RateSearchResult | null;
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
  const publishRateAvg = stats.measured.published / seconds;
  const brokerCpuPercent = outcome.brokerCpu.percentOfOneCore;
  const bound = boundOf({
    driver: input.driverName,
    workerProcesses: outcome.workers,
    clientCpuPercent: outcome.clientCpu.percentOfOneCore,
    brokerCpuPercent,
    machineCpu: outcome.machineCpu,
    otherCpuPercent: otherCpu(outcome),
  });
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
    settings: outcome.settings,
    durability: outcome.durability,
    clientCpu: outcome.clientCpu,
    workers: outcome.workers.filter((w) => w.label !== IN_PROCESS_LABEL).length,
    workerProcesses: outcome.workers,
    sustained: outcome.failure === undefined && outcome.sustain?.sustained === true,
    sustainedVerdict: outcome.sustain,
    publishP99BoundMs: outcome.publishP99MsMax,
    brokerCpuPercent,
    clientCpuPercent: outcome.clientCpu.percentOfOneCore,
    msgsPerBrokerCoreSecond:
      brokerCpuPercent === null || brokerCpuPercent <= 0
        ? null
        : publishRateAvg / (brokerCpuPercent / 100),
    brokerCpu: outcome.brokerCpu,
    machineCpu: outcome.machineCpu,
    pageReporting: outcome.pageReporting ?? null,
    otherCpuPercent: otherCpu(outcome),
    ...bound,
    failure: outcome.failure ?? null,
    clockStepMs: outcome.clockStepMs,
    ...ackFields(workload, outcome),
    ...latenessFields(workload, outcome),
    ...(outcome.disk ?? NO_DISK_SYNCS),
    publishRateAvg,
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
  "workers",
  "sustained",
  "brokerCpuPercent",
  "clientCpuPercent",
  "msgsPerBrokerCoreSecond",
] as const;

/** The latency point a fixed-rate run gives, labelled. */
export function latencyPoint(label: string, rate: number, result: BenchResult): LatencyPoint {
  return {
    label,
    rate,
    publishRateAvg: result.publishRateAvg,
    sustained: result.sustained,
    publishP50Ms: result.aggregatedPublishLatency50pct,
    publishP99Ms: result.aggregatedPublishLatency99pct,
    publishP999Ms: result.aggregatedPublishLatency999pct,
    endToEndP50Ms: result.aggregatedEndToEndLatency50pct,
    endToEndP99Ms: result.aggregatedEndToEndLatency99pct,
    endToEndP999Ms: result.aggregatedEndToEndLatency999pct,
    brokerCpuPercent: result.brokerCpuPercent,
    clientCpuPercent: result.clientCpuPercent,
  };
}

type AckFields = Pick<
  BenchResult,
  | "ackMode"
  | "redeliveries"
  | "released"
  | "answerFailures"
  | "deadLettered"
  | "ackLatency50pct"
  | "ackLatency99pct"
  | "ackLatency999pct"
  | "ackLatencyMax"
>;

/** The per-message fields (all null in stream mode). */
function ackFields(workload: Workload, outcome: RunOutcome): AckFields {
  const { stats } = outcome;
  const perMessage = workload.ackMode === "per-message";
  const acks = stats.ack.total;
  const timed = perMessage && acks.count > 0;
  return {
    ackMode: workload.ackMode,
    redeliveries: perMessage ? stats.redeliveries : null,
    released: perMessage ? stats.released : null,
    answerFailures: perMessage ? stats.answerFailures : null,
    deadLettered: perMessage ? outcome.deadLettered : null,
    ackLatency50pct: timed ? acks.percentileMs(50) : null,
    ackLatency99pct: timed ? acks.percentileMs(99) : null,
    ackLatency999pct: timed ? acks.percentileMs(99.9) : null,
    ackLatencyMax: timed ? acks.percentileMs(100) : null,
  };
}

type LatenessFields = Pick<
  BenchResult,
  | "delayPath"
  | "latenessP50Ms"
  | "latenessP99Ms"
  | "latenessMaxMs"
  | "earlyDeliveries"
  | "earlyByMsMax"
>;

/** The delayed-delivery fields (all null without delays); see BenchResult.delayPath. */
export function latenessFields(workload: Workload, outcome: RunOutcome): LatenessFields {
  if (workload.deliveryDelayMsMax === 0) {
    return {
      delayPath: null,
      latenessP50Ms: null,
      latenessP99Ms: null,
      latenessMaxMs: null,
      earlyDeliveries: null,
      earlyByMsMax: null,
    };
  }
  const { stats, settings } = outcome;
  const lateness = stats.endToEnd.total;
  const early = stats.early.total;
  const timed = lateness.count > 0;
  return {
    delayPath: String(settings["delayPath"] ?? "not stated by the driver"),
    latenessP50Ms: timed ? lateness.percentileMs(50) : null,
    latenessP99Ms: timed ? lateness.percentileMs(99) : null,
    latenessMaxMs: timed ? lateness.maxMs : null,
    earlyDeliveries: early.count,
    earlyByMsMax: early.count > 0 ? early.maxMs : null,
  };
}

/** See BenchResult.otherCpuPercent. */
function otherCpu(outcome: RunOutcome): number | null {
  const machine = outcome.machineCpu;
  const broker = outcome.brokerCpu.percentOfOneCore;
  if (machine === null) return null;
  const ours =
    outcome.clientCpu.percentOfOneCore +
    outcome.clientCpu.coordinatorPercentOfOneCore +
    (broker ?? 0);
  return Math.max(0, machine.busyPercent - ours);
}

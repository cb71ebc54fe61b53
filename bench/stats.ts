// What a run measures, on the coordinator: the workers' reports merged exactly (counters
// summed, latency histograms added bucket by bucket), per-second samples of rates, backlog,
// schedule lag, interval percentiles and CPU, and the cumulative histograms of the measured
// phase and the drain.
//
//   worker reports ──► ingest() ──► counters (sum of each worker's latest, cumulative)
//                                   interval histograms (every worker's records since the
//                                   last sample)
//   every second: sample() ──► Sample (rates from counter deltas, backlog, lag, percentiles)
//                              and, outside warm-up, interval histograms → totals
//
// MB is 2^20 bytes, as in the OpenMessaging Benchmark's reports.

import { IntervalHistogram, LatencyHistogram, type LatencySummary } from "./histogram.ts";
import type { MachineCpu } from "./proc_cpu.ts";
import {
  ERROR_SAMPLES_MAX,
  type WorkerCounters,
  type WorkerReport,
  zeroCounters,
} from "./load_stats.ts";

export const BYTES_PER_MB = 1024 * 1024;

export type Phase = "warmup" | "measure" | "drain";

/** One second (or so) of a run. */
export type Sample = {
  /** Milliseconds since the run's first send, at the end of this sample. */
  elapsedMs: number;
  durationMs: number;
  phase: Phase;
  /** The producers' target in msg/s at the end of the sample (the search's current rate). */
  targetRate: number;
  publishRate: number;
  publishMBps: number;
  publishErrorRate: number;
  consumeRate: number;
  consumeMBps: number;
  /** Messages acknowledged × subscriptions − messages received, at the end of the sample. */
  backlog: number;
  /**
   * Messages due by the producers' schedules and not yet acknowledged (unsent, or sent and in
   * flight), at the end of the sample. It grows when the producers fall behind their schedule.
   */
  scheduleLag: number;
  publishLatency: LatencySummary;
  endToEndLatency: LatencySummary;
  /** How late sends left against their intended times. */
  publishDelayLatency: LatencySummary;
  /** Per-message mode: from accept() to the broker's confirmation (empty otherwise). */
  ackLatency: LatencySummary;
  /** CPU time of every load worker process over the sample, in percent of one core. */
  cpuPercent: number;
  /** CPU time of the broker's processes (from /proc), in percent of one core; null: unknown. */
  brokerCpuPercent: number | null;
  /** The whole machine over the sample (from /proc/stat; null elsewhere), % of one core. */
  machineCpu: MachineCpu | null;
};

/** Messages per second; 0 for an empty interval. */
export function ratePerSecond(count: number, elapsedMs: number): number {
  return elapsedMs > 0 ? (count * 1000) / elapsedMs : 0;
}

/** MB (2^20 bytes) per second. */
export function mbPerSecond(bytes: number, elapsedMs: number): number {
  return ratePerSecond(bytes, elapsedMs) / BYTES_PER_MB;
}

/** CPU time as a percentage of one core over a wall-clock interval. */
export function cpuPercent(cpuMicros: number, elapsedMs: number): number {
  return elapsedMs > 0 ? (cpuMicros / 1000 / elapsedMs) * 100 : 0;
}

export function cpuMicrosNow(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

type Counts = {
  published: number;
  publishedBytes: number;
  consumed: number;
  consumedBytes: number;
};

function zeroCounts(): Counts {
  return { published: 0, publishedBytes: 0, consumed: 0, consumedBytes: 0 };
}

function sumCounters(reports: Iterable<WorkerCounters>): WorkerCounters {
  const sum = zeroCounters();
  for (const counters of reports) {
    for (const key of Object.keys(sum) as (keyof WorkerCounters)[]) sum[key] += counters[key];
  }
  return sum;
}

export class RunStats {
  readonly subscriptions: number;
  /** Up to ERROR_SAMPLES_MAX distinct error messages, for the result file. */
  readonly errorSamples: string[] = [];
  /** Publish latency from the intended send time to the acknowledgement. */
  readonly publish = new IntervalHistogram();
  /** How late each send left against its intended time (OMB's publishDelayLatency). */
  readonly publishDelay = new IntervalHistogram();
  /**
   * From the stamp in the payload (the intended send time) to the consumer's callback; with
   * delays the stamp is the due time, and this is the lateness of on-time and late deliveries.
   */
  readonly endToEnd = new IntervalHistogram();
  /** Delayed workloads: how long before its due time each early delivery came. */
  readonly early = new IntervalHistogram();
  /** Per-message mode: from a consumer's accept() to the broker's durable confirmation. */
  readonly ack = new IntervalHistogram();
  /** Publish latency of the measured phase alone (the sustained test's p99). */
  readonly publishMeasured = new LatencyHistogram();
  /** Counters of the measured phase and the drain. */
  readonly measured = zeroCounts();
  /** Each worker's latest cumulative counters, by worker index. */
  #latest = new Map<number, WorkerCounters>();
  #totals = zeroCounters();
  #atLastSample = zeroCounters();
  /** Each worker's latest cumulative CPU time (µs), by worker index. */
  #cpuMicros = new Map<number, number>();
  #cpuAtLastSample = 0;
  #rssBytesMax = 0;
  #phase: Phase = "warmup";
  #lastPublishInterval = new LatencyHistogram();

  constructor(subscriptions: number) {
    this.subscriptions = subscriptions;
  }

  get phase(): Phase {
    return this.#phase;
  }

  /** Latencies and counts from now on count in the results (warm-up is over). */
  setPhase(phase: Phase): void {
    this.#phase = phase;
  }

  /**
   * Forgets what the measured phase counted so far (its latency totals and counters): the
   * measured phase starts again, at a lower rate, after its first seconds failed their probe.
   * Call it in warm-up; the counts before it (totalMessagesSent, ...) are kept.
   */
  restartMeasure(): void {
    if (this.#phase !== "warmup") throw new Error("restartMeasure: set the warm-up phase first");
    const histograms = [this.publish, this.publishDelay, this.endToEnd, this.early, this.ack];
    for (const histogram of histograms) {
      histogram.total.reset();
    }
    this.publishMeasured.reset();
    Object.assign(this.measured, zeroCounts());
  }

  get counting(): boolean {
    return this.#phase !== "warmup";
  }

  /** Sends handed to producers (acknowledged, failed or in flight), over every worker. */
  get dispatched(): number {
    return this.#totals.dispatched;
  }

  get acked(): number {
    return this.#totals.acked;
  }

  get ackedBytes(): number {
    return this.#totals.ackedBytes;
  }

  get errors(): number {
    return this.#totals.errors;
  }

  get received(): number {
    return this.#totals.received;
  }

  get receivedBytes(): number {
    return this.#totals.receivedBytes;
  }

  /** Per-message mode: deliveries flagged redelivered, over every worker (whole run). */
  get redeliveries(): number {
    return this.#totals.redeliveries;
  }

  /** Per-message mode: deliveries released by the consumers (whole run). */
  get released(): number {
    return this.#totals.released;
  }

  /** Per-message mode: answers refused by the broker or failed on the way (whole run). */
  get answerFailures(): number {
    return this.#totals.answerFailures;
  }

  get inFlight(): number {
    return this.dispatched - this.acked - this.errors;
  }

  get backlog(): number {
    return Math.max(0, this.acked * this.subscriptions - this.received);
  }

  get scheduleLag(): number {
    return Math.max(0, this.#totals.scheduled - this.acked - this.errors);
  }

  /** One worker's CPU time so far (µs). */
  workerCpuMicrosOf(worker: number): number {
    return this.#cpuMicros.get(worker) ?? 0;
  }

  /** Every worker's CPU time so far (µs), summed. */
  get workerCpuMicros(): number {
    let sum = 0;
    for (const micros of this.#cpuMicros.values()) sum += micros;
    return sum;
  }

  get rssBytesMax(): number {
    return this.#rssBytesMax;
  }

  /** The publish latencies of the last sample's interval (a copy): a search window merges them. */
  get lastPublishInterval(): LatencyHistogram {
    return this.#lastPublishInterval;
  }

  /** Takes one report of worker `worker`: its counters replace its last ones. */
  ingest(worker: number, report: WorkerReport): void {
    this.#latest.set(worker, report.counters);
    this.#totals = sumCounters(this.#latest.values());
    this.publish.interval.addEncoded(report.publish);
    this.publishDelay.interval.addEncoded(report.publishDelay);
    this.endToEnd.interval.addEncoded(report.endToEnd);
    if (report.early !== undefined) this.early.interval.addEncoded(report.early);
    this.ack.interval.addEncoded(report.ack);
    this.#cpuMicros.set(worker, report.cpuMicros);
    this.#rssBytesMax = Math.max(this.#rssBytesMax, report.rssBytes);
    for (const message of report.errorSamples) {
      if (this.errorSamples.length >= ERROR_SAMPLES_MAX) break;
      if (!this.errorSamples.includes(message)) this.errorSamples.push(message);
    }
  }

  /** Closes the current interval: its rates and percentiles, folded into the totals. */
  sample(timing: {
    elapsedMs: number;
    durationMs: number;
    targetRate: number;
    brokerCpuPercent: number | null;
    machineCpu?: MachineCpu | null;
  }): Sample {
    const { durationMs } = timing;
    const now = this.#totals;
    const before = this.#atLastSample;
    const counts: Counts = {
      published: now.acked - before.acked,
      publishedBytes: now.ackedBytes - before.ackedBytes,
      consumed: now.received - before.received,
      consumedBytes: now.receivedBytes - before.receivedBytes,
    };
    const counting = this.counting;
    if (counting) {
      this.measured.published += counts.published;
      this.measured.publishedBytes += counts.publishedBytes;
      this.measured.consumed += counts.consumed;
      this.measured.consumedBytes += counts.consumedBytes;
    }
    // Early deliveries go to the totals with the lateness they are kept apart from.
    this.early.fold(counting);
    const cpuMicros = this.workerCpuMicros;
    if (this.#phase === "measure") this.publishMeasured.add(this.publish.interval);
    this.#lastPublishInterval = new LatencyHistogram();
    this.#lastPublishInterval.add(this.publish.interval);
    const sample: Sample = {
      elapsedMs: timing.elapsedMs,
      durationMs,
      phase: this.#phase,
      targetRate: timing.targetRate,
      publishRate: ratePerSecond(counts.published, durationMs),
      publishMBps: mbPerSecond(counts.publishedBytes, durationMs),
      publishErrorRate: ratePerSecond(now.errors - before.errors, durationMs),
      consumeRate: ratePerSecond(counts.consumed, durationMs),
      consumeMBps: mbPerSecond(counts.consumedBytes, durationMs),
      backlog: this.backlog,
      scheduleLag: this.scheduleLag,
      publishLatency: this.publish.fold(counting),
      endToEndLatency: this.endToEnd.fold(counting),
      publishDelayLatency: this.publishDelay.fold(counting),
      ackLatency: this.ack.fold(counting),
      cpuPercent: cpuPercent(cpuMicros - this.#cpuAtLastSample, durationMs),
      brokerCpuPercent: timing.brokerCpuPercent,
      machineCpu: timing.machineCpu ?? null,
    };
    this.#atLastSample = { ...now };
    this.#cpuAtLastSample = cpuMicros;
    return sample;
  }
}

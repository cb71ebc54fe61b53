// What a run measures: counters over the whole run (for the drain check), per-second samples
// of rates and latencies, and the cumulative latency histograms of the measured phase.
//
//   send ──► recordSend ─ ack ─► recordAck (publish latency, from the intended send time)
//                                   │
//   consumer callback ──► recordReceive (end-to-end latency, from the stamp in the payload)
//                                   │
//   every second: sample() ──► Sample (rates, backlog, interval percentiles, CPU)
//                              and, in the measured phase, interval histograms → totals
//
// MB is 2^20 bytes, as in the OpenMessaging Benchmark's reports.

import { IntervalHistogram, type LatencySummary } from "./histogram.ts";

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
  publishLatency: LatencySummary;
  endToEndLatency: LatencySummary;
  /** How late sends left against their intended times. */
  publishDelayLatency: LatencySummary;
  /** The harness process's CPU time over the sample, in percent of one core. */
  cpuPercent: number;
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

export class RunStats {
  readonly subscriptions: number;
  /** Sends handed to a producer (acknowledged, failed or in flight). */
  dispatched = 0;
  /** Sends acknowledged. */
  acked = 0;
  ackedBytes = 0;
  errors = 0;
  received = 0;
  receivedBytes = 0;
  /** Up to ERROR_SAMPLES_MAX distinct error messages, for the result file. */
  readonly errorSamples: string[] = [];
  /** Publish latency from the intended send time to the acknowledgement. */
  readonly publish = new IntervalHistogram();
  /** How late each send left against its intended time (OMB's publishDelayLatency). */
  readonly publishDelay = new IntervalHistogram();
  /** From the stamp in the payload (the intended send time) to the consumer's callback. */
  readonly endToEnd = new IntervalHistogram();
  /** Counters of the measured phase only. */
  readonly measured = zeroCounts();
  #interval = zeroCounts();
  #intervalErrors = 0;
  #phase: Phase = "warmup";

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

  get inFlight(): number {
    return this.dispatched - this.acked - this.errors;
  }

  get backlog(): number {
    return Math.max(0, this.acked * this.subscriptions - this.received);
  }

  get counting(): boolean {
    return this.#phase !== "warmup";
  }

  recordSend(delayMs: number): void {
    this.dispatched++;
    this.publishDelay.recordMs(delayMs);
  }

  recordAck(latencyMs: number, bytes: number): void {
    this.acked++;
    this.ackedBytes += bytes;
    this.#interval.published++;
    this.#interval.publishedBytes += bytes;
    this.publish.recordMs(latencyMs);
  }

  recordError(error: unknown): void {
    this.errors++;
    this.#intervalErrors++;
    const message = error instanceof Error ? error.message : String(error);
    if (this.errorSamples.length < ERROR_SAMPLES_MAX && !this.errorSamples.includes(message)) {
      this.errorSamples.push(message);
    }
  }

  recordReceive(latencyMs: number, bytes: number): void {
    this.received++;
    this.receivedBytes += bytes;
    this.#interval.consumed++;
    this.#interval.consumedBytes += bytes;
    this.endToEnd.recordMs(latencyMs);
  }

  /** Closes the current interval: its rates and percentiles, folded into the totals. */
  sample(timing: { elapsedMs: number; durationMs: number; cpuMicros: number; targetRate: number }) {
    const { durationMs } = timing;
    const counts = this.#interval;
    const counting = this.counting;
    if (counting) {
      this.measured.published += counts.published;
      this.measured.publishedBytes += counts.publishedBytes;
      this.measured.consumed += counts.consumed;
      this.measured.consumedBytes += counts.consumedBytes;
    }
    const sample: Sample = {
      elapsedMs: timing.elapsedMs,
      durationMs,
      phase: this.#phase,
      targetRate: timing.targetRate,
      publishRate: ratePerSecond(counts.published, durationMs),
      publishMBps: mbPerSecond(counts.publishedBytes, durationMs),
      publishErrorRate: ratePerSecond(this.#intervalErrors, durationMs),
      consumeRate: ratePerSecond(counts.consumed, durationMs),
      consumeMBps: mbPerSecond(counts.consumedBytes, durationMs),
      backlog: this.backlog,
      publishLatency: this.publish.fold(counting),
      endToEndLatency: this.endToEnd.fold(counting),
      publishDelayLatency: this.publishDelay.fold(counting),
      cpuPercent: cpuPercent(timing.cpuMicros, durationMs),
    };
    this.#interval = zeroCounts();
    this.#intervalErrors = 0;
    return sample;
  }
}

export const ERROR_SAMPLES_MAX = 10;

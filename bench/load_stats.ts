// What one load worker records: its producers' sends and acknowledgements and its consumers'
// receipts. Counters are cumulative over the worker's life; the latency histograms hold what
// arrived since the last report. The coordinator asks every worker for a report once a second
// (and more often while draining) and merges them exactly in RunStats (./stats.ts):
//
//   worker: send ──► recordSend ─ ack ─► recordAck        consumer ──► recordReceive
//           report() ──► WorkerReport { cumulative counters, interval histograms, CPU }
//                                   │ (over a socket, or in-process)
//   coordinator: RunStats.ingest(reports of every worker) ──► sample() once a second

import { type EncodedHistogram, LatencyHistogram } from "./histogram.ts";

/** Distinct error messages a worker keeps for the result file. */
export const ERROR_SAMPLES_MAX = 10;

/** A worker's cumulative counters. */
export type WorkerCounters = {
  /** Sends handed to a producer (acknowledged, failed or in flight). */
  dispatched: number;
  acked: number;
  ackedBytes: number;
  /** Failed sends. */
  errors: number;
  /** Messages received; in per-message mode, accepts the broker confirmed. */
  received: number;
  receivedBytes: number;
  /** Per-message mode: deliveries flagged redelivered (released, lock expired, member gone). */
  redeliveries: number;
  /** Per-message mode: deliveries the consumers released (releaseRatio). */
  released: number;
  /** Per-message mode: answers the broker refused or that failed on the way. */
  answerFailures: number;
  /**
   * Messages due by the producers' schedules so far (sent or not). Due messages a rate change
   * dropped unsent are not counted, so scheduled − acked − errors is the schedule lag: due and
   * not yet acknowledged.
   */
  scheduled: number;
};

/** One report of one worker: see the file header. */
export type WorkerReport = {
  counters: WorkerCounters;
  /** Publish latency from the intended send time, since the last report. */
  publish: EncodedHistogram;
  /** How late sends left against their intended times, since the last report. */
  publishDelay: EncodedHistogram;
  /**
   * From the stamp in the payload to the consumer's callback, since the last report. With
   * delays the stamp is the due time and this is the lateness, early deliveries left out.
   */
  endToEnd: EncodedHistogram;
  /**
   * Delayed workloads: how long before its due time each early delivery came, ms, since the
   * last report (absent from workers before early deliveries were counted).
   */
  early?: EncodedHistogram;
  /** Per-message mode: from accept() to the broker's durable confirmation, since last report. */
  ack: EncodedHistogram;
  /** The worker process's CPU time (user + system, every thread), cumulative, µs. */
  cpuMicros: number;
  rssBytes: number;
  errorSamples: string[];
};

/** What the load generator needs to record its sends. */
export interface SendRecorder {
  recordSend(delayMs: number): void;
  recordAck(latencyMs: number, bytes: number): void;
  recordError(error: unknown): void;
}

export function zeroCounters(): WorkerCounters {
  return {
    dispatched: 0,
    acked: 0,
    ackedBytes: 0,
    errors: 0,
    received: 0,
    receivedBytes: 0,
    redeliveries: 0,
    released: 0,
    answerFailures: 0,
    scheduled: 0,
  };
}

export type LoadStatsOptions = {
  /**
   * The payloads are stamped with due times (deliveryDelayMsMax > 0): a delivery before its
   * due time is early. It is recorded in `early` (by how much) and kept out of `endToEnd`, so
   * the lateness percentiles hold only deliveries at or after their due time and an early one
   * is never hidden among them as a zero. Default false: a negative end-to-end latency is a
   * clock read a hair before the stamp, and is recorded as 0.
   */
  dueTimes?: boolean;
};

/**
 * A delivery counts as early when it came more than this before its due time: the resolution
 * of a due time at the brokers. sluice computes it from the record's timestamp (whole
 * milliseconds, taken when the producer adds the record) and RabbitMQ's `expiration` is whole
 * milliseconds, while the stamp is the schedule's fractional intended time on a clock
 * corrected by a measured offset; a delivery less than 1 ms before the stamp is on time at the
 * broker's resolution and counts as lateness 0.
 */
export const EARLY_TOLERANCE_MS = 1;

export class LoadStats implements SendRecorder {
  readonly counters: WorkerCounters = zeroCounters();
  readonly errorSamples: string[] = [];
  readonly publish = new LatencyHistogram();
  readonly publishDelay = new LatencyHistogram();
  readonly endToEnd = new LatencyHistogram();
  readonly ack = new LatencyHistogram();
  /** Delayed workloads: how early each early delivery came (see LoadStatsOptions). */
  readonly early = new LatencyHistogram();
  readonly #dueTimes: boolean;

  constructor(options: LoadStatsOptions = {}) {
    this.#dueTimes = options.dueTimes ?? false;
  }

  get inFlight(): number {
    const { dispatched, acked, errors } = this.counters;
    return dispatched - acked - errors;
  }

  recordSend(delayMs: number): void {
    this.counters.dispatched++;
    this.publishDelay.recordMs(delayMs);
  }

  recordAck(latencyMs: number, bytes: number): void {
    this.counters.acked++;
    this.counters.ackedBytes += bytes;
    this.publish.recordMs(latencyMs);
  }

  recordError(error: unknown): void {
    this.counters.errors++;
    const message = error instanceof Error ? error.message : String(error);
    if (this.errorSamples.length < ERROR_SAMPLES_MAX && !this.errorSamples.includes(message)) {
      this.errorSamples.push(message);
    }
  }

  recordReceive(latencyMs: number, bytes: number): void {
    this.counters.received++;
    this.counters.receivedBytes += bytes;
    this.#recordEndToEnd(latencyMs);
  }

  /** Per-message mode: a delivery, answered release or (latency recorded) to be accepted. */
  recordDelivery(latencyMs: number, redelivered: boolean, released: boolean): void {
    if (redelivered) this.counters.redeliveries++;
    if (released) this.counters.released++;
    else this.#recordEndToEnd(latencyMs);
  }

  /** End-to-end latency, or with due times the lateness (an early delivery apart). */
  #recordEndToEnd(latencyMs: number): void {
    if (this.#dueTimes && latencyMs < -EARLY_TOLERANCE_MS) this.early.recordMs(-latencyMs);
    else this.endToEnd.recordMs(latencyMs);
  }

  /** Per-message mode: the broker confirmed an accept; it counts as the message received. */
  recordAccepted(bytes: number, ackLatencyMs: number | null): void {
    this.counters.received++;
    this.counters.receivedBytes += bytes;
    if (ackLatencyMs !== null) this.ack.recordMs(ackLatencyMs);
  }

  recordAnswerFailure(error: unknown): void {
    this.counters.answerFailures++;
    const message = error instanceof Error ? error.message : String(error);
    if (this.errorSamples.length < ERROR_SAMPLES_MAX && !this.errorSamples.includes(message)) {
      this.errorSamples.push(`answer failed: ${message}`);
    }
  }

  /** The counters and the histograms since the last report (which are then reset). */
  report(process: { scheduled: number; cpuMicros: number; rssBytes: number }): WorkerReport {
    this.counters.scheduled = process.scheduled;
    const report: WorkerReport = {
      counters: { ...this.counters },
      publish: this.publish.encode(),
      publishDelay: this.publishDelay.encode(),
      endToEnd: this.endToEnd.encode(),
      early: this.early.encode(),
      ack: this.ack.encode(),
      cpuMicros: process.cpuMicros,
      rssBytes: process.rssBytes,
      errorSamples: [...this.errorSamples],
    };
    this.publish.reset();
    this.publishDelay.reset();
    this.endToEnd.reset();
    this.early.reset();
    this.ack.reset();
    return report;
  }
}

// Runs one workload against one driver, with the load in worker processes:
//
//   coordinator: create topics and subscriptions (its driver instance)
//   ─► workers: set up their own driver instances, then consumers (all subscribed before the
//      first send) and producers
//   ─► warm-up (the max-rate search when producerRate is 0; excluded from the results)
//   ─► measured phase ─► stop sending ─► drain: wait until every acknowledged message reached
//      every subscription (or the drain gives up, which the result reports)
//   ─► workers close their clients and drivers; the coordinator deletes the topics
//
// Once a second the coordinator collects every worker's report (counters, exact latency
// histograms, CPU), reads the broker's CPU from /proc, and makes one sample, printed as a
// progress line. A worker that dies ends the run at once: the outcome carries the samples so
// far and the failure, and cli.ts writes that partial result. Every wait has a deadline.

import { randomBytes } from "node:crypto";
import os from "node:os";
import {
  type DiskSyncFields,
  type DiskSyncReading,
  diskSyncFields,
  NO_DISK_SYNCS,
} from "./disk_syncs.ts";
import { wallSkewMs } from "./clock_step.ts";
import type { BrokerProcess, Driver, DriverSettings } from "./driver.ts";
import {
  BrokerCpuMeter,
  type MachineCpu,
  type MachineTicks,
  machineCpuBetween,
  machineTicks,
} from "./proc_cpu.ts";
import {
  BACKOFF_SETTLE_SECONDS,
  PROBE_SECONDS,
  RateSearch,
  type RateSearchStep,
  type SearchRules,
} from "./rate_control.ts";
import { cpuMicrosNow, cpuPercent, RunStats, type Sample } from "./stats.ts";
import {
  heldSecondsOf,
  judgeWindow,
  PUBLISH_P99_MS_MAX_DEFAULT,
  type SustainVerdict,
} from "./sustain.ts";
import {
  type PageReporting,
  type PageReportingMark,
  pageReportingBetween,
  pageReportingMark,
} from "./page_reporting.ts";
import { dirtyMB, type ProcReader, readProc } from "./tcp/isolation.ts";
import { Ensemble, placeClients } from "./worker/ensemble.ts";
import { type LoadWorker, WorkerDiedError } from "./worker/handle.ts";
import { InProcessWorker } from "./worker/in_process.ts";
import type { SetupReply, SubscriptionSpec, TopicSpec } from "./worker/messages.ts";
import { payloadSpecOf } from "./worker/session.ts";
import { IN_FLIGHT_BYTES_MAX, IN_FLIGHT_MESSAGES_MIN } from "./load_generator.ts";
import type { Workload } from "./workload.ts";
import fs from "node:fs";

export const SAMPLE_INTERVAL_MS = 1000;
/** The longest a drain may take after the last send. */
export const DRAIN_TIMEOUT_MS_DEFAULT = 60_000;
/** A drain also gives up when nothing at all arrived for this long. */
export const DRAIN_IDLE_MS_DEFAULT = 10_000;
const DRAIN_CHECK_INTERVAL_MS = 20;
/**
 * A producer keeps at most this many p99 bounds' worth of its rate in flight (250 ms at the
 * default bound): more could only wait, and would count as latency beyond the bound anyway.
 */
export const IN_FLIGHT_BOUND_MULTIPLE = 2.5;
/** Closing the workers, or deleting a topic, may take at most this long. */
export const CLOSE_TIMEOUT_MS = 30_000;

export type RunOptions = {
  /** Receives one progress line a second (default: standard error). */
  progress?: (line: string) => void;
  drainTimeoutMs?: number;
  drainIdleMs?: number;
  /** The publish p99 a sustained rate must stay under (default 100 ms). */
  publishP99MsMax?: number;
  /**
   * Ends the run early (Ctrl-C): it stops like a run whose worker died, with the samples so far
   * as a partial result whose failure names the reason.
   */
  signal?: AbortSignal;
};

/** What a run is against: the coordinator's driver instance and the load workers. */
export type RunTarget = {
  name: string;
  /** The coordinator's instance; null when the broker lives in the (one) worker. */
  driver: Driver | null;
  /** Connected workers; default one in-process worker on `driver`. */
  workers?: LoadWorker[];
  /** Options the workers' driver instances get (default: driver.workerOptions()). */
  workerOptions?: Record<string, string>;
};

/** The load generators' CPU use over the measured phase: every worker process. */
export type ClientCpu = {
  cpuMs: number;
  wallMs: number;
  /** CPU time over wall time: 100 is one core fully busy. */
  percentOfOneCore: number;
  cores: number;
  /** The largest resident set size any worker reported, in bytes. */
  rssBytesMax: number;
  processes: number;
  /** The coordinator process's own CPU over the same phase, % of one core. */
  coordinatorPercentOfOneCore: number;
};

/** The broker's CPU use over the measured phase, from /proc; null figures when unknown. */
export type BrokerCpu = {
  cpuMs: number | null;
  percentOfOneCore: number | null;
  pids: number[];
  note: string;
};

/** A load worker: its label, measured clock offset, and CPU over the measured phase. */
export type WorkerInfo = { label: string; clockOffsetMs: number; cpuPercent: number };

/** The search's steps (backoffs included), its rules, and the rate it measured at. */
export type RateSearchResult = {
  steps: RateSearchStep[];
  heldRate: number;
  rules: SearchRules;
  /** Steps judged again after failing only the headroom (the retry rule; absent before it). */
  retriedSteps?: number;
  /** Steps that judged a converged bisection's bound again (the revisit rule; absent before it). */
  revisitedSteps?: number;
};

export type RunOutcome = {
  startedAt: string;
  topicNames: string[];
  samples: Sample[];
  stats: RunStats;
  /** The search's steps and the rate it measured at, when producerRate was 0. */
  rateSearch: RateSearchResult | undefined;
  measuredSeconds: number;
  clientCpu: ClientCpu;
  brokerCpu: BrokerCpu;
  /** The whole machine over the measured phase (from /proc/stat; null elsewhere). */
  machineCpu: MachineCpu | null;
  /** The kernel's free page reporting over the measured phase (null where it has none). */
  pageReporting?: PageReporting | null;
  workers: WorkerInfo[];
  settings: DriverSettings;
  durability: string;
  /** The measured phase judged as one window (sustain.ts). */
  sustain: SustainVerdict | null;
  publishP99MsMax: number;
  drained: boolean;
  drainMs: number;
  /** What went wrong besides failed sends: drain shortfall, close or delete failures. */
  problems: string[];
  /** How far the wall clock moved against the monotonic one over the run, ms (clock_step.ts). */
  clockStepMs: number;
  /** Why the run stopped early (a worker died); its samples are partial. */
  failure: string | undefined;
  /** The broker's fdatasyncs over the measured phase (absent or null: not known). */
  disk?: DiskSyncFields;
  /**
   * Per-message mode: messages the broker dead-lettered over every subscription (null: the
   * driver cannot say, or stream mode).
   */
  deadLettered: number | null;
};

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

async function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function isDriver(target: Driver | RunTarget): target is Driver {
  return typeof (target as Driver).createTopic === "function";
}

/** Runs `workload`; a Driver alone runs with the load in this process (one in-process worker). */
export async function runWorkload(
  target: Driver | RunTarget,
  workload: Workload,
  options: RunOptions = {},
): Promise<RunOutcome> {
  const run: RunTarget = isDriver(target) ? { name: target.name, driver: target } : target;
  const workers = run.workers ?? [new InProcessWorker(run.driver!)];
  const runId = randomBytes(3).toString("hex");
  const topicNames = Array.from({ length: workload.topics }, (_, i) => `bench-${runId}-${i}`);
  const subscriptionName = (_topic: number, s: number) => `bench-${runId}-sub-${s}`;
  const stats = new RunStats(workload.subscriptionsPerTopic);
  const created: string[] = [];
  const problems: string[] = [];
  const startedAt = new Date().toISOString();
  const skewAtStart = wallSkewMs();
  let closed = false;
  try {
    const topics = topicNames.map((name) => ({ name, partitions: workload.partitionsPerTopic }));
    const subscriptions = topicNames.flatMap((topic, t) =>
      Array.from({ length: workload.subscriptionsPerTopic }, (_, s) => ({
        topic,
        name: subscriptionName(t, s),
      })),
    );
    await createTopics(run.driver, topics, subscriptions, created);
    const setup = await setUpWorkers(run, workers, { topics, subscriptions, workload });
    const placements = placeClients(workload, topicNames, subscriptionName, workers.length);
    const payloads = payloadSpecOf(
      workload,
      workload.payloadFile === undefined ? null : fs.readFileSync(workload.payloadFile),
    );
    const inFlightMaxPerProducer = inFlightShare(workload);
    const inFlightSeconds =
      (IN_FLIGHT_BOUND_MULTIPLE * (options.publishP99MsMax ?? PUBLISH_P99_MS_MAX_DEFAULT)) / 1000;
    await Promise.all(
      workers.map((worker, i) =>
        worker.clients({
          ...placements[i]!,
          acks: {
            ackMode: workload.ackMode,
            releaseRatio: workload.releaseRatio,
            deliveryDelayMsMax: workload.deliveryDelayMsMax,
          },
          payloads,
          inFlightMaxPerProducer,
          inFlightSeconds,
        }),
      ),
    );
    const ensemble = new Ensemble(workers, placements, stats);
    const meter = new BrokerCpuMeter(run.driver?.brokerProcess?.() ?? setup.brokerProcess);
    const timeline = new Timeline(run.name, workload, stats, ensemble, meter, options);
    timeline.readDiskSyncs = run.driver?.diskSyncs?.bind(run.driver);
    const measured = await timeline.run();
    problems.push(...measured.problems);
    closed = true;
    problems.push(...(await closeWorkers(workers)));
    const deadLettered = await countDeadLettered(run.driver, workload, subscriptions, problems);
    return {
      startedAt,
      topicNames,
      stats,
      ...measured,
      workers: workers.map((w, i) => ({
        label: w.label,
        clockOffsetMs: w.clockOffsetMs,
        cpuPercent: measured.workerCpuPercents[i] ?? 0,
      })),
      settings: run.driver?.settings() ?? setup.settings,
      durability: run.driver?.durability() ?? setup.durability,
      problems,
      deadLettered,
      clockStepMs: wallSkewMs() - skewAtStart,
    };
  } finally {
    if (!closed) problems.push(...(await closeWorkers(workers)));
    problems.push(...(await deleteTopics(run.driver, created)));
  }
}

/** Each producer's share of IN_FLIGHT_BYTES_MAX, over every producer of every worker. */
function inFlightShare(workload: Workload): number {
  const producers = workload.topics * workload.producersPerTopic;
  const share = Math.floor(IN_FLIGHT_BYTES_MAX / producers / workload.messageSize);
  return Math.max(IN_FLIGHT_MESSAGES_MIN, share);
}

async function createTopics(
  driver: Driver | null,
  topics: TopicSpec[],
  subscriptions: SubscriptionSpec[],
  created: string[],
): Promise<void> {
  if (driver === null) return;
  for (const topic of topics) {
    await driver.createTopic(topic.name, topic.partitions);
    created.push(topic.name);
  }
  for (const subscription of subscriptions) {
    await driver.createSubscription?.(subscription.topic, subscription.name);
  }
}

/** Per-message mode: the broker's dead-letter count summed over subscriptions, else null. */
async function countDeadLettered(
  driver: Driver | null,
  workload: Workload,
  subscriptions: SubscriptionSpec[],
  problems: string[],
): Promise<number | null> {
  if (workload.ackMode !== "per-message" || driver?.subscriptionCounts === undefined) return null;
  let sum = 0;
  for (const subscription of subscriptions) {
    try {
      const counts = await driver.subscriptionCounts(subscription.topic, subscription.name);
      if (counts.deadLettered === null) return null;
      sum += counts.deadLettered;
    } catch (error) {
      problems.push(`counting dead letters of ${subscription.name} failed: ${String(error)}`);
      return null;
    }
  }
  return sum;
}

async function setUpWorkers(
  run: RunTarget,
  workers: LoadWorker[],
  what: { topics: TopicSpec[]; subscriptions: SubscriptionSpec[]; workload: Workload },
): Promise<SetupReply> {
  const { topics, subscriptions, workload } = what;
  if (run.driver === null && workers.length !== 1) {
    throw new RangeError(`${run.name} runs its broker inside its worker: it needs exactly one`);
  }
  const options = run.workerOptions ?? run.driver?.workerOptions?.() ?? {};
  const request = {
    driver: run.name,
    options,
    ownsTopics: run.driver === null,
    topics,
    subscriptions,
    ackMode: workload.ackMode,
    priorityLevels: workload.priorityLevels,
    deliveryDelayMsMax: workload.deliveryDelayMsMax,
  };
  const replies = await Promise.all(workers.map((worker) => worker.setup(request)));
  return replies[0]!;
}

/** Closes every worker (in parallel, each within CLOSE_TIMEOUT_MS; one that hangs is killed). */
async function closeWorkers(workers: readonly LoadWorker[]): Promise<string[]> {
  const results = await Promise.all(
    workers.map(async (worker) => {
      try {
        return await withDeadline(worker.close(), CLOSE_TIMEOUT_MS, `closing ${worker.label}`);
      } catch (error) {
        worker.kill();
        return [`closing ${worker.label} failed: ${(error as Error).message}`];
      }
    }),
  );
  return results.flat();
}

async function deleteTopics(driver: Driver | null, topics: string[]): Promise<string[]> {
  const problems: string[] = [];
  if (driver === null) return problems;
  for (const topic of topics) {
    try {
      await withDeadline(driver.deleteTopic(topic), CLOSE_TIMEOUT_MS, `deleting ${topic}`);
    } catch (error) {
      problems.push(`deleting ${topic} failed: ${(error as Error).message}`);
    }
  }
  return problems;
}

type Measured = { workerCpuPercents: number[] } & Pick<
  RunOutcome,
  | "samples"
  | "rateSearch"
  | "measuredSeconds"
  | "clientCpu"
  | "brokerCpu"
  | "machineCpu"
  | "pageReporting"
  | "sustain"
  | "publishP99MsMax"
  | "drained"
  | "drainMs"
  | "problems"
  | "failure"
  | "disk"
>;

/** CPU readings at one instant: workers (µs), broker (ms), this process (µs). */
type CpuMark = {
  wallMs: number;
  workerMicros: number;
  eachWorkerMicros: number[];
  brokerMs: number | undefined;
  selfMicros: number;
  machine: MachineTicks | undefined;
  pageReporting: PageReportingMark | undefined;
};

/** The timed part of a run: warm-up, measured phase, drain; one sample a second. */
class Timeline {
  readonly #driverName: string;
  readonly #workload: Workload;
  readonly #stats: RunStats;
  readonly #ensemble: Ensemble;
  readonly #meter: BrokerCpuMeter;
  readonly #search: RateSearch | undefined;
  readonly #options: RunOptions;
  #abort: Promise<never> | undefined;
  readonly #progress: (line: string) => void;
  readonly #publishP99MsMax: number;
  readonly #samples: Sample[] = [];
  #rate: number;
  #startMs = 0;
  /** Seconds of the run sampled so far (warm-up, measured phase and any backoff). */
  #seconds = 0;
  /** Seconds the measured phase's backoffs added to the run (failed probes and settling). */
  #backoffSeconds = 0;
  #lastSampleMs = 0;
  #lastMachine: MachineTicks | undefined = machineTicks();
  /** The broker's fdatasync histogram (Driver.diskSyncs), read as the measured phase starts
   * and ends; undefined: not known. */
  readDiskSyncs: (() => Promise<DiskSyncReading | null>) | undefined;
  #diskSyncProblems: string[] = [];

  constructor(
    driverName: string,
    workload: Workload,
    stats: RunStats,
    ensemble: Ensemble,
    meter: BrokerCpuMeter,
    options: RunOptions,
  ) {
    this.#driverName = driverName;
    this.#workload = workload;
    this.#stats = stats;
    this.#ensemble = ensemble;
    this.#meter = meter;
    this.#options = options;
    this.#publishP99MsMax = options.publishP99MsMax ?? PUBLISH_P99_MS_MAX_DEFAULT;
    this.#progress = options.progress ?? ((line) => process.stderr.write(`${line}\n`));
    this.#search =
      workload.producerRate === 0
        ? new RateSearch({
            messageSize: workload.messageSize,
            subscriptions: workload.subscriptionsPerTopic,
            warmupSeconds: Math.round(workload.warmupDurationSeconds),
            publishP99MsMax: this.#publishP99MsMax,
            heldSeconds: heldSecondsOf(workload),
          })
        : undefined;
    this.#rate = this.#search?.rate ?? workload.producerRate;
  }

  async run(): Promise<Measured> {
    const warmupSamples = Math.round(this.#workload.warmupDurationSeconds);
    const measureSamples = Math.max(1, Math.round(this.#workload.testDurationSeconds));
    const stats = this.#stats;
    stats.setPhase(warmupSamples > 0 ? "warmup" : "measure");
    let atMeasure = this.#cpuMark();
    let atEnd = atMeasure;
    try {
      this.#startMs = performance.now();
      this.#lastSampleMs = this.#startMs;
      this.#meter.intervalPercent();
      await this.#ensemble.start(this.#rate);
      for (let k = 1; k <= warmupSamples; k++) {
        const sample = await this.#second();
        if (this.#search !== undefined) {
          const publishHistogram = stats.lastPublishInterval;
          const dirtyBytes = machineDirtyBytes();
          await this.#setRate(this.#search.observe({ ...sample, publishHistogram, dirtyBytes }));
        }
      }
      if (this.#search !== undefined) await this.#setRate(this.#search.finish());
      stats.setPhase("measure");
      atMeasure = this.#cpuMark();
      let syncsAtMeasure = await this.#diskSyncs();
      for (let measured = 1; measured <= measureSamples; measured++) {
        await this.#second();
        if (measured === PROBE_SECONDS && measured < measureSamples && (await this.#probe())) {
          atMeasure = this.#cpuMark();
          syncsAtMeasure = await this.#diskSyncs();
          measured = 0;
        }
      }
      atEnd = this.#cpuMark();
      const disk = this.#diskSyncFields(syncsAtMeasure, await this.#diskSyncs());
      await this.#ensemble.stop();
      stats.setPhase("drain");
      const drain = await this.#drain();
      drain.problems.push(...this.#diskSyncProblems);
      return { ...this.#measured(measureSamples, atMeasure, atEnd, drain, undefined), disk };
    } catch (error) {
      if (!(error instanceof WorkerDiedError)) throw error;
      const failed = { drained: false, drainMs: 0, problems: [error.message] };
      return this.#measured(measureSamples, atMeasure, this.#cpuMark(), failed, error.message);
    }
  }

  /** The broker's fdatasync histogram now; a failed read is a problem, not a failed run. */
  async #diskSyncs(): Promise<DiskSyncReading | null> {
    if (this.readDiskSyncs === undefined) return null;
    try {
      return await this.readDiskSyncs();
    } catch (error) {
      this.#diskSyncProblems.push(`reading the broker's fsync histograms: ${String(error)}`);
      return null;
    }
  }

  #diskSyncFields(before: DiskSyncReading | null, after: DiskSyncReading | null): DiskSyncFields {
    try {
      return diskSyncFields(before, after);
    } catch (error) {
      this.#diskSyncProblems.push(`the broker's fsync histograms: ${String(error)}`);
      return NO_DISK_SYNCS;
    }
  }

  /** Waits for the next second of the run and takes its sample. */
  async #second(): Promise<Sample> {
    this.#seconds++;
    await this.#until(this.#startMs + this.#seconds * SAMPLE_INTERVAL_MS);
    return await this.#sample();
  }

  /**
   * The probe rule (rate_control.ts): with a max-rate search, the measured phase's first
   * seconds are judged; when they fail, they become warm-up, the rate steps down, settles,
   * and the measured phase starts again (true). Fixed-rate workloads are never probed.
   */
  async #probe(): Promise<boolean> {
    const search = this.#search;
    if (search === undefined) return false;
    const window = this.#samples.filter((s) => s.phase === "measure");
    const first = window[0];
    if (first === undefined) return false;
    const rate = search.probeMeasured(window, {
      startSecond: Math.round((first.elapsedMs - first.durationMs) / 1000),
      windowP99Ms: this.#stats.publishMeasured.percentileMs(99),
    });
    if (rate === undefined) return false;
    this.#backoffSeconds += window.length + BACKOFF_SETTLE_SECONDS;
    for (const sample of window) sample.phase = "warmup";
    this.#stats.setPhase("warmup");
    await this.#setRate(rate);
    for (let i = 0; i < BACKOFF_SETTLE_SECONDS; i++) await this.#second();
    this.#stats.restartMeasure();
    this.#stats.setPhase("measure");
    return true;
  }

  #measured(
    measureSamples: number,
    atMeasure: CpuMark,
    atEnd: CpuMark,
    drain: { drained: boolean; drainMs: number; problems: string[] },
    failure: string | undefined,
  ): Measured {
    const search = this.#search;
    const measured = this.#samples.filter((s) => s.phase === "measure");
    const stats = this.#stats;
    const sustain =
      measured.length === 0
        ? null
        : judgeWindow(measured, {
            subscriptions: stats.subscriptions,
            publishP99MsMax: this.#publishP99MsMax,
            windowP99Ms: stats.publishMeasured.percentileMs(99),
            heldSeconds: heldSecondsOf(this.#workload),
          });
    return {
      samples: this.#samples,
      rateSearch:
        search === undefined
          ? undefined
          : {
              steps: search.steps,
              heldRate: search.rate,
              rules: search.rules,
              retriedSteps: search.retriedSteps,
              revisitedSteps: search.revisitedSteps,
            },
      measuredSeconds: failure === undefined ? measureSamples : measured.length,
      clientCpu: this.#clientCpu(atMeasure, atEnd),
      brokerCpu: this.#brokerCpu(atMeasure, atEnd),
      machineCpu: machineCpuBetween(atMeasure.machine, atEnd.machine, os.cpus().length),
      pageReporting: pageReportingBetween(atMeasure.pageReporting, atEnd.pageReporting),
      workerCpuPercents: atEnd.eachWorkerMicros.map((micros, i) =>
        cpuPercent(micros - (atMeasure.eachWorkerMicros[i] ?? 0), atEnd.wallMs - atMeasure.wallMs),
      ),
      sustain: failure === undefined ? sustain : null,
      publishP99MsMax: this.#publishP99MsMax,
      ...drain,
      failure,
    };
  }

  async #setRate(rate: number): Promise<void> {
    if (rate === this.#rate) return;
    this.#rate = rate;
    await this.#ensemble.setRate(rate);
  }

  /** Sleeps until `atMs`, or fails at once when a worker dies meanwhile. */
  async #until(atMs: number): Promise<void> {
    await Promise.race([sleep(atMs - performance.now()), this.#ensemble.died, this.#aborted()]);
  }

  /**
   * Rejects with a WorkerDiedError once options.signal aborts (never without a signal). Made
   * once per run, so the waits of a run add one abort listener, not one each.
   */
  #aborted(): Promise<never> {
    if (this.#abort !== undefined) return this.#abort;
    const signal = this.#options.signal;
    this.#abort = new Promise((_, reject) => {
      if (signal === undefined) return;
      const fail = () => reject(new WorkerDiedError(`interrupted: ${String(signal.reason)}`));
      if (signal.aborted) fail();
      else signal.addEventListener("abort", fail, { once: true });
    });
    // A run that never waits again after the abort must not leave the rejection unhandled.
    this.#abort.catch(() => {});
    return this.#abort;
  }

  async #sample(): Promise<Sample> {
    await this.#ensemble.collect();
    const now = performance.now();
    const machine = machineTicks();
    const sample = this.#stats.sample({
      elapsedMs: now - this.#startMs,
      durationMs: now - this.#lastSampleMs,
      targetRate: this.#rate,
      brokerCpuPercent: this.#meter.intervalPercent(),
      machineCpu: machineCpuBetween(this.#lastMachine, machine, os.cpus().length),
    });
    this.#lastMachine = machine;
    this.#lastSampleMs = now;
    this.#samples.push(sample);
    this.#progress(
      progressLine(this.#driverName, this.#workload, sample, this.#search, this.#backoffSeconds),
    );
    return sample;
  }

  #cpuMark(): CpuMark {
    return {
      wallMs: performance.now(),
      workerMicros: this.#stats.workerCpuMicros,
      eachWorkerMicros: this.#ensemble.workers.map((_, i) => this.#stats.workerCpuMicrosOf(i)),
      brokerMs: this.#meter.totalMs(),
      selfMicros: cpuMicrosNow(),
      machine: machineTicks(),
      pageReporting: pageReportingMark(),
    };
  }

  #clientCpu(start: CpuMark, end: CpuMark): ClientCpu {
    const wallMs = end.wallMs - start.wallMs;
    const cpuMicros = end.workerMicros - start.workerMicros;
    return {
      cpuMs: cpuMicros / 1000,
      wallMs,
      percentOfOneCore: cpuPercent(cpuMicros, wallMs),
      cores: os.cpus().length,
      rssBytesMax: this.#stats.rssBytesMax,
      processes: this.#ensemble.workers.length,
      coordinatorPercentOfOneCore: cpuPercent(end.selfMicros - start.selfMicros, wallMs),
    };
  }

  #brokerCpu(start: CpuMark, end: CpuMark): BrokerCpu {
    const wallMs = end.wallMs - start.wallMs;
    const known = start.brokerMs !== undefined && end.brokerMs !== undefined && wallMs > 0;
    const cpuMs = known ? end.brokerMs! - start.brokerMs! : null;
    return {
      cpuMs,
      percentOfOneCore: cpuMs === null ? null : (cpuMs / wallMs) * 100,
      pids: this.#meter.pids,
      note: this.#meter.note,
    };
  }

  /** Waits until every acknowledged message reached every subscription, within deadlines. */
  async #drain(): Promise<{ drained: boolean; drainMs: number; problems: string[] }> {
    const stats = this.#stats;
    const timeoutMs = this.#options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS_DEFAULT;
    const idleMs = this.#options.drainIdleMs ?? DRAIN_IDLE_MS_DEFAULT;
    const start = performance.now();
    let last = { progress: -1, ms: start };
    let nextSampleMs = this.#lastSampleMs + SAMPLE_INTERVAL_MS;
    const settled = () =>
      stats.inFlight === 0 && stats.received >= stats.acked * stats.subscriptions;
    await this.#ensemble.collect();
    while (!settled()) {
      const now = performance.now();
      const progress = stats.received + stats.acked + stats.errors;
      if (progress !== last.progress) last = { progress, ms: now };
      if (now - start > timeoutMs || now - last.ms > idleMs) break;
      if (now >= nextSampleMs) {
        await this.#sample();
        nextSampleMs += SAMPLE_INTERVAL_MS;
      } else {
        await this.#until(now + DRAIN_CHECK_INTERVAL_MS);
        await this.#ensemble.collect();
      }
    }
    const drained = settled();
    const drainMs = performance.now() - start;
    await this.#sample();
    return { drained, drainMs, problems: drainProblems(stats, drained, drainMs) };
  }
}

/** The machine's Dirty + Writeback page cache in bytes (/proc/meminfo); undefined elsewhere. */
export function machineDirtyBytes(read: ProcReader = readProc): number | undefined {
  const meminfo = read("/proc/meminfo");
  const mb = meminfo === undefined ? undefined : dirtyMB(meminfo);
  return mb === undefined ? undefined : mb * 1e6;
}

function drainProblems(stats: RunStats, drained: boolean, drainMs: number): string[] {
  const expected = stats.acked * stats.subscriptions;
  const problems: string[] = [];
  if (!drained) {
    problems.push(
      `drain gave up after ${(drainMs / 1000).toFixed(1)} s: ${stats.received} of ` +
        `${expected} messages received, ${stats.inFlight} sends unacknowledged`,
    );
  } else if (stats.received > expected) {
    problems.push(`${stats.received - expected} more messages received than sent (duplicates)`);
  }
  return problems;
}

function formatCount(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

export function progressLine(
  driverName: string,
  workload: Workload,
  sample: Sample,
  search: RateSearch | undefined,
  backoffSeconds = 0,
): string {
  const seconds = Math.round(sample.elapsedMs / 1000);
  const total = Math.round(
    workload.warmupDurationSeconds + workload.testDurationSeconds + backoffSeconds,
  );
  const retry =
    search?.retrying === true ? " retry" : search?.revisiting === true ? " revisit" : "";
  const searching =
    search !== undefined && sample.phase === "warmup"
      ? `  search ${search.state}${retry} ${formatCount(search.rate)} msg/s`
      : "";
  const publish = `${formatCount(sample.publishRate).padStart(9)} msg/s`;
  const p99 = `p99 pub ${sample.publishLatency.p99Ms.toFixed(1)}`;
  const broker =
    sample.brokerCpuPercent === null ? "" : ` brk ${Math.round(sample.brokerCpuPercent)}%`;
  const machine =
    sample.machineCpu === null
      ? ""
      : ` machine ${Math.round(sample.machineCpu.busyPercent)}%` +
        (sample.machineCpu.iowaitPercent >= 1
          ? ` iowait ${Math.round(sample.machineCpu.iowaitPercent)}%`
          : "");
  return (
    `${driverName.padEnd(16)} ${sample.phase.padEnd(7)} ${String(seconds).padStart(4)}/${total} s` +
    `  pub ${publish} ${sample.publishMBps.toFixed(1)} MB/s` +
    `  cons ${formatCount(sample.consumeRate).padStart(9)} msg/s` +
    `  backlog ${formatCount(sample.backlog)}  lag ${formatCount(sample.scheduleLag)}` +
    `  ${p99} e2e ${sample.endToEndLatency.p99Ms.toFixed(1)} ms` +
    `  cpu wrk ${Math.round(sample.cpuPercent)}%${broker}${machine}${searching}`
  );
}

export type { BrokerProcess };

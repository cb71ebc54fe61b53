// Runs one workload against one driver:
//
//   create topics ─► consumers (all subscribed before the first send) ─► producers
//   ─► warm-up (max-rate search when producerRate is 0; excluded from the results)
//   ─► measured phase ─► stop sending ─► drain: wait until every acknowledged message reached
//      every subscription (or the drain gives up, which the result reports)
//   ─► close producers and consumers, delete topics
//
// One sample a second, each printed as a progress line. Every wait here is on a condition with
// a deadline, so a driver that hangs cannot hang the harness.

import { randomBytes } from "node:crypto";
import os from "node:os";
import type { BenchConsumer, BenchProducer, Driver } from "./driver.ts";
import { LoadGenerator } from "./load_generator.ts";
import { KeySource, PayloadSource, payloadTemplates, readStamp } from "./payload.ts";
import { RateSearch, type RateSearchStep } from "./rate_control.ts";
import { cpuMicrosNow, cpuPercent, RunStats, type Sample } from "./stats.ts";
import type { Workload } from "./workload.ts";

export const SAMPLE_INTERVAL_MS = 1000;
/** The longest a drain may take after the last send. */
export const DRAIN_TIMEOUT_MS_DEFAULT = 60_000;
/** A drain also gives up when nothing at all arrived for this long. */
export const DRAIN_IDLE_MS_DEFAULT = 10_000;
const DRAIN_CHECK_INTERVAL_MS = 10;
/** Closing a producer or consumer, or deleting a topic, may take at most this long. */
export const CLOSE_TIMEOUT_MS = 15_000;

export type RunOptions = {
  /** Receives one progress line a second (default: standard error). */
  progress?: (line: string) => void;
  drainTimeoutMs?: number;
  drainIdleMs?: number;
};

/** The harness process's CPU use over the measured phase. */
export type ClientCpu = {
  userMs: number;
  systemMs: number;
  wallMs: number;
  /** CPU time over wall time: 100 is one core fully busy. */
  percentOfOneCore: number;
  cores: number;
  /** The largest resident set size seen, in bytes. */
  rssBytesMax: number;
};

export type RunOutcome = {
  startedAt: string;
  topicNames: string[];
  samples: Sample[];
  stats: RunStats;
  /** The search's steps and the rate held, when producerRate was 0. */
  rateSearch: { steps: RateSearchStep[]; heldRate: number } | undefined;
  measuredSeconds: number;
  clientCpu: ClientCpu;
  drained: boolean;
  drainMs: number;
  /** What went wrong besides failed sends: drain shortfall, close or delete failures. */
  problems: string[];
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

export async function runWorkload(
  driver: Driver,
  workload: Workload,
  options: RunOptions = {},
): Promise<RunOutcome> {
  const runId = randomBytes(3).toString("hex");
  const topicNames = Array.from({ length: workload.topics }, (_, i) => `bench-${runId}-${i}`);
  const stats = new RunStats(workload.subscriptionsPerTopic);
  const consumers: BenchConsumer[] = [];
  const producers: BenchProducer[] = [];
  const created: string[] = [];
  const problems: string[] = [];
  const startedAt = new Date().toISOString();
  try {
    for (const topic of topicNames) {
      await driver.createTopic(topic, workload.partitionsPerTopic);
      created.push(topic);
    }
    await createClients(driver, workload, { topicNames, runId, stats, consumers, producers });
    const timeline = new Timeline(driver.name, workload, stats, producers, options);
    const measured = await timeline.run();
    problems.push(...measured.problems);
    return { startedAt, topicNames, stats, ...measured, problems };
  } finally {
    problems.push(...(await cleanUp(driver, producers, consumers, created)));
  }
}

type Clients = {
  topicNames: string[];
  runId: string;
  stats: RunStats;
  consumers: BenchConsumer[];
  producers: BenchProducer[];
};

async function createClients(driver: Driver, workload: Workload, clients: Clients) {
  const { stats } = clients;
  const onMessage = (payload: Uint8Array): void => {
    stats.recordReceive(performance.now() - readStamp(payload), payload.length);
  };
  for (const topic of clients.topicNames) {
    for (let s = 0; s < workload.subscriptionsPerTopic; s++) {
      const subscription = `bench-${clients.runId}-sub-${s}`;
      for (let c = 0; c < workload.consumerPerSubscription; c++) {
        clients.consumers.push(await driver.createConsumer(topic, subscription, onMessage));
      }
    }
  }
  for (const topic of clients.topicNames) {
    for (let p = 0; p < workload.producersPerTopic; p++) {
      clients.producers.push(await driver.createProducer(topic));
    }
  }
}

async function cleanUp(
  driver: Driver,
  producers: BenchProducer[],
  consumers: BenchConsumer[],
  topics: string[],
): Promise<string[]> {
  const problems: string[] = [];
  const attempt = async (work: () => Promise<void>, what: string) => {
    try {
      await withDeadline(work(), CLOSE_TIMEOUT_MS, what);
    } catch (error) {
      problems.push(`${what} failed: ${(error as Error).message}`);
    }
  };
  await Promise.all(producers.map((p, i) => attempt(() => p.close(), `closing producer ${i}`)));
  await Promise.all(consumers.map((c, i) => attempt(() => c.close(), `closing consumer ${i}`)));
  for (const topic of topics) await attempt(() => driver.deleteTopic(topic), `deleting ${topic}`);
  return problems;
}

type Measured = Omit<RunOutcome, "startedAt" | "topicNames" | "stats">;

/** The timed part of a run: warm-up, measured phase, drain; one sample a second. */
class Timeline {
  #driverName: string;
  #workload: Workload;
  #stats: RunStats;
  #generator: LoadGenerator;
  #search: RateSearch | undefined;
  #options: RunOptions;
  #progress: (line: string) => void;
  #samples: Sample[] = [];
  #startMs = 0;
  #lastSampleMs = 0;
  #lastCpuMicros = 0;
  #rssBytesMax = 0;

  constructor(
    driverName: string,
    workload: Workload,
    stats: RunStats,
    producers: BenchProducer[],
    options: RunOptions,
  ) {
    this.#driverName = driverName;
    this.#workload = workload;
    this.#stats = stats;
    this.#options = options;
    this.#progress = options.progress ?? ((line) => process.stderr.write(`${line}\n`));
    this.#search =
      workload.producerRate === 0
        ? new RateSearch(workload.messageSize, workload.subscriptionsPerTopic)
        : undefined;
    this.#generator = new LoadGenerator({
      producers,
      payloads: new PayloadSource(payloadTemplates(workload)),
      keys: new KeySource(workload.keyDistributor),
      stats,
      ratePerSecond: this.#search?.rate ?? workload.producerRate,
    });
  }

  async run(): Promise<Measured> {
    const warmupSamples = Math.round(this.#workload.warmupDurationSeconds);
    const measureSamples = Math.max(1, Math.round(this.#workload.testDurationSeconds));
    const stats = this.#stats;
    stats.setPhase(warmupSamples > 0 ? "warmup" : "measure");
    this.#startMs = performance.now();
    this.#lastSampleMs = this.#startMs;
    this.#lastCpuMicros = cpuMicrosNow();
    let cpuAtMeasure = { micros: process.cpuUsage(), ms: this.#startMs };
    this.#generator.start();
    for (let k = 1; k <= warmupSamples + measureSamples; k++) {
      await sleep(this.#startMs + k * SAMPLE_INTERVAL_MS - performance.now());
      const sample = this.#sample();
      if (this.#search !== undefined && sample.phase === "warmup") this.#steer(sample);
      if (k === warmupSamples) {
        if (this.#search !== undefined) this.#generator.setRate(this.#search.hold());
        stats.setPhase("measure");
        cpuAtMeasure = { micros: process.cpuUsage(), ms: performance.now() };
      }
    }
    this.#generator.stop();
    const clientCpu = this.#clientCpu(cpuAtMeasure);
    stats.setPhase("drain");
    const drain = await this.#drain();
    const search = this.#search;
    return {
      samples: this.#samples,
      rateSearch: search === undefined ? undefined : { steps: search.steps, heldRate: search.rate },
      measuredSeconds: measureSamples,
      clientCpu,
      ...drain,
    };
  }

  #steer(sample: Sample): void {
    const rate = this.#search!.observe({
      targetRate: sample.targetRate,
      publishRate: sample.publishRate,
      consumeRate: sample.consumeRate,
      backlog: sample.backlog,
      publishP99Ms: sample.publishLatency.p99Ms,
    });
    if (rate !== this.#generator.ratePerSecond) this.#generator.setRate(rate);
  }

  #sample(): Sample {
    const now = performance.now();
    const cpuMicros = cpuMicrosNow();
    const sample = this.#stats.sample({
      elapsedMs: now - this.#startMs,
      durationMs: now - this.#lastSampleMs,
      cpuMicros: cpuMicros - this.#lastCpuMicros,
      targetRate: this.#generator.ratePerSecond,
    });
    this.#lastSampleMs = now;
    this.#lastCpuMicros = cpuMicros;
    this.#rssBytesMax = Math.max(this.#rssBytesMax, process.memoryUsage().rss);
    this.#samples.push(sample);
    this.#progress(progressLine(this.#driverName, this.#workload, sample, this.#search));
    return sample;
  }

  #clientCpu(start: { micros: NodeJS.CpuUsage; ms: number }): ClientCpu {
    const usage = process.cpuUsage(start.micros);
    const wallMs = performance.now() - start.ms;
    return {
      userMs: usage.user / 1000,
      systemMs: usage.system / 1000,
      wallMs,
      percentOfOneCore: cpuPercent(usage.user + usage.system, wallMs),
      cores: os.cpus().length,
      rssBytesMax: this.#rssBytesMax,
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
    while (!settled()) {
      const now = performance.now();
      const progress = stats.received + stats.acked + stats.errors;
      if (progress !== last.progress) last = { progress, ms: now };
      if (now - start > timeoutMs || now - last.ms > idleMs) break;
      if (now >= nextSampleMs) {
        this.#sample();
        nextSampleMs += SAMPLE_INTERVAL_MS;
      }
      await sleep(DRAIN_CHECK_INTERVAL_MS);
    }
    const drained = settled();
    const drainMs = performance.now() - start;
    this.#sample();
    return { drained, drainMs, problems: drainProblems(stats, drained, drainMs) };
  }
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
): string {
  const seconds = Math.round(sample.elapsedMs / 1000);
  const total = Math.round(workload.warmupDurationSeconds + workload.testDurationSeconds);
  const searching =
    search !== undefined && sample.phase === "warmup"
      ? `  search ${search.state} ${formatCount(search.rate)} msg/s`
      : "";
  const publish = `${formatCount(sample.publishRate).padStart(9)} msg/s`;
  const p99 = `p99 pub ${sample.publishLatency.p99Ms.toFixed(1)}`;
  return (
    `${driverName.padEnd(16)} ${sample.phase.padEnd(7)} ${String(seconds).padStart(4)}/${total} s` +
    `  pub ${publish} ${sample.publishMBps.toFixed(1)} MB/s` +
    `  cons ${formatCount(sample.consumeRate).padStart(9)} msg/s` +
    `  backlog ${formatCount(sample.backlog)}` +
    `  ${p99} e2e ${sample.endToEndLatency.p99Ms.toFixed(1)} ms` +
    `  cpu ${Math.round(sample.cpuPercent)}%${searching}`
  );
}

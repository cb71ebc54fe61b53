// `sluice bench`: runs one workload against each driver in turn, writes DIR/<driver>.json
// (the result, OMB field names) and DIR/report.html, and prints a comparison table.
//
// The load runs in worker processes (`--workers`, ./worker/): the coordinator here starts the
// broker (through the driver), creates the topics, steers the rate and merges the workers'
// reports. Without --drivers it runs every driver and skips, with a one-line hint, those whose
// system is not installed or not running. A driver named in --drivers that cannot run makes
// the exit code 1, as does a worker that died (its partial result is still written) and any
// run whose consumers did not receive exactly what was sent.

import fs from "node:fs";
import { type MachineLimits, measureLimits } from "./limits.ts";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { clockStepNotice } from "./clock_step.ts";
import { type Driver, DriverUnavailableError } from "./driver.ts";
import { createDriver, driverEntry, driverNames, parseDriverList } from "./drivers/mod.ts";
import { optionsFor, parseDriverOptions } from "./drivers/options.ts";
import { isManagedPeer, peerCommand } from "./peer_hints.ts";
import { describePageReporting } from "./page_reporting.ts";
import { renderReport } from "./report.ts";
import { type BenchResult, buildResult, type LatencyPoint, latencyPoint } from "./result.ts";
import { type RunOptions, runWorkload } from "./runner.ts";
import { formatAckTable } from "./ack_table.ts";
import { formatLatenessTable } from "./lateness_table.ts";
import { formatLatencyTable, formatTable } from "./table.ts";
import type { LoadWorker } from "./worker/handle.ts";
import { parseWorkers, startWorkers, type WorkerSpec } from "./worker/pool.ts";
import { loadWorkload, type Workload } from "./workload.ts";

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "results");
const DRIVER_CLOSE_TIMEOUT_MS = 15_000;

export type BenchOptions = {
  /** Without `drivers`: every driver but these. */
  excludeDrivers?: string[];
  /** A name in bench/workloads, or a YAML file (default "quick"). */
  workload?: string;
  /** Comma-separated driver names (default: all, skipping those unavailable). */
  drivers?: string;
  /** Where results go (default bench/results/<timestamp>/). */
  out?: string;
  /** host:port of a running sluice server for the `sluice` driver (default: start one). */
  sluiceUrl?: string;
  /** key=value,... handed to the drivers ("driver.key" for one driver only). */
  driverOptions?: string;
  /**
   * Measure the machine's disk (fdatasync) and loopback TCP limits first (default true); the
   * sizes default to 1 GiB each. Saved as limits.json and shown in the report.
   */
  limits?: boolean | { diskBytes: number; loopbackBytes: number };
  /** Lines for the reader: settings, the table, file paths (default: standard output). */
  log?: (line: string) => void;
  /** One progress line a second during runs (default: standard error). */
  progress?: (line: string) => void;
  drainTimeoutMs?: number;
  /**
   * Load workers: a count of local worker processes (default 2 on up to 8 cores), 0 for the
   * load in this process, or `host:port,...` of remote `sluice bench worker`s.
   */
  workers?: string | number;
  /** The token remote workers share (default: SLUICE_BENCH_TOKEN). */
  token?: string;
  /** The publish p99 a sustained rate must stay under (default 100 ms). */
  publishP99MsMax?: number;
  /** Also run each driver at 50% and 80% of its rate and at one common rate. */
  latencyAtLoad?: boolean;
  /** The common rate of --latency-at-load (default: 80% of the lowest driver's rate). */
  commonRate?: number;
  /** Called with each driver's workers once they run (tests use it to end one). */
  onWorkers?: (driver: string, workers: readonly LoadWorker[]) => void;
  /**
   * Stops the benchmark (Ctrl-C): the running driver ends with a partial result, the drivers
   * after it are skipped, the report is marked interrupted and temp folders are removed.
   */
  signal?: AbortSignal;
};

/** Work folders of runs in progress, so a hard exit (a second Ctrl-C) can still remove them. */
export const ACTIVE_WORK_DIRS: Set<string> = new Set();

export type Skipped = { driver: string; reason: string; hint: string };
export type Failed = { driver: string; error: string };

/** Seconds of warm-up and of measurement for each --latency-at-load run. */
export const LATENCY_AT_LOAD_WARMUP_SECONDS = 5;
export const LATENCY_AT_LOAD_TEST_SECONDS_MAX = 20;
/** The common rate's default share of the lowest driver's sustained rate. */
export const COMMON_RATE_SHARE = 0.8;

export type BenchOutcome = {
  workload: Workload;
  outDir: string;
  results: BenchResult[];
  skipped: Skipped[];
  failed: Failed[];
  exitCode: number;
  /** Set when options.signal stopped the benchmark: the reason (e.g. "SIGINT"). */
  interrupted?: string;
};

/** The exit code of a benchmark stopped by a signal (128 + SIGINT's number, as shells do). */
export const EXIT_INTERRUPTED = 130;

function timestampDir(): string {
  return new Date().toISOString().replace(/[:.]/g, "-").replace(/Z$/, "");
}

export async function runBench(options: BenchOptions = {}): Promise<BenchOutcome> {
  const log = options.log ?? ((line: string) => console.log(line));
  const workload = loadWorkload(options.workload ?? "quick");
  const explicit = options.drivers !== undefined;
  const excluded = new Set(options.excludeDrivers ?? []);
  const names = explicit
    ? parseDriverList(options.drivers!)
    : driverNames().filter((name) => !excluded.has(name));
  const driverOptions = parseDriverOptions(options.driverOptions);
  if (options.sluiceUrl !== undefined) driverOptions["sluice.url"] = options.sluiceUrl;
  const workers = parseWorkers(options.workers, options.token);
  const outDir = resolve(options.out ?? join(RESULTS_DIR, timestampDir()));
  fs.mkdirSync(outDir, { recursive: true });
  log(`workload ${workload.name} (${workload.source}); load: ${describeWorkers(workers)}`);
  const limits = await machineLimits(outDir, options.limits ?? true, log);
  const outcome: BenchOutcome = {
    workload,
    outDir,
    results: [],
    skipped: [],
    failed: [],
    exitCode: 0,
  };
  const run = (name: string, at: Workload) =>
    benchDriver(name, at, optionsFor(name, driverOptions), options, workers);
  for (const name of names) {
    if (options.signal?.aborted === true) {
      outcome.interrupted = String(options.signal.reason);
      outcome.skipped.push({ driver: name, reason: "interrupted before it ran", hint: "" });
      continue;
    }
    const done = await run(name, workload);
    if ("result" in done) {
      outcome.results.push(done.result);
      writeResult(outDir, done.result);
      if (done.result.failure !== null) {
        outcome.failed.push({ driver: name, error: done.result.failure });
        log(`FAILED ${name}: ${done.result.failure}`);
      }
    } else if ("hint" in done) {
      const skipped = isManagedPeer(name) ? { ...done, hint: peerCommand(name) } : done;
      outcome.skipped.push(skipped);
      log(`skipped ${name}: ${skipped.reason}; ${skipped.hint}`);
    } else {
      outcome.failed.push(done);
      log(`FAILED ${name}: ${done.error}`);
    }
  }
  if (options.signal?.aborted === true) outcome.interrupted = String(options.signal.reason);
  if (options.latencyAtLoad === true && outcome.interrupted === undefined) {
    await latencyAtLoad(outcome, options, run, log);
  }
  finish(outcome, explicit, log, limits);
  return outcome;
}

function describeWorkers(spec: WorkerSpec): string {
  if (spec.kind === "in-process") return "in the coordinator process (--workers 0)";
  if (spec.kind === "local") return `${spec.count} local worker processes`;
  return `remote workers ${spec.addresses.map((a) => `${a.host}:${a.port}`).join(", ")}`;
}

function writeResult(outDir: string, result: BenchResult): void {
  fs.writeFileSync(join(outDir, `${result.driver}.json`), `${JSON.stringify(result, null, 2)}\n`);
}

/** The rate a driver's measured phase ran at: the search's, or the workload's fixed rate. */
function rateOf(result: BenchResult): number {
  return result.rateSearch?.heldRate ?? result.workloadSpec.producerRate;
}

/**
 * --latency-at-load: each driver again at 50% and 80% of its own rate and at one common rate
 * (fixed-rate runs, a short warm-up each), so latencies compare at equal load.
 */
async function latencyAtLoad(
  outcome: BenchOutcome,
  options: BenchOptions,
  run: (name: string, workload: Workload) => Promise<DriverDone>,
  log: (line: string) => void,
): Promise<void> {
  const complete = outcome.results.filter((r) => r.failure === null && rateOf(r) > 0);
  if (complete.length === 0) return;
  const common =
    options.commonRate ?? COMMON_RATE_SHARE * Math.min(...complete.map((r) => rateOf(r)));
  log(
    `latency at load: 50% and 80% of each driver's rate, and ${Math.round(common)} msg/s for all`,
  );
  for (const result of complete) {
    const own = rateOf(result);
    const points: [string, number][] = [
      ["50% of own", 0.5 * own],
      ["80% of own", 0.8 * own],
      ["common", common],
    ];
    const measured: LatencyPoint[] = [];
    for (const [label, rate] of points) {
      const at = {
        ...outcome.workload,
        name: `${outcome.workload.name} @ ${Math.round(rate)} msg/s`,
        producerRate: Math.max(1, Math.round(rate)),
        warmupDurationSeconds: LATENCY_AT_LOAD_WARMUP_SECONDS,
        testDurationSeconds: Math.min(
          outcome.workload.testDurationSeconds,
          LATENCY_AT_LOAD_TEST_SECONDS_MAX,
        ),
      };
      const done = await run(result.driver, at);
      if ("result" in done) measured.push(latencyPoint(label, at.producerRate, done.result));
      else log(`${result.driver} at ${label}: ${"error" in done ? done.error : done.reason}`);
    }
    result.latencyAtLoad = measured;
    writeResult(outcome.outDir, result);
  }
}

const LIMIT_BYTES_DEFAULT = 1024 ** 3;

async function machineLimits(
  outDir: string,
  option: boolean | { diskBytes: number; loopbackBytes: number },
  log: (line: string) => void,
): Promise<MachineLimits | undefined> {
  if (option === false) return undefined;
  const sizes =
    option === true
      ? { diskBytes: LIMIT_BYTES_DEFAULT, loopbackBytes: LIMIT_BYTES_DEFAULT }
      : option;
  const limits = await measureLimits(outDir, sizes);
  fs.writeFileSync(join(outDir, "limits.json"), `${JSON.stringify(limits, null, 2)}\n`);
  log(
    `machine limits: disk write + fdatasync ${limits.diskWriteFdatasyncMBps} MB/s, ` +
      `loopback TCP ${limits.loopbackTcpMBps} MB/s`,
  );
  return limits;
}

function finish(
  outcome: BenchOutcome,
  explicit: boolean,
  log: (line: string) => void,
  limits: MachineLimits | undefined,
): void {
  const { results, outDir } = outcome;
  const notes = { skipped: outcome.skipped, interrupted: outcome.interrupted };
  if (results.length > 0) {
    fs.writeFileSync(join(outDir, "report.html"), renderReport(results, limits, notes));
    fs.writeFileSync(join(outDir, "notes.json"), `${JSON.stringify(notes, null, 2)}\n`);
    log("");
    log(formatTable(results));
    log(
      "latencies in ms; broker cpu = its processes (from /proc), client cpu = every load " +
        "worker, lost cpu = programs outside the run and time stolen by the host, % of one " +
        "core; msg/core-s = msg/s per core of broker CPU",
    );
    for (const r of results) if (r.boundBy !== undefined) log(`${r.driver}: ${r.boundBy}`);
    for (const r of results) {
      if (r.pageReporting != null) log(`${r.driver}: ${describePageReporting(r.pageReporting)}`);
    }
    if (results.some((r) => (r.latencyAtLoad ?? []).length > 0)) {
      log("");
      log(formatLatencyTable(results));
    }
    const ackTable = formatAckTable(results);
    if (ackTable.length > 0) log(`\n${ackTable}`);
    const latenessTable = formatLatenessTable(results);
    if (latenessTable.length > 0) log(`\n${latenessTable}`);
    log(`results: ${outDir}/{${results.map((r) => r.driver).join(",")}}.json`);
  }
  const undelivered = results.filter(
    (r) => r.totalMessagesReceived !== r.expectedMessagesReceived || r.errors > 0,
  );
  for (const r of undelivered) {
    log(
      `${r.driver}: sent ${r.totalMessagesSent}, received ${r.totalMessagesReceived} of ` +
        `${r.expectedMessagesReceived} expected, ${r.errors} send errors` +
        (r.errorMessages.length > 0 ? `: ${r.errorMessages.join("; ")}` : ""),
    );
  }
  for (const r of results) {
    const notice = clockStepNotice(r.driver, r.clockStepMs);
    if (notice !== undefined) log(notice);
  }
  logSkipped(outcome, log);
  if (outcome.interrupted !== undefined) {
    log(`interrupted by ${outcome.interrupted}: the results above are partial`);
  }
  // The report's path is the last line, for scripts and for the reader's eye.
  if (results.length > 0) log(`report: ${join(outDir, "report.html")}`);
  const bad =
    results.length === 0 ||
    undelivered.length > 0 ||
    outcome.failed.length > 0 ||
    (explicit && outcome.skipped.length > 0);
  outcome.exitCode = outcome.interrupted !== undefined ? EXIT_INTERRUPTED : bad ? 1 : 0;
}

/** The drivers that did not run, each with the one command that would make it run. */
function logSkipped(outcome: BenchOutcome, log: (line: string) => void): void {
  const skipped = outcome.skipped.filter((s) => s.hint !== "");
  if (skipped.length === 0) return;
  log("");
  log("not run (install or start them, then run the benchmark again):");
  const width = Math.max(...skipped.map((s) => s.driver.length));
  for (const s of skipped) log(`  ${s.driver.padEnd(width)}  ${s.hint}`);
}

type DriverDone = { result: BenchResult } | Skipped | Failed;

async function benchDriver(
  name: string,
  workload: Workload,
  driverOptions: Record<string, string>,
  options: BenchOptions,
  spec: WorkerSpec,
): Promise<DriverDone> {
  const log = options.log ?? ((line: string) => console.log(line));
  const entry = driverEntry(name);
  if (workload.ackMode === "per-message" && !entry.perMessageAck) {
    return {
      driver: name,
      reason: `the ${name} driver does not implement the workload's ackMode per-message`,
      hint: "per-message workloads run with --drivers sluice,sluice-embedded,rabbitmq",
    };
  }
  if (workload.deliveryDelayMsMax > 0 && !entry.delayedDelivery) {
    return {
      driver: name,
      reason: `the ${name} driver does not implement delayed delivery (deliveryDelayMsMax)`,
      hint: "delayed workloads run with --drivers sluice,sluice-embedded,rabbitmq",
    };
  }
  const workDir = fs.mkdtempSync(join(tmpdir(), `sluice-bench-${name}-`));
  ACTIVE_WORK_DIRS.add(workDir);
  const inWorker = entry.inProcess && spec.kind !== "in-process";
  let driver: Driver | undefined;
  let workers: LoadWorker[] = [];
  try {
    if (!inWorker) {
      driver = await createDriver(name, {
        workDir,
        options: driverOptions,
        ackMode: workload.ackMode,
        priorityLevels: workload.priorityLevels,
        deliveryDelayMsMax: workload.deliveryDelayMsMax,
      });
      await driver.initialize();
    }
    // The embedded engine lives in its worker: the whole run goes to one.
    workers = await startWorkers(spec, inWorker ? 1 : Number.POSITIVE_INFINITY, workDir);
    options.onWorkers?.(name, workers);
    if (inWorker) log(`${name}: the engine runs inside ${workers[0]!.label}`);
    const runOptions: RunOptions = {};
    if (options.progress !== undefined) runOptions.progress = options.progress;
    if (options.drainTimeoutMs !== undefined) runOptions.drainTimeoutMs = options.drainTimeoutMs;
    if (options.publishP99MsMax !== undefined) {
      runOptions.publishP99MsMax = options.publishP99MsMax;
    }
    if (options.signal !== undefined) runOptions.signal = options.signal;
    const target = {
      name,
      driver: driver ?? null,
      ...(workers.length > 0 ? { workers } : {}),
      // The workers' instances get the options the coordinator's says they need (the address
      // of a server it started), else the ones it was given: a peer's options (its delay path,
      // queue type, TLS) must reach the producers and consumers, which run in the workers.
      workerOptions: inWorker ? driverOptions : (driver?.workerOptions?.() ?? driverOptions),
    };
    const outcome = await runWorkload(target, workload, runOptions);
    workers = [];
    log(`${name}: durability: ${outcome.durability}`);
    log(
      `${name}: settings: ${Object.entries(outcome.settings)
        .map(([k, v]) => `${k}=${v}`)
        .join("; ")}`,
    );
    return { result: buildResult({ driverName: name, workload, outcome, dataDir: workDir }) };
  } catch (error) {
    if (error instanceof DriverUnavailableError) {
      return { driver: name, reason: error.message, hint: error.hint };
    }
    return { driver: name, error: error instanceof Error ? error.message : String(error) };
  } finally {
    for (const worker of workers) worker.kill();
    if (driver !== undefined) await closeDriver(driver, log);
    fs.rmSync(workDir, { recursive: true, force: true });
    ACTIVE_WORK_DIRS.delete(workDir);
  }
}

async function closeDriver(driver: Driver, log: (line: string) => void) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      driver.close(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("close() timed out")), DRIVER_CLOSE_TIMEOUT_MS);
      }),
    ]);
  } catch (error) {
    log(`${driver.name}: closing failed: ${(error as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}

// `sluice bench`: runs one workload against each driver in turn, writes DIR/<driver>.json
// (the result, OMB field names) and DIR/report.html, and prints a comparison table.
//
// Without --drivers it runs every driver and skips, with a one-line hint, those whose system
// is not installed or not running. A driver named in --drivers that cannot run makes the exit
// code 1, as does any run whose consumers did not receive exactly what was sent.

import fs from "node:fs";
import { type MachineLimits, measureLimits } from "./limits.ts";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Driver, DriverUnavailableError } from "./driver.ts";
import { createDriver, driverNames, parseDriverList } from "./drivers/mod.ts";
import { optionsFor, parseDriverOptions } from "./drivers/options.ts";
import { renderReport } from "./report.ts";
import { type BenchResult, buildResult } from "./result.ts";
import { type RunOptions, runWorkload } from "./runner.ts";
import { formatTable } from "./table.ts";
import { loadWorkload, type Workload } from "./workload.ts";

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "results");
const DRIVER_CLOSE_TIMEOUT_MS = 15_000;

export type BenchOptions = {
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
};

export type Skipped = { driver: string; reason: string; hint: string };
export type Failed = { driver: string; error: string };

export type BenchOutcome = {
  workload: Workload;
  outDir: string;
  results: BenchResult[];
  skipped: Skipped[];
  failed: Failed[];
  exitCode: number;
};

function timestampDir(): string {
  return new Date().toISOString().replace(/[:.]/g, "-").replace(/Z$/, "");
}

export async function runBench(options: BenchOptions = {}): Promise<BenchOutcome> {
  const log = options.log ?? ((line: string) => console.log(line));
  const workload = loadWorkload(options.workload ?? "quick");
  const explicit = options.drivers !== undefined;
  const names = explicit ? parseDriverList(options.drivers!) : driverNames();
  const driverOptions = parseDriverOptions(options.driverOptions);
  if (options.sluiceUrl !== undefined) driverOptions["sluice.url"] = options.sluiceUrl;
  const outDir = resolve(options.out ?? join(RESULTS_DIR, timestampDir()));
  fs.mkdirSync(outDir, { recursive: true });
  log(`workload ${workload.name} (${workload.source})`);
  const limits = await machineLimits(outDir, options.limits ?? true, log);
  const outcome: BenchOutcome = {
    workload,
    outDir,
    results: [],
    skipped: [],
    failed: [],
    exitCode: 0,
  };
  for (const name of names) {
    const done = await benchDriver(name, workload, optionsFor(name, driverOptions), options);
    if ("result" in done) {
      outcome.results.push(done.result);
      fs.writeFileSync(join(outDir, `${name}.json`), `${JSON.stringify(done.result, null, 2)}\n`);
    } else if ("hint" in done) {
      outcome.skipped.push(done);
      log(`skipped ${name}: ${done.reason}; ${done.hint}`);
    } else {
      outcome.failed.push(done);
      log(`FAILED ${name}: ${done.error}`);
    }
  }
  finish(outcome, explicit, log, limits);
  return outcome;
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
  if (results.length > 0) {
    fs.writeFileSync(join(outDir, "report.html"), renderReport(results, limits));
    log("");
    log(formatTable(results));
    log("latencies in ms; cpu = the harness process (in-process servers included), % of a core");
    log(`results: ${outDir}/{${results.map((r) => r.driver).join(",")}}.json`);
    log(`report:  ${join(outDir, "report.html")}`);
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
  const bad =
    results.length === 0 ||
    undelivered.length > 0 ||
    outcome.failed.length > 0 ||
    (explicit && outcome.skipped.length > 0);
  outcome.exitCode = bad ? 1 : 0;
}

type DriverDone = { result: BenchResult } | Skipped | Failed;

async function benchDriver(
  name: string,
  workload: Workload,
  driverOptions: Record<string, string>,
  options: BenchOptions,
): Promise<DriverDone> {
  const log = options.log ?? ((line: string) => console.log(line));
  const workDir = fs.mkdtempSync(join(tmpdir(), `sluice-bench-${name}-`));
  let driver: Driver | undefined;
  try {
    driver = await createDriver(name, { workDir, options: driverOptions });
    await driver.initialize();
    const settings = driver.settings();
    const durability = driver.durability();
    log(`${name}: durability: ${durability}`);
    log(
      `${name}: settings: ${Object.entries(settings)
        .map(([k, v]) => `${k}=${v}`)
        .join("; ")}`,
    );
    const runOptions: RunOptions = {};
    if (options.progress !== undefined) runOptions.progress = options.progress;
    if (options.drainTimeoutMs !== undefined) runOptions.drainTimeoutMs = options.drainTimeoutMs;
    const outcome = await runWorkload(driver, workload, runOptions);
    const result = buildResult({
      driverName: name,
      settings,
      durability,
      workload,
      outcome,
      dataDir: workDir,
    });
    return { result };
  } catch (error) {
    if (error instanceof DriverUnavailableError) {
      return { driver: name, reason: error.message, hint: error.hint };
    }
    return { driver: name, error: error instanceof Error ? error.message : String(error) };
  } finally {
    await closeDriver(driver, log);
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

async function closeDriver(driver: Driver | undefined, log: (line: string) => void) {
  if (driver === undefined) return;
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

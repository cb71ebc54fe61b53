// `sluice bench` (and `npm run bench`): with arguments, runs the workload and drivers they
// name (bench/README.md); with none, the default comparison: embedded sluice, sluice over TCP
// and every installed peer, each at the highest rate it sustains (max-rate-short: a 20 s
// search, then 30 s measured), ending with the table and `report: PATH` as the last line.
//
// Ctrl-C (SIGINT) or SIGTERM stops the run in progress: it ends with a partial result, the
// drivers after it are skipped, the report is marked interrupted, temp folders are removed,
// and the exit code is 130. A second signal exits at once after removing the temp folders.

import fs from "node:fs";
import { type ParsedValues, UsageError } from "./_args.ts";

/** The default comparison's workload: short enough for a first run (about a minute a driver). */
export const DEFAULT_WORKLOAD = "max-rate-short";
/** The default comparison measures disk and loopback limits on this much data, not 1 GiB. */
const DEFAULT_LIMIT_BYTES = 256 * 1024 * 1024;

/** A positive number given as a flag's text, or undefined when the flag is absent. */
function positiveNumber(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new UsageError(`${flag} ${text} is not a positive number`);
  }
  return value;
}

function hasArguments(values: ParsedValues, positionals: string[]): boolean {
  return positionals.length > 0 || Object.values(values).some((value) => value !== undefined);
}

/**
 * The default comparison's settings. SLUICE_BENCH_WORKLOAD names another workload and
 * SLUICE_BENCH_PEERS=skip leaves the peers out (the test of the README's command uses both).
 */
function defaultJob(): { workload: string; drivers: string | undefined } {
  const workload = process.env["SLUICE_BENCH_WORKLOAD"] ?? DEFAULT_WORKLOAD;
  const peers = process.env["SLUICE_BENCH_PEERS"];
  if (peers !== undefined && peers !== "skip") {
    throw new UsageError(`SLUICE_BENCH_PEERS=${peers}: the only value is 'skip'`);
  }
  return { workload, drivers: peers === "skip" ? "sluice-embedded,sluice" : undefined };
}

/** Turns SIGINT and SIGTERM into an abort for the run; returns how to stop listening. */
function interruptOnSignals(controller: AbortController, workDirs: Set<string>): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    if (!controller.signal.aborted) {
      process.stderr.write(`sluice bench: ${signal}: stopping; writing the partial result\n`);
      controller.abort(signal);
      return;
    }
    process.stderr.write(`sluice bench: ${signal} again: removing temp folders and exiting\n`);
    for (const dir of workDirs) fs.rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
}

export async function bench(values: ParsedValues, positionals: string[]): Promise<number> {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  if (values["listen"] !== undefined) throw new UsageError("--listen is for `bench worker`");
  const { ACTIVE_WORK_DIRS, runBench } = await import("../bench/cli.ts");
  const text = (name: string) => (typeof values[name] === "string" ? values[name] : undefined);
  const job = hasArguments(values, positionals) ? undefined : defaultJob();
  if (job !== undefined) {
    console.log(
      `default comparison: ${job.workload} at each system's highest sustained rate, ` +
        `${job.drivers ?? "sluice-embedded, sluice and every peer that is installed"} ` +
        "(`npm run bench -- --help` for other runs)",
    );
  }
  const controller = new AbortController();
  const stopListening = interruptOnSignals(controller, ACTIVE_WORK_DIRS);
  try {
    const outcome = await runBench({
      workload: job?.workload ?? text("workload"),
      drivers: job?.drivers ?? text("drivers"),
      // The default comparison is sluice (embedded and over TCP) against the peers; sluice over
      // Kafka's protocol measures kafkajs as much as sluice, and would add a minute to it.
      ...(job === undefined ? {} : { excludeDrivers: ["sluice-kafka"] }),
      out: text("out"),
      sluiceUrl: text("sluice-url"),
      driverOptions: text("driver-options"),
      workers: text("workers"),
      token: text("token"),
      publishP99MsMax: positiveNumber(text("publish-p99-max-ms"), "--publish-p99-max-ms"),
      latencyAtLoad: values["latency-at-load"] === true,
      commonRate: positiveNumber(text("common-rate"), "--common-rate"),
      signal: controller.signal,
      ...(job === undefined
        ? {}
        : { limits: { diskBytes: DEFAULT_LIMIT_BYTES, loopbackBytes: DEFAULT_LIMIT_BYTES } }),
    });
    return outcome.exitCode;
  } catch (error) {
    // Bad flag values (an unknown driver or workload, a bad option) are usage errors.
    if (error instanceof RangeError || (error as Error).name === "WorkloadError") {
      throw new UsageError((error as Error).message);
    }
    throw error;
  } finally {
    stopListening();
  }
}

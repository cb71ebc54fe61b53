// The benchmark harness: workloads (OMB field names), one driver per system, the runner,
// HdrHistogram latencies, OMB-style result files and the HTML report. `sluice bench` (and
// `npm run bench`) is runBench; bench/README.md explains workloads, results and drivers.

export { type BenchOptions, type BenchOutcome, RESULTS_DIR, runBench } from "./cli.ts";
export {
  type BenchConsumer,
  type BenchProducer,
  type Driver,
  type DriverConfig,
  type DriverFactory,
  type DriverSettings,
  DriverUnavailableError,
  type MessageCallback,
} from "./driver.ts";
export { createDriver, DRIVERS, type DriverEntry, driverNames } from "./drivers/mod.ts";
export { LatencyHistogram, type LatencySummary } from "./histogram.ts";
export { loadResults, renderReport, writeReport } from "./report.ts";
export { type BenchResult, buildResult, RESULT_CONTRACT_FIELDS } from "./result.ts";
export { type RunOptions, type RunOutcome, runWorkload } from "./runner.ts";
export { formatTable } from "./table.ts";
export {
  loadWorkload,
  parseWorkload,
  validateWorkload,
  type Workload,
  WorkloadError,
  workloadNames,
} from "./workload.ts";

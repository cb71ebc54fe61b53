// The benchmark harness: workloads, one driver per system, runner, histograms, reports, and
// micro-benchmarks. Not built yet.
export {};

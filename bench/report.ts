// The report: one self-contained HTML page (inline SVG charts, inline CSS, no scripts) from
// the result files of one run: the comparison table, throughput over time, latency
// percentile curves (publish and end-to-end, log axes), end-to-end p99 over time, the
// workload, each driver's settings and durability, and the machine.
//
// `sluice bench` writes it as DIR/report.html; `bun bench/report.ts DIR` rebuilds it from the
// DIR/*.json files.

import { ackSummary } from "./ack_table.ts";
import { latenessSummary } from "./lateness_table.ts";
import type { MachineLimits } from "./limits.ts";
import fs from "node:fs";
import { join } from "node:path";
import { describeRules, type RateSearchStep } from "./rate_control.ts";
import type { BenchResult } from "./result.ts";
import { escapeXml as esc, lineChart, type Series, type Tick } from "./svg_chart.ts";
import { DELIVERY_COLUMN, deliveryVerdict, formatMs, TABLE_HEADERS, tableCells } from "./table.ts";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"];

/** The percentile axis: x = log10(1 / (1 - p)), so 90, 99, 99.9 ... are evenly spaced. */
const PERCENTILE_TICKS: Tick[] = [
  { value: 0, label: "0%" },
  { value: 1, label: "90%" },
  { value: 2, label: "99%" },
  { value: 3, label: "99.9%" },
  { value: 4, label: "99.99%" },
  { value: 5, label: "99.999%" },
];

/**
 * Each driver keeps one colour in every chart and every report: the known drivers by their
 * place in the driver table, any other by a hash of its name.
 */
const DRIVER_ORDER = ["sluice-embedded", "sluice", "rabbitmq", "nats", "redis", "kafka"];

export function colorOf(driver: string): string {
  const known = DRIVER_ORDER.indexOf(driver);
  if (known >= 0) return COLORS[known % COLORS.length]!;
  let hash = 0;
  for (const char of driver) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return COLORS[hash % COLORS.length]!;
}

function percentileX(percentile: number): number {
  return -Math.log10(1 - percentile / 100);
}

function curvePoints(curve: Record<string, number>): [number, number][] {
  return Object.entries(curve)
    .map(([p, ms]) => [Number(p), ms] as const)
    .filter(([p]) => p < 100)
    .sort((a, b) => a[0] - b[0])
    .map(([p, ms]) => [percentileX(p), ms]);
}

/** A sample shorter than this (the last sliver of a drain) gives a noisy rate: not drawn. */
const RATE_SAMPLE_MS_MIN = 500;

function throughputChart(results: readonly BenchResult[]): string {
  const series: Series[] = results.flatMap((result, _i) => {
    const samples = result.samples.filter((s) => s.durationMs >= RATE_SAMPLE_MS_MIN);
    return [
      {
        label: `${result.driver} publish`,
        color: colorOf(result.driver),
        points: samples.map((s) => [s.elapsedMs / 1000, s.publishRate] as const),
      },
      {
        label: `${result.driver} consume`,
        color: colorOf(result.driver),
        dashed: true,
        points: samples.map((s) => [s.elapsedMs / 1000, s.consumeRate] as const),
      },
    ];
  });
  const warmup = results[0]?.workloadSpec.warmupDurationSeconds ?? 0;
  return lineChart({
    title: "Throughput over time (msg/s, per second)",
    x: { label: "seconds since the first send", min: 0 },
    y: { label: "messages per second", min: 0 },
    series,
    bands: warmup > 0 ? [{ from: 0, to: warmup, label: "warm-up (excluded)" }] : [],
  });
}

function latencyCurveChart(
  results: readonly BenchResult[],
  title: string,
  pick: (result: BenchResult) => Record<string, number>,
): string {
  return lineChart({
    title,
    x: { label: "percentile", min: 0, max: 5, ticks: PERCENTILE_TICKS },
    y: { label: "latency (ms, log scale)", log: true },
    series: results.map((result, _i) => ({
      label: result.driver,
      color: colorOf(result.driver),
      points: curvePoints(pick(result)),
    })),
  });
}

function p99OverTimeChart(results: readonly BenchResult[]): string {
  const warmup = results[0]?.workloadSpec.warmupDurationSeconds ?? 0;
  return lineChart({
    title: "End-to-end p99 per second (ms)",
    x: { label: "seconds since the first send", min: 0 },
    y: { label: "latency (ms, log scale)", log: true },
    series: results.map((result, _i) => ({
      label: result.driver,
      color: colorOf(result.driver),
      points: result.samples
        .filter((s) => s.endToEndLatency.count > 0 && s.durationMs >= RATE_SAMPLE_MS_MIN)
        .map((s) => [s.elapsedMs / 1000, s.endToEndLatency.p99Ms] as const),
    })),
    bands: warmup > 0 ? [{ from: 0, to: warmup, label: "warm-up" }] : [],
  });
}

function comparisonTable(results: readonly BenchResult[]): string {
  const head = TABLE_HEADERS.map((h) => `<th>${esc(h)}</th>`).join("");
  const rows = results.map((result, _i) => {
    const cells = tableCells(result).map((cell, column) => {
      if (column === 0) {
        const swatch = `<span class="swatch" style="background:${colorOf(result.driver)}"></span>`;
        return `<td>${swatch}${esc(cell)}</td>`;
      }
      const bad =
        (column === DELIVERY_COLUMN && deliveryVerdict(result) !== "ok") ||
        (column === SUSTAINED_COLUMN && !result.sustained);
      const kind = column === TABLE_HEADERS.length - 1 ? "text" : bad ? "num bad" : "num";
      return `<td class="${kind}">${esc(cell)}</td>`;
    });
    return `<tr>${cells.join("")}</tr>`;
  });
  return `<table class="compare"><tr>${head}</tr>${rows.join("")}</table>`;
}

const SUSTAINED_COLUMN = TABLE_HEADERS.indexOf("sustained");

function definitionTable(entries: readonly (readonly [string, unknown])[]): string {
  const rows = entries.map(
    ([key, value]) => `<tr><th>${esc(key)}</th><td>${esc(formatValue(value))}</td></tr>`,
  );
  return `<table class="defs">${rows.join("")}</table>`;
}

function formatValue(value: unknown): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") {
    return Number.isInteger(value) ? value.toLocaleString("en-US") : value.toFixed(2);
  }
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function driverSection(result: BenchResult): string {
  const cpu = result.clientCpu;
  const verdict = result.sustainedVerdict;
  const facts: [string, unknown][] = [
    ["durability", result.durability],
    ["messages sent (acknowledged)", result.totalMessagesSent],
    [
      "messages received / expected",
      [result.totalMessagesReceived, result.expectedMessagesReceived].map(formatValue).join(" / "),
    ],
    ["delivery", deliveryVerdict(result)],
    ["drain after the last send", `${result.drainSeconds.toFixed(2)} s`],
    [
      "sustained (measured phase as one window)",
      verdict === null
        ? "no: the run did not complete"
        : verdict.sustained
          ? `yes: ${sustainFigures(verdict)}`
          : `NO: ${verdict.reasons.join("; ")} (${sustainFigures(verdict)})`,
    ],
    [
      "broker CPU (measured phase)",
      `${result.brokerCpuPercent === null ? "—" : `${result.brokerCpuPercent.toFixed(0)}%`} ` +
        `of one core: ${result.brokerCpu.note}`,
    ],
    [
      "load workers' CPU (measured phase)",
      `${cpu.percentOfOneCore.toFixed(0)}% of one core of ${cpu.cores}, ` +
        (result.workers === 0
          ? "in the coordinator process"
          : `${result.workers} worker processes`) +
        `; coordinator ${cpu.coordinatorPercentOfOneCore.toFixed(0)}%`,
    ],
    [
      "msg/s per core of broker CPU",
      result.msgsPerBrokerCoreSecond === null ? null : Math.round(result.msgsPerBrokerCoreSecond),
    ],
    [
      "each load worker's CPU",
      result.workerProcesses
        .map((worker) => `${worker.label}: ${(worker.cpuPercent ?? 0).toFixed(0)}%`)
        .join("; "),
    ],
    [
      "the whole machine (measured phase)",
      result.machineCpu === null || result.machineCpu === undefined
        ? "—"
        : `${result.machineCpu.busyPercent.toFixed(0)}% busy ` +
          `of ${result.machineCpu.cores * 100}%, ` +
          `${result.machineCpu.stealPercent.toFixed(0)}% stolen by other guests`,
    ],
    ["load workers' max RSS", `${(cpu.rssBytesMax / 2 ** 20).toFixed(0)} MiB`],
    [
      "publish delay p50 / p99 (µs)",
      `${result.aggregatedPublishDelayLatency50pct} / ${result.aggregatedPublishDelayLatency99pct}`,
    ],
  ];
  if (result.ackMode === "per-message") facts.push(["per-message acks", ackSummary(result)]);
  // Result files from before lateness was reported have no delayPath (undefined).
  if (result.delayPath !== null && result.delayPath !== undefined) {
    facts.push(["delayed delivery", latenessSummary(result)]);
  }
  if (result.boundBy !== undefined) facts.push(["bound by", result.boundBy]);
  if (result.rateSearch !== null) {
    facts.push(["max-rate search", searchSummary(result)]);
    if (result.rateSearch.rules !== undefined) {
      facts.push(["search rules", describeRules(result.rateSearch.rules)]);
    }
  }
  if (result.latencyAtLoad !== undefined && result.latencyAtLoad.length > 0) {
    facts.push(["latency at load", latencyAtLoadSummary(result)]);
  }
  const errors =
    result.errorMessages.length === 0
      ? ""
      : `<p class="bad">Errors: ${result.errorMessages.map(esc).join("; ")}</p>`;
  return (
    `<section class="driver"><h3>` +
    `<span class="swatch" style="background:${colorOf(result.driver)}">` +
    `</span>${esc(result.driver)}</h3>${definitionTable(facts)}<h4>settings</h4>` +
    `${definitionTable(Object.entries(result.settings))}${errors}</section>`
  );
}

function sustainFigures(verdict: NonNullable<BenchResult["sustainedVerdict"]>): string {
  return (
    `${Math.round(verdict.publishRate)} of ${Math.round(verdict.targetRate)} msg/s, ` +
    `publish p99 ${verdict.publishP99Ms.toFixed(1)} ms; over ${verdict.samples} s the ` +
    `lag grew ${(verdict.lagGrowthSeconds * 1000).toFixed(0)} ms, ` +
    `p99 ${verdict.p99GrowthMs.toFixed(0)} ms, ` +
    `backlog ${(verdict.backlogGrowthSeconds * 1000).toFixed(0)} ms`
  );
}

/** The rule (rate_control.ts) that judged a step of each kind, named in the report. */
const STEP_RULES: Record<RateSearchStep["state"], string> = {
  ramp: "headroom",
  bisect: "headroom",
  confirm: "confirm, headroom",
  backoff: "probe",
};

/** "ramp 10,000 ✓ [headroom] → ... → backoff 80,000 ✗ (...) [probe]; measured at N msg/s". */
export function searchSummary(result: Pick<BenchResult, "rateSearch">): string {
  const search = result.rateSearch;
  if (search === null) return "";
  const steps = search.steps
    .map((step) => {
      const mark = step.verdict.sustained ? "✓" : `✗ (${step.verdict.reasons.join("; ")})`;
      const rate = Math.round(step.rate).toLocaleString("en-US");
      const retry = step.retry === true ? " (retry)" : "";
      const revisit = step.revisit === true ? " (revisit)" : "";
      return `${step.state} ${rate}${retry}${revisit} ${mark} [${STEP_RULES[step.state]}]`;
    })
    .join(" → ");
  const retried =
    search.retriedSteps === undefined ? "" : `, ${search.retriedSteps} step(s) retried`;
  const revisited =
    search.revisitedSteps === undefined ? "" : `, ${search.revisitedSteps} revisited`;
  const held = Math.round(search.heldRate).toLocaleString("en-US");
  return `${steps}; measured at ${held} msg/s${retried}${revisited}`;
}

function latencyAtLoadSummary(result: BenchResult): string {
  return (result.latencyAtLoad ?? [])
    .map(
      (point) =>
        `${point.label}: ${Math.round(point.rate).toLocaleString("en-US")} msg/s, ` +
        "publish p50/p99 " +
        `${formatMs(point.publishP50Ms)}/${formatMs(point.publishP99Ms)} ms, e2e p50/p99 ` +
        `${formatMs(point.endToEndP50Ms)}/${formatMs(point.endToEndP99Ms)} ms` +
        (point.sustained ? "" : " (not sustained)"),
    )
    .join("; ");
}

function machineSection(results: readonly BenchResult[]): string {
  const machine = results[0]?.machine;
  if (machine === undefined) return "";
  return definitionTable([
    ["CPU", `${machine.model} × ${machine.cpus}`],
    ["memory", `${(machine.memoryBytes / 2 ** 30).toFixed(1)} GiB`],
    ["OS", `${machine.platform} ${machine.arch}, kernel ${machine.kernel}`],
    ["runtime", machine.runtime],
    ["file system", machine.fileSystem],
    ["load average (1 min) at start", machine.loadAverage1m.toFixed(2)],
  ]);
}

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
  max-width: 1140px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
h3 { font-size: 15px; margin: 0 0 6px; } h4 { font-size: 13px; margin: 10px 0 4px; color: #555; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; } td, th { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; }
table.compare th { background: #f4f4f4; text-align: right; white-space: nowrap; }
table.compare th:first-child, table.compare th:last-child { text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { font-size: 12px; color: #444; } .bad { color: #b00; font-weight: 600; }
table.defs th { text-align: left; font-weight: 500; color: #555; white-space: nowrap; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 12px; }
.driver { border: 1px solid #ddd; border-radius: 6px; padding: 10px 12px; margin: 10px 0; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
svg { background: #fff; } .chart-title { font-weight: 600; font-size: 13px; }
.tick { font-size: 11px; fill: #555; } .axis { font-size: 12px; fill: #333; }
.legend { font-size: 12px; fill: #333; } .band { font-size: 11px; fill: #777; }
.grid { stroke: #eee; } .notes { color: #555; font-size: 13px; }
`;

const PUBLISH_CURVE_TITLE = "Publish latency by percentile (send → ack)";
const END_TO_END_CURVE_TITLE = "End-to-end latency by percentile (send → consumer)";

/** What a report says besides the results: drivers that did not run, and an interruption. */
export type ReportNotes = {
  skipped?: readonly { driver: string; reason: string; hint: string }[];
  /** The signal that stopped the benchmark; the results are then partial. */
  interrupted?: string | undefined;
};

function notesSection(notes: ReportNotes): string {
  const parts: string[] = [];
  if (notes.interrupted !== undefined) {
    parts.push(
      `<p class="interrupted"><strong>interrupted</strong> by ${esc(notes.interrupted)}: ` +
        "the results are partial.</p>",
    );
  }
  const skipped = notes.skipped ?? [];
  if (skipped.length > 0) {
    const rows = skipped.map(
      (s) =>
        `<tr><td>${esc(s.driver)}</td><td>${esc(s.reason)}</td>` +
        `<td><code>${esc(s.hint)}</code></td></tr>`,
    );
    parts.push(
      "<h2>Skipped drivers</h2><table><tr><th>driver</th><th>why</th><th>to run it</th></tr>" +
        `${rows.join("")}</table>`,
    );
  }
  return parts.join("\n");
}

export function renderReport(
  results: readonly BenchResult[],
  limits?: MachineLimits,
  notes: ReportNotes = {},
): string {
  if (results.length === 0) throw new RangeError("a report needs at least one result");
  const first = results[0]!;
  const workloads = [...new Set(results.map((r) => r.workload))];
  const spec = Object.entries(first.workloadSpec);
  const interrupted = notes.interrupted === undefined ? "" : " (interrupted)";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>sluice benchmark: ${esc(workloads.join(", "))}</title>
<style>${STYLE}</style></head><body>
<h1>sluice benchmark: ${esc(workloads.join(", "))}${interrupted}</h1>
<p class="sub">${esc(first.startedAt)} · ${results.length} driver${results.length === 1 ? "" : "s"}:
${esc(results.map((r) => r.driver).join(", "))}</p>
${notesSection(notes)}
<h2>Results</h2>
${comparisonTable(results)}
<p class="notes">msg/s and MB/s: acknowledged sends per second over the measured phase
(MB = 2<sup>20</sup> bytes). sustained: the measured phase, judged as one window, kept up, kept
publish p99 under the bound and showed no growth of schedule lag, p99 or backlog. Latencies in
ms over the measured phase and the drain, measured from each message's intended send time
(coordinated omission corrected). sent=recv: every acknowledged message reached every
subscription. broker cpu: the broker's processes, read from /proc; client cpu: every load
worker process; lost cpu: programs outside the run (the machine's busy time less the run's)
and time the host gave other virtual machines (steal); all in % of one core over the measured
phase. msg/core-s: msg/s per core of broker CPU.</p>
<div class="charts">
${throughputChart(results)}
${latencyCurveChart(results, PUBLISH_CURVE_TITLE, (r) => r.aggregatedPublishLatencyQuantiles)}
${latencyCurveChart(results, END_TO_END_CURVE_TITLE, (r) => r.aggregatedEndToEndLatencyQuantiles)}
${p99OverTimeChart(results)}
</div>
<h2>Workload</h2>
${definitionTable(spec)}
<h2>Drivers</h2>
${results.map((result) => driverSection(result)).join("\n")}
<h2>Machine</h2>
${machineSection(results)}
${limits === undefined ? "" : limitsSection(limits)}
</body></html>
`;
}

/** The result files in `dir` (every *.json with the result fields), by driver name order. */
export function loadResults(dir: string): BenchResult[] {
  const results: BenchResult[] = [];
  for (const file of fs.readdirSync(dir).sort()) {
    if (!file.endsWith(".json")) continue;
    const parsed = JSON.parse(fs.readFileSync(join(dir, file), "utf8")) as Partial<BenchResult>;
    if (typeof parsed.driver === "string" && Array.isArray(parsed.samples)) {
      results.push(parsed as BenchResult);
    }
  }
  return results;
}

/** Rebuilds DIR/report.html from DIR/*.json (and DIR/limits.json); returns its path. */
export function writeReport(dir: string): string {
  const results = loadResults(dir);
  if (results.length === 0) throw new RangeError(`no result files (*.json) in ${dir}`);
  const path = join(dir, "report.html");
  const limitsFile = join(dir, "limits.json");
  const limits = fs.existsSync(limitsFile)
    ? (JSON.parse(fs.readFileSync(limitsFile, "utf8")) as MachineLimits)
    : undefined;
  const notesFile = join(dir, "notes.json");
  const notes = fs.existsSync(notesFile)
    ? (JSON.parse(fs.readFileSync(notesFile, "utf8")) as ReportNotes)
    : {};
  fs.writeFileSync(path, renderReport(results, limits, notes));
  return path;
}

if (import.meta.main) {
  const dir = process.argv[2];
  if (dir === undefined) {
    console.error("usage: bun bench/report.ts DIR   (DIR holds the result files of one run)");
    process.exitCode = 2;
  } else {
    console.log(writeReport(dir));
  }
}

/** The machine's limits measured in the same run, with each driver's MB/s as a fraction. */
function limitsSection(limits: MachineLimits): string {
  return `<h3>Limits measured in this run</h3>
<table><tr><th>limit</th><th>MB/s</th></tr>
<tr><td>disk: sequential write, then fdatasync</td><td>${limits.diskWriteFdatasyncMBps}</td></tr>
<tr><td>loopback TCP between two processes</td><td>${limits.loopbackTcpMBps}</td></tr></table>
<p class="notes">${esc(limits.what)}</p>`;
}

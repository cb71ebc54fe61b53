// The comparison table printed at the end of a run, one row per driver.

import type { BenchResult } from "./result.ts";

export type TableRow = Pick<
  BenchResult,
  | "driver"
  | "publishRateAvg"
  | "publishThroughputMBps"
  | "aggregatedPublishLatency50pct"
  | "aggregatedPublishLatency99pct"
  | "aggregatedPublishLatency999pct"
  | "aggregatedEndToEndLatency50pct"
  | "aggregatedEndToEndLatency99pct"
  | "aggregatedEndToEndLatency999pct"
  | "totalMessagesSent"
  | "totalMessagesReceived"
  | "expectedMessagesReceived"
  | "errors"
  | "durability"
  | "sustained"
  | "brokerCpuPercent"
  | "clientCpuPercent"
  | "msgsPerBrokerCoreSecond"
> & {
  failure?: string | null;
  otherCpuPercent?: number | null;
  machineCpu?: { stealPercent: number } | null;
};

/** CPU the run lost to others: programs outside it, and time the host gave other machines. */
export function lostCpuPercent(row: TableRow): number | null {
  const other = row.otherCpuPercent ?? null;
  if (other === null) return null;
  return other + (row.machineCpu?.stealPercent ?? 0);
}

export function formatMs(ms: number): string {
  if (ms >= 100) return ms.toFixed(0);
  if (ms >= 10) return ms.toFixed(1);
  return ms.toFixed(2);
}

function formatInteger(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

/** "ok", or how many messages are missing or extra, and how many sends failed. */
export function deliveryVerdict(row: TableRow): string {
  const missing = row.expectedMessagesReceived - row.totalMessagesReceived;
  const parts: string[] = [];
  if (row.failure !== undefined && row.failure !== null) parts.push("FAILED (partial)");
  if (missing > 0) parts.push(`MISSING ${formatInteger(missing)}`);
  if (missing < 0) parts.push(`+${formatInteger(-missing)} dup`);
  if (row.errors > 0) parts.push(`${formatInteger(row.errors)} send errors`);
  return parts.length === 0 ? "ok" : parts.join(", ");
}

export const TABLE_HEADERS = [
  "driver",
  "msg/s",
  "MB/s",
  "sustained",
  "pub p50",
  "pub p99",
  "pub p99.9",
  "e2e p50",
  "e2e p99",
  "e2e p99.9",
  "sent=recv",
  "broker cpu",
  "client cpu",
  "lost cpu",
  "msg/core-s",
  "durability",
] as const;

/** The column of the delivery verdict (the report marks a bad one). */
export const DELIVERY_COLUMN = TABLE_HEADERS.indexOf("sent=recv");

function percent(value: number | null): string {
  return value === null ? "—" : `${Math.round(value)}%`;
}

export function tableCells(row: TableRow): string[] {
  return [
    row.driver,
    formatInteger(row.publishRateAvg),
    row.publishThroughputMBps.toFixed(1),
    row.sustained ? "yes" : "NOT SUSTAINED",
    formatMs(row.aggregatedPublishLatency50pct),
    formatMs(row.aggregatedPublishLatency99pct),
    formatMs(row.aggregatedPublishLatency999pct),
    formatMs(row.aggregatedEndToEndLatency50pct),
    formatMs(row.aggregatedEndToEndLatency99pct),
    formatMs(row.aggregatedEndToEndLatency999pct),
    deliveryVerdict(row),
    percent(row.brokerCpuPercent),
    percent(row.clientCpuPercent),
    percent(lostCpuPercent(row)),
    row.msgsPerBrokerCoreSecond === null ? "—" : formatInteger(row.msgsPerBrokerCoreSecond),
    row.durability,
  ];
}

/**
 * A plain-text table; latencies in ms; broker cpu (its processes, from /proc), client cpu
 * (every load worker) and lost cpu (programs outside the run, and time stolen by the host) in
 * % of one core; msg/core-s = msg/s per core of broker CPU.
 */
export function formatTable(rows: readonly TableRow[]): string {
  const cells = [[...TABLE_HEADERS], ...rows.map(tableCells)];
  const widths = TABLE_HEADERS.map((_, column) =>
    Math.max(...cells.map((line) => line[column]!.length)),
  );
  const numeric = (column: number) => column > 0 && column < TABLE_HEADERS.length - 1;
  const lines = cells.map((line) =>
    line
      .map((cell, column) => {
        const last = column === line.length - 1;
        if (last) return cell;
        return numeric(column) ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!);
      })
      .join("  "),
  );
  lines.splice(1, 0, widths.map((width) => "-".repeat(Math.min(width, 40))).join("  "));
  return lines.join("\n");
}

export const LATENCY_TABLE_HEADERS = [
  "driver",
  "load",
  "msg/s",
  "sustained",
  "pub p50",
  "pub p99",
  "pub p99.9",
  "e2e p50",
  "e2e p99",
  "e2e p99.9",
  "broker cpu",
  "client cpu",
] as const;

type LatencyRow = Pick<BenchResult, "driver" | "latencyAtLoad">;

/** The --latency-at-load runs: one line per driver and load. */
export function formatLatencyTable(rows: readonly LatencyRow[]): string {
  const cells: string[][] = [[...LATENCY_TABLE_HEADERS]];
  for (const row of rows) {
    for (const point of row.latencyAtLoad ?? []) {
      cells.push([
        row.driver,
        point.label,
        formatInteger(point.rate),
        point.sustained ? "yes" : "NOT SUSTAINED",
        formatMs(point.publishP50Ms),
        formatMs(point.publishP99Ms),
        formatMs(point.publishP999Ms),
        formatMs(point.endToEndP50Ms),
        formatMs(point.endToEndP99Ms),
        formatMs(point.endToEndP999Ms),
        percent(point.brokerCpuPercent),
        percent(point.clientCpuPercent),
      ]);
    }
  }
  const widths = LATENCY_TABLE_HEADERS.map((_, column) =>
    Math.max(...cells.map((line) => line[column]!.length)),
  );
  const lines = cells.map((line) =>
    line
      .map((cell, column) =>
        column > 1 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!),
      )
      .join("  ")
      .trimEnd(),
  );
  lines.splice(1, 0, widths.map((width) => "-".repeat(width)).join("  "));
  return lines.join("\n");
}

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
> & { clientCpu: { percentOfOneCore: number } };

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
  if (missing > 0) parts.push(`MISSING ${formatInteger(missing)}`);
  if (missing < 0) parts.push(`+${formatInteger(-missing)} dup`);
  if (row.errors > 0) parts.push(`${formatInteger(row.errors)} send errors`);
  return parts.length === 0 ? "ok" : parts.join(", ");
}

export const TABLE_HEADERS = [
  "driver",
  "msg/s",
  "MB/s",
  "pub p50",
  "pub p99",
  "pub p99.9",
  "e2e p50",
  "e2e p99",
  "e2e p99.9",
  "sent=recv",
  "cpu",
  "durability",
] as const;

export function tableCells(row: TableRow): string[] {
  return [
    row.driver,
    formatInteger(row.publishRateAvg),
    row.publishThroughputMBps.toFixed(1),
    formatMs(row.aggregatedPublishLatency50pct),
    formatMs(row.aggregatedPublishLatency99pct),
    formatMs(row.aggregatedPublishLatency999pct),
    formatMs(row.aggregatedEndToEndLatency50pct),
    formatMs(row.aggregatedEndToEndLatency99pct),
    formatMs(row.aggregatedEndToEndLatency999pct),
    deliveryVerdict(row),
    `${Math.round(row.clientCpu.percentOfOneCore)}%`,
    row.durability,
  ];
}

/** A plain-text table; latencies in ms, cpu = the harness process, in % of one core. */
export function formatTable(rows: readonly TableRow[]): string {
  const cells = [[...TABLE_HEADERS], ...rows.map(tableCells)];
  const widths = TABLE_HEADERS.map((_, column) =>
    Math.max(...cells.map((line) => line[column]!.length)),
  );
  const numeric = (column: number) => column > 0 && column < 9;
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

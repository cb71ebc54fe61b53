// The delayed-delivery figures (workload `deliveryDelayMsMax`): a table printed after the
// comparison, and one line in each driver's section of the report. Lateness is receive − due
// time of the deliveries at or after their due time; an early delivery is counted on its own
// (and by how much the earliest came before its due time), never folded into the percentiles.

import type { BenchResult } from "./result.ts";
import { formatMs } from "./table.ts";

export type LatenessRow = Pick<
  BenchResult,
  | "driver"
  | "delayPath"
  | "latenessP50Ms"
  | "latenessP99Ms"
  | "latenessMaxMs"
  | "earlyDeliveries"
  | "earlyByMsMax"
>;

export const LATENESS_TABLE_HEADERS = [
  "driver",
  "lateness p50",
  "p99",
  "max",
  "early",
  "earliest by",
  "delay path",
] as const;

function ms(value: number | null): string {
  return value === null ? "—" : formatMs(value);
}

export function latenessCells(row: LatenessRow): string[] {
  return [
    row.driver,
    ms(row.latenessP50Ms),
    ms(row.latenessP99Ms),
    ms(row.latenessMaxMs),
    row.earlyDeliveries === null ? "—" : row.earlyDeliveries.toLocaleString("en-US"),
    ms(row.earlyByMsMax),
    row.delayPath ?? "—",
  ];
}

/** Rows of delayed runs only; "" when there is none. */
export function formatLatenessTable(rows: readonly LatenessRow[]): string {
  const delayed = rows.filter((row) => row.delayPath !== null && row.delayPath !== undefined);
  if (delayed.length === 0) return "";
  const cells = [[...LATENESS_TABLE_HEADERS], ...delayed.map(latenessCells)];
  const last = LATENESS_TABLE_HEADERS.length - 1;
  const widths = LATENESS_TABLE_HEADERS.map((_, column) =>
    Math.max(...cells.map((line) => line[column]!.length)),
  );
  const lines = cells.map((line) =>
    line
      .map((cell, column) => {
        // The delay path is free text: left-aligned, last, and never padded.
        if (column === last) return cell;
        return column > 0 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!);
      })
      .join("  "),
  );
  // The free-text column's rule is as wide as its header.
  const rules = widths.map((width, column) =>
    "-".repeat(column === last ? LATENESS_TABLE_HEADERS[last]!.length : width),
  );
  lines.splice(1, 0, rules.join("  "));
  lines.push(
    "delayed delivery: lateness = receive − due time, ms, of deliveries at or after their due " +
      "time (measured phase and drain); early = deliveries before their due time, counted " +
      "apart, earliest by = how far before",
  );
  return lines.join("\n");
}

/** One line for the report's driver section. */
export function latenessSummary(row: LatenessRow): string {
  const cells = latenessCells(row);
  return LATENESS_TABLE_HEADERS.slice(1)
    .map((header, i) => `${header} ${cells[i + 1]}`)
    .join("; ");
}

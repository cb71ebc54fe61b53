// The per-message acknowledgement figures (workload `ackMode: per-message`): a second table
// printed after the comparison, and one line in each driver's section of the report.

import type { BenchResult } from "./result.ts";
import { formatMs } from "./table.ts";

export type AckRow = Pick<
  BenchResult,
  | "driver"
  | "consumeRateAvg"
  | "totalMessagesReceived"
  | "redeliveries"
  | "released"
  | "answerFailures"
  | "deadLettered"
  | "ackLatency50pct"
  | "ackLatency99pct"
  | "ackLatency999pct"
> &
  Partial<
    Pick<BenchResult, "fsyncP50Ms" | "fsyncP99Ms" | "queueFsyncP50Ms" | "queueFsyncP99Ms">
  > & {
    ackMode?: BenchResult["ackMode"];
  };

export const ACK_TABLE_HEADERS = [
  "driver",
  "accepted/s",
  "accepted",
  "released",
  "redelivered",
  "dead-lettered",
  "answer failures",
  "ack p50",
  "ack p99",
  "ack p99.9",
  "fsync p50",
  "fsync p99",
  "ack fsync p50",
  "ack fsync p99",
] as const;

function count(value: number | null): string {
  return value === null ? "—" : Math.round(value).toLocaleString("en-US");
}

function ms(value: number | null): string {
  return value === null ? "—" : formatMs(value);
}

export function ackCells(row: AckRow): string[] {
  return [
    row.driver,
    count(row.consumeRateAvg),
    count(row.totalMessagesReceived),
    count(row.released),
    count(row.redeliveries),
    count(row.deadLettered),
    count(row.answerFailures),
    ms(row.ackLatency50pct),
    ms(row.ackLatency99pct),
    ms(row.ackLatency999pct),
    ms(row.fsyncP50Ms ?? null),
    ms(row.fsyncP99Ms ?? null),
    ms(row.queueFsyncP50Ms ?? null),
    ms(row.queueFsyncP99Ms ?? null),
  ];
}

/** Rows of per-message runs only; "" when there is none. */
export function formatAckTable(rows: readonly AckRow[]): string {
  const perMessage = rows.filter((row) => row.ackMode === "per-message");
  if (perMessage.length === 0) return "";
  const cells = [[...ACK_TABLE_HEADERS], ...perMessage.map(ackCells)];
  const widths = ACK_TABLE_HEADERS.map((_, column) =>
    Math.max(...cells.map((line) => line[column]!.length)),
  );
  const lines = cells.map((line) =>
    line
      .map((cell, column) =>
        column > 0 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!),
      )
      .join("  "),
  );
  lines.splice(1, 0, widths.map((width) => "-".repeat(width)).join("  "));
  lines.push(
    "per-message acks: accepted = accepts the broker confirmed (each message once); ack = " +
      "from accept() to the broker's durable confirmation, ms (— : the system does not " +
      "confirm acks, or does not count); fsync = the broker's own fdatasyncs of partition " +
      "segments over the measured phase, ack fsync = of queue state-log commits (what an " +
      "fsynced accept waits for: no ack can be faster), ms (— : not known)",
  );
  return lines.join("\n");
}

/** One line for the report's driver section. */
export function ackSummary(row: AckRow): string {
  const cells = ackCells(row);
  return ACK_TABLE_HEADERS.slice(1)
    .map((header, i) => `${header} ${cells[i + 1]}`)
    .join("; ");
}

// Where `sluice consume` starts in each partition it reads itself (without --group):
//
//   --from beginning      the log start
//   --from end            the log end: only new records (the default)
//   --from OFFSET         that offset in every partition
//   --from -N             the last N records of each partition (kcat's -o -N)
//   --from @MS            the first record with a timestamp ≥ MS (ms since the epoch) ...
//   --from ISO-8601       ... or ≥ that time (2026-12-03T10:00:00Z); the end when none is
//
// Starts are resolved with ListOffsets before consuming. A start past a partition's end is
// reported on stderr, since the consumer then waits there for records that may never come.

import type { Admin } from "../protocol/client/mod.ts";
import { UsageError } from "./_args.ts";

export type FromSpec =
  | { kind: "beginning" }
  | { kind: "end" }
  | { kind: "offset"; offset: number }
  | { kind: "last"; count: number }
  | { kind: "time"; timestampMs: number };

const FROM_EXPECTED = "beginning, end, OFFSET, -N, @TIMESTAMP_MS or an ISO-8601 time";

export function parseFrom(text: string): FromSpec {
  if (text === "beginning" || text === "end") return { kind: text };
  const number = (digits: string) => {
    const value = Number(digits);
    if (!Number.isSafeInteger(value)) throw new UsageError(`--from ${text} is too large`);
    return value;
  };
  if (/^\d+$/.test(text)) return { kind: "offset", offset: number(text) };
  if (/^-\d+$/.test(text)) return { kind: "last", count: number(text.slice(1)) };
  if (/^@\d+$/.test(text)) return { kind: "time", timestampMs: number(text.slice(1)) };
  if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(text)) {
    const ms = Date.parse(text);
    if (Number.isFinite(ms) && ms >= 0) return { kind: "time", timestampMs: ms };
  }
  throw new UsageError(`--from ${text} is not ${FROM_EXPECTED}`);
}

export type PartitionRange = { partition: number; start: number; end: number };

/** Log start and end of each partition. */
export async function partitionRanges(
  admin: Admin,
  topic: string,
  partitions: readonly number[],
): Promise<PartitionRange[]> {
  const request = (at: "earliest" | "latest") =>
    admin.listOffsets(partitions.map((partition) => ({ topic, partition, at })));
  const [starts, ends] = [await request("earliest"), await request("latest")];
  return partitions.map((partition) => ({
    partition,
    start: starts.find((s) => s.partition === partition)?.offset ?? 0,
    end: ends.find((e) => e.partition === partition)?.offset ?? 0,
  }));
}

/** The offset each partition starts at, for `from`. */
export async function resolveStarts(
  admin: Admin,
  topic: string,
  ranges: readonly PartitionRange[],
  from: FromSpec,
): Promise<Map<number, number>> {
  const starts = new Map<number, number>();
  if (from.kind === "time") {
    const found = await admin.listOffsets(
      ranges.map(({ partition }) => ({ topic, partition, at: from.timestampMs })),
    );
    for (const range of ranges) {
      const offset = found.find((f) => f.partition === range.partition)?.offset ?? -1;
      starts.set(range.partition, offset < 0 ? range.end : offset);
    }
    return starts;
  }
  for (const { partition, start, end } of ranges) {
    if (from.kind === "beginning") starts.set(partition, start);
    else if (from.kind === "end") starts.set(partition, end);
    else if (from.kind === "offset") starts.set(partition, from.offset);
    else starts.set(partition, Math.max(start, end - from.count));
  }
  return starts;
}

/** One line per partition whose start is past its end; empty when none is. */
export function pastEndWarnings(
  topic: string,
  ranges: readonly PartitionRange[],
  starts: ReadonlyMap<number, number>,
): string[] {
  return ranges
    .filter(({ partition, end }) => (starts.get(partition) ?? 0) > end)
    .map(
      ({ partition, end }) =>
        `sluice consume: --from ${starts.get(partition)} is past the end of ${topic}/` +
        `${partition} (log end ${end}); waiting for records to reach it`,
    );
}

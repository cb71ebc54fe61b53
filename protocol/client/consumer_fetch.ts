// The consumer's per-partition state and the pure parts of fetching: which partitions go into
// a Fetch request, and how a partition's record bytes become records and a next position.
//
// Offsets kept per partition (each the offset of the next record, as Kafka commits them):
//
//   committed ≤ consumed ≤ delivered ≤ position
//   committed: last commit the server acknowledged
//   consumed:  records the application has finished with (what auto-commit commits)
//   delivered: records handed to the application (what commit() commits)
//   position:  the next fetch offset

import { decodeRecordBatches, type RecordHeader } from "../../engine/mod.ts";
import type { FetchRequest } from "../codec/fetch.ts";
import { appendTo } from "./collections.ts";

export type ConsumerRecord = {
  topic: string;
  partition: number;
  offset: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: readonly RecordHeader[];
  /** Milliseconds since the epoch. */
  timestamp: number;
};

export type OffsetReset = "earliest" | "latest";

export type PartitionState = {
  topic: string;
  partition: number;
  key: string;
  /** Undefined until resolved from the committed offset or the reset policy. */
  position: number | undefined;
  delivered: number | undefined;
  consumed: number | undefined;
  committed: number | undefined;
  highWatermark: number | undefined;
  paused: boolean;
  /** Look up the committed offset before falling back to `reset`. */
  useCommitted: boolean;
  reset: OffsetReset;
  /** Bumped by seek and reset: fetch results for an older generation are dropped. */
  generation: number;
};

export function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

export function newPartitionState(
  topic: string,
  partition: number,
  reset: OffsetReset,
  useCommitted: boolean,
): PartitionState {
  return {
    topic,
    partition,
    key: partitionKey(topic, partition),
    position: undefined,
    delivered: undefined,
    consumed: undefined,
    committed: undefined,
    highWatermark: undefined,
    paused: false,
    useCommitted,
    reset,
    generation: 0,
  };
}

/** Sets every offset but `committed` to `offset`, as a seek or a resolved start does. */
export function moveTo(state: PartitionState, offset: number): void {
  state.position = offset;
  state.delivered = offset;
  state.consumed = offset;
  state.generation++;
}

export type FetchLimits = {
  maxWaitMs: number;
  minBytes: number;
  maxBytes: number;
  partitionMaxBytes: number;
};

/** A Fetch request for these partitions (each with a known position), in the given order. */
export function buildFetchRequest(
  states: readonly PartitionState[],
  limits: FetchLimits,
): FetchRequest {
  const topics = new Map<string, FetchRequest["topics"][number]["partitions"]>();
  for (const state of states) {
    appendTo(topics, state.topic, {
      partition: state.partition,
      fetchOffset: state.position!,
      partitionMaxBytes: limits.partitionMaxBytes,
    });
  }
  const request: FetchRequest = {
    maxWaitMs: limits.maxWaitMs,
    minBytes: limits.minBytes,
    maxBytes: limits.maxBytes,
    topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })),
  };
  return request;
}

/**
 * Decodes a partition's record bytes from a fetch at `fetchOffset`. Records below it (the
 * first batch may begin earlier) and control records are skipped; a batch cut short at the
 * end is left for the next fetch. `nextOffset` is one past the last whole batch, which steps
 * over offsets a compacted batch no longer holds. Throws a SluiceError for corrupt bytes.
 */
export function recordsFrom(
  topic: string,
  partition: number,
  fetchOffset: number,
  bytes: Uint8Array,
): { records: ConsumerRecord[]; nextOffset: number } {
  const records: ConsumerRecord[] = [];
  let nextOffset = fetchOffset;
  for (const batch of decodeRecordBatches(bytes)) {
    if (!batch.control) {
      for (const record of batch.records) {
        if (record.offset < fetchOffset) continue;
        records.push({
          topic,
          partition,
          offset: record.offset,
          key: record.key,
          value: record.value,
          headers: record.headers,
          timestamp: record.timestamp,
        });
      }
    }
    nextOffset = Math.max(nextOffset, batch.baseOffset + batch.lastOffsetDelta + 1);
  }
  return { records, nextOffset };
}

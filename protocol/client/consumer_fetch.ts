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

import {
  BATCH_HEADER_BYTES,
  baseOffsetAt,
  type DecodeBatchOptions,
  type DecodedRecordBatch,
  decodeRecordBatchViews,
  lastOffsetDeltaAt,
  type RecordHeader,
  forEachRecordBatch,
} from "../../record/mod.ts";
import type { FetchRequest } from "../codec/fetch.ts";
import type { Writer } from "../codec/wire.ts";
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
  /** How this partition's records are decoded (consumerDecodeOptions), made at first use. */
  decodeOptions: DecodeBatchOptions | undefined;
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
    decodeOptions: undefined,
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
 * Writes a Fetch request for these partitions (each with a known position) straight from their
 * states, in the given order grouped by topic: the bytes writeFetchRequest writes for
 * buildFetchRequest's request, without building it (a consumer sends one per fetch, and the
 * request's objects were most of what a fetch allocated before its records).
 */
export function writeFetchRequestFor(
  writer: Writer,
  states: readonly PartitionState[],
  limits: FetchLimits,
): void {
  writer.u32(limits.maxWaitMs).u32(limits.minBytes).u32(limits.maxBytes);
  const topics = topicsInOrder(states);
  writer.u16(topics.length);
  for (const topic of topics) {
    let count = 0;
    for (const state of states) if (state.topic === topic) count++;
    writer.string(topic).u16(count);
    for (const state of states) {
      if (state.topic !== topic) continue;
      writer.u32(state.partition).i64(state.position!).u32(limits.partitionMaxBytes);
    }
  }
}

/** The topics of `states` in order of first appearance. */
function topicsInOrder(states: readonly PartitionState[]): string[] {
  const topics: string[] = [];
  // Most consumers read one topic or a few: a scan of them beats a Set for each fetch.
  const scan = states.length <= TOPICS_SCANNED_MAX;
  const seen = scan ? undefined : new Set<string>();
  for (const state of states) {
    if (seen === undefined ? topics.includes(state.topic) : seen.has(state.topic)) continue;
    seen?.add(state.topic);
    topics.push(state.topic);
  }
  return topics;
}

/** Up to this many partitions, a fetch's topics are found by scanning, not with a Set. */
const TOPICS_SCANNED_MAX = 64;

/** The bytes writeFetchRequestFor takes at most (names counted at 3 bytes a character). */
export function fetchRequestBytesFor(states: readonly PartitionState[]): number {
  let bytes = 4 + 4 + 4 + 2;
  // Each partition counted with its own topic header: an upper bound, and no grouping needed.
  for (const state of states) bytes += 2 + state.topic.length * 3 + 2 + 4 + 8 + 4;
  return bytes;
}

/**
 * Decodes a partition's record bytes from a fetch at `fetchOffset`: one view, or the views of
 * the received chunks they lie in. Records below it (the first batch may begin earlier) and
 * control records are skipped; a batch cut short at the end is left for the next fetch.
 * `nextOffset` is one past the last whole batch, which steps over offsets a compacted batch no
 * longer holds. Throws a SluiceError for corrupt bytes.
 */
export function recordsFrom(
  topic: string,
  partition: number,
  fetchOffset: number,
  bytes: Uint8Array | readonly Uint8Array[],
  options: DecodeBatchOptions = {},
): { records: ConsumerRecord[]; nextOffset: number } {
  const decoded = recordsUntilDamage(topic, partition, fetchOffset, bytes, options);
  if (decoded.failure !== undefined) throw decoded.failure;
  return { records: decoded.records, nextOffset: decoded.nextOffset };
}

/**
 * recordsFrom that stops at the first batch failing to decode instead of throwing: the records
 * of the batches before it, the offset after them, and the failure (undefined when none).
 * `options` may carry the partition's record maker (consumerDecodeOptions), made once per
 * partition instead of once per call.
 */
export function recordsUntilDamage(
  topic: string,
  partition: number,
  fetchOffset: number,
  bytes: Uint8Array | readonly Uint8Array[],
  options: DecodeBatchOptions = {},
): { records: ConsumerRecord[]; nextOffset: number; failure: unknown } {
  const decodeOptions =
    options.makeRecord === undefined ? consumerDecodeOptions(topic, partition, options) : options;
  const decoded: Decoded = {
    records: [],
    nextOffset: fetchOffset,
    fetchOffset,
    failure: undefined,
  };
  try {
    decodeInto(decoded, bytes, decodeOptions);
  } catch (failure) {
    return { records: decoded.records, nextOffset: decoded.nextOffset, failure };
  }
  return decoded;
}

/**
 * Decode options whose record maker builds a partition's ConsumerRecords straight away: one
 * object per record, not a decoded record and then a copy of it with the topic and partition.
 */
export function consumerDecodeOptions(
  topic: string,
  partition: number,
  options: DecodeBatchOptions = {},
): DecodeBatchOptions {
  const makeRecord = (
    offset: number,
    timestamp: number,
    key: Uint8Array | null,
    value: Uint8Array | null,
    headers: readonly RecordHeader[],
  ): ConsumerRecord => ({ topic, partition, offset, key, value, headers, timestamp });
  return { ...options, makeRecord };
}

/** What decoding a partition's bytes has produced so far, and the offset it was asked from. */
type Decoded = {
  records: ConsumerRecord[];
  nextOffset: number;
  fetchOffset: number;
  failure: unknown;
};

function decodeInto(
  decoded: Decoded,
  bytes: Uint8Array | readonly Uint8Array[],
  options: DecodeBatchOptions,
): void {
  // One view (a fetch answer that arrived in one chunk) is decoded in place, batch by batch,
  // by a visitor: no generator and no iterator result per partition of every fetch.
  const single = bytes instanceof Uint8Array ? bytes : bytes.length === 1 ? bytes[0]! : undefined;
  if (single !== undefined) {
    forEachRecordBatch(single, options, decoded, take);
    return;
  }
  for (const run of wholeBatchRuns(bytes as readonly Uint8Array[])) {
    if (run instanceof Uint8Array) forEachRecordBatch(run, options, decoded, take);
    else take(decoded, decodeRecordBatchViews(run, options));
  }
}

/** A decoded batch's records at or past the fetch offset (none of a control batch). */
function take(decoded: Decoded, batch: DecodedRecordBatch): void {
  const { fetchOffset } = decoded;
  if (!batch.control) {
    // The options' maker built every record of the batch, so each is a ConsumerRecord.
    const records = batch.records as ConsumerRecord[];
    const whole = batch.baseOffset >= fetchOffset;
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      if (whole || record.offset >= fetchOffset) decoded.records.push(record);
    }
  }
  decoded.nextOffset = Math.max(decoded.nextOffset, batch.baseOffset + batch.lastOffsetDelta + 1);
}

/** Batch header bytes up to the end of lastOffsetDelta: enough to step over a batch. */
const STEP_HEADER_BYTES = 27;

/**
 * The offset after the last whole batch of a partition's record bytes, read from the batch
 * headers alone (no record decoded, no CRC): where the next fetch starts, so it can be sent
 * before this fetch's records are decoded. Stops at a batch whose size is out of range or cut
 * short; for bytes that decode without error it equals recordsFrom's nextOffset, and when they
 * do not, the caller goes back to `fetchOffset`.
 */
export function nextOffsetFromHeaders(
  fetchOffset: number,
  bytes: Uint8Array | readonly Uint8Array[],
): number {
  const single = bytes instanceof Uint8Array ? bytes : bytes.length === 1 ? bytes[0]! : undefined;
  if (single !== undefined) return nextOffsetInView(fetchOffset, single);
  const views = bytes as readonly Uint8Array[];
  let left = 0;
  for (const view of views) left += view.length;
  let next = fetchOffset;
  let index = 0;
  let at = 0;
  while (left >= STEP_HEADER_BYTES) {
    const view = views[index]!;
    const inside = view.length - at >= STEP_HEADER_BYTES;
    const header = inside ? view : copyFrom(views, index, at, STEP_HEADER_BYTES);
    const from = inside ? at : 0;
    const size = SIZE_PREFIX_BYTES + readI32(header, from + 8);
    if (size < BATCH_HEADER_BYTES || size > left) break;
    const last = baseOffsetAt(header, from) + lastOffsetDeltaAt(header, from);
    if (!Number.isSafeInteger(last)) break;
    next = Math.max(next, last + 1);
    left -= size;
    ({ index, at } = advance(views, index, at, size));
  }
  return next;
}

/**
 * nextOffsetFromHeaders over one view (a fetch answer that arrived in one chunk): the same
 * steps with no array of views and no position object per batch.
 */
function nextOffsetInView(fetchOffset: number, view: Uint8Array): number {
  let next = fetchOffset;
  let at = 0;
  while (view.length - at >= STEP_HEADER_BYTES) {
    const size = SIZE_PREFIX_BYTES + readI32(view, at + 8);
    if (size < BATCH_HEADER_BYTES || size > view.length - at) break;
    const last = baseOffsetAt(view, at) + lastOffsetDeltaAt(view, at);
    if (!Number.isSafeInteger(last)) break;
    next = Math.max(next, last + 1);
    at += size;
  }
  return next;
}

/** baseOffset (8 bytes) and batchLength (4): a batch's size is 12 + batchLength. */
const SIZE_PREFIX_BYTES = 12;

/**
 * The batches of a partition's record bytes, in order, as the decoders take them: a view of
 * each run of whole batches that lies inside one view, and the views of each batch that spans
 * several (decoded in place, not joined). A batch whose size is unreadable or out of range, or
 * that is cut short at the end, goes to the decoder as a copy of the bytes there are (bounded
 * by them), and the decoder names the problem or skips the partial batch.
 */
export function* wholeBatchRuns(
  views: readonly Uint8Array[],
): Generator<Uint8Array | Uint8Array[]> {
  let left = 0;
  for (const view of views) left += view.length;
  let index = 0;
  let at = 0;
  while (left > 0) {
    const view = views[index]!;
    const start = at;
    while (view.length - at >= SIZE_PREFIX_BYTES) {
      const size = SIZE_PREFIX_BYTES + readI32(view, at + 8);
      if (size < BATCH_HEADER_BYTES || size > view.length - at) break;
      at += size;
    }
    if (at > start) yield view.subarray(start, at);
    left -= at - start;
    if (at === view.length) {
      index++;
      at = 0;
      continue;
    }
    // A batch that does not lie inside this view: the views it spans, when it is whole.
    const prefix = copyFrom(views, index, at, Math.min(SIZE_PREFIX_BYTES, left));
    const declared = prefix.length < SIZE_PREFIX_BYTES ? 0 : SIZE_PREFIX_BYTES + readI32(prefix, 8);
    const whole = declared >= BATCH_HEADER_BYTES && declared <= left;
    const take = Math.min(left, Math.max(declared, BATCH_HEADER_BYTES));
    yield whole ? viewsOf(views, index, at, take) : copyFrom(views, index, at, take);
    left -= take;
    ({ index, at } = advance(views, index, at, take));
  }
}

/** `length` bytes starting at `at` in views[index], copied into one buffer. */
function copyFrom(views: readonly Uint8Array[], index: number, at: number, length: number) {
  const out = new Uint8Array(length);
  let filled = 0;
  let i = index;
  let from = at;
  while (filled < length) {
    const view = views[i]!;
    const take = Math.min(length - filled, view.length - from);
    out.set(view.subarray(from, from + take), filled);
    filled += take;
    i++;
    from = 0;
  }
  return out;
}

/** `length` bytes starting at `at` in views[index], as views of the pieces they lie in. */
function viewsOf(views: readonly Uint8Array[], index: number, at: number, length: number) {
  const out: Uint8Array[] = [];
  let left = length;
  let i = index;
  let from = at;
  while (left > 0) {
    const view = views[i]!;
    const take = Math.min(left, view.length - from);
    if (take > 0) out.push(view.subarray(from, from + take));
    left -= take;
    i++;
    from = 0;
  }
  return out;
}

function advance(views: readonly Uint8Array[], index: number, at: number, length: number) {
  let i = index;
  let position = at + length;
  while (i < views.length && position >= views[i]!.length) {
    position -= views[i]!.length;
    i++;
  }
  return { index: i, at: position };
}

function readI32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!;
}

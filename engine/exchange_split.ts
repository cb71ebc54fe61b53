// Splitting a batch whose records go different ways, without decoding it: one scan notes where
// each record lies (exchange_scan.ts), each record is routed (a record that routes like the one
// before it, same key and headers, goes where that one went without asking the exchange), and
// each destination topic gets one batch of its records, in their order, built by copying their
// bytes. Records with the same destinations therefore stay together in one batch per topic,
// whatever their routing keys.
//
//   source  [ header | r0 | r1 | r2 | r3 ]     r0,r1,r3 → A      r1,r2 → B
//   A       [ header' | r0 | r1' | r3' ]       r' = r with its offsetDelta renumbered (and its
//   B       [ header' | r1' | r2' ]                 length varint, when that changes its size)
//
// A copied record keeps its attributes, timestamp delta, key, value and headers byte for byte;
// header' keeps the source's base timestamp, attributes, producer fields and leader epoch, and
// gets the count, lastOffsetDelta, maxTimestamp, length and CRC-32C of its own records. The
// source's CRC is checked before any of its bytes are copied, so damaged bytes are refused
// rather than given a fresh CRC. A topic that takes every record gets the source's own bytes.

import {
  assert,
  ATTRIBUTES_AT,
  BASE_TIMESTAMP_AT,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_AT,
  computeBatchCrc,
  CRC_AT,
  LAST_OFFSET_DELTA_AT,
  MAX_TIMESTAMP_AT,
  readInt64,
  RECORD_COUNT_AT,
  type RecordHeader,
  TIMESTAMP_TYPE_BIT,
  varintSize,
  writeInt32,
  writeInt64,
  writeVarint,
} from "../record/mod.ts";
import { headersOf, keyOf, type RecordSpans, routeAlike, scanRecords } from "./exchange_scan.ts";

/** The records of one batch bound for one topic: their batch, and the first one's key. */
export type RoutedGroup = { bytes: Uint8Array; firstKey: Uint8Array | null; records: number };

/** A batch split by destination topic (each topic once), and its records no binding took. */
export type SplitBatch = {
  byTopic: Map<string, RoutedGroup>;
  records: number;
  unroutable: number;
};

/** Where a record goes, from what routing reads of it: its key and its headers. */
export type RecordRouter = (key: Uint8Array | null, headers: RecordHeader[]) => readonly string[];

/**
 * Routes the records of a plain, uncompressed batch whose CRC the caller has checked, and
 * builds each destination's batch. Undefined when the records do not parse (or a record's
 * headers do not), for the caller to decode the batch and report what is wrong with it.
 */
export function splitBatch(batch: Uint8Array, route: RecordRouter): SplitBatch | undefined {
  const found = scanRecords(batch);
  if (found === undefined) return;
  const indexes = new Map<string, number[]>();
  let unroutable = 0;
  let topics: readonly string[] = [];
  for (let index = 0; index < found.count; index++) {
    if (index === 0 || !routeAlike(batch, found, index - 1, index)) {
      const headers = headersOf(batch, found, index);
      if (headers === undefined) return;
      topics = route(keyOf(batch, found, index), headers);
    }
    if (topics.length === 0) unroutable++;
    for (const topic of topics) {
      const list = indexes.get(topic);
      if (list === undefined) indexes.set(topic, [index]);
      else list.push(index);
    }
  }
  const byTopic = new Map<string, RoutedGroup>();
  for (const [topic, list] of indexes) {
    const bytes = list.length === found.count ? batch : copyRecords(batch, found, list);
    byTopic.set(topic, { bytes, firstKey: keyOf(batch, found, list[0]!), records: list.length });
  }
  return { byTopic, records: found.count, unroutable };
}

/** The size of record `index` once its offsetDelta is `delta`, length varint included. */
function copiedSize(found: RecordSpans, index: number, delta: number): number {
  const body =
    found.end[index]! -
    found.body[index]! -
    (found.afterOffsetDelta[index]! - found.offsetDelta[index]!) +
    varintSize(delta);
  return varintSize(body) + body;
}

/** One batch of the records `list` (indexes into the scanned `batch`), numbered 0.. anew. */
function copyRecords(batch: Uint8Array, found: RecordSpans, list: readonly number[]): Uint8Array {
  let size = BATCH_HEADER_BYTES;
  for (let delta = 0; delta < list.length; delta++) size += copiedSize(found, list[delta]!, delta);
  const out = new Uint8Array(size);
  out.set(batch.subarray(0, BATCH_HEADER_BYTES));
  let at = BATCH_HEADER_BYTES;
  let maxDelta = Number.NEGATIVE_INFINITY;
  for (let delta = 0; delta < list.length; delta++) {
    const index = list[delta]!;
    const body = found.body[index]!;
    const offsetDelta = found.offsetDelta[index]!;
    const after = found.afterOffsetDelta[index]!;
    const end = found.end[index]!;
    at = writeVarint(out, at, end - body - (after - offsetDelta) + varintSize(delta));
    out.set(batch.subarray(body, offsetDelta), at);
    at = writeVarint(out, at + offsetDelta - body, delta);
    out.set(batch.subarray(after, end), at);
    at += end - after;
    maxDelta = Math.max(maxDelta, found.timestampDelta[index]!);
  }
  assert(at === size, `copied records fill ${at} of ${size} bytes`);
  writeInt32(out, BATCH_LENGTH_AT, size - 12);
  writeInt32(out, LAST_OFFSET_DELTA_AT, list.length - 1);
  writeInt32(out, RECORD_COUNT_AT, list.length);
  // With log-append time every record's timestamp is the batch's maxTimestamp: kept as it is.
  if ((out[ATTRIBUTES_AT + 1]! & TIMESTAMP_TYPE_BIT) === 0) {
    const maxTimestamp = readInt64(batch, BASE_TIMESTAMP_AT) + maxDelta;
    if (Number.isSafeInteger(maxTimestamp)) writeInt64(out, MAX_TIMESTAMP_AT, maxTimestamp);
  }
  writeInt32(out, CRC_AT, computeBatchCrc(out, 0, size));
  return out;
}

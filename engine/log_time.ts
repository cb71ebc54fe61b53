// Kafka's ListOffsets by time: the first offset whose record timestamp is at or after a given
// time. The sparse time index finds a batch to start from; the read path (with its CRC and
// damage checks) walks forward from there; one batch is decoded to find the exact record.

import { collect, type ReadResult, trustedStart } from "./log_read.ts";
import { batchSizeAt, maxTimestampAt } from "../record/mod.ts";
import { decodeRecordBatch } from "../record/mod.ts";
import type { Segment } from "./segment.ts";
import type { Corruption } from "./segment_scan.ts";

/** Bytes walked per step of a timestamp search. */
const SEARCH_STEP_BYTES = 1024 * 1024;

export function offsetForTimestamp(
  segments: Segment[],
  corruptions: Corruption[],
  name: string,
  timestampMs: number,
): number | undefined {
  if (!Number.isSafeInteger(timestampMs)) {
    throw new TypeError(`timestamp ${timestampMs} is not an integer`);
  }
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment.visiblePosition === 0 || segment.maxTimestamp < timestampMs) continue;
    const damage = { corruptions, nextSegmentBase: segments[i + 1]?.baseOffset };
    let offset = startOffset(segment, timestampMs);
    while (offset < segment.visibleNextOffset) {
      const result: ReadResult = {
        views: [],
        sizeBytes: 0,
        nextOffset: offset,
        highWatermark: segment.visibleNextOffset,
        logStartOffset: segments[0]!.baseOffset,
      };
      const request = { name, offset, maxBytes: SEARCH_STEP_BYTES, highWatermark: offset };
      collect(segment, request, result, damage);
      const found = searchViews(result.views, offset, timestampMs);
      if (found !== undefined) return found;
      if (result.nextOffset <= offset) break;
      offset = result.nextOffset;
    }
  }
  return undefined;
}

/**
 * Where to start looking in a segment: the time index's batch, once checked against the log
 * (the batch there cannot hold a timestamp newer than the entry claims to have seen).
 */
function startOffset(segment: Segment, timestampMs: number): number {
  const entry = segment.timeIndex.lookupEntry(timestampMs);
  if (entry === undefined) return segment.baseOffset;
  const offset = segment.baseOffset + entry.relativeOffset;
  const cursor = trustedStart(segment, offset);
  const head = segment.viewAt(cursor.position, 61);
  if (head.length === 61 && maxTimestampAt(head, 0) <= entry.timestamp) return offset;
  if (!segment.hasUnwritten) {
    segment.rebuildIndexes();
    return startOffset(segment, timestampMs);
  }
  return segment.baseOffset;
}

function searchViews(views: Uint8Array[], offset: number, timestampMs: number): number | undefined {
  for (const view of views) {
    for (let at = 0; at < view.length; ) {
      const size = batchSizeAt(view, at);
      const batch = view.subarray(at, at + size);
      at += size;
      if (maxTimestampAt(batch, 0) < timestampMs) continue;
      for (const record of decodeRecordBatch(batch).records) {
        if (record.offset >= offset && record.timestamp >= timestampMs) return record.offset;
      }
    }
  }
  return undefined;
}

// Reading producer ids and sequences from batch headers: for each append, and to rebuild the
// idempotent-producer state when a partition opens.

import {
  BASE_SEQUENCE_AT,
  BATCH_HEADER_BYTES,
  batchSizeAt,
  baseOffsetAt,
  PRODUCER_EPOCH_AT,
  PRODUCER_ID_AT,
  readInt16,
  readInt32,
  readInt64,
  recordCountAt,
} from "../record/mod.ts";
import { type ProducerBatch, ProducerState } from "./producer_state.ts";
import type { Segment } from "./segment.ts";

/**
 * Segments, newest first, whose headers rebuild the producer state at open. A producer whose
 * last batch is older than these is forgotten and starts afresh, as Kafka expires producers.
 */
export const PRODUCER_REBUILD_SEGMENTS = 2;

/** The producer fields of an idempotent batch; undefined for a batch without a producer id. */
export function producerOf(batch: Uint8Array, recordCount: number): ProducerBatch | undefined {
  const producerId = readInt64(batch, PRODUCER_ID_AT);
  if (!(producerId >= 0)) return undefined;
  return {
    producerId,
    producerEpoch: readInt16(batch, PRODUCER_EPOCH_AT),
    baseSequence: readInt32(batch, BASE_SEQUENCE_AT),
    recordCount,
  };
}

export function rebuildProducerState(segments: Segment[]): ProducerState {
  const state = new ProducerState();
  for (const segment of segments.slice(-PRODUCER_REBUILD_SEGMENTS)) {
    let position = 0;
    while (position + BATCH_HEADER_BYTES <= segment.visiblePosition) {
      const header = segment.viewAt(position, BATCH_HEADER_BYTES);
      if (header.length < BATCH_HEADER_BYTES) break;
      const size = batchSizeAt(header, 0);
      // Damaged regions were reported at open; the state simply skips what it cannot read.
      if (size < BATCH_HEADER_BYTES) break;
      const producer = producerOf(header, recordCountAt(header, 0));
      if (producer !== undefined) state.record(producer, baseOffsetAt(header, 0));
      position += size;
    }
  }
  return state;
}

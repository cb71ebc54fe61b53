// Batches a queue fetch need not judge again. A fetch judges the batch at each partition's
// `next` for expired records (message TTL) and for records published with a due time (delay
// tiers) before it takes new records, and it builds those judges afresh each time: a batch
// that many small fetches take a few records from at a time was read and searched byte by
// byte once per fetch. An uncompressed batch whose bytes name neither TTL_HEADER nor a
// due-time header can, on a queue without a queue-wide TTL, never expire and is never held,
// whatever the time: its verdict is kept, per partition the last batch looked at.

import { Buffer } from "node:buffer";
import {
  ATTRIBUTES_AT,
  baseOffsetAt,
  batchSizeAt,
  COMPRESSION_MASK,
  lastOffsetDeltaAt,
  readInt16,
  TTL_HEADER,
} from "../record/mod.ts";
import { DELAY_HEADER, DELIVER_AT_HEADER } from "./queue_delay.ts";

const text = new TextEncoder();
/** Header names that can hold a record back; a batch naming none of them is plain. */
const NAMES = [TTL_HEADER, DELAY_HEADER, DELIVER_AT_HEADER].map((name) => text.encode(name));

/** Whether a whole batch names no header that could hold its records back. */
export function isPlainBatch(batch: Uint8Array): boolean {
  if ((readInt16(batch, ATTRIBUTES_AT) & COMPRESSION_MASK) !== 0) return false;
  const bytes = Buffer.from(batch.buffer, batch.byteOffset, batch.length);
  for (const name of NAMES) if (bytes.indexOf(name) >= 0) return false;
  return true;
}

type BatchSource = { read(offset: number, maxBytes: number): { views: Uint8Array[] } };

/** Per partition, the last batch looked at and whether it is plain. */
export class PlainBatches {
  readonly #base: Float64Array;
  readonly #last: Float64Array;
  readonly #plain: Uint8Array;

  constructor(partitions: number) {
    this.#base = new Float64Array(partitions).fill(-1);
    this.#last = new Float64Array(partitions).fill(-1);
    this.#plain = new Uint8Array(partitions);
  }

  /** True when the batch holding `offset` is known to be plain. */
  covers(partition: number, offset: number): boolean {
    return (
      this.#plain[partition] === 1 &&
      this.#base[partition]! <= offset &&
      offset <= this.#last[partition]!
    );
  }

  /**
   * Looks at the batch holding `offset` (below the high watermark) once: later calls for an
   * offset in it return at once.
   */
  note(partition: number, log: BatchSource, offset: number): void {
    if (this.#base[partition]! <= offset && offset <= this.#last[partition]!) return;
    const view = log.read(offset, 1).views[0];
    if (view === undefined) return;
    const batch = view.subarray(0, batchSizeAt(view, 0));
    const base = baseOffsetAt(batch, 0);
    this.#base[partition] = base;
    this.#last[partition] = base + lastOffsetDeltaAt(batch, 0);
    this.#plain[partition] = isPlainBatch(batch) ? 1 : 0;
  }
}

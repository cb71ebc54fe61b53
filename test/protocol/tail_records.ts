// The records the tail-lending tests (server/ and kafka/tail_lend.test.ts) produce and check:
// ~16 MiB of 2 KiB records, each value telling its index, sent through a broker whose tail
// cache is 1 MiB, so each chunk is dropped and taken up again while consumers tail the log.

import assert from "node:assert/strict";
import { decodeRecordBatches, encodeRecordBatch } from "../../engine/mod.ts";
import { Producer } from "../../protocol/client/mod.ts";

export const RECORD_BYTES = 2048;
/** ~16 MiB through a 1 MiB tail-cache budget: each chunk is dropped and taken up again. */
export const RECORDS = 8_000;

/** Record `index`'s value: its index in the first 4 bytes, a pattern of it in the rest. */
export function recordValue(index: number): Uint8Array {
  const value = new Uint8Array(RECORD_BYTES);
  for (let i = 0; i < RECORD_BYTES; i += 4) value[i] = (index * 7 + i) & 0xff;
  new DataView(value.buffer).setUint32(0, index);
  return value;
}

/** Record `index` alone in a batch, for appending to the engine directly. */
export function batchOf(index: number): Uint8Array {
  return encodeRecordBatch([{ value: recordValue(index) }], { timestamp: 1_700_000_000_000 });
}

/** Produces RECORDS records to partition 0 of `topic` (sluice protocol, acks=1), 100 at a time. */
export async function produceRecords(port: number, topic: string): Promise<void> {
  const producer = new Producer({ port, acks: 1, lingerMs: 1 });
  try {
    for (let i = 0; i < RECORDS; i += 100) {
      const sends = [];
      for (let j = i; j < i + 100; j++) {
        sends.push(producer.send({ topic, partition: 0, value: recordValue(j) }));
      }
      await Promise.all(sends);
    }
  } finally {
    await producer.close();
  }
}

/**
 * Asserts that `views` (an answer's record bytes, in order) hold records 0 to count - 1, each
 * at its offset and with the value `recordValue` gives it.
 */
export function assertFirstRecords(views: readonly Uint8Array[], count: number): void {
  let index = 0;
  for (const view of views) {
    for (const batch of decodeRecordBatches(view)) {
      for (const record of batch.records) {
        assert.equal(record.offset, index);
        assert.deepEqual(record.value, recordValue(index), `record ${index} intact`);
        index++;
      }
    }
  }
  assert.equal(index, count, "each answer holds the first chunk's batches");
}

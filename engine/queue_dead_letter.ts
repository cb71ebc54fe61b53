// Dead letters: the record a queue appends to its dead-letter topic for a record it gives up
// on. The original key, value and headers are kept; `sluice-death-*` headers say where the
// record came from and why it died, after RabbitMQ's `x-death` (reference/queues.md §2):
//
//   header                      value (UTF-8 text)
//   sluice-death-queue          the queue's name
//   sluice-death-reason         "rejected" (a consumer rejected it), "delivery_limit"
//                               (released, its lock expired or abandoned at the delivery
//                               limit), "expired" (its TTL ran out, engine/queue_ttl.ts)
//                               or "maxlen" (dropped from the head of a full queue,
//                               engine/queue_maxlen.ts)
//   sluice-death-count          times it died in this queue for this reason: 1, or one more
//                               than the count in the headers it arrived with (a record that
//                               cycles back through the same queue), as x-death's count folds
//   sluice-death-first-ms       when it first died there (kept from the arriving headers)
//   sluice-death-last-ms        when it died this time
//   sluice-death-topic          where it was read: topic,
//   sluice-death-partition      partition,
//   sluice-death-offset         and offset
//   sluice-death-deliveries     its delivery count when it died
//
// Unlike x-death, which is an array of one entry per {queue, reason}, only the latest death
// is described: earlier `sluice-death-*` headers are replaced, except that the count and first
// time fold in when queue and reason match. The record's timestamp is the death time, so the
// dead-letter topic's retention counts from then.

import type { LogRecord, RecordHeader, RecordInput } from "../record/mod.ts";

export type DeathReason = "rejected" | "delivery_limit" | "expired" | "maxlen";

export type Death = {
  queue: string;
  reason: DeathReason;
  topic: string;
  partition: number;
  nowMs: number;
};

export const DEATH_HEADER_PREFIX = "sluice-death-";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function headerText(headers: readonly RecordHeader[], key: string): string | undefined {
  const found = headers.find((header) => header.key === key);
  return found?.value === null || found === undefined ? undefined : decoder.decode(found.value);
}

/** The dead letter for `record`, delivered `deliveries` times, dying as `death` says. */
export function deadLetterRecord(record: LogRecord, deliveries: number, death: Death): RecordInput {
  const previous = record.headers;
  const sameDeath =
    headerText(previous, `${DEATH_HEADER_PREFIX}queue`) === death.queue &&
    headerText(previous, `${DEATH_HEADER_PREFIX}reason`) === death.reason;
  const previousCount = Number(headerText(previous, `${DEATH_HEADER_PREFIX}count`));
  const previousFirstMs = Number(headerText(previous, `${DEATH_HEADER_PREFIX}first-ms`));
  const count = sameDeath && Number.isSafeInteger(previousCount) ? previousCount + 1 : 1;
  const firstMs =
    sameDeath && Number.isSafeInteger(previousFirstMs) ? previousFirstMs : death.nowMs;
  const kept = previous.filter((header) => !header.key.startsWith(DEATH_HEADER_PREFIX));
  const text = (key: string, value: string | number): RecordHeader => ({
    key: `${DEATH_HEADER_PREFIX}${key}`,
    value: encoder.encode(String(value)),
  });
  return {
    key: record.key,
    value: record.value,
    timestamp: death.nowMs,
    headers: [
      ...kept,
      text("queue", death.queue),
      text("reason", death.reason),
      text("count", count),
      text("first-ms", firstMs),
      text("last-ms", death.nowMs),
      text("topic", death.topic),
      text("partition", death.partition),
      text("offset", record.offset),
      text("deliveries", deliveries),
    ],
  };
}

/** Bytes a dead letter adds to a batch at most: its fields plus headers and varint framing. */
export function deadLetterBytesMax(record: RecordInput): number {
  let bytes = 64 + (record.key?.length ?? 0) + (record.value?.length ?? 0);
  for (const header of record.headers ?? []) {
    bytes += 10 + header.key.length + (header.value?.length ?? 0);
  }
  return bytes;
}

/** Groups records into batches of at most `bytesMax` (estimated); one record may be alone. */
export function batchesOf(records: RecordInput[], bytesMax: number): RecordInput[][] {
  const batches: RecordInput[][] = [];
  let current: RecordInput[] = [];
  let bytes = 0;
  for (const record of records) {
    const size = deadLetterBytesMax(record);
    if (current.length > 0 && bytes + size > bytesMax) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(record);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

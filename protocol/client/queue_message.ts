// A message from a queue, and how a QueueFetch partition's bytes become messages.
//
// A QueueFetch answer carries whole record batches beside the ranges of offsets this member
// acquired; a batch may also hold records before or after them (delivered to another member,
// or already done). Both are in offset order, so one walk pairs each decoded record with the
// range holding it and skips the others:
//
//   batches:   [0 1 2 3 4][5 6 7 8 9]      acquired: 2..3 (1st delivery), 7..7 (3rd)
//   messages:       2 3          7
//
// Keys and values are views of the received bytes (zero-copy, as the Consumer's records).

import {
  type DecodedRecordBatch,
  decodeRecordBatches,
  decodeRecordBatchViews,
  type RecordHeader,
} from "../../record/mod.ts";
import type { AckType } from "../codec/queue_ack.ts";
import type { AcquiredRange } from "../codec/queue_fetch.ts";
import { wholeBatchRuns } from "./consumer_fetch.ts";

export type AnswerSink = (message: QueueMessage, type: AckType, delayMs?: number) => Promise<void>;

/** The longest delay a release may ask for: one year, in milliseconds. */
export const RELEASE_DELAY_MS_MAX = 31_536_000_000;

/** A message's fields, as its constructor takes them. */
export type MessageFields = {
  -readonly [K in Exclude<
    keyof QueueMessage,
    "accept" | "release" | "reject" | "renew" | "answered"
  >]: QueueMessage[K];
};

export class QueueMessage {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly headers: readonly RecordHeader[];
  /** Milliseconds since the epoch. */
  readonly timestamp: number;
  /** Acquisitions of this record, this one included (Kafka's count). */
  readonly deliveryCount: number;
  /** Acquired before (deliveryCount > 1). */
  readonly redelivered: boolean;
  /** The member that holds it: answers go out under this id. */
  readonly memberId: string;
  #sink: AnswerSink;
  #answered: AckType | undefined;
  /** The last renew sent, settled either way: a later answer follows it. */
  #renewing: Promise<void> | undefined;

  /** Copies what it needs from `fields` and keeps no reference to it. */
  constructor(fields: MessageFields, sink: AnswerSink) {
    this.topic = fields.topic;
    this.partition = fields.partition;
    this.offset = fields.offset;
    this.key = fields.key;
    this.value = fields.value;
    this.headers = fields.headers;
    this.timestamp = fields.timestamp;
    this.deliveryCount = fields.deliveryCount;
    this.redelivered = fields.redelivered;
    this.memberId = fields.memberId;
    this.#sink = sink;
  }

  /** The final answer given (accept, release or reject), if any. */
  get answered(): AckType | undefined {
    return this.#answered;
  }

  /** Done: it will not be delivered again. Resolves once the broker has made it durable. */
  accept(): Promise<void> {
    return this.#finish("accept");
  }

  /**
   * Give it back, to any member (or to the dead-letter topic at the delivery limit): now, or
   * with `delayMs` (1 ms to one year) no sooner than that long after the broker applies it.
   * Either way it counts as a delivery. A bad delayMs is a RangeError naming it, and the
   * message stays unanswered.
   */
  release(options: { delayMs?: number } = {}): Promise<void> {
    const delayMs = options.delayMs ?? 0;
    const fits = Number.isSafeInteger(delayMs) && delayMs >= 0;
    if (!fits || delayMs > RELEASE_DELAY_MS_MAX) {
      return Promise.reject(
        new RangeError(
          `release delayMs ${String(delayMs)} must be an integer in [0, ${RELEASE_DELAY_MS_MAX}]`,
        ),
      );
    }
    return this.#finish("release", delayMs);
  }

  /** Poison: dead-letter it (or discard it when the queue has no dead-letter topic). */
  reject(): Promise<void> {
    return this.#finish("reject");
  }

  /** Keep holding it: its lock runs lockMs from when the broker applies this. */
  renew(): Promise<void> {
    if (this.#answered !== undefined) return Promise.reject(this.#already());
    const sent = this.#after(() => this.#sink(this, "renew"));
    this.#renewing = sent.then(settled, settled);
    return sent;
  }

  #finish(type: AckType, delayMs = 0): Promise<void> {
    if (this.#answered !== undefined) return Promise.reject(this.#already());
    this.#answered = type;
    // The common case, no renew before it: straight to the sink, no closure per answer.
    if (this.#renewing === undefined) return this.#sink(this, type, delayMs);
    return this.#after(() => this.#sink(this, type, delayMs));
  }

  /** A record is in at most one range of a request: an answer waits for the renew before it. */
  #after(send: () => Promise<void>): Promise<void> {
    const previous = this.#renewing;
    return previous === undefined ? send() : previous.then(send);
  }

  #already(): TypeError {
    return new TypeError(
      `message ${this.topic}-${this.partition}@${this.offset} was already answered ` +
        `(${this.#answered})`,
    );
  }
}

function settled(): void {}

/** What one partition of a QueueFetch answer yields. */
export type PartitionMessages = {
  messages: QueueMessage[];
  /** Acquired offsets the answer held no record for (released by the caller). */
  missing: number[];
};

/** Pairs the decoded records of `records` with the acquired ranges (see the file comment). */
export function messagesOf(
  where: { topic: string; partition: number; memberId: string },
  acquired: readonly AcquiredRange[],
  records: readonly Uint8Array[],
  sink: AnswerSink,
): PartitionMessages {
  const ranges = [...acquired].sort((a, b) => a.first - b.first);
  const messages: QueueMessage[] = [];
  // One scratch object for every record: the constructor copies its fields and keeps none of
  // it, so no object is made per record for them.
  const fields: MessageFields = {
    topic: where.topic,
    partition: where.partition,
    memberId: where.memberId,
    offset: 0,
    key: null,
    value: null,
    headers: [],
    timestamp: 0,
    deliveryCount: 0,
    redelivered: false,
  };
  let r = 0;
  for (const run of wholeBatchRuns(records)) {
    for (const batch of decodeRun(run)) {
      if (batch.control) continue;
      for (const record of batch.records) {
        while (r < ranges.length && ranges[r]!.last < record.offset) r++;
        const range = ranges[r];
        if (range === undefined || record.offset < range.first) continue;
        fields.offset = record.offset;
        fields.key = record.key;
        fields.value = record.value;
        fields.headers = record.headers;
        fields.timestamp = record.timestamp;
        fields.deliveryCount = range.deliveryCount;
        fields.redelivered = range.deliveryCount > 1;
        messages.push(new QueueMessage(fields, sink));
      }
    }
  }
  return { messages, missing: missingOffsets(ranges, messages) };
}

function decodeRun(run: Uint8Array | Uint8Array[]): Iterable<DecodedRecordBatch> {
  return run instanceof Uint8Array ? decodeRecordBatches(run) : [decodeRecordBatchViews(run)];
}

/** Offsets of the ranges no message was made for (none, unless the broker sent too little). */
function missingOffsets(ranges: readonly AcquiredRange[], messages: QueueMessage[]): number[] {
  let size = 0;
  for (const { first, last } of ranges) size += last - first + 1;
  if (size === messages.length) return [];
  const seen = new Set(messages.map((message) => message.offset));
  const missing: number[] = [];
  for (const { first, last } of ranges) {
    for (let offset = first; offset <= last; offset++) if (!seen.has(offset)) missing.push(offset);
  }
  return missing;
}

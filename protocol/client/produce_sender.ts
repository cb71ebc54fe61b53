// The producer's sending half: sealed batches wait per partition, go out in Produce requests
// (at most one batch per partition per request, at most `maxInFlight` requests at once), and
// are retried until acknowledged, failed for good, or older than `deliveryTimeoutMs`.
//
//   per partition:   batches [b5 b6 | b7 b8 b9]      b5, b6 in flight; b7.. waiting, in order
//                              ▲ sequence order = send order = completion order
//
// Idempotence (PROTOCOL.md section 5). Each partition numbers its records from 0 under one
// producer id; a batch gets its baseSequence when it is first sent (stamped into its header,
// with the CRC) and keeps the same bytes for every retry, so a retry of a batch the server did
// write is recognised as a duplicate and answered with the offsets it was first written at.
//
// Buffers. A batch's bytes live in a buffer from the producer's pool; requests view them
// (produce_frame.ts) and go back to the pool when the batch completes, if the connection can no
// longer be holding them: the last attempt was answered, or the batch was never sent. A retry
// after an attempt that got no answer (timeout, lost connection) first moves the batch to a
// buffer of its own, since the old request may still be queued with views of the old one.
//
// Ordering. In the normal state a partition pipelines up to 5 batches (the server's duplicate
// window). The first failure puts the partition into recovery: nothing more is sent until its
// in-flight batches have come back, then the unacknowledged batches go one at a time, in order,
// until every batch sent before the failure is acknowledged. OUT_OF_ORDER_SEQUENCE for a batch
// sent before an earlier batch failed is a consequence of that failure and is retried.
//
// A batch that fails for good leaves a hole in the partition's sequence. When the server surely
// did not write it (it answered with an error), the later batches are renumbered from its
// sequence. When it may have been written (a lost connection, then the delivery timeout) or
// the server rejects the producer itself, the partition moves to a new producer id from
// InitProducerId and numbers from 0 again: a new producer may start anywhere.

import { assert, type CompressionName, IndexedSet } from "../../record/mod.ts";
import { API } from "../codec/frames.ts";
import {
  type Acks,
  type ProducePartitionResult,
  type ProduceResultVisitor,
  visitProduceResponse,
} from "../codec/produce.ts";
import type { Reader } from "../codec/wire.ts";
import { errorFromWire, ProtocolError, ServerError } from "../codec/errors.ts";
import type { BatchBuilder } from "./batch_builder.ts";
import { type ClientConnection, type FrameSlot, toReader } from "./connection.ts";
import { initProducerId, type ProducerIdentity } from "./control_calls.ts";
import { ClientError, isAmbiguous, isRetriable } from "./errors.ts";
import { type FrameBatch, produceFrame } from "./produce_frame.ts";
import type { Session } from "./session.ts";

export type RecordMetadata = { topic: string; partition: number; offset: number };
export type Done = (error: Error | null, metadata: RecordMetadata | undefined) => void;

export type SenderSettings = {
  acks: Acks;
  idempotent: boolean;
  maxInFlight: number;
  deliveryTimeoutMs: number;
  requestTimeoutMs: number;
  compression: CompressionName;
  batchBytes: number;
  /** Called when the server says a topic or partition does not exist. */
  onUnknownTopic: (topic: string) => void;
  /** Called when a request completes and so frees a slot. */
  onSlotFree: () => void;
};

/** The server remembers the last 5 batches per producer and partition: the retry window. */
export const IDEMPOTENT_IN_FLIGHT_MAX = 5;
const SEQUENCE_MODULUS = 2 ** 31;
/** A Produce request's bytes besides the batches: header, acks, timeout, counts, names. */
const REQUEST_OVERHEAD_BYTES = 64;
const PARTITION_OVERHEAD_BYTES = 8;
const NO_IDENTITY = { producerId: -1, producerEpoch: -1, baseSequence: -1 };

type Batch = {
  /** Sealed: the records' bytes, and one callback per record. */
  builder: BatchBuilder<Done>;
  createdMs: number;
  /** Buffered bytes accounted for this batch. */
  bufferBytes: number;
  /** Has its identity and sequence stamped; false again when its sequence must change. */
  stamped: boolean;
  /** The last attempt got no answer: a request may still hold views of the buffer. */
  unsettledWrite: boolean;
  /** The partition's record count before this batch, not wrapped (the wire wraps at 2^31). */
  sequence: number;
  attempts: number;
  inFlight: boolean;
  sent: boolean;
  /** An attempt ended without knowing whether the server wrote the batch. */
  maybeWritten: boolean;
  /** The partition's failure count when this batch was last sent. */
  sentAtFailures: number;
  lastError: Error | undefined;
};

type PartitionQueue = {
  /** Its place in the sender's active partitions (record/indexed_set.ts), -1 when not there. */
  indexedAt: number;
  topic: string;
  partition: number;
  batches: Batch[];
  inFlight: number;
  recovering: boolean;
  failures: number;
  retryAtMs: number;
  identity: ProducerIdentity | undefined;
  /** Not wrapped at 2^31, so that sequences compare simply; the batch header wraps. */
  nextSequence: number;
  /**
   * A batch under the current identity has been acknowledged. Until then one batch at a time:
   * the server accepts any first sequence from a producer it does not know, so a second batch
   * landing before a failed first one would be taken as the start and reorder the two.
   */
  confirmed: boolean;
  rebuild: "none" | "resequence" | "new-identity";
  /** The sequence of the first batch that failed for good since the last rebuild. */
  resequenceFrom: number;
  identityPending: boolean;
  /** Its result in the answer being read (set and cleared by #onResponse). */
  answer: ProducePartitionResult | undefined;
  /** What `answer` points to: the queue's own result, refilled by each response. */
  result: ProducePartitionResult;
};

type Picked = { queue: PartitionQueue; batch: Batch };

/** What #picking holds between picks: never pushed to (a pick sets its own array). */
const NOTHING_PICKED: Picked[] = [];

/**
 * Reads a Produce response onto the sender's queues: each partition's result is copied into
 * its queue's own result object and set as its `answer`, with no object per topic or result.
 * A topic or partition the sender has no queue for is read past.
 */
class AnswerPlacer implements ProduceResultVisitor {
  readonly #queues: Map<string, PartitionQueue[]>;
  #topic: PartitionQueue[] | undefined;
  /** The queues given an answer by the response being read; cleared after it is settled. */
  readonly #placed: PartitionQueue[] = [];

  constructor(queues: Map<string, PartitionQueue[]>) {
    this.#queues = queues;
  }

  topic(topic: string): void {
    this.#topic = this.#queues.get(topic);
  }

  partition(result: Readonly<ProducePartitionResult>): void {
    const queue = this.#topic?.[result.partition];
    if (queue === undefined) return;
    const own = queue.result;
    own.errorCode = result.errorCode;
    own.baseOffset = result.baseOffset;
    own.logStartOffset = result.logStartOffset;
    own.errorMessage = result.errorMessage;
    queue.answer = own;
    this.#placed.push(queue);
  }

  /** Takes every answer the last response placed off its queue. */
  clear(): void {
    for (const queue of this.#placed) queue.answer = undefined;
    this.#placed.length = 0;
    this.#topic = undefined;
  }
}

type RequestOwner = {
  answered(picked: Picked[], frame: Uint8Array[]): void;
  failed(picked: Picked[], error: unknown): void;
};

/**
 * One Produce request in flight: builds its frame for the connection and takes its answer
 * (connection.requestFrameTo), in place of a promise with its reaction and three closures.
 * Its fields double as the frame header produceFrame reads.
 */
class ProduceRequest implements FrameSlot {
  correlationId = 0;
  readonly acks: Acks;
  readonly timeoutMs: number;
  readonly #owner: RequestOwner;
  readonly #picked: Picked[];
  readonly #batches: FrameBatch[];

  constructor(
    owner: RequestOwner,
    picked: Picked[],
    batches: FrameBatch[],
    acks: Acks,
    timeoutMs: number,
  ) {
    this.#owner = owner;
    this.#picked = picked;
    this.#batches = batches;
    this.acks = acks;
    this.timeoutMs = timeoutMs;
  }

  frame(correlationId: number): Uint8Array[] {
    this.correlationId = correlationId;
    return produceFrame(this, this.#batches);
  }

  answered(frame: Uint8Array[]): void {
    this.#owner.answered(this.#picked, frame);
  }

  failed(error: Error): void {
    this.#owner.failed(this.#picked, error);
  }
}

export class ProduceSender {
  #session: Session;
  #settings: SenderSettings;
  /**
   * Each topic's partition queues by partition number: found with no key string made per batch
   * (at 10,000 one-record batches a second those strings were garbage of their own).
   */
  #queues = new Map<string, PartitionQueue[]>();
  /**
   * Queues with batches, least recently served first. Not a Set: each request moves the
   * partitions it serves to the back, and a Set's rebuilt tables were garbage that outlived
   * young collections (record/indexed_set.ts).
   */
  #active = new IndexedSet<PartitionQueue>();
  #requestsInFlight = 0;
  #identity: ProducerIdentity | undefined;
  #identityPending = false;
  #connecting = false;
  #connectAttempts = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAtMs = Number.POSITIVE_INFINITY;
  #unfinished = 0;
  #idleWaiters: (() => void)[] = [];
  #closed = false;
  /** Bytes of records handed to the sender and not yet completed. */
  bufferedBytes = 0;

  constructor(session: Session, settings: SenderSettings) {
    this.#session = session;
    this.#settings = settings;
  }

  get idle(): boolean {
    return this.#unfinished === 0;
  }

  /** Every request slot is taken: batches handed over now would wait. */
  get saturated(): boolean {
    return this.#requestsInFlight >= this.#settings.maxInFlight;
  }

  /** Resolves when every batch handed over so far has completed. */
  whenIdle(): Promise<void> {
    if (this.#unfinished === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Takes a finished batch for a partition, seals it (and compresses it when configured), and
   * sends what may be sent, unless `send` is false: a caller handing over several batches at
   * once sends them after the last (`sendQueued`), so that one request carries them all.
   */
  enqueue(
    topic: string,
    partition: number,
    builder: BatchBuilder<Done>,
    bufferBytes: number,
    send = true,
  ): void {
    const queue = this.#queue(topic, partition);
    const batch = newBatch(builder, bufferBytes);
    queue.batches.push(batch);
    this.#unfinished++;
    this.#active.add(queue);
    try {
      builder.seal({ compression: this.#settings.compression });
    } catch (error) {
      // The records were checked on send and the codec when the producer was made: a bug,
      // but one that fails these records rather than the sender.
      this.#failForGood(queue, batch, asError(error));
      return;
    }
    if (send) this.#drain();
  }

  /** Sends the batches handed over with `send` false. */
  sendQueued(): void {
    this.#drain();
  }

  #queue(topic: string, partition: number): PartitionQueue {
    let queues = this.#queues.get(topic);
    if (queues === undefined) {
      queues = [];
      this.#queues.set(topic, queues);
    }
    let queue = queues[partition];
    if (queue === undefined) {
      queue = {
        indexedAt: -1,
        topic,
        partition,
        batches: [],
        inFlight: 0,
        recovering: false,
        failures: 0,
        retryAtMs: 0,
        identity: undefined,
        nextSequence: 0,
        confirmed: false,
        rebuild: "none",
        resequenceFrom: 0,
        identityPending: false,
        answer: undefined,
        result: {
          partition,
          errorCode: 0,
          baseOffset: -1,
          logStartOffset: -1,
          errorMessage: null,
        },
      };
      queues[partition] = queue;
    }
    return queue;
  }

  /** Sends whatever may be sent now. Called whenever something changed. */
  #drain(): void {
    if (this.#closed || this.#active.size === 0) return;
    const connection = this.#session.current;
    if (connection === undefined) {
      this.#connect();
      return;
    }
    const now = Date.now();
    this.#expire(now);
    let sent = false;
    try {
      while (this.#requestsInFlight < this.#settings.maxInFlight) {
        const picked = this.#pick(now, connection.frameBytesMax);
        if (picked.length === 0) break;
        sent = true;
        this.#send(connection, picked);
      }
    } finally {
      // Everything sendable is in the requests made above: no reason to wait for the turn's
      // end. Its requests scheduled no hand-over (callerFlushes): this flush is theirs, also
      // after a failure.
      if (sent) connection.flush();
    }
  }

  #connect(): void {
    if (this.#connecting) return;
    this.#connecting = true;
    this.#session.connection().then(
      () => {
        this.#connecting = false;
        this.#connectAttempts = 0;
        this.#drain();
      },
      (error: unknown) => {
        this.#connecting = false;
        this.#connectAttempts++;
        const now = Date.now();
        this.#active.forEach((queue) => {
          for (const batch of queue.batches) batch.lastError ??= asError(error);
        });
        this.#expire(now);
        if (this.#active.size > 0) this.#schedule(now + this.#backoff(this.#connectAttempts));
      },
    );
  }

  /** Fails the batches at the head of each partition older than deliveryTimeoutMs. */
  #expire(now: number): void {
    // The usual drain finds nothing expired: looked for first with forEach and a callback made
    // once, so that it copies no set and makes no iterator.
    this.#expireNow = now;
    this.#expiredSeen = false;
    this.#active.forEach(this.#seeExpired);
    if (!this.#expiredSeen) return;
    // A copy: failing a batch runs its callback, which may add or remove partitions.
    for (const queue of this.#active.toArray()) {
      let head = queue.batches[0];
      while (head !== undefined && !head.inFlight && this.#expired(head, now)) {
        this.#failForGood(queue, head, expiredError(queue, head, this.#settings));
        head = queue.batches[0];
      }
    }
  }

  #expireNow = 0;
  #expiredSeen = false;
  readonly #seeExpired = (queue: PartitionQueue): void => {
    const head = queue.batches[0];
    if (head === undefined || head.inFlight) return;
    if (this.#expired(head, this.#expireNow)) this.#expiredSeen = true;
  };

  #expired(batch: Batch, now: number): boolean {
    return now - batch.createdMs >= this.#settings.deliveryTimeoutMs;
  }

  /** One batch from each partition that may send now, within the server's frame limit. */
  #pick(now: number, frameBytesMax: number): Picked[] {
    // The walk is a forEach with a callback made once, its state in #picking: no iterator per
    // request. Like the for-of it replaces, it sees the set live.
    const picking = this.#picking;
    // Nothing the walk calls sends (identity fetches and retries answer later): never nested.
    assert(picking.picked === NOTHING_PICKED, "picks are not nested");
    const picked: Picked[] = [];
    picking.picked = picked;
    picking.now = now;
    picking.frameBytesMax = frameBytesMax;
    picking.bytes = REQUEST_OVERHEAD_BYTES;
    picking.full = false;
    try {
      this.#active.forEach(this.#pickFrom);
    } finally {
      picking.picked = NOTHING_PICKED;
    }
    for (const { queue } of picked) {
      // Served partitions go to the back, so a full request never starves the others.
      this.#active.moveToBack(queue);
    }
    return picked;
  }

  readonly #picking = {
    picked: NOTHING_PICKED,
    now: 0,
    frameBytesMax: 0,
    bytes: 0,
    /** A batch did not fit: the partitions after it wait for the next request. */
    full: false,
  };
  readonly #pickFrom = (queue: PartitionQueue): void => {
    const picking = this.#picking;
    if (picking.full) return;
    const batch = this.#sendable(queue, picking.now);
    if (batch === undefined || !this.#encode(queue, batch)) return;
    const size = batch.builder.sizeBytes + PARTITION_OVERHEAD_BYTES + queue.topic.length * 3;
    if (picking.picked.length > 0 && picking.bytes + size > picking.frameBytesMax) {
      picking.full = true;
      return;
    }
    picking.picked.push({ queue, batch });
    picking.bytes += size;
  };

  #sendable(queue: PartitionQueue, now: number): Batch | undefined {
    if (queue.retryAtMs > now) {
      this.#schedule(queue.retryAtMs);
      return undefined;
    }
    if (queue.identityPending) return undefined;
    if (queue.rebuild !== "none") {
      if (queue.inFlight > 0) return undefined;
      if (!this.#rebuild(queue)) return undefined;
    }
    if (queue.recovering) return queue.inFlight === 0 ? queue.batches[0] : undefined;
    if (this.#settings.idempotent) {
      if (queue.inFlight >= (queue.confirmed ? IDEMPOTENT_IN_FLIGHT_MAX : 1)) return undefined;
    }
    // Outside recovery the batches in flight are the first ones, in order.
    const batch = queue.batches[queue.inFlight];
    return batch === undefined || batch.inFlight ? undefined : batch;
  }

  /** Renumbers a partition's batches; returns false while a new identity is on its way. */
  #rebuild(queue: PartitionQueue): boolean {
    if (queue.rebuild === "resequence") {
      // Number again from the lowest sequence the server may still expect: the failed batch's,
      // or that of an earlier batch waiting for its retry.
      let from = queue.resequenceFrom;
      for (const batch of queue.batches) {
        if (batch.stamped && batch.sequence < from) from = batch.sequence;
      }
      queue.nextSequence = from;
    } else {
      queue.identityPending = true;
      initProducerId(this.#session).then(
        (identity) => {
          queue.identityPending = false;
          queue.identity = identity;
          queue.nextSequence = 0;
          queue.confirmed = false;
          queue.rebuild = "none";
          for (const batch of queue.batches) batch.stamped = false;
          this.#drain();
        },
        () => {
          queue.identityPending = false;
          queue.retryAtMs = Date.now() + this.#session.retryBackoffMsMax;
          this.#schedule(queue.retryAtMs);
        },
      );
      return false;
    }
    queue.rebuild = "none";
    for (const batch of queue.batches) batch.stamped = false;
    return true;
  }

  /** Gives a batch its identity and sequence on its first send; false while there is no id. */
  #encode(queue: PartitionQueue, batch: Batch): boolean {
    if (batch.stamped) return true;
    const { idempotent } = this.#settings;
    if (idempotent && queue.identity === undefined) {
      if (this.#identity === undefined) {
        this.#fetchIdentity();
        return false;
      }
      queue.identity = this.#identity;
    }
    const sequence = idempotent ? queue.nextSequence : -1;
    const identity = queue.identity;
    this.#own(batch);
    batch.builder.stamp(
      idempotent && identity !== undefined
        ? {
            producerId: identity.producerId,
            producerEpoch: identity.producerEpoch,
            baseSequence: sequence % SEQUENCE_MODULUS,
          }
        : NO_IDENTITY,
    );
    batch.stamped = true;
    batch.sequence = sequence;
    if (idempotent) queue.nextSequence = sequence + batch.builder.count;
    return true;
  }

  /** Makes sure no earlier request may still read the batch's buffer before it is written. */
  #own(batch: Batch): void {
    if (!batch.unsettledWrite) return;
    batch.builder.detach();
    batch.unsettledWrite = false;
  }

  #fetchIdentity(): void {
    if (this.#identityPending) return;
    this.#identityPending = true;
    initProducerId(this.#session).then(
      (identity) => {
        this.#identityPending = false;
        this.#identity = identity;
        this.#drain();
      },
      (error: unknown) => {
        this.#identityPending = false;
        this.#connectAttempts++;
        if (!isRetriable(error)) this.#failAll(asError(error));
        else this.#schedule(Date.now() + this.#backoff(this.#connectAttempts));
      },
    );
  }

  #send(connection: ClientConnection, picked: Picked[]): void {
    const ordered = byTopic(picked);
    const batches: FrameBatch[] = [];
    for (const { queue, batch } of ordered) {
      this.#own(batch);
      batch.unsettledWrite = true;
      batch.inFlight = true;
      batch.sent = true;
      batch.attempts++;
      batch.sentAtFailures = queue.failures;
      queue.inFlight++;
      batches.push({ topic: queue.topic, partition: queue.partition, builder: batch.builder });
    }
    this.#requestsInFlight++;
    const { acks, requestTimeoutMs: timeoutMs } = this.#settings;
    const request = new ProduceRequest(this.#requestOwner, ordered, batches, acks, timeoutMs);
    if (acks === 0) {
      this.#sendUnanswered(connection, request, ordered);
      return;
    }
    // The request object takes the answer: no promise, reaction or closure per request.
    connection.requestFrameTo(API.Produce, request, this.#requestTimeout);
  }

  /**
   * An acks 0 request: done once written. Its closures live here: in #send they gave every
   * request a scope, acks 1 and all included.
   */
  #sendUnanswered(connection: ClientConnection, request: ProduceRequest, ordered: Picked[]): void {
    const build = (correlationId: number) => request.frame(correlationId);
    connection.requestFrameWithoutResponse(API.Produce, build).then(
      () => {
        try {
          for (const { queue, batch } of ordered) this.#succeeded(queue, batch, -1);
        } catch (error) {
          this.#requestFailed(ordered, error);
          return;
        }
        this.#requestDone();
      },
      (error: unknown) => this.#requestFailed(ordered, error),
    );
  }

  /** What every ProduceRequest reports to: made once, not per request. */
  readonly #requestOwner: RequestOwner = {
    answered: (picked, frame) => this.#requestAnswered(picked, frame),
    failed: (picked, error) => this.#requestFailed(picked, error),
  };

  /**
   * requestFrameTo's options, the same for every request of this sender. #drain flushes the
   * connection after the requests it sends (callerFlushes).
   */
  get #requestTimeout(): { timeoutMs: number; callerFlushes: boolean } {
    this.#timeoutOption.timeoutMs = this.#settings.requestTimeoutMs;
    return this.#timeoutOption;
  }
  readonly #timeoutOption = { timeoutMs: 0, callerFlushes: true };

  #requestAnswered(picked: Picked[], frame: Uint8Array[]): void {
    try {
      // The server answered, so it read the whole request: no view of the buffers is left.
      for (const { batch } of picked) batch.unsettledWrite = false;
      this.#onResponse(picked, toReader(frame));
    } catch (error) {
      this.#requestFailed(picked, error);
      return;
    }
    this.#requestDone();
  }

  #requestFailed(picked: Picked[], error: unknown): void {
    try {
      if (error instanceof ServerError) {
        for (const { batch } of picked) batch.unsettledWrite = false;
      }
      for (const { queue, batch } of picked) {
        if (batch.inFlight) this.#failed(queue, batch, responseError(error));
      }
    } finally {
      this.#requestDone();
    }
  }

  /** A request is answered (or failed): its slot is free for the next. */
  #requestDone(): void {
    this.#requestsInFlight--;
    this.#settings.onSlotFree();
    this.#drain();
  }

  #onResponse(picked: Picked[], response: Reader): void {
    // Each result is put on its partition's queue for the batch sent there to take, and taken
    // off again below; a result for a partition this request did not carry is read by nothing.
    // Taken off in a finally: a settle that throws (or a response that does not parse) must
    // leave no result for a later response.
    const placer = this.#placer;
    try {
      visitProduceResponse(response, 1, placer);
      for (const { queue, batch } of picked) {
        const result = queue.answer;
        queue.answer = undefined;
        this.#settle(queue, batch, result);
      }
    } finally {
      placer.clear();
    }
  }

  /** Places a response's results on their queues as they are read: made once per sender. */
  readonly #placer = new AnswerPlacer(this.#queues);

  #settle(queue: PartitionQueue, batch: Batch, result: ProducePartitionResult | undefined): void {
    if (result === undefined) {
      const what = `${queue.topic}-${queue.partition}`;
      this.#failed(queue, batch, new ClientError("MALFORMED_RESPONSE", `No result for ${what}`));
    } else if (result.errorCode === 0) {
      this.#succeeded(queue, batch, result.baseOffset);
    } else {
      const context = `produce to ${queue.topic}-${queue.partition}`;
      this.#failed(queue, batch, errorFromWire(result.errorCode, result.errorMessage ?? context));
    }
  }

  #succeeded(queue: PartitionQueue, batch: Batch, baseOffset: number): void {
    batch.inFlight = false;
    queue.inFlight--;
    queue.confirmed = true;
    this.#remove(queue, batch);
    this.#complete(queue, batch, null, baseOffset);
  }

  #failed(queue: PartitionQueue, batch: Batch, error: Error): void {
    batch.inFlight = false;
    queue.inFlight--;
    const code = error instanceof ServerError ? error.code : undefined;
    const consequence = code === "OUT_OF_ORDER_SEQUENCE" && batch.sentAtFailures !== queue.failures;
    queue.failures++;
    batch.lastError = error;
    if (isAmbiguous(error) || isMalformed(error)) batch.maybeWritten = true;
    if (code === "UNKNOWN_TOPIC" || code === "UNKNOWN_PARTITION") {
      this.#settings.onUnknownTopic(queue.topic);
    }
    const now = Date.now();
    // acks 0 has no acknowledgements to order retries by: its failures are final. A full disk
    // is final too: it seldom clears by itself within deliveryTimeoutMs, so the caller hears
    // DISK_FULL at once (retriable: it may send again once space is freed), not a timeout.
    const retriable = isRetriable(error) && code !== "DISK_FULL";
    const retry = (retriable || consequence) && this.#settings.acks !== 0;
    if (retry && !this.#expired(batch, now)) {
      queue.recovering = true;
      queue.retryAtMs = now + this.#backoff(batch.attempts);
      this.#schedule(queue.retryAtMs);
      return;
    }
    const final = retry ? expiredError(queue, batch, this.#settings) : error;
    this.#failForGood(queue, batch, final, code === "OUT_OF_ORDER_SEQUENCE" && !consequence);
  }

  /** Completes a batch with an error and mends the partition's sequence behind it. */
  #failForGood(queue: PartitionQueue, batch: Batch, error: Error, sequenceLost = false): void {
    this.#remove(queue, batch);
    this.#complete(queue, batch, error, -1);
    if (!this.#settings.idempotent || !batch.stamped) return;
    queue.recovering = queue.batches.some((b) => b.sent);
    const code = error instanceof ServerError ? error.code : undefined;
    const identityLost =
      sequenceLost || code === "UNKNOWN_PRODUCER_ID" || code === "INVALID_PRODUCER_EPOCH";
    if (batch.maybeWritten || identityLost) {
      queue.rebuild = "new-identity";
      // Later batches that may have been written too cannot be resent under a new id without
      // risking a duplicate: their outcome is as unknown as this one's.
      for (const later of queue.batches.filter((b) => b.maybeWritten && !b.inFlight)) {
        this.#remove(queue, later);
        this.#complete(queue, later, later.lastError ?? error, -1);
      }
    } else if (queue.rebuild === "none") {
      queue.rebuild = "resequence";
      queue.resequenceFrom = batch.sequence;
    } else if (queue.rebuild === "resequence") {
      queue.resequenceFrom = Math.min(queue.resequenceFrom, batch.sequence);
    }
  }

  #remove(queue: PartitionQueue, batch: Batch): void {
    const index = queue.batches.indexOf(batch);
    if (index >= 0) queue.batches.splice(index, 1);
    if (queue.recovering && queue.inFlight === 0 && !queue.batches.some((b) => b.sent)) {
      queue.recovering = false;
    }
    if (queue.batches.length === 0) this.#active.delete(queue);
  }

  #complete(queue: PartitionQueue, batch: Batch, error: Error | null, baseOffset: number): void {
    this.bufferedBytes -= batch.bufferBytes;
    const { topic, partition } = queue;
    // No retry will come: the buffer goes back to the pool, unless a request that may still
    // be written holds it (then it is left to that request).
    if (batch.unsettledWrite) batch.builder.abandon();
    else batch.builder.release();
    const dones = batch.builder.dones;
    for (let i = 0; i < dones.length; i++) {
      const offset = baseOffset < 0 ? -1 : baseOffset + i;
      const done = dones[i]!;
      try {
        done(error, error === null ? { topic, partition, offset } : undefined);
      } catch (thrown) {
        // A callback that throws must not break the sender's bookkeeping: rethrow it on its own.
        queueMicrotask(() => {
          throw thrown;
        });
      }
    }
    this.#unfinished--;
    if (this.#unfinished === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  #failAll(error: Error): void {
    for (const queue of this.#active.toArray()) {
      for (const batch of queue.batches.filter((b) => !b.inFlight)) {
        this.#remove(queue, batch);
        this.#complete(queue, batch, error, -1);
      }
    }
  }

  #backoff(attempt: number): number {
    return this.#session.backoffMs(attempt);
  }

  #schedule(atMs: number): void {
    if (this.#closed || (this.#timer !== undefined && this.#timerAtMs <= atMs)) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAtMs = atMs;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#timerAtMs = Number.POSITIVE_INFINITY;
        this.#drain();
      },
      Math.max(0, atMs - Date.now()),
    );
  }

  /** Stops timers; batches still waiting fail with CLOSED. */
  close(): void {
    this.#failAll(new ClientError("CLOSED", "The producer was closed"));
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** The picked batches with each topic's together, in the order the topics came first. */
function byTopic(picked: Picked[]): Picked[] {
  // Mostly one topic: then the order stands, with no Map and lists to find it out.
  const first = picked[0]?.queue.topic;
  let oneTopic = true;
  for (const entry of picked) if (entry.queue.topic !== first) oneTopic = false;
  if (oneTopic) return picked;
  const topics = new Map<string, Picked[]>();
  for (const entry of picked) {
    const list = topics.get(entry.queue.topic);
    if (list === undefined) topics.set(entry.queue.topic, [entry]);
    else list.push(entry);
  }
  return topics.size === 1 ? picked : [...topics.values()].flat();
}

function newBatch(builder: BatchBuilder<Done>, bytes: number) {
  const batch: Batch = {
    builder,
    createdMs: builder.createdMs,
    bufferBytes: bytes,
    stamped: false,
    unsettledWrite: false,
    sequence: -1,
    attempts: 0,
    inFlight: false,
    sent: false,
    maybeWritten: false,
    sentAtFailures: 0,
    lastError: undefined,
  };
  return batch;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function isMalformed(error: Error): boolean {
  return error instanceof ClientError && error.code === "MALFORMED_RESPONSE";
}

/** A response that does not parse is the server's fault: name it as such. */
function responseError(error: unknown): Error {
  if (error instanceof ProtocolError) {
    return new ClientError("MALFORMED_RESPONSE", `ProduceResponse: ${error.message}`, {
      cause: error,
    });
  }
  return asError(error);
}

function expiredError(queue: PartitionQueue, batch: Batch, settings: SenderSettings): Error {
  const last = batch.lastError === undefined ? "" : `; last error: ${batch.lastError.message}`;
  return new ClientError(
    "REQUEST_TIMED_OUT",
    `Batch of ${batch.builder.count} records for ${queue.topic}-${queue.partition} was not ` +
      `delivered within deliveryTimeoutMs ${settings.deliveryTimeoutMs}${last}`,
    { cause: batch.lastError },
  );
}

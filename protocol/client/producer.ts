// The producer: `send()` places each record in the open batch of its partition; a batch is
// sealed when the next record would not fit in `batchBytes`, or `lingerMs` after its first
// record, and handed to the sender (produce_sender.ts), which owns retries and sequences.
//
//   send ──► partitioner ──► open batch (t, p) ──sealed──► ProduceSender ──► Produce requests
//              (explicit │ murmur2(key) │ sticky)   ▲ lingerMs timer / full / flush()
//
// Limits: a batch never exceeds batchBytes, header included (default 1 MiB, the topics'
// default maxBatchBytes); records waiting in open or sealed batches never exceed
// bufferBytesMax (beyond it send() fails with BUFFER_FULL, retriable, rather than grow memory).
// Batch buffers done with are kept for reuse (buffer_pool.ts), at most bufferBytesMax of them.
//
// send() copies the record's key, value and headers into its batch at once (batch_builder.ts):
// the caller may reuse its buffers as soon as send() returns.

import { COMPRESSION, type CompressionName, encodeRecordBatch } from "../../record/mod.ts";
import { WIRE_ERRORS, errorFromWire } from "../codec/errors.ts";
import {
  BatchBuilder,
  type BytesInput,
  type HeadersInput,
  type PreparedRecord,
  prepareInto,
} from "./batch_builder.ts";
import { BufferPool } from "./buffer_pool.ts";
import { REQUEST_TIMEOUT_MS_DEFAULT } from "./connection.ts";
import { metadata } from "./control_calls.ts";
import { ClientError, isRetriable } from "./errors.ts";
import { DefaultPartitioner, type Partitioner } from "./partitioner.ts";
import { prefixRoomBytes } from "./produce_frame.ts";
import { type Done, ProduceSender, type RecordMetadata } from "./produce_sender.ts";
import { type ClientOptions, Session } from "./session.ts";

export const LINGER_MS_DEFAULT = 5;
/** The topics' default maxBatchBytes: a batch of this size, header included, is accepted. */
export const BATCH_BYTES_DEFAULT = 1024 * 1024;
export const MAX_IN_FLIGHT_DEFAULT = 5;
export const DELIVERY_TIMEOUT_MS_DEFAULT = 120_000;
export const BUFFER_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
/** `#lingerTimer` while a seal is queued as a microtask (lingerMs reached already). */
const LINGER_MICROTASK = "microtask";

/** A batch with less room than this left is sent without waiting for lingerMs. */
const BATCH_FULL_SLACK_BYTES = 64;

export type ProducerOptions = ClientOptions & {
  /** 0: no answer; 1: written; "all": fsynced (single node). Default "all", as Kafka. */
  acks?: 0 | 1 | "all" | -1;
  lingerMs?: number;
  batchBytes?: number;
  /** Produce requests in flight on the connection. */
  maxInFlight?: number;
  /** Default true (false with acks 0, which has no acknowledgements to retry by). */
  idempotent?: boolean;
  compression?: CompressionName;
  deliveryTimeoutMs?: number;
  bufferBytesMax?: number;
  partitioner?: Partitioner;
};

export type ProducerRecord = {
  topic: string;
  key?: BytesInput;
  value: BytesInput;
  headers?: HeadersInput;
  partition?: number;
  /** Milliseconds since the epoch; default: when send() is called. */
  timestamp?: number;
};

export type SendCallback = (error: Error | null, metadata: RecordMetadata | undefined) => void;

type OpenBatch = { topic: string; partition: number; builder: BatchBuilder<Done>; bytes: number };

/** A topic's open batches by partition, and what its batches need to know. */
type TopicBatches = {
  open: (OpenBatch | undefined)[];
  /** The size of each partition's last sealed batch: where the next one starts its buffer. */
  lastBytes: number[];
  prefixRoomBytes: number;
};

type Settings = {
  lingerMs: number;
  batchBytes: number;
  bufferBytesMax: number;
  deliveryTimeoutMs: number;
};

function integerAtLeast(name: string, value: number | undefined, min: number, fallback: number) {
  const resolved = value ?? fallback;
  if (!Number.isSafeInteger(resolved) || resolved < min) {
    throw new RangeError(`${name} ${resolved} is not an integer ≥ ${min}`);
  }
  return resolved;
}

/** The codec, if this runtime has it (snappy and lz4 are not built in; zstd needs Node ≥ 22). */
function checkedCompression(name: CompressionName): CompressionName {
  if (typeof name !== "string" || !Object.hasOwn(COMPRESSION, name)) {
    throw new TypeError(`compression ${String(name)} must be one of ${Object.keys(COMPRESSION)}`);
  }
  try {
    encodeRecordBatch([{ value: null }], { compression: name, timestamp: 0 });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new TypeError(`compression ${name} is not available here: ${reason}`);
  }
  return name;
}

function resolveAcks(acks: ProducerOptions["acks"]): -1 | 0 | 1 {
  if (acks === undefined || acks === "all" || acks === -1) return -1;
  if (acks === 0 || acks === 1) return acks;
  throw new TypeError(`acks ${String(acks)} must be 0, 1 or "all"`);
}

export class Producer {
  #session: Session;
  #sender: ProduceSender;
  #settings: Settings;
  #partitioner: Partitioner;
  #partitionCounts = new Map<string, number>();
  #metadataPending = new Map<string, Promise<number>>();
  #open = new Map<string, TopicBatches>();
  /** How many batches are open, over all topics and partitions. */
  #openCount = 0;
  #openBytes = 0;
  #pool: BufferPool;
  /** The record being sent, reused: it is copied into its batch before send() returns. */
  #scratch: PreparedRecord = {
    key: null,
    value: null,
    headers: [],
    timestamp: 0,
    sizeBytes: 0,
    bodyBytes: 0,
  };
  /** A send() is running: a send() made from inside it may not use `#scratch`. */
  #sending = false;
  /** The linger timer, LINGER_MICROTASK for a seal queued as a microtask, or undefined. */
  #lingerTimer: ReturnType<typeof setTimeout> | typeof LINGER_MICROTASK | undefined;
  /** Linger microtasks queued and not yet run (see #lingerMicrotask). */
  #lingerMicrotasks = 0;
  /** lingerMs passed while every request slot was taken: the batches grow until one frees. */
  #sealWhenFree = false;
  #closed = false;

  constructor(options: ProducerOptions = {}) {
    const acks = resolveAcks(options.acks);
    if (acks === 0 && options.idempotent === true) {
      throw new TypeError('An idempotent producer needs acks 1 or "all", not 0');
    }
    this.#settings = {
      lingerMs: integerAtLeast("lingerMs", options.lingerMs, 0, LINGER_MS_DEFAULT),
      batchBytes: integerAtLeast("batchBytes", options.batchBytes, 128, BATCH_BYTES_DEFAULT),
      bufferBytesMax: integerAtLeast(
        "bufferBytesMax",
        options.bufferBytesMax,
        1,
        BUFFER_BYTES_MAX_DEFAULT,
      ),
      deliveryTimeoutMs: integerAtLeast(
        "deliveryTimeoutMs",
        options.deliveryTimeoutMs,
        1,
        DELIVERY_TIMEOUT_MS_DEFAULT,
      ),
    };
    this.#session = new Session(options);
    this.#pool = new BufferPool(this.#settings.bufferBytesMax);
    this.#partitioner = options.partitioner ?? new DefaultPartitioner();
    this.#sender = new ProduceSender(this.#session, {
      acks,
      idempotent: options.idempotent ?? acks !== 0,
      maxInFlight: integerAtLeast("maxInFlight", options.maxInFlight, 1, MAX_IN_FLIGHT_DEFAULT),
      deliveryTimeoutMs: this.#settings.deliveryTimeoutMs,
      requestTimeoutMs: options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT,
      compression: checkedCompression(options.compression ?? "none"),
      batchBytes: this.#settings.batchBytes,
      onUnknownTopic: (topic) => this.#partitionCounts.delete(topic),
      onSlotFree: () => {
        if (!this.#sealWhenFree) return;
        this.#sealWhenFree = false;
        this.#sealAll();
      },
    });
  }

  /** Bytes of records accepted by send() and not yet acknowledged or failed. */
  get bufferedBytes(): number {
    return this.#openBytes + this.#sender.bufferedBytes;
  }

  /**
   * Sends one record. Resolves with where it was written (offset -1 with acks 0), or rejects
   * with a ServerError or ClientError; with a callback, calls it instead. Bad arguments throw
   * a TypeError or RangeError at once.
   */
  send(record: ProducerRecord): Promise<RecordMetadata>;
  send(record: ProducerRecord, callback: SendCallback): void;
  send(record: ProducerRecord, callback?: SendCallback): Promise<RecordMetadata> | undefined {
    // A send made from inside another (a callback or a partitioner calling send) must not
    // overwrite the outer record before it is copied into its batch: it gets an object of its own.
    const outer = this.#sending;
    const prepared = this.#prepare(record, outer ? { ...this.#scratch } : this.#scratch);
    if (callback !== undefined && typeof callback !== "function") {
      throw new TypeError("callback must be a function");
    }
    this.#sending = true;
    try {
      if (callback !== undefined) {
        this.#submit(record.topic, record.partition, prepared, callback);
        return;
      }
      return this.#submitPromised(record, prepared);
    } finally {
      this.#sending = outer;
    }
  }

  /**
   * send() without a callback. Its closures are made here: in send() they gave every call a
   * scope, the callback form's too (one per record in bench:tcp's latency phase).
   */
  #submitPromised(record: ProducerRecord, prepared: PreparedRecord): Promise<RecordMetadata> {
    return new Promise((resolve, reject) => {
      this.#submit(record.topic, record.partition, prepared, (error, metadata) => {
        if (error === null) resolve(metadata!);
        else reject(error);
      });
    });
  }

  #prepare(record: ProducerRecord, into: PreparedRecord): PreparedRecord {
    if (typeof record !== "object" || record === null) {
      throw new TypeError("send() needs a record object");
    }
    if (typeof record.topic !== "string" || record.topic.length === 0) {
      throw new TypeError(`topic ${String(record.topic)} must be a non-empty string`);
    }
    const { partition } = record;
    if (partition !== undefined && (!Number.isSafeInteger(partition) || partition < 0)) {
      throw new RangeError(`partition ${partition} is not a non-negative integer`);
    }
    const prepared = prepareInto(into, record, Date.now());
    if (prepared.sizeBytes > this.#settings.batchBytes) {
      throw new RangeError(
        `Record of ${prepared.sizeBytes} bytes (in a batch of its own) exceeds batchBytes ` +
          `${this.#settings.batchBytes}`,
      );
    }
    return prepared;
  }

  #submit(topic: string, partition: number | undefined, record: PreparedRecord, done: Done) {
    if (this.#closed) {
      done(new ClientError("CLOSED", "The producer was closed"), undefined);
      return;
    }
    if (this.bufferedBytes + record.sizeBytes > this.#settings.bufferBytesMax) {
      const message =
        `${this.bufferedBytes} bytes are buffered; bufferBytesMax is ` +
        `${this.#settings.bufferBytesMax}`;
      done(new ClientError("BUFFER_FULL", message), undefined);
      return;
    }
    this.#openBytes += record.sizeBytes;
    const count = this.#partitionCounts.get(topic);
    // Records wait behind a metadata lookup in progress for their topic, to keep their order.
    if (count !== undefined && !this.#metadataPending.has(topic)) {
      this.#append(topic, partition, record, done, count);
      return;
    }
    // The record waits: it needs an object of its own (the scratch one is reused at once).
    const waiting = { ...record };
    this.#partitionCount(topic).then(
      (loaded) => this.#append(topic, partition, waiting, done, loaded),
      (error: unknown) => {
        this.#openBytes -= waiting.sizeBytes;
        done(error instanceof Error ? error : new Error(String(error)), undefined);
      },
    );
  }

  #append(
    topic: string,
    explicit: number | undefined,
    record: PreparedRecord,
    done: Done,
    count: number,
  ): void {
    const partition = explicit ?? this.#partitioner.partition(topic, record.key ?? null, count);
    if (!Number.isSafeInteger(partition) || partition < 0 || partition >= count) {
      this.#openBytes -= record.sizeBytes;
      const message = `Partition ${partition} of topic ${topic} does not exist`;
      done(
        errorFromWire(WIRE_ERRORS.UNKNOWN_PARTITION, `${message} (${count} partitions)`),
        undefined,
      );
      return;
    }
    const batches = this.#topicBatches(topic);
    let open = batches.open[partition];
    if (open !== undefined && !open.builder.tryAddRecord(record, done)) {
      this.#seal(open);
      open = undefined;
    } else if (open !== undefined) {
      open.bytes += record.sizeBytes;
    }
    if (open === undefined) {
      const builder = new BatchBuilder<Done>(this.#settings.batchBytes, Date.now(), {
        prefixRoomBytes: batches.prefixRoomBytes,
        pool: this.#pool,
        expectedBytes: batches.lastBytes[partition],
      });
      open = { topic, partition, builder, bytes: record.sizeBytes };
      builder.tryAddRecord(record, done);
      batches.open[partition] = open;
      this.#openCount++;
      this.#armLinger();
    }
    if (open.builder.sizeBytes + BATCH_FULL_SLACK_BYTES >= this.#settings.batchBytes) {
      this.#seal(open);
    }
  }

  #topicBatches(topic: string): TopicBatches {
    let batches = this.#open.get(topic);
    if (batches === undefined) {
      batches = { open: [], lastBytes: [], prefixRoomBytes: prefixRoomBytes(topic) };
      this.#open.set(topic, batches);
    }
    return batches;
  }

  #seal(open: OpenBatch, send = true): void {
    const batches = this.#open.get(open.topic)!;
    batches.open[open.partition] = undefined;
    batches.lastBytes[open.partition] = open.builder.sizeBytes;
    this.#openCount--;
    this.#openBytes -= open.bytes;
    this.#partitioner.batchSealed(open.topic, open.partition);
    this.#sender.enqueue(open.topic, open.partition, open.builder, open.bytes, send);
  }

  #armLinger(): void {
    if (this.#lingerTimer !== undefined || this.#sealWhenFree) return;
    let waitMs = 0;
    // At lingerMs 0 the wait is 0 whatever the oldest batch: no walk over the open batches.
    if (this.#settings.lingerMs > 0) {
      let oldestMs = Number.POSITIVE_INFINITY;
      for (const open of this.#openBatches()) {
        oldestMs = Math.min(oldestMs, open.builder.createdMs);
      }
      if (oldestMs === Number.POSITIVE_INFINITY) return;
      waitMs = Math.max(0, oldestMs + this.#settings.lingerMs - Date.now());
    } else if (this.#openCount === 0) {
      return;
    }
    if (waitMs > 0) {
      this.#lingerTimer = setTimeout(this.#expireLinger, waitMs);
      return;
    }
    // No wait left: seal once the code that sent runs to its end (the records it sent go
    // together), in a microtask. A zero-delay timer would wait a whole millisecond (1.1 ms on
    // Bun, 2.2 ms on Deno measured here), which was most of a lingerMs 0 producer's latency;
    // a setImmediate waited for one more pass of the event loop, where received answers and
    // timers went first (bench:tcp's latency phase: the send → broker stage was the longest
    // of most slow messages, bench/RESULTS.md issue 16).
    this.#lingerTimer = LINGER_MICROTASK;
    this.#lingerMicrotasks++;
    queueMicrotask(this.#lingerMicrotask);
  }

  /**
   * When a batch has lingered long enough, every open batch goes with it: they share the one
   * connection, so one request carries them all (Kafka drains a ready node likewise).
   * Made once, as is #lingerMicrotask: at lingerMs 0 a linger is armed per request.
   */
  readonly #expireLinger = (): void => {
    this.#lingerTimer = undefined;
    if (this.#sender.saturated) this.#sealWhenFree = true;
    else this.#sealAll();
  };

  /**
   * A queued microtask cannot be cancelled: only the last one queued acts, and only if its
   * arm still stands. An earlier one was cancelled since (and perhaps armed again: then by the
   * later microtask, which runs after it).
   */
  readonly #lingerMicrotask = (): void => {
    this.#lingerMicrotasks--;
    if (this.#lingerMicrotasks === 0 && this.#lingerTimer === LINGER_MICROTASK) {
      this.#expireLinger();
    }
  };

  #cancelLinger(): void {
    const timer = this.#lingerTimer;
    if (timer === undefined) return;
    this.#lingerTimer = undefined;
    if (timer !== LINGER_MICROTASK) clearTimeout(timer);
  }

  *#openBatches(): Generator<OpenBatch> {
    for (const batches of this.#open.values()) {
      for (const open of batches.open) if (open !== undefined) yield open;
    }
  }

  #sealAll(): void {
    // Every batch first, then one send: the batches share requests instead of the first
    // going out alone.
    // By index, without a generator and a copy: #seal only clears the slot it seals.
    for (const batches of this.#open.values()) {
      const open = batches.open;
      for (let partition = 0; partition < open.length; partition++) {
        const batch = open[partition];
        if (batch !== undefined) this.#seal(batch, false);
      }
    }
    this.#sender.sendQueued();
  }

  #partitionCount(topic: string): Promise<number> {
    let pending = this.#metadataPending.get(topic);
    if (pending === undefined) {
      pending = this.#loadPartitionCount(topic).finally(() => {
        this.#metadataPending.delete(topic);
      });
      this.#metadataPending.set(topic, pending);
    }
    return pending;
  }

  async #loadPartitionCount(topic: string): Promise<number> {
    const deadline = Date.now() + this.#settings.deliveryTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await metadata(this.#session, [topic]);
        const entry = result.topics.find((t) => t.name === topic);
        const code = entry?.errorCode ?? WIRE_ERRORS.UNKNOWN_TOPIC;
        if (code !== 0) throw errorFromWire(code, `Metadata of topic ${topic}`);
        const count = entry!.partitions.length;
        this.#partitionCounts.set(topic, count);
        return count;
      } catch (error) {
        const waitMs = this.#session.backoffMs(attempt);
        if (!isRetriable(error) || Date.now() + waitMs > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, waitMs));
      }
    }
  }

  /** Sends every open batch now and resolves when all records sent so far have completed. */
  async flush(): Promise<void> {
    for (;;) {
      await Promise.allSettled([...this.#metadataPending.values()]);
      this.#sealAll();
      await this.#sender.whenIdle();
      if (this.#openCount === 0 && this.#metadataPending.size === 0) return;
    }
  }

  /** Flushes, then closes the connection. Sends after close fail with CLOSED. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    this.#cancelLinger();
    this.#sender.close();
    await this.#session.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

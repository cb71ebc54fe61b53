// Publishing a batch through an exchange. Each record is routed on its own; the records bound
// for one topic are appended to it as one batch, in their order, whatever their routing keys:
//
//   batch [r0 r1 r2 r3]   r0,r1,r3 → topic A   r1,r2 → topic B   (nothing matched: dropped)
//        │
//        ├─► A: every record? no  → a new batch [r0 r1 r3], one append
//        └─► B: every record? no  → a new batch [r1 r2], one append
//
// A topic that takes every record of the batch gets the batch's own bytes. Three paths, the
// cheapest that applies: a plain uncompressed batch of one key and headers (as the client's
// Publisher sends) is scanned once, routed once and appended whole (exchange_scan.ts); a plain
// uncompressed batch of several is scanned, each run of alike records routed once, and each
// destination's batch built by copying its records' bytes (exchange_split.ts); a compressed
// batch, or one the scan cannot read, is decoded and re-encoded per destination. Plain topic
// produce takes none of them. A destination topic is counted once however many bindings reach
// it. The partition of a routed batch is Kafka's for the key of its first record (murmur2), or
// the topic's next one round-robin when that record has none.
//
// A destination topic read by a full reject-publish queue (queue_maxlen.ts) takes the first
// records of its share while there is room; the rest are refused for that topic and counted
// in `rejected`, naming the queue (`fullQueue`). Such a batch always takes the decoding path.
//
// A priority queue's topic (queue_priority.ts) takes each record in the partition of its
// level (the `sluice-priority` header): the records of one level as one batch, in order; a
// batch bound for one also takes the decoding path.
//
// Not atomic across destinations: a failed append to one topic (a full disk, a fenced log)
// ends the batch's routing there; the answer says how many destinations took it before.

import {
  ATTRIBUTES_AT,
  BATCH_BYTES_MAX_DEFAULT,
  BATCH_HEADER_BYTES,
  batchSizeAt,
  checkBatch,
  CONTROL_BIT,
  decodeRecordBatch,
  encodeRecordBatch,
  type LogRecord,
  murmur2,
  PRIORITY_HEADER,
  PRODUCER_ID_AT,
  readInt16,
  readInt64,
  recordBodyBytes,
  type RecordInput,
  ROUTING_KEY_HEADER,
  SluiceError,
  toPositive,
  TRANSACTIONAL_BIT,
  varintSize,
} from "../record/mod.ts";
import { uniformRouting } from "./exchange_scan.ts";
import { type RoutedGroup, type SplitBatch, splitBatch } from "./exchange_split.ts";
import { priorityLevel } from "./queue_priority.ts";
import type { HeaderLookup } from "./exchange_routing.ts";
import type { PartitionLog } from "./partition_log.ts";

export type PublishHost = {
  route(exchange: string, routingKey: string, headers: HeaderLookup): readonly string[];
  /**
   * `route` for a record without headers, its key as bytes (the routing key when no header
   * names one): the same answer, from a memo of recent keys where the host keeps one.
   */
  routeKey?(exchange: string, key: Uint8Array | null): readonly string[];
  /** False when no queue reading `topic` can refuse records (then `room` need not be asked). */
  limited?(topic: string): boolean;
  /** The logs of a topic, or undefined when it is gone. */
  logs(topic: string): readonly PartitionLog[] | undefined;
  /** The priority levels of a priority queue's topic (queue_priority.ts), else undefined. */
  levels?(topic: string): number | undefined;
  /** How many of `count` records `topic` takes now, and the full queue that decided. */
  room?(
    topic: string,
    count: number,
    prefixBytes: (k: number) => number,
  ): { taken: number; fullQueue: string | null };
};

export type PublishOptions = {
  /** Wait until the appended batches are fsynced, whatever the topics' fsync policy. */
  durable: boolean;
  /** The largest batch accepted, in bytes. */
  batchBytesMax: number;
};

/**
 * What one batch did: topics that took records, records that no binding took, and records a
 * full reject-publish queue refused (per destination topic: a record refused by two topics
 * counts twice), with the queue that refused them (the first, when several did).
 */
export type PublishedBatch = {
  destinations: number;
  records: number;
  unroutable: number;
  rejected: number;
  fullQueue: string | null;
};

const decoder = new TextDecoder();
/**
 * Round-robin position per topic for batches whose first record has no key, keyed by the
 * topic's array of logs, so a deleted topic's entry goes with it.
 */
const nextPartition = new WeakMap<readonly PartitionLog[], number>();

/** The header lookup of a record without headers. */
const noHeader: HeaderLookup = () => undefined;

function headerText(record: LogRecord, key: string): string | undefined {
  for (const header of record.headers) {
    if (header.key !== key) continue;
    return header.value === null ? undefined : decoder.decode(header.value);
  }
  return undefined;
}

/** The routing key of a record: the `sluice-routing-key` header, else the key (null: ""). */
export function routingKeyOf(record: LogRecord): string {
  const fromHeader =
    record.headers.length === 0 ? undefined : headerText(record, ROUTING_KEY_HEADER);
  if (fromHeader !== undefined) return fromHeader;
  return record.key === null ? "" : decoder.decode(record.key);
}

function refuseUnroutable(batch: ReturnType<typeof decodeRecordBatch>): void {
  if (batch.producerId >= 0 || batch.transactional || batch.control) {
    throw new SluiceError(
      "INVALID_BATCH",
      `A batch published to an exchange must not be idempotent, transactional or control ` +
        `(producerId ${batch.producerId}, transactional ${batch.transactional}, ` +
        `control ${batch.control})`,
      { producerId: batch.producerId },
    );
  }
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True when two records route alike: routing reads only the key and the headers. */
function routesAlike(a: LogRecord, b: LogRecord): boolean {
  if (!sameBytes(a.key, b.key) || a.headers.length !== b.headers.length) return false;
  for (let i = 0; i < a.headers.length; i++) {
    const x = a.headers[i]!;
    const y = b.headers[i]!;
    if (x.key !== y.key || !sameBytes(x.value, y.value)) return false;
  }
  return true;
}

/**
 * Records per destination topic, in the batch's order. A record with the key and headers of
 * the one before it goes where that one went, without decoding its key as text or asking the
 * exchange again (a batch of one routing key, as the Publisher sends, routes once).
 */
function routeRecords(
  host: PublishHost,
  exchange: string,
  records: readonly LogRecord[],
): { byTopic: Map<string, LogRecord[]>; unroutable: number } {
  const byTopic = new Map<string, LogRecord[]>();
  let unroutable = 0;
  let previous: LogRecord | undefined;
  let topics: readonly string[] = [];
  for (const record of records) {
    if (previous === undefined || !routesAlike(previous, record)) {
      topics = host.route(exchange, routingKeyOf(record), (key) => headerText(record, key));
    }
    previous = record;
    if (topics.length === 0) unroutable++;
    for (const topic of topics) {
      const list = byTopic.get(topic);
      if (list === undefined) byTopic.set(topic, [record]);
      else list.push(record);
    }
  }
  return { byTopic, unroutable };
}

function partitionOf(logs: readonly PartitionLog[], firstKey: Uint8Array | null): number {
  // One partition (as most destinations have): the hash would pick it anyway.
  if (logs.length === 1) return 0;
  if (firstKey !== null) return toPositive(murmur2(firstKey)) % logs.length;
  const next = nextPartition.get(logs) ?? 0;
  nextPartition.set(logs, (next + 1) % logs.length);
  return next % logs.length;
}

/**
 * The stored bytes of the first k of `records` encoded as one uncompressed batch, for a
 * maxLengthBytes queue's room (queue_maxbytes.ts). Summed on first use: most publishes never
 * meet such a queue.
 */
function encodedPrefixBytes(records: readonly LogRecord[]): (k: number) => number {
  let sums: number[] | undefined;
  return (k) => {
    if (sums === undefined) {
      sums = [BATCH_HEADER_BYTES];
      const base = records[0]?.timestamp ?? 0;
      for (let i = 0; i < records.length; i++) {
        const record = records[i]!;
        const body = recordBodyBytes(record, i, record.timestamp - base);
        sums.push(sums[i]! + varintSize(body) + body);
      }
    }
    return k === 0 ? 0 : sums[k]!;
  };
}

/** The records of `routed` that `topic` takes now; the others are counted as rejected. */
function admitted(
  host: PublishHost,
  topic: string,
  routed: LogRecord[],
  result: PublishedBatch,
): LogRecord[] {
  if (host.room === undefined) return routed;
  const { taken, fullQueue } = host.room(topic, routed.length, encodedPrefixBytes(routed));
  if (taken >= routed.length) return routed;
  result.rejected += routed.length - taken;
  result.fullQueue ??= fullQueue;
  return routed.slice(0, taken);
}

/** Appends, and with `durable` flushes unless the log fsyncs every append already. */
function appendDurably(
  log: PartitionLog,
  bytes: Uint8Array,
  options: PublishOptions,
): Promise<unknown> {
  const appended = log.append(bytes);
  if (!options.durable || log.config.fsync === "always") return appended;
  return appended.then(() => log.flush());
}

/** A record's priority level (queue_priority.ts): its header, read as the queue reads it. */
function levelOf(record: { headers: LogRecord["headers"] }, levels: number): number {
  const header = record.headers.find((h) => h.key === PRIORITY_HEADER);
  return priorityLevel(header?.value, levels);
}

/**
 * The records for a priority queue's topic, one part per level present, each for the
 * partition of its level, in batch order within a level (FIFO within a level).
 */
function byLevel(logs: readonly PartitionLog[], records: LogRecord[], levels: number) {
  const parts = new Map<number, LogRecord[]>();
  for (const record of records) {
    const level = levelOf(record, levels) % logs.length;
    const part = parts.get(level);
    if (part === undefined) parts.set(level, [record]);
    else part.push(record);
  }
  return [...parts].map(([level, part]) => ({ log: logs[level]!, records: part }));
}

/**
 * True when a destination needs the records one by one: a priority topic, or a queue that
 * would refuse some of them (weighed by their shares of the routed batch's bytes).
 */
function needsRecords(host: PublishHost, topic: string, routed: RoutedGroup): boolean {
  if (host.levels?.(topic) !== undefined) return true;
  if (host.room === undefined) return false;
  const { bytes, records } = routed;
  const shares = (k: number) => Math.floor((bytes.length * k) / records);
  return host.room(topic, records, shares).taken < records;
}

function subsetBatch(records: readonly LogRecord[], batch: Uint8Array, all: number): Uint8Array {
  if (records.length === all) return batch;
  const inputs: RecordInput[] = records.map((record) => ({
    key: record.key,
    value: record.value,
    headers: record.headers,
    timestamp: record.timestamp,
  }));
  return encodeRecordBatch(inputs);
}

/**
 * Routes the records of one batch and starts their appends, synchronously: a batch refused
 * before anything is appended (undecodable, idempotent, an unknown exchange) throws here. The
 * promise resolves once appended (and, with `durable`, fsynced).
 */
export function publishBatch(
  host: PublishHost,
  exchange: string,
  batch: Uint8Array,
  options: PublishOptions,
): Promise<PublishedBatch> {
  const uniform = publishUniform(host, exchange, batch, options);
  if (uniform !== undefined) return uniform;
  const split = splitPlain(host, exchange, batch, options);
  if (split === undefined) return publishDecoded(host, exchange, batch, options);
  for (const [topic, routed] of split.byTopic) {
    if (needsRecords(host, topic, routed)) {
      return publishDecoded(host, exchange, batch, options);
    }
  }
  const { byTopic, records, unroutable } = split;
  const result: PublishedBatch = {
    destinations: 0,
    records,
    unroutable,
    rejected: 0,
    fullQueue: null,
  };
  const appended: Promise<unknown>[] = [];
  for (const [topic, routed] of byTopic) {
    const logs = host.logs(topic);
    if (logs === undefined || logs.length === 0) continue;
    const log = logs[partitionOf(logs, routed.firstKey)]!;
    appended.push(
      appendDurably(log, routed.bytes, options).then(() => {
        result.destinations++;
      }),
    );
  }
  return settle(appended, result, byTopic.size);
}

/**
 * The decoding path: compressed batches, batches the scan cannot read, and batches bound for a
 * priority topic or a full reject-publish queue (records taken one by one, split per level).
 */
function publishDecoded(
  host: PublishHost,
  exchange: string,
  batch: Uint8Array,
  options: PublishOptions,
): Promise<PublishedBatch> {
  let decoded: ReturnType<typeof decodeRecordBatch>;
  try {
    decoded = decodeRecordBatch(batch, {
      batchBytesMax: options.batchBytesMax,
      decompressedBytesMax: options.batchBytesMax,
    });
  } catch (error) {
    // A damaged batch is an outcome of its own, as on the fast path, where the append finds
    // the bad CRC-32C: the batches published after it are routed either way (PROTOCOL.md 7b).
    if (error instanceof SluiceError && error.code === "CORRUPT_BATCH") {
      return Promise.reject(error);
    }
    throw error;
  }
  refuseUnroutable(decoded);
  const { records } = decoded;
  const { byTopic, unroutable } = routeRecords(host, exchange, records);
  const result: PublishedBatch = {
    destinations: 0,
    records: records.length,
    unroutable,
    rejected: 0,
    fullQueue: null,
  };
  const appended: Promise<unknown>[] = [];
  for (const [topic, all] of byTopic) {
    const logs = host.logs(topic);
    if (logs === undefined || logs.length === 0) continue;
    const routed = admitted(host, topic, all, result);
    if (routed.length === 0) continue;
    const levels = host.levels?.(topic);
    const parts =
      levels === undefined
        ? [{ log: logs[partitionOf(logs, routed[0]!.key)]!, records: routed }]
        : byLevel(logs, routed, levels);
    const appends = parts.map(({ log, records: part }) =>
      appendDurably(log, subsetBatch(part, batch, records.length), options),
    );
    appended.push(
      Promise.all(appends).then(() => {
        result.destinations++;
      }),
    );
  }
  return settle(appended, result, byTopic.size);
}

/** True when a batch is one whole, plain (not idempotent, transactional or control) batch. */
function plainBatch(batch: Uint8Array, sizeMax: number, checkCrc: boolean): boolean {
  if (checkBatch(batch, 0, batch.length, { sizeMax, checkCrc }) !== "ok") return false;
  if (batchSizeAt(batch, 0) !== batch.length) return false;
  const plain = (readInt16(batch, ATTRIBUTES_AT) & (TRANSACTIONAL_BIT | CONTROL_BIT)) === 0;
  return plain && readInt64(batch, PRODUCER_ID_AT) < 0;
}

/**
 * A plain, uncompressed batch whose records go different ways, split by copying the records'
 * bytes (exchange_split.ts) after its CRC is checked. Undefined: take the decoding path.
 */
function splitPlain(
  host: PublishHost,
  exchange: string,
  batch: Uint8Array,
  options: PublishOptions,
): SplitBatch | undefined {
  const sizeMax = Math.min(options.batchBytesMax, BATCH_BYTES_MAX_DEFAULT);
  if (!plainBatch(batch, sizeMax, true)) return;
  return splitBatch(batch, (key, headers) => {
    const record: LogRecord = { offset: 0, timestamp: 0, key, value: null, headers };
    return host.route(exchange, routingKeyOf(record), (name) => headerText(record, name));
  });
}

/**
 * The fast path: a plain, uncompressed batch whose records all share key and headers routes
 * once and is appended whole, without decoding its records (exchange_scan.ts). The append
 * checks the batch's CRC; when nothing takes the batch it is checked here, so that damaged
 * bytes are refused rather than counted unroutable. Undefined: take the decoding path.
 */
function publishUniform(
  host: PublishHost,
  exchange: string,
  batch: Uint8Array,
  options: PublishOptions,
): Promise<PublishedBatch> | undefined {
  const sizeMax = Math.min(options.batchBytesMax, BATCH_BYTES_MAX_DEFAULT);
  if (!plainBatch(batch, sizeMax, false)) return;
  const uniform = uniformRouting(batch);
  if (uniform === undefined) return;
  const { key, headers, records } = uniform;
  const topics = routeUniform(host, exchange, key, headers);
  // A destination that would refuse some records splits the batch: the decoding path does.
  if (host.room !== undefined && topics.length > 0) {
    const shares = (k: number) => Math.floor((batch.length * k) / records);
    for (const topic of topics) {
      if (host.limited?.(topic) === false) continue;
      if (host.room(topic, records, shares).taken < records) return;
    }
  }
  if (topics.length === 0) {
    if (checkBatch(batch, 0, batch.length, { sizeMax, checkCrc: true }) !== "ok") return;
    return Promise.resolve(resultOf(records, records));
  }
  // One destination (the common case): one promise after the append's own, no array.
  if (topics.length === 1) {
    const log = uniformLog(host, topics[0]!, key, headers);
    if (log === undefined) return Promise.resolve(resultOf(records, 0));
    return appendDurably(log, batch, options).then(
      () => {
        const result = resultOf(records, 0);
        result.destinations = 1;
        return result;
      },
      (reason) => {
        throw withDestinations(reason, resultOf(records, 0), 1);
      },
    );
  }
  const result = resultOf(records, 0);
  const appended: Promise<unknown>[] = [];
  for (const topic of topics) {
    const log = uniformLog(host, topic, key, headers);
    if (log === undefined) continue;
    appended.push(
      appendDurably(log, batch, options).then(() => {
        result.destinations++;
      }),
    );
  }
  return settle(appended, result, topics.length);
}

/** What a batch of `records` did before any destination took it. */
function resultOf(records: number, unroutable: number): PublishedBatch {
  return { destinations: 0, records, unroutable, rejected: 0, fullQueue: null };
}

/**
 * Where the records of a one-key batch go. Without headers (as most batches are) the key is
 * the routing key: routed by its bytes (the host's memo) and no header lookups to make.
 */
function routeUniform(
  host: PublishHost,
  exchange: string,
  key: Uint8Array | null,
  headers: LogRecord["headers"],
): readonly string[] {
  if (headers.length === 0) {
    if (host.routeKey !== undefined) return host.routeKey(exchange, key);
    return host.route(exchange, key === null ? "" : decoder.decode(key), noHeader);
  }
  const record: LogRecord = { offset: 0, timestamp: 0, key, value: null, headers };
  return host.route(exchange, routingKeyOf(record), (name) => headerText(record, name));
}

/**
 * The log of `topic` that takes a one-key batch: the partition of its priority level for a
 * priority queue's topic, else the key's. Undefined when the topic is gone.
 */
function uniformLog(
  host: PublishHost,
  topic: string,
  key: Uint8Array | null,
  headers: LogRecord["headers"],
): PartitionLog | undefined {
  const logs = host.logs(topic);
  if (logs === undefined || logs.length === 0) return;
  const levels = host.levels?.(topic);
  if (levels === undefined) return logs[partitionOf(logs, key)];
  return logs[levelOf({ headers }, levels) % logs.length];
}

function settle(
  appended: Promise<unknown>[],
  result: PublishedBatch,
  topics: number,
): Promise<PublishedBatch> {
  // One destination (the common case): no allSettled round over a one-element array.
  if (appended.length === 1) {
    return appended[0]!.then(
      () => result,
      (reason) => {
        throw withDestinations(reason, result, topics);
      },
    );
  }
  return Promise.allSettled(appended).then((settled) => {
    const failed = settled.find((outcome) => outcome.status === "rejected");
    if (failed === undefined) return result;
    throw withDestinations((failed as PromiseRejectedResult).reason, result, topics);
  });
}

/** A failed append's error, saying how many destinations took the batch before. */
function withDestinations(reason: unknown, result: PublishedBatch, topics: number): unknown {
  if (!(reason instanceof SluiceError)) return reason;
  return new SluiceError(
    reason.code,
    `${reason.message} (the batch reached ${result.destinations} of ${topics} destination ` +
      "topics)",
    { ...reason.details, destinations: result.destinations },
    { cause: reason },
  );
}

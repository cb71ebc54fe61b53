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
// Not atomic across destinations: a failed append to one topic (a full disk, a fenced log)
// ends the batch's routing there; the answer says how many destinations took it before.

import {
  ATTRIBUTES_AT,
  BATCH_BYTES_MAX_DEFAULT,
  batchSizeAt,
  checkBatch,
  CONTROL_BIT,
  decodeRecordBatch,
  encodeRecordBatch,
  type LogRecord,
  murmur2,
  PRODUCER_ID_AT,
  readInt16,
  readInt64,
  type RecordInput,
  ROUTING_KEY_HEADER,
  SluiceError,
  toPositive,
  TRANSACTIONAL_BIT,
} from "../record/mod.ts";
import { uniformRouting } from "./exchange_scan.ts";
import { type RoutedGroup, type SplitBatch, splitBatch } from "./exchange_split.ts";
import type { HeaderLookup } from "./exchange_routing.ts";
import type { PartitionLog } from "./partition_log.ts";

export type PublishHost = {
  route(exchange: string, routingKey: string, headers: HeaderLookup): readonly string[];
  /** The logs of a topic, or undefined when it is gone. */
  logs(topic: string): readonly PartitionLog[] | undefined;
};

export type PublishOptions = {
  /** Wait until the appended batches are fsynced, whatever the topics' fsync policy. */
  durable: boolean;
  /** The largest batch accepted, in bytes. */
  batchBytesMax: number;
};

/** What one batch did: topics that took records, and records that no binding took. */
export type PublishedBatch = { destinations: number; records: number; unroutable: number };

const decoder = new TextDecoder();
/** Round-robin position per topic for batches whose first record has no key. */
/** Keyed by a topic's array of logs, so a deleted topic's entry goes with it. */
const nextPartition = new WeakMap<readonly PartitionLog[], number>();

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
  if (firstKey !== null) return toPositive(murmur2(firstKey)) % logs.length;
  const next = nextPartition.get(logs) ?? 0;
  nextPartition.set(logs, (next + 1) % logs.length);
  return next % logs.length;
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
  const split =
    splitPlain(host, exchange, batch, options) ?? splitDecoded(host, exchange, batch, options);
  const { byTopic, records, unroutable } = split;
  const result: PublishedBatch = { destinations: 0, records, unroutable };
  const appended: Promise<unknown>[] = [];
  for (const [topic, routed] of byTopic) {
    const logs = host.logs(topic);
    if (logs === undefined || logs.length === 0) continue;
    const log = logs[partitionOf(logs, routed.firstKey)]!;
    appended.push(
      log.append(routed.bytes).then(async () => {
        if (options.durable && log.config.fsync !== "always") await log.flush();
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

/** The decoding path: compressed batches, and any batch the scan cannot read. */
function splitDecoded(
  host: PublishHost,
  exchange: string,
  batch: Uint8Array,
  options: PublishOptions,
): SplitBatch {
  const decoded = decodeRecordBatch(batch, {
    batchBytesMax: options.batchBytesMax,
    decompressedBytesMax: options.batchBytesMax,
  });
  refuseUnroutable(decoded);
  const { records } = decoded;
  const routed = routeRecords(host, exchange, records);
  const byTopic = new Map<string, RoutedGroup>();
  for (const [topic, list] of routed.byTopic) {
    const bytes = subsetBatch(list, batch, records.length);
    byTopic.set(topic, { bytes, firstKey: list[0]!.key, records: list.length });
  }
  return { byTopic, records: records.length, unroutable: routed.unroutable };
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
  const record: LogRecord = {
    offset: 0,
    timestamp: 0,
    key: uniform.key,
    value: null,
    headers: uniform.headers,
  };
  const topics = host.route(exchange, routingKeyOf(record), (key) => headerText(record, key));
  const result: PublishedBatch = { destinations: 0, records: uniform.records, unroutable: 0 };
  if (topics.length === 0) {
    if (checkBatch(batch, 0, batch.length, { sizeMax, checkCrc: true }) !== "ok") return;
    result.unroutable = uniform.records;
    return Promise.resolve(result);
  }
  const appended: Promise<unknown>[] = [];
  for (const topic of topics) {
    const logs = host.logs(topic);
    if (logs === undefined || logs.length === 0) continue;
    const log = logs[partitionOf(logs, record.key)]!;
    appended.push(
      log.append(batch).then(async () => {
        if (options.durable && log.config.fsync !== "always") await log.flush();
        result.destinations++;
      }),
    );
  }
  return settle(appended, result, topics.length);
}

async function settle(
  appended: Promise<unknown>[],
  result: PublishedBatch,
  topics: number,
): Promise<PublishedBatch> {
  const settled = await Promise.allSettled(appended);
  const failed = settled.find((outcome) => outcome.status === "rejected");
  if (failed === undefined) return result;
  const reason = (failed as PromiseRejectedResult).reason;
  if (!(reason instanceof SluiceError)) throw reason;
  throw new SluiceError(
    reason.code,
    `${reason.message} (the batch reached ${result.destinations} of ${topics} destination ` +
      "topics)",
    { ...reason.details, destinations: result.destinations },
    { cause: reason },
  );
}

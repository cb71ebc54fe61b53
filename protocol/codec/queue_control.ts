// The queue control-plane messages v1 (PROTOCOL.md section 7a), one MessagePack map each,
// written once here for the server and the client alike:
//
//   QueueDeclare (13)
//     request:  { name: string, topic?: string = name, from?: "end" | "beginning" = "end",
//                 deadLetterTopic?: string | null = null, deliveryLimit?: int = 20,
//                 lockMs?: int = 30000, prefetch?: int = 1000, maxInFlight?: int = 2000,
//                 fsync?: "always" | "never" = "always", messageTtlMs?: int | null = null,
//                 messageTtlHeader?: "read" | "ignore" = "read", maxLength?: int | null = null,
//                 maxLengthBytes?: int | null = null,
//                 overflow?: "drop-head" | "reject-publish" = "drop-head",
//                 singleActiveConsumer?: bool = false, priorities?: int | null = null,
//                 priorityRatio?: int | null = null,
//                 retry?: { minMs: int, maxMs?: int, factor?: float } | null = null }
//     response: { errorCode: int, errorMessage: string | null, queue: QueueInfo | null }
//   QueueDelete (14)
//     request:  { name: string }
//     response: { errorCode: int, errorMessage: string | null }
//   QueuePurge (15)
//     request:  { name: string }
//     response: { errorCode: int, errorMessage: string | null, purged: int }
//   QueueList (16)
//     request:  { names?: [string] | null = null }          null = every queue
//     response: { queues: [{ name: string, errorCode: int, errorMessage: string | null,
//                            config: QueueInfo | null, stats: QueueStatsInfo | null }] }
//   QueueJoin (17)
//     request:  { queue: string }
//     response: { errorCode: int, errorMessage: string | null, memberId: string | null,
//                 topic: string | null, partitions: int, lockMs: int, prefetch: int }
//   QueueLeave (18)
//     request:  { queue: string, memberId: string }
//     response: { errorCode: int, errorMessage: string | null, released: int }
//
//   QueueInfo      = { name, topic, from, deadLetterTopic: string | null, deliveryLimit: int,
//                      lockMs: int, prefetch: int, maxInFlight: int, fsync,
//                      messageTtlMs: int | null, messageTtlHeader, maxLength: int | null,
//                      maxLengthBytes: int | null, overflow, singleActiveConsumer: bool,
//                      priorities: int | null, priorityRatio: int | null, retry: {...} | null,
//                      startOffsets: [int], createdMs: int }
//   QueueStatsInfo = { members, ready, acquired, deadLettering, delivered, accepted,
//                      deadLettered, discarded, expired, overflowed: int,
//                      readyBytes: int | null, activeMember: string | null, delayed: int,
//                      oldestReadyAgeMs: int | null, memoryBytes: int,
//                      partitions: [{ partition, floor, next, highWatermark, ready,
//                      acquired: int }] }
//
// Readers check types and sizes (INVALID_REQUEST naming the key); the ranges of a declare's
// options are the engine's to check, which names the field and the value.

import {
  arrayField,
  type Fields,
  intField,
  mapItem,
  optionalArray,
  optionalString,
  readMsgpack,
  stringField,
  stringItems,
  writeMsgpack,
} from "./control.ts";
import { ProtocolError } from "./errors.ts";
import { MEMBER_ID_BYTES_MAX } from "./queue_ack.ts";
import type { Reader, Writer } from "./wire.ts";

/** Queue names follow topic-name rules: at most 249 bytes. */
const NAME_BYTES_MAX = 249;
const NAMES_MAX = 10_000;
const ITEMS_MAX = 1_000_000;
const INT = { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER };

export type QueueSettings = {
  /** Absent: the queue gets a topic of its own name (one partition), created by the declare. */
  topic?: string;
  from?: "end" | "beginning";
  deadLetterTopic?: string | null;
  deliveryLimit?: number;
  lockMs?: number;
  prefetch?: number;
  maxInFlight?: number;
  fsync?: "always" | "never";
  /** Milliseconds a record may wait from its timestamp before it expires; null: no queue TTL. */
  messageTtlMs?: number | null;
  /** "read" (default): a record's `sluice-ttl-ms` header applies; "ignore": it does not. */
  messageTtlHeader?: "read" | "ignore";
  /** Ready records kept at most; null (default): no limit. */
  maxLength?: number | null;
  /** Bytes of ready records kept at most (stored size); null (default): no limit. */
  maxLengthBytes?: number | null;
  /** What a full queue does: "drop-head" (default) or "reject-publish". */
  overflow?: "drop-head" | "reject-publish";
  /** One member (the earliest joined) gets every record; the next takes over when it leaves. */
  singleActiveConsumer?: boolean;
  /** Priority levels (2-10): one partition per level, higher first; null (default): none. */
  priorities?: number | null;
  /** With priorities: higher-level records in a row before a waiting lower level is served. */
  priorityRatio?: number | null;
  /** Retries with backoff: a plain release waits minMs · factor^(deliveries - 1) ≤ maxMs. */
  retry?: { minMs: number; maxMs?: number; factor?: number } | null;
};

export type QueueDeclareRequest = QueueSettings & { name: string };

export type QueueInfo = Required<QueueSettings> & {
  name: string;
  deadLetterTopic: string | null;
  messageTtlMs: number | null;
  maxLength: number | null;
  maxLengthBytes: number | null;
  priorities: number | null;
  priorityRatio: number | null;
  retry: { minMs: number; maxMs?: number; factor?: number } | null;
  /** The first offset delivered, per partition: fixed at the declare. */
  startOffsets: number[];
  createdMs: number;
};

export type QueuePartitionStatsInfo = {
  partition: number;
  floor: number;
  next: number;
  highWatermark: number;
  ready: number;
  acquired: number;
};

export type QueueStatsInfo = {
  members: number;
  ready: number;
  acquired: number;
  deadLettering: number;
  delivered: number;
  accepted: number;
  deadLettered: number;
  discarded: number;
  /** Records whose TTL ran out (dead-lettered or discarded, and counted there too). */
  expired: number;
  /** Records dropped from the head by max length (dead-lettered or discarded, counted there). */
  overflowed: number;
  /** With maxLengthBytes: bytes of the ready records; null otherwise or from older servers. */
  readyBytes: number | null;
  /** With a single active consumer: the member getting the records (null: none, or off). */
  activeMember: string | null;
  /** Records waiting in the delay tiers, not yet due. */
  delayed: number;
  oldestReadyAgeMs: number | null;
  memoryBytes: number;
  partitions: QueuePartitionStatsInfo[];
};

export type Outcome = { errorCode: number; errorMessage: string | null };
export type QueueDeclareResponse = Outcome & { queue: QueueInfo | null };
export type QueuePurgeResponse = Outcome & { purged: number };
export type QueueListEntry = Outcome & {
  name: string;
  config: QueueInfo | null;
  stats: QueueStatsInfo | null;
};
export type QueueListResponse = { queues: QueueListEntry[] };
export type QueueJoinResponse = Outcome & {
  memberId: string | null;
  topic: string | null;
  partitions: number;
  lockMs: number;
  prefetch: number;
};
export type QueueLeaveRequest = { queue: string; memberId: string };
export type QueueLeaveResponse = Outcome & { released: number };

/** msgpackr would write `undefined` as an extension type other readers do not know. */
function defined(value: object): Fields {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined));
}

function optionalInt(fields: Fields, key: string): number | undefined {
  return fields[key] === undefined ? undefined : intField(fields, key, INT);
}

function outcome(fields: Fields): Outcome {
  return {
    errorCode: intField(fields, "errorCode", INT),
    errorMessage: optionalString(fields, "errorMessage"),
  };
}

// QueueDeclare (13) -------------------------------------------------------------------------

export function writeQueueDeclareRequest(writer: Writer, request: QueueDeclareRequest): void {
  writeMsgpack(writer, defined(request));
}

export function readQueueDeclareRequest(reader: Reader): QueueDeclareRequest {
  const fields = readMsgpack(reader, "QueueDeclareRequest");
  // Names are judged by the engine, a long one too: INVALID_QUEUE naming it (section 7a), not
  // a malformed body. The API's 4 KiB body limit bounds them.
  const request: QueueDeclareRequest = { name: stringField(fields, "name") };
  // Without a topic the queue reads a topic of its own name, created by the declare.
  const topic = optionalString(fields, "topic");
  if (topic !== null) request.topic = topic;
  const from = optionalString(fields, "from", 16);
  if (from !== null) request.from = from as QueueSettings["from"];
  const deadLetterTopic = optionalString(fields, "deadLetterTopic");
  if (deadLetterTopic !== null) request.deadLetterTopic = deadLetterTopic;
  for (const key of ["deliveryLimit", "lockMs", "prefetch", "maxInFlight"] as const) {
    const value = optionalInt(fields, key);
    if (value !== undefined) request[key] = value;
  }
  // The grammar's `int | null` settings: null is their default (no TTL, no limit, no levels),
  // sent as such by a client that writes every key.
  const nullable = [
    "messageTtlMs",
    "maxLength",
    "maxLengthBytes",
    "priorities",
    "priorityRatio",
  ] as const;
  for (const key of nullable) {
    const value = fields[key] === null ? null : optionalInt(fields, key);
    if (value !== undefined) request[key] = value;
  }
  const fsync = optionalString(fields, "fsync", 16);
  if (fsync !== null) request.fsync = fsync as QueueSettings["fsync"];
  const ttlHeader = optionalString(fields, "messageTtlHeader", 16);
  if (ttlHeader !== null) request.messageTtlHeader = ttlHeader as QueueSettings["messageTtlHeader"];
  const overflow = optionalString(fields, "overflow", 32);
  if (overflow !== null) request.overflow = overflow as QueueSettings["overflow"];
  const single = fields["singleActiveConsumer"];
  if (single !== undefined && single !== null) {
    // A non-boolean is the engine's to refuse, naming the value.
    request.singleActiveConsumer = single as boolean;
  }
  const retry = retryField(fields);
  if (retry !== undefined) request.retry = retry;
  return request;
}

/** A declare's or a QueueInfo's `retry` map; the engine checks its ranges. */
function retryField(fields: Fields): QueueSettings["retry"] | undefined {
  if (fields["retry"] === undefined) return undefined;
  if (fields["retry"] === null) return null;
  const retry = mapItem(fields["retry"], "retry");
  const factor = retry["factor"];
  if (factor !== undefined && typeof factor !== "number") {
    throw ProtocolError.invalid(`retry.factor ${String(factor)} is not a number`);
  }
  return {
    minMs: intField(retry, "minMs", INT),
    ...(retry["maxMs"] === undefined ? {} : { maxMs: intField(retry, "maxMs", INT) }),
    ...(factor === undefined ? {} : { factor }),
  };
}

export function writeQueueDeclareResponse(writer: Writer, response: QueueDeclareResponse): void {
  writeMsgpack(writer, response);
}

export function readQueueDeclareResponse(reader: Reader): QueueDeclareResponse {
  const fields = readMsgpack(reader, "QueueDeclareResponse");
  const queue = fields["queue"] == null ? null : queueInfo(mapItem(fields["queue"], "queue"));
  return { ...outcome(fields), queue };
}

function queueInfo(fields: Fields): QueueInfo {
  return {
    name: stringField(fields, "name"),
    topic: stringField(fields, "topic"),
    from: stringField(fields, "from") as QueueInfo["from"],
    deadLetterTopic: optionalString(fields, "deadLetterTopic"),
    deliveryLimit: intField(fields, "deliveryLimit", INT),
    lockMs: intField(fields, "lockMs", INT),
    prefetch: intField(fields, "prefetch", INT),
    maxInFlight: intField(fields, "maxInFlight", INT),
    fsync: stringField(fields, "fsync") as QueueInfo["fsync"],
    // Absent from servers older than message TTL: they have none.
    messageTtlMs: fields["messageTtlMs"] == null ? null : intField(fields, "messageTtlMs", INT),
    messageTtlHeader: (optionalString(fields, "messageTtlHeader") ??
      "read") as QueueInfo["messageTtlHeader"],
    // Absent from servers older than max length and single active consumer: none, off.
    maxLength: fields["maxLength"] == null ? null : intField(fields, "maxLength", INT),
    maxLengthBytes:
      fields["maxLengthBytes"] == null ? null : intField(fields, "maxLengthBytes", INT),
    overflow: (optionalString(fields, "overflow") ?? "drop-head") as QueueInfo["overflow"],
    singleActiveConsumer: fields["singleActiveConsumer"] === true,
    priorities: fields["priorities"] == null ? null : intField(fields, "priorities", INT),
    priorityRatio: fields["priorityRatio"] == null ? null : intField(fields, "priorityRatio", INT),
    // Absent from servers older than retries: they have none.
    retry: retryField(fields) ?? null,
    startOffsets: arrayField(fields, "startOffsets", ITEMS_MAX).map((offset) =>
      intField({ "startOffsets[]": offset }, "startOffsets[]", INT),
    ),
    createdMs: intField(fields, "createdMs", INT),
  };
}

// QueueDelete (14), QueuePurge (15) ----------------------------------------------------------

export function writeQueueNameRequest(writer: Writer, request: { name: string }): void {
  writeMsgpack(writer, { name: request.name });
}

/** The request of QueueDelete and QueuePurge: `{ name }`. */
export function readQueueNameRequest(reader: Reader, what: string): { name: string } {
  return { name: stringField(readMsgpack(reader, what), "name", NAME_BYTES_MAX) };
}

export function writeOutcome(writer: Writer, response: Outcome): void {
  writeMsgpack(writer, response);
}

export function readQueueDeleteResponse(reader: Reader): Outcome {
  return outcome(readMsgpack(reader, "QueueDeleteResponse"));
}

export function writeQueuePurgeResponse(writer: Writer, response: QueuePurgeResponse): void {
  writeMsgpack(writer, response);
}

export function readQueuePurgeResponse(reader: Reader): QueuePurgeResponse {
  const fields = readMsgpack(reader, "QueuePurgeResponse");
  return { ...outcome(fields), purged: intField(fields, "purged", INT) };
}

// QueueList (16) -----------------------------------------------------------------------------

export function writeQueueListRequest(writer: Writer, request: { names: string[] | null }): void {
  writeMsgpack(writer, { names: request.names });
}

export function readQueueListRequest(reader: Reader): { names: string[] | null } {
  const fields = readMsgpack(reader, "QueueListRequest");
  const names = optionalArray(fields, "names", NAMES_MAX);
  return { names: names === null ? null : stringItems(names, "names") };
}

export function writeQueueListResponse(writer: Writer, response: QueueListResponse): void {
  writeMsgpack(writer, response);
}

export function readQueueListResponse(reader: Reader): QueueListResponse {
  const fields = readMsgpack(reader, "QueueListResponse");
  const queues = arrayField(fields, "queues", ITEMS_MAX).map((item) => {
    const entry = mapItem(item, "queues[]");
    return {
      name: stringField(entry, "name"),
      ...outcome(entry),
      config: entry["config"] == null ? null : queueInfo(mapItem(entry["config"], "config")),
      stats: entry["stats"] == null ? null : queueStats(mapItem(entry["stats"], "stats")),
    };
  });
  return { queues };
}

function queueStats(fields: Fields): QueueStatsInfo {
  const int = (key: string) => intField(fields, key, INT);
  return {
    members: int("members"),
    ready: int("ready"),
    acquired: int("acquired"),
    deadLettering: int("deadLettering"),
    delivered: int("delivered"),
    accepted: int("accepted"),
    deadLettered: int("deadLettered"),
    discarded: int("discarded"),
    // Absent from servers older than message TTL: nothing expired there.
    expired: fields["expired"] == null ? 0 : int("expired"),
    // Absent from servers older than max length and single active consumer.
    overflowed: fields["overflowed"] == null ? 0 : int("overflowed"),
    readyBytes: fields["readyBytes"] == null ? null : int("readyBytes"),
    activeMember: optionalString(fields, "activeMember"),
    // Absent from servers older than delayed delivery: nothing waits there.
    delayed: fields["delayed"] == null ? 0 : int("delayed"),
    oldestReadyAgeMs: fields["oldestReadyAgeMs"] == null ? null : int("oldestReadyAgeMs"),
    memoryBytes: int("memoryBytes"),
    partitions: arrayField(fields, "partitions", ITEMS_MAX).map((item) => {
      const p = mapItem(item, "partitions[]");
      const pint = (key: string) => intField(p, key, INT);
      return {
        partition: pint("partition"),
        floor: pint("floor"),
        next: pint("next"),
        highWatermark: pint("highWatermark"),
        ready: pint("ready"),
        acquired: pint("acquired"),
      };
    }),
  };
}

// QueueJoin (17), QueueLeave (18) ------------------------------------------------------------

export function writeQueueJoinRequest(writer: Writer, request: { queue: string }): void {
  writeMsgpack(writer, { queue: request.queue });
}

export function readQueueJoinRequest(reader: Reader): { queue: string } {
  return { queue: stringField(readMsgpack(reader, "QueueJoinRequest"), "queue", NAME_BYTES_MAX) };
}

export function writeQueueJoinResponse(writer: Writer, response: QueueJoinResponse): void {
  writeMsgpack(writer, response);
}

export function readQueueJoinResponse(reader: Reader): QueueJoinResponse {
  const fields = readMsgpack(reader, "QueueJoinResponse");
  return {
    ...outcome(fields),
    memberId: optionalString(fields, "memberId", MEMBER_ID_BYTES_MAX),
    topic: optionalString(fields, "topic"),
    partitions: intField(fields, "partitions", INT),
    lockMs: intField(fields, "lockMs", INT),
    prefetch: intField(fields, "prefetch", INT),
  };
}

export function writeQueueLeaveRequest(writer: Writer, request: QueueLeaveRequest): void {
  writeMsgpack(writer, request);
}

export function readQueueLeaveRequest(reader: Reader): QueueLeaveRequest {
  const fields = readMsgpack(reader, "QueueLeaveRequest");
  return {
    queue: stringField(fields, "queue", NAME_BYTES_MAX),
    memberId: stringField(fields, "memberId", MEMBER_ID_BYTES_MAX),
  };
}

export function writeQueueLeaveResponse(writer: Writer, response: QueueLeaveResponse): void {
  writeMsgpack(writer, response);
}

export function readQueueLeaveResponse(reader: Reader): QueueLeaveResponse {
  const fields = readMsgpack(reader, "QueueLeaveResponse");
  return { ...outcome(fields), released: intField(fields, "released", INT) };
}

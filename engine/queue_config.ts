// A queue's declared options: their limits and defaults, the checks that turn a caller's
// options into a QueueConfig, and the metadata file `<data>/__meta/queues/<name>.json` that
// makes a declared queue durable.
//
// A queue is a named, durable consumer of one topic whose records are handed out one by one
// (engine/queues.ts). Everything here is fixed when the queue is declared; a second declare
// with the same options is a no-op and with different ones is QUEUE_EXISTS (RabbitMQ answers a
// redeclare with other arguments the same way, PRECONDITION_FAILED).

import { assert, SluiceError } from "../record/mod.ts";
import { validateTopicName } from "./topic_name.ts";
import { WINDOW_RECORDS_MAX } from "./queue_cursor.ts";
import { MAX_LENGTH_BYTES_MAX } from "./queue_maxbytes.ts";
import { MAX_LENGTH_MAX, type QueueOverflow } from "./queue_maxlen.ts";
import { PRIORITIES_MAX, PRIORITIES_MIN, PRIORITY_RATIO_MAX } from "./queue_priority.ts";
import { MESSAGE_TTL_MS_MAX } from "./queue_ttl.ts";
import { DELAY_MS_MAX, type RetryBackoff } from "./queue_delay.ts";

/** The largest retry backoff factor. */
export const RETRY_FACTOR_MAX = 100;

/** Where a new queue starts reading its topic. */
export type QueueStart = "end" | "beginning";

/** When an ack resolves: "always" after fdatasync; "never" after the write (page cache). */
export type QueueFsync = "always" | "never";

export type QueueOptions = {
  /** The topic the queue reads. It must exist. */
  topic: string;
  /** "end" (default): records appended after the declare; "beginning": the whole topic. */
  from?: QueueStart;
  /** Where rejected records and records past the delivery limit go; created if missing. */
  deadLetterTopic?: string | null;
  /** Acquisitions after which an unaccepted record is dead-lettered (default 20). */
  deliveryLimit?: number;
  /** How long an acquired record stays locked to its member (default 30,000 ms). */
  lockMs?: number;
  /** Records one member may hold unacknowledged at once (default 1,000). */
  prefetch?: number;
  /** The widest window [floor, next) of one partition, in records (default 2,000). */
  maxInFlight?: number;
  /** "always" (default): acks resolve after fdatasync; "never": after the write. */
  fsync?: QueueFsync;
  /**
   * Milliseconds a record may wait from its timestamp before it expires (queue_ttl.ts), in
   * [1, MESSAGE_TTL_MS_MAX]; null or absent (default): records expire only by their own
   * `sluice-ttl-ms` header.
   */
  messageTtlMs?: number | null;
  /**
   * "read" (default): a record's `sluice-ttl-ms` header applies (every batch's records are
   * walked, compressed ones decompressed, to find it); "ignore": only `messageTtlMs` applies,
   * judged from batch headers (queue_ttl.ts), for queues that never see the header.
   */
  messageTtlHeader?: QueueTtlHeader;
  /**
   * Ready records (waiting to be acquired, not held) the queue keeps at most, in
   * [0, MAX_LENGTH_MAX]; null or absent (default): no limit. See queue_maxlen.ts.
   */
  maxLength?: number | null;
  /**
   * Bytes of ready records the queue keeps at most (each record weighing its share of its
   * stored batch), in [0, MAX_LENGTH_BYTES_MAX]; null or absent (default): no limit. See
   * queue_maxbytes.ts. With `maxLength` too, whichever is reached first applies.
   */
  maxLengthBytes?: number | null;
  /** What a full queue does: "drop-head" (default) or "reject-publish" (queue_maxlen.ts). */
  overflow?: QueueOverflow;
  /** One member (the earliest joined still there) gets every record; the others wait. */
  singleActiveConsumer?: boolean;
  /**
   * Priority levels, in [PRIORITIES_MIN, PRIORITIES_MAX]: the topic has one partition per
   * level, higher served first (queue_priority.ts); null or absent (default): none.
   */
  priorities?: number | null;
  /** With priorities: records from higher levels in a row before a waiting lower level. */
  priorityRatio?: number | null;
  /**
   * Retries with backoff: a release without its own delayMs makes the record available again
   * only after minMs · factor^(deliveries - 1), capped at maxMs (queue_delay.ts). Null or
   * absent (default): a release makes it available at once.
   */
  retry?: RetryBackoff | null;
};

/** Whether a queue reads its records' `sluice-ttl-ms` header. */
export type QueueTtlHeader = "read" | "ignore";

/** A declared queue's options, resolved, plus what the declare fixed. */
export type QueueConfig = {
  readonly name: string;
  readonly topic: string;
  readonly from: QueueStart;
  readonly deadLetterTopic: string | null;
  readonly deliveryLimit: number;
  readonly lockMs: number;
  readonly prefetch: number;
  readonly maxInFlight: number;
  readonly fsync: QueueFsync;
  readonly messageTtlMs: number | null;
  readonly messageTtlHeader: QueueTtlHeader;
  readonly maxLength: number | null;
  readonly maxLengthBytes: number | null;
  readonly overflow: QueueOverflow;
  readonly singleActiveConsumer: boolean;
  readonly priorities: number | null;
  readonly priorityRatio: number | null;
  readonly retry: RetryBackoff | null;
  /**
   * The queue has delay tiers and a due partition (queue_delay.ts): true for queues declared
   * since delayed delivery exists; older ones refuse delayed releases.
   */
  readonly delays: boolean;
  /** The first offset the queue delivers, per partition: fixed at the declare. */
  readonly startOffsets: readonly number[];
  readonly createdMs: number;
};

export const QUEUE_NAME_BYTES_MAX = 249;
/** Delivery counts are kept in one byte per record. */
export const DELIVERY_LIMIT_MAX = 255;
export const DELIVERY_LIMIT_DEFAULT = 20;
/** Kafka's bounds on group.share.record.lock.duration.ms. */
export const LOCK_MS_MIN = 1_000;
export const LOCK_MS_MAX = 3_600_000;
export const LOCK_MS_DEFAULT = 30_000;
export const PREFETCH_MAX = 1_000_000;
export const PREFETCH_DEFAULT = 1_000;
/** A window of this many records costs about 1.7 MiB of typed arrays (queue_cursor.ts). */
export const MAX_IN_FLIGHT_MAX = 100_000;
/** Kafka's group.share.partition.max.record.locks. */
export const MAX_IN_FLIGHT_DEFAULT = 2_000;
export const QUEUES_MAX = 10_000;

assert(DELIVERY_LIMIT_DEFAULT <= DELIVERY_LIMIT_MAX, "the default delivery limit is allowed");
assert(LOCK_MS_MIN <= LOCK_MS_DEFAULT && LOCK_MS_DEFAULT <= LOCK_MS_MAX, "default lock in range");
assert(MAX_IN_FLIGHT_DEFAULT <= MAX_IN_FLIGHT_MAX, "the default window is allowed");
assert(MAX_IN_FLIGHT_MAX <= WINDOW_RECORDS_MAX, "a cursor takes the widest window");
// Deadlines are u32 milliseconds from a cursor epoch that is moved every 2^31 ms.
assert(LOCK_MS_MAX < 2 ** 31, "a lock fits the deadline's range");

/** Queue names follow topic-name rules; a bad one is INVALID_QUEUE. */
export function validateQueueName(name: unknown): string {
  try {
    return validateTopicName(name);
  } catch (error) {
    if (!(error instanceof SluiceError)) throw error;
    const text = error.message.replace(/^Topic name/, "Queue name");
    throw new SluiceError("INVALID_QUEUE", text, { queue: String(name) });
  }
}

function configError(name: string, field: string, value: unknown, rule: string): SluiceError {
  return new SluiceError(
    "INVALID_CONFIG",
    `Queue '${name}': ${field} ${JSON.stringify(value) ?? String(value)} ${rule}`,
    { queue: name, field, value: typeof value === "number" ? value : String(value) },
  );
}

function integerIn(name: string, field: string, value: unknown, min: number, max: number) {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw configError(name, field, value, `must be an integer in [${min}, ${max}]`);
  }
  return value;
}

function oneOf<T extends string>(name: string, field: string, value: unknown, allowed: T[]): T {
  if (typeof value !== "string" || !allowed.includes(value as T)) {
    throw configError(name, field, value, `must be one of ${allowed.join(", ")}`);
  }
  return value as T;
}

/** The options with defaults filled in; INVALID_CONFIG names the first bad field and value. */
export function resolveQueueOptions(
  name: string,
  options: QueueOptions,
): Omit<QueueConfig, "startOffsets" | "createdMs" | "delays"> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`Queue '${name}': options must be an object`);
  }
  const topic = validateTopicName(options.topic);
  const deadLetterTopic =
    options.deadLetterTopic === undefined || options.deadLetterTopic === null
      ? null
      : validateTopicName(options.deadLetterTopic);
  if (deadLetterTopic === topic) {
    throw configError(name, "deadLetterTopic", deadLetterTopic, "must differ from the topic");
  }
  return {
    name,
    topic,
    from: oneOf(name, "from", options.from ?? "end", ["end", "beginning"]),
    deadLetterTopic,
    deliveryLimit: integerIn(
      name,
      "deliveryLimit",
      options.deliveryLimit ?? DELIVERY_LIMIT_DEFAULT,
      1,
      DELIVERY_LIMIT_MAX,
    ),
    lockMs: integerIn(name, "lockMs", options.lockMs ?? LOCK_MS_DEFAULT, LOCK_MS_MIN, LOCK_MS_MAX),
    prefetch: integerIn(name, "prefetch", options.prefetch ?? PREFETCH_DEFAULT, 1, PREFETCH_MAX),
    maxInFlight: integerIn(
      name,
      "maxInFlight",
      options.maxInFlight ?? MAX_IN_FLIGHT_DEFAULT,
      1,
      MAX_IN_FLIGHT_MAX,
    ),
    fsync: oneOf(name, "fsync", options.fsync ?? "always", ["always", "never"]),
    messageTtlMs:
      options.messageTtlMs === undefined || options.messageTtlMs === null
        ? null
        : integerIn(name, "messageTtlMs", options.messageTtlMs, 1, MESSAGE_TTL_MS_MAX),
    messageTtlHeader: oneOf(name, "messageTtlHeader", options.messageTtlHeader ?? "read", [
      "read",
      "ignore",
    ]),
    maxLength:
      options.maxLength === undefined || options.maxLength === null
        ? null
        : integerIn(name, "maxLength", options.maxLength, 0, MAX_LENGTH_MAX),
    maxLengthBytes:
      options.maxLengthBytes === undefined || options.maxLengthBytes === null
        ? null
        : integerIn(name, "maxLengthBytes", options.maxLengthBytes, 0, MAX_LENGTH_BYTES_MAX),
    overflow: oneOf(name, "overflow", options.overflow ?? "drop-head", [
      "drop-head",
      "reject-publish",
    ]),
    singleActiveConsumer: booleanOf(
      name,
      "singleActiveConsumer",
      options.singleActiveConsumer ?? false,
    ),
    ...resolvePriorities(name, options),
    retry: resolveRetry(name, options.retry),
  };
}

function resolvePriorities(name: string, options: QueueOptions) {
  const priorities =
    options.priorities === undefined || options.priorities === null
      ? null
      : integerIn(name, "priorities", options.priorities, PRIORITIES_MIN, PRIORITIES_MAX);
  const ratio = options.priorityRatio;
  if (ratio === undefined || ratio === null) return { priorities, priorityRatio: null };
  if (priorities === null) {
    throw configError(name, "priorityRatio", ratio, "needs priorities");
  }
  return {
    priorities,
    priorityRatio: integerIn(name, "priorityRatio", ratio, 1, PRIORITY_RATIO_MAX),
  };
}

function booleanOf(name: string, field: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw configError(name, field, value, "must be true or false");
  return value;
}

function resolveRetry(name: string, retry: unknown): RetryBackoff | null {
  if (retry === undefined || retry === null) return null;
  if (typeof retry !== "object") throw configError(name, "retry", retry, "must be an object");
  const { minMs, maxMs, factor } = retry as Record<string, unknown>;
  const min = integerIn(name, "retry.minMs", minMs, 1, DELAY_MS_MAX);
  const max = integerIn(name, "retry.maxMs", maxMs ?? min, min, DELAY_MS_MAX);
  const grow = factor ?? 2;
  if (typeof grow !== "number" || !(grow >= 1 && grow <= RETRY_FACTOR_MAX)) {
    throw configError(name, "retry.factor", grow, `must be a number in [1, ${RETRY_FACTOR_MAX}]`);
  }
  return { minMs: min, maxMs: max, factor: grow };
}

/** The fields a redeclare must match; the name of the first that differs, or undefined. */
export function differingField(
  existing: QueueConfig,
  wanted: Omit<QueueConfig, "startOffsets" | "createdMs" | "delays">,
): keyof QueueConfig | undefined {
  const fields = [
    "topic",
    "from",
    "deadLetterTopic",
    "deliveryLimit",
    "lockMs",
    "prefetch",
    "maxInFlight",
    "fsync",
    "messageTtlMs",
    "messageTtlHeader",
    "maxLength",
    "maxLengthBytes",
    "overflow",
    "singleActiveConsumer",
    "priorities",
    "priorityRatio",
    "retry",
  ] as const;
  return fields.find((field) => JSON.stringify(existing[field]) !== JSON.stringify(wanted[field]));
}

/** The metadata file's text. */
export function queueConfigJson(config: QueueConfig): string {
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** Parses and checks a metadata file; throws TypeError or SluiceError when it is not one. */
export function parseQueueConfig(text: string): QueueConfig {
  const raw = JSON.parse(text) as Record<string, unknown>;
  const name = validateQueueName(raw["name"]);
  const resolved = resolveQueueOptions(name, raw as unknown as QueueOptions);
  const starts = raw["startOffsets"];
  if (!Array.isArray(starts) || starts.length === 0) {
    throw new TypeError(`queue '${name}': startOffsets must be a non-empty array`);
  }
  const startOffsets = starts.map((offset) =>
    integerIn(name, "startOffsets[]", offset, 0, Number.MAX_SAFE_INTEGER),
  );
  const createdMs = typeof raw["createdMs"] === "number" ? raw["createdMs"] : 0;
  // Queues declared before delayed delivery have no delay tiers: their state holds no due
  // partition.
  const delays = raw["delays"] === true;
  return Object.freeze({
    ...resolved,
    delays,
    startOffsets: Object.freeze(startOffsets),
    createdMs,
  });
}

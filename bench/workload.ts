// Benchmark workloads: YAML files with the OpenMessaging Benchmark's field names, validated on
// load so a bad file fails before any driver starts, with an error naming the file, the field
// and the bad value.
//
//   name: quick                     # shown in results and reports
//   topics: 1
//   partitionsPerTopic: 4
//   messageSize: 1024               # bytes, at least 8 (the send timestamp lives in bytes 0-7)
//   payloadFile: payload-1kb.data   # optional, relative to the workload file; else random bytes
//   producersPerTopic: 1
//   subscriptionsPerTopic: 1        # each subscription receives every message
//   consumerPerSubscription: 1      # consumers of one subscription share its messages
//   producerRate: 10000             # msg/s over all producers; 0 searches for the max rate
//   testDurationMinutes: 1          # or testDurationSeconds
//   warmupDurationMinutes: 1        # or warmupDurationSeconds; excluded from the results
//   keyDistributor: NO_KEY          # NO_KEY | KEY_ROUND_ROBIN | RANDOM_NANO
//   consumerBacklogSizeGB: 0        # only 0: backlog build-and-drain runs are not implemented
//   useRandomizedPayloads: false    # true: a pool of payloads, randomBytesRatio random bytes each
//   randomBytesRatio: 0.5
//   randomizedPayloadPoolSize: 1000
//   ackMode: stream                 # stream | per-message: how consumers acknowledge
//   releaseRatio: 0                 # per-message only: share of messages released once
//   priorityLevels: 0               # per-message only: 2-10 makes each subscription a priority
//                                   # queue, a message's priority = its partition (0: none)
//   deliveryDelayMsMax: 0           # per-message only: each message delayed uniformly in
//                                   # [0, this] ms; end-to-end latency is then measured from
//                                   # the due time (send + delay): the lateness

import fs from "node:fs";
import { basename, dirname, extname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

export const KEY_DISTRIBUTORS = ["NO_KEY", "KEY_ROUND_ROBIN", "RANDOM_NANO"] as const;
export type KeyDistributor = (typeof KEY_DISTRIBUTORS)[number];

/**
 * How consumers acknowledge. `stream`: each driver's own way of reading a subscription in
 * order and acknowledging positions or batches (sluice: consumer-group offsets; RabbitMQ: one
 * `multiple` basic.ack per batch). `per-message`: every message is answered on its own, as a
 * work queue does (sluice: a queue and QueueConsumers, each message accepted and the accept
 * durable; RabbitMQ: one basic.ack per message).
 */
export const ACK_MODES = ["stream", "per-message"] as const;
export type AckMode = (typeof ACK_MODES)[number];
/** At most this share of messages may be released (a release ratio of 1 would never end). */
export const RELEASE_RATIO_MAX = 0.5;
/** Priority levels of a workload's queues at most (a priority queue takes 2-10). */
export const PRIORITY_LEVELS_MAX = 10;
/** The longest delivery delay a workload may ask for: one year, as sluice's queues allow. */
export const DELIVERY_DELAY_MS_MAX = 31_536_000_000;

export type Workload = {
  name: string;
  topics: number;
  partitionsPerTopic: number;
  messageSize: number;
  /** Absolute path of the payload file, when the workload names one. */
  payloadFile: string | undefined;
  producersPerTopic: number;
  subscriptionsPerTopic: number;
  consumerPerSubscription: number;
  /** Messages per second over all producers; 0 = search for the maximum sustainable rate. */
  producerRate: number;
  testDurationSeconds: number;
  warmupDurationSeconds: number;
  keyDistributor: KeyDistributor;
  consumerBacklogSizeGB: number;
  useRandomizedPayloads: boolean;
  randomBytesRatio: number;
  randomizedPayloadPoolSize: number;
  ackMode: AckMode;
  /**
   * With ackMode per-message: the share of first deliveries a consumer releases (gives back to
   * the queue) instead of accepting; a redelivered message is always accepted.
   */
  releaseRatio: number;
  /**
   * With ackMode per-message, 2-10: each subscription is a priority queue of that many levels
   * and a message's priority is the partition its producer picked (partitionsPerTopic must
   * equal it); 0 (default): no priorities.
   */
  priorityLevels: number;
  /**
   * With ackMode per-message: each message asks to be delivered no sooner than a delay drawn
   * uniformly from [0, this] ms (sluice: the `sluice-delay-ms` header); its payload is stamped
   * with its due time, so end-to-end latency is lateness. 0 (default): no delays.
   */
  deliveryDelayMsMax: number;
  /** Where it was loaded from ("<inline>" for an object). */
  source: string;
};

/** The send timestamp (float64, ms) takes the first 8 bytes of every payload. */
export const TIMESTAMP_BYTES = 8;
export const MESSAGE_BYTES_MAX = 1_000_000;
export const TOPICS_MAX = 1_000;
export const PARTITIONS_PER_TOPIC_MAX = 10_000;
export const CLIENTS_PER_TOPIC_MAX = 1_000;
export const SUBSCRIPTIONS_PER_TOPIC_MAX = 100;
export const PRODUCER_RATE_MAX = 10_000_000;
export const DURATION_SECONDS_MAX = 24 * 60 * 60;
export const PAYLOAD_POOL_SIZE_MAX = 100_000;
/** A max-rate search needs time to ramp before the measured phase (see rate_control.ts). */
export const MAX_RATE_WARMUP_SECONDS_MIN = 10;
/** OMB's default warm-up, used when a file names none. */
const WARMUP_SECONDS_DEFAULT = 60;

/** Where the named workloads live. */
export const WORKLOADS_DIR = join(dirname(fileURLToPath(import.meta.url)), "workloads");

/** A workload file that cannot be used; the message names the file, field and value. */
export class WorkloadError extends Error {
  override name = "WorkloadError";
  readonly file: string;
  readonly field: string | undefined;

  constructor(file: string, field: string | undefined, message: string) {
    super(`${file}: ${field === undefined ? "" : `${field} `}${message}`);
    this.file = file;
    this.field = field;
  }
}

const KNOWN_FIELDS = new Set([
  "name",
  "topics",
  "partitionsPerTopic",
  "messageSize",
  "payloadFile",
  "producersPerTopic",
  "subscriptionsPerTopic",
  "consumerPerSubscription",
  "producerRate",
  "testDurationMinutes",
  "testDurationSeconds",
  "warmupDurationMinutes",
  "warmupDurationSeconds",
  "keyDistributor",
  "consumerBacklogSizeGB",
  "useRandomizedPayloads",
  "randomBytesRatio",
  "randomizedPayloadPoolSize",
  "ackMode",
  "releaseRatio",
  "priorityLevels",
  "deliveryDelayMsMax",
  // OMB's backlog-drain tuning: meaningful only with consumerBacklogSizeGB > 0, accepted so
  // OMB files load, and otherwise ignored.
  "backlogDrainRatio",
]);

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "object" && value !== null) return JSON.stringify(value);
  return String(value);
}

type Fields = Record<string, unknown>;

class FieldReader {
  readonly file: string;
  readonly raw: Fields;

  constructor(file: string, raw: Fields) {
    this.file = file;
    this.raw = raw;
  }

  fail(field: string, rule: string): never {
    throw new WorkloadError(this.file, field, `= ${show(this.raw[field])} is invalid: ${rule}`);
  }

  integer(field: string, min: number, max: number, fallback?: number): number {
    const value = this.raw[field] ?? fallback;
    if (value === undefined) throw new WorkloadError(this.file, field, "is required");
    if (typeof value !== "number" || !Number.isSafeInteger(value)) {
      this.fail(field, "must be an integer");
    }
    if (value < min || value > max) this.fail(field, `must be in [${min}, ${max}]`);
    return value;
  }

  number(field: string, min: number, max: number, fallback?: number): number {
    const value = this.raw[field] ?? fallback;
    if (value === undefined) throw new WorkloadError(this.file, field, "is required");
    if (typeof value !== "number" || !Number.isFinite(value)) this.fail(field, "must be a number");
    if (value < min || value > max) this.fail(field, `must be in [${min}, ${max}]`);
    return value;
  }

  boolean(field: string, fallback: boolean): boolean {
    const value = this.raw[field] ?? fallback;
    if (typeof value !== "boolean") this.fail(field, "must be true or false");
    return value;
  }

  /** A duration given in minutes or in seconds (not both), in seconds. */
  seconds(stem: string, min: number, fallbackSeconds?: number): number {
    const minutesField = `${stem}Minutes`;
    const secondsField = `${stem}Seconds`;
    const hasMinutes = this.raw[minutesField] !== undefined;
    const hasSeconds = this.raw[secondsField] !== undefined;
    if (hasMinutes && hasSeconds) {
      throw new WorkloadError(this.file, secondsField, `cannot be given with ${minutesField}`);
    }
    if (hasMinutes) {
      return this.number(minutesField, min / 60, DURATION_SECONDS_MAX / 60) * 60;
    }
    if (!hasSeconds && fallbackSeconds === undefined) {
      throw new WorkloadError(this.file, minutesField, `(or ${secondsField}) is required`);
    }
    return this.number(secondsField, min, DURATION_SECONDS_MAX, fallbackSeconds);
  }
}

/** Validates a parsed workload document. `file` names it in errors and anchors payloadFile. */
export function validateWorkload(raw: unknown, file = "<inline>"): Workload {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new WorkloadError(file, undefined, `is not a YAML mapping of fields (got ${show(raw)})`);
  }
  const fields = raw as Fields;
  for (const field of Object.keys(fields)) {
    if (!KNOWN_FIELDS.has(field)) {
      throw new WorkloadError(file, field, "is not a workload field (a typo?)");
    }
  }
  const read: FieldReader = new FieldReader(file, fields);
  const name = fields["name"];
  if (typeof name !== "string" || name.trim().length === 0) {
    read.fail("name", "must be a non-empty string");
  }
  const workload: Workload = {
    name,
    topics: read.integer("topics", 1, TOPICS_MAX),
    partitionsPerTopic: read.integer("partitionsPerTopic", 1, PARTITIONS_PER_TOPIC_MAX),
    messageSize: read.integer("messageSize", TIMESTAMP_BYTES, MESSAGE_BYTES_MAX),
    payloadFile: undefined,
    producersPerTopic: read.integer("producersPerTopic", 1, CLIENTS_PER_TOPIC_MAX),
    subscriptionsPerTopic: read.integer("subscriptionsPerTopic", 1, SUBSCRIPTIONS_PER_TOPIC_MAX),
    consumerPerSubscription: read.integer("consumerPerSubscription", 1, CLIENTS_PER_TOPIC_MAX),
    producerRate: read.number("producerRate", 0, PRODUCER_RATE_MAX),
    testDurationSeconds: read.seconds("testDuration", 1),
    warmupDurationSeconds: read.seconds("warmupDuration", 0, WARMUP_SECONDS_DEFAULT),
    keyDistributor: keyDistributorOf(read),
    consumerBacklogSizeGB: read.number("consumerBacklogSizeGB", 0, 0, 0),
    useRandomizedPayloads: read.boolean("useRandomizedPayloads", false),
    randomBytesRatio: read.number("randomBytesRatio", 0, 1, 0),
    randomizedPayloadPoolSize: read.integer(
      "randomizedPayloadPoolSize",
      0,
      PAYLOAD_POOL_SIZE_MAX,
      0,
    ),
    ackMode: ackModeOf(read),
    releaseRatio: read.number("releaseRatio", 0, RELEASE_RATIO_MAX, 0),
    priorityLevels: read.integer("priorityLevels", 0, PRIORITY_LEVELS_MAX, 0),
    deliveryDelayMsMax: read.integer("deliveryDelayMsMax", 0, DELIVERY_DELAY_MS_MAX, 0),
    source: file,
  };
  checkRelations(read, workload);
  workload.payloadFile = payloadFileOf(read, workload);
  return workload;
}

function keyDistributorOf(read: FieldReader): KeyDistributor {
  const value = read.raw["keyDistributor"] ?? "NO_KEY";
  if (!(KEY_DISTRIBUTORS as readonly unknown[]).includes(value)) {
    read.fail("keyDistributor", `must be one of ${KEY_DISTRIBUTORS.join(", ")}`);
  }
  return value as KeyDistributor;
}

function ackModeOf(read: FieldReader): AckMode {
  const value = read.raw["ackMode"] ?? "stream";
  if (!(ACK_MODES as readonly unknown[]).includes(value)) {
    read.fail("ackMode", `must be one of ${ACK_MODES.join(", ")}`);
  }
  return value as AckMode;
}

function checkPriorities(read: FieldReader, workload: Workload): void {
  const levels = workload.priorityLevels;
  if (levels === 0) return;
  if (levels < 2) read.fail("priorityLevels", "must be 0 (none) or 2-10");
  if (workload.ackMode !== "per-message") {
    read.fail("priorityLevels", "needs ackMode: per-message (priorities are a queue's)");
  }
  if (workload.partitionsPerTopic !== levels) {
    read.fail(
      "priorityLevels",
      "must equal partitionsPerTopic (a message's partition is its priority)",
    );
  }
}

function checkRelations(read: FieldReader, workload: Workload): void {
  checkPriorities(read, workload);
  if (workload.deliveryDelayMsMax > 0 && workload.ackMode !== "per-message") {
    read.fail("deliveryDelayMsMax", "needs ackMode: per-message (delays are a queue's)");
  }
  if (workload.releaseRatio > 0 && workload.ackMode !== "per-message") {
    read.fail("releaseRatio", "needs ackMode: per-message (only a queue can release a message)");
  }
  if (workload.useRandomizedPayloads && workload.randomizedPayloadPoolSize < 1) {
    read.fail("randomizedPayloadPoolSize", "must be at least 1 with useRandomizedPayloads");
  }
  if (workload.useRandomizedPayloads && read.raw["payloadFile"] !== undefined) {
    read.fail("payloadFile", "cannot be used with useRandomizedPayloads: true");
  }
  if (workload.producerRate === 0 && workload.warmupDurationSeconds < MAX_RATE_WARMUP_SECONDS_MIN) {
    const field =
      read.raw["warmupDurationMinutes"] !== undefined
        ? "warmupDurationMinutes"
        : "warmupDurationSeconds";
    throw new WorkloadError(
      read.file,
      field,
      `= ${workload.warmupDurationSeconds} s is too short: producerRate 0 searches for the ` +
        `max rate during warm-up, which needs at least ${MAX_RATE_WARMUP_SECONDS_MIN} s`,
    );
  }
}

function payloadFileOf(read: FieldReader, workload: Workload): string | undefined {
  const value = read.raw["payloadFile"];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.length === 0) read.fail("payloadFile", "must be a path");
  const base = read.file.startsWith("<") ? process.cwd() : dirname(read.file);
  const path = isAbsolute(value) ? value : resolve(base, value);
  let sizeBytes: number;
  try {
    sizeBytes = fs.statSync(path).size;
  } catch {
    read.fail("payloadFile", `no readable file at ${path}`);
  }
  if (sizeBytes !== workload.messageSize) {
    read.fail(
      "payloadFile",
      `the file holds ${sizeBytes} bytes but messageSize is ${workload.messageSize}`,
    );
  }
  return path;
}

/** Parses YAML text; `file` names the source in errors. */
export function parseWorkload(text: string, file = "<inline>"): Workload {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (error) {
    throw new WorkloadError(file, undefined, `is not valid YAML: ${(error as Error).message}`);
  }
  return validateWorkload(raw, file);
}

/** The names of the workloads in bench/workloads/. */
export function workloadNames(): string[] {
  return fs
    .readdirSync(WORKLOADS_DIR)
    .filter((file) => file.endsWith(".yaml"))
    .map((file) => basename(file, ".yaml"))
    .sort();
}

/** Loads a workload by name (bench/workloads/NAME.yaml) or by path to a YAML file. */
export function loadWorkload(nameOrFile: string): Workload {
  const looksLikePath = nameOrFile.includes("/") || extname(nameOrFile) !== "";
  const path = looksLikePath ? resolve(nameOrFile) : join(WORKLOADS_DIR, `${nameOrFile}.yaml`);
  let text: string;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch {
    const known = looksLikePath ? "" : ` (known workloads: ${workloadNames().join(", ")})`;
    throw new WorkloadError(path, undefined, `cannot be read${known}`);
  }
  return parseWorkload(text, path);
}

/** Producers over all topics. */
export function producerCount(workload: Workload): number {
  return workload.topics * workload.producersPerTopic;
}

/** Consumers over all topics and subscriptions. */
export function consumerCount(workload: Workload): number {
  return workload.topics * workload.subscriptionsPerTopic * workload.consumerPerSubscription;
}

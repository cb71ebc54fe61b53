// Per-topic log configuration: defaults (Kafka's where Kafka has one), bounds, and validation.
// Every value arriving from a user, a file or the wire passes through `resolveLogConfig`, which
// names the offending field and value in its error.

import { assert, SluiceError } from "../record/mod.ts";

/**
 * When an append is acknowledged, and what a crash can take away:
 *   "always"       ack after fdatasync (group commit: one fsync covers every waiting batch);
 *                  survives power loss.
 *   { intervalMs } ack after the write reaches the OS page cache; fdatasync every intervalMs.
 *                  A process crash loses nothing; power loss may lose up to intervalMs.
 *   "never"        ack after the write reaches the OS page cache; the OS writes back when it
 *                  likes. A process crash loses nothing; power loss may lose recent writes.
 */
export type FsyncPolicy = "always" | "never" | { intervalMs: number };

export type LogConfig = {
  /** Roll to a new segment before one would grow past this size. Kafka: segment.bytes. */
  segmentBytes: number;
  /** Roll a segment this long after its first append. Kafka: segment.ms. */
  segmentMs: number;
  /** Bytes of log between two sparse index entries. Kafka: index.interval.bytes. */
  indexIntervalBytes: number;
  /** Delete sealed segments whose newest record is older than this; -1 keeps forever. */
  retentionMs: number;
  /** Delete oldest sealed segments while the log is larger than this; -1 for no limit. */
  retentionBytes: number;
  /** The largest batch an append accepts. Kafka: message.max.bytes. */
  maxBatchBytes: number;
  fsync: FsyncPolicy;
};

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;
const DAY_MS = 24 * 60 * 60 * 1000;

export const LOG_CONFIG_DEFAULTS: Readonly<LogConfig> = Object.freeze({
  segmentBytes: GIB,
  segmentMs: 7 * DAY_MS,
  indexIntervalBytes: 4 * KIB,
  retentionMs: 7 * DAY_MS,
  retentionBytes: -1,
  maxBatchBytes: MIB,
  // Frozen too: Object.freeze is shallow, and a caller changing the default would change it
  // for every topic created afterwards.
  fsync: Object.freeze({ intervalMs: 1000 }),
});

/** Index entries store positions as u32 and relative offsets as u32: a segment stays below. */
export const SEGMENT_BYTES_MAX = 2 ** 31 - 1;
export const SEGMENT_BYTES_MIN = 1 * KIB;
export const MAX_BATCH_BYTES_MAX = 256 * MIB;
export const FSYNC_INTERVAL_MS_MAX = DAY_MS;

assert(
  LOG_CONFIG_DEFAULTS.maxBatchBytes <= LOG_CONFIG_DEFAULTS.segmentBytes,
  "batch fits a segment",
);
assert(SEGMENT_BYTES_MAX < 2 ** 32, "segment positions fit an index entry's u32");

/** A value for an error message. Never throws: a BigInt or a cycle must not hide the error. */
function show(value: unknown): string {
  if (typeof value !== "object" || value === null) return String(value);
  try {
    return JSON.stringify(value, (_key, inner) =>
      typeof inner === "bigint" ? `${inner}n` : inner,
    );
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function invalid(field: string, value: unknown, rule: string): SluiceError {
  const shown = show(value);
  return new SluiceError("INVALID_CONFIG", `Config ${field} = ${shown} is invalid: ${rule}`, {
    field,
    value: shown,
  });
}

function integerIn(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw invalid(field, value, "must be an integer");
  }
  if (value < min || value > max) throw invalid(field, value, `must be in [${min}, ${max}]`);
  return value;
}

/** -1 means "no limit"; otherwise an integer >= 0 (0 deletes every sealed segment). */
function limitOrUnlimited(field: string, value: unknown): number {
  if (value === -1) return -1;
  if (typeof value === "number" && value < 0) {
    throw invalid(field, value, `must be -1 (no limit) or in [0, ${Number.MAX_SAFE_INTEGER}]`);
  }
  return integerIn(field, value, 0, Number.MAX_SAFE_INTEGER);
}

function resolveFsync(value: unknown): FsyncPolicy {
  if (value === "always" || value === "never") return value;
  if (typeof value === "object" && value !== null && "intervalMs" in value) {
    const keys = Object.keys(value);
    if (keys.length !== 1) throw invalid("fsync", value, "takes only { intervalMs }");
    const intervalMs = (value as { intervalMs: unknown }).intervalMs;
    return { intervalMs: integerIn("fsync.intervalMs", intervalMs, 1, FSYNC_INTERVAL_MS_MAX) };
  }
  throw invalid("fsync", value, 'must be "always", "never" or { intervalMs }');
}

const KNOWN_FIELDS = new Set(Object.keys(LOG_CONFIG_DEFAULTS));

/** The fields of a partial config that are set: an explicit `undefined` means "not given". */
export function definedFields(partial: Partial<LogConfig> | undefined): Partial<LogConfig> {
  if (typeof partial !== "object" || partial === null) return {};
  const fields: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(partial)) {
    if (value !== undefined) fields[field] = value;
  }
  return fields as Partial<LogConfig>;
}

/** Fills defaults into a partial config and validates every field and their relations. */
export function resolveLogConfig(partial: Partial<LogConfig> = {}): LogConfig {
  if (typeof partial !== "object" || partial === null) {
    throw invalid("config", partial, "must be an object");
  }
  for (const field of Object.keys(partial)) {
    if (!KNOWN_FIELDS.has(field)) throw invalid(field, "(any)", "is not a log config field");
  }
  const merged = { ...LOG_CONFIG_DEFAULTS, ...definedFields(partial) };
  // A small segmentBytes without an explicit maxBatchBytes lowers the batch limit to match.
  if (partial.maxBatchBytes === undefined && typeof merged.segmentBytes === "number") {
    merged.maxBatchBytes = Math.min(LOG_CONFIG_DEFAULTS.maxBatchBytes, merged.segmentBytes);
  }
  const config: LogConfig = {
    segmentBytes: integerIn(
      "segmentBytes",
      merged.segmentBytes,
      SEGMENT_BYTES_MIN,
      SEGMENT_BYTES_MAX,
    ),
    segmentMs: integerIn("segmentMs", merged.segmentMs, 1, Number.MAX_SAFE_INTEGER),
    indexIntervalBytes: integerIn("indexIntervalBytes", merged.indexIntervalBytes, 1, 64 * MIB),
    retentionMs: limitOrUnlimited("retentionMs", merged.retentionMs),
    retentionBytes: limitOrUnlimited("retentionBytes", merged.retentionBytes),
    maxBatchBytes: integerIn("maxBatchBytes", merged.maxBatchBytes, 61, MAX_BATCH_BYTES_MAX),
    fsync: resolveFsync(merged.fsync),
  };
  if (config.maxBatchBytes > config.segmentBytes) {
    throw invalid(
      "maxBatchBytes",
      config.maxBatchBytes,
      `must not exceed segmentBytes ${config.segmentBytes}`,
    );
  }
  return config;
}

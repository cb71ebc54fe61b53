// `sluice serve`'s settings from four places, highest first:
//
//   flag (--port 7451)  >  environment (SLUICE_PORT=7451)  >  config file  >  default
//
// The config file is `--config FILE` (or SLUICE_CONFIG), TOML when it ends in .toml, else JSON,
// with the keys of SETTINGS below. An unknown key or a value of the wrong type refuses the start
// with the key's path and the value (`config.toml: http.port: expected an integer 0 to 65535,
// got "x"`). The resolved settings are printed at startup with where each came from; keys
// named like secrets are masked there.

import fs from "node:fs";
import { homedir } from "node:os";
import { extname, join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN } from "../engine/log_config.ts";
import type { ParsedValues } from "./_args.ts";
import { UsageError } from "./_args.ts";

/** sluice's own port: not Kafka's 9092, which a Kafka listener will want. */
export const SLUICE_PORT_DEFAULT = 7450;

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";
export type PartitionSync = "auto" | "fdatasync" | "flush";

export type ServeSettings = {
  data: string;
  host: string;
  port: number;
  heartbeatIntervalMs: number | undefined;
  sessionTimeoutMs: number | undefined;
  httpPort: number | undefined;
  httpHost: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  metricsPartitionsMax: number;
  /** An fsync taking at least this long is logged as slow (a warn line). */
  slowFsyncMs: number;
  /** How the engine's group commit syncs a round (EngineOptions.partitionSync). */
  partitionSync: PartitionSync;
  /**
   * How long a QueueFetch v2 waits at most for its own acks' fdatasync before answering
   * (the server limit queueFetchAckWaitMs; 0: it answers at once; unset: the server's, 0).
   */
  queueFetchAckWaitMs: number | undefined;
  /** fdatasyncs of one queue's state log in flight (EngineOptions.queueSyncsInFlight). */
  queueSyncsInFlight: number | undefined;
  /**
   * Drop-behind (EngineOptions.dropBehind): "on" drops durable bytes behind each tail; "all"
   * also the written bytes of logs that do not sync (EngineOptions.dropBehindUnsynced).
   */
  dropBehind: "on" | "off" | "all";
  /**
   * MiB of each partition's latest durable bytes drop-behind leaves in the page cache
   * (EngineOptions.dropBehindKeepBytes; unset: the engine's default, 8 MiB).
   */
  dropBehindKeepMib: number | undefined;
  /**
   * Direct writes (EngineOptions.directWrites): "synced" writes the flush rounds that
   * fdatasync with O_DIRECT, "all" (the broker's default) also unsynced rounds over 64 KiB,
   * "off" none. The broker's fetches read cold bytes on the thread pool (engine/cold_read.ts),
   * so its consumers behind the tail cache keep their speed; the engine's own default, for
   * embedders whose reads are synchronous, stays "synced".
   */
  directWrites: "synced" | "all" | "off";
  /**
   * MiB of in-memory segment tails every log holds together (EngineOptions.tailCacheTotalBytes;
   * unset: the engine's default, 256 MiB).
   */
  tailCacheMib: number | undefined;
  /**
   * Defaults for topics created without their own (EngineOptions.topicDefaults), as Kafka's
   * log.segment.bytes, log.retention.ms and log.retention.bytes; unset: the log defaults
   * (1 GiB, 7 days, no limit).
   */
  segmentBytes: number | undefined;
  retentionMs: number | undefined;
  retentionBytes: number | undefined;
  /**
   * The GC and allocator settings (ops/gc_tuning.ts): "tuned" starts serve again in place
   * with them when the environment lacks any (ops/gc_exec.ts); "default" without them.
   */
  gc: "tuned" | "default";
  /** The token the HTTP listener requires (Bearer, or the password of Basic). */
  httpToken: string | undefined;
  // Security (README "Security") and the Kafka listener: resolved here like every setting, then
  // handed on as the flags they stand for (security_flags.ts, kafka_flags.ts check them).
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  tlsCa: string | undefined;
  tlsPort: number | undefined;
  tlsPrincipal: string | undefined;
  auth: string | undefined;
  superUsers: string | undefined;
  kafkaPort: number | undefined;
  kafkaAdvertisedHost: string | undefined;
};

export type Source = "flag" | "env" | "file" | "default";

type Kind =
  | { type: "string" }
  | { type: "int"; min: number; max: number }
  | { type: "enum"; values: readonly string[] };

type Setting = {
  key: keyof ServeSettings;
  /** The flag's name without dashes. */
  flag: string;
  env: string;
  /** The key's path in the config file, dotted ("http.port"). */
  file: string;
  kind: Kind;
  help: string;
};

const PORT: Kind = { type: "int", min: 0, max: 65_535 };
const MS: Kind = { type: "int", min: 1, max: 86_400_000 };

export const SETTINGS: readonly Setting[] = [
  {
    key: "data",
    flag: "data",
    env: "SLUICE_DATA",
    file: "data",
    kind: { type: "string" },
    help: "Data directory",
  },
  {
    key: "host",
    flag: "host",
    env: "SLUICE_HOST",
    file: "host",
    kind: { type: "string" },
    help: "Address to listen on",
  },
  {
    key: "port",
    flag: "port",
    env: "SLUICE_PORT",
    file: "port",
    kind: PORT,
    help: "TCP port, 0 picks a free one",
  },
  {
    key: "heartbeatIntervalMs",
    flag: "heartbeat-interval-ms",
    env: "SLUICE_HEARTBEAT_INTERVAL_MS",
    file: "groups.heartbeatIntervalMs",
    kind: MS,
    help: "Consumer-group heartbeat interval handed to members",
  },
  {
    key: "sessionTimeoutMs",
    flag: "session-timeout-ms",
    env: "SLUICE_SESSION_TIMEOUT_MS",
    file: "groups.sessionTimeoutMs",
    kind: MS,
    help: "Evict a group member silent this long",
  },
  {
    key: "httpPort",
    flag: "http-port",
    env: "SLUICE_HTTP_PORT",
    file: "http.port",
    kind: PORT,
    help: "HTTP port of /metrics, /healthz, /readyz and the page (0: a free one)",
  },
  {
    key: "httpHost",
    flag: "http-host",
    env: "SLUICE_HTTP_HOST",
    file: "http.host",
    kind: { type: "string" },
    help: "Address of the HTTP listener",
  },
  {
    key: "logLevel",
    flag: "log-level",
    env: "SLUICE_LOG_LEVEL",
    file: "log.level",
    kind: { type: "enum", values: ["debug", "info", "warn", "error"] },
    help: "debug, info, warn or error",
  },
  {
    key: "logFormat",
    flag: "log-format",
    env: "SLUICE_LOG_FORMAT",
    file: "log.format",
    kind: { type: "enum", values: ["text", "json"] },
    help: "text or json (one object a line)",
  },
  {
    key: "metricsPartitionsMax",
    flag: "metrics-partitions-max",
    env: "SLUICE_METRICS_PARTITIONS_MAX",
    file: "http.metricsPartitionsMax",
    kind: { type: "int", min: 0, max: 10_000_000 },
    help: "Above this many partitions, /metrics exports per-topic series only",
  },
  {
    key: "slowFsyncMs",
    flag: "slow-fsync-ms",
    env: "SLUICE_SLOW_FSYNC_MS",
    file: "log.slowFsyncMs",
    kind: MS,
    help: "Log a warning for each fsync that takes at least this long",
  },
  {
    key: "partitionSync",
    flag: "partition-sync",
    env: "SLUICE_PARTITION_SYNC",
    file: "storage.partitionSync",
    kind: { type: "enum", values: ["auto", "fdatasync", "flush"] },
    help:
      "auto (one syncfs per group-commit round where cheaper), fdatasync (log by log) or " +
      "flush (one syncfs every round where reachable)",
  },
  {
    key: "queueFetchAckWaitMs",
    flag: "queue-fetch-ack-wait-ms",
    env: "SLUICE_QUEUE_FETCH_ACK_WAIT_MS",
    file: "queues.fetchAckWaitMs",
    kind: { type: "int", min: 0, max: 1_000 },
    help:
      "A queue fetch carrying acks waits this long at most for their fdatasync, so that its " +
      "answer confirms them (0: answer at once)",
  },
  {
    key: "queueSyncsInFlight",
    flag: "queue-syncs-in-flight",
    env: "SLUICE_QUEUE_SYNCS_IN_FLIGHT",
    file: "queues.syncsInFlight",
    kind: { type: "int", min: 1, max: 8 },
    help: "fdatasyncs of one queue's state log in flight at once (1: serial)",
  },
  {
    key: "dropBehind",
    flag: "drop-behind",
    env: "SLUICE_DROP_BEHIND",
    file: "storage.dropBehind",
    kind: { type: "enum", values: ["on", "off", "all"] },
    help:
      "on: durable log bytes older than each partition's last 8 MiB leave the page cache; " +
      "all: also the bytes of logs that do not sync (fsync never/interval)",
  },
  {
    key: "directWrites",
    flag: "direct-writes",
    env: "SLUICE_DIRECT_WRITES",
    file: "storage.directWrites",
    kind: { type: "enum", values: ["synced", "all", "off"] },
    help:
      "synced: flush rounds that fdatasync are written with O_DIRECT from aligned buffers, " +
      "not through the page cache (Bun on Linux, where the file system takes it); all: also " +
      "rounds that do not sync, when over 64 KiB, and fetches of bytes not in the page cache " +
      "read them on the thread pool first; off: every round buffered (default all)",
  },
  {
    key: "dropBehindKeepMib",
    flag: "drop-behind-keep-mib",
    env: "SLUICE_DROP_BEHIND_KEEP_MIB",
    file: "storage.dropBehindKeepMib",
    kind: { type: "int", min: 0, max: 1_048_576 },
    help:
      "MiB of each partition's latest durable bytes that drop-behind leaves in the page cache " +
      "(default 8)",
  },
  {
    key: "tailCacheMib",
    flag: "tail-cache-mib",
    env: "SLUICE_TAIL_CACHE_MIB",
    file: "storage.tailCacheMib",
    kind: { type: "int", min: 1, max: 1_048_576 },
    help:
      "MiB of written log tails kept in memory for readers at the tail, over all partitions " +
      "(default 256); past it the logs appended to least recently give theirs back",
  },
  {
    key: "segmentBytes",
    flag: "segment-bytes",
    env: "SLUICE_SEGMENT_BYTES",
    file: "topics.segmentBytes",
    kind: { type: "int", min: SEGMENT_BYTES_MIN, max: SEGMENT_BYTES_MAX },
    help:
      "bytes a segment of a topic created without its own segmentBytes grows to before the " +
      "next one starts (Kafka's log.segment.bytes; default 1 GiB)",
  },
  {
    key: "retentionMs",
    flag: "retention-ms",
    env: "SLUICE_RETENTION_MS",
    file: "topics.retentionMs",
    kind: { type: "int", min: -1, max: Number.MAX_SAFE_INTEGER },
    help:
      "ms a sealed segment of a topic created without its own retentionMs is kept after its " +
      "newest record; -1 keeps it (Kafka's log.retention.ms; default 7 days)",
  },
  {
    key: "retentionBytes",
    flag: "retention-bytes",
    env: "SLUICE_RETENTION_BYTES",
    file: "topics.retentionBytes",
    kind: { type: "int", min: -1, max: Number.MAX_SAFE_INTEGER },
    help:
      "bytes a partition of a topic created without its own retentionBytes keeps, oldest " +
      "sealed segments deleted first; -1: no limit (Kafka's log.retention.bytes; the default)",
  },
  {
    key: "gc",
    flag: "gc",
    env: "SLUICE_GC",
    file: "runtime.gc",
    kind: { type: "enum", values: ["tuned", "default"] },
    help:
      "tuned: serve runs under sluice's GC and allocator settings, starting itself again in " +
      "place with them when the environment lacks any (Bun on Linux); default: the runtime's own",
  },
  ...passThrough("httpToken", "http-token", "http.token", { type: "string" }),
  ...passThrough("tlsCert", "tls-cert", "tls.cert", { type: "string" }),
  ...passThrough("tlsKey", "tls-key", "tls.key", { type: "string" }),
  ...passThrough("tlsCa", "tls-ca", "tls.ca", { type: "string" }),
  ...passThrough("tlsPort", "tls-port", "tls.port", PORT),
  ...passThrough("tlsPrincipal", "tls-principal", "tls.principal", {
    type: "enum",
    values: ["cn", "dn"],
  }),
  ...passThrough("auth", "auth", "security.auth", { type: "string" }),
  ...passThrough("superUsers", "super-users", "security.superUsers", { type: "string" }),
  ...passThrough("kafkaPort", "kafka-port", "kafka.port", PORT),
  ...passThrough("kafkaAdvertisedHost", "kafka-advertised-host", "kafka.advertisedHost", {
    type: "string",
  }),
];

/** A setting whose flag another module reads (its help is that flag's). */
function passThrough(key: keyof ServeSettings, flag: string, file: string, kind: Kind): Setting[] {
  const env = `SLUICE_${flag.toUpperCase().replaceAll("-", "_")}`;
  return [{ key, flag, env, file, kind, help: `--${flag}` }];
}

/**
 * The command's flags with every pass-through setting that came from the environment or the
 * config file filled in as its flag, so the modules that read those flags see one source.
 */
export function flagsWithSettings(values: ParsedValues, resolved: Resolved): ParsedValues {
  const out: ParsedValues = { ...values };
  for (const setting of SETTINGS) {
    if (setting.help !== `--${setting.flag}`) continue;
    const value = resolved.settings[setting.key];
    if (value !== undefined && out[setting.flag] === undefined) out[setting.flag] = String(value);
  }
  return out;
}

/** `$XDG_DATA_HOME/sluice`, or `~/.local/share/sluice`: outside any checkout. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env["XDG_DATA_HOME"];
  const base = xdg !== undefined && xdg !== "" ? xdg : join(homedir(), ".local", "share");
  return join(base, "sluice");
}

function defaults(env: NodeJS.ProcessEnv): ServeSettings {
  return {
    data: defaultDataDir(env),
    host: "127.0.0.1",
    port: SLUICE_PORT_DEFAULT,
    heartbeatIntervalMs: undefined,
    sessionTimeoutMs: undefined,
    httpPort: undefined,
    httpHost: "127.0.0.1",
    logLevel: "info",
    logFormat: "text",
    metricsPartitionsMax: 1000,
    slowFsyncMs: 500,
    partitionSync: "auto",
    queueFetchAckWaitMs: undefined,
    queueSyncsInFlight: undefined,
    dropBehind: "on",
    dropBehindKeepMib: undefined,
    directWrites: "all",
    tailCacheMib: undefined,
    segmentBytes: undefined,
    retentionMs: undefined,
    retentionBytes: undefined,
    gc: "tuned",
    httpToken: undefined,
    tlsCert: undefined,
    tlsKey: undefined,
    tlsCa: undefined,
    tlsPort: undefined,
    tlsPrincipal: undefined,
    auth: undefined,
    superUsers: undefined,
    kafkaPort: undefined,
    kafkaAdvertisedHost: undefined,
  };
}

/** What `value` means for `kind`, or a message saying what was expected. */
function convert(kind: Kind, value: unknown): { value: string | number } | { expected: string } {
  if (kind.type === "string") {
    return typeof value === "string" && value !== "" ? { value } : { expected: "a string" };
  }
  if (kind.type === "enum") {
    return typeof value === "string" && kind.values.includes(value)
      ? { value }
      : { expected: `one of ${kind.values.join(", ")}` };
  }
  const number = typeof value === "string" && /^-?\d+$/.test(value) ? Number(value) : value;
  const expected = `an integer ${kind.min} to ${kind.max}`;
  if (typeof number !== "number" || !Number.isSafeInteger(number)) return { expected };
  return number >= kind.min && number <= kind.max ? { value: number } : { expected };
}

/** Flattens a parsed config file to dotted paths, refusing what is not a table or a value. */
function flatten(table: Record<string, unknown>, prefix: string, into: Map<string, unknown>): void {
  for (const [name, value] of Object.entries(table)) {
    const path = prefix === "" ? name : `${prefix}.${name}`;
    const isTable = typeof value === "object" && value !== null && !Array.isArray(value);
    if (isTable && !(value instanceof Date)) {
      flatten(value as Record<string, unknown>, path, into);
    } else {
      into.set(path, value);
    }
  }
}

/** Reads and checks a config file: every key known, every value of its type. */
export function readConfigFile(path: string): Map<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`--config ${path}: cannot read it: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = extname(path) === ".toml" ? parseToml(text) : JSON.parse(text);
  } catch (error) {
    const firstLine = (error as Error).message.split("\n")[0];
    throw new UsageError(
      `--config ${path}: not valid ${extname(path) === ".toml" ? "TOML" : "JSON"}: ${firstLine}`,
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`--config ${path}: expected a table of settings at the top`);
  }
  const values = new Map<string, unknown>();
  flatten(parsed as Record<string, unknown>, "", values);
  const known = new Set(SETTINGS.map((setting) => setting.file));
  for (const key of values.keys()) {
    if (!known.has(key)) {
      throw new UsageError(
        `--config ${path}: unknown key '${key}' (known: ${[...known].join(", ")})`,
      );
    }
  }
  return values;
}

export type Resolved = { settings: ServeSettings; sources: Record<keyof ServeSettings, Source> };

/** Resolves every setting: flag > environment > config file > default. */
export function resolveServeSettings(
  values: ParsedValues,
  env: NodeJS.ProcessEnv = process.env,
): Resolved {
  const settings = defaults(env);
  const sources = Object.fromEntries(
    SETTINGS.map((s) => [s.key, "default"]),
  ) as Resolved["sources"];
  const configFlag = values["config"];
  const configPath = typeof configFlag === "string" ? configFlag : env["SLUICE_CONFIG"];
  const file = configPath === undefined ? new Map<string, unknown>() : readConfigFile(configPath);
  const record = settings as Record<string, unknown>;
  for (const setting of SETTINGS) {
    const flag = values[setting.flag];
    const fromEnv = env[setting.env];
    const [source, raw, where] =
      typeof flag === "string"
        ? (["flag", flag, `--${setting.flag}`] as const)
        : fromEnv !== undefined
          ? (["env", fromEnv, setting.env] as const)
          : file.has(setting.file)
            ? (["file", file.get(setting.file), `--config ${configPath}: ${setting.file}`] as const)
            : (["default", undefined, ""] as const);
    if (source === "default") continue;
    const converted = convert(setting.kind, raw);
    if ("expected" in converted) {
      throw new UsageError(`${where}: expected ${converted.expected}, got ${JSON.stringify(raw)}`);
    }
    record[setting.key] = converted.value;
    sources[setting.key] = source;
  }
  return { settings, sources };
}

const SECRET = /password|secret|token|key/i;

/** `key=value (source)` pairs for the startup line; secret-looking keys are masked. */
export function describeSettings(resolved: Resolved): Record<string, string> {
  const out: Record<string, string> = {};
  for (const setting of SETTINGS) {
    const value = resolved.settings[setting.key];
    if (value === undefined) continue;
    const shown = SECRET.test(setting.key) ? "****" : String(value);
    out[setting.key] = `${shown} (${resolved.sources[setting.key]})`;
  }
  return out;
}

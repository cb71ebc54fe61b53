// `sluice serve`: resolves its settings (flag > env > config file > default, ./serve_config.ts),
// opens the data directory, starts the native listener and, with --http-port, the HTTP one
// (/metrics, /healthz, /readyz and the management page, ../ops/http.ts), then runs until
// SIGINT or SIGTERM. Logs (../ops/log.ts) go to standard error; standard output keeps the
// `http listening on HOST:PORT` and, last, `sluice listening on HOST:PORT` lines of
// INTERFACES.md.

import fs from "node:fs";
import { type LogConfig, resolveLogConfig } from "../engine/log_config.ts";
import type { OpsHttp } from "../ops/http.ts";
import type { ServerEvent } from "../protocol/mod.ts";
import { execUnderGcMode } from "../ops/gc_exec.ts";
import { describeGc } from "../ops/gc_tuning.ts";
import { Logger } from "../ops/log.ts";
import { type ParsedValues, UsageError } from "./_args.ts";
import {
  describeSettings,
  flagsWithSettings,
  type Resolved,
  resolveServeSettings,
  type ServeSettings,
} from "./serve_config.ts";
import { kafkaOption } from "./kafka_flags.ts";
import { serveSecurity } from "./security_flags.ts";

/**
 * The topic defaults the settings give (EngineOptions.topicDefaults), checked as a topic's
 * config is: an invalid one is a usage error naming the setting and its value.
 */
function topicDefaults(settings: ServeSettings): Partial<LogConfig> {
  const defaults: Partial<LogConfig> = {};
  if (settings.segmentBytes !== undefined) defaults.segmentBytes = settings.segmentBytes;
  if (settings.retentionMs !== undefined) defaults.retentionMs = settings.retentionMs;
  if (settings.retentionBytes !== undefined) defaults.retentionBytes = settings.retentionBytes;
  try {
    resolveLogConfig(defaults);
  } catch (error) {
    throw new UsageError(
      `topic defaults (--segment-bytes, --retention-ms, --retention-bytes): ${
        error instanceof Error ? error.message : String(error)
      }`,
    );
  }
  return defaults;
}

/** What a failed listen means, from the error's code (Bun and Node both set it). */
function listenReason(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (code === "EADDRINUSE") return "the port is in use (another process listens there)";
  if (code === "EACCES") return "permission denied (ports below 1024 need privileges)";
  if (code === "EADDRNOTAVAIL") return "no network interface has that address";
  return (error as Error).message;
}

/** Thrown when a listener cannot start: names the listener, host, port and reason. */
export class ListenError extends Error {
  override name = "ListenError";
}

export function listenError(what: string, host: string, port: number, error: unknown): Error {
  const message = `cannot listen for ${what} on ${host}:${port}: ${listenReason(error)}`;
  return new ListenError(message, { cause: error });
}

function makeLogger(resolved: Resolved): Logger {
  return new Logger({ level: resolved.settings.logLevel, format: resolved.settings.logFormat });
}

/** Runs the broker until SIGINT or SIGTERM, then shuts it down cleanly. */
export async function serve(values: ParsedValues): Promise<number> {
  const resolved = resolveServeSettings(values);
  const { settings } = resolved;
  // First, before anything is opened: returns only when serve does not start itself again.
  const gcExec = await execUnderGcMode(settings.gc);
  // TLS and authentication come from flags only (README "Security"); checked before opening.
  const flags = flagsWithSettings(values, resolved);
  const security = serveSecurity(flags);
  const kafka = await kafkaOption(flags);
  if (security.security !== undefined && settings.httpPort !== undefined) {
    if (settings.httpToken === undefined) {
      throw new UsageError(
        "with authentication on, the HTTP port needs a token: --http-token (or " +
          "SLUICE_HTTP_TOKEN, or http.token in the config file)",
      );
    }
  }
  const httpTls = httpTlsOf(flags, security.tls, settings.httpPort);
  // Refused here, naming the setting, rather than at the first topic created.
  const defaults = topicDefaults(settings);
  const log = makeLogger(resolved);
  log.info("starting", describeSettings(resolved));
  // JavaScriptCore's GC options come from the environment at start (README "GC settings").
  if ((process.versions as Record<string, string | undefined>)["bun"] !== undefined) {
    const fields = { asked: settings.gc, ...describeGc(process.env) };
    if (gcExec.outcome === "failed" || gcExec.outcome === "no-ffi") {
      log.warn("gc", { ...fields, exec: gcExec.outcome, errno: String(gcExec.errno ?? "") });
    } else log.info("gc", fields);
  }
  const { Engine } = await import("../engine/mod.ts");
  const { SluiceServer } = await import("../protocol/mod.ts");
  fs.mkdirSync(settings.data, { recursive: true });
  const openedAtMs = performance.now();
  const engine = await Engine.open(settings.data, {
    topicDefaults: defaults,
    onWarning: (message) => log.warn("recovery", { detail: message }),
    slowFsyncMs: settings.slowFsyncMs,
    partitionSync: settings.partitionSync,
    ...(settings.queueSyncsInFlight === undefined
      ? {}
      : { queueSyncsInFlight: settings.queueSyncsInFlight }),
    dropBehind: settings.dropBehind !== "off",
    dropBehindUnsynced: settings.dropBehind === "all",
    directWrites: settings.directWrites === "all" ? "all" : settings.directWrites !== "off",
    ...(settings.dropBehindKeepMib === undefined
      ? {}
      : { dropBehindKeepBytes: settings.dropBehindKeepMib * 1024 * 1024 }),
    ...(settings.tailCacheMib === undefined
      ? {}
      : { tailCacheTotalBytes: settings.tailCacheMib * 1024 * 1024 }),
    onSlowFsync: (event) => logSlowFsync(log, event),
  });
  const topics = engine.listTopics();
  log.info("recovered", {
    data: settings.data,
    topics: topics.length,
    partitions: topics.reduce((sum, topic) => sum + topic.partitions, 0),
    ms: Math.round(performance.now() - openedAtMs),
  });
  const stopHttp = await startHttp(settings, engine, log, httpTls);
  let server: Awaited<ReturnType<typeof SluiceServer.start>>;
  try {
    server = await SluiceServer.start({
      engine,
      host: settings.host,
      port: settings.port,
      log: (message) => log.warn(message),
      onEvent: (event) => logServerEvent(log, event),
      ...(settings.queueFetchAckWaitMs === undefined
        ? {}
        : { limits: { queueFetchAckWaitMs: settings.queueFetchAckWaitMs } }),
      ...(settings.heartbeatIntervalMs === undefined
        ? {}
        : { heartbeatIntervalMs: settings.heartbeatIntervalMs }),
      ...(settings.sessionTimeoutMs === undefined
        ? {}
        : { sessionTimeoutMs: settings.sessionTimeoutMs }),
      ...security,
      ...kafka,
    });
  } catch (error) {
    await stopHttp?.close();
    await engine.close();
    throw listenError("sluice clients", settings.host, settings.port, error);
  }
  stopHttp?.ready(server);
  const { TopicWatch } = await import("../ops/topic_watch.ts");
  const watch = new TopicWatch(engine, log);
  watch.start();
  // The handlers go in before the listening lines: a supervisor (or a test) may signal as soon
  // as it reads them, and a SIGTERM before the handlers would end the process uncleanly.
  const signalled = untilSignal(log);
  log.info("listening", { host: server.host, port: server.port });
  if (server.kafka !== undefined) {
    log.info("kafka listening", { port: server.kafka.port, tls: server.kafka.tls });
    console.log(`kafka listening on ${server.kafka.host}:${server.kafka.port}`);
  }
  if (server.tlsPort !== undefined) {
    console.log(`sluice-tls listening on ${server.host}:${server.tlsPort}`);
  }
  console.log(`sluice listening on ${server.host}:${server.port}`);
  const signal = await signalled;
  log.info(`${signal} received, shutting down`);
  watch.stop();
  await stopHttp?.close();
  await server.close();
  await engine.close();
  log.info("stopped", { signal });
  return 0;
}

/** `--http-tls`: the HTTP listener speaks HTTPS with the native listener's certificate. */
function httpTlsOf(
  flags: ParsedValues,
  tls: { certFile: string; keyFile: string } | undefined,
  httpPort: number | undefined,
): { cert: string; key: string } | undefined {
  if (flags["http-tls"] !== true) return undefined;
  if (tls === undefined) throw new UsageError("--http-tls needs --tls-cert and --tls-key");
  if (httpPort === undefined) throw new UsageError("--http-tls needs --http-port");
  return { cert: fs.readFileSync(tls.certFile, "utf8"), key: fs.readFileSync(tls.keyFile, "utf8") };
}

/** `warn  slow fsync log=orders-0 ms=812 thresholdMs=500`: one line per slow fdatasync. */
export function logSlowFsync(
  log: Logger,
  event: { log: string; ms: number; slowFsyncMs: number },
): void {
  log.warn("slow fsync", { log: event.log, ms: event.ms, thresholdMs: event.slowFsyncMs });
}

/**
 * One line per group membership change (info; a fenced member is a warn) and per producer
 * fenced by a newer epoch (warn):
 *
 *   info  group member joined group=billing member=Yx3… generation=4 members=2
 *   info  group rebalanced group=legacy generation=5 members=2 protocol=classic
 *   warn  producer fenced topic=orders partition=0 detail="Producer 7 epoch 0 is older …"
 */
export function logServerEvent(log: Logger, event: ServerEvent): void {
  if (event.type === "producerFenced") {
    log.warn("producer fenced", {
      topic: event.topic,
      partition: event.partition,
      detail: event.message ?? undefined,
    });
    return;
  }
  const classic = event.type === "classicGroup";
  const msg = event.kind === "rebalanced" ? "group rebalanced" : `group member ${event.kind}`;
  log.log(event.kind === "fenced" ? "warn" : "info", msg, {
    group: event.groupId,
    member: event.memberId === "" ? undefined : event.memberId,
    generation: event.groupEpoch,
    members: event.members,
    protocol: classic ? "classic" : undefined,
  });
}

async function startHttp(
  settings: Resolved["settings"],
  engine: import("../engine/mod.ts").Engine,
  log: Logger,
  tls: { cert: string; key: string } | undefined,
): Promise<OpsHttp | undefined> {
  if (settings.httpPort === undefined) return undefined;
  const { startOpsHttp } = await import("../ops/http.ts");
  try {
    const http = await startOpsHttp({
      host: settings.httpHost,
      port: settings.httpPort,
      engine,
      metricsPartitionsMax: settings.metricsPartitionsMax,
      ...(settings.httpToken === undefined ? {} : { token: settings.httpToken }),
      ...(tls === undefined ? {} : { tls }),
      log,
    });
    log.info("http listening", { host: http.host, port: http.port, tls: http.tls });
    console.log(`http listening on ${http.host}:${http.port}`);
    return http;
  } catch (error) {
    await engine.close();
    throw listenError("HTTP", settings.httpHost, settings.httpPort, error);
  }
}

/**
 * Resolves with the first SIGINT or SIGTERM. The handlers stay installed for the whole
 * shutdown: a second signal (a service manager signalling the whole process group, a launcher
 * passing one on) must not kill the process half-way through a clean close.
 */
function untilSignal(log: Logger): Promise<string> {
  let stopping = false;
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      if (stopping) {
        log.warn("signal received again; still shutting down cleanly", { signal });
        return;
      }
      stopping = true;
      resolve(signal);
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  });
}

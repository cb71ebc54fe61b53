// sluice: the broker over TCP, through the TypeScript client (protocol/client/mod.ts). Without
// `--sluice-url host:port` it starts `sluice serve` as a child process on a fresh data
// directory and a free port: a process of its own, as the peer brokers run, so the broker and
// the harness each get a core. `server=in-process` runs it inside the harness instead.
//
// A producer is one client Producer; a subscription is a consumer group, so the consumers of
// one subscription share the topic's partitions (broker-side assignment) and each
// subscription reads the topic from its start. With worker processes, the coordinator's
// instance starts the server and creates topics; each worker's instance connects to it
// (workerOptions gives the address) and makes its own clients.
//
// Options (`--driver-options key=value,...`, or `sluice.key=value` for this driver only):
//   url=host:port             a running server (what --sluice-url sets)
//   metricsUrl=<http URL>     that server's /metrics, for its fdatasync figures over the
//                             measured phase (fsyncP50Ms/fsyncP99Ms); a server the driver
//                             starts is read without it (`--http-port 0`, or in-process)
//   server=process|in-process where a server it starts runs (default process)
//   acks=0|1|all              producer acks (default 1: written to the page cache)
//   fsync=always|never|<ms>   the fsync policy of the topics it creates (default: server's)
//   partitionSync=auto|fdatasync|flush
//                             a server it starts: how group-commit rounds are made durable
//                             (`serve --partition-sync`; default auto). flush: one syncfs
//                             per round, one journal commit for every partition it covers
//   dropBehind=on|off         a server it starts: whether durable log bytes older than each
//                             partition's last 8 MiB leave the page cache after a synced
//                             round (`serve --drop-behind`; default on)
//   gc=tuned|default          a server process it starts: under sluice's GC and allocator
//                             settings (ops/gc_tuning.ts, as bench:tcp and the Docker image
//                             run it) or the runtime's own (default: serve's own, tuned,
//                             unless the environment says SLUICE_GC=default)
//   lingerMs=<n>              producer linger (default 1; 5 in per-message mode). Keyless
//                             records go to a sticky partition that moves on with each
//                             sealed batch, so over many
//                             partitions each batch is a partition touched on the server (a
//                             write, and with acks=all an fdatasync): a longer linger (5) makes
//                             fewer of them per message. `npm run bench:partitions` compares
//                             1 and 5 at 1,000 partitions.
//   batchBytes=<n>            producer batch size (default 1 MiB)
//   queueMaxRecords=<n>       per-message mode: records one queue fetch acquires (default 1000)
//   queueAckFlushMs=<n>       per-message mode: answers sent together within (default 1)
//   queuePiggybackAcks=<0|1>  per-message mode: answers ride in fetches while the queue keeps up
//                             (default 1)
//   queueFetchesInFlight=<n>  per-message mode: QueueFetch requests outstanding per consumer
//                             (default 1: a second one measured no faster on a loaded machine)
//   queueFetchAckWaitMs=<n>   a server it starts: how long a QueueFetch v2 carrying acks waits
//                             at most for their fdatasync (`serve --queue-fetch-ack-wait-ms`;
//                             default the server's, 0: answers at once)
//   queueSyncsInFlight=<n>    a server it starts: fdatasyncs of a queue's state log in flight
//                             (`serve --queue-syncs-in-flight`; default the engine's, 4)
//   queueFetchIntervalMs=<n>  per-message mode: while the queue keeps up, a consumer's fetches
//                             go out at most this often (default 0: at once). With
//                             queueAckFlushMs at least as long, answers ride in the paced
//                             fetches: fewer requests per record, up to n ms more ack latency
//
// With the workload's `ackMode: per-message` a subscription is a queue and its consumers are
// QueueConsumers (./sluice_queue.ts), and producers default to acks all.
//   tls=true                  TLS (PROTOCOL.md 11.1): a server it starts gets a throwaway CA
//                             and certificate made with openssl; an external one needs
//                             tlsCaFile=<PEM file>
//   sasl=scram-sha-256|scram-sha-512|plain
//                             authenticate (a server it starts gets --auth scram,plain and the
//                             user as superuser); user=<name> password=<text> (default
//                             bench / sluice-bench)

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SYNCS_IN_FLIGHT_DEFAULT } from "../../engine/queue_state_log.ts";
import { type GcMode, gcEnvironment, gcModeHolds } from "../../ops/gc_tuning.ts";
import {
  type FsyncPolicy,
  LOG_CONFIG_DEFAULTS,
  PARTITION_SYNCS,
  type PartitionSync,
} from "../../engine/mod.ts";
import { type DiskSyncReading, parseDiskSyncs } from "../disk_syncs.ts";
import {
  Admin,
  type ClientOptions,
  Consumer,
  Producer,
  type ProducerOptions,
  type ProducerRecord,
} from "../../protocol/client/mod.ts";
import { makeScramCredential } from "../../protocol/codec/scram.ts";
import type { SaslMechanism } from "../../protocol/codec/sasl.ts";
import { emptySecurityState, saveSecurityState, SluiceServer } from "../../protocol/server/mod.ts";
import { makeBenchCerts } from "../tcp/certs.ts";
import packageJson from "../../package.json" with { type: "json" };
import { brokerScript, type Child, startChild } from "../tcp/processes.ts";
import {
  type AckingHandlers,
  type BenchConsumer,
  type BenchProducer,
  type BrokerProcess,
  type ConsumerPlacement,
  type Driver,
  type DriverConfig,
  type DriverFactory,
  type DriverSettings,
  DriverUnavailableError,
  type MessageCallback,
  type SubscriptionCounts,
} from "../driver.ts";
import { describeFsync, fsyncOption, integerOption } from "./options.ts";
import {
  createQueueConsumer,
  declareSubscriptionQueue,
  type QueueModeOptions,
  queueCounts,
  priorityLevelsSetting,
  delayPathSetting,
  queueModeSettings,
} from "./sluice_queue.ts";

export const LINGER_MS_DEFAULT = 1;
/**
 * The producers' linger in per-message mode (Kafka 4's linger.ms default): with acks all each
 * produce request is answered after a sync round, so fewer, fuller requests cut requests,
 * answers and sync rounds per record. bench/tools/queue_cpu.ts at 15,000/s, 4 alternated pairs
 * (loaded): produce requests per record 0.34-0.43x, CPU per accepted record over broker,
 * producers and consumers 0.79-0.95x (median 0.87x) of lingerMs 1.
 */
export const QUEUE_LINGER_MS_DEFAULT = 5;
export const BATCH_BYTES_DEFAULT = 1024 * 1024;
/** How long a consumer's poll waits for records before looking again. */
const POLL_WAIT_MS = 100;
/** The longest createConsumer waits for the group to give the new consumer partitions. */
const ASSIGNMENT_WAIT_MS = 30_000;
const ASSIGNMENT_CHECK_MS = 10;
/**
 * The heartbeat interval the in-process server hands consumers. A partition moves to a
 * joining consumer at its previous owner's next heartbeat, so the default 3 s would make
 * setting up a subscription of several consumers take seconds; the data path is unaffected.
 */
export const HEARTBEAT_INTERVAL_MS = 250;
/** How long one read of the broker's /metrics may take before the figures are left unknown. */
const METRICS_TIMEOUT_MS = 5_000;

export const createDriver: DriverFactory = (config) => new SluiceTcpDriver(config);

type Acks = 0 | 1 | "all";

type Settings = {
  url: string | undefined;
  metricsUrl: string | undefined;
  acks: Acks;
  fsync: FsyncPolicy | undefined;
  /** How a server the driver starts makes group-commit rounds durable (its default: auto). */
  partitionSync: PartitionSync | undefined;
  /** A server the driver starts: its queueFetchAckWaitMs limit (undefined: its default). */
  fetchAckWaitMs: number | undefined;
  /** A server the driver starts: its engine's queueSyncsInFlight (undefined: its default). */
  syncsInFlight: number | undefined;
  /** Drop-behind of a server the driver starts (its default: on). */
  dropBehind: "on" | "off" | undefined;
  /** A server process the driver starts: its GC settings (undefined: the environment's). */
  gc: GcMode | undefined;
  lingerMs: number;
  batchBytes: number;
  /** Set with the workload's ackMode per-message. */
  queue: QueueModeOptions | undefined;
  tls: boolean;
  tlsCaFile: string | undefined;
  sasl: SaslMechanism | undefined;
  user: string;
  password: string;
};

function saslOption(text: string | undefined): SaslMechanism | undefined {
  if (text === undefined) return undefined;
  const mechanism = text.toUpperCase();
  if (mechanism === "SCRAM-SHA-256" || mechanism === "SCRAM-SHA-512" || mechanism === "PLAIN") {
    return mechanism;
  }
  throw new RangeError(`driver option sasl=${text} must be scram-sha-256, scram-sha-512 or plain`);
}

function tlsOption(text: string | undefined): boolean {
  if (text === undefined || text === "false") return false;
  if (text === "true") return true;
  throw new RangeError(`driver option tls=${text} must be true or false`);
}

function acksOption(text: string | undefined, fallback: Acks): Acks {
  if (text === undefined) return fallback;
  if (text === "0" || text === "1") return Number(text) as 0 | 1;
  if (text === "all" || text === "-1") return "all";
  throw new RangeError(`driver option acks=${text} must be 0, 1 or all`);
}

function dropBehindOption(text: string | undefined): "on" | "off" | undefined {
  if (text === undefined || text === "on" || text === "off") return text;
  throw new RangeError(`driver option dropBehind=${text} must be on or off`);
}

function gcOption(text: string | undefined): GcMode | undefined {
  if (text === undefined || text === "tuned" || text === "default") return text;
  throw new RangeError(`driver option gc=${text} must be tuned or default`);
}

function partitionSyncOption(text: string | undefined): PartitionSync | undefined {
  if (text === undefined) return undefined;
  const mode = PARTITION_SYNCS.find((known) => known === text);
  if (mode === undefined) {
    throw new RangeError(`driver option partitionSync=${text} must be auto, fdatasync or flush`);
  }
  return mode;
}

function metricsUrlOption(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  if (!/^https?:\/\/[^/\s]+/.test(text)) {
    throw new RangeError(`driver option metricsUrl=${text} is not an http(s) URL`);
  }
  return text;
}

function parseUrl(url: string): { host: string; port: number } {
  const at = url.lastIndexOf(":");
  const host = url.slice(0, at).replace(/^\[|\]$/g, "");
  const port = Number(url.slice(at + 1));
  if (at < 1 || host.length === 0 || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new RangeError(`sluice url '${url}' is not host:port`);
  }
  return { host, port };
}

export class SluiceTcpDriver implements Driver {
  readonly name = "sluice";
  #config: DriverConfig;
  #settings: Settings;
  #server: SluiceServer | undefined;
  #child: Child | undefined;
  /** Where the broker's /metrics is read (a child's HTTP port, or metricsUrl). */
  #metricsUrl: string | undefined;
  #client: ClientOptions = {};
  #admin: Admin | undefined;
  #partitions = new Map<string, number>();
  #members = new Map<string, number>();

  constructor(config: DriverConfig) {
    this.#config = config;
    const { options } = config;
    const url = options["url"];
    if (url !== undefined) parseUrl(url);
    const perMessage = config.ackMode === "per-message";
    this.#settings = {
      url,
      metricsUrl: metricsUrlOption(options["metricsUrl"]),
      acks: acksOption(options["acks"], perMessage ? "all" : 1),
      fsync: options["fsync"] === undefined ? undefined : fsyncOption(options, "fsync", "never"),
      partitionSync: partitionSyncOption(options["partitionSync"]),
      fetchAckWaitMs:
        options["queueFetchAckWaitMs"] === undefined
          ? undefined
          : integerOption(options, "queueFetchAckWaitMs", 0, 0, 1_000),
      syncsInFlight:
        options["queueSyncsInFlight"] === undefined
          ? undefined
          : integerOption(options, "queueSyncsInFlight", 2, 1, 8),
      dropBehind: dropBehindOption(options["dropBehind"]),
      gc: gcOption(options["gc"]),
      lingerMs: integerOption(
        options,
        "lingerMs",
        perMessage ? QUEUE_LINGER_MS_DEFAULT : LINGER_MS_DEFAULT,
        0,
        60_000,
      ),
      batchBytes: integerOption(options, "batchBytes", BATCH_BYTES_DEFAULT, 1024, 256 << 20),
      queue: perMessage
        ? {
            // 1,000 (the queue's prefetch) rather than 250: under a backlog a fetch comes back
            // full, and a fetch and its answer cost about the same whatever they carry.
            // bench/tools/queue_drain.ts (100,000 records, 3 alternated pairs, loaded): CPU
            // per accepted record client 0.78-0.88x, broker 0.71-0.79x, socket writes per
            // record 0.27x; accepted/s 0.86-1.58x. While the queue keeps up a fetch carries
            // what is there, whatever the limit. (250 had measured 1.30x faster than 100.)
            maxRecords: integerOption(options, "queueMaxRecords", 1_000, 1, 10_000),
            ackFlushMs: integerOption(options, "queueAckFlushMs", 1, 0, 1_000),
            fetchesInFlight: integerOption(options, "queueFetchesInFlight", 1, 1, 16),
            piggybackAcks: integerOption(options, "queuePiggybackAcks", 1, 0, 1) === 1,
            fetchIntervalMs: integerOption(options, "queueFetchIntervalMs", 0, 0, 1_000),
          }
        : undefined,
      tls: tlsOption(options["tls"]),
      tlsCaFile: options["tlsCaFile"],
      sasl: saslOption(options["sasl"]),
      user: options["user"] ?? "bench",
      password: options["password"] ?? "sluice-bench",
    };
    if (url !== undefined && this.#settings.partitionSync !== undefined) {
      throw new RangeError("driver option partitionSync applies to a server the driver starts");
    }
    if (url !== undefined && this.#settings.syncsInFlight !== undefined) {
      throw new RangeError(
        "driver option queueSyncsInFlight applies to a server the driver starts",
      );
    }
    if (url !== undefined && this.#settings.fetchAckWaitMs !== undefined) {
      throw new RangeError(
        "driver option queueFetchAckWaitMs applies to a server the driver starts",
      );
    }
    if (url !== undefined && this.#settings.dropBehind !== undefined) {
      throw new RangeError("driver option dropBehind applies to a server the driver starts");
    }
    if (
      this.#settings.gc !== undefined &&
      (url !== undefined || options["server"] === "in-process")
    ) {
      throw new RangeError("driver option gc applies to a server process the driver starts");
    }
    if (url !== undefined && this.#settings.tls && this.#settings.tlsCaFile === undefined) {
      throw new RangeError("driver option tls=true with an external server needs tlsCaFile=FILE");
    }
  }

  /**
   * For a server this driver starts: certificates (tls=true) and the user (sasl=...) in its
   * data directory before it starts, and the `serve` flags that switch them on.
   */
  #prepareSecurity(dataDir: string): string[] {
    const flags: string[] = [];
    if (this.#settings.tls) {
      const certs = makeBenchCerts(this.#config.workDir);
      if (certs === undefined) {
        throw new DriverUnavailableError(
          "tls=true needs openssl to make a throwaway certificate",
          "bash scripts/install_openssl.sh",
        );
      }
      this.#settings.tlsCaFile = certs.caFile;
      flags.push("--tls-cert", certs.certFile, "--tls-key", certs.keyFile);
    }
    if (this.#settings.sasl !== undefined) {
      const state = emptySecurityState();
      const { password } = this.#settings;
      state.users.set(this.#settings.user, {
        "SCRAM-SHA-256": makeScramCredential("SCRAM-SHA-256", password),
        "SCRAM-SHA-512": makeScramCredential("SCRAM-SHA-512", password),
      });
      saveSecurityState(dataDir, state);
      flags.push("--auth", "scram,plain", "--super-users", this.#settings.user);
    }
    return flags;
  }

  /** The TLS and SASL options of every client this driver makes. */
  #security(): Pick<ClientOptions, "tls" | "sasl"> {
    const { tls, tlsCaFile, sasl, user, password } = this.#settings;
    return {
      ...(tls ? { tls: { ca: readFileSync(tlsCaFile!, "utf8"), servername: "localhost" } } : {}),
      ...(sasl === undefined ? {} : { sasl: { mechanism: sasl, username: user, password } }),
    };
  }

  async initialize(): Promise<void> {
    const dataDir = join(this.#config.workDir, "data");
    if (this.#settings.url === undefined && this.#config.options["server"] !== "in-process") {
      const security = this.#prepareSecurity(dataDir);
      this.#child = await startChild(
        brokerScript,
        [
          "serve",
          "--data",
          dataDir,
          "--port",
          "0",
          "--heartbeat-interval-ms",
          String(HEARTBEAT_INTERVAL_MS),
          // /metrics for the broker's fdatasync figures (diskSyncs); with authentication on,
          // the HTTP port would need a token, and the figures are left unknown.
          ...(this.#settings.sasl === undefined ? ["--http-port", "0"] : []),
          ...(this.#settings.partitionSync === undefined
            ? []
            : ["--partition-sync", this.#settings.partitionSync]),
          ...(this.#settings.fetchAckWaitMs === undefined
            ? []
            : ["--queue-fetch-ack-wait-ms", String(this.#settings.fetchAckWaitMs)]),
          ...(this.#settings.syncsInFlight === undefined
            ? []
            : ["--queue-syncs-in-flight", String(this.#settings.syncsInFlight)]),
          ...(this.#settings.dropBehind === undefined
            ? []
            : ["--drop-behind", this.#settings.dropBehind]),
          ...security,
        ],
        this.#settings.gc === undefined ? undefined : gcEnvironment(process.env, this.#settings.gc),
      );
      this.#client = { host: "127.0.0.1", port: this.#child.port, ...this.#security() };
      const httpPort = this.#child.httpPort;
      if (httpPort !== undefined) this.#metricsUrl = `http://127.0.0.1:${httpPort}/metrics`;
    } else if (this.#settings.url === undefined) {
      const security = this.#prepareSecurity(dataDir);
      const flag = (name: string) => security[security.indexOf(name) + 1]!;
      this.#server = await SluiceServer.start({
        dataDir,
        host: "127.0.0.1",
        port: 0,
        heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
        engineOptions: {
          ...(this.#settings.partitionSync === undefined
            ? {}
            : { partitionSync: this.#settings.partitionSync }),
          ...(this.#settings.syncsInFlight === undefined
            ? {}
            : { queueSyncsInFlight: this.#settings.syncsInFlight }),
          ...(this.#settings.dropBehind === undefined
            ? {}
            : { dropBehind: this.#settings.dropBehind === "on" }),
        },
        ...(this.#settings.fetchAckWaitMs === undefined
          ? {}
          : { limits: { queueFetchAckWaitMs: this.#settings.fetchAckWaitMs } }),
        log: (message) => console.error(`sluice server: ${message}`),
        ...(this.#settings.tls
          ? { tls: { certFile: flag("--tls-cert"), keyFile: flag("--tls-key") } }
          : {}),
        ...(this.#settings.sasl === undefined
          ? {}
          : { security: { auth: ["scram", "plain"], superUsers: [this.#settings.user] } }),
      });
      this.#client = { host: this.#server.host, port: this.#server.port, ...this.#security() };
    } else {
      this.#client = { ...parseUrl(this.#settings.url), ...this.#security() };
      this.#metricsUrl = this.#settings.metricsUrl;
    }
    this.#admin = new Admin(this.#client);
    try {
      await this.#admin.metadata([]);
    } catch (error) {
      const where = `${this.#client.host}:${this.#client.port}`;
      throw new DriverUnavailableError(
        `no sluice server answers at ${where}: ${(error as Error).message}`,
        "start one with `npm start -- --port PORT`, or leave out --sluice-url",
      );
    }
  }

  settings(): DriverSettings {
    const inProcess = this.#server !== undefined;
    const started = inProcess || this.#child !== undefined;
    const server = inProcess
      ? `in the harness process on 127.0.0.1:${this.#server!.port} (its CPU is the harness's)`
      : this.#child !== undefined
        ? `\`sluice serve\` child process on 127.0.0.1:${this.#child.port} (a process of its own)`
        : `${this.#settings.url} (external)`;
    const serverFsync = started ? describeFsync(LOG_CONFIG_DEFAULTS.fsync) : "unknown";
    return {
      server,
      clientLibrary: `sluice ${packageJson.version} protocol/client (this repository)`,
      client: "protocol/client Producer and Consumer, one TCP connection each",
      connections: "one per producer and per consumer, made in the load workers",
      batching: `per partition, lingerMs ${this.#settings.lingerMs}, up to batchBytes`,
      acks: String(this.#settings.acks),
      fsync:
        this.#settings.fsync === undefined
          ? `server default (${serverFsync})`
          : describeFsync(this.#settings.fsync),
      lingerMs: this.#settings.lingerMs,
      batchBytes: this.#settings.batchBytes,
      subscription: "a consumer group: its consumers share the partitions; reads from the start",
      heartbeatIntervalMs: started ? HEARTBEAT_INTERVAL_MS : "server's",
      partitionSync: this.#settings.partitionSync ?? (started ? "auto (default)" : "server's"),
      queueFetchAckWaitMs:
        this.#settings.fetchAckWaitMs ?? (started ? "0 (server default)" : "server's"),
      queueSyncsInFlight:
        this.#settings.syncsInFlight ??
        (started ? `${SYNCS_IN_FLIGHT_DEFAULT} (engine default)` : "server's"),
      dropBehind: this.#settings.dropBehind ?? (started ? "on (default)" : "server's"),
      ...(this.#child === undefined
        ? {}
        : {
            gc:
              this.#settings.gc ??
              (gcModeHolds(process.env, "tuned")
                ? "tuned (environment)"
                : process.env["SLUICE_GC"] === "default"
                  ? "runtime default (SLUICE_GC=default)"
                  : "tuned (serve's default)"),
          }),
      ...(this.#settings.queue === undefined ? {} : queueModeSettings(this.#settings.queue)),
      ...priorityLevelsSetting(this.#config.priorityLevels),
      ...delayPathSetting(this.#config.deliveryDelayMsMax),
      tls: this.#settings.tls ? "TLS (throwaway CA unless tlsCaFile)" : "plaintext",
      authentication: this.#settings.sasl ?? "none",
    };
  }

  durability(): string {
    const { acks } = this.#settings;
    const started = this.#server !== undefined || this.#child !== undefined;
    const fsync = this.#settings.fsync ?? (started ? LOG_CONFIG_DEFAULTS.fsync : undefined);
    if (acks === 0) return "none: acks 0, the producer does not wait for the server";
    if (acks === "all" || fsync === "always") return "fsynced to disk on the server before the ack";
    const when =
      fsync === undefined
        ? "per the server's topic config"
        : fsync === "never"
          ? "when the OS writes back"
          : `every ${fsync.intervalMs} ms`;
    return (
      `in the server's page cache when acknowledged; fsynced ${when} ` +
      "(power loss can lose that)"
    );
  }

  #adminOrThrow(): Admin {
    if (this.#admin === undefined) throw new Error("sluice: initialize() first");
    return this.#admin;
  }

  workerOptions(): Record<string, string> {
    // Where and how the server runs is the coordinator's: a worker only connects to it.
    const {
      server: _server,
      partitionSync: _partitionSync,
      queueFetchAckWaitMs: _fetchAckWaitMs,
      queueSyncsInFlight: _syncsInFlight,
      dropBehind: _dropBehind,
      gc: _gc,
      ...options
    } = this.#config.options;
    const tlsCaFile = this.#settings.tlsCaFile;
    return {
      ...options,
      url: `${this.#client.host}:${this.#client.port}`,
      ...(tlsCaFile === undefined ? {} : { tlsCaFile }),
    };
  }

  /** The broker's fdatasync histograms so far: from its engine, or its /metrics. */
  async diskSyncs(): Promise<DiskSyncReading | null> {
    const engine = this.#server?.engine;
    if (engine !== undefined) {
      const { flushRounds, fdatasyncRounds } = engine.groupSync.stats;
      return {
        segments: engine.fsyncSeconds.snapshot(),
        queueState: engine.queueFsyncSeconds.snapshot(),
        groupSync: {
          rounds: engine.groupSync.roundSeconds.snapshot(),
          flushRounds,
          fdatasyncRounds,
        },
      };
    }
    const url = this.#metricsUrl;
    if (url === undefined) return null;
    const response = await fetch(url, { signal: AbortSignal.timeout(METRICS_TIMEOUT_MS) });
    const text = await response.text();
    if (!response.ok) throw new Error(`GET ${url} answered HTTP ${response.status}`);
    return parseDiskSyncs(text);
  }

  brokerProcess(): BrokerProcess | undefined {
    if (this.#child?.process.pid !== undefined) {
      return { kind: "pid", pid: this.#child.process.pid, what: "`sluice serve`" };
    }
    if (this.#server !== undefined) {
      return { kind: "pid", pid: process.pid, what: "sluice server in the coordinator process" };
    }
    const { host, port } = this.#client;
    if (host === undefined || port === undefined) return undefined;
    return { kind: "address", host, port, what: "sluice server" };
  }

  async attachTopic(topic: string, partitions: number): Promise<void> {
    this.#partitions.set(topic, partitions);
  }

  async createTopic(topic: string, partitions: number): Promise<void> {
    const fsync = this.#settings.fsync;
    await this.#adminOrThrow().createTopics([
      { name: topic, partitions, ...(fsync === undefined ? {} : { config: { fsync } }) },
    ]);
    this.#partitions.set(topic, partitions);
  }

  async createProducer(topic: string): Promise<BenchProducer> {
    const options: ProducerOptions = {
      ...this.#client,
      acks: this.#settings.acks,
      lingerMs: this.#settings.lingerMs,
      batchBytes: this.#settings.batchBytes,
    };
    return new TcpProducer(new Producer(options), topic);
  }

  async createConsumer(
    topic: string,
    subscription: string,
    onMessage: MessageCallback,
    placement?: ConsumerPlacement,
  ): Promise<BenchConsumer> {
    const consumer = new Consumer({
      ...this.#client,
      group: subscription,
      autoOffsetReset: "earliest",
    });
    consumer.subscribe([topic], { fromBeginning: true });
    const wrapped = new TcpConsumer(consumer, onMessage);
    const key = `${topic}\u0000${subscription}`;
    const members = (this.#members.get(key) ?? 0) + 1;
    this.#members.set(key, members);
    // A consumer beyond the partition count legitimately gets none. Its place among the
    // subscription's consumers of every worker says which it is; alone, the count here does.
    const place = placement === undefined ? members : placement.memberIndex + 1;
    if (place <= (this.#partitions.get(topic) ?? 1)) await wrapped.assigned(ASSIGNMENT_WAIT_MS);
    return wrapped;
  }

  async createSubscription(topic: string, subscription: string): Promise<void> {
    if (this.#settings.queue === undefined) return;
    const levels = this.#config.priorityLevels ?? 0;
    await declareSubscriptionQueue(this.#adminOrThrow(), topic, subscription, levels);
  }

  async createAckingConsumer(
    _topic: string,
    subscription: string,
    handlers: AckingHandlers,
  ): Promise<BenchConsumer> {
    if (this.#settings.queue === undefined) {
      throw new Error("sluice: acking consumers need the workload's ackMode per-message");
    }
    return createQueueConsumer(this.#client, subscription, handlers, this.#settings.queue);
  }

  subscriptionCounts(_topic: string, subscription: string): Promise<SubscriptionCounts> {
    return queueCounts(this.#adminOrThrow(), subscription);
  }

  async deleteTopic(topic: string): Promise<void> {
    await this.#adminOrThrow().deleteTopics([topic]);
    this.#partitions.delete(topic);
  }

  async close(): Promise<void> {
    await this.#admin?.close();
    this.#admin = undefined;
    await this.#server?.close();
    this.#server = undefined;
    await this.#child?.stop();
    this.#child = undefined;
  }
}

class TcpProducer implements BenchProducer {
  #producer: Producer;
  #topic: string;

  constructor(producer: Producer, topic: string) {
    this.#producer = producer;
    this.#topic = topic;
  }

  sendAsync(key: Uint8Array | null, payload: Uint8Array, delayMs = 0): Promise<void> {
    // One record literal, not spreads of optional parts: a spread copies properties one by one
    // (copyDataProperties was 3% of a producer worker's samples at 40,000 records a second).
    const record: ProducerRecord = { topic: this.#topic, key, value: payload };
    if (delayMs > 0) record.headers = { "sluice-delay-ms": String(delayMs) };
    return new Promise((resolve, reject) => {
      this.#producer.send(record, (error) => (error === null ? resolve() : reject(error)));
    });
  }

  close(): Promise<void> {
    return this.#producer.close();
  }
}

class TcpConsumer implements BenchConsumer {
  #consumer: Consumer;
  #onMessage: MessageCallback;
  #closed = false;
  #loop: Promise<void>;
  #failure: Error | undefined;

  constructor(consumer: Consumer, onMessage: MessageCallback) {
    this.#consumer = consumer;
    this.#onMessage = onMessage;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    try {
      while (!this.#closed) {
        const records = await this.#consumer.poll({ maxWaitMs: POLL_WAIT_MS });
        for (const record of records) {
          if (record.value !== null) this.#onMessage(record.value);
        }
      }
    } catch (error) {
      this.#failure = error as Error;
      // The run's drain check reports what this consumer did not deliver.
      if (!this.#closed) console.error(`sluice: a consumer stopped: ${String(error)}`);
    }
  }

  /** Waits until the group has given this consumer at least one partition. */
  async assigned(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.#consumer.assignment().length === 0) {
      if (this.#failure !== undefined) throw this.#failure;
      if (performance.now() > deadline) {
        throw new Error(`a consumer got no partitions within ${timeoutMs} ms of joining`);
      }
      await new Promise((resolve) => setTimeout(resolve, ASSIGNMENT_CHECK_MS));
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#consumer.close();
    await this.#loop;
  }
}

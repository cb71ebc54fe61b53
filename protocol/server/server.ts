// The sluice broker: a TCP server that maps the wire protocol (PROTOCOL.md) onto the engine.
// `sluice serve` starts one; tests and the benchmark harness start them in-process.

import { join } from "node:path";
import {
  Engine,
  type EngineOptions,
  type GroupDescription,
  type GroupEvent,
  GroupCoordinator,
  type HistogramSnapshot,
  LatencyHistogram,
} from "../../engine/mod.ts";
import packageJson from "../../package.json" with { type: "json" };
import { CallbackList, InvariantError, SluiceError } from "../../record/mod.ts";
import { writeHandshakeResponse, readHandshakeRequest } from "../codec/handshake.ts";
import {
  API,
  API_VERSIONS,
  finishFrame,
  SECURITY_API_VERSIONS,
  startResponse,
} from "../codec/frames.ts";
import { WIRE_ERRORS } from "../codec/errors.ts";
import type { TransportSocket } from "../codec/outbox.ts";
import { type ControlBodyCaps, checkMsgpackBody, controlBodyLimits } from "../codec/control.ts";
import {
  ServerConnection,
  type ServerConnectionHost,
  type HandlerAnswer,
  type HandlerResult,
  type RequestContext,
} from "./connection.ts";
import { BufferBudget } from "./_budget.ts";
import { resolveServerLimits, type ServerLimits } from "./limits.ts";
import * as control from "./_control.ts";
import { type DataPlane, handleFetch, handleProduce } from "./_data.ts";
import { FetchWaits } from "./_fetch_waits.ts";
import { newQueuePlane, type QueuePlane, queueHandlers } from "./_queue.ts";
import { exchangeHandlers } from "./_exchange.ts";
import { listen, type TransportKind, type TransportServer } from "./_transport.ts";
import { SecurityGate, type SecurityOptions } from "./_auth.ts";
import { securityHandlers } from "./_auth_handlers.ts";
import { type TlsListen, type TlsServerOptions, tlsListen } from "./_tls.ts";
import { KafkaListener, type KafkaListenerOptions } from "../kafka/listener.ts";
import {
  handleAlterTopicConfigs,
  handleListGroups,
  type ListedGroup,
  listGroups,
} from "./_admin.ts";

/** The Kafka listener's own options; the engine, groups and limits are the server's. */
export type KafkaOptions = Pick<KafkaListenerOptions, "port"> &
  Partial<
    Pick<
      KafkaListenerOptions,
      | "advertisedHost"
      | "advertisedPort"
      | "autoCreateTopics"
      | "autoCreatePartitions"
      | "versionCaps"
      | "initialRebalanceDelayMs"
    >
  > & {
    /**
     * Speak TLS on the Kafka port, with the server's `tls` certificate, key and CA (clients'
     * SSL or SASL_SSL); needs `tls`. Without it the Kafka port is plaintext (PLAINTEXT or
     * SASL_PLAINTEXT).
     */
    tls?: boolean;
  };

export type ServerOptions = {
  /** Data directory to open; or pass an open `engine` (which the server will not close). */
  dataDir?: string;
  engine?: Engine;
  engineOptions?: EngineOptions;
  host?: string;
  /** 0 picks a free port (see `server.port`). */
  port?: number;
  limits?: Partial<ServerLimits>;
  /** Consumer-group session timeout and the heartbeat interval handed to members. */
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  transport?: TransportKind;
  /**
   * TLS (PROTOCOL.md section 11.1): without `tls.port` the listener on `port` speaks TLS; with
   * it, `port` stays plaintext and a second listener on `tls.port` (0: a free one) speaks TLS.
   */
  tls?: TlsServerOptions & { port?: number };
  /** Authentication and ACLs (section 11); off unless `security.auth` names a method. */
  security?: SecurityOptions;
  /** Also listen for Kafka's protocol (protocol/kafka/), sharing this server's engine. */
  kafka?: KafkaOptions;
  log?: (message: string) => void;
  /**
   * Told of notable events, for the broker's log: group membership changes (a member joined,
   * left, expired or was fenced, with the new group epoch) and producers fenced (a Produce
   * refused with INVALID_PRODUCER_EPOCH: a newer epoch of the producer id has written).
   */
  onEvent?: (event: ServerEvent) => void;
  /**
   * Called when serving a request (or the periodic sweep) breaks an invariant: a bug in sluice,
   * which is never answered as an error code. The default, `stopOnInvariant`, logs one line to
   * stderr and exits the process with code 70; tests pass their own to observe it. If it
   * returns, the connection whose request broke the invariant is closed unanswered.
   */
  onFatal?: (error: InvariantError) => void;
};

export type ServerEvent =
  | ({ type: "group" } & GroupEvent)
  | {
      /** A classic group of the Kafka listener (`groupEpoch` is its generation). */
      type: "classicGroup";
      kind: "joined" | "left" | "expired" | "rebalanced";
      groupId: string;
      memberId: string;
      groupEpoch: number;
      members: number;
    }
  | {
      type: "producerFenced";
      topic: string;
      partition: number;
      message: string | null;
    };

/** Request latency by API and answers by error code, since the server started. */
export type ServerLatency = {
  /** By API key. */
  requestSeconds: Map<number, HistogramSnapshot>;
  /** Requests over the Kafka listener, by Kafka API name (empty without it). */
  kafkaRequestSeconds: Map<string, HistogramSnapshot>;
  /** Answers (and per-partition Produce results) by wire error code, 0 excluded. */
  errors: Map<number, number>;
};

/** Records `seconds` in the histogram of `key`, made on first use. */
function observe<K>(histograms: Map<K, LatencyHistogram>, key: K, seconds: number): void {
  let histogram = histograms.get(key);
  if (histogram === undefined) {
    histogram = new LatencyHistogram();
    histograms.set(key, histogram);
  }
  histogram.observe(seconds);
}

/** The exit code of a server stopped by a broken invariant (EX_SOFTWARE in sysexits.h). */
export const EXIT_CODE_INVARIANT = 70;

/** The default `onFatal`: one line on stderr, then the process exits with code 70. */
export function stopOnInvariant(error: InvariantError): never {
  console.error(`sluice: invariant violated: ${error.invariant}; stopping`);
  process.exit(EXIT_CODE_INVARIANT);
}

/** How long a shutdown waits for connections to write what they owe before closing them. */
const SHUTDOWN_WAIT_MS_DEFAULT = 5_000;

/** How often timeouts (idle connections, stuck requests, group sessions) are checked. */
const SWEEP_INTERVAL_MS = 250;

export class SluiceServer {
  readonly engine: Engine;
  readonly limits: ServerLimits;
  readonly host: string;
  #ownsEngine: boolean;
  #transport: TransportServer | undefined;
  #tlsTransport: TransportServer | undefined;
  #secure: TlsListen | undefined;
  #security: SecurityGate | undefined;
  /** The Kafka listener, when `kafka` was given. */
  kafka: KafkaListener | undefined;
  #connections = new Map<TransportSocket, ServerConnection>();
  #budget: BufferBudget;
  #groups: GroupCoordinator;
  #log: (message: string) => void;
  #onFatal: (error: InvariantError) => void;
  #startedMs = Date.now();
  #sweep: ReturnType<typeof setInterval> | undefined;
  #requests = new Map<number, number>();
  #requestSeconds = new Map<number, LatencyHistogram>();
  #kafkaRequestSeconds = new Map<string, LatencyHistogram>();
  #errors = new Map<number, number>();
  #onEvent: ((event: ServerEvent) => void) | undefined;
  /** Requests refused on arrival (no handshake, past inFlightMax, unknown API or version). */
  #refused = 0;
  #closedBytes = { in: 0, out: 0, writes: 0 };
  #data: DataPlane;
  #control: control.ControlPlane;
  #queues: QueuePlane;
  #handlers: Map<number, (request: RequestContext) => HandlerAnswer>;
  #bodyCaps: ControlBodyCaps;
  /** The Kafka listener's classic groups, for ListGroups (none without the listener). */
  readonly #classicGroups = () => this.kafka?.classicGroups() ?? [];

  private constructor(engine: Engine, ownsEngine: boolean, options: ServerOptions) {
    this.engine = engine;
    this.#ownsEngine = ownsEngine;
    this.limits = resolveServerLimits(options.limits);
    this.#budget = new BufferBudget(this.limits.connectionBuffersBytesMax);
    this.#bodyCaps = {
      bytesMax: this.limits.controlBodyBytesMax,
      depthMax: this.limits.controlBodyDepthMax,
      entriesMax: this.limits.controlBodyEntriesMax,
    };
    this.host = options.host ?? "127.0.0.1";
    this.#log = options.log ?? ((message) => console.error(`sluice: ${message}`));
    this.#onFatal = options.onFatal ?? stopOnInvariant;
    this.#onEvent = options.onEvent;
    this.#security = SecurityGate.enabled(options.security)
      ? new SecurityGate(options.security!, engine.dataDir, this.#log)
      : undefined;
    this.#groups = new GroupCoordinator({
      partitionsOf: (topic) => {
        try {
          return engine.describeTopic(topic).partitions;
        } catch (error) {
          if (error instanceof InvariantError) throw error;
          return undefined;
        }
      },
      ...(options.sessionTimeoutMs === undefined
        ? {}
        : { sessionTimeoutMs: options.sessionTimeoutMs }),
      ...(options.heartbeatIntervalMs === undefined
        ? {}
        : { heartbeatIntervalMs: options.heartbeatIntervalMs }),
      heldElsewhere: (groupId) => this.kafka?.claimsGroup(groupId) ?? false,
      onEvent: (event) => this.#emit({ type: "group", ...event }),
    });
    const waitingFetches = new CallbackList();
    this.#data = {
      engine,
      fetchWaitMsMax: this.limits.fetchWaitMsMax,
      fetchBytesMax: this.limits.fetchBytesMax,
      requestPartitionsMax: this.limits.requestPartitionsMax,
      waitingFetches,
      fetchWaits: new FetchWaits(waitingFetches),
      log: this.#log,
      partitionError: (topic, partition, code, message) => {
        this.#countError(code);
        if (code === WIRE_ERRORS.INVALID_PRODUCER_EPOCH) {
          this.#emit({ type: "producerFenced", topic, partition, message });
        }
      },
    };
    this.#control = {
      engine,
      groups: this.#groups,
      host: this.host,
      port: () => this.port,
      stats: () => this.stats(),
      adminTail: Promise.resolve(),
      countError: (code) => this.#countError(code),
      ...(this.#security === undefined
        ? {}
        : { visibleTopic: this.#security.visibleTopic.bind(this.#security) }),
    };
    this.#queues = newQueuePlane({
      ...this.limits,
      engine,
      waitingFetches: this.#data.waitingFetches,
      log: this.#log,
      fatal: this.#onFatal,
    });
    this.#handlers = this.#handlerTable();
  }

  /** Opens the engine (if given a directory), listens, and resolves once it accepts clients. */
  static async start(options: ServerOptions): Promise<SluiceServer> {
    // Checked before anything is opened: a bad limit must not leave an engine open.
    resolveServerLimits(options.limits);
    const engine =
      options.engine ??
      (await Engine.open(options.dataDir ?? join(process.cwd(), "data"), options.engineOptions));
    let server: SluiceServer;
    try {
      server = new SluiceServer(engine, options.engine === undefined, options);
    } catch (error) {
      if (options.engine === undefined) await engine.close();
      throw error;
    }
    try {
      await server.#listen(options);
      if (options.kafka !== undefined) server.kafka = await server.#startKafka(options);
    } catch (error) {
      server.#transport?.stop();
      if (server.#ownsEngine) await engine.close();
      throw error;
    }
    server.#sweep = setInterval(() => server.#sweepOrStop(), SWEEP_INTERVAL_MS);
    (server.#sweep as { unref?: () => void }).unref?.();
    return server;
  }

  async #listen(options: ServerOptions): Promise<void> {
    const handlers = this.#transportHandlers();
    const secure = options.tls === undefined ? undefined : tlsListen(options.tls, this.#log);
    this.#secure = secure;
    const mainSecure = options.tls?.port === undefined ? secure : undefined;
    const port = options.port ?? 7450;
    this.#transport = await listen(this.host, port, handlers, options.transport, mainSecure);
    if (secure !== undefined && options.tls?.port !== undefined) {
      this.#tlsTransport = await listen(
        this.host,
        options.tls.port,
        handlers,
        options.transport,
        secure,
      );
    }
  }

  get port(): number {
    return this.#transport?.port ?? 0;
  }

  /** The port of the separate TLS listener (`tls.port`), or undefined without one. */
  get tlsPort(): number | undefined {
    return this.#tlsTransport?.port;
  }

  #startKafka(options: ServerOptions): Promise<KafkaListener> {
    // With authentication on, the Kafka listener requires SASL and checks the same ACLs.
    const { tls, ...kafka } = options.kafka!;
    if (tls === true && this.#secure === undefined) {
      throw new SluiceError(
        "INVALID_CONFIG",
        "a TLS Kafka listener needs the server's certificate and key (tls.certFile, keyFile)",
        { kafkaPort: kafka.port },
      );
    }
    return KafkaListener.start({
      ...kafka,
      ...(this.#security === undefined ? {} : { security: this.#security }),
      ...(tls === true ? { tls: this.#secure! } : {}),
      engine: this.engine,
      groups: this.#groups,
      limits: this.limits,
      host: this.host,
      ...(options.transport === undefined ? {} : { transport: options.transport }),
      log: this.#log,
      onFatal: this.#onFatal,
      onGroupEvent: ({ generation, ...event }) =>
        this.#emit({ type: "classicGroup", ...event, groupEpoch: generation }),
      onServed: (api, seconds) => observe(this.#kafkaRequestSeconds, api, seconds),
    });
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  #connectionHost(): ServerConnectionHost {
    const security = this.#security;
    // With authentication on, a frame before the handshake is held to the pre-auth limit too.
    const limits =
      security === undefined
        ? this.limits
        : {
            ...this.limits,
            handshakeFrameBytesMax: Math.min(
              this.limits.handshakeFrameBytesMax,
              security.authFrameBytesMax,
            ),
          };
    return {
      limits,
      budget: this.#budget,
      dispatch: (request) => this.#dispatch(request),
      log: this.#log,
      fatal: this.#onFatal,
      refused: (wireCode) => {
        this.#refused++;
        this.#countError(wireCode);
      },
      served: (apiKey, seconds, errorCode) => {
        observe(this.#requestSeconds, apiKey, seconds);
        if (errorCode !== 0) this.#countError(errorCode);
      },
      bodyError: (code) => this.#countError(code),
      bodyBytesMax: (apiKey) => controlBodyLimits(apiKey, this.#bodyCaps)?.bytesMax,
      // ACL checks read a Produce's topics from its reader, which a request in parts lacks.
      produceInParts: this.#security === undefined,
      now: Date.now,
    };
  }

  #transportHandlers() {
    const host = this.#connectionHost();
    return {
      open: (socket: TransportSocket) => {
        if (this.#connections.size >= this.limits.connectionsMax) {
          this.#log(`refusing connection from ${socket.remoteAddress}: connectionsMax reached`);
          socket.destroy();
          return;
        }
        const connection = new ServerConnection(socket, host);
        if (this.#security !== undefined && !this.#security.opened(connection, Date.now())) {
          socket.destroy();
          return;
        }
        this.#connections.set(socket, connection);
      },
      data: (socket: TransportSocket, bytes: Uint8Array) =>
        this.#guarded(socket, (connection) => connection.data(bytes)),
      drain: (socket: TransportSocket) => this.#guarded(socket, (connection) => connection.drain()),
      close: (socket: TransportSocket) => {
        const connection = this.#connections.get(socket);
        if (connection === undefined) return;
        this.#closedBytes.in += connection.bytesIn;
        this.#closedBytes.out += connection.bytesOut;
        this.#closedBytes.writes += connection.socketWrites;
        connection.closedBySocket();
        this.#security?.closed(connection);
        this.#connections.delete(socket);
      },
    };
  }

  /**
   * Runs a connection's socket event. Nothing may escape it: Bun hands an exception thrown
   * here to the socket's error handler (the connection would be forgotten, its socket left
   * open and unread) and node:net makes it an uncaught exception (the process ends). A broken
   * invariant goes to onFatal; any other exception is a bug in the connection code too, but
   * one confined to that connection: it is logged as an internal error and the connection
   * closed, and every other client goes on.
   */
  #guarded(socket: TransportSocket, event: (connection: ServerConnection) => void): void {
    const connection = this.#connections.get(socket);
    if (connection === undefined) return;
    try {
      event(connection);
    } catch (error) {
      if (error instanceof InvariantError) this.#onFatal(error);
      else {
        const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
        this.#log(`internal error on a connection from ${socket.remoteAddress}: ${detail}`);
      }
      connection.close("after an internal error");
    }
  }

  #handlerTable() {
    const c = this.#control;
    const classic = this.#classicGroups;
    return new Map<number, (request: RequestContext) => HandlerAnswer>([
      [API.Handshake, (request) => this.#handshake(request)],
      [API.Metadata, (request) => control.handleMetadata(c, request)],
      [API.CreateTopics, (request) => control.handleCreateTopics(c, request)],
      [API.DeleteTopics, (request) => control.handleDeleteTopics(c, request)],
      [API.Produce, (request) => handleProduce(this.#data, request)],
      [API.Fetch, (request) => handleFetch(this.#data, request)],
      [API.ListOffsets, (request) => control.handleListOffsets(c, request)],
      [API.OffsetCommit, (request) => control.handleOffsetCommit(c, request)],
      [API.OffsetFetch, (request) => control.handleOffsetFetch(c, request)],
      [API.GroupHeartbeat, (request) => control.handleGroupHeartbeat(c, request)],
      [API.DescribeGroup, (request) => control.handleDescribeGroup(c, request)],
      [API.InitProducerId, (request) => control.handleInitProducerId(c, request)],
      [API.Stats, (request) => control.handleStats(c, request)],
      [API.ListGroups, (request) => handleListGroups(c, classic, request)],
      [API.AlterTopicConfigs, (request) => handleAlterTopicConfigs(c, request)],
      ...queueHandlers(this.#queues),
      ...exchangeHandlers(this.engine),
      ...(this.#security === undefined ? [] : securityHandlers(this.#security)),
    ]);
  }

  #dispatch(request: RequestContext): HandlerAnswer {
    this.#requests.set(request.apiKey, (this.#requests.get(request.apiKey) ?? 0) + 1);
    // Before authenticating only Handshake and SASL are served (nothing else is even read).
    this.#security?.admit(request);
    const handler = this.#handlers.get(request.apiKey);
    if (handler === undefined) return control.unknownApi(request.apiKey);
    // A control-plane body is checked against its API's limits before anything decodes it,
    // so that no body can hold the event loop (and every other client) for long.
    const bodyLimits = controlBodyLimits(request.apiKey, this.#bodyCaps);
    if (bodyLimits !== undefined) {
      checkMsgpackBody(request.reader, bodyLimits, `request body of api ${request.apiKey}`);
    }
    // Every API's resources are checked here, in one place, before its handler does any work.
    if (this.#security?.authorize(request) === null) return null;
    return handler(request);
  }

  #handshake(request: RequestContext): HandlerResult {
    readHandshakeRequest(request.reader);
    const writer = startResponse(request.correlationId, 128);
    writeHandshakeResponse(writer, {
      serverVersion: packageJson.version,
      frameBytesMax: this.limits.frameBytesMax,
      inFlightMax: this.limits.inFlightMax,
      apis:
        this.#security === undefined
          ? [...API_VERSIONS]
          : [...API_VERSIONS, ...SECURITY_API_VERSIONS],
    });
    const frameBytesMax = this.limits.frameBytesMax;
    request.connection.completeHandshake(
      this.#security?.frameBytesAfterHandshake(request.connection, frameBytesMax) ?? frameBytesMax,
    );
    return [finishFrame(writer)];
  }

  /** The periodic sweep; a broken invariant in it (group expiry runs engine code) is fatal. */
  #sweepOrStop(): void {
    try {
      this.#sweepTimeouts();
    } catch (error) {
      if (!(error instanceof InvariantError)) throw error;
      this.#onFatal(error);
    }
  }

  #sweepTimeouts(): void {
    const now = Date.now();
    for (const connection of this.#connections.values()) {
      const timedOut = connection.timedOut(now) ?? this.#security?.timedOut(connection, now);
      if (timedOut !== undefined) {
        connection.close(timedOut);
        continue;
      }
      connection.expireRequests(now);
    }
    this.#groups.expire();
  }

  #countError(code: number): void {
    this.#errors.set(code, (this.#errors.get(code) ?? 0) + 1);
  }

  #emit(event: ServerEvent): void {
    try {
      this.#onEvent?.(event);
    } catch (error) {
      // A listener's failure must not fail the request that caused the event.
      this.#log(`an event listener failed: ${String(error)}`);
    }
  }

  /**
   * ListGroups' answer, in process and with no authorization (for the operations page, which
   * runs inside the broker and has its own token): every group, with its state and member
   * count, sorted by id.
   */
  listGroups(): ListedGroup[] {
    return listGroups(this.#control, this.#classicGroups);
  }

  /**
   * The members of one of sluice's own groups (GroupHeartbeat), in process; an unknown group
   * has none. A group id that is not valid is a SluiceError, as on the wire.
   */
  describeGroup(groupId: string): GroupDescription {
    return this.#groups.describe(groupId);
  }

  /** Request latency by API key and answers by error code (the /metrics histograms). */
  latency(): ServerLatency {
    return {
      requestSeconds: new Map(
        [...this.#requestSeconds].map(([apiKey, histogram]) => [apiKey, histogram.snapshot()]),
      ),
      kafkaRequestSeconds: new Map(
        [...this.#kafkaRequestSeconds].map(([api, histogram]) => [api, histogram.snapshot()]),
      ),
      errors: new Map(this.#errors),
    };
  }

  /** Rebalances of sluice's own groups and the Kafka listener's classic groups, since start. */
  groupRebalances(): number {
    return this.#groups.rebalances + (this.kafka?.classicRebalances ?? 0);
  }

  stats(): Record<string, unknown> {
    let bytesIn = this.#closedBytes.in;
    let bytesOut = this.#closedBytes.out;
    let socketWrites = this.#closedBytes.writes;
    let queuedResponseBytes = 0;
    let pausedConnections = 0;
    for (const connection of this.#connections.values()) {
      bytesIn += connection.bytesIn;
      bytesOut += connection.bytesOut;
      socketWrites += connection.socketWrites;
      queuedResponseBytes += connection.queuedBytes;
      if (connection.paused) pausedConnections++;
    }
    const topics = this.engine.listTopics();
    return {
      serverVersion: packageJson.version,
      uptimeMs: Date.now() - this.#startedMs,
      connections: this.#connections.size,
      topics: topics.length,
      partitions: topics.reduce((sum, topic) => sum + topic.partitions, 0),
      bytesIn,
      bytesOut,
      socketWrites,
      queuedResponseBytes,
      pausedConnections,
      /** Native fetches long-polling now. */
      waitingFetches: this.#data.fetchWaits.size,
      requests: Object.fromEntries(
        [...this.#requests].map(([apiKey, count]) => [String(apiKey), count]),
      ),
      refusedRequests: this.#refused,
      ...(this.kafka === undefined
        ? {}
        : {
            kafka: {
              connections: this.kafka.connectionCount,
              socketWrites: this.kafka.socketWrites,
              ...this.kafka.stats,
            },
          }),
    };
  }

  /**
   * Graceful shutdown: stop accepting, answer waiting long polls, let every connection write
   * what it owes (up to `shutdownWaitMs`, then close the rest), then close the engine (flush,
   * fsync, clean-shutdown markers) if the server opened it.
   */
  async close(shutdownWaitMs = SHUTDOWN_WAIT_MS_DEFAULT): Promise<void> {
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#sweep = undefined;
    this.#transport?.stopListening();
    this.#tlsTransport?.stopListening();
    this.kafka?.close();
    this.#data.waitingFetches.callAll();
    for (const connection of this.#connections.values()) connection.shutdown();
    await this.#connectionsClosed(shutdownWaitMs);
    this.#transport?.stop();
    this.#tlsTransport?.stop();
    this.#connections.clear();
    if (this.#ownsEngine) await this.engine.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Resolves when every connection has closed, or after `waitMs`. */
  #connectionsClosed(waitMs: number): Promise<void> {
    if (this.#connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, waitMs);
      const poll = setInterval(() => {
        if (this.#connections.size === 0) done();
      }, 10);
      function done() {
        clearTimeout(timer);
        clearInterval(poll);
        resolve();
      }
    });
  }
}

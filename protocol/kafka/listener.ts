// The Kafka listener: a second TCP port that speaks Kafka's protocol onto the same engine,
// topics, committed offsets, consumer groups and limits as sluice's own listener.
//
//   frame   = size:int32 request
//   request = api_key:int16 api_version:int16 correlation_id:int32 client_id:nullable string
//             [tagged fields, in flexible versions] body
//   answer  = size:int32 correlation_id:int32 [tagged fields, flexible, not ApiVersions] body
//
// Like Kafka's broker, a connection serves one request at a time, in arrival order, and answers
// in that order: requests that arrive meanwhile wait in a queue bounded in count and bytes (past
// it the socket is paused, so a client sending faster than it is answered meets TCP
// backpressure), and no request is served while the answers its socket has not taken pass
// outboxBytesMax (a client that sends Fetches and never reads holds no more than that).
//
//   socket ─► FrameReader ─► [waiting requests ≤ 64, ≤ outboxBytesMax] ─► serve one ─► Outbox
//                 ▲ paused when the queue is full          waits while Outbox > outboxBytesMax
//
// A frame too large, a header or body that does not parse, an unknown API or an unsupported version
// (except ApiVersions, which is answered with the list) cannot be answered in Kafka's protocol:
// the connection is closed and the reason logged, and every other connection goes on.
//
// With authentication on (`security`), a connection authenticates with SASL first
// (_security.ts) and every request then passes its API's ACL rule (_authz.ts) before its
// handler runs. With `tls`, the listener speaks TLS (the native listener's certificate).

import { coldViewWritten, type Engine, type GroupCoordinator } from "../../engine/mod.ts";
import { CallbackList, InvariantError } from "../../record/mod.ts";
import { ProtocolError } from "../codec/errors.ts";
import { FrameReader, FrameTooLargeError } from "../codec/frame_reader.ts";
import { Outbox, type TransportSocket } from "../codec/outbox.ts";
import type { ServerLimits } from "../server/limits.ts";
import { listen, type TransportKind, type TransportServer } from "../server/_transport.ts";
import type { SecurityGate } from "../server/_auth.ts";
import { type TlsListen, tlsPeerOf } from "../server/_tls.ts";
import { type Check, KAFKA_AUTHORIZATION, type Verdict } from "./_authz.ts";
import { KafkaSecurity, type KafkaSession } from "./_security.ts";
import { type ClassicGroupEvent, ClassicGroups } from "./classic_groups.ts";
import { type Handler, type KafkaPlane, HANDLERS } from "./handlers.ts";
import { API_KEYS, MESSAGES } from "./messages.ts";
import { codecFor, type Message, type Struct } from "./schema.ts";
import { apiVersionsBody, type VersionCaps } from "./versions.ts";
import { KafkaReader, KafkaWriter } from "./wire.ts";

export type KafkaListenerOptions = {
  engine: Engine;
  groups: GroupCoordinator;
  limits: ServerLimits;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The host clients are told to connect to (default: the bind address). */
  advertisedHost?: string;
  /** The port clients are told to connect to, for a proxy in front (default: the port). */
  advertisedPort?: number;
  /** Metadata creates missing topics when the request allows it (default true). */
  autoCreateTopics?: boolean;
  /** Partitions of a topic created by Metadata (default 4, what client test suites assume). */
  autoCreatePartitions?: number;
  /** Lower advertised maxima, by API key, to emulate an older broker. */
  versionCaps?: VersionCaps;
  /** How long a new classic group waits for more members before its first rebalance. */
  initialRebalanceDelayMs?: number;
  transport?: TransportKind;
  /** Authentication and ACLs, shared with the native listener (off when absent). */
  security?: SecurityGate;
  /** TLS, with the native listener's certificate and key (plaintext when absent). */
  tls?: TlsListen;
  log: (message: string) => void;
  onFatal: (error: InvariantError) => void;
  /** Told of classic group membership changes and rebalances (classic_groups.ts). */
  onGroupEvent?: (event: ClassicGroupEvent) => void;
  /** Told of each request answered: its API's Kafka name and how long it took, in seconds. */
  onServed?: (api: string, seconds: number) => void;
};

/** Requests a connection may have waiting behind the one being served before it is paused. */
const QUEUED_REQUESTS_MAX = 64;
const SWEEP_INTERVAL_MS = 250;
const AUTO_CREATE_PARTITIONS_DEFAULT = 4;
const INITIAL_REBALANCE_DELAY_MS_DEFAULT = 3_000;

/** Kafka's advertised host: never `localhost` (a client may resolve it to ::1). */
export function advertisedHostFor(bindHost: string): string {
  if (bindHost === "localhost" || bindHost === "0.0.0.0" || bindHost === "::") return "127.0.0.1";
  return bindHost;
}

export class KafkaListener {
  readonly host: string;
  #transport: TransportServer | undefined;
  #connections = new Map<TransportSocket, KafkaConnection>();
  #plane: KafkaPlane;
  #limits: ServerLimits;
  #log: (message: string) => void;
  #onServed: ((api: string, seconds: number) => void) | undefined;
  #onFatal: (error: InvariantError) => void;
  #sweep: ReturnType<typeof setInterval> | undefined;

  private constructor(options: KafkaListenerOptions) {
    this.host = options.host;
    this.tls = options.tls !== undefined;
    this.#limits = options.limits;
    this.#log = options.log;
    this.#onServed = options.onServed;
    this.#onFatal = options.onFatal;
    const advertisedHost = options.advertisedHost ?? advertisedHostFor(options.host);
    this.#plane = {
      engine: options.engine,
      groups: options.groups,
      classic: new ClassicGroups({
        initialRebalanceDelayMs:
          options.initialRebalanceDelayMs ?? INITIAL_REBALANCE_DELAY_MS_DEFAULT,
        nativeMembers: (groupId) => options.groups.describe(groupId).members.length,
        ...(options.onGroupEvent === undefined ? {} : { onEvent: options.onGroupEvent }),
      }),
      limits: options.limits,
      advertised: {
        host: advertisedHost,
        port: () => options.advertisedPort ?? this.port,
      },
      autoCreateTopics: options.autoCreateTopics ?? true,
      autoCreatePartitions: options.autoCreatePartitions ?? AUTO_CREATE_PARTITIONS_DEFAULT,
      caps: options.versionCaps ?? new Map(),
      waitingFetches: new CallbackList(),
      log: options.log,
      stats: { fetchBatchViews: 0, fetchBytes: 0, produceBatches: 0 },
      security: options.security === undefined ? undefined : new KafkaSecurity(options.security),
    };
  }

  static async start(options: KafkaListenerOptions): Promise<KafkaListener> {
    const listener = new KafkaListener(options);
    listener.#transport = await listen(
      options.host,
      options.port,
      listener.#transportHandlers(),
      options.transport,
      options.tls,
    );
    listener.#sweep = setInterval(() => listener.#sweepOrStop(), SWEEP_INTERVAL_MS);
    (listener.#sweep as { unref?: () => void }).unref?.();
    return listener;
  }

  get port(): number {
    return this.#transport?.port ?? 0;
  }

  get advertisedHost(): string {
    return this.#plane.advertised.host;
  }

  /** Counters of the listener's work (fetch views served, produce batches appended). */
  get stats(): Readonly<KafkaPlane["stats"]> {
    return this.#plane.stats;
  }

  get frameBytesMax(): number {
    return this.#limits.frameBytesMax;
  }

  /** The authentication gate, when authentication is on. */
  get security(): KafkaSecurity | undefined {
    return this.#plane.security;
  }

  /** Whether the listener speaks TLS. */
  readonly tls: boolean;

  /**
   * Bytes a connection may hold in waiting requests, and in answers its socket has not taken,
   * before it stops reading (the shared outboxBytesMax).
   */
  get queuedBytesMax(): number {
    return this.#limits.outboxBytesMax;
  }

  /** Whether a classic group with members holds this group id. */
  claimsGroup(groupId: string): boolean {
    return this.#plane.classic.claims(groupId);
  }

  /** The classic groups, for sluice's own ListGroups. */
  classicGroups(): ReturnType<ClassicGroups["summaries"]> {
    return this.#plane.classic.summaries();
  }

  /** Rebalances of the classic groups since the listener started. */
  get classicRebalances(): number {
    return this.#plane.classic.rebalances;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Socket writes of answers, over every connection (open and closed). */
  get socketWrites(): number {
    let writes = this.#closedSocketWrites;
    for (const connection of this.#connections.values()) writes += connection.socketWrites;
    return writes;
  }

  #closedSocketWrites = 0;

  #transportHandlers() {
    return {
      open: (socket: TransportSocket) => {
        if (this.#connections.size >= this.#limits.connectionsMax) {
          this.#log(`kafka: refusing connection from ${socket.remoteAddress}: connectionsMax`);
          socket.destroy();
          return;
        }
        const session = this.#plane.security?.open(Date.now(), socket.remoteAddress);
        if (this.#plane.security !== undefined && session === undefined) {
          socket.destroy();
          return;
        }
        this.#connections.set(socket, new KafkaConnection(socket, this, session));
      },
      data: (socket: TransportSocket, bytes: Uint8Array) =>
        this.#guarded(socket, (connection) => connection.data(bytes)),
      drain: (socket: TransportSocket) => this.#guarded(socket, (c) => c.drain()),
      close: (socket: TransportSocket) => {
        const connection = this.#connections.get(socket);
        if (connection?.session !== undefined) this.#plane.security?.closed(connection.session);
        connection?.closedBySocket();
        this.#closedSocketWrites += connection?.socketWrites ?? 0;
        this.#connections.delete(socket);
      },
    };
  }

  /** Runs a socket event; nothing escapes it (see SluiceServer's #guarded for why). */
  #guarded(socket: TransportSocket, event: (connection: KafkaConnection) => void): void {
    const connection = this.#connections.get(socket);
    if (connection === undefined) return;
    try {
      event(connection);
    } catch (error) {
      this.failed(connection, error);
    }
  }

  /** A request's failure: fatal for a broken invariant, else the connection is closed. */
  failed(connection: KafkaConnection, error: unknown): void {
    if (error instanceof InvariantError) {
      this.#onFatal(error);
      connection.close();
      return;
    }
    // Bad input (a typed ProtocolError, a frame over the limit) is the client's doing; any
    // other exception is a bug in the listener, confined to this connection.
    const bad = error instanceof ProtocolError || error instanceof FrameTooLargeError;
    const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
    const detail = bad ? (error as Error).message : `internal error: ${text}`;
    this.#log(`kafka: closing connection from ${connection.remoteAddress}: ${detail}`);
    connection.close();
  }

  /** Serves one request frame; null when it has no answer (Produce with acks 0). */
  serve(
    frame: Uint8Array,
    connection: KafkaConnection,
  ): Uint8Array[] | null | Promise<Uint8Array[] | null> {
    const session = connection.session;
    if (session?.bareTokens === true) return this.#bareToken(session, frame, connection);
    const reader = new KafkaReader(frame);
    if (reader.remaining < 10) {
      throw ProtocolError.invalid(`request of ${reader.remaining} bytes is shorter than a header`);
    }
    const apiKey = reader.int16("api_key");
    const apiVersion = reader.int16("api_version");
    const correlationId = reader.int32("correlation_id");
    const clientId = reader.string(false, "client_id");
    const message = MESSAGES.get(apiKey);
    if (message === undefined) {
      throw new ProtocolError("UNKNOWN_API", `api_key ${apiKey} is not served`);
    }
    const max = Math.min(message.max, this.#plane.caps.get(apiKey) ?? message.max);
    if (apiVersion < message.min || apiVersion > max) {
      if (apiKey === API_KEYS.ApiVersions)
        return unsupportedApiVersions(this.#plane, correlationId);
      throw new ProtocolError(
        "UNSUPPORTED_VERSION",
        `${message.name} version ${apiVersion} is outside ${message.min}-${max}`,
      );
    }
    if (session !== undefined)
      this.#plane.security!.admit(session, connection, apiKey, message.name);
    const codec = codecFor(message, apiVersion);
    if (codec.flexible) skipTaggedFields(reader);
    const decoded = codec.request.decode(reader);
    const verdict = this.#authorize(message, decoded, connection, apiVersion);
    if (verdict.kind === "answer") {
      if (verdict.answer === null) {
        // A refused Produce with acks 0 gets no answer; the refusal is logged instead.
        const who = connection.session?.principal;
        this.#log(`kafka: acks=0 ${message.name} from ${who} refused: not allowed on its topics`);
      }
      return respond(message, apiVersion, correlationId, verdict.answer);
    }
    const handler = HANDLERS.get(apiKey) as Handler;
    const context = { apiVersion, clientId, remoteAddress: connection.remoteAddress, connection };
    const startedAt = performance.now();
    const served = () => this.#onServed?.(message.name, (performance.now() - startedAt) / 1000);
    const result = handler(this.#plane, verdict.body, context);
    // Authenticated by this request: the next frame may be as large as the full limit.
    if (session?.principal !== undefined) connection.authenticated(this.#limits.frameBytesMax);
    const finish = verdict.finish ?? ((answer: Struct | null) => answer);
    if (result instanceof Promise) {
      return result.then((answer) => {
        served();
        return respond(message, apiVersion, correlationId, finish(answer));
      });
    }
    served();
    return respond(message, apiVersion, correlationId, finish(result));
  }

  /** The API's ACL rule, once the connection has authenticated (every request passes it). */
  #authorize(
    message: Message,
    body: Struct,
    connection: KafkaConnection,
    apiVersion: number,
  ): Verdict {
    const principal = connection.session?.principal;
    if (principal === undefined) return { kind: "serve", body };
    const rule = KAFKA_AUTHORIZATION[message.name as keyof typeof KAFKA_AUTHORIZATION];
    return rule(body, connection.check(this.#plane.security!), apiVersion);
  }

  /** A bare SASL token after SaslHandshake v0: answered as a bare frame, or the door shut. */
  #bareToken(session: KafkaSession, frame: Uint8Array, connection: KafkaConnection) {
    const token = this.#plane.security!.token(session, connection, frame);
    if (token === undefined) {
      throw new ProtocolError("AUTHENTICATION_FAILED", "SASL authentication failed");
    }
    if (session.principal !== undefined) connection.authenticated(this.#limits.frameBytesMax);
    const out = new Uint8Array(4 + token.length);
    new DataView(out.buffer).setInt32(0, token.length);
    out.set(token, 4);
    return [out];
  }

  #sweepOrStop(): void {
    try {
      const now = Date.now();
      for (const connection of this.#connections.values()) {
        if (connection.idleSinceMs + this.#limits.idleTimeoutMs < now) connection.close();
        if (connection.closed) continue;
        const session = connection.session;
        const late = session === undefined ? undefined : this.security!.timedOut(session, now);
        if (late !== undefined) {
          this.#log(`kafka: closing connection from ${connection.remoteAddress}: ${late}`);
          connection.close();
        }
      }
      this.#plane.classic.expire(now);
    } catch (error) {
      if (!(error instanceof InvariantError)) throw error;
      this.#onFatal(error);
    }
  }

  /** Stops accepting, answers waiting long polls, closes every connection. */
  close(): void {
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#sweep = undefined;
    this.#transport?.stopListening();
    this.#plane.waitingFetches.callAll();
    this.#plane.classic.close();
    for (const connection of this.#connections.values()) connection.end();
    this.#transport?.stop();
    this.#connections.clear();
  }
}

function skipTaggedFields(reader: KafkaReader): void {
  const count = reader.uvarint("header tagged fields");
  for (let i = 0; i < count; i++) {
    reader.uvarint("tag");
    reader.skip(reader.uvarint("tagged field size"), "header tagged field");
  }
}

/** Frames an answer: header v0, or v1 (tagged fields) for flexible versions, not ApiVersions. */
function respond(
  message: Message,
  apiVersion: number,
  correlationId: number,
  answer: Struct | null,
): Uint8Array[] | null {
  if (answer === null) return null;
  const codec = codecFor(message, apiVersion);
  const writer = new KafkaWriter(256);
  writer.int32(0).int32(correlationId);
  if (codec.flexible && message.key !== API_KEYS.ApiVersions) writer.uvarint(0);
  codec.response.encode(writer, answer);
  const chunks = writer.finish();
  const first = chunks[0]!;
  new DataView(first.buffer, first.byteOffset, 4).setInt32(0, writer.sizeBytes - 4);
  return chunks;
}

/**
 * ApiVersions at a version sluice does not know: the v0 body with UNSUPPORTED_VERSION and the
 * list, so the client can retry with a version both sides know (KIP-511).
 */
function unsupportedApiVersions(plane: KafkaPlane, correlationId: number): Uint8Array[] {
  const body = apiVersionsBody(plane.caps, 35);
  return respond(MESSAGES.get(API_KEYS.ApiVersions)!, 0, correlationId, body)!;
}

/** One client connection: frames in, one request served at a time, answers out in order. */
export class KafkaConnection {
  readonly remoteAddress: string;
  idleSinceMs = Date.now();
  #socket: TransportSocket;
  #outbox: Outbox;
  #reader: FrameReader;
  #listener: KafkaListener;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #busy = false;
  #paused = false;
  closed = false;
  #onClose: (() => void)[] = [];
  /** Authentication state, with authentication on. */
  readonly session: KafkaSession | undefined;
  #check: Check | undefined;
  #closeAfterAnswers = false;

  constructor(socket: TransportSocket, listener: KafkaListener, session?: KafkaSession) {
    this.#socket = socket;
    this.remoteAddress = socket.remoteAddress;
    // Answers made in one turn (pipelined requests served back to back) go out in one write.
    this.#outbox = new Outbox(socket, {
      coalesceTurn: true,
      onTurnWritten: () => {
        if (!this.closed) this.#written();
      },
      // Fetch answers' views of cold-read buffers go back to their pool once written.
      onChunkWritten: coldViewWritten,
    });
    this.#listener = listener;
    this.session = session;
    // Kafka sizes are int32: a negative one reads as above 2^31 here, so over the limit, and
    // a size over the limit is refused from its prefix, before anything is allocated. Until
    // the connection has authenticated, frames are held to the pre-authentication limit.
    const security = listener.security;
    this.#reader = new FrameReader(
      security === undefined
        ? listener.frameBytesMax
        : Math.min(listener.frameBytesMax, security.gate.authFrameBytesMax),
    );
  }

  /** The connection's TLS session, or undefined on a plaintext listener. */
  tls(): { principal: string | undefined } | undefined {
    return tlsPeerOf(this.#socket);
  }

  /** Authenticated: frames may be as large as the listener's full limit. */
  authenticated(frameBytesMax: number): void {
    this.#reader.frameBytesMax = frameBytesMax;
  }

  /** The ACL questions for this connection's principal, made once. */
  check(security: KafkaSecurity): Check {
    const principal = this.session?.principal;
    if (principal === undefined) throw new InvariantError("ACL check before authentication");
    if (this.#check === undefined) {
      const authorizer = security.authorizer;
      this.#check = {
        allowed: (type, name, operation) => authorizer.allowed(principal, type, name, operation),
        allowedOnAny: (type, operation) => authorizer.allowedOnAny(principal, type, operation),
      };
    }
    return this.#check;
  }

  /** After a refused or failed handshake: the answers go out, then the connection closes. */
  closeAfterAnswers(): void {
    this.#closeAfterAnswers = true;
  }

  data(bytes: Uint8Array): void {
    if (this.closed) return;
    // A client certificate (auth "mtls") authenticates before the first frame is read, so
    // that frame may already be as large as the full limit.
    const session = this.session;
    const security = this.#listener.security;
    if (session?.principal === undefined && security?.byCertificate(session!, this) === true) {
      this.authenticated(this.#listener.frameBytesMax);
    }
    try {
      this.#reader.push(bytes, (frame) => this.#arrive(frame));
    } catch (error) {
      if (!(error instanceof FrameTooLargeError)) throw error;
      this.#listener.failed(this, error);
    }
  }

  #arrive(frame: Uint8Array): void {
    this.idleSinceMs = Date.now();
    if (this.closed || this.#closeAfterAnswers) return;
    // The frame is a view of the socket's buffer, valid only now: served at once when idle
    // (every handler reads its request before its first await), else copied to wait.
    if (!this.#busy && this.#queue.length === 0 && !this.#answersBacklogged()) {
      this.#serve(frame);
      return;
    }
    this.#queue.push(frame.slice());
    this.#queuedBytes += frame.length;
    const full =
      this.#queue.length >= QUEUED_REQUESTS_MAX ||
      this.#queuedBytes >= this.#listener.queuedBytesMax;
    if (full && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  /** Answers past outboxBytesMax wait for the socket: no request is served until it drains. */
  #answersBacklogged(): boolean {
    return this.#outbox.queuedBytes > this.#listener.queuedBytesMax;
  }

  #serve(frame: Uint8Array): void {
    this.#busy = true;
    let result: Uint8Array[] | null | Promise<Uint8Array[] | null>;
    try {
      result = this.#listener.serve(frame, this);
    } catch (error) {
      this.#busy = false;
      this.#listener.failed(this, error);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (chunks) => this.#answered(chunks),
        (error) => {
          this.#busy = false;
          this.#listener.failed(this, error);
        },
      );
    } else this.#answered(result);
  }

  #answered(chunks: Uint8Array[] | null): void {
    this.#busy = false;
    if (this.closed) return;
    if (chunks !== null) this.#outbox.enqueue(chunks);
    if (this.#closeAfterAnswers) {
      this.#endWhenFlushed();
      return;
    }
    this.idleSinceMs = Date.now();
    this.#next();
  }

  /** Serves the next waiting request, unless one is being served or answers are backlogged. */
  #next(): void {
    if (this.#busy || this.closed || this.#answersBacklogged()) return;
    const next = this.#queue.shift();
    if (next !== undefined) this.#queuedBytes -= next.length;
    const roomy =
      this.#queue.length < QUEUED_REQUESTS_MAX / 2 &&
      this.#queuedBytes < this.#listener.queuedBytesMax / 2;
    if (this.#paused && roomy) {
      this.#paused = false;
      this.#socket.resume();
    }
    if (next !== undefined) this.#serve(next);
  }

  drain(): void {
    this.#outbox.flush();
    this.#written();
  }

  /** The Outbox wrote (on drain, or at the end of a turn): serve on, or end once it is empty. */
  #written(): void {
    if (this.#closeAfterAnswers) {
      this.#endWhenFlushed();
      return;
    }
    this.#next();
  }

  #endWhenFlushed(): void {
    // Answers waiting for the end of this turn go out now.
    this.#outbox.flush();
    if (this.#outbox.queuedBytes === 0) this.end();
  }

  /** Calls to the socket's write (coalesced answers count once). */
  get socketWrites(): number {
    return this.#outbox.writes;
  }

  onClose(listener: () => void): () => void {
    this.#onClose.push(listener);
    return () => {
      const at = this.#onClose.indexOf(listener);
      if (at !== -1) this.#onClose.splice(at, 1);
    };
  }

  #closed(): void {
    if (this.closed) return;
    this.closed = true;
    this.#queue = [];
    this.#queuedBytes = 0;
    for (const listener of this.#onClose.splice(0)) listener();
  }

  close(): void {
    this.#closed();
    this.#outbox.discard();
    this.#socket.destroy();
  }

  /** Ends the socket after what the Outbox holds (the socket keeps what it took). */
  end(): void {
    this.#closed();
    this.#outbox.flush();
    this.#socket.end();
  }

  closedBySocket(): void {
    this.#closed();
    this.#outbox.discard();
  }
}

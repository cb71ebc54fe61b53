// One TCP connection to a sluice server (PROTOCOL.md section 2): the handshake, then requests
// with correlation ids, many in flight at once. The socket is a Bun socket on Bun and node:net
// elsewhere (socket.ts); writes go through the same Outbox as the server's responses.
//
//   request() ──► build frame ──► in flight < inFlightMax ? ──yes──► outgoing ──► Outbox
//                 (one buffer, or          │ no                 (handed over once per tick:
//                  header + batch views)   ▼                     small frames coalesced, large
//                                 waiting (≤ requestQueueMax)    ones written as they are)
//                                 moves up as responses arrive
//
//   socket data ──► FrameReader (views of whole frames; a large frame split across chunks as
//                   the list of views of those chunks) ──► match correlation id ──► resolve
//
// Limits: in-flight requests ≤ min(inFlightMax option, the server's inFlightMax); requests
// waiting for a slot ≤ requestQueueMax (beyond: QUEUE_FULL); request frames ≤ the server's
// frameBytesMax (beyond: RangeError); response frames ≤ responseBytesMax (beyond: the
// connection is closed as MALFORMED_RESPONSE, nothing allocated).
//
// A Produce with acks 0 (no response) takes an in-flight slot too, as the server counts it
// (PROTOCOL.md section 2): it waits for a slot like any request and holds it until its last byte
// is written to the socket, so a fast acks-0 sender is held back here, by its own in-flight
// limit, instead of queueing frames without bound behind a server that has stopped reading.
//
// A request that times out is rejected at once, but keeps its in-flight slot until its late
// response arrives (and is dropped): the server still counts it, and sending another in its
// place could exceed the server's inFlightMax. A dropped connection rejects every outstanding
// request with CONNECTION_CLOSED, which is retriable.

import { setImmediate } from "node:timers";
import { API, finishFrame, RESPONSE_HEADER_BYTES, startRequest } from "../codec/frames.ts";
import {
  type HandshakeResponse,
  readHandshakeResponse,
  writeHandshakeRequest,
} from "../codec/handshake.ts";
import { errorFromWire, ServerError } from "../codec/errors.ts";
import { FrameReader } from "../codec/frame_reader.ts";
import { Outbox } from "../codec/outbox.ts";
import { Reader, type Writer } from "../codec/wire.ts";
import { ClientError } from "./errors.ts";
import { IdTable, joinViews } from "../../record/mod.ts";
import { authenticate, type ClientSaslOptions, checkSaslOptions } from "./sasl.ts";
import {
  type ClientSocket,
  type ClientSocketKind,
  type ClientTlsOptions,
  checkSocketKind,
  defaultSocketKind,
  openSocket,
} from "./socket.ts";

export const CLIENT_VERSION = "0.1.0";
export const API_VERSION = 1;
export const CONNECT_TIMEOUT_MS_DEFAULT = 10_000;
export const REQUEST_TIMEOUT_MS_DEFAULT = 30_000;
export const REQUEST_QUEUE_MAX_DEFAULT = 65_536;
/** The largest batch a topic may allow (256 MiB) plus room for a fetch response's headers. */
export const RESPONSE_BYTES_MAX_DEFAULT = 256 * 1024 * 1024 + 1024 * 1024;
/** The handshake response is small; a larger first frame means this is not a sluice server. */
const HANDSHAKE_RESPONSE_BYTES_MAX = 65_536;
/** Responses at least this large that span received chunks are kept as views of the chunks. */
const CHUNKED_RESPONSE_BYTES_MIN = 64 * 1024;
const CORRELATION_ID_MODULUS = 2 ** 32;

export type ClientConnectionOptions = {
  /** Sent in the handshake, for the server's logs. */
  clientName?: string;
  connectTimeoutMs?: number;
  /** From the call to the response; a Fetch adds its own maxWaitMs. */
  requestTimeoutMs?: number;
  /** Lower than the server's inFlightMax to send fewer requests at once. */
  inFlightMax?: number;
  requestQueueMax?: number;
  responseBytesMax?: number;
  /** "bun" (Bun.connect, the default on Bun) or "node" (node:net, the default elsewhere). */
  transport?: ClientSocketKind;
  /** Connect with TLS (PROTOCOL.md section 11.1). */
  tls?: ClientTlsOptions;
  /** Authenticate after the handshake (section 11.3); SCRAM-SHA-256 unless it says otherwise. */
  sasl?: ClientSaslOptions;
};

export type RequestOptions = {
  timeoutMs?: number;
  /** The body's expected size, so that the frame is allocated once (Produce batches). */
  bodyBytesHint?: number;
  /** Write at once rather than with the other requests of this turn (see `flush`). */
  sendNow?: boolean;
  /** The request's api_version (default 1); `versionMax` says what the server offers. */
  apiVersion?: number;
};

export type ClientConnectionStats = {
  requests: number;
  responses: number;
  /** Socket writes: fewer than requests when frames were coalesced. */
  writes: number;
  bytesWritten: number;
  bytesRead: number;
};

type Settings = {
  clientName: string;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  inFlightMax: number;
  requestQueueMax: number;
  responseBytesMax: number;
  transport: ClientSocketKind;
  tls: ClientTlsOptions | undefined;
  sasl: ClientSaslOptions | undefined;
};

/** Builds a request's frame for its correlation id: one buffer, or several chunks in order. */
export type FrameBuilder = (correlationId: number) => Uint8Array[];

/**
 * Where a request's outcome goes. Taken by `requestFrameTo` from a caller that keeps a
 * per-request object anyway (the producer's request): the connection calls it directly, so the
 * request makes no promise, no resolving functions and no closures (issue 16's allocations).
 */
export interface AnswerSlot {
  /** The response frame, error code 0, as received: one view, or views of several chunks. */
  answered(frame: Uint8Array[]): void;
  /** A server error code, a timeout or the connection's failure; called at most once. */
  failed(error: Error): void;
}

/** An AnswerSlot that also builds its request's frame, as a FrameBuilder does. */
export interface FrameSlot extends AnswerSlot {
  frame(correlationId: number): Uint8Array[];
}

/** The AnswerSlot of a promise-returning request: the promise's functions and its mapping. */
class PromiseSlot<T> implements AnswerSlot {
  readonly #map: (frame: Uint8Array[]) => T;
  readonly #settle: (value: T) => void;
  readonly #reject: (error: Error) => void;

  constructor(
    map: (frame: Uint8Array[]) => T,
    settle: (value: T) => void,
    reject: (error: Error) => void,
  ) {
    this.#map = map;
    this.#settle = settle;
    this.#reject = reject;
  }

  answered(frame: Uint8Array[]): void {
    this.#settle(this.#map(frame));
  }

  failed(error: Error): void {
    this.#reject(error);
  }
}

/**
 * A request whose body a callback writes, answered through a promise (request,
 * requestChunks): the frame builder, the request header and the promise's slot in one object.
 * They were a builder closure and its scope, a header object and a PromiseSlot per request
 * (every consumer fetch).
 */
class BodyRequest<T> implements FrameSlot {
  readonly apiKey: number;
  readonly apiVersion: number;
  correlationId = 0;
  readonly #map: (frame: Uint8Array[]) => T;
  readonly #writeBody: (writer: Writer) => void;
  readonly #capacity: number;
  readonly #settle: (value: T) => void;
  readonly #reject: (reason: unknown) => void;

  constructor(
    request: { apiKey: number; apiVersion: number; capacity: number },
    writeBody: (writer: Writer) => void,
    map: (frame: Uint8Array[]) => T,
    settled: { resolve: (value: T) => void; reject: (reason: unknown) => void },
  ) {
    this.apiKey = request.apiKey;
    this.apiVersion = request.apiVersion;
    this.#capacity = request.capacity;
    this.#writeBody = writeBody;
    this.#map = map;
    this.#settle = settled.resolve;
    this.#reject = settled.reject;
  }

  /** The frame in one Writer, allocated at the hinted size (see #frameOf). */
  frame(correlationId: number): Uint8Array[] {
    this.correlationId = correlationId;
    const writer = startRequest(this, this.#capacity);
    this.#writeBody(writer);
    return [finishFrame(writer)];
  }

  answered(frame: Uint8Array[]): void {
    this.#settle(this.#map(frame));
  }

  failed(error: Error): void {
    this.#reject(error);
  }
}

type Pending = {
  apiKey: number;
  slot: AnswerSlot;
  /** performance.now() time past which it times out, and the timeout it was given. */
  deadlineMs: number;
  timeoutMs: number;
  /** Timed out: the promise is settled, the in-flight slot is still taken. */
  abandoned: boolean;
  /** A request without a response (acks 0): resolved, with no frame, once written. */
  unanswered?: true;
};

/** An acks-0 request holding a slot until the socket has taken its bytes up to `endBytes`. */
type Unanswered = { endBytes: number; pending: Pending };

type Waiting = { correlationId: number; frame: Uint8Array[]; pending: Pending };

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const resolved = value ?? fallback;
  if (!Number.isSafeInteger(resolved) || resolved < 1) {
    throw new RangeError(`${name} ${resolved} is not a positive integer`);
  }
  return resolved;
}

function resolveSettings(options: ClientConnectionOptions): Settings {
  const clientName = options.clientName ?? "sluice-ts";
  if (typeof clientName !== "string") throw new TypeError("clientName must be a string");
  return {
    transport: checkSocketKind(options.transport ?? defaultSocketKind()),
    tls: options.tls,
    sasl: options.sasl === undefined ? undefined : checkSaslOptions(options.sasl),
    clientName,
    connectTimeoutMs: positiveInteger(
      "connectTimeoutMs",
      options.connectTimeoutMs,
      CONNECT_TIMEOUT_MS_DEFAULT,
    ),
    requestTimeoutMs: positiveInteger(
      "requestTimeoutMs",
      options.requestTimeoutMs,
      REQUEST_TIMEOUT_MS_DEFAULT,
    ),
    inFlightMax: positiveInteger("inFlightMax", options.inFlightMax, Number.MAX_SAFE_INTEGER),
    requestQueueMax: positiveInteger(
      "requestQueueMax",
      options.requestQueueMax,
      REQUEST_QUEUE_MAX_DEFAULT,
    ),
    responseBytesMax: positiveInteger(
      "responseBytesMax",
      options.responseBytesMax,
      RESPONSE_BYTES_MAX_DEFAULT,
    ),
  };
}

export class ClientConnection {
  readonly host: string;
  readonly port: number;
  #socket: ClientSocket | undefined;
  #outbox: Outbox | undefined;
  #settings: Settings;
  #frames = new FrameReader(HANDSHAKE_RESPONSE_BYTES_MAX, {
    chunkedBytesMin: CHUNKED_RESPONSE_BYTES_MIN,
  });
  #handshake: HandshakeResponse | undefined;
  #supported = new Set<number>();
  #inFlightMax = 1;
  #nextCorrelationId = 0;
  /**
   * Requests sent and waiting for their responses, by correlation id. An IdTable, not a Map:
   * what JavaScriptCore's Map deleted stays reachable until its next full collection
   * (record/id_table.ts), and each response would have carried its request into the old
   * generation.
   */
  #pending = new IdTable<Pending>();
  /** Requests without a response, in the order written, each holding a slot until written. */
  #unanswered: Unanswered[] = [];
  /** Bytes ever handed to #outgoing, and those of them not yet handed to the Outbox. */
  #queuedTotalBytes = 0;
  #outgoingBytes = 0;
  #waiting: Waiting[] = [];
  #waitingHead = 0;
  /** Chunks of the frames made this tick, handed to the Outbox together. */
  #outgoing: Uint8Array[] = [];
  #spareOutgoing: Uint8Array[] = [];
  #flushScheduled = false;
  /** The one timer of the requests' timeouts, and when it is due (see #armDeadline). */
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  #deadlineDueMs = Number.POSITIVE_INFINITY;
  /** A request being sent at once (sendNow): its frame goes out without a scheduled flush. */
  #sendingNow = false;
  /** close() was called: end the socket once the Outbox has written everything. */
  #ending = false;
  #closedError: ClientError | undefined;
  #closedPromise: Promise<void>;
  #resolveClosed: () => void = () => {};
  #stats: ClientConnectionStats = {
    requests: 0,
    responses: 0,
    writes: 0,
    bytesWritten: 0,
    bytesRead: 0,
  };

  private constructor(host: string, port: number, settings: Settings) {
    this.host = host;
    this.port = port;
    this.#settings = settings;
    this.#closedPromise = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  /** Opens a connection and completes the handshake; rejects with CONNECT_FAILED. */
  static connect(
    host: string,
    port: number,
    options: ClientConnectionOptions = {},
  ): Promise<ClientConnection> {
    if (typeof host !== "string" || host.length === 0) {
      throw new TypeError(`host ${String(host)} must be a non-empty string`);
    }
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new RangeError(`port ${port} is not a TCP port`);
    }
    const settings = resolveSettings(options);
    return new ClientConnection(host, port, settings).#open();
  }

  async #open(): Promise<ClientConnection> {
    const { connectTimeoutMs } = this.#settings;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new ClientError(
            "CONNECT_FAILED",
            `${this.#where()}: no handshake within ` + `connectTimeoutMs ${connectTimeoutMs}`,
          ),
        );
      }, connectTimeoutMs);
    });
    const opening = this.#openSocket();
    try {
      await Promise.race([opening, timeout]);
      const reader = await Promise.race([this.#sendHandshake(), timeout]);
      this.#applyHandshake(readHandshakeResponse(reader));
      const sasl = this.#settings.sasl;
      if (sasl !== undefined) await Promise.race([authenticate(this, sasl), timeout]);
      return this;
    } catch (error) {
      // A socket that connects after the timeout is closed as soon as it does.
      opening.then(
        (socket) => socket.destroy(),
        () => undefined,
      );
      this.#fail(new ClientError("CONNECT_FAILED", `${this.#where()}: connect failed`));
      if (error instanceof ClientError && error.code !== "CONNECTION_CLOSED") throw error;
      // The server refused the credentials (AUTHENTICATION_FAILED, ...): its error, as sent.
      if (error instanceof ServerError) throw error;
      const message = error instanceof Error ? error.message : String(error);
      throw new ClientError("CONNECT_FAILED", `${this.#where()}: ${message}`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }

  async #openSocket(): Promise<ClientSocket> {
    const socket = await openSocket(
      this.host,
      this.port,
      {
        data: (chunk) => this.#onData(chunk),
        drain: () => this.#onDrain(),
        close: (error) => this.#onClose(error),
      },
      this.#settings.transport,
      this.#settings.tls,
    );
    const counted: ClientSocket = {
      kind: socket.kind,
      write: (bytes) => {
        const result = socket.write(bytes);
        this.#stats.writes++;
        this.#stats.bytesWritten += result.taken;
        return result;
      },
      pause: () => socket.pause(),
      resume: () => socket.resume(),
      end: () => socket.end(),
      destroy: () => socket.destroy(),
      remoteAddress: socket.remoteAddress,
      // The Outbox reuses its coalescing buffer only for a socket that says so.
      writeCopies: socket.writeCopies === true,
    };
    if (this.#closedError !== undefined) {
      socket.destroy();
      throw this.#closedError;
    }
    this.#socket = counted;
    this.#outbox = new Outbox(counted);
    return counted;
  }

  #sendHandshake(): Promise<Reader> {
    return this.#enqueue(
      toReader,
      API.Handshake,
      this.#frameOf(API.Handshake, (writer) => {
        writeHandshakeRequest(writer, {
          clientName: this.#settings.clientName,
          clientVersion: CLIENT_VERSION,
        });
      }),
      this.#settings.connectTimeoutMs,
    );
  }

  #applyHandshake(response: HandshakeResponse): void {
    for (const api of response.apis) {
      if (api.min <= API_VERSION && API_VERSION <= api.max) this.#supported.add(api.apiKey);
    }
    for (const apiKey of [API.Metadata, API.Produce, API.Fetch]) {
      if (!this.#supported.has(apiKey)) {
        throw new ClientError(
          "UNSUPPORTED_SERVER",
          `Server ${response.serverVersion} does not offer version ${API_VERSION} of api ${apiKey}`,
        );
      }
    }
    this.#handshake = response;
    this.#inFlightMax = Math.max(1, Math.min(this.#settings.inFlightMax, response.inFlightMax));
    this.#frames.frameBytesMax = this.#settings.responseBytesMax;
    this.#pump();
  }

  get serverVersion(): string {
    return this.#handshake?.serverVersion ?? "";
  }

  /** The largest request frame the server accepts (payload bytes). */
  get frameBytesMax(): number {
    return this.#handshake?.frameBytesMax ?? HANDSHAKE_RESPONSE_BYTES_MAX;
  }

  get inFlightMax(): number {
    return this.#inFlightMax;
  }

  /** Requests holding a slot: awaiting a response, or (acks 0) not yet written. */
  get inFlight(): number {
    return this.#pending.size + this.#unanswered.length;
  }

  /** Bytes of requests made but not yet taken by the socket. */
  get unwrittenBytes(): number {
    return this.#outgoingBytes + (this.#outbox?.queuedBytes ?? 0);
  }

  get waiting(): number {
    return this.#waiting.length - this.#waitingHead;
  }

  get closed(): boolean {
    return this.#closedError !== undefined;
  }

  /** Settles when the socket has closed, for whatever reason. */
  get whenClosed(): Promise<void> {
    return this.#closedPromise;
  }

  get stats(): Readonly<ClientConnectionStats> {
    return this.#stats;
  }

  /** "bun" or "node": the socket this connection writes through. */
  get transport(): ClientSocketKind {
    return this.#settings.transport;
  }

  supports(apiKey: number): boolean {
    return this.#supported.has(apiKey);
  }

  /** The highest version of `apiKey` the server offers (0: none, or no handshake yet). */
  versionMax(apiKey: number): number {
    const api = this.#handshake?.apis.find((range) => range.apiKey === apiKey);
    return api?.max ?? 0;
  }

  /**
   * Sends a request and resolves with a Reader over the response body. A request-level error
   * code rejects with a ServerError named by it; transport failures reject with a ClientError.
   */
  request(
    apiKey: number,
    writeBody: (writer: Writer) => void,
    options?: RequestOptions,
  ): Promise<Reader> {
    const response = this.#requestBody(toReader, apiKey, writeBody, options);
    if (options?.sendNow === true) this.#flush();
    return response;
  }

  /**
   * `request`, with the whole frame (size prefix and request header included) built by the
   * caller for the correlation id it is given, as chunks written in order without being copied
   * together: a Produce request's record batches go to the socket as the producer's buffers.
   * The chunks must stay unchanged until the request has completed.
   */
  requestFrame(
    apiKey: number,
    build: FrameBuilder,
    options?: Pick<RequestOptions, "timeoutMs">,
  ): Promise<Reader> {
    return this.#request(toReader, apiKey, build, options?.timeoutMs);
  }

  /**
   * `request`, resolving with the response body as views of the received chunks, in order
   * (one view unless the response was large and arrived in several chunks): nothing is copied,
   * for Fetch responses whose records the application keeps as views.
   */
  requestChunks(
    apiKey: number,
    writeBody: (writer: Writer) => void,
    options?: RequestOptions,
  ): Promise<Uint8Array[]> {
    const sendNow = options?.sendNow === true;
    // Sent at once below: no hand-over at the end of the turn is scheduled for it.
    this.#sendingNow = sendNow;
    let response: Promise<Uint8Array[]>;
    try {
      response = this.#requestBody(toBody, apiKey, writeBody, options);
    } finally {
      this.#sendingNow = false;
    }
    if (sendNow) this.#flush();
    return response;
  }

  /** `#request` for a body written by `writeBody`, as one BodyRequest (no closures). */
  #requestBody<T>(
    map: (frame: Uint8Array[]) => T,
    apiKey: number,
    writeBody: (writer: Writer) => void,
    options: RequestOptions | undefined,
  ): Promise<T> {
    if (!this.#supported.has(apiKey)) {
      return Promise.reject(
        new ClientError("UNSUPPORTED_SERVER", `The server does not offer api ${apiKey} v1`),
      );
    }
    // The client also runs on Node 20, which lacks Promise.withResolvers: a module-level
    // executor hands the functions over instead of a closure per request.
    const promise = new Promise<T>(takeResolvers);
    const reject = RESOLVERS.reject;
    const shape = this.#bodyShape;
    shape.apiKey = apiKey;
    shape.apiVersion = options?.apiVersion ?? API_VERSION;
    // As #frameOf: the Writer is allocated once at the hinted size, never grown.
    const hint = options?.bodyBytesHint ?? 0;
    shape.capacity = 256 + Math.min(Math.max(hint, 0), this.frameBytesMax);
    const slot = new BodyRequest(shape, writeBody, map, RESOLVERS);
    RESOLVERS.resolve = ignoreSettlement;
    RESOLVERS.reject = ignoreSettlement;
    const timeoutMs = options?.timeoutMs ?? this.#settings.requestTimeoutMs;
    try {
      const problem = this.#send(apiKey, slot, slot, timeoutMs);
      if (problem !== undefined) reject(problem);
    } catch (error) {
      // As from a promise's executor: a builder's exception rejects, it is never thrown.
      reject(error);
    }
    return promise;
  }
  /** BodyRequest's constructor arguments, read before it returns: one object for all. */
  readonly #bodyShape = { apiKey: 0, apiVersion: 0, capacity: 0 };

  #request<T>(
    map: (frame: Uint8Array[]) => T,
    apiKey: number,
    build: FrameBuilder,
    timeoutMs = this.#settings.requestTimeoutMs,
  ): Promise<T> {
    if (!this.#supported.has(apiKey)) {
      return Promise.reject(
        new ClientError("UNSUPPORTED_SERVER", `The server does not offer api ${apiKey} v1`),
      );
    }
    return this.#enqueue(map, apiKey, build, timeoutMs);
  }

  /**
   * Sends a request that gets no response (Produce with acks 0); resolves once the socket has
   * taken the whole frame. Until then it holds an in-flight slot (and waits for one when none
   * is free), as the server counts it against its inFlightMax.
   */
  requestWithoutResponse(
    apiKey: number,
    writeBody: (writer: Writer) => void,
    options?: Pick<RequestOptions, "bodyBytesHint">,
  ): Promise<void> {
    return this.requestFrameWithoutResponse(
      apiKey,
      this.#frameOf(apiKey, writeBody, options?.bodyBytesHint),
    );
  }

  /** `requestWithoutResponse` for a frame built by the caller, as `requestFrame`. */
  requestFrameWithoutResponse(apiKey: number, build: FrameBuilder): Promise<void> {
    if (this.#closedError !== undefined) return Promise.reject(this.#closedError);
    if (!this.#supported.has(apiKey)) {
      return Promise.reject(
        new ClientError("UNSUPPORTED_SERVER", `The server does not offer api ${apiKey} v1`),
      );
    }
    let frame: Uint8Array[];
    const correlationId = this.#takeCorrelationId();
    try {
      frame = this.#checkedFrame(build(correlationId));
    } catch (error) {
      return Promise.reject(error);
    }
    this.#stats.requests++;
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = {
        apiKey,
        slot: new PromiseSlot(ignoreFrame, resolve, reject),
        // No response to wait for: it never times out, its slot is freed once written.
        deadlineMs: Number.POSITIVE_INFINITY,
        timeoutMs: 0,
        abandoned: false,
        unanswered: true,
      };
      if (this.inFlight < this.#inFlightMax && this.waiting === 0) {
        this.#transmit(correlationId, frame, pending);
      } else {
        this.#waiting.push({ correlationId, frame, pending });
      }
    });
  }

  #enqueue<T>(
    map: (frame: Uint8Array[]) => T,
    apiKey: number,
    build: FrameBuilder,
    timeoutMs: number,
  ): Promise<T> {
    return new Promise<T>((settle, reject) => {
      const problem = this.#send(apiKey, build, new PromiseSlot(map, settle, reject), timeoutMs);
      if (problem !== undefined) reject(problem);
    });
  }

  /**
   * `requestFrame` whose outcome goes to `slot` instead of a promise; the slot builds the
   * frame too. A failure before the request is queued (a closed connection, a full queue, a
   * frame too large) reaches `slot.failed` in a microtask, never inside this call, as a
   * rejection would: the caller's own state is settled before its failure handler runs.
   */
  requestFrameTo(
    apiKey: number,
    slot: FrameSlot,
    options?: Pick<RequestOptions, "timeoutMs"> & { callerFlushes?: boolean },
  ) {
    const timeoutMs = options?.timeoutMs ?? this.#settings.requestTimeoutMs;
    let problem: Error | undefined;
    if (!this.#supported.has(apiKey)) {
      problem = new ClientError("UNSUPPORTED_SERVER", `The server does not offer api ${apiKey} v1`);
    } else {
      // A caller that calls flush() before it returns (the producer, after all its requests)
      // needs no hand-over at the end of the turn: none is scheduled for it.
      this.#sendingNow = options?.callerFlushes === true;
      try {
        problem = this.#send(apiKey, slot, slot, timeoutMs);
      } catch (error) {
        problem = error instanceof Error ? error : new Error(String(error));
      } finally {
        this.#sendingNow = false;
      }
    }
    if (problem !== undefined) {
      const failure = problem;
      queueMicrotask(() => slot.failed(failure));
    }
  }

  /**
   * Queues a request whose outcome goes to `slot`; returns the error that keeps it from being
   * queued. A frame builder's exception (a frame over frameBytesMax) is thrown.
   */
  #send(
    apiKey: number,
    build: FrameBuilder | FrameSlot,
    slot: AnswerSlot,
    timeoutMs: number,
  ): Error | undefined {
    if (this.#closedError !== undefined) return this.#closedError;
    const correlationId = this.#takeCorrelationId();
    const built = typeof build === "function" ? build(correlationId) : build.frame(correlationId);
    const frame = this.#checkedFrame(built);
    if (this.waiting >= this.#settings.requestQueueMax) {
      return new ClientError(
        "QUEUE_FULL",
        `${this.waiting} requests wait for a slot ` +
          `on ${this.#where()}; requestQueueMax is ${this.#settings.requestQueueMax}`,
      );
    }
    const deadlineMs = performance.now() + timeoutMs;
    const pending: Pending = { apiKey, slot, deadlineMs, timeoutMs, abandoned: false };
    if (deadlineMs < this.#deadlineDueMs) this.#armDeadline(deadlineMs);
    this.#stats.requests++;
    if (this.inFlight < this.#inFlightMax && this.waiting === 0) {
      this.#transmit(correlationId, frame, pending);
    } else {
      this.#waiting.push({ correlationId, frame, pending });
    }
    return undefined;
  }

  #takeCorrelationId(): number {
    let id = this.#nextCorrelationId;
    // Ids wrap at 2^32; skipping one still in use keeps them unique on the connection.
    while (this.#pending.has(id)) id = (id + 1) % CORRELATION_ID_MODULUS;
    this.#nextCorrelationId = (id + 1) % CORRELATION_ID_MODULUS;
    return id;
  }

  /** A builder that writes the frame into one Writer, sized once from the hint. */
  // The frame is a single buffer: the Writer is allocated at the hinted size, never grown.
  #frameOf(
    apiKey: number,
    writeBody: (writer: Writer) => void,
    bodyBytesHint = 0,
    apiVersion = API_VERSION,
  ): FrameBuilder {
    return (correlationId) => {
      const capacity = 256 + Math.min(Math.max(bodyBytesHint, 0), this.frameBytesMax);
      const writer = startRequest({ apiKey, apiVersion, correlationId }, capacity);
      writeBody(writer);
      return [finishFrame(writer)];
    };
  }

  #checkedFrame(frame: Uint8Array[]): Uint8Array[] {
    let payloadBytes = -4;
    for (const chunk of frame) payloadBytes += chunk.length;
    if (payloadBytes > this.frameBytesMax) {
      throw new RangeError(
        `Request of ${payloadBytes} bytes exceeds the server's frameBytesMax ${this.frameBytesMax}`,
      );
    }
    return frame;
  }

  #transmit(correlationId: number, frame: Uint8Array[], pending: Pending): void {
    this.#queueWrite(frame);
    if (pending.unanswered === true) {
      this.#unanswered.push({ endBytes: this.#queuedTotalBytes, pending });
    } else {
      this.#pending.set(correlationId, pending);
    }
  }

  /** Frees the slots of acks-0 requests the socket has taken whole; fills them from waiting. */
  #settleWritten(): void {
    const writtenBytes = this.#queuedTotalBytes - this.unwrittenBytes;
    let released = 0;
    while (released < this.#unanswered.length) {
      const head = this.#unanswered[released]!;
      if (head.endBytes > writtenBytes) break;
      released++;
      head.pending.slot.answered([]);
    }
    if (released === 0) return;
    this.#unanswered.splice(0, released);
    this.#pump();
  }

  /**
   * Request timeouts share one timer per connection, due at the earliest deadline of the
   * requests outstanding (a timer per request cost an allocation and a timer-heap entry each).
   * It is left armed when they are all answered, and not armed again when it finds none.
   */
  #armDeadline(dueMs: number): void {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineDueMs = dueMs;
    // A timer may fire a little before its time on this clock: never a wait of 0 ms.
    const waitMs = Math.max(1, Math.ceil(dueMs - performance.now()));
    this.#deadlineTimer = setTimeout(this.#onDeadline, waitMs);
  }

  #onDeadline = (): void => {
    this.#deadlineTimer = undefined;
    this.#deadlineDueMs = Number.POSITIVE_INFINITY;
    const now = performance.now();
    const due: [number, Pending][] = [];
    let nextMs = Number.POSITIVE_INFINITY;
    const check = (correlationId: number, pending: Pending) => {
      if (pending.abandoned) return;
      if (pending.deadlineMs <= now) due.push([correlationId, pending]);
      else nextMs = Math.min(nextMs, pending.deadlineMs);
    };
    this.#pending.forEach((pending, correlationId) => {
      check(correlationId, pending);
    });
    for (let i = this.#waitingHead; i < this.#waiting.length; i++) {
      const waiting = this.#waiting[i]!;
      check(waiting.correlationId, waiting.pending);
    }
    for (const [correlationId, pending] of due) this.#timeOut(correlationId, pending);
    if (nextMs !== Number.POSITIVE_INFINITY) this.#armDeadline(nextMs);
  };

  #timeOut(correlationId: number, pending: Pending): void {
    const { timeoutMs } = pending;
    pending.abandoned = true;
    pending.slot.failed(
      new ClientError(
        "REQUEST_TIMED_OUT",
        `No response to api ${pending.apiKey} ` +
          `(correlation id ${correlationId}) from ${this.#where()} within ${timeoutMs} ms`,
      ),
    );
    // A request still waiting for a slot is simply never sent.
    if (!this.#pending.has(correlationId)) {
      const index = this.#waiting.findIndex((w) => w.correlationId === correlationId);
      if (index >= this.#waitingHead) this.#waiting.splice(index, 1);
    }
  }

  /** Moves waiting requests into free in-flight slots. */
  #pump(): void {
    if (this.#ending) return;
    while (this.inFlight < this.#inFlightMax && this.#waitingHead < this.#waiting.length) {
      const next = this.#waiting[this.#waitingHead]!;
      this.#waitingHead++;
      this.#transmit(next.correlationId, next.frame, next.pending);
    }
    if (this.#waitingHead > 1024 && this.#waitingHead * 2 > this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#waitingHead);
      this.#waitingHead = 0;
    }
  }

  #queueWrite(frame: Uint8Array[]): void {
    for (const chunk of frame) {
      this.#outgoing.push(chunk);
      this.#outgoingBytes += chunk.length;
      this.#queuedTotalBytes += chunk.length;
    }
    if (this.#flushScheduled || this.#sendingNow) return;
    this.#flushScheduled = true;
    // One hand-over per turn of the event loop: every request made in this turn goes out in as
    // few socket writes as possible (each write costs microseconds).
    setImmediate(this.#flushLater);
  }

  /**
   * Hands the requests made so far to the socket now, instead of at the end of this turn of the
   * event loop: for a caller that knows it has made all it will (a producer after sending its
   * batches, a consumer after its one fetch), saving the wait for the rest of the turn.
   */
  flush(): void {
    this.#flush();
  }

  #flush(): void {
    this.#flushScheduled = false;
    const outbox = this.#outbox;
    if (this.#closedError !== undefined || outbox === undefined) return;
    if (this.#outgoing.length === 0) return;
    // Two lists, swapped: the Outbox copies the chunks into its queue, so the one handed over
    // is emptied and kept for the next flush (no array per flush).
    const chunks = this.#outgoing;
    this.#outgoing = this.#spareOutgoing;
    this.#outgoingBytes = 0;
    // The Outbox writes at once unless the socket pushed back; then it waits for drain.
    outbox.enqueue(chunks);
    chunks.length = 0;
    this.#spareOutgoing = chunks;
    if (this.#unanswered.length > 0) this.#settleWritten();
  }

  #onDrain(): void {
    this.#outbox?.flush();
    if (this.#unanswered.length > 0) this.#settleWritten();
    if (this.#ending && this.#outbox?.idle === true) this.#socket?.end();
  }

  #onClose(error: Error | undefined): void {
    const message =
      error === undefined
        ? `${this.#where()} closed by the server`
        : `${this.#where()}: ${error.message}`;
    this.#fail(new ClientError("CONNECTION_CLOSED", message, { cause: error }));
    this.#resolveClosed();
  }

  #onData(chunk: Uint8Array): void {
    this.#stats.bytesRead += chunk.length;
    try {
      this.#frames.pushChunks(chunk, this.#onFrameBound);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.#fail(new ClientError("MALFORMED_RESPONSE", `${this.#where()}: ${message}`));
      this.#socket?.destroy();
    }
  }

  // Made once: a closure per received chunk, and one per turn for the flush, were cells of
  // every request's round trip.
  #onFrameBound = (frame: Uint8Array[]): void => this.#onFrame(frame);
  #flushLater = (): void => this.#flush();

  #onFrame(frame: Uint8Array[]): void {
    const first = frame[0]!.length >= RESPONSE_HEADER_BYTES ? frame[0]! : joined(frame);
    if (first.length < RESPONSE_HEADER_BYTES) {
      throw new RangeError(`Response of ${first.length} bytes is shorter than its header`);
    }
    // The header's two fields read in place (big-endian u32 and i16): no Reader per response.
    const correlationId =
      ((first[0]! << 24) | (first[1]! << 16) | (first[2]! << 8) | first[3]!) >>> 0;
    const errorCode = (((first[4]! << 8) | first[5]!) << 16) >> 16;
    const pending = this.#pending.get(correlationId);
    if (pending === undefined) {
      throw new RangeError(`Response for correlation id ${correlationId}, which is not pending`);
    }
    this.#pending.delete(correlationId);
    this.#stats.responses++;
    if (!pending.abandoned) {
      if (errorCode === 0) {
        pending.slot.answered(frame);
      } else {
        const body = new Reader(joined(frame), RESPONSE_HEADER_BYTES);
        pending.slot.failed(errorFromWire(errorCode, readErrorMessage(body)));
      }
    }
    this.#pump();
  }

  /** Rejects everything outstanding with `error`; the first failure wins. */
  #fail(error: ClientError): void {
    if (this.#closedError !== undefined) return;
    this.#closedError = error;
    const pending = [...this.#pending.values(), ...this.#unanswered.map((u) => u.pending)];
    const waiting = this.#waiting.slice(this.#waitingHead).map((w) => w.pending);
    this.#pending.clear();
    this.#unanswered = [];
    this.#waiting = [];
    this.#waitingHead = 0;
    this.#outgoing = [];
    this.#outgoingBytes = 0;
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    this.#deadlineDueMs = Number.POSITIVE_INFINITY;
    for (const request of [...pending, ...waiting]) {
      if (!request.abandoned) request.slot.failed(error);
    }
  }

  /**
   * Closes the connection: requests still outstanding are rejected with CLOSED. Writes already
   * queued are sent first.
   */
  async close(): Promise<void> {
    const socket = this.#socket;
    if (this.#closedError === undefined && socket !== undefined) {
      // Ending first: a slot the flush frees takes no waiting request (#pump), so what is
      // handed to the Outbox below is all that will be written.
      this.#ending = true;
      this.#flush();
      // acks-0 requests already in the Outbox are written before the socket ends: sent.
      for (const { pending } of this.#unanswered) pending.slot.answered([]);
      this.#unanswered = [];
      this.#fail(new ClientError("CLOSED", `${this.#where()} was closed by the client`));
      // The socket ends once the Outbox has written what it holds (now, or after a drain).
      if (this.#outbox?.idle !== false) socket.end();
    }
    if (socket !== undefined) await this.#closedPromise;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #where(): string {
    return `connection to ${this.host}:${this.port}`;
  }
}

/** One buffer holding the views in order: the view itself when there is only one. */
function joined(views: Uint8Array[]): Uint8Array {
  return views.length === 1 ? views[0]! : joinViews(views);
}

/**
 * The resolving functions of the promise being made in #requestBody: its executor puts them
 * here, and they are taken (and these reset) before anything else runs.
 */
const RESOLVERS: { resolve: (value: unknown) => void; reject: (reason: unknown) => void } = {
  resolve: ignoreSettlement,
  reject: ignoreSettlement,
};

function takeResolvers(resolve: (value: never) => void, reject: (reason: unknown) => void): void {
  RESOLVERS.resolve = resolve as (value: unknown) => void;
  RESOLVERS.reject = reject;
}

function ignoreSettlement(_value: unknown): void {}

/** An acks-0 request's promise resolves with nothing. */
function ignoreFrame(_frame: Uint8Array[]): void {}

/** A Reader over a response frame's body (after correlation id and error code). */
export function toReader(frame: Uint8Array[]): Reader {
  return new Reader(joined(frame), RESPONSE_HEADER_BYTES);
}

/**
 * A response frame's body as views, without the correlation id and error code. The frame's
 * array is this response's own (the frame reader makes one per frame and keeps none): its
 * views are trimmed in place, with no second array per response.
 */
function toBody(frame: Uint8Array[]): Uint8Array[] {
  let skip = RESPONSE_HEADER_BYTES;
  let drop = 0;
  while (drop < frame.length && skip >= frame[drop]!.length) {
    skip -= frame[drop]!.length;
    drop++;
  }
  if (drop > 0) frame.splice(0, drop);
  if (frame.length > 0 && skip > 0) frame[0] = frame[0]!.subarray(skip);
  return frame;
}

function readErrorMessage(reader: Reader): string {
  try {
    return reader.string("error_message");
  } catch {
    return "";
  }
}

// One TCP connection to a sluice server (PROTOCOL.md section 2): the handshake, then requests
// with correlation ids, many in flight at once. Portable: node:net runs on Bun, Deno and Node.
//
//   request() ──► build frame ──► in flight < inFlightMax ? ──yes──► outgoing ──► one write
//                                          │ no                       (coalesced per tick)
//                                          ▼
//                                 waiting (≤ requestQueueMax) ──► moves up as responses arrive
//
//   socket data ──► FrameParser (views of whole frames) ──► match correlation id ──► resolve
//
// Limits: in-flight requests ≤ min(inFlightMax option, the server's inFlightMax); requests
// waiting for a slot ≤ requestQueueMax (beyond: QUEUE_FULL); request frames ≤ the server's
// frameBytesMax (beyond: RangeError); response frames ≤ responseBytesMax (beyond: the
// connection is closed as MALFORMED_RESPONSE, nothing allocated).
//
// A request that times out is rejected at once, but keeps its in-flight slot until its late
// response arrives (and is dropped): the server still counts it, and sending another in its
// place could exceed the server's inFlightMax. A dropped connection rejects every outstanding
// request with CONNECTION_CLOSED, which is retriable.

import net from "node:net";
import { setImmediate } from "node:timers";
import { API, finishFrame, RESPONSE_HEADER_BYTES, startRequest } from "../codec/frames.ts";
import {
  type HandshakeResponse,
  readHandshakeResponse,
  writeHandshakeRequest,
} from "../codec/handshake.ts";
import { errorFromWire } from "../errors.ts";
import { Reader, type Writer } from "../wire.ts";
import { ClientError } from "./errors.ts";
import { FrameParser } from "./frame_parser.ts";

export const CLIENT_VERSION = "0.1.0";
export const API_VERSION = 1;
export const CONNECT_TIMEOUT_MS_DEFAULT = 10_000;
export const REQUEST_TIMEOUT_MS_DEFAULT = 30_000;
export const REQUEST_QUEUE_MAX_DEFAULT = 65_536;
/** The largest batch a topic may allow (256 MiB) plus room for a fetch response's headers. */
export const RESPONSE_BYTES_MAX_DEFAULT = 256 * 1024 * 1024 + 1024 * 1024;
/** The handshake response is small; a larger first frame means this is not a sluice server. */
const HANDSHAKE_RESPONSE_BYTES_MAX = 65_536;
/** Frames at least this large are written as they are; smaller ones are copied together. */
const COALESCE_BYTES_MAX = 64 * 1024;
const CORRELATION_ID_MODULUS = 2 ** 32;

export type ConnectionOptions = {
  /** Sent in the handshake, for the server's logs. */
  clientName?: string;
  connectTimeoutMs?: number;
  /** From the call to the response; a Fetch adds its own maxWaitMs. */
  requestTimeoutMs?: number;
  /** Lower than the server's inFlightMax to send fewer requests at once. */
  inFlightMax?: number;
  requestQueueMax?: number;
  responseBytesMax?: number;
};

export type RequestOptions = {
  timeoutMs?: number;
  /** The body's expected size, so that the frame is allocated once (Produce batches). */
  bodyBytesHint?: number;
};

export type ConnectionStats = {
  requests: number;
  responses: number;
  /** socket.write calls: fewer than requests when frames were coalesced. */
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
};

type Pending = {
  apiKey: number;
  resolve: (reader: Reader) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Timed out: the promise is settled, the in-flight slot is still taken. */
  abandoned: boolean;
};

type Waiting = { correlationId: number; frame: Uint8Array; pending: Pending };

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const resolved = value ?? fallback;
  if (!Number.isSafeInteger(resolved) || resolved < 1) {
    throw new RangeError(`${name} ${resolved} is not a positive integer`);
  }
  return resolved;
}

function resolveSettings(options: ConnectionOptions): Settings {
  const clientName = options.clientName ?? "sluice-ts";
  if (typeof clientName !== "string") throw new TypeError("clientName must be a string");
  return {
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

export class Connection {
  readonly host: string;
  readonly port: number;
  #socket: net.Socket;
  #settings: Settings;
  #parser = new FrameParser(HANDSHAKE_RESPONSE_BYTES_MAX);
  #handshake: HandshakeResponse | undefined;
  #supported = new Set<number>();
  #inFlightMax = 1;
  #nextCorrelationId = 0;
  #pending = new Map<number, Pending>();
  #waiting: Waiting[] = [];
  #waitingHead = 0;
  #outgoing: Uint8Array[] = [];
  #flushScheduled = false;
  #blocked = false;
  #closedError: ClientError | undefined;
  #closedPromise: Promise<void>;
  #stats: ConnectionStats = { requests: 0, responses: 0, writes: 0, bytesWritten: 0, bytesRead: 0 };

  private constructor(host: string, port: number, socket: net.Socket, settings: Settings) {
    this.host = host;
    this.port = port;
    this.#socket = socket;
    this.#settings = settings;
    this.#closedPromise = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.setNoDelay(true);
    socket.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    socket.on("drain", () => {
      this.#blocked = false;
      this.#flush();
    });
    socket.on("error", (error: Error) => {
      this.#fail(
        new ClientError("CONNECTION_CLOSED", `${this.#where()}: ${error.message}`, {
          cause: error,
        }),
      );
    });
    socket.on("close", () => {
      this.#fail(new ClientError("CONNECTION_CLOSED", `${this.#where()} closed by the server`));
    });
  }

  /** Opens a connection and completes the handshake; rejects with CONNECT_FAILED. */
  static connect(host: string, port: number, options: ConnectionOptions = {}): Promise<Connection> {
    if (typeof host !== "string" || host.length === 0) {
      throw new TypeError(`host ${String(host)} must be a non-empty string`);
    }
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new RangeError(`port ${port} is not a TCP port`);
    }
    const settings = resolveSettings(options);
    const socket = net.connect({ host, port });
    const connection = new Connection(host, port, socket, settings);
    return connection.#open();
  }

  async #open(): Promise<Connection> {
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
    try {
      await Promise.race([this.#connected(), timeout]);
      const reader = await Promise.race([this.#sendHandshake(), timeout]);
      this.#applyHandshake(readHandshakeResponse(reader));
      return this;
    } catch (error) {
      this.#socket.destroy();
      if (error instanceof ClientError && error.code !== "CONNECTION_CLOSED") throw error;
      const message = error instanceof Error ? error.message : String(error);
      throw new ClientError("CONNECT_FAILED", `${this.#where()}: ${message}`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }

  #connected(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#closedError !== undefined) return reject(this.#closedError);
      this.#socket.once("connect", () => resolve());
      this.#socket.once("close", () => reject(this.#closedError));
    });
  }

  #sendHandshake(): Promise<Reader> {
    return this.#enqueue(
      API.Handshake,
      (writer) => {
        writeHandshakeRequest(writer, {
          clientName: this.#settings.clientName,
          clientVersion: CLIENT_VERSION,
        });
      },
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
    this.#parser.frameBytesMax = this.#settings.responseBytesMax;
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

  get inFlight(): number {
    return this.#pending.size;
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

  get stats(): Readonly<ConnectionStats> {
    return this.#stats;
  }

  supports(apiKey: number): boolean {
    return this.#supported.has(apiKey);
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
    if (!this.#supported.has(apiKey)) {
      return Promise.reject(
        new ClientError("UNSUPPORTED_SERVER", `The server does not offer api ${apiKey} v1`),
      );
    }
    const timeoutMs = options?.timeoutMs ?? this.#settings.requestTimeoutMs;
    return this.#enqueue(apiKey, writeBody, timeoutMs, options?.bodyBytesHint);
  }

  /**
   * Sends a request that gets no response (Produce with acks 0); resolves once the frame is
   * handed to the socket.
   */
  requestWithoutResponse(
    apiKey: number,
    writeBody: (writer: Writer) => void,
    options?: Pick<RequestOptions, "bodyBytesHint">,
  ): Promise<void> {
    if (this.#closedError !== undefined) return Promise.reject(this.#closedError);
    let frame: Uint8Array;
    try {
      const id = this.#takeCorrelationId();
      frame = this.#buildFrame(apiKey, id, writeBody, options?.bodyBytesHint);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#stats.requests++;
    this.#queueWrite(frame);
    return Promise.resolve();
  }

  #enqueue(
    apiKey: number,
    writeBody: (writer: Writer) => void,
    timeoutMs: number,
    bodyBytesHint?: number,
  ) {
    return new Promise<Reader>((resolve, reject) => {
      if (this.#closedError !== undefined) return reject(this.#closedError);
      const correlationId = this.#takeCorrelationId();
      const frame = this.#buildFrame(apiKey, correlationId, writeBody, bodyBytesHint);
      if (this.waiting >= this.#settings.requestQueueMax) {
        return reject(
          new ClientError(
            "QUEUE_FULL",
            `${this.waiting} requests wait for a slot ` +
              `on ${this.#where()}; requestQueueMax is ${this.#settings.requestQueueMax}`,
          ),
        );
      }
      const pending: Pending = { apiKey, resolve, reject, timer: undefined, abandoned: false };
      pending.timer = setTimeout(() => this.#timeOut(correlationId, pending, timeoutMs), timeoutMs);
      this.#stats.requests++;
      if (this.#pending.size < this.#inFlightMax && this.waiting === 0) {
        this.#transmit(correlationId, frame, pending);
      } else {
        this.#waiting.push({ correlationId, frame, pending });
      }
    });
  }

  #takeCorrelationId(): number {
    let id = this.#nextCorrelationId;
    // Ids wrap at 2^32; skipping one still in use keeps them unique on the connection.
    while (this.#pending.has(id)) id = (id + 1) % CORRELATION_ID_MODULUS;
    this.#nextCorrelationId = (id + 1) % CORRELATION_ID_MODULUS;
    return id;
  }

  #buildFrame(
    apiKey: number,
    correlationId: number,
    writeBody: (writer: Writer) => void,
    bodyBytesHint = 0,
  ) {
    const capacity = 256 + Math.min(Math.max(bodyBytesHint, 0), this.frameBytesMax);
    const writer = startRequest({ apiKey, apiVersion: API_VERSION, correlationId }, capacity);
    writeBody(writer);
    const frame = finishFrame(writer);
    const payloadBytes = frame.length - 4;
    if (payloadBytes > this.frameBytesMax) {
      throw new RangeError(
        `Request of ${payloadBytes} bytes exceeds the server's frameBytesMax ${this.frameBytesMax}`,
      );
    }
    return frame;
  }

  #transmit(correlationId: number, frame: Uint8Array, pending: Pending): void {
    this.#pending.set(correlationId, pending);
    this.#queueWrite(frame);
  }

  #timeOut(correlationId: number, pending: Pending, timeoutMs: number): void {
    pending.timer = undefined;
    pending.abandoned = true;
    pending.reject(
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
    while (this.#pending.size < this.#inFlightMax && this.#waitingHead < this.#waiting.length) {
      const next = this.#waiting[this.#waitingHead]!;
      this.#waitingHead++;
      this.#transmit(next.correlationId, next.frame, next.pending);
    }
    if (this.#waitingHead > 1024 && this.#waitingHead * 2 > this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#waitingHead);
      this.#waitingHead = 0;
    }
  }

  #queueWrite(frame: Uint8Array): void {
    this.#outgoing.push(frame);
    if (this.#flushScheduled || this.#blocked) return;
    this.#flushScheduled = true;
    // One flush per turn of the event loop: every request made in this turn goes out in as
    // few socket writes as possible (each write costs microseconds).
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#closedError !== undefined || this.#outgoing.length === 0) return;
    const frames = this.#outgoing;
    this.#outgoing = [];
    let start = 0;
    while (start < frames.length) {
      let end = start;
      let bytes = 0;
      while (end < frames.length) {
        const size = frames[end]!.length;
        if (end > start && (size >= COALESCE_BYTES_MAX || bytes + size > COALESCE_BYTES_MAX)) break;
        bytes += size;
        end++;
        if (size >= COALESCE_BYTES_MAX) break;
      }
      this.#write(end - start === 1 ? frames[start]! : concat(frames, start, end, bytes));
      start = end;
    }
  }

  #write(bytes: Uint8Array): void {
    this.#stats.writes++;
    this.#stats.bytesWritten += bytes.length;
    // node:net buffers what the kernel does not take; `false` asks us to wait for drain.
    if (!this.#socket.write(bytes)) this.#blocked = true;
  }

  #onData(chunk: Uint8Array): void {
    this.#stats.bytesRead += chunk.length;
    try {
      this.#parser.push(chunk, (frame) => this.#onFrame(frame));
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.#fail(new ClientError("MALFORMED_RESPONSE", `${this.#where()}: ${message}`));
      this.#socket.destroy();
    }
  }

  #onFrame(frame: Uint8Array): void {
    if (frame.length < RESPONSE_HEADER_BYTES) {
      throw new RangeError(`Response of ${frame.length} bytes is shorter than its header`);
    }
    const reader = new Reader(frame);
    const correlationId = reader.u32("correlation_id");
    const errorCode = reader.i16("error_code");
    const pending = this.#pending.get(correlationId);
    if (pending === undefined) {
      throw new RangeError(`Response for correlation id ${correlationId}, which is not pending`);
    }
    this.#pending.delete(correlationId);
    this.#stats.responses++;
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    if (!pending.abandoned) {
      if (errorCode === 0) {
        pending.resolve(reader);
      } else {
        pending.reject(errorFromWire(errorCode, readErrorMessage(reader)));
      }
    }
    this.#pump();
  }

  /** Rejects everything outstanding with `error`; the first failure wins. */
  #fail(error: ClientError): void {
    if (this.#closedError !== undefined) return;
    this.#closedError = error;
    const pending = [...this.#pending.values()];
    const waiting = this.#waiting.slice(this.#waitingHead).map((w) => w.pending);
    this.#pending.clear();
    this.#waiting = [];
    this.#waitingHead = 0;
    this.#outgoing = [];
    for (const request of [...pending, ...waiting]) {
      if (request.timer !== undefined) clearTimeout(request.timer);
      if (!request.abandoned) request.reject(error);
    }
  }

  /**
   * Closes the connection: requests still outstanding are rejected with CLOSED. Writes already
   * queued are sent first.
   */
  async close(): Promise<void> {
    if (this.#closedError === undefined) {
      this.#flush();
      this.#fail(new ClientError("CLOSED", `${this.#where()} was closed by the client`));
      // end() sends what is queued; destroy() then closes at once, whatever the server does.
      this.#socket.end(() => this.#socket.destroy());
    }
    await this.#closedPromise;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #where(): string {
    return `connection to ${this.host}:${this.port}`;
  }
}

function concat(frames: Uint8Array[], start: number, end: number, bytes: number): Uint8Array {
  // A fresh buffer per write: node:net keeps a reference until the bytes are sent.
  const out = new Uint8Array(bytes);
  let at = 0;
  for (let i = start; i < end; i++) {
    out.set(frames[i]!, at);
    at += frames[i]!.length;
  }
  return out;
}

function readErrorMessage(reader: Reader): string {
  try {
    return reader.string("error_message");
  } catch {
    return "";
  }
}

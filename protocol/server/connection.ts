// One client connection on the server: frames in, responses out, in request order.
//
//   socket ─data─► FrameReader ─frame─► dispatch ─► slot (sync result or promise)
//                                                      │ completes, in any order
//   socket ◄─write─ Outbox ◄─ slots released head-first ┘
//
// Bounds: at most `inFlightMax` requests are being served at once and at most
// `outboxBytesMax` bytes of responses wait to be written; past either, the connection stops
// reading (TCP backpressure reaches the client) until they fall again. A frame over the size
// limit, or one that cannot be parsed far enough to answer, closes the connection with a
// logged reason; every other bad request gets an error response and the connection goes on.
// A broken invariant (InvariantError, a bug in sluice) is never answered: the host's `fatal`
// stops the server, and the connection is closed if it ever returns.

import { API, errorResponse, readRequestHeader } from "../codec/frames.ts";
import { errorToWire, ProtocolError, WIRE_ERRORS } from "../codec/errors.ts";
import { FrameReader, FrameTooLargeError } from "../codec/frame_reader.ts";
import { Outbox, type TransportSocket } from "../codec/outbox.ts";
import { Reader } from "../codec/wire.ts";
import { InvariantError } from "../../record/mod.ts";

export type ServerLimits = {
  frameBytesMax: number;
  handshakeFrameBytesMax: number;
  inFlightMax: number;
  connectionsMax: number;
  idleTimeoutMs: number;
  requestTimeoutMs: number;
  outboxBytesMax: number;
  fetchWaitMsMax: number;
  fetchBytesMax: number;
};

export const SERVER_LIMITS_DEFAULT: Readonly<ServerLimits> = Object.freeze({
  frameBytesMax: 64 * 1024 * 1024,
  handshakeFrameBytesMax: 64 * 1024,
  inFlightMax: 1024,
  connectionsMax: 10_000,
  idleTimeoutMs: 600_000,
  requestTimeoutMs: 30_000,
  outboxBytesMax: 64 * 1024 * 1024,
  fetchWaitMsMax: 60_000,
  fetchBytesMax: 64 * 1024 * 1024,
});

/** A request's outcome: response chunks, or null for a request answered by silence (acks 0). */
export type HandlerResult = Uint8Array[] | null;

export type RequestContext = {
  apiKey: number;
  correlationId: number;
  reader: Reader;
  connection: ServerConnection;
};

export type ServerConnectionHost = {
  limits: ServerLimits;
  dispatch(request: RequestContext): HandlerResult | Promise<HandlerResult>;
  log(message: string): void;
  /** A request failed with a broken invariant: stop serving (by default, the process). */
  fatal(error: InvariantError): void;
  now(): number;
};

type Slot = {
  correlationId: number;
  apiKey: number;
  startedMs: number;
  result: HandlerResult | undefined;
  done: boolean;
};

export class ServerConnection {
  readonly socket: TransportSocket;
  #host: ServerConnectionHost;
  #frames: FrameReader;
  #outbox: Outbox;
  #slots: Slot[] = [];
  #inFlight = 0;
  #paused = false;
  /**
   * Frames that arrived while the connection was paused (those already in the socket chunk
   * being read when the pause began), copied, to be served in order once it resumes. Without
   * this a single chunk of many small requests would all be served at once, however much
   * their answers weigh. Bounded by what one read delivers.
   */
  #backlog: Uint8Array[] = [];
  #closeListeners = new Set<() => void>();
  #endOnDrain = false;
  #closeAfterFlush = false;
  closed = false;
  handshaken = false;
  lastActivityMs: number;
  bytesIn = 0;

  constructor(socket: TransportSocket, host: ServerConnectionHost) {
    this.socket = socket;
    this.#host = host;
    this.#frames = new FrameReader(host.limits.handshakeFrameBytesMax, { assembly: "pooled" });
    this.#outbox = new Outbox(socket);
    this.lastActivityMs = host.now();
  }

  get bytesOut(): number {
    return this.#outbox.bytesWritten;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Response bytes waiting for the socket, and whether reading is paused because of them. */
  get queuedBytes(): number {
    return this.#outbox.queuedBytes;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Called once the handshake is answered: frames may now be as large as the full limit. */
  completeHandshake(): void {
    this.handshaken = true;
    this.#frames.frameBytesMax = this.#host.limits.frameBytesMax;
  }

  data(bytes: Uint8Array): void {
    if (this.closed) return;
    this.lastActivityMs = this.#host.now();
    this.bytesIn += bytes.length;
    try {
      this.#frames.push(bytes, this.#onFrame);
    } catch (error) {
      if (!(error instanceof FrameTooLargeError)) throw error;
      this.#abort(
        `frame of ${error.sizeBytes} bytes exceeds the limit of ${error.limitBytes} bytes`,
      );
    }
  }

  /** A frame's view is valid only during this call (pooled assembly): a held frame is copied. */
  #onFrame = (payload: Uint8Array): void => {
    if (this.#paused || this.#backlog.length > 0) this.#backlog.push(payload.slice());
    else this.#frame(payload);
  };

  drain(): void {
    this.#outbox.flush();
    if (this.#endOnDrain && this.#outbox.idle) {
      this.#endOnDrain = false;
      this.socket.end();
      return;
    }
    this.#updateFlow();
  }

  /** The socket closed (by either side): forget everything pending. */
  closedBySocket(): void {
    this.closed = true;
    this.#slots = [];
    for (const listener of [...this.#closeListeners]) listener();
    this.#closeListeners.clear();
  }

  /** Calls `listener` when the socket closes (a long poll stops waiting for a dead client). */
  onClose(listener: () => void): () => void {
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /** Ends the socket once every queued answer is written (Bun keeps nothing after end). */
  #endWhenWritten(): void {
    this.closed = true;
    if (this.#outbox.idle) this.socket.end();
    else this.#endOnDrain = true;
  }

  #abort(reason: string): void {
    this.#host.log(`closing connection from ${this.socket.remoteAddress}: ${reason}`);
    this.closed = true;
    this.socket.destroy();
  }

  #frame(payload: Uint8Array): void {
    if (this.closed || this.#closeAfterFlush) return;
    const reader = new Reader(payload);
    let header: ReturnType<typeof readRequestHeader>;
    try {
      header = readRequestHeader(reader);
    } catch (error) {
      this.#abort(`unreadable request header (${(error as Error).message})`);
      return;
    }
    const slot: Slot = {
      correlationId: header.correlationId,
      apiKey: header.apiKey,
      startedMs: this.#host.now(),
      result: undefined,
      done: false,
    };
    this.#slots.push(slot);
    this.#inFlight++;
    const refusal = this.#refusal(header);
    if (refusal !== undefined) {
      this.#complete(slot, [
        errorResponse(header.correlationId, refusal.wireCode, refusal.message),
      ]);
      return;
    }
    this.#run(slot, { ...header, reader, connection: this });
    this.#updateFlow();
  }

  #refusal(header: { apiKey: number; apiVersion: number }): ProtocolError | undefined {
    if (!this.handshaken && header.apiKey !== API.Handshake) {
      this.#closeAfterFlush = true;
      return new ProtocolError("HANDSHAKE_REQUIRED", "the first request must be Handshake");
    }
    if (this.#inFlight > this.#host.limits.inFlightMax) {
      return new ProtocolError(
        "TOO_MANY_IN_FLIGHT",
        `more than ${this.#host.limits.inFlightMax} requests in flight`,
      );
    }
    if (!Object.values(API).includes(header.apiKey as never)) {
      return new ProtocolError("UNKNOWN_API", `api_key ${header.apiKey} is not known`);
    }
    if (header.apiVersion !== 1) {
      return new ProtocolError(
        "UNSUPPORTED_VERSION",
        `api_key ${header.apiKey} supports version 1, not ${header.apiVersion}`,
      );
    }
    return undefined;
  }

  #run(slot: Slot, request: RequestContext): void {
    let result: HandlerResult | Promise<HandlerResult>;
    try {
      result = this.#host.dispatch(request);
    } catch (error) {
      this.#failed(slot, error);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (chunks) => this.#complete(slot, chunks),
        (error: unknown) => this.#failed(slot, error),
      );
    } else {
      this.#complete(slot, result);
    }
  }

  /** A handler threw: an error response, unless it was a bug, which stops the server. */
  #failed(slot: Slot, error: unknown): void {
    if (error instanceof InvariantError) {
      this.#host.fatal(error);
      // Only an overridden `fatal` returns (tests): the request is still never answered.
      this.#abort(`request ${slot.apiKey}/${slot.correlationId} broke an invariant`);
      return;
    }
    this.#complete(slot, this.#errorResult(slot, error));
  }

  #errorResult(slot: Slot, error: unknown): HandlerResult {
    const { code, message } = errorToWire(error);
    if (code === WIRE_ERRORS.UNKNOWN_SERVER_ERROR) {
      this.#host.log(`request ${slot.apiKey}/${slot.correlationId} failed: ${String(error)}`);
    }
    return [errorResponse(slot.correlationId, code, message)];
  }

  #complete(slot: Slot, result: HandlerResult): void {
    if (slot.done || this.closed) return;
    slot.done = true;
    slot.result = result;
    this.#inFlight--;
    this.#release();
  }

  /** Writes finished responses from the head of the queue, keeping request order. */
  #release(): void {
    let released = 0;
    while (released < this.#slots.length && this.#slots[released]!.done) {
      const { result } = this.#slots[released]!;
      if (result !== null && result !== undefined) this.#outbox.enqueue(result);
      released++;
    }
    if (released > 0) this.#slots.splice(0, released);
    if (this.#closeAfterFlush && this.#slots.length === 0) {
      this.#endWhenWritten();
      return;
    }
    this.#updateFlow();
  }

  /** Serves frames held while paused, stopping again as soon as the connection is busy. */
  #serveBacklog(): void {
    while (this.#backlog.length > 0 && !this.#paused && !this.closed) {
      this.#frame(this.#backlog.shift()!);
    }
  }

  /** Pauses reading while too much is in flight or waiting to be written; resumes after. */
  #updateFlow(): void {
    const limits = this.#host.limits;
    const busy =
      this.#inFlight >= limits.inFlightMax || this.#outbox.queuedBytes > limits.outboxBytesMax;
    if (busy && !this.#paused) {
      this.#paused = true;
      this.socket.pause();
    } else if (!busy && this.#paused) {
      this.#paused = false;
      if (this.#backlog.length > 0) queueMicrotask(() => this.#serveBacklog());
      this.socket.resume();
    }
  }

  /** Answers requests older than the timeout (except long polls, which time themselves). */
  expireRequests(nowMs: number): void {
    const deadline = nowMs - this.#host.limits.requestTimeoutMs;
    // A copy: completing a slot releases finished ones from the head of #slots.
    for (const slot of [...this.#slots]) {
      if (slot.done || slot.apiKey === API.Fetch || slot.startedMs > deadline) continue;
      const message = `no answer within ${this.#host.limits.requestTimeoutMs} ms`;
      this.#complete(slot, [
        errorResponse(slot.correlationId, WIRE_ERRORS.REQUEST_TIMED_OUT, message),
      ]);
    }
  }

  /** Ends the connection once every pending response is written (graceful shutdown). */
  shutdown(): void {
    this.#closeAfterFlush = true;
    if (this.#slots.length === 0) this.#endWhenWritten();
  }
}

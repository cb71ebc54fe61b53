// One client connection on the server: frames in, responses out, in request order.
//
//   socket ─data─► FrameReader ─frame─► dispatch ─► slot (sync result or promise)
//                                                      │ completes, in any order
//   socket ◄─write─ Outbox ◄─ slots released head-first ┘
//
// Bounds: at most `inFlightMax` requests are being served at once; a request past that is
// answered TOO_MANY_IN_FLIGHT (in its turn: answers keep request order), except a Produce with
// acks 0, which has no answer to carry the refusal and waits instead, the connection unread,
// until a request completes. At most ANSWERS_WAITING_FACTOR × inFlightMax requests wait for
// their answers to be written and at most `outboxBytesMax` bytes of answers wait for the
// socket; past either, the connection stops reading (TCP backpressure reaches the client) until
// they fall again.
//
// Time: the idle timer counts from the last *complete* frame (trickling bytes does not reset
// it), and once the handshake is done a frame whose size has arrived must arrive whole within
// `frameReadTimeoutMs` (the clock stops while the server itself is not reading). Before the
// handshake only the idle timer applies, so nothing closes a connection that has not sent its
// handshake sooner than `idleTimeoutMs` (with authentication off; with it on, the server's
// security gate adds its own deadline and frame limit, server/_auth.ts).
//
// A frame over the size limit, one that cannot be parsed far enough to answer, or a timeout
// closes the connection with a logged reason; every other bad request gets an error response
// and the connection goes on. A broken invariant (InvariantError, a bug in sluice) is never
// answered: the host's `fatal` stops the server, and the connection is closed if it ever
// returns.

import {
  API,
  apiVersionRange,
  errorResponse,
  REQUEST_HEADER_BYTES,
  type RequestHeader,
  readRequestHeaderInto,
} from "../codec/frames.ts";
import { errorToWire, ProtocolError, WIRE_ERRORS } from "../codec/errors.ts";
import {
  FREE_LEASE,
  type FrameLease,
  FrameReader,
  FrameTooLargeError,
} from "../codec/frame_reader.ts";
import { Outbox, type TransportSocket } from "../codec/outbox.ts";
import { Reader } from "../codec/wire.ts";
import { assert, InvariantError } from "../../record/mod.ts";
import { coldViewWritten } from "../../engine/mod.ts";
import type { BufferBudget } from "./_budget.ts";
import type { ServerLimits } from "./limits.ts";

export { SERVER_LIMITS_DEFAULT, type ServerLimits } from "./limits.ts";

/**
 * Requests waiting for their answers to be written, served or refused, may be this many
 * times inFlightMax before the connection stops reading: refusals past inFlightMax are
 * answered in order, behind the answers before them, and must not pile up without bound.
 */
export const ANSWERS_WAITING_FACTOR = 2;

/** A request's outcome: response chunks, or null for a request answered by silence (acks 0). */
export type HandlerResult = Uint8Array[] | null;

/** What a handler returns: its outcome now, or later through a promise or a PendingAnswer. */
export type HandlerAnswer = HandlerResult | Promise<HandlerResult> | PendingAnswer;

/** Where a PendingAnswer tells its outcome: the connection's, made once per connection. */
type AnswerSink = {
  answered(slot: Slot, result: HandlerResult): void;
  failed(slot: Slot, failure: unknown): void;
};

/**
 * An outcome told to the connection when it is ready, without a promise: the data plane's
 * answers (a Produce with acks 0/1, a long-polling Fetch) extend it, so a request on the
 * latency path makes no promise, no reaction and no closure to carry its answer, and the
 * answer is queued for the socket in the call that settles it, not a microtask later. The
 * handler calls `answer` or `fail` once (later calls are ignored), before or after the
 * connection attaches; the connection is told exactly once.
 */
export class PendingAnswer {
  #sink: AnswerSink | undefined;
  #slot: Slot | undefined;
  /** 0 waiting, 1 answered, 2 failed. */
  #state = 0;
  #result: HandlerResult = null;
  #failure: unknown = undefined;

  /** The outcome is ready: response chunks, or null for silence. */
  answer(result: HandlerResult): void {
    if (this.#state !== 0) return;
    this.#state = 1;
    this.#result = result;
    this.#deliver();
  }

  /** The handler failed: an error answer, or a broken invariant that stops the server. */
  fail(failure: unknown): void {
    if (this.#state !== 0) return;
    this.#state = 2;
    this.#failure = failure;
    this.#deliver();
  }

  /** The connection's side, once per answer, as the handler returns it. */
  attach(sink: AnswerSink, slot: Slot): void {
    assert(this.#sink === undefined && this.#slot === undefined, "an answer is attached once");
    this.#sink = sink;
    this.#slot = slot;
    this.#deliver();
  }

  #deliver(): void {
    const sink = this.#sink;
    if (sink === undefined || this.#state === 0) return;
    this.#sink = undefined;
    if (this.#state === 1) sink.answered(this.#slot!, this.#result);
    else sink.failed(this.#slot!, this.#failure);
  }
}

export type RequestContext = {
  apiKey: number;
  apiVersion: number;
  correlationId: number;
  reader: Reader;
  connection: ServerConnection;
  /**
   * Lets a handler keep views of the request's bytes past its synchronous part (the produce
   * handler lends large batches to the engine); undefined when the bytes must be copied.
   */
  lease: FrameLease | undefined;
  /**
   * A large Produce that arrived split across received chunks, kept as their views rather than
   * assembled (frame_reader.ts, `split`): the whole payload, header included; `reader` then
   * holds only the first part, past the header. Undefined for every other request.
   */
  parts?: readonly Uint8Array[];
};

/** Told once when its connection's socket closes (ServerConnection.whenClosed). */
export interface CloseListener {
  connectionClosed(): void;
  /**
   * Its place among the connection's close listeners, -1 (or absent) when it is not one; kept
   * by the connection.
   */
  closeIndex?: number;
}

export type ServerConnectionHost = {
  limits: ServerLimits;
  /** The broker-wide budget of answer bytes waiting for sockets (connectionBuffersBytesMax). */
  budget: BufferBudget;
  dispatch(request: RequestContext): HandlerAnswer;
  log(message: string): void;
  /** A request failed with a broken invariant: stop serving (by default, the process). */
  fatal(error: InvariantError): void;
  /** A request was refused on arrival (handshake, in-flight limit, API or version). */
  refused(wireCode: number): void;
  /**
   * A served request was answered: how long it took (seconds, from its arrival to its answer
   * being queued) and the error code of the answer's header (0 for none; answers with no
   * frame, acks=0 produces, count as 0).
   */
  served?(apiKey: number, seconds: number, errorCode: number): void;
  /** An answer carries this error code in its body (metrics: errors by code). */
  bodyError?(code: number): void;
  /**
   * The most body bytes a request of `apiKey` may have, for APIs that are refused past it
   * without being read into memory (the control plane); undefined for the others.
   */
  bodyBytesMax?(apiKey: number): number | undefined;
  /**
   * Large Produce frames may reach the handler in parts (RequestContext.parts). False where
   * something before the handler reads the whole body through `reader` (ACL checks).
   */
  produceInParts?: boolean;
  now(): number;
};

/** Produce frames at least this large that span received chunks are kept in parts. */
export const PRODUCE_PARTS_BYTES_MIN = 64 * 1024;

type Slot = {
  correlationId: number;
  apiKey: number;
  startedMs: number;
  /** performance.now() at arrival: the request latency's start. */
  arrivedAt: number;
  result: HandlerResult | undefined;
  done: boolean;
  /** Counted in inFlight while it is served; false for a request refused on arrival. */
  served: boolean;
};

export class ServerConnection {
  readonly socket: TransportSocket;
  #host: ServerConnectionHost;
  /** Where PendingAnswers settle their slots: made once, not per request. */
  #answerSink: AnswerSink = {
    answered: (slot, result) => this.#complete(slot, result),
    failed: (slot, failure) => this.#failed(slot, failure),
  };
  #frames: FrameReader;
  #outbox: Outbox;
  #slots: Slot[] = [];
  #inFlight = 0;
  #paused = false;
  /** Answer bytes last reported to the broker-wide budget. */
  #reportedBytes = 0;
  /**
   * Frames that arrived while the connection was paused (those already in the socket chunk
   * being read when the pause began), copied, to be served in order once it resumes. Without
   * this a single chunk of many small requests would all be served at once, however much
   * their answers weigh. Bounded by what one read delivers.
   */
  #backlog: Uint8Array[] = [];
  /**
   * Told when the socket closes; each knows its place (closeIndex), so one leaves at once. An
   * array, not a Set: a long poll joins and leaves for every fetch, and what JavaScriptCore's
   * Set deleted stays reachable for young-generation collections until the next full one,
   * with the request frame the poll holds and the slab it lies in (_fetch_waits.ts).
   */
  #closeListeners: CloseListener[] = [];
  #endOnDrain = false;
  #closeAfterFlush = false;
  closed = false;
  handshaken = false;
  /** When the last complete frame arrived (or the connection opened): the idle timer. */
  lastFrameMs: number;
  /** When the frame being read now had its size arrive; undefined between frames. */
  #frameStartedMs: number | undefined;
  bytesIn = 0;

  constructor(socket: TransportSocket, host: ServerConnectionHost) {
    this.socket = socket;
    this.#host = host;
    this.#frames = new FrameReader(host.limits.handshakeFrameBytesMax, {
      assembly: "pooled",
      freshChunks: socket.freshChunks === true,
      discard: {
        headBytes: REQUEST_HEADER_BYTES,
        screen: (head, sizeBytes) => this.#overBodyLimit(head, sizeBytes) !== undefined,
        onDiscarded: this.#onDiscarded,
      },
      // Only sockets whose chunks are never reused may have their views kept (freshChunks).
      split:
        host.produceInParts === true && socket.freshChunks === true
          ? {
              // The header and Produce's acks: what #mustWait reads.
              headBytes: REQUEST_HEADER_BYTES + 1,
              bytesMin: PRODUCE_PARTS_BYTES_MIN,
              select: (head) => this.handshaken && ((head[0]! << 8) | head[1]!) === API.Produce,
            }
          : undefined,
    });
    // Answers released in one turn (one group commit resolving many requests) go out in one
    // write at the turn's end.
    this.#outbox = new Outbox(socket, {
      coalesceTurn: true,
      onTurnWritten: this.#written,
      onChunkWritten: coldViewWritten,
    });
    this.lastFrameMs = host.now();
  }

  get bytesOut(): number {
    return this.#outbox.bytesWritten;
  }

  /** Calls to the socket's write (coalesced answers count once). */
  get socketWrites(): number {
    return this.#outbox.writes;
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

  /**
   * Called once the handshake is answered: frames may now be as large as the full limit, or as
   * `frameBytesMax` (lower, until the connection has authenticated; server/_auth.ts).
   */
  completeHandshake(frameBytesMax = this.#host.limits.frameBytesMax): void {
    this.handshaken = true;
    this.#frames.frameBytesMax = frameBytesMax;
  }

  /** Serves nothing more: closes once the answers owed so far are written. */
  closeAfterAnswers(): void {
    this.#closeAfterFlush = true;
  }

  data(bytes: Uint8Array): void {
    if (this.closed) return;
    this.bytesIn += bytes.length;
    try {
      this.#frames.push(bytes, this.#onFrame, this.#onParts);
    } catch (error) {
      if (!(error instanceof FrameTooLargeError)) throw error;
      this.#abort(
        `frame of ${error.sizeBytes} bytes exceeds the limit of ${error.limitBytes} bytes`,
      );
      return;
    }
    // A frame that began in this chunk starts its read deadline now; one that completed in it
    // cleared the previous deadline in #onFrame.
    if (this.#frames.readingFrame) this.#frameStartedMs ??= this.#host.now();
  }

  /**
   * A frame's view is valid only during this call unless kept through its lease: a frame that
   * waits in the backlog is copied (and the copy, memory of its own, is kept freely).
   */
  #onFrame = (payload: Uint8Array, lease: FrameLease | undefined): void => {
    this.lastFrameMs = this.#host.now();
    this.#frameStartedMs = undefined;
    const waits = this.#paused || this.#backlog.length > 0 || this.#overBudget();
    if (waits || this.#mustWait(payload)) {
      // A dropped frame's head is already a copy, and is known by its identity.
      this.#backlog.push(this.#discarded.has(payload) ? payload : payload.slice());
      this.#updateFlow();
    } else {
      this.#frame(payload, lease);
    }
  };

  /**
   * A Produce kept in the views of the chunks it arrived in (see RequestContext.parts). One that
   * has to wait is joined into a copy, as #onFrame copies a waiting frame (that copy is the
   * only one: it goes to the backlog as it is).
   */
  #onParts = (parts: Uint8Array[], lease: FrameLease): void => {
    if (parts.length === 1) {
      this.#onFrame(parts[0]!, lease);
      return;
    }
    assert(parts[0]!.length > REQUEST_HEADER_BYTES, "a split frame's first part holds its header");
    this.lastFrameMs = this.#host.now();
    this.#frameStartedMs = undefined;
    const waits = this.#paused || this.#backlog.length > 0 || this.#overBudget();
    if (waits || this.#mustWait(parts[0]!)) {
      this.#backlog.push(joinParts(parts));
      this.#updateFlow();
      return;
    }
    this.#frame(parts[0]!, lease, parts);
  };

  /**
   * A control request whose body is over its API's byte limit (after the handshake): its bytes
   * are dropped as they arrive rather than assembled (frame_reader.ts), and it is answered
   * INVALID_REQUEST once its last byte is in, so the connection stays in step. Returns the limit
   * it passes, or undefined.
   */
  #overBodyLimit(head: Uint8Array, sizeBytes: number): number | undefined {
    if (!this.handshaken) return undefined;
    const apiKey = (head[0]! << 8) | head[1]!;
    const bytesMax = this.#host.bodyBytesMax?.(apiKey);
    if (bytesMax === undefined) return undefined;
    return sizeBytes - REQUEST_HEADER_BYTES > bytesMax ? bytesMax : undefined;
  }

  /** The INVALID_REQUEST answer to a frame dropped for its body size; undefined for others. */
  #droppedAnswer(header: RequestHeader, head: Uint8Array): Uint8Array | undefined {
    const sizeBytes = this.#discarded.get(head);
    if (sizeBytes === undefined) return undefined;
    const bytesMax = this.#overBodyLimit(head, sizeBytes);
    const body = sizeBytes - REQUEST_HEADER_BYTES;
    const message =
      `request body of api ${header.apiKey} of ${body} bytes exceeds ${bytesMax} bytes ` +
      "(dropped as it arrived)";
    return errorResponse(header.correlationId, WIRE_ERRORS.INVALID_REQUEST, message);
  }

  /** Dropped frames' heads (fresh copies), with their sizes, until they are answered. */
  #discarded = new WeakMap<Uint8Array, number>();

  #onDiscarded = (head: Uint8Array, sizeBytes: number): void => {
    this.#discarded.set(head, sizeBytes);
    this.#onFrame(head, FREE_LEASE);
  };

  /**
   * A Produce with acks 0 that arrives with inFlightMax requests being served: it cannot be
   * refused (nothing answers it), so it waits, and the connection is not read meanwhile.
   */
  #mustWait(payload: Uint8Array): boolean {
    if (this.#inFlight < this.#host.limits.inFlightMax) return false;
    if (!this.handshaken || payload.length < 9) return false;
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    // request = api_key:u16 api_version:u16 correlation_id:u32, then Produce's acks:i8.
    const produce = view.getUint16(0) === API.Produce;
    return (
      produce &&
      (apiVersionRange(API.Produce)?.max ?? 0) >= view.getUint16(2) &&
      view.getInt8(8) === 0
    );
  }

  /**
   * Why the connection should be closed now, or undefined: idle since its last complete frame
   * for idleTimeoutMs with nothing in flight, or (after the handshake) a frame begun more than
   * frameReadTimeoutMs ago and not yet whole. The server's sweep calls this.
   */
  timedOut(nowMs: number): string | undefined {
    const { idleTimeoutMs, frameReadTimeoutMs } = this.#host.limits;
    if (nowMs - this.lastFrameMs > idleTimeoutMs && this.#inFlight === 0) {
      const idleMs = nowMs - this.lastFrameMs;
      return `idle: no complete frame for ${idleMs} ms (idleTimeoutMs ${idleTimeoutMs})`;
    }
    const startedMs = this.#frameStartedMs;
    // While the server itself is not reading, the rest of a frame cannot arrive: no deadline.
    if (startedMs === undefined || !this.handshaken || this.#paused) return undefined;
    if (nowMs - startedMs > frameReadTimeoutMs) {
      return (
        `a frame begun ${nowMs - startedMs} ms ago has ${this.#frames.bufferedBytes} bytes ` +
        `(frameReadTimeoutMs ${frameReadTimeoutMs})`
      );
    }
    return undefined;
  }

  /** Closes the connection at once, saying why in the log. */
  close(reason: string): void {
    this.#abort(reason);
  }

  drain(): void {
    this.#outbox.flush();
    this.#written();
  }

  /** The Outbox wrote (on drain, or at the end of a turn): flow control sees what is left. */
  #written = (): void => {
    this.#reportQueued();
    if (this.#endOnDrain && this.#outbox.idle) {
      this.#endOnDrain = false;
      this.socket.end();
      return;
    }
    if (!this.closed) this.#updateFlow();
  };

  /** The socket closed (by either side): forget everything pending. */
  closedBySocket(): void {
    this.closed = true;
    this.#outbox.discard();
    this.#host.budget.forget(this.#onBudget);
    this.#host.budget.adjust(-this.#reportedBytes);
    this.#reportedBytes = 0;
    this.#slots = [];
    const listeners = this.#closeListeners;
    this.#closeListeners = [];
    for (const listener of listeners) listener.closeIndex = -1;
    for (const listener of listeners) listener.connectionClosed();
  }

  /** Calls `listener` when the socket closes (a long poll stops waiting for a dead client). */
  onClose(listener: () => void): () => void {
    const told: CloseListener = { connectionClosed: listener, closeIndex: -1 };
    this.whenClosed(told);
    return () => this.offClose(told);
  }

  /**
   * onClose for an object that is told by a method and removes itself by offClose: a long
   * poll per fetch made a function to be told by and a remover it never called (issue 16).
   * A listener is added once (until it is removed or told).
   */
  whenClosed(listener: CloseListener): void {
    assert((listener.closeIndex ?? -1) === -1, "a close listener is added once");
    listener.closeIndex = this.#closeListeners.length;
    this.#closeListeners.push(listener);
  }

  /** Removes a listener added by whenClosed; one not (or no longer) added is left as it is. */
  offClose(listener: CloseListener): void {
    const index = listener.closeIndex ?? -1;
    const listeners = this.#closeListeners;
    if (index < 0 || listeners[index] !== listener) return;
    const last = listeners.pop()!;
    if (last !== listener) {
      listeners[index] = last;
      last.closeIndex = index;
    }
    listener.closeIndex = -1;
  }

  /** Ends the socket once every queued answer is written (Bun keeps nothing after end). */
  #endWhenWritten(): void {
    this.closed = true;
    // Answers waiting for the end of this turn go out now, before the end.
    this.#outbox.flush();
    if (this.#outbox.idle) this.socket.end();
    else this.#endOnDrain = true;
  }

  #abort(reason: string): void {
    this.#host.log(`closing connection from ${this.socket.remoteAddress}: ${reason}`);
    this.closed = true;
    this.#outbox.discard();
    this.socket.destroy();
  }

  #frame(payload: Uint8Array, lease: FrameLease | undefined, parts?: Uint8Array[]): void {
    if (this.closed || this.#closeAfterFlush) return;
    const reader = new Reader(payload);
    // The context is the header's object too (read into it): one object per request.
    const request: RequestContext = {
      apiKey: 0,
      apiVersion: 0,
      correlationId: 0,
      reader,
      connection: this,
      lease,
    };
    try {
      readRequestHeaderInto(reader, request);
    } catch (error) {
      this.#abort(`unreadable request header (${(error as Error).message})`);
      return;
    }
    const slot: Slot = {
      correlationId: request.correlationId,
      apiKey: request.apiKey,
      startedMs: this.#host.now(),
      arrivedAt: performance.now(),
      result: undefined,
      done: false,
      served: false,
    };
    this.#slots.push(slot);
    const refusal = this.#refusal(request);
    if (refusal !== undefined) {
      this.#host.refused(refusal.wireCode);
      this.#complete(slot, [
        errorResponse(request.correlationId, refusal.wireCode, refusal.message),
      ]);
      return;
    }
    const dropped = this.#droppedAnswer(request, payload);
    if (dropped !== undefined) {
      this.#host.refused(WIRE_ERRORS.INVALID_REQUEST);
      this.#complete(slot, [dropped]);
      return;
    }
    slot.served = true;
    this.#inFlight++;
    assert(this.#inFlight <= this.#host.limits.inFlightMax, "inFlight stays within inFlightMax");
    if (parts !== undefined) request.parts = parts;
    this.#run(slot, request);
    this.#updateFlow();
  }

  #refusal(header: { apiKey: number; apiVersion: number }): ProtocolError | undefined {
    if (!this.handshaken && header.apiKey !== API.Handshake) {
      this.#closeAfterFlush = true;
      return new ProtocolError("HANDSHAKE_REQUIRED", "the first request must be Handshake");
    }
    const { inFlightMax } = this.#host.limits;
    if (this.#inFlight >= inFlightMax) {
      return new ProtocolError(
        "TOO_MANY_IN_FLIGHT",
        `${inFlightMax} requests are in flight already (inFlightMax ${inFlightMax})`,
      );
    }
    const versions = apiVersionRange(header.apiKey);
    if (versions === undefined) {
      return new ProtocolError("UNKNOWN_API", `api_key ${header.apiKey} is not known`);
    }
    if (header.apiVersion < versions.min || header.apiVersion > versions.max) {
      return new ProtocolError(
        "UNSUPPORTED_VERSION",
        `api_key ${header.apiKey} supports versions ${versions.min} to ${versions.max}, ` +
          `not ${header.apiVersion}`,
      );
    }
    return undefined;
  }

  #run(slot: Slot, request: RequestContext): void {
    let result: HandlerAnswer;
    try {
      result = this.#host.dispatch(request);
    } catch (error) {
      this.#failed(slot, error);
      return;
    }
    if (result instanceof PendingAnswer) {
      result.attach(this.#answerSink, slot);
    } else if (result instanceof Promise) {
      this.#completeWhenSettled(slot, result);
    } else {
      this.#complete(slot, result);
    }
  }

  /**
   * A handler's promised answer. Its reactions are made here, not in #run: a closure there
   * gave every request a scope for `slot`, PendingAnswers and synchronous answers included.
   */
  #completeWhenSettled(slot: Slot, result: Promise<HandlerResult>): void {
    result.then(
      (chunks) => this.#complete(slot, chunks),
      (error: unknown) => this.#failed(slot, error),
    );
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

  /** Counts an error code a handler puts in its answer's body (errors by code). */
  countBodyError(code: number): void {
    if (code !== 0) this.#host.bodyError?.(code);
  }

  #complete(slot: Slot, result: HandlerResult): void {
    if (slot.done || this.closed) return;
    slot.done = true;
    slot.result = result;
    if (slot.served) {
      this.#inFlight--;
      this.#host.served?.(
        slot.apiKey,
        (performance.now() - slot.arrivedAt) / 1000,
        headerCode(result),
      );
    }
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
    if (released > 0) this.#reportQueued();
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
      if (this.#mustWait(this.#backlog[0]!)) {
        this.#updateFlow();
        return;
      }
      this.#frame(this.#backlog.shift()!, FREE_LEASE);
    }
  }

  /** Tells the broker-wide budget how many answer bytes this connection has waiting. */
  #reportQueued(): void {
    if (this.closed) return;
    const queued = this.#outbox.queuedBytes;
    const delta = queued - this.#reportedBytes;
    this.#reportedBytes = queued;
    if (delta !== 0) this.#host.budget.adjust(delta);
  }

  /**
   * While the broker-wide budget is exhausted, a connection that still has answers waiting for
   * its socket (a slow reader, the kind that fills the budget) reads no new request. One whose
   * answers have all gone out keeps being served: a closed slow client whose socket the server
   * no longer reads cannot block every other connection.
   */
  #overBudget(): boolean {
    return this.#host.budget.exhausted && this.#outbox.queuedBytes > 0;
  }

  #onBudget = (): void => {
    if (!this.closed) this.#updateFlow();
  };

  /**
   * Pauses reading while too many answers wait, too many answer bytes wait for the socket, or
   * an acks-0 Produce waits for a request to complete; resumes after.
   */
  #updateFlow(): void {
    const limits = this.#host.limits;
    const head = this.#backlog[0];
    const overBudget = this.#overBudget();
    const busy =
      this.#slots.length >= ANSWERS_WAITING_FACTOR * limits.inFlightMax ||
      this.#outbox.queuedBytes > limits.outboxBytesMax ||
      overBudget ||
      (head !== undefined && this.#mustWait(head));
    if (overBudget) this.#host.budget.wait(this.#onBudget);
    if (busy && !this.#paused) {
      this.#paused = true;
      this.socket.pause();
    } else if (!busy && this.#paused) {
      this.#paused = false;
      // The read deadline of a frame the pause cut off starts again with reading.
      if (this.#frameStartedMs !== undefined) this.#frameStartedMs = this.#host.now();
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

/** The error code in a response frame's header (size u32, correlation id u32, code i16). */
function headerCode(result: HandlerResult): number {
  const first = result?.[0];
  if (first === undefined || first.length < 10) return 0;
  return (((first[8]! << 8) | first[9]!) << 16) >> 16;
}

/** One copy of a frame's parts, in order. */
function joinParts(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const joined = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return joined;
}

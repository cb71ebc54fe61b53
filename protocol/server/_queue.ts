// The queue control-plane handlers (PROTOCOL.md section 7a): QueueDeclare, QueueDelete,
// QueuePurge, QueueList, QueueJoin and QueueLeave, each one MessagePack map in and out
// (codec/queue_control.ts), and the table that ties members to connections.
//
// A member belongs to the connection that joined it. When that connection closes, for
// whatever reason, the member leaves the queue and every record it held is available to the
// others at once (or dead-lettered at the delivery limit): TCP is the member's session. Any
// connection that knows a member id may fetch and ack for it, so a client can keep its long
// polls and its acks on two connections (answers keep request order on each).

import {
  ACK_RANGES_MAX,
  assert,
  type Engine,
  FETCH_RECORDS_MAX,
  type QueueConfig,
  type QueueOptions,
  type QueueStats,
} from "../../engine/mod.ts";
import { type CallbackList, InvariantError } from "../../record/mod.ts";
import { errorToWire, ProtocolError, WIRE_ERRORS } from "../codec/errors.ts";
import { API, finishFrame, startResponse } from "../codec/frames.ts";
import { ACK_RANGES_MAX as WIRE_ACK_RANGES_MAX } from "../codec/queue_ack.ts";
import {
  type Outcome,
  type QueueInfo,
  type QueueListEntry,
  type QueueStatsInfo,
  readQueueDeclareRequest,
  readQueueJoinRequest,
  readQueueLeaveRequest,
  readQueueListRequest,
  readQueueNameRequest,
  writeQueueDeclareResponse,
  writeQueueJoinResponse,
  writeQueueLeaveResponse,
  writeQueueListResponse,
  writeQueuePurgeResponse,
  writeOutcome,
} from "../codec/queue_control.ts";
import { QUEUE_FETCH_RECORDS_MAX } from "../codec/queue_fetch.ts";
import type { Writer } from "../codec/wire.ts";
import type { HandlerResult, RequestContext, ServerConnection } from "./connection.ts";
import { handleQueueAck, handleQueueFetch } from "./_queue_fetch.ts";
import { handleQueueAckV2, handleQueueFetchV2 } from "./_queue_fetch_v2.ts";

// The wire's limits are the engine's: a request the codec accepts is one the engine takes.
assert(QUEUE_FETCH_RECORDS_MAX === FETCH_RECORDS_MAX, "QueueFetch max_records is the engine's");
assert(WIRE_ACK_RANGES_MAX === ACK_RANGES_MAX, "QueueAck ranges are the engine's");

export type QueuePlane = {
  engine: Engine;
  /** A QueueFetch waits at most this long (below requestTimeoutMs: see newQueuePlane). */
  fetchWaitMsMax: number;
  fetchBytesMax: number;
  /** A v2 fetch carrying acks waits this long at most for their durability (limits.ts). */
  queueFetchAckWaitMs: number;
  /** Long polls waiting now, so shutdown can answer them at once (shared with Fetch). */
  waitingFetches: CallbackList;
  members: QueueMembers;
  log(message: string): void;
};

export function newQueuePlane(options: {
  engine: Engine;
  fetchWaitMsMax: number;
  fetchBytesMax: number;
  queueFetchAckWaitMs: number;
  requestTimeoutMs: number;
  waitingFetches: CallbackList;
  log: (message: string) => void;
  fatal: (error: InvariantError) => void;
}): QueuePlane {
  return {
    engine: options.engine,
    // A request still unanswered after requestTimeoutMs is answered REQUEST_TIMED_OUT by the
    // connection, which exempts Fetch only. A long poll that outlived that answer could still
    // acquire records the client never hears of (locked until lockMs): it ends well before.
    fetchWaitMsMax: Math.min(options.fetchWaitMsMax, Math.floor(options.requestTimeoutMs / 2)),
    fetchBytesMax: options.fetchBytesMax,
    queueFetchAckWaitMs: options.queueFetchAckWaitMs,
    waitingFetches: options.waitingFetches,
    members: new QueueMembers(options.engine, options.fatal),
    log: options.log,
  };
}

/** The API table entries of the queue APIs, for the server's dispatch map. */
export function queueHandlers(
  plane: QueuePlane,
): [number, (request: RequestContext) => HandlerResult | Promise<HandlerResult>][] {
  return [
    [API.QueueDeclare, (request) => handleQueueDeclare(plane, request)],
    [API.QueueDelete, (request) => handleQueueDelete(plane, request)],
    [API.QueuePurge, (request) => handleQueuePurge(plane, request)],
    [API.QueueList, (request) => handleQueueList(plane, request)],
    [API.QueueJoin, (request) => handleQueueJoin(plane, request)],
    [API.QueueLeave, (request) => handleQueueLeave(plane, request)],
    [
      API.QueueFetch,
      (request) =>
        request.apiVersion >= 2
          ? handleQueueFetchV2(plane, request)
          : handleQueueFetch(plane, request),
    ],
    [
      API.QueueAck,
      (request) =>
        request.apiVersion >= 2 ? handleQueueAckV2(plane, request) : handleQueueAck(plane, request),
    ],
  ];
}

/** Members by connection, so a closing connection's members leave. */
export class QueueMembers {
  readonly #engine: Engine;
  readonly #fatal: (error: InvariantError) => void;
  /** memberId → queue name, per connection. */
  readonly #byConnection = new Map<ServerConnection, Map<string, string>>();
  readonly #owner = new Map<string, ServerConnection>();

  constructor(engine: Engine, fatal: (error: InvariantError) => void) {
    this.#engine = engine;
    this.#fatal = fatal;
  }

  joined(connection: ServerConnection, queue: string, memberId: string): void {
    let members = this.#byConnection.get(connection);
    if (members === undefined) {
      members = new Map();
      this.#byConnection.set(connection, members);
      connection.onClose(() => this.#leaveAll(connection));
    }
    assert(!this.#owner.has(memberId), "a member id is joined once");
    members.set(memberId, queue);
    this.#owner.set(memberId, connection);
  }

  left(memberId: string): void {
    const connection = this.#owner.get(memberId);
    if (connection === undefined) return;
    this.#owner.delete(memberId);
    this.#byConnection.get(connection)?.delete(memberId);
  }

  /** Members owned by live connections (for tests and stats). */
  get size(): number {
    return this.#owner.size;
  }

  #leaveAll(connection: ServerConnection): void {
    const members = this.#byConnection.get(connection);
    this.#byConnection.delete(connection);
    if (members === undefined) return;
    for (const [memberId, queue] of members) {
      this.#owner.delete(memberId);
      try {
        this.#engine.leaveQueue(queue, memberId);
      } catch (error) {
        // A bug stops the server; a queue deleted since, a member that left, or an engine
        // closed by a shutdown leave nothing to release.
        if (error instanceof InvariantError) this.#fatal(error);
      }
    }
  }
}

function reply(correlationId: number, write: (writer: Writer) => void): HandlerResult {
  const writer = startResponse(correlationId, 256);
  write(writer);
  return [finishFrame(writer)];
}

/** The error fields of an answer; a code is counted against `request`'s server (metrics). */
function outcome(error: unknown, request: RequestContext): Outcome {
  if (error === undefined) return { errorCode: 0, errorMessage: null };
  const { code, message } = errorToWire(error);
  request.connection.countBodyError(code);
  return { errorCode: code, errorMessage: message };
}

/** A declare refused for its settings is INVALID_QUEUE (section 3); the message says which. */
function declareOutcome(error: unknown, request: RequestContext): Outcome {
  const result = outcome(error, request);
  const settings: number[] = [
    WIRE_ERRORS.INVALID_CONFIG,
    WIRE_ERRORS.UNKNOWN_TOPIC,
    WIRE_ERRORS.INVALID_TOPIC,
  ];
  if (settings.includes(result.errorCode)) result.errorCode = WIRE_ERRORS.INVALID_QUEUE;
  return result;
}

export function queueInfo(config: QueueConfig): QueueInfo {
  return {
    name: config.name,
    topic: config.topic,
    from: config.from,
    deadLetterTopic: config.deadLetterTopic,
    deliveryLimit: config.deliveryLimit,
    lockMs: config.lockMs,
    prefetch: config.prefetch,
    maxInFlight: config.maxInFlight,
    fsync: config.fsync,
    messageTtlMs: config.messageTtlMs,
    messageTtlHeader: config.messageTtlHeader,
    maxLength: config.maxLength,
    maxLengthBytes: config.maxLengthBytes,
    overflow: config.overflow,
    singleActiveConsumer: config.singleActiveConsumer,
    priorities: config.priorities,
    priorityRatio: config.priorityRatio,
    retry: config.retry === null ? null : { ...config.retry },
    startOffsets: [...config.startOffsets],
    createdMs: config.createdMs,
  };
}

function statsInfo(stats: QueueStats): QueueStatsInfo {
  return {
    members: stats.members,
    ready: stats.ready,
    acquired: stats.acquired,
    deadLettering: stats.deadLettering,
    delivered: stats.delivered,
    accepted: stats.accepted,
    deadLettered: stats.deadLettered,
    discarded: stats.discarded,
    expired: stats.expired,
    overflowed: stats.overflowed,
    readyBytes: stats.readyBytes,
    activeMember: stats.activeMember,
    delayed: stats.delayed,
    oldestReadyAgeMs: stats.oldestReadyAgeMs,
    memoryBytes: stats.memoryBytes,
    partitions: stats.partitions.map((p) => ({ ...p })),
  };
}

async function handleQueueDeclare(
  plane: QueuePlane,
  request: RequestContext,
): Promise<HandlerResult> {
  const { name, ...settings } = readQueueDeclareRequest(request.reader);
  let response: Outcome & { queue: QueueInfo | null };
  try {
    const config = await plane.engine.declareQueue(name, settings as QueueOptions);
    response = { ...outcome(undefined, request), queue: queueInfo(config) };
  } catch (error) {
    response = { ...declareOutcome(error, request), queue: null };
  }
  return reply(request.correlationId, (writer) => writeQueueDeclareResponse(writer, response));
}

async function handleQueueDelete(
  plane: QueuePlane,
  request: RequestContext,
): Promise<HandlerResult> {
  const { name } = readQueueNameRequest(request.reader, "QueueDeleteRequest");
  let failure: unknown;
  try {
    await plane.engine.deleteQueue(name);
  } catch (error) {
    failure = error;
  }
  return reply(request.correlationId, (writer) => writeOutcome(writer, outcome(failure, request)));
}

async function handleQueuePurge(
  plane: QueuePlane,
  request: RequestContext,
): Promise<HandlerResult> {
  const { name } = readQueueNameRequest(request.reader, "QueuePurgeRequest");
  let response: Outcome & { purged: number };
  try {
    const purged = await plane.engine.purgeQueue(name);
    response = { ...outcome(undefined, request), purged };
  } catch (error) {
    response = { ...outcome(error, request), purged: 0 };
  }
  return reply(request.correlationId, (writer) => writeQueuePurgeResponse(writer, response));
}

function handleQueueList(plane: QueuePlane, request: RequestContext): HandlerResult {
  const { names } = readQueueListRequest(request.reader);
  const configs = new Map(plane.engine.listQueues().map((config) => [config.name, config]));
  const wanted = names ?? [...configs.keys()].sort();
  const queues = wanted.map((name): QueueListEntry => {
    try {
      const config = configs.get(name);
      // queueStats throws UNKNOWN_QUEUE for a name not declared.
      const stats = plane.engine.queueStats(name);
      return {
        name,
        ...outcome(undefined, request),
        config: config === undefined ? null : queueInfo(config),
        stats: statsInfo(stats),
      };
    } catch (error) {
      return { name, ...outcome(error, request), config: null, stats: null };
    }
  });
  return reply(request.correlationId, (writer) => writeQueueListResponse(writer, { queues }));
}

function handleQueueJoin(plane: QueuePlane, request: RequestContext): HandlerResult {
  const { queue } = readQueueJoinRequest(request.reader);
  if (request.connection.closed) {
    throw new ProtocolError("NOT_AVAILABLE", "the connection is closing");
  }
  let response: Outcome & {
    memberId: string | null;
    topic: string | null;
    partitions: number;
    lockMs: number;
    prefetch: number;
  };
  try {
    // The topic's partitions: a queue's due partition (delayed records) is numbered after them.
    const { config } = plane.engine.queue(queue);
    const partitionCount = config.startOffsets.length;
    const memberId = plane.engine.joinQueue(queue);
    plane.members.joined(request.connection, queue, memberId);
    response = {
      ...outcome(undefined, request),
      memberId,
      topic: config.topic,
      partitions: partitionCount,
      lockMs: config.lockMs,
      prefetch: config.prefetch,
    };
  } catch (error) {
    response = {
      ...outcome(error, request),
      memberId: null,
      topic: null,
      partitions: 0,
      lockMs: 0,
      prefetch: 0,
    };
  }
  return reply(request.correlationId, (writer) => writeQueueJoinResponse(writer, response));
}

function handleQueueLeave(plane: QueuePlane, request: RequestContext): HandlerResult {
  const { queue, memberId } = readQueueLeaveRequest(request.reader);
  let response: Outcome & { released: number };
  try {
    const released = plane.engine.leaveQueue(queue, memberId);
    plane.members.left(memberId);
    response = { ...outcome(undefined, request), released };
  } catch (error) {
    response = { ...outcome(error, request), released: 0 };
  }
  return reply(request.correlationId, (writer) => writeQueueLeaveResponse(writer, response));
}

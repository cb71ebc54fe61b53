// The queue data-plane handlers (PROTOCOL.md section 7a): QueueFetch (acquire records and send
// their whole batches as the engine's views, long-polled on the queue's ready signal) and
// QueueAck (per partition, answered once the engine says the outcome is durable).
//
//   QueueFetch ─► piggy-backed acks applied (their durability awaited in the background)
//              ─► fetchQueue: records? ──yes──────────────────────────────┐
//                     │ no, and max_wait_ms > 0                             ▼
//                     └─► onQueueReady ─► fetchQueue again ... ─► answer once the acks are durable
//                         (ends at max_wait_ms, on close, on shutdown, and once the
//                          piggy-backed acks are durable: an answer never waits for a poll)
//
// A request the bytes show to be bad (limits, ack types, overlapping ranges) is INVALID_REQUEST
// before anything is applied. What only the engine can judge (a record not held by the member,
// a lock that ran out, an unknown partition) fails that partition's acks alone, atomically:
// the engine applies one partition's ranges whole or not at all.

import {
  assert,
  beginColdViews,
  type Engine,
  endColdViews,
  FETCH_BYTES_MAX,
  type QueueAck,
  type QueueFetchResult,
  retainColdView,
} from "../../engine/mod.ts";
import { type CallbackList, InvariantError } from "../../record/mod.ts";
import { errorToWire, WIRE_ERRORS } from "../codec/errors.ts";
import { ChunkedFrame, finishFrame, startResponse } from "../codec/frames.ts";
import {
  type AckPartition,
  type AckPartitionResult,
  type AckRange,
  type QueueAckResponse,
  readQueueAckRequest,
  writeQueueAckResponse,
} from "../codec/queue_ack.ts";
import {
  type AckSeqTag,
  type QueueFetchPartition,
  type QueueFetchRequest,
  type QueueFetchResponse,
  readQueueFetchRequest,
  writeQueueFetchResponse,
} from "../codec/queue_fetch.ts";
import type { HandlerResult, RequestContext } from "./connection.ts";

export type QueueDataPlane = {
  engine: Engine;
  fetchWaitMsMax: number;
  fetchBytesMax: number;
  /** A v2 fetch carrying acks waits this long at most for their durability (limits.ts). */
  queueFetchAckWaitMs: number;
  waitingFetches: CallbackList;
  log(message: string): void;
};

export type FetchOutcome =
  | { kind: "records"; result: QueueFetchResult }
  | { kind: "error"; code: number; message: string };

type Acks = Promise<QueueAckResponse>;

/** One partition's ranges, as a request carries them, as the engine's QueueAck entries. */
export function acksOf(partition: number, ranges: readonly AckRange[]): QueueAck[] {
  return ranges.map(({ first, last, type, delayMs }) => ({
    partition,
    first,
    last,
    type,
    ...(delayMs === undefined ? {} : { delayMs }),
  }));
}

/** Applies each partition's ranges with one ackQueue call; resolves once all are durable. */
export async function applyAcks(
  plane: QueueDataPlane,
  queue: string,
  memberId: string,
  partitions: readonly AckPartition[],
): Promise<QueueAckResponse> {
  try {
    plane.engine.queue(queue);
  } catch (error) {
    const { code, message } = errorToWire(error);
    const failed = partitions.map(({ partition }) => ({
      partition,
      errorCode: code,
      errorMessage: message,
    }));
    return { errorCode: code, errorMessage: message, partitions: failed };
  }
  // Every call starts now, in this turn: their deltas share the queue's next group commit.
  const results = partitions.map(({ partition, ranges }) => {
    return plane.engine.ackQueue(queue, memberId, acksOf(partition, ranges)).then(
      (): AckPartitionResult => ({ partition, errorCode: 0, errorMessage: null }),
      // errorToWire throws a broken invariant on: it fails the request, which stops the server.
      (error: unknown): AckPartitionResult => {
        const { code, message } = errorToWire(error);
        return { partition, errorCode: code, errorMessage: message };
      },
    );
  });
  const settled = await Promise.all(results);
  assert(settled.length === partitions.length, "one ack result per partition");
  // A member unknown to the queue is unknown to every partition: the request's own error.
  const unknown = settled.find((r) => r.errorCode === WIRE_ERRORS.UNKNOWN_MEMBER_ID);
  return {
    errorCode: unknown?.errorCode ?? 0,
    errorMessage: unknown?.errorMessage ?? null,
    partitions: settled,
  };
}

export async function handleQueueAck(
  plane: QueueDataPlane,
  request: RequestContext,
): Promise<HandlerResult> {
  const ack = readQueueAckRequest(request.reader);
  const response = await applyAcks(plane, ack.queue, ack.memberId, ack.partitions);
  countAckErrors(request, response);
  const writer = startResponse(request.correlationId, 64 + response.partitions.length * 64);
  writeQueueAckResponse(writer, response);
  return [finishFrame(writer)];
}

export function handleQueueFetch(
  plane: QueueDataPlane,
  request: RequestContext,
): HandlerResult | Promise<HandlerResult> {
  const fetch = readQueueFetchRequest(request.reader);
  // max_bytes comes from the client: bounded here, whatever it asks.
  fetch.maxBytes = Math.min(fetch.maxBytes, plane.fetchBytesMax, FETCH_BYTES_MAX);
  const acks =
    fetch.acks.length === 0 ? undefined : applyAcks(plane, fetch.queue, fetch.memberId, fetch.acks);
  return whenReadable(plane, fetch, () => fetchAfterAcks(plane, request, fetch, acks));
}

function fetchAfterAcks(
  plane: QueueDataPlane,
  request: RequestContext,
  fetch: QueueFetchRequest,
  acks: Acks | undefined,
): HandlerResult | Promise<HandlerResult> {
  const first = tryFetch(plane, fetch);
  const waitMs = Math.min(fetch.maxWaitMs, plane.fetchWaitMsMax);
  const answered = first.kind === "error" || first.result.partitions.length > 0 || waitMs === 0;
  if (answered && acks === undefined) {
    if (first.kind === "error") request.connection.countBodyError(first.code);
    return fetchResponse(request.correlationId, first, []);
  }
  const outcome = answered
    ? Promise.resolve(first)
    : longPoll(plane, request, fetch, { waitMs, until: acks });
  return finishFetch(request, outcome, acks);
}

/** Counts the error codes an ack answer carries (errors by code): one per failed partition. */
export function countAckErrors(request: RequestContext, response: QueueAckResponse): void {
  if (response.partitions.length === 0) request.connection.countBodyError(response.errorCode);
  for (const p of response.partitions) request.connection.countBodyError(p.errorCode);
}

async function finishFetch(
  request: RequestContext,
  outcome: Promise<FetchOutcome>,
  acks: Acks | undefined,
): Promise<HandlerResult> {
  const [fetched, acked] = await Promise.all([outcome, acks]);
  if (fetched.kind === "error") request.connection.countBodyError(fetched.code);
  if (acked !== undefined) countAckErrors(request, acked);
  return fetchResponse(request.correlationId, fetched, acked?.partitions ?? []);
}

/** One acquisition attempt; an engine refusal is an outcome, a broken invariant throws. */
export function tryFetch(plane: QueueDataPlane, fetch: QueueFetchRequest): FetchOutcome {
  // Cold-read buffers may serve the fetch's reads (engine/cold_read.ts): the views the answer
  // takes are counted, and given back as the connection's socket takes them.
  beginColdViews();
  try {
    const result = plane.engine.fetchQueue(fetch.queue, fetch.memberId, {
      maxRecords: fetch.maxRecords,
      maxBytes: fetch.maxBytes,
    });
    for (const partition of result.partitions) {
      for (const view of partition.views) retainColdView(view);
    }
    return { kind: "records", result };
  } catch (error) {
    const { code, message } = errorToWire(error);
    return { kind: "error", code, message };
  } finally {
    endColdViews();
  }
}

/**
 * Runs `fetch` at once, or once the queue's next records are read from the disk on the
 * thread pool when the page cache does not hold them (Engine.prepareQueueFetch): a consumer
 * working off a backlog behind the tail cache does not stall the event loop on the disk.
 */
export function whenReadable<T>(
  plane: QueueDataPlane,
  request: QueueFetchRequest,
  fetch: () => T | Promise<T>,
): T | Promise<T> {
  const cold = plane.engine.prepareQueueFetch(request.queue, request.maxBytes);
  return cold === undefined ? fetch() : cold.then(fetch);
}

export function fetchResponse(
  correlationId: number,
  outcome: FetchOutcome,
  acks: AckPartitionResult[],
  ackSeq?: AckSeqTag,
): HandlerResult {
  const frame = new ChunkedFrame(correlationId);
  const version = ackSeq === undefined ? 1 : 2;
  if (outcome.kind === "error") {
    const response: QueueFetchResponse = {
      errorCode: outcome.code,
      errorMessage: outcome.message,
      lockMs: 0,
      acks,
      partitions: [],
    };
    if (ackSeq !== undefined) response.ackSeq = ackSeq;
    writeQueueFetchResponse(frame, response, version);
    return frame.finish();
  }
  const { lockMs } = outcome.result;
  assert(outcome.result.partitions.length === 0 || lockMs > 0, "acquired records have a lock");
  const partitions = outcome.result.partitions.map(
    (p): QueueFetchPartition => ({
      partition: p.partition,
      errorCode: 0,
      acquired: p.ranges.map((r) => ({
        first: r.first,
        last: r.last,
        deliveryCount: r.deliveries,
      })),
      records: p.views,
    }),
  );
  const response: QueueFetchResponse = {
    errorCode: 0,
    errorMessage: null,
    lockMs: outcome.result.lockMs,
    acks,
    partitions,
  };
  if (ackSeq !== undefined) response.ackSeq = ackSeq;
  writeQueueFetchResponse(frame, response, version);
  return frame.finish();
}

/**
 * Waits for the queue to say a fetch may find something, and tries again each time, until
 * one acquires records or fails, or the wait ends (then: an empty answer). The wait ends
 * early when `until` settles: after one last attempt, the answer goes with what it found.
 */
export function longPoll(
  plane: QueueDataPlane,
  request: RequestContext,
  fetch: QueueFetchRequest,
  { waitMs, until }: { waitMs: number; until: Promise<unknown> | undefined },
): Promise<FetchOutcome> {
  const empty = (): FetchOutcome => ({
    kind: "records",
    result: { lockMs: lockMsOf(plane, fetch.queue), partitions: [] },
  });
  return new Promise((resolve, reject) => {
    let settled = false;
    let unsubscribe = () => {};
    const finish = (outcome: FetchOutcome | undefined, failure?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stopOnClose();
      unsubscribe();
      stopAtShutdown();
      if (failure !== undefined) reject(failure);
      else resolve(outcome ?? empty());
    };
    const timeUp = () => finish(undefined);
    const attempt = () => {
      // A dead client gets nothing: what it acquired now would wait for its lock to end.
      if (request.connection.closed) return finish(undefined);
      try {
        const outcome = tryFetch(plane, fetch);
        if (outcome.kind === "error" || outcome.result.partitions.length > 0) finish(outcome);
      } catch (error) {
        finish(undefined, error);
      }
    };
    const timer = setTimeout(timeUp, waitMs);
    const lastAttempt = () => {
      // Answered already: a fetch now would acquire records no answer carries.
      if (settled) return;
      attempt();
      timeUp();
    };
    const stopOnClose = request.connection.onClose(timeUp);
    const stopAtShutdown = plane.waitingFetches.add(timeUp);
    // Its failure is the request's (finishFetch awaits it too): here it only ends the wait.
    until?.then(lastAttempt, lastAttempt);
    try {
      unsubscribe = plane.engine.onQueueReady(fetch.queue, attempt);
    } catch (error) {
      if (error instanceof InvariantError) return finish(undefined, error);
      // Deleted between the first attempt and now: the next attempt says so.
      attempt();
    }
  });
}

function lockMsOf(plane: QueueDataPlane, queue: string): number {
  try {
    return plane.engine.queue(queue).config.lockMs;
  } catch {
    return 0;
  }
}

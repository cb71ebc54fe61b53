// QueueFetch v2 and QueueAck v2 (PROTOCOL.md section 7a): a fetch's piggy-backed acks are
// checked and applied at once and their results go in its answer, which leaves as soon as it
// has records; their durability is confirmed later, by the connection's ack sequence
// (_queue_ack_seq.ts) in the v2 answers that follow.
//
//   QueueFetch v2 ─► acks applied now ─► seq n ─► settled, or queueFetchAckWaitMs passed
//     ─► fetchQueue: records? ──yes──► answer now (ack_seq n, durable through m ≤ n)
//          │ no, and max_wait_ms > 0
//          └─► long poll ─► ends on records, max_wait_ms, close, shutdown, or when
//              acks_durable_through moves while a sequenced ack was unsettled at its start
//   QueueAck v2   ─► its own acks applied and awaited as v1 ─► and every sequence given
//                    before it on this connection settled ─► answer with the sequence state
//
// Nothing is confirmed before it is durable: a v2 ack result of 0 says "applied", and only
// acks_durable_through says "durable".
//
// The wait for the fetch's own acks (queueFetchAckWaitMs; default 0: none) saves their
// confirmation a whole fetch cycle. Answered at once, a fetch that finds records goes out
// before its acks' fdatasync ends, so they are confirmed only by the answer to the consumer's
// next fetch: after it has handled the records, sent that fetch and the broker has served it.
// Waiting about one fdatasync first lets this answer confirm them, and the records that
// arrived meanwhile go in it too. The wait is bounded, so a slow disk delays records by no
// more than that; a fetch with no acks, or whose acks are durable already, never waits. Nor
// does one on a connection whose last sequence took longer than the wait to settle: on a disk
// that slow (a loaded machine's fdatasyncs of 5-20 ms against a wait of 5) the wait mostly
// timed out and only added itself to every fetch cycle (bench/RESULTS.md, issue 11). Its next
// sequence to settle within the wait turns the wait back on.

import { type Engine, FETCH_BYTES_MAX } from "../../engine/mod.ts";
import { errorToWire } from "../codec/errors.ts";
import { finishFrame, startResponse } from "../codec/frames.ts";
import {
  type AckPartition,
  type AckPartitionResult,
  readQueueAckRequest,
  writeQueueAckResponseV2,
} from "../codec/queue_ack.ts";
import { readQueueFetchRequest } from "../codec/queue_fetch.ts";
import { type AckSequence, ackSequenceOf, type DurablePartition } from "./_queue_ack_seq.ts";
import {
  acksOf,
  applyAcks,
  countAckErrors,
  type FetchOutcome,
  fetchResponse,
  longPoll,
  type QueueDataPlane,
  tryFetch,
  whenReadable,
} from "./_queue_fetch.ts";
import type { HandlerResult, RequestContext } from "./connection.ts";

type Applied = { results: AckPartitionResult[]; durable: DurablePartition[] };

/** Applies each partition's ranges now; refusals are results, the rest await durability. */
function applyAcksNow(
  engine: Engine,
  { queue, memberId }: { queue: string; memberId: string },
  partitions: readonly AckPartition[],
): Applied {
  const results: AckPartitionResult[] = [];
  const durable: DurablePartition[] = [];
  for (const { partition, ranges } of partitions) {
    try {
      const acks = acksOf(partition, ranges);
      durable.push({ partition, durable: engine.applyQueueAck(queue, memberId, acks) });
      results.push({ partition, errorCode: 0, errorMessage: null });
    } catch (error) {
      // errorToWire throws a broken invariant on: it fails the request, which stops the server.
      const { code, message } = errorToWire(error);
      results.push({ partition, errorCode: code, errorMessage: message });
    }
  }
  return { results, durable };
}

type Fetch = ReturnType<typeof readQueueFetchRequest>;
type Acked = { acks: AckPartitionResult[]; ackSeq: number; sequence: AckSequence };

export function handleQueueFetchV2(
  plane: QueueDataPlane,
  request: RequestContext,
): HandlerResult | Promise<HandlerResult> {
  const fetch = readQueueFetchRequest(request.reader);
  fetch.maxBytes = Math.min(fetch.maxBytes, plane.fetchBytesMax, FETCH_BYTES_MAX);
  const sequence = ackSequenceOf(request.connection);
  let acks: AckPartitionResult[] = [];
  let ackSeq = 0;
  if (fetch.acks.length > 0) {
    const applied = applyAcksNow(plane.engine, fetch, fetch.acks);
    acks = applied.results;
    ackSeq = sequence.track(applied.durable);
    countAckErrors(request, { errorCode: 0, errorMessage: null, partitions: acks });
  }
  const acked = { acks, ackSeq, sequence };
  const waitMs = plane.queueFetchAckWaitMs;
  const durable = sequence.durableThrough >= ackSeq;
  if (ackSeq === 0 || durable || waitMs === 0 || sequence.lastSettleMs > waitMs) {
    return fetchAndAnswer(plane, request, fetch, acked);
  }
  return settledWithin(sequence, ackSeq, waitMs).then(() =>
    fetchAndAnswer(plane, request, fetch, acked),
  );
}

/**
 * Resolves once `ackSeq` has settled (durable, or failed and reported), or after `waitMs`,
 * whichever comes first; never rejects.
 */
function settledWithin(sequence: AckSequence, ackSeq: number, waitMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    let change = sequence.changed();
    const done = () => {
      clearTimeout(timer);
      change.cancel();
      resolve();
    };
    const timer = setTimeout(done, waitMs);
    const check = () => {
      if (sequence.durableThrough >= ackSeq) return done();
      change = sequence.changed();
      change.promise.then(check);
    };
    change.promise.then(check);
  });
}

function fetchAndAnswer(
  plane: QueueDataPlane,
  request: RequestContext,
  fetch: Fetch,
  acked: Acked,
): HandlerResult | Promise<HandlerResult> {
  return whenReadable(plane, fetch, () => fetchNow(plane, request, fetch, acked));
}

function fetchNow(
  plane: QueueDataPlane,
  request: RequestContext,
  fetch: Fetch,
  { acks, ackSeq, sequence }: Acked,
): HandlerResult | Promise<HandlerResult> {
  const first = tryFetch(plane, fetch);
  const waitMs = Math.min(fetch.maxWaitMs, plane.fetchWaitMsMax);
  // What settled since the last answer is told now rather than after a whole long poll.
  const tell = sequence.untold;
  if (first.kind === "error" || first.result.partitions.length > 0 || waitMs === 0 || tell) {
    return answer(request, first, { acks, ackSeq, sequence });
  }
  // A consumer with nothing to fetch still learns promptly that its acks are durable.
  const change = sequence.waiting ? sequence.changed() : undefined;
  const outcome = longPoll(plane, request, fetch, { waitMs, until: change?.promise });
  return outcome.then(
    (fetched) => {
      change?.cancel();
      return answer(request, fetched, { acks, ackSeq, sequence });
    },
    (error: unknown) => {
      change?.cancel();
      throw error;
    },
  );
}

function answer(
  request: RequestContext,
  outcome: FetchOutcome,
  { acks, ackSeq, sequence }: { acks: AckPartitionResult[]; ackSeq: number; sequence: AckSequence },
): HandlerResult {
  if (outcome.kind === "error") request.connection.countBodyError(outcome.code);
  return fetchResponse(request.correlationId, outcome, acks, { ackSeq, ...sequence.take() });
}

/** QueueAck v2: v1's answer, given once every earlier sequenced ack has settled too. */
export async function handleQueueAckV2(
  plane: QueueDataPlane,
  request: RequestContext,
): Promise<HandlerResult> {
  const ack = readQueueAckRequest(request.reader);
  const sequence = ackSequenceOf(request.connection);
  const through = sequence.last;
  const response =
    ack.partitions.length === 0
      ? { errorCode: 0, errorMessage: null, partitions: [] }
      : await applyAcks(plane, ack.queue, ack.memberId, ack.partitions);
  await sequence.settledThrough(through);
  if (response.partitions.length > 0) countAckErrors(request, response);
  const writer = startResponse(request.correlationId, 96 + response.partitions.length * 64);
  writeQueueAckResponseV2(writer, { ...response, ...sequence.take() });
  return [finishFrame(writer)];
}

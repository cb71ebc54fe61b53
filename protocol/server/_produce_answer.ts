// The answer of a Produce request with acks 0 or 1: no durability deadline, so each partition
// is answered as soon as its appends are. Each one-batch partition is its own result record
// and the engine's listener of its append (PartitionLog.appendTo), a count of partitions left
// says when the answer is whole, and the answer is handed to the connection in that call (a
// PendingAnswer: no promise at all):
//
//   appendTo(batch, lease, PartitionAnswer) ──flush round──► appended(result) / refused(error)
//        ──► ProduceAnswer: partitions left − 1 ──(0)──► response frame ──► connection slot
//
// At lingerMs 0 most Produce requests carry one batch for one partition, so what a request
// allocates is what a message costs: a promise per append, its reactions and closures, a
// Promise.all over the partitions and the async frame that awaited it were about a third of
// the broker's heap cells per message (bench/RESULTS.md, issue 16).

import type { AppendListener, AppendResult } from "../../engine/mod.ts";
import { finishFrame, startResponse } from "../codec/frames.ts";
import {
  type ProducePartitionResult,
  type ProduceRequestIn,
  writeProduceResponse,
} from "../codec/produce.ts";
import { errorToWire } from "../codec/errors.ts";
import { assert } from "../../record/mod.ts";
import { type HandlerResult, PendingAnswer, type RequestContext } from "./connection.ts";

/** What of the data plane (_data.ts DataPlane) an answer reports partition errors to. */
export type ProduceReports = {
  log(message: string): void;
  partitionError?(topic: string, partition: number, code: number, message: string | null): void;
};

/** A partition of the answer: its wire result, and the listener of its one batch's append. */
export class PartitionAnswer implements ProducePartitionResult, AppendListener {
  readonly partition: number;
  errorCode = 0;
  baseOffset = -1;
  logStartOffset = -1;
  errorMessage: string | null = null;
  acceptedBatches = 0;
  #answer: ProduceAnswer;

  constructor(partition: number, answer: ProduceAnswer) {
    this.partition = partition;
    this.#answer = answer;
  }

  appended(result: AppendResult): void {
    this.acceptedBatches = 1;
    this.baseOffset = result.baseOffset;
    this.logStartOffset = result.logStartOffset;
    this.#answer.partitionDone();
  }

  refused(error: unknown): void {
    try {
      refuse(this, error);
    } catch (failure) {
      // errorToWire throws only a broken invariant: it stops the server (connection.ts).
      this.#answer.fail(failure);
      return;
    }
    this.#answer.partitionDone();
  }
}

/** A partition whose only batch was not appended: its error, nothing accepted. */
export function refuse(result: ProducePartitionResult, error: unknown): ProducePartitionResult {
  const { code, message } = errorToWire(error);
  result.acceptedBatches = 0;
  result.errorCode = code;
  result.errorMessage = message;
  return result;
}

export class ProduceAnswer extends PendingAnswer {
  readonly topics: { topic: string; partitions: ProducePartitionResult[] }[] = [];
  #plane: ProduceReports;
  #request: RequestContext;
  #produce: ProduceRequestIn;
  #left: number;

  constructor(plane: ProduceReports, request: RequestContext, produce: ProduceRequestIn) {
    super();
    assert(produce.acks !== -1, "acks -1 answers within its timeout (_produce_deadline.ts)");
    this.#plane = plane;
    this.#request = request;
    this.#produce = produce;
    let partitions = 0;
    for (const topic of produce.topics) partitions += topic.partitions.length;
    // One more than the partitions: `started` takes it back once every append has begun, so
    // partitions answered while others are still being started cannot finish the answer.
    this.#left = partitions + 1;
  }

  /**
   * A partition answered through a promise (several batches, produceBatches). Its closures are
   * made here, for such a partition only: as fields of every answer they were two functions
   * and a scope per request on the one-batch path, which never calls them.
   */
  partitionSettles(settled: Promise<unknown>): void {
    settled.then(
      () => this.partitionDone(),
      (failure: unknown) => this.fail(failure),
    );
  }

  /** Every partition's append has begun (or been answered): the answer may now finish. */
  started(): void {
    this.partitionDone();
  }

  partitionDone(): void {
    assert(this.#left > 0, "each partition is answered once");
    this.#left--;
    if (this.#left > 0) return;
    let result: HandlerResult;
    try {
      result = produceResponse(this.#plane, this.#request, this.#produce, this.topics);
    } catch (error) {
      this.fail(error);
      return;
    }
    this.answer(result);
  }

  /**
   * Only ever a broken invariant (an ordinary failure is a partition's error code): the
   * request is answered by the connection's fatal path, never by this answer.
   */
  override fail(failure: unknown): void {
    this.#left = Number.POSITIVE_INFINITY;
    super.fail(failure);
  }
}

/** The Produce answer once every partition has its result (acks 0: none, errors logged). */
export function produceResponse(
  plane: ProduceReports,
  request: RequestContext,
  produce: ProduceRequestIn,
  topics: { topic: string; partitions: ProducePartitionResult[] }[],
): HandlerResult {
  for (const t of topics) {
    for (const p of t.partitions) {
      if (p.errorCode !== 0)
        plane.partitionError?.(t.topic, p.partition, p.errorCode, p.errorMessage);
    }
  }
  if (produce.acks === 0) {
    for (const t of topics) {
      for (const p of t.partitions) {
        if (p.errorCode !== 0)
          plane.log(`acks=0 produce to ${t.topic}-${p.partition}: ${p.errorMessage}`);
      }
    }
    return null;
  }
  const writer = startResponse(request.correlationId, 64 + topics.length * 64);
  writeProduceResponse(writer, { topics }, request.apiVersion === 2 ? 2 : 1);
  return [finishFrame(writer)];
}

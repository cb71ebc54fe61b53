// The data-plane handlers: Produce (append the request's batches, answer per acks) and Fetch
// (views of stored batches, long-polled until min_bytes or max_wait_ms).

import { type Engine, type PartitionLog, type ReadResult, SluiceError } from "../../engine/mod.ts";
import { BATCH_HEADER_BYTES, batchSizeAt } from "../../record/mod.ts";
import { ChunkedFrame, finishFrame, startResponse } from "../codec/frames.ts";
import {
  type FetchPartitionResult,
  type FetchRequest,
  readFetchRequest,
  writeFetchResponse,
} from "../codec/fetch.ts";
import {
  type ProducePartitionResult,
  type ProduceRequest,
  readProduceRequest,
  writeProduceResponse,
} from "../codec/produce.ts";
import { errorToWire, WIRE_ERRORS } from "../codec/errors.ts";
import type { HandlerResult, RequestContext } from "./connection.ts";

export type DataPlane = {
  engine: Engine;
  fetchWaitMsMax: number;
  /** Caps a fetch's max_bytes and partition_max_bytes, whatever the client asks. */
  fetchBytesMax: number;
  /** Long polls waiting now, so shutdown can answer them at once. */
  waitingFetches: Set<() => void>;
  log(message: string): void;
};

function batchSize(records: Uint8Array, at: number): number {
  if (records.length - at < BATCH_HEADER_BYTES) return -1;
  const size = batchSizeAt(records, at);
  return size >= BATCH_HEADER_BYTES && at + size <= records.length ? size : -1;
}

/**
 * Appends one partition's batches in order. A batch that fails validation stops the rest of
 * that partition's batches (the engine validates before it writes anything); the batches
 * before it stay appended, as the spec says.
 */
async function producePartition(
  plane: DataPlane,
  topic: string,
  partition: number,
  records: Uint8Array,
  acks: number,
): Promise<ProducePartitionResult> {
  const result: ProducePartitionResult = {
    partition,
    errorCode: 0,
    baseOffset: -1,
    logStartOffset: -1,
    errorMessage: null,
  };
  try {
    const log = plane.engine.partition(topic, partition);
    const appends: Promise<{ baseOffset: number; logStartOffset: number }>[] = [];
    for (let at = 0; at < records.length; ) {
      const size = batchSize(records, at);
      if (size === -1) {
        throw new SluiceError("INVALID_BATCH", `Records at byte ${at} are not a whole batch`);
      }
      const append = log.appendChecked(records.subarray(at, at + size));
      // If a later batch of this entry is refused, this one's outcome is never awaited: its
      // failure must not escape as an unhandled rejection.
      append.catch(() => {});
      appends.push(append);
      at += size;
    }
    if (appends.length === 0) throw new SluiceError("INVALID_BATCH", "Produce without records");
    const done = await Promise.all(appends);
    if (acks === -1 && log.config.fsync !== "always") await log.flush();
    result.baseOffset = done[0]!.baseOffset;
    result.logStartOffset = done[0]!.logStartOffset;
  } catch (error) {
    const { code, message } = errorToWire(error);
    result.errorCode = code;
    result.errorMessage = message;
  }
  return result;
}

export function handleProduce(plane: DataPlane, request: RequestContext): Promise<HandlerResult> {
  const produce = readProduceRequest(request.reader);
  // Every append starts now, while the request bytes are valid; only the waiting is async.
  const topics = produce.topics.map(({ topic, partitions }) => {
    const results = Promise.all(
      partitions.map((p) => producePartition(plane, topic, p.partition, p.records, produce.acks)),
    );
    // It rejects only on a broken invariant, which finishProduce awaits, perhaps after an
    // earlier topic's appends: marked handled now, so it is not reported as unhandled first.
    results.catch(() => {});
    return { topic, partitions: results };
  });
  return finishProduce(plane, request.correlationId, produce, topics);
}

async function finishProduce(
  plane: DataPlane,
  correlationId: number,
  produce: ProduceRequest,
  pending: { topic: string; partitions: Promise<ProducePartitionResult[]> }[],
): Promise<HandlerResult> {
  const topics = [];
  for (const { topic, partitions } of pending) topics.push({ topic, partitions: await partitions });
  if (produce.acks === 0) {
    for (const t of topics) {
      for (const p of t.partitions) {
        if (p.errorCode !== 0)
          plane.log(`acks=0 produce to ${t.topic}-${p.partition}: ${p.errorMessage}`);
      }
    }
    return null;
  }
  const writer = startResponse(correlationId, 64 + topics.length * 64);
  writeProduceResponse(writer, { topics });
  return [finishFrame(writer)];
}

type PartitionRead = { topic: string; result: FetchPartitionResult };

/** Reads every partition of a fetch once; returns the results and the bytes found. */
function readAll(
  plane: DataPlane,
  fetch: FetchRequest,
): { reads: PartitionRead[]; bytes: number; errors: boolean } {
  const reads: PartitionRead[] = [];
  let budget = fetch.maxBytes;
  let bytes = 0;
  let errors = false;
  for (const { topic, partitions } of fetch.topics) {
    for (const p of partitions) {
      const result: FetchPartitionResult = {
        partition: p.partition,
        errorCode: 0,
        highWatermark: -1,
        logStartOffset: -1,
        records: [],
      };
      try {
        const log = plane.engine.partition(topic, p.partition);
        result.highWatermark = log.highWatermark;
        result.logStartOffset = log.logStartOffset;
        const limit = Math.max(1, Math.min(p.partitionMaxBytes, budget));
        if (budget > 0 || bytes === 0) {
          const read: ReadResult = log.read(p.fetchOffset, limit);
          // Only the first non-empty partition may go past max_bytes (one whole batch).
          if (bytes === 0 || read.sizeBytes <= budget) {
            result.records = read.views;
            bytes += read.sizeBytes;
            budget -= read.sizeBytes;
          }
        }
      } catch (error) {
        const wire = errorToWire(error);
        result.errorCode = wire.code;
        errors = true;
        if (wire.code === WIRE_ERRORS.UNKNOWN_SERVER_ERROR)
          plane.log(`fetch ${topic}: ${String(error)}`);
      }
      reads.push({ topic, result });
    }
  }
  return { reads, bytes, errors };
}

function fetchResponse(correlationId: number, reads: PartitionRead[]): HandlerResult {
  const frame = new ChunkedFrame(correlationId);
  const topics: { topic: string; partitions: FetchPartitionResult[] }[] = [];
  for (const { topic, result } of reads) {
    const last = topics.at(-1);
    if (last !== undefined && last.topic === topic) last.partitions.push(result);
    else topics.push({ topic, partitions: [result] });
  }
  writeFetchResponse(frame, { topics });
  return frame.finish();
}

export function handleFetch(
  plane: DataPlane,
  request: RequestContext,
): HandlerResult | Promise<HandlerResult> {
  const fetch = readFetchRequest(request.reader);
  // max_bytes comes from the client: bounded here, so a read never allocates more than this.
  fetch.maxBytes = Math.min(fetch.maxBytes, plane.fetchBytesMax);
  for (const topic of fetch.topics) {
    for (const p of topic.partitions) {
      p.partitionMaxBytes = Math.min(p.partitionMaxBytes, plane.fetchBytesMax);
    }
  }
  const first = readAll(plane, fetch);
  const waitMs = Math.min(fetch.maxWaitMs, plane.fetchWaitMsMax);
  if (first.bytes >= fetch.minBytes || first.errors || waitMs === 0) {
    return fetchResponse(request.correlationId, first.reads);
  }
  return longPoll(plane, request, fetch, waitMs);
}

/** Waits for new data on any of the fetch's partitions, or for the wait to end. */
function longPoll(
  plane: DataPlane,
  request: RequestContext,
  fetch: FetchRequest,
  waitMs: number,
): Promise<HandlerResult> {
  const logs: PartitionLog[] = [];
  for (const { topic, partitions } of fetch.topics) {
    for (const p of partitions) logs.push(plane.engine.partition(topic, p.partition));
  }
  return new Promise((resolve, reject) => {
    const unsubscribes: (() => void)[] = [];
    let settled = false;
    // Stops waiting and answers with a fresh read. A failure (only ever a broken invariant)
    // rejects, so it reaches the connection rather than the timer or the engine calling back.
    const finish = (failure?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stopOnClose();
      for (const unsubscribe of unsubscribes) unsubscribe();
      plane.waitingFetches.delete(finish);
      if (failure !== undefined) return reject(failure);
      try {
        resolve(fetchResponse(request.correlationId, readAll(plane, fetch).reads));
      } catch (error) {
        reject(error);
      }
    };
    const onData = () => {
      // With min_bytes <= 1 any new data answers the poll without reading it twice.
      if (request.connection.closed || fetch.minBytes <= 1) return finish();
      try {
        if (readAll(plane, fetch).bytes >= fetch.minBytes) finish();
      } catch (error) {
        finish(error);
      }
    };
    const timer = setTimeout(() => finish(), waitMs);
    const stopOnClose = request.connection.onClose(() => finish());
    for (const log of logs) unsubscribes.push(log.onData(onData));
    plane.waitingFetches.add(finish);
  });
}

// Produce, Fetch and ListOffsets over Kafka's protocol. The stored bytes are Kafka's RecordBatch
// v2, so Produce appends the request's batches as they are (the engine checks each header and
// CRC and patches the base offset) and Fetch answers with views of the stored batches: no
// record is decoded or copied on either path.

import {
  type AppendResult,
  beginColdViews,
  type Engine,
  endColdViews,
  PartitionLog,
  type ReadResult,
  retainColdView,
  SluiceError,
} from "../../engine/mod.ts";
import { BATCH_HEADER_BYTES, batchSizeAt, decodeRecordBatches } from "../../record/mod.ts";
import { ProtocolError } from "../codec/errors.ts";
import { errorToKafka, KAFKA_ERRORS } from "./errors.ts";
import type { KafkaPlane, RequestInfo } from "./_plane.ts";
import {
  answersWithin,
  type ProduceDeadline,
  startProduceDeadline,
  timedOutMessage,
} from "../server/_produce_deadline.ts";
import type { Struct } from "./schema.ts";

type PartitionOrError = PartitionLog | { code: number; message: string };

/** The log of a partition, or the Kafka code saying why there is none. */
export function findPartition(engine: Engine, topic: string, partition: number): PartitionOrError {
  try {
    const partitions = engine.describeTopic(topic).partitions;
    if (partition < 0 || partition >= partitions) {
      return {
        code: KAFKA_ERRORS.UNKNOWN_TOPIC_OR_PARTITION,
        message: `Topic '${topic}' has no partition ${partition} (it has ${partitions})`,
      };
    }
    return engine.partition(topic, partition);
  } catch (error) {
    return errorToKafka(error);
  }
}

/** Counts a request's partition entries against the shared limit before any work starts. */
function checkPartitionCount(topics: readonly Struct[], limit: number, field: string): void {
  let count = 0;
  for (const topic of topics) count += (topic[field] as Struct[]).length;
  if (count > limit) {
    throw ProtocolError.invalid(`request names ${count} partitions; the limit is ${limit}`);
  }
}

/** Starts appending each whole batch in `records`, in order, until one is refused. */
function appendAll(
  log: PartitionLog,
  records: Uint8Array,
): { appends: Promise<AppendResult>[]; refusal: unknown } {
  const appends: Promise<AppendResult>[] = [];
  try {
    if (records.length === 0) throw new SluiceError("INVALID_BATCH", "Produce without records");
    let at = 0;
    while (at < records.length) {
      const size = records.length - at < BATCH_HEADER_BYTES ? -1 : batchSizeAt(records, at);
      if (size < BATCH_HEADER_BYTES || at + size > records.length) {
        throw new SluiceError("INVALID_BATCH", `Records at byte ${at} are not a whole batch`, {
          at,
          size,
        });
      }
      appends.push(log.appendChecked(records.subarray(at, at + size)));
      at += size;
    }
  } catch (error) {
    return { appends, refusal: error };
  }
  return { appends, refusal: undefined };
}

type PartitionAnswer = {
  index: number;
  errorCode: number;
  baseOffset: number;
  logStartOffset: number;
  errorMessage: string | null;
};

async function producePartition(
  plane: KafkaPlane,
  log: PartitionLog,
  answer: PartitionAnswer,
  records: Uint8Array,
  acks: number,
): Promise<PartitionAnswer> {
  const { appends, refusal } = appendAll(log, records);
  plane.stats.produceBatches += appends.length;
  const settled = await Promise.allSettled(appends);
  let failure: unknown = refusal;
  for (const outcome of settled) {
    if (outcome.status === "rejected") {
      failure = outcome.reason;
      break;
    }
  }
  if (failure === undefined && acks === -1 && log.config.fsync !== "always") {
    try {
      await log.flush();
    } catch (error) {
      failure = error;
    }
  }
  const first = settled[0];
  if (failure === undefined && first?.status === "fulfilled") {
    answer.baseOffset = first.value.baseOffset;
    answer.logStartOffset = first.value.logStartOffset;
  } else {
    const { code, message } = errorToKafka(failure);
    answer.errorCode = code;
    answer.errorMessage = message;
  }
  return answer;
}

function refusedPartition(index: number, code: number, message: string): PartitionAnswer {
  return { index, errorCode: code, baseOffset: -1, logStartOffset: -1, errorMessage: message };
}

/**
 * Produce: versions 0-2 (message formats v0 and v1) are advertised, for librdkafka's sake,
 * and refused per partition with UNSUPPORTED_VERSION; transactional produce is refused too.
 */
export function produce(plane: KafkaPlane, body: Struct, info: RequestInfo) {
  const acks = body["acks"] as number;
  const topics = body["topics"] as Struct[];
  checkPartitionCount(topics, plane.limits.requestPartitionsMax, "partitions");
  const refusal =
    info.apiVersion < 3
      ? { code: KAFKA_ERRORS.UNSUPPORTED_VERSION, message: "Produce below v3 is not served" }
      : body["transactionalId"] !== null
        ? { code: KAFKA_ERRORS.INVALID_REQUEST, message: "transactions are not supported" }
        : acks !== 0 && acks !== 1 && acks !== -1
          ? { code: KAFKA_ERRORS.INVALID_REQUIRED_ACKS, message: `acks ${acks} is not 0, 1 or -1` }
          : undefined;
  // Every append starts now, while the request's bytes are valid; only the waiting is async.
  const deadline =
    acks === -1 && refusal === undefined
      ? startProduceDeadline(body["timeoutMs"] as number)
      : undefined;
  const pending = topics.map((topic) => {
    const name = topic["name"] as string;
    const indexes: number[] = [];
    const partitions = (topic["partitions"] as Struct[]).map((p) => {
      const index = p["index"] as number;
      indexes.push(index);
      if (refusal !== undefined) return refusedPartition(index, refusal.code, refusal.message);
      const log = findPartition(plane.engine, name, index);
      if (!(log instanceof PartitionLog)) return refusedPartition(index, log.code, log.message);
      const answer = refusedPartition(index, 0, "");
      answer.errorMessage = null;
      const records = p["records"] as Uint8Array | null;
      return producePartition(plane, log, answer, records ?? new Uint8Array(0), acks);
    });
    const answers =
      deadline === undefined
        ? Promise.all(partitions)
        : durableWithin(plane, { name, indexes }, partitions, deadline);
    // It rejects only on a broken invariant, which finishProduce awaits, perhaps after an
    // earlier topic's: marked handled now, so it is not reported as unhandled first.
    answers.catch(() => {});
    return { name, partitions: answers };
  });
  if (deadline === undefined) return finishProduce(plane, pending, acks);
  return finishProduce(plane, pending, acks).finally(() => deadline.cancel());
}

/**
 * A topic's acks=all partition answers, each REQUEST_TIMED_OUT if not in once the request's
 * timeoutMs passes (as Kafka's broker answers); the append goes on, and a failure after the
 * answer is logged.
 */
function durableWithin(
  plane: KafkaPlane,
  where: { name: string; indexes: readonly number[] },
  partitions: (PartitionAnswer | Promise<PartitionAnswer>)[],
  deadline: ProduceDeadline,
): Promise<PartitionAnswer[]> {
  const { name, indexes } = where;
  const message = timedOutMessage(deadline.timeoutMs);
  return answersWithin(partitions, deadline, {
    timedOut: (at) => refusedPartition(indexes[at] ?? -1, KAFKA_ERRORS.REQUEST_TIMED_OUT, message),
    late: (answer) => {
      if (answer.errorCode !== 0)
        plane.log(
          `kafka: produce to ${name}-${answer.index} after its timeout: ${answer.errorMessage}`,
        );
    },
  });
}

async function finishProduce(
  plane: KafkaPlane,
  pending: { name: string; partitions: Promise<PartitionAnswer[]> }[],
  acks: number,
): Promise<Struct | null> {
  const responses = [];
  for (const { name, partitions } of pending)
    responses.push({ name, partitions: await partitions });
  if (acks === 0) {
    for (const topic of responses) {
      for (const p of topic.partitions) {
        if (p.errorCode !== 0)
          plane.log(`kafka: acks=0 produce to ${topic.name}: ${p.errorMessage}`);
      }
    }
    return null;
  }
  return { responses, throttleTimeMs: 0 };
}

type FetchRead = { topic: string; answer: Struct };

function readPartition(
  plane: KafkaPlane,
  topic: string,
  p: Struct,
  budget: { left: number; taken: number },
): Struct {
  const partitionIndex = p["partition"] as number;
  const answer: Struct = {
    partitionIndex,
    errorCode: 0,
    highWatermark: -1,
    lastStableOffset: -1,
    logStartOffset: -1,
    abortedTransactions: [],
    records: [],
  };
  const log = findPartition(plane.engine, topic, partitionIndex);
  if (!(log instanceof PartitionLog)) {
    answer["errorCode"] = log.code;
    return answer;
  }
  try {
    answer["highWatermark"] = log.highWatermark;
    answer["lastStableOffset"] = log.highWatermark;
    answer["logStartOffset"] = log.logStartOffset;
    const partitionMaxBytes = Math.min(
      p["partitionMaxBytes"] as number,
      plane.limits.fetchBytesMax,
    );
    const limit = Math.max(1, Math.min(partitionMaxBytes, budget.left));
    if (budget.left > 0 || budget.taken === 0) {
      const read: ReadResult = log.read(p["fetchOffset"] as number, limit);
      // Only the first non-empty partition may go past max_bytes (one whole batch).
      if (budget.taken === 0 || read.sizeBytes <= budget.left) {
        answer["records"] = read.views;
        budget.taken += read.sizeBytes;
        budget.left -= read.sizeBytes;
      }
    }
  } catch (error) {
    answer["errorCode"] = errorToKafka(error).code;
  }
  return answer;
}

function fetchMaxBytes(plane: KafkaPlane, body: Struct): number {
  return Math.max(0, Math.min(body["maxBytes"] as number, plane.limits.fetchBytesMax));
}

function readAll(plane: KafkaPlane, body: Struct) {
  const budget = { left: fetchMaxBytes(plane, body), taken: 0 };
  const reads: FetchRead[] = [];
  let errors = false;
  // Cold-read buffers may serve these reads (engine/cold_read.ts), and views of the tail
  // cache's chunks are lent (segment.ts): the views an answer takes are counted in fetchAnswer,
  // synchronously after this, and given back as the connection's socket takes them (the
  // answer's writer attaches each as it is: wire.ts `views`); a read not answered (a long
  // poll's first) is dropped unretained. A lent chunk is reused once all came back, where a
  // chunk a reader saw was otherwise never reused: garbage for the collector at the rate
  // consumers tail the log.
  beginColdViews({ lendTail: true });
  try {
    for (const topic of body["topics"] as Struct[]) {
      const name = topic["topic"] as string;
      for (const p of topic["partitions"] as Struct[]) {
        const answer = readPartition(plane, name, p, budget);
        if (answer["errorCode"] !== 0) errors = true;
        reads.push({ topic: name, answer });
      }
    }
  } finally {
    endColdViews();
  }
  return { reads, bytes: budget.taken, errors };
}

/**
 * Reads on the thread pool of the partitions whose bytes are not in memory (cold_read.ts,
 * PartitionLog.prepareRead), within the fetch's max_bytes, as the sluice protocol's fetch
 * makes them; settles when all are done (never rejects). Undefined when every partition may
 * be read at once, the usual case. Without it a Kafka consumer catching up on segments written
 * direct (the broker's default) read them through mappings, in page faults on the event loop.
 */
function coldReads(plane: KafkaPlane, body: Struct): Promise<unknown> | undefined {
  let waits: Promise<void>[] | undefined;
  let left = fetchMaxBytes(plane, body);
  for (const topic of body["topics"] as Struct[]) {
    for (const p of topic["partitions"] as Struct[]) {
      if (left < 1) break;
      const log = findPartition(plane.engine, topic["topic"] as string, p["partition"] as number);
      if (!(log instanceof PartitionLog)) continue;
      // left is within fetchBytesMax already.
      const bytes = Math.min(p["partitionMaxBytes"] as number, left);
      if (bytes < 1) continue;
      const wait = log.prepareRead(p["fetchOffset"] as number, bytes);
      if (wait === undefined) continue;
      left -= bytes;
      waits ??= [];
      waits.push(wait);
    }
  }
  return waits === undefined ? undefined : Promise.all(waits);
}

function fetchAnswer(plane: KafkaPlane, reads: FetchRead[]): Struct {
  const responses: { topic: string; partitions: Struct[] }[] = [];
  for (const { topic, answer } of reads) {
    const views = answer["records"] as Uint8Array[];
    plane.stats.fetchBatchViews += views.length;
    for (const view of views) {
      retainColdView(view);
      plane.stats.fetchBytes += view.length;
    }
    const last = responses.at(-1);
    if (last !== undefined && last.topic === topic) last.partitions.push(answer);
    else responses.push({ topic, partitions: [answer] });
  }
  return { throttleTimeMs: 0, errorCode: 0, sessionId: 0, responses };
}

/**
 * Fetch, sessionless (session id 0: every request is a full fetch). Answers at once with what
 * there is when it reaches min_bytes, or on an error, else waits for new data up to
 * max_wait_ms (bounded by the shared fetchWaitMsMax).
 */
export function fetch(plane: KafkaPlane, body: Struct, info: RequestInfo) {
  const topics = body["topics"] as Struct[];
  checkPartitionCount(topics, plane.limits.requestPartitionsMax, "partitions");
  // Bytes to be read from the disk are read on the thread pool first: the event loop serves
  // other connections meanwhile.
  const cold = coldReads(plane, body);
  if (cold === undefined) return fetchRead(plane, body, info);
  const kept = detached(body);
  return cold.then(() => fetchRead(plane, kept, info));
}

/** A Fetch body a wait may keep: no view of the request, its topics and offsets plain values. */
function detached(body: Struct): Struct {
  return { ...body, topics: (body["topics"] as Struct[]).map((t) => ({ ...t })) };
}

/** Fetch once its cold reads (if any) are in: answers now, or waits for data. */
function fetchRead(plane: KafkaPlane, body: Struct, info: RequestInfo) {
  const first = readAll(plane, body);
  const waitMs = Math.min(Math.max(0, body["maxWaitMs"] as number), plane.limits.fetchWaitMsMax);
  const minBytes = body["minBytes"] as number;
  if (first.bytes >= minBytes || first.errors || waitMs === 0) {
    return fetchAnswer(plane, first.reads);
  }
  return longPoll(plane, detached(body), info, waitMs);
}

function longPoll(plane: KafkaPlane, body: Struct, info: RequestInfo, waitMs: number) {
  const logs: PartitionLog[] = [];
  for (const topic of body["topics"] as Struct[]) {
    for (const p of topic["partitions"] as Struct[]) {
      const log = findPartition(plane.engine, topic["topic"] as string, p["partition"] as number);
      if (log instanceof PartitionLog) logs.push(log);
    }
  }
  return new Promise<Struct>((resolve, reject) => {
    const unsubscribes: (() => void)[] = [];
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stopOnClose();
      for (const unsubscribe of unsubscribes) unsubscribe();
      stopAtShutdown();
      try {
        resolve(fetchAnswer(plane, readAll(plane, body).reads));
      } catch (error) {
        reject(error);
      }
    };
    const timer = setTimeout(finish, waitMs);
    const stopOnClose = info.connection.onClose(finish);
    for (const log of logs) unsubscribes.push(log.onData(finish));
    const stopAtShutdown = plane.waitingFetches.add(finish);
  });
}

function listOffset(plane: KafkaPlane, topic: string, p: Struct): Struct {
  const partitionIndex = p["partitionIndex"] as number;
  const timestamp = p["timestamp"] as number;
  const answer: Struct = {
    partitionIndex,
    errorCode: 0,
    timestamp: -1,
    offset: -1,
    leaderEpoch: -1,
  };
  const log = findPartition(plane.engine, topic, partitionIndex);
  if (!(log instanceof PartitionLog)) {
    answer["errorCode"] = log.code;
    return answer;
  }
  if (timestamp === -1) answer["offset"] = log.highWatermark;
  else if (timestamp === -2) answer["offset"] = log.logStartOffset;
  else if (timestamp >= 0) {
    // The first offset whose timestamp is at or after the one asked; none: offset -1.
    const offset = log.offsetForTimestamp(timestamp);
    if (offset !== undefined) {
      answer["offset"] = offset;
      answer["timestamp"] = recordTimestamp(log, offset) ?? timestamp;
    }
  } else answer["errorCode"] = KAFKA_ERRORS.INVALID_REQUEST;
  return answer;
}

/**
 * The timestamp of the record at `offset`, as Kafka answers a ListOffsets by time (the found
 * record's, not the one asked for). Decodes only the batch that holds it; undefined when that
 * batch cannot be read (the caller answers with the asked timestamp then).
 */
function recordTimestamp(log: PartitionLog, offset: number): number | undefined {
  try {
    for (const view of log.read(offset, 1).views) {
      for (const batch of decodeRecordBatches(view)) {
        for (const record of batch.records) if (record.offset === offset) return record.timestamp;
      }
    }
  } catch {
    // A damaged batch: the offset stands, its timestamp is not known.
  }
  return undefined;
}

/** ListOffsets: latest (-1), earliest (-2) or the first offset at or after a timestamp. */
export function listOffsets(plane: KafkaPlane, body: Struct) {
  const topics = body["topics"] as Struct[];
  checkPartitionCount(topics, plane.limits.requestPartitionsMax, "partitions");
  return {
    throttleTimeMs: 0,
    topics: topics.map((topic) => {
      const name = topic["name"] as string;
      return {
        name,
        partitions: (topic["partitions"] as Struct[]).map((p) => listOffset(plane, name, p)),
      };
    }),
  };
}

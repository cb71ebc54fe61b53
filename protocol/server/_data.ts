// The data-plane handlers: Produce (append the request's batches, answer per acks) and Fetch
// (views of stored batches, long-polled until min_bytes or max_wait_ms).

import {
  type BatchLease,
  type AppendResult,
  beginColdViews,
  type Engine,
  endColdViews,
  isSluiceError,
  PartitionLog,
  type ReadResult,
  retainColdView,
  SluiceError,
} from "../../engine/mod.ts";
import {
  assert,
  BATCH_HEADER_BYTES,
  type BatchParts,
  batchBytesOf,
  batchSizeAt,
  type CallbackList,
  joinBatchParts,
} from "../../record/mod.ts";
import { ChunkedFrame } from "../codec/frames.ts";
import {
  blankFetchPartitionResult,
  type FetchPartitionResult,
  type FetchRequestColumns,
  readFetchRequestColumns,
  writeFetchPartition,
  writeFetchTopic,
} from "../codec/fetch.ts";
import {
  type ProducePartitionResult,
  type ProduceRequestIn,
  readProduceRequest,
} from "../codec/produce.ts";
import { PartsReader, type Span } from "../codec/parts_reader.ts";
import { errorToWire, WIRE_ERRORS } from "../codec/errors.ts";
import {
  type CloseListener,
  type HandlerResult,
  PendingAnswer,
  type RequestContext,
} from "./connection.ts";
import {
  answersWithin,
  type ProduceDeadline,
  startProduceDeadline,
  timedOutMessage,
} from "./_produce_deadline.ts";
import type { FetchWaiter, FetchWaits } from "./_fetch_waits.ts";
import { PartitionAnswer, ProduceAnswer, produceResponse, refuse } from "./_produce_answer.ts";

export type DataPlane = {
  engine: Engine;
  fetchWaitMsMax: number;
  /** Caps a fetch's max_bytes and partition_max_bytes, whatever the client asks. */
  fetchBytesMax: number;
  /** Partition entries a Produce or Fetch may hold, over all its topics. */
  requestPartitionsMax: number;
  /** Long polls waiting now, so shutdown can answer them at once. */
  waitingFetches: CallbackList;
  /** The waiting native fetches: their deadlines and the logs they wait on. */
  fetchWaits: FetchWaits;
  log(message: string): void;
  /** Told of every partition a Produce answers with an error (metrics, fencing log lines). */
  partitionError?(topic: string, partition: number, code: number, message: string | null): void;
};

function batchSize(records: Uint8Array, at: number): number {
  if (records.length - at < BATCH_HEADER_BYTES) return -1;
  const size = batchSizeAt(records, at);
  return size >= BATCH_HEADER_BYTES && at + size <= records.length ? size : -1;
}

/**
 * The partitions of one request's topics, looked up once per topic: a request naming many
 * partitions of a missing topic, or partitions past a topic's count, costs one lookup and no
 * Error object each (an Error costs microseconds to build, and requests have 65,536 entries).
 * The first topic's lookup is kept in fields and only further topics go into a Map: most
 * requests name one topic, and a Map and an entry object per request were three of a
 * Produce's and a Fetch's cells each (issue 16).
 */
class PartitionFinder {
  #engine: Engine;
  #firstTopic: string | undefined;
  #firstLogs: readonly PartitionLog[] = NO_LOGS;
  #firstError: unknown;
  #more: Map<string, TopicLookup> | undefined;

  constructor(engine: Engine) {
    this.#engine = engine;
  }

  /** The log, or the wire code and message of why there is none. */
  find(topic: string, partition: number): PartitionLog | { code: number; message: string } {
    if (this.#firstTopic === undefined) {
      this.#firstTopic = topic;
      try {
        this.#firstLogs = this.#engine.partitions(topic);
      } catch (error) {
        this.#firstError = failure(error, topic);
      }
    }
    if (this.#firstTopic === topic)
      return this.#found(topic, partition, this.#firstLogs, this.#firstError);
    this.#more ??= new Map();
    let known = this.#more.get(topic);
    if (known === undefined) {
      known = { logs: NO_LOGS, error: undefined };
      try {
        known.logs = this.#engine.partitions(topic);
      } catch (error) {
        known.error = failure(error, topic);
      }
      this.#more.set(topic, known);
    }
    return this.#found(topic, partition, known.logs, known.error);
  }

  #found(
    topic: string,
    partition: number,
    logs: readonly PartitionLog[],
    error: unknown,
  ): PartitionLog | { code: number; message: string } {
    if (error !== undefined) return errorToWire(error);
    const log = logs[partition];
    if (log === undefined) {
      return {
        code: WIRE_ERRORS.UNKNOWN_PARTITION,
        message: `Topic '${topic}' has no partition ${partition} (it has ${logs.length})`,
      };
    }
    return log;
  }
}

/** A lookup's exception; a thrown undefined is still a failure, never taken for "no error". */
function failure(error: unknown, topic: string): unknown {
  return error ?? new Error(`looking up topic '${topic}' failed`);
}

/** One topic's logs, or why it has none (error set). */
type TopicLookup = { logs: readonly PartitionLog[]; error: unknown };
const NO_LOGS: readonly PartitionLog[] = Object.freeze([]);

type Appended = {
  appends: Promise<AppendResult>[];
  /** Why the batch after the last one in `appends` was refused, and where it was. */
  refusal: { error: unknown; index: number; at: number } | undefined;
};

/**
 * Starts the append of each batch in `records`, in order, until one is refused before being
 * written (the engine validates each batch whole before it writes any of it). With acks=all
 * each append resolves only once fsynced, in the round that writes it (appendDurable).
 */
function appendAll(
  log: PartitionLog,
  records: Uint8Array | BatchParts,
  produce: { acks: number; lease: BatchLease | undefined },
): Appended {
  const { acks, lease } = produce;
  const appends: Promise<AppendResult>[] = [];
  let at = 0;
  try {
    // Records in parts are one whole batch (recordsForAppend).
    if (!(records instanceof Uint8Array)) {
      appends.push(
        acks === -1 ? log.appendDurable(records, lease) : log.appendChecked(records, lease),
      );
      return { appends, refusal: undefined };
    }
    if (records.length === 0) throw new SluiceError("INVALID_BATCH", "Produce without records");
    while (at < records.length) {
      const size = batchSize(records, at);
      if (size === -1) {
        throw new SluiceError("INVALID_BATCH", `Records at byte ${at} are not a whole batch`);
      }
      const batch = records.subarray(at, at + size);
      appends.push(acks === -1 ? log.appendDurable(batch, lease) : log.appendChecked(batch, lease));
      at += size;
    }
  } catch (error) {
    return { appends, refusal: { error, index: appends.length, at } };
  }
  return { appends, refusal: undefined };
}

/**
 * Appends one partition's batches in order. A batch that fails validation stops the rest of
 * that partition's batches; the batches before it stay appended, and the answer says so:
 * base_offset is theirs, accepted_batches (version 2) their number, and the error is the
 * refused batch's, naming its index and position.
 */
function producePartition(
  log: PartitionLog,
  result: ProducePartitionResult,
  span: Span,
  produce: { acks: number; lease: BatchLease | undefined },
): Promise<ProducePartitionResult> {
  const records = recordsForAppend(span);
  if (
    !(records instanceof Uint8Array) ||
    (records.length > 0 && batchSize(records, 0) === records.length)
  ) {
    return produceOneBatch(log, result, records, produce);
  }
  return produceBatches(log, result, records, produce);
}

/**
 * A partition's records as the engine takes them: whole, or the parts of exactly one batch
 * (records that arrived split across received chunks; the engine keeps or copies the parts).
 * Split records holding several batches, or a first part shorter than a batch header, are
 * joined into one copy: the client sends at most one batch per partition per request.
 */
function recordsForAppend(records: Span): Uint8Array | BatchParts {
  if (records instanceof Uint8Array) return records;
  const head = records[0]!;
  const whole = head.length >= BATCH_HEADER_BYTES && batchSizeAt(head, 0) === batchBytesOf(records);
  return whole ? records : joinBatchParts(records);
}

/**
 * The usual partition of a produce request: one whole batch, acknowledged once appended (with
 * acks=all, once fsynced: the same round writes and syncs it). The same answer as
 * produceBatches gives, without its list of appends, its settled outcomes and its async
 * frame: at 10,000 one-batch partitions a second those were about half of what the server
 * allocated per message, and every collection of them pauses the event loop.
 */
function produceOneBatch(
  log: PartitionLog,
  result: ProducePartitionResult,
  batch: Uint8Array | BatchParts,
  produce: { acks: number; lease: BatchLease | undefined },
): Promise<ProducePartitionResult> {
  let appended: Promise<AppendResult>;
  try {
    appended =
      produce.acks === -1
        ? log.appendDurable(batch, produce.lease)
        : log.appendChecked(batch, produce.lease);
  } catch (error) {
    return Promise.resolve(refuse(result, error));
  }
  return appended.then(
    (done) => {
      result.acceptedBatches = 1;
      result.baseOffset = done.baseOffset;
      result.logStartOffset = done.logStartOffset;
      return result;
    },
    (error: unknown) => refuse(result, error),
  );
}

async function produceBatches(
  log: PartitionLog,
  result: ProducePartitionResult,
  records: Uint8Array | BatchParts,
  produce: { acks: number; lease: BatchLease | undefined },
): Promise<ProducePartitionResult> {
  const { appends, refusal } = appendAll(log, records, produce);
  // Settled in order: the accepted batches are those before the first that failed. With
  // acks=all a batch settles once fsynced, so one written but not known durable (its round's
  // sync failed) is not among them.
  const settled = await Promise.allSettled(appends);
  let failure: unknown = refusal?.error;
  let accepted = 0;
  for (const outcome of settled) {
    if (outcome.status === "rejected") {
      failure = outcome.reason;
      break;
    }
    accepted++;
  }
  result.acceptedBatches = accepted;
  const first = settled[0];
  if (accepted > 0 && first?.status === "fulfilled") {
    result.baseOffset = first.value.baseOffset;
    result.logStartOffset = first.value.logStartOffset;
  }
  if (failure !== undefined) {
    const { code, message } = errorToWire(failure);
    result.errorCode = code;
    result.errorMessage =
      refusal !== undefined && failure === refusal.error && refusal.index > 0
        ? `batch ${refusal.index} at byte ${refusal.at}: ${message}; the ${accepted} batches ` +
          "before it were appended"
        : message;
  }
  return result;
}

function startProduce(
  finder: PartitionFinder,
  topic: string,
  p: { partition: number; records: Span },
  produce: { acks: number; lease: BatchLease | undefined },
): Promise<ProducePartitionResult> {
  const result: ProducePartitionResult = {
    partition: p.partition,
    errorCode: 0,
    baseOffset: -1,
    logStartOffset: -1,
    errorMessage: null,
    acceptedBatches: 0,
  };
  const log = finder.find(topic, p.partition);
  if (!(log instanceof PartitionLog)) {
    result.errorCode = log.code;
    result.errorMessage = log.message;
    return Promise.resolve(result);
  }
  return producePartition(log, result, p.records, produce);
}

export function handleProduce(
  plane: DataPlane,
  request: RequestContext,
): Promise<HandlerResult> | PendingAnswer {
  // A large request that arrived split across received chunks is read from their views.
  const produce =
    request.parts === undefined
      ? readProduceRequest(request.reader, plane.requestPartitionsMax)
      : readProduceRequest(
          new PartsReader(request.parts, request.reader.position),
          plane.requestPartitionsMax,
        );
  const finder = new PartitionFinder(plane.engine);
  // Every append starts now, while the request bytes are valid; only the waiting is async.
  // Large batches are lent to the engine (kept as views, not copied) when the bytes allow it.
  const lent = { acks: produce.acks, lease: request.lease };
  if (produce.acks !== -1) return produceAsAppended(plane, request, produce, finder, lent);
  return produceDurable(plane, request, produce, finder, lent);
}

/**
 * acks -1: each topic's partitions answered once durable or at the request's timeout. A
 * function of its own: its closures gave handleProduce a scope per call on every path.
 */
function produceDurable(
  plane: DataPlane,
  request: RequestContext,
  produce: ProduceRequestIn,
  finder: PartitionFinder,
  lent: { acks: number; lease: BatchLease | undefined },
): Promise<HandlerResult> {
  const deadline = startProduceDeadline(produce.timeoutMs);
  const topics = produce.topics.map(({ topic, partitions }) => {
    const pending = partitions.map((p) => startProduce(finder, topic, p, lent));
    const results = durableWithin(plane, { topic, partitions }, pending, deadline);
    // It rejects only on a broken invariant, which finishProduce awaits, perhaps after an
    // earlier topic's appends: marked handled now, so it is not reported as unhandled first.
    results.catch(() => {});
    return { topic, partitions: results };
  });
  return finishProduce(plane, request, produce, topics).finally(() => deadline.cancel());
}

/**
 * acks 0 or 1: each partition answered once appended (_produce_answer.ts). A one-batch
 * partition, the usual one, is appended with the engine telling its answer directly; one of
 * several batches goes through produceBatches as with acks -1.
 */
function produceAsAppended(
  plane: DataPlane,
  request: RequestContext,
  produce: ProduceRequestIn,
  finder: PartitionFinder,
  lent: { acks: number; lease: BatchLease | undefined },
): PendingAnswer {
  const answer = new ProduceAnswer(plane, request, produce);
  for (const { topic, partitions } of produce.topics) {
    const results: ProducePartitionResult[] = [];
    answer.topics.push({ topic, partitions: results });
    for (const p of partitions) {
      const result = new PartitionAnswer(p.partition, answer);
      results.push(result);
      const log = finder.find(topic, p.partition);
      if (!(log instanceof PartitionLog)) {
        result.errorCode = log.code;
        result.errorMessage = log.message;
        answer.partitionDone();
        continue;
      }
      const records = recordsForAppend(p.records);
      if (
        records instanceof Uint8Array &&
        (records.length === 0 || batchSize(records, 0) !== records.length)
      ) {
        answer.partitionSettles(produceBatches(log, result, records, lent));
        continue;
      }
      try {
        log.appendTo(records, lent.lease, result);
      } catch (error) {
        result.refused(error);
      }
    }
  }
  answer.started();
  return answer;
}

/**
 * A topic's acks=all partition answers, each REQUEST_TIMED_OUT if not in once the request's
 * timeout_ms passes (section 5). The append is not withdrawn: a failure that comes after the
 * timed-out answer is logged, since no client hears of it.
 */
function durableWithin(
  plane: DataPlane,
  where: { topic: string; partitions: readonly { partition: number }[] },
  pending: Promise<ProducePartitionResult>[],
  deadline: ProduceDeadline,
): Promise<ProducePartitionResult[]> {
  const { topic, partitions } = where;
  return answersWithin(pending, deadline, {
    timedOut: (index) => ({
      partition: partitions[index]?.partition ?? -1,
      errorCode: WIRE_ERRORS.REQUEST_TIMED_OUT,
      baseOffset: -1,
      logStartOffset: -1,
      errorMessage: timedOutMessage(deadline.timeoutMs),
      acceptedBatches: 0,
    }),
    late: (result) => {
      if (result.errorCode !== 0)
        plane.log(
          `produce to ${topic}-${result.partition} after its timeout: ${result.errorMessage}`,
        );
    },
  });
}

async function finishProduce(
  plane: DataPlane,
  request: RequestContext,
  produce: ProduceRequestIn,
  pending: { topic: string; partitions: Promise<ProducePartitionResult[]> }[],
): Promise<HandlerResult> {
  const topics = [];
  for (const { topic, partitions } of pending) topics.push({ topic, partitions: await partitions });
  return produceResponse(plane, request, produce, topics);
}

/** The records of a partition with nothing to send, shared (frozen: nothing adds to it). */
const NO_RECORDS = Object.freeze([]) as unknown as Uint8Array[];

/** What one read of a fetch's partitions found: its answer, written, and the bytes in it. */
type FetchRead = { frame: ChunkedFrame; bytes: number; errors: boolean };

/**
 * Reads every partition of a fetch once, writing its answer as it goes (grouped by topic as
 * the request is), through one reused result: at 250 partitions a fetch, an object per
 * partition was most of what a fetch allocated. `logs`, when given, gets each partition's log
 * in request order (a fetch that waits keeps them: no second lookup per partition); only a
 * read that found no error, where every partition has its log, is waited on.
 */
function readAll(
  plane: DataPlane,
  request: RequestContext,
  fetch: FetchRequestColumns,
  logs?: PartitionLog[],
): FetchRead {
  const frame = new ChunkedFrame(request.correlationId, fetchResponseFieldBytes(fetch));
  const version = request.apiVersion === 2 ? 2 : 1;
  // Module scratch: readAll runs to its end without calling out to anything that reads again.
  const budget = READ_BUDGET;
  budget.left = fetch.maxBytes;
  budget.taken = 0;
  frame.writer.u16(fetch.topics.length);
  // Cold-read buffers may serve these reads (engine/cold_read.ts): the views taken are
  // counted in readPartition, and given back as the connection's socket takes them. Views of
  // the tail cache are lent the same way (every retained view goes into the frame as it is),
  // so its chunks are reused once the sockets took them.
  beginColdViews({ lendTail: true });
  try {
    readEach(plane, frame, fetch, version, logs);
  } finally {
    endColdViews();
  }
  return { frame, bytes: budget.taken, errors: READ_ERRORS.any };
}

/** readAll's walk over the fetch's partitions (READ_ERRORS.any: one answered an error). */
function readEach(
  plane: DataPlane,
  frame: ChunkedFrame,
  fetch: FetchRequestColumns,
  version: 1 | 2,
  logs: PartitionLog[] | undefined,
): void {
  const finder = new PartitionFinder(plane.engine);
  const budget = READ_BUDGET;
  const result = READ_RESULT;
  const wanted = READ_WANTED;
  READ_ERRORS.any = false;
  for (const entries of fetch.topics) {
    const { topic, partitions } = entries;
    writeFetchTopic(frame, topic, partitions.length);
    for (let i = 0; i < partitions.length; i++) {
      result.partition = partitions[i]!;
      result.errorCode = 0;
      result.highWatermark = -1;
      result.logStartOffset = -1;
      result.records = NO_RECORDS;
      result.resumeOffset = -1;
      const log = finder.find(topic, result.partition);
      if (log instanceof PartitionLog) {
        logs?.push(log);
        wanted.at = entries.fetchOffsets[i]!;
        wanted.bytesMax = entries.partitionMaxBytes[i]!;
        readPartition(plane, log, wanted, result, budget);
      } else {
        result.errorCode = log.code;
      }
      if (result.errorCode !== 0) READ_ERRORS.any = true;
      writeFetchPartition(frame, result, version);
    }
  }
  // Not held past the read: the views go out with the frame.
  result.records = NO_RECORDS;
}

const READ_ERRORS = { any: false };

/** readAll's scratch, refilled for each partition (see readAll). */
const READ_BUDGET = { left: 0, taken: 0 };
const READ_RESULT: FetchPartitionResult = blankFetchPartitionResult();
/** Where and how much to read of the partition at hand (read before readPartition returns). */
const READ_WANTED = { at: 0, bytesMax: 0 };

/**
 * One partition's part of a fetch, within what is left of max_bytes. A read that meets
 * damaged data fails with CORRUPT_BATCH, and the engine names the offset where valid batches
 * start again: version 2 hands it to the client as resume_offset.
 */
function readPartition(
  plane: DataPlane,
  log: PartitionLog,
  p: { at: number; bytesMax: number },
  result: FetchPartitionResult,
  budget: { left: number; taken: number },
): void {
  try {
    result.highWatermark = log.highWatermark;
    result.logStartOffset = log.logStartOffset;
    // A tailing reader asks mostly for what is not there yet: nothing to read (the same answer
    // the log's read gives there, without building it).
    if (log.readsNothingAt(p.at)) return;
    const limit = Math.max(1, Math.min(p.bytesMax, budget.left));
    if (budget.left > 0 || budget.taken === 0) {
      const read: ReadResult = log.read(p.at, limit);
      // Only the first non-empty partition may go past max_bytes (one whole batch).
      if (budget.taken === 0 || read.sizeBytes <= budget.left) {
        for (const view of read.views) retainColdView(view);
        result.records = read.views;
        budget.taken += read.sizeBytes;
        budget.left -= read.sizeBytes;
      }
    }
  } catch (error) {
    const wire = errorToWire(error);
    result.errorCode = wire.code;
    const resumeAt = isSluiceError(error, "CORRUPT_BATCH")
      ? error.details["nextValidOffset"]
      : undefined;
    if (typeof resumeAt === "number") result.resumeOffset = resumeAt;
    if (wire.code === WIRE_ERRORS.UNKNOWN_SERVER_ERROR)
      plane.log(`fetch ${log.name}: ${String(error)}`);
  }
}

/** The bytes of a fetch's answer without its records: the size its writer starts at. */
function fetchResponseFieldBytes(fetch: FetchRequestColumns): number {
  // Size prefix, correlation id, error code, topic count; per partition the v2 fields.
  let bytes = 4 + 4 + 2 + 2;
  for (const { topic, partitions } of fetch.topics) {
    bytes += 2 + topic.length * 3 + 2 + partitions.length * (4 + 2 + 8 + 8 + 8 + 4);
  }
  return bytes;
}

export function handleFetch(
  plane: DataPlane,
  request: RequestContext,
): HandlerResult | PendingAnswer | Promise<HandlerResult> {
  const fetch = readFetchRequestColumns(request.reader, plane.requestPartitionsMax);
  // max_bytes comes from the client: bounded here, so a read never allocates more than this.
  fetch.maxBytes = Math.min(fetch.maxBytes, plane.fetchBytesMax);
  for (const { partitionMaxBytes } of fetch.topics) {
    for (let i = 0; i < partitionMaxBytes.length; i++) {
      partitionMaxBytes[i] = Math.min(partitionMaxBytes[i]!, plane.fetchBytesMax);
    }
  }
  const waitMs = Math.min(fetch.maxWaitMs, plane.fetchWaitMsMax);
  if (waitMs > 0 && fetch.minBytes > 0) {
    const tail = logsAtTail(plane, fetch);
    if (tail !== undefined) return new LongPoll(plane, request, fetch, { waitMs, logs: tail });
  }
  // Bytes to be read from the disk are read on the thread pool first (a catch-up consumer of
  // segments not in the page cache): the event loop serves other connections meanwhile.
  const cold = coldReads(plane, fetch);
  if (cold !== undefined) return cold.then(() => readAll(plane, request, fetch).frame.finish());
  const logs: PartitionLog[] = [];
  const first = readAll(plane, request, fetch, logs);
  if (first.bytes >= fetch.minBytes || first.errors || waitMs === 0) return first.frame.finish();
  return new LongPoll(plane, request, fetch, { waitMs, logs });
}

/**
 * Reads on the thread pool of the partitions whose bytes are not in memory (cold_read.ts,
 * PartitionLog.prepareRead), within the fetch's max_bytes; settles when all are done (never
 * rejects: a failed one leaves the read to the mapping, which reports it). Undefined when
 * every partition may be read at once, the usual case.
 */
function coldReads(plane: DataPlane, fetch: FetchRequestColumns): Promise<unknown> | undefined {
  let waits: Promise<void>[] | undefined;
  let left = fetch.maxBytes;
  const finder = new PartitionFinder(plane.engine);
  for (const { topic, partitions, fetchOffsets, partitionMaxBytes } of fetch.topics) {
    for (let i = 0; i < partitions.length && left > 0; i++) {
      const log = finder.find(topic, partitions[i]!);
      if (!(log instanceof PartitionLog)) continue;
      const bytes = Math.min(partitionMaxBytes[i]!, left);
      if (bytes < 1) continue;
      const wait = log.prepareRead(fetchOffsets[i]!, bytes);
      if (wait === undefined) continue;
      left -= bytes;
      waits ??= [];
      waits.push(wait);
    }
  }
  return waits === undefined ? undefined : Promise.all(waits);
}

/**
 * The fetch's logs, in request order, when a read of every partition would find nothing and
 * no error (each at its high watermark: readsNothingAt); else undefined. A tailing consumer's
 * fetch is mostly that, and it waits: its first read built a response of one entry per
 * partition (250 each for 4 consumers of 1,000 partitions) only to drop it.
 */
function logsAtTail(plane: DataPlane, fetch: FetchRequestColumns): PartitionLog[] | undefined {
  const finder = new PartitionFinder(plane.engine);
  const logs: PartitionLog[] = [];
  for (const { topic, partitions, fetchOffsets } of fetch.topics) {
    for (let i = 0; i < partitions.length; i++) {
      const log = finder.find(topic, partitions[i]!);
      if (!(log instanceof PartitionLog) || !log.readsNothingAt(fetchOffsets[i]!)) return undefined;
      logs.push(log);
    }
  }
  return logs;
}

/**
 * A fetch waiting for new data on any of its partitions, or for its wait to end
 * (_fetch_waits.ts keeps the waiting ones: no timer or data listener of its own).
 */
class LongPoll extends PendingAnswer implements FetchWaiter, CloseListener {
  readonly logs: PartitionLog[];
  readonly deadlineMs: number;
  heapIndex = -1;
  woken = false;
  moreAt: number[] | undefined = undefined;
  closeIndex = -1;
  #plane: DataPlane;
  #request: RequestContext;
  #fetch: FetchRequestColumns;
  #settled = false;

  constructor(
    plane: DataPlane,
    request: RequestContext,
    fetch: FetchRequestColumns,
    wait: { waitMs: number; logs: PartitionLog[] },
  ) {
    super();
    assert(wait.logs.length === entryCount(fetch), "a waiting fetch has a log for each partition");
    this.#plane = plane;
    this.#request = request;
    this.#fetch = fetch;
    this.deadlineMs = performance.now() + wait.waitMs;
    this.logs = wait.logs;
    request.connection.whenClosed(this);
    plane.fetchWaits.add(this);
  }

  onData(): void {
    // With min_bytes <= 1 any new data answers the poll without reading it twice.
    if (this.#request.connection.closed || this.#fetch.minBytes <= 1) {
      this.#finish();
      return;
    }
    try {
      const read = readAll(this.#plane, this.#request, this.#fetch);
      if (read.bytes >= this.#fetch.minBytes) this.#finish();
    } catch (error) {
      this.#finish(error);
    }
  }

  onTimeUp(): void {
    this.#finish();
  }

  /** The client is gone: the wait ends (its answer is dropped with the connection). */
  connectionClosed(): void {
    this.#finish();
  }

  /**
   * Stops waiting and answers with a fresh read. A failure (only ever a broken invariant)
   * fails the answer, so it reaches the connection rather than the timer or the engine
   * calling back.
   */
  #finish(failure?: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#request.connection.offClose(this);
    this.#plane.fetchWaits.remove(this);
    if (failure !== undefined) {
      this.fail(failure);
      return;
    }
    let result: HandlerResult;
    try {
      result = readAll(this.#plane, this.#request, this.#fetch).frame.finish();
    } catch (error) {
      this.fail(error);
      return;
    }
    this.answer(result);
  }
}

function entryCount(fetch: FetchRequestColumns): number {
  let entries = 0;
  for (const topic of fetch.topics) entries += topic.partitions.length;
  return entries;
}

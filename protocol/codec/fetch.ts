// Fetch (api_key 5), PROTOCOL.md section 6. Versions 1 and 2 share the request; version 2's
// response adds resume_offset to each partition:
//
//   FetchRequest  = max_wait_ms:u32 min_bytes:u32 max_bytes:u32
//                   topics:[ topic:string
//                            partitions:[ partition:u32 fetch_offset:i64
//                                         partition_max_bytes:u32 ] ]
//   FetchResponse = topics:[ topic:string
//   (v1)                     partitions:[ partition:u32 error_code:i16 high_watermark:i64
//                                         log_start_offset:i64 records:bytes32 ] ]
//   FetchResponse = topics:[ topic:string
//   (v2)                     partitions:[ partition:u32 error_code:i16 high_watermark:i64
//                                         log_start_offset:i64 resume_offset:i64
//                                         records:bytes32 ] ]
//
// The server writes a response's records as the engine's views, chunk by chunk (ChunkedFrame).
// The response is read from the views the frame arrived in (ChunkReader), or from one view:
// records come out as views either way, never copied.

import { ChunkReader } from "./chunk_reader.ts";
import { tooManyPartitions } from "./produce.ts";
import type { ChunkedFrame } from "./frames.ts";
import type { Reader, Writer } from "./wire.ts";

export type FetchRequest = {
  maxWaitMs: number;
  minBytes: number;
  maxBytes: number;
  topics: {
    topic: string;
    partitions: { partition: number; fetchOffset: number; partitionMaxBytes: number }[];
  }[];
};

export type FetchPartitionResult = {
  partition: number;
  errorCode: number;
  highWatermark: number;
  logStartOffset: number;
  /**
   * Views of whole batches (when the server writes it), or views of the received bytes the
   * records lie in, one per chunk they span (when a client reads it).
   */
  records: Uint8Array[];
  /**
   * With CORRUPT_BATCH, the first offset past the damage where reading may resume; -1 when
   * none is known, and with every other error code. Sent from version 2 on.
   */
  resumeOffset?: number;
};

/**
 * A partition result with nothing in it, to be filled in place: readers and writers of fetch
 * answers reuse one per answer instead of making one per partition.
 */
export function blankFetchPartitionResult(): FetchPartitionResult {
  return {
    partition: 0,
    errorCode: 0,
    highWatermark: -1,
    logStartOffset: -1,
    records: NO_RECORDS,
    resumeOffset: -1,
  };
}

export type FetchResponse = { topics: { topic: string; partitions: FetchPartitionResult[] }[] };

const TOPIC_BYTES_MIN = 4;
const PARTITION_BYTES_MIN = 16;
const RESULT_BYTES_MIN = 26;
const RESULT_V2_BYTES_MIN = 34;

export const FETCH_VERSION_MAX = 2;

/**
 * The records of a partition result with none, as ChunkReader.views(0) gives them (one empty
 * view): shared by every such result, so frozen (nothing may add to it).
 */
const NO_RECORDS = Object.freeze([new Uint8Array(0)]) as unknown as Uint8Array[];

export function writeFetchRequest(writer: Writer, request: FetchRequest): void {
  writer.u32(request.maxWaitMs).u32(request.minBytes).u32(request.maxBytes);
  writer.u16(request.topics.length);
  for (const topic of request.topics) {
    writer.string(topic.topic).u16(topic.partitions.length);
    for (const p of topic.partitions) {
      writer.u32(p.partition).i64(p.fetchOffset).u32(p.partitionMaxBytes);
    }
  }
}

/**
 * Reads a Fetch request (either version). `partitionsMax` bounds the partition entries over
 * all topics, checked from each count before its entries are read.
 */
export function readFetchRequest(
  reader: Reader,
  partitionsMax = Number.POSITIVE_INFINITY,
): FetchRequest {
  // One grammar: the columns the server reads, turned into an object per entry.
  const { maxWaitMs, minBytes, maxBytes, topics } = readFetchRequestColumns(reader, partitionsMax);
  return {
    maxWaitMs,
    minBytes,
    maxBytes,
    topics: topics.map((t) => ({
      topic: t.topic,
      partitions: Array.from(t.partitions, (partition, p) => ({
        partition,
        fetchOffset: t.fetchOffsets[p]!,
        partitionMaxBytes: t.partitionMaxBytes[p]!,
      })),
    })),
  };
}

/**
 * A Fetch request as the server reads it: each topic's partition entries in columns (typed
 * arrays) rather than an object per entry. A consumer's fetch names every partition it owns
 * (250 each for 4 consumers of 1,000 partitions) and the broker reads one per batch it serves.
 */
export type FetchRequestColumns = {
  maxWaitMs: number;
  minBytes: number;
  maxBytes: number;
  topics: {
    topic: string;
    partitions: Uint32Array;
    fetchOffsets: Float64Array;
    partitionMaxBytes: Uint32Array;
  }[];
};

/** readFetchRequest's grammar and checks, read into columns (FetchRequestColumns). */
export function readFetchRequestColumns(
  reader: Reader,
  partitionsMax = Number.POSITIVE_INFINITY,
): FetchRequestColumns {
  const maxWaitMs = reader.u32("max_wait_ms");
  const minBytes = reader.u32("min_bytes");
  const maxBytes = reader.u32("max_bytes");
  const topicCount = reader.count("topics", TOPIC_BYTES_MIN);
  const topics: FetchRequestColumns["topics"] = [];
  let entries = 0;
  for (let t = 0; t < topicCount; t++) {
    const topic = reader.string("topic");
    // Bounded before anything is allocated: by the bytes left (count) and by partitionsMax.
    const count = reader.count("partitions", PARTITION_BYTES_MIN);
    entries += count;
    if (entries > partitionsMax) throw tooManyPartitions(partitionsMax);
    const partitions = new Uint32Array(count);
    const fetchOffsets = new Float64Array(count);
    const partitionMaxBytes = new Uint32Array(count);
    for (let p = 0; p < count; p++) {
      partitions[p] = reader.u32("partition");
      fetchOffsets[p] = reader.i64("fetch_offset");
      partitionMaxBytes[p] = reader.u32("partition_max_bytes");
    }
    topics.push({ topic, partitions, fetchOffsets, partitionMaxBytes });
  }
  reader.expectEnd("FetchRequest");
  return { maxWaitMs, minBytes, maxBytes, topics };
}

/** Writes a fetch response body into a chunked frame; record views are attached, not copied. */
export function writeFetchResponse(
  frame: ChunkedFrame,
  response: FetchResponse,
  version: 1 | 2 = 1,
): void {
  frame.writer.u16(response.topics.length);
  for (const topic of response.topics) {
    writeFetchTopic(frame, topic.topic, topic.partitions.length);
    for (const result of topic.partitions) writeFetchPartition(frame, result, version);
  }
}

/**
 * A fetch response written entry by entry, as writeFetchResponse writes a whole one: after
 * the topic count (u16), each topic's name and partition count, then that many partitions.
 * The server answers a fetch this way from one reused result, with no object per partition.
 */
export function writeFetchTopic(frame: ChunkedFrame, topic: string, partitionCount: number): void {
  frame.writer.string(topic).u16(partitionCount);
}

/** One partition of a fetch response (see writeFetchTopic); `result` is read before it returns. */
export function writeFetchPartition(
  frame: ChunkedFrame,
  result: FetchPartitionResult,
  version: 1 | 2,
): void {
  let size = 0;
  for (const view of result.records) size += view.length;
  frame.writer.u32(result.partition).i16(result.errorCode);
  frame.writer.i64(result.highWatermark).i64(result.logStartOffset);
  if (version === 2) frame.writer.i64(result.resumeOffset ?? -1);
  frame.writer.u32(size);
  for (const view of result.records) frame.attach(view);
}

/**
 * What visitFetchResponse calls: `topic` at each topic's header, then `partition` for each of
 * its partitions, with one result object reused for all of them (read it before returning).
 */
export type FetchResponseVisitor = {
  topic(topic: string, partitionCount: number): void;
  partition(result: Readonly<FetchPartitionResult>): void;
};

/**
 * Reads a fetch response body (after the response header) entry by entry: one view, or the
 * views of the chunks it arrived in, in order. Each partition's records stay views of those
 * bytes. No object is made per partition: a consumer's fetch answers name every partition it
 * asked for (250 each for 4 consumers of 1,000 partitions), most of them with nothing.
 */
export function visitFetchResponse(
  body: Uint8Array | readonly Uint8Array[],
  visitor: FetchResponseVisitor,
  version: 1 | 2 = 1,
): void {
  const reader = new ChunkReader(body instanceof Uint8Array ? [body] : body);
  const resultBytes = version === 2 ? RESULT_V2_BYTES_MIN : RESULT_BYTES_MIN;
  const topicCount = reader.count("topics", TOPIC_BYTES_MIN);
  const result = blankFetchPartitionResult();
  for (let t = 0; t < topicCount; t++) {
    const topic = reader.string("topic");
    const count = reader.count("partitions", resultBytes);
    visitor.topic(topic, count);
    for (let p = 0; p < count; p++) {
      // Fields read in place: a Reader per partition result was most of what reading cost.
      result.partition = reader.u32("partition");
      result.errorCode = reader.i16("error_code");
      result.highWatermark = reader.i64("high_watermark");
      result.logStartOffset = reader.i64("log_start_offset");
      result.resumeOffset = version === 2 ? reader.i64("resume_offset") : -1;
      const size = reader.u32("records length");
      // Most partitions of a tailing consumer's answer have nothing: one shared empty list.
      result.records = size === 0 ? NO_RECORDS : reader.views(size, "records");
      visitor.partition(result);
    }
  }
  reader.expectEnd("FetchResponse");
}

/**
 * Reads a fetch response body (after the response header) into one object per topic and
 * partition (visitFetchResponse reads it without them). Each partition's records stay views.
 */
export function readFetchResponse(
  body: Uint8Array | readonly Uint8Array[],
  version: 1 | 2 = 1,
): FetchResponse {
  const topics: FetchResponse["topics"] = [];
  visitFetchResponse(
    body,
    {
      topic: (topic) => {
        topics.push({ topic, partitions: [] });
      },
      partition: (read) => {
        const { partition, errorCode, highWatermark, logStartOffset, records } = read;
        const result: FetchPartitionResult = {
          partition,
          errorCode,
          highWatermark,
          logStartOffset,
          records,
        };
        if (version === 2) result.resumeOffset = read.resumeOffset ?? -1;
        topics.at(-1)!.partitions.push(result);
      },
    },
    version,
  );
  return { topics };
}

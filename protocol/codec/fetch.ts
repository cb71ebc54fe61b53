// Fetch v1 (api_key 5), PROTOCOL.md section 6:
//
//   FetchRequest  = max_wait_ms:u32 min_bytes:u32 max_bytes:u32
//                   topics:[ topic:string
//                            partitions:[ partition:u32 fetch_offset:i64
//                                         partition_max_bytes:u32 ] ]
//   FetchResponse = topics:[ topic:string
//                            partitions:[ partition:u32 error_code:i16 high_watermark:i64
//                                         log_start_offset:i64 records:bytes32 ] ]
//
// The server writes a response's records as the engine's views, chunk by chunk (ChunkedFrame).
// The response is read from the views the frame arrived in (ChunkReader), or from one view:
// records come out as views either way, never copied.

import { ChunkReader } from "./chunk_reader.ts";
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
};

export type FetchResponse = { topics: { topic: string; partitions: FetchPartitionResult[] }[] };

const TOPIC_BYTES_MIN = 4;
const PARTITION_BYTES_MIN = 16;
const RESULT_BYTES_MIN = 26;

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

export function readFetchRequest(reader: Reader): FetchRequest {
  const maxWaitMs = reader.u32("max_wait_ms");
  const minBytes = reader.u32("min_bytes");
  const maxBytes = reader.u32("max_bytes");
  const topicCount = reader.count("topics", TOPIC_BYTES_MIN);
  const topics: FetchRequest["topics"] = [];
  for (let t = 0; t < topicCount; t++) {
    const topic = reader.string("topic");
    const count = reader.count("partitions", PARTITION_BYTES_MIN);
    const partitions: FetchRequest["topics"][number]["partitions"] = [];
    for (let p = 0; p < count; p++) {
      partitions.push({
        partition: reader.u32("partition"),
        fetchOffset: reader.i64("fetch_offset"),
        partitionMaxBytes: reader.u32("partition_max_bytes"),
      });
    }
    topics.push({ topic, partitions });
  }
  reader.expectEnd("FetchRequest");
  return { maxWaitMs, minBytes, maxBytes, topics };
}

/** Writes a fetch response body into a chunked frame; record views are attached, not copied. */
export function writeFetchResponse(frame: ChunkedFrame, response: FetchResponse): void {
  frame.writer.u16(response.topics.length);
  for (const topic of response.topics) {
    frame.writer.string(topic.topic).u16(topic.partitions.length);
    for (const result of topic.partitions) {
      let size = 0;
      for (const view of result.records) size += view.length;
      frame.writer.u32(result.partition).i16(result.errorCode);
      frame.writer.i64(result.highWatermark).i64(result.logStartOffset).u32(size);
      for (const view of result.records) frame.attach(view);
    }
  }
}

/**
 * Reads a fetch response body (after the response header): one view, or the views of the
 * chunks it arrived in, in order. Each partition's records stay views of those bytes.
 */
export function readFetchResponse(body: Uint8Array | readonly Uint8Array[]): FetchResponse {
  const reader = new ChunkReader(body instanceof Uint8Array ? [body] : body);
  const topicCount = reader.count("topics", TOPIC_BYTES_MIN);
  const topics: FetchResponse["topics"] = [];
  for (let t = 0; t < topicCount; t++) {
    const topic = reader.string("topic");
    const count = reader.count("partitions", RESULT_BYTES_MIN);
    const partitions: FetchPartitionResult[] = [];
    for (let p = 0; p < count; p++) {
      const fields = reader.reader(RESULT_BYTES_MIN, "partition result");
      partitions.push({
        partition: fields.u32("partition"),
        errorCode: fields.i16("error_code"),
        highWatermark: fields.i64("high_watermark"),
        logStartOffset: fields.i64("log_start_offset"),
        records: reader.views(fields.u32("records length"), "records"),
      });
    }
    topics.push({ topic, partitions });
  }
  reader.expectEnd("FetchResponse");
  return { topics };
}

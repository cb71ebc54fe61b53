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

import type { Reader, Writer } from "./wire.ts";
import type { ChunkedFrame } from "./frames.ts";

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
  /** Views of whole batches (server side), or one view of the response frame (client side). */
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

export function readFetchResponse(reader: Reader): FetchResponse {
  const topicCount = reader.count("topics", TOPIC_BYTES_MIN);
  const topics: FetchResponse["topics"] = [];
  for (let t = 0; t < topicCount; t++) {
    const topic = reader.string("topic");
    const count = reader.count("partitions", RESULT_BYTES_MIN);
    const partitions: FetchPartitionResult[] = [];
    for (let p = 0; p < count; p++) {
      partitions.push({
        partition: reader.u32("partition"),
        errorCode: reader.i16("error_code"),
        highWatermark: reader.i64("high_watermark"),
        logStartOffset: reader.i64("log_start_offset"),
        records: [reader.bytes32("records")],
      });
    }
    topics.push({ topic, partitions });
  }
  reader.expectEnd("FetchResponse");
  return { topics };
}

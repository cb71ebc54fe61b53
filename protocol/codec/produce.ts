// Produce (api_key 4), PROTOCOL.md section 5. Versions 1 and 2 share the request; version 2's
// response adds accepted_batches to each partition:
//
//   ProduceRequest    = acks:i8 timeout_ms:u32
//                       topics:[ topic:string partitions:[ partition:u32 records:bytes32 ] ]
//   ProduceResponse   = topics:[ topic:string
//   (v1)                         partitions:[ partition:u32 error_code:i16 base_offset:i64
//                                             log_start_offset:i64
//                                             error_message:nullable_string ] ]
//   ProduceResponse   = topics:[ topic:string
//   (v2)                         partitions:[ partition:u32 error_code:i16 base_offset:i64
//                                             log_start_offset:i64
//                                             error_message:nullable_string
//                                             accepted_batches:u32 ] ]
//
// `records` are views into the request frame: the server appends them without a copy of its
// own (the engine copies small batches once into its write buffer and keeps large ones as
// views). Read from a frame kept in parts (PartsReader), a partition's records are the views of
// the parts they span.

import { ProtocolError } from "./errors.ts";
import type { PartsReader, Span } from "./parts_reader.ts";
import type { Reader, Writer } from "./wire.ts";

export type Acks = -1 | 0 | 1;

export type ProduceRequest = {
  acks: Acks;
  timeoutMs: number;
  topics: { topic: string; partitions: { partition: number; records: Uint8Array }[] }[];
};

/** A Produce request as the server reads it: records may be the views of several parts. */
export type ProduceRequestIn = {
  acks: Acks;
  timeoutMs: number;
  topics: { topic: string; partitions: { partition: number; records: Span }[] }[];
};

export type ProducePartitionResult = {
  partition: number;
  errorCode: number;
  baseOffset: number;
  logStartOffset: number;
  errorMessage: string | null;
  /**
   * How many of the partition's batches, from the first, were appended (or found to be
   * duplicates already in the log). Sent from version 2 on; a version 1 reader leaves it out.
   */
  acceptedBatches?: number;
};

export type ProduceResponse = {
  topics: { topic: string; partitions: ProducePartitionResult[] }[];
};

/** Fewest bytes of one topic entry (empty name, empty list) and one partition entry. */
const TOPIC_BYTES_MIN = 4;
const PARTITION_BYTES_MIN = 8;
const RESULT_BYTES_MIN = 24;
const RESULT_V2_BYTES_MIN = 28;

export const PRODUCE_VERSION_MAX = 2;

export function writeProduceRequest(writer: Writer, request: ProduceRequest): void {
  writer.i8(request.acks).u32(request.timeoutMs).u16(request.topics.length);
  for (const topic of request.topics) {
    writer.string(topic.topic).u16(topic.partitions.length);
    for (const { partition, records } of topic.partitions) {
      writer.u32(partition).u32(records.length).raw(records);
    }
  }
}

/**
 * Reads a Produce request (either version). `partitionsMax` bounds the partition entries over
 * all topics, checked from each count before its entries are read.
 */
export function readProduceRequest(reader: Reader, partitionsMax?: number): ProduceRequest;
export function readProduceRequest(reader: PartsReader, partitionsMax?: number): ProduceRequestIn;
export function readProduceRequest(
  reader: Reader | PartsReader,
  partitionsMax = Number.POSITIVE_INFINITY,
): ProduceRequestIn {
  const acks = reader.i8("acks");
  if (acks !== -1 && acks !== 0 && acks !== 1) {
    throw ProtocolError.invalid(`acks ${acks} must be -1, 0 or 1`);
  }
  const timeoutMs = reader.u32("timeout_ms");
  const topicCount = reader.count("topics", TOPIC_BYTES_MIN);
  const topics: ProduceRequestIn["topics"] = [];
  let entries = 0;
  for (let t = 0; t < topicCount; t++) {
    const topic = reader.string("topic");
    const partitionCount = reader.count("partitions", PARTITION_BYTES_MIN);
    entries += partitionCount;
    if (entries > partitionsMax) throw tooManyPartitions(partitionsMax);
    const partitions: ProduceRequestIn["topics"][number]["partitions"] = [];
    for (let p = 0; p < partitionCount; p++) {
      partitions.push({ partition: reader.u32("partition"), records: reader.bytes32("records") });
    }
    topics.push({ topic, partitions });
  }
  reader.expectEnd("ProduceRequest");
  return { acks, timeoutMs, topics };
}

export function tooManyPartitions(partitionsMax: number): ProtocolError {
  return ProtocolError.invalid(
    `request has more than ${partitionsMax} partition entries (requestPartitionsMax)`,
  );
}

export function writeProduceResponse(
  writer: Writer,
  response: ProduceResponse,
  version: 1 | 2 = 1,
): void {
  writer.u16(response.topics.length);
  for (const topic of response.topics) {
    writer.string(topic.topic).u16(topic.partitions.length);
    for (const result of topic.partitions) {
      writer.u32(result.partition).i16(result.errorCode);
      writer.i64(result.baseOffset).i64(result.logStartOffset);
      writer.nullableString(result.errorMessage);
      if (version === 2) writer.u32(result.acceptedBatches ?? 0);
    }
  }
}

/**
 * Told a Produce response's results in wire order, without an object per topic or partition:
 * the client's sender places each result on its partition's queue as it is read.
 */
export interface ProduceResultVisitor {
  /** The results that follow are `topic`'s. */
  topic(topic: string): void;
  /**
   * One partition's result, in an object the reader fills anew for each partition: read what
   * is needed before returning, keep no reference. `acceptedBatches` is set by version 2 only.
   */
  partition(result: Readonly<ProducePartitionResult>): void;
}

/** The result visitProduceResponse fills for each partition (it is synchronous, never nested). */
const scratchResult: ProducePartitionResult = {
  partition: 0,
  errorCode: 0,
  baseOffset: 0,
  logStartOffset: 0,
  errorMessage: null,
  acceptedBatches: undefined,
};

export function visitProduceResponse(
  reader: Reader,
  version: 1 | 2,
  visitor: ProduceResultVisitor,
): void {
  const topicCount = reader.count("topics", TOPIC_BYTES_MIN);
  const result = scratchResult;
  for (let t = 0; t < topicCount; t++) {
    visitor.topic(reader.string("topic"));
    const count = reader.count(
      "partitions",
      version === 2 ? RESULT_V2_BYTES_MIN : RESULT_BYTES_MIN,
    );
    for (let p = 0; p < count; p++) {
      result.partition = reader.u32("partition");
      result.errorCode = reader.i16("error_code");
      result.baseOffset = reader.i64("base_offset");
      result.logStartOffset = reader.i64("log_start_offset");
      result.errorMessage = reader.nullableString("error_message");
      result.acceptedBatches = version === 2 ? reader.u32("accepted_batches") : undefined;
      visitor.partition(result);
    }
  }
  reader.expectEnd("ProduceResponse");
}

/** Builds the response as objects, through visitProduceResponse (one grammar). */
class ResponseBuilder implements ProduceResultVisitor {
  readonly topics: ProduceResponse["topics"] = [];
  #partitions: ProducePartitionResult[] = [];

  topic(topic: string): void {
    this.#partitions = [];
    this.topics.push({ topic, partitions: this.#partitions });
  }

  partition(result: Readonly<ProducePartitionResult>): void {
    const copy: ProducePartitionResult = {
      partition: result.partition,
      errorCode: result.errorCode,
      baseOffset: result.baseOffset,
      logStartOffset: result.logStartOffset,
      errorMessage: result.errorMessage,
    };
    // A version 1 reader leaves the field out, as the type says.
    if (result.acceptedBatches !== undefined) copy.acceptedBatches = result.acceptedBatches;
    this.#partitions.push(copy);
  }
}

export function readProduceResponse(reader: Reader, version: 1 | 2 = 1): ProduceResponse {
  const builder = new ResponseBuilder();
  visitProduceResponse(reader, version, builder);
  return { topics: builder.topics };
}

// QueueFetch v1 (api_key 19), PROTOCOL.md section 7a:
//
//   QueueFetchRequest  = max_wait_ms:u32 max_records:u32 max_bytes:u32
//                        queue:string member_id:string
//                        acks:[ partition:u32
//                               ranges:[ first_offset:i64 last_offset:i64 type:u8 ] ]
//   QueueFetchResponse = error_code:i16 error_message:nullable_string lock_ms:u32
//                        acks:[ partition:u32 error_code:i16 error_message:nullable_string ]
//                        partitions:[ partition:u32 error_code:i16
//                                     acquired:[[ first_offset:i64 last_offset:i64
//                                                 delivery_count:u16 ]]
//                                     records:bytes32 ]
//
// QueueFetch v2: the same request; the answer goes out without waiting for the piggy-backed
// acks' durability, and says where the member's acks stand instead (after `acks`):
//
//   QueueFetchResponse v2 = error_code:i16 error_message:nullable_string lock_ms:u32
//                           acks:[ partition:u32 error_code:i16 error_message:nullable_string ]
//                           ack_seq:i64 acks_durable_through:i64
//                           ack_failures:[ ack_seq:i64 partition:u32 error_code:i16
//                                          error_message:nullable_string ]
//                           partitions:[ ... as v1 ... ]
//
//   [[T]] is a u32 count followed by the items (a partition may hold more than 65,535 runs).
//
// Shaped like Kafka's ShareFetch: piggy-backed acks (checked as QueueAck's, queue_ack.ts), and
// per partition the acquired ranges beside whole record batches. The batches go out as the
// engine's views (ChunkedFrame) and come back as views of the received chunks (ChunkReader):
// never copied. A batch may hold records the member did not acquire; `acquired` says which
// records are its own.

import { ChunkReader } from "./chunk_reader.ts";
import { ProtocolError } from "./errors.ts";
import type { ChunkedFrame } from "./frames.ts";
import {
  type AckFailure,
  type AckPartition,
  type AckPartitionResult,
  type AckSeqState,
  readAckPartitions,
  MEMBER_ID_BYTES_MAX,
  writeAckPartitions,
  writeAckResults,
  writeAckSeqState,
} from "./queue_ack.ts";
import type { Reader, Writer } from "./wire.ts";

/** Records one QueueFetch acquires at most (the engine's FETCH_RECORDS_MAX). */
export const QUEUE_FETCH_RECORDS_MAX = 100_000;

export type QueueFetchRequest = {
  maxWaitMs: number;
  maxRecords: number;
  maxBytes: number;
  queue: string;
  memberId: string;
  /** Acks applied before the fetch; their results come back in the response's `acks`. */
  acks: AckPartition[];
};

export type AcquiredRange = { first: number; last: number; deliveryCount: number };

export type QueueFetchPartition = {
  partition: number;
  errorCode: number;
  acquired: AcquiredRange[];
  /** Views of whole batches (server side), or of the received chunks they lie in (client). */
  records: Uint8Array[];
};

export type QueueFetchResponse = {
  /** The fetch's outcome (UNKNOWN_QUEUE, UNKNOWN_MEMBER_ID, ...); the acks have their own. */
  errorCode: number;
  errorMessage: string | null;
  lockMs: number;
  acks: AckPartitionResult[];
  partitions: QueueFetchPartition[];
  /**
   * Version 2 only: the sequence the server gave this request's acks (0: it carried none),
   * and where the member's sequenced acks stand. Absent in a version 1 answer.
   */
  ackSeq?: AckSeqTag;
};

export type AckSeqTag = AckSeqState & { ackSeq: number };

const RANGE_BYTES = 18;
/** partition, error_code, acquired count, records length. */
const PARTITION_FIXED_BYTES = 14;
const ACK_RESULT_FIXED_BYTES = 8;
/** ack_seq, partition, error_code, error_message length. */
const ACK_FAILURE_FIXED_BYTES = 16;
const utf8 = new TextDecoder("utf-8", { fatal: true });

export function writeQueueFetchRequest(writer: Writer, request: QueueFetchRequest): void {
  writer.u32(request.maxWaitMs).u32(request.maxRecords).u32(request.maxBytes);
  writer.string(request.queue).string(request.memberId);
  writeAckPartitions(writer, request.acks);
}

export function readQueueFetchRequest(reader: Reader): QueueFetchRequest {
  const maxWaitMs = reader.u32("max_wait_ms");
  const maxRecords = reader.u32("max_records");
  const maxBytes = reader.u32("max_bytes");
  const queue = reader.string("queue");
  const memberId = reader.string("member_id", MEMBER_ID_BYTES_MAX);
  const acks = readAckPartitions(reader);
  reader.expectEnd("QueueFetchRequest");
  if (maxRecords < 1 || maxRecords > QUEUE_FETCH_RECORDS_MAX) {
    throw ProtocolError.invalid(
      `max_records ${maxRecords} is not in [1, ${QUEUE_FETCH_RECORDS_MAX}]`,
    );
  }
  if (maxBytes < 1) throw ProtocolError.invalid(`max_bytes ${maxBytes} is not at least 1`);
  return { maxWaitMs, maxRecords, maxBytes, queue, memberId, acks };
}

/** Writes the response body into a chunked frame; record views are attached, not copied. */
export function writeQueueFetchResponse(
  frame: ChunkedFrame,
  response: QueueFetchResponse,
  version = 1,
): void {
  const writer = frame.writer;
  writer.i16(response.errorCode).nullableString(response.errorMessage).u32(response.lockMs);
  writeAckResults(writer, response.acks);
  if (version >= 2) {
    const tag = response.ackSeq ?? { ackSeq: 0, durableThrough: 0, failures: [] };
    writer.i64(tag.ackSeq);
    writeAckSeqState(writer, tag);
  }
  frame.writer.u16(response.partitions.length);
  for (const result of response.partitions) {
    let size = 0;
    for (const view of result.records) size += view.length;
    const w = frame.writer;
    w.u32(result.partition).i16(result.errorCode).u32(result.acquired.length);
    for (const { first, last, deliveryCount } of result.acquired) {
      w.i64(first).i64(last).u16(deliveryCount);
    }
    w.u32(size);
    for (const view of result.records) frame.attach(view);
  }
}

/**
 * Reads a response body (after the response header): one view, or the views of the chunks
 * it arrived in. Each partition's records stay views of those bytes.
 */
export function readQueueFetchResponse(
  body: Uint8Array | readonly Uint8Array[],
  version = 1,
): QueueFetchResponse {
  const reader = new ChunkReader(body instanceof Uint8Array ? [body] : body);
  const errorCode = reader.reader(2, "error_code").i16("error_code");
  const errorMessage = nullableString(reader, "error_message");
  const lockMs = reader.reader(4, "lock_ms").u32("lock_ms");
  const ackCount = reader.count("ack results", ACK_RESULT_FIXED_BYTES);
  const acks: AckPartitionResult[] = [];
  for (let i = 0; i < ackCount; i++) {
    const fields = reader.reader(6, "ack result");
    acks.push({
      partition: fields.u32("partition"),
      errorCode: fields.i16("error_code"),
      errorMessage: nullableString(reader, "error_message"),
    });
  }
  const ackSeq = version >= 2 ? readAckSeqTag(reader) : undefined;
  const count = reader.count("partitions", PARTITION_FIXED_BYTES);
  const partitions: QueueFetchPartition[] = [];
  for (let p = 0; p < count; p++) partitions.push(readPartition(reader));
  reader.expectEnd("QueueFetchResponse");
  const response: QueueFetchResponse = { errorCode, errorMessage, lockMs, acks, partitions };
  if (ackSeq !== undefined) response.ackSeq = ackSeq;
  return response;
}

function readAckSeqTag(reader: ChunkReader): AckSeqTag {
  const fixed = reader.reader(16, "ack sequence");
  const ackSeq = fixed.i64("ack_seq");
  const durableThrough = fixed.i64("acks_durable_through");
  if (ackSeq < 0 || durableThrough < 0) {
    throw ProtocolError.invalid(`ack_seq ${ackSeq} or acks_durable_through is negative`);
  }
  const count = reader.count("ack failures", ACK_FAILURE_FIXED_BYTES);
  const failures: AckFailure[] = [];
  for (let i = 0; i < count; i++) {
    const fields = reader.reader(14, "ack failure");
    failures.push({
      ackSeq: fields.i64("ack_seq"),
      partition: fields.u32("partition"),
      errorCode: fields.i16("error_code"),
      errorMessage: nullableString(reader, "error_message"),
    });
  }
  return { ackSeq, durableThrough, failures };
}

function readPartition(reader: ChunkReader): QueueFetchPartition {
  const fields = reader.reader(10, "partition result");
  const partition = fields.u32("partition");
  const errorCode = fields.i16("error_code");
  const rangeCount = fields.u32("acquired count");
  if (rangeCount * RANGE_BYTES > reader.remaining) {
    throw ProtocolError.invalid(
      `acquired count ${rangeCount} needs ${rangeCount * RANGE_BYTES} bytes; ` +
        `${reader.remaining} remain`,
    );
  }
  const ranges = reader.reader(rangeCount * RANGE_BYTES, "acquired");
  const acquired: AcquiredRange[] = [];
  for (let r = 0; r < rangeCount; r++) {
    acquired.push({
      first: ranges.i64("first_offset"),
      last: ranges.i64("last_offset"),
      deliveryCount: ranges.u16("delivery_count"),
    });
  }
  const size = reader.reader(4, "records length").u32("records length");
  return { partition, errorCode, acquired, records: reader.views(size, "records") };
}

function nullableString(reader: ChunkReader, what: string): string | null {
  const length = reader.reader(2, `${what} length`).i16(`${what} length`);
  if (length === -1) return null;
  if (length < 0) throw ProtocolError.invalid(`${what} length ${length} is invalid`);
  const bytes = reader.reader(length, what).raw(length, what);
  try {
    return utf8.decode(bytes);
  } catch {
    throw ProtocolError.invalid(`${what} is not valid UTF-8`);
  }
}

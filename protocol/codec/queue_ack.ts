// QueueAck v1 (api_key 20), PROTOCOL.md section 7a:
//
//   QueueAckRequest  = queue:string member_id:string
//                      partitions:[ partition:u32
//                                   ranges:[ first_offset:i64 last_offset:i64 type:u8
//                                            [delay_ms:i64 when type = 5] ] ]
//   QueueAckResponse = error_code:i16 error_message:nullable_string
//                      partitions:[ partition:u32 error_code:i16 error_message:nullable_string ]
//
//   type: 1 accept, 2 release, 3 reject, 4 renew (Kafka's ShareAcknowledge numbers 1 to 3,
//   and KIP-1222's renew), 5 release after delay_ms (a release that makes the records
//   available again no sooner than delay_ms from when the broker applies it; delay_ms is
//   1 .. 31,536,000,000, one year). Readers that predate type 5 refuse it as an unknown type.
//
// QueueAck v2: the same request; the response adds the member's ack sequence state, and the
// answer also waits until every QueueFetch v2 ack of the member sent before it on this
// connection is settled (a request with no partitions is a pure barrier):
//
//   QueueAckResponse v2 = error_code:i16 error_message:nullable_string
//                         partitions:[ partition:u32 error_code:i16 error_message:nullable_string ]
//                         acks_durable_through:i64
//                         ack_failures:[ ack_seq:i64 partition:u32 error_code:i16
//                                        error_message:nullable_string ]
//
// The `partitions` list is also the piggy-backed acks of a QueueFetch request, so its writer
// and reader live here. Reading checks what the bytes alone can show (a known type, first ≤
// last, no partition twice, no overlapping ranges, at most ACK_RANGES_MAX ranges): a request
// that fails is INVALID_REQUEST naming the value, and the server changes nothing.

import { ProtocolError } from "./errors.ts";
import type { Reader, Writer } from "./wire.ts";

export const ACK_TYPES = { accept: 1, release: 2, reject: 3, renew: 4 } as const;
export type AckType = keyof typeof ACK_TYPES;
const TYPE_NAMES: readonly (AckType | undefined)[] = [
  undefined,
  "accept",
  "release",
  "reject",
  "renew",
];

/** Ranges in one request at most, over all partitions (the engine's ACK_RANGES_MAX). */
export const ACK_RANGES_MAX = 10_000;

export type AckRange = {
  first: number;
  last: number;
  type: AckType;
  /** Release only: no sooner than this many ms (sent as type 5); 0 or absent: at once. */
  delayMs?: number;
};

/** A member id's UTF-8 bytes at most (PROTOCOL.md section 8, fixed limits), as QueueLeave's. */
export const MEMBER_ID_BYTES_MAX = 255;

/** The wire code of a release with a delay. */
export const RELEASE_DELAYED_CODE = 5;
/** The longest delay a release may ask for: one year (the engine's DELAY_MS_MAX). */
export const ACK_DELAY_MS_MAX = 31_536_000_000;
export type AckPartition = { partition: number; ranges: AckRange[] };

export type QueueAckRequest = { queue: string; memberId: string; partitions: AckPartition[] };

export type AckPartitionResult = {
  partition: number;
  errorCode: number;
  errorMessage: string | null;
};

export type QueueAckResponse = {
  /** UNKNOWN_QUEUE or UNKNOWN_MEMBER_ID: nothing was applied. */
  errorCode: number;
  errorMessage: string | null;
  partitions: AckPartitionResult[];
};

/**
 * A QueueFetch v2 ack that failed after its answer said it was applied (its durability
 * failed: DISK_FULL, LOG_FENCED, ...), reported once in the member's next v2 answer.
 */
export type AckFailure = {
  ackSeq: number;
  partition: number;
  errorCode: number;
  errorMessage: string | null;
};

/** What a v2 answer says of the member's sequenced acks (PROTOCOL.md, QueueFetch v2). */
export type AckSeqState = {
  /** Every ack with a sequence at or below this is settled: durable, or in `failures`. */
  durableThrough: number;
  failures: AckFailure[];
};

export type QueueAckResponseV2 = QueueAckResponse & AckSeqState;

const PARTITION_BYTES_MIN = 6;
const FAILURE_BYTES_MIN = 16;
const RANGE_BYTES = 17;
const RESULT_BYTES_MIN = 8;

export function writeAckPartitions(writer: Writer, partitions: readonly AckPartition[]): void {
  writer.u16(partitions.length);
  for (const { partition, ranges } of partitions) {
    writer.u32(partition).u16(ranges.length);
    for (const { first, last, type, delayMs } of ranges) {
      const code = ACK_TYPES[type];
      if (code === undefined) throw new TypeError(`ack type ${String(type)} is not known`);
      if (delayMs === undefined || delayMs === 0) {
        writer.i64(first).i64(last).u8(code);
        continue;
      }
      if (type !== "release") throw new RangeError(`delayMs ${delayMs} is only for release`);
      writer.i64(first).i64(last).u8(RELEASE_DELAYED_CODE).i64(delayMs);
    }
  }
}

/** Reads and checks an acks list (see the file comment); INVALID_REQUEST names the value. */
export function readAckPartitions(reader: Reader): AckPartition[] {
  const count = reader.count("acks partitions", PARTITION_BYTES_MIN);
  const partitions: AckPartition[] = [];
  let total = 0;
  for (let p = 0; p < count; p++) {
    const partition = reader.u32("partition");
    const rangeCount = reader.count("ranges", RANGE_BYTES);
    total += rangeCount;
    if (total > ACK_RANGES_MAX) {
      throw ProtocolError.invalid(`more than ${ACK_RANGES_MAX} ack ranges in one request`);
    }
    const ranges: AckRange[] = [];
    for (let r = 0; r < rangeCount; r++) ranges.push(readRange(reader, partition));
    partitions.push({ partition, ranges });
  }
  checkAckPartitions(partitions);
  return partitions;
}

function readRange(reader: Reader, partition: number): AckRange {
  const first = reader.i64("first_offset");
  const last = reader.i64("last_offset");
  const code = reader.u8("type");
  if (code === RELEASE_DELAYED_CODE) return readDelayedRelease(reader, partition, first, last);
  const type = TYPE_NAMES[code];
  if (type === undefined) {
    throw ProtocolError.invalid(
      `ack type ${code} on partition ${partition} is not 1 (accept), 2 (release), ` +
        "3 (reject), 4 (renew) or 5 (release after a delay)",
    );
  }
  if (first < 0) {
    throw ProtocolError.invalid(`first_offset ${first} on partition ${partition} is negative`);
  }
  if (last < first) {
    throw ProtocolError.invalid(
      `last_offset ${last} is below first_offset ${first} on partition ${partition}`,
    );
  }
  return { first, last, type };
}

function readDelayedRelease(
  reader: Reader,
  partition: number,
  first: number,
  last: number,
): AckRange {
  const delayMs = reader.i64("delay_ms");
  if (delayMs < 1 || delayMs > ACK_DELAY_MS_MAX) {
    throw ProtocolError.invalid(
      `delay_ms ${delayMs} on partition ${partition} is not in [1, ${ACK_DELAY_MS_MAX}]`,
    );
  }
  if (first < 0 || last < first) {
    throw ProtocolError.invalid(
      `range ${first}..${last} on partition ${partition} is not a range of offsets`,
    );
  }
  return { first, last, type: "release", delayMs };
}

/** No partition twice, no two ranges of a partition overlapping. */
export function checkAckPartitions(partitions: readonly AckPartition[]): void {
  const seen = new Set<number>();
  for (const { partition, ranges } of partitions) {
    if (seen.has(partition)) {
      throw ProtocolError.invalid(`partition ${partition} appears twice in the acks`);
    }
    seen.add(partition);
    const sorted = [...ranges].sort((a, b) => a.first - b.first);
    for (let i = 1; i < sorted.length; i++) {
      const before = sorted[i - 1]!;
      const after = sorted[i]!;
      if (after.first <= before.last) {
        throw ProtocolError.invalid(
          `ack ranges ${before.first}..${before.last} and ${after.first}..${after.last} ` +
            `of partition ${partition} overlap`,
        );
      }
    }
  }
}

export function writeAckResults(writer: Writer, results: readonly AckPartitionResult[]): void {
  writer.u16(results.length);
  for (const result of results) {
    writer.u32(result.partition).i16(result.errorCode).nullableString(result.errorMessage);
  }
}

export function readAckResults(reader: Reader): AckPartitionResult[] {
  const count = reader.count("ack results", RESULT_BYTES_MIN);
  const results: AckPartitionResult[] = [];
  for (let i = 0; i < count; i++) {
    results.push({
      partition: reader.u32("partition"),
      errorCode: reader.i16("error_code"),
      errorMessage: reader.nullableString("error_message"),
    });
  }
  return results;
}

export function writeQueueAckRequest(writer: Writer, request: QueueAckRequest): void {
  writer.string(request.queue).string(request.memberId);
  writeAckPartitions(writer, request.partitions);
}

export function readQueueAckRequest(reader: Reader): QueueAckRequest {
  const queue = reader.string("queue");
  // Past MEMBER_ID_BYTES_MAX a member id is malformed (INVALID_REQUEST), as in the msgpack
  // APIs, rather than a member that merely is unknown.
  const memberId = reader.string("member_id", MEMBER_ID_BYTES_MAX);
  const partitions = readAckPartitions(reader);
  reader.expectEnd("QueueAckRequest");
  return { queue, memberId, partitions };
}

export function writeQueueAckResponse(writer: Writer, response: QueueAckResponse): void {
  writer.i16(response.errorCode).nullableString(response.errorMessage);
  writeAckResults(writer, response.partitions);
}

export function readQueueAckResponse(reader: Reader): QueueAckResponse {
  const errorCode = reader.i16("error_code");
  const errorMessage = reader.nullableString("error_message");
  const partitions = readAckResults(reader);
  reader.expectEnd("QueueAckResponse");
  return { errorCode, errorMessage, partitions };
}

export function writeAckSeqState(writer: Writer, state: AckSeqState): void {
  writer.i64(state.durableThrough).u16(state.failures.length);
  for (const failure of state.failures) {
    writer.i64(failure.ackSeq).u32(failure.partition).i16(failure.errorCode);
    writer.nullableString(failure.errorMessage);
  }
}

export function readAckSeqState(reader: Reader): AckSeqState {
  const durableThrough = reader.i64("acks_durable_through");
  if (durableThrough < 0) {
    throw ProtocolError.invalid(`acks_durable_through ${durableThrough} is negative`);
  }
  const count = reader.count("ack failures", FAILURE_BYTES_MIN);
  const failures: AckFailure[] = [];
  for (let i = 0; i < count; i++) {
    failures.push({
      ackSeq: reader.i64("ack_seq"),
      partition: reader.u32("partition"),
      errorCode: reader.i16("error_code"),
      errorMessage: reader.nullableString("error_message"),
    });
  }
  return { durableThrough, failures };
}

export function writeQueueAckResponseV2(writer: Writer, response: QueueAckResponseV2): void {
  writeQueueAckResponse(writer, response);
  writeAckSeqState(writer, response);
}

export function readQueueAckResponseV2(reader: Reader): QueueAckResponseV2 {
  const errorCode = reader.i16("error_code");
  const errorMessage = reader.nullableString("error_message");
  const partitions = readAckResults(reader);
  const state = readAckSeqState(reader);
  reader.expectEnd("QueueAckResponse");
  return { errorCode, errorMessage, partitions, ...state };
}

// Kafka's error codes that sluice answers with (the protocol guide's "Error Codes" table), and
// the mapping of sluice's own errors onto them. The mapping is an exhaustive Record, so a new
// SluiceError code fails to compile until it has a Kafka code.

import { InvariantError, SluiceError, type SluiceErrorCode } from "../../record/mod.ts";
import { ProtocolError, type WireErrorName } from "../codec/errors.ts";

export const KAFKA_ERRORS = {
  UNKNOWN_SERVER_ERROR: -1,
  NONE: 0,
  OFFSET_OUT_OF_RANGE: 1,
  CORRUPT_MESSAGE: 2,
  UNKNOWN_TOPIC_OR_PARTITION: 3,
  INVALID_FETCH_SIZE: 4,
  LEADER_NOT_AVAILABLE: 5,
  NOT_LEADER_OR_FOLLOWER: 6,
  REQUEST_TIMED_OUT: 7,
  MESSAGE_TOO_LARGE: 10,
  COORDINATOR_NOT_AVAILABLE: 15,
  NOT_COORDINATOR: 16,
  INVALID_TOPIC_EXCEPTION: 17,
  RECORD_LIST_TOO_LARGE: 18,
  INVALID_REQUIRED_ACKS: 21,
  ILLEGAL_GENERATION: 22,
  INCONSISTENT_GROUP_PROTOCOL: 23,
  INVALID_GROUP_ID: 24,
  UNKNOWN_MEMBER_ID: 25,
  INVALID_SESSION_TIMEOUT: 26,
  REBALANCE_IN_PROGRESS: 27,
  TOPIC_AUTHORIZATION_FAILED: 29,
  GROUP_AUTHORIZATION_FAILED: 30,
  CLUSTER_AUTHORIZATION_FAILED: 31,
  UNSUPPORTED_SASL_MECHANISM: 33,
  ILLEGAL_SASL_STATE: 34,
  UNSUPPORTED_VERSION: 35,
  TOPIC_ALREADY_EXISTS: 36,
  INVALID_PARTITIONS: 37,
  INVALID_REPLICATION_FACTOR: 38,
  INVALID_CONFIG: 40,
  INVALID_REQUEST: 42,
  OUT_OF_ORDER_SEQUENCE_NUMBER: 45,
  INVALID_PRODUCER_EPOCH: 47,
  KAFKA_STORAGE_ERROR: 56,
  SASL_AUTHENTICATION_FAILED: 58,
  UNKNOWN_PRODUCER_ID: 59,
  GROUP_ID_NOT_FOUND: 69,
  UNSUPPORTED_COMPRESSION_TYPE: 76,
  MEMBER_ID_REQUIRED: 79,
  GROUP_MAX_SIZE_REACHED: 81,
  INVALID_RECORD: 87,
  UNKNOWN_TOPIC_ID: 100,
  FENCED_MEMBER_EPOCH: 110,
} as const;

export type KafkaErrorName = keyof typeof KAFKA_ERRORS;

/** sluice's engine codes as Kafka codes. */
const ENGINE_TO_KAFKA: Record<SluiceErrorCode, KafkaErrorName> = {
  INVALID_BATCH: "CORRUPT_MESSAGE",
  CORRUPT_BATCH: "CORRUPT_MESSAGE",
  BATCH_TOO_LARGE: "MESSAGE_TOO_LARGE",
  UNKNOWN_TOPIC: "UNKNOWN_TOPIC_OR_PARTITION",
  UNKNOWN_PARTITION: "UNKNOWN_TOPIC_OR_PARTITION",
  TOPIC_EXISTS: "TOPIC_ALREADY_EXISTS",
  INVALID_TOPIC: "INVALID_TOPIC_EXCEPTION",
  INVALID_CONFIG: "INVALID_CONFIG",
  OFFSET_OUT_OF_RANGE: "OFFSET_OUT_OF_RANGE",
  LOG_FENCED: "KAFKA_STORAGE_ERROR",
  LOG_CLOSED: "LEADER_NOT_AVAILABLE",
  DISK_FULL: "KAFKA_STORAGE_ERROR",
  IO_ERROR: "KAFKA_STORAGE_ERROR",
  UNSUPPORTED_COMPRESSION: "UNSUPPORTED_COMPRESSION_TYPE",
  OUT_OF_ORDER_SEQUENCE: "OUT_OF_ORDER_SEQUENCE_NUMBER",
  INVALID_PRODUCER_EPOCH: "INVALID_PRODUCER_EPOCH",
  INVALID_GROUP_ID: "INVALID_GROUP_ID",
  UNKNOWN_MEMBER_ID: "UNKNOWN_MEMBER_ID",
  FENCED_MEMBER_EPOCH: "FENCED_MEMBER_EPOCH",
  INCONSISTENT_GROUP_PROTOCOL: "INCONSISTENT_GROUP_PROTOCOL",
  UNKNOWN_QUEUE: "UNKNOWN_TOPIC_OR_PARTITION",
  QUEUE_EXISTS: "TOPIC_ALREADY_EXISTS",
  INVALID_QUEUE: "INVALID_TOPIC_EXCEPTION",
  INVALID_RECORD_STATE: "INVALID_REQUEST",
  LOCK_EXPIRED: "INVALID_REQUEST",
  // The Kafka listener answers SASL and ACL refusals itself (_security.ts, _authz.ts), with
  // Kafka's own codes; these are mapped so the table stays total.
  AUTHENTICATION_FAILED: "SASL_AUTHENTICATION_FAILED",
  AUTHENTICATION_REQUIRED: "ILLEGAL_SASL_STATE",
  UNSUPPORTED_SASL_MECHANISM: "UNSUPPORTED_SASL_MECHANISM",
  AUTHORIZATION_FAILED: "TOPIC_AUTHORIZATION_FAILED",
  UNKNOWN_EXCHANGE: "INVALID_REQUEST",
  EXCHANGE_EXISTS: "INVALID_REQUEST",
  INVALID_EXCHANGE: "INVALID_REQUEST",
  QUEUE_FULL: "INVALID_REQUEST",
};

/** The few native wire codes a handler may meet (from shared codecs), as Kafka codes. */
const PROTOCOL_TO_KAFKA: Partial<Record<WireErrorName, KafkaErrorName>> = {
  INVALID_REQUEST: "INVALID_REQUEST",
  UNSUPPORTED_VERSION: "UNSUPPORTED_VERSION",
  REQUEST_TIMED_OUT: "REQUEST_TIMED_OUT",
};

/**
 * The Kafka code and message for an error met while serving a request. A broken invariant is a
 * bug, never an error code: it is thrown again, to the listener's fatal handler.
 */
export function errorToKafka(error: unknown): { code: number; message: string } {
  if (error instanceof InvariantError) throw error;
  if (error instanceof SluiceError) {
    return { code: KAFKA_ERRORS[ENGINE_TO_KAFKA[error.code]], message: error.message };
  }
  if (error instanceof ProtocolError) {
    const name = PROTOCOL_TO_KAFKA[error.code] ?? "UNKNOWN_SERVER_ERROR";
    return { code: KAFKA_ERRORS[name], message: error.message };
  }
  if (error instanceof TypeError || error instanceof RangeError) {
    return { code: KAFKA_ERRORS.INVALID_REQUEST, message: error.message };
  }
  return { code: KAFKA_ERRORS.UNKNOWN_SERVER_ERROR, message: String(error) };
}

// The wire error codes (PROTOCOL.md section 3), in one table, and their mapping to and from
// the engine's SluiceError codes. Codecs never throw on a server error code: decoding yields
// the number, and `errorFromWire` turns it into an error where the caller wants one.

import { InvariantError, SluiceError, type SluiceErrorCode } from "../../record/mod.ts";

export const WIRE_ERRORS = {
  NONE: 0,
  UNKNOWN_SERVER_ERROR: 1,
  INVALID_REQUEST: 2,
  UNSUPPORTED_VERSION: 3,
  UNKNOWN_API: 4,
  HANDSHAKE_REQUIRED: 5,
  TOO_MANY_IN_FLIGHT: 6,
  REQUEST_TIMED_OUT: 7,
  NOT_AVAILABLE: 8,
  UNKNOWN_TOPIC: 10,
  UNKNOWN_PARTITION: 11,
  TOPIC_EXISTS: 12,
  INVALID_TOPIC: 13,
  INVALID_CONFIG: 14,
  OFFSET_OUT_OF_RANGE: 20,
  CORRUPT_BATCH: 21,
  INVALID_BATCH: 22,
  BATCH_TOO_LARGE: 23,
  UNSUPPORTED_COMPRESSION: 24,
  DISK_FULL: 25,
  LOG_FENCED: 26,
  OUT_OF_ORDER_SEQUENCE: 30,
  UNKNOWN_PRODUCER_ID: 31,
  INVALID_PRODUCER_EPOCH: 32,
  INVALID_GROUP_ID: 40,
  UNKNOWN_MEMBER_ID: 41,
  FENCED_MEMBER_EPOCH: 42,
  INCONSISTENT_GROUP_PROTOCOL: 44,
  UNKNOWN_QUEUE: 50,
  QUEUE_EXISTS: 51,
  INVALID_QUEUE: 52,
  INVALID_RECORD_STATE: 53,
  LOCK_EXPIRED: 54,
  UNKNOWN_EXCHANGE: 60,
  EXCHANGE_EXISTS: 61,
  INVALID_EXCHANGE: 62,
  AUTHENTICATION_FAILED: 70,
  AUTHENTICATION_REQUIRED: 71,
  UNSUPPORTED_SASL_MECHANISM: 72,
  AUTHORIZATION_FAILED: 73,
  QUEUE_FULL: 80,
} as const;

export type WireErrorName = keyof typeof WIRE_ERRORS;

const NAMES_BY_CODE = new Map<number, WireErrorName>(
  Object.entries(WIRE_ERRORS).map(([name, code]) => [code, name as WireErrorName]),
);

const RETRIABLE = new Set<WireErrorName>([
  "TOO_MANY_IN_FLIGHT",
  "REQUEST_TIMED_OUT",
  "NOT_AVAILABLE",
  "DISK_FULL",
  "QUEUE_FULL",
]);

export function wireErrorName(code: number): WireErrorName | undefined {
  return NAMES_BY_CODE.get(code);
}

export function isRetriableWireError(code: number): boolean {
  const name = NAMES_BY_CODE.get(code);
  return name !== undefined && RETRIABLE.has(name);
}

/** An error in a request or response as a whole: malformed bytes, unknown API, and so on. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
  readonly code: WireErrorName;
  readonly wireCode: number;
  readonly retriable: boolean;

  constructor(code: WireErrorName, message: string) {
    super(message);
    this.code = code;
    this.wireCode = WIRE_ERRORS[code];
    this.retriable = RETRIABLE.has(code);
  }

  static invalid(message: string): ProtocolError {
    return new ProtocolError("INVALID_REQUEST", message);
  }
}

/** The engine codes have the same names on the wire, except the two that are engine-only. */
const ENGINE_TO_WIRE: Record<SluiceErrorCode, WireErrorName> = {
  INVALID_BATCH: "INVALID_BATCH",
  CORRUPT_BATCH: "CORRUPT_BATCH",
  BATCH_TOO_LARGE: "BATCH_TOO_LARGE",
  UNKNOWN_TOPIC: "UNKNOWN_TOPIC",
  UNKNOWN_PARTITION: "UNKNOWN_PARTITION",
  TOPIC_EXISTS: "TOPIC_EXISTS",
  INVALID_TOPIC: "INVALID_TOPIC",
  INVALID_CONFIG: "INVALID_CONFIG",
  OFFSET_OUT_OF_RANGE: "OFFSET_OUT_OF_RANGE",
  LOG_FENCED: "LOG_FENCED",
  LOG_CLOSED: "NOT_AVAILABLE",
  DISK_FULL: "DISK_FULL",
  IO_ERROR: "UNKNOWN_SERVER_ERROR",
  UNSUPPORTED_COMPRESSION: "UNSUPPORTED_COMPRESSION",
  OUT_OF_ORDER_SEQUENCE: "OUT_OF_ORDER_SEQUENCE",
  INVALID_PRODUCER_EPOCH: "INVALID_PRODUCER_EPOCH",
  INVALID_GROUP_ID: "INVALID_GROUP_ID",
  UNKNOWN_MEMBER_ID: "UNKNOWN_MEMBER_ID",
  FENCED_MEMBER_EPOCH: "FENCED_MEMBER_EPOCH",
  INCONSISTENT_GROUP_PROTOCOL: "INCONSISTENT_GROUP_PROTOCOL",
  UNKNOWN_QUEUE: "UNKNOWN_QUEUE",
  QUEUE_EXISTS: "QUEUE_EXISTS",
  INVALID_QUEUE: "INVALID_QUEUE",
  INVALID_RECORD_STATE: "INVALID_RECORD_STATE",
  QUEUE_FULL: "QUEUE_FULL",
  LOCK_EXPIRED: "LOCK_EXPIRED",
  UNKNOWN_EXCHANGE: "UNKNOWN_EXCHANGE",
  EXCHANGE_EXISTS: "EXCHANGE_EXISTS",
  INVALID_EXCHANGE: "INVALID_EXCHANGE",
  AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
  AUTHENTICATION_REQUIRED: "AUTHENTICATION_REQUIRED",
  UNSUPPORTED_SASL_MECHANISM: "UNSUPPORTED_SASL_MECHANISM",
  AUTHORIZATION_FAILED: "AUTHORIZATION_FAILED",
};

/**
 * The wire code and message for any error thrown while serving a request, except a broken
 * invariant: an InvariantError is a bug in sluice, never an error code, so it is thrown again
 * from here and travels up to whoever serves the request (the server stops; see its `onFatal`).
 */
export function errorToWire(error: unknown): { code: number; message: string } {
  if (error instanceof InvariantError) throw error;
  if (error instanceof ProtocolError) return { code: error.wireCode, message: error.message };
  if (error instanceof SluiceError) {
    return { code: WIRE_ERRORS[ENGINE_TO_WIRE[error.code]], message: error.message };
  }
  if (error instanceof TypeError || error instanceof RangeError) {
    return { code: WIRE_ERRORS.INVALID_REQUEST, message: error.message };
  }
  return { code: WIRE_ERRORS.UNKNOWN_SERVER_ERROR, message: String(error) };
}

/** A client-side error for a non-zero wire code. */
export class ServerError extends Error {
  override name = "ServerError";
  readonly code: WireErrorName | "UNKNOWN_CODE";
  readonly wireCode: number;
  readonly retriable: boolean;

  constructor(wireCode: number, message: string) {
    const name = wireErrorName(wireCode) ?? "UNKNOWN_CODE";
    super(message.length > 0 ? `${name}: ${message}` : name);
    this.code = name;
    this.wireCode = wireCode;
    this.retriable = isRetriableWireError(wireCode);
  }
}

export function errorFromWire(wireCode: number, message: string | null): ServerError {
  return new ServerError(wireCode, message ?? "");
}

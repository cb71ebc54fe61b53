// One error base for every operational failure of the engine. Bad arguments (a wrong type, a
// negative count) are programming errors and throw TypeError/RangeError instead; a broken
// invariant is a bug and fails an assert. What remains is here: things that go wrong with
// untrusted bytes, the disk, or a request that names something that does not exist.

/** The closed set of engine error codes. Wire codes map onto these in protocol/. */
export type SluiceErrorCode =
  | "INVALID_BATCH" // a record batch failed header validation (size, magic, offsets)
  | "CORRUPT_BATCH" // a record batch failed its CRC, on append or on read
  | "BATCH_TOO_LARGE" // a batch exceeds maxBatchBytes
  | "UNKNOWN_TOPIC" // the topic does not exist
  | "UNKNOWN_PARTITION" // the topic exists but not this partition
  | "TOPIC_EXISTS" // create of a topic that exists
  | "INVALID_TOPIC" // a topic name that cannot be a directory name
  | "INVALID_CONFIG" // a config value out of range or of the wrong kind
  | "OFFSET_OUT_OF_RANGE" // a read below the log start or past the log end
  | "LOG_FENCED" // an earlier write or fsync failed; the log refuses writes until reopened
  | "LOG_CLOSED" // the log or engine was closed
  | "DISK_FULL" // ENOSPC or EDQUOT: nothing was written; retry once space is freed
  | "IO_ERROR" // any other failure of the file system
  | "UNSUPPORTED_COMPRESSION" // a compression codec this engine does not implement
  | "OUT_OF_ORDER_SEQUENCE" // an idempotent batch's sequence is not the next expected
  | "INVALID_PRODUCER_EPOCH" // an idempotent batch's producer epoch is older than the current
  | "INVALID_GROUP_ID" // a consumer group id that is empty or too long
  | "UNKNOWN_MEMBER_ID" // a group member that never joined, left, or was evicted
  | "FENCED_MEMBER_EPOCH" // a group member's epoch is stale: it must rejoin
  | "INCONSISTENT_GROUP_PROTOCOL" // the group id is held by members of the other group protocol
  | "UNKNOWN_QUEUE" // the queue does not exist
  | "QUEUE_EXISTS" // declare of a queue that exists with different options
  | "INVALID_QUEUE" // a queue name that cannot be a directory name
  | "QUEUE_FULL" // a reject-publish queue at its max length refused records of a publish
  | "INVALID_RECORD_STATE" // an ack for a record this member does not hold (or outside the window)
  | "LOCK_EXPIRED" // an ack for a record whose acquisition lock ran out: it is no longer held
  | "UNKNOWN_EXCHANGE" // the exchange does not exist
  | "EXCHANGE_EXISTS" // declare of an exchange that exists with different settings
  | "INVALID_EXCHANGE" // a bad exchange name, type, binding pattern, header match or alternate
  | "AUTHENTICATION_FAILED" // wrong credentials, unknown user, or a malformed SASL exchange
  | "AUTHENTICATION_REQUIRED" // a request other than Handshake or SASL before authenticating
  | "UNSUPPORTED_SASL_MECHANISM" // a SASL mechanism the server does not offer on this listener
  | "AUTHORIZATION_FAILED"; // the principal may not do this operation on this resource

const RETRIABLE: ReadonlySet<SluiceErrorCode> = new Set<SluiceErrorCode>([
  "DISK_FULL",
  "QUEUE_FULL",
]);

export type SluiceErrorDetails = Record<string, string | number | bigint | boolean | undefined>;

export class SluiceError extends Error {
  override name = "SluiceError";
  readonly code: SluiceErrorCode;
  /** True when the same call may succeed later without any change to the request. */
  readonly retriable: boolean;
  /** The offending values, for logs and for the wire. */
  readonly details: SluiceErrorDetails;

  constructor(
    code: SluiceErrorCode,
    message: string,
    details: SluiceErrorDetails = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = code;
    this.retriable = RETRIABLE.has(code);
    this.details = details;
  }
}

export function isSluiceError(error: unknown, code?: SluiceErrorCode): error is SluiceError {
  return error instanceof SluiceError && (code === undefined || error.code === code);
}

/**
 * A broken invariant: a bug in sluice, never a reaction to input. Its own class so that whoever
 * serves a request can tell it from an operational failure: it is never answered as an error
 * code. Inside a partition log it fences that log (LOG_FENCED, with this as the cause); anywhere
 * else in the broker the process stops.
 */
export class InvariantError extends Error {
  override name = "InvariantError";
  /** What was violated, as the assert's message gave it. */
  readonly invariant: string;

  constructor(invariant: string) {
    super(`sluice invariant violated: ${invariant}`);
    this.invariant = invariant;
  }
}

export function isInvariantError(error: unknown): error is InvariantError {
  return error instanceof InvariantError;
}

/** An invariant check. A failure is a bug in sluice, never a reaction to input. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new InvariantError(message);
}

// The client's errors. A non-zero wire code from the server is a ServerError
// (../codec/errors.ts) named by the code; what goes wrong on the client's side of the socket is
// a ClientError with a closed set of codes. Both carry `retriable`: true when the same call may
// succeed later unchanged, which is what the producer's retry loop and the consumer's fetch
// loop look at.

import { ServerError } from "../codec/errors.ts";

export type ClientErrorCode =
  | "CONNECTION_CLOSED" // the connection dropped with the request outstanding (retriable)
  | "CONNECT_FAILED" // no TCP connection or no handshake within connectTimeoutMs (retriable)
  | "REQUEST_TIMED_OUT" // no response within the request's timeout (retriable)
  | "QUEUE_FULL" // more than requestQueueMax requests wait for an in-flight slot (retriable)
  | "BUFFER_FULL" // the producer holds more than bufferBytesMax unsent bytes (retriable)
  | "MALFORMED_RESPONSE" // the server sent bytes that do not parse: the connection is closed
  | "UNSUPPORTED_SERVER" // the server does not offer version 1 of an API this client needs
  | "AUTHENTICATION_FAILED" // the server's SCRAM signature was wrong: it does not know the user
  | "CLOSED"; // the client object was closed by its owner

const RETRIABLE: ReadonlySet<ClientErrorCode> = new Set<ClientErrorCode>([
  "CONNECTION_CLOSED",
  "CONNECT_FAILED",
  "REQUEST_TIMED_OUT",
  "QUEUE_FULL",
  "BUFFER_FULL",
]);

export class ClientError extends Error {
  override name = "ClientError";
  readonly code: ClientErrorCode;
  readonly retriable: boolean;

  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.retriable = RETRIABLE.has(code);
  }
}

/** True for a ClientError or ServerError that says the same call may succeed later. */
export function isRetriable(error: unknown): boolean {
  if (error instanceof ClientError) return error.retriable;
  if (error instanceof ServerError) return error.retriable;
  return false;
}

/** True when a request that failed this way may still have been carried out by the server. */
export function isAmbiguous(error: unknown): boolean {
  if (error instanceof ClientError) {
    return error.code === "CONNECTION_CLOSED" || error.code === "REQUEST_TIMED_OUT";
  }
  return error instanceof ServerError && error.code === "REQUEST_TIMED_OUT";
}

export { ServerError };

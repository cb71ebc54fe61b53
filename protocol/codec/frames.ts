// Frames and headers (PROTOCOL.md section 2):
//
//   frame    = size:u32 payload
//   request  = api_key:u16 api_version:u16 correlation_id:u32 body
//   response = correlation_id:u32 error_code:i16 body
//
// Responses that carry record batches are built as a list of chunks, so the batches go to the
// socket as the views the engine returned, never copied into one buffer.

import { writeInt32 } from "../../record/mod.ts";
import { ProtocolError } from "./errors.ts";
import { type Reader, Writer } from "./wire.ts";

export const API = {
  Handshake: 0,
  Metadata: 1,
  CreateTopics: 2,
  DeleteTopics: 3,
  Produce: 4,
  Fetch: 5,
  ListOffsets: 6,
  OffsetCommit: 7,
  OffsetFetch: 8,
  GroupHeartbeat: 9,
  DescribeGroup: 10,
  InitProducerId: 11,
  Stats: 12,
  QueueDeclare: 13,
  QueueDelete: 14,
  QueuePurge: 15,
  QueueList: 16,
  QueueJoin: 17,
  QueueLeave: 18,
  QueueFetch: 19,
  QueueAck: 20,
  ExchangeDeclare: 21,
  ExchangeDelete: 22,
  ExchangeList: 23,
  ExchangeBind: 24,
  ExchangeUnbind: 25,
  ExchangePublish: 26,
  SaslHandshake: 27,
  SaslAuthenticate: 28,
  AlterSecurity: 29,
  DescribeSecurity: 30,
  ListGroups: 31,
  AlterTopicConfigs: 32,
} as const;

export type ApiName = keyof typeof API;
export type ApiKey = (typeof API)[ApiName];

export type ApiVersionRange = { apiKey: number; min: number; max: number };

/**
 * The security APIs (PROTOCOL.md section 11): a server lists and serves them only with
 * authentication on, so that with it off the Handshake response stays byte for byte what it
 * was before they existed.
 */
export const SECURITY_API_KEYS: readonly number[] = Object.freeze([
  API.SaslHandshake,
  API.SaslAuthenticate,
  API.AlterSecurity,
  API.DescribeSecurity,
]);

/** The APIs that have a version 2 (PROTOCOL.md sections 5, 6 and 7a). */
const VERSION_2_APIS: readonly number[] = [API.Produce, API.Fetch, API.QueueFetch, API.QueueAck];

function versionRange(apiKey: number): Readonly<ApiVersionRange> {
  return Object.freeze({
    apiKey,
    min: 1,
    max: VERSION_2_APIS.includes(apiKey) ? 2 : 1,
  });
}

/**
 * The versions the server serves, by API: every API has version 1; Produce and Fetch also
 * have version 2 (PROTOCOL.md sections 5 and 6), whose responses carry one more field per
 * partition; QueueFetch and QueueAck have version 2 (section 7a), whose answers carry the
 * member's ack sequence. Version 1 stays byte for byte what it was. The security APIs are apart
 * (SECURITY_API_VERSIONS), listed only by a server with authentication on.
 */
export const API_VERSIONS: readonly Readonly<ApiVersionRange>[] = Object.freeze(
  Object.values(API)
    .filter((apiKey) => !SECURITY_API_KEYS.includes(apiKey))
    .map(versionRange),
);

export const SECURITY_API_VERSIONS: readonly Readonly<ApiVersionRange>[] = Object.freeze(
  SECURITY_API_KEYS.map(versionRange),
);

const VERSIONS_BY_KEY = new Map(
  [...API_VERSIONS, ...SECURITY_API_VERSIONS].map((range) => [range.apiKey, range]),
);

/** The versions served of `apiKey`, or undefined for a key not in the table. */
export function apiVersionRange(apiKey: number): Readonly<ApiVersionRange> | undefined {
  return VERSIONS_BY_KEY.get(apiKey);
}

export const FRAME_PREFIX_BYTES = 4;
export const REQUEST_HEADER_BYTES = 8;
export const RESPONSE_HEADER_BYTES = 6;

export type RequestHeader = { apiKey: number; apiVersion: number; correlationId: number };

/** Starts a request frame; the caller writes the body, then calls `finishFrame`. */
export function startRequest(header: RequestHeader, capacity = 256): Writer {
  const writer = new Writer(capacity);
  writer.placeholderU32();
  writer.u16(header.apiKey).u16(header.apiVersion).u32(header.correlationId);
  return writer;
}

/** Starts a response frame with error code 0; the caller writes the body. */
export function startResponse(correlationId: number, capacity = 256): Writer {
  const writer = new Writer(capacity);
  writer.placeholderU32();
  writer.u32(correlationId).i16(0);
  return writer;
}

/** Fills in the size prefix of a frame started by startRequest/startResponse. */
export function finishFrame(writer: Writer): Uint8Array {
  writer.patchU32(0, writer.length - FRAME_PREFIX_BYTES);
  return writer.finish();
}

/** A complete error response: the request-level code and a message. */
export function errorResponse(correlationId: number, code: number, message: string): Uint8Array {
  const writer = new Writer(64 + message.length * 3);
  writer.placeholderU32();
  writer.u32(correlationId).i16(code).string(truncateMessage(message));
  return finishFrame(writer);
}

function truncateMessage(message: string): string {
  // A message is a `string` (u16 length): keep it well within that, whole characters only.
  return message.length > 4000 ? `${message.slice(0, 4000)}…` : message;
}

export function readRequestHeader(reader: Reader): RequestHeader {
  return readRequestHeaderInto(reader, { apiKey: 0, apiVersion: 0, correlationId: 0 });
}

/**
 * readRequestHeader into an object the caller makes anyway (the server's request context):
 * no header object per request to be copied from.
 */
export function readRequestHeaderInto<T extends RequestHeader>(reader: Reader, into: T): T {
  if (reader.remaining < REQUEST_HEADER_BYTES) {
    throw ProtocolError.invalid(`request of ${reader.remaining} bytes is shorter than its header`);
  }
  into.apiKey = reader.u16("api_key");
  into.apiVersion = reader.u16("api_version");
  into.correlationId = reader.u32("correlation_id");
  return into;
}

export type ResponseHeader = { correlationId: number; errorCode: number };

export function readResponseHeader(reader: Reader): ResponseHeader {
  return { correlationId: reader.u32("correlation_id"), errorCode: reader.i16("error_code") };
}

/**
 * A frame assembled from writer bytes and borrowed views, for responses with record batches:
 * `bytes()` continues the current writer, `attach()` adds a view as its own chunk. One writer
 * serves the whole frame: the bytes between two attached views go out as a view of it, and
 * what follows is written after them (a writer that grows copies into a new buffer and leaves
 * the views handed out over the old one intact). `capacityBytes` sizes it for the fields.
 */
export class ChunkedFrame {
  #chunks: Uint8Array[] = [];
  #writer: Writer;
  /** Where the writer's bytes not yet in a chunk start. */
  #flushedAt = 0;
  #sizeBytes = 0;

  constructor(correlationId: number, capacityBytes = 256) {
    this.#writer = startResponse(correlationId, capacityBytes);
  }

  get writer(): Writer {
    return this.#writer;
  }

  attach(view: Uint8Array): void {
    if (view.length === 0) return;
    this.#flushWriter();
    this.#chunks.push(view);
    this.#sizeBytes += view.length;
  }

  #flushWriter(): void {
    const length = this.#writer.length;
    if (length === this.#flushedAt) return;
    this.#chunks.push(this.#writer.finish().subarray(this.#flushedAt));
    this.#sizeBytes += length - this.#flushedAt;
    this.#flushedAt = length;
  }

  /** The chunks of the frame, size prefix filled in. */
  finish(): Uint8Array[] {
    this.#flushWriter();
    writeInt32(this.#chunks[0]!, 0, this.#sizeBytes - FRAME_PREFIX_BYTES);
    return this.#chunks;
  }
}

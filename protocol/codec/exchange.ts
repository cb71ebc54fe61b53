// The exchange messages v1 (PROTOCOL.md section 7b), written once here for the server and the
// client alike. Five MessagePack maps and one binary publish:
//
//   ExchangeDeclare (21)
//     request:  { name: string, type: "direct" | "fanout" | "topic" | "headers",
//                 alternateExchange?: string | null = null, alternateTopic?: string | null = null }
//     response: { errorCode: int, errorMessage: string | null, exchange: ExchangeInfo | null }
//   ExchangeDelete (22)
//     request:  { name: string }
//     response: { errorCode: int, errorMessage: string | null }
//   ExchangeList (23)
//     request:  { }
//     response: { exchanges: [ExchangeInfo] }
//   ExchangeBind (24), ExchangeUnbind (25)
//     request:  { exchange: string, queue?: string, topic?: string (exactly one of the two),
//                 routingKey?: string = "", match?: "all" | "any" = "all",
//                 headers?: { string: string } = {} }
//     response: { errorCode: int, errorMessage: string | null, changed: bool }
//
//   ExchangeInfo = { name, type, alternateExchange: string | null,
//                    alternateTopic: string | null, createdMs: int,
//                    bindings: [{ queue: string | null, topic: string | null,
//                                 routingKey: string, match: string,
//                                 headers: { string: string } }] }
//
//   ExchangePublish (26), binary:
//     ExchangePublishRequest  = acks:i8 timeout_ms:u32 exchange:string records:bytes32
//     ExchangePublishResponse = batches:[ error_code:i16 error_message:nullable_string
//                                         destinations:u32 unroutable:u32 ]
//
// Readers check types and sizes (INVALID_REQUEST naming the key); names, types, patterns and
// header pairs are the engine's to check, which names the field and the value.

import {
  arrayField,
  type Fields,
  intField,
  mapItem,
  optionalString,
  readMsgpack,
  stringField,
  writeMsgpack,
} from "./control.ts";
import { ProtocolError } from "./errors.ts";
import type { Reader, Writer } from "./wire.ts";

const NAME_BYTES_MAX = 249;
const KEY_BYTES_MAX = 1024;
const ITEMS_MAX = 1_000_000;
const INT = { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER };
/** Header pairs in one bind request (the engine allows 64; more is refused here already). */
const HEADERS_MAX = 64;

export type Outcome = { errorCode: number; errorMessage: string | null };

export type ExchangeDeclareRequest = {
  name: string;
  type: string;
  alternateExchange?: string | null;
  alternateTopic?: string | null;
};

export type BindingInfo = {
  queue: string | null;
  topic: string | null;
  routingKey: string;
  match: string;
  headers: Record<string, string>;
};

export type ExchangeInfo = {
  name: string;
  type: string;
  alternateExchange: string | null;
  alternateTopic: string | null;
  createdMs: number;
  bindings: BindingInfo[];
};

export type ExchangeBindRequest = {
  exchange: string;
  queue?: string;
  topic?: string;
  routingKey?: string;
  match?: string;
  headers?: Record<string, string>;
};

export type ExchangeDeclareResponse = Outcome & { exchange: ExchangeInfo | null };
export type ExchangeListResponse = { exchanges: ExchangeInfo[] };
export type ExchangeBindResponse = Outcome & { changed: boolean };

/** msgpackr would write `undefined` as an extension type other readers do not know. */
function defined(value: object): Fields {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined));
}

function outcome(fields: Fields): Outcome {
  return {
    errorCode: intField(fields, "errorCode", INT),
    errorMessage: optionalString(fields, "errorMessage"),
  };
}

function booleanField(fields: Fields, key: string): boolean {
  const value = fields[key];
  if (typeof value !== "boolean") throw ProtocolError.invalid(`${key} must be a boolean`);
  return value;
}

function stringMap(value: unknown, what: string, entriesMax: number): Record<string, string> {
  if (value === undefined || value === null) return {};
  const fields = mapItem(value, what);
  const entries = Object.entries(fields);
  if (entries.length > entriesMax) {
    throw ProtocolError.invalid(`${what} has ${entries.length} entries, more than ${entriesMax}`);
  }
  for (const [key, item] of entries) {
    if (typeof item !== "string") throw ProtocolError.invalid(`${what}.${key} must be a string`);
  }
  // fromEntries makes every key an own property, `__proto__` included (an assignment would
  // set the object's prototype instead).
  return Object.fromEntries(entries) as Record<string, string>;
}

// ExchangeDeclare (21), ExchangeDelete (22), ExchangeList (23) -------------------------------

export function writeExchangeDeclareRequest(writer: Writer, request: ExchangeDeclareRequest) {
  writeMsgpack(writer, defined(request));
}

export function readExchangeDeclareRequest(reader: Reader): ExchangeDeclareRequest {
  const fields = readMsgpack(reader, "ExchangeDeclareRequest");
  // Names are judged by the engine, a long one too (INVALID_EXCHANGE or INVALID_TOPIC naming
  // it, section 7b), not refused as a malformed body; the 4 KiB body limit bounds them.
  return {
    name: stringField(fields, "name"),
    type: stringField(fields, "type", 64),
    alternateExchange: optionalString(fields, "alternateExchange"),
    alternateTopic: optionalString(fields, "alternateTopic"),
  };
}

export function writeExchangeDeclareResponse(writer: Writer, response: ExchangeDeclareResponse) {
  writeMsgpack(writer, response);
}

export function readExchangeDeclareResponse(reader: Reader): ExchangeDeclareResponse {
  const fields = readMsgpack(reader, "ExchangeDeclareResponse");
  const exchange =
    fields["exchange"] == null ? null : exchangeInfo(mapItem(fields["exchange"], "exchange"));
  return { ...outcome(fields), exchange };
}

function exchangeInfo(fields: Fields): ExchangeInfo {
  return {
    name: stringField(fields, "name"),
    type: stringField(fields, "type"),
    alternateExchange: optionalString(fields, "alternateExchange"),
    alternateTopic: optionalString(fields, "alternateTopic"),
    createdMs: intField(fields, "createdMs", INT),
    bindings: arrayField(fields, "bindings", ITEMS_MAX).map((item) => {
      const binding = mapItem(item, "bindings[]");
      return {
        queue: optionalString(binding, "queue"),
        topic: optionalString(binding, "topic"),
        routingKey: stringField(binding, "routingKey"),
        match: stringField(binding, "match"),
        headers: stringMap(binding["headers"], "headers", ITEMS_MAX),
      };
    }),
  };
}

export function writeExchangeNameRequest(writer: Writer, request: { name: string }): void {
  writeMsgpack(writer, { name: request.name });
}

export function readExchangeNameRequest(reader: Reader): { name: string } {
  return {
    name: stringField(readMsgpack(reader, "ExchangeDeleteRequest"), "name", NAME_BYTES_MAX),
  };
}

export function writeOutcome(writer: Writer, response: Outcome): void {
  writeMsgpack(writer, response);
}

export function readOutcome(reader: Reader): Outcome {
  return outcome(readMsgpack(reader, "ExchangeDeleteResponse"));
}

export function writeExchangeListRequest(writer: Writer): void {
  writeMsgpack(writer, {});
}

export function readExchangeListRequest(reader: Reader): void {
  readMsgpack(reader, "ExchangeListRequest");
}

export function writeExchangeListResponse(writer: Writer, response: ExchangeListResponse): void {
  writeMsgpack(writer, response);
}

export function readExchangeListResponse(reader: Reader): ExchangeListResponse {
  const fields = readMsgpack(reader, "ExchangeListResponse");
  return {
    exchanges: arrayField(fields, "exchanges", ITEMS_MAX).map((item) =>
      exchangeInfo(mapItem(item, "exchanges[]")),
    ),
  };
}

// ExchangeBind (24), ExchangeUnbind (25) -----------------------------------------------------

export function writeExchangeBindRequest(writer: Writer, request: ExchangeBindRequest): void {
  writeMsgpack(writer, defined(request));
}

export function readExchangeBindRequest(reader: Reader, what: string): ExchangeBindRequest {
  const fields = readMsgpack(reader, what);
  const request: ExchangeBindRequest = {
    exchange: stringField(fields, "exchange", NAME_BYTES_MAX),
  };
  // As in a declare, the engine judges the destination's name, however long.
  const queue = optionalString(fields, "queue");
  if (queue !== null) request.queue = queue;
  const topic = optionalString(fields, "topic");
  if (topic !== null) request.topic = topic;
  const routingKey = optionalString(fields, "routingKey", KEY_BYTES_MAX);
  if (routingKey !== null) request.routingKey = routingKey;
  const match = optionalString(fields, "match", 16);
  if (match !== null) request.match = match;
  if (fields["headers"] != null)
    request.headers = stringMap(fields["headers"], "headers", HEADERS_MAX);
  return request;
}

export function writeExchangeBindResponse(writer: Writer, response: ExchangeBindResponse): void {
  writeMsgpack(writer, response);
}

export function readExchangeBindResponse(reader: Reader): ExchangeBindResponse {
  const fields = readMsgpack(reader, "ExchangeBindResponse");
  return { ...outcome(fields), changed: booleanField(fields, "changed") };
}

// ExchangePublish (26) -----------------------------------------------------------------------

export type ExchangePublishRequest = {
  /** 1: answer once appended; -1: once fsynced. 0 is not served (a publish is always answered). */
  acks: -1 | 1;
  timeoutMs: number;
  exchange: string;
  records: Uint8Array;
};

export type PublishedBatchResult = Outcome & { destinations: number; unroutable: number };
export type ExchangePublishResponse = { batches: PublishedBatchResult[] };

/** Fewest bytes of one batch result: code, null message, two counts. */
const BATCH_RESULT_BYTES_MIN = 12;

export function writeExchangePublishRequest(writer: Writer, request: ExchangePublishRequest) {
  writer.i8(request.acks).u32(request.timeoutMs).string(request.exchange);
  writer.u32(request.records.length).raw(request.records);
}

export function readExchangePublishRequest(reader: Reader): ExchangePublishRequest {
  const acks = reader.i8("acks");
  if (acks !== -1 && acks !== 1) throw ProtocolError.invalid(`acks ${acks} must be -1 or 1`);
  const timeoutMs = reader.u32("timeout_ms");
  const exchange = reader.string("exchange");
  const records = reader.bytes32("records");
  reader.expectEnd("ExchangePublishRequest");
  return { acks, timeoutMs, exchange, records };
}

export function writeExchangePublishResponse(writer: Writer, response: ExchangePublishResponse) {
  writer.u16(response.batches.length);
  for (const batch of response.batches) {
    writer.i16(batch.errorCode).nullableString(batch.errorMessage);
    writer.u32(batch.destinations).u32(batch.unroutable);
  }
}

export function readExchangePublishResponse(reader: Reader): ExchangePublishResponse {
  const count = reader.count("batches", BATCH_RESULT_BYTES_MIN);
  const batches: PublishedBatchResult[] = [];
  for (let index = 0; index < count; index++) {
    batches.push({
      errorCode: reader.i16("error_code"),
      errorMessage: reader.nullableString("error_message"),
      destinations: reader.u32("destinations"),
      unroutable: reader.u32("unroutable"),
    });
  }
  reader.expectEnd("ExchangePublishResponse");
  return { batches };
}

// Exchange administration for the Admin client (PROTOCOL.md section 7b): declare, delete,
// bind, unbind, list. Arguments are checked here (TypeError for a wrong type); what the broker
// refuses throws its ServerError, whose message names the value (INVALID_EXCHANGE,
// EXCHANGE_EXISTS, UNKNOWN_EXCHANGE, UNKNOWN_QUEUE, UNKNOWN_TOPIC).

import { errorFromWire, ProtocolError } from "../codec/errors.ts";
import {
  type ExchangeBindRequest,
  type ExchangeInfo,
  type Outcome,
  readExchangeBindResponse,
  readExchangeDeclareResponse,
  readExchangeListResponse,
  readOutcome,
  writeExchangeBindRequest,
  writeExchangeDeclareRequest,
  writeExchangeListRequest,
  writeExchangeNameRequest,
} from "../codec/exchange.ts";
import { API } from "../codec/frames.ts";
import type { Reader, Writer } from "../codec/wire.ts";
import type { Requester } from "./control_calls.ts";
import { ClientError } from "./errors.ts";

export type { BindingInfo, ExchangeInfo } from "../codec/exchange.ts";

export type ExchangeType = "direct" | "fanout" | "topic" | "headers";

export type ExchangeSettings = {
  type: ExchangeType;
  /** Where records no binding matches go: another exchange, or a topic (one of the two). */
  alternateExchange?: string;
  alternateTopic?: string;
};

/** One destination (a queue or a topic) and what to match: a key or pattern, or headers. */
export type BindingSettings = {
  queue?: string;
  topic?: string;
  routingKey?: string;
  match?: "all" | "any";
  headers?: Record<string, string>;
};

async function call<T extends Outcome | object>(
  requester: Requester,
  apiKey: number,
  write: (writer: Writer) => void,
  what: string,
  read: (reader: Reader) => T,
): Promise<T> {
  const reader = await requester.request(apiKey, write);
  let response: T;
  try {
    response = read(reader);
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    throw new ClientError("MALFORMED_RESPONSE", `${what}: ${error.message}`, { cause: error });
  }
  if ("errorCode" in response && response.errorCode !== 0) {
    throw errorFromWire(response.errorCode, response.errorMessage);
  }
  return response;
}

function checkName(name: unknown, what: string): string {
  if (typeof name !== "string" || name.length === 0) {
    throw new TypeError(`${what} ${String(name)} must be a non-empty string`);
  }
  return name;
}

export async function declareExchange(
  requester: Requester,
  name: string,
  settings: ExchangeSettings,
): Promise<ExchangeInfo> {
  checkName(name, "exchange name");
  if (typeof settings !== "object" || settings === null) {
    throw new TypeError("declareExchange() needs settings with a type");
  }
  const request = { name, ...settings };
  const response = await call(
    requester,
    API.ExchangeDeclare,
    (writer) => writeExchangeDeclareRequest(writer, request),
    "ExchangeDeclare",
    readExchangeDeclareResponse,
  );
  if (response.exchange === null) {
    throw new ClientError("MALFORMED_RESPONSE", "ExchangeDeclare answered without the exchange");
  }
  return response.exchange;
}

export async function deleteExchange(requester: Requester, name: string): Promise<void> {
  checkName(name, "exchange name");
  await call(
    requester,
    API.ExchangeDelete,
    (writer) => writeExchangeNameRequest(writer, { name }),
    "ExchangeDelete",
    readOutcome,
  );
}

/** Binds or unbinds; resolves to whether anything changed (false: it existed, or did not). */
export async function bindExchange(
  requester: Requester,
  exchange: string,
  binding: BindingSettings,
  action: "bind" | "unbind",
): Promise<boolean> {
  checkName(exchange, "exchange name");
  if (typeof binding !== "object" || binding === null) {
    throw new TypeError(`${action}Exchange() needs a binding with a queue or a topic`);
  }
  const request: ExchangeBindRequest = { exchange, ...binding };
  const response = await call(
    requester,
    action === "bind" ? API.ExchangeBind : API.ExchangeUnbind,
    (writer) => writeExchangeBindRequest(writer, request),
    action === "bind" ? "ExchangeBind" : "ExchangeUnbind",
    readExchangeBindResponse,
  );
  return response.changed;
}

export async function listExchanges(requester: Requester): Promise<ExchangeInfo[]> {
  const response = await call(
    requester,
    API.ExchangeList,
    (writer) => writeExchangeListRequest(writer),
    "ExchangeList",
    readExchangeListResponse,
  );
  return response.exchanges;
}

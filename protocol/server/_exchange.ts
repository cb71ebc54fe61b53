// The exchange handlers (PROTOCOL.md section 7b): ExchangeDeclare, ExchangeDelete,
// ExchangeList, ExchangeBind and ExchangeUnbind (one MessagePack map in and out) and
// ExchangePublish (binary: the request's batches routed one by one through the engine).

import type {
  Binding,
  Engine,
  ExchangeConfig,
  ExchangeType,
  HeaderMatch,
  PublishedBatch,
} from "../../engine/mod.ts";
import { BATCH_HEADER_BYTES, batchSizeAt, SluiceError } from "../../record/mod.ts";
import { errorToWire } from "../codec/errors.ts";
import {
  type BindingInfo,
  type ExchangeBindRequest,
  type ExchangeInfo,
  type Outcome,
  type PublishedBatchResult,
  readExchangeBindRequest,
  readExchangeDeclareRequest,
  readExchangeListRequest,
  readExchangeNameRequest,
  readExchangePublishRequest,
  writeExchangeBindResponse,
  writeExchangeDeclareResponse,
  writeExchangeListResponse,
  writeExchangePublishResponse,
  writeOutcome,
} from "../codec/exchange.ts";
import { API, finishFrame, startResponse } from "../codec/frames.ts";
import type { Writer } from "../codec/wire.ts";
import type { HandlerResult, RequestContext } from "./connection.ts";

/** Batches one ExchangePublish may carry: its answer lists each in a u16-counted list. */
export const PUBLISH_BATCHES_MAX = 65_535;

type Handler = (request: RequestContext) => HandlerResult | Promise<HandlerResult>;

/** The API table entries of the exchange APIs, for the server's dispatch map. */
export function exchangeHandlers(engine: Engine): [number, Handler][] {
  return [
    [API.ExchangeDeclare, (request) => handleDeclare(engine, request)],
    [API.ExchangeDelete, (request) => handleDelete(engine, request)],
    [API.ExchangeList, (request) => handleList(engine, request)],
    [API.ExchangeBind, (request) => handleBind(engine, request, "bind")],
    [API.ExchangeUnbind, (request) => handleBind(engine, request, "unbind")],
    [API.ExchangePublish, (request) => handlePublish(engine, request)],
  ];
}

function reply(correlationId: number, write: (writer: Writer) => void): HandlerResult {
  const writer = startResponse(correlationId, 256);
  write(writer);
  return [finishFrame(writer)];
}

/** The error fields of an answer; a code is counted against `request`'s server (metrics). */
function outcome(error: unknown, request: RequestContext): Outcome {
  if (error === undefined) return { errorCode: 0, errorMessage: null };
  const { code, message } = errorToWire(error);
  request.connection.countBodyError(code);
  return { errorCode: code, errorMessage: message };
}

function bindingInfo(binding: Binding): BindingInfo {
  const { kind, name } = binding.destination;
  return {
    queue: kind === "queue" ? name : null,
    topic: kind === "topic" ? name : null,
    routingKey: binding.routingKey,
    match: binding.match,
    headers: { ...binding.headers },
  };
}

export function exchangeInfo(config: ExchangeConfig): ExchangeInfo {
  return {
    name: config.name,
    type: config.type,
    alternateExchange: config.alternateExchange,
    alternateTopic: config.alternateTopic,
    createdMs: config.createdMs,
    bindings: config.bindings.map(bindingInfo),
  };
}

async function handleDeclare(engine: Engine, request: RequestContext): Promise<HandlerResult> {
  const { name, type, alternateExchange, alternateTopic } = readExchangeDeclareRequest(
    request.reader,
  );
  let response: Outcome & { exchange: ExchangeInfo | null };
  try {
    const config = await engine.declareExchange(name, {
      type: type as ExchangeType,
      alternateExchange: alternateExchange ?? null,
      alternateTopic: alternateTopic ?? null,
    });
    response = { ...outcome(undefined, request), exchange: exchangeInfo(config) };
  } catch (error) {
    response = { ...outcome(error, request), exchange: null };
  }
  return reply(request.correlationId, (writer) => writeExchangeDeclareResponse(writer, response));
}

async function handleDelete(engine: Engine, request: RequestContext): Promise<HandlerResult> {
  const { name } = readExchangeNameRequest(request.reader);
  let failure: unknown;
  try {
    await engine.deleteExchange(name);
  } catch (error) {
    failure = error;
  }
  return reply(request.correlationId, (writer) => writeOutcome(writer, outcome(failure, request)));
}

function handleList(engine: Engine, request: RequestContext): HandlerResult {
  readExchangeListRequest(request.reader);
  const exchanges = engine.listExchanges().map(exchangeInfo);
  return reply(request.correlationId, (writer) => writeExchangeListResponse(writer, { exchanges }));
}

function bindOptions(bind: ExchangeBindRequest) {
  return {
    ...(bind.queue === undefined ? {} : { queue: bind.queue }),
    ...(bind.topic === undefined ? {} : { topic: bind.topic }),
    ...(bind.routingKey === undefined ? {} : { routingKey: bind.routingKey }),
    ...(bind.match === undefined ? {} : { match: bind.match as HeaderMatch }),
    ...(bind.headers === undefined ? {} : { headers: bind.headers }),
  };
}

async function handleBind(
  engine: Engine,
  request: RequestContext,
  action: "bind" | "unbind",
): Promise<HandlerResult> {
  const what = action === "bind" ? "ExchangeBindRequest" : "ExchangeUnbindRequest";
  const bind = readExchangeBindRequest(request.reader, what);
  let response: Outcome & { changed: boolean };
  try {
    const options = bindOptions(bind);
    const changed =
      action === "bind"
        ? await engine.bindExchange(bind.exchange, options)
        : await engine.unbindExchange(bind.exchange, options);
    response = { ...outcome(undefined, request), changed };
  } catch (error) {
    response = { ...outcome(error, request), changed: false };
  }
  return reply(request.correlationId, (writer) => writeExchangeBindResponse(writer, response));
}

/** The whole batches of `records`, as views; a malformed tail is an INVALID_BATCH entry. */
function splitBatches(records: Uint8Array): { batches: Uint8Array[]; tail: unknown } {
  const batches: Uint8Array[] = [];
  let at = 0;
  while (at < records.length && batches.length < PUBLISH_BATCHES_MAX) {
    const size = records.length - at < BATCH_HEADER_BYTES ? -1 : batchSizeAt(records, at);
    if (size < BATCH_HEADER_BYTES || at + size > records.length) {
      const error = new SluiceError(
        "INVALID_BATCH",
        `Records at byte ${at} are not a whole batch`,
        {
          position: at,
        },
      );
      return { batches, tail: error };
    }
    batches.push(records.subarray(at, at + size));
    at += size;
  }
  if (at < records.length) {
    const error = new SluiceError(
      "INVALID_BATCH",
      `An ExchangePublish carries at most ${PUBLISH_BATCHES_MAX} batches`,
      { position: at },
    );
    return { batches, tail: error };
  }
  if (records.length === 0) {
    return { batches, tail: new SluiceError("INVALID_BATCH", "ExchangePublish without records") };
  }
  return { batches, tail: undefined };
}

/**
 * A batch some records of which a full reject-publish queue refused: QUEUE_FULL, the message
 * saying how many records were taken and how many refused (the others were appended).
 */
function queueFull(published: PublishedBatch): SluiceError | undefined {
  if (published.rejected === 0) return undefined;
  const { records, rejected, fullQueue, destinations } = published;
  return new SluiceError(
    "QUEUE_FULL",
    `Queue '${fullQueue}' is full: ${rejected} of ${records} records refused, ` +
      `${Math.max(0, records - rejected)} taken (by ${destinations} destination topics)`,
    { queue: fullQueue ?? "", rejected, records, destinations },
  );
}

/**
 * Routes each batch in order, every one started before any is awaited (so batches for one
 * destination keep their order). A batch refused before anything was appended stops the
 * ones after it, which are not routed and carry the same error, as a refused batch does in
 * Produce. Every batch the request held gets an entry.
 */
async function handlePublish(engine: Engine, request: RequestContext): Promise<HandlerResult> {
  const publish = readExchangePublishRequest(request.reader);
  const { batches, tail } = splitBatches(publish.records);
  const started: Promise<PublishedBatch>[] = [];
  let refusal: unknown;
  for (const batch of batches) {
    try {
      started.push(
        engine.publishChecked(publish.exchange, batch, { durable: publish.acks === -1 }),
      );
    } catch (error) {
      refusal = error;
      break;
    }
  }
  const results: PublishedBatchResult[] = [];
  for (const outcomeOf of await Promise.allSettled(started)) {
    if (outcomeOf.status === "fulfilled") {
      const { destinations, unroutable } = outcomeOf.value;
      results.push({ ...outcome(queueFull(outcomeOf.value), request), destinations, unroutable });
    } else {
      results.push({ ...outcome(outcomeOf.reason, request), destinations: 0, unroutable: 0 });
    }
  }
  for (let index = started.length; index < batches.length; index++) {
    results.push({ ...outcome(refusal, request), destinations: 0, unroutable: 0 });
  }
  if (tail !== undefined)
    results.push({ ...outcome(tail, request), destinations: 0, unroutable: 0 });
  return reply(request.correlationId, (writer) =>
    writeExchangePublishResponse(writer, { batches: results }),
  );
}

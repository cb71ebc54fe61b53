// Publishing through an exchange (PROTOCOL.md section 7b, ExchangePublish): records are routed
// by the broker to the topics of the queues and topics bound to the exchange. The empty
// exchange name is the default exchange: the routing key names a queue.
//
//   const publisher = new Publisher({ host, port });
//   await publisher.publish("orders", [{ key: "order.eu.paid", value: "..." }]);
//   await publisher.publish("", [{ routingKey: "work", value: "job 1" }]);   // queue "work"
//
// One call is one request. Records are batched by routing key: each run of records with the
// same routing key is one batch, so the broker routes each batch once and stores it with its
// own bytes (it splits a batch only when its records go different ways). The answer says, per
// call, how many topics took records and how many records no binding took (dropped, or sent
// to the exchange's alternate). Unlike the Producer, a Publisher does not linger, retry or
// send idempotently: a failed call rejects, and its records may have reached some of their
// destinations (routing is not atomic across destinations).

import {
  encodeRecordBatch,
  joinViews,
  type RecordInput,
  ROUTING_KEY_HEADER,
} from "../../record/mod.ts";

export { ROUTING_KEY_HEADER };
import { errorFromWire, ProtocolError } from "../codec/errors.ts";
import {
  type ExchangePublishResponse,
  readExchangePublishResponse,
  writeExchangePublishRequest,
} from "../codec/exchange.ts";
import { API } from "../codec/frames.ts";
import { type BytesInput, type HeadersInput, toBytes, toHeaders } from "./batch_builder.ts";
import { ClientError } from "./errors.ts";
import { type ClientOptions, Session } from "./session.ts";

export type PublisherOptions = ClientOptions & {
  /** 1: answered once appended; "all": once fsynced (default). */
  acks?: 1 | "all";
  /** How long the broker may take (default 30,000 ms). */
  timeoutMs?: number;
};

export type PublishRecord = {
  key?: BytesInput;
  value: BytesInput;
  headers?: HeadersInput;
  /** The routing key, when it is not the record key: sent as the sluice-routing-key header. */
  routingKey?: string;
  timestamp?: number;
};

/** Summed over the batches of one call. */
export type PublishResult = {
  batches: number;
  /** Destination topics that took records, summed over batches. */
  destinations: number;
  /** Records no binding (and no alternate) took: dropped. */
  unroutable: number;
};

const utf8 = new TextDecoder();

function routingKeyOf(record: PublishRecord): string {
  if (record.routingKey !== undefined) return record.routingKey;
  const key = toBytes(record.key, "key");
  return key === null ? "" : utf8.decode(key);
}

function recordInput(record: PublishRecord, nowMs: number): RecordInput {
  if (typeof record !== "object" || record === null) throw new TypeError("a record is an object");
  const headers = [...toHeaders(record.headers)];
  if (record.routingKey !== undefined) {
    if (typeof record.routingKey !== "string") throw new TypeError("routingKey is a string");
    headers.push({ key: ROUTING_KEY_HEADER, value: new TextEncoder().encode(record.routingKey) });
  }
  return {
    key: toBytes(record.key, "key"),
    value: toBytes(record.value, "value"),
    headers,
    timestamp: record.timestamp ?? nowMs,
  };
}

/** Runs of records with the same routing key, each encoded as one batch, in order. */
export function batchesByRoutingKey(records: readonly PublishRecord[], nowMs: number): Uint8Array {
  const batches: Uint8Array[] = [];
  let run: RecordInput[] = [];
  let runKey: string | undefined;
  for (const record of records) {
    const input = recordInput(record, nowMs);
    const key = routingKeyOf(record);
    if (runKey !== undefined && key !== runKey) {
      batches.push(encodeRecordBatch(run));
      run = [];
    }
    run.push(input);
    runKey = key;
  }
  if (run.length > 0) batches.push(encodeRecordBatch(run));
  return joinViews(batches);
}

export class Publisher {
  readonly #session: Session;
  readonly #acks: -1 | 1;
  readonly #timeoutMs: number;

  constructor(options: PublisherOptions = {}) {
    this.#session = new Session(options);
    const acks = options.acks ?? "all";
    if (acks !== 1 && acks !== "all") throw new RangeError(`acks ${String(acks)} is not 1 or all`);
    this.#acks = acks === "all" ? -1 : 1;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Publishes records through `exchange` ("" is the default exchange); one request. */
  async publish(
    exchange: string,
    records: PublishRecord | readonly PublishRecord[],
  ): Promise<PublishResult> {
    if (typeof exchange !== "string") throw new TypeError("exchange must be a string");
    const list = Array.isArray(records) ? records : [records as PublishRecord];
    if (list.length === 0) throw new RangeError("publish() needs at least one record");
    const bytes = batchesByRoutingKey(list, Date.now());
    const reader = await this.#session.request(API.ExchangePublish, (writer) =>
      writeExchangePublishRequest(writer, {
        acks: this.#acks,
        timeoutMs: this.#timeoutMs,
        exchange,
        records: bytes,
      }),
    );
    let response: ExchangePublishResponse;
    try {
      response = readExchangePublishResponse(reader);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      throw new ClientError("MALFORMED_RESPONSE", `ExchangePublish: ${error.message}`, {
        cause: error,
      });
    }
    const result: PublishResult = {
      batches: response.batches.length,
      destinations: 0,
      unroutable: 0,
    };
    for (const batch of response.batches) {
      if (batch.errorCode !== 0) throw errorFromWire(batch.errorCode, batch.errorMessage);
      result.destinations += batch.destinations;
      result.unroutable += batch.unroutable;
    }
    return result;
  }

  async close(): Promise<void> {
    await this.#session.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

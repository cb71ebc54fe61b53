// A small in-memory stand-in for the sluice server, for the client's tests: node:net, the real
// codecs, logs kept as batch bytes in memory, duplicate detection for idempotent producers,
// and the engine's GroupCoordinator for GroupHeartbeat. A test can intercept any request with
// `hook` (to delay, fail, drop or hold it) and look at everything the client sent.

import net from "node:net";
import { decodeRecordBatches, GroupCoordinator } from "../../../engine/mod.ts";
import { readBatchHeader } from "../../../record/mod.ts";
import { type Fields, readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { readFetchRequest, writeFetchResponse } from "../../../protocol/codec/fetch.ts";
import { FrameReader } from "../../../protocol/codec/frame_reader.ts";
import {
  API,
  API_VERSIONS,
  ChunkedFrame,
  errorResponse,
  finishFrame,
  readRequestHeader,
  startResponse,
} from "../../../protocol/codec/frames.ts";
import { writeHandshakeResponse } from "../../../protocol/codec/handshake.ts";
import {
  type ProducePartitionResult,
  type ProduceRequest,
  readProduceRequest,
  writeProduceResponse,
} from "../../../protocol/codec/produce.ts";
import { errorToWire, WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { Reader, type Writer } from "../../../protocol/codec/wire.ts";

export type FakeRequest = {
  apiKey: number;
  correlationId: number;
  /** The body, positioned after the request header. */
  body: Reader;
  connection: FakeConnection;
};

/** Return true when the hook dealt with the request (answered it, or chose not to). */
export type Hook = (request: FakeRequest) => boolean;

type StoredBatch = { baseOffset: number; lastOffset: number; bytes: Uint8Array };
type SeenBatch = { sequence: number; count: number; baseOffset: number };

export class FakeConnection {
  readonly socket: net.Socket;
  /** Requests received, by api key, in order. */
  readonly apiKeys: number[] = [];
  /** Data events received: fewer than requests when the client coalesced its writes. */
  dataEvents = 0;
  #frames = new FrameReader(64 * 1024 * 1024);

  constructor(
    socket: net.Socket,
    onFrame: (frame: Uint8Array, connection: FakeConnection) => void,
  ) {
    this.socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.dataEvents++;
      this.#frames.push(chunk, (frame) => onFrame(frame, this));
    });
    socket.on("error", () => {});
  }

  respond(correlationId: number, body: (writer: Writer) => void): void {
    const writer = startResponse(correlationId);
    body(writer);
    this.socket.write(finishFrame(writer));
  }

  respondError(correlationId: number, code: number, message: string): void {
    this.socket.write(errorResponse(correlationId, code, message));
  }

  respondMsgpack(correlationId: number, value: unknown): void {
    this.respond(correlationId, (writer) => writeMsgpack(writer, value));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export class FakeServer {
  readonly connections: FakeConnection[] = [];
  readonly produceRequests: ProduceRequest[] = [];
  readonly commits: Fields[] = [];
  readonly heartbeats: Fields[] = [];
  inFlightMax = 1024;
  apis = API_VERSIONS.map((api) => ({ ...api }));
  hook: Hook | undefined;
  #server: net.Server;
  #partitions = new Map<string, number>();
  #logs = new Map<string, StoredBatch[]>();
  #seen = new Map<string, SeenBatch[]>();
  #committed = new Map<string, number>();
  #nextProducerId = 1000;
  readonly groups: GroupCoordinator;

  private constructor(server: net.Server, heartbeatIntervalMs: number) {
    this.#server = server;
    this.groups = new GroupCoordinator({
      partitionsOf: (topic) => this.#partitions.get(topic),
      heartbeatIntervalMs,
    });
  }

  static async start(options: { heartbeatIntervalMs?: number } = {}): Promise<FakeServer> {
    const server = net.createServer();
    const fake = new FakeServer(server, options.heartbeatIntervalMs ?? 3_000);
    server.on("connection", (socket) => {
      socket.setNoDelay(true);
      fake.connections.push(new FakeConnection(socket, (frame, c) => fake.#onFrame(frame, c)));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return fake;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  createTopic(name: string, partitions: number): void {
    this.#partitions.set(name, partitions);
    for (let p = 0; p < partitions; p++) this.#logs.set(`${name}\u0000${p}`, []);
  }

  /** The stored batches of a partition, baseOffset patched, in order. */
  batches(topic: string, partition: number): Uint8Array[] {
    return (this.#logs.get(`${topic}\u0000${partition}`) ?? []).map((b) => b.bytes);
  }

  /** The values of a partition's records as strings, in offset order. */
  values(topic: string, partition: number): string[] {
    const decoder = new TextDecoder();
    return this.batches(topic, partition).flatMap((bytes) =>
      [...decodeRecordBatches(bytes)].flatMap((batch) =>
        batch.records.map((r) => (r.value === null ? "" : decoder.decode(r.value))),
      ),
    );
  }

  highWatermark(topic: string, partition: number): number {
    const log = this.#logs.get(`${topic}\u0000${partition}`) ?? [];
    return log.length === 0 ? 0 : log[log.length - 1]!.lastOffset + 1;
  }

  committedOffset(group: string, topic: string, partition: number): number | undefined {
    return this.#committed.get(`${group}\u0000${topic}\u0000${partition}`);
  }

  async close(): Promise<void> {
    for (const connection of this.connections) connection.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #onFrame(frame: Uint8Array, connection: FakeConnection): void {
    const body = new Reader(frame);
    const { apiKey, correlationId } = readRequestHeader(body);
    connection.apiKeys.push(apiKey);
    if (apiKey === API.Produce) {
      // Every Produce the client sent, hooked or not; a copy, as the records are views.
      const copy = new Uint8Array(frame);
      this.produceRequests.push(readProduceRequest(new Reader(copy, body.position)));
    }
    const request: FakeRequest = { apiKey, correlationId, body, connection };
    if (this.hook?.(request) === true) return;
    this.handle(request);
  }

  /** The default answer to a request; hooks call it to pass a request on. */
  handle(request: FakeRequest): void {
    const { apiKey, correlationId, connection } = request;
    try {
      this.#dispatch(request);
    } catch (error) {
      const { code, message } = errorToWire(error);
      connection.respondError(correlationId, code, `api ${apiKey}: ${message}`);
    }
  }

  #dispatch(request: FakeRequest): void {
    const { apiKey, correlationId, body, connection } = request;
    if (apiKey === API.Handshake) {
      connection.respond(correlationId, (w) =>
        writeHandshakeResponse(w, {
          serverVersion: "fake",
          frameBytesMax: 64 * 1024 * 1024,
          inFlightMax: this.inFlightMax,
          apis: this.apis,
        }),
      );
    } else if (apiKey === API.Produce) {
      this.#produce(correlationId, body, connection);
    } else if (apiKey === API.Fetch) {
      this.#fetch(correlationId, body, connection);
    } else {
      const response = this.#control(apiKey, readMsgpack(body, "body"));
      connection.respondMsgpack(correlationId, response);
    }
  }

  #control(apiKey: number, fields: Fields): unknown {
    switch (apiKey) {
      case API.Metadata:
        return this.#metadata(fields);
      case API.InitProducerId:
        return { errorCode: 0, producerId: this.#nextProducerId++, producerEpoch: 0 };
      case API.ListOffsets:
        return this.#listOffsets(fields);
      case API.OffsetCommit:
        return this.#offsetCommit(fields);
      case API.OffsetFetch:
        return this.#offsetFetch(fields);
      case API.GroupHeartbeat:
        return this.#heartbeat(fields);
      case API.CreateTopics:
        return this.#createTopics(fields);
      case API.DeleteTopics:
        return this.#deleteTopics(fields);
      case API.DescribeGroup:
        return this.#describeGroup(fields["groupId"] as string);
      case API.Stats:
        return {
          serverVersion: "fake",
          uptimeMs: 1,
          connections: this.connections.length,
          topics: this.#partitions.size,
          partitions: 0,
          bytesIn: 0,
          bytesOut: 0,
          requests: {},
        };
      default:
        throw new RangeError(`the fake server does not serve api ${apiKey}`);
    }
  }

  #metadata(fields: Fields): unknown {
    const names = (fields["topics"] as string[] | null | undefined) ?? [...this.#partitions.keys()];
    return {
      brokers: [{ host: "127.0.0.1", port: this.port }],
      topics: names.map((name) => {
        const count = this.#partitions.get(name);
        return {
          name,
          errorCode: count === undefined ? WIRE_ERRORS.UNKNOWN_TOPIC : 0,
          partitions: Array.from({ length: count ?? 0 }, (_, partition) => ({
            partition,
            logStartOffset: 0,
            highWatermark: this.highWatermark(name, partition),
          })),
          config: null,
        };
      }),
    };
  }

  #produce(correlationId: number, body: Reader, connection: FakeConnection): void {
    const request = readProduceRequest(body);
    const topics = request.topics.map((t) => ({
      topic: t.topic,
      partitions: t.partitions.map((p) => this.appendTo(t.topic, p.partition, p.records)),
    }));
    if (request.acks === 0) return;
    connection.respond(correlationId, (w) => writeProduceResponse(w, { topics }));
  }

  /** Appends batches as the server would, duplicates and sequence checks included. */
  appendTo(topic: string, partition: number, records: Uint8Array): ProducePartitionResult {
    const log = this.#logs.get(`${topic}\u0000${partition}`);
    const result = {
      partition,
      errorCode: 0,
      baseOffset: -1,
      logStartOffset: 0,
      errorMessage: null,
    };
    if (log === undefined) return { ...result, errorCode: WIRE_ERRORS.UNKNOWN_PARTITION };
    let at = 0;
    while (at < records.length) {
      const header = readBatchHeader(records, at);
      const size = 12 + header.batchLength;
      const offset = this.#append(topic, partition, log, records.subarray(at, at + size));
      if (typeof offset === "string") return { ...result, errorCode: WIRE_ERRORS[offset] };
      if (result.baseOffset < 0) result.baseOffset = offset;
      at += size;
    }
    return result;
  }

  #append(topic: string, partition: number, log: StoredBatch[], batch: Uint8Array) {
    const header = readBatchHeader(batch);
    const key = `${topic}\u0000${partition}\u0000${header.producerId}`;
    const seen = this.#seen.get(key) ?? [];
    if (header.producerId >= 0) {
      const duplicate = seen.find(
        (s) => s.sequence === header.baseSequence && s.count === header.recordCount,
      );
      if (duplicate !== undefined) return duplicate.baseOffset;
      const last = seen.at(-1);
      if (last !== undefined && header.baseSequence !== (last.sequence + last.count) % 2 ** 31) {
        return "OUT_OF_ORDER_SEQUENCE" as const;
      }
    }
    const baseOffset = this.highWatermark(topic, partition);
    // A copy (Buffer's slice() would be a view of the frame).
    const bytes = new Uint8Array(batch);
    new DataView(bytes.buffer).setBigInt64(0, BigInt(baseOffset));
    log.push({ baseOffset, lastOffset: baseOffset + header.lastOffsetDelta, bytes });
    if (header.producerId >= 0) {
      seen.push({ sequence: header.baseSequence, count: header.recordCount, baseOffset });
      if (seen.length > 5) seen.shift();
      this.#seen.set(key, seen);
    }
    return baseOffset;
  }

  #fetch(correlationId: number, body: Reader, connection: FakeConnection): void {
    const request = readFetchRequest(body);
    const frame = new ChunkedFrame(correlationId);
    writeFetchResponse(frame, {
      topics: request.topics.map((t) => ({
        topic: t.topic,
        partitions: t.partitions.map((p) => {
          const log = this.#logs.get(`${t.topic}\u0000${p.partition}`);
          const highWatermark = this.highWatermark(t.topic, p.partition);
          const base = { partition: p.partition, highWatermark, logStartOffset: 0 };
          if (log === undefined) {
            return { ...base, errorCode: WIRE_ERRORS.UNKNOWN_PARTITION, records: [] };
          }
          if (p.fetchOffset > highWatermark) {
            return { ...base, errorCode: WIRE_ERRORS.OFFSET_OUT_OF_RANGE, records: [] };
          }
          const records = log.filter((b) => b.lastOffset >= p.fetchOffset).map((b) => b.bytes);
          return { ...base, errorCode: 0, records };
        }),
      })),
    });
    for (const chunk of frame.finish()) connection.socket.write(chunk);
  }

  #listOffsets(fields: Fields): unknown {
    const topics = fields["topics"] as { topic: string; partitions: Fields[] }[];
    return {
      topics: topics.map((t) => ({
        topic: t.topic,
        partitions: t.partitions.map((p) => {
          const partition = p["partition"] as number;
          const timestamp = p["timestamp"] as number;
          const highWatermark = this.highWatermark(t.topic, partition);
          let offset = timestamp === -2 ? 0 : highWatermark;
          if (timestamp >= 0) offset = this.#offsetAtTime(t.topic, partition, timestamp);
          return { partition, errorCode: 0, offset, timestamp };
        }),
      })),
    };
  }

  #offsetAtTime(topic: string, partition: number, timestamp: number): number {
    for (const bytes of this.batches(topic, partition)) {
      for (const batch of decodeRecordBatches(bytes)) {
        const record = batch.records.find((r) => r.timestamp >= timestamp);
        if (record !== undefined) return record.offset;
      }
    }
    return -1;
  }

  #offsetCommit(fields: Fields): unknown {
    this.commits.push(fields);
    const group = fields["groupId"] as string;
    const offsets = fields["offsets"] as { topic: string; partition: number; offset: number }[];
    const memberId = (fields["memberId"] as string | null | undefined) ?? null;
    const memberEpoch = (fields["memberEpoch"] as number | undefined) ?? -1;
    this.groups.checkCommit(group, memberId, memberEpoch, offsets);
    for (const o of offsets)
      this.#committed.set(`${group}\u0000${o.topic}\u0000${o.partition}`, o.offset);
    return { errorCode: 0, errorMessage: null };
  }

  #offsetFetch(fields: Fields): unknown {
    const group = fields["groupId"] as string;
    const topics = fields["topics"] as { topic: string; partitions: number[] }[];
    return {
      errorCode: 0,
      topics: topics.map((t) => ({
        topic: t.topic,
        partitions: t.partitions.map((partition) => ({
          partition,
          offset: this.committedOffset(group, t.topic, partition) ?? -1,
          metadata: "",
          commitTimestampMs: 0,
        })),
      })),
    };
  }

  #createTopics(fields: Fields): unknown {
    const topics = fields["topics"] as { name: string; partitions?: number }[];
    return {
      results: topics.map(({ name, partitions }) => {
        if (this.#partitions.has(name)) {
          return { name, errorCode: WIRE_ERRORS.TOPIC_EXISTS, errorMessage: `${name} exists` };
        }
        this.createTopic(name, partitions ?? 1);
        return { name, errorCode: 0, errorMessage: null };
      }),
    };
  }

  #deleteTopics(fields: Fields): unknown {
    const names = fields["topics"] as string[];
    return {
      results: names.map((name) => {
        if (!this.#partitions.delete(name)) {
          return { name, errorCode: WIRE_ERRORS.UNKNOWN_TOPIC, errorMessage: null };
        }
        return { name, errorCode: 0, errorMessage: null };
      }),
    };
  }

  #describeGroup(groupId: string): unknown {
    const description = this.groups.describe(groupId);
    const offsets = [...this.#committed]
      .map(([key, committed]) => ({ parts: key.split("\u0000"), committed }))
      .filter(({ parts }) => parts[0] === groupId)
      .map(({ parts, committed }) => {
        const topic = parts[1]!;
        const partition = Number(parts[2]);
        const highWatermark = this.highWatermark(topic, partition);
        return { topic, partition, committed, highWatermark, lag: highWatermark - committed };
      });
    return {
      errorCode: 0,
      groupId,
      groupEpoch: description.groupEpoch,
      members: description.members.map((m) => ({
        ...m,
        assignment: [...m.assignment].map(([topic, partitions]) => ({ topic, partitions })),
      })),
      offsets,
    };
  }

  #heartbeat(fields: Fields): unknown {
    this.heartbeats.push(fields);
    try {
      const response = this.groups.heartbeat({
        groupId: fields["groupId"] as string,
        memberId: (fields["memberId"] as string | null | undefined) ?? null,
        memberEpoch: fields["memberEpoch"] as number,
        topics: (fields["topics"] as string[] | null | undefined) ?? null,
      });
      const assignment =
        response.assignment === null
          ? null
          : [...response.assignment].map(([topic, partitions]) => ({ topic, partitions }));
      return { errorCode: 0, errorMessage: null, ...response, assignment };
    } catch (error) {
      const { code, message } = errorToWire(error);
      return {
        errorCode: code,
        errorMessage: message,
        memberId: null,
        memberEpoch: -1,
        heartbeatIntervalMs: 0,
        assignment: null,
      };
    }
  }
}

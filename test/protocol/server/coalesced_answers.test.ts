// Answers a connection has ready in one turn of the server's event loop go out in one socket
// write, on both listeners (sluice's own and Kafka's), plain and TLS: pipelined requests that
// arrive in one read, and acks=all produces that one group commit resolves together. Counted
// by the server's own `socketWrites` (Stats; `sluice_socket_writes_total`).

import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { after, before, describe, test } from "node:test";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { writeMsgpack } from "../../../protocol/codec/control.ts";
import {
  API,
  finishFrame,
  readResponseHeader,
  startRequest,
} from "../../../protocol/codec/frames.ts";
import { writeHandshakeRequest } from "../../../protocol/codec/handshake.ts";
import { readProduceResponse, writeProduceRequest } from "../../../protocol/codec/produce.ts";
import { Reader, type Writer } from "../../../protocol/codec/wire.ts";
import { API_KEYS as K } from "../../../protocol/kafka/mod.ts";
import type { SluiceServer } from "../../../protocol/server/mod.ts";
import { waitFor } from "../../helpers.ts";
import { RawKafka, startKafkaServer } from "../kafka/kafka_serving.ts";
import { makeTestCerts, opensslMissing, type TestCerts } from "../security/certs.ts";
import { startTestServer } from "./serving.ts";

const PIPELINED = 8;

/** A native-protocol connection (plain or TLS) that sends frames together and counts answers. */
class Pipe {
  readonly answers: Uint8Array[] = [];
  #socket: net.Socket;
  #buffer = new Uint8Array(0);
  #correlationId = 0;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => this.#receive(chunk));
    socket.on("error", () => {});
  }

  #receive(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    let at = 0;
    while (joined.length - at >= 4) {
      const size = new DataView(joined.buffer, at, 4).getUint32(0);
      if (joined.length - at - 4 < size) break;
      this.answers.push(joined.slice(at + 4, at + 4 + size));
      at += 4 + size;
    }
    this.#buffer = joined.slice(at);
  }

  frame(apiKey: number, body: (writer: Writer) => void, apiVersion = 1): Uint8Array {
    const writer = startRequest({ apiKey, apiVersion, correlationId: ++this.#correlationId });
    body(writer);
    return finishFrame(writer);
  }

  /** Sends `frames` in one socket write and waits for their answers; returns their headers. */
  async exchange(frames: Uint8Array[]): Promise<{ correlationId: number; errorCode: number }[]> {
    const first = this.answers.length;
    this.#socket.write(Buffer.concat(frames));
    await waitFor(() => this.answers.length >= first + frames.length, "the answers");
    return this.answers.slice(first).map((answer) => readResponseHeader(new Reader(answer)));
  }

  async handshake(): Promise<void> {
    const frame = this.frame(API.Handshake, (w) =>
      writeHandshakeRequest(w, { clientName: "pipe", clientVersion: "0" }),
    );
    const [answer] = await this.exchange([frame]);
    assert.equal(answer!.errorCode, 0);
  }

  close(): void {
    this.#socket.destroy();
  }
}

async function connectPipe(port: number, tlsOptions?: tls.ConnectionOptions): Promise<Pipe> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const socket =
      tlsOptions === undefined
        ? net.connect(port, "127.0.0.1", () => resolve(socket))
        : tls.connect({ port, host: "127.0.0.1", servername: "localhost", ...tlsOptions }, () =>
            resolve(socket),
          );
    socket.once("error", reject);
  });
  const pipe = new Pipe(socket);
  await pipe.handshake();
  return pipe;
}

function nativeWrites(server: SluiceServer): number {
  return server.stats()["socketWrites"] as number;
}

function kafkaWrites(server: SluiceServer): number {
  return (server.stats()["kafka"] as { socketWrites: number }).socketWrites;
}

/** Pipelined Stats requests in one read: their answers in order, in one write. */
async function assertStatsCoalesced(server: SluiceServer, pipe: Pipe): Promise<void> {
  const frames = Array.from({ length: PIPELINED }, () =>
    pipe.frame(API.Stats, (w) => writeMsgpack(w, {})),
  );
  const before = nativeWrites(server);
  const answers = await pipe.exchange(frames);
  assert.deepEqual(
    answers.map((answer) => answer.errorCode),
    frames.map(() => 0),
  );
  const ids = answers.map((answer) => answer.correlationId);
  assert.deepEqual(
    ids,
    [...ids].sort((a, b) => a - b),
    "answers keep request order",
  );
  assert.equal(nativeWrites(server) - before, 1, `${PIPELINED} answers, one socket write`);
}

/** Pipelined ApiVersions requests in one read: one write of answers, in order. */
async function assertKafkaCoalesced(server: SluiceServer, client: RawKafka): Promise<void> {
  const parts: Uint8Array[] = [];
  const send = client.send;
  client.send = (bytes) => parts.push(bytes);
  const ids = Array.from({ length: PIPELINED }, () => client.request(K.ApiVersions, 0, {}));
  client.send = send;
  const before = kafkaWrites(server);
  client.send(Buffer.concat(parts));
  const answered: number[] = [];
  for (let i = 0; i < PIPELINED; i++) {
    answered.push(new DataView((await client.next()).buffer).getInt32(0));
  }
  assert.deepEqual(answered, ids, "answers keep request order");
  assert.equal(kafkaWrites(server) - before, 1, `${PIPELINED} answers, one socket write`);
}

describe("answers coalesced per turn", () => {
  test("pipelined requests on the native listener are answered in one write", async () => {
    await using served = await startTestServer();
    const pipe = await connectPipe(served.port);
    try {
      await assertStatsCoalesced(served.server, pipe);
    } finally {
      pipe.close();
    }
  });

  test("acks=all produces resolved by one group commit share socket writes", async () => {
    await using served = await startTestServer();
    const pipe = await connectPipe(served.port);
    try {
      const create = pipe.frame(API.CreateTopics, (w) =>
        writeMsgpack(w, { topics: [{ name: "t", partitions: 1, config: { fsync: "always" } }] }),
      );
      assert.equal((await pipe.exchange([create]))[0]!.errorCode, 0);
      const produces = Array.from({ length: PIPELINED }, (_, i) =>
        pipe.frame(API.Produce, (w) =>
          writeProduceRequest(w, {
            acks: -1,
            timeoutMs: 10_000,
            topics: [
              {
                topic: "t",
                partitions: [
                  { partition: 0, records: encodeRecordBatch([{ value: Uint8Array.of(i) }]) },
                ],
              },
            ],
          }),
        ),
      );
      const before = nativeWrites(served.server);
      const answers = await pipe.exchange(produces);
      const writes = nativeWrites(served.server) - before;
      for (const answer of pipe.answers.slice(-PIPELINED)) {
        const reader = new Reader(answer);
        readResponseHeader(reader);
        assert.equal(readProduceResponse(reader).topics[0]!.partitions[0]!.errorCode, 0);
      }
      assert.equal(answers.length, PIPELINED);
      // However many fdatasyncs the appends took (one covers every batch waiting), the answers
      // each resolves go out together: fewer writes than answers.
      assert.ok(writes < PIPELINED, `${writes} writes for ${PIPELINED} acks=all answers`);
    } finally {
      pipe.close();
    }
  });

  test("pipelined requests on the Kafka listener are answered in one write", async () => {
    await using served = await startKafkaServer();
    const client = await RawKafka.connect(served.port);
    try {
      await assertKafkaCoalesced(served.server, client);
    } finally {
      client.close();
    }
  });
});

const missing = opensslMissing();

describe("answers coalesced per turn, over TLS", { skip: missing }, () => {
  let certs: TestCerts;
  before(() => {
    certs = makeTestCerts();
  });
  after(() => certs[Symbol.dispose]());

  test("on the native listener", async () => {
    await using served = await startTestServer({
      tls: { certFile: certs.file("server.pem"), keyFile: certs.file("server.key") },
    });
    const pipe = await connectPipe(served.port, { ca: certs.pem("ca.pem") });
    try {
      await assertStatsCoalesced(served.server, pipe);
    } finally {
      pipe.close();
    }
  });

  test("on the Kafka listener", async () => {
    await using served = await startKafkaServer({
      server: {
        tls: { certFile: certs.file("server.pem"), keyFile: certs.file("server.key") },
      },
      kafka: { tls: true },
    });
    const client = await RawKafka.connectTls(served.port, { ca: certs.pem("ca.pem") });
    try {
      await assertKafkaCoalesced(served.server, client);
    } finally {
      client.close();
    }
  });
});

// Answers a connection has ready in one turn of the server's event loop go out in one socket
// write, on both listeners (sluice's own and Kafka's), plain and TLS: pipelined requests that
// arrive in one read, and acks=all produces that one group commit resolves together. Counted
// by the server's own `socketWrites` (Stats; `sluice_socket_writes_total`).

import assert from "node:assert/strict";
import type tls from "node:tls";
import { after, before, describe, test } from "node:test";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { writeMsgpack } from "../../../protocol/codec/control.ts";
import { API, readResponseHeader } from "../../../protocol/codec/frames.ts";
import { readProduceResponse, writeProduceRequest } from "../../../protocol/codec/produce.ts";
import { Reader } from "../../../protocol/codec/wire.ts";
import { API_KEYS as K } from "../../../protocol/kafka/mod.ts";
import type { SluiceServer } from "../../../protocol/server/mod.ts";
import { waitFor } from "../../helpers.ts";
import { RawKafka, startKafkaServer } from "../kafka/kafka_serving.ts";
import { makeTestCerts, opensslMissing, type TestCerts } from "../security/certs.ts";
import { RawClient } from "./raw_client.ts";
import { startTestServer } from "./serving.ts";

const PIPELINED = 8;

/**
 * Sends `frames` in one socket write and waits for their answers (RawClient splits them);
 * returns the answers' headers.
 */
async function exchange(
  client: RawClient,
  frames: Uint8Array[],
): Promise<{ correlationId: number; errorCode: number }[]> {
  const first = client.frames.length;
  client.send(Buffer.concat(frames));
  await waitFor(() => client.frames.length >= first + frames.length, "the answers");
  return client.frames.slice(first).map((answer) => readResponseHeader(new Reader(answer)));
}

async function connectPipe(port: number, tlsOptions?: tls.ConnectionOptions): Promise<RawClient> {
  const client =
    tlsOptions === undefined
      ? await RawClient.connect(port)
      : await RawClient.connectTls(port, tlsOptions);
  await client.handshake();
  return client;
}

function nativeWrites(server: SluiceServer): number {
  return server.stats()["socketWrites"] as number;
}

function kafkaWrites(server: SluiceServer): number {
  return (server.stats()["kafka"] as { socketWrites: number }).socketWrites;
}

/** Pipelined Stats requests in one read: their answers in order, in one write. */
async function assertStatsCoalesced(server: SluiceServer, pipe: RawClient): Promise<void> {
  const frames = Array.from({ length: PIPELINED }, () =>
    pipe.frame(API.Stats, (w) => writeMsgpack(w, {})),
  );
  const before = nativeWrites(server);
  const answers = await exchange(pipe, frames);
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
      assert.equal((await exchange(pipe, [create]))[0]!.errorCode, 0);
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
      const answers = await exchange(pipe, produces);
      const writes = nativeWrites(served.server) - before;
      for (const answer of pipe.frames.slice(-PIPELINED)) {
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

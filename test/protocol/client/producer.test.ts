// The Producer against the fake server: batching per partition within lingerMs and
// batchBytes, the partitioner, idempotent sequence numbers, and retries that resend the same
// bytes so the server writes a batch once and keeps each partition's order.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type BatchHeader, readBatchHeader } from "../../../record/mod.ts";
import { readProduceRequest, writeProduceResponse } from "../../../protocol/codec/produce.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { ClientError } from "../../../protocol/client/errors.ts";
import { partitionForKey } from "../../../protocol/client/partitioner.ts";
import { Producer, type ProducerOptions } from "../../../protocol/client/producer.ts";
import { ServerError, WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { waitFor } from "../../helpers.ts";
import { type FakeRequest, FakeServer } from "./fake_server.ts";

const utf8 = new TextEncoder();

async function withProducer(
  options: ProducerOptions,
  run: (producer: Producer, server: FakeServer) => Promise<void>,
  topics: Record<string, number> = { t: 1 },
): Promise<void> {
  const server = await FakeServer.start();
  for (const [name, partitions] of Object.entries(topics)) server.createTopic(name, partitions);
  const producer = new Producer({ port: server.port, retryBackoffMs: 1, ...options });
  try {
    await run(producer, server);
  } finally {
    await producer.close().catch(() => undefined);
    await server.close();
  }
}

/** Every batch the server received, in arrival order, with its partition and whole bytes. */
function receivedBatches(
  server: FakeServer,
): (BatchHeader & { partition: number; bytes: Uint8Array })[] {
  const batches: (BatchHeader & { partition: number; bytes: Uint8Array })[] = [];
  for (const request of server.produceRequests) {
    for (const topic of request.topics) {
      for (const { partition, records } of topic.partitions) {
        let at = 0;
        while (at < records.length) {
          const header = readBatchHeader(records, at);
          const bytes = records.subarray(at, at + 12 + header.batchLength);
          batches.push({ ...header, partition, bytes });
          at += bytes.length;
        }
      }
    }
  }
  return batches;
}

function values(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${i}`);
}

describe("Producer", () => {
  test("records sent together go out as one batch per partition in one request", () =>
    withProducer(
      { lingerMs: 5 },
      async (producer, server) => {
        const sends = [
          ...values("a", 10).map((value) => producer.send({ topic: "t", partition: 0, value })),
          ...values("b", 10).map((value) => producer.send({ topic: "t", partition: 1, value })),
        ];
        const results = await Promise.all(sends);
        assert.deepEqual(
          results.map((r) => [r.partition, r.offset]),
          [...values("", 10).map((_, i) => [0, i]), ...values("", 10).map((_, i) => [1, i])],
        );
        assert.equal(results[0]!.topic, "t");
        assert.equal(server.produceRequests.length, 1);
        const batches = receivedBatches(server);
        assert.equal(batches.length, 2);
        for (const batch of batches) {
          assert.equal(batch.producerId, 1000);
          assert.equal(batch.producerEpoch, 0);
          assert.equal(batch.baseSequence, 0);
          assert.equal(batch.recordCount, 10);
        }
        assert.deepEqual(server.values("t", 0), values("a", 10));
        assert.deepEqual(server.values("t", 1), values("b", 10));
      },
      { t: 2 },
    ));

  test("sequence numbers continue per partition: each batch starts where the last ended", () =>
    withProducer({ lingerMs: 0, batchBytes: 400 }, async (producer, server) => {
      const first = await Promise.all(
        values("x", 30).map((value) => producer.send({ topic: "t", value })),
      );
      await Promise.all(values("y", 7).map((value) => producer.send({ topic: "t", value })));
      assert.deepEqual(
        first.map((r) => r.offset),
        values("", 30).map((_, i) => i),
      );
      const batches = receivedBatches(server);
      assert.ok(batches.length > 2, `${batches.length} batches`);
      let expected = 0;
      for (const batch of batches) {
        assert.equal(batch.baseSequence, expected);
        assert.ok(batch.bytes.length <= 400, `batch of ${batch.bytes.length} bytes`);
        expected += batch.recordCount;
      }
      assert.equal(expected, 37);
      assert.deepEqual(server.values("t", 0), [...values("x", 30), ...values("y", 7)]);
    }));

  test("a batch never exceeds batchBytes, header included", () =>
    withProducer({ lingerMs: 20, batchBytes: 1024 }, async (producer, server) => {
      const value = new Uint8Array(90);
      await Promise.all(Array.from({ length: 100 }, () => producer.send({ topic: "t", value })));
      const batches = receivedBatches(server);
      assert.equal(
        batches.reduce((n, b) => n + b.recordCount, 0),
        100,
      );
      for (const batch of batches) assert.ok(batch.bytes.length <= 1024);
      // Full batches are sent without waiting: all but the last hold as many as fit.
      assert.ok(batches.length <= 12, `${batches.length} batches`);
    }));

  test("keyed records go to murmur2(key) % partitions, keyless ones stick per batch", () =>
    withProducer(
      { lingerMs: 1 },
      async (producer) => {
        for (const key of ["alpha", "beta", "gamma", "100:48069"]) {
          const result = await producer.send({ topic: "t", key, value: "v" });
          assert.equal(result.partition, partitionForKey(utf8.encode(key), 5));
        }
        const first = await Promise.all(
          values("k", 5).map((value) => producer.send({ topic: "t", value })),
        );
        assert.equal(new Set(first.map((r) => r.partition)).size, 1);
        const second = await Promise.all(
          values("k", 5).map((value) => producer.send({ topic: "t", value })),
        );
        assert.equal(new Set(second.map((r) => r.partition)).size, 1);
        assert.equal(second[0]!.partition, (first[0]!.partition + 1) % 5);
      },
      { t: 5 },
    ));

  test("a result for a partition the request did not carry answers no later batch", () =>
    withProducer(
      { lingerMs: 0, idempotent: false },
      async (producer, server) => {
        let produces = 0;
        const result = (partition: number, baseOffset: number) => ({
          partition,
          errorCode: 0,
          baseOffset,
          logStartOffset: 0,
          errorMessage: null,
        });
        server.hook = (request) => {
          if (request.apiKey !== API.Produce) return false;
          produces++;
          if (produces === 1) return false;
          const { correlationId, connection } = request;
          // The second request carries partition 0 and is answered for it and for partition
          // 1 too (offset 99); the third carries partition 1 and is answered for nothing.
          const partitions = produces === 2 ? [result(0, 5), result(1, 99)] : [];
          connection.respond(correlationId, (w) =>
            writeProduceResponse(w, { topics: [{ topic: "t", partitions }] }),
          );
          return true;
        };
        assert.equal((await producer.send({ topic: "t", value: "a", partition: 1 })).offset, 0);
        assert.equal((await producer.send({ topic: "t", value: "b", partition: 0 })).offset, 5);
        await assert.rejects(producer.send({ topic: "t", value: "c", partition: 1 }), {
          code: "MALFORMED_RESPONSE",
        });
      },
      { t: 2 },
    ));

  test("a batch written before the connection dropped is resent as is and written once", () =>
    withProducer({ lingerMs: 1 }, async (producer, server) => {
      let dropped = false;
      server.hook = (request) => {
        if (request.apiKey !== API.Produce || dropped) return false;
        dropped = true;
        // Write the batches, then lose the connection before answering.
        const produce = readProduceRequest(request.body);
        for (const { partition, records } of produce.topics[0]!.partitions) {
          server.appendTo("t", partition, records);
        }
        request.connection.destroy();
        return true;
      };
      const results = await Promise.all(
        values("r", 5).map((value) => producer.send({ topic: "t", value })),
      );
      assert.deepEqual(
        results.map((r) => r.offset),
        [0, 1, 2, 3, 4],
      );
      assert.deepEqual(server.values("t", 0), values("r", 5));
      const batches = receivedBatches(server);
      assert.equal(batches.length, 2);
      assert.deepEqual(batches[1]!.bytes, batches[0]!.bytes);
      assert.equal(server.connections.length, 2);
    }));

  test("a retriable failure among pipelined batches is retried in order, each written once", () =>
    withProducer({ lingerMs: 1, batchBytes: 300, maxInFlight: 5 }, async (producer, server) => {
      let produces = 0;
      server.hook = (request) => {
        if (request.apiKey !== API.Produce) return false;
        produces++;
        if (produces !== 2) return false;
        // The second batch fails; those sent after it then fail OUT_OF_ORDER_SEQUENCE.
        failPartition(request, WIRE_ERRORS.NOT_AVAILABLE);
        return true;
      };
      const sent = values("m", 200);
      const results = await Promise.all(sent.map((value) => producer.send({ topic: "t", value })));
      assert.deepEqual(
        results.map((r) => r.offset),
        sent.map((_, i) => i),
      );
      assert.deepEqual(server.values("t", 0), sent);
      const batches = receivedBatches(server);
      const written = server.batches("t", 0).map((b) => readBatchHeader(b));
      assert.ok(batches.length > written.length, "some batches were sent twice");
      let expected = 0;
      for (const batch of written) {
        assert.equal(batch.baseSequence, expected);
        expected += batch.recordCount;
      }
    }));

  test("a batch the server rejects fails its records; later batches are renumbered", () =>
    withProducer({ lingerMs: 1, batchBytes: 300, maxInFlight: 5 }, async (producer, server) => {
      let produces = 0;
      server.hook = (request) => {
        if (request.apiKey !== API.Produce) return false;
        produces++;
        if (produces !== 2) return false;
        failPartition(request, WIRE_ERRORS.CORRUPT_BATCH);
        return true;
      };
      const sent = values("c", 200);
      const settled = await Promise.allSettled(
        sent.map((value) => producer.send({ topic: "t", value })),
      );
      const failed = settled.flatMap((s, i) => (s.status === "rejected" ? [i] : []));
      assert.ok(failed.length > 0);
      for (const index of failed) {
        const reason = (settled[index] as PromiseRejectedResult).reason;
        assert.ok(reason instanceof ServerError);
        assert.equal(reason.code, "CORRUPT_BATCH");
      }
      // Exactly the second batch's records failed; the batches after it were renumbered.
      assert.equal(failed[0], receivedBatches(server)[0]!.recordCount);
      assert.equal(failed.length, receivedBatches(server)[1]!.recordCount);
      const kept = sent.filter((_, i) => !failed.includes(i));
      assert.deepEqual(server.values("t", 0), kept);
      let expected = 0;
      for (const batch of server.batches("t", 0).map((b) => readBatchHeader(b))) {
        assert.equal(batch.baseSequence, expected);
        expected += batch.recordCount;
      }
      assert.equal(expected, kept.length);
    }));

  test("acks 0 resolves once written to the socket, with offset -1", () =>
    withProducer({ acks: 0, lingerMs: 0 }, async (producer, server) => {
      const results = await Promise.all(
        values("z", 3).map((value) => producer.send({ topic: "t", value })),
      );
      assert.deepEqual(
        results.map((r) => r.offset),
        [-1, -1, -1],
      );
      await waitFor(() => server.values("t", 0).length === 3, "the records at the server");
      assert.equal(receivedBatches(server)[0]!.producerId, -1);
      assert.equal(server.produceRequests[0]!.acks, 0);
    }));

  test('acks is sent as given: "all" is -1, 1 is 1', async () => {
    for (const [acks, wire] of [
      ["all", -1],
      [1, 1],
    ] as const) {
      await withProducer({ acks, lingerMs: 0 }, async (producer, server) => {
        await producer.send({ topic: "t", value: "v" });
        assert.equal(server.produceRequests[0]!.acks, wire);
      });
    }
  });

  test("send with a callback reports through it", () =>
    withProducer({ lingerMs: 0 }, async (producer) => {
      const result = await new Promise((resolve, reject) => {
        producer.send({ topic: "t", value: "v" }, (error, metadata) => {
          if (error !== null) reject(error);
          else resolve(metadata);
        });
      });
      assert.deepEqual(result, { topic: "t", partition: 0, offset: 0 });
    }));

  test("an unknown topic rejects the send with UNKNOWN_TOPIC", () =>
    withProducer({}, async (producer) => {
      await assert.rejects(producer.send({ topic: "missing", value: "v" }), (error: unknown) => {
        assert.ok(error instanceof ServerError);
        assert.equal(error.code, "UNKNOWN_TOPIC");
        return true;
      });
      await assert.rejects(producer.send({ topic: "t", partition: 3, value: "v" }), {
        code: "UNKNOWN_PARTITION",
      });
    }));

  test("flush sends what lingers; close flushes, and later sends fail with CLOSED", () =>
    withProducer({ lingerMs: 60_000 }, async (producer, server) => {
      const pending = producer.send({ topic: "t", value: "late" });
      await producer.flush();
      assert.equal((await pending).offset, 0);
      const last = producer.send({ topic: "t", value: "last" });
      await producer.close();
      assert.equal((await last).offset, 1);
      assert.deepEqual(server.values("t", 0), ["late", "last"]);
      await assert.rejects(producer.send({ topic: "t", value: "x" }), (error: unknown) => {
        assert.ok(error instanceof ClientError);
        assert.equal(error.code, "CLOSED");
        return true;
      });
    }));

  test("more buffered than bufferBytesMax fails the send with a retriable BUFFER_FULL", () =>
    withProducer({ lingerMs: 60_000, bufferBytesMax: 1000 }, async (producer) => {
      const value = new Uint8Array(400);
      const kept = [producer.send({ topic: "t", value }), producer.send({ topic: "t", value })];
      await assert.rejects(producer.send({ topic: "t", value }), {
        code: "BUFFER_FULL",
        retriable: true,
      });
      await producer.flush();
      await Promise.all(kept);
    }));

  test("compressed batches carry the codec in their attributes and decode at the server", () =>
    withProducer({ lingerMs: 1, compression: "gzip" }, async (producer, server) => {
      const sent = values("gz", 50);
      await Promise.all(sent.map((value) => producer.send({ topic: "t", value })));
      assert.deepEqual(server.values("t", 0), sent);
      assert.equal(receivedBatches(server)[0]!.attributes & 0x07, 1);
      assert.throws(() => new Producer({ compression: "snappy" }), /snappy is not available/);
    }));

  test("a send the server never acknowledges fails after deliveryTimeoutMs", async () => {
    const server = await FakeServer.start();
    const port = server.port;
    await server.close();
    const producer = new Producer({ port, deliveryTimeoutMs: 30, retryBackoffMs: 1 });
    try {
      await assert.rejects(producer.send({ topic: "t", value: "v" }), {
        code: "CONNECT_FAILED",
        retriable: true,
      });
    } finally {
      await producer.close();
    }
  });

  test("undeliverable batches fail after deliveryTimeoutMs with the last error", async () => {
    const server = await FakeServer.start();
    server.createTopic("t", 1);
    const producer = new Producer({
      port: server.port,
      deliveryTimeoutMs: 40,
      lingerMs: 0,
      retryBackoffMs: 1,
    });
    try {
      await producer.send({ topic: "t", value: "first" });
      await server.close();
      await assert.rejects(producer.send({ topic: "t", value: "second" }), (error: unknown) => {
        assert.ok(error instanceof ClientError);
        assert.equal(error.code, "REQUEST_TIMED_OUT");
        assert.match(error.message, /not delivered within deliveryTimeoutMs 40; last error/);
        return true;
      });
    } finally {
      await producer.close();
    }
  });

  test("bad arguments throw at once", () =>
    withProducer({ batchBytes: 1000 }, async (producer) => {
      assert.throws(() => producer.send({ topic: "", value: "v" }), TypeError);
      assert.throws(() => producer.send({ topic: "t", value: 5 as unknown as string }), TypeError);
      assert.throws(() => producer.send({ topic: "t", value: "v", partition: -1 }), RangeError);
      assert.throws(
        () => producer.send({ topic: "t", value: new Uint8Array(2000) }),
        /Record of 2\d{3} bytes \(in a batch of its own\) exceeds batchBytes 1000/,
      );
      assert.throws(() => new Producer({ acks: 0, idempotent: true }), TypeError);
      assert.throws(() => new Producer({ lingerMs: -1 }), RangeError);
    }));
});

/** Answers a Produce request with `code` for every partition in it, writing nothing. */
function failPartition(request: FakeRequest, code: number): void {
  const produce = readProduceRequest(request.body);
  const topics = produce.topics.map((t) => ({
    topic: t.topic,
    partitions: t.partitions.map((p) => ({
      partition: p.partition,
      errorCode: code,
      baseOffset: -1,
      logStartOffset: 0,
      errorMessage: "injected",
    })),
  }));
  request.connection.respond(request.correlationId, (w) => writeProduceResponse(w, { topics }));
}

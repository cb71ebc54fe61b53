// The Kafka listener's traps, over a raw socket: ApiVersions' answer header is always v0 and
// an unknown ApiVersions version gets the v0 body with UNSUPPORTED_VERSION and the list;
// Produce is advertised from 0 (librdkafka turns compression off otherwise) but versions 0-2
// are refused; JoinGroup from 0; leader epochs are -1; Metadata auto-creates 4 partitions
// only when the request allows it; the advertised host is never `localhost`.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  API_KEYS as K,
  KAFKA_ERRORS,
  KafkaReader,
  MESSAGES,
  type Struct,
} from "../../../protocol/kafka/mod.ts";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { advertisedHostFor } from "../../../protocol/kafka/listener.ts";
import { waitFor } from "../../helpers.ts";
import { RawKafka, startKafkaServer } from "./kafka_serving.ts";

function rangeOf(answer: Struct, apiKey: number) {
  const entry = (answer["apiKeys"] as Struct[]).find((k) => k["apiKey"] === apiKey);
  return entry === undefined ? undefined : [entry["minVersion"], entry["maxVersion"]];
}

describe("kafka ApiVersions", () => {
  test("every ApiVersions version is answered with a v0 header and the same list", async () => {
    await using broker = await startKafkaServer();
    const client = await RawKafka.connect(broker.port);
    try {
      for (let version = 0; version <= 3; version++) {
        const answer = await client.call(K.ApiVersions, version, {
          clientSoftwareName: "raw",
          clientSoftwareVersion: "1",
        });
        assert.equal(answer["errorCode"], 0);
        assert.deepEqual(rangeOf(answer, K.Produce), [0, 9], `v${version}`);
        assert.deepEqual(rangeOf(answer, K.Fetch), [4, 12]);
        assert.deepEqual(rangeOf(answer, K.JoinGroup), [0, 6]);
        assert.equal((answer["apiKeys"] as Struct[]).length, MESSAGES.size);
      }
    } finally {
      client.close();
    }
  });

  test("an unknown ApiVersions version gets the v0 body with error 35 and the list", async () => {
    await using broker = await startKafkaServer();
    const client = await RawKafka.connect(broker.port);
    try {
      // Version 9, flexible header (tagged fields) as a newer client would send it.
      const frame = Uint8Array.from([
        0, 0, 0, 14, 0, 18, 0, 9, 0, 0, 0, 7, 0, 3, 0x6b, 0x63, 0x74, 0,
      ]);
      client.send(frame);
      const reader = new KafkaReader(await client.next());
      assert.equal(reader.int32(), 7, "correlation id, then the body: no tagged fields");
      assert.equal(reader.int16(), KAFKA_ERRORS.UNSUPPORTED_VERSION);
      const count = reader.int32();
      assert.equal(count, MESSAGES.size);
      const first = [reader.int16(), reader.int16(), reader.int16()];
      assert.deepEqual(first, [0, 0, 9], "Produce 0-9 first");
      // The connection stays open: a supported version is answered next.
      const answer = await client.call(K.ApiVersions, 2, {});
      assert.equal(answer["errorCode"], 0);
    } finally {
      client.close();
    }
  });

  test("Produce v0-2 is advertised, and refused per partition (UNSUPPORTED_VERSION)", async () => {
    await using broker = await startKafkaServer();
    const client = await RawKafka.connect(broker.port);
    try {
      await client.call(K.CreateTopics, 3, {
        topics: [
          { name: "t", numPartitions: 1, replicationFactor: 1, assignments: [], configs: [] },
        ],
        timeoutMs: 1000,
      });
      const answer = await client.call(K.Produce, 2, {
        acks: 1,
        timeoutMs: 1000,
        topics: [{ name: "t", partitions: [{ index: 0, records: new Uint8Array(70) }] }],
      });
      const partition = ((answer["responses"] as Struct[])[0]!["partitions"] as Struct[])[0]!;
      assert.equal(partition["errorCode"], KAFKA_ERRORS.UNSUPPORTED_VERSION);
      assert.equal(broker.server.engine.partition("t", 0).highWatermark, 0);
    } finally {
      client.close();
    }
  });

  test("Metadata reports leader epoch -1 and creates topics only when allowed", async () => {
    await using broker = await startKafkaServer();
    const client = await RawKafka.connect(broker.port);
    try {
      const refused = await client.call(K.Metadata, 9, {
        topics: [{ name: "not-yet" }],
        allowAutoTopicCreation: false,
      });
      const missing = (refused["topics"] as Struct[])[0]!;
      assert.equal(missing["errorCode"], KAFKA_ERRORS.UNKNOWN_TOPIC_OR_PARTITION);
      const created = await client.call(K.Metadata, 9, {
        topics: [{ name: "not-yet" }],
        allowAutoTopicCreation: true,
      });
      const topic = (created["topics"] as Struct[])[0]!;
      assert.equal(topic["errorCode"], 0);
      const partitions = topic["partitions"] as Struct[];
      assert.equal(partitions.length, 4);
      assert.equal(partitions[0]!["leaderEpoch"], -1);
      const brokers = created["brokers"] as Struct[];
      assert.deepEqual(brokers, [{ nodeId: 0, host: "127.0.0.1", port: broker.port, rack: null }]);
    } finally {
      client.close();
    }
  });

  test("the advertised host is never localhost", () => {
    assert.equal(advertisedHostFor("localhost"), "127.0.0.1");
    assert.equal(advertisedHostFor("0.0.0.0"), "127.0.0.1");
    assert.equal(advertisedHostFor("10.1.2.3"), "10.1.2.3");
  });
});

describe("kafka Produce and Fetch", () => {
  test("Fetch v12 answers the stored batch bytes as views, counted, never records", async () => {
    await using broker = await startKafkaServer();
    await broker.server.engine.createTopic("zc", { partitions: 1 });
    const utf8 = new TextEncoder();
    const batch = encodeRecordBatch([
      { key: utf8.encode("a"), value: utf8.encode("1") },
      { key: utf8.encode("b"), value: utf8.encode("2") },
    ]);
    const client = await RawKafka.connect(broker.port);
    try {
      const produced = await client.call(K.Produce, 9, {
        transactionalId: null,
        acks: -1,
        // Long enough for an fsync on a busy machine: this test is about the Fetch answer.
        timeoutMs: 30_000,
        topics: [{ name: "zc", partitions: [{ index: 0, records: batch }] }],
      });
      const p = ((produced["responses"] as Struct[])[0]!["partitions"] as Struct[])[0]!;
      assert.equal(p["errorCode"], 0);
      assert.equal(p["baseOffset"], 0);
      const before = { ...broker.server.kafka!.stats };
      const fetched = await client.call(K.Fetch, 12, {
        maxWaitMs: 0,
        minBytes: 1,
        maxBytes: 1 << 20,
        topics: [
          {
            topic: "zc",
            partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20 }],
          },
        ],
      });
      const f = ((fetched["responses"] as Struct[])[0]!["partitions"] as Struct[])[0]!;
      assert.equal(f["highWatermark"], 2);
      assert.deepEqual([...(f["records"] as Uint8Array)], [...batch], "the producer's bytes");
      const after = broker.server.kafka!.stats;
      assert.equal(after.fetchBatchViews - before.fetchBatchViews, 1);
      assert.equal(after.fetchBytes - before.fetchBytes, batch.length);
      const stats = broker.server.stats()["kafka"] as Record<string, number>;
      assert.equal(stats["connections"], 1);
      assert.equal(stats["produceBatches"], 1);
    } finally {
      client.close();
    }
  });
});

describe("kafka backpressure", () => {
  test("a client that sends Fetches without reading is served again once it reads", async () => {
    await using broker = await startKafkaServer({
      server: { limits: { outboxBytesMax: 1 << 20 } },
    });
    await broker.server.engine.createTopic("bp", { partitions: 1 });
    const value = new Uint8Array(1000);
    const batch = encodeRecordBatch(Array.from({ length: 500 }, () => ({ key: null, value })));
    await broker.server.engine.partition("bp", 0).append(batch);
    const client = await RawKafka.connect(broker.port);
    try {
      const requests = 120;
      const partitions = [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20 }];
      const body = {
        maxWaitMs: 0,
        minBytes: 1,
        maxBytes: 1 << 20,
        topics: [{ topic: "bp", partitions }],
      };
      for (let i = 0; i < requests; i++) client.request(K.Fetch, 4, body);
      // About 60 MB of answers are owed; the server stops serving once its outbox and the
      // socket's buffers are full, and goes on as they drain: every answer arrives, in order.
      await waitFor(() => broker.server.kafka!.stats.fetchBatchViews > 0, "the first answers");
      for (let i = 0; i < requests; i++) {
        const frame = await client.next();
        assert.equal(new DataView(frame.buffer, frame.byteOffset).getInt32(0), i + 1);
      }
      assert.equal(broker.server.kafka!.stats.fetchBatchViews, requests);
    } finally {
      client.close();
    }
  });
});

describe("kafka ListOffsets", () => {
  test("earliest, latest and by timestamp", async () => {
    await using broker = await startKafkaServer();
    await broker.server.engine.createTopic("ts", { partitions: 1 });
    const log = broker.server.engine.partition("ts", 0);
    const value = new TextEncoder().encode("v");
    for (const timestamp of [1_000, 2_000, 3_000]) {
      await log.append(encodeRecordBatch([{ key: null, value, timestamp }]));
    }
    const client = await RawKafka.connect(broker.port);
    try {
      const query = async (timestamp: number, version: number) => {
        const answer = await client.call(K.ListOffsets, version, {
          replicaId: -1,
          topics: [{ name: "ts", partitions: [{ partitionIndex: 0, timestamp }] }],
        });
        const p = ((answer["topics"] as Struct[])[0]!["partitions"] as Struct[])[0]!;
        assert.equal(p["errorCode"], 0);
        return { offset: p["offset"], timestamp: p["timestamp"] };
      };
      for (const version of [1, 6]) {
        assert.equal((await query(-2, version)).offset, 0, "earliest");
        assert.equal((await query(-1, version)).offset, 3, "latest");
        // As Kafka answers: the found record's offset and its own timestamp, not the one asked.
        assert.deepEqual(await query(1_500, version), { offset: 1, timestamp: 2_000 });
        assert.deepEqual(await query(9_000, version), { offset: -1, timestamp: -1 });
      }
    } finally {
      client.close();
    }
  });
});

describe("kafka hostile frames", () => {
  async function expectClosed(port: number, bytes: Uint8Array): Promise<void> {
    const client = await RawKafka.connect(port);
    client.send(bytes);
    await client.closed;
  }

  test("bad frames close only their own connection", async () => {
    await using broker = await startKafkaServer({ server: { limits: { frameBytesMax: 1 << 20 } } });
    // Unknown API key 999.
    await expectClosed(
      broker.port,
      Uint8Array.from([0, 0, 0, 10, 3, 231, 0, 0, 0, 0, 0, 1, 255, 255]),
    );
    // Fetch version 3 (below the advertised 4).
    await expectClosed(
      broker.port,
      Uint8Array.from([0, 0, 0, 10, 0, 1, 0, 3, 0, 0, 0, 1, 255, 255]),
    );
    // A frame announcing 2 GiB - 1: refused from its size alone.
    await expectClosed(broker.port, Uint8Array.from([0x7f, 0xff, 0xff, 0xff, 0, 0]));
    // A negative size.
    await expectClosed(broker.port, Uint8Array.from([0xff, 0xff, 0xff, 0xfe]));
    // Metadata v1 whose topics array claims a billion entries in 4 bytes.
    await expectClosed(
      broker.port,
      Uint8Array.from([0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 1, 255, 255, 0x3b, 0x9a, 0xca, 0x00]),
    );
    // The listener still serves.
    const client = await RawKafka.connect(broker.port);
    try {
      const answer = await client.call(K.ApiVersions, 3, {});
      assert.equal(answer["errorCode"], 0);
    } finally {
      client.close();
    }
  });
});

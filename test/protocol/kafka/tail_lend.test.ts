// Kafka Fetch at the tail lends views of the tail cache's chunks (engine/segment.ts), as the
// sluice protocol's fetch does: a chunk is reused for later appends once the sockets of the
// answers holding views of it took them all. On a broker whose logs share a 1 MiB tail-cache
// budget chunks are dropped and taken up again all the time; two Kafka consumers tail one
// partition while a producer appends to it (one with a small partition_max_bytes, so its
// answers cut batches out of every chunk), and each must get every record once, in order,
// byte for byte. And answers that wait in the listener's outbox (a client not reading its
// socket) keep their chunk out of reuse while the tail cache moves on past it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  API_KEYS as K,
  codecFor,
  KafkaReader,
  MESSAGES,
  type Struct,
} from "../../../protocol/kafka/mod.ts";
import { decodeRecordBatches } from "../../../record/mod.ts";
import { tempDir, waitFor } from "../../helpers.ts";
import {
  assertFirstRecords,
  batchOf,
  produceRecords,
  RECORD_BYTES,
  RECORDS,
  recordValue,
} from "../tail_records.ts";
import { RawKafka, startKafkaServer } from "./kafka_serving.ts";

const TOPIC = "tail";
const FETCH_V11 = codecFor(MESSAGES.get(K.Fetch)!, 11);

/** A Fetch v11 body for partition 0 of TOPIC. */
function fetchBody(fetchOffset: number, partitionMaxBytes: number, maxWaitMs: number): Struct {
  return {
    replicaId: -1,
    maxWaitMs,
    minBytes: 1,
    maxBytes: 4 << 20,
    isolationLevel: 0,
    sessionId: 0,
    sessionEpoch: -1,
    topics: [
      {
        topic: TOPIC,
        partitions: [
          {
            partition: 0,
            currentLeaderEpoch: -1,
            fetchOffset,
            logStartOffset: -1,
            partitionMaxBytes,
          },
        ],
      },
    ],
    forgottenTopicsData: [],
    rackId: "",
  };
}

/** Fetches (long-polling) until RECORDS records came, each checked against what was produced. */
async function tail(port: number, partitionMaxBytes: number): Promise<number> {
  const client = await RawKafka.connect(port);
  let next = 0;
  try {
    for (let round = 0; next < RECORDS; round++) {
      assert.ok(round < 100_000, "the consumer gets to the end");
      const fetched = await client.call(K.Fetch, 11, fetchBody(next, partitionMaxBytes, 200));
      const answer = ((fetched["responses"] as Struct[])[0]!["partitions"] as Struct[])[0]!;
      assert.equal(answer["errorCode"], 0);
      const records = answer["records"] as Uint8Array | null;
      if (records === null || records.length === 0) continue;
      for (const batch of decodeRecordBatches(records)) {
        for (const record of batch.records) {
          if (record.offset < next) continue;
          assert.equal(record.offset, next, "every record once, in order");
          assert.deepEqual(record.value, recordValue(next), `record ${next} as produced`);
          next++;
        }
      }
    }
    return next;
  } finally {
    client.close();
  }
}

describe("kafka fetches lend tail-cache chunks", () => {
  test("tailing Kafka consumers get every byte as produced while chunks are reused", async () => {
    using dir = tempDir();
    await using broker = await startKafkaServer({
      dataDir: dir.path,
      server: { engineOptions: { tailCacheTotalBytes: 1024 * 1024 } },
    });
    await broker.server.engine.createTopic(TOPIC, { config: { fsync: "never" } });
    const readers = [tail(broker.port, 1024 * 1024), tail(broker.port, 3 * RECORD_BYTES)];
    await produceRecords(broker.server.port, TOPIC);
    assert.deepEqual(await Promise.all(readers), [RECORDS, RECORDS]);
  });

  test("answers waiting in the outbox keep their chunk until the socket takes them", async () => {
    using dir = tempDir();
    await using broker = await startKafkaServer({
      dataDir: dir.path,
      server: { engineOptions: { tailCacheTotalBytes: 1024 * 1024 } },
    });
    const engine = broker.server.engine;
    await engine.createTopic(TOPIC, { config: { fsync: "never" } });
    // ~600 KiB: every batch in the log's first chunk.
    const FIRST = 300;
    for (let i = 0; i < FIRST; i++) await engine.append(TOPIC, 0, batchOf(i));
    const client = await RawKafka.connect(broker.port);
    try {
      client.pause();
      const ids: number[] = [];
      for (let i = 0; i < 24; i++) ids.push(client.request(K.Fetch, 11, fetchBody(0, 1 << 20, 0)));
      const stats = broker.server.kafka!.stats;
      await waitFor(() => stats.fetchBytes > 8 * 1024 * 1024, "answers queued behind the socket");
      // The tail cache moves past the first chunk many times over; the answers queued hold
      // views of it, and a chunk taken up again would be overwritten under them.
      for (let i = FIRST; i < FIRST + 4_000; i++) await engine.append(TOPIC, 0, batchOf(i));
      client.resume();
      for (const id of ids) {
        const reader = new KafkaReader(await client.next());
        assert.equal(reader.int32(), id);
        // Fetch v11 is not a flexible version: no tagged fields in the answer's header.
        const fetched = FETCH_V11.response.decode(reader);
        const answer = ((fetched["responses"] as Struct[])[0]!["partitions"] as Struct[])[0]!;
        assert.equal(answer["errorCode"], 0);
        assertFirstRecords([answer["records"] as Uint8Array], FIRST);
      }
    } finally {
      client.close();
    }
  });
});

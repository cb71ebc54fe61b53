// Kafka Fetch of bytes the page cache does not hold (engine/cold_read.ts): on a broker whose
// appends are written with O_DIRECT (`directWrites: "all"`, the broker's default), a Kafka
// consumer reading from offset 0, far behind the tail cache, is served from reads made on the
// thread pool first, as the sluice protocol's fetch is; every record comes back once, in
// order, byte for byte.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { coldReadCounts } from "../../../engine/cold_read.ts";
import { loadDirectWrites } from "../../../engine/direct_io.ts";
import { API_KEYS as K, type Struct } from "../../../protocol/kafka/mod.ts";
import { Producer } from "../../../protocol/client/mod.ts";
import { decodeRecordBatches } from "../../../record/mod.ts";
import { tempDir } from "../../helpers.ts";
import { RawKafka, startKafkaServer } from "./kafka_serving.ts";

const RECORD_BYTES = 4096;
/** 24 MiB a partition: past the tail cache (8 MiB a segment) several times over. */
const RECORDS = 12_000;
const PARTITIONS = 2;

describe("kafka cold fetches", () => {
  test("a Kafka consumer catching up on a log written direct gets every record", async (t) => {
    using dir = tempDir();
    const direct = await loadDirectWrites(dir.path);
    if (direct?.residentPages === undefined) {
      return t.skip("no O_DIRECT or mincore here (Bun on Linux only)");
    }
    await using broker = await startKafkaServer({
      dataDir: dir.path,
      server: { engineOptions: { directWrites: "all" } },
    });
    await broker.server.engine.createTopic("cold", { partitions: PARTITIONS });
    const producer = new Producer({ port: broker.server.port, acks: 1, lingerMs: 2 });
    try {
      const sends = [];
      for (let i = 0; i < RECORDS; i++) {
        const value = new Uint8Array(RECORD_BYTES).fill(i % 251);
        new DataView(value.buffer).setUint32(0, i);
        sends.push(producer.send({ topic: "cold", partition: i % PARTITIONS, value }));
      }
      await Promise.all(sends);
    } finally {
      await producer.close();
    }
    const started = coldReadCounts.started;
    const served = coldReadCounts.served;
    const client = await RawKafka.connect(broker.port);
    try {
      const next = Array.from({ length: PARTITIONS }, () => 0);
      const seen: number[][] = Array.from({ length: PARTITIONS }, () => []);
      for (let round = 0; next.some((n) => n < RECORDS / PARTITIONS); round++) {
        assert.ok(round < 1_000, "the consumer gets to the end");
        const fetched = await client.call(K.Fetch, 11, {
          replicaId: -1,
          maxWaitMs: 0,
          minBytes: 1,
          maxBytes: 2 << 20,
          isolationLevel: 0,
          sessionId: 0,
          sessionEpoch: -1,
          topics: [
            {
              topic: "cold",
              partitions: next.map((fetchOffset, partition) => ({
                partition,
                currentLeaderEpoch: -1,
                fetchOffset,
                logStartOffset: -1,
                partitionMaxBytes: 1 << 20,
              })),
            },
          ],
          forgottenTopicsData: [],
          rackId: "",
        });
        const answers = (fetched["responses"] as Struct[])[0]!["partitions"] as Struct[];
        for (const answer of answers) {
          assert.equal(answer["errorCode"], 0);
          const partition = answer["partitionIndex"] as number;
          const records = answer["records"] as Uint8Array | null;
          if (records === null || records.length === 0) continue;
          for (const batch of decodeRecordBatches(records)) {
            for (const record of batch.records) {
              if (record.offset < next[partition]!) continue;
              const value = record.value!;
              const index = new DataView(value.buffer, value.byteOffset).getUint32(0);
              assert.equal(value.length, RECORD_BYTES);
              assert.equal(value[RECORD_BYTES - 1], index % 251, `record ${index} intact`);
              seen[partition]!.push(index);
              next[partition] = record.offset + 1;
            }
          }
        }
      }
      for (let partition = 0; partition < PARTITIONS; partition++) {
        const expected = Array.from(
          { length: RECORDS / PARTITIONS },
          (_, i) => i * PARTITIONS + partition,
        );
        assert.deepEqual(seen[partition], expected, `partition ${partition}: each once, in order`);
      }
    } finally {
      client.close();
    }
    assert.ok(coldReadCounts.started > started, "bytes were read cold");
    assert.ok(coldReadCounts.served > served, "and served from the buffers");
  });
});

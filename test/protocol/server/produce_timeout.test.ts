// An acks=all Produce is answered within its timeout_ms (PROTOCOL.md section 5), as Kafka's
// broker answers: with fdatasync held back through the engine's FileIO, each partition gets
// REQUEST_TIMED_OUT once timeout_ms has passed, the connection keeps serving, and once the
// sync is let go the batch becomes durable and readable exactly once (nothing lost, nothing
// appended twice). Both listeners: sluice's own and Kafka's.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  decodeRecordBatches,
  encodeRecordBatch,
  type FileIO,
  realFileIO,
} from "../../../engine/mod.ts";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { readProduceResponse, writeProduceRequest } from "../../../protocol/codec/produce.ts";
import { Producer } from "../../../protocol/client/mod.ts";
import { API_KEYS as K, KAFKA_ERRORS } from "../../../protocol/kafka/mod.ts";
import type { SluiceServer } from "../../../protocol/server/mod.ts";
import { waitFor } from "../../helpers.ts";
import type { Struct } from "../../../protocol/kafka/schema.ts";
import { RawKafka, startKafkaServer } from "../kafka/kafka_serving.ts";
import { connected, startTestServer } from "./serving.ts";

/** realFileIO whose fdatasyncs wait while held (counted as they start). */
class HeldSyncs {
  held = false;
  started = 0;
  #release: (() => void) | undefined;
  #gate: Promise<void> | undefined;

  readonly io: FileIO = {
    ...realFileIO,
    datasync: async (fd) => {
      if (this.held) {
        this.started++;
        this.#gate ??= new Promise((resolve) => {
          this.#release = resolve;
        });
        await this.#gate;
      }
      return realFileIO.datasync(fd);
    },
  };

  hold(): void {
    this.held = true;
  }

  let(): void {
    this.held = false;
    this.#release?.();
    this.#gate = undefined;
  }
}

const TOPICS = [
  { name: "always", fsync: "always" },
  { name: "never", fsync: "never" },
] as const;

async function createTopics(server: SluiceServer): Promise<void> {
  for (const { name, fsync } of TOPICS) {
    await server.engine.createTopic(name, { partitions: 1, config: { fsync } });
  }
}

function batchOf(value: string): Uint8Array {
  return encodeRecordBatch([{ value: new TextEncoder().encode(value) }], { timestamp: 1_000 });
}

/** The values stored in a partition, read through the engine (to count duplicates). */
function storedValues(server: SluiceServer, topic: string): string[] {
  const values: string[] = [];
  for (const view of server.engine.partition(topic, 0).read(0, 1 << 20).views) {
    for (const batch of decodeRecordBatches(view)) {
      for (const record of batch.records) values.push(new TextDecoder().decode(record.value!));
    }
  }
  return values;
}

describe("acks=all Produce honours timeout_ms", () => {
  test("sluice listener: REQUEST_TIMED_OUT per partition, then durable once", async () => {
    const syncs = new HeldSyncs();
    await using served = await startTestServer({ engineOptions: { io: syncs.io } });
    await createTopics(served.server);
    using client = await connected(served.port);
    syncs.hold();
    const id = client.request(
      API.Produce,
      (w) =>
        writeProduceRequest(w, {
          acks: -1,
          timeoutMs: 100,
          topics: TOPICS.map(({ name }) => ({
            topic: name,
            partitions: [{ partition: 0, records: batchOf(`${name}-a`) }],
          })),
        }),
      2,
    );
    const { errorCode, reader } = await client.response(id);
    assert.equal(errorCode, 0, "per-partition errors, not a request-level one");
    const topics = readProduceResponse(reader, 2).topics;
    for (const [i, { name }] of TOPICS.entries()) {
      assert.equal(topics[i]!.topic, name);
      const p = topics[i]!.partitions[0]!;
      assert.equal(p.partition, 0);
      assert.equal(p.errorCode, WIRE_ERRORS.REQUEST_TIMED_OUT, `${name}: ${p.errorMessage}`);
      assert.equal(p.baseOffset, -1);
      assert.equal(p.acceptedBatches, 0);
      assert.match(p.errorMessage ?? "", /timeout_ms 100 ms/);
    }
    assert.ok(syncs.started > 0, "the answer came while an fdatasync was held");
    // The connection keeps serving while the sync is still held.
    const stats = client.request(API.Stats, (w) => writeMsgpack(w, {}));
    const answer = await client.response(stats);
    assert.equal(answer.errorCode, 0);
    assert.equal(typeof readMsgpack(answer.reader, "stats")["uptimeMs"], "number");
    syncs.let();
    for (const { name } of TOPICS) {
      await waitFor(() => served.server.engine.partition(name, 0).highWatermark === 1, name);
    }
    // The next acks=all produce lands after the timed-out one, which was appended once.
    const next = client.request(API.Produce, (w) =>
      writeProduceRequest(w, {
        acks: -1,
        timeoutMs: 10_000,
        topics: [{ topic: "always", partitions: [{ partition: 0, records: batchOf("b") }] }],
      }),
    );
    const done = readProduceResponse((await client.response(next)).reader).topics[0]!;
    assert.equal(done.partitions[0]!.errorCode, 0);
    assert.equal(done.partitions[0]!.baseOffset, 1);
    assert.deepEqual(storedValues(served.server, "always"), ["always-a", "b"]);
    assert.deepEqual(storedValues(served.server, "never"), ["never-a"]);
  });

  test("an acks=all produce that is durable in time is answered as before", async () => {
    await using served = await startTestServer();
    await createTopics(served.server);
    using client = await connected(served.port);
    const id = client.request(API.Produce, (w) =>
      writeProduceRequest(w, {
        acks: -1,
        timeoutMs: 30_000,
        topics: [{ topic: "always", partitions: [{ partition: 0, records: batchOf("x") }] }],
      }),
    );
    const result = readProduceResponse((await client.response(id)).reader).topics[0]!;
    assert.equal(result.partitions[0]!.errorCode, 0);
    assert.equal(result.partitions[0]!.baseOffset, 0);
  });

  test("an idempotent Producer retries a timed-out batch and it is stored once", async () => {
    const syncs = new HeldSyncs();
    await using served = await startTestServer({ engineOptions: { io: syncs.io } });
    await createTopics(served.server);
    const producer = new Producer({
      port: served.port,
      acks: "all",
      idempotent: true,
      requestTimeoutMs: 200,
      deliveryTimeoutMs: 60_000,
    });
    try {
      await producer.send({ topic: "always", value: new TextEncoder().encode("warm") });
      syncs.hold();
      const sent = producer.send({ topic: "always", value: new TextEncoder().encode("once") })!;
      const timedOut = () => served.server.latency().errors.get(WIRE_ERRORS.REQUEST_TIMED_OUT) ?? 0;
      await waitFor(() => timedOut() >= 2, "the batch and a retry answered REQUEST_TIMED_OUT");
      syncs.let();
      const metadata = await sent;
      assert.equal(metadata.offset, 1, "the retry was answered with the first offset");
      assert.deepEqual(storedValues(served.server, "always"), ["warm", "once"]);
    } finally {
      syncs.let();
      await producer.close();
    }
  });

  test("Kafka listener: REQUEST_TIMED_OUT per partition, then durable once", async () => {
    const syncs = new HeldSyncs();
    await using broker = await startKafkaServer({ server: { engineOptions: { io: syncs.io } } });
    await createTopics(broker.server);
    const client = await RawKafka.connect(broker.port);
    try {
      syncs.hold();
      const answer = await client.call(K.Produce, 7, {
        transactionalId: null,
        acks: -1,
        timeoutMs: 100,
        topics: TOPICS.map(({ name }) => ({
          name,
          partitions: [{ index: 0, records: batchOf(`${name}-k`) }],
        })),
      });
      const responses = answer["responses"] as Struct[];
      for (const [i, { name }] of TOPICS.entries()) {
        const p = (responses[i]!["partitions"] as Struct[])[0]!;
        assert.equal(p["index"], 0);
        assert.equal(p["errorCode"], KAFKA_ERRORS.REQUEST_TIMED_OUT, `${name}`);
        assert.equal(p["baseOffset"], -1);
      }
      const meta = await client.call(K.Metadata, 9, {
        topics: null,
        allowAutoTopicCreation: false,
      });
      assert.equal((meta["topics"] as Struct[]).length, TOPICS.length, "still serving");
      syncs.let();
      for (const { name } of TOPICS) {
        await waitFor(() => broker.server.engine.partition(name, 0).highWatermark === 1, name);
        assert.deepEqual(storedValues(broker.server, name), [`${name}-k`]);
      }
    } finally {
      syncs.let();
      client.close();
    }
  });
});

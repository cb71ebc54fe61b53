// @platformatic/kafka 2.x, unchanged, against the Kafka listener. It speaks only recent,
// flexible versions (Metadata 9+, Produce 9+, Fetch 12+, OffsetFetch 8, FindCoordinator 4,
// CreateTopics 7, DeleteTopics 6), so it exercises the compact encodings and tagged fields:
// create a topic, produce keyed records, consume them with a group, commit, and delete.
// @platformatic/kafka is a devDependency for this test alone: the one maintained npm client
// that speaks only flexible versions, so it checks the half of the listener kafkajs never uses.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  Admin,
  Consumer,
  Producer,
  stringDeserializers,
  stringSerializers,
} from "@platformatic/kafka";
import { startKafkaServer } from "./kafka_serving.ts";

describe("@platformatic/kafka against the Kafka listener", () => {
  test("create, produce, consume with a group, commit, delete", async () => {
    await using broker = await startKafkaServer();
    const bootstrapBrokers = [broker.broker];
    const admin = new Admin({ clientId: "admin", bootstrapBrokers });
    const producer = new Producer({
      clientId: "p",
      bootstrapBrokers,
      serializers: stringSerializers,
    });
    const consumer = new Consumer({
      clientId: "c",
      groupId: "pg",
      bootstrapBrokers,
      deserializers: stringDeserializers,
    });
    try {
      await admin.createTopics({ topics: ["pt"], partitions: 4, replicas: 1 });
      assert.equal(broker.server.engine.describeTopic("pt").partitions, 4);
      const messages = Array.from({ length: 200 }, (_, i) => ({
        topic: "pt",
        key: `k${i}`,
        value: `v${i}`,
      }));
      await producer.send({ messages });
      // Committed by hand, record by record (autocommit would commit on a timer).
      const options = { topics: ["pt"], mode: "earliest" as const, autocommit: false };
      const stream = await consumer.consume(options);
      const seen = new Set<string>();
      for await (const message of stream) {
        seen.add(message.value as string);
        await message.commit();
        if (seen.size === 200) break;
      }
      await stream.close();
      assert.equal(seen.size, 200);
      const committed = broker.server.engine.offsets.fetchGroup("pg").get("pt");
      let total = 0;
      for (const offset of committed?.values() ?? []) total += offset.offset;
      assert.equal(total, 200, "the group's commits cover every record");
      await admin.deleteTopics({ topics: ["pt"] });
      assert.equal(broker.server.engine.listTopics().length, 0);
    } finally {
      await consumer.close(true);
      await producer.close();
      await admin.close();
    }
  });

  test("a KIP-848 consumer group (groupProtocol consumer) onto sluice's coordinator", async () => {
    await using broker = await startKafkaServer();
    const bootstrapBrokers = [broker.broker];
    await broker.server.engine.createTopic("k8", { partitions: 4 });
    const producer = new Producer({
      clientId: "p",
      bootstrapBrokers,
      serializers: stringSerializers,
    });
    const consumer = new Consumer({
      clientId: "c848",
      groupId: "g848",
      groupProtocol: "consumer",
      bootstrapBrokers,
      deserializers: stringDeserializers,
    });
    try {
      const messages = Array.from({ length: 100 }, (_, i) => ({
        topic: "k8",
        key: `k${i}`,
        value: `v${i}`,
      }));
      await producer.send({ messages });
      const options = { topics: ["k8"], mode: "earliest" as const, autocommit: false };
      const stream = await consumer.consume(options);
      const seen = new Set<string>();
      for await (const message of stream) {
        seen.add(message.value as string);
        await message.commit();
        if (seen.size === 100) break;
      }
      await stream.close();
      assert.equal(seen.size, 100);
      const described = broker.server.engine.offsets.fetchGroup("g848").get("k8");
      let total = 0;
      for (const offset of described?.values() ?? []) total += offset.offset;
      assert.equal(total, 100, "commits checked by the coordinator, with the member's epoch");
    } finally {
      await consumer.close(true);
      await producer.close();
    }
  });
});

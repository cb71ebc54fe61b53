// The sluice-kafka driver: `sluice serve --kafka-port 0` in a child process, driven by the
// kafka driver (kafkajs). A topic, a producer, a consumer in a group, every message received,
// then everything closed (the child stopped).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createDriver } from "../../bench/drivers/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";

describe("sluice-kafka driver", () => {
  test("produces and consumes through the Kafka listener of a child broker", async () => {
    using dir = tempDir();
    const driver = await createDriver("sluice-kafka", { workDir: dir.path, options: {} });
    try {
      await driver.initialize();
      assert.equal(driver.settings()["clientLibrary"], "kafkajs 2.2.4");
      assert.equal(driver.brokerProcess?.()?.kind, "pid");
      await driver.createTopic("t", 2);
      await driver.createSubscription?.("t", "s");
      let received = 0;
      const consumer = await driver.createConsumer("t", "s", () => {
        received++;
      });
      const producer = await driver.createProducer("t");
      const payload = new Uint8Array(100).fill(7);
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          producer.sendAsync(new TextEncoder().encode(`k${i}`), payload),
        ),
      );
      await waitFor(() => received >= 50, "50 messages through the Kafka listener", 30_000);
      assert.equal(received, 50);
      await producer.close();
      await consumer.close();
      await driver.deleteTopic("t");
    } finally {
      await driver.close();
    }
  });
});

// The sluice-kafka driver: `sluice serve --kafka-port 0` in a child process, driven by the
// kafka driver (kafkajs). A topic, a producer, a consumer in a group, every message received,
// then everything closed (the child stopped); plaintext, and with SASL SCRAM over TLS.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Driver } from "../../bench/driver.ts";
import { createDriver } from "../../bench/drivers/mod.ts";
import { createKafkaDriver, kafkaOptions } from "../../bench/drivers/kafka.ts";
import { opensslMissing } from "../protocol/security/certs.ts";
import { tempDir, waitFor } from "../helpers.ts";

const missing = opensslMissing();

async function roundTrip(options: Record<string, string>, check = (_: Driver) => {}) {
  using dir = tempDir();
  const driver = await createDriver("sluice-kafka", { workDir: dir.path, options });
  try {
    await driver.initialize();
    check(driver);
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
}

describe("sluice-kafka driver", () => {
  test("produces and consumes through the Kafka listener of a child broker", () =>
    roundTrip({}, (driver) => {
      assert.equal(driver.settings()["security"], "none (plaintext)");
    }));

  test(
    "sasl=scram-sha-512,tls=true: SASL_SSL to a child with --auth and --kafka-tls",
    {
      skip: missing ?? false,
    },
    () =>
      roundTrip({ sasl: "scram-sha-512", tls: "true" }, (driver) => {
        assert.match(
          String(driver.settings()["security"]),
          /^TLS \(CA: .*\) \+ SASL scram-sha-512 as bench$/,
        );
      }),
  );

  test("the kafka driver's security options are checked, and the password is never shown", () => {
    assert.throws(() => kafkaOptions({ sasl: "scram-sha-256" }), /needs username=NAME/);
    assert.throws(() => kafkaOptions({ sasl: "gssapi", username: "u", password: "p" }), RangeError);
    assert.throws(() => kafkaOptions({ "tls-ca-file": "/ca.pem" }), /needs tls=true/);
    const options = kafkaOptions({ sasl: "plain", username: "u", password: "secret", tls: "true" });
    assert.deepEqual(options.sasl, { mechanism: "plain", username: "u", password: "secret" });
    assert.deepEqual(options.tls, { caFile: undefined });
    const driver = createKafkaDriver({ sasl: "plain", username: "u", password: "secret" });
    assert.doesNotMatch(JSON.stringify(driver.settings()), /secret/);
  });
});

// kafkajs 2.2.4, unchanged, against the Kafka listener with authentication on: its own
// SCRAM-SHA-256 and SCRAM-SHA-512 (an implementation independent of sluice's) logs in, an
// ACL-allowed producer and consumer group work, a topic without ACLs is refused with
// TOPIC_AUTHORIZATION_FAILED, and a wrong password fails the connection.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Kafka, logLevel } from "kafkajs";
import type { Acl } from "../../../protocol/server/acl.ts";
import { PASSWORD, startSecureServer } from "../security/secure_server.ts";

const allow = (resourceType: Acl["resourceType"], name: string, operations: Acl["operations"]) =>
  ({
    principal: "app",
    resourceType,
    name,
    pattern: "literal",
    operations,
    permission: "allow",
  }) as Acl;

function client(port: number, mechanism: "scram-sha-256" | "scram-sha-512", password = PASSWORD) {
  const credentials = { username: "app", password };
  return new Kafka({
    brokers: [`127.0.0.1:${port}`],
    clientId: "kafkajs-sasl",
    logLevel: logLevel.NOTHING,
    sasl:
      mechanism === "scram-sha-256"
        ? { mechanism, ...credentials }
        : { mechanism: "scram-sha-512", ...credentials },
    retry: { retries: 2, initialRetryTime: 50, maxRetryTime: 200 },
  });
}

describe("kafkajs with SASL against the Kafka listener", () => {
  test("SCRAM-SHA-256 and -512 log in; the ACLs decide what is served", async () => {
    await using served = await startSecureServer(["app"], {
      kafka: { port: 0, initialRebalanceDelayMs: 50, autoCreateTopics: false },
      acls: [allow("topic", "orders", ["read", "write"]), allow("group", "billing", ["read"])],
    });
    await served.server.engine.createTopic("orders", { partitions: 2 });
    await served.server.engine.createTopic("secret", { partitions: 1 });
    const port = served.server.kafka!.port;

    const producer = client(port, "scram-sha-512").producer();
    await producer.connect();
    try {
      const messages = Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: `v${i}` }));
      await producer.send({ topic: "orders", acks: -1, messages });
      await assert.rejects(
        producer.send({ topic: "secret", acks: -1, messages: [{ value: "no" }] }),
        // kafkajs wraps the broker's TOPIC_AUTHORIZATION_FAILED (29) as non-retriable.
        (error: Error & { cause?: { type?: string } }) =>
          error.cause?.type === "TOPIC_AUTHORIZATION_FAILED",
      );
    } finally {
      await producer.disconnect();
    }
    assert.equal(served.server.engine.partition("secret", 0).highWatermark, 0);

    const consumer = client(port, "scram-sha-256").consumer({ groupId: "billing" });
    const seen: string[] = [];
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: "orders", fromBeginning: true });
      let done!: () => void;
      const all = new Promise<void>((resolve) => (done = resolve));
      await consumer.run({
        eachMessage: async ({ message }) => {
          seen.push(String(message.value));
          if (seen.length === 20) done();
        },
      });
      await all;
    } finally {
      await consumer.disconnect();
    }
    assert.equal(new Set(seen).size, 20);
  });

  test("a wrong password fails with SASL_AUTHENTICATION_FAILED", async () => {
    await using served = await startSecureServer(["app"], { kafka: { port: 0 } });
    const admin = client(served.server.kafka!.port, "scram-sha-256", "wrong").admin();
    await assert.rejects(admin.connect(), (error: Error & { type?: string }) => {
      return (
        error.type === "SASL_AUTHENTICATION_FAILED" || /SASL|[Aa]uthentication/.test(error.message)
      );
    });
    assert.ok(served.logs.some((line) => /failed login from/.test(line)));
  });
});

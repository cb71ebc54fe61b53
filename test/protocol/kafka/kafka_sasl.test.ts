// SASL on the Kafka listener: with authentication on, a Kafka client must authenticate with
// SaslHandshake + SaslAuthenticate (SCRAM-SHA-256/512 against the same users as the native
// listener) before anything but ApiVersions; each bad path fails with Kafka's error code and
// a log line, and the connection is closed, never left open.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { API_KEYS as K, KAFKA_ERRORS as E, type Struct } from "../../../protocol/kafka/mod.ts";
import type { SecurityOptions } from "../../../protocol/server/_auth.ts";
import { saveSecurityState, emptySecurityState } from "../../../protocol/server/security_store.ts";
import { mulberry32, tempDir, waitFor } from "../../helpers.ts";
import { credentialsFor } from "../security/secure_server.ts";
import { RawKafka, startKafkaServer } from "./kafka_serving.ts";
import { kafkaAs, scramLogin, scramLoginV0 } from "./kafka_sasl_client.ts";

async function secureKafka(security: SecurityOptions = { auth: ["scram", "plain"] }) {
  const dir = tempDir("sluice-kafka-sasl-");
  const state = emptySecurityState();
  state.users.set("alice", credentialsFor("correct horse"));
  saveSecurityState(dir.path, state);
  const logs: string[] = [];
  const broker = await startKafkaServer({
    dataDir: dir.path,
    server: { security: { superUsers: ["alice"], ...security }, log: (m) => logs.push(m) },
  });
  return Object.assign(broker, { logs });
}

const metadataAll = { topics: null, allowAutoTopicCreation: false };

describe("kafka listener SASL", () => {
  test("SCRAM-SHA-256 and -512 over SaslAuthenticate v0-2 admit the user", async () => {
    await using broker = await secureKafka();
    for (const [mechanism, version] of [
      ["SCRAM-SHA-256", 0],
      ["SCRAM-SHA-512", 1],
      ["SCRAM-SHA-256", 2],
    ] as const) {
      const client = await RawKafka.connect(broker.port);
      try {
        const result = await scramLogin(client, "alice", { mechanism, version });
        assert.equal(result.errorCode, 0, `${mechanism} v${version}`);
        const answer = await client.call(K.Metadata, 9, metadataAll);
        assert.ok(Array.isArray(answer["brokers"]));
      } finally {
        client.close();
      }
    }
  });

  test("SaslHandshake v0 with bare tokens admits the user", async () => {
    await using broker = await secureKafka();
    const client = await RawKafka.connect(broker.port);
    try {
      await scramLoginV0(client, "alice");
      const answer = await client.call(K.Metadata, 4, metadataAll);
      assert.ok(Array.isArray(answer["brokers"]));
    } finally {
      client.close();
    }
  });

  test("ApiVersions lists SaslHandshake 0-1 and SaslAuthenticate 0-2 before login", async () => {
    await using broker = await secureKafka();
    const client = await RawKafka.connect(broker.port);
    try {
      const answer = await client.call(K.ApiVersions, 3, {
        clientSoftwareName: "raw",
        clientSoftwareVersion: "1",
      });
      const range = (key: number) => {
        const entry = (answer["apiKeys"] as Struct[]).find((k) => k["apiKey"] === key);
        return [entry?.["minVersion"], entry?.["maxVersion"]];
      };
      assert.deepEqual(range(K.SaslHandshake), [0, 1]);
      assert.deepEqual(range(K.SaslAuthenticate), [0, 2]);
    } finally {
      client.close();
    }
  });

  test("any other API before authentication closes the connection", async () => {
    await using broker = await secureKafka();
    const client = await RawKafka.connect(broker.port);
    client.request(K.Metadata, 9, metadataAll);
    await client.closed;
    assert.ok(
      broker.logs.some((l) => /Metadata before authenticating/.test(l)),
      broker.logs.join("\n"),
    );
  });

  test("a wrong password or an unknown user is 58, logged, and the connection closed", async () => {
    await using broker = await secureKafka();
    for (const [user, password] of [
      ["alice", "wrong"],
      ["mallory", "correct horse"],
    ] as const) {
      const client = await RawKafka.connect(broker.port);
      const result = await scramLogin(client, user, { password });
      assert.equal(result.errorCode, E.SASL_AUTHENTICATION_FAILED);
      assert.equal(result.step, "client-final");
      await client.closed;
    }
    const failed = broker.logs.filter((l) => /failed login from 127\.0\.0\.1/.test(l));
    assert.equal(failed.length, 2, broker.logs.join("\n"));
  });

  test("an unknown mechanism, and PLAIN on plaintext, are 33 with the list", async () => {
    await using broker = await secureKafka();
    for (const mechanism of ["GSSAPI", "PLAIN"]) {
      const client = await RawKafka.connect(broker.port);
      const answer = await client.call(K.SaslHandshake, 1, { mechanism });
      assert.equal(answer["errorCode"], E.UNSUPPORTED_SASL_MECHANISM);
      assert.deepEqual(answer["mechanisms"], ["SCRAM-SHA-256", "SCRAM-SHA-512"]);
      await client.closed;
    }
  });

  test("SaslAuthenticate before SaslHandshake is 34, then closed", async () => {
    await using broker = await secureKafka();
    const client = await RawKafka.connect(broker.port);
    const answer = await client.call(K.SaslAuthenticate, 1, { authBytes: new Uint8Array(4) });
    assert.equal(answer["errorCode"], E.ILLEGAL_SASL_STATE);
    await client.closed;
  });

  test("a truncated or garbled SCRAM message fails the login, never the server", async () => {
    await using broker = await secureKafka();
    for (const token of [new Uint8Array([0xff, 0xfe]), new TextEncoder().encode("n,,n=al")]) {
      const client = await RawKafka.connect(broker.port);
      assert.equal(
        (await client.call(K.SaslHandshake, 1, { mechanism: "SCRAM-SHA-256" }))["errorCode"],
        0,
      );
      const answer = await client.call(K.SaslAuthenticate, 1, { authBytes: token });
      assert.equal(answer["errorCode"], E.SASL_AUTHENTICATION_FAILED);
      await client.closed;
    }
    const client = await kafkaAs(broker.port, "alice");
    client.close();
  });

  test("hostile tokens and frames before login never crash the server", async () => {
    await using broker = await secureKafka();
    const seed = Number(process.env["SLUICE_FUZZ_SEED"] ?? 0x5a51);
    const random = mulberry32(seed);
    const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(random() * 256));
    for (let round = 0; round < 60; round++) {
      const client = await RawKafka.connect(broker.port);
      const kind = round % 3;
      if (kind === 0) {
        // Random bytes as the SASL token after a good handshake (v1): refused with 58.
        await client.call(K.SaslHandshake, 1, { mechanism: "SCRAM-SHA-256" });
        const answer = await client.call(K.SaslAuthenticate, 1, {
          authBytes: bytes(1 + Math.floor(random() * 300)),
        });
        assert.equal(answer["errorCode"], E.SASL_AUTHENTICATION_FAILED, `seed ${seed}`);
      } else if (kind === 1) {
        // Random bare tokens after a v0 handshake: the connection is closed, unanswered.
        await client.call(K.SaslHandshake, 0, { mechanism: "SCRAM-SHA-512" });
        const token = bytes(1 + Math.floor(random() * 300));
        const frame = new Uint8Array(4 + token.length);
        new DataView(frame.buffer).setInt32(0, token.length);
        frame.set(token, 4);
        client.send(frame);
      } else {
        // A random frame where a request header belongs, naming Metadata (not served before
        // login) when it is long enough to name anything: closed either way.
        const body = bytes(Math.floor(random() * 200));
        if (body.length >= 2) body.set([0, K.Metadata]);
        const frame = new Uint8Array(4 + body.length);
        new DataView(frame.buffer).setInt32(0, body.length);
        frame.set(body, 4);
        client.send(frame);
      }
      if (kind !== 0) await client.closed;
      client.close();
    }
    const client = await kafkaAs(broker.port, "alice");
    const answer = await client.call(K.Metadata, 9, metadataAll);
    assert.ok(Array.isArray(answer["brokers"]));
    client.close();
  });

  test("a frame above the pre-authentication limit closes the connection", async () => {
    await using broker = await secureKafka({ auth: ["scram"], authFrameBytesMax: 1024 });
    const client = await RawKafka.connect(broker.port);
    const frame = new Uint8Array(4 + 4096);
    new DataView(frame.buffer).setInt32(0, 4096);
    client.send(frame);
    await client.closed;
    // After login the full limit applies.
    const ok = await kafkaAs(broker.port, "alice");
    const big = await ok.call(K.Metadata, 9, {
      topics: [{ name: "x".repeat(200) }, { name: "y".repeat(2000) }],
      allowAutoTopicCreation: false,
    });
    assert.equal((big["topics"] as Struct[]).length, 2);
    ok.close();
  });

  test("unauthenticatedPerAddressMax counts Kafka connections until they log in", async () => {
    await using broker = await secureKafka({ auth: ["scram"], unauthenticatedPerAddressMax: 2 });
    const first = await RawKafka.connect(broker.port);
    const second = await RawKafka.connect(broker.port);
    const apiVersions = { clientSoftwareName: "raw", clientSoftwareVersion: "1" };
    try {
      await second.call(K.ApiVersions, 3, apiVersions);
      const third = await RawKafka.connect(broker.port);
      await third.closed;
      assert.ok(
        broker.logs.some((l) => /2 unauthenticated already/.test(l)),
        broker.logs.join("\n"),
      );
      // Logged in, the first no longer counts: a new connection is served.
      assert.equal((await scramLogin(first, "alice")).errorCode, 0);
      const fourth = await RawKafka.connect(broker.port);
      assert.equal((await fourth.call(K.ApiVersions, 3, apiVersions))["errorCode"], 0);
      fourth.close();
      // Closed, the second no longer counts either.
      second.close();
      await waitFor(async () => {
        const fifth = await RawKafka.connect(broker.port);
        const sixth = await RawKafka.connect(broker.port);
        const served = await Promise.race([
          sixth.call(K.ApiVersions, 3, apiVersions).then(() => true),
          sixth.closed.then(() => false),
        ]);
        fifth.close();
        sixth.close();
        return served;
      }, "the closed connection to stop counting");
    } finally {
      first.close();
      second.close();
    }
  });

  test("a connection silent past handshakeTimeoutMs is closed", async () => {
    await using broker = await secureKafka({ auth: ["scram"], handshakeTimeoutMs: 200 });
    const client = await RawKafka.connect(broker.port);
    await client.closed;
    await waitFor(() => broker.logs.some((l) => /handshakeTimeoutMs/.test(l)), "the log line");
  });

  test("with authentication off, SaslHandshake is 34 with no mechanisms", async () => {
    await using broker = await startKafkaServer();
    const client = await RawKafka.connect(broker.port);
    try {
      const answer = await client.call(K.SaslHandshake, 1, { mechanism: "SCRAM-SHA-256" });
      assert.equal(answer["errorCode"], E.ILLEGAL_SASL_STATE);
      assert.deepEqual(answer["mechanisms"], []);
      await client.call(K.Metadata, 9, metadataAll);
    } finally {
      client.close();
    }
  });
});

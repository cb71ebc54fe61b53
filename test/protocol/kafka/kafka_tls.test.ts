// TLS on the Kafka listener (`kafka: { tls: true }`, `serve --kafka-tls`), with the native
// listener's certificate and a throwaway CA: SASL_SSL with SCRAM, PLAIN offered only here,
// a plaintext client refused, and mutual TLS naming the principal that the ACLs then check.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { API_KEYS as K, KAFKA_ERRORS as E, type Struct } from "../../../protocol/kafka/mod.ts";
import { waitFor } from "../../helpers.ts";
import { makeTestCerts, opensslMissing, type TestCerts } from "../security/certs.ts";
import { PASSWORD, startSecureServer } from "../security/secure_server.ts";
import { RawKafka } from "./kafka_serving.ts";
import { scramLogin } from "./kafka_sasl_client.ts";

const missing = opensslMissing();
if (missing !== undefined) console.warn(`skipping the Kafka TLS tests: ${missing}`);

describe("kafka listener over TLS", { skip: missing }, () => {
  let certs: TestCerts;
  before(() => {
    certs = makeTestCerts();
  });
  after(() => certs[Symbol.dispose]());

  const serverTls = (ca?: boolean) => ({
    certFile: certs.file("server.pem"),
    keyFile: certs.file("server.key"),
    ...(ca === true ? { caFile: certs.file("ca.pem") } : {}),
  });

  test("SCRAM and PLAIN over TLS admit the user; a plaintext client is refused", async () => {
    await using served = await startSecureServer(["admin"], {
      tls: serverTls(),
      kafka: { port: 0, tls: true },
    });
    const port = served.server.kafka!.port;
    assert.equal(served.server.kafka!.tls, true);
    const client = await RawKafka.connectTls(port, { ca: certs.pem("ca.pem") });
    try {
      assert.equal((await scramLogin(client, "admin")).errorCode, 0);
      const answer = await client.call(K.Metadata, 9, {
        topics: null,
        allowAutoTopicCreation: false,
      });
      assert.ok(Array.isArray(answer["brokers"]));
    } finally {
      client.close();
    }
    const plain = await RawKafka.connectTls(port, { ca: certs.pem("ca.pem") });
    try {
      const handshake = await plain.call(K.SaslHandshake, 1, { mechanism: "PLAIN" });
      assert.equal(handshake["errorCode"], 0);
      assert.ok((handshake["mechanisms"] as string[]).includes("PLAIN"));
      const token = new TextEncoder().encode(`\u0000admin\u0000${PASSWORD}`);
      const login = await plain.call(K.SaslAuthenticate, 1, { authBytes: token });
      assert.equal(login["errorCode"], 0);
    } finally {
      plain.close();
    }
    // A plaintext Kafka client on the TLS port gets no answer, and the server goes on.
    const cleartext = await RawKafka.connect(port);
    cleartext.request(K.ApiVersions, 0, {});
    await cleartext.closed;
    await waitFor(() => served.logs.some((l) => /TLS handshake/.test(l)), "a TLS log line");
  });

  test("mutual TLS names the principal, and the ACLs apply to it", async () => {
    await using served = await startSecureServer([], {
      tls: serverTls(true),
      kafka: { port: 0, tls: true },
      security: { auth: ["mtls"] },
      acls: [
        {
          principal: "alice",
          resourceType: "topic",
          name: "mine",
          pattern: "literal",
          operations: ["describe"],
          permission: "allow",
        },
      ],
    });
    const port = served.server.kafka!.port;
    const client = await RawKafka.connectTls(port, {
      ca: certs.pem("ca.pem"),
      cert: certs.pem("alice.pem"),
      key: certs.pem("alice.key"),
    });
    try {
      // No SASL: the certificate authenticated alice, who may describe "mine" only.
      const answer = await client.call(K.Metadata, 9, {
        topics: [{ name: "mine" }, { name: "theirs" }],
        allowAutoTopicCreation: false,
      });
      const codes = Object.fromEntries(
        (answer["topics"] as Struct[]).map((t) => [t["name"], t["errorCode"]]),
      );
      assert.equal(codes["theirs"], E.TOPIC_AUTHORIZATION_FAILED);
      assert.equal(codes["mine"], E.UNKNOWN_TOPIC_OR_PARTITION);
    } finally {
      client.close();
    }
    // Authenticated by its certificate, a client's first frame may exceed the pre-login limit.
    const big = await RawKafka.connectTls(port, {
      ca: certs.pem("ca.pem"),
      cert: certs.pem("alice.pem"),
      key: certs.pem("alice.key"),
    });
    try {
      const names = Array.from({ length: 60 }, (_, i) => ({ name: `t${i}-${"x".repeat(200)}` }));
      const answer = await big.call(K.Metadata, 9, {
        topics: names,
        allowAutoTopicCreation: false,
      });
      assert.equal((answer["topics"] as Struct[]).length, 60);
    } finally {
      client.close();
    }
  });
});

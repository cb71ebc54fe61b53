// Authentication on the wire: SCRAM and PLAIN through the client, the pre-authentication
// limits (frame size, APIs, request count, deadline) over a raw socket, and Handshake v1
// unchanged with authentication off.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { writeMsgpack } from "../../../protocol/codec/control.ts";
import { ServerError, WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { API, API_VERSIONS, finishFrame, startRequest } from "../../../protocol/codec/frames.ts";
import { writeHandshakeRequest } from "../../../protocol/codec/handshake.ts";
import { writeProduceRequest } from "../../../protocol/codec/produce.ts";
import { writeSaslAuthenticate } from "../../../protocol/codec/sasl.ts";
import { encodeRecordBatch } from "../../../record/mod.ts";
import { Admin } from "../../../protocol/client/mod.ts";
import { waitFor } from "../../helpers.ts";
import { connected, frameWithSize, startTestServer } from "../server/serving.ts";
import { clientAs, control, PASSWORD, startSecureServer } from "./secure_server.ts";

const isFailed = (code: string) => (error: unknown) =>
  error instanceof ServerError && error.code === code;

describe("authentication", () => {
  test("SCRAM-SHA-256, SCRAM-SHA-512 and (when allowed) PLAIN authenticate a user", async () => {
    await using served = await startSecureServer(["alice"], {
      security: { auth: ["scram", "plain"], plainOnPlaintext: true, superUsers: ["alice"] },
    });
    for (const mechanism of ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] as const) {
      await using alice = await clientAs(served.port, undefined, {
        sasl: { mechanism, username: "alice", password: PASSWORD },
      });
      const stats = await control(alice, API.Stats, {});
      assert.equal(typeof stats["uptimeMs"], "number", mechanism);
    }
  });

  test("wrong password, unknown user and a refused mechanism fail with typed errors", async () => {
    await using served = await startSecureServer(["alice"]);
    const as = (username: string, password: string, mechanism?: "PLAIN") =>
      clientAs(served.port, undefined, { sasl: { username, password, mechanism } });
    await assert.rejects(as("alice", "nope"), isFailed("AUTHENTICATION_FAILED"));
    await assert.rejects(as("mallory", PASSWORD), isFailed("AUTHENTICATION_FAILED"));
    // PLAIN is on, but never on a plaintext listener unless allowed.
    await assert.rejects(as("alice", PASSWORD, "PLAIN"), isFailed("UNSUPPORTED_SASL_MECHANISM"));
    await waitFor(() => served.logs.some((line) => line.includes("failed login from")), "a log");
    assert.ok(served.logs.some((line) => /failed login from .* as "mallory"/.test(line)));
  });

  test("the library clients authenticate with `sasl` and reconnect authenticated", async () => {
    await using served = await startSecureServer(["alice"], {
      security: { auth: ["scram"], superUsers: ["alice"] },
    });
    const admin = new Admin({
      host: "127.0.0.1",
      port: served.port,
      sasl: { username: "alice", password: PASSWORD },
    });
    try {
      await admin.createTopics([{ name: "secured", partitions: 2 }]);
      const metadata = await admin.metadata(["secured"]);
      assert.equal(metadata.topics[0]?.partitions.length, 2);
    } finally {
      await admin.close();
    }
  });

  test("a full Metadata listing leaves out topics the principal cannot describe", async () => {
    await using served = await startSecureServer(["admin", "reader"], {
      acls: [
        {
          principal: "reader",
          resourceType: "topic",
          name: "public-",
          pattern: "prefixed",
          operations: ["read"],
          permission: "allow",
        },
      ],
    });
    await using admin = await clientAs(served.port, "admin");
    await control(admin, API.CreateTopics, {
      topics: [{ name: "public-a" }, { name: "secret-b" }],
    });
    await using reader = await clientAs(served.port, "reader");
    const listing = await control(reader, API.Metadata, {});
    const names = (listing["topics"] as { name: string }[]).map((topic) => topic.name);
    assert.deepEqual(names, ["public-a"]);
    // Named, a topic it cannot describe is refused whether it exists or not: the same answer.
    for (const topic of ["secret-b", "no-such-topic"]) {
      await assert.rejects(
        control(reader, API.Metadata, { topics: [topic] }),
        (error: unknown) =>
          isFailed("AUTHORIZATION_FAILED")(error) &&
          (error as Error).message ===
            `AUTHORIZATION_FAILED: not allowed to describe topic "${topic}"`,
      );
    }
  });
});

describe("acks=0", () => {
  test("a denied Produce with acks 0 is answered by silence and logged", async () => {
    await using served = await startSecureServer(["admin", "bare"]);
    await using admin = await clientAs(served.port, "admin");
    await control(admin, API.CreateTopics, { topics: [{ name: "t" }] });
    await using bare = await clientAs(served.port, "bare");
    const records = encodeRecordBatch([{ value: new TextEncoder().encode("v") }]);
    await bare.requestWithoutResponse(API.Produce, (writer) =>
      writeProduceRequest(writer, {
        acks: 0,
        timeoutMs: 1000,
        topics: [{ topic: "t", partitions: [{ partition: 0, records }] }],
      }),
    );
    // The next answer on the connection is the next request's: nothing answered the Produce.
    const listing = await control(bare, API.Metadata, {});
    assert.deepEqual(listing["topics"], []);
    assert.ok(served.logs.some((line) => /acks=0 produce from bare refused/.test(line)));
    assert.ok(!bare.closed);
  });
});

describe("before authentication", () => {
  test("a request other than Handshake or SASL is refused and the connection closed", async () => {
    await using served = await startSecureServer([]);
    using raw = await connected(served.port);
    const id = raw.request(API.Stats, (w) => writeMsgpack(w, {}));
    const { errorCode } = await raw.response(id);
    assert.equal(errorCode, WIRE_ERRORS.AUTHENTICATION_REQUIRED);
    await raw.waitClosed();
  });

  test("frames past authFrameBytesMax close it, before and after Handshake", async () => {
    await using served = await startSecureServer([], {
      security: { auth: ["scram"], authFrameBytesMax: 1024 },
    });
    using early = await connected(served.port, false);
    early.send(frameWithSize(1025));
    await early.waitClosed();
    using late = await connected(served.port);
    late.send(frameWithSize(4096, new Uint8Array(16)));
    await late.waitClosed();
    await waitFor(
      () => served.logs.filter((l) => l.includes("exceeds the limit")).length >= 2,
      "logs",
    );
  });

  test("a client that does not authenticate within handshakeTimeoutMs is closed", async () => {
    await using served = await startSecureServer([], {
      security: { auth: ["scram"], handshakeTimeoutMs: 300 },
    });
    using silent = await connected(served.port, false);
    await silent.waitClosed();
    assert.ok(served.logs.some((line) => line.includes("not authenticated within")));
  });

  test("at most authRequestsMax requests are served before authenticating", async () => {
    await using served = await startSecureServer([], {
      security: { auth: ["scram"], authRequestsMax: 4 },
    });
    using raw = await connected(served.port, false);
    const ids = Array.from({ length: 6 }, () =>
      raw.request(API.Handshake, (w) =>
        writeHandshakeRequest(w, { clientName: "x", clientVersion: "0" }),
      ),
    );
    const last = await raw.response(ids[4]!);
    assert.equal(last.errorCode, WIRE_ERRORS.AUTHENTICATION_REQUIRED);
    await raw.waitClosed();
  });

  test("garbage and truncated SASL messages fail authentication, never the server", async () => {
    await using served = await startSecureServer(["alice"]);
    const messages = ["", "n,,", "\u0000\u0000", "n,,n=alice,r=abc", "c=biws,r=x,p=AAAA"];
    for (const message of messages) {
      using raw = await connected(served.port);
      const hello = raw.request(API.SaslHandshake, (w) => w.string("SCRAM-SHA-256"));
      assert.equal((await raw.response(hello)).errorCode, 0);
      const bytes = new TextEncoder().encode(message);
      let outcome = 0;
      for (let step = 0; step < 2 && outcome === 0 && !raw.closed; step++) {
        const id = raw.request(API.SaslAuthenticate, (w) => writeSaslAuthenticate(w, bytes));
        outcome = (await raw.response(id).catch(() => ({ errorCode: -1 }))).errorCode;
      }
      assert.ok(outcome !== 0, `message ${JSON.stringify(message)} must not authenticate`);
    }
    await using alice = await clientAs(served.port, "alice");
    assert.ok(alice.supports(API.Stats));
  });

  test("the unauthenticated connections of one address can be limited", async () => {
    await using served = await startSecureServer([], {
      security: { auth: ["scram"], unauthenticatedPerAddressMax: 2 },
    });
    using first = await connected(served.port, false);
    using second = await connected(served.port, false);
    using third = await connected(served.port, false);
    await third.waitClosed();
    assert.ok(!first.closed && !second.closed);
  });
});

describe("PROTOCOL.md section 11.7", () => {
  test("the SaslHandshake and first SaslAuthenticate frames are the spec's bytes", async () => {
    await using served = await startSecureServer([], { security: { auth: ["scram"] } });
    using raw = await connected(served.port);
    const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
    const request = "00000017001b000100000002000d534352414d2d5348412d323536";
    const expected =
      "000000260000000200000002000d534352414d2d5348412d323536000d534352414d2d5348412d353132";
    raw.send(Buffer.from(request, "hex"));
    await waitFor(() => raw.frames.length === 2, "the SaslHandshake answer");
    const answer = raw.frames[1]!;
    assert.equal(`${answer.length.toString(16).padStart(8, "0")}${hex(answer)}`, expected);
    const clientFirst = new TextEncoder().encode("n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    const writer = startRequest({ apiKey: API.SaslAuthenticate, apiVersion: 1, correlationId: 3 });
    writeSaslAuthenticate(writer, clientFirst);
    assert.equal(
      hex(finishFrame(writer)),
      "0000002c001c00010000000300000020" +
        "6e2c2c6e3d757365722c723d724f70724e476677456265525767624e456b714f",
    );
  });
});

describe("with authentication off", () => {
  test("Handshake v1 lists the APIs of before security, and no security API", async () => {
    await using served = await startTestServer();
    using raw = await connected(served.port, false);
    const id = raw.request(API.Handshake, (w) =>
      writeHandshakeRequest(w, { clientName: "raw", clientVersion: "0" }),
    );
    const { reader } = await raw.response(id);
    reader.string("server_version");
    reader.u32("frame_bytes_max");
    reader.u16("in_flight_max");
    const count = reader.u16("apis");
    const keys = Array.from({ length: count }, () => {
      const key = reader.u16("key");
      reader.u16("min");
      reader.u16("max");
      return key;
    });
    // Keys 0-26 as before security existed; the security APIs (27-30) are absent; APIs added
    // since (ListGroups 31, AlterTopicConfigs 32) follow, in the same entry layout.
    assert.deepEqual(keys, [...Array.from({ length: 27 }, (_, key) => key), 31, 32]);
    assert.equal(API_VERSIONS.length, 29);
    const sasl = raw.request(API.SaslHandshake, (w) => w.string("SCRAM-SHA-256"));
    assert.equal((await raw.response(sasl)).errorCode, WIRE_ERRORS.UNKNOWN_API);
  });
});

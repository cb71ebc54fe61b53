// TLS on the sluice listener with a throwaway CA: a good certificate, a CA the client does not
// trust, an expired certificate, mutual TLS with the principal from the client certificate's
// CN or DN, a plaintext client on the TLS port, and PLAIN allowed on the TLS port only.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ServerError } from "../../../protocol/codec/errors.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { ClientConnection, ClientError } from "../../../protocol/client/mod.ts";
import { waitFor } from "../../helpers.ts";
import { run } from "../../processes.ts";
import { startTestServer } from "../server/serving.ts";
import { makeTestCerts, opensslMissing, type TestCerts } from "./certs.ts";
import { control, PASSWORD, startSecureServer } from "./secure_server.ts";

const missing = opensslMissing();
if (missing !== undefined) console.warn(`skipping the TLS tests: ${missing}`);

const connectFails = (error: unknown) =>
  error instanceof ClientError && error.code === "CONNECT_FAILED";

describe("TLS", { skip: missing }, () => {
  let certs: TestCerts;
  before(() => {
    certs = makeTestCerts();
  });
  after(() => certs[Symbol.dispose]());

  const serverTls = (name = "server") => ({
    certFile: certs.file(`${name}.pem`),
    keyFile: certs.file(`${name}.key`),
  });
  const connect = (port: number, options: Record<string, unknown> = {}) =>
    ClientConnection.connect("127.0.0.1", port, {
      connectTimeoutMs: 5000,
      tls: { ca: certs.pem("ca.pem"), servername: "localhost", ...options },
    });

  test("a client trusting the CA talks to a TLS listener", async () => {
    await using served = await startTestServer({ tls: serverTls() });
    const connection = await connect(served.port);
    try {
      const stats = await control(connection, API.Stats, {});
      assert.equal(stats["connections"], 1);
    } finally {
      await connection.close();
    }
  });

  // Both runtimes refuse TLS 1.1 by default today; the listener also says so explicitly
  // (_tls.ts), and this test holds the property if either changes.
  test("TLS 1.1 is refused and TLS 1.2 accepted (openssl s_client)", async () => {
    await using served = await startTestServer({ tls: serverTls() });
    const handshake = async (version: string) => {
      const args = ["s_client", "-connect", `127.0.0.1:${served.port}`, version];
      // SECLEVEL=0 lets this openssl offer TLS 1.1 at all: the refusal must be the server's.
      const result = await run("openssl", [...args, "-cipher", "DEFAULT:@SECLEVEL=0"]);
      return result.stdout + result.stderr;
    };
    assert.match(await handshake("-tls1_1"), /alert protocol version|Cipher is \(NONE\)/);
    assert.match(await handshake("-tls1_2"), /Protocol *: TLSv1\.2/);
  });

  test("a server certificate from an untrusted CA, or an expired one, is refused", async () => {
    for (const name of ["other-server", "expired-server"]) {
      await using served = await startTestServer({ tls: serverTls(name) });
      await assert.rejects(connect(served.port), connectFails, name);
    }
  });

  test("a plaintext client on the TLS port fails to connect; the server goes on", async () => {
    await using served = await startTestServer({ tls: serverTls() });
    await assert.rejects(
      ClientConnection.connect("127.0.0.1", served.port, { connectTimeoutMs: 3000 }),
      // The server's TLS alert, read as a frame, is MALFORMED_RESPONSE; or the socket closes.
      (error: unknown) => error instanceof ClientError,
    );
    await waitFor(() => served.logs.some((line) => line.includes("TLS handshake")), "a log line");
    const connection = await connect(served.port);
    await connection.close();
  });

  test("mTLS: the client certificate's CN, or its DN, is the principal", async () => {
    for (const [mapping, principal] of [
      ["cn", "alice"],
      ["dn", "CN=alice,O=acme,C=NZ"],
    ] as const) {
      await using served = await startSecureServer([], {
        tls: { ...serverTls(), caFile: certs.file("ca.pem"), principal: mapping },
        security: { auth: ["mtls"] },
        acls: [
          {
            principal,
            resourceType: "cluster",
            name: "cluster",
            pattern: "literal",
            operations: ["describe"],
            permission: "allow",
          },
        ],
      });
      const alice = await connect(served.port, {
        cert: certs.pem("alice.pem"),
        key: certs.pem("alice.key"),
      });
      try {
        await control(alice, API.Stats, {});
        await assert.rejects(
          control(alice, API.Metadata, { topics: ["x"] }),
          (error: unknown) => error instanceof ServerError && error.code === "AUTHORIZATION_FAILED",
        );
      } finally {
        await alice.close();
      }
    }
  });

  test("mTLS refuses no certificate, an untrusted one and an expired one", async () => {
    await using served = await startSecureServer([], {
      tls: { ...serverTls(), caFile: certs.file("ca.pem") },
      security: { auth: ["mtls"] },
    });
    const attempts = [
      {},
      { cert: certs.pem("stranger.pem"), key: certs.pem("stranger.key") },
      { cert: certs.pem("expired-alice.pem"), key: certs.pem("expired-alice.key") },
    ];
    const refusals = () => served.logs.filter((line) => line.includes("TLS handshake")).length;
    for (const options of attempts) {
      const before = refusals();
      await assert.rejects(
        connect(served.port, options).then(async (connection) => {
          // Under TLS 1.3 the server's verdict on the client certificate may arrive after the
          // client's handshake: then the first request is where the refusal shows.
          try {
            await control(connection, API.Stats, {});
          } finally {
            await connection.close();
          }
        }),
      );
      // Refused by TLS itself, not later by the authentication gate.
      await waitFor(() => refusals() > before, "the server's TLS refusal");
    }
  });

  test("PLAIN is refused on the plaintext port and accepted on the TLS port", async () => {
    await using served = await startSecureServer(["alice"], {
      tls: { ...serverTls(), port: 0 },
      security: { auth: ["scram", "plain"], superUsers: ["alice"] },
    });
    const sasl = { mechanism: "PLAIN" as const, username: "alice", password: PASSWORD };
    await assert.rejects(
      ClientConnection.connect("127.0.0.1", served.port, { sasl }),
      (error: unknown) =>
        error instanceof ServerError && error.code === "UNSUPPORTED_SASL_MECHANISM",
    );
    const tlsPort = served.server.tlsPort;
    assert.ok(tlsPort !== undefined && tlsPort !== served.port);
    const alice = await ClientConnection.connect("127.0.0.1", tlsPort, {
      sasl,
      tls: { ca: certs.pem("ca.pem"), servername: "localhost" },
    });
    try {
      await control(alice, API.Stats, {});
    } finally {
      await alice.close();
    }
  });
});

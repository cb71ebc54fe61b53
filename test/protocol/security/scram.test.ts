// SCRAM (RFC 5802/7677) on both sides: the RFC 7677 test vector, an interop run against an
// independent implementation (kafkajs' SCRAM client), and the exchanges that must fail.

import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { createRequire } from "node:module";
import { describe, test } from "node:test";
import {
  makeScramCredential,
  saltedPassword,
  type ScramCredential,
  ScramClientExchange,
  ScramError,
  type ScramMechanism,
  ScramServerExchange,
  verifyPassword,
} from "../../../protocol/codec/scram.ts";

// RFC 7677 section 3: user "user", password "pencil", 4096 iterations.
const RFC7677 = {
  clientNonce: "rOprNGfwEbeRWgbNEkqO",
  clientFirst: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
  serverFirst:
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
  clientFinal:
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," +
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
  serverFinal: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

function credentialsOf(mechanism: ScramMechanism, password: string) {
  const credential = makeScramCredential(mechanism, password);
  return (name: string) => (name === "alice" ? credential : undefined);
}

function run(
  mechanism: ScramMechanism,
  password: string,
  lookup: (name: string) => ScramCredential | undefined,
) {
  const client = new ScramClientExchange(mechanism, { username: "alice", password });
  const server = new ScramServerExchange(mechanism);
  const serverFirst = server.start(client.first(), lookup);
  const serverFinal = server.finish(client.final(serverFirst));
  client.verify(serverFinal);
}

describe("SCRAM", () => {
  test("the client reproduces RFC 7677's client-final and checks its server-final", () => {
    const client = new ScramClientExchange(
      "SCRAM-SHA-256",
      { username: "user", password: "pencil" },
      RFC7677.clientNonce,
    );
    assert.equal(client.first(), RFC7677.clientFirst);
    assert.equal(client.final(RFC7677.serverFirst), RFC7677.clientFinal);
    client.verify(RFC7677.serverFinal);
    assert.throws(() => client.verify("v=AAAA"), ScramError);
  });

  test("a credential stored from RFC 7677's salt verifies its proof and signs like the RFC", () => {
    const credential = makeScramCredential("SCRAM-SHA-256", "pencil", {
      salt: Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64"),
    });
    // The server's side, with the RFC's server nonce: the exchange must end in its signature.
    const server = new ScramServerExchange("SCRAM-SHA-256");
    const serverFirst = server.start(RFC7677.clientFirst, () => credential);
    const serverNonce = serverFirst.slice(2, serverFirst.indexOf(","));
    assert.ok(serverNonce.startsWith(RFC7677.clientNonce));
    const client = new ScramClientExchange(
      "SCRAM-SHA-256",
      { username: "user", password: "pencil" },
      RFC7677.clientNonce,
    );
    client.first();
    client.verify(server.finish(client.final(serverFirst)));
    assert.ok(verifyPassword("SCRAM-SHA-256", credential, "pencil"));
    assert.ok(!verifyPassword("SCRAM-SHA-256", credential, "pencil2"));
  });

  for (const mechanism of ["SCRAM-SHA-256", "SCRAM-SHA-512"] as const) {
    test(`${mechanism}: right password passes, wrong password and unknown user fail`, () => {
      const lookup = credentialsOf(mechanism, "s3cret");
      run(mechanism, "s3cret", lookup);
      assert.throws(() => run(mechanism, "wrong", lookup), /wrong password/);
      assert.throws(() => run(mechanism, "s3cret", () => undefined), /wrong password/);
    });

    test(`${mechanism}: interoperates with kafkajs' independent SCRAM client`, async () => {
      const require = createRequire(import.meta.url);
      const { SCRAM, DIGESTS } = require("kafkajs/src/broker/saslAuthenticator/scram.js");
      const lookup = credentialsOf(mechanism, "p,a=ss");
      const run = async (password: string) => {
        const server = new ScramServerExchange(mechanism);
        let step = 0;
        // kafkajs hands each client message to this function and parses what it returns.
        const saslAuthenticate = async (exchange: {
          request: { encode(): Promise<Buffer> };
          response: { parse(data: Buffer): Promise<Record<string, string>> };
        }) => {
          const message = (await exchange.request.encode()).subarray(4).toString();
          const reply =
            step++ === 0 ? server.start(message, lookup) : finishOrError(server, message);
          return exchange.response.parse(Buffer.from(reply));
        };
        const logger = { debug() {}, error() {}, info() {}, warn() {} };
        const digest = mechanism === "SCRAM-SHA-256" ? DIGESTS.SHA256 : DIGESTS.SHA512;
        const sasl = { mechanism, username: "alice", password };
        await new SCRAM(sasl, "h", 1, logger, saslAuthenticate, digest).authenticate();
      };
      await run("p,a=ss");
      await assert.rejects(run("nope"), /wrong password/);
    });
  }

  test("an unknown user gets the same salt every time, like a real user", () => {
    const first = (name: string) => {
      const server = new ScramServerExchange("SCRAM-SHA-256");
      const client = new ScramClientExchange("SCRAM-SHA-256", { username: name, password: "x" });
      return server.start(client.first(), () => undefined).split(",")[1];
    };
    assert.equal(first("mallory"), first("mallory"));
    assert.notEqual(first("mallory"), first("trudy"));
  });

  test("a replayed client-final fails: the server nonce is new in every exchange", () => {
    const lookup = credentialsOf("SCRAM-SHA-256", "pw");
    const client = new ScramClientExchange("SCRAM-SHA-256", { username: "alice", password: "pw" });
    const first = client.first();
    const server = new ScramServerExchange("SCRAM-SHA-256");
    const clientFinal = client.final(server.start(first, lookup));
    server.finish(clientFinal);
    const again = new ScramServerExchange("SCRAM-SHA-256");
    again.start(first, lookup);
    assert.throws(() => again.finish(clientFinal), /nonce/);
    assert.throws(() => server.finish(clientFinal), /out of order/);
  });

  // librdkafka 2.0.2 (kcat) builds its client-final nonce as its own nonce followed by the
  // whole server nonce; Kafka accepts that form, and so does sluice, but nothing looser.
  test("librdkafka's doubled client nonce is accepted; any other prefix is not", () => {
    const lookup = credentialsOf("SCRAM-SHA-256", "pw");
    const proveWith = (prefix: (clientNonce: string) => string) => {
      const clientNonce = "kcatNonce0123456789";
      const bare = `n=alice,r=${clientNonce}`;
      const server = new ScramServerExchange("SCRAM-SHA-256");
      const serverFirst = server.start(`n,,${bare}`, lookup);
      const fields = Object.fromEntries(serverFirst.split(",").map((f) => [f[0], f.slice(2)]));
      const salted = saltedPassword(
        "SCRAM-SHA-256",
        "pw",
        Buffer.from(fields["s"]!, "base64"),
        4096,
      );
      const clientKey = createHmac("sha256", salted).update("Client Key").digest();
      const storedKey = createHash("sha256").update(clientKey).digest();
      const withoutProof = `c=biws,r=${prefix(clientNonce)}${fields["r"]}`;
      const signature = createHmac("sha256", storedKey)
        .update(`${bare},${serverFirst},${withoutProof}`)
        .digest();
      const proof = Buffer.from(clientKey.map((byte, i) => byte ^ signature[i]!));
      return server.finish(`${withoutProof},p=${proof.toString("base64")}`);
    };
    assert.match(
      proveWith((nonce) => nonce),
      /^v=/,
    );
    assert.match(
      proveWith(() => ""),
      /^v=/,
    );
    assert.throws(() => proveWith((nonce) => `x${nonce.slice(1)}`), /nonce/);
  });

  test("malformed and truncated messages are ScramErrors, never other exceptions", () => {
    const lookup = credentialsOf("SCRAM-SHA-256", "pw");
    const bad = [
      "",
      "n,,",
      "y,,n=a,r=b",
      "n,,n=alice",
      "n,,r=x,n=a",
      "n,,n=a=b,r=x",
      "n,,n=a,n=b,r=x",
    ];
    for (const message of bad) {
      assert.throws(
        () => new ScramServerExchange("SCRAM-SHA-256").start(message, lookup),
        ScramError,
      );
    }
    const client = new ScramClientExchange("SCRAM-SHA-256", { username: "alice", password: "pw" });
    const server = new ScramServerExchange("SCRAM-SHA-256");
    const clientFinal = client.final(server.start(client.first(), lookup));
    for (const cut of [clientFinal.slice(0, 10), clientFinal.slice(0, -8), "c=biws,p=AAAA"]) {
      const fresh = new ScramServerExchange("SCRAM-SHA-256");
      fresh.start(client.first(), lookup);
      assert.throws(() => fresh.finish(cut), ScramError);
    }
    assert.throws(() => client.final("r=zzz,s=AAAA,i=4096"), /nonce/);
    assert.throws(() => client.final(`r=${"x"},s=AAAA,i=99999999999`), ScramError);
  });
});

function finishOrError(server: ScramServerExchange, message: string): string {
  try {
    return server.finish(message);
  } catch (error) {
    if (!(error instanceof ScramError)) throw error;
    return `e=${error.message.replaceAll(",", " ")}`;
  }
}

// A Kafka SASL client written from the protocol guide ("SASL Authentication Sequence"), for
// the Kafka listener's security tests: SaslHandshake v1 then SaslAuthenticate (one token each
// way per step), or SaslHandshake v0 then bare size-prefixed tokens; SCRAM's messages come
// from sluice's client exchange (checked against RFC 7677 in test/protocol/security).

import { ScramClientExchange, type ScramMechanism } from "../../../protocol/codec/scram.ts";
import { API_KEYS as K, type Struct } from "../../../protocol/kafka/mod.ts";
import { PASSWORD } from "../security/secure_server.ts";
import { RawKafka } from "./kafka_serving.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (value: string) => new TextEncoder().encode(value);

export type LoginResult = { errorCode: number; errorMessage?: string | null; step: string };

/** SCRAM over SaslHandshake v1 + SaslAuthenticate `version`; the first failing answer. */
export async function scramLogin(
  client: RawKafka,
  username: string,
  options: { password?: string; mechanism?: ScramMechanism; version?: number } = {},
): Promise<LoginResult> {
  const mechanism = options.mechanism ?? "SCRAM-SHA-256";
  const version = options.version ?? 1;
  const handshake = await client.call(K.SaslHandshake, 1, { mechanism });
  if (handshake["errorCode"] !== 0) {
    return { errorCode: handshake["errorCode"] as number, step: "handshake" };
  }
  const scram = new ScramClientExchange(mechanism, {
    username,
    password: options.password ?? PASSWORD,
  });
  const first: Struct = await client.call(K.SaslAuthenticate, version, {
    authBytes: bytes(scram.first()),
  });
  if (first["errorCode"] !== 0) return failure(first, "client-first");
  const final = await client.call(K.SaslAuthenticate, version, {
    authBytes: bytes(scram.final(text(first["authBytes"] as Uint8Array))),
  });
  if (final["errorCode"] !== 0) return failure(final, "client-final");
  // The server proves it knows the password too.
  scram.verify(text(final["authBytes"] as Uint8Array));
  return { errorCode: 0, step: "done" };
}

function failure(answer: Struct, step: string): LoginResult {
  return {
    errorCode: answer["errorCode"] as number,
    errorMessage: answer["errorMessage"] as string | null,
    step,
  };
}

/** A bare token after SaslHandshake v0: size-prefixed, no Kafka header. */
async function bareToken(client: RawKafka, token: string): Promise<string> {
  const payload = bytes(token);
  const frame = new Uint8Array(4 + payload.length);
  new DataView(frame.buffer).setInt32(0, payload.length);
  frame.set(payload, 4);
  client.send(frame);
  return text(await client.next());
}

/** SCRAM over SaslHandshake v0 and bare tokens (what older clients speak). */
export async function scramLoginV0(
  client: RawKafka,
  username: string,
  mechanism: ScramMechanism = "SCRAM-SHA-512",
): Promise<void> {
  const handshake = await client.call(K.SaslHandshake, 0, { mechanism });
  if (handshake["errorCode"] !== 0) throw new Error(`handshake ${handshake["errorCode"]}`);
  const scram = new ScramClientExchange(mechanism, { username, password: PASSWORD });
  const serverFirst = await bareToken(client, scram.first());
  scram.verify(await bareToken(client, scram.final(serverFirst)));
}

/** A raw connection logged in as `user` with SCRAM-SHA-256. */
export async function kafkaAs(port: number, user: string): Promise<RawKafka> {
  const client = await RawKafka.connect(port);
  const result = await scramLogin(client, user);
  if (result.errorCode !== 0) {
    client.close();
    throw new Error(`login as ${user} failed: ${JSON.stringify(result)}`);
  }
  return client;
}

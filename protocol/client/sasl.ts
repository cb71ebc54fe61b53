// The client's side of SASL (PROTOCOL.md section 11.3): SaslHandshake naming the mechanism,
// then SaslAuthenticate steps: two for SCRAM (whose last answer proves the server knows the
// user's credential; a wrong proof fails here), one for PLAIN.

import { API } from "../codec/frames.ts";
import {
  readSaslAuthenticate,
  readSaslHandshakeResponse,
  type SaslMechanism,
  writeSaslAuthenticate,
  writeSaslHandshakeRequest,
} from "../codec/sasl.ts";
import { ScramClientExchange, ScramError } from "../codec/scram.ts";
import type { Reader, Writer } from "../codec/wire.ts";
import { ClientError } from "./errors.ts";

export type ClientSaslOptions = {
  /** Default SCRAM-SHA-256. PLAIN sends the password itself: use it over TLS only. */
  mechanism?: SaslMechanism;
  username: string;
  password: string;
};

type Requester = {
  supports(apiKey: number): boolean;
  request(apiKey: number, writeBody: (writer: Writer) => void): Promise<Reader>;
};

export function checkSaslOptions(sasl: ClientSaslOptions): ClientSaslOptions {
  const mechanism = sasl.mechanism ?? "SCRAM-SHA-256";
  if (!["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"].includes(mechanism)) {
    throw new TypeError(`sasl mechanism ${String(mechanism)} is not SCRAM-SHA-256/512 or PLAIN`);
  }
  if (typeof sasl.username !== "string" || sasl.username.length === 0) {
    throw new TypeError("sasl username must be a non-empty string");
  }
  if (typeof sasl.password !== "string") throw new TypeError("sasl password must be a string");
  return { ...sasl, mechanism };
}

/** Authenticates an open connection; rejects with the server's error or AUTHENTICATION_FAILED. */
export async function authenticate(connection: Requester, sasl: ClientSaslOptions): Promise<void> {
  const mechanism = sasl.mechanism ?? "SCRAM-SHA-256";
  if (!connection.supports(API.SaslHandshake)) {
    throw new ClientError(
      "UNSUPPORTED_SERVER",
      "the server has authentication off (it does not offer SaslHandshake); connect without sasl",
    );
  }
  await connection
    .request(API.SaslHandshake, (writer) => writeSaslHandshakeRequest(writer, mechanism))
    .then(readSaslHandshakeResponse);
  const step = async (message: string): Promise<string> => {
    const reader = await connection.request(API.SaslAuthenticate, (writer) =>
      writeSaslAuthenticate(writer, new TextEncoder().encode(message)),
    );
    return new TextDecoder().decode(readSaslAuthenticate(reader));
  };
  if (mechanism === "PLAIN") {
    await step(`\u0000${sasl.username}\u0000${sasl.password}`);
    return;
  }
  const scram = new ScramClientExchange(mechanism, sasl);
  try {
    const serverFirst = await step(scram.first());
    scram.verify(await step(scram.final(serverFirst)));
  } catch (error) {
    if (!(error instanceof ScramError)) throw error;
    throw new ClientError("AUTHENTICATION_FAILED", error.message, { cause: error });
  }
}

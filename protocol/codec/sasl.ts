// SASL and security administration (PROTOCOL.md section 11):
//
//   SaslHandshakeRequest     = mechanism:string                         (api_key 21, v1)
//   SaslHandshakeResponse    = mechanisms:[string]
//   SaslAuthenticateRequest  = auth_bytes:bytes32                       (api_key 22, v1)
//   SaslAuthenticateResponse = auth_bytes:bytes32
//
//   AlterSecurityRequest     = msgpack { action: "upsertUser", name, credentials }   (api 23)
//                                    | { action: "deleteUser", name }
//                                    | { action: "addAcl" | "removeAcl", acl }
//   AlterSecurityResponse    = msgpack { errorCode, errorMessage, changed: int }
//   DescribeSecurityRequest  = msgpack { what: "users" | "acls" }                   (api 24)
//   DescribeSecurityResponse = msgpack { errorCode, errorMessage,
//                                        users: [{ name, mechanisms: [string] }], acls: [Acl] }

import { ProtocolError } from "./errors.ts";
import type { Reader, Writer } from "./wire.ts";

/** Mechanisms a server may offer. */
export const SASL_MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

/** No SASL message is longer: the pre-authentication frame limit is above it. */
export const SASL_AUTH_BYTES_MAX = 4096;

export function writeSaslHandshakeRequest(writer: Writer, mechanism: string): void {
  writer.string(mechanism);
}

export function readSaslHandshakeRequest(reader: Reader): string {
  const mechanism = reader.string("mechanism");
  reader.expectEnd("SaslHandshakeRequest");
  return mechanism;
}

export function writeSaslHandshakeResponse(writer: Writer, mechanisms: readonly string[]): void {
  writer.u16(mechanisms.length);
  for (const mechanism of mechanisms) writer.string(mechanism);
}

export function readSaslHandshakeResponse(reader: Reader): string[] {
  const count = reader.count("mechanisms", 2);
  const mechanisms: string[] = [];
  for (let i = 0; i < count; i++) mechanisms.push(reader.string("mechanism"));
  return mechanisms;
}

export function writeSaslAuthenticate(writer: Writer, authBytes: Uint8Array): void {
  writer.u32(authBytes.length).raw(authBytes);
}

/** Reads a SaslAuthenticate request or response body: one bytes32, nothing after it. */
export function readSaslAuthenticate(reader: Reader): Uint8Array {
  const length = reader.u32("auth_bytes length");
  if (length > SASL_AUTH_BYTES_MAX) {
    throw ProtocolError.invalid(`auth_bytes of ${length} bytes exceeds ${SASL_AUTH_BYTES_MAX}`);
  }
  const bytes = reader.raw(length, "auth_bytes");
  reader.expectEnd("SaslAuthenticate");
  return bytes;
}

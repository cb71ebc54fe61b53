// The SASL requests' handlers on the Kafka listener; the exchange itself is _security.ts.

import { KAFKA_ERRORS as E } from "./errors.ts";
import type { Handler } from "./_plane.ts";

/** SaslHandshake; with authentication off, ILLEGAL_SASL_STATE and no mechanisms (as Kafka). */
export const saslHandshake: Handler = (plane, body, info) => {
  const session = info.connection.session;
  if (plane.security === undefined || session === undefined) {
    return { errorCode: E.ILLEGAL_SASL_STATE, mechanisms: [] };
  }
  return plane.security.handshake(session, info.connection, body, info.apiVersion);
};

/** SaslAuthenticate; with authentication off, ILLEGAL_SASL_STATE. */
export const saslAuthenticate: Handler = (plane, body, info) => {
  const session = info.connection.session;
  if (plane.security === undefined || session === undefined) {
    return {
      errorCode: E.ILLEGAL_SASL_STATE,
      errorMessage: "authentication is off on this listener",
      authBytes: new Uint8Array(0),
      sessionLifetimeMs: 0,
    };
  }
  return plane.security.authenticate(session, info.connection, body["authBytes"] as Uint8Array);
};

// The wire: framing, message codecs, the TCP server that maps requests onto the engine, and the
// TypeScript client. PROTOCOL.md beside this file is the normative spec.

export * from "./client/mod.ts";
export { API, API_VERSIONS } from "./codec/frames.ts";
export {
  ProtocolError,
  ServerError,
  WIRE_ERRORS,
  type WireErrorName,
  wireErrorName,
} from "./errors.ts";
export { SluiceServer, type ServerOptions } from "./server.ts";
export { SERVER_LIMITS_DEFAULT, type ServerLimits } from "./server_connection.ts";

// The wire: codec/ (framing and message codecs), server/ (the TCP server that maps requests
// onto the engine) and client/ (the TypeScript client). PROTOCOL.md beside this file is the
// normative spec.

export * from "./client/mod.ts";
export { API, API_VERSIONS } from "./codec/frames.ts";
export {
  ProtocolError,
  ServerError,
  WIRE_ERRORS,
  type WireErrorName,
  wireErrorName,
} from "./codec/errors.ts";
export * from "./server/mod.ts";

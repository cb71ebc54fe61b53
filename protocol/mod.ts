// The wire: framing, message codecs, the TCP server that maps requests onto the engine, and the
// TypeScript client. PROTOCOL.md beside this file is the normative spec. Not built yet.
export {};

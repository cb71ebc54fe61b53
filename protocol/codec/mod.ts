// The wire format shared by the server and the client (../PROTOCOL.md): frames and headers, the
// message codecs (one per API and version), the Reader and Writer they are built on (and the
// ChunkReader for a body that arrived in several chunks), the wire error table, the drain loop
// that splits a byte stream into frames, and the Outbox that writes frames to a socket. Nothing
// here knows the engine or holds a socket of its own.

export * from "./chunk_reader.ts";
export * from "./control.ts";
export * from "./errors.ts";
export * from "./fetch.ts";
export * from "./frame_reader.ts";
export * from "./frames.ts";
export * from "./handshake.ts";
export * from "./outbox.ts";
export * from "./produce.ts";
export * from "./queue_ack.ts";
export * from "./queue_control.ts";
export * from "./queue_fetch.ts";
export * from "./wire.ts";

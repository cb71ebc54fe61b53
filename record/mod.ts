// The record format shared by every layer of sluice: Kafka's RecordBatch v2 layout and its field
// offsets, varint/varlong, CRC-32C, the compression codecs, the record encoder and decoders, the
// one batch writer, SluiceError with its closed code table, assert, the slabs that small
// short-lived buffers are carved from, and the id table and callback list that per-request
// entries live in. It imports nothing else of sluice: the engine (storage) and the protocol
// (server and client) both build on it, so the client shares the batch format without
// depending on the engine.

export * from "./batch.ts";
export * from "./batch_writer.ts";
export * from "./callback_list.ts";
export * from "./compression.ts";
export * from "./crc32c.ts";
export * from "./decode.ts";
export * from "./encode.ts";
export * from "./errors.ts";
export * from "./headers.ts";
export * from "./id_table.ts";
export * from "./indexed_set.ts";
export * from "./murmur2.ts";
export * from "./slab.ts";
export type * from "./types.ts";
export * from "./varint.ts";

// sluice's Kafka listener: Kafka's wire protocol on the same engine, topics, committed offsets,
// groups and limits as the native listener, so Kafka clients work against sluice unchanged.
// `SluiceServer.start({ kafka: { port } })` starts one beside the native port.

export { KAFKA_ERRORS, type KafkaErrorName } from "./errors.ts";
export { advertisedHostFor, KafkaListener, type KafkaListenerOptions } from "./listener.ts";
export { API_KEYS, MESSAGES } from "./messages.ts";
export { codecFor, type Field, type Message, type Struct } from "./schema.ts";
export { minimumCaps, parseVersionCaps, type VersionCaps } from "./versions.ts";
export { KafkaReader, KafkaWriter, concatChunks } from "./wire.ts";

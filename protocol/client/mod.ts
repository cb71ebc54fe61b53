// The TypeScript client for the sluice wire protocol (../PROTOCOL.md). Runs on Bun, Deno and
// Node ≥ 20 (node:net only).
//
//   const producer = new Producer({ host, port });
//   await producer.send({ topic: "events", key: "user-1", value: "hello" });
//   const consumer = new Consumer({ host, port, group: "readers" });
//   consumer.subscribe(["events"], { fromBeginning: true });
//   for await (const record of consumer) { ... }
//   const queue = new QueueConsumer({ host, port, queue: "work" });
//   for await (const message of queue) { ...; await message.accept(); }

export {
  Admin,
  type OffsetRequest,
  type OffsetResult,
  type OffsetSpec,
} from "./admin.ts";
export type { BytesInput, HeadersInput } from "./batch_builder.ts";
export {
  API_VERSION,
  CLIENT_VERSION,
  ClientConnection,
  type ClientConnectionOptions,
  type ClientConnectionStats,
  type RequestOptions,
} from "./connection.ts";
export type { ClientSaslOptions } from "./sasl.ts";
export type { ClientTlsOptions } from "./socket.ts";
export {
  Consumer,
  type ConsumerOptions,
  type ConsumerRecord,
  type OffsetReset,
  type TopicPartition,
} from "./consumer.ts";
export type {
  CommittedOffset,
  GroupDescription,
  GroupMemberDescription,
  GroupOffset,
  Metadata,
  NewTopic,
  OffsetToCommit,
  PartitionMetadata,
  ServerStats,
  TopicConfig,
  TopicMetadata,
  TopicPartitions,
} from "./control_calls.ts";
export type { AlterableTopicConfig, GroupList, GroupListing } from "./operator_calls.ts";
export type {
  BindingInfo,
  BindingSettings,
  ExchangeInfo,
  ExchangeSettings,
} from "./exchange_admin.ts";
export {
  ClientError,
  type ClientErrorCode,
  isRetriable,
  ServerError,
} from "./errors.ts";
export {
  DefaultPartitioner,
  murmur2,
  type Partitioner,
  partitionForKey,
  toPositive,
} from "./partitioner.ts";
export type { RecordMetadata } from "./produce_sender.ts";
export {
  type PublishRecord,
  type PublishResult,
  Publisher,
  type PublisherOptions,
  ROUTING_KEY_HEADER,
} from "./publisher.ts";
/** A record's own queue TTL: decimal milliseconds from its timestamp (PROTOCOL.md 7a). */
export { TTL_HEADER } from "../../record/mod.ts";
export {
  Producer,
  type ProducerOptions,
  type ProducerRecord,
  type SendCallback,
} from "./producer.ts";
export type {
  QueueDescription,
  QueueInfo,
  QueueSettings,
  QueueStatsInfo,
} from "./queue_admin.ts";
export {
  QueueConsumer,
  type QueueConsumerOptions,
  QueueMessage,
} from "./queue_consumer.ts";
export type { ClientOptions } from "./session.ts";

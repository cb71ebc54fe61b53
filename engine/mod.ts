// The embeddable storage core of sluice: segments, sparse indexes, partition logs, topics,
// committed offsets, consumer groups and queues. No sockets live here; protocol/ uses only
// this module.
// The record codec and the error base come from record/ and are re-exported here because an
// embedder needs them to build and read the batches it appends; the batch layout's byte offsets
// and varints stay in `sluice/record`.

export {
  assert,
  isSluiceError,
  SluiceError,
  type SluiceErrorCode,
  type SluiceErrorDetails,
} from "../record/mod.ts";
export {
  ALTERABLE_TOPIC_CONFIGS,
  Engine,
  type EngineOptions,
  PARTITION_SYNCS,
  PARTITIONS_MAX,
  type PartitionSync,
  SLOW_FSYNC_MS_DEFAULT,
  TOPIC_NAME_BYTES_MAX,
  type TopicInfo,
  validateTopicName,
} from "./engine.ts";
export {
  type Assignment,
  GroupCoordinator,
  type GroupCoordinatorOptions,
  type GroupDescription,
  type GroupEvent,
  type GroupSummary,
  type HeartbeatRequest,
  type HeartbeatResponse,
  validateGroupId,
} from "./groups.ts";
export { FileBudget, openFilesMaxDefault } from "./file_budget.ts";
export {
  TAIL_CACHE_TOTAL_BYTES_DEFAULT,
  TAIL_CACHE_TOTAL_BYTES_MIN,
  TailCacheBudget,
} from "./tail_cache_budget.ts";
export {
  type HistogramSnapshot,
  LATENCY_BUCKETS_SECONDS,
  LatencyHistogram,
} from "./latency_histogram.ts";
export type { FileIO, MapRange } from "./io.ts";
export { realFileIO } from "./io.ts";
export {
  type FsyncPolicy,
  LOG_CONFIG_DEFAULTS,
  type LogConfig,
  resolveLogConfig,
} from "./log_config.ts";
export {
  type AppendListener,
  type AppendResult,
  PartitionLog,
  type PartitionLogOptions,
  type ReadResult,
} from "./partition_log.ts";
export {
  type CompressionName,
  decodeRecordBatch,
  decodeRecordBatches,
  decodeRecordBatchViews,
  type DecodedRecordBatch,
  encodeRecordBatch,
  type EncodeBatchOptions,
  type LogRecord,
  type RecordHeader,
  type RecordInput,
  ROUTING_KEY_HEADER,
  TTL_HEADER,
} from "../record/mod.ts";
export {
  type CommittedOffset,
  type OffsetCommit,
  OffsetStore,
  type OffsetStoreOptions,
} from "./offset_store.ts";
export type { Corruption } from "./segment_scan.ts";
export { type BatchLease, LENT_BATCH_BYTES_MIN } from "./segment.ts";
export {
  QUEUE_MEMBERS_MAX,
  type Queue,
  type QueueFetchPartition,
  type QueueFetchResult,
  type QueuePartitionStats,
  type QueueStats,
  TTL_CHECK_MS_DEFAULT,
} from "./queue.ts";
export { ACK_RANGES_MAX, type QueueAck, type QueueAckType } from "./queue_ack.ts";
export {
  DELIVERY_LIMIT_DEFAULT,
  DELIVERY_LIMIT_MAX,
  LOCK_MS_DEFAULT,
  LOCK_MS_MAX,
  LOCK_MS_MIN,
  MAX_IN_FLIGHT_DEFAULT,
  MAX_IN_FLIGHT_MAX,
  PREFETCH_DEFAULT,
  PREFETCH_MAX,
  type QueueConfig,
  type QueueFsync,
  type QueueOptions,
  type QueueStart,
  type QueueTtlHeader,
  QUEUES_MAX,
  validateQueueName,
} from "./queue_config.ts";
export type { AcquiredRange } from "./queue_cursor.ts";
export { DEATH_HEADER_PREFIX, type DeathReason } from "./queue_dead_letter.ts";
export {
  type BatchExpiry,
  batchExpiry,
  headerTtlMs,
  MESSAGE_TTL_MS_MAX,
} from "./queue_ttl.ts";
export { MAX_LENGTH_BYTES_MAX } from "./queue_maxbytes.ts";
export { LAZY_SYNC_DELAY_MS as QUEUE_LAZY_SYNC_DELAY_MS } from "./queue_state_log.ts";
export { MAX_LENGTH_MAX, type QueueOverflow } from "./queue_maxlen.ts";
export {
  PRIORITIES_MAX,
  PRIORITIES_MIN,
  PRIORITY_RATIO_MAX,
  priorityLevel,
} from "./queue_priority.ts";
export {
  DELAY_MS_MAX,
  DELAY_TIERS,
  DELIVERIES_HEADER,
  DelayTiers,
  DUE_HEADER,
  type RetryBackoff,
  retryDelayMs,
  tierFor,
} from "./queue_delay.ts";
export {
  FETCH_BYTES_DEFAULT,
  FETCH_BYTES_MAX,
  FETCH_RECORDS_DEFAULT,
  FETCH_RECORDS_MAX,
  type QueueFetchOptions,
} from "./queue_fetch.ts";
export {
  ALTERNATE_HOPS_MAX,
  type BindOptions,
  BINDINGS_MAX,
  DEFAULT_EXCHANGE,
  type ExchangeConfig,
  type ExchangeOptions,
  EXCHANGES_MAX,
} from "./exchanges.ts";
export {
  type Binding,
  type BindingDestination,
  EXCHANGE_TYPES,
  type ExchangeType,
  type HeaderMatch,
  ROUTING_KEY_BYTES_MAX,
} from "./exchange_routing.ts";
export type { PublishedBatch } from "./exchange_publish.ts";
export {
  beginColdViews,
  coldViewWritten,
  endColdViews,
  retainColdView,
} from "./cold_read.ts";

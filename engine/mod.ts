// The embeddable storage core of sluice: record batches, segments, sparse indexes, partition
// logs, topics and committed offsets. No sockets live here; protocol/ uses only this module.

export {
  assert,
  isSluiceError,
  SluiceError,
  type SluiceErrorCode,
  type SluiceErrorDetails,
} from "./errors.ts";
export {
  Engine,
  type EngineOptions,
  PARTITIONS_MAX,
  TOPIC_NAME_BYTES_MAX,
  type TopicInfo,
  validateTopicName,
} from "./engine.ts";
export {
  type Assignment,
  GroupCoordinator,
  type GroupCoordinatorOptions,
  type GroupDescription,
  type HeartbeatRequest,
  type HeartbeatResponse,
  validateGroupId,
} from "./groups.ts";
export type { FileIO } from "./io.ts";
export { realFileIO } from "./io.ts";
export {
  type FsyncPolicy,
  LOG_CONFIG_DEFAULTS,
  type LogConfig,
  resolveLogConfig,
} from "./log_config.ts";
export {
  type AppendResult,
  PartitionLog,
  type PartitionLogOptions,
  type ReadResult,
} from "./partition_log.ts";
export {
  ATTRIBUTES_AT,
  BASE_SEQUENCE_AT,
  BASE_TIMESTAMP_AT,
  BATCH_LENGTH_AT,
  CRC_AT,
  LAST_OFFSET_DELTA_AT,
  LEADER_EPOCH_AT,
  LOG_OVERHEAD_BYTES,
  MAGIC_AT,
  MAGIC_V2,
  MAX_TIMESTAMP_AT,
  PRODUCER_EPOCH_AT,
  PRODUCER_ID_AT,
  RECORD_COUNT_AT,
  BATCH_HEADER_BYTES,
  type BatchHeader,
  batchSizeAt,
  type BatchProblem,
  checkBatch,
  COMPRESSION,
  type CompressionName,
  readBatchHeader,
  writeInt32,
  writeInt64,
} from "./record_batch.ts";
export {
  decodeRecordBatch,
  decodeRecordBatches,
  decodeRecordBatchViews,
  type DecodedRecordBatch,
  encodeRecordBatch,
  type EncodeBatchOptions,
  type LogRecord,
  type RecordHeader,
  type RecordInput,
} from "./record_codec.ts";
export {
  type CommittedOffset,
  type OffsetCommit,
  OffsetStore,
  type OffsetStoreOptions,
} from "./offset_store.ts";
export type { Corruption } from "./segment_scan.ts";
export { varintSize, varlongSize, writeVarint, writeVarlong } from "./varint.ts";

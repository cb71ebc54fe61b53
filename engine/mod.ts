// The embeddable storage core of sluice: segments, sparse indexes, partition logs, topics,
// committed offsets and consumer groups. No sockets live here; protocol/ uses only this module.
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
} from "../record/mod.ts";
export {
  type CommittedOffset,
  type OffsetCommit,
  OffsetStore,
  type OffsetStoreOptions,
} from "./offset_store.ts";
export type { Corruption } from "./segment_scan.ts";

// ApiVersions, Metadata, topic admin, configs, the cluster's description, producer ids and the
// coordinator lookup, over Kafka's protocol. sluice is one node: node id 0 leads every
// partition and coordinates every group, at the advertised address. Leader epochs are -1, so
// clients skip leader-epoch validation (OffsetForLeaderEpoch is not served).

import { type LogConfig, SluiceError, type TopicInfo } from "../../engine/mod.ts";
import { errorToKafka, KAFKA_ERRORS } from "./errors.ts";
import type { KafkaPlane, RequestInfo } from "./_plane.ts";
import type { Struct } from "./schema.ts";
import { topicById, topicId } from "./_topic_ids.ts";
import { apiVersionsBody } from "./versions.ts";

const NODE_ID = 0;
export const CLUSTER_ID = "sluice";
/** Kafka's "authorized operations not requested" marker. */
const OPERATIONS_OMITTED = -2147483648;

export function apiVersions(plane: KafkaPlane): Struct {
  return apiVersionsBody(plane.caps);
}

function broker(plane: KafkaPlane): Struct {
  return {
    nodeId: NODE_ID,
    host: plane.advertised.host,
    port: plane.advertised.port(),
    rack: null,
  };
}

function topicMetadata(info: TopicInfo): Struct {
  const partitions = Array.from({ length: info.partitions }, (_, partitionIndex) => ({
    errorCode: 0,
    partitionIndex,
    leaderId: NODE_ID,
    leaderEpoch: -1,
    replicaNodes: [NODE_ID],
    isrNodes: [NODE_ID],
    offlineReplicas: [],
  }));
  return {
    errorCode: 0,
    name: info.name,
    topicId: topicId(info),
    isInternal: false,
    partitions,
    topicAuthorizedOperations: OPERATIONS_OMITTED,
  };
}

/** The topic, created first (Metadata's auto-creation) when allowed and missing. */
async function describeOrCreate(plane: KafkaPlane, name: string, create: boolean): Promise<Struct> {
  try {
    return topicMetadata(plane.engine.describeTopic(name));
  } catch (error) {
    const missing = error instanceof SluiceError && error.code === "UNKNOWN_TOPIC";
    if (!missing || !create) return { ...emptyTopic(name), errorCode: errorToKafka(error).code };
  }
  try {
    await plane.engine.createTopic(name, { partitions: plane.autoCreatePartitions });
    plane.groups.topicChanged(name);
  } catch (error) {
    // A concurrent request created it first: that is as good.
    if (!(error instanceof SluiceError && error.code === "TOPIC_EXISTS")) {
      return { ...emptyTopic(name), errorCode: errorToKafka(error).code };
    }
  }
  return topicMetadata(plane.engine.describeTopic(name));
}

function emptyTopic(name: string): Struct {
  return { errorCode: 0, name, isInternal: false, partitions: [], topicAuthorizedOperations: 0 };
}

/**
 * Metadata: every topic when `topics` is null, else the ones named; on this listener a missing
 * topic is created (autoCreatePartitions partitions) when the request allows it and the
 * listener's `autoCreateTopics` is on.
 */
export async function metadata(plane: KafkaPlane, body: Struct): Promise<Struct> {
  const wanted = body["topics"] as Struct[] | null;
  const create = plane.autoCreateTopics && body["allowAutoTopicCreation"] === true;
  const topics =
    wanted === null
      ? plane.engine.listTopics().map(topicMetadata)
      : await Promise.all(
          wanted.map((t) => {
            const name = t["name"] as string | null;
            if (name !== null) return describeOrCreate(plane, name, create);
            // Versions 10 and later may name a topic by id instead.
            const info = topicById(plane.engine, t["topicId"] as Uint8Array);
            if (info !== undefined) return topicMetadata(info);
            return { ...emptyTopic(""), name: null, errorCode: KAFKA_ERRORS.UNKNOWN_TOPIC_ID };
          }),
        );
  return {
    throttleTimeMs: 0,
    brokers: [broker(plane)],
    clusterId: CLUSTER_ID,
    controllerId: NODE_ID,
    topics,
    clusterAuthorizedOperations: OPERATIONS_OMITTED,
  };
}

/** Kafka topic config names sluice maps onto its own LogConfig fields. */
const CONFIG_NAMES: Readonly<Record<string, keyof LogConfig>> = {
  "retention.ms": "retentionMs",
  "retention.bytes": "retentionBytes",
  "segment.bytes": "segmentBytes",
  "segment.ms": "segmentMs",
  "max.message.bytes": "maxBatchBytes",
  "index.interval.bytes": "indexIntervalBytes",
};

/** Kafka configs accepted with the one value sluice implements. */
const FIXED_CONFIGS: Readonly<Record<string, string>> = {
  "cleanup.policy": "delete",
  "compression.type": "producer",
  "min.insync.replicas": "1",
};

function topicConfig(configs: readonly Struct[]): Partial<LogConfig> {
  const config: Record<string, number> = {};
  for (const entry of configs) {
    const name = entry["name"] as string;
    const value = entry["value"] as string | null;
    if (FIXED_CONFIGS[name] !== undefined && (value === null || value === FIXED_CONFIGS[name])) {
      continue;
    }
    const field = CONFIG_NAMES[name];
    const number = Number(value);
    if (field === undefined || value === null || !Number.isSafeInteger(number)) {
      throw new SluiceError("INVALID_CONFIG", `Topic config ${name}=${value} is not supported`, {
        name,
        value: value ?? "null",
      });
    }
    config[field] = number;
  }
  return config as Partial<LogConfig>;
}

async function createOne(plane: KafkaPlane, topic: Struct, validateOnly: boolean): Promise<Struct> {
  const name = topic["name"] as string;
  const requested = topic["numPartitions"] as number;
  const numPartitions = requested === -1 ? plane.autoCreatePartitions : requested;
  const answer: Struct = {
    name,
    errorCode: 0,
    errorMessage: null,
    numPartitions,
    replicationFactor: 1,
    configs: null,
  };
  const replication = topic["replicationFactor"] as number;
  if (replication !== -1 && replication !== 1) {
    answer["errorCode"] = KAFKA_ERRORS.INVALID_REPLICATION_FACTOR;
    answer["errorMessage"] = `replication factor ${replication}: sluice has one node`;
    return answer;
  }
  if ((topic["assignments"] as Struct[]).length > 0 || numPartitions < 1) {
    answer["errorCode"] = KAFKA_ERRORS.INVALID_PARTITIONS;
    answer["errorMessage"] = `partitions ${requested} (or replica assignments) are not valid here`;
    return answer;
  }
  try {
    const config = topicConfig(topic["configs"] as Struct[]);
    if (validateOnly) {
      if (plane.engine.listTopics().some((t) => t.name === name)) {
        throw new SluiceError("TOPIC_EXISTS", `Topic '${name}' already exists`, { name });
      }
    } else {
      await plane.engine.createTopic(name, { partitions: numPartitions, config });
      plane.groups.topicChanged(name);
    }
  } catch (error) {
    const { code, message } = errorToKafka(error);
    answer["errorCode"] = code;
    answer["errorMessage"] = message;
  }
  return answer;
}

export async function createTopics(plane: KafkaPlane, body: Struct): Promise<Struct> {
  const topics = (body["topics"] as Struct[]).map((t) => ({ ...t }));
  const validateOnly = body["validateOnly"] === true;
  const answers = [];
  for (const topic of topics) answers.push(await createOne(plane, topic, validateOnly));
  return { throttleTimeMs: 0, topics: answers };
}

/** DeleteTopics by name (versions 0-5) or by name or topic id (6); sluice has no topic ids. */
export async function deleteTopics(plane: KafkaPlane, body: Struct, info: RequestInfo) {
  const names: (string | null)[] =
    info.apiVersion >= 6
      ? (body["topics"] as Struct[]).map((t) => t["name"] as string | null)
      : [...(body["topicNames"] as string[])];
  const responses = [];
  for (const name of names) {
    if (name === null) {
      const message = "sluice has no topic ids: delete by name";
      responses.push({ name, errorCode: KAFKA_ERRORS.UNKNOWN_TOPIC_ID, errorMessage: message });
      continue;
    }
    try {
      await plane.engine.deleteTopic(name);
      plane.groups.topicChanged(name);
      responses.push({ name, errorCode: 0, errorMessage: null });
    } catch (error) {
      const { code, message } = errorToKafka(error);
      responses.push({ name, errorCode: code, errorMessage: message });
    }
  }
  return { throttleTimeMs: 0, responses };
}

/** Kafka's DescribeConfigs resource types. */
const RESOURCE_TOPIC = 2;
const RESOURCE_BROKER = 4;
/** Kafka's config sources: dynamic topic config, static broker config, default. */
const SOURCE_TOPIC = 1;
const SOURCE_DEFAULT = 5;

function configEntries(pairs: [string, string][], source: number, keys: string[] | null) {
  return pairs
    .filter(([name]) => keys === null || keys.includes(name))
    .map(([name, value]) => ({
      name,
      value,
      readOnly: source !== SOURCE_TOPIC,
      isDefault: source === SOURCE_DEFAULT,
      configSource: source,
      isSensitive: false,
      synonyms: [],
      configType: 0,
      documentation: null,
    }));
}

function describeResource(plane: KafkaPlane, resource: Struct): Struct {
  const resourceType = resource["resourceType"] as number;
  const resourceName = resource["resourceName"] as string;
  const keys = resource["configurationKeys"] as string[] | null;
  const answer: Struct = {
    errorCode: 0,
    errorMessage: null,
    resourceType,
    resourceName,
    configs: [],
  };
  try {
    if (resourceType === RESOURCE_TOPIC) {
      const config = plane.engine.describeTopic(resourceName).config;
      const pairs = Object.entries(CONFIG_NAMES).map(([kafkaName, field]): [string, string] => [
        kafkaName,
        String(config[field]),
      ]);
      for (const [name, value] of Object.entries(FIXED_CONFIGS)) pairs.push([name, value]);
      answer["configs"] = configEntries(pairs, SOURCE_TOPIC, keys);
    } else if (resourceType === RESOURCE_BROKER) {
      const pairs: [string, string][] = [
        ["num.partitions", String(plane.autoCreatePartitions)],
        ["auto.create.topics.enable", String(plane.autoCreateTopics)],
        ["message.max.bytes", String(plane.limits.frameBytesMax)],
        ["default.replication.factor", "1"],
      ];
      answer["configs"] = configEntries(pairs, SOURCE_DEFAULT, keys);
    } else {
      answer["errorCode"] = KAFKA_ERRORS.INVALID_REQUEST;
      answer["errorMessage"] = `resource type ${resourceType} is not served`;
    }
  } catch (error) {
    const { code, message } = errorToKafka(error);
    answer["errorCode"] = code;
    answer["errorMessage"] = message;
  }
  return answer;
}

/** DescribeConfigs, read only: topics (sluice's log config under Kafka's names) and the broker. */
export function describeConfigs(plane: KafkaPlane, body: Struct): Struct {
  const resources = body["resources"] as Struct[];
  return { throttleTimeMs: 0, results: resources.map((r) => describeResource(plane, r)) };
}

export function describeCluster(plane: KafkaPlane): Struct {
  return {
    throttleTimeMs: 0,
    errorCode: 0,
    errorMessage: null,
    clusterId: CLUSTER_ID,
    controllerId: NODE_ID,
    brokers: [
      { brokerId: NODE_ID, host: plane.advertised.host, port: plane.advertised.port(), rack: null },
    ],
    clusterAuthorizedOperations: OPERATIONS_OMITTED,
  };
}

/**
 * InitProducerId for the idempotent producer: a fresh producer id from the engine, epoch 0,
 * the same ids and sequence checks as the native listener's. Transactions are not supported.
 */
export function initProducerId(plane: KafkaPlane, body: Struct): Struct {
  if (body["transactionalId"] !== null) {
    return {
      throttleTimeMs: 0,
      errorCode: KAFKA_ERRORS.INVALID_REQUEST,
      producerId: -1,
      producerEpoch: -1,
    };
  }
  return {
    throttleTimeMs: 0,
    errorCode: 0,
    producerId: plane.engine.allocateProducerId(),
    producerEpoch: 0,
  };
}

/** Kafka's FindCoordinator key types: a consumer group, a transactional id. */
const KEY_TYPE_GROUP = 0;

function coordinator(plane: KafkaPlane, key: string, keyType: number): Struct {
  if (keyType !== KEY_TYPE_GROUP) {
    return {
      key,
      nodeId: -1,
      host: "",
      port: -1,
      errorCode: KAFKA_ERRORS.COORDINATOR_NOT_AVAILABLE,
      errorMessage: "transactions are not supported",
    };
  }
  const port = plane.advertised.port();
  return {
    key,
    nodeId: NODE_ID,
    host: plane.advertised.host,
    port,
    errorCode: 0,
    errorMessage: null,
  };
}

/** FindCoordinator: node 0 for every group; one key (versions 0-3) or a list (4 and later). */
export function findCoordinator(plane: KafkaPlane, body: Struct, info: RequestInfo): Struct {
  const keyType = body["keyType"] as number;
  if (info.apiVersion >= 4) {
    const keys = body["coordinatorKeys"] as string[];
    return { throttleTimeMs: 0, coordinators: keys.map((key) => coordinator(plane, key, keyType)) };
  }
  return { throttleTimeMs: 0, ...coordinator(plane, body["key"] as string, keyType) };
}

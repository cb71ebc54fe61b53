// The Kafka messages sluice serves, written by hand from the public protocol guide
// (kafka.apache.org/protocol, "The Messages"): each request and response as its fields, with
// the versions each field exists in. `min`/`max` are the versions advertised in ApiVersions,
// chosen so that one answer serves kafkajs 2.2.4 (never flexible), librdkafka 2.0.2 and newer
// (kcat), and clients that speak only flexible versions. Produce is advertised from 0 because
// librdkafka turns compression off when Produce's minimum is above 0; versions 0-2 (message
// formats v0/v1) are refused per partition with UNSUPPORTED_VERSION.

import type { Field, Message } from "./schema.ts";

const f = (
  name: string,
  type: Field["type"],
  versions = "0+",
  extra: Partial<Field> = {},
): Field => ({ name, type, versions, ...extra });

const throttle = (versions: string) => f("throttleTimeMs", "int32", versions);

export const API_KEYS = {
  Produce: 0,
  Fetch: 1,
  ListOffsets: 2,
  Metadata: 3,
  OffsetCommit: 8,
  OffsetFetch: 9,
  FindCoordinator: 10,
  JoinGroup: 11,
  Heartbeat: 12,
  LeaveGroup: 13,
  SyncGroup: 14,
  DescribeGroups: 15,
  ListGroups: 16,
  SaslHandshake: 17,
  ApiVersions: 18,
  CreateTopics: 19,
  DeleteTopics: 20,
  InitProducerId: 22,
  DescribeConfigs: 32,
  SaslAuthenticate: 36,
  DescribeCluster: 60,
  ConsumerGroupHeartbeat: 68,
} as const;

const K = API_KEYS;

export const Produce: Message = {
  key: K.Produce,
  name: "Produce",
  min: 0,
  max: 9,
  flexible: 9,
  request: [
    f("transactionalId", "string", "3+", { nullable: "3+", default: null }),
    f("acks", "int16"),
    f("timeoutMs", "int32"),
    f("topics", "[]", "0+", {
      fields: [
        f("name", "string"),
        f("partitions", "[]", "0+", {
          fields: [f("index", "int32"), f("records", "records", "0+", { nullable: "0+" })],
        }),
      ],
    }),
  ],
  response: [
    f("responses", "[]", "0+", {
      fields: [
        f("name", "string"),
        f("partitions", "[]", "0+", {
          fields: [
            f("index", "int32"),
            f("errorCode", "int16"),
            f("baseOffset", "int64"),
            f("logAppendTimeMs", "int64", "2+", { default: -1 }),
            f("logStartOffset", "int64", "5+", { default: -1 }),
            f("recordErrors", "[]", "8+", {
              fields: [
                f("batchIndex", "int32"),
                f("batchIndexErrorMessage", "string", "8+", { nullable: "8+" }),
              ],
            }),
            f("errorMessage", "string", "8+", { nullable: "8+" }),
          ],
        }),
      ],
    }),
    throttle("1+"),
  ],
};

export const Fetch: Message = {
  key: K.Fetch,
  name: "Fetch",
  min: 4,
  max: 12,
  flexible: 12,
  request: [
    f("clusterId", "string", "12+", { nullable: "12+", tag: 0 }),
    f("replicaId", "int32", "0-14", { default: -1 }),
    f("maxWaitMs", "int32"),
    f("minBytes", "int32"),
    f("maxBytes", "int32", "3+", { default: 0x7fff_ffff }),
    f("isolationLevel", "int8", "4+"),
    f("sessionId", "int32", "7+"),
    f("sessionEpoch", "int32", "7+", { default: -1 }),
    f("topics", "[]", "0+", {
      fields: [
        f("topic", "string", "0-12"),
        f("partitions", "[]", "0+", {
          fields: [
            f("partition", "int32"),
            f("currentLeaderEpoch", "int32", "9+", { default: -1 }),
            f("fetchOffset", "int64"),
            f("lastFetchedEpoch", "int32", "12+", { default: -1 }),
            f("logStartOffset", "int64", "5+", { default: -1 }),
            f("partitionMaxBytes", "int32"),
          ],
        }),
      ],
    }),
    f("forgottenTopicsData", "[]", "7+", {
      fields: [f("topic", "string", "7-12"), f("partitions", "[]int32", "7+")],
    }),
    f("rackId", "string", "11+"),
  ],
  response: [
    throttle("1+"),
    f("errorCode", "int16", "7+"),
    f("sessionId", "int32", "7+"),
    f("responses", "[]", "0+", {
      fields: [
        f("topic", "string", "0-12"),
        f("partitions", "[]", "0+", {
          fields: [
            f("partitionIndex", "int32"),
            f("errorCode", "int16"),
            f("highWatermark", "int64"),
            f("lastStableOffset", "int64", "4+", { default: -1 }),
            f("logStartOffset", "int64", "5+", { default: -1 }),
            f("abortedTransactions", "[]", "4+", {
              nullable: "4+",
              fields: [f("producerId", "int64"), f("firstOffset", "int64")],
            }),
            f("preferredReadReplica", "int32", "11+", { default: -1 }),
            f("records", "records", "0+", { nullable: "0+" }),
          ],
        }),
      ],
    }),
  ],
};

export const ListOffsets: Message = {
  key: K.ListOffsets,
  name: "ListOffsets",
  min: 1,
  max: 6,
  flexible: 6,
  request: [
    f("replicaId", "int32"),
    f("isolationLevel", "int8", "2+"),
    f("topics", "[]", "0+", {
      fields: [
        f("name", "string"),
        f("partitions", "[]", "0+", {
          fields: [
            f("partitionIndex", "int32"),
            f("currentLeaderEpoch", "int32", "4+", { default: -1 }),
            f("timestamp", "int64"),
            f("maxNumOffsets", "int32", "0", { default: 1 }),
          ],
        }),
      ],
    }),
  ],
  response: [
    throttle("2+"),
    f("topics", "[]", "0+", {
      fields: [
        f("name", "string"),
        f("partitions", "[]", "0+", {
          fields: [
            f("partitionIndex", "int32"),
            f("errorCode", "int16"),
            f("oldStyleOffsets", "[]int64", "0"),
            f("timestamp", "int64", "1+", { default: -1 }),
            f("offset", "int64", "1+", { default: -1 }),
            f("leaderEpoch", "int32", "4+", { default: -1 }),
          ],
        }),
      ],
    }),
  ],
};

export const Metadata: Message = {
  key: K.Metadata,
  name: "Metadata",
  min: 1,
  max: 12,
  flexible: 9,
  request: [
    f("topics", "[]", "0+", {
      nullable: "1+",
      fields: [f("topicId", "uuid", "10+"), f("name", "string", "0+", { nullable: "10+" })],
    }),
    f("allowAutoTopicCreation", "bool", "4+", { default: true }),
    f("includeClusterAuthorizedOperations", "bool", "8-10"),
    f("includeTopicAuthorizedOperations", "bool", "8+"),
  ],
  response: [
    throttle("3+"),
    f("brokers", "[]", "0+", {
      fields: [
        f("nodeId", "int32"),
        f("host", "string"),
        f("port", "int32"),
        f("rack", "string", "1+", { nullable: "1+" }),
      ],
    }),
    f("clusterId", "string", "2+", { nullable: "2+" }),
    f("controllerId", "int32", "1+", { default: -1 }),
    f("topics", "[]", "0+", {
      fields: [
        f("errorCode", "int16"),
        f("name", "string", "0+", { nullable: "12+" }),
        f("topicId", "uuid", "10+"),
        f("isInternal", "bool", "1+"),
        f("partitions", "[]", "0+", {
          fields: [
            f("errorCode", "int16"),
            f("partitionIndex", "int32"),
            f("leaderId", "int32"),
            f("leaderEpoch", "int32", "7+", { default: -1 }),
            f("replicaNodes", "[]int32"),
            f("isrNodes", "[]int32"),
            f("offlineReplicas", "[]int32", "5+"),
          ],
        }),
        f("topicAuthorizedOperations", "int32", "8+", { default: -2147483648 }),
      ],
    }),
    f("clusterAuthorizedOperations", "int32", "8-10", { default: -2147483648 }),
  ],
};

export const OffsetCommit: Message = {
  key: K.OffsetCommit,
  name: "OffsetCommit",
  min: 2,
  // Version 9 is version 8 for KIP-848 members (the generation field holds the member epoch).
  max: 9,
  flexible: 8,
  request: [
    f("groupId", "string"),
    f("generationId", "int32", "1+", { default: -1 }),
    f("memberId", "string", "1+"),
    f("groupInstanceId", "string", "7+", { nullable: "7+", default: null }),
    f("retentionTimeMs", "int64", "2-4", { default: -1 }),
    f("topics", "[]", "0+", {
      fields: [
        f("name", "string"),
        f("partitions", "[]", "0+", {
          fields: [
            f("partitionIndex", "int32"),
            f("committedOffset", "int64"),
            f("committedLeaderEpoch", "int32", "6+", { default: -1 }),
            f("commitTimestamp", "int64", "1", { default: -1 }),
            f("committedMetadata", "string", "0+", { nullable: "0+" }),
          ],
        }),
      ],
    }),
  ],
  response: [
    throttle("3+"),
    f("topics", "[]", "0+", {
      fields: [
        f("name", "string"),
        f("partitions", "[]", "0+", {
          fields: [f("partitionIndex", "int32"), f("errorCode", "int16")],
        }),
      ],
    }),
  ],
};

const offsetFetchPartitions = f("partitions", "[]", "0+", {
  fields: [
    f("partitionIndex", "int32"),
    f("committedOffset", "int64"),
    f("committedLeaderEpoch", "int32", "5+", { default: -1 }),
    f("metadata", "string", "0+", { nullable: "0+" }),
    f("errorCode", "int16"),
  ],
});

export const OffsetFetch: Message = {
  key: K.OffsetFetch,
  name: "OffsetFetch",
  min: 1,
  max: 9,
  flexible: 6,
  request: [
    f("groupId", "string", "0-7"),
    f("topics", "[]", "0-7", {
      nullable: "2-7",
      fields: [f("name", "string"), f("partitionIndexes", "[]int32")],
    }),
    f("groups", "[]", "8+", {
      fields: [
        f("groupId", "string"),
        f("memberId", "string", "9+", { nullable: "9+", default: null }),
        f("memberEpoch", "int32", "9+", { default: -1 }),
        f("topics", "[]", "8+", {
          nullable: "8+",
          fields: [f("name", "string"), f("partitionIndexes", "[]int32")],
        }),
      ],
    }),
    f("requireStable", "bool", "7+"),
  ],
  response: [
    throttle("3+"),
    f("topics", "[]", "0-7", { fields: [f("name", "string"), offsetFetchPartitions] }),
    f("errorCode", "int16", "2-7"),
    f("groups", "[]", "8+", {
      fields: [
        f("groupId", "string"),
        f("topics", "[]", "8+", { fields: [f("name", "string"), offsetFetchPartitions] }),
        f("errorCode", "int16"),
      ],
    }),
  ],
};

export const FindCoordinator: Message = {
  key: K.FindCoordinator,
  name: "FindCoordinator",
  min: 0,
  max: 4,
  flexible: 3,
  request: [
    f("key", "string", "0-3"),
    f("keyType", "int8", "1+"),
    f("coordinatorKeys", "[]string", "4+"),
  ],
  response: [
    throttle("1+"),
    f("errorCode", "int16", "0-3"),
    f("errorMessage", "string", "1-3", { nullable: "1-3" }),
    f("nodeId", "int32", "0-3"),
    f("host", "string", "0-3"),
    f("port", "int32", "0-3"),
    f("coordinators", "[]", "4+", {
      fields: [
        f("key", "string"),
        f("nodeId", "int32"),
        f("host", "string"),
        f("port", "int32"),
        f("errorCode", "int16"),
        f("errorMessage", "string", "4+", { nullable: "4+" }),
      ],
    }),
  ],
};

export const JoinGroup: Message = {
  key: K.JoinGroup,
  name: "JoinGroup",
  min: 0,
  max: 6,
  flexible: 6,
  request: [
    f("groupId", "string"),
    f("sessionTimeoutMs", "int32"),
    f("rebalanceTimeoutMs", "int32", "1+", { default: -1 }),
    f("memberId", "string"),
    f("groupInstanceId", "string", "5+", { nullable: "5+", default: null }),
    f("protocolType", "string"),
    f("protocols", "[]", "0+", { fields: [f("name", "string"), f("metadata", "bytes")] }),
  ],
  response: [
    throttle("2+"),
    f("errorCode", "int16"),
    f("generationId", "int32", "0+", { default: -1 }),
    f("protocolName", "string"),
    f("leader", "string"),
    f("memberId", "string"),
    f("members", "[]", "0+", {
      fields: [
        f("memberId", "string"),
        f("groupInstanceId", "string", "5+", { nullable: "5+" }),
        f("metadata", "bytes"),
      ],
    }),
  ],
};

export const Heartbeat: Message = {
  key: K.Heartbeat,
  name: "Heartbeat",
  min: 0,
  max: 4,
  flexible: 4,
  request: [
    f("groupId", "string"),
    f("generationId", "int32"),
    f("memberId", "string"),
    f("groupInstanceId", "string", "3+", { nullable: "3+", default: null }),
  ],
  response: [throttle("1+"), f("errorCode", "int16")],
};

export const LeaveGroup: Message = {
  key: K.LeaveGroup,
  name: "LeaveGroup",
  min: 0,
  max: 4,
  flexible: 4,
  request: [
    f("groupId", "string"),
    f("memberId", "string", "0-2"),
    f("members", "[]", "3+", {
      fields: [f("memberId", "string"), f("groupInstanceId", "string", "3+", { nullable: "3+" })],
    }),
  ],
  response: [
    throttle("1+"),
    f("errorCode", "int16"),
    f("members", "[]", "3+", {
      fields: [
        f("memberId", "string"),
        f("groupInstanceId", "string", "3+", { nullable: "3+" }),
        f("errorCode", "int16"),
      ],
    }),
  ],
};

export const SyncGroup: Message = {
  key: K.SyncGroup,
  name: "SyncGroup",
  min: 0,
  max: 4,
  flexible: 4,
  request: [
    f("groupId", "string"),
    f("generationId", "int32"),
    f("memberId", "string"),
    f("groupInstanceId", "string", "3+", { nullable: "3+", default: null }),
    f("assignments", "[]", "0+", { fields: [f("memberId", "string"), f("assignment", "bytes")] }),
  ],
  response: [throttle("1+"), f("errorCode", "int16"), f("assignment", "bytes")],
};

export const DescribeGroups: Message = {
  key: K.DescribeGroups,
  name: "DescribeGroups",
  min: 0,
  max: 5,
  flexible: 5,
  request: [f("groups", "[]string"), f("includeAuthorizedOperations", "bool", "3+")],
  response: [
    throttle("1+"),
    f("groups", "[]", "0+", {
      fields: [
        f("errorCode", "int16"),
        f("groupId", "string"),
        f("groupState", "string"),
        f("protocolType", "string"),
        f("protocolData", "string"),
        f("members", "[]", "0+", {
          fields: [
            f("memberId", "string"),
            f("groupInstanceId", "string", "4+", { nullable: "4+" }),
            f("clientId", "string"),
            f("clientHost", "string"),
            f("memberMetadata", "bytes"),
            f("memberAssignment", "bytes"),
          ],
        }),
        f("authorizedOperations", "int32", "3+", { default: -2147483648 }),
      ],
    }),
  ],
};

export const ListGroups: Message = {
  key: K.ListGroups,
  name: "ListGroups",
  min: 0,
  max: 4,
  flexible: 3,
  request: [f("statesFilter", "[]string", "4+")],
  response: [
    throttle("1+"),
    f("errorCode", "int16"),
    f("groups", "[]", "0+", {
      fields: [
        f("groupId", "string"),
        f("protocolType", "string"),
        f("groupState", "string", "4+"),
      ],
    }),
  ],
};

export const ApiVersions: Message = {
  key: K.ApiVersions,
  name: "ApiVersions",
  min: 0,
  max: 3,
  flexible: 3,
  request: [f("clientSoftwareName", "string", "3+"), f("clientSoftwareVersion", "string", "3+")],
  response: [
    f("errorCode", "int16"),
    f("apiKeys", "[]", "0+", {
      fields: [f("apiKey", "int16"), f("minVersion", "int16"), f("maxVersion", "int16")],
    }),
    throttle("1+"),
  ],
};

/**
 * SaslHandshake: the client names a mechanism, the broker lists those it enables. In v0 the
 * SASL tokens that follow travel as bare size-prefixed frames; from v1 in SaslAuthenticate.
 */
export const SaslHandshake: Message = {
  key: K.SaslHandshake,
  name: "SaslHandshake",
  min: 0,
  max: 1,
  flexible: Number.POSITIVE_INFINITY,
  request: [f("mechanism", "string")],
  response: [f("errorCode", "int16"), f("mechanisms", "[]string")],
};

/** SaslAuthenticate: one SASL token each way (a SCRAM exchange takes two). */
export const SaslAuthenticate: Message = {
  key: K.SaslAuthenticate,
  name: "SaslAuthenticate",
  min: 0,
  max: 2,
  flexible: 2,
  request: [f("authBytes", "bytes")],
  response: [
    f("errorCode", "int16"),
    f("errorMessage", "string", "0+", { nullable: "0+" }),
    f("authBytes", "bytes"),
    f("sessionLifetimeMs", "int64", "1+"),
  ],
};

export const CreateTopics: Message = {
  key: K.CreateTopics,
  name: "CreateTopics",
  min: 0,
  max: 7,
  flexible: 5,
  request: [
    f("topics", "[]", "0+", {
      fields: [
        f("name", "string"),
        f("numPartitions", "int32"),
        f("replicationFactor", "int16"),
        f("assignments", "[]", "0+", {
          fields: [f("partitionIndex", "int32"), f("brokerIds", "[]int32")],
        }),
        f("configs", "[]", "0+", {
          fields: [f("name", "string"), f("value", "string", "0+", { nullable: "0+" })],
        }),
      ],
    }),
    f("timeoutMs", "int32"),
    f("validateOnly", "bool", "1+"),
  ],
  response: [
    throttle("2+"),
    f("topics", "[]", "0+", {
      fields: [
        f("name", "string"),
        f("topicId", "uuid", "7+"),
        f("errorCode", "int16"),
        f("errorMessage", "string", "1+", { nullable: "0+" }),
        f("topicConfigErrorCode", "int16", "5+", { tag: 0 }),
        f("numPartitions", "int32", "5+", { default: -1 }),
        f("replicationFactor", "int16", "5+", { default: -1 }),
        f("configs", "[]", "5+", {
          nullable: "5+",
          fields: [
            f("name", "string"),
            f("value", "string", "5+", { nullable: "5+" }),
            f("readOnly", "bool"),
            f("configSource", "int8", "5+", { default: -1 }),
            f("isSensitive", "bool"),
          ],
        }),
      ],
    }),
  ],
};

export const DeleteTopics: Message = {
  key: K.DeleteTopics,
  name: "DeleteTopics",
  min: 0,
  max: 6,
  flexible: 4,
  request: [
    f("topics", "[]", "6+", {
      fields: [f("name", "string", "6+", { nullable: "6+" }), f("topicId", "uuid")],
    }),
    f("topicNames", "[]string", "0-5"),
    f("timeoutMs", "int32"),
  ],
  response: [
    throttle("1+"),
    f("responses", "[]", "0+", {
      fields: [
        f("name", "string", "0+", { nullable: "6+" }),
        f("topicId", "uuid", "6+"),
        f("errorCode", "int16"),
        f("errorMessage", "string", "5+", { nullable: "5+" }),
      ],
    }),
  ],
};

export const InitProducerId: Message = {
  key: K.InitProducerId,
  name: "InitProducerId",
  min: 0,
  max: 4,
  flexible: 2,
  request: [
    f("transactionalId", "string", "0+", { nullable: "0+" }),
    f("transactionTimeoutMs", "int32"),
    f("producerId", "int64", "3+", { default: -1 }),
    f("producerEpoch", "int16", "3+", { default: -1 }),
  ],
  response: [
    throttle("0+"),
    f("errorCode", "int16"),
    f("producerId", "int64", "0+", { default: -1 }),
    f("producerEpoch", "int16", "0+", { default: -1 }),
  ],
};

export const DescribeConfigs: Message = {
  key: K.DescribeConfigs,
  name: "DescribeConfigs",
  min: 0,
  max: 4,
  flexible: 4,
  request: [
    f("resources", "[]", "0+", {
      fields: [
        f("resourceType", "int8"),
        f("resourceName", "string"),
        f("configurationKeys", "[]string", "0+", { nullable: "0+" }),
      ],
    }),
    f("includeSynonyms", "bool", "1+"),
    f("includeDocumentation", "bool", "3+"),
  ],
  response: [
    throttle("0+"),
    f("results", "[]", "0+", {
      fields: [
        f("errorCode", "int16"),
        f("errorMessage", "string", "0+", { nullable: "0+" }),
        f("resourceType", "int8"),
        f("resourceName", "string"),
        f("configs", "[]", "0+", {
          fields: [
            f("name", "string"),
            f("value", "string", "0+", { nullable: "0+" }),
            f("readOnly", "bool"),
            f("isDefault", "bool", "0"),
            f("configSource", "int8", "1+", { default: -1 }),
            f("isSensitive", "bool"),
            f("synonyms", "[]", "1+", {
              fields: [
                f("name", "string"),
                f("value", "string", "1+", { nullable: "1+" }),
                f("source", "int8"),
              ],
            }),
            f("configType", "int8", "3+"),
            f("documentation", "string", "3+", { nullable: "3+" }),
          ],
        }),
      ],
    }),
  ],
};

export const DescribeCluster: Message = {
  key: K.DescribeCluster,
  name: "DescribeCluster",
  min: 0,
  max: 0,
  flexible: 0,
  request: [f("includeClusterAuthorizedOperations", "bool")],
  response: [
    throttle("0+"),
    f("errorCode", "int16"),
    f("errorMessage", "string", "0+", { nullable: "0+" }),
    f("clusterId", "string"),
    f("controllerId", "int32", "0+", { default: -1 }),
    f("brokers", "[]", "0+", {
      fields: [
        f("brokerId", "int32"),
        f("host", "string"),
        f("port", "int32"),
        f("rack", "string", "0+", { nullable: "0+" }),
      ],
    }),
    f("clusterAuthorizedOperations", "int32", "0+", { default: -2147483648 }),
  ],
};

const topicPartitions = (versions: string, nullable?: string) =>
  f("topicPartitions", "[]", versions, {
    ...(nullable === undefined ? {} : { nullable }),
    fields: [f("topicId", "uuid"), f("partitions", "[]int32")],
  });

/** KIP-848's consumer group heartbeat, onto sluice's own (broker-side assignment) groups. */
export const ConsumerGroupHeartbeat: Message = {
  key: K.ConsumerGroupHeartbeat,
  name: "ConsumerGroupHeartbeat",
  min: 0,
  max: 1,
  flexible: 0,
  request: [
    f("groupId", "string"),
    f("memberId", "string"),
    f("memberEpoch", "int32"),
    f("instanceId", "string", "0+", { nullable: "0+" }),
    f("rackId", "string", "0+", { nullable: "0+" }),
    f("rebalanceTimeoutMs", "int32", "0+", { default: -1 }),
    f("subscribedTopicNames", "[]string", "0+", { nullable: "0+" }),
    f("subscribedTopicRegex", "string", "1+", { nullable: "1+" }),
    f("serverAssignor", "string", "0+", { nullable: "0+" }),
    topicPartitions("0+", "0+"),
  ],
  response: [
    throttle("0+"),
    f("errorCode", "int16"),
    f("errorMessage", "string", "0+", { nullable: "0+" }),
    f("memberId", "string", "0+", { nullable: "0+" }),
    f("memberEpoch", "int32"),
    f("heartbeatIntervalMs", "int32"),
    f("assignment", "{}", "0+", { nullable: "0+", fields: [topicPartitions("0+")] }),
  ],
};

/** Every message served, by API key. */
export const MESSAGES: ReadonlyMap<number, Message> = new Map(
  [
    Produce,
    Fetch,
    ListOffsets,
    Metadata,
    OffsetCommit,
    OffsetFetch,
    FindCoordinator,
    JoinGroup,
    Heartbeat,
    LeaveGroup,
    SyncGroup,
    DescribeGroups,
    ListGroups,
    SaslHandshake,
    ApiVersions,
    CreateTopics,
    DeleteTopics,
    InitProducerId,
    DescribeConfigs,
    SaslAuthenticate,
    DescribeCluster,
    ConsumerGroupHeartbeat,
  ].map((message) => [message.key, message]),
);

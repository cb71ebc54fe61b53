// The client side of the control-plane APIs (PROTOCOL.md section 7): each function writes one
// request map and reads the response map into typed fields, checked as untrusted input (a
// response that does not match its grammar is MALFORMED_RESPONSE). Codes in a response's
// top-level `errorCode` throw a ServerError; per-topic and per-partition codes are returned as
// numbers for the caller to act on, since one bad partition rarely spoils the rest.

import { API } from "../codec/frames.ts";
import {
  arrayField,
  type Fields,
  intField,
  intItems,
  mapItem,
  optionalArray,
  optionalString,
  readMsgpack,
  stringField,
  stringItems,
  writeMsgpack,
} from "../codec/control.ts";
import { errorFromWire, ProtocolError } from "../codec/errors.ts";
import type { Reader, Writer } from "../codec/wire.ts";
import { appendTo } from "./collections.ts";
import type { RequestOptions } from "./connection.ts";
import { ClientError } from "./errors.ts";

/** A ClientConnection or a Session. */
export type Requester = {
  request(
    apiKey: number,
    writeBody: (writer: Writer) => void,
    options?: RequestOptions,
  ): Promise<Reader>;
};

/** Items in any list of a response: far above what a server sends, low enough to bound work. */
const ITEMS_MAX = 1_000_000;
const PARTITION_MAX = 0xffff_ffff;
/** ListOffsets' special timestamps. */
export const EARLIEST_TIMESTAMP = -2;
export const LATEST_TIMESTAMP = -1;

export async function call<T>(
  requester: Requester,
  apiKey: number,
  body: Fields,
  what: string,
  parse: (fields: Fields) => T,
): Promise<T> {
  const reader = await requester.request(apiKey, (writer) => writeMsgpack(writer, body));
  try {
    return parse(readMsgpack(reader, what));
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    throw new ClientError("MALFORMED_RESPONSE", `${what}: ${error.message}`, { cause: error });
  }
}

export function int(fields: Fields, key: string): number {
  return intField(fields, key, { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER });
}

export function items(fields: Fields, key: string): Fields[] {
  return arrayField(fields, key, ITEMS_MAX).map((item) => mapItem(item, key));
}

/** Throws the ServerError for a response's top-level code, when it is not 0. */
export function check(fields: Fields, context: string): void {
  const code = int(fields, "errorCode");
  if (code !== 0) {
    const message = optionalString(fields, "errorMessage") ?? "";
    throw errorFromWire(code, message.length > 0 ? message : context);
  }
}

export type TopicPartitions = { topic: string; partitions: number[] };

function topicPartitions(fields: Fields, key: string): TopicPartitions[] {
  return items(fields, key).map((item) => ({
    topic: stringField(item, "topic"),
    partitions: intItems(arrayField(item, "partitions", ITEMS_MAX), "partition", PARTITION_MAX),
  }));
}

// Metadata (1) ----------------------------------------------------------------------------

export type PartitionMetadata = {
  partition: number;
  logStartOffset: number;
  highWatermark: number;
};
export type TopicMetadata = {
  name: string;
  errorCode: number;
  partitions: PartitionMetadata[];
  config: Record<string, unknown> | null;
};
export type Metadata = { brokers: { host: string; port: number }[]; topics: TopicMetadata[] };

export function metadata(
  requester: Requester,
  topics: readonly string[] | null,
): Promise<Metadata> {
  return call(
    requester,
    API.Metadata,
    { topics },
    "MetadataResponse",
    (fields): Metadata => ({
      brokers: items(fields, "brokers").map((b) => ({
        host: stringField(b, "host"),
        port: int(b, "port"),
      })),
      topics: items(fields, "topics").map((t) => ({
        name: stringField(t, "name"),
        errorCode: int(t, "errorCode"),
        partitions: items(t, "partitions").map((p) => ({
          partition: int(p, "partition"),
          logStartOffset: int(p, "logStartOffset"),
          highWatermark: int(p, "highWatermark"),
        })),
        config: t["config"] == null ? null : mapItem(t["config"], "config"),
      })),
    }),
  );
}

// CreateTopics (2), DeleteTopics (3) ------------------------------------------------------

export type TopicConfig = {
  segmentBytes?: number;
  segmentMs?: number;
  indexIntervalBytes?: number;
  retentionMs?: number;
  retentionBytes?: number;
  maxBatchBytes?: number;
  fsync?: "always" | "never" | { intervalMs: number };
};
export type NewTopic = { name: string; partitions?: number; config?: TopicConfig };
export type TopicResult = { name: string; errorCode: number; errorMessage: string | null };

function topicResults(fields: Fields): TopicResult[] {
  return items(fields, "results").map((r) => ({
    name: stringField(r, "name"),
    errorCode: int(r, "errorCode"),
    errorMessage: optionalString(r, "errorMessage"),
  }));
}

export function createTopics(
  requester: Requester,
  topics: readonly NewTopic[],
): Promise<TopicResult[]> {
  const body = topics.map((topic) => {
    const entry: Fields = { name: topic.name };
    if (topic.partitions !== undefined) entry["partitions"] = topic.partitions;
    if (topic.config !== undefined) entry["config"] = dropUndefined(topic.config);
    return entry;
  });
  return call(requester, API.CreateTopics, { topics: body }, "CreateTopicsResponse", topicResults);
}

export function deleteTopics(
  requester: Requester,
  names: readonly string[],
): Promise<TopicResult[]> {
  return call(requester, API.DeleteTopics, { topics: names }, "DeleteTopicsResponse", topicResults);
}

/** msgpackr would write `undefined` as an extension type other readers do not know. */
export function dropUndefined(value: object): Fields {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined));
}

// ListOffsets (6) -------------------------------------------------------------------------

export type OffsetQuery = { topic: string; partition: number; timestamp: number };
export type OffsetAnswer = OffsetQuery & { errorCode: number; offset: number };

export function listOffsets(
  requester: Requester,
  queries: readonly OffsetQuery[],
): Promise<OffsetAnswer[]> {
  const topics = new Map<string, { partition: number; timestamp: number }[]>();
  for (const { topic, partition, timestamp } of queries) {
    appendTo(topics, topic, { partition, timestamp });
  }
  const body = { topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })) };
  return call(requester, API.ListOffsets, body, "ListOffsetsResponse", (fields) =>
    items(fields, "topics").flatMap((t) => {
      const topic = stringField(t, "topic");
      return items(t, "partitions").map(
        (p): OffsetAnswer => ({
          topic,
          partition: int(p, "partition"),
          errorCode: int(p, "errorCode"),
          offset: int(p, "offset"),
          timestamp: int(p, "timestamp"),
        }),
      );
    }),
  );
}

// OffsetCommit (7), OffsetFetch (8) -------------------------------------------------------

export type OffsetToCommit = {
  topic: string;
  partition: number;
  offset: number;
  metadata?: string;
};
export type CommitRequest = {
  groupId: string;
  /** Null with epoch -1 for an unchecked commit (no group membership). */
  memberId: string | null;
  memberEpoch: number;
  offsets: readonly OffsetToCommit[];
};

/**
 * Offsets sent in one OffsetCommit: 5 entries each, within the 32,768 entries a server takes
 * in one body by default (PROTOCOL.md section 8). A commit of more goes as several requests,
 * one after another, each atomic on its own.
 */
export const COMMIT_OFFSETS_PER_REQUEST_MAX = 4_096;

export async function commitOffsets(requester: Requester, request: CommitRequest): Promise<void> {
  const offsets = request.offsets.map((o) => ({
    topic: o.topic,
    partition: o.partition,
    offset: o.offset,
    metadata: o.metadata ?? "",
  }));
  for (let from = 0; from < offsets.length || from === 0; from += COMMIT_OFFSETS_PER_REQUEST_MAX) {
    const body = {
      groupId: request.groupId,
      memberId: request.memberId,
      memberEpoch: request.memberEpoch,
      offsets: offsets.slice(from, from + COMMIT_OFFSETS_PER_REQUEST_MAX),
    };
    await call(requester, API.OffsetCommit, body, "OffsetCommitResponse", (fields) =>
      check(fields, `commit of group ${request.groupId}`),
    );
  }
}

export type CommittedOffset = {
  topic: string;
  partition: number;
  /** -1 when the group has no committed offset for the partition. */
  offset: number;
  metadata: string;
  commitTimestampMs: number;
};

export function fetchOffsets(
  requester: Requester,
  groupId: string,
  topics: readonly TopicPartitions[] | null,
): Promise<CommittedOffset[]> {
  const body = { groupId, topics };
  return call(requester, API.OffsetFetch, body, "OffsetFetchResponse", (fields) => {
    check(fields, `offsets of group ${groupId}`);
    return items(fields, "topics").flatMap((t) => {
      const topic = stringField(t, "topic");
      return items(t, "partitions").map(
        (p): CommittedOffset => ({
          topic,
          partition: int(p, "partition"),
          offset: int(p, "offset"),
          metadata: optionalString(p, "metadata") ?? "",
          commitTimestampMs: int(p, "commitTimestampMs"),
        }),
      );
    });
  });
}

// GroupHeartbeat (9) ----------------------------------------------------------------------

export type HeartbeatRequest = {
  groupId: string;
  memberId: string | null;
  /** 0 to join, -1 to leave, else the epoch of the last response. */
  memberEpoch: number;
  /** Set to join or to change the subscription; null keeps it. */
  topics: readonly string[] | null;
  rebalanceTimeoutMs?: number;
};
export type HeartbeatResponse = {
  memberId: string | null;
  memberEpoch: number;
  heartbeatIntervalMs: number;
  /** The member's new partitions, or null when they did not change. */
  assignment: TopicPartitions[] | null;
};

export function groupHeartbeat(
  requester: Requester,
  request: HeartbeatRequest,
): Promise<HeartbeatResponse> {
  const body: Fields = {
    groupId: request.groupId,
    memberId: request.memberId,
    memberEpoch: request.memberEpoch,
    topics: request.topics,
  };
  if (request.rebalanceTimeoutMs !== undefined) {
    body["rebalanceTimeoutMs"] = request.rebalanceTimeoutMs;
  }
  return call(requester, API.GroupHeartbeat, body, "GroupHeartbeatResponse", (fields) => {
    check(fields, `heartbeat in group ${request.groupId}`);
    const response: HeartbeatResponse = {
      memberId: optionalString(fields, "memberId"),
      memberEpoch: int(fields, "memberEpoch"),
      heartbeatIntervalMs: int(fields, "heartbeatIntervalMs"),
      assignment:
        optionalArray(fields, "assignment", ITEMS_MAX) === null
          ? null
          : topicPartitions(fields, "assignment"),
    };
    return response;
  });
}

// DescribeGroup (10) ----------------------------------------------------------------------

export type GroupMemberDescription = {
  memberId: string;
  memberEpoch: number;
  topics: string[];
  assignment: TopicPartitions[];
};
export type GroupOffset = {
  topic: string;
  partition: number;
  committed: number;
  highWatermark: number;
  lag: number;
};
export type GroupDescription = {
  groupId: string;
  groupEpoch: number;
  members: GroupMemberDescription[];
  offsets: GroupOffset[];
};

export function describeGroup(requester: Requester, groupId: string): Promise<GroupDescription> {
  return call(requester, API.DescribeGroup, { groupId }, "DescribeGroupResponse", (fields) => {
    check(fields, `describe of group ${groupId}`);
    const description: GroupDescription = {
      groupId: stringField(fields, "groupId"),
      groupEpoch: int(fields, "groupEpoch"),
      members: items(fields, "members").map((m) => ({
        memberId: stringField(m, "memberId"),
        memberEpoch: int(m, "memberEpoch"),
        topics: stringItems(arrayField(m, "topics", ITEMS_MAX), "topic"),
        assignment: topicPartitions(m, "assignment"),
      })),
      offsets: items(fields, "offsets").map((o) => ({
        topic: stringField(o, "topic"),
        partition: int(o, "partition"),
        committed: int(o, "committed"),
        highWatermark: int(o, "highWatermark"),
        lag: int(o, "lag"),
      })),
    };
    return description;
  });
}

// InitProducerId (11), Stats (12) ---------------------------------------------------------

export type ProducerIdentity = { producerId: number; producerEpoch: number };

export function initProducerId(requester: Requester): Promise<ProducerIdentity> {
  return call(requester, API.InitProducerId, {}, "InitProducerIdResponse", (fields) => {
    check(fields, "InitProducerId");
    return {
      producerId: intField(fields, "producerId", { min: 0, max: Number.MAX_SAFE_INTEGER }),
      producerEpoch: intField(fields, "producerEpoch", { min: 0, max: 0x7fff }),
    };
  });
}

export type ServerStats = {
  serverVersion: string;
  uptimeMs: number;
  connections: number;
  topics: number;
  partitions: number;
  bytesIn: number;
  bytesOut: number;
  /** The server's socket writes (undefined from a server that does not count them). */
  socketWrites: number | undefined;
  requests: Record<string, unknown>;
};

export function stats(requester: Requester): Promise<ServerStats> {
  return call(requester, API.Stats, {}, "StatsResponse", (fields) => ({
    serverVersion: stringField(fields, "serverVersion"),
    uptimeMs: int(fields, "uptimeMs"),
    connections: int(fields, "connections"),
    topics: int(fields, "topics"),
    partitions: int(fields, "partitions"),
    bytesIn: int(fields, "bytesIn"),
    bytesOut: int(fields, "bytesOut"),
    socketWrites: fields["socketWrites"] == null ? undefined : int(fields, "socketWrites"),
    requests: fields["requests"] == null ? {} : mapItem(fields["requests"], "requests"),
  }));
}

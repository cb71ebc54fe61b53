// The control-plane handlers (PROTOCOL.md section 7): topics, offsets, groups, producer ids,
// stats. Each reads one msgpack map with checked field readers and answers with one.

import {
  type Assignment,
  type Engine,
  type GroupCoordinator,
  type LogConfig,
  SluiceError,
  validateGroupId,
} from "../../engine/mod.ts";
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
import { finishFrame, startResponse } from "../codec/frames.ts";
import { errorToWire, ProtocolError } from "../codec/errors.ts";
import { InvariantError } from "../../record/mod.ts";
import type { HandlerResult, RequestContext } from "./connection.ts";

export type ControlPlane = {
  engine: Engine;
  groups: GroupCoordinator;
  host: string;
  port: () => number;
  stats: () => Record<string, unknown>;
  /** The last topic admin request queued (see `oneAtATime`). */
  adminTail: Promise<unknown>;
  /** With authentication on: whether a full Metadata listing shows a topic to a connection. */
  visibleTopic?: (connection: RequestContext["connection"], topic: string) => boolean;
  /** Counts an error code an answer carries in its body (metrics). */
  countError?: (code: number) => void;
};

/**
 * Runs topic admin work (CreateTopics, DeleteTopics) one request at a time, in arrival order.
 * The engine's create and delete of one name, interleaved, undo each other's files: a delete
 * renaming away the directories a concurrent create of the same name had just opened left a
 * topic whose files were gone (its appends lost, its close failing).
 */
export function oneAtATime<T>(plane: ControlPlane, work: () => Promise<T>): Promise<T> {
  const run = plane.adminTail.then(work, work);
  plane.adminTail = run.catch(() => {});
  return run;
}

const TOPICS_PER_REQUEST_MAX = 10_000;
const PARTITION_MAX = 2 ** 31 - 1;
const OFFSET_MAX = Number.MAX_SAFE_INTEGER;

export function reply(correlationId: number, body: unknown): HandlerResult {
  const writer = startResponse(correlationId, 256);
  writeMsgpack(writer, body);
  return [finishFrame(writer)];
}

/**
 * The error fields of an answer; a non-zero code is counted in the broker's errors by code
 * (`sluice_errors_total`) through `plane.countError`.
 */
export function outcome(
  error: unknown,
  plane?: Pick<ControlPlane, "countError">,
): { errorCode: number; errorMessage: string | null } {
  if (error === undefined) return { errorCode: 0, errorMessage: null };
  const { code, message } = errorToWire(error);
  plane?.countError?.(code);
  return { errorCode: code, errorMessage: message };
}

/**
 * The request's groupId: a missing key or a value that is not a string is INVALID_REQUEST (a
 * malformed body, thrown); a string that is not a valid group id (empty, or longer than 255
 * bytes) is returned with the INVALID_GROUP_ID error every group API answers in its body.
 */
function readGroupId(fields: Fields): { groupId: string; invalid: SluiceError | undefined } {
  const groupId = stringField(fields, "groupId", Number.MAX_SAFE_INTEGER);
  try {
    validateGroupId(groupId);
    return { groupId, invalid: undefined };
  } catch (error) {
    if (!(error instanceof SluiceError)) throw error;
    return { groupId, invalid: error };
  }
}

function assignmentToWire(assignment: Assignment | null) {
  if (assignment === null) return null;
  return [...assignment].map(([topic, partitions]) => ({ topic, partitions }));
}

export function handleMetadata(plane: ControlPlane, request: RequestContext): HandlerResult {
  const fields = readMsgpack(request.reader, "MetadataRequest");
  const wanted = optionalArray(fields, "topics", TOPICS_PER_REQUEST_MAX);
  const visible = plane.visibleTopic;
  const names =
    wanted === null
      ? plane.engine
          .listTopics()
          .map((t) => t.name)
          .filter((name) => visible === undefined || visible(request.connection, name))
      : stringItems(wanted, "topics");
  const topics = names.map((name) => {
    try {
      const info = plane.engine.describeTopic(name);
      const partitions = Array.from({ length: info.partitions }, (_, partition) => {
        const log = plane.engine.partition(name, partition);
        return { partition, logStartOffset: log.logStartOffset, highWatermark: log.highWatermark };
      });
      return { name, errorCode: 0, partitions, config: info.config };
    } catch (error) {
      return { name, errorCode: outcome(error, plane).errorCode, partitions: [], config: null };
    }
  });
  return reply(request.correlationId, {
    brokers: [{ host: plane.host, port: plane.port() }],
    topics,
  });
}

export function handleCreateTopics(
  plane: ControlPlane,
  request: RequestContext,
): Promise<HandlerResult> {
  const fields = readMsgpack(request.reader, "CreateTopicsRequest");
  const items = arrayField(fields, "topics", TOPICS_PER_REQUEST_MAX).map((item) => {
    const topic = mapItem(item, "topics[]");
    const config = topic["config"] === undefined ? {} : mapItem(topic["config"], "config");
    return {
      name: stringField(topic, "name"),
      // Any integer here: a count out of range is that topic's INVALID_CONFIG (the engine's
      // check), not the whole request's INVALID_REQUEST, so the other topics are created.
      partitions: intField(topic, "partitions", {
        min: Number.MIN_SAFE_INTEGER,
        max: Number.MAX_SAFE_INTEGER,
        default: 1,
      }),
      config: config as Partial<LogConfig>,
    };
  });
  return oneAtATime(plane, async () => {
    const results = [];
    for (const item of items) {
      let failure: unknown;
      try {
        await plane.engine.createTopic(item.name, {
          partitions: item.partitions,
          config: item.config,
        });
        plane.groups.topicChanged(item.name);
      } catch (error) {
        failure = error;
      }
      results.push({ name: item.name, ...outcome(failure, plane) });
    }
    return reply(request.correlationId, { results });
  });
}

export function handleDeleteTopics(
  plane: ControlPlane,
  request: RequestContext,
): Promise<HandlerResult> {
  const fields = readMsgpack(request.reader, "DeleteTopicsRequest");
  const names = stringItems(arrayField(fields, "topics", TOPICS_PER_REQUEST_MAX), "topics");
  return oneAtATime(plane, async () => {
    const results = [];
    for (const name of names) {
      let failure: unknown;
      try {
        await plane.engine.deleteTopic(name);
        plane.groups.topicChanged(name);
      } catch (error) {
        failure = error;
      }
      results.push({ name, ...outcome(failure, plane) });
    }
    return reply(request.correlationId, { results });
  });
}

function listOffset(plane: ControlPlane, topic: string, partition: number, timestamp: number) {
  try {
    const log = plane.engine.partition(topic, partition);
    const offset =
      timestamp === -2
        ? log.logStartOffset
        : timestamp === -1
          ? log.highWatermark
          : (log.offsetForTimestamp(timestamp) ?? -1);
    return { partition, errorCode: 0, offset, timestamp };
  } catch (error) {
    return { partition, errorCode: outcome(error, plane).errorCode, offset: -1, timestamp };
  }
}

export function handleListOffsets(plane: ControlPlane, request: RequestContext): HandlerResult {
  const fields = readMsgpack(request.reader, "ListOffsetsRequest");
  const topics = arrayField(fields, "topics", TOPICS_PER_REQUEST_MAX).map((item) => {
    const entry = mapItem(item, "topics[]");
    const topic = stringField(entry, "topic");
    const partitions = arrayField(entry, "partitions", 100_000).map((p) => {
      const query = mapItem(p, "partitions[]");
      const partition = intField(query, "partition", { min: 0, max: PARTITION_MAX });
      const timestamp = intField(query, "timestamp", { min: -2, max: OFFSET_MAX });
      return listOffset(plane, topic, partition, timestamp);
    });
    return { topic, partitions };
  });
  return reply(request.correlationId, { topics });
}

type CommitEntry = { topic: string; partition: number; offset: number; metadata: string };

function readCommits(fields: Fields): CommitEntry[] {
  return arrayField(fields, "offsets", 100_000).map((item) => {
    const entry = mapItem(item, "offsets[]");
    return {
      topic: stringField(entry, "topic"),
      partition: intField(entry, "partition", { min: 0, max: PARTITION_MAX }),
      offset: intField(entry, "offset", { min: -1, max: OFFSET_MAX }),
      metadata: optionalString(entry, "metadata", 4096) ?? "",
    };
  });
}

export async function handleOffsetCommit(
  plane: ControlPlane,
  request: RequestContext,
): Promise<HandlerResult> {
  const fields = readMsgpack(request.reader, "OffsetCommitRequest");
  const { groupId, invalid } = readGroupId(fields);
  const memberId = optionalString(fields, "memberId", 255);
  const memberEpoch = intField(fields, "memberEpoch", { min: -1, max: 2 ** 31 - 1, default: -1 });
  const offsets = readCommits(fields);
  if (invalid !== undefined) return reply(request.correlationId, outcome(invalid, plane));
  let failure: unknown;
  try {
    plane.groups.checkCommit(groupId, memberId, memberEpoch, offsets);
    for (const { topic, partition } of offsets) plane.engine.partition(topic, partition);
    await plane.engine.offsets.commit(groupId, offsets);
  } catch (error) {
    failure = error;
  }
  return reply(request.correlationId, outcome(failure, plane));
}

export function handleOffsetFetch(plane: ControlPlane, request: RequestContext): HandlerResult {
  const fields = readMsgpack(request.reader, "OffsetFetchRequest");
  const { groupId, invalid } = readGroupId(fields);
  const wanted = optionalArray(fields, "topics", TOPICS_PER_REQUEST_MAX);
  if (invalid !== undefined) {
    return reply(request.correlationId, {
      errorCode: outcome(invalid, plane).errorCode,
      topics: [],
    });
  }
  const committed = plane.engine.offsets.fetchGroup(groupId);
  const query =
    wanted === null
      ? [...committed].map(([topic, partitions]) => ({ topic, partitions: [...partitions.keys()] }))
      : wanted.map((item) => {
          const entry = mapItem(item, "topics[]");
          const partitions = arrayField(entry, "partitions", 100_000);
          return {
            topic: stringField(entry, "topic"),
            partitions: intItems(partitions, "partitions", PARTITION_MAX),
          };
        });
  const topics = query.map(({ topic, partitions }) => ({
    topic,
    partitions: partitions.map((partition) => {
      const offset = committed.get(topic)?.get(partition);
      return {
        partition,
        offset: offset?.offset ?? -1,
        metadata: offset?.metadata ?? "",
        commitTimestampMs: offset?.commitTimestampMs ?? -1,
      };
    }),
  }));
  return reply(request.correlationId, { errorCode: 0, topics });
}

export function handleGroupHeartbeat(plane: ControlPlane, request: RequestContext): HandlerResult {
  const fields = readMsgpack(request.reader, "GroupHeartbeatRequest");
  const { groupId, invalid } = readGroupId(fields);
  const memberId = optionalString(fields, "memberId", 255);
  const memberEpoch = intField(fields, "memberEpoch", { min: -1, max: 2 ** 31 - 1 });
  const topicList = optionalArray(fields, "topics", TOPICS_PER_REQUEST_MAX);
  const topics = topicList === null ? null : stringItems(topicList, "topics");
  try {
    if (invalid !== undefined) throw invalid;
    const response = plane.groups.heartbeat({ groupId, memberId, memberEpoch, topics });
    return reply(request.correlationId, {
      errorCode: 0,
      errorMessage: null,
      memberId: response.memberId,
      memberEpoch: response.memberEpoch,
      heartbeatIntervalMs: response.heartbeatIntervalMs,
      assignment: assignmentToWire(response.assignment),
    });
  } catch (error) {
    if (!(error instanceof SluiceError)) throw error;
    return reply(request.correlationId, {
      ...outcome(error, plane),
      memberId,
      memberEpoch: -1,
      heartbeatIntervalMs: 0,
      assignment: null,
    });
  }
}

export function handleDescribeGroup(plane: ControlPlane, request: RequestContext): HandlerResult {
  const fields = readMsgpack(request.reader, "DescribeGroupRequest");
  const { groupId, invalid } = readGroupId(fields);
  if (invalid !== undefined) {
    return reply(request.correlationId, {
      errorCode: outcome(invalid, plane).errorCode,
      groupId,
      groupEpoch: -1,
      members: [],
      offsets: [],
    });
  }
  const description = plane.groups.describe(groupId);
  const offsets = [];
  for (const [topic, partitions] of plane.engine.offsets.fetchGroup(groupId)) {
    for (const [partition, committed] of partitions) {
      let highWatermark = -1;
      try {
        highWatermark = plane.engine.partition(topic, partition).highWatermark;
      } catch (error) {
        if (error instanceof InvariantError) throw error;
        // A committed offset for a deleted topic or partition: shown without a lag.
      }
      const lag = highWatermark < 0 ? -1 : Math.max(0, highWatermark - committed.offset);
      offsets.push({ topic, partition, committed: committed.offset, highWatermark, lag });
    }
  }
  return reply(request.correlationId, {
    errorCode: 0,
    groupId,
    groupEpoch: description.groupEpoch,
    members: description.members.map((member) => ({
      ...member,
      assignment: assignmentToWire(member.assignment),
    })),
    offsets,
  });
}

export function handleInitProducerId(plane: ControlPlane, request: RequestContext): HandlerResult {
  readMsgpack(request.reader, "InitProducerIdRequest");
  const producerId = plane.engine.allocateProducerId();
  return reply(request.correlationId, { errorCode: 0, producerId, producerEpoch: 0 });
}

export function handleStats(plane: ControlPlane, request: RequestContext): HandlerResult {
  readMsgpack(request.reader, "StatsRequest");
  return reply(request.correlationId, plane.stats());
}

export function unknownApi(apiKey: number): never {
  throw new ProtocolError("UNKNOWN_API", `api_key ${apiKey} is not known`);
}

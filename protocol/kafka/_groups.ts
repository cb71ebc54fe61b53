// The group APIs over Kafka's protocol: the classic protocol's JoinGroup, SyncGroup, Heartbeat
// and LeaveGroup (classic_groups.ts), and OffsetCommit, OffsetFetch, DescribeGroups and
// ListGroups over the engine's one offset store and both kinds of group.

import { SluiceError, validateGroupId } from "../../engine/mod.ts";
import { errorToKafka, KAFKA_ERRORS as E } from "./errors.ts";
import type { KafkaPlane, RequestInfo } from "./_plane.ts";
import type { Struct } from "./schema.ts";
import { findPartition } from "./_data.ts";

function validGroup(groupId: string): boolean {
  try {
    validateGroupId(groupId);
    return true;
  } catch (error) {
    if (error instanceof SluiceError) return false;
    throw error;
  }
}

export async function joinGroup(plane: KafkaPlane, body: Struct, info: RequestInfo) {
  const groupId = body["groupId"] as string;
  const memberId = body["memberId"] as string;
  if (!validGroup(groupId)) {
    return {
      throttleTimeMs: 0,
      errorCode: E.INVALID_GROUP_ID,
      generationId: -1,
      protocolName: "",
      leader: "",
      memberId,
      members: [],
    };
  }
  const answer = await plane.classic.join({
    groupId,
    memberId,
    sessionTimeoutMs: body["sessionTimeoutMs"] as number,
    rebalanceTimeoutMs: body["rebalanceTimeoutMs"] as number,
    protocolType: body["protocolType"] as string,
    protocols: (body["protocols"] as Struct[]).map((p) => ({
      name: p["name"] as string,
      metadata: p["metadata"] as Uint8Array,
    })),
    clientId: info.clientId ?? "",
    clientHost: `/${info.remoteAddress}`,
    requireKnownMemberId: info.apiVersion >= 4,
  });
  return { throttleTimeMs: 0, ...answer };
}

export async function syncGroup(plane: KafkaPlane, body: Struct) {
  const assignments = (body["assignments"] as Struct[]).map((a) => ({
    memberId: a["memberId"] as string,
    assignment: a["assignment"] as Uint8Array,
  }));
  const answer = await plane.classic.sync(
    body["groupId"] as string,
    body["generationId"] as number,
    body["memberId"] as string,
    assignments,
  );
  return { throttleTimeMs: 0, ...answer };
}

export function heartbeat(plane: KafkaPlane, body: Struct): Struct {
  const errorCode = plane.classic.heartbeat(
    body["groupId"] as string,
    body["generationId"] as number,
    body["memberId"] as string,
  );
  return { throttleTimeMs: 0, errorCode };
}

/** LeaveGroup: one member (versions 0-2) or a list of them (3 and later). */
export function leaveGroup(plane: KafkaPlane, body: Struct, info: RequestInfo): Struct {
  const groupId = body["groupId"] as string;
  if (info.apiVersion < 3) {
    return {
      throttleTimeMs: 0,
      errorCode: plane.classic.leave(groupId, body["memberId"] as string),
    };
  }
  const members = (body["members"] as Struct[]).map((m) => ({
    memberId: m["memberId"] as string,
    groupInstanceId: null,
    errorCode: plane.classic.leave(groupId, m["memberId"] as string),
  }));
  return { throttleTimeMs: 0, errorCode: 0, members };
}

type CommitEntry = { topic: string; partition: number; offset: number; metadata: string };

/** Per-partition codes for a commit refused as a whole. */
function commitAnswer(topics: Struct[], code: (topic: string, partition: number) => number) {
  return {
    throttleTimeMs: 0,
    topics: topics.map((t) => ({
      name: t["name"] as string,
      partitions: (t["partitions"] as Struct[]).map((p) => ({
        partitionIndex: p["partitionIndex"] as number,
        errorCode: code(t["name"] as string, p["partitionIndex"] as number),
      })),
    })),
  };
}

/**
 * OffsetCommit from a classic member (its generation checked) or a simple commit (generation
 * -1, no member) or a member of a sluice group (KIP-848: its member epoch in the generation).
 */
export async function offsetCommit(plane: KafkaPlane, body: Struct) {
  const groupId = body["groupId"] as string;
  const topics = (body["topics"] as Struct[]).map((t) => ({ ...t }));
  if (!validGroup(groupId)) return commitAnswer(topics, () => E.INVALID_GROUP_ID);
  const generationId = body["generationId"] as number;
  const memberId = body["memberId"] as string;
  const simple = generationId === -1 && memberId === "";
  // A member of a sluice group (KIP-848, or a native client) commits with its member epoch in
  // the generation field; the coordinator checks it below, with the partitions it owns.
  const native = !simple && !plane.classic.claims(groupId);
  const refusal = native ? E.NONE : plane.classic.checkCommit(groupId, generationId, memberId);
  if (refusal !== E.NONE) return commitAnswer(topics, () => refusal);
  const codes = new Map<string, number>();
  const entries: CommitEntry[] = [];
  for (const t of topics) {
    const topic = t["name"] as string;
    for (const p of t["partitions"] as Struct[]) {
      const partition = p["partitionIndex"] as number;
      const found = findPartition(plane.engine, topic, partition);
      if ("code" in found) codes.set(`${topic}\u0000${partition}`, found.code);
      else {
        const metadata = (p["committedMetadata"] as string | null) ?? "";
        entries.push({ topic, partition, offset: p["committedOffset"] as number, metadata });
      }
    }
  }
  let failure: number = E.NONE;
  try {
    if (simple) plane.groups.checkCommit(groupId, null, -1, entries);
    else if (native) plane.groups.checkCommit(groupId, memberId, generationId, entries);
    if (entries.length > 0) await plane.engine.offsets.commit(groupId, entries);
  } catch (error) {
    failure = errorToKafka(error).code;
  }
  return commitAnswer(
    topics,
    (topic, partition) => codes.get(`${topic}\u0000${partition}`) ?? failure,
  );
}

type TopicQuery = { name: string; indexes: number[] };

/** One group's committed offsets for the partitions named, or for every one (null). */
function fetchGroupOffsets(plane: KafkaPlane, groupId: string, wanted: Struct[] | null) {
  const committed = plane.engine.offsets.fetchGroup(groupId);
  const query: TopicQuery[] =
    wanted === null
      ? [...committed].map(([name, partitions]) => ({ name, indexes: [...partitions.keys()] }))
      : wanted.map((t) => ({
          name: t["name"] as string,
          indexes: t["partitionIndexes"] as number[],
        }));
  return query.map(({ name, indexes }) => ({
    name,
    partitions: indexes.map((partitionIndex) => {
      const offset = committed.get(name)?.get(partitionIndex);
      return {
        partitionIndex,
        committedOffset: offset?.offset ?? -1,
        committedLeaderEpoch: -1,
        metadata: offset?.metadata ?? "",
        errorCode: 0,
      };
    }),
  }));
}

/** OffsetFetch: one group (versions 1-7) or a list of groups (8). */
export function offsetFetch(plane: KafkaPlane, body: Struct, info: RequestInfo): Struct {
  if (info.apiVersion >= 8) {
    const groups = (body["groups"] as Struct[]).map((g) => {
      const groupId = g["groupId"] as string;
      if (!validGroup(groupId)) return { groupId, topics: [], errorCode: E.INVALID_GROUP_ID };
      return {
        groupId,
        topics: fetchGroupOffsets(plane, groupId, g["topics"] as Struct[] | null),
        errorCode: 0,
      };
    });
    return { throttleTimeMs: 0, groups };
  }
  const groupId = body["groupId"] as string;
  if (!validGroup(groupId)) return { throttleTimeMs: 0, topics: [], errorCode: E.INVALID_GROUP_ID };
  const topics = fetchGroupOffsets(plane, groupId, body["topics"] as Struct[] | null);
  return { throttleTimeMs: 0, topics, errorCode: 0 };
}

function describeOne(plane: KafkaPlane, groupId: string): Struct {
  const classic = plane.classic.describe(groupId);
  if (classic !== undefined) return { errorCode: 0, ...classic, authorizedOperations: -2147483648 };
  const none = {
    errorCode: 0,
    groupId,
    groupState: "Dead",
    protocolType: "",
    protocolData: "",
    members: [],
  };
  if (!validGroup(groupId)) return { ...none, errorCode: E.INVALID_GROUP_ID };
  const native = plane.groups.describe(groupId);
  if (native.members.length === 0) return none;
  return {
    ...none,
    groupState: "Stable",
    protocolType: "consumer",
    protocolData: "sluice",
    members: native.members.map((m) => ({
      memberId: m.memberId,
      groupInstanceId: null,
      clientId: "",
      clientHost: "",
      memberMetadata: new Uint8Array(0),
      memberAssignment: new Uint8Array(0),
    })),
  };
}

export function describeGroups(plane: KafkaPlane, body: Struct): Struct {
  const groups = body["groups"] as string[];
  return { throttleTimeMs: 0, groups: groups.map((id) => describeOne(plane, id)) };
}

/** ListGroups: classic groups with their state, and groups known only by committed offsets. */
export function listGroups(plane: KafkaPlane, body: Struct): Struct {
  const filter = body["statesFilter"] as string[];
  const classic = plane.classic.list();
  const seen = new Set(classic.map((g) => g.groupId));
  const stored = plane.engine.offsets
    .groups()
    .filter((id) => !seen.has(id))
    .map((groupId) => ({ groupId, protocolType: "consumer", groupState: "Empty" }));
  const groups = [...classic, ...stored].filter(
    (g) => filter.length === 0 || filter.includes(g.groupState),
  );
  return { throttleTimeMs: 0, errorCode: 0, groups };
}

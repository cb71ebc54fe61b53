// Operator APIs (PROTOCOL.md section 7): ListGroups lists the consumer groups the broker knows,
// AlterTopicConfigs changes a live topic's config. Both read one msgpack map and answer one.

import type { LogConfig } from "../../engine/mod.ts";
import { type Fields, mapItem, readMsgpack, stringField } from "../codec/control.ts";
import type { HandlerResult, RequestContext } from "./connection.ts";
import { type ControlPlane, oneAtATime, outcome, reply } from "./_control.ts";

/** One group of a ListGroups answer. */
export type ListedGroup = {
  groupId: string;
  /** "stable", "reconciling" (native groups), "empty" (committed offsets, no members), or a
   * classic group's Kafka state ("Stable", "PreparingRebalance", ...). */
  state: string;
  /** "consumer" for sluice's own groups, the classic group's protocol type otherwise. */
  protocolType: string;
  /** The group epoch (generation); 0 for a group known only by its committed offsets. */
  groupEpoch: number;
  members: number;
};

/**
 * Groups in one ListGroups answer at most: with group ids of up to 255 bytes an entry is at
 * most ~340 bytes, so the answer stays below 34 MB, inside a client's default response limit.
 * Past it the answer holds the first groups by id and `truncated: true`.
 */
export const LIST_GROUPS_MAX = 100_000;

/** A source of the Kafka listener's classic groups, when it runs. */
export type ClassicGroupSource = () => {
  groupId: string;
  protocolType: string;
  state: string;
  generation: number;
  members: number;
}[];

/**
 * Every group: native groups with members, classic groups (Kafka listener), and groups known
 * only by committed offsets ("empty"). Sorted by id; an id held by several shows once, the
 * live one first.
 */
export function listGroups(plane: ControlPlane, classic: ClassicGroupSource): ListedGroup[] {
  const byId = new Map<string, ListedGroup>();
  for (const group of plane.groups.list()) {
    byId.set(group.groupId, { ...group, protocolType: "consumer" });
  }
  for (const group of classic()) {
    if (byId.has(group.groupId)) continue;
    byId.set(group.groupId, {
      groupId: group.groupId,
      state: group.state,
      protocolType: group.protocolType === "" ? "classic" : group.protocolType,
      groupEpoch: group.generation,
      members: group.members,
    });
  }
  for (const groupId of plane.engine.offsets.groups()) {
    if (byId.has(groupId)) continue;
    byId.set(groupId, {
      groupId,
      state: "empty",
      protocolType: "consumer",
      groupEpoch: 0,
      members: 0,
    });
  }
  return [...byId.values()].sort((a, b) =>
    a.groupId < b.groupId ? -1 : a.groupId > b.groupId ? 1 : 0,
  );
}

export function handleListGroups(
  plane: ControlPlane,
  classic: ClassicGroupSource,
  request: RequestContext,
): HandlerResult {
  readMsgpack(request.reader, "ListGroupsRequest");
  const groups = listGroups(plane, classic);
  const truncated = groups.length > LIST_GROUPS_MAX;
  return reply(request.correlationId, {
    errorCode: 0,
    groups: truncated ? groups.slice(0, LIST_GROUPS_MAX) : groups,
    truncated,
  });
}

/**
 * AlterTopicConfigs: `config` holds only the fields to change. Validation is the engine's: a
 * value out of range or a field that cannot change on a live topic is INVALID_CONFIG naming
 * the field and value, in the answer's errorCode and errorMessage, and nothing changes.
 */
export function handleAlterTopicConfigs(
  plane: ControlPlane,
  request: RequestContext,
): Promise<HandlerResult> {
  const fields = readMsgpack(request.reader, "AlterTopicConfigsRequest");
  const topic = stringField(fields, "topic");
  const changes: Fields = mapItem(fields["config"], "config");
  return oneAtATime(plane, async () => {
    try {
      const info = await plane.engine.alterTopicConfig(topic, changes as Partial<LogConfig>);
      return reply(request.correlationId, { ...outcome(undefined), topic, config: info.config });
    } catch (error) {
      return reply(request.correlationId, { ...outcome(error, plane), topic, config: null });
    }
  });
}

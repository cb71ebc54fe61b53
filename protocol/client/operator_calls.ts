// The client side of the operator APIs (PROTOCOL.md section 7): ListGroups (31) and
// AlterTopicConfigs (32). Responses are read as untrusted input, like every control call.

import { API } from "../codec/frames.ts";
import { type Fields, mapItem, stringField } from "../codec/control.ts";
import {
  call,
  check,
  dropUndefined,
  int,
  items,
  type Requester,
  type TopicConfig,
} from "./control_calls.ts";

// ListGroups (31) ---------------------------------------------------------------------------

export type GroupListing = {
  groupId: string;
  /** "stable", "reconciling", "empty", or a Kafka classic group's state. */
  state: string;
  /** "consumer" for sluice's own groups; a classic group's protocol type otherwise. */
  protocolType: string;
  groupEpoch: number;
  members: number;
};

/** The groups, and whether the broker had more than one answer holds (LIST_GROUPS_MAX). */
export type GroupList = { groups: GroupListing[]; truncated: boolean };

export function listGroups(requester: Requester): Promise<GroupList> {
  return call(requester, API.ListGroups, {}, "ListGroupsResponse", (fields) => {
    check(fields, "ListGroups");
    const truncated = fields["truncated"] === true;
    const groups = items(fields, "groups").map((g) => ({
      groupId: stringField(g, "groupId"),
      state: stringField(g, "state"),
      protocolType: stringField(g, "protocolType"),
      groupEpoch: int(g, "groupEpoch"),
      members: int(g, "members"),
    }));
    return { groups, truncated };
  });
}

// AlterTopicConfigs (32) --------------------------------------------------------------------

/** The fields `alterTopicConfigs` may change: every TopicConfig field but indexIntervalBytes. */
export type AlterableTopicConfig = Omit<TopicConfig, "indexIntervalBytes">;

/** Resolves to the topic's whole config after the change. */
export function alterTopicConfigs(
  requester: Requester,
  topic: string,
  config: AlterableTopicConfig,
): Promise<Record<string, unknown>> {
  const body: Fields = { topic, config: dropUndefined(config) };
  return call(requester, API.AlterTopicConfigs, body, "AlterTopicConfigsResponse", (fields) => {
    check(fields, `alter config of topic ${topic}`);
    return mapItem(fields["config"], "config");
  });
}

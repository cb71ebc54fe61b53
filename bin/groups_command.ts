// `sluice groups list` lists the consumer groups the broker knows (ListGroups), with state,
// protocol type, member count and epoch; `--json` prints one object a line.
//
// `sluice groups describe GROUP`: the group's members with their partitions, then one line per
// partition the group owns or has committed: committed offset, log end offset, lag, owner.
// A partition assigned but never committed shows "-" and the lag from the log start, as
// DescribeGroup counts it (PROTOCOL.md section 7).
//
//   sluice groups describe billing

import type {
  Admin,
  GroupDescription,
  PartitionMetadata,
  TopicMetadata,
} from "../protocol/client/mod.ts";
import {
  type Broker,
  formatTable,
  parseBroker,
  positionalsFor,
  withAdmin,
} from "./broker_client.ts";
import { type ParsedValues, UsageError } from "./_args.ts";

type PartitionRow = {
  topic: string;
  partition: number;
  committed: number | undefined;
  end: number | undefined;
  lag: number | undefined;
  owner: string | undefined;
};

export async function groups(values: ParsedValues, positionals: string[]): Promise<number> {
  const [action, ...rest] = positionals;
  if (action === undefined) throw new UsageError("needs an action: list or describe");
  if (action === "list") {
    positionalsFor("list", rest, []);
    return listGroups(parseBroker(values["broker"], values), values["json"] === true);
  }
  if (action !== "describe") throw new UsageError(`unknown action '${action}' (list or describe)`);
  if (values["json"] !== undefined) throw new UsageError("--json applies to 'groups list' only");
  const [groupId] = positionalsFor("describe", rest, ["group"]);
  const broker = parseBroker(values["broker"], values);
  const { group, topics } = await withAdmin(broker, (admin) => describe(admin, groupId!));
  console.log(formatGroup(group, topics));
  return 0;
}

/**
 * One line per group: id, state, protocol type, members and epoch, under a header (which is
 * all that is printed when there are no groups); with --json, one object a line and nothing
 * for no groups.
 */
async function listGroups(broker: Broker, json: boolean): Promise<number> {
  const { groups: list, truncated } = await withAdmin(broker, (admin) => admin.listGroupsResult());
  if (truncated) console.error(`sluice groups: the broker listed the first ${list.length} groups`);
  if (json) {
    for (const group of list) console.log(JSON.stringify(group));
    return 0;
  }
  const rows = list.map((g) => [
    g.groupId,
    g.state,
    g.protocolType,
    String(g.members),
    String(g.groupEpoch),
  ]);
  console.log(formatTable([["GROUP", "STATE", "PROTOCOL", "MEMBERS", "EPOCH"], ...rows]));
  return 0;
}

async function describe(admin: Admin, groupId: string) {
  const group = await admin.describeGroup(groupId);
  const names = new Set(group.offsets.map((o) => o.topic));
  for (const member of group.members) {
    for (const { topic } of member.assignment) names.add(topic);
  }
  const metadata = names.size === 0 ? { topics: [] } : await admin.metadata([...names]);
  return { group, topics: metadata.topics.filter((t) => t.errorCode === 0) };
}

export function formatGroup(group: GroupDescription, topics: TopicMetadata[]): string {
  const count = group.members.length;
  const lines = [
    `group ${group.groupId}: epoch ${group.groupEpoch}, ${count} member${count === 1 ? "" : "s"}`,
  ];
  if (count > 0) {
    const members = group.members.map((m) => [
      m.memberId,
      String(m.memberEpoch),
      m.topics.join(","),
      m.assignment.map((a) => `${a.topic}:${a.partitions.join(",")}`).join(" ") || "-",
    ]);
    lines.push("", formatTable([["MEMBER", "EPOCH", "TOPICS", "PARTITIONS"], ...members]));
  }
  const rows = partitionRows(group, topics);
  if (rows.length === 0) {
    lines.push("", "no committed offsets and no assigned partitions");
  } else {
    const dash = (value: number | string | undefined) =>
      value === undefined || value === -1 ? "-" : String(value);
    const table = rows.map((r) => [
      r.topic,
      String(r.partition),
      dash(r.committed),
      dash(r.end),
      dash(r.lag),
      dash(r.owner),
    ]);
    lines.push(
      "",
      formatTable([["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"], ...table]),
    );
  }
  return lines.join("\n");
}

function partitionRows(group: GroupDescription, topics: TopicMetadata[]): PartitionRow[] {
  const rows = new Map<string, PartitionRow>();
  const row = (topic: string, partition: number) => {
    const key = `${topic}\u0000${partition}`;
    let found = rows.get(key);
    if (found === undefined) {
      found = {
        topic,
        partition,
        committed: undefined,
        end: undefined,
        lag: undefined,
        owner: undefined,
      };
      rows.set(key, found);
    }
    return found;
  };
  for (const offset of group.offsets) {
    Object.assign(row(offset.topic, offset.partition), {
      committed: offset.committed,
      end: offset.highWatermark,
      lag: offset.lag,
    });
  }
  for (const member of group.members) {
    for (const { topic, partitions } of member.assignment) {
      for (const partition of partitions) row(topic, partition).owner = member.memberId;
    }
  }
  for (const r of rows.values()) {
    if (r.committed !== undefined) continue;
    const log = partitionOf(topics, r.topic, r.partition);
    if (log === undefined) continue;
    r.end = log.highWatermark;
    r.lag = log.highWatermark - log.logStartOffset;
  }
  return [...rows.values()].sort((a, b) =>
    a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1,
  );
}

function partitionOf(
  topics: TopicMetadata[],
  topic: string,
  partition: number,
): PartitionMetadata | undefined {
  return topics.find((t) => t.name === topic)?.partitions.find((p) => p.partition === partition);
}

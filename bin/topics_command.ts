// `sluice topics create|list|describe|alter|delete`: topic administration through the Admin
// client.
//
//   sluice topics create orders --partitions 3 --config retentionMs=86400000,fsync=always
//   sluice topics list
//   sluice topics alter orders --retention-ms 3600000 --fsync always
//   sluice topics delete orders

import type { TopicConfig } from "../protocol/client/mod.ts";
import {
  type Broker,
  formatTable,
  integerValue,
  parseBroker,
  positionalsFor,
  stringValue,
  withAdmin,
} from "./broker_client.ts";
import { type ParsedValues, UsageError } from "./_args.ts";

/** The flags of `topics alter` (./topics_alter.ts). */
const ALTER_FLAG_NAMES = [
  "retention-ms",
  "retention-bytes",
  "segment-bytes",
  "segment-ms",
  "max-batch-bytes",
  "fsync",
];

/** The server's own limit on partitions per topic (PROTOCOL.md, CreateTopics). */
const PARTITIONS_MAX = 10_000;

export async function topics(values: ParsedValues, positionals: string[]): Promise<number> {
  const [action, ...rest] = positionals;
  const broker = parseBroker(values["broker"], values);
  const createOnly = ["partitions", "config"].filter((name) => values[name] !== undefined);
  if (action !== "create" && createOnly.length > 0) {
    throw new UsageError(`--${createOnly[0]} applies to 'topics create' only`);
  }
  const alterOnly = ALTER_FLAG_NAMES.filter((name) => values[name] !== undefined);
  if (action !== "alter" && alterOnly.length > 0) {
    throw new UsageError(`--${alterOnly[0]} applies to 'topics alter' only`);
  }
  if (action === "alter") {
    const [name] = positionalsFor("alter", rest, ["name"]);
    return (await import("./topics_alter.ts")).alterTopic(broker, name!, values);
  }
  if (action === "create") {
    const [name] = positionalsFor("create", rest, ["name"]);
    const partitions = integerValue(values, "partitions", 1, PARTITIONS_MAX) ?? 1;
    const config = parseConfig(stringValue(values["config"], "config"));
    await withAdmin(broker, (admin) => admin.createTopics([{ name: name!, partitions, config }]));
    console.log(`created topic ${name} with ${partitions} partition${partitions === 1 ? "" : "s"}`);
    return 0;
  }
  if (action === "list") {
    positionalsFor("list", rest, []);
    return listTopics(broker);
  }
  if (action === "describe") {
    const [name] = positionalsFor("describe", rest, ["name"]);
    return (await import("./topics_describe.ts")).describeTopic(broker, name!);
  }
  if (action === "delete") {
    const [name] = positionalsFor("delete", rest, ["name"]);
    await withAdmin(broker, (admin) => admin.deleteTopics([name!]));
    console.log(`deleted topic ${name}`);
    return 0;
  }
  if (action === undefined) {
    throw new UsageError("needs an action: create, list, describe, alter or delete");
  }
  throw new UsageError(`unknown action '${action}' (create, list, describe, alter or delete)`);
}

async function listTopics(broker: Broker): Promise<number> {
  const metadata = await withAdmin(broker, (admin) => admin.metadata());
  const topics = metadata.topics
    .filter((t) => t.errorCode === 0)
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  if (topics.length === 0) {
    console.error("sluice topics: no topics");
    return 0;
  }
  const rows = topics.map((t) => [
    t.name,
    String(t.partitions.length),
    t.partitions.map((p) => `${p.partition}:${p.highWatermark}`).join(" "),
  ]);
  console.log(formatTable([["TOPIC", "PARTITIONS", "END OFFSETS (partition:offset)"], ...rows]));
  return 0;
}

/**
 * `key=value,key=value`: integer values become numbers; `fsync` takes always, never or an
 * interval in milliseconds. Which keys exist and their ranges is for the server to say.
 */
export function parseConfig(text: string | undefined): TopicConfig | undefined {
  if (text === undefined) return undefined;
  const config: Record<string, unknown> = {};
  for (const pair of text.split(",")) {
    const at = pair.indexOf("=");
    const key = pair.slice(0, at).trim();
    const value = pair.slice(at + 1).trim();
    if (at <= 0 || key.length === 0 || value.length === 0) {
      throw new UsageError(`--config '${pair}' is not key=value`);
    }
    const number = /^-?\d+$/.test(value) ? Number(value) : undefined;
    if (key === "fsync" && (value === "always" || value === "never")) {
      config[key] = value;
    } else if (key === "fsync") {
      if (number === undefined) {
        throw new UsageError(`--config fsync=${value}: use always, never or milliseconds`);
      }
      config[key] = { intervalMs: number };
    } else if (number === undefined) {
      throw new UsageError(`--config ${key}=${value}: the value must be an integer`);
    } else {
      config[key] = number;
    }
  }
  return config as TopicConfig;
}

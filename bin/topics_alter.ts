// `sluice topics alter NAME`: changes a live topic's config through AlterTopicConfigs, then
// prints the whole config as the broker now has it. Only the flags given change; the broker
// persists the change, so it survives a restart.
//
//   sluice topics alter orders --retention-ms 86400000 --fsync always

import type { AlterableTopicConfig } from "../protocol/client/mod.ts";
import { type Broker, integerValue, stringValue, withAdmin } from "./broker_client.ts";
import { type ParsedValues, UsageError } from "./_args.ts";

/** Each flag of `topics alter` and the config field it sets; -1 allowed where it means "none". */
export const ALTER_FLAGS: readonly {
  flag: string;
  field: keyof AlterableTopicConfig;
  min: number;
}[] = [
  { flag: "retention-ms", field: "retentionMs", min: -1 },
  { flag: "retention-bytes", field: "retentionBytes", min: -1 },
  { flag: "segment-bytes", field: "segmentBytes", min: 0 },
  { flag: "segment-ms", field: "segmentMs", min: 0 },
  { flag: "max-batch-bytes", field: "maxBatchBytes", min: 0 },
];

/** `always`, `never` or an fsync interval in milliseconds. */
function fsyncValue(values: ParsedValues): AlterableTopicConfig["fsync"] {
  const text = stringValue(values["fsync"], "fsync");
  if (text === undefined) return undefined;
  if (text === "always" || text === "never") return text;
  if (/^\d+$/.test(text)) return { intervalMs: Number(text) };
  throw new UsageError(`--fsync ${text} is not always, never or an interval in milliseconds`);
}

/** The changes the flags ask for; at least one. Ranges are the broker's to check. */
export function alterChanges(values: ParsedValues): AlterableTopicConfig {
  const changes: Record<string, unknown> = {};
  for (const { flag, field, min } of ALTER_FLAGS) {
    const value = integerValue(values, flag, min);
    if (value !== undefined) changes[field] = value;
  }
  const fsync = fsyncValue(values);
  if (fsync !== undefined) changes["fsync"] = fsync;
  if (Object.keys(changes).length === 0) {
    const flags = [...ALTER_FLAGS.map((f) => `--${f.flag}`), "--fsync"].join(", ");
    throw new UsageError(`alter needs at least one of ${flags}`);
  }
  return changes as AlterableTopicConfig;
}

export async function alterTopic(broker: Broker, name: string, values: ParsedValues) {
  const changes = alterChanges(values);
  const config = await withAdmin(broker, (admin) => admin.alterTopicConfigs(name, changes));
  const shown = Object.entries(config)
    .map(([key, value]) => `${key}=${typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(" ");
  console.log(`altered topic ${name}: ${shown}`);
  return 0;
}

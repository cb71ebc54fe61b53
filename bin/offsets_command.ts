// `sluice offsets reset GROUP --topic T --to earliest|latest|@MS|ISO-8601 [--partition P]`:
// moves a stopped group's committed offsets, as kafka-consumer-groups --reset-offsets does.
// The group must have no members (a running member would overwrite the reset with its next
// commit): with members it refuses and names how many. The new offsets are committed in one
// OffsetCommit, unchecked (no member id), atomically and durably; each is printed.
//
//   sluice offsets reset billing --topic orders --to earliest
//   sluice offsets reset billing --topic orders --to 2026-12-03T09:00:00Z

import { type Admin, Consumer, type OffsetSpec } from "../protocol/client/mod.ts";
import {
  type Broker,
  formatTable,
  integerValue,
  parseBroker,
  positionalsFor,
  requiredString,
  stringValue,
  talkingTo,
  topicMetadata,
  withAdmin,
} from "./broker_client.ts";
import { type ParsedValues, UsageError } from "./_args.ts";
import { parseFrom } from "./consume_start.ts";

function specOf(text: string): OffsetSpec {
  if (text === "earliest" || text === "latest") return text;
  const from = text.startsWith("@") || /^\d{4}-/.test(text) ? parseFrom(text) : undefined;
  if (from?.kind === "time") return from.timestampMs;
  throw new UsageError(`--to ${text} is not earliest, latest, @TIMESTAMP_MS or an ISO-8601 time`);
}

export async function offsets(values: ParsedValues, positionals: string[]): Promise<number> {
  const [action, ...rest] = positionals;
  if (action === undefined) throw new UsageError("needs an action: reset");
  if (action !== "reset") throw new UsageError(`unknown action '${action}' (reset)`);
  const [group] = positionalsFor("reset", rest, ["group"]);
  const topic = requiredString(values, "topic");
  const to = specOf(stringValue(values["to"], "to") ?? "");
  const only = integerValue(values, "partition", 0, 2 ** 31 - 1);
  const broker = parseBroker(values["broker"]);
  const targets = await withAdmin(broker, async (admin) => {
    const description = await admin.describeGroup(group!);
    const members = description.members.length;
    if (members > 0) {
      throw new Error(
        `group '${group}' has ${members} member${members === 1 ? "" : "s"}: stop ` +
          "its consumers before resetting its offsets",
      );
    }
    return resetTargets(admin, topic, to, only);
  });
  await commit(broker, group!, targets);
  const rows = targets.map((t) => [t.topic, String(t.partition), String(t.offset)]);
  console.log(formatTable([["TOPIC", "PARTITION", "NEW-OFFSET"], ...rows]));
  return 0;
}

type Target = { topic: string; partition: number; offset: number };

async function resetTargets(
  admin: Admin,
  topic: string,
  to: OffsetSpec,
  only: number | undefined,
): Promise<Target[]> {
  const metadata = await topicMetadata(admin, topic);
  const partitions = metadata.partitions.map((p) => p.partition).sort((a, b) => a - b);
  if (only !== undefined && !partitions.includes(only)) {
    throw new Error(
      `topic '${topic}' has ${partitions.length} partitions; --partition ${only} is none`,
    );
  }
  const chosen = only === undefined ? partitions : [only];
  const found = await admin.listOffsets(chosen.map((partition) => ({ topic, partition, at: to })));
  const latest = await admin.listOffsets(
    chosen.map((partition) => ({ topic, partition, at: "latest" })),
  );
  return chosen.map((partition) => {
    const offset = found.find((f) => f.partition === partition)?.offset ?? -1;
    // No record at or after the time: the group starts at the end, as Kafka's reset does.
    const end = latest.find((l) => l.partition === partition)?.offset ?? 0;
    return { topic, partition, offset: offset < 0 ? end : offset };
  });
}

async function commit(broker: Broker, group: string, targets: Target[]): Promise<void> {
  const consumer = new Consumer({ host: broker.host, port: broker.port, group, autoCommit: false });
  try {
    await talkingTo(broker, () => consumer.commit(targets));
  } finally {
    await consumer.close();
  }
}

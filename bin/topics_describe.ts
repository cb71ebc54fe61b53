// `sluice topics describe NAME`: the topic's config, then one line per partition with its log
// start, log end (high watermark) and the records between them, from the Metadata API.
// Sizes in bytes are not on the wire yet: the operations listener's /metrics and page show
// them (`sluice serve --http-port`).
//
//   sluice topics describe orders

import type { TopicMetadata } from "../protocol/client/mod.ts";
import { formatTable, type Broker, topicMetadata, withAdmin } from "./broker_client.ts";

export async function describeTopic(broker: Broker, name: string): Promise<number> {
  const topic = await withAdmin(broker, (admin) => topicMetadata(admin, name));
  console.log(formatTopic(topic));
  return 0;
}

function configText(value: unknown): string {
  if (typeof value === "object" && value !== null) {
    return Object.entries(value)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(",");
  }
  return String(value);
}

export function formatTopic(topic: TopicMetadata): string {
  const count = topic.partitions.length;
  const lines = [`topic ${topic.name}: ${count} partition${count === 1 ? "" : "s"}`];
  const config = Object.entries(topic.config ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (config.length > 0) {
    lines.push(
      "",
      formatTable([["CONFIG", "VALUE"], ...config.map(([k, v]) => [k, configText(v)])]),
    );
  }
  const rows = [...topic.partitions]
    .sort((a, b) => a.partition - b.partition)
    .map((p) => [
      String(p.partition),
      String(p.logStartOffset),
      String(p.highWatermark),
      String(p.highWatermark - p.logStartOffset),
    ]);
  lines.push("", formatTable([["PARTITION", "LOG-START", "LOG-END", "RECORDS"], ...rows]));
  return lines.join("\n");
}

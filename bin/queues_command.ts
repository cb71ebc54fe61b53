// `sluice queues declare|list|purge|delete`: queue administration through the Admin client.
//
//   sluice queues declare work --topic jobs --from beginning --dead-letter jobs-dead
//   sluice queues declare short --topic jobs --message-ttl-ms 60000
//   sluice queues declare capped --max-length 1000 --overflow reject-publish
//   sluice queues declare small --max-length-bytes 1048576
//   sluice queues declare ordered --single-active-consumer
//   sluice queues declare urgent --priorities 10 --priority-ratio 100
//   sluice queues declare retried --topic jobs --retry-min-ms 1000 --retry-max-ms 60000
//   sluice queues list [--json]
//   sluice queues purge work
//   sluice queues delete work
//
// `list --json` prints one JSON object a line, a queue each: its settings and its counts
// (`ready`, `acquired`, `deadLettered`, `expired`, `overflowed`, `delayed`, `messageTtlMs`,
// `maxLength`, `maxLengthBytes`, `readyBytes`, `overflow`, `singleActiveConsumer`,
// `activeMember`, `retry`, ...), for scripts.

import type { QueueDescription, QueueSettings } from "../protocol/client/mod.ts";
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

/** Flags of `declare`, by flag name. */
const DECLARE_FLAGS = [
  "topic",
  "from",
  "dead-letter",
  "delivery-limit",
  "lock-ms",
  "prefetch",
  "max-in-flight",
  "fsync",
  "message-ttl-ms",
  "message-ttl-header",
  "max-length",
  "max-length-bytes",
  "overflow",
  "single-active-consumer",
  "priorities",
  "priority-ratio",
  "retry-min-ms",
  "retry-max-ms",
  "retry-factor",
];

export async function queues(values: ParsedValues, positionals: string[]): Promise<number> {
  const [action, ...rest] = positionals;
  const broker = parseBroker(values["broker"], values);
  const declareOnly = DECLARE_FLAGS.filter((name) => values[name] !== undefined);
  if (action !== "declare" && declareOnly.length > 0) {
    throw new UsageError(`--${declareOnly[0]} applies to 'queues declare' only`);
  }
  if (action !== "list" && values["json"] !== undefined) {
    throw new UsageError("--json applies to 'queues list' only");
  }
  if (action === "declare") {
    const [name] = positionalsFor("declare", rest, ["name"]);
    return declare(broker, name!, settingsOf(values));
  }
  if (action === "list") {
    positionalsFor("list", rest, []);
    return list(broker, values["json"] === true);
  }
  if (action === "purge") {
    const [name] = positionalsFor("purge", rest, ["name"]);
    const purged = await withAdmin(broker, (admin) => admin.purgeQueue(name!));
    console.log(`purged queue ${name}: ${purged} record${purged === 1 ? "" : "s"} dropped`);
    return 0;
  }
  if (action === "delete") {
    const [name] = positionalsFor("delete", rest, ["name"]);
    await withAdmin(broker, (admin) => admin.deleteQueue(name!));
    console.log(`deleted queue ${name}`);
    return 0;
  }
  if (action === undefined) throw new UsageError("needs an action: declare, list, purge or delete");
  throw new UsageError(`unknown action '${action}' (declare, list, purge or delete)`);
}

/** The declare flags as settings; ranges are the broker's to check (it names the value). */
function settingsOf(values: ParsedValues): QueueSettings {
  // Without --topic the queue gets a topic of its own name, created by the declare.
  const topic = stringValue(values["topic"], "topic");
  const settings: QueueSettings = topic === undefined ? {} : { topic };
  const from = stringValue(values["from"], "from");
  if (from !== undefined) {
    if (from !== "beginning" && from !== "end") {
      throw new UsageError(`--from ${from} is not beginning or end`);
    }
    settings.from = from;
  }
  const fsync = stringValue(values["fsync"], "fsync");
  if (fsync !== undefined) {
    if (fsync !== "always" && fsync !== "never") {
      throw new UsageError(`--fsync ${fsync} is not always or never`);
    }
    settings.fsync = fsync;
  }
  const ttlHeader = stringValue(values["message-ttl-header"], "message-ttl-header");
  if (ttlHeader !== undefined) {
    if (ttlHeader !== "read" && ttlHeader !== "ignore") {
      throw new UsageError(`--message-ttl-header ${ttlHeader} is not read or ignore`);
    }
    settings.messageTtlHeader = ttlHeader;
  }
  const overflow = stringValue(values["overflow"], "overflow");
  if (overflow !== undefined) {
    if (overflow !== "drop-head" && overflow !== "reject-publish") {
      throw new UsageError(`--overflow ${overflow} is not drop-head or reject-publish`);
    }
    settings.overflow = overflow;
  }
  if (values["single-active-consumer"] === true) settings.singleActiveConsumer = true;
  const maxLength = integerValue(values, "max-length", 0);
  if (maxLength !== undefined) settings.maxLength = maxLength;
  const maxLengthBytes = integerValue(values, "max-length-bytes", 0);
  if (maxLengthBytes !== undefined) settings.maxLengthBytes = maxLengthBytes;
  const deadLetter = stringValue(values["dead-letter"], "dead-letter");
  if (deadLetter !== undefined) settings.deadLetterTopic = deadLetter;
  const numbers = [
    ["delivery-limit", "deliveryLimit"],
    ["lock-ms", "lockMs"],
    ["prefetch", "prefetch"],
    ["max-in-flight", "maxInFlight"],
    ["message-ttl-ms", "messageTtlMs"],
    ["priorities", "priorities"],
    ["priority-ratio", "priorityRatio"],
  ] as const;
  for (const [flag, key] of numbers) {
    const value = integerValue(values, flag, 1);
    if (value !== undefined) settings[key] = value;
  }
  const retry = retryOf(values);
  if (retry !== undefined) settings.retry = retry;
  return settings;
}

/** --retry-min-ms [--retry-max-ms] [--retry-factor]: the queue's retry backoff. */
function retryOf(values: ParsedValues): QueueSettings["retry"] | undefined {
  const minMs = integerValue(values, "retry-min-ms", 1);
  const maxMs = integerValue(values, "retry-max-ms", 1);
  const factorText = stringValue(values["retry-factor"], "retry-factor");
  if (minMs === undefined) {
    if (maxMs !== undefined || factorText !== undefined) {
      throw new UsageError("--retry-max-ms and --retry-factor need --retry-min-ms");
    }
    return undefined;
  }
  const factor = factorText === undefined ? undefined : Number(factorText);
  if (factor !== undefined && !(factor >= 1)) {
    throw new UsageError(`--retry-factor ${factorText} is not a number >= 1`);
  }
  return {
    minMs,
    ...(maxMs === undefined ? {} : { maxMs }),
    ...(factor === undefined ? {} : { factor }),
  };
}

async function declare(broker: Broker, name: string, settings: QueueSettings): Promise<number> {
  const queue = await withAdmin(broker, (admin) => admin.declareQueue(name, settings));
  const deadLetters =
    queue.deadLetterTopic === null
      ? "no dead-letter topic"
      : `dead letters to ${queue.deadLetterTopic}`;
  const ttl = queue.messageTtlMs === null ? "" : `, message TTL ${queue.messageTtlMs} ms`;
  const maxLength =
    queue.maxLength === null && queue.maxLengthBytes === null
      ? ""
      : `, max length ${limitText(queue.maxLength, queue.maxLengthBytes)} (${queue.overflow})`;
  const single = queue.singleActiveConsumer ? ", single active consumer" : "";
  const priorities = queue.priorities === null ? "" : `, ${queue.priorities} priorities`;
  console.log(
    `declared queue ${queue.name} on topic ${queue.topic} (from ${queue.from}, lock ` +
      `${queue.lockMs} ms, delivery limit ${queue.deliveryLimit}, prefetch ${queue.prefetch}, ` +
      `${deadLetters}${ttl}${maxLength}${single}${priorities})`,
  );
  return 0;
}

/** "N" (records), "B bytes", or both, of a queue's limits. */
function limitText(records: number | null, bytes: number | null): string {
  const parts = [];
  if (records !== null) parts.push(String(records));
  if (bytes !== null) parts.push(`${bytes} bytes`);
  return parts.join(", ");
}

async function list(broker: Broker, json: boolean): Promise<number> {
  const queues = await withAdmin(broker, (admin) => admin.listQueues());
  if (json) {
    for (const queue of queues) console.log(JSON.stringify(jsonLine(queue)));
    return 0;
  }
  if (queues.length === 0) {
    console.error("sluice queues: no queues");
    return 0;
  }
  const rows = queues.map((q) => [
    q.name,
    q.topic,
    String(q.stats.ready),
    String(q.stats.acquired),
    String(q.stats.members),
    String(q.stats.accepted),
    String(q.stats.deadLettered),
    q.deadLetterTopic ?? "-",
  ]);
  const header = ["QUEUE", "TOPIC", "READY", "ACQUIRED", "MEMBERS", "ACCEPTED", "DEAD-LETTERED"];
  console.log(formatTable([[...header, "DEAD-LETTER TOPIC"], ...rows]));
  return 0;
}

/** One queue as a flat JSON object: settings, then counts, then per-partition counts. */
function jsonLine(queue: QueueDescription): Record<string, unknown> {
  const { stats, startOffsets: _startOffsets, ...settings } = queue;
  const { partitions, ...counts } = stats;
  return { ...settings, ...counts, partitions };
}

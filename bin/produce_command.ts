// `sluice produce`: one record per line of standard input, through the Producer (batched,
// idempotent with acks 1 and all). A summary goes to standard error.
//
//   printf 'user-1:hello\nuser-2:world\n' | sluice produce --topic orders --key-separator :
//
// A line without the key separator is not sent: it is counted, the first one is named, and
// the command exits 1. So does any record the broker did not take.
//
// --header k=v (repeatable; every pair is kept, a key may repeat) adds headers to every record;
// --delay-ms N adds `sluice-delay-ms: N` (0 to one year), so queues deliver each record no
// sooner than N ms after its timestamp;
// --value-file FILE sends one record holding the file's exact bytes (with --key, if given) and
// does not read stdin. A record may be as large as the topic's maxBatchBytes less the batch's
// own overhead: the producer's batch size follows the topic's config, not a fixed 1 MiB.

import fs from "node:fs";
import { createInterface } from "node:readline";
import { Producer } from "../protocol/client/mod.ts";

/** The longest delay a record may ask for: one year (the engine's DELAY_MS_MAX). */
const DELAY_MS_MAX = 31_536_000_000;
import {
  type Broker,
  integerValue,
  parseBroker,
  requiredString,
  stringValue,
  talkingTo,
  topicMetadata,
  withAdmin,
} from "./broker_client.ts";
import { type ParsedValues, UsageError } from "./_args.ts";

/** Past this many unacknowledged bytes, reading stdin waits for the producer to catch up. */
const BUFFERED_BYTES_MAX = 16 * 1024 * 1024;
/** How long a record may take to be acknowledged, retries included, before it counts failed. */
const DELIVERY_TIMEOUT_MS = 30_000;

type Settings = {
  broker: Broker;
  topic: string;
  separator: string | undefined;
  partition: number | undefined;
  acks: 0 | 1 | "all";
  headers: { key: string; value: string }[];
  valueFile: string | undefined;
  key: string | undefined;
};

/** `--header k=v`, each kept in order; a header without '=' is a usage error naming it. */
function headersOf(value: ParsedValues[string]): { key: string; value: string }[] {
  if (value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((item) => {
    const text = String(item);
    const at = text.indexOf("=");
    if (at <= 0) throw new UsageError(`--header ${text} is not KEY=VALUE`);
    return { key: text.slice(0, at), value: text.slice(at + 1) };
  });
}

type Tally = {
  sent: number;
  failed: number;
  firstFailure: string | undefined;
  skipped: number;
  firstSkipped: number | undefined;
  /** Per partition: the lowest and highest offset acknowledged. */
  offsets: Map<number, { low: number; high: number }>;
};

function settingsOf(values: ParsedValues, positionals: string[]): Settings {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const separator = stringValue(values["key-separator"], "key-separator");
  if (separator === "") throw new UsageError("--key-separator must not be empty");
  if (values["password-stdin"] === true) {
    throw new UsageError("produce reads records from stdin: give the password in SLUICE_PASSWORD");
  }
  const acks = stringValue(values["acks"], "acks") ?? "all";
  if (acks !== "0" && acks !== "1" && acks !== "all") {
    throw new UsageError(`--acks ${acks} is not 0, 1 or all`);
  }
  const valueFile = stringValue(values["value-file"], "value-file");
  const key = stringValue(values["key"], "key");
  if (valueFile !== undefined && separator !== undefined) {
    throw new UsageError("--key-separator applies to stdin lines, not to --value-file");
  }
  if (key !== undefined && valueFile === undefined) {
    throw new UsageError("--key applies to --value-file (for stdin lines use --key-separator)");
  }
  return {
    broker: parseBroker(values["broker"], values),
    topic: requiredString(values, "topic"),
    separator,
    partition: integerValue(values, "partition", 0, 2 ** 31 - 1),
    acks: acks === "all" ? "all" : acks === "1" ? 1 : 0,
    headers: headersOf(values["header"]),
    valueFile,
    key,
  };
}

export async function produce(values: ParsedValues, positionals: string[]): Promise<number> {
  // --delay-ms N is the `sluice-delay-ms` header on every record: a queue holds each record
  // back until N ms after its timestamp (PROTOCOL.md section 7a, "Delayed delivery").
  const delayMs = integerValue(values, "delay-ms", 0, DELAY_MS_MAX);
  if (delayMs !== undefined) {
    const headers = values["header"];
    const pairs = Array.isArray(headers) ? headers : typeof headers === "string" ? [headers] : [];
    values["header"] = [...pairs, `sluice-delay-ms=${delayMs}`];
  }
  if (values["exchange"] !== undefined || values["queue"] !== undefined) {
    if (values["topic"] !== undefined) {
      throw new UsageError("--topic excludes --exchange and --queue");
    }
    return (await import("./publish_command.ts")).publish(values, positionals);
  }
  if (values["routing-key"] !== undefined) {
    throw new UsageError("--routing-key applies to --exchange only");
  }
  if (values["priority"] !== undefined) {
    // On a topic the partition is the level: a priority queue's publish reads the header.
    throw new UsageError("--priority applies to --exchange and --queue (on a topic: --partition)");
  }
  const settings = settingsOf(values, positionals);
  const { broker, topic, partition } = settings;
  // The broker and the topic are checked first: one clear line now, not a retry loop later.
  const metadata = await withAdmin(broker, (admin) => topicMetadata(admin, topic));
  const count = metadata.partitions.length;
  if (partition !== undefined && partition >= count) {
    throw new Error(`topic '${topic}' has ${count} partitions; --partition ${partition} is none`);
  }
  const fileBytes =
    settings.valueFile === undefined ? undefined : readValueFile(settings.valueFile);
  const maxBatchBytes = metadata.config?.["maxBatchBytes"];
  const producer = new Producer({
    host: broker.host,
    port: broker.port,
    ...broker.connection,
    acks: settings.acks,
    deliveryTimeoutMs: DELIVERY_TIMEOUT_MS,
    ...(typeof maxBatchBytes === "number" ? { batchBytes: maxBatchBytes } : {}),
  });
  const tally: Tally = {
    sent: 0,
    failed: 0,
    firstFailure: undefined,
    skipped: 0,
    firstSkipped: undefined,
    offsets: new Map(),
  };
  const startedMs = Date.now();
  try {
    await talkingTo(broker, () =>
      fileBytes === undefined
        ? sendLines(producer, settings, tally)
        : sendOne(producer, settings, fileBytes, tally),
    );
  } finally {
    await producer.close();
  }
  console.error(summary(settings, tally, Date.now() - startedMs));
  return tally.failed === 0 && tally.skipped === 0 ? 0 : 1;
}

function readValueFile(path: string): Uint8Array {
  try {
    return fs.readFileSync(path);
  } catch (error) {
    throw new UsageError(`--value-file ${path}: cannot read it: ${(error as Error).message}`);
  }
}

/** Records each acknowledged offset in the tally. */
function onAck(tally: Tally) {
  return (error: Error | null, metadata?: { partition: number; offset: number }) => {
    if (error !== null) return failed(tally, error);
    if (metadata === undefined || metadata.offset < 0) return;
    const range = tally.offsets.get(metadata.partition);
    if (range === undefined) {
      tally.offsets.set(metadata.partition, { low: metadata.offset, high: metadata.offset });
    } else {
      range.low = Math.min(range.low, metadata.offset);
      range.high = Math.max(range.high, metadata.offset);
    }
  };
}

async function sendOne(
  producer: Producer,
  settings: Settings,
  value: Uint8Array,
  tally: Tally,
): Promise<void> {
  const { topic, partition, key, headers } = settings;
  tally.sent++;
  try {
    producer.send({ topic, key, value, partition, headers }, onAck(tally));
  } catch (error) {
    failed(tally, error);
  }
  await producer.flush();
}

async function sendLines(producer: Producer, settings: Settings, tally: Tally): Promise<void> {
  const { topic, separator, partition, headers } = settings;
  const lines = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  let lineNumber = 0;
  for await (const line of lines) {
    lineNumber++;
    let key: string | undefined;
    let value = line;
    if (separator !== undefined) {
      const at = line.indexOf(separator);
      if (at < 0) {
        tally.skipped++;
        tally.firstSkipped ??= lineNumber;
        continue;
      }
      key = line.slice(0, at);
      value = line.slice(at + separator.length);
    }
    tally.sent++;
    try {
      producer.send({ topic, key, value, partition, headers }, onAck(tally));
    } catch (error) {
      // A record the producer refuses outright (too large for a batch).
      failed(tally, error);
    }
    if (producer.bufferedBytes > BUFFERED_BYTES_MAX) await producer.flush();
  }
  await producer.flush();
}

function failed(tally: Tally, error: unknown): void {
  tally.failed++;
  tally.firstFailure ??= error instanceof Error ? error.message : String(error);
}

function summary(settings: Settings, tally: Tally, elapsedMs: number): string {
  const { topic, acks } = settings;
  const delivered = tally.sent - tally.failed;
  const lines = [
    `sluice produce: ${plural(delivered, "record")} to ${topic} ` +
      `(acks ${acks}) in ${elapsedMs} ms`,
  ];
  const ranges = [...tally.offsets]
    .sort(([a], [b]) => a - b)
    .map(([p, { low, high }]) => `${p}:${low === high ? low : `${low}-${high}`}`);
  if (ranges.length > 0) lines[0] += `; offsets ${ranges.join(" ")}`;
  if (tally.failed > 0) {
    const failures = plural(tally.failed, "record");
    lines.push(`sluice produce: ${failures} failed, the first: ${tally.firstFailure}`);
  }
  if (tally.skipped > 0) {
    lines.push(
      `sluice produce: ${plural(tally.skipped, "line")} had no key separator ` +
        `'${settings.separator}' and were not sent (the first: line ${tally.firstSkipped})`,
    );
  }
  return lines.join("\n");
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

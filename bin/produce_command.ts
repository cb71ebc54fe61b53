// `sluice produce`: one record per line of standard input, through the Producer (batched,
// idempotent with acks 1 and all). A summary goes to standard error.
//
//   printf 'user-1:hello\nuser-2:world\n' | sluice produce --topic orders --key-separator :
//
// A line without the key separator is not sent: it is counted, the first one is named, and
// the command exits 1. So does any record the broker did not take.

import { createInterface } from "node:readline";
import { Producer } from "../protocol/client/mod.ts";
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
};

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
  return {
    broker: parseBroker(values["broker"], values),
    topic: requiredString(values, "topic"),
    separator,
    partition: integerValue(values, "partition", 0, 2 ** 31 - 1),
    acks: acks === "all" ? "all" : acks === "1" ? 1 : 0,
  };
}

export async function produce(values: ParsedValues, positionals: string[]): Promise<number> {
  const settings = settingsOf(values, positionals);
  const { broker, topic, partition } = settings;
  // The broker and the topic are checked first: one clear line now, not a retry loop later.
  const metadata = await withAdmin(broker, (admin) => topicMetadata(admin, topic));
  const count = metadata.partitions.length;
  if (partition !== undefined && partition >= count) {
    throw new Error(`topic '${topic}' has ${count} partitions; --partition ${partition} is none`);
  }
  const producer = new Producer({
    host: broker.host,
    port: broker.port,
    ...broker.connection,
    acks: settings.acks,
    deliveryTimeoutMs: DELIVERY_TIMEOUT_MS,
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
    await talkingTo(broker, () => sendLines(producer, settings, tally));
  } finally {
    await producer.close();
  }
  console.error(summary(settings, tally, Date.now() - startedMs));
  return tally.failed === 0 && tally.skipped === 0 ? 0 : 1;
}

async function sendLines(producer: Producer, settings: Settings, tally: Tally): Promise<void> {
  const { topic, separator, partition } = settings;
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
      producer.send({ topic, key, value, partition }, (error, metadata) => {
        if (error !== null) return failed(tally, error);
        if (metadata!.offset < 0) return;
        const range = tally.offsets.get(metadata!.partition);
        if (range === undefined) {
          tally.offsets.set(metadata!.partition, { low: metadata!.offset, high: metadata!.offset });
        } else {
          range.low = Math.min(range.low, metadata!.offset);
          range.high = Math.max(range.high, metadata!.offset);
        }
      });
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

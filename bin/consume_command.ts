// `sluice consume`: prints record values, one a line, until --count records, until nothing
// came for --timeout-ms, or until SIGINT/SIGTERM. Without --group it reads every partition
// (or --partition) from --from; with --group it joins the group, starts where the group's
// commits say (--from beginning|end only for partitions without one), and commits what it has
// printed after each poll and on exit.
//
//   sluice consume --topic orders --from beginning --count 10
//   sluice consume --topic orders --group billing --timeout-ms 5000

import { Consumer, type ConsumerRecord } from "../protocol/client/mod.ts";
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

/** The longest a poll waits: how soon a signal or an idle timeout is noticed. */
const POLL_WAIT_MS_MAX = 500;

type Settings = {
  broker: Broker;
  topic: string;
  group: string | undefined;
  from: "beginning" | "end" | number;
  partition: number | undefined;
  count: number | undefined;
  idleTimeoutMs: number | undefined;
};

function settingsOf(values: ParsedValues, positionals: string[]): Settings {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const fromText = stringValue(values["from"], "from") ?? "end";
  let from: Settings["from"];
  if (fromText === "beginning" || fromText === "end") {
    from = fromText;
  } else if (/^\d+$/.test(fromText) && Number.isSafeInteger(Number(fromText))) {
    from = Number(fromText);
  } else {
    throw new UsageError(`--from ${fromText} is not beginning, end or an offset`);
  }
  const settings: Settings = {
    broker: parseBroker(values["broker"], values),
    topic: requiredString(values, "topic"),
    group: stringValue(values["group"], "group"),
    from,
    partition: integerValue(values, "partition", 0, 2 ** 31 - 1),
    count: integerValue(values, "count", 1),
    idleTimeoutMs: integerValue(values, "timeout-ms", 0),
  };
  if (settings.group === "") throw new UsageError("--group must not be empty");
  if (settings.group !== undefined && typeof from === "number") {
    throw new UsageError("--from OFFSET cannot be used with --group (the group's commits decide)");
  }
  if (settings.group !== undefined && settings.partition !== undefined) {
    throw new UsageError("--partition cannot be used with --group (the group assigns them)");
  }
  return settings;
}

export async function consume(values: ParsedValues, positionals: string[]): Promise<number> {
  const settings = settingsOf(values, positionals);
  const { broker, topic, group, from, partition } = settings;
  const metadata = await withAdmin(broker, (admin) => topicMetadata(admin, topic));
  const partitions = metadata.partitions.map((p) => p.partition);
  if (partition !== undefined && !partitions.includes(partition)) {
    const count = partitions.length;
    throw new Error(`topic '${topic}' has ${count} partitions; --partition ${partition} is none`);
  }
  const consumer = new Consumer({
    host: broker.host,
    port: broker.port,
    ...broker.connection,
    group,
    // Commits are of what was printed, which may be fewer records than a poll delivered.
    autoCommit: false,
    autoOffsetReset: from === "beginning" ? "earliest" : "latest",
  });
  if (group !== undefined) {
    consumer.subscribe([topic], { fromBeginning: from === "beginning" });
  } else {
    const offset = typeof from === "number" ? { offset: from } : {};
    const chosen = partition === undefined ? partitions : [partition];
    consumer.assign(chosen.map((p) => ({ topic, partition: p, ...offset })));
  }
  const printed = await talkingTo(broker, () => printRecords(consumer, settings));
  console.error(`sluice consume: ${printed} record${printed === 1 ? "" : "s"}`);
  return 0;
}

/**
 * The poll loop; closes the consumer and returns how many records it printed. Every printed
 * record is committed before the next poll, so a signal during a poll closes the consumer at
 * once (which ends the poll) and nothing printed goes uncommitted.
 */
async function printRecords(consumer: Consumer, settings: Settings): Promise<number> {
  const { count, idleTimeoutMs, group } = settings;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= consumer.close();
    return closing;
  };
  let stopped = false;
  let polling = false;
  const stop = () => {
    stopped = true;
    if (polling) void close();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  let printed = 0;
  let lastRecordMs = Date.now();
  try {
    while (!stopped && (count === undefined || printed < count)) {
      const idleLeftMs = (idleTimeoutMs ?? Number.POSITIVE_INFINITY) - (Date.now() - lastRecordMs);
      polling = true;
      const polled = await consumer.poll({
        maxWaitMs: Math.max(0, Math.min(POLL_WAIT_MS_MAX, idleLeftMs)),
      });
      polling = false;
      // Records of a poll a signal cut short are not printed, so not committed either.
      if (stopped) break;
      if (polled.length === 0) {
        if (idleTimeoutMs !== undefined && Date.now() - lastRecordMs >= idleTimeoutMs) break;
        continue;
      }
      const records = count === undefined ? polled : polled.slice(0, count - printed);
      if (!(await writeValues(records))) break;
      printed += records.length;
      lastRecordMs = Date.now();
      if (group !== undefined) await commitPrinted(consumer, records);
    }
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await close();
  }
  return printed;
}

/** Set once standard output has failed: its reader went away (`| head`). */
let stdoutGone = false;

/** Writes one value a line (a null value as an empty line); false when stdout is gone. */
export function writeValues(records: readonly { value: Uint8Array | null }[]): Promise<boolean> {
  const decoder = new TextDecoder();
  let text = "";
  for (const record of records) {
    text += `${record.value === null ? "" : decoder.decode(record.value)}\n`;
  }
  if (process.stdout.listenerCount("error") === 0) {
    // Node and Deno report a closed pipe as an error event (after the write's callback), and
    // an error event nobody listens to would end the process with a stack trace.
    process.stdout.on("error", () => {
      stdoutGone = true;
    });
  }
  // Waiting for the write keeps memory bounded when stdout is slower than the broker.
  return new Promise((resolve) => {
    if (stdoutGone) return resolve(false);
    try {
      process.stdout.write(text, (error) => resolve(error == null && !stdoutGone));
    } catch {
      // Bun throws EPIPE from the write itself.
      stdoutGone = true;
      resolve(false);
    }
  });
}

/** Commits the offset after the last printed record of each partition. */
async function commitPrinted(consumer: Consumer, records: ConsumerRecord[]): Promise<void> {
  const next = new Map<number, { topic: string; partition: number; offset: number }>();
  for (const { topic, partition, offset } of records) {
    next.set(partition, { topic, partition, offset: offset + 1 });
  }
  try {
    await consumer.commit([...next.values()]);
  } catch (error) {
    // A partition moved to another member since the poll: it reads from the last commit, so
    // some records are printed twice (at least once), none lost.
    const message = error instanceof Error ? error.message : String(error);
    console.error(`sluice consume: commit failed, records may be read again: ${message}`);
  }
}

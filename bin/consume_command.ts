// `sluice consume`: prints records (by default their values, one a line; --format and --json
// in ./consume_format.ts) until --count records, until nothing came for --timeout-ms, until
// every partition's end was reached (--exit-at-end), or until SIGINT/SIGTERM. Without --group
// it reads every partition (or --partition) from --from (./consume_start.ts); with --group it
// joins the group, starts where the group's commits say (--from beginning|end only for
// partitions without one), and commits what it has printed after each poll and on exit.
// While the broker cannot be reached (at start or later) it says so once on stderr, keeps
// retrying, and says so again when it is back.
//
//   sluice consume --topic orders --from beginning --count 10
//   sluice consume --topic orders --from -5 -e -f '%p:%o %k=%s\n'
//   sluice consume --topic orders --group billing --timeout-ms 5000

import { Consumer, type ConsumerRecord } from "../protocol/client/mod.ts";
import {
  type Broker,
  BrokerUnreachableError,
  integerValue,
  parseBroker,
  requiredString,
  stringValue,
  talkingTo,
  topicMetadata,
  withAdmin,
} from "./broker_client.ts";
import { type ParsedValues, UsageError } from "./_args.ts";
import { type OutputMode, RecordPrinter } from "./consume_format.ts";
import {
  type FromSpec,
  parseFrom,
  partitionRanges,
  pastEndWarnings,
  resolveStarts,
} from "./consume_start.ts";

/** The longest a poll waits: how soon a signal or an idle timeout is noticed. */
const POLL_WAIT_MS_MAX = 500;

type Settings = {
  broker: Broker;
  topic: string;
  group: string | undefined;
  from: FromSpec;
  partition: number | undefined;
  count: number | undefined;
  idleTimeoutMs: number | undefined;
  output: OutputMode;
  exitAtEnd: boolean;
};

function outputOf(values: ParsedValues): OutputMode {
  const format = stringValue(values["format"], "format");
  if (format !== undefined && values["json"] === true) {
    throw new UsageError("--format and --json cannot be used together");
  }
  if (format !== undefined) return { kind: "format", format };
  return values["json"] === true ? { kind: "json" } : { kind: "values" };
}

function settingsOf(values: ParsedValues, positionals: string[]): Settings {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const from = parseFrom(stringValue(values["from"], "from") ?? "end");
  const settings: Settings = {
    broker: parseBroker(values["broker"], values),
    topic: requiredString(values, "topic"),
    group: stringValue(values["group"], "group"),
    from,
    partition: integerValue(values, "partition", 0, 2 ** 31 - 1),
    count: integerValue(values, "count", 1),
    idleTimeoutMs: integerValue(values, "timeout-ms", 0),
    output: outputOf(values),
    exitAtEnd: values["exit-at-end"] === true,
  };
  if (settings.output.kind === "format") new RecordPrinter(settings.output); // checks the tokens
  if (settings.group === "") throw new UsageError("--group must not be empty");
  if (settings.group !== undefined && from.kind !== "beginning" && from.kind !== "end") {
    throw new UsageError(
      `--from ${String(values["from"])} cannot be used with --group (the group's commits ` +
        "decide; beginning or end apply to partitions without a commit)",
    );
  }
  if (settings.group !== undefined && settings.exitAtEnd) {
    throw new UsageError(
      "--exit-at-end cannot be used with --group (partitions move between members)",
    );
  }
  if (settings.group !== undefined && settings.partition !== undefined) {
    throw new UsageError("--partition cannot be used with --group (the group assigns them)");
  }
  return settings;
}

export async function consume(values: ParsedValues, positionals: string[]): Promise<number> {
  const settings = settingsOf(values, positionals);
  const { broker, topic, group, from, partition } = settings;
  const chosen = await untilReachable(settings, () =>
    withAdmin(broker, async (admin) => {
      const metadata = await topicMetadata(admin, topic);
      const partitions = metadata.partitions.map((p) => p.partition);
      if (partition !== undefined && !partitions.includes(partition)) {
        const count = partitions.length;
        throw new Error(
          `topic '${topic}' has ${count} partitions; --partition ${partition} is none`,
        );
      }
      if (group !== undefined) return undefined;
      const ranges = await partitionRanges(
        admin,
        topic,
        partition === undefined ? partitions : [partition],
      );
      const starts = await resolveStarts(admin, topic, ranges, from);
      for (const line of pastEndWarnings(topic, ranges, starts)) console.error(line);
      return { ranges, starts };
    }),
  );
  const consumer = new Consumer({
    host: broker.host,
    port: broker.port,
    ...broker.connection,
    group,
    // Commits are of what was printed, which may be fewer records than a poll delivered.
    autoCommit: false,
    autoOffsetReset: from.kind === "beginning" ? "earliest" : "latest",
  });
  if (chosen === undefined) {
    consumer.subscribe([topic], { fromBeginning: from.kind === "beginning" });
  } else {
    consumer.assign(
      chosen.ranges.map(({ partition: p }) => ({
        topic,
        partition: p,
        offset: chosen.starts.get(p)!,
      })),
    );
  }
  const ends =
    chosen === undefined ? undefined : new Map(chosen.ranges.map((r) => [r.partition, r.end]));
  const positions = chosen === undefined ? undefined : new Map(chosen.starts);
  const atEnd =
    settings.exitAtEnd && ends !== undefined && positions !== undefined
      ? () => [...ends].every(([p, end]) => (positions.get(p) ?? 0) >= end)
      : undefined;
  const printed = await talkingTo(broker, () =>
    printRecords(consumer, settings, { positions, atEnd }),
  );
  console.error(`sluice consume: ${printed} record${printed === 1 ? "" : "s"}`);
  return 0;
}

/** How long consume waits between attempts to reach a broker that is not there, at most. */
const REACH_BACKOFF_MS_MAX = 2000;

/**
 * Runs `body` until the broker can be reached: a consumer started while the broker is down says
 * so once and keeps trying (until --timeout-ms, if given, or a signal), as kcat does.
 */
async function untilReachable<T>(settings: Settings, body: () => Promise<T>): Promise<T> {
  const startedMs = Date.now();
  let announced = false;
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await body();
      if (announced) {
        console.error(
          `sluice consume: reached the broker at ${settings.broker.host}:${settings.broker.port}`,
        );
      }
      return result;
    } catch (error) {
      if (!(error instanceof BrokerUnreachableError)) throw error;
      const waitedMs = Date.now() - startedMs;
      if (settings.idleTimeoutMs !== undefined && waitedMs >= settings.idleTimeoutMs) throw error;
      if (!announced) console.error(`sluice consume: ${error.message}; retrying`);
      announced = true;
      const backoffMs = Math.min(100 * 2 ** attempt, REACH_BACKOFF_MS_MAX);
      await new Promise((resolve) => setTimeout(resolve, backoffMs));
    }
  }
}

type Progress = {
  /** Next offset of each partition read without a group; updated as records are printed. */
  positions: Map<number, number> | undefined;
  /** --exit-at-end: true once every partition's next offset reached its end at start. */
  atEnd: (() => boolean) | undefined;
};

/** Says once when the broker cannot be reached, and once when it can again. */
function connectionNotices(consumer: Consumer, broker: Broker): () => void {
  let announced = false;
  const where = `${broker.host}:${broker.port}`;
  return () => {
    const retrying = consumer.retrying;
    if (retrying !== undefined && !announced) {
      announced = true;
      const cause =
        retrying.error instanceof Error ? retrying.error.message : String(retrying.error);
      console.error(`sluice consume: the broker at ${where} is unreachable (${cause}); retrying`);
    } else if (retrying === undefined && announced) {
      announced = false;
      console.error(`sluice consume: reconnected to the broker at ${where}`);
    }
  };
}

/**
 * The poll loop; closes the consumer and returns how many records it printed. Every printed
 * record is committed before the next poll, so a signal during a poll closes the consumer at
 * once (which ends the poll) and nothing printed goes uncommitted.
 */
async function printRecords(
  consumer: Consumer,
  settings: Settings,
  progress: Progress,
): Promise<number> {
  const { count, idleTimeoutMs, group } = settings;
  const printer = new RecordPrinter(settings.output);
  const notice = connectionNotices(consumer, settings.broker);
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
      if (progress.atEnd?.() === true) break;
      const idleLeftMs = (idleTimeoutMs ?? Number.POSITIVE_INFINITY) - (Date.now() - lastRecordMs);
      polling = true;
      const polled = await consumer.poll({
        maxWaitMs: Math.max(0, Math.min(POLL_WAIT_MS_MAX, idleLeftMs)),
      });
      polling = false;
      // Records of a poll a signal cut short are not printed, so not committed either.
      if (stopped) break;
      notice();
      if (polled.length === 0) {
        if (idleTimeoutMs !== undefined && Date.now() - lastRecordMs >= idleTimeoutMs) break;
        continue;
      }
      const records = count === undefined ? polled : polled.slice(0, count - printed);
      if (!(await writeText(printer.render(records)))) break;
      printed += records.length;
      for (const r of records) progress.positions?.set(r.partition, r.offset + 1);
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
  return writeText(text);
}

/** Writes `text` to stdout and waits for it; false when stdout is gone. */
function writeText(text: string): Promise<boolean> {
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

// `sluice consume --queue NAME`: acquires records from a queue as one member of it, prints
// their values one a line (as every `consume` does), and answers each as --ack says (accept,
// the default; release; reject). It acquires at most --count records, stops after --timeout-ms
// without one, or on SIGINT/SIGTERM, and waits for the broker to confirm every answer before it
// exits: exit 1 (with the codes on stderr) when any was refused.
//
//   sluice consume --queue work --count 10
//   sluice consume --queue work --ack reject --timeout-ms 2000
//
// A value is printed before its answer is sent, so an accepted record was always printed (at
// least once). Records acquired but not printed (a signal, a closed stdout) are released.

import { QueueConsumer, type QueueMessage } from "../protocol/client/mod.ts";
import {
  type Broker,
  integerValue,
  parseBroker,
  requiredString,
  stringValue,
  talkingTo,
  withAdmin,
} from "./broker_client.ts";
import { writeValues } from "./consume_command.ts";
import { type ParsedValues, UsageError } from "./_args.ts";

/** The longest a poll waits: how soon a signal or an idle timeout is noticed. */
const POLL_WAIT_MS_MAX = 500;
/** Records one fetch acquires at most. */
const FETCH_RECORDS_MAX = 500;
/** Flags of topic consumption that mean nothing for a queue. */
const TOPIC_FLAGS = ["topic", "group", "from", "partition"];

type Answer = "accept" | "release" | "reject";

type Settings = {
  broker: Broker;
  queue: string;
  answer: Answer;
  count: number | undefined;
  idleTimeoutMs: number | undefined;
};

function settingsOf(values: ParsedValues, positionals: string[]): Settings {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const topicFlag = TOPIC_FLAGS.find((name) => values[name] !== undefined);
  if (topicFlag !== undefined) {
    const why = topicFlag === "from" ? " (a queue's start is fixed when it is declared)" : "";
    throw new UsageError(`--${topicFlag} cannot be used with --queue${why}`);
  }
  const answer = stringValue(values["ack"], "ack") ?? "accept";
  if (answer !== "accept" && answer !== "release" && answer !== "reject") {
    throw new UsageError(`--ack ${answer} is not accept, release or reject`);
  }
  return {
    broker: parseBroker(values["broker"], values),
    queue: requiredString(values, "queue"),
    answer,
    count: integerValue(values, "count", 1),
    idleTimeoutMs: integerValue(values, "timeout-ms", 0),
  };
}

export async function consumeQueue(values: ParsedValues, positionals: string[]): Promise<number> {
  const settings = settingsOf(values, positionals);
  const { broker, queue } = settings;
  // An unknown queue or an unreachable broker is one clear line at once, not a retry loop.
  await withAdmin(broker, (admin) => admin.listQueues([queue]));
  const consumer = new QueueConsumer({
    host: broker.host,
    port: broker.port,
    ...broker.connection,
    queue,
    maxRecords: Math.min(settings.count ?? FETCH_RECORDS_MAX, FETCH_RECORDS_MAX),
  });
  const outcome = await talkingTo(broker, () => printAndAnswer(consumer, settings));
  const plural = outcome.printed === 1 ? "" : "s";
  console.error(`sluice consume: ${outcome.printed} record${plural} (${settings.answer})`);
  if (outcome.refused.length === 0) return 0;
  console.error(
    `sluice consume: ${outcome.refused.length} answer${outcome.refused.length === 1 ? "" : "s"} ` +
      `refused; the first: ${outcome.refused[0]}`,
  );
  return 1;
}

/**
 * The poll loop: prints each poll's values, then answers them. Closes the consumer, which
 * waits for the broker's word on every answer, and returns what it printed and what failed.
 */
async function printAndAnswer(
  consumer: QueueConsumer,
  settings: Settings,
): Promise<{ printed: number; refused: string[] }> {
  const { count, idleTimeoutMs } = settings;
  let stopped = false;
  const stop = () => {
    stopped = true;
    void consumer.close();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const answers: Promise<void>[] = [];
  let printed = 0;
  let lastRecordMs = Date.now();
  try {
    while (!stopped && (count === undefined || printed < count)) {
      const idleLeftMs = (idleTimeoutMs ?? Number.POSITIVE_INFINITY) - (Date.now() - lastRecordMs);
      const messages = await consumer.poll({
        maxRecords: Math.min(FETCH_RECORDS_MAX, (count ?? FETCH_RECORDS_MAX) - printed),
        maxWaitMs: Math.max(0, Math.min(POLL_WAIT_MS_MAX, idleLeftMs)),
      });
      if (messages.length === 0) {
        if (idleTimeoutMs !== undefined && Date.now() - lastRecordMs >= idleTimeoutMs) break;
        continue;
      }
      if (stopped || !(await writeValues(messages))) {
        release(messages);
        break;
      }
      printed += messages.length;
      lastRecordMs = Date.now();
      for (const message of messages) answers.push(message[settings.answer]());
    }
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
  const refused: string[] = [];
  const outcomes = await Promise.allSettled(answers);
  for (const outcome of outcomes) {
    if (outcome.status === "rejected")
      refused.push(String(outcome.reason?.message ?? outcome.reason));
  }
  await consumer.close();
  return { printed, refused };
}

function release(messages: QueueMessage[]): void {
  for (const message of messages) message.release().catch(() => undefined);
}

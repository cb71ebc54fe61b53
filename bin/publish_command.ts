// `sluice produce --exchange X` and `sluice produce --queue Q`: one record per line of standard
// input, published through an exchange (`--queue Q` is the default exchange with routing key
// Q: the queue's topic gets the records). A summary goes to standard error.
//
//   printf 'a.eu:1\nb.us:2\n' | sluice produce --exchange orders --key-separator :
//   echo job | sluice produce --queue work --header attempt=1
//   echo urgent | sluice produce --queue jobs --priority 9    # header sluice-priority: 9
//
// The routing key is `--routing-key K` when given, else each line's key. Records unroutable
// (no binding took them) are counted and not an error, as in AMQP without `mandatory`; a
// record the broker refused is, and the command exits 1.

import { createInterface } from "node:readline";
import { Publisher, type PublishRecord } from "../protocol/client/mod.ts";
import { integerValue, parseBroker, stringValue, talkingTo } from "./broker_client.ts";
import { headerPairs } from "./exchanges_command.ts";
import { type ParsedValues, UsageError } from "./_args.ts";

/** Lines published per request. */
const LINES_PER_PUBLISH = 1_000;

type Settings = {
  exchange: string;
  routingKey: string | undefined;
  separator: string | undefined;
  headers: { key: string; value: string }[];
  acks: 1 | "all";
  label: string;
};

function settingsOf(values: ParsedValues, positionals: string[]): Settings {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  if (values["partition"] !== undefined) {
    throw new UsageError("--partition applies to --topic only");
  }
  const exchange = stringValue(values["exchange"], "exchange");
  const queue = stringValue(values["queue"], "queue");
  if (exchange !== undefined && queue !== undefined) {
    throw new UsageError("--exchange and --queue exclude each other");
  }
  const separator = stringValue(values["key-separator"], "key-separator");
  if (separator === "") throw new UsageError("--key-separator must not be empty");
  let routingKey = stringValue(values["routing-key"], "routing-key");
  if (queue !== undefined) {
    if (routingKey !== undefined) throw new UsageError("--routing-key does not apply to --queue");
    routingKey = queue;
  }
  const acks = stringValue(values["acks"], "acks") ?? "all";
  if (acks !== "1" && acks !== "all") {
    throw new UsageError(`--acks ${acks} is not 1 or all (an exchange publish is answered)`);
  }
  const headers = headerPairs(values).map(([key, value]) => ({ key, value }));
  const priority = integerValue(values, "priority", 0, 255);
  if (priority !== undefined) headers.push({ key: "sluice-priority", value: String(priority) });
  return {
    exchange: exchange ?? "",
    routingKey,
    separator,
    headers,
    acks: acks === "all" ? "all" : 1,
    label: queue === undefined ? `exchange ${exchange}` : `queue ${queue}`,
  };
}

type Tally = { sent: number; destinations: number; unroutable: number; skipped: number };

export async function publish(values: ParsedValues, positionals: string[]): Promise<number> {
  const settings = settingsOf(values, positionals);
  const broker = parseBroker(values["broker"]);
  const publisher = new Publisher({ host: broker.host, port: broker.port, acks: settings.acks });
  const tally: Tally = { sent: 0, destinations: 0, unroutable: 0, skipped: 0 };
  const startedMs = Date.now();
  try {
    await talkingTo(broker, () => publishLines(publisher, settings, tally));
  } finally {
    await publisher.close();
  }
  const elapsedMs = Date.now() - startedMs;
  console.error(
    `sluice produce: ${tally.sent} record${tally.sent === 1 ? "" : "s"} to ${settings.label} ` +
      `(acks ${settings.acks}) in ${elapsedMs} ms; ${tally.destinations} destination ` +
      `appends, ${tally.unroutable} unroutable`,
  );
  if (tally.skipped > 0) {
    console.error(
      `sluice produce: ${tally.skipped} line(s) had no key separator and were not sent`,
    );
  }
  return tally.skipped === 0 ? 0 : 1;
}

async function publishLines(publisher: Publisher, settings: Settings, tally: Tally) {
  const lines = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  let pending: PublishRecord[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    const result = await publisher.publish(settings.exchange, pending);
    tally.sent += pending.length;
    tally.destinations += result.destinations;
    tally.unroutable += result.unroutable;
    pending = [];
  };
  for await (const line of lines) {
    const record = recordOf(line, settings);
    if (record === undefined) {
      tally.skipped++;
      continue;
    }
    pending.push(record);
    if (pending.length >= LINES_PER_PUBLISH) await flush();
  }
  await flush();
}

function recordOf(line: string, settings: Settings): PublishRecord | undefined {
  let key: string | undefined;
  let value = line;
  if (settings.separator !== undefined) {
    const at = line.indexOf(settings.separator);
    if (at < 0) return undefined;
    key = line.slice(0, at);
    value = line.slice(at + settings.separator.length);
  }
  return {
    ...(key === undefined ? {} : { key }),
    value,
    headers: settings.headers,
    ...(settings.routingKey === undefined ? {} : { routingKey: settings.routingKey }),
  };
}

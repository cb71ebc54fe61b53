// What the client commands (topics, produce, consume, groups) share: reading their flags into
// checked values, the broker address, one clear line for a broker that cannot be reached, and
// plain aligned tables for what they print.

import {
  Admin,
  ClientError,
  type ClientConnectionOptions,
  type TopicMetadata,
} from "../protocol/client/mod.ts";
import { errorFromWire, WIRE_ERRORS } from "../protocol/codec/mod.ts";
import { type ParsedValues, UsageError } from "./_args.ts";
import { clientSecurity } from "./security_flags.ts";

/** sluice's own port (`sluice serve`'s default): Kafka's 9092 is left to a Kafka listener. */
const PORT_DEFAULT = 7450;
export const BROKER_DEFAULT = `127.0.0.1:${PORT_DEFAULT}`;
/** A partition number or an offset given on the command line fits here. */
const INTEGER_MAX = Number.MAX_SAFE_INTEGER;

/** Where the broker is, and the TLS and SASL options of every connection to it. */
export type Broker = { host: string; port: number; connection?: ClientConnectionOptions };

/**
 * `HOST:PORT`, `HOST` (port 7450) or `[IPv6]:PORT`; SLUICE_BROKER when there is no flag; with
 * the command's flags, also their TLS and SASL options (security_flags.ts).
 */
export function parseBroker(value: ParsedValues[string], flags?: ParsedValues): Broker {
  const text = stringValue(value, "broker") ?? process.env["SLUICE_BROKER"] ?? BROKER_DEFAULT;
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d+))?$/.exec(text);
  const port = match?.[3] === undefined ? PORT_DEFAULT : Number(match[3]);
  if (match === null || !Number.isInteger(port) || port < 1 || port > 65_535) {
    const flag = value === undefined ? "SLUICE_BROKER" : "--broker";
    throw new UsageError(`${flag} ${text} is not HOST:PORT`);
  }
  const host = match[1] ?? match[2]!;
  return flags === undefined ? { host, port } : { host, port, connection: clientSecurity(flags) };
}

export function stringValue(value: ParsedValues[string], name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw new UsageError(`--${name} needs a value`);
  return value;
}

export function requiredString(values: ParsedValues, name: string): string {
  const value = stringValue(values[name], name);
  if (value === undefined || value.length === 0) throw new UsageError(`--${name} is required`);
  return value;
}

/** A whole number in [min, max], written in decimal digits. */
export function integerValue(
  values: ParsedValues,
  name: string,
  min: number,
  max = INTEGER_MAX,
): number | undefined {
  const text = stringValue(values[name], name);
  if (text === undefined) return undefined;
  const number = /^-?\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(number) || number < min || number > max) {
    const range = max === INTEGER_MAX ? `an integer ≥ ${min}` : `an integer in [${min}, ${max}]`;
    throw new UsageError(`--${name} ${text} is not ${range}`);
  }
  return number;
}

/** Positionals after the action: exactly `names.length` of them. */
export function positionalsFor(action: string, rest: string[], names: string[]): string[] {
  if (rest.length < names.length) {
    throw new UsageError(`${action} needs ${names.map((n) => n.toUpperCase()).join(" ")}`);
  }
  if (rest.length > names.length)
    throw new UsageError(`unexpected argument '${rest[names.length]}'`);
  return rest;
}

/** The broker could not be reached at all (nothing listens, no route): one clear line. */
export class BrokerUnreachableError extends Error {
  override name = "BrokerUnreachableError";
}

/**
 * Runs `body` and turns a broker that cannot be reached, or went away, into one clear line.
 * Server errors already name the code and the item; they pass through.
 */
export async function talkingTo<T>(broker: Broker, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    const where = `${broker.host}:${broker.port}`;
    const cause = rootCause(error).message;
    if (error.code === "CONNECT_FAILED") {
      throw new BrokerUnreachableError(`cannot connect to the broker at ${where} (${cause})`);
    }
    if (error.code === "CONNECTION_CLOSED") {
      throw new Error(`lost the connection to the broker at ${where} (${cause})`);
    }
    throw error;
  }
}

/** The innermost error: the socket's own message, without the client's wrapping. */
function rootCause(error: Error): Error {
  let inner = error;
  while (inner.cause instanceof Error) inner = inner.cause;
  return inner;
}

/** Runs `body` with an Admin client, closed afterwards. */
export async function withAdmin<T>(broker: Broker, body: (admin: Admin) => Promise<T>) {
  const admin = new Admin({ host: broker.host, port: broker.port, ...broker.connection });
  try {
    return await talkingTo(broker, () => body(admin));
  } finally {
    await admin.close();
  }
}

/** The topic's metadata; a missing topic is one clear line. */
export async function topicMetadata(admin: Admin, topic: string): Promise<TopicMetadata> {
  const metadata = await admin.metadata([topic]);
  const entry = metadata.topics.find((t) => t.name === topic);
  const code = entry?.errorCode ?? WIRE_ERRORS.UNKNOWN_TOPIC;
  if (code === WIRE_ERRORS.UNKNOWN_TOPIC) throw new Error(`topic '${topic}' does not exist`);
  if (code !== 0) throw errorFromWire(code, `metadata of topic ${topic}`);
  return entry!;
}

/** Rows as columns padded to their widest cell; the last column is not padded. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

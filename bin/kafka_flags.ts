// `serve`'s Kafka listener flags (protocol/kafka/): --kafka-port and its companions, checked
// and turned into SluiceServer.start's `kafka` option.

import { type ParsedValues, UsageError } from "./_args.ts";

function portOf(value: string | boolean | (string | boolean)[] | undefined, flag = "port"): number {
  if (value === undefined) return 9092;
  const port = Number(value);
  if (typeof value !== "string" || !Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new UsageError(`--${flag} ${String(value)} is not a port number (0 to 65535)`);
  }
  return port;
}

/** `{ [key]: ms }` for a flag given as a positive integer of milliseconds, else `{}`. */
function msOption(key: string, flag: string, values: ParsedValues): Record<string, number> {
  const value = values[flag];
  if (value === undefined) return {};
  const ms = Number(value);
  if (typeof value !== "string" || !Number.isSafeInteger(ms) || ms < 1) {
    throw new UsageError(`--${flag} ${String(value)} is not a positive number of milliseconds`);
  }
  return { [key]: ms };
}

/** `{ kafka }` for `serve --kafka-port N` (see protocol/kafka/), else `{}`. */
export async function kafkaOption(values: ParsedValues) {
  const port = values["kafka-port"];
  const tls = values["kafka-tls"] === true;
  if (port === undefined) {
    if (tls) throw new UsageError("--kafka-tls needs --kafka-port");
    return {};
  }
  if (tls && values["tls-cert"] === undefined) {
    throw new UsageError("--kafka-tls needs --tls-cert and --tls-key (the same certificate)");
  }
  const { parseVersionCaps } = await import("../protocol/kafka/mod.ts");
  const host = values["kafka-advertised-host"];
  const caps = values["kafka-version-caps"];
  const autoCreate = values["kafka-auto-create-topics"];
  if (autoCreate !== undefined && autoCreate !== "true" && autoCreate !== "false") {
    throw new UsageError(`--kafka-auto-create-topics ${String(autoCreate)} is not true or false`);
  }
  let versionCaps: ReturnType<typeof parseVersionCaps> | undefined;
  try {
    versionCaps = typeof caps === "string" ? parseVersionCaps(caps) : undefined;
  } catch (error) {
    throw new UsageError(`--kafka-version-caps: ${(error as Error).message}`);
  }
  return {
    kafka: {
      port: portOf(port, "kafka-port"),
      ...(typeof host === "string" ? { advertisedHost: host } : {}),
      ...(autoCreate === undefined ? {} : { autoCreateTopics: autoCreate === "true" }),
      ...(versionCaps === undefined ? {} : { versionCaps }),
      ...msOption("initialRebalanceDelayMs", "kafka-initial-rebalance-delay-ms", values),
      ...(tls ? { tls: true } : {}),
    },
  };
}

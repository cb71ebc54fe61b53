// The table of `sluice` subcommands. Each command declares its flags so `--help` and parseArgs
// come from one source; each command's work lives in a module loaded when it runs.

import packageJson from "../package.json" with { type: "json" };
import { type ParsedValues, UsageError } from "./_args.ts";

export type OptionSpec = { type: "string" | "boolean"; help: string };

export type Command = {
  name: string;
  usage: string;
  summary: string;
  options: Record<string, OptionSpec>;
  run(values: ParsedValues, positionals: string[]): Promise<number>;
};

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

/** A positive number given as a flag's text, or undefined when the flag is absent. */
function positiveNumber(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new UsageError(`${flag} ${text} is not a positive number`);
  }
  return value;
}

/** `sluice bench worker`: a load worker for coordinators on other machines. */
async function benchWorker(values: ParsedValues, positionals: string[]): Promise<number> {
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);
  const listen = values["listen"];
  if (typeof listen !== "string") throw new UsageError("bench worker needs --listen HOST:PORT");
  const { runWorker } = await import("../bench/worker/main.ts");
  const token = typeof values["token"] === "string" ? values["token"] : undefined;
  try {
    await runWorker({ listen, ...(token === undefined ? {} : { token }) });
  } catch (error) {
    if (error instanceof RangeError) throw new UsageError(error.message);
    throw error;
  }
  // Driver clients of the last session may leave timers or sockets behind.
  process.exit(0);
}

/** `{ kafka }` for `serve --kafka-port N` (see protocol/kafka/), else `{}`. */
async function kafkaOption(values: ParsedValues) {
  const port = values["kafka-port"];
  if (port === undefined) return {};
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
    },
  };
}

/** Runs the broker until SIGINT or SIGTERM, then shuts it down cleanly. */
async function serve(values: ParsedValues): Promise<number> {
  const { SluiceServer } = await import("../protocol/mod.ts");
  const server = await SluiceServer.start({
    dataDir: typeof values["data"] === "string" ? values["data"] : "data",
    host: typeof values["host"] === "string" ? values["host"] : "127.0.0.1",
    port: portOf(values["port"]),
    ...msOption("heartbeatIntervalMs", "heartbeat-interval-ms", values),
    ...msOption("sessionTimeoutMs", "session-timeout-ms", values),
    ...(await kafkaOption(values)),
  });
  if (server.kafka !== undefined) {
    console.log(`kafka listening on ${server.kafka.host}:${server.kafka.port}`);
  }
  console.log(`sluice listening on ${server.host}:${server.port}`);
  // The handlers stay installed for the whole shutdown: a second signal (a service manager
  // signalling the whole process group, a launcher passing one on) must not kill the process
  // half-way through a clean close.
  let stopping = false;
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      if (stopping) {
        console.error(`sluice: ${signal} received again; still shutting down cleanly`);
        return;
      }
      stopping = true;
      console.error(`sluice: ${signal} received, shutting down`);
      resolve();
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  });
  await server.close();
  return 0;
}

function runtimeName(): string {
  const versions = process.versions as Record<string, string | undefined>;
  if (versions["bun"] !== undefined) return `bun ${versions["bun"]}`;
  if (versions["deno"] !== undefined) return `deno ${versions["deno"]}`;
  return `node ${process.versions.node}`;
}

const BROKER_HELP = "Broker address (default 127.0.0.1:9092)";

export const COMMANDS: Command[] = [
  {
    name: "serve",
    usage: "serve [--data DIR] [--host HOST] [--port PORT] [--kafka-port PORT]",
    summary: "Run the broker on a data directory",
    options: {
      data: { type: "string", help: "Data directory (default ./data)" },
      host: { type: "string", help: "Address to listen on (default 127.0.0.1)" },
      port: { type: "string", help: "TCP port, 0 picks a free one (default 9092)" },
      "heartbeat-interval-ms": {
        type: "string",
        help: "Consumer-group heartbeat interval handed to members (default 3000)",
      },
      "session-timeout-ms": {
        type: "string",
        help: "Evict a group member silent this long (default 45000)",
      },
      "kafka-port": { type: "string", help: "Also serve Kafka's protocol on this port (0: free)" },
      "kafka-advertised-host": {
        type: "string",
        help: "Host Kafka clients are told to connect to (default: the bind address)",
      },
      "kafka-auto-create-topics": {
        type: "string",
        help: "Kafka Metadata creates missing topics, 4 partitions: true|false (default true)",
      },
      "kafka-version-caps": {
        type: "string",
        help: "Lower advertised Kafka API maxima: min, or API=MAX,... (e.g. Fetch=4)",
      },
      "kafka-initial-rebalance-delay-ms": {
        type: "string",
        help: "A new classic group waits this long for more members (default 3000)",
      },
    },
    run: (values) => serve(values),
  },
  {
    name: "topics",
    usage:
      "topics create NAME [--partitions N] [--config k=v,...] | list | delete NAME " +
      "[--broker HOST:PORT]",
    summary: "Create, list and delete topics",
    options: {
      partitions: { type: "string", help: "Partition count for create (default 1)" },
      config: {
        type: "string",
        help: "Topic config for create: retentionMs=N,fsync=always|never|MS,...",
      },
      broker: { type: "string", help: BROKER_HELP },
    },
    run: async (values, positionals) =>
      (await import("./topics_command.ts")).topics(values, positionals),
  },
  {
    name: "produce",
    usage: "produce --topic T [--key-separator SEP] [--partition N] [--acks 0|1|all]",
    summary: "Publish lines from standard input, one record a line",
    options: {
      topic: { type: "string", help: "Topic to publish to" },
      "key-separator": { type: "string", help: "Split each line into key SEP value" },
      partition: { type: "string", help: "Partition to write to (default: by key or sticky)" },
      acks: { type: "string", help: "0, 1 or all (default all)" },
      broker: { type: "string", help: BROKER_HELP },
    },
    run: async (values, positionals) =>
      (await import("./produce_command.ts")).produce(values, positionals),
  },
  {
    name: "consume",
    usage:
      "consume --topic T [--group G] [--from beginning|end|N] [--count N] [--timeout-ms N] | " +
      "--queue Q [--ack accept|release|reject] [--count N] [--timeout-ms N]",
    summary: "Print record values, one a line",
    options: {
      topic: { type: "string", help: "Topic to read" },
      queue: { type: "string", help: "Queue to consume as one of its members (not with --topic)" },
      ack: {
        type: "string",
        help: "With --queue: accept, release or reject each (default accept)",
      },
      group: { type: "string", help: "Consumer group: join it and commit what was printed" },
      from: { type: "string", help: "beginning, end or an offset (default end)" },
      partition: { type: "string", help: "Read only this partition (not with --group)" },
      count: { type: "string", help: "Stop after N records" },
      "timeout-ms": { type: "string", help: "Stop after N ms without a record (default: never)" },
      broker: { type: "string", help: BROKER_HELP },
    },
    async run(values, positionals) {
      if (values["queue"] !== undefined) {
        return (await import("./queue_consume_command.ts")).consumeQueue(values, positionals);
      }
      if (values["ack"] !== undefined) throw new UsageError("--ack applies to --queue only");
      return (await import("./consume_command.ts")).consume(values, positionals);
    },
  },
  {
    name: "queues",
    usage:
      "queues declare NAME --topic T [--from beginning|end] [--dead-letter TOPIC] " +
      "[--delivery-limit N] [--lock-ms N] [--prefetch N] | list [--json] | purge NAME | " +
      "delete NAME [--broker HOST:PORT]",
    summary: "Declare, list, purge and delete queues",
    options: {
      topic: { type: "string", help: "declare: the topic the queue reads" },
      from: { type: "string", help: "declare: beginning or end of the topic (default end)" },
      "dead-letter": { type: "string", help: "declare: topic for rejected and dead records" },
      "delivery-limit": { type: "string", help: "declare: deliveries before dead-lettering (20)" },
      "lock-ms": { type: "string", help: "declare: how long a record stays acquired (30000)" },
      prefetch: { type: "string", help: "declare: unanswered records per member at most (1000)" },
      "max-in-flight": { type: "string", help: "declare: widest window per partition (2000)" },
      fsync: { type: "string", help: "declare: always or never, before an ack is answered" },
      json: { type: "boolean", help: "list: one JSON object per queue, one a line" },
      broker: { type: "string", help: BROKER_HELP },
    },
    run: async (values, positionals) =>
      (await import("./queues_command.ts")).queues(values, positionals),
  },
  {
    name: "groups",
    usage: "groups describe GROUP [--broker HOST:PORT]",
    summary: "Show a consumer group: members, partitions, committed offsets and lag",
    options: {
      broker: { type: "string", help: BROKER_HELP },
    },
    run: async (values, positionals) =>
      (await import("./groups_command.ts")).groups(values, positionals),
  },
  {
    name: "bench",
    usage:
      "bench [--workload NAME|FILE] [--drivers a,b] [--out DIR] [--sluice-url HOST:PORT] " +
      "[--driver-options k=v,...] [--workers N|HOST:PORT,...] [--token T] " +
      "[--publish-p99-max-ms MS] [--latency-at-load] [--common-rate N] | " +
      "bench worker --listen HOST:PORT [--token T]",
    summary: "Run a benchmark workload against sluice and peer brokers",
    options: {
      workload: { type: "string", help: "Workload name in bench/workloads or a YAML file" },
      drivers: { type: "string", help: "Comma-separated driver names" },
      out: { type: "string", help: "Directory for results and report.html" },
      "sluice-url": { type: "string", help: "host:port of a running sluice for the sluice driver" },
      "driver-options": { type: "string", help: "key=value,... for drivers (driver.key: one)" },
      workers: {
        type: "string",
        help: "Load worker processes (default 2; 0: in this process) or remote HOST:PORT,...",
      },
      token: { type: "string", help: "Token shared with remote workers (or SLUICE_BENCH_TOKEN)" },
      "publish-p99-max-ms": {
        type: "string",
        help: "Publish p99 bound of a sustained rate (default 100)",
      },
      "latency-at-load": {
        type: "boolean",
        help: "Also run each driver at 50% and 80% of its rate and at a common rate",
      },
      "common-rate": { type: "string", help: "The common rate of --latency-at-load (msg/s)" },
      listen: { type: "string", help: "bench worker: HOST:PORT to listen on (127.0.0.1 if PORT)" },
    },
    async run(values, positionals) {
      if (positionals[0] === "worker") return benchWorker(values, positionals);
      if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
      if (values["listen"] !== undefined) throw new UsageError("--listen is for `bench worker`");
      const { runBench } = await import("../bench/cli.ts");
      const text = (name: string) => (typeof values[name] === "string" ? values[name] : undefined);
      try {
        const outcome = await runBench({
          workload: text("workload"),
          drivers: text("drivers"),
          out: text("out"),
          sluiceUrl: text("sluice-url"),
          driverOptions: text("driver-options"),
          workers: text("workers"),
          token: text("token"),
          publishP99MsMax: positiveNumber(text("publish-p99-max-ms"), "--publish-p99-max-ms"),
          latencyAtLoad: values["latency-at-load"] === true,
          commonRate: positiveNumber(text("common-rate"), "--common-rate"),
        });
        return outcome.exitCode;
      } catch (error) {
        // Bad flag values (an unknown driver or workload, a bad option) are usage errors.
        if (error instanceof RangeError || (error as Error).name === "WorkloadError") {
          throw new UsageError((error as Error).message);
        }
        throw error;
      }
    },
  },
  {
    name: "version",
    usage: "version",
    summary: "Print the sluice version and the runtime",
    options: {},
    async run(_values, positionals) {
      if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
      console.log(`sluice ${packageJson.version} (${runtimeName()})`);
      return 0;
    },
  },
];

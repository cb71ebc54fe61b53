// The table of `sluice` subcommands. Each command declares its flags so `--help` and parseArgs
// come from one source; each command's work lives in a module loaded when it runs.

import packageJson from "../package.json" with { type: "json" };
import { type ParsedValues, UsageError } from "./_args.ts";
import type { FlagSpec } from "./_parse.ts";
import { SERVE_OPS_OPTIONS } from "./serve_options.ts";
import { CLIENT_SECURITY_OPTIONS, SERVE_SECURITY_OPTIONS } from "./security_flags.ts";

export type OptionSpec = FlagSpec;

export type Command = {
  name: string;
  usage: string;
  summary: string;
  options: Record<string, OptionSpec>;
  run(values: ParsedValues, positionals: string[]): Promise<number>;
};

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

/** Runs the broker until SIGINT or SIGTERM, then shuts it down cleanly (./serve_command.ts). */
async function serve(values: ParsedValues): Promise<number> {
  return (await import("./serve_command.ts")).serve(values);
}

function runtimeName(): string {
  const versions = process.versions as Record<string, string | undefined>;
  if (versions["bun"] !== undefined) return `bun ${versions["bun"]}`;
  if (versions["deno"] !== undefined) return `deno ${versions["deno"]}`;
  return `node ${process.versions.node}`;
}

const BROKER_HELP = "Broker address (default 127.0.0.1:7450, or SLUICE_BROKER)";

export const COMMANDS: Command[] = [
  {
    name: "serve",
    usage:
      "serve [--config FILE] [--data DIR] [--host HOST] [--port PORT] [--http-port PORT] " +
      "[--kafka-port PORT] [--tls-cert FILE --tls-key FILE [--tls-ca FILE] " +
      "[--tls-port PORT]] [--auth scram,plain,mtls] [--super-users A,B]",
    summary: "Run the broker on a data directory",
    options: {
      config: { type: "string", help: "TOML (.toml) or JSON settings file (or SLUICE_CONFIG)" },
      data: { type: "string", help: "Data directory (default $XDG_DATA_HOME/sluice)" },
      host: { type: "string", help: "Address to listen on (default 127.0.0.1)" },
      port: { type: "string", help: "TCP port, 0 picks a free one (default 7450)" },
      "heartbeat-interval-ms": {
        type: "string",
        help: "Consumer-group heartbeat interval handed to members (default 3000)",
      },
      "session-timeout-ms": {
        type: "string",
        help: "Evict a group member silent this long (default 45000)",
      },
      ...SERVE_OPS_OPTIONS,
      ...SERVE_SECURITY_OPTIONS,
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
      "kafka-tls": {
        type: "boolean",
        help: "TLS on the Kafka port too, with --tls-cert/--tls-key/--tls-ca (SASL_SSL, SSL)",
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
      "topics create NAME [--partitions N] [--config k=v,...] | list | describe NAME | " +
      "alter NAME [--retention-ms N] [--retention-bytes N] [--fsync always|never|MS] " +
      "[--segment-bytes N] [--segment-ms N] [--max-batch-bytes N] | delete NAME " +
      "[--broker HOST:PORT]",
    summary: "Create, list, describe, alter and delete topics",
    options: {
      partitions: { type: "string", help: "Partition count for create (default 1)" },
      config: {
        type: "string",
        help: "Topic config for create: retentionMs=N,fsync=always|never|MS,...",
      },
      "retention-ms": { type: "string", help: "alter: keep records this long (-1: forever)" },
      "retention-bytes": {
        type: "string",
        help: "alter: keep at most this many bytes per partition (-1: no limit)",
      },
      fsync: { type: "string", help: "alter: always, never, or an fsync interval in ms" },
      "segment-bytes": { type: "string", help: "alter: roll segments at this size" },
      "segment-ms": { type: "string", help: "alter: roll segments this long after their start" },
      "max-batch-bytes": { type: "string", help: "alter: the largest batch a produce may send" },
      broker: { type: "string", help: BROKER_HELP },
      ...CLIENT_SECURITY_OPTIONS,
    },
    run: async (values, positionals) =>
      (await import("./topics_command.ts")).topics(values, positionals),
  },
  {
    name: "produce",
    usage:
      "produce (--topic T | --exchange X | --queue Q) [--routing-key K] [--key-separator SEP] " +
      "[--header K=V]... [--priority P] [--delay-ms N] [--partition N] [--acks 0|1|all] " +
      "[--value-file FILE [--key K]]",
    summary: "Publish lines from standard input, one record a line (or one file as a record)",
    options: {
      topic: { type: "string", help: "Topic to publish to" },
      exchange: { type: "string", help: "Exchange to publish through (not with --topic)" },
      queue: { type: "string", help: "Queue to publish to, by the default exchange" },
      "routing-key": { type: "string", help: "--exchange: routing key (default: each key)" },
      "key-separator": { type: "string", help: "Split each line into key SEP value" },
      header: { type: "string", multiple: true, help: "Add header KEY=VALUE to every record" },
      priority: {
        type: "string",
        help: "--exchange/--queue: priority 0-255 (header sluice-priority) of every record",
      },
      "delay-ms": { type: "string", help: "Queues deliver each record N ms after its timestamp" },
      "value-file": { type: "string", help: "Send one record: this file's exact bytes (no stdin)" },
      key: { type: "string", help: "With --value-file: the record's key" },
      partition: { type: "string", help: "Partition to write to (default: by key or sticky)" },
      acks: { type: "string", help: "0, 1 or all (default all)" },
      broker: { type: "string", help: BROKER_HELP },
      ...CLIENT_SECURITY_OPTIONS,
    },
    run: async (values, positionals) =>
      (await import("./produce_command.ts")).produce(values, positionals),
  },
  {
    name: "consume",
    usage:
      "consume --topic T [--group G] [--from WHERE] [--format F | --json] [-e] [--count N] " +
      "[--timeout-ms N] | " +
      "--queue Q [--ack accept|release|reject] [--count N] [--timeout-ms N]",
    summary: "Print record values, one a line (or --format / --json records)",
    options: {
      topic: { type: "string", help: "Topic to read" },
      queue: { type: "string", help: "Queue to consume as one of its members (not with --topic)" },
      ack: {
        type: "string",
        help: "With --queue: accept, release or reject each (default accept)",
      },
      group: { type: "string", help: "Consumer group: join it and commit what was printed" },
      from: {
        type: "string",
        help: "beginning, end, OFFSET, -N (last N), @MS or ISO-8601 time (default end)",
      },
      format: {
        type: "string",
        short: "f",
        help: "kcat tokens: %t %p %o %k %K %s %S %T %h %%, \\n \\t (nothing added)",
      },
      json: { type: "boolean", help: "One JSON object a line; non-UTF-8 bytes as base64" },
      "exit-at-end": {
        type: "boolean",
        short: "e",
        help: "Stop once every partition's end (at start) is reached",
      },
      partition: { type: "string", help: "Read only this partition (not with --group)" },
      count: { type: "string", help: "Stop after N records" },
      "timeout-ms": { type: "string", help: "Stop after N ms without a record (default: never)" },
      broker: { type: "string", help: BROKER_HELP },
      ...CLIENT_SECURITY_OPTIONS,
    },
    async run(values, positionals) {
      if (values["queue"] !== undefined) {
        for (const flag of ["format", "json", "exit-at-end"]) {
          if (values[flag] !== undefined) throw new UsageError(`--${flag} applies to --topic only`);
        }
        return (await import("./queue_consume_command.ts")).consumeQueue(values, positionals);
      }
      if (values["ack"] !== undefined) throw new UsageError("--ack applies to --queue only");
      return (await import("./consume_command.ts")).consume(values, positionals);
    },
  },
  {
    name: "queues",
    usage:
      "queues declare NAME [--topic T] [--from beginning|end] [--dead-letter TOPIC] " +
      "[--delivery-limit N] [--lock-ms N] [--prefetch N] [--message-ttl-ms N] " +
      "[--message-ttl-header read|ignore] [--max-length N] [--max-length-bytes N] " +
      "[--overflow drop-head|reject-publish] [--single-active-consumer] " +
      "[--priorities N [--priority-ratio R]] [--retry-min-ms N [--retry-max-ms N] " +
      "[--retry-factor F]] | " +
      "list [--json] | purge NAME | " +
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
      "message-ttl-header": {
        type: "string",
        help: "declare: read (default) or ignore the records' sluice-ttl-ms header",
      },
      "retry-min-ms": {
        type: "string",
        help: "declare: a release waits min * factor^(deliveries-1) ms (retry backoff)",
      },
      "retry-max-ms": { type: "string", help: "declare: the retry backoff's cap (default min)" },
      "retry-factor": { type: "string", help: "declare: the retry backoff's factor (default 2)" },
      "message-ttl-ms": {
        type: "string",
        help: "declare: records expire this long after their timestamp",
      },
      "max-length": {
        type: "string",
        help: "declare: ready records kept at most (0 or more; default no limit)",
      },
      "max-length-bytes": {
        type: "string",
        help: "declare: bytes of ready records kept at most (stored size; default no limit)",
      },
      overflow: {
        type: "string",
        help: "declare: drop-head (default: oldest ready record dropped) or reject-publish",
      },
      "single-active-consumer": {
        type: "boolean",
        help: "declare: one member gets every record; the next takes over when it leaves",
      },
      priorities: {
        type: "string",
        help: "declare: priority levels, 2-10 (one partition each; higher served first)",
      },
      "priority-ratio": {
        type: "string",
        help: "declare: higher-priority records in a row before a waiting lower level",
      },
      json: { type: "boolean", help: "list: one JSON object per queue, one a line" },
      broker: { type: "string", help: BROKER_HELP },
      ...CLIENT_SECURITY_OPTIONS,
    },
    run: async (values, positionals) =>
      (await import("./queues_command.ts")).queues(values, positionals),
  },
  {
    name: "exchanges",
    usage:
      "exchanges declare NAME --type direct|fanout|topic|headers " +
      "[--alternate-exchange X | --alternate-topic T] | " +
      "bind|unbind NAME (--queue Q | --topic T) [--routing-key PATTERN] " +
      "[--match all|any --header k=v ...] | delete NAME | list [--json] [--broker HOST:PORT]",
    summary: "Declare, bind, unbind, delete and list exchanges",
    options: {
      type: { type: "string", help: "declare: direct, fanout, topic or headers" },
      "alternate-exchange": { type: "string", help: "declare: where unroutable records go" },
      "alternate-topic": { type: "string", help: "declare: topic for unroutable records" },
      queue: { type: "string", help: "bind/unbind: the queue to bind" },
      topic: { type: "string", help: "bind/unbind: the topic to bind" },
      "routing-key": { type: "string", help: "bind/unbind: key (direct) or pattern (topic)" },
      match: { type: "string", help: "bind/unbind (headers): all or any (default all)" },
      header: { type: "string", multiple: true, help: "bind/unbind (headers): k=v; repeatable" },
      json: { type: "boolean", help: "list: one JSON object per exchange, one a line" },
      broker: { type: "string", help: BROKER_HELP },
    },
    run: async (values, positionals) =>
      (await import("./exchanges_command.ts")).exchanges(values, positionals),
  },
  {
    name: "groups",
    usage: "groups list [--json] | describe GROUP [--broker HOST:PORT]",
    summary: "List consumer groups, or show one: members, partitions, offsets and lag",
    options: {
      json: { type: "boolean", help: "list: one JSON object per group, one a line" },
      broker: { type: "string", help: BROKER_HELP },
      ...CLIENT_SECURITY_OPTIONS,
    },
    run: async (values, positionals) =>
      (await import("./groups_command.ts")).groups(values, positionals),
  },
  {
    name: "offsets",
    usage:
      "offsets reset GROUP --topic T --to earliest|latest|@MS|ISO-8601 [--partition P] " +
      "[--broker HOST:PORT]",
    summary: "Move a stopped group's committed offsets",
    options: {
      topic: { type: "string", help: "The topic whose offsets to move" },
      to: { type: "string", help: "earliest, latest, @TIMESTAMP_MS or an ISO-8601 time" },
      partition: { type: "string", help: "Only this partition (default: every one)" },
      broker: { type: "string", help: BROKER_HELP },
    },
    run: async (values, positionals) =>
      (await import("./offsets_command.ts")).offsets(values, positionals),
  },
  {
    name: "users",
    usage:
      "users add NAME --password-stdin [--iterations N] | delete NAME | list " +
      "(--data DIR | --broker HOST:PORT --user ADMIN)",
    summary: "Add, delete and list users (SCRAM credentials), offline or through a broker",
    options: {
      data: { type: "string", help: "Data directory no running broker holds (offline)" },
      broker: { type: "string", help: "Change them through this broker instead" },
      iterations: { type: "string", help: "add: PBKDF2 iterations of the credentials (4096)" },
      ...CLIENT_SECURITY_OPTIONS,
      "password-stdin": { type: "boolean", help: "add: the new user's password, one line" },
    },
    run: async (values, positionals) =>
      (await import("./security_command.ts")).users(values, positionals),
  },
  {
    name: "acls",
    usage:
      "acls add|remove --principal P (--allow|--deny) OPS (--topic T|--group G|--queue Q|" +
      "--exchange E|--cluster) [--prefixed] | list [--principal P] (--data DIR | --broker H:P)",
    summary: "Add, remove and list ACLs (read,write,create,delete,describe,alter)",
    options: {
      principal: { type: "string", help: "The user (or client-certificate name); * for all" },
      allow: { type: "string", help: "Operations to allow, comma-separated" },
      deny: { type: "string", help: "Operations to deny (deny wins over allow)" },
      topic: { type: "string", help: "The topic (or name prefix with --prefixed; * for all)" },
      group: { type: "string", help: "The consumer group" },
      queue: { type: "string", help: "The queue" },
      exchange: { type: "string", help: "The exchange" },
      cluster: { type: "boolean", help: "The cluster (create topics, stats, security admin)" },
      prefixed: { type: "boolean", help: "The name is a prefix" },
      data: { type: "string", help: "Data directory no running broker holds (offline)" },
      broker: { type: "string", help: "Change them through this broker instead" },
      ...CLIENT_SECURITY_OPTIONS,
    },
    run: async (values, positionals) =>
      (await import("./security_command.ts")).acls(values, positionals),
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
      return (await import("./bench_command.ts")).bench(values, positionals);
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

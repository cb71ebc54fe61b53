// The Kafka driver (kafkajs, pure JavaScript: loads under Bun and Deno).
//
// UNTESTED AGAINST A REAL BROKER: no Kafka broker can be installed on the machines this project
// is built on, and nothing here speaks the Kafka protocol yet. The tests check only its options
// and that it reports an unreachable broker as DriverUnavailableError. It is for users who have
// a broker: `--driver-options kafka.brokers=host:9092[;host:9092]` or SLUICE_KAFKA_BROKERS.
//
// - createTopic: a topic with N partitions (replication factor: option `replication-factor`,
//   default -1 = the broker's default.replication.factor, Kafka >= 2.4), waiting for leaders.
// - Producers: idempotent (producer id + sequence numbers; kafkajs then retries without limit),
//   acks = -1 (all in-sync replicas). kafkajs's idempotent producer loses or rejects messages
//   when several send() calls run at once (kafkajs issues #598 and #1005), so each producer keeps
//   exactly one request in flight (maxInFlightRequests 1) and batches: everything sendAsync was
//   given while a request was in flight goes out in the next one (at most `batch-max`, 1000).
//   That is the Java client's linger-free batching with one request in flight per producer.
//   The partition is chosen by the driver (round-robin for keyless messages, a hash of the key
//   otherwise), as in the other drivers; the key is sent too.
// - Consumers: one kafkajs consumer per createConsumer in consumer group `subscription`,
//   subscribed from the beginning of the (fresh) topic so no message published after the
//   group join can be skipped by an offset reset; createConsumer resolves when the consumer has
//   joined its group. eachBatch calls the callback for every message; offsets are committed by
//   kafkajs after the callbacks (autoCommit): at-least-once.
// - deleteTopic deletes the topic and the consumer groups the driver created for it.
// - Security: `sasl=scram-sha-256|scram-sha-512|plain` with `username` and `password` (or env
//   SLUICE_KAFKA_PASSWORD) logs every connection in with kafkajs's SASL; `tls=true` connects
//   with TLS, trusting `tls-ca-file` (a PEM CA) or the system's CAs. Together: SASL_SSL.
//
// Durability: acks = -1 returns once every in-sync replica has the batch in its log, which
// Kafka writes to the page cache; by default Kafka does not fsync per message
// (log.flush.interval.messages is unbounded) and relies on replication, so with one replica a
// machine crash can lose acknowledged messages.

import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import kafkajs from "kafkajs";
import type { Admin, Consumer, Kafka, KafkaConfig, Producer, SASLOptions } from "kafkajs";
import { setImmediate } from "node:timers";
import type {
  BenchConsumer,
  BenchProducer,
  BrokerProcess,
  Driver,
  DriverConfig,
  DriverFactory,
  DriverSettings,
  MessageCallback,
} from "../driver.ts";
import { DriverUnavailableError } from "../driver.ts";
import {
  CONNECT_TIMEOUT_MS_DEFAULT,
  type DriverOptions,
  errorMessage,
  optionChoice,
  optionInt,
  optionString,
  packageVersion,
  PartitionPicker,
  safeName,
  withTimeout,
} from "./peers/common.ts";

export type KafkaOptions = {
  /**
   * Bootstrap brokers; option `brokers` (separated by `;`, since --driver-options splits on
   * commas) or env SLUICE_KAFKA_BROKERS (`,` or `;`).
   */
  brokers: string[];
  replicationFactor: number;
  /** Messages per produce request at most. */
  batchMax: number;
  connectTimeoutMs: number;
  /** How long createConsumer waits for the consumer to join its group. */
  joinTimeoutMs: number;
  /** SASL login for every connection (undefined: none). */
  sasl: { mechanism: KafkaSaslMechanism; username: string; password: string } | undefined;
  /** TLS (undefined: plaintext); `caFile` undefined trusts the system's CAs. */
  tls: { caFile: string | undefined } | undefined;
};

export const KAFKA_SASL_MECHANISMS = ["scram-sha-256", "scram-sha-512", "plain"] as const;
export type KafkaSaslMechanism = (typeof KAFKA_SASL_MECHANISMS)[number];

/** `sasl`, `username`, `password` (or SLUICE_KAFKA_PASSWORD), `tls`, `tls-ca-file`. */
function securityOptions(options: DriverOptions): Pick<KafkaOptions, "sasl" | "tls"> {
  const mechanism = options["sasl"];
  let sasl: KafkaOptions["sasl"];
  if (mechanism !== undefined && mechanism !== "") {
    const chosen = optionChoice(options, "sasl", KAFKA_SASL_MECHANISMS, "scram-sha-256");
    const username = options["username"];
    const password = options["password"] ?? process.env["SLUICE_KAFKA_PASSWORD"];
    if (username === undefined || username === "") {
      throw new RangeError(`Driver option sasl=${chosen} needs username=NAME`);
    }
    if (password === undefined) {
      throw new RangeError(
        `Driver option sasl=${chosen} needs password=... (or SLUICE_KAFKA_PASSWORD)`,
      );
    }
    sasl = { mechanism: chosen, username, password };
  }
  const tlsOn = optionChoice(options, "tls", ["true", "false"], "false") === "true";
  const caFile = options["tls-ca-file"];
  if (!tlsOn && caFile !== undefined) {
    throw new RangeError(`Driver option tls-ca-file=${caFile} needs tls=true`);
  }
  return { sasl, tls: tlsOn ? { caFile } : undefined };
}

export const KAFKA_HINT =
  "no Kafka broker can be installed here; start one elsewhere and pass " +
  "--driver-options kafka.brokers=host:9092 (or set SLUICE_KAFKA_BROKERS)";

/** Reads the driver options (`brokers`, `replication-factor`, `batch-max`, timeouts). */
export function kafkaOptions(options: DriverOptions = {}): KafkaOptions {
  const brokers = optionString(options, "brokers", "127.0.0.1:9092", "SLUICE_KAFKA_BROKERS")
    .split(/[,;]/)
    .map((broker) => broker.trim())
    .filter((broker) => broker.length > 0);
  for (const broker of brokers) {
    if (!/^[^:\s]+:\d{1,5}$/.test(broker)) {
      throw new RangeError(`Driver option brokers has ${broker}, which is not host:port`);
    }
  }
  return {
    brokers,
    replicationFactor: optionInt(options, "replication-factor", -1, { min: -1, max: 32 }),
    batchMax: optionInt(options, "batch-max", 1000, { min: 1, max: 100_000 }),
    connectTimeoutMs: optionInt(options, "connect-timeout-ms", CONNECT_TIMEOUT_MS_DEFAULT, {
      min: 1,
      max: 60_000,
    }),
    joinTimeoutMs: optionInt(options, "join-timeout-ms", 60_000, { min: 1, max: 600_000 }),
    ...securityOptions(options),
  };
}

/** kafkajs's `sasl` option (a union by mechanism, so each is spelled out). */
function saslConfig(sasl: NonNullable<KafkaOptions["sasl"]>): SASLOptions {
  const { username, password } = sasl;
  if (sasl.mechanism === "scram-sha-512") return { mechanism: "scram-sha-512", username, password };
  if (sasl.mechanism === "plain") return { mechanism: "plain", username, password };
  return { mechanism: "scram-sha-256", username, password };
}

/** The security in force, for settings(): never the password. */
function describeSecurity(options: KafkaOptions): string {
  const parts = [
    ...(options.tls === undefined ? [] : [`TLS (CA: ${options.tls.caFile ?? "system"})`]),
    ...(options.sasl === undefined
      ? []
      : [`SASL ${options.sasl.mechanism} as ${options.sasl.username}`]),
  ];
  return parts.length === 0 ? "none (plaintext)" : parts.join(" + ");
}

/** `owned`: created here and deleted by close(); false when attached to in a worker. */
type TopicState = { name: string; partitions: number; groups: Set<string>; owned: boolean };

class KafkaDriver implements Driver {
  readonly name = "kafka";
  readonly #options: KafkaOptions;
  readonly #topics = new Map<string, TopicState>();
  readonly #producers = new Set<Producer>();
  readonly #consumers = new Set<Consumer>();
  #kafka: Kafka | null = null;
  #admin: Admin | null = null;

  constructor(options: KafkaOptions) {
    this.#options = options;
  }

  async initialize(): Promise<void> {
    const { brokers, connectTimeoutMs, sasl, tls } = this.#options;
    const config: KafkaConfig = {
      clientId: "sluice-bench",
      brokers,
      connectionTimeout: connectTimeoutMs,
      logLevel: kafkajs.logLevel.NOTHING,
      ...(sasl === undefined ? {} : { sasl: saslConfig(sasl) }),
      ...(tls === undefined
        ? {}
        : {
            ssl:
              tls.caFile === undefined
                ? true
                : { ca: [readFileSync(tls.caFile, "utf8")], servername: "localhost" },
          }),
    };
    // The probe does not retry, so an absent broker is reported within the connect timeout.
    const probe = new kafkajs.Kafka({ ...config, retry: { retries: 0 } }).admin();
    try {
      await withTimeout(probe.connect(), connectTimeoutMs * 2, "Kafka connect");
    } catch (error) {
      await probe.disconnect().catch(() => {});
      throw new DriverUnavailableError(
        `Kafka is not reachable at ${brokers.join(",")}: ${errorMessage(error)}`,
        KAFKA_HINT,
      );
    }
    await probe.disconnect();
    this.#kafka = new kafkajs.Kafka(config);
    this.#admin = this.#kafka.admin();
    await this.#admin.connect();
  }

  settings(): DriverSettings {
    const options = this.#options;
    return {
      brokers: options.brokers.join(","),
      security: describeSecurity(options),
      replicationFactor: options.replicationFactor,
      acks: -1,
      idempotent: true,
      maxInFlightRequests: 1,
      batching: `requests of up to ${options.batchMax} messages, one in flight per producer`,
      partitioning: "driver-chosen: round-robin when keyless, hash of the key otherwise",
      consumer: "kafkajs consumer group per subscription, from the beginning, autoCommit",
      clientLibrary: `kafkajs ${packageVersion("kafkajs")}`,
      connections: "kafkajs connections per producer and per consumer, in the load workers",
      delivery: "at-least-once",
      tested: "not against a real broker",
    };
  }

  durability(): string {
    return (
      "Kafka acks=-1: acknowledged once every in-sync replica has the batch in its log " +
      "(page cache; no fsync per message by default), idempotent producer"
    );
  }

  async createTopic(topic: string, partitions: number): Promise<void> {
    if (this.#topics.has(topic)) throw new RangeError(`Topic ${topic} exists already`);
    const name = `sluice-${safeName(topic)}`;
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new RangeError(`Partition count ${partitions} is not a positive integer`);
    }
    const replicationFactor = this.#options.replicationFactor;
    await this.#adminClient().createTopics({
      topics: [{ topic: name, numPartitions: partitions, replicationFactor }],
      waitForLeaders: true,
    });
    this.#topics.set(topic, { name, partitions, groups: new Set(), owned: true });
  }

  async attachTopic(topic: string, partitions: number): Promise<void> {
    const name = `sluice-${safeName(topic)}`;
    this.#topics.set(topic, { name, partitions, groups: new Set(), owned: false });
  }

  async createSubscription(topic: string, subscription: string): Promise<void> {
    // The group is made by its first consumer; remember it here so deleteTopic removes it.
    this.#topic(topic).groups.add(`sluice-${safeName(topic)}-${safeName(subscription)}`);
  }

  brokerProcess(): BrokerProcess | undefined {
    const first = this.#options.brokers[0];
    if (first === undefined) return undefined;
    const at = first.lastIndexOf(":");
    const host = first.slice(0, at);
    const port = Number(first.slice(at + 1));
    return { kind: "address", host, port, what: "Kafka broker (the first bootstrap broker)" };
  }

  async createProducer(topic: string): Promise<BenchProducer> {
    const state = this.#topic(topic);
    const producer = this.#client().producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
    });
    await producer.connect();
    this.#producers.add(producer);
    const batcher = new ProduceBatcher(producer, state, this.#options.batchMax);
    const picker = new PartitionPicker(state.partitions, this.#producers.size);
    return {
      sendAsync: (key, payload) => batcher.send(picker.pick(key), key, payload),
      close: async () => {
        await batcher.drained();
        if (this.#producers.delete(producer)) await producer.disconnect();
      },
    };
  }

  async createConsumer(
    topic: string,
    subscription: string,
    onMessage: MessageCallback,
  ): Promise<BenchConsumer> {
    const state = this.#topic(topic);
    const groupId = `sluice-${safeName(topic)}-${safeName(subscription)}`;
    const consumer = this.#client().consumer({ groupId });
    state.groups.add(groupId);
    await consumer.connect();
    this.#consumers.add(consumer);
    const joined = new Promise<void>((resolve) => {
      const remove = consumer.on(consumer.events.GROUP_JOIN, () => {
        remove();
        resolve();
      });
    });
    await consumer.subscribe({ topic: state.name, fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) {
          if (message.value !== null) onMessage(message.value);
        }
      },
    });
    await withTimeout(joined, this.#options.joinTimeoutMs, `joining consumer group ${groupId}`);
    return {
      close: async () => {
        if (this.#consumers.delete(consumer)) await consumer.disconnect();
      },
    };
  }

  async deleteTopic(topic: string): Promise<void> {
    const state = this.#topics.get(topic);
    if (state === undefined) return;
    this.#topics.delete(topic);
    const admin = this.#adminClient();
    await admin.deleteTopics({ topics: [state.name] });
    if (state.groups.size > 0) await admin.deleteGroups([...state.groups]).catch(() => {});
  }

  async close(): Promise<void> {
    for (const consumer of this.#consumers) await consumer.disconnect().catch(() => {});
    this.#consumers.clear();
    for (const producer of this.#producers) await producer.disconnect().catch(() => {});
    this.#producers.clear();
    if (this.#admin !== null) {
      for (const [topic, state] of [...this.#topics]) {
        if (state.owned) await this.deleteTopic(topic);
      }
      await this.#admin.disconnect();
    }
    this.#admin = null;
    this.#kafka = null;
  }

  #client(): Kafka {
    if (this.#kafka === null) throw new Error("kafka driver: initialize() first");
    return this.#kafka;
  }

  #adminClient(): Admin {
    if (this.#admin === null) throw new Error("kafka driver: initialize() first");
    return this.#admin;
  }

  #topic(topic: string): TopicState {
    const state = this.#topics.get(topic);
    if (state === undefined) throw new RangeError(`Topic ${topic} was not created`);
    return state;
  }
}

type PendingSend = {
  partition: number;
  key: Buffer | null;
  value: Buffer;
  resolve: () => void;
  reject: (error: unknown) => void;
};

/**
 * Keeps one produce request in flight per producer and sends everything that queued up behind
 * it as the next request. Payloads are copied on entry: kafkajs encodes them later, and the
 * caller may reuse its buffer once sendAsync returned.
 */
class ProduceBatcher {
  readonly #producer: Producer;
  readonly #topic: string;
  readonly #batchMax: number;
  readonly #queue: PendingSend[] = [];
  #busy = false;
  #idle: Array<() => void> = [];

  constructor(producer: Producer, state: TopicState, batchMax: number) {
    this.#producer = producer;
    this.#topic = state.name;
    this.#batchMax = batchMax;
  }

  send(partition: number, key: Uint8Array | null, payload: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const keyCopy = key === null ? null : Buffer.from(key);
      this.#queue.push({ partition, key: keyCopy, value: Buffer.from(payload), resolve, reject });
      if (!this.#busy) {
        this.#busy = true;
        // Let the rest of this event-loop turn's sends join the first request.
        setImmediate(() => void this.#pump());
      }
    });
  }

  /** Resolves once nothing is queued or in flight. */
  drained(): Promise<void> {
    if (!this.#busy) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async #pump(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#batchMax);
      try {
        await this.#producer.send({
          topic: this.#topic,
          acks: -1,
          messages: batch.map(({ partition, key, value }) => ({ partition, key, value })),
        });
        for (const pending of batch) pending.resolve();
      } catch (error) {
        for (const pending of batch) pending.reject(error);
      }
    }
    this.#busy = false;
    for (const resolve of this.#idle.splice(0)) resolve();
  }
}

/** A Kafka driver (kafkajs); see the file header: untested against a real broker. */
export function createKafkaDriver(options: DriverOptions = {}): Driver {
  return new KafkaDriver(kafkaOptions(options));
}

export const createDriver: DriverFactory = (config: DriverConfig) =>
  createKafkaDriver(config.options);

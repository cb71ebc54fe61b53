// The NATS JetStream driver (@nats-io/transport-node + @nats-io/jetstream, the nats.js v3
// modules that succeed the `nats` v2 package; the node transport states Bun support and runs
// under Deno's Node compatibility too).
//
// Layout, for a topic T with N partitions and a subscription S:
//
//   producer --js.publish("sluice.T.<p>")--> stream sluice_T (subjects sluice.T.*, file storage,
//                                              limits retention, 1 replica)
//                                              `--> durable pull consumer S (AckExplicit)
//                                                     `--> each consumer of S pulls from it
//
// - One stream per topic; partitions are the subjects `sluice.T.0` .. `sluice.T.N-1` (JetStream
//   keeps one sequence per stream, so partitions do not add parallelism on the server; they keep
//   the same key-to-partition choice as the other drivers).
// - `sendAsync` is `js.publish` and resolves on the PubAck, which the server sends after the
//   message is stored in the stream.
// - A subscription is one durable pull consumer (deliver policy `new`: it sees every message
//   published after it was created); every consumer of the subscription pulls from it, so they
//   share its messages. Pull with `consume()` in callback mode (the fast path of nats.js: no
//   async iterator), `max-messages` (1000) buffered per pull, `max_ack_pending` 10x that.
//   Each message is acknowledged with its own ack (explicit policy: `AckAll` would acknowledge
//   messages another consumer of the subscription still holds). The callback runs before the
//   ack: at-least-once.
//
// Durability (sources: docs.nats.io, JetStream "Syncing data to disk" and the server config
// reference for `sync_interval`; nats-server server/filestore.go, `defaultSyncInterval =
// 2 * time.Minute`): "under the default configuration, JetStream does not immediately fsync
// data to disk. The server uses a configurable sync_interval option, with a default value of 2
// minutes"; a non-replicated server may lose acknowledged messages on an OS failure. The
// `sync_interval` option (and `always`) exist from nats-server 2.10; Debian bookworm's 2.9.10
// rejects it ("unknown field") and always uses the 2-minute default.

import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
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
  peerPort,
  PartitionPicker,
  PEERS_HINT,
  safeName,
  urlAddress,
} from "./peers/common.ts";

export const NATS_STORAGE_TYPES = ["file", "memory"] as const;

export type NatsOptions = {
  /** `nats://host:port`; option `url`, env SLUICE_NATS_URL, else 127.0.0.1:SLUICE_NATS_PORT. */
  url: string;
  storage: (typeof NATS_STORAGE_TYPES)[number];
  /** Messages requested per pull (consume `max_messages`). */
  maxMessages: number;
  connectTimeoutMs: number;
  /** How long a publish or JetStream API call may wait for its answer. */
  requestTimeoutMs: number;
};

/** Reads the driver options (`url`, `storage`, `max-messages`, timeouts). */
export function natsOptions(options: DriverOptions = {}): NatsOptions {
  return {
    url: optionString(
      options,
      "url",
      `nats://127.0.0.1:${peerPort("SLUICE_NATS_PORT", 4222)}`,
      "SLUICE_NATS_URL",
    ),
    storage: optionChoice(options, "storage", NATS_STORAGE_TYPES, "file"),
    maxMessages: optionInt(options, "max-messages", 1000, { min: 1, max: 100_000 }),
    connectTimeoutMs: optionInt(options, "connect-timeout-ms", CONNECT_TIMEOUT_MS_DEFAULT, {
      min: 1,
      max: 60_000,
    }),
    requestTimeoutMs: optionInt(options, "request-timeout-ms", 30_000, {
      min: 100,
      max: 600_000,
    }),
  };
}

/** `owned`: created here and deleted by close(); false when attached to in a worker. */
type TopicState = { stream: string; subjects: string[]; owned: boolean };

class NatsDriver implements Driver {
  readonly name = "nats";
  readonly #options: NatsOptions;
  readonly #topics = new Map<string, TopicState>();
  /** Producer and consumer connections, closed by close(). */
  readonly #connections = new Set<NatsConnection>();
  #admin: NatsConnection | null = null;
  #manager: JetStreamManager | null = null;
  #serverVersion = "unknown";

  constructor(options: NatsOptions) {
    this.#options = options;
  }

  async initialize(): Promise<void> {
    const connection = await this.#connect();
    this.#connections.delete(connection);
    this.#admin = connection;
    this.#serverVersion = connection.info?.version ?? "unknown";
    try {
      this.#manager = await jetstreamManager(connection, {
        timeout: this.#options.requestTimeoutMs,
      });
    } catch (error) {
      await connection.close().catch(() => {});
      this.#admin = null;
      throw new DriverUnavailableError(
        `NATS at ${this.#options.url} has no JetStream: ${errorMessage(error)}`,
        `start nats-server with JetStream (-js), e.g. ${PEERS_HINT}`,
      );
    }
  }

  settings(): DriverSettings {
    const options = this.#options;
    return {
      url: options.url,
      serverVersion: this.#serverVersion,
      layout: "stream per topic, subject per partition (sluice.<topic>.<p>)",
      storage: options.storage,
      retention: "limits",
      replicas: 1,
      publish: "js.publish, sendAsync resolves on the PubAck",
      consumer: "durable pull consumer per subscription, consume() callback, deliver new",
      maxMessages: options.maxMessages,
      maxAckPending: options.maxMessages * 10,
      acks: "explicit, one ack per message",
      clientLibrary:
        `@nats-io/transport-node ${packageVersion("@nats-io/transport-node")}, ` +
        `@nats-io/jetstream ${packageVersion("@nats-io/jetstream")}`,
      batching: "none: one js.publish (request and PubAck) per message, many in flight",
      connections: "one per producer and per consumer, made in the load workers",
      delivery: "at-least-once",
    };
  }

  durability(): string {
    if (this.#options.storage === "memory") {
      return (
        `nats-server ${this.#serverVersion} JetStream memory storage: PubAck after the ` +
        "message is in memory; a server restart loses it"
      );
    }
    return (
      `nats-server ${this.#serverVersion} JetStream file storage: PubAck after the message ` +
      "is stored, not fsynced; the server fsyncs every sync_interval (2 min by default), so " +
      "an OS crash can lose acknowledged messages"
    );
  }

  async createTopic(topic: string, partitions: number): Promise<void> {
    if (this.#topics.has(topic)) throw new RangeError(`Topic ${topic} exists already`);
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new RangeError(`Partition count ${partitions} is not a positive integer`);
    }
    const { stream, subjects } = topicNames(topic, partitions);
    const name = safeName(topic);
    await this.#jsm().streams.add({
      name: stream,
      subjects: [`sluice.${name}.*`],
      storage: this.#options.storage === "file" ? StorageType.File : StorageType.Memory,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: 1,
    });
    this.#topics.set(topic, { stream, subjects, owned: true });
  }

  async attachTopic(topic: string, partitions: number): Promise<void> {
    this.#topics.set(topic, { ...topicNames(topic, partitions), owned: false });
  }

  brokerProcess(): BrokerProcess {
    const { host, port } = urlAddress(this.#options.url, 4222);
    return { kind: "address", host, port, what: `nats-server ${this.#serverVersion}` };
  }

  async createProducer(topic: string): Promise<BenchProducer> {
    const { subjects } = this.#topic(topic);
    const connection = await this.#connect();
    const js: JetStreamClient = jetstream(connection, { timeout: this.#options.requestTimeoutMs });
    const picker = new PartitionPicker(subjects.length, this.#connections.size);
    return {
      async sendAsync(key, payload) {
        await js.publish(subjects[picker.pick(key)]!, payload);
      },
      close: () => this.#closeConnection(connection),
    };
  }

  async createConsumer(
    topic: string,
    subscription: string,
    onMessage: MessageCallback,
  ): Promise<BenchConsumer> {
    const { stream } = this.#topic(topic);
    const durable = safeName(subscription);
    const maxMessages = this.#options.maxMessages;
    // Adding a durable consumer with the same configuration again returns the existing one,
    // so every consumer of a subscription may call this.
    await this.#jsm().consumers.add(stream, {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      max_ack_pending: maxMessages * 10,
    });
    const connection = await this.#connect();
    const js = jetstream(connection, { timeout: this.#options.requestTimeoutMs });
    const consumer = await js.consumers.get(stream, durable);
    const messages = await consumer.consume({
      max_messages: maxMessages,
      callback: (message) => {
        onMessage(message.data);
        message.ack();
      },
    });
    return {
      close: async () => {
        await messages.close();
        await this.#closeConnection(connection);
      },
    };
  }

  async deleteTopic(topic: string): Promise<void> {
    const state = this.#topics.get(topic);
    if (state === undefined) return;
    this.#topics.delete(topic);
    // Deleting the stream deletes its consumers.
    await this.#jsm().streams.delete(state.stream);
  }

  async close(): Promise<void> {
    for (const connection of [...this.#connections]) await this.#closeConnection(connection);
    if (this.#manager !== null) {
      for (const [topic, state] of [...this.#topics]) {
        if (state.owned) await this.deleteTopic(topic);
      }
    }
    const admin = this.#admin;
    this.#admin = null;
    this.#manager = null;
    await admin?.close().catch(() => {});
  }

  async #connect(): Promise<NatsConnection> {
    const { url, connectTimeoutMs } = this.#options;
    let connection: NatsConnection;
    try {
      connection = await connect({
        servers: url,
        timeout: connectTimeoutMs,
        reconnect: false,
        name: "sluice-bench",
      });
    } catch (error) {
      throw new DriverUnavailableError(
        `NATS is not reachable at ${url}: ${errorMessage(error)}`,
        `${PEERS_HINT} (or pass --driver-options nats.url=nats://host:4222)`,
      );
    }
    this.#connections.add(connection);
    return connection;
  }

  async #closeConnection(connection: NatsConnection): Promise<void> {
    if (!this.#connections.delete(connection)) return;
    // drain() lets acks and publishes already written reach the server before closing.
    await connection.drain().catch(() => connection.close().catch(() => {}));
  }

  #jsm(): JetStreamManager {
    if (this.#manager === null) throw new Error("nats driver: initialize() first");
    return this.#manager;
  }

  #topic(topic: string): TopicState {
    const state = this.#topics.get(topic);
    if (state === undefined) throw new RangeError(`Topic ${topic} was not created`);
    return state;
  }
}

/** The stream and partition subjects of a topic. */
function topicNames(topic: string, partitions: number): { stream: string; subjects: string[] } {
  const name = safeName(topic);
  const subjects = Array.from({ length: partitions }, (_, index) => `sluice.${name}.${index}`);
  return { stream: `sluice_${name}`, subjects };
}

/** A NATS JetStream driver; see the file header for the layout, acks and durability. */
export function createNatsDriver(options: DriverOptions = {}): Driver {
  return new NatsDriver(natsOptions(options));
}

export const createDriver: DriverFactory = (config: DriverConfig) =>
  createNatsDriver(config.options);

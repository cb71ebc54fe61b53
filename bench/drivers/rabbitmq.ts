// The RabbitMQ driver (AMQP 0-9-1 through amqplib; runs under Bun, Deno and Node).
//
// Layout, for a topic T with N partitions and a subscription S:
//
//   producer --publish(routing key "p")--> exchange sluice.T (direct, durable)
//                                            |-- "0" --> queue sluice.T.S.0 --> consumers of S
//                                            |-- ...
//                                            `-- "N-1" -> queue sluice.T.S.N-1
//
// - One durable queue per (subscription, partition). A queue is one Erlang process and so uses
//   at most one core; partitions spread a topic over several queues, as Kafka partitions do,
//   and keep per-partition order. Each subscription gets its own queues (a subscription sees
//   every message); consumers of one subscription compete for its queues' messages.
// - Queue type `classic` (default), `quorum` or `stream` (option `queue-type`). Streams are
//   non-destructive logs: there is one stream per partition, shared by every subscription, each
//   subscription reads it from the start, and a subscription can have only one consumer.
// - Producers: one connection and one confirm channel each; messages are persistent
//   (deliveryMode 2) and `sendAsync` resolves on the broker's confirm (basic.ack) for it.
// - Consumers: one connection and channel each, manual acks, per-consumer prefetch (option
//   `prefetch`, 1000). Acks are batched: one `basic.ack` with `multiple` covers every delivery
//   handled so far, sent when `ack-every` (prefetch / 4) deliveries are pending or at the end of
//   the event-loop turn that delivered them. Every callback runs before its ack: at-least-once.
// - With the workload's `ackMode: per-message`: one durable queue per subscription (bound to
//   every partition's routing key), which the subscription's consumers compete for, as a
//   RabbitMQ work queue; each delivery is answered on its own: accept = one `basic.ack` without
//   `multiple`, release = `basic.nack` with requeue. AMQP 0-9-1 does not confirm acks, so the
//   ack latency is not measured (null) and an accept counts once it is written to the channel.
//   Streams have no per-message acks and are refused in this mode.
// - Delays (the workload's deliveryDelayMsMax, per-message mode only). Debian's
//   rabbitmq-server (3.10) does not ship the rabbitmq_delayed_message_exchange plugin
//   (`rabbitmq-plugins list` has no such entry), so the driver uses RabbitMQ's documented
//   pattern without it, option `delay`:
//
//     producer --(key "p", expiration = delay)--> exchange sluice.T.delay (direct, durable)
//                 `-- "p" --> queue sluice.T.delay.p (durable; x-dead-letter-exchange sluice.T,
//                             x-dead-letter-routing-key "p") --expired--> sluice.T --> S's queue
//
//   `ttl-dlx` (default): one delay queue per partition; each message carries its delay as its
//   per-message TTL (`expiration`). RabbitMQ expires a message only at the head of its queue
//   (docs "Time-to-Live and Expiration", https://www.rabbitmq.com/docs/ttl, its caveats: "Only
//   when expired messages reach the head of a queue will they actually be discarded (or
//   dead-lettered)"), so a message waits behind a longer delay published before it
//   (head-of-line blocking): the lateness figures show it. Dead-lettering drops the
//   `expiration` property, so a message does not expire again in the work queue.
//   `buckets`: `delay-queues` (N, default 10) queues per partition with a queue-wide
//   `x-message-ttl` of max·(i+1)/N ms each; a message goes to the first bucket whose TTL is at
//   least its delay (rounded up, so late by up to max/N), and as every message of a bucket has
//   the same TTL, its queue expires them in order: the usual workaround. A delay of 0 is
//   published to sluice.T directly. Publishes are persistent and confirmed once the delay
//   queue has them; the move to the work queue on expiry is RabbitMQ's dead-lettering, which
//   classic queues do without confirms (at most once).
//
// Durability (sources: RabbitMQ docs "Consumer Acknowledgements and Publisher Confirms",
// https://www.rabbitmq.com/docs/confirms#publisher-confirms-latency; RabbitMQ blog
// "How Are The Messages Stored? Not in Memory!", 2025-01-17):
// - confirms docs: "basic.ack for a persistent message routed to a durable queue will be sent
//   after persisting the message to disk. The RabbitMQ message store persists messages to disk
//   in batches after an interval (a few hundred milliseconds) to minimise the number of
//   fsync(2) calls, or when a queue is idle."
// - the 2025 blog, on current classic queues: the confirm is sent when the message "is written
//   to disk" or when it "is delivered and acknowledged by a consumer (if that happens before
//   it's written to disk)", and "fsync is not performed before publisher confirms are sent";
//   quorum queues confirm once the message is "written to disk and fsynced by the quorum of
//   nodes"; "Streams do not perform fsync". The blog describes RabbitMQ 4.x; RabbitMQ before
//   3.13 (Debian bookworm ships 3.10) used the older message store the confirms guide
//   describes, so durability() names the server version it saw.
//
// TLS (option `tls=true`): every connection is AMQPS, by default to the TLS listener that
// `scripts/peers.sh start rabbitmq` opens on 127.0.0.1:SLUICE_RABBITMQ_TLS_PORT (5671), trusting
// the throwaway CA it wrote to $SLUICE_PEERS_DIR/rabbitmq/tls/ca.pem (option `tls-ca-file`
// for another; `url=amqps://...` for another broker). Without that CA the driver is
// unavailable, saying how to get it.

import amqplib from "amqplib";
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from "amqplib";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setImmediate } from "node:timers";
import type {
  AckingHandlers,
  AckMode,
  BenchConsumer,
  BenchProducer,
  BrokerProcess,
  Driver,
  DriverConfig,
  DriverFactory,
  DriverSettings,
  MessageCallback,
  SubscriptionCounts,
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
  bufferView,
  urlAddress,
  withTimeout,
} from "./peers/common.ts";

export const RABBITMQ_QUEUE_TYPES = ["classic", "quorum", "stream"] as const;
export type RabbitMqQueueType = (typeof RABBITMQ_QUEUE_TYPES)[number];

/** How delayed messages wait (see the file header); the delayed-message plugin is not here. */
export const RABBITMQ_DELAY_PATHS = ["ttl-dlx", "buckets"] as const;
export type RabbitMqDelayPath = (typeof RABBITMQ_DELAY_PATHS)[number];

/** RabbitMQ's largest message TTL, ms (2^32 − 1, about 49.7 days). */
export const RABBITMQ_TTL_MS_MAX = 4_294_967_295;
export const DELAY_QUEUES_DEFAULT = 10;
export const DELAY_QUEUES_MAX = 100;

export type RabbitMqOptions = {
  /**
   * `amqp://user:pass@host:port/vhost`; option `url`, env SLUICE_RABBITMQ_URL, else guest on
   * 127.0.0.1:SLUICE_RABBITMQ_PORT (5672).
   */
  url: string;
  queueType: RabbitMqQueueType;
  /** Unacknowledged deliveries a consumer may hold (basic.qos, per consumer). */
  prefetch: number;
  /** Pending deliveries that force a (multiple) ack before the event-loop turn ends. */
  ackEvery: number;
  connectTimeoutMs: number;
  /** The workload's ackMode: per-message uses one queue per subscription, one ack per message. */
  perMessage: boolean;
  /**
   * The workload's priorityLevels (0: none): per-message queues are declared with
   * `x-max-priority` of that many levels and a message's priority is its partition.
   */
  priorityLevels: number;
  /** AMQPS, trusting this PEM CA file (undefined: plaintext AMQP). */
  tlsCaFile: string | undefined;
  /** The workload's deliveryDelayMsMax (0: no delays, no delay queues). */
  deliveryDelayMsMax: number;
  delayPath: RabbitMqDelayPath;
  /** `buckets`: delay queues per partition (1 for `ttl-dlx`). */
  delayQueues: number;
};

/** Where `scripts/peers.sh start rabbitmq` writes its throwaway CA. */
function peersCaFile(): string {
  return join(process.env["SLUICE_PEERS_DIR"] ?? "/tmp/sluice-peers", "rabbitmq", "tls", "ca.pem");
}

const PREFETCH_MAX = 65_535;

/** The delay options (`delay`, `delay-queues`) for a workload's deliveryDelayMsMax. */
function delayOptions(
  options: DriverOptions,
  deliveryDelayMsMax: number,
): Pick<RabbitMqOptions, "deliveryDelayMsMax" | "delayPath" | "delayQueues"> {
  if (!Number.isSafeInteger(deliveryDelayMsMax) || deliveryDelayMsMax < 0) {
    throw new RangeError(`deliveryDelayMsMax ${deliveryDelayMsMax} is not a whole number ≥ 0`);
  }
  if (deliveryDelayMsMax > RABBITMQ_TTL_MS_MAX) {
    throw new RangeError(
      `deliveryDelayMsMax ${deliveryDelayMsMax} exceeds RabbitMQ's largest message TTL, ` +
        `${RABBITMQ_TTL_MS_MAX} ms`,
    );
  }
  const delayPath = optionChoice(options, "delay", RABBITMQ_DELAY_PATHS, "ttl-dlx");
  if (delayPath === "ttl-dlx" && (options["delay-queues"] ?? "") !== "") {
    throw new RangeError(
      `rabbitmq option delay-queues=${options["delay-queues"]} needs delay=buckets`,
    );
  }
  const delayQueues =
    delayPath === "buckets"
      ? optionInt(options, "delay-queues", DELAY_QUEUES_DEFAULT, { min: 1, max: DELAY_QUEUES_MAX })
      : 1;
  return { deliveryDelayMsMax, delayPath, delayQueues };
}

/**
 * Reads the options `url`, `tls`, `tls-ca-file`, `queue-type`, `prefetch`, `ack-every`,
 * `connect-timeout-ms`, `delay` and `delay-queues`.
 */
export function rabbitMqOptions(
  options: DriverOptions = {},
  ackMode: AckMode = "stream",
  priorityLevels = 0,
  deliveryDelayMsMax = 0,
): RabbitMqOptions {
  const prefetch = optionInt(options, "prefetch", 1000, { min: 1, max: PREFETCH_MAX });
  const tls = optionChoice(options, "tls", ["true", "false"], "false") === "true";
  const local = tls
    ? `amqps://guest:guest@127.0.0.1:${peerPort("SLUICE_RABBITMQ_TLS_PORT", 5671)}`
    : `amqp://guest:guest@127.0.0.1:${peerPort("SLUICE_RABBITMQ_PORT", 5672)}`;
  const url = optionString(options, "url", local, "SLUICE_RABBITMQ_URL");
  if (tls !== url.startsWith("amqps://")) {
    throw new RangeError(`rabbitmq option tls=${tls} does not match url ${redactUrl(url)}`);
  }
  return {
    url,
    tlsCaFile: tls ? optionString(options, "tls-ca-file", peersCaFile()) : undefined,
    queueType: optionChoice(options, "queue-type", RABBITMQ_QUEUE_TYPES, "classic"),
    prefetch,
    ackEvery: optionInt(options, "ack-every", Math.max(1, Math.floor(prefetch / 4)), {
      min: 1,
      max: prefetch,
    }),
    connectTimeoutMs: optionInt(options, "connect-timeout-ms", CONNECT_TIMEOUT_MS_DEFAULT, {
      min: 1,
      max: 60_000,
    }),
    perMessage: ackMode === "per-message",
    priorityLevels,
    ...delayOptions(options, deliveryDelayMsMax),
  };
}

type TopicState = {
  partitions: number;
  exchange: string;
  /** Every queue declared for this topic, deleted with it. */
  queues: Set<string>;
  /** Consumers per subscription (streams allow one). */
  consumers: Map<string, number>;
  /** Subscriptions whose queues this instance declared. */
  declared: Set<string>;
  /** Created here (deleted by close()), or attached to in a worker (left alone). */
  owned: boolean;
  /** With delays: the exchange delayed messages are published to (sluice.T.delay). */
  delayExchange: string | null;
};

/**
 * `buckets`: the queue-wide TTL of each of `count` delay queues, rising to `maxMs`; a delay
 * goes to the first bucket whose TTL is at least it.
 */
export function bucketTtlsMs(maxMs: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => Math.ceil((maxMs * (i + 1)) / count));
}

/** The delay-queue routing key (and queue suffix) of partition `partition`, bucket `bucket`. */
function delayKey(partition: number, bucket: number, buckets: number): string {
  return buckets === 1 ? String(partition) : `${partition}.${bucket}`;
}

/** The URL with its password replaced, for settings and error messages. */
function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]*)@/, "//$1:***@");
}

class RabbitMqDriver implements Driver {
  readonly name = "rabbitmq";
  readonly #options: RabbitMqOptions;
  readonly #topics = new Map<string, TopicState>();
  /** Producer and consumer connections, closed by close(). */
  readonly #connections = new Set<ChannelModel>();
  #adminConnection: ChannelModel | null = null;
  #admin: Channel | null = null;
  #serverVersion = "unknown";

  constructor(options: RabbitMqOptions) {
    this.#options = options;
  }

  async initialize(): Promise<void> {
    if (this.#options.perMessage && this.#options.queueType === "stream") {
      throw new RangeError(
        "rabbitmq option queue-type=stream cannot run ackMode per-message: streams have no " +
          "per-message acks (use queue-type=classic or quorum)",
      );
    }
    const connection = await this.#connect();
    this.#connections.delete(connection);
    this.#adminConnection = connection;
    this.#serverVersion = String(connection.connection.serverProperties.version ?? "unknown");
    this.#admin = await connection.createChannel();
    this.#admin.on("error", () => {});
  }

  settings(): DriverSettings {
    const options = this.#options;
    const stream = options.queueType === "stream";
    return {
      url: redactUrl(options.url),
      tls: options.tlsCaFile === undefined ? "off" : `on, trusting ${options.tlsCaFile}`,
      serverVersion: this.#serverVersion,
      queueType: options.queueType,
      layout: stream
        ? "direct exchange per topic, one stream per partition read by every subscription"
        : options.perMessage
          ? "direct exchange per topic, one durable queue per subscription (every partition's key)"
          : "direct exchange per topic, one durable queue per (subscription, partition)",
      deliveryMode: 2,
      maxPriority:
        options.perMessage && options.priorityLevels > 0 ? options.priorityLevels : "none",
      publisherConfirms: "confirm channel per producer; sendAsync resolves on its basic.ack",
      prefetch: options.prefetch,
      acks: options.perMessage
        ? "manual, one basic.ack per message (no multiple); release = basic.nack requeue"
        : `manual, multiple=true every ${options.ackEvery} deliveries or event-loop turn`,
      clientLibrary: `amqplib ${packageVersion("amqplib")}`,
      batching: "none: one basic.publish per message; confirms arrive as the broker sends them",
      connections: "one per producer and per consumer, made in the load workers",
      delivery: "at-least-once",
      ...this.#delaySettings(),
    };
  }

  /** The settings of a delayed run (delayPath is what the lateness table prints). */
  #delaySettings(): DriverSettings {
    const { perMessage, deliveryDelayMsMax, delayPath, delayQueues } = this.#options;
    if (!perMessage || deliveryDelayMsMax === 0) return {};
    const plugin = "no delayed-message plugin (Debian's rabbitmq-server does not ship it)";
    if (delayPath === "ttl-dlx") {
      return {
        delayPath:
          `ttl-dlx: per-message TTL on a durable delay queue per partition, dead-lettered to ` +
          `the work queue on expiry, which happens only at a queue's head; ${plugin}`,
      };
    }
    const ttls = bucketTtlsMs(deliveryDelayMsMax, delayQueues);
    return {
      delayPath:
        `buckets: ${delayQueues} delay queues per partition with x-message-ttl ` +
        `${ttls[0]}..${ttls[ttls.length - 1]} ms, a delay rounded up to its bucket, ` +
        `dead-lettered to the work queue; ${plugin}`,
    };
  }

  durability(): string {
    const { perMessage, deliveryDelayMsMax } = this.#options;
    if (!perMessage || deliveryDelayMsMax === 0) return this.#queueDurability();
    return (
      `${this.#queueDurability()}; a delayed message is confirmed once in its delay queue, ` +
      "and moved to the work queue at expiry by dead-lettering, which classic queues do " +
      "without confirms (at most once)"
    );
  }

  #queueDurability(): string {
    const version = this.#serverVersion;
    switch (this.#options.queueType) {
      case "quorum":
        return (
          `RabbitMQ ${version} quorum queue: confirmed after the message is written and ` +
          "fsynced on a quorum of replicas (this node alone when single-node)"
        );
      case "stream":
        return (
          `RabbitMQ ${version} stream: confirmed after the message is written to the ` +
          "stream log on a quorum of replicas; streams do not fsync (page cache only)"
        );
      default:
        return olderThan313(version)
          ? `RabbitMQ ${version} classic durable queue, persistent messages: confirmed once ` +
              "written to disk, the message store fsyncing in batches every few hundred ms, " +
              "or once consumed and acked first"
          : `RabbitMQ ${version} classic durable queue, persistent messages: confirmed once ` +
              "written to disk (no fsync before the confirm) or once consumed and acked first";
    }
  }

  async createTopic(topic: string, partitions: number): Promise<void> {
    const admin = this.#adminChannel();
    if (this.#topics.has(topic)) throw new RangeError(`Topic ${topic} exists already`);
    const exchange = `sluice.${safeName(topic)}`;
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new RangeError(`Partition count ${partitions} is not a positive integer`);
    }
    const state = this.#topicState(partitions, exchange, true);
    await admin.assertExchange(exchange, "direct", { durable: true, autoDelete: false });
    this.#topics.set(topic, state);
    await this.#declareDelayQueues(state);
    if (this.#options.queueType === "stream") {
      for (let partition = 0; partition < partitions; partition++) {
        await this.#declareQueue(state, `${exchange}.${partition}`, partition);
      }
    }
  }

  #topicState(partitions: number, exchange: string, owned: boolean): TopicState {
    const delayed = this.#options.perMessage && this.#options.deliveryDelayMsMax > 0;
    return {
      partitions,
      exchange,
      queues: new Set(),
      consumers: new Map(),
      declared: new Set(),
      owned,
      delayExchange: delayed ? `${exchange}.delay` : null,
    };
  }

  /** The delay exchange and its queues (see the file header), on the coordinator. */
  async #declareDelayQueues(state: TopicState): Promise<void> {
    const delayExchange = state.delayExchange;
    if (delayExchange === null) return;
    const admin = this.#adminChannel();
    const { queueType, delayQueues, deliveryDelayMsMax } = this.#options;
    await admin.assertExchange(delayExchange, "direct", { durable: true, autoDelete: false });
    const ttls = bucketTtlsMs(deliveryDelayMsMax, delayQueues);
    for (let partition = 0; partition < state.partitions; partition++) {
      for (let bucket = 0; bucket < delayQueues; bucket++) {
        const key = delayKey(partition, bucket, delayQueues);
        const queue = `${delayExchange}.${key}`;
        const bucketTtl = delayQueues === 1 ? {} : { "x-message-ttl": ttls[bucket]! };
        await admin.assertQueue(queue, {
          durable: true,
          autoDelete: false,
          arguments: {
            "x-queue-type": queueType,
            "x-dead-letter-exchange": state.exchange,
            "x-dead-letter-routing-key": String(partition),
            ...bucketTtl,
          },
        });
        state.queues.add(queue);
        await admin.bindQueue(queue, delayExchange, key);
      }
    }
  }

  async attachTopic(topic: string, partitions: number): Promise<void> {
    const exchange = `sluice.${safeName(topic)}`;
    this.#topics.set(topic, this.#topicState(partitions, exchange, false));
  }

  async createSubscription(topic: string, subscription: string): Promise<void> {
    const state = this.#topic(topic);
    if (this.#options.queueType === "stream") return;
    await this.#declareSubscription(state, subscription);
  }

  brokerProcess(): BrokerProcess {
    const { host, port } = urlAddress(
      this.#options.url,
      this.#options.tlsCaFile === undefined ? 5672 : 5671,
    );
    return { kind: "address", host, port, what: `RabbitMQ ${this.#serverVersion}` };
  }

  async createProducer(topic: string): Promise<BenchProducer> {
    const state = this.#topic(topic);
    const connection = await this.#connect();
    const channel: ConfirmChannel = await connection.createConfirmChannel();
    channel.on("error", () => {});
    const picker = new PartitionPicker(state.partitions, this.#connections.size);
    const routingKeys = Array.from({ length: state.partitions }, (_, index) => String(index));
    const exchange = state.exchange;
    // With priorities a message's priority is its partition, as for sluice's priority queues.
    const prioritized = this.#options.perMessage && this.#options.priorityLevels > 0;
    const properties = Array.from({ length: state.partitions }, (_, partition) =>
      prioritized ? { persistent: true, priority: partition } : { persistent: true },
    );
    const delays = new DelayRouter(state, this.#options);
    return {
      sendAsync(key, payload, delayMs = 0) {
        const partition = picker.pick(key);
        const content = bufferView(payload);
        const base = properties[partition]!;
        // Checked before anything is published: a bad delay throws, and nothing is sent.
        const delayed = delayMs > 0 ? delays.route(partition, delayMs, base) : null;
        return new Promise<void>((resolve, reject) => {
          const confirm = (error: unknown) => {
            if (error === null || error === undefined) resolve();
            else reject(error instanceof Error ? error : new Error(String(error)));
          };
          if (delayed === null) {
            channel.publish(exchange, routingKeys[partition]!, content, base, confirm);
          } else {
            channel.publish(delayed.exchange, delayed.key, content, delayed.properties, confirm);
          }
        });
      },
      close: () => this.#closeConnection(connection),
    };
  }

  async createConsumer(
    topic: string,
    subscription: string,
    onMessage: MessageCallback,
  ): Promise<BenchConsumer> {
    const queues = await this.#subscriptionQueues(topic, subscription);
    const connection = await this.#connect();
    const channel = await connection.createChannel();
    channel.on("error", () => {});
    await channel.prefetch(this.#options.prefetch, false);
    const acker = new BatchedAcker(channel, this.#options.ackEvery);
    const handle = (message: ConsumeMessage | null) => {
      // null: the server cancelled the consumer (its queue was deleted).
      if (message === null) return;
      onMessage(message.content);
      acker.handled(message);
    };
    const consumeArguments =
      this.#options.queueType === "stream" ? { "x-stream-offset": "first" } : undefined;
    const tags: string[] = [];
    for (const queue of queues) {
      const reply = await channel.consume(queue, handle, {
        noAck: false,
        arguments: consumeArguments,
      });
      tags.push(reply.consumerTag);
    }
    return {
      close: async () => {
        for (const tag of tags) await channel.cancel(tag).catch(() => {});
        acker.flush();
        await this.#closeConnection(connection);
      },
    };
  }

  async createAckingConsumer(
    topic: string,
    subscription: string,
    handlers: AckingHandlers,
  ): Promise<BenchConsumer> {
    if (!this.#options.perMessage) {
      throw new Error("rabbitmq: acking consumers need the workload's ackMode per-message");
    }
    const [queue] = await this.#subscriptionQueues(topic, subscription);
    const connection = await this.#connect();
    const channel = await connection.createChannel();
    channel.on("error", () => {});
    await channel.prefetch(this.#options.prefetch, false);
    const handle = (message: ConsumeMessage | null) => {
      // null: the server cancelled the consumer (its queue was deleted).
      if (message === null) return;
      const { content } = message;
      if (handlers.onDelivery(content, message.fields.redelivered) === "release") {
        channel.nack(message, false, true);
        return;
      }
      try {
        channel.ack(message, false);
      } catch (error) {
        // The channel closed: its unacknowledged deliveries go back to the queue.
        handlers.onAnswerFailed(error);
        return;
      }
      handlers.onAccepted(content.length, null);
    };
    const { consumerTag } = await channel.consume(queue!, handle, { noAck: false });
    return {
      close: async () => {
        await channel.cancel(consumerTag).catch(() => {});
        await this.#closeConnection(connection);
      },
    };
  }

  /** Classic and quorum queues here have no dead-letter exchange: the count is not known. */
  async subscriptionCounts(): Promise<SubscriptionCounts> {
    return { deadLettered: null };
  }

  async deleteTopic(topic: string): Promise<void> {
    const state = this.#topics.get(topic);
    if (state === undefined) return;
    this.#topics.delete(topic);
    const admin = this.#adminChannel();
    for (const queue of state.queues) await admin.deleteQueue(queue);
    if (state.delayExchange !== null) await admin.deleteExchange(state.delayExchange);
    await admin.deleteExchange(state.exchange);
  }

  async close(): Promise<void> {
    for (const connection of [...this.#connections]) await this.#closeConnection(connection);
    if (this.#admin !== null) {
      for (const [topic, state] of [...this.#topics]) {
        if (state.owned) await this.deleteTopic(topic);
      }
    }
    const admin = this.#adminConnection;
    this.#admin = null;
    this.#adminConnection = null;
    await admin?.close().catch(() => {});
  }

  /** Declares (once) the queues a subscription reads and returns their names. */
  async #subscriptionQueues(topic: string, subscription: string): Promise<string[]> {
    const state = this.#topic(topic);
    const consumers = state.consumers.get(subscription) ?? 0;
    const names = this.#options.perMessage
      ? [`${state.exchange}.${safeName(subscription)}`]
      : Array.from({ length: state.partitions }, (_, partition) =>
          this.#options.queueType === "stream"
            ? `${state.exchange}.${partition}`
            : `${state.exchange}.${safeName(subscription)}.${partition}`,
        );
    if (this.#options.queueType === "stream" && consumers > 0) {
      throw new RangeError(
        `Subscription ${subscription} already has a consumer: RabbitMQ streams do not share ` +
          "messages between consumers (use queue-type=classic or quorum)",
      );
    }
    if (this.#options.queueType !== "stream") await this.#declareSubscription(state, subscription);
    state.consumers.set(subscription, consumers + 1);
    return names;
  }

  /** Declares a subscription's queue per partition, once per instance (declaring is idempotent). */
  async #declareSubscription(state: TopicState, subscription: string): Promise<void> {
    if (state.declared.has(subscription)) return;
    state.declared.add(subscription);
    if (this.#options.perMessage) {
      const name = `${state.exchange}.${safeName(subscription)}`;
      for (let partition = 0; partition < state.partitions; partition++) {
        await this.#declareQueue(state, name, partition);
      }
      return;
    }
    for (let partition = 0; partition < state.partitions; partition++) {
      const name = `${state.exchange}.${safeName(subscription)}.${partition}`;
      await this.#declareQueue(state, name, partition);
    }
  }

  async #declareQueue(state: TopicState, queue: string, partition: number): Promise<void> {
    const admin = this.#adminChannel();
    const { queueType, perMessage, priorityLevels } = this.#options;
    const priorities = perMessage && priorityLevels > 0 ? { "x-max-priority": priorityLevels } : {};
    await admin.assertQueue(queue, {
      durable: true,
      autoDelete: false,
      arguments: { "x-queue-type": queueType, ...priorities },
    });
    state.queues.add(queue);
    await admin.bindQueue(queue, state.exchange, String(partition));
  }

  /** The socket options: TLS trusting the CA file, when `tls=true`. */
  #socketOptions(): Record<string, unknown> {
    const { connectTimeoutMs, tlsCaFile } = this.#options;
    const base = { timeout: connectTimeoutMs, noDelay: true };
    if (tlsCaFile === undefined) return base;
    if (!existsSync(tlsCaFile)) {
      throw new DriverUnavailableError(
        `RabbitMQ over TLS needs the CA file ${tlsCaFile}, which does not exist`,
        "start RabbitMQ with `bash scripts/peers.sh start rabbitmq` (it makes a throwaway CA " +
          "with openssl; `bash scripts/install_openssl.sh`), or pass rabbitmq.tls-ca-file=FILE",
      );
    }
    const host = urlAddress(this.#options.url, 5671).host;
    // The peers' certificate names localhost and 127.0.0.1.
    const servername = host === "127.0.0.1" ? "localhost" : host;
    return { ...base, ca: [readFileSync(tlsCaFile)], servername };
  }

  async #connect(): Promise<ChannelModel> {
    const { url } = this.#options;
    const socketOptions = this.#socketOptions();
    let connection: ChannelModel;
    try {
      const connecting = amqplib.connect(url, socketOptions);
      connection = await withTimeout(connecting, this.#options.connectTimeoutMs, "AMQP connect");
    } catch (error) {
      throw new DriverUnavailableError(
        `RabbitMQ is not reachable at ${redactUrl(url)}: ${errorMessage(error)}`,
        `${PEERS_HINT} (or pass --driver-options rabbitmq.url=amqp://user:pass@host:5672)`,
      );
    }
    connection.on("error", () => {});
    connection.on("close", () => this.#connections.delete(connection));
    this.#connections.add(connection);
    return connection;
  }

  async #closeConnection(connection: ChannelModel): Promise<void> {
    if (!this.#connections.delete(connection)) return;
    await connection.close().catch(() => {});
  }

  #adminChannel(): Channel {
    if (this.#admin === null) throw new Error("rabbitmq driver: initialize() first");
    return this.#admin;
  }

  #topic(topic: string): TopicState {
    const state = this.#topics.get(topic);
    if (state === undefined) throw new RangeError(`Topic ${topic} was not created`);
    return state;
  }
}

/**
 * Where a delayed message is published: the delay exchange, the routing key of its delay
 * queue, and its properties (`ttl-dlx`: its delay as the per-message TTL, `expiration`).
 */
class DelayRouter {
  readonly #exchange: string | null;
  readonly #maxMs: number;
  readonly #ttlsMs: number[];
  readonly #buckets: number;

  constructor(state: TopicState, options: RabbitMqOptions) {
    this.#exchange = state.delayExchange;
    this.#maxMs = options.deliveryDelayMsMax;
    this.#buckets = options.delayQueues;
    this.#ttlsMs = bucketTtlsMs(options.deliveryDelayMsMax, options.delayQueues);
  }

  route(
    partition: number,
    delayMs: number,
    base: { persistent: boolean; priority?: number },
  ): { exchange: string; key: string; properties: Record<string, unknown> } {
    if (this.#exchange === null) {
      throw new RangeError(
        `rabbitmq: a delay of ${delayMs} ms, but the driver was made without delays ` +
          "(the workload's deliveryDelayMsMax with ackMode per-message declares the delay queues)",
      );
    }
    if (!Number.isSafeInteger(delayMs) || delayMs < 0 || delayMs > this.#maxMs) {
      throw new RangeError(`rabbitmq: delay ${delayMs} ms is outside [0, ${this.#maxMs}]`);
    }
    if (this.#buckets === 1) {
      const key = delayKey(partition, 0, 1);
      return { exchange: this.#exchange, key, properties: { ...base, expiration: delayMs } };
    }
    let bucket = 0;
    while (this.#ttlsMs[bucket]! < delayMs) bucket++;
    return {
      exchange: this.#exchange,
      key: delayKey(partition, bucket, this.#buckets),
      properties: base,
    };
  }
}

/**
 * Acknowledges deliveries in batches: one `basic.ack` with `multiple` set covers every delivery
 * on the channel up to the latest handled one. Delivery tags grow per channel, and every
 * callback runs synchronously before `handled`, so the batch never acks an unhandled message.
 */
class BatchedAcker {
  readonly #channel: Channel;
  readonly #ackEvery: number;
  #latest: ConsumeMessage | null = null;
  #pending = 0;
  #scheduled = false;

  constructor(channel: Channel, ackEvery: number) {
    this.#channel = channel;
    this.#ackEvery = ackEvery;
  }

  handled(message: ConsumeMessage): void {
    this.#latest = message;
    this.#pending += 1;
    if (this.#pending >= this.#ackEvery) {
      this.flush();
    } else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.flush();
      });
    }
  }

  flush(): void {
    const latest = this.#latest;
    if (latest === null) return;
    this.#latest = null;
    this.#pending = 0;
    try {
      this.#channel.ack(latest, true);
    } catch {
      // The channel closed: its unacknowledged deliveries go back to the queue (redelivery).
    }
  }
}

/** True when a RabbitMQ version string names a release before 3.13. */
function olderThan313(version: string): boolean {
  const match = /^(\d+)\.(\d+)/.exec(version);
  if (match === null) return false;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  return major < 3 || (major === 3 && minor < 13);
}

/** A RabbitMQ driver; see the file header for the layout, acks and durability. */
export function createRabbitMqDriver(
  options: DriverOptions = {},
  ackMode: AckMode = "stream",
  priorityLevels = 0,
  deliveryDelayMsMax = 0,
): Driver {
  return new RabbitMqDriver(rabbitMqOptions(options, ackMode, priorityLevels, deliveryDelayMsMax));
}

export const createDriver: DriverFactory = (config: DriverConfig) =>
  createRabbitMqDriver(
    config.options,
    config.ackMode,
    config.priorityLevels ?? 0,
    config.deliveryDelayMsMax ?? 0,
  );

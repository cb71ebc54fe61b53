// sluice-kafka: sluice over Kafka's protocol. It starts `sluice serve --kafka-port 0` as a
// child process on a fresh data directory (as the sluice driver does for the native port) and
// drives it with the kafka driver (kafkajs) unchanged, so one run reports the same engine
// behind both protocols: `--drivers sluice,sluice-kafka`. The difference measures the Kafka
// listener and kafkajs together, not the listener alone (kafkajs's producer runs one request
// in flight per idempotent producer; see kafka.ts).
//
// Options: those of the kafka driver (`sluice-kafka.batch-max=N`, ...); `brokers=host:port`
// attaches to a running listener instead of starting one (what the workers get).

import { join } from "node:path";
import type {
  BenchConsumer,
  BenchProducer,
  BrokerProcess,
  ConsumerPlacement,
  Driver,
  DriverConfig,
  DriverFactory,
  DriverSettings,
  MessageCallback,
} from "../driver.ts";
import { brokerScript, type Child, startChild } from "../tcp/processes.ts";
import { createKafkaDriver } from "./kafka.ts";

class SluiceKafkaDriver implements Driver {
  readonly name = "sluice-kafka";
  #config: DriverConfig;
  #child: Child | undefined;
  #inner: Driver | undefined;
  #brokers = "";

  constructor(config: DriverConfig) {
    this.#config = config;
  }

  async initialize(): Promise<void> {
    const given = this.#config.options["brokers"];
    if (given === undefined) {
      // The Kafka listener's line comes first, so the child's port is the Kafka port.
      this.#child = await startChild(brokerScript, [
        "serve",
        "--data",
        join(this.#config.workDir, "data"),
        "--port",
        "0",
        "--kafka-port",
        "0",
      ]);
      this.#brokers = `127.0.0.1:${this.#child.port}`;
    } else this.#brokers = given;
    this.#inner = createKafkaDriver({ ...this.#config.options, brokers: this.#brokers });
    await this.#inner.initialize();
  }

  #driver(): Driver {
    if (this.#inner === undefined) throw new Error("sluice-kafka: initialize() first");
    return this.#inner;
  }

  settings(): DriverSettings {
    return {
      ...this.#driver().settings(),
      broker: "sluice serve --kafka-port (the Kafka listener), a child process",
      tested: "against sluice's Kafka listener",
    };
  }

  durability(): string {
    return (
      "sluice's Kafka listener, acks=-1: acknowledged once the batch is appended and the log " +
      "flushed (fsync) before the answer; idempotent producer"
    );
  }

  createTopic(topic: string, partitions: number): Promise<void> {
    return this.#driver().createTopic(topic, partitions);
  }

  createProducer(topic: string): Promise<BenchProducer> {
    return this.#driver().createProducer(topic);
  }

  createConsumer(
    topic: string,
    subscription: string,
    onMessage: MessageCallback,
    placement?: ConsumerPlacement,
  ): Promise<BenchConsumer> {
    return this.#driver().createConsumer(topic, subscription, onMessage, placement);
  }

  deleteTopic(topic: string): Promise<void> {
    return this.#driver().deleteTopic(topic);
  }

  attachTopic(topic: string, partitions: number): Promise<void> {
    return this.#driver().attachTopic?.(topic, partitions) ?? Promise.resolve();
  }

  createSubscription(topic: string, subscription: string): Promise<void> {
    return this.#driver().createSubscription?.(topic, subscription) ?? Promise.resolve();
  }

  workerOptions(): Record<string, string> {
    return { ...this.#config.options, brokers: this.#brokers };
  }

  brokerProcess(): BrokerProcess | undefined {
    const pid = this.#child?.process.pid;
    if (pid !== undefined) return { kind: "pid", pid, what: "`sluice serve --kafka-port`" };
    return this.#inner?.brokerProcess?.();
  }

  async close(): Promise<void> {
    await this.#inner?.close();
    this.#inner = undefined;
    await this.#child?.stop();
    this.#child = undefined;
  }
}

export const createDriver: DriverFactory = (config: DriverConfig) => new SluiceKafkaDriver(config);

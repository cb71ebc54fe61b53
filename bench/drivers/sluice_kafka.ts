// sluice-kafka: sluice over Kafka's protocol. It starts `sluice serve --kafka-port 0` as a
// child process on a fresh data directory (as the sluice driver does for the native port) and
// drives it with the kafka driver (kafkajs) unchanged, so one run reports the same engine
// behind both protocols: `--drivers sluice,sluice-kafka`. The difference measures the Kafka
// listener and kafkajs together, not the listener alone (kafkajs's producer runs one request
// in flight per idempotent producer; see kafka.ts).
//
// Options: those of the kafka driver (`sluice-kafka.batch-max=N`, ...); `brokers=host:port`
// attaches to a running listener instead of starting one (what the workers get).
// `sasl=scram-sha-256` (or -512) starts the child with `--auth scram` and a throwaway user
// `bench` (a superuser, so the ACLs do not get in the way; the SASL exchange and the
// per-request ACL check still run); `tls=true` starts it with a throwaway CA and certificate
// (openssl) and `--kafka-tls`. Both: SASL_SSL, to measure what security costs on this port.

import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { makeScramCredential } from "../../protocol/codec/scram.ts";
import { emptySecurityState, saveSecurityState } from "../../protocol/server/mod.ts";
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
import { DriverUnavailableError } from "../driver.ts";
import { makeBenchCerts } from "../tcp/certs.ts";
import { brokerScript, type Child, startChild } from "../tcp/processes.ts";
import { createKafkaDriver } from "./kafka.ts";

class SluiceKafkaDriver implements Driver {
  readonly name = "sluice-kafka";
  #config: DriverConfig;
  #child: Child | undefined;
  #inner: Driver | undefined;
  #brokers = "";
  /** What the kafka driver (here and in the workers) needs to log in to the child. */
  #security: Record<string, string> = {};

  constructor(config: DriverConfig) {
    this.#config = config;
  }

  async initialize(): Promise<void> {
    const given = this.#config.options["brokers"];
    if (given === undefined) {
      const dataDir = join(this.#config.workDir, "data");
      const secure = this.#secureChild(dataDir);
      // The Kafka listener's line comes first, so the child's port is the Kafka port.
      this.#child = await startChild(brokerScript, [
        "serve",
        "--data",
        dataDir,
        "--port",
        "0",
        "--kafka-port",
        "0",
        ...secure,
      ]);
      this.#brokers = `127.0.0.1:${this.#child.port}`;
    } else this.#brokers = given;
    this.#inner = createKafkaDriver(this.workerOptions());
    await this.#inner.initialize();
  }

  /** The child's security flags for `sasl` and `tls`, with the user and certificates made. */
  #secureChild(dataDir: string): string[] {
    const options = this.#config.options;
    const flags: string[] = [];
    const sasl = options["sasl"];
    if (sasl !== undefined && sasl !== "") {
      if (sasl !== "scram-sha-256" && sasl !== "scram-sha-512") {
        throw new RangeError(`Driver option sasl=${sasl}: the child serves scram-sha-256 or -512`);
      }
      const password = randomBytes(18).toString("base64url");
      const state = emptySecurityState();
      state.users.set("bench", {
        "SCRAM-SHA-256": makeScramCredential("SCRAM-SHA-256", password),
        "SCRAM-SHA-512": makeScramCredential("SCRAM-SHA-512", password),
      });
      mkdirSync(dataDir, { recursive: true });
      saveSecurityState(dataDir, state);
      flags.push("--auth", "scram", "--super-users", "bench");
      this.#security = { ...this.#security, username: "bench", password };
    }
    if (options["tls"] === "true") {
      const dir = join(this.#config.workDir, "certs");
      mkdirSync(dir, { recursive: true });
      const certs = makeBenchCerts(dir);
      if (certs === undefined) {
        throw new DriverUnavailableError(
          "sluice-kafka tls=true needs openssl to make a throwaway CA",
          "bash scripts/install_openssl.sh",
        );
      }
      flags.push("--tls-cert", certs.certFile, "--tls-key", certs.keyFile, "--kafka-tls");
      this.#security = { ...this.#security, "tls-ca-file": certs.caFile };
    }
    return flags;
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
    return { ...this.#config.options, ...this.#security, brokers: this.#brokers };
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

// sluice-embedded: the storage engine in the process that runs the driver, no network: with
// worker processes, inside the one load worker that runs the whole workload (topics,
// producers, consumers), so its CPU is the worker's (client CPU; broker CPU is not measured
// apart). The producer batches records per partition (RecordBatch v2 via encodeRecordBatch)
// for up to lingerMs or batchBytes, then appends; consumers read the partition logs directly.
// This is the ceiling the broker can reach: what the engine does, without protocol, sockets
// or a second process.
//
// Subscriptions: each reads every partition of its topic from the start; the consumers of one
// subscription split the partitions round-robin (consumer i of n reads partitions p with
// p mod n = i), rebalanced as consumers join and leave, positions kept by the subscription.
//
// With the workload's `ackMode: per-message` a subscription is a queue and each consumer a
// member of it (./sluice_embedded_queue.ts), and the topics default to fsync always (appends
// acknowledged once durable, as acks all over TCP).
//
// Options (`--driver-options key=value,...`):
//   fsync=always|never|<ms>   the topics' fsync policy (default: the engine's, every 1000 ms;
//                             always in per-message mode)
//   lingerMs=<n>              how long a batch waits for more records (default 1); 0 seals
//                             batches at the end of the event-loop turn that filled them
//   batchBytes=<n>            the largest batch (default 1 MiB, the topics' maxBatchBytes)

import { join } from "node:path";
import { setImmediate } from "node:timers";
import {
  decodeRecordBatches,
  Engine,
  encodeRecordBatch,
  type FsyncPolicy,
  LOG_CONFIG_DEFAULTS,
  type RecordInput,
} from "../../engine/mod.ts";
import { DefaultPartitioner } from "../../protocol/client/mod.ts";
import packageJson from "../../package.json" with { type: "json" };
import type {
  AckingHandlers,
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
import type { DiskSyncReading } from "../disk_syncs.ts";
import { describeFsync, fsyncOption, integerOption } from "./options.ts";
import {
  declareEmbeddedQueue,
  EMBEDDED_QUEUE_MAX_RECORDS,
  EmbeddedQueueConsumer,
  embeddedQueueCounts,
} from "./sluice_embedded_queue.ts";
import { delayPathSetting, priorityLevelsSetting } from "./sluice_queue.ts";

export const LINGER_MS_DEFAULT = 1;
export const BATCH_BYTES_DEFAULT = LOG_CONFIG_DEFAULTS.maxBatchBytes;
/** Bytes one consumer read asks for per partition. */
export const READ_BYTES_MAX = 1024 * 1024;
/** The batch header, and the most a record adds around its key and value (varints). */
const BATCH_HEADER_BYTES = 61;
const RECORD_OVERHEAD_BYTES_MAX = 40;

export const createDriver: DriverFactory = (config) => new SluiceEmbeddedDriver(config);

type Settings = { fsync: FsyncPolicy; lingerMs: number; batchBytes: number; queues: boolean };

export class SluiceEmbeddedDriver implements Driver {
  readonly name = "sluice-embedded";
  #config: DriverConfig;
  #settings: Settings;
  #engine: Engine | undefined;
  #subscriptions = new Map<string, Subscription>();

  constructor(config: DriverConfig) {
    this.#config = config;
    const { options } = config;
    const queues = config.ackMode === "per-message";
    this.#settings = {
      queues,
      fsync: fsyncOption(options, "fsync", queues ? "always" : LOG_CONFIG_DEFAULTS.fsync),
      lingerMs: integerOption(options, "lingerMs", LINGER_MS_DEFAULT, 0, 60_000),
      batchBytes: integerOption(
        options,
        "batchBytes",
        BATCH_BYTES_DEFAULT,
        1024,
        LOG_CONFIG_DEFAULTS.maxBatchBytes,
      ),
    };
  }

  get #open(): Engine {
    if (this.#engine === undefined) throw new Error("sluice-embedded: initialize() first");
    return this.#engine;
  }

  async initialize(): Promise<void> {
    this.#engine = await Engine.open(join(this.#config.workDir, "data"), {
      topicDefaults: { fsync: this.#settings.fsync },
      onWarning: (message) => console.warn(`sluice-embedded: ${message}`),
    });
  }

  settings(): DriverSettings {
    return {
      process: "engine in the load worker's process (its CPU is the client CPU)",
      clientLibrary: `sluice ${packageJson.version} engine/mod.ts (this repository), no client`,
      connections: "none: Engine.append and Engine.read calls",
      dataDir: join(this.#config.workDir, "data"),
      fsync: describeFsync(this.#settings.fsync),
      lingerMs: this.#settings.lingerMs,
      batchBytes: this.#settings.batchBytes,
      readBytesMax: READ_BYTES_MAX,
      partitioner: "murmur2(key) like Kafka; keyless records sticky per batch",
      subscription: this.#settings.queues
        ? "a queue on the topic (from its beginning, acks fdatasync'd); consumers are members " +
          `fetching up to ${EMBEDDED_QUEUE_MAX_RECORDS} records, each answered on its own`
        : "reads every partition; its consumers split partitions round-robin",
      ...priorityLevelsSetting(this.#config.priorityLevels),
      ...delayPathSetting(this.#config.deliveryDelayMsMax),
    };
  }

  durability(): string {
    const fsync = this.#settings.fsync;
    if (fsync === "always") return "fsynced to disk before the append is acknowledged";
    const when = fsync === "never" ? "when the OS writes back" : `every ${fsync.intervalMs} ms`;
    return `in the OS page cache when acknowledged; fsynced ${when} (power loss can lose that)`;
  }

  brokerProcess(): BrokerProcess {
    return { kind: "in-process", what: "the sluice engine runs inside the load worker" };
  }

  /** The engine's fdatasync histograms so far (null: no engine opened in this instance). */
  async diskSyncs(): Promise<DiskSyncReading | null> {
    const engine = this.#engine;
    if (engine === undefined) return null;
    return {
      segments: engine.fsyncSeconds.snapshot(),
      queueState: engine.queueFsyncSeconds.snapshot(),
    };
  }

  async createTopic(topic: string, partitions: number): Promise<void> {
    await this.#open.createTopic(topic, { partitions, config: { fsync: this.#settings.fsync } });
  }

  async createProducer(topic: string): Promise<BenchProducer> {
    const partitions = this.#open.describeTopic(topic).partitions;
    return new EmbeddedProducer(this.#open, topic, partitions, this.#settings);
  }

  async createConsumer(
    topic: string,
    subscription: string,
    onMessage: MessageCallback,
  ): Promise<BenchConsumer> {
    const key = `${topic}\u0000${subscription}`;
    let group = this.#subscriptions.get(key);
    if (group === undefined) {
      group = new Subscription(this.#open, topic);
      this.#subscriptions.set(key, group);
    }
    return group.join(onMessage);
  }

  async createSubscription(topic: string, subscription: string): Promise<void> {
    if (!this.#settings.queues) return;
    const levels = this.#config.priorityLevels ?? 0;
    await declareEmbeddedQueue(this.#open, topic, subscription, levels);
  }

  async createAckingConsumer(
    _topic: string,
    subscription: string,
    handlers: AckingHandlers,
  ): Promise<BenchConsumer> {
    if (!this.#settings.queues) {
      throw new Error("sluice-embedded: acking consumers need the workload's ackMode per-message");
    }
    return new EmbeddedQueueConsumer(this.#open, subscription, handlers);
  }

  async subscriptionCounts(_topic: string, subscription: string): Promise<SubscriptionCounts> {
    return embeddedQueueCounts(this.#open, subscription);
  }

  async deleteTopic(topic: string): Promise<void> {
    for (const [key, group] of this.#subscriptions) {
      if (group.topic === topic) this.#subscriptions.delete(key);
    }
    await this.#open.deleteTopic(topic);
  }

  async close(): Promise<void> {
    await this.#engine?.close();
    this.#engine = undefined;
  }
}

type OpenBatch = {
  records: RecordInput[];
  bytes: number;
  done: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
};

function openBatch(): OpenBatch {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const done = new Promise<void>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { records: [], bytes: BATCH_HEADER_BYTES, done, resolve, reject };
}

/**
 * Every record of a batch shares the batch's promise: one allocation per batch, and each
 * sendAsync still resolves exactly when its record's append is acknowledged.
 */
const DELAY_TEXT = new TextEncoder();

class EmbeddedProducer implements BenchProducer {
  #engine: Engine;
  #topic: string;
  #partitionCount: number;
  #settings: Settings;
  #partitioner = new DefaultPartitioner();
  #open = new Map<number, OpenBatch>();
  #appending = new Set<Promise<unknown>>();
  #lingerTimer: ReturnType<typeof setTimeout> | undefined;
  #lingerArmed = false;

  constructor(engine: Engine, topic: string, partitionCount: number, settings: Settings) {
    this.#engine = engine;
    this.#topic = topic;
    this.#partitionCount = partitionCount;
    this.#settings = settings;
  }

  sendAsync(key: Uint8Array | null, payload: Uint8Array, delayMs = 0): Promise<void> {
    const partition = this.#partitioner.partition(this.#topic, key, this.#partitionCount);
    const recordBytes = payload.length + (key?.length ?? 0) + RECORD_OVERHEAD_BYTES_MAX;
    let batch = this.#open.get(partition);
    if (batch !== undefined && batch.bytes + recordBytes > this.#settings.batchBytes) {
      this.#seal(partition, batch);
      batch = undefined;
    }
    if (batch === undefined) {
      batch = openBatch();
      this.#open.set(partition, batch);
    }
    if (delayMs > 0) {
      const headers = [{ key: "sluice-delay-ms", value: DELAY_TEXT.encode(String(delayMs)) }];
      batch.records.push({ key, value: payload, headers });
    } else {
      batch.records.push({ key, value: payload });
    }
    batch.bytes += recordBytes;
    if (!this.#lingerArmed) {
      this.#lingerArmed = true;
      const seal = () => this.#sealAll();
      if (this.#settings.lingerMs === 0) setImmediate(seal);
      else this.#lingerTimer = setTimeout(seal, this.#settings.lingerMs);
    }
    return batch.done;
  }

  #sealAll(): void {
    if (this.#lingerTimer !== undefined) clearTimeout(this.#lingerTimer);
    this.#lingerTimer = undefined;
    this.#lingerArmed = false;
    for (const [partition, batch] of this.#open) this.#seal(partition, batch);
  }

  #seal(partition: number, batch: OpenBatch): void {
    this.#open.delete(partition);
    this.#partitioner.batchSealed(this.#topic, partition);
    let appending: Promise<unknown>;
    try {
      const bytes = encodeRecordBatch(batch.records);
      appending = this.#engine.append(this.#topic, partition, bytes).then(batch.resolve);
    } catch (error) {
      appending = Promise.reject(error);
    }
    const tracked = appending.catch(batch.reject).finally(() => this.#appending.delete(tracked));
    this.#appending.add(tracked);
  }

  async close(): Promise<void> {
    this.#sealAll();
    await Promise.all(this.#appending);
  }
}

/** One subscription of a topic: its read positions, and the consumers sharing them. */
class Subscription {
  readonly topic: string;
  readonly engine: Engine;
  readonly positions: number[];
  #members: EmbeddedConsumer[] = [];

  constructor(engine: Engine, topic: string) {
    this.engine = engine;
    this.topic = topic;
    const partitions = engine.describeTopic(topic).partitions;
    this.positions = Array.from(
      { length: partitions },
      (_, p) => engine.partition(topic, p).logStartOffset,
    );
  }

  join(onMessage: MessageCallback): EmbeddedConsumer {
    const member = new EmbeddedConsumer(this, onMessage);
    this.#members.push(member);
    this.#rebalance();
    member.start();
    return member;
  }

  leave(member: EmbeddedConsumer): void {
    this.#members = this.#members.filter((candidate) => candidate !== member);
    this.#rebalance();
  }

  #rebalance(): void {
    const count = this.#members.length;
    this.#members.forEach((member, index) => {
      member.assign(this.positions.map((_, p) => p).filter((p) => p % count === index));
    });
  }
}

class EmbeddedConsumer implements BenchConsumer {
  #subscription: Subscription;
  #onMessage: MessageCallback;
  #partitions: number[] = [];
  #stopListening: (() => void)[] = [];
  #signalled = false;
  #wake: (() => void) | undefined;
  #closed = false;
  #loop: Promise<void> = Promise.resolve();

  constructor(subscription: Subscription, onMessage: MessageCallback) {
    this.#subscription = subscription;
    this.#onMessage = onMessage;
  }

  assign(partitions: number[]): void {
    for (const stop of this.#stopListening) stop();
    const { engine, topic } = this.#subscription;
    this.#partitions = partitions;
    this.#stopListening = partitions.map((p) =>
      engine.partition(topic, p).onData(() => this.#signal()),
    );
    this.#signal();
  }

  #signal(): void {
    this.#signalled = true;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  start(): void {
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    try {
      await this.#consume();
    } catch (error) {
      // The run's drain check reports the messages this consumer did not deliver.
      if (!this.#closed) console.error(`sluice-embedded: a consumer stopped: ${String(error)}`);
    }
  }

  async #consume(): Promise<void> {
    while (!this.#closed) {
      this.#signalled = false;
      const read = this.#readOnce();
      if (this.#closed) return;
      if (read === 0 && !this.#signalled) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
      } else {
        // Let producers and acknowledgements run between reads of a large backlog.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
  }

  /** Reads each assigned partition once from its position; returns the records delivered. */
  #readOnce(): number {
    const { engine, topic, positions } = this.#subscription;
    let delivered = 0;
    for (const partition of this.#partitions) {
      const position = positions[partition]!;
      if (position >= engine.partition(topic, partition).highWatermark) continue;
      const result = engine.read(topic, partition, position, READ_BYTES_MAX);
      for (const view of result.views) {
        for (const batch of decodeRecordBatches(view)) {
          for (const record of batch.records) {
            if (record.offset < position || record.value === null) continue;
            this.#onMessage(record.value);
            delivered++;
          }
        }
      }
      positions[partition] = result.nextOffset;
    }
    return delivered;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const stop of this.#stopListening) stop();
    this.#stopListening = [];
    this.#signal();
    await this.#loop;
    this.#subscription.leave(this);
  }
}

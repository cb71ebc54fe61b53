// The one interface every benchmark driver implements, after the OpenMessaging Benchmark's
// driver API: create a topic, producers that send asynchronously, consumers that call back.
// The harness owns timing: it stamps each payload with a send time and measures end-to-end
// latency when the consumer's callback sees it, on a clock every worker shares.
//
// Two instances of a driver take part in a run with worker processes, as in OMB:
//
//   coordinator's instance: initialize (starts a server when it runs one), createTopic,
//                           createSubscription, workerOptions, brokerProcess, deleteTopic, close
//   each worker's instance: initialize (connects), attachTopic, createConsumer, createProducer,
//                           close (never deletes what the coordinator created)
//
// A driver whose broker lives inside its own process (sluice-embedded; DriverEntry.inProcess)
// runs whole inside one worker instead, topics included.
//
// With the workload's `ackMode: per-message` (DriverConfig.ackMode), consumers come from
// createAckingConsumer: the driver hands each delivery to the harness, which answers accept or
// release; the driver sends that answer for that one message and reports when the broker has
// confirmed an accept (and how long the confirmation took), so the harness counts accepted
// messages rather than deliveries.

import type { DiskSyncReading } from "./disk_syncs.ts";
import type { AckMode } from "./workload.ts";

export type { AckMode };

/** Settings a driver prints and saves with its results, so runs compare like for like. */
export type DriverSettings = Record<string, string | number | boolean>;

export interface BenchProducer {
  /**
   * Resolves when the system acknowledged the message (publish latency ends here). `delayMs`
   * (drivers whose entry says `delayedDelivery`): deliver it no sooner than that.
   */
  sendAsync(key: Uint8Array | null, payload: Uint8Array, delayMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface BenchConsumer {
  close(): Promise<void>;
}

/** Called once per message received; `payload` is valid only during the call. */
export type MessageCallback = (payload: Uint8Array) => void;

/** The harness's answer to one delivery in per-message mode. */
export type DeliveryAnswer = "accept" | "release";

/** What an acking consumer (per-message mode) reports to the harness. */
export interface AckingHandlers {
  /**
   * Called once per delivery, before any answer for it is sent; `payload` is valid only during
   * the call. The driver then sends the returned answer for this message alone.
   */
  onDelivery(payload: Uint8Array, redelivered: boolean): DeliveryAnswer;
  /**
   * The broker confirmed an accept (for a system whose acks are not confirmed: once the ack
   * was handed to the connection). `ackLatencyMs`: from the accept to its confirmation, null
   * when the system does not confirm acks.
   */
  onAccepted(bytes: number, ackLatencyMs: number | null): void;
  /** An answer failed (the message will come again, or was dead-lettered). */
  onAnswerFailed(error: unknown): void;
}

/** What the broker counted for a subscription over a run (per-message mode). */
export type SubscriptionCounts = {
  /** Messages the broker dead-lettered (null: the system does not say). */
  deadLettered: number | null;
};

/** Where a consumer stands among its subscription's consumers, over every worker. */
export type ConsumerPlacement = { memberIndex: number; members: number };

/**
 * Where the broker under test runs, so the harness can read its CPU time from /proc: a
 * process id, an address whose listening process is looked up on this machine, or inside the
 * process that runs this driver instance.
 */
export type BrokerProcess =
  | { kind: "pid"; pid: number; what: string }
  | { kind: "address"; host: string; port: number; what: string }
  | { kind: "in-process"; what: string };

export interface Driver {
  readonly name: string;
  /** Connects (or starts what it needs); throws DriverUnavailableError when it cannot. */
  initialize(): Promise<void>;
  /** What the driver is configured to do, printed and saved with the results. */
  settings(): DriverSettings;
  /** The durability a published message has when sendAsync resolves, in one line. */
  durability(): string;
  createTopic(topic: string, partitions: number): Promise<void>;
  createProducer(topic: string): Promise<BenchProducer>;
  /**
   * A consumer in `subscription` (a consumer group / queue / durable) reading `topic`. It
   * resolves once the consumer will see every message sent from then on (the harness creates
   * every consumer before the first send); consumers of one subscription share its messages.
   */
  createConsumer(
    topic: string,
    subscription: string,
    onMessage: MessageCallback,
    placement?: ConsumerPlacement,
  ): Promise<BenchConsumer>;
  deleteTopic(topic: string): Promise<void>;
  /**
   * Per-message mode (DriverConfig.ackMode "per-message"): a competing consumer of
   * `subscription` that answers each message as `handlers.onDelivery` says. A driver without
   * it cannot run per-message workloads (its DriverEntry says so, and the harness skips it).
   */
  createAckingConsumer?(
    topic: string,
    subscription: string,
    handlers: AckingHandlers,
    placement?: ConsumerPlacement,
  ): Promise<BenchConsumer>;
  /** On the coordinator, after the drain and before deleteTopic: the broker's own counts. */
  subscriptionCounts?(topic: string, subscription: string): Promise<SubscriptionCounts>;
  /** Releases everything; called once, also when initialize() failed or never ran. */
  close(): Promise<void>;
  /**
   * In a worker: a topic another instance (the coordinator's) created. Producers and consumers
   * may then be made for it; this instance never deletes it. Default: nothing to learn.
   */
  attachTopic?(topic: string, partitions: number): Promise<void>;
  /**
   * On the coordinator, before any consumer joins: declare what a subscription needs on the
   * broker (queues, groups), so deleteTopic removes it with the topic.
   */
  createSubscription?(topic: string, subscription: string): Promise<void>;
  /**
   * Options for the workers' instances, so they reach the system this instance uses (the
   * address of a server it started). Default: the options this instance was given.
   */
  workerOptions?(): Record<string, string>;
  /** Where the broker runs (for its CPU time); default: unknown. */
  brokerProcess?(): BrokerProcess | undefined;
  /**
   * On the coordinator: the broker's fdatasync latency histogram so far (cumulative since it
   * started), read when the measured phase starts and when it ends (bench/disk_syncs.ts).
   * Null, or no method: not known.
   */
  diskSyncs?(): Promise<DiskSyncReading | null>;
}

/** What the harness hands a driver's factory. */
export type DriverConfig = {
  /** A fresh directory the driver may use (data, sockets); the harness removes it afterwards. */
  workDir: string;
  /**
   * Driver options from the command line (`--driver-options key=value,...`, and
   * `--sluice-url host:port` as `url` for the sluice driver). A driver names the keys it reads
   * in its settings() and rejects values it cannot use with a RangeError naming key and value.
   */
  options: Readonly<Record<string, string>>;
  /** How the workload's consumers acknowledge (default "stream"). */
  ackMode?: AckMode;
  /**
   * The workload's priorityLevels (absent or 0: none): each subscription is a priority queue of
   * that many levels, and a message's priority is the partition it is sent to.
   */
  priorityLevels?: number;
  /**
   * The workload's deliveryDelayMsMax (absent or 0: no delays): producers will pass sendAsync
   * delays up to this, so a driver declares what its delay path needs with the topic.
   */
  deliveryDelayMsMax?: number;
};

/**
 * Every driver module (`bench/drivers/<name>.ts`) exports `createDriver: DriverFactory`. The
 * factory only builds the object; `initialize()` connects, so a missing server surfaces there
 * as a DriverUnavailableError.
 */
export type DriverFactory = (config: DriverConfig) => Driver | Promise<Driver>;

/** The system behind a driver is not installed or not running: the driver is skipped. */
export class DriverUnavailableError extends Error {
  override name = "DriverUnavailableError";
  /** One line telling the user how to make it available. */
  readonly hint: string;

  constructor(message: string, hint: string) {
    super(message);
    this.hint = hint;
  }
}

// The sluice driver's per-message mode (workload `ackMode: per-message`): a subscription is a
// queue (PROTOCOL.md section 7a) declared on the topic by the coordinator, and its consumers
// are competing QueueConsumers that answer every message on its own:
//
//   coordinator: Admin.declareQueue(subscription, { topic, from: "beginning" })
//                (queue defaults otherwise: its acks fsynced before they are confirmed)
//   worker:      QueueConsumer.poll() ──► onDelivery(value, redelivered) ──► accept | release
//                message.accept() ──► batched QueueAck ──► durable ──► onAccepted(ms since accept)
//   after drain: Admin.listQueues([subscription]) ──► deadLettered
//
// The queue is deleted with its topic (the broker deletes every queue reading a deleted topic).

import { setImmediate } from "node:timers";
import {
  type Admin,
  type ClientOptions,
  QueueConsumer,
  type QueueMessage,
} from "../../protocol/client/mod.ts";
import type {
  AckingHandlers,
  BenchConsumer,
  DriverSettings,
  SubscriptionCounts,
} from "../driver.ts";

const EMPTY = new Uint8Array(0);
/**
 * A polled batch (up to maxRecords, 1,000) is answered in slices of this many messages, the
 * worker's event loop turning between them. The load worker's producers share that loop:
 * answering 1,000 messages at once held it 25-35 ms at 150k msg/s (the worker's stalls,
 * bench/tools/_stall_monitor.ts), and every send and acknowledgement due meanwhile waited,
 * counted as publish latency against the broker. amqplib hands RabbitMQ's deliveries over a
 * socket read (up to 64 KiB, ~60 messages) at a time.
 */
export const ANSWER_SLICE = 64;

/** How long a queue fetch waits at the broker for records before the loop looks again. */
const QUEUE_POLL_WAIT_MS = 100;

/** The queue settings and client options per-message mode uses, for the driver's settings(). */
export type QueueModeOptions = {
  /** Records one QueueFetch acquires at most. */
  maxRecords: number;
  /** Answers given within this long of each other share one QueueAck. */
  ackFlushMs: number;
  /** QueueFetch requests each consumer keeps outstanding. */
  fetchesInFlight: number;
  /** Answers ride in QueueFetch requests while the queue keeps up (QueueConsumer's option). */
  piggybackAcks: boolean;
  /** While the queue keeps up, a consumer's fetches go out at most this often. */
  fetchIntervalMs: number;
};

export function queueModeSettings(options: QueueModeOptions): DriverSettings {
  return {
    subscription:
      "a queue on the topic (declared from its beginning); competing QueueConsumers, " +
      "each message accepted on its own",
    queueFsync: "queue default (always: an accept is confirmed once fsynced)",
    queueMaxRecords: options.maxRecords,
    queueAckFlushMs: options.ackFlushMs,
    queueFetchesInFlight: options.fetchesInFlight,
    queuePiggybackAcks: options.piggybackAcks,
    queueFetchIntervalMs: options.fetchIntervalMs,
  };
}

/** The settings entry of a priority-queue run (workload priorityLevels), or none. */
export function priorityLevelsSetting(levels: number | undefined): DriverSettings {
  if (levels === undefined || levels === 0) return {};
  return {
    priorities:
      `${levels} levels: the queue's topic partition p is level p; a message's ` +
      "priority is the partition it is sent to",
  };
}

/**
 * The settings entry of a delayed run (workload deliveryDelayMsMax), or none: each message
 * carries the `sluice-delay-ms` header and the queue holds it in its delay tiers until due.
 */
export function delayPathSetting(deliveryDelayMsMax: number | undefined): DriverSettings {
  if (deliveryDelayMsMax === undefined || deliveryDelayMsMax === 0) return {};
  return { delayPath: "sluice-delay-ms header: the queue's durable delay tiers" };
}

/** Declares the queue a subscription reads (on the coordinator, before any consumer joins). */
export async function declareSubscriptionQueue(
  admin: Admin,
  topic: string,
  subscription: string,
  priorityLevels = 0,
): Promise<void> {
  // A priority queue: the topic's partitions are its levels (the producer's pick is the level).
  const priorities = priorityLevels > 0 ? { priorities: priorityLevels } : {};
  await admin.declareQueue(subscription, { topic, from: "beginning", ...priorities });
}

/** The broker's dead-letter count of a subscription's queue. */
export async function queueCounts(admin: Admin, subscription: string): Promise<SubscriptionCounts> {
  const [queue] = await admin.listQueues([subscription]);
  if (queue === undefined) throw new Error(`queue ${subscription} is not listed`);
  return { deadLettered: queue.stats.deadLettered };
}

export function createQueueConsumer(
  client: ClientOptions,
  subscription: string,
  handlers: AckingHandlers,
  options: QueueModeOptions,
): BenchConsumer {
  const consumer = new QueueConsumer({
    ...client,
    queue: subscription,
    maxRecords: options.maxRecords,
    ackFlushMs: options.ackFlushMs,
    fetchesInFlight: options.fetchesInFlight,
    piggybackAcks: options.piggybackAcks,
    fetchIntervalMs: options.fetchIntervalMs,
    maxWaitMs: QUEUE_POLL_WAIT_MS,
  });
  return new QueueBenchConsumer(consumer, handlers);
}

/** Resolves once the event loop has turned: timers and I/O due meanwhile have run. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

class QueueBenchConsumer implements BenchConsumer {
  readonly #consumer: QueueConsumer;
  readonly #handlers: AckingHandlers;
  readonly #loop: Promise<void>;
  #closed = false;

  constructor(consumer: QueueConsumer, handlers: AckingHandlers) {
    this.#consumer = consumer;
    this.#handlers = handlers;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    try {
      while (!this.#closed) {
        const messages = await this.#consumer.poll();
        for (let i = 0; i < messages.length; i++) {
          if (i > 0 && i % ANSWER_SLICE === 0) await turn();
          this.#answer(messages[i]!);
        }
      }
    } catch (error) {
      // The run's drain check reports what this consumer did not accept.
      if (!this.#closed) console.error(`sluice: a queue consumer stopped: ${String(error)}`);
    }
  }

  /** One handler for every failed answer, rather than a closure per message. */
  readonly #failed = (error: unknown): void => this.#handlers.onAnswerFailed(error);

  #answer(message: QueueMessage): void {
    const handlers = this.#handlers;
    const value = message.value ?? EMPTY;
    const bytes = value.length;
    if (handlers.onDelivery(value, message.redelivered) === "release") {
      message.release().catch(this.#failed);
      return;
    }
    const acceptedAt = performance.now();
    message
      .accept()
      .then(() => handlers.onAccepted(bytes, performance.now() - acceptedAt), this.#failed);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Sends every answer given and waits for the broker's word on each, then leaves.
    await this.#consumer.close();
    await this.#loop;
  }
}

// The sluice-embedded driver's per-message mode (workload `ackMode: per-message`): a
// subscription is a queue on the topic (from its beginning, the queue's defaults: its acks
// fdatasync'd before they resolve) and each consumer is a member of it, calling the engine
// directly:
//
//   fetchQueue(maxRecords) ──► whole batches + acquired ranges ──► onDelivery per record
//   ──► one ackQueue call per fetch, a one-record range per answer (accept or release)
//   ──► durable ──► onAccepted(ms since the answers were given) for each accepted record
//   nothing to fetch ──► wait for onQueueReady (appended, released, expired, room freed)
//
// The next fetch does not wait for the last fetch's acks to be durable; the queue's prefetch
// (per member) bounds what one consumer holds unanswered or unconfirmed.

import { setImmediate } from "node:timers";
import { decodeRecordBatches, type Engine, type QueueAck } from "../../engine/mod.ts";
import type { AckingHandlers, BenchConsumer, SubscriptionCounts } from "../driver.ts";

/** Records one fetch acquires at most (the QueueConsumer's default). */
export const EMBEDDED_QUEUE_MAX_RECORDS = 100;

export async function declareEmbeddedQueue(
  engine: Engine,
  topic: string,
  subscription: string,
  priorityLevels = 0,
): Promise<void> {
  const priorities = priorityLevels > 0 ? { priorities: priorityLevels } : {};
  await engine.declareQueue(subscription, { topic, from: "beginning", ...priorities });
}

export function embeddedQueueCounts(engine: Engine, subscription: string): SubscriptionCounts {
  return { deadLettered: engine.queueStats(subscription).deadLettered };
}

export class EmbeddedQueueConsumer implements BenchConsumer {
  readonly #engine: Engine;
  readonly #queue: string;
  readonly #handlers: AckingHandlers;
  readonly #member: string;
  readonly #unsubscribe: () => void;
  readonly #pending = new Set<Promise<void>>();
  readonly #loop: Promise<void>;
  #wake: (() => void) | undefined;
  #ready = false;
  #closed = false;

  constructor(engine: Engine, queue: string, handlers: AckingHandlers) {
    this.#engine = engine;
    this.#queue = queue;
    this.#handlers = handlers;
    this.#member = engine.joinQueue(queue);
    this.#unsubscribe = engine.onQueueReady(queue, () => {
      this.#ready = true;
      this.#wake?.();
    });
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    try {
      while (!this.#closed) {
        this.#ready = false;
        const fetched = this.#engine.fetchQueue(this.#queue, this.#member, {
          maxRecords: EMBEDDED_QUEUE_MAX_RECORDS,
        });
        if (fetched.partitions.length === 0) {
          await this.#readyOrClosed();
          continue;
        }
        this.#answer(fetched.partitions);
        // Producers, acks and the other consumers share this event loop.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (error) {
      // The run's drain check reports what this consumer did not accept.
      if (!this.#closed) console.error(`sluice-embedded: a queue consumer stopped: ${error}`);
    }
  }

  #readyOrClosed(): Promise<void> {
    if (this.#ready || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#wake = () => {
        this.#wake = undefined;
        resolve();
      };
    });
  }

  #answer(partitions: ReturnType<Engine["fetchQueue"]>["partitions"]): void {
    const acks: QueueAck[] = [];
    const acceptedBytes: number[] = [];
    for (const { partition, views, ranges } of partitions) {
      let r = 0;
      for (const view of views) {
        for (const batch of decodeRecordBatches(view)) {
          for (const record of batch.records) {
            while (r < ranges.length && ranges[r]!.last < record.offset) r++;
            const range = ranges[r];
            if (range === undefined || record.offset < range.first) continue;
            const value = record.value ?? new Uint8Array(0);
            const type = this.#handlers.onDelivery(value, range.redelivered);
            acks.push({ partition, first: record.offset, last: record.offset, type });
            if (type === "accept") acceptedBytes.push(value.length);
          }
        }
      }
    }
    const answeredMs = performance.now();
    const acking = this.#engine.ackQueue(this.#queue, this.#member, acks).then(
      () => {
        const ackMs = performance.now() - answeredMs;
        for (const bytes of acceptedBytes) this.#handlers.onAccepted(bytes, ackMs);
      },
      (error: unknown) => this.#handlers.onAnswerFailed(error),
    );
    this.#pending.add(acking);
    void acking.finally(() => this.#pending.delete(acking));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    await this.#loop;
    await Promise.all(this.#pending);
    this.#unsubscribe();
    this.#engine.leaveQueue(this.#queue, this.#member);
  }
}

// One load worker's share of a run: its consumers and producers on one driver instance, its
// load generator, and its reports. The same class runs inside a worker process (behind
// ./server.ts) and, with `--workers 0`, inside the coordinator (./in_process.ts).
//
// Time is the shared clock: epoch milliseconds corrected by the offset the coordinator
// measured, so a payload stamped by a producer in one worker is read on the same clock by a
// consumer in another.

import { Buffer } from "node:buffer";
import type {
  AckingHandlers,
  BenchConsumer,
  BenchProducer,
  ConsumerPlacement,
  Driver,
} from "../driver.ts";
import { LoadGenerator } from "../load_generator.ts";
import { LoadStats, type WorkerReport } from "../load_stats.ts";
import { KeySource, PayloadSource, payloadTemplates, readStamp } from "../payload.ts";
import type { Workload } from "../workload.ts";

/** The workload fields a worker needs to make payloads and keys. */
export type PayloadSpec = Pick<
  Workload,
  | "messageSize"
  | "keyDistributor"
  | "useRandomizedPayloads"
  | "randomBytesRatio"
  | "randomizedPayloadPoolSize"
> & {
  /** The workload's payloadFile, base64: a remote worker cannot read the coordinator's files. */
  payloadBase64: string | null;
};

export type ConsumerSpec = {
  topic: string;
  subscription: string;
  /** This consumer's place among its subscription's consumers, over every worker. */
  memberIndex: number;
  members: number;
};

/** How consumers answer: the workload's ackMode and releaseRatio. */
export type AckPlan = Pick<Workload, "ackMode" | "releaseRatio"> & {
  /** Absent from runners before delayed delivery: 0. */
  deliveryDelayMsMax?: number;
};

/** What one worker runs: its clients, and how to pace and stamp. */
export type ClientPlan = {
  consumers: ConsumerSpec[];
  /** Absent: stream mode (what workers before per-message mode were sent). */
  acks?: AckPlan;
  /** The topic of each producer. */
  producers: string[];
  payloads: PayloadSpec;
  /** Unacknowledged sends allowed per producer. */
  inFlightMaxPerProducer: number;
  /** And at most this many seconds of a producer's rate in flight. */
  inFlightSeconds: number;
};

export function payloadSpecOf(workload: Workload, payloadFileBytes: Uint8Array | null) {
  const spec: PayloadSpec = {
    messageSize: workload.messageSize,
    keyDistributor: workload.keyDistributor,
    useRandomizedPayloads: workload.useRandomizedPayloads,
    randomBytesRatio: workload.randomBytesRatio,
    randomizedPayloadPoolSize: workload.randomizedPayloadPoolSize,
    payloadBase64:
      payloadFileBytes === null ? null : Buffer.from(payloadFileBytes).toString("base64"),
  };
  return spec;
}

function templatesOf(spec: PayloadSpec): Uint8Array[] {
  if (spec.payloadBase64 !== null) {
    const bytes = new Uint8Array(Buffer.from(spec.payloadBase64, "base64"));
    if (bytes.length !== spec.messageSize) {
      throw new RangeError(`payload of ${bytes.length} bytes, messageSize ${spec.messageSize}`);
    }
    return [bytes];
  }
  return payloadTemplates({ ...spec, payloadFile: undefined });
}

export class WorkerSession {
  readonly stats: LoadStats;
  readonly #driver: Driver;
  readonly #plan: ClientPlan;
  readonly #now: () => number;
  readonly #consumers: BenchConsumer[] = [];
  readonly #producers: BenchProducer[] = [];
  #generator: LoadGenerator | undefined;

  constructor(driver: Driver, plan: ClientPlan, now: () => number) {
    this.#driver = driver;
    this.#plan = plan;
    this.#now = now;
    // Delayed payloads carry their due time: lateness, with early deliveries counted apart.
    this.stats = new LoadStats({ dueTimes: (plan.acks?.deliveryDelayMsMax ?? 0) > 0 });
  }

  /** Creates the consumers (each ready for every message sent from then on), then producers. */
  async createClients(): Promise<void> {
    for (const consumer of this.#plan.consumers) {
      const placement = { memberIndex: consumer.memberIndex, members: consumer.members };
      this.#consumers.push(await this.#createConsumer(consumer, placement));
    }
    for (const topic of this.#plan.producers) {
      this.#producers.push(await this.#driver.createProducer(topic));
    }
    if (this.#producers.length > 0) {
      const payloads = this.#plan.payloads;
      this.#generator = new LoadGenerator({
        producers: this.#producers,
        payloads: new PayloadSource(templatesOf(payloads)),
        keys: new KeySource(payloads.keyDistributor),
        stats: this.stats,
        ratePerSecond: 1,
        inFlightMax: this.#plan.inFlightMaxPerProducer,
        inFlightSeconds: this.#plan.inFlightSeconds,
        deliveryDelayMsMax: this.#plan.acks?.deliveryDelayMsMax ?? 0,
        now: this.#now,
      });
    }
  }

  #createConsumer(consumer: ConsumerSpec, placement: ConsumerPlacement): Promise<BenchConsumer> {
    const stats = this.stats;
    const now = this.#now;
    const acks = this.#plan.acks;
    if (acks === undefined || acks.ackMode === "stream") {
      const onMessage = (payload: Uint8Array): void => {
        stats.recordReceive(now() - readStamp(payload), payload.length);
      };
      return this.#driver.createConsumer(
        consumer.topic,
        consumer.subscription,
        onMessage,
        placement,
      );
    }
    if (this.#driver.createAckingConsumer === undefined) {
      throw new Error(`the ${this.#driver.name} driver does not implement ackMode per-message`);
    }
    return this.#driver.createAckingConsumer(
      consumer.topic,
      consumer.subscription,
      ackingHandlers(stats, now, acks.releaseRatio),
      placement,
    );
  }

  get producerCount(): number {
    return this.#producers.length;
  }

  start(ratePerSecond: number): void {
    if (this.#generator === undefined) return;
    this.#generator.setRate(ratePerSecond);
    this.#generator.start();
  }

  setRate(ratePerSecond: number): void {
    this.#generator?.setRate(ratePerSecond);
  }

  stop(): void {
    this.#generator?.stop();
  }

  report(): WorkerReport {
    const usage = process.cpuUsage();
    return this.stats.report({
      scheduled: this.#generator?.scheduled() ?? 0,
      cpuMicros: usage.user + usage.system,
      rssBytes: process.memoryUsage().rss,
    });
  }

  /** Closes producers, then consumers, each within `timeoutMs`; returns what failed. */
  async closeClients(timeoutMs: number): Promise<string[]> {
    this.#generator?.stop();
    const problems: string[] = [];
    const attempt = async (work: () => Promise<void>, what: string) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`took longer than ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        await Promise.race([work(), deadline]);
      } catch (error) {
        problems.push(`${what} failed: ${(error as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
    };
    const producers = this.#producers.splice(0);
    const consumers = this.#consumers.splice(0);
    await Promise.all(producers.map((p, i) => attempt(() => p.close(), `closing producer ${i}`)));
    await Promise.all(consumers.map((c, i) => attempt(() => c.close(), `closing consumer ${i}`)));
    return problems;
  }
}

/**
 * The harness's side of per-message mode: a first delivery is released with probability
 * `releaseRatio` (drawn per delivery), everything else accepted, and a redelivered message
 * always accepted, so every message ends accepted exactly once. End-to-end latency is taken at
 * the delivery that is accepted; the message counts as received once the accept is confirmed.
 */
export function ackingHandlers(
  stats: LoadStats,
  now: () => number,
  releaseRatio: number,
  random: () => number = Math.random,
): AckingHandlers {
  return {
    onDelivery(payload, redelivered) {
      const release = !redelivered && releaseRatio > 0 && random() < releaseRatio;
      stats.recordDelivery(now() - readStamp(payload), redelivered, release);
      return release ? "release" : "accept";
    },
    onAccepted(bytes, ackLatencyMs) {
      stats.recordAccepted(bytes, ackLatencyMs);
    },
    onAnswerFailed(error) {
      stats.recordAnswerFailure(error);
    },
  };
}

// The run's load workers as one: where each producer and consumer runs, the rate split between
// workers, and every report merged into the coordinator's RunStats.
//
// Placement follows OMB's distributed ensemble: with one worker it runs everything; with two or
// more, the first half (rounded up) run the producers and the rest the consumers, each list
// dealt round-robin. So producer pacing never waits behind consumer decoding in one event loop.
// A worker's share of the rate is its share of the producers.

import type { RunStats } from "../stats.ts";
import type { Workload } from "../workload.ts";
import type { LoadWorker } from "./handle.ts";
import type { ConsumerSpec } from "./session.ts";

export type Placement = { consumers: ConsumerSpec[]; producers: string[] };

/** Deals the workload's clients to `workerCount` workers (see the file header). */
export function placeClients(
  workload: Workload,
  topics: readonly string[],
  subscriptionName: (topic: number, subscription: number) => string,
  workerCount: number,
): Placement[] {
  if (!Number.isSafeInteger(workerCount) || workerCount < 1) {
    throw new RangeError(`workerCount ${workerCount} must be a positive integer`);
  }
  const placements: Placement[] = Array.from({ length: workerCount }, () => ({
    consumers: [],
    producers: [],
  }));
  const producerWorkers = workerCount === 1 ? 1 : Math.ceil(workerCount / 2);
  const consumerWorkers = workerCount === 1 ? 1 : workerCount - producerWorkers;
  const consumerBase = workerCount === 1 ? 0 : producerWorkers;
  let nextConsumer = 0;
  topics.forEach((topic, t) => {
    for (let s = 0; s < workload.subscriptionsPerTopic; s++) {
      const members = workload.consumerPerSubscription;
      for (let memberIndex = 0; memberIndex < members; memberIndex++) {
        const worker = consumerBase + (nextConsumer++ % consumerWorkers);
        const subscription = subscriptionName(t, s);
        placements[worker]!.consumers.push({ topic, subscription, memberIndex, members });
      }
    }
  });
  let nextProducer = 0;
  for (const topic of topics) {
    for (let p = 0; p < workload.producersPerTopic; p++) {
      placements[nextProducer++ % producerWorkers]!.producers.push(topic);
    }
  }
  return placements;
}

export class Ensemble {
  readonly workers: readonly LoadWorker[];
  readonly #stats: RunStats;
  readonly #producerShares: number[];
  /** Rejects when any worker dies. */
  readonly died: Promise<never>;

  constructor(workers: readonly LoadWorker[], placements: readonly Placement[], stats: RunStats) {
    if (workers.length !== placements.length) {
      throw new RangeError(`${workers.length} workers for ${placements.length} placements`);
    }
    this.workers = workers;
    this.#stats = stats;
    const producers = placements.reduce((sum, p) => sum + p.producers.length, 0);
    this.#producerShares = placements.map((p) =>
      producers === 0 ? 0 : p.producers.length / producers,
    );
    this.died = Promise.race(workers.map((worker) => worker.died));
    this.died.catch(() => {});
  }

  /** Sends every producing worker its share of the total rate. */
  async #each(action: (worker: LoadWorker, share: number) => Promise<void>): Promise<void> {
    await Promise.all(
      this.workers.map((worker, i) => {
        const share = this.#producerShares[i]!;
        return share > 0 ? action(worker, share) : Promise.resolve();
      }),
    );
  }

  /** Starts every worker (one without producers gets rate 0: it only consumes). */
  async start(ratePerSecond: number): Promise<void> {
    await Promise.all(
      this.workers.map((worker, i) => worker.start(ratePerSecond * this.#producerShares[i]!)),
    );
  }

  setRate(ratePerSecond: number): Promise<void> {
    return this.#each((worker, share) => worker.setRate(ratePerSecond * share));
  }

  stop(): Promise<void> {
    return this.#each((worker) => worker.stop());
  }

  /** Asks every worker for its report and merges them into the run's stats. */
  async collect(): Promise<void> {
    const reports = await Promise.all(this.workers.map((worker) => worker.report()));
    for (const [i, report] of reports.entries()) this.#stats.ingest(i, report);
  }
}

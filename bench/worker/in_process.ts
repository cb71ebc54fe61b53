// The load in the coordinator's own process (`--workers 0`, and runs given a Driver object, as
// the tests do): one WorkerSession on the coordinator's driver instance, which already created
// the topics. Producers, consumers and the driver's clients then share the coordinator's one
// JavaScript thread, which is what the harness did before it had worker processes.

import type { Driver } from "../driver.ts";
import type { WorkerReport } from "../load_stats.ts";
import type { SetupReply, SetupRequest } from "./messages.ts";
import { epochNowMs } from "./protocol.ts";
import { type ClientPlan, WorkerSession } from "./session.ts";
import type { LoadWorker } from "./handle.ts";

/** The label of the in-process worker: results count it as no worker process. */
export const IN_PROCESS_LABEL = "the coordinator process";

/** Closing clients may take at most this long each. */
const CLOSE_TIMEOUT_MS = 15_000;

export class InProcessWorker implements LoadWorker {
  readonly label = IN_PROCESS_LABEL;
  readonly pid = process.pid;
  readonly clockOffsetMs = 0;
  readonly died: Promise<never> = new Promise<never>(() => {});
  readonly #driver: Driver;
  #session: WorkerSession | undefined;

  constructor(driver: Driver) {
    this.#driver = driver;
  }

  async setup(_request: Omit<SetupRequest, "clockOffsetMs">): Promise<SetupReply> {
    return {
      settings: this.#driver.settings(),
      durability: this.#driver.durability(),
      brokerProcess: this.#driver.brokerProcess?.() ?? null,
    };
  }

  async clients(plan: ClientPlan): Promise<void> {
    this.#session = new WorkerSession(this.#driver, plan, epochNowMs);
    await this.#session.createClients();
  }

  async start(ratePerSecond: number): Promise<void> {
    this.#sessionOrThrow().start(ratePerSecond);
  }

  async setRate(ratePerSecond: number): Promise<void> {
    this.#sessionOrThrow().setRate(ratePerSecond);
  }

  async stop(): Promise<void> {
    this.#sessionOrThrow().stop();
  }

  async report(): Promise<WorkerReport> {
    return this.#sessionOrThrow().report();
  }

  async close(): Promise<string[]> {
    return (await this.#session?.closeClients(CLOSE_TIMEOUT_MS)) ?? [];
  }

  kill(): void {
    this.#session?.stop();
  }

  #sessionOrThrow(): WorkerSession {
    if (this.#session === undefined) throw new Error("in-process worker: no clients yet");
    return this.#session;
  }
}

// Jepsen's total-queue checker, for sluice's queues over TCP, under SIGKILL.
//
//   bun scripts/queue_crash.ts --cycles N [--seed S] [--release-rate R] [--reject-rate R]
//                              [--delay-ms-max D] [--priorities] [--keep]
//   (npm run test:queue-crash -- --cycles N)
//   deno run -A scripts/queue_crash.ts --cycles N
//
// A broker process (`sluice serve --data DIR --port P`, under the runtime running this) is
// SIGKILLed at random moments and restarted on the same port, N times. All along, producers
// publish unique values with acks "all", and QueueConsumers accept what they receive (they
// release a few first, 3% by default, so that redeliveries happen; with --reject-rate they
// also reject some, whose dead letters then count as dequeued; with --delay-ms-max D every
// release waits a delay uniform in [1, D] ms and one value in four is published with a
// `sluice-delay-ms` header uniform in [0, D], so records sit in the delay tiers across the
// kills, and the drain waits for the tiers to empty too). At
// the end the producers stop, the queue is drained, the dead-letter topic read, and the history
// judged as Jepsen's total-queue checker does:
//
//   attempted  values sent             confirmed  sends acknowledged (durable)
//   dequeued   values whose accept was confirmed, whose accept's outcome is unknown (sent,
//              then the broker died: it may be durable, and then the record never comes back),
//              or that are in the dead-letter topic
//   lost       confirmed, never dequeued             unexpected  dequeued, never attempted
//   duplicated accepted (confirmed) more than once   recovered   dequeued, send outcome unknown
//
// An accept whose outcome is unknown is checked against the broker's own durable count of
// accepts: the accepts it made durable that no client heard confirmed must be at least the
// values dequeued only that way (the excess is lost), and never below zero (a confirmed accept
// the broker forgot is lost too). Valid only with lost = 0 and unexpected = 0; duplicates are
// allowed (at-least-once). With --priorities the queue is a priority queue of one level per
// partition (the producers' keys spread records over the levels), so fetches serve the levels
// highest first throughout. The last line of stdout is one JSON object with the counts; the
// exit code is 1 when invalid.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  Admin,
  Consumer,
  Producer,
  QueueConsumer,
  type QueueMessage,
} from "../protocol/client/mod.ts";
import { isAmbiguous } from "../protocol/client/errors.ts";

const ROOT = join(import.meta.dirname, "..");
const TOPIC = "crash-jobs";
const DEAD_LETTER_TOPIC = "crash-jobs-dead";
const QUEUE = "crash-work";
const PARTITIONS = 3;
const PRODUCERS = 2;
const CONSUMERS = 2;
/** Sends one producer keeps outstanding, and the steady rate each publishes at: traffic never
 * stops, so the kills land in the middle of sends, fetches and acks. */
const SEND_WINDOW = 16;
const VALUES_PER_MS = 0.5;
const RELEASE_RATE_DEFAULT = 0.03;
const READY_TIMEOUT_MS = 20_000;
const DRAIN_TIMEOUT_MS = 60_000;
const STOP_MS_MAX = 10_000;

export type QueueCrashOptions = {
  cycles: number;
  seed?: number;
  /** How long the broker runs between kills: uniform in [min, max] ms after it is ready. */
  cycleMsMin?: number;
  cycleMsMax?: number;
  /** Of the records received, the share released (they come again) and rejected. */
  releaseRate?: number;
  rejectRate?: number;
  /** Declare the queue with one priority level per partition (engine/queue_priority.ts). */
  priorities?: boolean;
  /** Delays switched on: releases and a quarter of the publishes wait up to this many ms. */
  delayMsMax?: number;
  /** Keep the data directory (its path is printed). */
  keep?: boolean;
  log?: (line: string) => void;
};

export type QueueCrashReport = {
  cycles: number;
  /** The queue's priority levels as the broker reported them at the end (null: none). */
  priorities: number | null;
  attempted: number;
  confirmed: number;
  accepted: number;
  lost: number;
  unexpected: number;
  duplicated: number;
  recovered: number;
  acceptUnknown: number;
  /** Accepts the broker made durable that no client heard confirmed. */
  acceptedUnconfirmed: number;
  deadLettered: number;
  redelivered: number;
  valid: boolean;
  seed: number;
  ms: number;
};

/** mulberry32, so a run replays from its seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** argv that runs a TypeScript file under the runtime running this script. */
function runtimeArgv(script: string, args: string[]): [string, string[]] {
  const deno = (process.versions as Record<string, string | undefined>)["deno"] !== undefined;
  return deno
    ? [process.execPath, ["run", "-A", script, ...args]]
    : [process.execPath, [script, ...args]];
}

/** One broker process: started, waited for, SIGKILLed. */
class Broker {
  readonly dataDir: string;
  port = 0;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #output = "";

  constructor(dataDir: string) {
    this.dataDir = dataDir;
  }

  get output(): string {
    return this.#output.slice(-4000);
  }

  /** Starts on this.port (0 the first time), retrying while the port is not free yet. */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const started = await this.#startOnce();
      if (started) return;
      if (attempt >= 20) throw new Error(`broker did not start:\n${this.output}`);
      await sleep(50 * attempt);
    }
  }

  async #startOnce(): Promise<boolean> {
    const args = ["serve", "--data", this.dataDir, "--port", String(this.port)];
    const [command, argv] = runtimeArgv(join(ROOT, "bin/sluice.ts"), args);
    const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
    this.#child = child;
    let stdout = "";
    let exited = false;
    this.#exited = new Promise((resolve) => {
      child.once("exit", () => {
        exited = true;
        resolve();
      });
    });
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      this.#output += chunk.toString();
    });
    child.stderr!.on("data", (chunk: Buffer) => {
      this.#output += chunk.toString();
    });
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!/sluice listening on [^\s:]+:\d+/.test(stdout) && !exited) {
      if (Date.now() > deadline) throw new Error(`broker not ready:\n${this.output}`);
      await sleep(5);
    }
    const match = /sluice listening on [^\s:]+:(\d+)/.exec(stdout);
    if (match === null) return false;
    this.port = Number(match[1]);
    return true;
  }

  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    process.kill(child.pid!, "SIGKILL");
    await this.#exited;
  }

  /** SIGTERM (a clean shutdown), then SIGKILL if it has not exited within STOP_MS_MAX. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    process.kill(child.pid!, "SIGTERM");
    const timer = setTimeout(() => process.kill(child.pid!, "SIGKILL"), STOP_MS_MAX);
    await this.#exited;
    clearTimeout(timer);
  }
}

/** What happened to every value, as the clients saw it. */
class History {
  readonly attempted = new Set<string>();
  readonly confirmed = new Set<string>();
  /** value → accepts the broker confirmed. */
  readonly accepted = new Map<string, number>();
  readonly acceptUnknown = new Set<string>();
  readonly deadLettered = new Set<string>();
  redelivered = 0;

  /** `brokerAccepted`: the queue's durable count of accepts, after the drain. */
  report(
    cycles: number,
    brokerAccepted: number,
    seed: number,
    ms: number,
  ): Omit<QueueCrashReport, "priorities"> {
    const dequeued = new Set([...this.accepted.keys(), ...this.acceptUnknown]);
    for (const value of this.deadLettered) dequeued.add(value);
    let lost = 0;
    let onlyUnknown = 0;
    for (const value of this.confirmed) {
      if (!dequeued.has(value)) lost++;
      else if (!this.accepted.has(value) && !this.deadLettered.has(value)) onlyUnknown++;
    }
    let confirmedAccepts = 0;
    for (const count of this.accepted.values()) confirmedAccepts += count;
    const unconfirmedDurable = brokerAccepted - confirmedAccepts;
    lost += Math.max(0, onlyUnknown - Math.max(0, unconfirmedDurable));
    lost += Math.max(0, -unconfirmedDurable);
    let unexpected = 0;
    let recovered = 0;
    for (const value of dequeued) {
      if (!this.attempted.has(value)) unexpected++;
      else if (!this.confirmed.has(value)) recovered++;
    }
    let duplicated = 0;
    for (const count of this.accepted.values()) if (count > 1) duplicated++;
    return {
      cycles,
      attempted: this.attempted.size,
      confirmed: this.confirmed.size,
      accepted: this.accepted.size,
      lost,
      unexpected,
      duplicated,
      recovered,
      acceptUnknown: this.acceptUnknown.size,
      acceptedUnconfirmed: unconfirmedDurable,
      deadLettered: this.deadLettered.size,
      redelivered: this.redelivered,
      valid: lost === 0 && unexpected === 0,
      seed,
      ms,
    };
  }
}

/** Producers and consumers over TCP, running until told to stop. */
class Workload {
  readonly history = new History();
  readonly errors: string[] = [];
  #stopProducing = false;
  #stopConsuming = false;
  #random: () => number;
  #rates: { release: number; reject: number; delayMsMax: number };
  #producers: Producer[] = [];
  #consumers: QueueConsumer[] = [];
  #running: Promise<void>[] = [];

  constructor(
    port: number,
    random: () => number,
    rates: { release: number; reject: number; delayMsMax: number },
  ) {
    this.#random = random;
    this.#rates = rates;
    const retry = { retryBackoffMs: 10, retryBackoffMsMax: 100, connectTimeoutMs: 2_000 };
    for (let i = 0; i < PRODUCERS; i++) {
      // A short delivery timeout: sends caught by a kill may end with their outcome unknown,
      // and the values that still arrive are the checker's `recovered`.
      this.#producers.push(
        new Producer({ port, acks: "all", lingerMs: 1, deliveryTimeoutMs: 300, ...retry }),
      );
    }
    for (let i = 0; i < CONSUMERS; i++) {
      this.#consumers.push(
        new QueueConsumer({ port, queue: QUEUE, maxRecords: 50, maxWaitMs: 100, ...retry }),
      );
    }
  }

  start(): void {
    this.#running.push(...this.#producers.map((producer, i) => this.#produce(producer, i)));
    this.#running.push(...this.#consumers.map((consumer) => this.#consume(consumer)));
  }

  async #produce(producer: Producer, id: number): Promise<void> {
    const outstanding = new Set<Promise<void>>();
    const startMs = Date.now();
    for (let seq = 0; !this.#stopProducing; ) {
      const quota = (Date.now() - startMs) * VALUES_PER_MS;
      if (seq >= quota || outstanding.size >= SEND_WINDOW) {
        await (outstanding.size > 0 ? Promise.race(outstanding) : sleep(5));
        continue;
      }
      const value = `p${id}-${seq++}`;
      this.history.attempted.add(value);
      const delayMsMax = this.#rates.delayMsMax;
      const delayed = delayMsMax > 0 && seq % 4 === 0;
      const delayMs = Math.floor(this.#random() * (delayMsMax + 1));
      const headers: Record<string, string> = delayed ? { "sluice-delay-ms": String(delayMs) } : {};
      const sent: Promise<void> = producer.send({ topic: TOPIC, value, headers }).then(
        () => {
          this.history.confirmed.add(value);
        },
        () => undefined, // Outcome unknown: attempted, not confirmed.
      );
      outstanding.add(sent);
      void sent.then(() => outstanding.delete(sent));
    }
    await Promise.all(outstanding);
  }

  async #consume(consumer: QueueConsumer): Promise<void> {
    while (!this.#stopConsuming) {
      let messages: QueueMessage[];
      try {
        messages = await consumer.poll();
      } catch (error) {
        this.errors.push(`poll: ${String(error)}`);
        await sleep(50);
        continue;
      }
      for (const message of messages) this.#answer(message);
    }
  }

  #answer(message: QueueMessage): void {
    const value = message.value === null ? "" : new TextDecoder().decode(message.value);
    if (message.redelivered) this.history.redelivered++;
    const draw = this.#random();
    if (draw < this.#rates.release) {
      const delayMsMax = this.#rates.delayMsMax;
      const delayMs = delayMsMax > 0 ? 1 + Math.floor(this.#random() * delayMsMax) : 0;
      message.release({ delayMs }).catch(() => undefined);
      return;
    }
    // A reject's record is found in the dead-letter topic at the end, if it got there.
    if (draw < this.#rates.release + this.#rates.reject) {
      message.reject().catch(() => undefined);
      return;
    }
    message.accept().then(
      () => {
        this.history.accepted.set(value, (this.history.accepted.get(value) ?? 0) + 1);
      },
      (error: unknown) => {
        if (isAmbiguous(error)) this.history.acceptUnknown.add(value);
      },
    );
  }

  /** Stops publishing; resolves once every send has its outcome. */
  async stopProducing(): Promise<void> {
    this.#stopProducing = true;
    await Promise.all(this.#running.slice(0, PRODUCERS));
    await Promise.all(this.#producers.map((producer) => producer.close()));
  }

  get pendingAnswers(): number {
    return this.#consumers.reduce((sum, consumer) => sum + consumer.pendingAnswers, 0);
  }

  async stopConsuming(): Promise<void> {
    this.#stopConsuming = true;
    await Promise.all(this.#consumers.map((consumer) => consumer.close()));
    await Promise.all(this.#running);
  }
}

async function setUp(port: number, priorities: boolean): Promise<void> {
  const admin = new Admin({ port });
  try {
    await admin.createTopics([
      { name: TOPIC, partitions: PARTITIONS, config: { fsync: "always" } },
      { name: DEAD_LETTER_TOPIC, partitions: 1, config: { fsync: "always" } },
    ]);
    // The limit is high: every crash counts one more delivery for the records held then.
    await admin.declareQueue(QUEUE, {
      topic: TOPIC,
      from: "beginning",
      deadLetterTopic: DEAD_LETTER_TOPIC,
      deliveryLimit: 255,
      lockMs: 5_000,
      ...(priorities ? { priorities: PARTITIONS } : {}),
    });
  } finally {
    await admin.close();
  }
}

/** The queue's durable count of accepts, and its priority levels as the broker has them. */
async function brokerQueue(port: number): Promise<{ accepted: number; priorities: number | null }> {
  const admin = new Admin({ port });
  try {
    const [queue] = await admin.listQueues([QUEUE]);
    return { accepted: queue!.stats.accepted, priorities: queue!.priorities };
  } finally {
    await admin.close();
  }
}

/** Waits until nothing is ready, acquired or on its way to the dead-letter topic. */
async function drain(port: number, workload: Workload): Promise<void> {
  const admin = new Admin({ port });
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  try {
    for (;;) {
      const [queue] = await admin.listQueues([QUEUE]);
      const { ready, acquired, deadLettering, delayed } = queue!.stats;
      const left = ready + acquired + deadLettering + delayed;
      if (left === 0 && workload.pendingAnswers === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`not drained: ready ${ready}, acquired ${acquired}, delayed ${delayed}`);
      }
      await sleep(20);
    }
  } finally {
    await admin.close();
  }
}

/** Every value in the dead-letter topic. */
async function readDeadLetters(port: number): Promise<string[]> {
  const admin = new Admin({ port });
  const [end] = await admin.listOffsets([{ topic: DEAD_LETTER_TOPIC, partition: 0, at: "latest" }]);
  await admin.close();
  const consumer = new Consumer({ port, maxWaitMs: 50 });
  const values: string[] = [];
  consumer.assign([{ topic: DEAD_LETTER_TOPIC, partition: 0, offset: 0 }]);
  let next = 0;
  while (next < end!.offset) {
    for (const record of await consumer.poll()) {
      values.push(record.value === null ? "" : new TextDecoder().decode(record.value));
      next = record.offset + 1;
    }
  }
  await consumer.close();
  return values;
}

export async function runQueueCrashCheck(options: QueueCrashOptions): Promise<QueueCrashReport> {
  const startedMs = Date.now();
  const seed = options.seed ?? Date.now() % 2 ** 31;
  const random = prng(seed);
  const log = options.log ?? (() => {});
  const [minMs, maxMs] = [options.cycleMsMin ?? 100, options.cycleMsMax ?? 500];
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-queue-crash-"));
  const broker = new Broker(dataDir);
  let workload: Workload | undefined;
  try {
    await broker.start();
    await setUp(broker.port, options.priorities === true);
    workload = new Workload(broker.port, random, {
      release: options.releaseRate ?? RELEASE_RATE_DEFAULT,
      reject: options.rejectRate ?? 0,
      delayMsMax: options.delayMsMax ?? 0,
    });
    workload.start();
    for (let cycle = 1; cycle <= options.cycles; cycle++) {
      await sleep(minMs + Math.floor(random() * (maxMs - minMs)));
      await broker.kill();
      await broker.start();
      const { attempted, confirmed, accepted } = workload.history;
      log(
        `cycle ${cycle}: ${attempted.size} sent, ${confirmed.size} confirmed, ` +
          `${accepted.size} accepted`,
      );
    }
    await workload.stopProducing();
    await drain(broker.port, workload);
    await workload.stopConsuming();
    for (const value of await readDeadLetters(broker.port))
      workload.history.deadLettered.add(value);
    for (const error of workload.errors) log(`client error: ${error}`);
    const { accepted, priorities } = await brokerQueue(broker.port);
    const ms = Date.now() - startedMs;
    return { ...workload.history.report(options.cycles, accepted, seed, ms), priorities };
  } catch (error) {
    log(`broker output:\n${broker.output}`);
    throw error;
  } finally {
    await workload?.stopConsuming().catch(() => undefined);
    await broker.stop();
    if (options.keep === true) log(`data kept in ${dataDir}`);
    else rmSync(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      cycles: { type: "string", default: "20" },
      seed: { type: "string" },
      keep: { type: "boolean", default: false },
      priorities: { type: "boolean", default: false },
      "release-rate": { type: "string", default: String(RELEASE_RATE_DEFAULT) },
      "reject-rate": { type: "string", default: "0" },
      "delay-ms-max": { type: "string", default: "0" },
    },
  });
  const delayMsMax = Number(values["delay-ms-max"]);
  if (!Number.isSafeInteger(delayMsMax) || delayMsMax < 0 || delayMsMax > 31_536_000_000) {
    console.error(`queue_crash: --delay-ms-max ${values["delay-ms-max"]} is not in [0, 1 year]`);
    process.exit(2);
  }
  const rate = (name: "release-rate" | "reject-rate") => {
    const value = Number(values[name]);
    if (!(value >= 0 && value <= 1)) {
      console.error(`queue_crash: --${name} ${values[name]} is not in [0, 1]`);
      process.exit(2);
    }
    return value;
  };
  const cycles = Number(values.cycles);
  if (!Number.isSafeInteger(cycles) || cycles < 1) {
    console.error(`queue_crash: --cycles ${values.cycles} is not a positive integer`);
    process.exit(2);
  }
  const report = await runQueueCrashCheck({
    cycles,
    keep: values.keep,
    priorities: values.priorities,
    releaseRate: rate("release-rate"),
    rejectRate: rate("reject-rate"),
    delayMsMax,
    log: (line) => console.error(line),
    ...(values.seed === undefined ? {} : { seed: Number(values.seed) }),
  });
  const { valid, seed, ms, ...counts } = report;
  console.log(JSON.stringify({ ...counts, valid, seed, ms }));
  process.exitCode = valid ? 0 : 1;
}

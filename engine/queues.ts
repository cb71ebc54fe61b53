// The queues of a data directory: declared, recovered, deleted, and found by name. Each queue
// is a Queue (queue.ts); this file owns their files and the one timer that ends due locks.
//
//   <data>/
//     __meta/queues/<name>.json   the declared options and start offsets (written atomically)
//     __queues/<name>/            the queue's state log (queue_state_log.ts)
//
// A queue exists once its metadata file does. Declaring writes the state log's first
// generation (synced) before the metadata, so a crash in between leaves only a state directory,
// which the next open deletes. Deleting removes the metadata first, then renames the state
// directory to `*.deleted` and removes it; leftovers are removed at the next open.

import fs from "node:fs";
import { join } from "node:path";
import { SluiceError } from "../record/mod.ts";
import { ioError } from "./errors.ts";
import type { FileIO } from "./io.ts";
import type { PartitionLog } from "./partition_log.ts";
import type { QueueAck } from "./queue_ack.ts";
import {
  differingField,
  parseQueueConfig,
  QUEUES_MAX,
  type QueueConfig,
  type QueueOptions,
  queueConfigJson,
  resolveQueueOptions,
  validateQueueName,
} from "./queue_config.ts";
import type { QueueFetchOptions } from "./queue_fetch.ts";
import { DelayTiers } from "./queue_delay.ts";
import { Queue, type QueueFetchResult, type QueueHost, type QueueStats } from "./queue.ts";
import { SPARE_BYTES_LIMIT, SYNCS_IN_FLIGHT_MAX } from "./queue_state_log.ts";
import type { TailCacheBudget } from "./tail_cache_budget.ts";

/** What the queues need from the engine's topics. */
export type QueueTopics = {
  /** The logs of a topic, or undefined when it does not exist. */
  logs(topic: string): PartitionLog[] | undefined;
  /** Creates a topic with one partition (for dead letters). */
  createTopic(topic: string): Promise<void>;
};

export type QueuesOptions = {
  dataDir: string;
  io: FileIO;
  now: () => number;
  warn: (message: string) => void;
  topics: QueueTopics;
  /** The state-log size from which compaction is considered (default 4 MiB). */
  compactAfterBytes?: number;
  /** How often expired records at queue heads are looked for (default 1,000 ms). */
  ttlCheckMs?: number;
  /** fdatasyncs of one queue's state log in flight at once (default 4). */
  syncsInFlight?: number;
  /** Zeros a state log's spare generation holds at most (the log's default when absent). */
  spareBytesMax?: number;
  /** Told each state-log commit fdatasync's duration in seconds, of every queue. */
  onFsync?: (seconds: number) => void;
  /** The engine's tail-cache budget, which the delay logs' chunks count against. */
  tailCacheBudget?: TailCacheBudget;
};

/** A sweep timer never waits longer than this, whatever the clock says. */
const SWEEP_DELAY_MS_MAX = 60_000;
/** The longest interval between looks for expired records at queue heads. */
export const TTL_CHECK_MS_MAX = SWEEP_DELAY_MS_MAX;

function checkSyncsInFlight(value: number | undefined): void {
  if (value === undefined) return;
  const fits = Number.isSafeInteger(value) && value >= 1 && value <= SYNCS_IN_FLIGHT_MAX;
  if (!fits) {
    throw new SluiceError(
      "INVALID_CONFIG",
      `queueSyncsInFlight ${String(value)} must be an integer in [1, ${SYNCS_IN_FLIGHT_MAX}]`,
      { field: "queueSyncsInFlight", value: String(value) },
    );
  }
}

function checkSpareBytesMax(value: number | undefined): void {
  if (value === undefined) return;
  if (!Number.isSafeInteger(value) || value < 0 || value > SPARE_BYTES_LIMIT) {
    throw new SluiceError(
      "INVALID_CONFIG",
      `queueSpareBytesMax ${String(value)} must be an integer in [0, ${SPARE_BYTES_LIMIT}]`,
      { field: "queueSpareBytesMax", value: String(value) },
    );
  }
}

export class Queues {
  readonly #options: QueuesOptions;
  readonly #host: QueueHost;
  readonly #queues = new Map<string, Queue>();
  /** Declares and deletes of one name run one after another. */
  readonly #serial = new Map<string, Promise<unknown>>();
  readonly #creatingTopics = new Map<string, Promise<void>>();
  /** The reject-publish queues with a max length, by the topic they read. */
  readonly #rejectPublish = new Map<string, Queue[]>();
  /** Priority levels by the topic a priority queue reads (queue_priority.ts). */
  readonly #levels = new Map<string, number>();
  #generation = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAtMs = Number.POSITIVE_INFINITY;
  #closed = false;

  private constructor(options: QueuesOptions) {
    this.#options = options;
    this.#host = {
      io: options.io,
      ...(options.compactAfterBytes === undefined
        ? {}
        : { compactAfterBytes: options.compactAfterBytes }),
      ...(options.ttlCheckMs === undefined ? {} : { ttlCheckMs: options.ttlCheckMs }),
      ...(options.syncsInFlight === undefined ? {} : { syncsInFlight: options.syncsInFlight }),
      ...(options.spareBytesMax === undefined ? {} : { spareBytesMax: options.spareBytesMax }),
      ...(options.onFsync === undefined ? {} : { onFsync: options.onFsync }),
      now: options.now,
      warn: options.warn,
      deadLetterLogs: (topic) => this.#deadLetterLogs(topic),
      scheduleSweep: (atMs) => this.#scheduleSweep(atMs),
    };
  }

  /** Opens every declared queue of `dataDir`, recovering its state. */
  static async open(options: QueuesOptions): Promise<Queues> {
    const ttlCheckMs = options.ttlCheckMs;
    if (ttlCheckMs !== undefined) {
      const fits = Number.isSafeInteger(ttlCheckMs) && ttlCheckMs >= 1;
      if (!fits || ttlCheckMs > TTL_CHECK_MS_MAX) {
        throw new SluiceError(
          "INVALID_CONFIG",
          `ttlCheckMs ${String(ttlCheckMs)} must be an integer in [1, ${TTL_CHECK_MS_MAX}]`,
          { field: "ttlCheckMs", value: String(ttlCheckMs) },
        );
      }
    }
    checkSyncsInFlight(options.syncsInFlight);
    checkSpareBytesMax(options.spareBytesMax);
    const queues = new Queues(options);
    try {
      fs.mkdirSync(queues.#metaDir, { recursive: true });
      fs.mkdirSync(queues.#stateRoot, { recursive: true });
    } catch (error) {
      throw ioError(error, "creating the queue directories");
    }
    await queues.#load();
    return queues;
  }

  get #metaDir(): string {
    return join(this.#options.dataDir, "__meta", "queues");
  }

  get #stateRoot(): string {
    return join(this.#options.dataDir, "__queues");
  }

  #stateDir(name: string): string {
    return join(this.#stateRoot, name);
  }

  async #load(): Promise<void> {
    const declared = new Set<string>();
    for (const file of fs.readdirSync(this.#metaDir)) {
      if (!file.endsWith(".json")) continue;
      const path = join(this.#metaDir, file);
      // Even a queue that cannot open keeps its state directory for a later attempt.
      declared.add(file.slice(0, -".json".length));
      try {
        const config = parseQueueConfig(fs.readFileSync(path, "utf8"));
        this.#queues.set(config.name, await this.#openQueue(config));
      } catch (error) {
        // One queue that cannot open must not keep the others (or the topics) offline.
        this.#options.warn(`queue ${path} could not be opened and was skipped: ${String(error)}`);
      }
    }
    for (const entry of fs.readdirSync(this.#stateRoot)) {
      // State without metadata: a declare or a delete cut short by a crash.
      if (declared.has(entry)) continue;
      fs.rmSync(join(this.#stateRoot, entry), { recursive: true, force: true });
    }
    this.#indexRejectPublish();
  }

  async #openQueue(config: QueueConfig): Promise<Queue> {
    const logs = this.#options.topics.logs(config.topic);
    if (logs === undefined) {
      throw new SluiceError("UNKNOWN_TOPIC", `its topic '${config.topic}' does not exist`, {
        topic: config.topic,
      });
    }
    checkLevels(config, logs.length);
    if (logs.length !== config.startOffsets.length) {
      throw new SluiceError(
        "INVALID_CONFIG",
        `it was declared on ${config.startOffsets.length} partitions and its topic has ` +
          `${logs.length}`,
        { queue: config.name },
      );
    }
    const dir = this.#stateDir(config.name);
    const existed = fs.existsSync(dir);
    const delays = config.delays ? await this.#openDelays(config, dir) : undefined;
    try {
      if (existed) return await Queue.open(config, this.#host, logs, dir, delays);
      this.#options.warn(
        `queue '${config.name}' has no state directory; it restarts at its start offsets ` +
          "(records are delivered again, none is lost)",
      );
      return await Queue.create(config, this.#host, logs, dir, delays);
    } catch (error) {
      await delays?.close().catch(() => {});
      throw error;
    }
  }

  /** The delay tiers and due log of a queue (queue_delay.ts), in its state directory. */
  #openDelays(config: QueueConfig, dir: string): Promise<DelayTiers> {
    return DelayTiers.open(dir, {
      io: this.#options.io,
      now: this.#options.now,
      warn: (message) => this.#options.warn(`queue '${config.name}': ${message}`),
      fsync: config.fsync === "always",
      ...(this.#options.tailCacheBudget === undefined
        ? {}
        : { tailCacheBudget: this.#options.tailCacheBudget }),
    });
  }

  #checkOpen(): void {
    if (this.#closed) throw new SluiceError("LOG_CLOSED", "The engine's queues are closed");
  }

  /** Runs `task` after every earlier declare or delete of `name` has finished. */
  #inTurn<T>(name: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#serial.get(name) ?? Promise.resolve();
    const run = previous.then(task, task);
    const settled = run.then(
      () => {},
      () => {},
    );
    this.#serial.set(name, settled);
    void settled.then(() => {
      if (this.#serial.get(name) === settled) this.#serial.delete(name);
    });
    return run;
  }

  /** The queue called `name`, or UNKNOWN_QUEUE. */
  get(name: string): Queue {
    this.#checkOpen();
    const queue = typeof name === "string" ? this.#queues.get(name) : undefined;
    if (queue === undefined) {
      throw new SluiceError("UNKNOWN_QUEUE", `Queue '${String(name)}' does not exist`, {
        queue: String(name),
      });
    }
    return queue;
  }

  declare(name: string, options: QueueOptions): Promise<QueueConfig> {
    try {
      this.#checkOpen();
      validateQueueName(name);
      const wanted = resolveQueueOptions(name, options);
      return this.#inTurn(name, () => this.#declare(wanted));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #declare(wanted: ReturnType<typeof resolveQueueOptions>): Promise<QueueConfig> {
    this.#checkOpen();
    const { name } = wanted;
    const existing = this.#queues.get(name);
    if (existing !== undefined) return sameOrRefuse(existing.config, wanted);
    const logs = this.#options.topics.logs(wanted.topic);
    if (logs === undefined) {
      throw new SluiceError(
        "UNKNOWN_TOPIC",
        `Queue '${name}': topic '${wanted.topic}' does not exist`,
        { queue: name, topic: wanted.topic },
      );
    }
    checkLevels(wanted, logs.length);
    if (this.#queues.size >= QUEUES_MAX) {
      throw new SluiceError("INVALID_CONFIG", `Queue limit ${QUEUES_MAX} reached`, {
        queue: name,
      });
    }
    if (wanted.deadLetterTopic !== null) await this.#deadLetterLogs(wanted.deadLetterTopic);
    const config: QueueConfig = Object.freeze({
      ...wanted,
      delays: true,
      startOffsets: Object.freeze(
        logs.map((log) => (wanted.from === "beginning" ? log.logStartOffset : log.highWatermark)),
      ),
      createdMs: this.#options.now(),
    });
    const dir = this.#stateDir(name);
    fs.rmSync(dir, { recursive: true, force: true });
    const delays = await this.#openDelays(config, dir);
    let queue: Queue;
    try {
      queue = await Queue.create(config, this.#host, logs, dir, delays);
    } catch (error) {
      await delays.close().catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    try {
      // The state directory's entry is made durable before the metadata that names the queue.
      this.#options.io.syncDirectory(this.#stateRoot);
      this.#options.io.writeFileAtomic(this.#metaDir, `${name}.json`, queueConfigJson(config));
    } catch (error) {
      await queue.close().catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
      throw ioError(error, `writing metadata of queue '${name}'`);
    }
    this.#queues.set(name, queue);
    this.#indexRejectPublish();
    return config;
  }

  delete(name: string): Promise<void> {
    try {
      this.get(name);
      return this.#inTurn(name, () => this.#delete(name));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #delete(name: string): Promise<void> {
    const queue = this.get(name);
    this.#queues.delete(name);
    this.#indexRejectPublish();
    await queue.close();
    try {
      fs.rmSync(join(this.#metaDir, `${name}.json`), { force: true });
      this.#options.io.syncDirectory(this.#metaDir);
      const dir = this.#stateDir(name);
      const doomed = `${dir}.${Date.now()}.deleted`;
      if (fs.existsSync(dir)) fs.renameSync(dir, doomed);
      fs.rmSync(doomed, { recursive: true, force: true });
    } catch (error) {
      throw ioError(error, `deleting queue '${name}'`);
    }
  }

  /** Deletes every queue reading `topic` (the topic is being deleted). */
  async deleteForTopic(topic: string): Promise<void> {
    const reading = [...this.#queues.values()].filter((queue) => queue.config.topic === topic);
    for (const queue of reading) await this.delete(queue.config.name);
  }

  /**
   * How many of `count` records a publish may append to `topic` now: the fewest any
   * reject-publish queue reading it has room for (queue_maxlen.ts), and the queue with that
   * fewest room (null when every record fits).
   */
  publishRoom(
    topic: string,
    count: number,
    prefixBytes: (k: number) => number,
  ): { taken: number; fullQueue: string | null } {
    let taken = count;
    let fullQueue: string | null = null;
    const limited = this.#closed ? undefined : this.#rejectPublish.get(topic);
    for (const queue of limited ?? []) {
      const room = queue.publishRoom(taken, prefixBytes);
      if (room < taken) {
        taken = room;
        fullQueue = queue.config.name;
      }
    }
    return { taken, fullQueue };
  }

  /** False when no reject-publish queue reads `topic`: publishRoom would take every record. */
  limited(topic: string): boolean {
    return !this.#closed && this.#rejectPublish.has(topic);
  }

  /** Changes whenever a queue is declared or deleted (exchanges cache resolved topics by it). */
  get generation(): number {
    return this.#generation;
  }

  /** The priority levels of `topic` (a priority queue reads it), or undefined. */
  levels(topic: string): number | undefined {
    return this.#levels.get(topic);
  }

  /** Rebuilds the reject-publish queues and priority levels by topic after a queue came or went. */
  #indexRejectPublish(): void {
    this.#generation++;
    this.#rejectPublish.clear();
    this.#levels.clear();
    for (const queue of this.#queues.values()) {
      const { priorities } = queue.config;
      if (priorities !== null) this.#levels.set(queue.config.topic, priorities);
      const { topic, maxLength, maxLengthBytes, overflow } = queue.config;
      const limited = maxLength !== null || maxLengthBytes !== null;
      if (!limited || overflow !== "reject-publish") continue;
      const list = this.#rejectPublish.get(topic);
      if (list === undefined) this.#rejectPublish.set(topic, [queue]);
      else list.push(queue);
    }
  }

  list(): QueueConfig[] {
    this.#checkOpen();
    return [...this.#queues.values()].map((queue) => queue.config);
  }

  stats(name: string): QueueStats {
    return this.get(name).stats();
  }

  purge(name: string): Promise<number> {
    try {
      return this.get(name).purge();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  join(name: string): string {
    return this.get(name).join();
  }

  leave(name: string, memberId: string): number {
    return this.get(name).leave(memberId);
  }

  fetch(name: string, memberId: string, options?: QueueFetchOptions): QueueFetchResult {
    return this.get(name).fetch(memberId, options);
  }

  /** Queue.prepareFetch of the queue `name`; undefined for one unknown (the fetch says so). */
  prepareFetch(name: string, maxBytes: number): Promise<unknown> | undefined {
    const queue = typeof name === "string" ? this.#queues.get(name) : undefined;
    return queue === undefined ? undefined : queue.prepareFetch(maxBytes);
  }

  ack(name: string, memberId: string, acks: readonly QueueAck[]): Promise<void> {
    try {
      return this.get(name).ack(memberId, acks);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Applies now (a refusal throws here); the promise is the outcome's durability. */
  applyAck(name: string, memberId: string, acks: readonly QueueAck[]): Promise<void> {
    return this.get(name).applyAck(memberId, acks);
  }

  onReady(name: string, listener: () => void): () => void {
    return this.get(name).onReady(listener);
  }

  /** Ends every lock due by now in every queue; returns how many ended. */
  expireLocks(): number {
    if (this.#closed) return 0;
    const nowMs = this.#options.now();
    let expired = 0;
    for (const queue of this.#queues.values()) {
      expired += queue.expire(nowMs);
      queue.expireRecords(nowMs);
    }
    return expired;
  }

  /** Waits until every queue's state so far is durable. */
  async flush(): Promise<void> {
    this.#checkOpen();
    await Promise.all([...this.#queues.values()].map((queue) => queue.flush()));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await Promise.allSettled([...this.#serial.values()]);
    const results = await Promise.allSettled([...this.#queues.values()].map((q) => q.close()));
    this.#queues.clear();
    const failed = results.find((result) => result.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  }

  #deadLetterLogs(topic: string): Promise<PartitionLog[]> {
    const logs = this.#options.topics.logs(topic);
    if (logs !== undefined) return Promise.resolve(logs);
    let creating = this.#creatingTopics.get(topic);
    if (creating === undefined) {
      creating = this.#options.topics.createTopic(topic).catch((error) => {
        // Created meanwhile by someone else: that is what was wanted.
        if (!(error instanceof SluiceError && error.code === "TOPIC_EXISTS")) throw error;
      });
      const forget = () => this.#creatingTopics.delete(topic);
      creating.then(forget, forget);
      this.#creatingTopics.set(topic, creating);
    }
    return creating.then(() => {
      const created = this.#options.topics.logs(topic);
      if (created === undefined) {
        throw new SluiceError("UNKNOWN_TOPIC", `Dead-letter topic '${topic}' does not exist`, {
          topic,
        });
      }
      return created;
    });
  }

  /**
   * Makes sure a sweep runs by `atMs`. One timer serves every queue; when it fires it ends due
   * locks and sets itself for the next deadline. The clock may be a test's (injected `now`):
   * the timer then only approximates, and tests call `expireLocks` themselves.
   */
  #scheduleSweep(atMs: number): void {
    if (this.#closed || atMs >= this.#timerAtMs) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const delayMs = Math.min(Math.max(1, atMs - this.#options.now() + 1), SWEEP_DELAY_MS_MAX);
    this.#timerAtMs = atMs;
    this.#timer = setTimeout(() => this.#sweep(), delayMs);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  #sweep(): void {
    this.#timer = undefined;
    this.#timerAtMs = Number.POSITIVE_INFINITY;
    try {
      this.expireLocks();
    } catch (error) {
      this.#options.warn(`the queue lock sweep failed: ${String(error)}`);
    }
    let next = Number.POSITIVE_INFINITY;
    for (const queue of this.#queues.values()) next = Math.min(next, queue.nextSweepMs() ?? next);
    if (Number.isFinite(next)) this.#scheduleSweep(next);
  }
}

/** A priority queue needs a topic of one partition per level. */
function checkLevels(config: { name: string; priorities: number | null }, partitions: number) {
  const { name, priorities } = config;
  if (priorities === null || priorities === partitions) return;
  throw new SluiceError(
    "INVALID_CONFIG",
    `Queue '${name}': priorities ${priorities} needs a topic of ${priorities} partitions ` +
      `(one per level), and its topic has ${partitions}`,
    { queue: name, field: "priorities", value: priorities },
  );
}

function sameOrRefuse(
  existing: QueueConfig,
  wanted: ReturnType<typeof resolveQueueOptions>,
): QueueConfig {
  const field = differingField(existing, wanted);
  if (field === undefined) return existing;
  const have = JSON.stringify(existing[field]);
  const asked = JSON.stringify(wanted[field as keyof typeof wanted]);
  throw new SluiceError(
    "QUEUE_EXISTS",
    `Queue '${existing.name}' exists with ${field} ${have}; the declare asked for ${asked}`,
    { queue: existing.name, field, existing: have, wanted: asked },
  );
}

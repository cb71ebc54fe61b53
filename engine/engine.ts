// The engine: a data directory of topics, each with N partition logs, plus the committed
// offsets of consumer groups. This is the face embedders use (see engine/README.md).
//
//   <data>/
//     .lock                      pid of the process that has the directory open
//     __meta/topics/<name>.json  topic name, partition count, config (written atomically)
//     __offsets/                 committed offsets (offset_store.ts)
//     __meta/queues/<name>.json  queue options and start offsets (queues.ts)
//     __meta/exchanges/<name>.json  exchange type, alternate and bindings (exchanges.ts)
//     __queues/<name>/           queue state: snapshot + delta log (queue_state_log.ts)
//     <topic>-<partition>/       one partition log each (log_open.ts)
//
// A topic exists once its metadata file does; partition directories missing at open (a crash
// during create) are created then. Deleting a topic removes its metadata first, renames the
// partition directories to `*.deleted`, and removes them; leftovers are removed at next open.

import { type CacheDropper, cacheDropper } from "./page_cache.ts";
import { type DirectWrites, loadDirectWrites } from "./direct_io.ts";
import fs from "node:fs";
import { join } from "node:path";
import { BATCH_BYTES_MAX_DEFAULT, SluiceError } from "../record/mod.ts";
import { ioError } from "./errors.ts";
import { FileBudget, sharedFileBudget } from "./file_budget.ts";
import { sharedTailCacheBudget, TailCacheBudget } from "./tail_cache_budget.ts";
import { GroupSync } from "./group_sync.ts";
import { TOPIC_NAME_BYTES_MAX, validateTopicName } from "./topic_name.ts";
import { type FileIO, realFileIO, releaseDeletedMappings } from "./io.ts";
import { LatencyHistogram } from "./latency_histogram.ts";
import {
  definedFields,
  LOG_CONFIG_DEFAULTS,
  type LogConfig,
  resolveLogConfig,
} from "./log_config.ts";
import { OffsetStore } from "./offset_store.ts";
import { RecoveryCheckpoint } from "./recovery_checkpoint.ts";
import { type AppendResult, PartitionLog, type ReadResult } from "./partition_log.ts";
import type { Queue, QueueFetchResult, QueueStats } from "./queue.ts";
import type { QueueAck } from "./queue_ack.ts";
import {
  type QueueConfig,
  type QueueOptions,
  resolveQueueOptions,
  validateQueueName,
} from "./queue_config.ts";
import { SCRUB_BYTES_PER_SEC_DEFAULT, Scrubber } from "./scrubber.ts";
import { openSyncfs } from "./syncfs.ts";
import type { QueueFetchOptions } from "./queue_fetch.ts";
import { Queues } from "./queues.ts";
import {
  type PublishedBatch,
  type PublishHost,
  type PublishOptions,
  publishBatch,
} from "./exchange_publish.ts";
import {
  type BindOptions,
  type ExchangeConfig,
  type ExchangeOptions,
  Exchanges,
} from "./exchanges.ts";
import { yieldToIo } from "./yield_to_io.ts";

export type TopicInfo = { name: string; partitions: number; config: LogConfig; createdMs: number };

export type EngineOptions = {
  /** Config for topics created without one; each field falls back to the log defaults. */
  topicDefaults?: Partial<LogConfig>;
  /** How often sealed segments past retention are deleted (default 5 minutes, as Kafka). */
  retentionCheckIntervalMs?: number;
  /** fsync each offset commit before it is acknowledged (default true). */
  offsetsFsync?: boolean;
  /** Queue state-log size from which compaction is considered (default 4 MiB). */
  queueCompactAfterBytes?: number;
  /**
   * fdatasyncs of one queue's state log in flight at once (default 4, at most 8; 1 makes the
   * group commit serial). See "Durable state" in engine/README.md.
   */
  queueSyncsInFlight?: number;
  /**
   * Zeros a queue state log's spare generation holds at most (default 16 MiB; 0: no spare,
   * every delta write extends the file). See "Durable state" in engine/README.md.
   */
  queueSpareBytesMax?: number;
  /** How often expired records at queue heads are looked for (default 1,000 ms). */
  ttlCheckMs?: number;
  io?: FileIO;
  now?: () => number;
  onWarning?: (message: string) => void;
  /** Partitions of all topics together (default 100,000); a create past it is refused. */
  partitionsMax?: number;
  /** Topics (default 100,000); a create past it is refused. */
  topicsMax?: number;
  /**
   * Rate at which the background scrubber re-checks the CRCs of sealed segments (default
   * 16 MiB/s; 0 turns it off). See engine/scrubber.ts.
   */
  scrubBytesPerSec?: number;
  /**
   * Segment file descriptors held open at once (the open-files budget, file_budget.ts); idle
   * ones are closed least recently used first and reopened on demand. Default: half the
   * process's open-files limit (`ulimit -n`, read from /proc/self/limits), shared by every
   * engine of the process that sets none; 128 where the limit cannot be read.
   */
  openFilesMax?: number;
  /**
   * Bytes of in-memory segment tails (the chunks readers at the tail are served from) that
   * every log of the engine holds together: partitions, queue delay logs, dead-letter topics
   * (tail_cache_budget.ts). Past it, the logs appended to least recently give back chunks
   * already written, and their readers read those bytes from the file. Default 256 MiB,
   * shared by every engine of the process that sets none; at least 1 MiB.
   */
  tailCacheTotalBytes?: number;
  /** An fsync that takes at least this long is reported to onSlowFsync (default 500 ms). */
  slowFsyncMs?: number;
  /** Called after an fsync of a partition's segment that took at least slowFsyncMs. */
  onSlowFsync?: (event: { log: string; ms: number; slowFsyncMs: number }) => void;
  /** The monotonic clock that times fsyncs, in ms (default performance.now); tests pass one. */
  monotonicMs?: () => number;
  /**
   * How the group commit across partitions (group_sync.ts) makes a round durable: "auto"
   * (default) flushes the data directory's file system once per round with syncfs where that
   * is safe and reachable (Linux 5.8+, FFI; see engine/syncfs.ts), or with the FileIO's own
   * `syncFileSystem`, and fdatasyncs each log otherwise, choosing by measured cost;
   * "fdatasync" always syncs log by log; "flush" flushes every round where a flush is
   * reachable (as "auto" when its flush costs least), whatever the measured costs say.
   */
  partitionSync?: PartitionSync;
  /**
   * Drop-behind (engine/page_cache.ts): after a synced flush round, each partition's durable
   * bytes older than its last `dropBehindKeepBytes` (default 8 MiB) leave the page cache,
   * so that a log written at a steady rate writes into freshly freed pages instead of growing
   * the cache into memory the machine has not touched (slow on ballooned VMs). Linux with FFI
   * only, and only with the default FileIO; `false` turns it off.
   */
  dropBehind?: boolean;
  dropBehindKeepBytes?: number;
  /**
   * Drop-behind also after flush rounds that do not sync (topics with fsync "never", or
   * "interval" between its syncs): each range is handed to writeback (without waiting) half a
   * keep behind the tail and dropped a whole keep behind it, so such a log stops growing the
   * page cache too. Readers further behind than the keep read from the disk. Default false;
   * needs `dropBehind`.
   */
  dropBehindUnsynced?: boolean;
  /**
   * Direct writes (engine/direct_io.ts): partitions' flush rounds that fdatasync are written
   * with O_DIRECT from aligned staging buffers instead of through the page cache, so durable
   * appends neither take nor free page-cache pages (drop-behind would free them right after
   * the sync); "all": also the rounds of logs that do not sync when they are larger than
   * what is written in place (64 KiB; smaller ones stay buffered, so readers see them at
   * once); false: every round buffered. Bun on Linux, on a file system that accepts
   * O_DIRECT in the data directory, with the default FileIO; elsewhere segments are written
   * buffered. Default true. `sluice serve` runs with "all": its fetches read bytes not in the
   * page cache on the thread pool first (PartitionLog.prepareRead, cold_read.ts), where a
   * synchronous `read` of bytes written direct reads them from the disk through a mapping.
   */
  directWrites?: boolean | "all";
};

/** The ways the group commit may make a round durable (EngineOptions.partitionSync). */
export type PartitionSync = "auto" | "fdatasync" | "flush";
export const PARTITION_SYNCS: readonly PartitionSync[] = Object.freeze([
  "auto",
  "fdatasync",
  "flush",
]);

/** Fields of a topic's config that `alterTopicConfig` may change on a live topic. */
export const ALTERABLE_TOPIC_CONFIGS: readonly (keyof LogConfig)[] = Object.freeze([
  "segmentBytes",
  "segmentMs",
  "retentionMs",
  "retentionBytes",
  "maxBatchBytes",
  "fsync",
]);

export const SLOW_FSYNC_MS_DEFAULT = 500;

/** Partitions one topic may have (Kafka's practical ceiling; each is a directory). */
export const PARTITIONS_MAX = 10_000;
/** Partitions of all topics together, by default (EngineOptions.partitionsMax). */
export const BROKER_PARTITIONS_MAX_DEFAULT = 100_000;
/** Topics, by default (EngineOptions.topicsMax). */
export const TOPICS_MAX_DEFAULT = 100_000;
/** Opening or removing many partitions yields to other work this often (create, delete, open). */
const OPEN_SLICE_MS = 10;
/** The two ways to publish, made once rather than per published batch. */
const DURABLE: PublishOptions = Object.freeze({
  durable: true,
  batchBytesMax: BATCH_BYTES_MAX_DEFAULT,
});
const NOT_DURABLE: PublishOptions = Object.freeze({
  durable: false,
  batchBytesMax: BATCH_BYTES_MAX_DEFAULT,
});
const RETENTION_CHECK_INTERVAL_MS_DEFAULT = 5 * 60 * 1000;
/** Producer ids reserved per write of `__meta/producer-ids`. */
const PRODUCER_ID_BLOCK = 1000;

const LOG_CONFIG_FIELDS: ReadonlySet<string> = new Set(Object.keys(LOG_CONFIG_DEFAULTS));

/** Data directories open in this process, so one is never opened twice. */
const openDirectories = new Set<string>();

export { TOPIC_NAME_BYTES_MAX, validateTopicName };

type Topic = { info: TopicInfo; logs: PartitionLog[] };

export class Engine {
  readonly dataDir: string;
  readonly offsets: OffsetStore;
  #options: EngineOptions;
  /** Drop-behind's posix_fadvise (page_cache.ts); undefined: nothing is dropped. */
  #dropCache: CacheDropper | undefined;
  /** What direct writes need (direct_io.ts); undefined: segments are written buffered. */
  #directWrites: DirectWrites | undefined;
  #topics = new Map<string, Topic>();
  /** Bumped whenever a topic is created or deleted (exchanges cache resolved topics by it). */
  #topicGeneration = 0;
  /** Topics being created now, with their partition counts (a create yields while it works). */
  #creating = new Map<string, number>();
  #adminTail: Promise<unknown> = Promise.resolve();
  #retentionTimer: ReturnType<typeof setInterval> | undefined;
  #scrubber!: Scrubber;
  #closed = false;
  #producerIds = { next: 0, reservedEnd: 0 };
  #queues!: Queues;
  #exchanges!: Exchanges;
  /** What publish reads of the engine: made once, not per published batch. */
  readonly #publishHost: PublishHost = {
    route: (exchange, routingKey, headers) => this.#exchanges.route(exchange, routingKey, headers),
    routeKey: (exchange, key) => this.#exchanges.routeKey(exchange, key),
    limited: (topic) => this.#queues.limited(topic),
    logs: (topic) => this.#topics.get(topic)?.logs,
    room: (topic, count, prefixBytes) => this.#queues.publishRoom(topic, count, prefixBytes),
    levels: (topic) => this.#queues.levels(topic),
  };
  readonly fileBudget: FileBudget;
  /** The tail-cache budget every log of the engine counts its in-memory tails against. */
  readonly tailCacheBudget: TailCacheBudget;
  /** Every fdatasync of a partition segment since open, in seconds (the /metrics histogram). */
  readonly fsyncSeconds = new LatencyHistogram();
  /** The group commit across partitions every log of the engine shares. */
  readonly groupSync: GroupSync;
  /** Every partition log's recovery point, in one file (`__meta/recovery-points`). */
  readonly checkpoint: RecoveryCheckpoint;
  /**
   * Every commit fdatasync of a queue's state log since open, in seconds: what an fsynced
   * accept waits for (the /metrics histogram sluice_queue_fsync_seconds).
   */
  readonly queueFsyncSeconds = new LatencyHistogram();

  private constructor(
    dataDir: string,
    offsets: OffsetStore,
    options: EngineOptions,
    tailCacheBudget: TailCacheBudget,
  ) {
    this.dataDir = dataDir;
    this.offsets = offsets;
    this.#options = options;
    const { openFilesMax } = options;
    this.fileBudget =
      openFilesMax === undefined ? sharedFileBudget() : new FileBudget(openFilesMax);
    this.tailCacheBudget = tailCacheBudget;
    this.groupSync = openGroupSync(dataDir, options);
    this.checkpoint = RecoveryCheckpoint.open(join(dataDir, "__meta"), {
      io: options.io ?? realFileIO,
      onWarning: (message) => this.#warn(message),
    });
  }

  /** Opens (creating when new) a data directory and every topic in it, recovering as needed. */
  static async open(dataDir: string, options: EngineOptions = {}): Promise<Engine> {
    const dir = fs.realpathSync(ensureDirectory(dataDir));
    if (openDirectories.has(dir)) {
      throw new SluiceError("IO_ERROR", `Data directory ${dir} is already open in this process`, {
        dir,
      });
    }
    const io = options.io ?? realFileIO;
    let opened: Engine | undefined;
    // Made first: a bad scrubBytesPerSec is refused before anything is opened.
    const scrubber = new Scrubber({
      bytesPerSec: options.scrubBytesPerSec ?? SCRUB_BYTES_PER_SEC_DEFAULT,
      logs: () => (opened === undefined ? [] : opened.#allLogs()),
      onWarning: (message) => {
        if (opened !== undefined) opened.#warn(message);
      },
    });
    const { tailCacheTotalBytes } = options;
    const tailCacheBudget =
      tailCacheTotalBytes === undefined
        ? sharedTailCacheBudget()
        : new TailCacheBudget(tailCacheTotalBytes);
    await takeLock(dir, io);
    openDirectories.add(dir);
    let offsets: OffsetStore | undefined;
    let engine: Engine | undefined;
    try {
      const warn = options.onWarning ?? ((message: string) => console.warn(`sluice: ${message}`));
      offsets = await OffsetStore.open(join(dir, "__offsets"), {
        io,
        fsync: options.offsetsFsync ?? true,
        // Damaged commit frames are reported and skipped; later commits stay readable.
        onCorruption: (error) => warn(error.message),
      });
      engine = new Engine(dir, offsets, options, tailCacheBudget);
      // A custom FileIO (tests, fault injection) sees every file operation: no drops beside it.
      if (options.dropBehind !== false && options.io === undefined) {
        engine.#dropCache = await cacheDropper();
      }
      if (options.directWrites !== false && options.io === undefined) {
        engine.#directWrites = await loadDirectWrites(dir);
      }
      await engine.#loadTopics();
      // Written now: the logs' starting points (and what migrated from per-log files) are
      // durable before the first interval, and logs deleted while closed are forgotten.
      await engine.checkpoint.flush();
      engine.checkpoint.start();
      engine.#queues = await engine.#openQueues();
      engine.#exchanges = engine.#openExchanges();
      engine.#startRetention();
      opened = engine;
      engine.#scrubber = scrubber;
      scrubber.start();
      return engine;
    } catch (error) {
      // What was opened before the failure is closed, not left to the collector: a file handle
      // collected open is an error in Bun, and every descriptor counts against the budget.
      const logs = engine === undefined ? [] : engine.#allLogs();
      const queues = engine === undefined ? undefined : engine.#queues;
      await Promise.allSettled([queues?.close()]);
      await Promise.allSettled([...logs.map((log) => log.close()), offsets?.close()]);
      await engine?.checkpoint.close();
      engine?.groupSync.close();
      openDirectories.delete(dir);
      await releaseLock(dir, io);
      throw error;
    }
  }

  get #io(): FileIO {
    return this.#options.io ?? realFileIO;
  }

  get #metaDir(): string {
    return join(this.dataDir, "__meta", "topics");
  }

  async #loadTopics(): Promise<void> {
    fs.mkdirSync(this.#metaDir, { recursive: true });
    for (const entry of fs.readdirSync(this.dataDir)) {
      if (entry.endsWith(".deleted")) fs.rmSync(join(this.dataDir, entry), { recursive: true });
    }
    for (const file of fs.readdirSync(this.#metaDir)) {
      // A temp file left by a crash during an atomic write: the old version is still whole.
      if (file.endsWith(".tmp")) fs.rmSync(join(this.#metaDir, file), { force: true });
      if (!file.endsWith(".json")) continue;
      const info = this.#readTopicInfo(file);
      if (info !== undefined) this.#topics.set(info.name, await this.#openTopic(info));
    }
  }

  #readTopicInfo(file: string): TopicInfo | undefined {
    const path = join(this.#metaDir, file);
    try {
      const raw = JSON.parse(fs.readFileSync(path, "utf8")) as Record<string, unknown>;
      const name = validateTopicName(raw["name"]);
      const partitions = raw["partitions"];
      if (typeof partitions !== "number" || !Number.isSafeInteger(partitions) || partitions < 1) {
        throw new TypeError(`partitions ${String(partitions)} is not a positive integer`);
      }
      const config = resolveLogConfig(raw["config"] as Partial<LogConfig>);
      const createdMs = typeof raw["createdMs"] === "number" ? raw["createdMs"] : 0;
      return { name, partitions, config, createdMs };
    } catch (error) {
      // One unreadable topic must not keep the others offline; it is reported and skipped.
      this.#warn(`topic metadata ${path} is unreadable and was skipped: ${String(error)}`);
      return undefined;
    }
  }

  async #openTopic(info: TopicInfo): Promise<Topic> {
    const logs: PartitionLog[] = [];
    let sliceStartMs = performance.now();
    try {
      for (let partition = 0; partition < info.partitions; partition++) {
        // Thousands of partitions take seconds to open: let other connections' requests in.
        if (performance.now() - sliceStartMs >= OPEN_SLICE_MS) {
          await yieldToIo();
          sliceStartMs = performance.now();
        }
        const name = `${info.name}-${partition}`;
        logs.push(
          await PartitionLog.open(join(this.dataDir, name), info.config, {
            name,
            ...(this.#options.io === undefined ? {} : { io: this.#options.io }),
            ...(this.#options.now === undefined ? {} : { now: this.#options.now }),
            onWarning: (message) => this.#warn(message),
            fileBudget: this.fileBudget,
            tailCacheBudget: this.tailCacheBudget,
            groupSync: this.groupSync,
            checkpoint: this.checkpoint,
            ...(this.#dropCache === undefined ? {} : { dropCache: this.#dropCache }),
            ...(this.#directWrites === undefined ? {} : { directWrites: this.#directWrites }),
            directRounds: this.#options.directWrites === "all" ? "all" : "synced",
            ...(this.#options.dropBehindKeepBytes === undefined
              ? {}
              : { dropBehindKeepBytes: this.#options.dropBehindKeepBytes }),
            dropUnsynced: this.#options.dropBehindUnsynced === true,
            onFsync: (seconds) => this.#fsynced(name, seconds),
            ...(this.#options.monotonicMs === undefined
              ? {}
              : { monotonicMs: this.#options.monotonicMs }),
          }),
        );
      }
    } catch (error) {
      await Promise.allSettled(logs.map((log) => log.close()));
      throw error;
    }
    return { info, logs };
  }

  #openQueues(): Promise<Queues> {
    return Queues.open({
      dataDir: this.dataDir,
      io: this.#io,
      now: this.#options.now ?? Date.now,
      warn: (message) => this.#warn(message),
      topics: {
        logs: (topic) => this.#topics.get(topic)?.logs,
        createTopic: async (topic) => {
          await this.createTopic(topic, { partitions: 1 });
        },
      },
      ...(this.#options.queueCompactAfterBytes === undefined
        ? {}
        : { compactAfterBytes: this.#options.queueCompactAfterBytes }),
      ...(this.#options.queueSyncsInFlight === undefined
        ? {}
        : { syncsInFlight: this.#options.queueSyncsInFlight }),
      ...(this.#options.queueSpareBytesMax === undefined
        ? {}
        : { spareBytesMax: this.#options.queueSpareBytesMax }),
      onFsync: (seconds) => this.queueFsyncSeconds.observe(seconds),
      tailCacheBudget: this.tailCacheBudget,
      ...(this.#options.ttlCheckMs === undefined ? {} : { ttlCheckMs: this.#options.ttlCheckMs }),
    });
  }

  #openExchanges(): Exchanges {
    return Exchanges.open({
      dataDir: this.dataDir,
      io: this.#io,
      now: this.#options.now ?? Date.now,
      warn: (message) => this.#warn(message),
      queueTopic: (queue) => {
        try {
          return this.#queues.get(queue).config.topic;
        } catch {
          return undefined;
        }
      },
      topicExists: (topic) => this.#topics.has(topic),
      // Both counters only grow, so their sum changes whenever either does.
      generation: () => this.#topicGeneration + this.#queues.generation,
    });
  }

  #allLogs(): PartitionLog[] {
    return [...this.#topics.values()].flatMap((topic) => topic.logs);
  }

  #fsynced(log: string, seconds: number): void {
    this.fsyncSeconds.observe(seconds);
    const slowFsyncMs = this.#options.slowFsyncMs ?? SLOW_FSYNC_MS_DEFAULT;
    const ms = seconds * 1000;
    if (ms < slowFsyncMs || this.#options.onSlowFsync === undefined) return;
    try {
      this.#options.onSlowFsync({ log, ms: Math.round(ms), slowFsyncMs });
    } catch (error) {
      // A listener's failure must not fail the flush round that called it.
      this.#warn(`the slow-fsync listener failed: ${String(error)}`);
    }
  }

  #warn(message: string): void {
    if (this.#options.onWarning !== undefined) this.#options.onWarning(message);
    else console.warn(`sluice: ${message}`);
  }

  #startRetention(): void {
    const intervalMs =
      this.#options.retentionCheckIntervalMs ?? RETENTION_CHECK_INTERVAL_MS_DEFAULT;
    this.#retentionTimer = setInterval(() => void this.applyRetention(), intervalMs);
    (this.#retentionTimer as { unref?: () => void }).unref?.();
  }

  #checkOpen(): void {
    if (this.#closed) throw new SluiceError("LOG_CLOSED", `Engine ${this.dataDir} is closed`);
  }

  createTopic(
    name: string,
    options: { partitions?: number; config?: Partial<LogConfig> } = {},
  ): Promise<TopicInfo> {
    return this.#oneAtATime(() => this.#createTopic(name, options));
  }

  /**
   * Runs topic creates and deletes one at a time, in call order. A create yields while it opens
   * partitions; a delete of the same name in that time (or a create during a delete) would
   * rename away the other's directories.
   */
  #oneAtATime<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#adminTail.then(work, work);
    this.#adminTail = run.catch(() => {});
    return run;
  }

  async #createTopic(
    name: string,
    options: { partitions?: number; config?: Partial<LogConfig> },
  ): Promise<TopicInfo> {
    this.#checkOpen();
    validateTopicName(name);
    const partitions = options.partitions ?? 1;
    if (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > PARTITIONS_MAX) {
      throw new SluiceError(
        "INVALID_CONFIG",
        `Partition count ${partitions} for topic '${name}' must be in [1, ${PARTITIONS_MAX}]`,
        { topic: name, partitions },
      );
    }
    if (this.#topics.has(name) || this.#creating.has(name)) {
      throw new SluiceError("TOPIC_EXISTS", `Topic '${name}' already exists`, { topic: name });
    }
    this.#checkCapacity(name, partitions);
    const config = resolveLogConfig({
      ...definedFields(this.#options.topicDefaults),
      ...definedFields(options.config),
    });
    const info: TopicInfo = {
      name,
      partitions,
      config,
      createdMs: (this.#options.now ?? Date.now)(),
    };
    // All or nothing: the partitions are opened first and the metadata that makes the topic
    // exist is written last; a failure on the way removes what was made, and partition
    // directories left by a create that a crash cut short are removed before it starts.
    this.#creating.set(name, partitions);
    try {
      this.#removePartitionDirectories(name);
      const topic = await this.#openTopic(info);
      try {
        // The partition directories' entries must be durable before the metadata that makes
        // the topic exist, or power loss could keep the topic and lose a partition's records.
        this.#io.syncDirectory(this.dataDir);
        this.#io.writeFileAtomic(
          this.#metaDir,
          `${name}.json`,
          `${JSON.stringify(info, null, 2)}\n`,
        );
      } catch (error) {
        await Promise.allSettled(topic.logs.map((log) => log.close()));
        throw ioError(error, `writing metadata of topic '${name}'`);
      }
      this.#topics.set(name, topic);
      this.#topicGeneration++;
      return info;
    } catch (error) {
      this.#removePartitionDirectories(name);
      throw error;
    } finally {
      this.#creating.delete(name);
    }
  }

  /** Refuses a topic that would pass topicsMax or partitionsMax, naming the limit. */
  #checkCapacity(name: string, partitions: number): void {
    const topicsMax = this.#options.topicsMax ?? TOPICS_MAX_DEFAULT;
    const partitionsMax = this.#options.partitionsMax ?? BROKER_PARTITIONS_MAX_DEFAULT;
    let existing = 0;
    for (const topic of this.#topics.values()) existing += topic.info.partitions;
    for (const count of this.#creating.values()) existing += count;
    const topics = this.#topics.size + this.#creating.size;
    if (topics + 1 > topicsMax) {
      throw new SluiceError("INVALID_CONFIG", `Topic '${name}' would pass topicsMax ${topicsMax}`, {
        topic: name,
        topicsMax,
      });
    }
    if (existing + partitions > partitionsMax) {
      throw new SluiceError(
        "INVALID_CONFIG",
        `Topic '${name}' with ${partitions} partitions would pass partitionsMax ` +
          `${partitionsMax} (${existing} exist)`,
        { topic: name, partitions, partitionsMax },
      );
    }
  }

  /** Removes every `<name>-<n>` partition directory (renamed first, so a crash leaves none). */
  #removePartitionDirectories(name: string): void {
    const pattern = new RegExp(`^${name.replaceAll(".", "\\.")}-\\d+$`);
    const stamp = Date.now();
    for (const entry of fs.readdirSync(this.dataDir)) {
      if (!pattern.test(entry)) continue;
      const doomed = join(this.dataDir, `.${stamp}-${entry.slice(name.length + 1)}.deleted`);
      fs.renameSync(join(this.dataDir, entry), doomed);
      fs.rmSync(doomed, { recursive: true, force: true });
    }
  }

  /**
   * Changes some of a topic's config (ALTERABLE_TOPIC_CONFIGS) on the live topic: the new
   * config is validated whole, written to the topic's metadata (so it survives a restart) and
   * then applied to every open partition log. A bad value changes nothing.
   */
  alterTopicConfig(name: string, changes: Partial<LogConfig>): Promise<TopicInfo> {
    return this.#oneAtATime(async () => {
      const topic = this.#topic(name);
      const given = definedFields(changes);
      for (const field of Object.keys(given)) {
        if (!(ALTERABLE_TOPIC_CONFIGS as readonly string[]).includes(field)) {
          const rule = LOG_CONFIG_FIELDS.has(field)
            ? "cannot be changed on an existing topic"
            : "is not a log config field";
          throw new SluiceError("INVALID_CONFIG", `Config ${field} of topic '${name}' ${rule}`, {
            topic: name,
            field,
          });
        }
      }
      const config = resolveLogConfig({ ...topic.info.config, ...given });
      const info: TopicInfo = { ...topic.info, config };
      try {
        this.#io.writeFileAtomic(
          this.#metaDir,
          `${name}.json`,
          `${JSON.stringify(info, null, 2)}\n`,
        );
      } catch (error) {
        throw ioError(error, `writing metadata of topic '${name}'`);
      }
      topic.info = info;
      for (const log of topic.logs) log.reconfigure(config);
      return info;
    });
  }

  /** Deletes a topic, its committed offsets, and the queues that read it. */
  deleteTopic(name: string): Promise<void> {
    return this.#oneAtATime(() => this.#deleteTopic(name));
  }

  async #deleteTopic(name: string): Promise<void> {
    this.#checkOpen();
    this.#topic(name);
    await this.#queues.deleteForTopic(name);
    const topic = this.#topic(name);
    this.#topics.delete(name);
    this.#topicGeneration++;
    await Promise.allSettled(topic.logs.map((log) => log.close()));
    for (let partition = 0; partition < topic.info.partitions; partition++) {
      this.checkpoint.retire(`${name}-${partition}`);
    }
    try {
      fs.rmSync(join(this.#metaDir, `${name}.json`), { force: true });
      this.#io.syncDirectory(this.#metaDir);
      const stamp = Date.now();
      for (let partition = 0; partition < topic.info.partitions; partition++) {
        // Removing thousands of directories takes seconds, and one rename or unlink can wait
        // 100 ms on a busy journal: they run on the thread pool, one partition at a time, so
        // other connections' requests go on meanwhile. The topic is already gone (its metadata
        // first); leftovers go at the next open.
        const dir = join(this.dataDir, `${name}-${partition}`);
        // Not `${dir}.deleted`: a 249-byte topic name plus a suffix passes the 255-byte limit.
        const doomed = join(this.dataDir, `.${stamp}-${partition}.deleted`);
        await fs.promises.rename(dir, doomed).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== "ENOENT") throw error;
        });
        await fs.promises.rm(doomed, { recursive: true, force: true });
      }
      releaseDeletedMappings();
    } catch (error) {
      throw ioError(error, `deleting topic '${name}'`);
    }
    await this.offsets.deleteTopic(name);
  }

  listTopics(): TopicInfo[] {
    return [...this.#topics.values()].map((topic) => topic.info);
  }

  describeTopic(name: string): TopicInfo {
    return this.#topic(name).info;
  }

  #topic(name: string): Topic {
    this.#checkOpen();
    const topic = this.#topics.get(name);
    if (topic === undefined) {
      throw new SluiceError("UNKNOWN_TOPIC", `Topic '${name}' does not exist`, { topic: name });
    }
    return topic;
  }

  /** The log of one partition, for callers that hold on to it (the server's hot path). */
  partition(topic: string, partition: number): PartitionLog {
    const logs = this.#topic(topic).logs;
    const log = Number.isInteger(partition) ? logs[partition] : undefined;
    if (log === undefined) {
      throw new SluiceError(
        "UNKNOWN_PARTITION",
        `Topic '${topic}' has no partition ${partition} (it has ${logs.length})`,
        { topic, partition },
      );
    }
    return log;
  }

  /**
   * Every partition log of a topic, by partition number: for callers that look up many of
   * one topic's partitions at once (a fetch names up to thousands), one topic lookup instead
   * of one per partition. The list is the engine's own: read it, do not change it.
   */
  partitions(topic: string): readonly PartitionLog[] {
    return this.#topic(topic).logs;
  }

  append(topic: string, partition: number, batch: Uint8Array): Promise<AppendResult> {
    return this.partition(topic, partition).append(batch);
  }

  read(topic: string, partition: number, offset: number, maxBytes: number): ReadResult {
    return this.partition(topic, partition).read(offset, maxBytes);
  }

  offsetForTimestamp(topic: string, partition: number, timestampMs: number): number | undefined {
    return this.partition(topic, partition).offsetForTimestamp(timestampMs);
  }

  /**
   * A producer id never handed out before in this data directory. Ids are reserved in blocks
   * (`__meta/producer-ids` holds the end of the last reserved block), so a crash skips at most
   * the rest of a block and never reuses an id.
   */
  allocateProducerId(): number {
    this.#checkOpen();
    const ids = this.#producerIds;
    if (ids.next >= ids.reservedEnd) {
      const file = join(this.dataDir, "__meta", "producer-ids");
      const stored = Number.parseInt(readOrEmpty(file), 10);
      const start = Number.isSafeInteger(stored) && stored > ids.next ? stored : ids.next;
      const end = start + PRODUCER_ID_BLOCK;
      try {
        this.#io.writeFileAtomic(join(this.dataDir, "__meta"), "producer-ids", `${end}\n`);
      } catch (error) {
        throw ioError(error, "reserving producer ids");
      }
      ids.next = start;
      ids.reservedEnd = end;
    }
    return ids.next++;
  }

  /** Applies every topic's retention now; returns the number of segments deleted. */
  async applyRetention(nowMs?: number): Promise<number> {
    if (this.#closed) return 0;
    let deleted = 0;
    for (const topic of this.#topics.values()) {
      for (const log of topic.logs) {
        try {
          deleted += await log.applyRetention(nowMs);
        } catch (error) {
          this.#warn(`retention of ${log.name} failed: ${String(error)}`);
        }
      }
    }
    return deleted;
  }

  /** Writes and fsyncs every partition, and waits for every queue's state to be durable. */
  async flush(): Promise<void> {
    this.#checkOpen();
    const logs = [...this.#topics.values()].flatMap((topic) => topic.logs);
    await Promise.all([...logs.map((log) => log.flush()), this.#queues.flush()]);
  }

  // -------------------------------------------------------------------------------------------
  // Queues (queues.ts): records of a topic handed out one by one to competing members, with
  // per-record acks, locks, delivery counts and dead letters. See engine/README.md.

  /**
   * Declares a queue on a topic; idempotent when the options match the existing queue's,
   * QUEUE_EXISTS when they differ. The dead-letter topic is created (one partition) if missing.
   */
  declareQueue(
    name: string,
    options: Omit<QueueOptions, "topic"> & { topic?: string },
  ): Promise<QueueConfig> {
    if (options?.topic === undefined) return this.#declareQueueOwnTopic(name, options ?? {});
    return this.#queues.declare(name, options as QueueOptions);
  }

  /**
   * A queue declared without a topic reads a topic of its own name (one partition, or one per
   * priority level), created here: an ordinary topic, writable by clients, so that binding an
   * exchange to each queue gives every queue its own copy, as RabbitMQ does. A topic of that
   * name that is not already this queue's is TOPIC_EXISTS; a declare that fails removes the
   * topic it created.
   */
  async #declareQueueOwnTopic(
    name: string,
    options: Omit<QueueOptions, "topic">,
  ): Promise<QueueConfig> {
    const existing = this.#queues.list().find((queue) => queue.name === name);
    if (existing !== undefined) return this.#queues.declare(name, { ...options, topic: name });
    validateQueueName(name);
    // Checked before the topic is made, so that a bad option leaves nothing behind.
    const { priorities } = resolveQueueOptions(name, { ...options, topic: name });
    if (this.#topics.has(name)) {
      throw new SluiceError(
        "TOPIC_EXISTS",
        `Queue '${name}' without a topic needs a topic of its name, and topic '${name}' exists ` +
          "(declare the queue with that topic, or another name)",
        { queue: name, topic: name },
      );
    }
    // A priority queue's topic has one partition per level (queue_priority.ts).
    await this.createTopic(name, { partitions: priorities ?? 1 });
    try {
      return await this.#queues.declare(name, { ...options, topic: name });
    } catch (error) {
      await this.deleteTopic(name).catch(() => {});
      throw error;
    }
  }

  /** Deletes a queue and its state; its members' acquisitions end with it. */
  deleteQueue(name: string): Promise<void> {
    return this.#queues.delete(name);
  }

  /** Marks every record currently in the queue's topic done; returns how many were not. */
  purgeQueue(name: string): Promise<number> {
    return this.#queues.purge(name);
  }

  listQueues(): QueueConfig[] {
    return this.#queues.list();
  }

  queueStats(name: string): QueueStats {
    return this.#queues.stats(name);
  }

  /** Adds a member (a consumer) to the queue; returns its id. Members do not survive a close. */
  joinQueue(name: string): string {
    return this.#queues.join(name);
  }

  /** Removes a member: what it held is available again at once. Returns how many records. */
  leaveQueue(name: string, memberId: string): number {
    return this.#queues.leave(name, memberId);
  }

  /** Acquires records for a member, without waiting; `onQueueReady` tells when to try again. */
  fetchQueue(name: string, memberId: string, options?: QueueFetchOptions): QueueFetchResult {
    return this.#queues.fetch(name, memberId, options);
  }

  /**
   * Before a `fetchQueue` of up to `maxBytes`: a promise while the queue's next records are
   * being read from the disk on the thread pool (Queue.prepareFetch); undefined when the fetch
   * may be made now.
   */
  prepareQueueFetch(name: string, maxBytes: number): Promise<unknown> | undefined {
    return this.#queues.prepareFetch(name, maxBytes);
  }

  /** Accepts, releases, rejects or renews acquired records; resolves once durable. */
  ackQueue(name: string, memberId: string, acks: readonly QueueAck[]): Promise<void> {
    return this.#queues.ack(name, memberId, acks);
  }

  /**
   * `ackQueue` in two steps: checks and applies the acks now, throwing a refusal (unknown
   * queue or member, a record not held, ...) synchronously with nothing applied, and returns
   * the promise that resolves once the outcomes are durable (as `ackQueue` does). A server can
   * then answer a request with the acks' results before their fdatasync.
   */
  applyQueueAck(name: string, memberId: string, acks: readonly QueueAck[]): Promise<void> {
    return this.#queues.applyAck(name, memberId, acks);
  }

  /** Calls `listener` when a fetch of the queue may find new work; returns the remover. */
  onQueueReady(name: string, listener: () => void): () => void {
    return this.#queues.onReady(name, listener);
  }

  /**
   * Ends every acquisition lock that is due now and takes expired records (message TTL) off
   * queue heads. A timer does this at each deadline and every `ttlCheckMs` while records
   * wait; a caller with an injected clock (`now`) calls it after moving the clock. Returns
   * locks ended.
   */
  expireQueueLocks(): number {
    return this.#queues.expireLocks();
  }

  /** The queue itself, for tools and tests that look inside (cursors, state log). */
  queue(name: string): Queue {
    return this.#queues.get(name);
  }

  // -------------------------------------------------------------------------------------------
  // Exchanges (exchanges.ts, exchange_publish.ts): records routed by their routing key or
  // headers to the topics of bound queues and topics. See engine/README.md.

  /** Declares an exchange; idempotent with the same settings, EXCHANGE_EXISTS with others. */
  async declareExchange(name: string, options: ExchangeOptions): Promise<ExchangeConfig> {
    this.#checkOpen();
    return this.#exchanges.declare(name, options);
  }

  /** Deletes an exchange and its bindings. */
  async deleteExchange(name: string): Promise<void> {
    this.#checkOpen();
    this.#exchanges.delete(name);
  }

  /** Binds a queue or a topic to an exchange; resolves to false when the binding existed. */
  async bindExchange(name: string, options: BindOptions): Promise<boolean> {
    this.#checkOpen();
    return this.#exchanges.bind(name, options);
  }

  /** Removes a binding; resolves to false when there was none. */
  async unbindExchange(name: string, options: BindOptions): Promise<boolean> {
    this.#checkOpen();
    return this.#exchanges.unbind(name, options);
  }

  listExchanges(): ExchangeConfig[] {
    this.#checkOpen();
    return this.#exchanges.list();
  }

  /**
   * Routes the records of one batch through an exchange (`""`: the default exchange, to the
   * queue named by the routing key) and appends them to the topics they reach, the records for
   * one topic as one batch. Resolves with how many topics took records, how many records
   * nothing took (dropped) and how many full reject-publish queues refused (`rejected`,
   * naming `fullQueue`); with `durable`, once fsynced.
   */
  publish(
    exchange: string,
    batch: Uint8Array,
    options: { durable?: boolean } = {},
  ): Promise<PublishedBatch> {
    try {
      return this.publishChecked(exchange, batch, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * `publish`, except that a batch refused before anything is appended (closed engine, unknown
   * exchange, a batch that does not decode) throws at once, so that a caller publishing several
   * batches in order can stop at the first refusal. A batch failing its CRC-32C rejects the
   * promise instead, wherever it is found (the append checks it on the fast path), so it stops
   * nothing whichever way its records would have been routed.
   */
  publishChecked(
    exchange: string,
    batch: Uint8Array,
    options: { durable?: boolean } = {},
  ): Promise<PublishedBatch> {
    this.#checkOpen();
    this.#exchanges.check(exchange);
    // Each destination's own maxBatchBytes is checked when the routed batch is appended.
    const durable = options.durable ?? false;
    return publishBatch(this.#publishHost, exchange, batch, durable ? DURABLE : NOT_DURABLE);
  }

  /** Closes every queue, every log cleanly, the offsets store, and releases the directory. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retentionTimer !== undefined) clearInterval(this.#retentionTimer);
    this.#scrubber?.stop();
    // Queues first: their dead letters in flight append to logs.
    const queuesClosed = await this.#queues.close().then(
      () => ({ status: "fulfilled" }) as const,
      (reason: unknown) => ({ status: "rejected", reason }) as const,
    );
    const logs = [...this.#topics.values()].flatMap((topic) => topic.logs);
    const results = [
      queuesClosed,
      ...(await Promise.allSettled([...logs.map((log) => log.close()), this.offsets.close()])),
    ];
    // After the logs: their last recovery points are in it.
    await this.checkpoint.close();
    this.groupSync.close();
    openDirectories.delete(this.dataDir);
    await releaseLock(this.dataDir, this.#io);
    const failed = results.find((result) => result.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  }
}

/** The engine's group commit, with a file-system flush where one is safe and reachable. */
function openGroupSync(dataDir: string, options: EngineOptions): GroupSync {
  const io = options.io ?? realFileIO;
  const mode = options.partitionSync ?? "auto";
  if (!PARTITION_SYNCS.includes(mode)) {
    throw new TypeError(`partitionSync ${String(mode)} must be "auto", "fdatasync" or "flush"`);
  }
  const groupOptions = {
    io,
    flushAlways: mode === "flush",
    ...(options.monotonicMs === undefined ? {} : { monotonicMs: options.monotonicMs }),
  };
  if (mode === "fdatasync") return new GroupSync(groupOptions);
  const custom = io.syncFileSystem;
  if (custom !== undefined) {
    const fileSystem = {
      dev: fs.statSync(dataDir).dev,
      sync: () => custom.call(io, dataDir),
      close: () => {},
    };
    return new GroupSync({ ...groupOptions, fileSystem });
  }
  // A custom FileIO without its own flush gets every sync through its datasync (fault tests).
  const fileSystem = options.io === undefined ? openSyncfs(dataDir) : undefined;
  return new GroupSync({ ...groupOptions, ...(fileSystem === undefined ? {} : { fileSystem }) });
}

function ensureDirectory(dir: string): string {
  try {
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  } catch (error) {
    throw ioError(error, `creating data directory ${dir}`);
  }
}

/** The lock file holds the holder's pid padded to this width, blanks when nobody holds it. */
const LOCK_FILE_BYTES = 16;

/**
 * Claims the directory for this process. A lock left by a process that is gone (a crash) is
 * taken over; one held by a live process is an error, since two writers would corrupt the logs.
 * The lock file is never deleted, only overwritten in place: on a full disk a file of its own
 * size can always be rewritten, where a new one could not be created (a restart on a full disk).
 */
async function takeLock(dir: string, io: FileIO): Promise<void> {
  const path = join(dir, ".lock");
  const holder = Number.parseInt(readOrEmpty(path), 10);
  if (Number.isSafeInteger(holder) && holder !== process.pid && processAlive(holder)) {
    throw new SluiceError("IO_ERROR", `Data directory ${dir} is in use by process ${holder}`, {
      dir,
      pid: holder,
    });
  }
  try {
    await writeLock(path, io, String(process.pid));
  } catch (error) {
    throw ioError(error, `writing the lock file ${path}`);
  }
}

/** Blanks the lock file (kept for the next open); a failure only leaves a stale pid behind. */
async function releaseLock(dir: string, io: FileIO): Promise<void> {
  await writeLock(join(dir, ".lock"), io, "").catch(() => {});
}

async function writeLock(path: string, io: FileIO, holder: string): Promise<void> {
  const text = new TextEncoder().encode(`${holder.padEnd(LOCK_FILE_BYTES - 1)}\n`);
  const size = fs.existsSync(path) ? fs.statSync(path).size : -1;
  if (size === LOCK_FILE_BYTES) await io.writeFileAt(path, text, 0);
  else io.writeFile(path, text);
}

function readOrEmpty(path: string): string {
  try {
    return fs.readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

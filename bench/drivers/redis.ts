// The Redis Streams driver (node-redis, the `redis` package; runs under Bun, Deno and Node).
//
// Layout, for a topic T with N partitions and a subscription S:
//
//   producer --XADD sluice:T:<p> * p <payload>--> stream keys sluice:T:0 .. sluice:T:N-1
//                                                   `--> consumer group S on every key
//   consumer of S: XREADGROUP GROUP S <name> COUNT c BLOCK b STREAMS sluice:T:0 .. > .. >
//                  then one XACK per key for the entries it handled
//
// - One stream key per partition (a stream is one key, served by Redis's single command thread;
//   partitions keep the key-to-partition choice of the other drivers and bound each key).
// - `sendAsync` is one XADD (field `p` = a copy of the payload bytes) and resolves on its reply.
//   Commands sent in the same event-loop turn are pipelined by the client.
// - A subscription is a consumer group created on every partition key at `$` (it sees every
//   entry added after it was created); consumers of the group share its entries. Each consumer
//   has its own connection for the blocking XREADGROUP (COUNT `count`, 1000; BLOCK `block-ms`,
//   1000, which only bounds how long close() may wait) and acknowledges each batch with one
//   XACK per key after the callbacks ran: at-least-once (unacknowledged entries stay pending).
// - Streams grow until deleteTopic (no MAXLEN trimming during a run); deleteTopic DELs the keys,
//   which removes their groups.
//
// Durability (source: redis.io, "Redis persistence": with `appendfsync everysec`, "fsync every
// second. Fast enough, and you may lose 1 second of data if there is a disaster"): Redis answers
// XADD from memory; what survives a crash depends on the server's AOF settings, which
// initialize() reads (CONFIG GET) and durability() reports. scripts/peers.sh starts Redis with
// `--appendonly yes --appendfsync everysec` (RDB snapshots off).

import { Buffer } from "node:buffer";
import { createClient, RESP_TYPES } from "redis";
import type {
  BenchConsumer,
  BenchProducer,
  BrokerProcess,
  Driver,
  DriverConfig,
  DriverFactory,
  DriverSettings,
  MessageCallback,
} from "../driver.ts";
import { DriverUnavailableError } from "../driver.ts";
import {
  CONNECT_TIMEOUT_MS_DEFAULT,
  type DriverOptions,
  errorMessage,
  optionInt,
  optionString,
  packageVersion,
  peerPort,
  PartitionPicker,
  PEERS_HINT,
  safeName,
  uniqueId,
  urlAddress,
  withTimeout,
} from "./peers/common.ts";

export type RedisOptions = {
  /**
   * `redis://[user:pass@]host:port[/db]`; option `url`, env SLUICE_REDIS_URL, else
   * 127.0.0.1:SLUICE_REDIS_PORT (6379).
   */
  url: string;
  /** Entries per XREADGROUP (COUNT). */
  count: number;
  /** XREADGROUP BLOCK: the longest a read waits for new entries (bounds close()). */
  blockMs: number;
  connectTimeoutMs: number;
};

/** Reads the driver options (`url`, `count`, `block-ms`, `connect-timeout-ms`). */
export function redisOptions(options: DriverOptions = {}): RedisOptions {
  return {
    url: optionString(
      options,
      "url",
      `redis://127.0.0.1:${peerPort("SLUICE_REDIS_PORT", 6379)}`,
      "SLUICE_REDIS_URL",
    ),
    count: optionInt(options, "count", 1000, { min: 1, max: 100_000 }),
    blockMs: optionInt(options, "block-ms", 1000, { min: 1, max: 60_000 }),
    connectTimeoutMs: optionInt(options, "connect-timeout-ms", CONNECT_TIMEOUT_MS_DEFAULT, {
      min: 1,
      max: 60_000,
    }),
  };
}

type RedisArgument = string | Buffer;

/** The part of a node-redis client this driver uses (raw commands only). */
interface RedisConnection {
  connect(): Promise<unknown>;
  sendCommand<T>(
    args: ReadonlyArray<RedisArgument>,
    options?: { typeMapping?: Record<number, unknown> },
  ): Promise<T>;
  close(): Promise<void>;
  destroy(): void;
  on(event: "error", listener: (error: Error) => void): unknown;
}

/** Replies with bulk strings as Buffers (payloads are bytes, not text). */
const BUFFER_REPLIES = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };

/** `owned`: created here and deleted by close(); false when attached to in a worker. */
type TopicState = { keys: string[]; owned: boolean };

class RedisDriver implements Driver {
  readonly name = "redis";
  readonly #options: RedisOptions;
  readonly #topics = new Map<string, TopicState>();
  /** Producer and consumer connections, closed by close(). */
  readonly #connections = new Set<RedisConnection>();
  #admin: RedisConnection | null = null;
  #serverVersion = "unknown";
  #aof = "unknown";

  constructor(options: RedisOptions) {
    this.#options = options;
  }

  async initialize(): Promise<void> {
    const admin = await this.#connect();
    this.#connections.delete(admin);
    this.#admin = admin;
    const info = await admin.sendCommand<string>(["INFO", "server"]);
    this.#serverVersion = /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? "unknown";
    this.#aof = await readAofSettings(admin);
  }

  settings(): DriverSettings {
    const options = this.#options;
    return {
      url: redactUrl(options.url),
      serverVersion: this.#serverVersion,
      persistence: this.#aof,
      layout: "stream key per partition (sluice:<topic>:<p>), field p = payload",
      publish: "XADD, sendAsync resolves on its reply (pipelined per event-loop turn)",
      consumer: "consumer group per subscription at $, XREADGROUP over every partition key",
      count: options.count,
      blockMs: options.blockMs,
      acks: "one XACK per key per read batch, after the callbacks",
      trimming: "none during a run",
      clientLibrary: `redis (node-redis) ${packageVersion("redis")}`,
      batching: "none: one XADD per message; commands of one event-loop turn are pipelined",
      connections: "one per producer and per consumer, made in the load workers",
      delivery: "at-least-once",
    };
  }

  durability(): string {
    const version = this.#serverVersion;
    switch (this.#aof) {
      case "appendonly yes, appendfsync always":
        return `Redis ${version}: XADD answered after its AOF write is fsynced (fsync always)`;
      case "appendonly yes, appendfsync everysec":
        return (
          `Redis ${version}: XADD answered from memory; AOF appendfsync everysec fsyncs ` +
          "about once a second, so a crash can lose about the last second"
        );
      case "appendonly yes, appendfsync no":
        return (
          `Redis ${version}: XADD answered from memory; AOF written but never fsynced ` +
          "by Redis (the OS flushes it, typically within 30 s)"
        );
      case "appendonly no":
        return (
          `Redis ${version}: XADD answered from memory, no AOF: a restart loses every ` +
          "message since the last RDB snapshot, if any"
        );
      default:
        return (
          `Redis ${version}: XADD answered from memory; persistence settings unknown ` +
          "(CONFIG GET refused)"
        );
    }
  }

  async createTopic(topic: string, partitions: number): Promise<void> {
    if (this.#topics.has(topic)) throw new RangeError(`Topic ${topic} exists already`);
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new RangeError(`Partition count ${partitions} is not a positive integer`);
    }
    const keys = topicKeys(topic, partitions);
    // A topic starts empty even if an earlier run died before its cleanup.
    await this.#adminConnection().sendCommand(["DEL", ...keys]);
    this.#topics.set(topic, { keys, owned: true });
  }

  async attachTopic(topic: string, partitions: number): Promise<void> {
    this.#topics.set(topic, { keys: topicKeys(topic, partitions), owned: false });
  }

  async createSubscription(topic: string, subscription: string): Promise<void> {
    await this.#createGroup(this.#topic(topic).keys, safeName(subscription));
  }

  brokerProcess(): BrokerProcess {
    const { host, port } = urlAddress(this.#options.url, 6379);
    return { kind: "address", host, port, what: `redis-server ${this.#serverVersion}` };
  }

  /** Creates consumer group `group` at `$` on every key; one that exists already is fine. */
  async #createGroup(keys: string[], group: string): Promise<void> {
    const admin = this.#adminConnection();
    for (const key of keys) {
      await admin.sendCommand(["XGROUP", "CREATE", key, group, "$", "MKSTREAM"]).catch((error) => {
        // Another consumer of the subscription created the group already.
        if (!errorMessage(error).startsWith("BUSYGROUP")) throw error;
      });
    }
  }

  async createProducer(topic: string): Promise<BenchProducer> {
    const { keys } = this.#topic(topic);
    const connection = await this.#connect();
    const picker = new PartitionPicker(keys.length, this.#connections.size);
    return {
      async sendAsync(key, payload) {
        const streamKey = keys[picker.pick(key)]!;
        // A copy: node-redis encodes queued commands later, and the caller may reuse its buffer
        // once sendAsync returned.
        await connection.sendCommand(["XADD", streamKey, "*", "p", Buffer.from(payload)]);
      },
      close: () => this.#closeConnection(connection),
    };
  }

  async createConsumer(
    topic: string,
    subscription: string,
    onMessage: MessageCallback,
  ): Promise<BenchConsumer> {
    const { keys } = this.#topic(topic);
    const group = safeName(subscription);
    await this.#createGroup(keys, group);
    const connection = await this.#connect();
    const reader = new GroupReader(connection, { keys, group, onMessage, ...this.#options });
    let failure: unknown = null;
    const running = reader.run().catch((error: unknown) => {
      failure = error;
    });
    return {
      close: async () => {
        reader.stop();
        await this.#closeConnection(connection);
        await running;
        // A read that failed while running (not because of close) surfaces here.
        if (failure !== null) throw failure;
      },
    };
  }

  async deleteTopic(topic: string): Promise<void> {
    const state = this.#topics.get(topic);
    if (state === undefined) return;
    this.#topics.delete(topic);
    await this.#adminConnection().sendCommand(["DEL", ...state.keys]);
  }

  async close(): Promise<void> {
    for (const connection of [...this.#connections]) await this.#closeConnection(connection);
    if (this.#admin !== null) {
      for (const [topic, state] of [...this.#topics]) {
        if (state.owned) await this.deleteTopic(topic);
      }
    }
    const admin = this.#admin;
    this.#admin = null;
    await admin?.close().catch(() => admin.destroy());
  }

  async #connect(): Promise<RedisConnection> {
    const { url, connectTimeoutMs } = this.#options;
    // RESP2: replies come as plain arrays (node-redis 6 speaks RESP3 by default, whose maps it
    // turns into objects keyed by text), which the raw XREADGROUP parsing below expects.
    const client = createClient({
      url,
      RESP: 2,
      socket: { connectTimeout: connectTimeoutMs, reconnectStrategy: false, noDelay: true },
    }) as unknown as RedisConnection;
    // Errors reach the pending commands; without a listener the client would throw them.
    client.on("error", () => {});
    try {
      await withTimeout(client.connect(), connectTimeoutMs, "Redis connect");
    } catch (error) {
      client.destroy();
      throw new DriverUnavailableError(
        `Redis is not reachable at ${redactUrl(url)}: ${errorMessage(error)}`,
        `${PEERS_HINT} (or pass --driver-options redis.url=redis://host:6379)`,
      );
    }
    this.#connections.add(client);
    return client;
  }

  async #closeConnection(connection: RedisConnection): Promise<void> {
    if (!this.#connections.delete(connection)) return;
    // A reader may sit in a blocking XREADGROUP: destroy() ends it at once.
    connection.destroy();
  }

  #adminConnection(): RedisConnection {
    if (this.#admin === null) throw new Error("redis driver: initialize() first");
    return this.#admin;
  }

  #topic(topic: string): TopicState {
    const state = this.#topics.get(topic);
    if (state === undefined) throw new RangeError(`Topic ${topic} was not created`);
    return state;
  }
}

type GroupReaderConfig = RedisOptions & {
  keys: string[];
  group: string;
  onMessage: MessageCallback;
};

/** One consumer of a group: reads every partition key in a loop and acks what it handled. */
class GroupReader {
  readonly #connection: RedisConnection;
  readonly #config: GroupReaderConfig;
  readonly #readArgs: string[];
  #stopped = false;

  constructor(connection: RedisConnection, config: GroupReaderConfig) {
    this.#connection = connection;
    this.#config = config;
    const { keys, group, count, blockMs } = config;
    this.#readArgs = [
      ...["XREADGROUP", "GROUP", group, uniqueId("sluice-consumer")],
      ...["COUNT", String(count), "BLOCK", String(blockMs), "STREAMS"],
      ...keys,
      ...keys.map(() => ">"),
    ];
  }

  stop(): void {
    this.#stopped = true;
  }

  async run(): Promise<void> {
    while (!this.#stopped) {
      let reply: unknown;
      try {
        reply = await this.#connection.sendCommand(this.#readArgs, BUFFER_REPLIES);
      } catch (error) {
        if (this.#stopped) return;
        throw error;
      }
      if (reply !== null) this.#deliver(reply);
    }
  }

  /** Hands each entry's payload to the callback, then acks the batch with one XACK per key. */
  #deliver(reply: unknown): void {
    if (!Array.isArray(reply)) throw new TypeError("XREADGROUP reply is not an array");
    for (const stream of reply) {
      const [key, entries] = stream as [Buffer, unknown[]];
      const ids: Buffer[] = [];
      for (const entry of entries) {
        const [id, fields] = entry as [Buffer, Buffer[] | null];
        ids.push(id);
        // An entry deleted after it was read comes back without fields: nothing to deliver.
        const payload = fields?.[1];
        if (payload !== undefined) this.#config.onMessage(payload);
      }
      if (ids.length === 0) continue;
      this.#connection.sendCommand(["XACK", key, this.#config.group, ...ids]).catch(() => {
        // The connection closed: unacknowledged entries stay pending in the group.
      });
    }
  }
}

/** "appendonly yes, appendfsync everysec" and the like, or "unknown" when CONFIG is refused. */
async function readAofSettings(admin: RedisConnection): Promise<string> {
  try {
    const reply = await admin.sendCommand<string[]>([
      "CONFIG",
      "GET",
      "append*", // appendonly, appendfsync, appendfilename, appenddirname
    ]);
    const settings = new Map<string, string>();
    for (let at = 0; at + 1 < reply.length; at += 2) settings.set(reply[at]!, reply[at + 1]!);
    if (settings.get("appendonly") !== "yes") return "appendonly no";
    return `appendonly yes, appendfsync ${settings.get("appendfsync") ?? "unknown"}`;
  } catch {
    return "unknown";
  }
}

/** The URL with its password replaced, for settings and error messages. */
function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]*):([^@]*)@/, "//$1:***@");
}

/** The stream key of each partition of a topic. */
function topicKeys(topic: string, partitions: number): string[] {
  const prefix = `sluice:${safeName(topic)}`;
  return Array.from({ length: partitions }, (_, index) => `${prefix}:${index}`);
}

/** A Redis Streams driver; see the file header for the layout, acks and durability. */
export function createRedisDriver(options: DriverOptions = {}): Driver {
  return new RedisDriver(redisOptions(options));
}

export const createDriver: DriverFactory = (config: DriverConfig) =>
  createRedisDriver(config.options);

// The exchanges of a data directory: declared, bound, deleted, and asked where a record goes.
// The matching rules are in exchange_routing.ts; this file keeps the definitions durable and
// compiles each into the form routing reads.
//
//   <data>/__meta/exchanges/<name>.json   type, alternate, bindings (written atomically: a
//                                         temp file, fsync, rename, fsync of the directory)
//
// An exchange exists once its file does; each declare, bind and unbind rewrites the one file,
// so a crash leaves the old definition or the new one whole, never half of a change.
//
// The default exchange has the empty name and is never stored: it routes a record to the topic
// of the queue named by its routing key (RabbitMQ's default exchange: publishing to a queue by
// its name). It cannot be declared, deleted or bound.
//
// A binding names a queue or a topic. A queue binding is resolved to the queue's topic when a
// record is routed, so it follows the queue; a binding whose queue or topic was deleted since
// matches nothing. Destinations are topics, each counted once however many bindings reach it.

import fs from "node:fs";
import { join } from "node:path";
import { SluiceError } from "../record/mod.ts";
import { ioError } from "./errors.ts";
import {
  type Binding,
  type BindingDestination,
  compileTopicPattern,
  type ExchangeType,
  type HeaderLookup,
  type HeaderMatch,
  headersMatch,
  sameBinding,
  TopicTrie,
  validateBindingHeaders,
  validateBindingKey,
  validateExchangeName,
  validateExchangeType,
  validateHeaderMatch,
} from "./exchange_routing.ts";
import type { FileIO } from "./io.ts";
import { validateQueueName } from "./queue_config.ts";
import { validateTopicName } from "./topic_name.ts";

export type ExchangeOptions = {
  type: ExchangeType;
  /** Where a record no binding matches goes instead: another exchange... */
  alternateExchange?: string | null;
  /** ...or a topic (at most one of the two). Without either, such a record is dropped. */
  alternateTopic?: string | null;
};

export type ExchangeConfig = {
  name: string;
  type: ExchangeType;
  alternateExchange: string | null;
  alternateTopic: string | null;
  createdMs: number;
  bindings: readonly Binding[];
};

/** A bind or unbind: one destination, and the key or header pairs to match. */
export type BindOptions = {
  queue?: string;
  topic?: string;
  routingKey?: string;
  match?: HeaderMatch;
  headers?: Record<string, string>;
};

export type ExchangesHost = {
  dataDir: string;
  io: FileIO;
  now: () => number;
  warn: (message: string) => void;
  /** The topic of a queue, or undefined when there is no such queue. */
  queueTopic(queue: string): string | undefined;
  topicExists(topic: string): boolean;
  /**
   * A number that changes whenever a topic or a queue is created or deleted: cached
   * destination topics are kept only while it stays the same.
   */
  generation(): number;
};

/** Exchanges one data directory may hold. */
export const EXCHANGES_MAX = 10_000;
/** Bindings one exchange may hold. */
export const BINDINGS_MAX = 10_000;
/** Alternate exchanges followed for one record before it counts as unroutable. */
export const ALTERNATE_HOPS_MAX = 8;
/** Routing keys whose matches one exchange remembers (cleared whole when full or changed). */
const ROUTE_CACHE_ENTRIES_MAX = 4_096;

/** Slots of the memo of routing keys by their bytes (a power of two: slot = hash & mask). */
const KEY_MEMO_SLOTS = 1_024;
/** Keys longer than AMQP's routing keys are routed without the memo. */
const KEY_MEMO_BYTES_MAX = 255;

/**
 * One slot of the memo of routes by key bytes: what `route(exchange, key, no headers)` gave,
 * kept while no exchange changed (`version`) and no topic or queue came or went (`generation`).
 */
type KeyMemo = {
  exchange: string;
  /** A copy of the key's bytes (null: a null key). */
  key: Uint8Array | null;
  topics: readonly string[];
  version: number;
  generation: number;
};

/** The name of the default exchange, which routes to the queue named by the routing key. */
export const DEFAULT_EXCHANGE = "";

type Compiled = {
  config: ExchangeConfig;
  /** direct: routing key → destinations. */
  direct: Map<string, BindingDestination[]>;
  /** topic: every binding's pattern in one trie, and the destinations by pattern index. */
  trie: TopicTrie;
  patterns: BindingDestination[];
  /**
   * direct and topic: the matches of recent routing keys, and the topics they resolved to at
   * the host's `generation` (a queue or topic that came or went since resolves them again). A
   * bind or unbind compiles the exchange anew, so the cache starts empty after every change.
   */
  cache: Map<string, CachedRoute>;
};

type CachedRoute = {
  found: readonly BindingDestination[];
  topics: readonly string[];
  generation: number;
};

const NO_TOPICS: readonly string[] = Object.freeze([]);
const noHeaders: HeaderLookup = () => undefined;
const keyDecoder = new TextDecoder();

/** FNV-1a over the key's bytes (a null key hashes apart from the empty one). */
function keyHash(key: Uint8Array | null): number {
  if (key === null) return 0x9e3779b9;
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key[i]!, 0x01000193);
  return hash >>> 0;
}

function sameKey(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class Exchanges {
  readonly #host: ExchangesHost;
  readonly #exchanges = new Map<string, Compiled>();
  /** Changes with every declare, delete, bind and unbind: the key memo is kept only while not. */
  #version = 0;
  /** Recent routes by key bytes, one per slot, the newest kept (see routeKey). */
  readonly #keyMemo: (KeyMemo | undefined)[] = new Array(KEY_MEMO_SLOTS).fill(undefined);

  private constructor(host: ExchangesHost) {
    this.#host = host;
  }

  static open(host: ExchangesHost): Exchanges {
    const exchanges = new Exchanges(host);
    try {
      fs.mkdirSync(exchanges.#dir, { recursive: true });
    } catch (error) {
      throw ioError(error, "creating the exchange directory");
    }
    exchanges.#load();
    return exchanges;
  }

  get #dir(): string {
    return join(this.#host.dataDir, "__meta", "exchanges");
  }

  #load(): void {
    for (const file of fs.readdirSync(this.#dir)) {
      // A temp file left by a crash during an atomic write: the old version is still whole.
      if (file.endsWith(".tmp")) fs.rmSync(join(this.#dir, file), { force: true });
      if (!file.endsWith(".json")) continue;
      const path = join(this.#dir, file);
      try {
        const config = parseExchangeConfig(fs.readFileSync(path, "utf8"));
        this.#exchanges.set(config.name, compile(config));
      } catch (error) {
        // One unreadable exchange must not keep the others offline; it is reported.
        this.#host.warn(`exchange ${path} is unreadable and was skipped: ${String(error)}`);
      }
    }
  }

  #store(config: ExchangeConfig): void {
    try {
      this.#host.io.writeFileAtomic(
        this.#dir,
        `${config.name}.json`,
        `${JSON.stringify(config, null, 2)}\n`,
      );
    } catch (error) {
      throw ioError(error, `writing exchange '${config.name}'`);
    }
    this.#exchanges.set(config.name, compile(config));
    this.#version++;
  }

  #get(name: string): Compiled {
    const exchange = typeof name === "string" ? this.#exchanges.get(name) : undefined;
    if (exchange === undefined) {
      throw new SluiceError("UNKNOWN_EXCHANGE", `Exchange '${String(name)}' does not exist`, {
        exchange: String(name),
      });
    }
    return exchange;
  }

  /** Declares an exchange; the same settings again is no error, other ones EXCHANGE_EXISTS. */
  declare(name: string, options: ExchangeOptions): ExchangeConfig {
    const wanted = resolveExchangeOptions(name, options);
    const existing = this.#exchanges.get(wanted.name)?.config;
    if (existing !== undefined) {
      for (const field of ["type", "alternateExchange", "alternateTopic"] as const) {
        if (existing[field] === wanted[field]) continue;
        throw new SluiceError(
          "EXCHANGE_EXISTS",
          `Exchange '${name}' exists with ${field} ${JSON.stringify(existing[field])}, ` +
            `not ${JSON.stringify(wanted[field])}`,
          { exchange: name, field },
        );
      }
      return existing;
    }
    if (this.#exchanges.size >= EXCHANGES_MAX) {
      throw new SluiceError("INVALID_EXCHANGE", `Exchange '${name}' would pass ${EXCHANGES_MAX}`, {
        exchange: name,
        exchangesMax: EXCHANGES_MAX,
      });
    }
    const config: ExchangeConfig = { ...wanted, createdMs: this.#host.now(), bindings: [] };
    this.#store(config);
    return config;
  }

  /** Deletes an exchange and its bindings. Exchanges naming it as alternate keep the name. */
  delete(name: string): void {
    refuseDefault(name);
    this.#get(name);
    try {
      fs.rmSync(join(this.#dir, `${name}.json`), { force: true });
      this.#host.io.syncDirectory(this.#dir);
    } catch (error) {
      throw ioError(error, `deleting exchange '${name}'`);
    }
    this.#exchanges.delete(name);
    this.#version++;
  }

  /** Adds a binding (no error when it exists); returns whether it was new. */
  bind(name: string, options: BindOptions): boolean {
    refuseDefault(name);
    const exchange = this.#get(name);
    const binding = this.#resolveBinding(exchange.config, options, true);
    if (exchange.config.bindings.some((b) => sameBinding(b, binding))) return false;
    if (exchange.config.bindings.length >= BINDINGS_MAX) {
      throw new SluiceError(
        "INVALID_EXCHANGE",
        `Exchange '${name}' has ${BINDINGS_MAX} bindings, the most it may have`,
        { exchange: name, bindingsMax: BINDINGS_MAX },
      );
    }
    this.#store({ ...exchange.config, bindings: [...exchange.config.bindings, binding] });
    return true;
  }

  /** Removes the binding equal to `options` (no error when there is none); returns whether. */
  unbind(name: string, options: BindOptions): boolean {
    refuseDefault(name);
    const exchange = this.#get(name);
    const binding = this.#resolveBinding(exchange.config, options, false);
    const kept = exchange.config.bindings.filter((b) => !sameBinding(b, binding));
    if (kept.length === exchange.config.bindings.length) return false;
    this.#store({ ...exchange.config, bindings: kept });
    return true;
  }

  #resolveBinding(config: ExchangeConfig, options: BindOptions, mustExist: boolean): Binding {
    const { name, type } = config;
    if (typeof options !== "object" || options === null) {
      throw new TypeError("a binding needs options with a queue or a topic");
    }
    const destination = bindingDestination(name, options);
    if (mustExist && destination.kind === "queue") {
      if (this.#host.queueTopic(destination.name) === undefined) {
        throw new SluiceError(
          "UNKNOWN_QUEUE",
          `Exchange '${name}' cannot bind queue '${destination.name}': it does not exist`,
          { exchange: name, queue: destination.name },
        );
      }
    }
    if (mustExist && destination.kind === "topic" && !this.#host.topicExists(destination.name)) {
      throw new SluiceError(
        "UNKNOWN_TOPIC",
        `Exchange '${name}' cannot bind topic '${destination.name}': it does not exist`,
        { exchange: name, topic: destination.name },
      );
    }
    // A topic binding without a key has the empty pattern, which is refused (an empty word).
    const routingKey = validateBindingKey(name, type, options.routingKey ?? "");
    return {
      destination,
      routingKey,
      match: validateHeaderMatch(name, options.match),
      headers: validateBindingHeaders(name, options.headers),
    };
  }

  list(): ExchangeConfig[] {
    return [...this.#exchanges.values()]
      .map((exchange) => exchange.config)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  get(name: string): ExchangeConfig {
    return this.#get(name).config;
  }

  /** Throws UNKNOWN_EXCHANGE unless `name` is an exchange (the default one included). */
  check(name: string): void {
    if (name !== DEFAULT_EXCHANGE) this.#get(name);
  }

  /**
   * The topics a record goes to: each once, in the order first reached; the alternate's when no
   * binding matched; none when it is unroutable (dropped). `headers` is asked only by headers
   * exchanges, so other types never look at a record's headers.
   */
  route(name: string, routingKey: string, headers: HeaderLookup): readonly string[] {
    if (name === DEFAULT_EXCHANGE) {
      const topic = this.#host.queueTopic(routingKey);
      return topic !== undefined && this.#host.topicExists(topic) ? [topic] : NO_TOPICS;
    }
    let exchange = this.#get(name);
    for (let hop = 0; hop <= ALTERNATE_HOPS_MAX; hop++) {
      const topics = this.#routeOnce(exchange, routingKey, headers);
      if (topics.length > 0) return topics;
      const { alternateTopic, alternateExchange } = exchange.config;
      if (alternateTopic !== null) {
        return this.#host.topicExists(alternateTopic) ? [alternateTopic] : NO_TOPICS;
      }
      const next = alternateExchange === null ? undefined : this.#exchanges.get(alternateExchange);
      if (next === undefined) return NO_TOPICS;
      exchange = next;
    }
    return NO_TOPICS;
  }

  /**
   * `route` for a record without headers whose routing key is its key (null: the empty key),
   * given as bytes: a key routed lately (by any exchange, while no exchange, topic or queue
   * changed) is answered from a memo of its bytes, without decoding it as text or walking
   * the exchange again. Each answer is what `route` gave for the same bytes.
   */
  routeKey(name: string, key: Uint8Array | null): readonly string[] {
    if (key !== null && key.length > KEY_MEMO_BYTES_MAX) {
      return this.route(name, keyDecoder.decode(key), noHeaders);
    }
    const slot = keyHash(key) & (KEY_MEMO_SLOTS - 1);
    const memo = this.#keyMemo[slot];
    const generation = this.#host.generation();
    if (
      memo !== undefined &&
      memo.version === this.#version &&
      memo.generation === generation &&
      memo.exchange === name &&
      sameKey(memo.key, key)
    ) {
      return memo.topics;
    }
    const topics = this.route(name, key === null ? "" : keyDecoder.decode(key), noHeaders);
    // Kept only for what route answered without throwing (an unknown exchange throws).
    this.#keyMemo[slot] = {
      exchange: name,
      key: key === null ? null : key.slice(),
      topics,
      version: this.#version,
      generation,
    };
    return topics;
  }

  /** The topics one exchange's bindings reach for a record (no alternate followed). */
  #routeOnce(exchange: Compiled, routingKey: string, headers: HeaderLookup): readonly string[] {
    const { type, bindings } = exchange.config;
    if (type === "fanout") return this.#topicsOf(bindings.map((binding) => binding.destination));
    if (type === "headers") {
      const found = bindings.filter((b) => headersMatch(b, headers)).map((b) => b.destination);
      return this.#topicsOf(found);
    }
    const generation = this.#host.generation();
    const cached = exchange.cache.get(routingKey);
    if (cached !== undefined) {
      if (cached.generation === generation) return cached.topics;
      cached.topics = this.#topicsOf(cached.found);
      cached.generation = generation;
      return cached.topics;
    }
    let found: readonly BindingDestination[];
    if (type === "direct") {
      found = exchange.direct.get(routingKey) ?? [];
    } else {
      found = exchange.trie.match(routingKey.split(".")).map((index) => exchange.patterns[index]!);
    }
    const topics = this.#topicsOf(found);
    if (exchange.cache.size >= ROUTE_CACHE_ENTRIES_MAX) exchange.cache.clear();
    exchange.cache.set(routingKey, { found, topics, generation });
    return topics;
  }

  #topicsOf(destinations: readonly BindingDestination[]): readonly string[] {
    if (destinations.length === 0) return NO_TOPICS;
    const topics: string[] = [];
    for (const destination of destinations) {
      const topic =
        destination.kind === "topic" ? destination.name : this.#host.queueTopic(destination.name);
      if (topic === undefined || topics.includes(topic)) continue;
      if (this.#host.topicExists(topic)) topics.push(topic);
    }
    return topics.length === 0 ? NO_TOPICS : topics;
  }
}

function bindingDestination(exchange: string, options: BindOptions): BindingDestination {
  const { queue, topic } = options;
  if ((queue === undefined) === (topic === undefined)) {
    throw new SluiceError(
      "INVALID_EXCHANGE",
      `A binding of exchange '${exchange}' names exactly one of a queue and a topic`,
      { exchange },
    );
  }
  // A queue's name that breaks the naming rules is INVALID_QUEUE, saying "Queue name".
  if (queue !== undefined) return { kind: "queue", name: validateQueueName(queue) };
  return { kind: "topic", name: validateTopicName(topic) };
}

/**
 * The default exchange exists always, so declaring, deleting, binding or unbinding it is a bad
 * request (INVALID_EXCHANGE), not a missing exchange: "does not exist" would be false.
 */
function refuseDefault(name: string): void {
  if (name !== DEFAULT_EXCHANGE) return;
  throw new SluiceError(
    "INVALID_EXCHANGE",
    "The default exchange '' exists always and cannot be declared, deleted or bound",
    { exchange: name },
  );
}

function resolveExchangeOptions(
  name: string,
  options: ExchangeOptions,
): Omit<ExchangeConfig, "createdMs" | "bindings"> {
  refuseDefault(name);
  validateExchangeName(name);
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`declaring exchange '${name}' needs options with a type`);
  }
  const type = validateExchangeType(name, options.type);
  const alternateExchange = options.alternateExchange ?? null;
  const alternateTopic = options.alternateTopic ?? null;
  if (alternateExchange !== null && alternateTopic !== null) {
    throw new SluiceError(
      "INVALID_EXCHANGE",
      `Exchange '${name}' names both an alternate exchange and an alternate topic`,
      { exchange: name },
    );
  }
  if (alternateExchange !== null) validateExchangeName(alternateExchange);
  if (alternateTopic !== null) validateTopicName(alternateTopic);
  return { name, type, alternateExchange, alternateTopic };
}

/** Reads a stored definition, checking it as a declare and binds would. */
function parseExchangeConfig(text: string): ExchangeConfig {
  const raw = JSON.parse(text) as Record<string, unknown>;
  const name = validateExchangeName(raw["name"]);
  const options = resolveExchangeOptions(name, raw as unknown as ExchangeOptions);
  if (!Array.isArray(raw["bindings"])) throw new TypeError("bindings is not an array");
  const bindings = (raw["bindings"] as Binding[]).map((binding): Binding => {
    const kind = binding.destination?.kind;
    if (kind !== "queue" && kind !== "topic") throw new TypeError("a binding has no destination");
    return {
      destination: { kind, name: validateTopicName(binding.destination.name) },
      routingKey: validateBindingKey(name, options.type, binding.routingKey),
      match: validateHeaderMatch(name, binding.match),
      headers: validateBindingHeaders(name, binding.headers),
    };
  });
  const createdMs = typeof raw["createdMs"] === "number" ? raw["createdMs"] : 0;
  return { ...options, createdMs, bindings };
}

function compile(config: ExchangeConfig): Compiled {
  const direct = new Map<string, BindingDestination[]>();
  const trie = new TopicTrie();
  const patterns: BindingDestination[] = [];
  for (const binding of config.bindings) {
    if (config.type === "direct") {
      const list = direct.get(binding.routingKey) ?? [];
      list.push(binding.destination);
      direct.set(binding.routingKey, list);
    } else if (config.type === "topic") {
      trie.add(compileTopicPattern(binding.routingKey), patterns.length);
      patterns.push(binding.destination);
    }
  }
  return { config, direct, trie, patterns, cache: new Map() };
}

// Exchanges as AMQP 0-9-1 defines them, the pure part: the four types, their bindings, checks
// of what a declare or a bind is given, and the matching rules. No files and no state here:
// exchanges.ts keeps the durable definitions and applies these rules.
//
//   direct   a binding matches when its routing key equals the record's, byte for byte
//   fanout   every binding matches; routing keys are ignored
//   topic    the binding key is a pattern of words separated by `.`: `*` is exactly one word,
//            `#` zero or more; the record's routing key is split the same way (an empty key is
//            one empty word, as RabbitMQ splits it, so `*` and `#` match it)
//   headers  the binding's header pairs, without keys starting with `x-`, are compared with
//            the record's headers (values as UTF-8): `match: "all"` needs every pair present
//            and equal (no pairs: matches every record), `"any"` at least one (no pairs: none)

import { SluiceError } from "../record/mod.ts";
import { validateTopicName } from "./topic_name.ts";

export const EXCHANGE_TYPES = ["direct", "fanout", "topic", "headers"] as const;
export type ExchangeType = (typeof EXCHANGE_TYPES)[number];
export type HeaderMatch = "all" | "any";

/** Where a binding sends what it matches: a queue (its topic, found when routing) or a topic. */
export type BindingDestination = { kind: "queue" | "topic"; name: string };

export type Binding = {
  destination: BindingDestination;
  /** The exact key (direct), the pattern (topic); kept but unused by fanout and headers. */
  routingKey: string;
  /** Headers exchanges only: how the pairs combine. */
  match: HeaderMatch;
  /** Headers exchanges only: the pairs to compare, `x-` keys included as given. */
  headers: Readonly<Record<string, string>>;
};

/** AMQP's shortstr: routing keys and binding keys are at most 255 bytes. */
export const ROUTING_KEY_BYTES_MAX = 255;
/** Header pairs one binding may compare. */
export const BINDING_HEADERS_MAX = 64;
/** A header key or value a binding compares, in bytes. */
export const BINDING_HEADER_BYTES_MAX = 1024;

const encoder = new TextEncoder();

function invalid(message: string, details: Record<string, string | number>): SluiceError {
  return new SluiceError("INVALID_EXCHANGE", message, details);
}

/** Exchange names follow topic-name rules; the empty name is the default exchange's own. */
export function validateExchangeName(name: unknown): string {
  try {
    return validateTopicName(name);
  } catch (error) {
    if (!(error instanceof SluiceError)) throw error;
    const text = error.message.replace(/^Topic name/, "Exchange name");
    throw invalid(text, { exchange: String(name) });
  }
}

export function validateExchangeType(exchange: string, type: unknown): ExchangeType {
  if (typeof type === "string" && (EXCHANGE_TYPES as readonly string[]).includes(type)) {
    return type as ExchangeType;
  }
  throw invalid(
    `Exchange '${exchange}': type ${JSON.stringify(type) ?? String(type)} is not one of ` +
      EXCHANGE_TYPES.join(", "),
    { exchange, type: String(type) },
  );
}

/** A binding's routing key checked for its exchange's type (a topic pattern has no empty word). */
export function validateBindingKey(exchange: string, type: ExchangeType, key: unknown): string {
  if (typeof key !== "string") {
    throw invalid(`Exchange '${exchange}': routing key ${String(key)} is not a string`, {
      exchange,
    });
  }
  if (encoder.encode(key).length > ROUTING_KEY_BYTES_MAX) {
    throw invalid(
      `Exchange '${exchange}': routing key of ${encoder.encode(key).length} bytes is longer ` +
        `than ${ROUTING_KEY_BYTES_MAX}`,
      { exchange, routingKey: key.slice(0, 64) },
    );
  }
  if (type === "topic" && key.split(".").some((word) => word.length === 0)) {
    throw invalid(
      `Exchange '${exchange}': topic pattern '${key}' has an empty word ` +
        "(words are separated by single dots and none is empty)",
      { exchange, routingKey: key },
    );
  }
  return key;
}

/** A headers binding's pairs: string keys and values, within the limits. */
export function validateBindingHeaders(
  exchange: string,
  headers: unknown,
): Readonly<Record<string, string>> {
  if (headers === undefined || headers === null) return {};
  if (typeof headers !== "object" || Array.isArray(headers)) {
    throw invalid(`Exchange '${exchange}': binding headers must be a map of strings`, {
      exchange,
    });
  }
  const entries = Object.entries(headers as Record<string, unknown>);
  if (entries.length > BINDING_HEADERS_MAX) {
    throw invalid(
      `Exchange '${exchange}': ${entries.length} binding headers exceed ${BINDING_HEADERS_MAX}`,
      { exchange, headers: entries.length },
    );
  }
  for (const [key, value] of entries) {
    const tooLong =
      encoder.encode(key).length > BINDING_HEADER_BYTES_MAX ||
      (typeof value === "string" && encoder.encode(value).length > BINDING_HEADER_BYTES_MAX);
    if (typeof value !== "string" || key.length === 0 || tooLong) {
      throw invalid(
        `Exchange '${exchange}': binding header '${key.slice(0, 64)}' must be a non-empty key ` +
          `with a string value, each at most ${BINDING_HEADER_BYTES_MAX} bytes`,
        { exchange, header: key.slice(0, 64) },
      );
    }
  }
  return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) as Record<
    string,
    string
  >;
}

export function validateHeaderMatch(exchange: string, match: unknown): HeaderMatch {
  if (match === undefined || match === null || match === "all") return "all";
  if (match === "any") return "any";
  throw invalid(`Exchange '${exchange}': match ${String(match)} is not all or any`, {
    exchange,
    match: String(match),
  });
}

/** True when two bindings are the same one (unbind removes the binding equal to its request). */
export function sameBinding(a: Binding, b: Binding): boolean {
  if (a.destination.kind !== b.destination.kind) return false;
  if (a.destination.name !== b.destination.name) return false;
  if (a.routingKey !== b.routingKey || a.match !== b.match) return false;
  return JSON.stringify(a.headers) === JSON.stringify(b.headers);
}

/** A topic pattern compiled once: its words, runs of `#` folded into one. */
export function compileTopicPattern(pattern: string): readonly string[] {
  const words: string[] = [];
  for (const word of pattern.split(".")) {
    if (word === "#" && words[words.length - 1] === "#") continue;
    words.push(word);
  }
  return words;
}

/**
 * AMQP topic matching over words, as dynamic programming on (pattern word, key word): linear
 * in their product, where naive backtracking on several `#` is exponential. `reach[j]` is 1
 * when the pattern words seen so far can match the first j key words.
 */
export function topicMatches(pattern: readonly string[], key: readonly string[]): boolean {
  const width = key.length + 1;
  let reach = new Uint8Array(width);
  let next = new Uint8Array(width);
  reach[0] = 1;
  for (const word of pattern) {
    next.fill(0);
    if (word === "#") {
      let any = 0;
      for (let j = 0; j < width; j++) {
        any |= reach[j]!;
        next[j] = any;
      }
    } else {
      for (let j = 1; j < width; j++) {
        if (reach[j - 1] === 1 && (word === "*" || word === key[j - 1])) next[j] = 1;
      }
    }
    [reach, next] = [next, reach];
  }
  return reach[key.length] === 1;
}

/** A record's headers, as the headers match reads them: key → value as UTF-8 (null: absent). */
export type HeaderLookup = (key: string) => string | undefined;

/** The headers-exchange rule; keys starting with `x-` in the binding are not compared. */
export function headersMatch(binding: Binding, lookup: HeaderLookup): boolean {
  let pairs = 0;
  let matched = 0;
  for (const key in binding.headers) {
    if (key.startsWith("x-")) continue;
    pairs++;
    if (lookup(key) === binding.headers[key]) matched++;
  }
  return binding.match === "all" ? matched === pairs : matched > 0;
}

type TrieNode = {
  /** Children by literal word. */
  words: Map<string, TrieNode>;
  star: TrieNode | null;
  hash: TrieNode | null;
  /** The bindings whose pattern ends here, by index. */
  ends: number[];
  /** This node's number, for the visited marks of one match. */
  id: number;
};

function trieNode(id: number): TrieNode {
  return { words: new Map(), star: null, hash: null, ends: [], id };
}

/**
 * Topic patterns compiled into one trie over words, as RabbitMQ's topic exchange keeps them:
 * a routing key walks the trie once instead of being tested against every pattern, so a key
 * costs about its own length in lookups whatever the number of bindings. `#` may take any
 * number of words, so a walk may reach one node at one key position by several ways; each
 * (node, position) is visited once, which keeps a match within nodes × (words + 1) steps.
 */
export class TopicTrie {
  readonly #root: TrieNode = trieNode(0);
  #nodes = 1;
  #patterns = 0;

  /** Adds pattern number `index` (its words as compileTopicPattern gives them). */
  add(words: readonly string[], index: number): void {
    let node = this.#root;
    for (const word of words) {
      let next: TrieNode | null | undefined;
      if (word === "#") next = node.hash ??= trieNode(this.#nodes++);
      else if (word === "*") next = node.star ??= trieNode(this.#nodes++);
      else {
        next = node.words.get(word);
        if (next === undefined) {
          next = trieNode(this.#nodes++);
          node.words.set(word, next);
        }
      }
      node = next;
    }
    node.ends.push(index);
    this.#patterns = Math.max(this.#patterns, index + 1);
  }

  /** The indexes of the patterns that match `key`, ascending, each once. */
  match(key: readonly string[]): number[] {
    const width = key.length + 1;
    const visited = new Uint8Array(this.#nodes * width);
    const matched = new Uint8Array(this.#patterns);
    const walk = (node: TrieNode, at: number): void => {
      const mark = node.id * width + at;
      if (visited[mark] === 1) return;
      visited[mark] = 1;
      if (at === key.length) for (const index of node.ends) matched[index] = 1;
      // `#` takes zero or more words: its node continues from here and from every later word.
      if (node.hash !== null) for (let skip = at; skip <= key.length; skip++) walk(node.hash, skip);
      if (at === key.length) return;
      const child = node.words.get(key[at]!);
      if (child !== undefined) walk(child, at + 1);
      if (node.star !== null) walk(node.star, at + 1);
    };
    walk(this.#root, 0);
    const out: number[] = [];
    for (let index = 0; index < matched.length; index++) if (matched[index] === 1) out.push(index);
    return out;
  }
}

// Routing tables for each exchange type, written from AMQP 0-9-1's rules and RabbitMQ's
// documentation (tutorial 5, "Topics"; the headers exchange's x-match), not from the code:
// topic patterns with `*`, `#`, `#` alone, `#` in the middle and at both ends; headers with
// all/any and `x-` keys ignored; and the bad input a declare or a bind refuses.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  type Binding,
  compileTopicPattern,
  headersMatch,
  topicMatches,
  TopicTrie,
  validateBindingKey,
  validateExchangeType,
} from "../../engine/exchange_routing.ts";
import { isSluiceError } from "../../record/mod.ts";

function matches(pattern: string, key: string): boolean {
  return topicMatches(compileTopicPattern(pattern), key.split("."));
}

// [pattern, routing key, matches]
const TOPIC_TABLE: [string, string, boolean][] = [
  // RabbitMQ tutorial 5's own examples.
  ["*.orange.*", "quick.orange.rabbit", true],
  ["*.*.rabbit", "quick.orange.rabbit", true],
  ["lazy.#", "lazy.orange.elephant", true],
  ["*.orange.*", "quick.orange.fox", true],
  ["*.*.rabbit", "quick.orange.fox", false],
  ["lazy.#", "lazy.brown.fox", true],
  ["*.*.rabbit", "lazy.pink.rabbit", true],
  ["lazy.#", "lazy.pink.rabbit", true],
  ["*.orange.*", "quick.brown.fox", false],
  ["*.orange.*", "orange", false],
  ["*.orange.*", "quick.orange.new.rabbit", false],
  ["*.*.rabbit", "quick.orange.new.rabbit", false],
  ["lazy.#", "lazy.orange.new.rabbit", true],
  ["lazy.#", "lazy", true],
  // `#` alone matches every key, the empty one included.
  ["#", "a", true],
  ["#", "a.b.c", true],
  ["#", "", true],
  // `*` is exactly one word; the empty key is one empty word.
  ["*", "a", true],
  ["*", "a.b", false],
  ["*", "", true],
  ["a.*", "a", false],
  ["a.*", "a.b", true],
  ["a.*", "a.b.c", false],
  // `#` matches zero words, in the middle and at both ends.
  ["a.#.b", "a.b", true],
  ["a.#.b", "a.x.y.b", true],
  ["a.#.b", "a.x.y.c", false],
  ["#.b", "b", true],
  ["#.b", "a.b", true],
  ["#.b", "a.b.c", false],
  ["#.a.#", "a", true],
  ["#.a.#", "x.a.y", true],
  ["#.a.#", "x.y", false],
  ["#.#", "a.b", true],
  ["#.*", "", true],
  ["#.*", "a.b.c", true],
  ["*.#", "a", true],
  ["*.#", "", true],
  ["*.*.#", "a", false],
  // Exact words: case matters, a word is not a prefix.
  ["a.b", "a.b", true],
  ["a.b", "A.b", false],
  ["a.b", "a.bc", false],
  ["ab", "a.b", false],
  // Empty words in a routing key are words (RabbitMQ splits on every dot).
  ["a.*.b", "a..b", true],
  ["a.#", "a.", true],
  ["*.*", ".", true],
];

function trieMatches(pattern: string, key: string): boolean {
  const trie = new TopicTrie();
  trie.add(compileTopicPattern(pattern), 0);
  return trie.match(key.split(".")).length === 1;
}

describe("topic exchange matching", () => {
  for (const [pattern, key, expected] of TOPIC_TABLE) {
    test(`'${pattern}' ${expected ? "matches" : "does not match"} '${key}'`, () => {
      assert.equal(matches(pattern, key), expected);
      assert.equal(trieMatches(pattern, key), expected, "the compiled trie agrees");
    });
  }

  test("the trie matches what the pattern matcher matches, over random patterns and keys", () => {
    // Few distinct words, so that patterns and keys overlap often; keys may hold empty words.
    const word = fc.constantFrom("a", "b", "c");
    const patternWord = fc.oneof(word, fc.constant("*"), fc.constant("#"));
    const pattern = fc.array(patternWord, { minLength: 1, maxLength: 6 }).map((w) => w.join("."));
    const key = fc.array(fc.oneof(word, fc.constant("")), { minLength: 1, maxLength: 7 });
    fc.assert(
      fc.property(fc.array(pattern, { minLength: 1, maxLength: 12 }), key, (patterns, words) => {
        const trie = new TopicTrie();
        for (const [index, p] of patterns.entries()) trie.add(compileTopicPattern(p), index);
        const text = words.join(".");
        const expected = patterns.flatMap((p, index) => (matches(p, text) ? [index] : []));
        assert.deepEqual(trie.match(text.split(".")), expected, `key '${text}' ${patterns}`);
      }),
      { numRuns: 2_000, seed: 13 },
    );
  });

  test("the trie with many # stays fast (each node and position visited once)", () => {
    const trie = new TopicTrie();
    trie.add(compileTopicPattern(Array.from({ length: 60 }, () => "#.x").join(".")), 0);
    trie.add(compileTopicPattern(Array.from({ length: 60 }, () => "#.*").join(".")), 1);
    const key = Array.from({ length: 120 }, () => "y").join(".");
    const started = performance.now();
    assert.deepEqual(trie.match(key.split(".")), [1]);
    assert.ok(performance.now() - started < 100, "matched in well under 100 ms");
  });

  test("many # in a pattern stay fast (no backtracking blow-up)", () => {
    const pattern = Array.from({ length: 60 }, () => "#.x").join(".");
    const key = Array.from({ length: 120 }, () => "y").join(".");
    const started = performance.now();
    assert.equal(matches(pattern, key), false);
    assert.ok(performance.now() - started < 100, "matched in well under 100 ms");
  });
});

function headerBinding(match: "all" | "any", headers: Record<string, string>): Binding {
  return {
    destination: { kind: "topic", name: "t" },
    routingKey: "",
    match,
    headers,
  };
}

function lookup(headers: Record<string, string>): (key: string) => string | undefined {
  return (key) => headers[key];
}

// [match, binding headers, record headers, matches]
type HeadersRow = ["all" | "any", Record<string, string>, Record<string, string>, boolean];
const HEADERS_TABLE: HeadersRow[] = [
  ["all", { format: "pdf", type: "report" }, { format: "pdf", type: "report" }, true],
  ["all", { format: "pdf", type: "report" }, { format: "pdf", type: "log" }, false],
  ["all", { format: "pdf", type: "report" }, { format: "pdf" }, false],
  ["all", { format: "pdf" }, { format: "pdf", type: "report", extra: "x" }, true],
  ["any", { format: "pdf", type: "report" }, { format: "pdf", type: "log" }, true],
  ["any", { format: "pdf", type: "report" }, { format: "zip", type: "log" }, false],
  ["any", { format: "pdf", type: "report" }, {}, false],
  // Keys starting with x- in the binding are not compared (x-match itself, x-anything).
  ["all", { format: "pdf", "x-note": "ignored" }, { format: "pdf" }, true],
  ["any", { "x-note": "ignored" }, { "x-note": "ignored" }, false],
  // No pairs: all matches everything, any nothing (RabbitMQ's headers_match).
  ["all", {}, { format: "pdf" }, true],
  ["any", {}, { format: "pdf" }, false],
  // Values compare exactly.
  ["all", { format: "pdf" }, { format: "PDF" }, false],
];

describe("headers exchange matching", () => {
  for (const [match, binding, record, expected] of HEADERS_TABLE) {
    const name = `${match} ${JSON.stringify(binding)} vs ${JSON.stringify(record)}`;
    test(`${name} → ${expected}`, () => {
      assert.equal(headersMatch(headerBinding(match, binding), lookup(record)), expected);
    });
  }
});

describe("bad exchange input", () => {
  test("a topic pattern with an empty word is INVALID_EXCHANGE naming the pattern", () => {
    for (const pattern of ["", "a..b", ".a", "a.", "."]) {
      assert.throws(
        () => validateBindingKey("x", "topic", pattern),
        (error) =>
          isSluiceError(error, "INVALID_EXCHANGE") && error.message.includes(`'${pattern}'`),
      );
    }
  });

  test("an empty direct key is allowed (it matches the empty routing key)", () => {
    assert.equal(validateBindingKey("x", "direct", ""), "");
  });

  test("a routing key past 255 bytes is INVALID_EXCHANGE", () => {
    assert.throws(
      () => validateBindingKey("x", "direct", "k".repeat(256)),
      (error) => isSluiceError(error, "INVALID_EXCHANGE") && error.message.includes("256 bytes"),
    );
  });

  test("an unknown exchange type is INVALID_EXCHANGE naming it", () => {
    assert.throws(
      () => validateExchangeType("x", "x-delayed-message"),
      (error) =>
        isSluiceError(error, "INVALID_EXCHANGE") && error.message.includes("x-delayed-message"),
    );
  });
});

// Routing one-key batches by their key's bytes (Exchanges.routeKey, its memo of recent keys)
// checked against the plain matcher (Exchanges.route on the decoded key): a seeded run of
// declares, binds, unbinds, deletes, alternates, topics and queues coming and going, with keys
// drawn from a small alphabet so that many share a memo slot, gives the same destinations at
// every step; and the one-key walk (exchange_scan.ts) agrees with the decoder for keys of every
// length, short ones and ones longer than the words it holds, differing in any byte.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { uniformRouting } from "../../engine/exchange_scan.ts";
import type { ExchangeType } from "../../engine/exchange_routing.ts";
import { Exchanges } from "../../engine/exchanges.ts";
import { realFileIO } from "../../engine/io.ts";
import { decodeRecordBatch, encodeRecordBatch } from "../../engine/mod.ts";
import type { RecordInput } from "../../record/mod.ts";
import { mulberry32, tempDir } from "../helpers.ts";

const encoder = new TextEncoder();
const noHeaders = () => undefined;
const TOPICS = ["t0", "t1", "t2", "t3", "t4"];
const QUEUES = ["q0", "q1"];
const EXCHANGES = ["x0", "x1", "x2"];
const TYPES: ExchangeType[] = ["direct", "topic", "fanout", "headers"];

/** The broker state routing reads: topics and queues that exist, and a generation counter. */
class World {
  topics = new Set<string>(TOPICS);
  queues = new Map<string, string>([["q0", "t0"]]);
  generation = 0;
}

function pick<T>(random: () => number, list: readonly T[]): T {
  return list[Math.floor(random() * list.length)]!;
}

/** Keys of a few words from a tiny alphabet, some of them invalid UTF-8 or null. */
function randomKey(random: () => number): Uint8Array | null {
  if (random() < 0.05) return null;
  if (random() < 0.05) return Uint8Array.of(0xff, 0x2e, 0x61);
  const words = 1 + Math.floor(random() * 3);
  const text = Array.from({ length: words }, () => pick(random, ["a", "b", "cc", "q0"])).join(".");
  return encoder.encode(text);
}

function randomStep(random: () => number, exchanges: Exchanges, world: World): void {
  const name = pick(random, EXCHANGES);
  const roll = random();
  try {
    if (roll < 0.15) {
      exchanges.declare(name, {
        type: pick(random, TYPES),
        alternateExchange: random() < 0.3 ? pick(random, EXCHANGES) : null,
      });
    } else if (roll < 0.45) {
      const pattern = pick(random, ["a", "a.*", "#", "*.b", "a.#", "cc.a.b", "q0", "b.#.a"]);
      const destination =
        random() < 0.3 ? { queue: pick(random, QUEUES) } : { topic: pick(random, TOPICS) };
      exchanges.bind(name, { ...destination, routingKey: pattern });
    } else if (roll < 0.6) {
      const list = exchanges.get(name).bindings;
      const binding = list[Math.floor(random() * list.length)];
      if (binding !== undefined) {
        exchanges.unbind(name, {
          [binding.destination.kind]: binding.destination.name,
          routingKey: binding.routingKey,
          match: binding.match,
          headers: binding.headers,
        });
      }
    } else if (roll < 0.65) {
      exchanges.delete(name);
    } else if (roll < 0.8) {
      const topic = pick(random, TOPICS);
      if (!world.topics.delete(topic)) world.topics.add(topic);
      world.generation++;
    } else {
      const queue = pick(random, QUEUES);
      if (!world.queues.delete(queue)) world.queues.set(queue, pick(random, TOPICS));
      world.generation++;
    }
  } catch {
    // A bind to a missing exchange, queue or topic is refused; the state is unchanged.
  }
}

describe("routing by key bytes", () => {
  test("routeKey answers as route on the decoded key through every change (seeded)", () => {
    const decoder = new TextDecoder();
    for (let seed = 1; seed <= 12; seed++) {
      using dir = tempDir();
      const random = mulberry32(seed);
      const world = new World();
      const exchanges = Exchanges.open({
        dataDir: dir.path,
        io: realFileIO,
        now: () => 0,
        warn: () => {},
        queueTopic: (queue) => world.queues.get(queue),
        topicExists: (topic) => world.topics.has(topic),
        generation: () => world.generation,
      });
      for (let step = 0; step < 120; step++) {
        randomStep(random, exchanges, world);
        // Each key asked several times, so that most answers come from the memo.
        for (let ask = 0; ask < 12; ask++) {
          const key = randomKey(random);
          const name = random() < 0.1 ? "" : pick(random, EXCHANGES);
          const text = key === null ? "" : decoder.decode(key);
          let expected: readonly string[] | string;
          try {
            expected = exchanges.route(name, text, noHeaders);
          } catch (error) {
            expected = (error as { code?: string }).code ?? "threw";
          }
          let found: readonly string[] | string;
          try {
            found = exchanges.routeKey(name, key);
          } catch (error) {
            found = (error as { code?: string }).code ?? "threw";
          }
          assert.deepEqual(found, expected, `seed ${seed} step ${step} ${name} '${text}'`);
        }
      }
    }
  });

  test("a key longer than 255 bytes is routed without the memo, as route routes it", () => {
    using dir = tempDir();
    const topics = new Set(["long", "other"]);
    let generation = 0;
    const exchanges = Exchanges.open({
      dataDir: dir.path,
      io: realFileIO,
      now: () => 0,
      warn: () => {},
      queueTopic: () => undefined,
      topicExists: (topic) => topics.has(topic),
      generation: () => generation,
    });
    exchanges.declare("x", { type: "topic" });
    exchanges.bind("x", { topic: "long", routingKey: "a.#" });
    const key = encoder.encode(`a.${"b".repeat(300)}`);
    assert.deepEqual(exchanges.routeKey("x", key), ["long"]);
    topics.delete("long");
    generation++;
    assert.deepEqual(exchanges.routeKey("x", key), []);
  });
});

describe("the one-key walk over keys of every length", () => {
  test("finds a batch uniform exactly when the decoder does (seeded, keys 0-300 bytes)", () => {
    for (let seed = 1; seed <= 400; seed++) {
      const random = mulberry32(seed);
      const keyBytes = Math.floor(random() * (random() < 0.8 ? 24 : 300));
      const key = Uint8Array.from({ length: keyBytes }, () => 97 + Math.floor(random() * 3));
      const count = 2 + Math.floor(random() * 30);
      const inputs: RecordInput[] = Array.from({ length: count }, () => ({
        key: key.slice(),
        value: encoder.encode("v".repeat(Math.floor(random() * 200))),
      }));
      // Half the batches have one record whose key differs in one byte (any position), or
      // in length by one.
      if (random() < 0.5 && keyBytes > 0) {
        const other = inputs[1 + Math.floor(random() * (count - 1))]!;
        const changed = (other.key as Uint8Array).slice();
        if (random() < 0.8) changed[Math.floor(random() * keyBytes)]! ^= 0x01;
        other.key = random() < 0.8 ? changed : changed.subarray(0, keyBytes - 1);
      }
      const batch = encodeRecordBatch(inputs);
      const decoded = decodeRecordBatch(batch).records;
      const expected = decoded.every(
        (record) => JSON.stringify(record.key) === JSON.stringify(decoded[0]!.key),
      );
      const found = uniformRouting(batch);
      assert.equal(found !== undefined, expected, `seed ${seed}, key of ${keyBytes} bytes`);
      if (found !== undefined) assert.deepEqual(found.key, decoded[0]!.key);
    }
  });
});

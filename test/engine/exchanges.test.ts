// Exchanges in the engine: declared and bound durably (a reopen and a crash image keep them),
// routing of each type end to end through `publish`, the default exchange, alternates, one
// append per destination topic however many bindings reach it, a batch split only where its
// records go different ways, and bad input refused with nothing half-created.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { decodeRecordBatches, type Engine, encodeRecordBatch } from "../../engine/mod.ts";
import { murmur2, toPositive } from "../../record/mod.ts";
import { tempDir } from "../helpers.ts";
import { Clock, crashImage, failsWith, openEngine, readDeadLetters } from "./queue_helpers.ts";

const encoder = new TextEncoder();
/** A publish that no full reject-publish queue cut short. */
const NOT_FULL = { rejected: 0, fullQueue: null };

type Rec = { key?: string; value: string; headers?: Record<string, string> };

function batchOf(records: Rec[]): Uint8Array {
  return encodeRecordBatch(
    records.map((r) => ({
      key: r.key === undefined ? null : encoder.encode(r.key),
      value: encoder.encode(r.value),
      headers: Object.entries(r.headers ?? {}).map(([key, value]) => ({
        key,
        value: encoder.encode(value),
      })),
    })),
  );
}

function valuesOf(engine: Engine, topic: string): string[] {
  return readDeadLetters(engine, topic).map((letter) => letter.value);
}

/** Batches stored in a topic (all partitions). */
function batchCount(engine: Engine, topic: string): number {
  let count = 0;
  const { partitions } = engine.describeTopic(topic);
  for (let partition = 0; partition < partitions; partition++) {
    const log = engine.partition(topic, partition);
    const read = log.read(log.logStartOffset, 1 << 20);
    for (const view of read.views) count += [...decodeRecordBatches(view)].length;
  }
  return count;
}

async function withEngine(work: (engine: Engine, dir: string) => Promise<void>): Promise<void> {
  using dir = tempDir();
  const { engine } = await openEngine(dir.path, new Clock());
  try {
    await work(engine, dir.path);
  } finally {
    await engine.close();
  }
}

async function topics(engine: Engine, ...names: string[]): Promise<void> {
  for (const name of names) await engine.createTopic(name, { config: { fsync: "never" } });
}

describe("exchange routing through publish", () => {
  test("direct: exact keys, one batch split by destination, order kept", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "a", "b");
      await engine.declareExchange("x", { type: "direct" });
      await engine.bindExchange("x", { topic: "a", routingKey: "red" });
      await engine.bindExchange("x", { topic: "b", routingKey: "blue" });
      await engine.bindExchange("x", { topic: "b", routingKey: "red" });
      const result = await engine.publish(
        "x",
        batchOf([
          { key: "red", value: "r1" },
          { key: "blue", value: "b1" },
          { key: "green", value: "g1" },
          { key: "red", value: "r2" },
        ]),
      );
      assert.deepEqual(result, { destinations: 2, records: 4, unroutable: 1, ...NOT_FULL });
      assert.deepEqual(valuesOf(engine, "a"), ["r1", "r2"]);
      assert.deepEqual(valuesOf(engine, "b"), ["r1", "b1", "r2"]);
      assert.equal(batchCount(engine, "a"), 1, "one append per destination topic");
      assert.equal(batchCount(engine, "b"), 1);
    });
  });

  test("a topic bound twice, or through two queues on it, takes the batch once", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "t");
      await engine.declareQueue("q1", { topic: "t" });
      await engine.declareQueue("q2", { topic: "t" });
      await engine.declareExchange("fan", { type: "fanout" });
      await engine.bindExchange("fan", { topic: "t" });
      await engine.bindExchange("fan", { queue: "q1" });
      await engine.bindExchange("fan", { queue: "q2" });
      const result = await engine.publish("fan", batchOf([{ value: "1" }, { value: "2" }]));
      assert.deepEqual(result, { destinations: 1, records: 2, unroutable: 0, ...NOT_FULL });
      assert.deepEqual(valuesOf(engine, "t"), ["1", "2"]);
      assert.equal(batchCount(engine, "t"), 1);
    });
  });

  test("a batch whose records all go one way is stored with its own bytes", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "t");
      await engine.declareExchange("x", { type: "topic" });
      await engine.bindExchange("x", { topic: "t", routingKey: "orders.#" });
      const batch = batchOf([
        { key: "orders.eu", value: "1", headers: { h: "v" } },
        { key: "orders.us.east", value: "2" },
      ]);
      await engine.publish("x", batch);
      const read = engine.partition("t", 0).read(0, 1 << 20);
      const stored = read.views[0]!;
      // Everything after baseOffset (which the log assigns) is the producer's bytes.
      assert.deepEqual(stored.subarray(8), batch.subarray(8));
    });
  });

  test("topic and headers exchanges route as their bindings say", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "eu", "all", "pdf");
      await engine.declareExchange("tx", { type: "topic" });
      await engine.bindExchange("tx", { topic: "eu", routingKey: "*.eu.*" });
      await engine.bindExchange("tx", { topic: "all", routingKey: "#" });
      await engine.publish(
        "tx",
        batchOf([
          { key: "order.eu.paid", value: "1" },
          { key: "order.us.paid", value: "2" },
        ]),
      );
      assert.deepEqual(valuesOf(engine, "eu"), ["1"]);
      assert.deepEqual(valuesOf(engine, "all"), ["1", "2"]);
      await engine.declareExchange("hx", { type: "headers" });
      await engine.bindExchange("hx", {
        topic: "pdf",
        match: "all",
        headers: { format: "pdf", "x-match": "all" },
      });
      const result = await engine.publish(
        "hx",
        batchOf([
          { value: "doc", headers: { format: "pdf" } },
          { value: "zip", headers: { format: "zip" } },
        ]),
      );
      assert.deepEqual(result, { destinations: 1, records: 2, unroutable: 1, ...NOT_FULL });
      assert.deepEqual(valuesOf(engine, "pdf"), ["doc"]);
    });
  });

  test("a bind or unbind drops the remembered matches of a routing key", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "a", "b");
      await engine.declareExchange("tx", { type: "topic" });
      await engine.bindExchange("tx", { topic: "a", routingKey: "order.*" });
      const one = batchOf([{ key: "order.paid", value: "1" }]);
      // Routed once so that its matches are remembered, then bound further, then unbound.
      assert.equal((await engine.publish("tx", one)).destinations, 1);
      await engine.bindExchange("tx", { topic: "b", routingKey: "#.paid" });
      assert.equal((await engine.publish("tx", one)).destinations, 2);
      await engine.unbindExchange("tx", { topic: "a", routingKey: "order.*" });
      assert.equal((await engine.publish("tx", one)).destinations, 1);
      await engine.unbindExchange("tx", { topic: "b", routingKey: "#.paid" });
      assert.deepEqual(await engine.publish("tx", one), {
        destinations: 0,
        records: 1,
        unroutable: 1,
        rejected: 0,
        fullQueue: null,
      });
      assert.deepEqual(valuesOf(engine, "a"), ["1", "1"]);
      assert.deepEqual(valuesOf(engine, "b"), ["1", "1"]);
    });
  });

  test("a topic created or deleted after a route is remembered changes where it goes", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "a", "b");
      await engine.declareExchange("tx", { type: "topic" });
      await engine.declareExchange("dx", { type: "direct" });
      await engine.bindExchange("tx", { topic: "a", routingKey: "order.*" });
      await engine.bindExchange("tx", { topic: "b", routingKey: "#.paid" });
      await engine.bindExchange("dx", { topic: "a", routingKey: "order.paid" });
      const one = batchOf([{ key: "order.paid", value: "1" }]);
      assert.equal((await engine.publish("tx", one)).destinations, 2);
      assert.equal((await engine.publish("dx", one)).destinations, 1);
      // Both routes are remembered; the topic behind them goes, then comes back.
      await engine.deleteTopic("a");
      assert.deepEqual(await engine.publish("tx", one), {
        destinations: 1,
        records: 1,
        unroutable: 0,
        ...NOT_FULL,
      });
      assert.deepEqual(await engine.publish("dx", one), {
        destinations: 0,
        records: 1,
        unroutable: 1,
        ...NOT_FULL,
      });
      await topics(engine, "a");
      assert.equal((await engine.publish("tx", one)).destinations, 2);
      assert.equal((await engine.publish("dx", one)).destinations, 1);
      assert.deepEqual(valuesOf(engine, "a"), ["1", "1"]);
      assert.deepEqual(valuesOf(engine, "b"), ["1", "1", "1"]);
    });
  });

  test("a queue deleted or declared after a route is remembered moves where it goes", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "s1", "s2");
      await engine.declareQueue("q", { topic: "s1" });
      await engine.declareExchange("tx", { type: "topic" });
      await engine.bindExchange("tx", { queue: "q", routingKey: "order.#" });
      const one = batchOf([{ key: "order.paid", value: "1" }]);
      assert.equal((await engine.publish("tx", one)).destinations, 1);
      // The binding names the queue: with the queue gone it matches nothing...
      await engine.deleteQueue("q");
      assert.deepEqual(await engine.publish("tx", one), {
        destinations: 0,
        records: 1,
        unroutable: 1,
        ...NOT_FULL,
      });
      // ...and a queue of that name on another topic takes the next record there.
      await engine.declareQueue("q", { topic: "s2" });
      assert.equal(
        (await engine.publish("tx", batchOf([{ key: "order.x", value: "2" }]))).destinations,
        1,
      );
      assert.equal((await engine.publish("tx", one)).destinations, 1);
      assert.deepEqual(valuesOf(engine, "s1"), ["1"]);
      assert.deepEqual(valuesOf(engine, "s2"), ["2", "1"]);
    });
  });

  test("a header named __proto__ is an ordinary header, kept across a reopen", async () => {
    using dir = tempDir();
    const clock = new Clock();
    for (const round of [1, 2]) {
      const { engine } = await openEngine(dir.path, clock);
      try {
        if (round === 1) {
          await topics(engine, "p");
          await engine.declareExchange("h", { type: "headers" });
          const headers = JSON.parse('{"__proto__": "x"}') as Record<string, string>;
          await engine.bindExchange("h", { topic: "p", headers });
        }
        assert.deepEqual(Object.keys(engine.listExchanges()[0]!.bindings[0]!.headers), [
          "__proto__",
        ]);
        const hit = batchOf([{ value: `${round}`, headers: { ["__proto__"]: "x" } }]);
        assert.equal((await engine.publish("h", hit)).destinations, 1);
        const miss = batchOf([{ value: "no", headers: { other: "x" } }]);
        assert.equal((await engine.publish("h", miss)).unroutable, 1);
      } finally {
        await engine.close();
      }
    }
  });

  test("the sluice-routing-key header is the routing key when present", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "a");
      await engine.declareExchange("x", { type: "direct" });
      await engine.bindExchange("x", { topic: "a", routingKey: "k" });
      await engine.publish(
        "x",
        batchOf([
          { key: "other", value: "1", headers: { "sluice-routing-key": "k" } },
          { key: "k", value: "2" },
        ]),
      );
      assert.deepEqual(valuesOf(engine, "a"), ["1", "2"]);
    });
  });

  test("the default exchange routes to the queue named by the routing key", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "jobs");
      await engine.declareQueue("work", { topic: "jobs" });
      const result = await engine.publish(
        "",
        batchOf([
          { key: "work", value: "1" },
          { key: "nowhere", value: "2" },
        ]),
      );
      assert.deepEqual(result, { destinations: 1, records: 2, unroutable: 1, ...NOT_FULL });
      assert.deepEqual(valuesOf(engine, "jobs"), ["1"]);
      await failsWith(() => engine.declareExchange("", { type: "direct" }), "INVALID_EXCHANGE");
      // It exists always: binding, unbinding or deleting it is refused, not "does not exist".
      await failsWith(() => engine.bindExchange("", { topic: "jobs" }), "INVALID_EXCHANGE");
      await failsWith(() => engine.unbindExchange("", { topic: "jobs" }), "INVALID_EXCHANGE");
      await failsWith(() => engine.deleteExchange(""), "INVALID_EXCHANGE");
    });
  });

  test("unroutable records go to the alternate topic or via the alternate exchange", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "a", "lost", "ae-out");
      await engine.declareExchange("x", { type: "direct", alternateTopic: "lost" });
      await engine.bindExchange("x", { topic: "a", routingKey: "k" });
      await engine.publish(
        "x",
        batchOf([
          { key: "k", value: "1" },
          { key: "z", value: "2" },
        ]),
      );
      assert.deepEqual(valuesOf(engine, "a"), ["1"]);
      assert.deepEqual(valuesOf(engine, "lost"), ["2"]);
      await engine.declareExchange("ae", { type: "fanout" });
      await engine.bindExchange("ae", { topic: "ae-out" });
      await engine.declareExchange("y", { type: "direct", alternateExchange: "ae" });
      const result = await engine.publish("y", batchOf([{ key: "z", value: "3" }]));
      assert.deepEqual(result, { destinations: 1, records: 1, unroutable: 0, ...NOT_FULL });
      assert.deepEqual(valuesOf(engine, "ae-out"), ["3"]);
      // A loop of alternates ends: the record is unroutable, not routed forever.
      await engine.declareExchange("l1", { type: "direct", alternateExchange: "l2" });
      await engine.declareExchange("l2", { type: "direct", alternateExchange: "l1" });
      const looped = await engine.publish("l1", batchOf([{ key: "z", value: "4" }]));
      assert.deepEqual(looped, { destinations: 0, records: 1, unroutable: 1, ...NOT_FULL });
    });
  });

  test("a batch of one key and headers routes once, whole; damaged bytes are refused", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "a");
      await engine.declareExchange("x", { type: "direct" });
      await engine.bindExchange("x", { topic: "a", routingKey: "k" });
      const same = { key: "other", headers: { "sluice-routing-key": "k", h: "1" } };
      const batch = batchOf([
        { ...same, value: "1" },
        { ...same, value: "2" },
      ]);
      assert.deepEqual(await engine.publish("x", batch), {
        destinations: 1,
        records: 2,
        unroutable: 0,
        ...NOT_FULL,
      });
      const stored = engine.partition("a", 0).read(0, 1 << 20).views[0]!;
      assert.deepEqual(stored.subarray(8), batch.subarray(8));
      // The same batch with one value byte flipped: the CRC no longer matches.
      const damaged = batch.slice();
      damaged[damaged.length - 6]! ^= 0xff;
      await failsWith(() => engine.publish("x", damaged), "CORRUPT_BATCH");
      const unroutable = batchOf([
        { key: "z", value: "1" },
        { key: "z", value: "2" },
      ]);
      unroutable[unroutable.length - 2]! ^= 0xff;
      await failsWith(() => engine.publish("x", unroutable), "CORRUPT_BATCH");
      assert.deepEqual(valuesOf(engine, "a"), ["1", "2"]);
    });
  });

  test("a routed batch goes to murmur2's partition for its key, keyless ones in turn", async () => {
    await withEngine(async (engine) => {
      await engine.createTopic("p3", { partitions: 3, config: { fsync: "never" } });
      await engine.declareExchange("f", { type: "fanout" });
      await engine.bindExchange("f", { topic: "p3" });
      const key = encoder.encode("user-1");
      const expected = toPositive(murmur2(key)) % 3;
      for (let i = 0; i < 3; i++)
        await engine.publish("f", batchOf([{ key: "user-1", value: "k" }]));
      for (let i = 0; i < 3; i++) await engine.publish("f", batchOf([{ value: "n" }]));
      const counts = [0, 1, 2].map((p) => engine.partition("p3", p).highWatermark);
      const keyless = counts.map((count, p) => count - (p === expected ? 3 : 0));
      assert.deepEqual(keyless, [1, 1, 1], `records per partition ${counts}`);
    });
  });

  test("an idempotent batch is refused before anything is appended", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "a");
      await engine.declareExchange("x", { type: "fanout" });
      await engine.bindExchange("x", { topic: "a" });
      const batch = encodeRecordBatch([{ value: encoder.encode("1") }], {
        producerId: 7,
        producerEpoch: 0,
        baseSequence: 0,
      });
      await failsWith(() => engine.publish("x", batch), "INVALID_BATCH");
      assert.equal(engine.partition("a", 0).highWatermark, 0);
    });
  });
});

describe("queues declared without a topic", () => {
  test("get a topic of their own name, so a fanout gives each queue its copy", async () => {
    await withEngine(async (engine) => {
      const a = await engine.declareQueue("qa", {});
      await engine.declareQueue("qb", { from: "beginning" });
      assert.equal(a.topic, "qa");
      assert.equal(engine.describeTopic("qb").partitions, 1);
      // Declaring again without a topic is the same queue, not a new topic.
      assert.deepEqual(await engine.declareQueue("qa", {}), a);
      await engine.declareExchange("fan", { type: "fanout" });
      await engine.bindExchange("fan", { queue: "qa" });
      await engine.bindExchange("fan", { queue: "qb" });
      const result = await engine.publish("fan", batchOf([{ value: "1" }]));
      assert.equal(result.destinations, 2);
      assert.deepEqual(valuesOf(engine, "qa"), ["1"]);
      assert.deepEqual(valuesOf(engine, "qb"), ["1"]);
    });
  });

  test("an existing topic of its name is TOPIC_EXISTS; a failed declare leaves none", async () => {
    await withEngine(async (engine) => {
      await topics(engine, "taken");
      const error = await failsWith(() => engine.declareQueue("taken", {}), "TOPIC_EXISTS");
      assert.match(error.message, /'taken'/);
      await failsWith(() => engine.declareQueue("bad", { lockMs: 1 }), "INVALID_CONFIG");
      assert.equal(
        engine.listTopics().some((topic) => topic.name === "bad"),
        false,
      );
    });
  });
});

describe("exchange definitions", () => {
  test("declares and bindings survive a reopen and a crash image", async () => {
    using dir = tempDir();
    using crashed = tempDir();
    const clock = new Clock();
    let { engine } = await openEngine(dir.path, clock);
    await topics(engine, "a");
    await engine.declareQueue("q", { topic: "a" });
    await engine.declareExchange("x", { type: "topic", alternateTopic: "a" });
    await engine.bindExchange("x", { queue: "q", routingKey: "a.*" });
    await engine.bindExchange("x", { topic: "a", routingKey: "b.#" });
    assert.equal(await engine.unbindExchange("x", { topic: "a", routingKey: "b.#" }), true);
    await engine.bindExchange("x", { topic: "a", routingKey: "c.#" });
    const before = engine.listExchanges();
    crashImage(dir.path, crashed.path);
    await engine.close();
    for (const path of [dir.path, crashed.path]) {
      ({ engine } = await openEngine(path, clock));
      try {
        assert.deepEqual(engine.listExchanges(), before);
        assert.equal(before[0]!.bindings.length, 2);
        await engine.publish("x", batchOf([{ key: "a.1", value: "v" }]));
        assert.deepEqual(valuesOf(engine, "a"), ["v"]);
      } finally {
        await engine.close();
      }
    }
  });

  test("declare is idempotent with the same settings, EXCHANGE_EXISTS with others", async () => {
    await withEngine(async (engine) => {
      const first = await engine.declareExchange("x", { type: "direct" });
      assert.deepEqual(await engine.declareExchange("x", { type: "direct" }), first);
      const error = await failsWith(
        () => engine.declareExchange("x", { type: "fanout" }),
        "EXCHANGE_EXISTS",
      );
      assert.match(error.message, /type "direct", not "fanout"/);
    });
  });

  test("bad input is a typed error naming the value, and creates nothing", async () => {
    await withEngine(async (engine, dir) => {
      await topics(engine, "a");
      const bad = await failsWith(
        () => engine.declareExchange("x", { type: "bogus" as "direct" }),
        "INVALID_EXCHANGE",
      );
      assert.match(bad.message, /bogus/);
      await failsWith(
        () => engine.declareExchange("bad name", { type: "direct" }),
        "INVALID_EXCHANGE",
      );
      await failsWith(
        () =>
          engine.declareExchange("x", {
            type: "direct",
            alternateTopic: "a",
            alternateExchange: "y",
          }),
        "INVALID_EXCHANGE",
      );
      assert.deepEqual(engine.listExchanges(), []);
      assert.deepEqual(
        fs.readdirSync(join(dir, "__meta", "exchanges")).filter((f) => !f.startsWith(".")),
        [],
      );
      await engine.declareExchange("t", { type: "topic" });
      const missingQueue = await failsWith(
        () => engine.bindExchange("t", { queue: "nope", routingKey: "a" }),
        "UNKNOWN_QUEUE",
      );
      assert.match(missingQueue.message, /nope/);
      await failsWith(
        () => engine.bindExchange("t", { topic: "nope", routingKey: "a" }),
        "UNKNOWN_TOPIC",
      );
      const empty = await failsWith(
        () => engine.bindExchange("t", { topic: "a", routingKey: "a..b" }),
        "INVALID_EXCHANGE",
      );
      assert.match(empty.message, /'a\.\.b'/);
      await failsWith(
        () => engine.bindExchange("t", { topic: "a", queue: "a" }),
        "INVALID_EXCHANGE",
      );
      await failsWith(() => engine.bindExchange("missing", { topic: "a" }), "UNKNOWN_EXCHANGE");
      await failsWith(
        () => engine.publish("missing", batchOf([{ value: "1" }])),
        "UNKNOWN_EXCHANGE",
      );
      assert.deepEqual(engine.listExchanges()[0]!.bindings, []);
    });
  });

  test("delete removes the exchange and its file", async () => {
    await withEngine(async (engine, dir) => {
      await engine.declareExchange("x", { type: "fanout" });
      await engine.deleteExchange("x");
      assert.deepEqual(engine.listExchanges(), []);
      assert.equal(fs.existsSync(join(dir, "__meta", "exchanges", "x.json")), false);
      await failsWith(() => engine.deleteExchange("x"), "UNKNOWN_EXCHANGE");
    });
  });
});

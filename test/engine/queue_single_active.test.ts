// Single active consumer (engine/queue_single_active.ts), against RabbitMQ's documented
// behaviour (https://www.rabbitmq.com/docs/consumers#single-active-consumer): one member gets
// every record while the others get nothing; when it leaves, the next in join order takes
// over, starting with what the leaver held, so order is kept; stats say which member is active.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Engine } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";
import { acksFor, Clock, deliveriesOf, openEngine, publish } from "./queue_helpers.ts";

async function setup(dir: string, singleActiveConsumer = true) {
  const { engine } = await openEngine(dir, new Clock());
  await engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
  await engine.declareQueue("q", { topic: "t", singleActiveConsumer });
  return engine;
}

function fetched(engine: Engine, member: string, maxRecords = 100) {
  return deliveriesOf(engine.fetchQueue("q", member, { maxRecords }));
}

const valuesOf = (deliveries: { value: string }[]) => deliveries.map((d) => d.value);

describe("queue single active consumer", () => {
  test("the first member gets every record; the others get nothing", async () => {
    using dir = tempDir();
    const engine = await setup(dir.path);
    try {
      const first = engine.joinQueue("q");
      const second = engine.joinQueue("q");
      await publish(engine, "t", 0, ["a", "b", "c"]);
      assert.deepEqual(fetched(engine, second), []);
      assert.deepEqual(valuesOf(fetched(engine, first, 2)), ["a", "b"]);
      assert.deepEqual(fetched(engine, second), [], "still nothing while the first is there");
      assert.deepEqual(valuesOf(fetched(engine, first)), ["c"]);
      assert.equal(engine.queueStats("q").activeMember, first);
    } finally {
      await engine.close();
    }
  });

  test("the next member in join order takes over, starting with what the leaver held", async () => {
    using dir = tempDir();
    const engine = await setup(dir.path);
    try {
      const a = engine.joinQueue("q");
      const b = engine.joinQueue("q");
      const c = engine.joinQueue("q");
      await publish(engine, "t", 0, ["r0", "r1", "r2", "r3"]);
      const held = fetched(engine, a, 3);
      await engine.ackQueue("q", a, acksFor(held.slice(0, 1), "accept"));
      let woken = 0;
      const stop = engine.onQueueReady("q", () => woken++);
      engine.leaveQueue("q", a);
      await Promise.resolve();
      stop();
      assert.ok(woken > 0, "waiting fetches are woken when the active member changes");
      assert.equal(engine.queueStats("q").activeMember, b, "b joined before c");
      assert.deepEqual(fetched(engine, c), []);
      const next = fetched(engine, b);
      assert.deepEqual(valuesOf(next), ["r1", "r2", "r3"], "order is kept");
      assert.deepEqual(
        next.map((d) => d.redelivered),
        [true, true, false],
      );
      engine.leaveQueue("q", b);
      assert.equal(engine.queueStats("q").activeMember, c);
      assert.deepEqual(valuesOf(fetched(engine, c)), ["r1", "r2", "r3"]);
    } finally {
      await engine.close();
    }
  });

  test("a later member waits behind the others; with none, none is active", async () => {
    using dir = tempDir();
    const engine = await setup(dir.path);
    try {
      assert.equal(engine.queueStats("q").activeMember, null);
      const a = engine.joinQueue("q");
      engine.leaveQueue("q", a);
      const b = engine.joinQueue("q");
      const c = engine.joinQueue("q");
      await publish(engine, "t", 0, ["x"]);
      assert.equal(engine.queueStats("q").activeMember, b);
      assert.deepEqual(fetched(engine, c), []);
      assert.deepEqual(valuesOf(fetched(engine, b)), ["x"]);
    } finally {
      await engine.close();
    }
  });

  test("without the option every member competes; a restart keeps the option", async () => {
    using dir = tempDir();
    const plain = await setup(dir.path, false);
    try {
      const a = plain.joinQueue("q");
      const b = plain.joinQueue("q");
      await publish(plain, "t", 0, ["a", "b"]);
      assert.deepEqual(valuesOf(fetched(plain, b, 1)), ["a"]);
      assert.deepEqual(valuesOf(fetched(plain, a, 1)), ["b"]);
      assert.equal(plain.queueStats("q").activeMember, null);
    } finally {
      await plain.close();
    }
    using dir2 = tempDir();
    const before = await setup(dir2.path);
    await before.close();
    const { engine } = await openEngine(dir2.path, new Clock());
    try {
      assert.equal(engine.listQueues()[0]!.singleActiveConsumer, true);
      const a = engine.joinQueue("q");
      const b = engine.joinQueue("q");
      await publish(engine, "t", 0, ["z"]);
      assert.deepEqual(fetched(engine, b), []);
      assert.deepEqual(valuesOf(fetched(engine, a)), ["z"]);
    } finally {
      await engine.close();
    }
  });
});

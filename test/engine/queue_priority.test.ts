// Priority queues (engine/queue_priority.ts), against RabbitMQ's documented behaviour
// (https://www.rabbitmq.com/docs/priority): higher priorities are delivered first over the
// whole backlog, FIFO within one priority; a priority above the maximum counts as the maximum
// and a missing one as 0; plus sluice's optional anti-starvation ratio, restarts, and bad input.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type Engine,
  encodeRecordBatch,
  type QueueOptions,
  type RecordInput,
} from "../../engine/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { acksFor, Clock, deliveriesOf, failsWith, openEngine } from "./queue_helpers.ts";

const encoder = new TextEncoder();

/** A record for queue `q` by the default exchange, with priority header `priority`. */
function rec(value: string, priority?: string): RecordInput {
  const headers =
    priority === undefined ? [] : [{ key: "sluice-priority", value: encoder.encode(priority) }];
  return { key: encoder.encode("q"), value: encoder.encode(value), headers };
}

async function publish(engine: Engine, records: RecordInput[]): Promise<void> {
  const result = await engine.publish("", encodeRecordBatch(records));
  assert.equal(result.unroutable, 0);
}

function take(engine: Engine, member: string, maxRecords = 1000): string[] {
  const got = deliveriesOf(engine.fetchQueue("q", member, { maxRecords }));
  return got.map((d) => d.value);
}

async function setup(dir: string, options: Partial<QueueOptions> = { priorities: 10 }) {
  const { engine } = await openEngine(dir, new Clock());
  await engine.declareQueue("q", { ...options });
  return engine;
}

describe("priority queues", () => {
  test("higher priorities first over the whole backlog, FIFO within a priority", async () => {
    using dir = tempDir();
    const engine = await setup(dir.path, { priorities: 10 });
    try {
      assert.equal(engine.describeTopic("q").partitions, 10, "one partition per level");
      // One batch of mixed priorities, then uniform batches: every path of the publish.
      await publish(engine, [rec("p1-a", "1"), rec("p5-a", "5"), rec("none-a"), rec("p1-b", "1")]);
      await publish(engine, [rec("p9-a", "9"), rec("p9-b", "9")]);
      await publish(engine, [rec("p5-b", "5")]);
      await publish(engine, [rec("none-b")]);
      const member = engine.joinQueue("q");
      assert.deepEqual(take(engine, member), [
        "p9-a",
        "p9-b",
        "p5-a",
        "p5-b",
        "p1-a",
        "p1-b",
        "none-a",
        "none-b",
      ]);
    } finally {
      await engine.close();
    }
  });

  test("one record at a time follows the same order; new higher records jump ahead", async () => {
    using dir = tempDir();
    const engine = await setup(dir.path, { priorities: 3 });
    try {
      await publish(engine, [rec("low-1", "0"), rec("low-2", "0"), rec("mid-1", "1")]);
      const member = engine.joinQueue("q");
      const first = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 1 }));
      assert.deepEqual(
        first.map((d) => d.value),
        ["mid-1"],
      );
      await engine.ackQueue("q", member, acksFor(first, "accept"));
      await publish(engine, [rec("high-1", "2")]);
      assert.deepEqual(take(engine, member, 1), ["high-1"]);
      assert.deepEqual(take(engine, member, 1), ["low-1"]);
      assert.deepEqual(take(engine, member, 1), ["low-2"]);
    } finally {
      await engine.close();
    }
  });

  test("a priority above the levels is the highest; unreadable or missing is 0", async () => {
    using dir = tempDir();
    const engine = await setup(dir.path, { priorities: 2 });
    try {
      await publish(engine, [
        rec("bad-sign", "-1"),
        rec("missing"),
        rec("text", "high"),
        rec("too-big", "256"),
        rec("above", "200"),
        rec("top", "1"),
      ]);
      assert.deepEqual(take(engine, engine.joinQueue("q")), [
        "above",
        "top",
        "bad-sign",
        "missing",
        "text",
        "too-big",
      ]);
    } finally {
      await engine.close();
    }
  });

  test("a released record goes back ahead of its level, behind higher ones", async () => {
    using dir = tempDir();
    const engine = await setup(dir.path, { priorities: 3 });
    try {
      await publish(engine, [rec("m1", "1"), rec("m2", "1")]);
      const member = engine.joinQueue("q");
      const held = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 1 }));
      await publish(engine, [rec("h1", "2")]);
      await engine.ackQueue("q", member, acksFor(held, "release"));
      assert.deepEqual(take(engine, member), ["h1", "m1", "m2"]);
    } finally {
      await engine.close();
    }
  });

  test("priorityRatio: after R higher records, a waiting lower level is served", async () => {
    using dir = tempDir();
    const engine = await setup(dir.path, { priorities: 2, priorityRatio: 2 });
    try {
      await publish(engine, [rec("l1", "0"), rec("l2", "0")]);
      await publish(
        engine,
        Array.from({ length: 6 }, (_, i) => rec(`h${i}`, "1")),
      );
      const member = engine.joinQueue("q");
      const order: string[] = [];
      for (let i = 0; i < 8; i++) order.push(...take(engine, member, 1));
      assert.deepEqual(order, ["h0", "h1", "l1", "h2", "h3", "l2", "h4", "h5"]);
    } finally {
      await engine.close();
    }
  });

  test("drop-head drops from the lowest non-empty level first, oldest first", async () => {
    using dir = tempDir();
    const engine = await setup(dir.path, { priorities: 3, maxLength: 4, deadLetterTopic: "dl" });
    try {
      await publish(engine, [rec("hi-a", "2"), rec("lo-a"), rec("mid-a", "1"), rec("lo-b")]);
      await publish(engine, [rec("hi-b", "2"), rec("mid-b", "1"), rec("lo-c")]);
      // 7 ready, 3 too many: the three lowest-priority records go, not the oldest ones.
      await waitFor(() => engine.queueStats("q").deadLettered === 3, "3 dead letters");
      assert.equal(engine.queueStats("q").overflowed, 3);
      const member = engine.joinQueue("q");
      assert.deepEqual(take(engine, member), ["hi-a", "hi-b", "mid-a", "mid-b"]);
      await publish(engine, [rec("mid-c", "1"), rec("mid-d", "1"), rec("hi-c", "2")]);
      await publish(engine, [rec("mid-e", "1"), rec("hi-d", "2")]);
      // 5 ready (the 4 held do not count): one goes, the oldest of the lowest level, mid.
      await waitFor(() => engine.queueStats("q").overflowed === 4, "4 overflowed");
      assert.deepEqual(take(engine, member), ["hi-c", "hi-d", "mid-d", "mid-e"]);
    } finally {
      await engine.close();
    }
  });

  test("drop-head by bytes also drops the lowest level first", async () => {
    using dir = tempDir();
    const probe = await setup(dir.path, { priorities: 2, maxLengthBytes: 1_000_000 });
    await publish(probe, [rec("x", "1")]);
    const size = probe.queueStats("q").readyBytes!;
    await probe.close();
    using dir2 = tempDir();
    const engine = await setup(dir2.path, { priorities: 2, maxLengthBytes: 2 * size });
    try {
      for (const [value, priority] of [
        ["a", "1"],
        ["b", "0"],
        ["c", "1"],
        ["d", "0"],
      ]) {
        await publish(engine, [rec(value!, priority)]);
      }
      assert.equal(engine.queueStats("q").overflowed, 2);
      assert.deepEqual(take(engine, engine.joinQueue("q")), ["a", "c"]);
    } finally {
      await engine.close();
    }
  });

  test("a restart keeps the levels, the order and the policy", async () => {
    using dir = tempDir();
    const before = await setup(dir.path, { priorities: 4 });
    await publish(before, [rec("a", "0"), rec("b", "3"), rec("c", "2")]);
    await before.close();
    const { engine } = await openEngine(dir.path, new Clock());
    try {
      assert.equal(engine.listQueues()[0]!.priorities, 4);
      await publish(engine, [rec("d", "3")]);
      assert.deepEqual(take(engine, engine.joinQueue("q")), ["b", "d", "c", "a"]);
    } finally {
      await engine.close();
    }
  });

  for (const [options, field] of [
    [{ priorities: 1 }, "priorities"],
    [{ priorities: 11 }, "priorities"],
    [{ priorities: 2.5 }, "priorities"],
    [{ priorities: "3" }, "priorities"],
    [{ priorityRatio: 2 }, "priorityRatio"],
    [{ priorities: 3, priorityRatio: 0 }, "priorityRatio"],
  ] as const) {
    test(`${JSON.stringify(options)} is INVALID_CONFIG naming ${field}`, async () => {
      using dir = tempDir();
      const { engine } = await openEngine(dir.path, new Clock());
      try {
        const error = await failsWith(
          () => engine.declareQueue("q", options as unknown as QueueOptions),
          "INVALID_CONFIG",
        );
        assert.match(error.message, new RegExp(field));
        assert.deepEqual(engine.listQueues(), []);
        assert.deepEqual(engine.listTopics(), [], "no topic was created");
      } finally {
        await engine.close();
      }
    });
  }

  test("a topic whose partitions are not one per level is refused, naming both", async () => {
    using dir = tempDir();
    const { engine } = await openEngine(dir.path, new Clock());
    try {
      await engine.createTopic("t", { partitions: 2 });
      const error = await failsWith(
        () => engine.declareQueue("q", { topic: "t", priorities: 3 }),
        "INVALID_CONFIG",
      );
      assert.match(error.message, /priorities 3 needs a topic of 3 partitions.*has 2/);
      await engine.declareQueue("q", { topic: "t", priorities: 2 });
    } finally {
      await engine.close();
    }
  });
});

describe("priorities with delayed delivery (queue_delay.ts)", () => {
  test("the due partition comes after the levels and is served after them", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine } = await openEngine(dir.path, clock);
    try {
      await engine.declareQueue("q", { priorities: 3 });
      assert.equal(engine.queue("q").partitionCount, 4, "3 levels, then the due partition");
      await publish(engine, [rec("low-1", "0"), rec("high-1", "2")]);
      const member = engine.joinQueue("q");
      const first = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 1 }));
      assert.deepEqual(
        first.map((d) => [d.partition, d.value]),
        [[2, "high-1"]],
      );
      const [held] = first;
      await engine.ackQueue("q", member, [
        { partition: 2, first: held!.offset, last: held!.offset, type: "release", delayMs: 100 },
      ]);
      assert.deepEqual(take(engine, member), ["low-1"], "not due: only the level 0 record");
      await engine.ackQueue("q", member, [{ partition: 0, first: 0, last: 0, type: "accept" }]);
      await publish(engine, [rec("mid-1", "1")]);
      clock.advance(100);
      const delays = engine.queue("q").delays!;
      while ((await delays.moveDue()) > 0) {}
      const got = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 10 }));
      assert.deepEqual(
        got.map((d) => [d.partition, d.value, d.deliveries]),
        [
          [1, "mid-1", 1],
          [3, "high-1", 2],
        ],
        "levels first, then the due copy, its count continued",
      );
      assert.equal(engine.queueStats("q").delayed, 0);
    } finally {
      await engine.close();
    }
  });
});

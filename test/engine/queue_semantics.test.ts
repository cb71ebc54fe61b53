// Queue semantics as tables: when the delivery count goes up (compared with RabbitMQ 4.3),
// why records are dead-lettered and what their headers say, how prefetch and maxInFlight
// limit fetches, and what each piece of bad input gets (its error code, the value it names,
// and no change at all).

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { describe, test } from "node:test";
import type { Engine, QueueAck, QueueOptions } from "../../engine/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import {
  acksFor,
  Clock,
  crashImage,
  type Delivery,
  death,
  deliveriesOf,
  failsWith,
  openEngine,
  publish,
  readDeadLetters,
} from "./queue_helpers.ts";

const LOCK_MS = 5_000;

type Setup = { engine: Engine; clock: Clock; member: string; close: () => Promise<void> };

/** An engine with topic "t" (`partitions`) and queue "q" with `options`, one member joined. */
async function setup(
  dir: string,
  options: Partial<QueueOptions> = {},
  partitions = 1,
): Promise<Setup> {
  const clock = new Clock();
  const { engine } = await openEngine(dir, clock);
  await engine.createTopic("t", { partitions, config: { fsync: "never" } });
  await engine.declareQueue("q", { topic: "t", lockMs: LOCK_MS, ...options });
  return { engine, clock, member: engine.joinQueue("q"), close: () => engine.close() };
}

function fetchAll(engine: Engine, member: string, maxRecords = 100): Delivery[] {
  return deliveriesOf(engine.fetchQueue("q", member, { maxRecords }));
}

describe("queue delivery counts", () => {
  // Kafka counts every acquisition (the count goes up when a record is handed out); RabbitMQ
  // 4.3 quorum queues count only *failed* deliveries: a reject or a channel crash, but neither
  // a nack with requeue nor a consumer timeout. sluice follows Kafka: each row gives the event
  // that ends the first delivery, the count of the second delivery, and RabbitMQ 4.3's.
  const table: {
    event: string;
    end: (s: Setup, held: Delivery[]) => Promise<unknown> | unknown;
    second: number;
    rabbitmq: string;
  }[] = [
    {
      event: "release",
      end: (s, held) => s.engine.ackQueue("q", s.member, acksFor(held, "release")),
      second: 2,
      rabbitmq: "1 (a requeue is not a failed delivery)",
    },
    {
      event: "lock expiry",
      end: (s) => {
        s.clock.advance(LOCK_MS);
        return s.engine.expireQueueLocks();
      },
      second: 2,
      rabbitmq: "1 (a consumer timeout is not counted)",
    },
    {
      event: "member leaves",
      end: (s) => s.engine.leaveQueue("q", s.member),
      second: 2,
      rabbitmq: "2 (a channel crash counts)",
    },
    {
      event: "renew, then lock expiry",
      end: async (s, held) => {
        s.clock.advance(LOCK_MS - 1);
        await s.engine.ackQueue("q", s.member, acksFor(held, "renew"));
        s.clock.advance(LOCK_MS - 1);
        assert.equal(s.engine.expireQueueLocks(), 0, "the renewed lock outlives the first one");
        s.clock.advance(1);
        assert.equal(s.engine.expireQueueLocks(), 1);
      },
      second: 2,
      rabbitmq: "n/a (no renew in AMQP 0-9-1)",
    },
  ];
  for (const row of table) {
    const name = `after ${row.event} the next delivery counts ${row.second}`;
    test(`${name} (RabbitMQ 4.3: ${row.rabbitmq})`, async () => {
      using dir = tempDir();
      const s = await setup(dir.path);
      try {
        await publish(s.engine, "t", 0, ["a"]);
        const first = fetchAll(s.engine, s.member);
        assert.deepEqual(
          first.map((d) => [d.offset, d.deliveries, d.redelivered]),
          [[0, 1, false]],
        );
        await row.end(s, first);
        const other = s.engine.joinQueue("q");
        const second = fetchAll(s.engine, other);
        assert.deepEqual(
          second.map((d) => [d.offset, d.deliveries, d.redelivered]),
          [[0, row.second, true]],
        );
      } finally {
        await s.close();
      }
    });
  }

  test("a restart makes acquired records available again, counted and redelivered", async () => {
    using dir = tempDir();
    const s = await setup(dir.path);
    await publish(s.engine, "t", 0, ["a", "b"]);
    assert.equal(fetchAll(s.engine, s.member, 1).length, 1);
    await s.engine.flush();
    await s.close();
    const { engine } = await openEngine(dir.path, s.clock);
    try {
      const member = engine.joinQueue("q");
      assert.deepEqual(
        fetchAll(engine, member).map((d) => [d.offset, d.deliveries, d.redelivered]),
        [
          [0, 2, true],
          [1, 1, false],
        ],
      );
    } finally {
      await engine.close();
    }
  });

  test("a record at the delivery limit is dead-lettered, not made available", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { deliveryLimit: 3, deadLetterTopic: "dead" });
    try {
      await publish(s.engine, "t", 0, ["poison"]);
      for (let delivery = 1; delivery <= 3; delivery++) {
        const held = fetchAll(s.engine, s.member);
        assert.deepEqual(
          held.map((d) => d.deliveries),
          [delivery],
        );
        await s.engine.ackQueue("q", s.member, acksFor(held, "release"));
      }
      await waitFor(() => s.engine.queueStats("q").deadLettered === 1, "the dead letter");
      assert.deepEqual(fetchAll(s.engine, s.member), [], "never a fourth delivery");
      const stats = s.engine.queueStats("q");
      assert.equal(stats.deadLettered, 1);
      assert.equal(stats.ready, 0);
      assert.equal(stats.delivered, 3);
      const [letter] = readDeadLetters(s.engine, "dead");
      assert.equal(death(letter!, "reason"), "delivery_limit");
      assert.equal(death(letter!, "deliveries"), "3");
    } finally {
      await s.close();
    }
  });
});

describe("queue dead letters", () => {
  test("a rejected record is dead-lettered with x-death-like headers before the reject resolves", {
    timeout: 60_000,
  }, async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { deadLetterTopic: "dead" });
    try {
      assert.equal(s.engine.describeTopic("dead").partitions, 1, "created with one partition");
      await publish(s.engine, "t", 0, ["ok", "bad"]);
      const held = fetchAll(s.engine, s.member);
      s.clock.advance(7);
      await s.engine.ackQueue("q", s.member, [
        ...acksFor(held.slice(0, 1), "accept"),
        ...acksFor(held.slice(1), "reject"),
      ]);
      const letters = readDeadLetters(s.engine, "dead");
      assert.equal(letters.length, 1);
      const letter = letters[0]!;
      assert.equal(letter.value, "bad");
      assert.equal(letter.headers["origin"], "test", "the original headers are kept");
      const expected = {
        queue: "q",
        reason: "rejected",
        count: "1",
        "first-ms": String(s.clock.nowMs),
        "last-ms": String(s.clock.nowMs),
        topic: "t",
        partition: "0",
        offset: "1",
        deliveries: "1",
      };
      for (const [name, value] of Object.entries(expected)) {
        assert.equal(death(letter, name), value, `sluice-death-${name}`);
      }
      const stats = s.engine.queueStats("q");
      assert.deepEqual([stats.accepted, stats.deadLettered, stats.ready], [1, 1, 0]);
      assert.equal(stats.partitions[0]!.floor, 2, "both records are done");
    } finally {
      await s.close();
    }
  });

  test("a dead letter cycling back through its queue folds count and first time", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { deadLetterTopic: "dead" });
    try {
      await publish(s.engine, "t", 0, ["loop"]);
      await s.engine.ackQueue("q", s.member, acksFor(fetchAll(s.engine, s.member), "reject"));
      const firstMs = s.clock.nowMs;
      // Publish the dead letter back to the queue's topic, as a retry loop would.
      const [letter] = readDeadLetters(s.engine, "dead");
      const view = s.engine.read("dead", 0, 0, 1 << 20).views[0]!;
      s.clock.advance(1000);
      await s.engine.append("t", 0, view.slice());
      await s.engine.ackQueue("q", s.member, acksFor(fetchAll(s.engine, s.member), "reject"));
      const second = readDeadLetters(s.engine, "dead")[1]!;
      assert.equal(death(letter!, "count"), "1");
      assert.equal(death(second, "count"), "2");
      assert.equal(death(second, "first-ms"), String(firstMs));
      assert.equal(death(second, "last-ms"), String(s.clock.nowMs));
      assert.equal(death(second, "offset"), "1");
    } finally {
      await s.close();
    }
  });

  test("without a dead-letter topic, rejected records are discarded and counted", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { deliveryLimit: 1 });
    try {
      await publish(s.engine, "t", 0, ["a", "b"]);
      const held = fetchAll(s.engine, s.member);
      await s.engine.ackQueue("q", s.member, acksFor(held.slice(0, 1), "reject"));
      await s.engine.ackQueue("q", s.member, acksFor(held.slice(1), "release"));
      await waitFor(() => s.engine.queueStats("q").discarded === 2, "the discard");
      const stats = s.engine.queueStats("q");
      assert.deepEqual([stats.discarded, stats.deadLettered, stats.ready], [2, 0, 0]);
    } finally {
      await s.close();
    }
  });

  test("a record at the limit after a restart is dead-lettered once (delivery_limit)", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { deliveryLimit: 1, deadLetterTopic: "dead" });
    await publish(s.engine, "t", 0, ["crashy"]);
    assert.equal(fetchAll(s.engine, s.member).length, 1);
    await s.engine.flush();
    using image = tempDir();
    crashImage(dir.path, image.path);
    await s.close();
    const { engine } = await openEngine(image.path, s.clock);
    try {
      await waitFor(() => engine.queueStats("q").deadLettered === 1, "the dead letter");
      const letters = readDeadLetters(engine, "dead");
      assert.deepEqual(
        letters.map((l) => [l.value, death(l, "reason")]),
        [["crashy", "delivery_limit"]],
      );
      assert.equal(engine.queueStats("q").partitions[0]!.floor, 1);
    } finally {
      await engine.close();
    }
  });
});

describe("queue flow limits", () => {
  test("prefetch caps one member's unacknowledged records; an ack makes room", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { prefetch: 3 });
    try {
      await publish(s.engine, "t", 0, ["0", "1", "2", "3", "4", "5", "6", "7"]);
      const held = fetchAll(s.engine, s.member, 10);
      assert.equal(held.length, 3);
      assert.deepEqual(fetchAll(s.engine, s.member), [], "at the prefetch limit: nothing");
      const other = s.engine.joinQueue("q");
      assert.equal(fetchAll(s.engine, other).length, 3, "another member has its own prefetch");
      await s.engine.ackQueue("q", s.member, acksFor(held.slice(0, 1), "accept"));
      assert.equal(fetchAll(s.engine, s.member).length, 1);
    } finally {
      await s.close();
    }
  });

  test("maxInFlight caps the window [floor, next); only a moving floor makes room", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { maxInFlight: 4 });
    try {
      await publish(s.engine, "t", 0, ["0", "1", "2", "3", "4", "5"]);
      const held = fetchAll(s.engine, s.member, 10);
      assert.deepEqual(
        held.map((d) => d.offset),
        [0, 1, 2, 3],
      );
      const other = s.engine.joinQueue("q");
      assert.deepEqual(fetchAll(s.engine, other), [], "the window is full");
      // Accepting 3 leaves the window [0, 4): the floor is held by 0.
      await s.engine.ackQueue("q", s.member, acksFor(held.slice(3), "accept"));
      assert.deepEqual(fetchAll(s.engine, other), []);
      await s.engine.ackQueue("q", s.member, acksFor(held.slice(0, 1), "accept"));
      assert.deepEqual(
        fetchAll(s.engine, other).map((d) => d.offset),
        [4],
      );
    } finally {
      await s.close();
    }
  });

  test("a fetch stops at maxBytes after its first batch, and at maxRecords mid-batch", async () => {
    using dir = tempDir();
    const s = await setup(dir.path);
    try {
      await publish(s.engine, "t", 0, ["a", "b", "c"]);
      await publish(s.engine, "t", 0, ["d", "e", "f"]);
      const one = s.engine.fetchQueue("q", s.member, { maxBytes: 1 });
      assert.deepEqual(
        deliveriesOf(one).map((d) => d.offset),
        [0, 1, 2],
        "the first batch always goes",
      );
      const two = deliveriesOf(s.engine.fetchQueue("q", s.member, { maxRecords: 2 }));
      assert.deepEqual(
        two.map((d) => d.offset),
        [3, 4],
      );
    } finally {
      await s.close();
    }
  });

  test("records given back are served before new ones; members share every partition", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, {}, 2);
    try {
      await publish(s.engine, "t", 0, ["p0-0", "p0-1"]);
      await publish(s.engine, "t", 1, ["p1-0", "p1-1"]);
      const a = fetchAll(s.engine, s.member, 2);
      const other = s.engine.joinQueue("q");
      const b = fetchAll(s.engine, other, 2);
      const keys = (list: Delivery[]) => list.map((d) => `${d.partition}:${d.offset}`);
      assert.equal(new Set([...keys(a), ...keys(b)]).size, 4, "no record is held twice");
      await s.engine.ackQueue("q", s.member, acksFor(a, "release"));
      await publish(s.engine, "t", 0, ["p0-2"]);
      const third = s.engine.joinQueue("q");
      assert.deepEqual(keys(fetchAll(s.engine, third, 2)).sort(), keys(a).sort());
    } finally {
      await s.close();
    }
  });

  test("onQueueReady fires when records arrive, come back, or expire", async () => {
    using dir = tempDir();
    const s = await setup(dir.path);
    try {
      let calls = 0;
      const stop = s.engine.onQueueReady("q", () => calls++);
      await publish(s.engine, "t", 0, ["a"]);
      await Promise.resolve();
      assert.ok(calls >= 1, "an append is news");
      const held = fetchAll(s.engine, s.member);
      const before = calls;
      s.clock.advance(LOCK_MS);
      assert.equal(s.engine.expireQueueLocks(), held.length);
      await Promise.resolve();
      assert.ok(calls > before, "an expiry is news");
      stop();
    } finally {
      await s.close();
    }
  });
});

describe("queue administration", () => {
  test("declare is idempotent with the same options and QUEUE_EXISTS with others", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { deliveryLimit: 5 });
    try {
      const again = await s.engine.declareQueue("q", {
        topic: "t",
        lockMs: LOCK_MS,
        deliveryLimit: 5,
      });
      assert.equal(again.deliveryLimit, 5);
      const error = await failsWith(
        () => s.engine.declareQueue("q", { topic: "t", lockMs: LOCK_MS }),
        "QUEUE_EXISTS",
      );
      assert.equal(error.details["field"], "deliveryLimit");
      assert.match(error.message, /deliveryLimit 5; the declare asked for 20/);
      assert.deepEqual(
        s.engine.listQueues().map((q) => q.name),
        ["q"],
      );
    } finally {
      await s.close();
    }
  });

  test("a queue starts at the topic's end, or its beginning when asked", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine } = await openEngine(dir.path, clock);
    try {
      await engine.createTopic("t", { config: { fsync: "never" } });
      await publish(engine, "t", 0, ["old"]);
      await engine.declareQueue("late", { topic: "t" });
      await engine.declareQueue("all", { topic: "t", from: "beginning" });
      await publish(engine, "t", 0, ["new"]);
      const late = deliveriesOf(engine.fetchQueue("late", engine.joinQueue("late")));
      const all = deliveriesOf(engine.fetchQueue("all", engine.joinQueue("all")));
      assert.deepEqual(
        late.map((d) => d.value),
        ["new"],
      );
      assert.deepEqual(
        all.map((d) => d.value),
        ["old", "new"],
      );
      assert.equal(engine.queueStats("late").oldestReadyAgeMs, null);
    } finally {
      await engine.close();
    }
  });

  test("purge marks every record done; delete removes the queue and its files", async () => {
    using dir = tempDir();
    const s = await setup(dir.path);
    try {
      await publish(s.engine, "t", 0, ["a", "b", "c"]);
      const held = fetchAll(s.engine, s.member, 1);
      s.clock.advance(60_000);
      assert.equal(s.engine.queueStats("q").oldestReadyAgeMs, 60_000);
      assert.equal(await s.engine.purgeQueue("q"), 3);
      const stats = s.engine.queueStats("q");
      assert.deepEqual([stats.ready, stats.acquired, stats.partitions[0]!.floor], [0, 0, 3]);
      await failsWith(
        () => s.engine.ackQueue("q", s.member, acksFor(held, "accept")),
        "INVALID_RECORD_STATE",
      );
      await s.engine.deleteQueue("q");
      assert.deepEqual(s.engine.listQueues(), []);
      await failsWith(() => s.engine.queueStats("q"), "UNKNOWN_QUEUE");
      assert.deepEqual(readdirSync(`${dir.path}/__queues`), []);
      assert.deepEqual(readdirSync(`${dir.path}/__meta/queues`), []);
    } finally {
      await s.close();
    }
  });

  test("deleting a topic deletes the queues that read it", async () => {
    using dir = tempDir();
    const s = await setup(dir.path);
    try {
      await s.engine.deleteTopic("t");
      assert.deepEqual(s.engine.listQueues(), []);
    } finally {
      await s.close();
    }
  });
});

describe("queue bad input", () => {
  /** The observable state: stats of "q" and every cursor's invariants. */
  function observe(engine: Engine): string {
    engine.queue("q").cursor(0).checkInvariants();
    const { delivered, accepted, ready, acquired, partitions } = engine.queueStats("q");
    return JSON.stringify({ delivered, accepted, ready, acquired, partitions });
  }

  test("each refusal names its value and changes nothing", async () => {
    using dir = tempDir();
    const s = await setup(dir.path);
    try {
      await publish(s.engine, "t", 0, ["0", "1", "2", "3"]);
      const held = fetchAll(s.engine, s.member, 2);
      const other = s.engine.joinQueue("q");
      const theirs = fetchAll(s.engine, other, 1);
      const acks = (list: QueueAck[]) => () => s.engine.ackQueue("q", s.member, list);
      const ack = (first: number, last: number, type = "accept") =>
        acks([{ partition: 0, first, last, type } as QueueAck]);
      const cases: [string, () => unknown, string, Record<string, unknown>][] = [
        ["bad name", () => s.engine.declareQueue("__x", { topic: "t" }), "INVALID_QUEUE", {}],
        ["no topic", () => s.engine.declareQueue("x", { topic: "nope" }), "UNKNOWN_TOPIC", {}],
        [
          "deliveryLimit 0",
          () => s.engine.declareQueue("x", { topic: "t", deliveryLimit: 0 }),
          "INVALID_CONFIG",
          { field: "deliveryLimit", value: 0 },
        ],
        [
          "lockMs 10",
          () => s.engine.declareQueue("x", { topic: "t", lockMs: 10 }),
          "INVALID_CONFIG",
          { field: "lockMs", value: 10 },
        ],
        [
          "maxInFlight 1e6",
          () => s.engine.declareQueue("x", { topic: "t", maxInFlight: 1_000_000 }),
          "INVALID_CONFIG",
          { field: "maxInFlight", value: 1_000_000 },
        ],
        [
          "dead letters into the topic",
          () => s.engine.declareQueue("x", { topic: "t", deadLetterTopic: "t" }),
          "INVALID_CONFIG",
          { field: "deadLetterTopic" },
        ],
        ["unknown queue", () => s.engine.fetchQueue("x", s.member), "UNKNOWN_QUEUE", {}],
        ["unknown member", () => s.engine.fetchQueue("q", "m-1"), "UNKNOWN_MEMBER_ID", {}],
        ["never delivered", ack(3, 3), "INVALID_RECORD_STATE", { offset: 3 }],
        ["another's record", ack(2, 2), "INVALID_RECORD_STATE", { offset: 2 }],
        ["good then bad", ack(0, 2), "INVALID_RECORD_STATE", { offset: 2 }],
        [
          "one bad range of two",
          acks([
            { partition: 0, first: 0, last: 0, type: "accept" },
            { partition: 0, first: 5, last: 9, type: "accept" },
          ]),
          "INVALID_RECORD_STATE",
          { offset: 5 },
        ],
        [
          "no partition 7",
          acks([{ partition: 7, first: 0, last: 0, type: "accept" }]),
          "UNKNOWN_PARTITION",
          { partition: 7 },
        ],
      ];
      const before = observe(s.engine);
      for (const [what, action, code, details] of cases) {
        const error = await failsWith(action, code as never);
        for (const [key, value] of Object.entries(details)) {
          assert.equal(error.details[key], value, `${what}: details.${key}`);
        }
        assert.equal(observe(s.engine), before, `${what} changed nothing`);
      }
      const argumentCases: [string, () => unknown, typeof TypeError, RegExp][] = [
        ["first > last", ack(1, 0), RangeError, /last 0 is below first 1/],
        [
          "overlap",
          acks([
            { partition: 0, first: 0, last: 1, type: "accept" },
            { partition: 0, first: 1, last: 1, type: "reject" },
          ]),
          RangeError,
          /overlap/,
        ],
        ["a nack", ack(0, 0, "nack"), TypeError, /"nack" is not one of/],
        [
          "a delay past one year",
          acks([{ partition: 0, first: 0, last: 0, type: "release", delayMs: 31_536_000_001 }]),
          RangeError,
          /delayMs 31536000001 must be an integer in \[0, 31536000000\]/,
        ],
        ["negative offset", ack(-1, 0), RangeError, /first -1 is not an offset/],
        [
          "maxRecords 0",
          () => s.engine.fetchQueue("q", s.member, { maxRecords: 0 }),
          RangeError,
          /maxRecords 0/,
        ],
      ];
      for (const [what, action, type, message] of argumentCases) {
        await assert.rejects(
          async () => action(),
          (error: unknown) => {
            assert.ok(error instanceof type, `${what}: ${String(error)}`);
            assert.match((error as Error).message, message);
            return true;
          },
        );
        assert.equal(observe(s.engine), before, `${what} changed nothing`);
      }
      // An expired lock: the holder hears LOCK_EXPIRED, with the offset.
      s.clock.advance(LOCK_MS);
      const expired = await failsWith(ack(0, 0), "LOCK_EXPIRED");
      assert.equal(expired.details["offset"], 0);
      assert.equal(held.length + theirs.length, 3);
    } finally {
      await s.close();
    }
  });
});

describe("queue failures around the log", () => {
  test("a failed dead-letter write fails the reject; the member holds the record", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine } = await openEngine(dir.path, clock);
    try {
      await engine.createTopic("t", { config: { fsync: "never" } });
      await engine.createTopic("dead", { config: { maxBatchBytes: 200 } });
      await engine.declareQueue("q", { topic: "t", deadLetterTopic: "dead" });
      const member = engine.joinQueue("q");
      await publish(engine, "t", 0, ["x".repeat(500)]);
      const held = fetchAll(engine, member);
      await failsWith(
        () => engine.ackQueue("q", member, acksFor(held, "reject")),
        "BATCH_TOO_LARGE",
      );
      const stats = engine.queueStats("q");
      assert.deepEqual([stats.acquired, stats.deadLettering, stats.deadLettered], [1, 0, 0]);
      await engine.ackQueue("q", member, acksFor(held, "accept"));
      assert.equal(engine.queueStats("q").accepted, 1);
    } finally {
      await engine.close();
    }
  });

  test("a dead letter at the limit that cannot be written is retried until it is", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine, warnings } = await openEngine(dir.path, clock);
    try {
      await engine.createTopic("t", { config: { fsync: "never" } });
      await engine.createTopic("dead", { config: { maxBatchBytes: 200 } });
      await engine.declareQueue("q", { topic: "t", deadLetterTopic: "dead", deliveryLimit: 1 });
      const member = engine.joinQueue("q");
      await publish(engine, "t", 0, ["y".repeat(500)]);
      await engine.ackQueue("q", member, acksFor(fetchAll(engine, member), "release"));
      await waitFor(() => warnings.length === 1, "the failed dead letter's warning");
      assert.match(warnings[0]!, /dead letters of partition 0 not written .*retrying/);
      assert.equal(engine.queueStats("q").deadLettering, 1);
      assert.deepEqual(fetchAll(engine, member), [], "a record at the limit is not delivered");
      // The dead-letter topic goes; the retry creates it again, with room for the record.
      await engine.deleteTopic("dead");
      clock.advance(1_000);
      engine.expireQueueLocks();
      await waitFor(() => engine.queueStats("q").deadLettered === 1, "the retried dead letter");
      assert.equal(readDeadLetters(engine, "dead").length, 1);
    } finally {
      await engine.close();
    }
  });

  test("records retention deleted before they were done are skipped, with a warning", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine, warnings } = await openEngine(dir.path, clock);
    try {
      const config = { fsync: "never" as const, segmentBytes: 1024, retentionMs: 1_000 };
      await engine.createTopic("t", { config });
      await engine.declareQueue("q", { topic: "t" });
      const member = engine.joinQueue("q");
      for (let i = 0; i < 20; i++) await publish(engine, "t", 0, [`r${i}`.padEnd(100, ".")]);
      const held = fetchAll(engine, member, 1);
      clock.advance(10_000);
      assert.ok((await engine.applyRetention(clock.nowMs)) > 0, "segments were deleted");
      const start = engine.partition("t", 0).logStartOffset;
      const next = fetchAll(engine, member, 1);
      assert.deepEqual(
        next.map((d) => d.offset),
        [start],
      );
      assert.match(warnings.join("\n"), /were deleted by retention before they were done/);
      await failsWith(
        () => engine.ackQueue("q", member, acksFor(held, "accept")),
        "INVALID_RECORD_STATE",
      );
    } finally {
      await engine.close();
    }
  });
});

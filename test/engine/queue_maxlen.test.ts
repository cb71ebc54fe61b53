// Max length with overflow (engine/queue_maxlen.ts), against RabbitMQ's documented behaviour
// (https://www.rabbitmq.com/docs/maxlength): only ready records count; drop-head (the default)
// drops the oldest ready records, dead-lettered with reason "maxlen" when there is a
// dead-letter topic, and counts them; reject-publish takes records while there is room and
// refuses the rest of the batch. Every test runs on a virtual clock.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type Engine,
  encodeRecordBatch,
  type FileIO,
  type QueueOptions,
  realFileIO,
} from "../../engine/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import {
  acksFor,
  Clock,
  death,
  deliveriesOf,
  failsWith,
  openEngine,
  publish,
  readDeadLetters,
} from "./queue_helpers.ts";

const encoder = new TextEncoder();

async function setup(dir: string, options: Partial<QueueOptions> = {}) {
  const clock = new Clock();
  const { engine } = await openEngine(dir, clock);
  await engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
  await engine.declareQueue("q", { topic: "t", ...options });
  return { engine, clock };
}

function values(engine: Engine, member: string, maxRecords = 100): string[] {
  return deliveriesOf(engine.fetchQueue("q", member, { maxRecords })).map((d) => d.value);
}

/** One batch of records valued `values`, all with the routing key `key`. */
function batchOf(values: string[], key = "q"): Uint8Array {
  return encodeRecordBatch(
    values.map((value) => ({ key: encoder.encode(key), value: encoder.encode(value) })),
  );
}

const letters = (n: number, from = 0) =>
  Array.from({ length: n }, (_, i) => `r${String(from + i).padStart(3, "0")}`);

describe("queue max length: drop-head", () => {
  test("drop-head (default): the oldest ready records go, the newest maxLength stay", async () => {
    using dir = tempDir();
    const { engine } = await setup(dir.path, { maxLength: 3 });
    try {
      assert.equal(engine.listQueues()[0]!.overflow, "drop-head");
      await publish(engine, "t", 0, ["a", "b", "c", "d", "e"]);
      const stats = engine.queueStats("q");
      assert.equal(stats.ready, 3);
      assert.equal(stats.overflowed, 2);
      assert.equal(stats.discarded, 2, "no dead-letter topic: dropped and counted");
      const member = engine.joinQueue("q");
      assert.deepEqual(values(engine, member), ["c", "d", "e"]);
    } finally {
      await engine.close();
    }
  });

  test("dropped records are dead-lettered with reason maxlen, in order, and counted", async () => {
    using dir = tempDir();
    const { engine } = await setup(dir.path, { maxLength: 2, deadLetterTopic: "dead" });
    try {
      await publish(engine, "t", 0, ["a", "b", "c"]);
      await publish(engine, "t", 0, ["d", "e"]);
      await waitFor(() => engine.queueStats("q").deadLettered === 3, "3 dead letters");
      const dead = readDeadLetters(engine, "dead");
      assert.deepEqual(
        dead.map((letter) => letter.value),
        ["a", "b", "c"],
      );
      for (const letter of dead) {
        assert.equal(death(letter, "reason"), "maxlen");
        assert.equal(death(letter, "queue"), "q");
        assert.equal(death(letter, "deliveries"), "0");
      }
      const stats = engine.queueStats("q");
      assert.equal(stats.overflowed, 3);
      assert.equal(stats.ready, 2);
      assert.deepEqual(values(engine, engine.joinQueue("q")), ["d", "e"]);
    } finally {
      await engine.close();
    }
  });

  test("records dropped just before a close are dead-lettered once each, reopened", async () => {
    // Dead-lettering a dropped record is a job of its own after the append, and the engine is
    // closed right after the last append: whatever was in flight then, the reopened queue
    // holds the newest records and the dead-letter topic each dropped one exactly once.
    using dir = tempDir();
    const { engine } = await setup(dir.path, { maxLength: 2, deadLetterTopic: "dead" });
    const all = letters(2_000);
    for (let i = 0; i < all.length; i += 100) await publish(engine, "t", 0, all.slice(i, i + 100));
    await engine.close();
    const { engine: reopened } = await openEngine(dir.path, new Clock());
    try {
      await waitFor(() => reopened.queueStats("q").ready === 2, "2 ready after the reopen");
      const dropped = all.slice(0, -2);
      await waitFor(
        () => readDeadLetters(reopened, "dead").length >= dropped.length,
        `${dropped.length} dead letters`,
      );
      assert.deepEqual(
        readDeadLetters(reopened, "dead").map((letter) => letter.value),
        dropped,
      );
      assert.deepEqual(values(reopened, reopened.joinQueue("q")), all.slice(-2));
    } finally {
      await reopened.close();
    }
  });

  test("a close waits for dead letters held in flight; reopened, each is there once", async () => {
    // The dead-letter topic syncs every append, and its first append waits for the removal of
    // its clean-shutdown marker (a directory fsync), held here until after the close began.
    // A queue that closed its state log without waiting for the job would lose the job's
    // marks (written after the dead letters) and, reopened, drop and dead-letter them again.
    using dir = tempDir();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let held = 0;
    const io: FileIO = {
      ...realFileIO,
      async syncDirectoryAsync(path: string): Promise<void> {
        if (path.includes("dead")) {
          held++;
          await gate;
        }
        return realFileIO.syncDirectoryAsync!(path);
      },
    };
    const { engine } = await openEngine(dir.path, new Clock(), { io });
    await engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
    await engine.createTopic("dead", { partitions: 1, config: { fsync: "always" } });
    await engine.declareQueue("q", { topic: "t", maxLength: 2, deadLetterTopic: "dead" });
    const all = letters(10);
    await publish(engine, "t", 0, all);
    await waitFor(() => held > 0, "the dead letters' first append held");
    assert.equal(engine.queueStats("q").overflowed, 0, "nothing counted before it is written");
    let closed = false;
    const closing = engine.close().then(() => {
      closed = true;
    });
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(closed, false, "the close waits for the dead letters in flight");
    release();
    await closing;
    const { engine: reopened } = await openEngine(dir.path, new Clock());
    try {
      await waitFor(() => reopened.queueStats("q").ready === 2, "2 ready after the reopen");
      assert.deepEqual(
        readDeadLetters(reopened, "dead").map((letter) => letter.value),
        all.slice(0, -2),
      );
      assert.equal(reopened.queueStats("q").overflowed, 8);
      assert.deepEqual(values(reopened, reopened.joinQueue("q")), all.slice(-2));
    } finally {
      await reopened.close();
    }
  });

  test("only ready records count: acquired ones are neither counted nor dropped", async () => {
    using dir = tempDir();
    const { engine } = await setup(dir.path, { maxLength: 2 });
    try {
      await publish(engine, "t", 0, ["a", "b"]);
      const member = engine.joinQueue("q");
      assert.deepEqual(values(engine, member), ["a", "b"]);
      await publish(engine, "t", 0, ["c", "d", "e"]);
      const stats = engine.queueStats("q");
      assert.equal(stats.acquired, 2, "the held records stay held");
      assert.equal(stats.ready, 2);
      assert.equal(stats.overflowed, 1, "only c, the oldest ready record, went");
      // A record given back is ready again, and the oldest: it is the one dropped next.
      await engine.ackQueue("q", member, [{ partition: 0, first: 0, last: 0, type: "release" }]);
      assert.equal(engine.queueStats("q").overflowed, 2);
      assert.deepEqual(values(engine, member), ["d", "e"]);
    } finally {
      await engine.close();
    }
  });

  test("maxLength 0 keeps nothing; a backlog larger than the window drops in rounds", async () => {
    using dir = tempDir();
    const { engine } = await setup(dir.path, { maxLength: 0, maxInFlight: 4 });
    try {
      await publish(engine, "t", 0, letters(50));
      assert.equal(engine.queueStats("q").ready, 0);
      assert.equal(engine.queueStats("q").overflowed, 50);
      assert.deepEqual(values(engine, engine.joinQueue("q")), []);
    } finally {
      await engine.close();
    }
    using dir2 = tempDir();
    const second = await setup(dir2.path, {
      maxLength: 3,
      maxInFlight: 4,
      deadLetterTopic: "dead",
    });
    try {
      await publish(second.engine, "t", 0, letters(40));
      await waitFor(() => second.engine.queueStats("q").deadLettered === 37, "37 dead letters");
      const dead = readDeadLetters(second.engine, "dead").map((letter) => letter.value);
      assert.deepEqual(dead, letters(37), "dropped oldest first, each once");
      assert.deepEqual(values(second.engine, second.engine.joinQueue("q")), letters(3, 37));
    } finally {
      await second.engine.close();
    }
  });

  test("a restart keeps the policy and the overflowed count, and drops again", async () => {
    using dir = tempDir();
    const first = await setup(dir.path, { maxLength: 2 });
    await publish(first.engine, "t", 0, ["a", "b", "c"]);
    await first.engine.close();
    const { engine } = await openEngine(dir.path, new Clock());
    try {
      const config = engine.listQueues()[0]!;
      assert.equal(config.maxLength, 2);
      assert.equal(config.overflow, "drop-head");
      assert.equal(engine.queueStats("q").overflowed, 1);
      await publish(engine, "t", 0, ["d"]);
      assert.equal(engine.queueStats("q").overflowed, 2);
      assert.deepEqual(values(engine, engine.joinQueue("q")), ["c", "d"]);
    } finally {
      await engine.close();
    }
  });

  test("records given back by a restart count again; the excess goes at open", async () => {
    using dir = tempDir();
    const first = await setup(dir.path, { maxLength: 2 });
    await publish(first.engine, "t", 0, ["a", "b"]);
    const member = first.engine.joinQueue("q");
    assert.deepEqual(values(first.engine, member), ["a", "b"]);
    await publish(first.engine, "t", 0, ["c", "d"]);
    await first.engine.queue("q").flush();
    await first.engine.close();
    const { engine } = await openEngine(dir.path, new Clock());
    try {
      // a and b are ready again (never acked): four ready, the two oldest go.
      assert.equal(engine.queueStats("q").ready, 2);
      assert.equal(engine.queueStats("q").overflowed, 2);
      assert.deepEqual(values(engine, engine.joinQueue("q")), ["c", "d"]);
    } finally {
      await engine.close();
    }
  });
});

describe("queue max length: reject-publish", () => {
  test("the default exchange takes records while there is room; the rest are refused", async () => {
    using dir = tempDir();
    const { engine } = await openEngine(dir.path, new Clock());
    try {
      await engine.declareQueue("q", { maxLength: 3, overflow: "reject-publish" });
      const first = await engine.publish("", batchOf(["a", "b", "c", "d", "e"]));
      assert.equal(first.destinations, 1);
      assert.equal(first.rejected, 2);
      assert.equal(first.fullQueue, "q");
      const full = await engine.publish("", batchOf(["f"]));
      assert.deepEqual(
        { destinations: full.destinations, rejected: full.rejected, fullQueue: full.fullQueue },
        { destinations: 0, rejected: 1, fullQueue: "q" },
      );
      assert.equal(engine.queueStats("q").ready, 3);
      assert.equal(engine.queueStats("q").overflowed, 0, "reject-publish drops nothing");
      // Acquired records are not ready: fetching makes room.
      const member = engine.joinQueue("q");
      const got = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 2 }));
      assert.deepEqual(
        got.map((d) => d.value),
        ["a", "b"],
      );
      const more = await engine.publish("", batchOf(["g", "h", "i"]));
      assert.equal(more.rejected, 1);
      await engine.ackQueue("q", member, acksFor(got, "accept"));
      assert.deepEqual(values(engine, member), ["c", "g", "h"]);
    } finally {
      await engine.close();
    }
  });

  test("a shared topic takes a record only while every reject-publish queue has room", async () => {
    using dir = tempDir();
    const { engine } = await openEngine(dir.path, new Clock());
    try {
      await engine.createTopic("shared", { partitions: 1 });
      await engine.declareQueue("small", {
        topic: "shared",
        maxLength: 1,
        overflow: "reject-publish",
      });
      await engine.declareQueue("big", {
        topic: "shared",
        maxLength: 3,
        overflow: "reject-publish",
      });
      await engine.declareQueue("free", { topic: "shared" });
      await engine.declareExchange("x", { type: "fanout" });
      await engine.bindExchange("x", { topic: "shared" });
      const result = await engine.publish("x", batchOf(["a", "b", "c"]));
      assert.equal(result.rejected, 2);
      assert.equal(result.fullQueue, "small");
      assert.equal(engine.queueStats("free").ready, 1);
    } finally {
      await engine.close();
    }
  });

  test("a batch that fits is taken whole", async () => {
    using dir = tempDir();
    const { engine } = await openEngine(dir.path, new Clock());
    try {
      await engine.declareQueue("q", { maxLength: 10, overflow: "reject-publish" });
      const result = await engine.publish("", batchOf(["a", "b"]));
      assert.deepEqual(
        { destinations: result.destinations, rejected: result.rejected },
        { destinations: 1, rejected: 0 },
      );
      assert.equal(engine.queueStats("q").ready, 2);
    } finally {
      await engine.close();
    }
  });
});

describe("queue max length: bad input", () => {
  for (const [field, value] of [
    ["maxLength", -1],
    ["maxLength", 1.5],
    ["maxLength", "3"],
    ["maxLength", 2 ** 53],
    ["overflow", "reject-publish-dlx"],
    ["overflow", ""],
    ["singleActiveConsumer", "yes"],
  ] as const) {
    test(`${field} ${JSON.stringify(value)} is INVALID_CONFIG naming it`, async () => {
      using dir = tempDir();
      const { engine } = await openEngine(dir.path, new Clock());
      try {
        const options = { [field]: value } as unknown as QueueOptions;
        const error = await failsWith(() => engine.declareQueue("q", options), "INVALID_CONFIG");
        assert.match(error.message, new RegExp(field));
        assert.match(error.message, new RegExp(JSON.stringify(value).replace(/[.*+?]/g, "\\$&")));
        assert.equal(engine.listQueues().length, 0);
        assert.equal(
          engine.listTopics().some((topic) => topic.name === "q"),
          false,
          "the queue's own topic is removed again",
        );
      } finally {
        await engine.close();
      }
    });
  }

  test("a redeclare with another maxLength or overflow is QUEUE_EXISTS naming it", async () => {
    using dir = tempDir();
    const { engine } = await setup(dir.path, { maxLength: 3 });
    try {
      const error = await failsWith(
        () => engine.declareQueue("q", { topic: "t", maxLength: 4 }),
        "QUEUE_EXISTS",
      );
      assert.match(error.message, /maxLength/);
      await failsWith(
        () => engine.declareQueue("q", { topic: "t", maxLength: 3, overflow: "reject-publish" }),
        "QUEUE_EXISTS",
      );
      await engine.declareQueue("q", { topic: "t", maxLength: 3, overflow: "drop-head" });
    } finally {
      await engine.close();
    }
  });
});

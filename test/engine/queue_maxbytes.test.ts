// Max length in bytes (engine/queue_maxbytes.ts), against RabbitMQ's documented behaviour for
// x-max-length-bytes (https://www.rabbitmq.com/docs/maxlength): only ready records count;
// drop-head drops the oldest ready records until the queue is within the limit, dead-lettered
// with reason "maxlen" when there is a dead-letter topic; reject-publish takes records while
// there is room; with a record limit too, whichever is reached first applies. A record weighs
// its share of its stored batch (one record per batch here, so a record weighs its batch).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Engine, encodeRecordBatch, type QueueOptions } from "../../engine/mod.ts";
import { mulberry32, tempDir, waitFor } from "../helpers.ts";
import {
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
  const { engine } = await openEngine(dir, new Clock());
  await engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
  await engine.declareQueue("q", { topic: "t", ...options });
  return engine;
}

function values(engine: Engine, member: string, maxRecords = 100): string[] {
  return deliveriesOf(engine.fetchQueue("q", member, { maxRecords })).map((d) => d.value);
}

/** Appends each value as a batch of its own (values of one length weigh the same). */
async function oneByOne(engine: Engine, list: string[]): Promise<void> {
  for (const value of list) await publish(engine, "t", 0, [value]);
}

/** The stored bytes of one record as `publish` writes it (values of 4 characters). */
async function recordBytes(): Promise<number> {
  using dir = tempDir();
  const engine = await setup(dir.path, { maxLengthBytes: 1_000_000 });
  try {
    await oneByOne(engine, ["r000"]);
    const bytes = engine.queueStats("q").readyBytes;
    assert.ok(bytes !== null && bytes > 4);
    return bytes;
  } finally {
    await engine.close();
  }
}

const names = (n: number, from = 0) =>
  Array.from({ length: n }, (_, i) => `r${String(from + i).padStart(3, "0")}`);

describe("queue max length in bytes: drop-head", () => {
  test("a record weighs its stored batch; the oldest go until the queue fits", async () => {
    const size = await recordBytes();
    using dir = tempDir();
    const engine = await setup(dir.path, { maxLengthBytes: 3 * size + size / 2 });
    try {
      await oneByOne(engine, names(5));
      const stats = engine.queueStats("q");
      assert.equal(stats.ready, 3);
      assert.equal(stats.readyBytes, 3 * size);
      assert.equal(stats.overflowed, 2);
      assert.equal(stats.discarded, 2, "no dead-letter topic: dropped and counted");
      assert.deepEqual(values(engine, engine.joinQueue("q")), names(3, 2));
      assert.equal(engine.queueStats("q").readyBytes, 0, "acquired records weigh nothing");
    } finally {
      await engine.close();
    }
  });

  test("records of one batch share its bytes; dropped ones are dead-lettered maxlen", async () => {
    using dir = tempDir();
    const batch = encodeRecordBatch(names(10).map((value) => ({ value: encoder.encode(value) })));
    // The last five records' shares: floor(S*10/10) - floor(S*5/10).
    const lastFive = batch.length - Math.floor(batch.length / 2);
    const engine = await setup(dir.path, { maxLengthBytes: lastFive, deadLetterTopic: "dead" });
    try {
      await engine.append("t", 0, batch);
      await waitFor(() => engine.queueStats("q").deadLettered === 5, "5 dead letters");
      const dead = readDeadLetters(engine, "dead");
      assert.deepEqual(
        dead.map((letter) => letter.value),
        names(5),
      );
      for (const letter of dead) assert.equal(death(letter, "reason"), "maxlen");
      const stats = engine.queueStats("q");
      assert.equal(stats.overflowed, 5);
      assert.equal(stats.readyBytes, lastFive);
      assert.deepEqual(values(engine, engine.joinQueue("q")), names(5, 5));
    } finally {
      await engine.close();
    }
  });

  test("only ready records count; a record given back is the oldest and goes first", async () => {
    const size = await recordBytes();
    using dir = tempDir();
    const engine = await setup(dir.path, { maxLengthBytes: 2 * size });
    try {
      await oneByOne(engine, names(2));
      const member = engine.joinQueue("q");
      assert.deepEqual(values(engine, member), names(2));
      await oneByOne(engine, names(3, 2));
      const stats = engine.queueStats("q");
      assert.equal(stats.acquired, 2);
      assert.equal(stats.ready, 2);
      assert.equal(stats.readyBytes, 2 * size);
      assert.equal(stats.overflowed, 1, "only r002, the oldest ready record, went");
      await engine.ackQueue("q", member, [{ partition: 0, first: 0, last: 0, type: "release" }]);
      assert.equal(engine.queueStats("q").overflowed, 2, "r000 given back, then dropped");
      assert.deepEqual(values(engine, member), names(2, 3));
    } finally {
      await engine.close();
    }
  });

  test("with maxLength too, whichever limit is reached first applies", async () => {
    const size = await recordBytes();
    using dir = tempDir();
    const byBytes = await setup(dir.path, { maxLength: 10, maxLengthBytes: 2 * size });
    try {
      await oneByOne(byBytes, names(4));
      assert.equal(byBytes.queueStats("q").ready, 2, "the byte limit is reached first");
    } finally {
      await byBytes.close();
    }
    using dir2 = tempDir();
    const byCount = await setup(dir2.path, { maxLength: 1, maxLengthBytes: 10 * size });
    try {
      await oneByOne(byCount, names(4));
      assert.equal(byCount.queueStats("q").ready, 1, "the record limit is reached first");
      assert.equal(byCount.queueStats("q").readyBytes, size);
    } finally {
      await byCount.close();
    }
  });

  test("0 keeps nothing; a backlog wider than the window drops in rounds", async () => {
    const size = await recordBytes();
    using dir = tempDir();
    const engine = await setup(dir.path, { maxLengthBytes: 0, maxInFlight: 4 });
    try {
      await publish(engine, "t", 0, names(50));
      assert.equal(engine.queueStats("q").ready, 0);
      assert.equal(engine.queueStats("q").overflowed, 50);
    } finally {
      await engine.close();
    }
    using dir2 = tempDir();
    const other = await setup(dir2.path, { maxLengthBytes: 3 * size, maxInFlight: 4 });
    try {
      await oneByOne(other, names(40));
      assert.equal(other.queueStats("q").ready, 3);
      assert.deepEqual(values(other, other.joinQueue("q")), names(3, 37));
    } finally {
      await other.close();
    }
  });

  test("a restart keeps the limit and recounts the bytes from the log", async () => {
    const size = await recordBytes();
    using dir = tempDir();
    const first = await setup(dir.path, { maxLengthBytes: 3 * size });
    await oneByOne(first, names(2));
    const member = first.joinQueue("q");
    assert.deepEqual(values(first, member, 1), names(1));
    await oneByOne(first, names(2, 2));
    assert.equal(first.queueStats("q").readyBytes, 3 * size);
    await first.queue("q").flush();
    await first.close();
    const { engine } = await openEngine(dir.path, new Clock());
    try {
      assert.equal(engine.listQueues()[0]!.maxLengthBytes, 3 * size);
      // r000 was held, not acked: given back by the restart, it is ready (and oldest) again.
      const stats = engine.queueStats("q");
      assert.equal(stats.ready, 3);
      assert.equal(stats.readyBytes, 3 * size);
      assert.equal(stats.overflowed, 1);
      await oneByOne(engine, names(1, 4));
      assert.equal(engine.queueStats("q").overflowed, 2);
      assert.deepEqual(values(engine, engine.joinQueue("q")), names(3, 2));
    } finally {
      await engine.close();
    }
  });
});

describe("queue max length in bytes: reject-publish", () => {
  test("the default exchange takes records while they fit; the rest are refused", async () => {
    using dir = tempDir();
    const { engine } = await openEngine(dir.path, new Clock());
    try {
      const batch = encodeRecordBatch(
        names(10).map((value) => ({ key: encoder.encode("q"), value: encoder.encode(value) })),
      );
      // Room for a batch of the first four: the taken records are appended as one batch.
      const four = encodeRecordBatch(
        names(4).map((value) => ({ key: encoder.encode("q"), value: encoder.encode(value) })),
      ).length;
      await engine.declareQueue("q", { maxLengthBytes: four, overflow: "reject-publish" });
      const first = await engine.publish("", batch);
      const ready = engine.queueStats("q").ready;
      assert.equal(ready, 4);
      assert.equal(first.rejected, 6);
      assert.equal(first.fullQueue, "q");
      assert.equal(engine.queueStats("q").readyBytes, four);
      const member = engine.joinQueue("q");
      assert.deepEqual(values(engine, member), names(ready), "the first records were taken");
      const again = await engine.publish("", batch);
      assert.equal(again.rejected, 10 - ready, "room again for what was acquired");
    } finally {
      await engine.close();
    }
  });

  test("records of mixed headers (decoded path) are admitted one by one", async () => {
    using dir = tempDir();
    const { engine } = await openEngine(dir.path, new Clock());
    try {
      await engine.declareQueue("q", { maxLengthBytes: 400, overflow: "reject-publish" });
      const records = names(20).map((value, i) => ({
        key: encoder.encode("q"),
        value: encoder.encode(value.repeat(10)),
        headers: [{ key: `h${i}`, value: encoder.encode("x") }],
      }));
      const result = await engine.publish("", encodeRecordBatch(records));
      const stats = engine.queueStats("q");
      assert.ok(result.rejected > 0 && result.rejected < 20, `some refused (${result.rejected})`);
      assert.equal(stats.ready, 20 - result.rejected);
      assert.ok(stats.readyBytes! <= 400, `within the limit (${stats.readyBytes})`);
    } finally {
      await engine.close();
    }
  });
});

describe("queue max length in bytes: bad input", () => {
  for (const value of [-1, 1.5, "100", 2 ** 53, true] as const) {
    test(`maxLengthBytes ${JSON.stringify(value)} is INVALID_CONFIG naming it`, async () => {
      using dir = tempDir();
      const { engine } = await openEngine(dir.path, new Clock());
      try {
        const options = { maxLengthBytes: value } as unknown as QueueOptions;
        const error = await failsWith(() => engine.declareQueue("q", options), "INVALID_CONFIG");
        assert.match(error.message, /maxLengthBytes/);
        assert.ok(error.message.includes(JSON.stringify(value)), error.message);
        assert.equal(engine.listQueues().length, 0);
        assert.equal(
          engine.listTopics().some((topic) => topic.name === "q"),
          false,
          "nothing half-created",
        );
      } finally {
        await engine.close();
      }
    });
  }

  test("a redeclare with another maxLengthBytes is QUEUE_EXISTS naming it", async () => {
    using dir = tempDir();
    const engine = await setup(dir.path, { maxLengthBytes: 100 });
    try {
      const error = await failsWith(
        () => engine.declareQueue("q", { topic: "t", maxLengthBytes: 200 }),
        "QUEUE_EXISTS",
      );
      assert.match(error.message, /maxLengthBytes/);
      await engine.declareQueue("q", { topic: "t", maxLengthBytes: 100 });
    } finally {
      await engine.close();
    }
  });
});

describe("queue max length in bytes: the running sum", () => {
  test("records retention deleted leave the sum; it is recounted from the log start", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine } = await openEngine(dir.path, clock);
    try {
      const config = { fsync: "never" as const, segmentBytes: 1024, retentionMs: 1_000 };
      await engine.createTopic("t", { config });
      await engine.declareQueue("q", { topic: "t", maxLengthBytes: 1_000_000 });
      const member = engine.joinQueue("q");
      for (let i = 0; i < 20; i++) await publish(engine, "t", 0, [`r${i}`.padEnd(100, ".")]);
      const size = engine.queueStats("q").readyBytes! / 20;
      assert.equal(deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 2 })).length, 2);
      assert.equal(engine.queueStats("q").readyBytes, 18 * size);
      clock.advance(10_000);
      assert.ok((await engine.applyRetention(clock.nowMs)) > 0, "segments were deleted");
      const start = engine.partition("t", 0).logStartOffset;
      assert.ok(start > 2);
      await publish(engine, "t", 0, ["r20".padEnd(100, ".")]);
      const stats = engine.queueStats("q");
      assert.equal(stats.ready, 21 - start);
      assert.equal(stats.readyBytes, (21 - start) * size);
    } finally {
      await engine.close();
    }
  });

  test("a seeded model: readyBytes equals the shares of the ready records", async () => {
    using dir = tempDir();
    const { engine } = await openEngine(dir.path, new Clock());
    await engine.createTopic("t", { partitions: 2, config: { fsync: "never" } });
    await engine.declareQueue("q", { topic: "t", maxLengthBytes: 1e12, maxInFlight: 64 });
    const random = mulberry32(1313);
    const weight = new Map<string, number>();
    const ready = new Set<string>();
    const held: { partition: number; offset: number }[] = [];
    const member = engine.joinQueue("q");
    const expected = () => [...ready].reduce((sum, key) => sum + weight.get(key)!, 0);
    try {
      for (let step = 0; step < 300; step++) {
        const action = random();
        if (action < 0.45) {
          const partition = random() < 0.5 ? 0 : 1;
          const count = 1 + Math.floor(random() * 6);
          const batch = encodeRecordBatch(
            Array.from({ length: count }, () => ({
              value: encoder.encode("v".repeat(Math.floor(random() * 300))),
            })),
          );
          const { baseOffset } = await engine.append("t", partition, batch);
          for (let i = 0; i < count; i++) {
            const share =
              Math.floor((batch.length * (i + 1)) / count) - Math.floor((batch.length * i) / count);
            weight.set(`${partition}:${baseOffset + i}`, share);
            ready.add(`${partition}:${baseOffset + i}`);
          }
        } else if (action < 0.75) {
          const maxRecords = 1 + Math.floor(random() * 5);
          for (const d of deliveriesOf(engine.fetchQueue("q", member, { maxRecords }))) {
            ready.delete(`${d.partition}:${d.offset}`);
            held.push({ partition: d.partition, offset: d.offset });
          }
        } else if (held.length > 0) {
          const { partition, offset } = held.splice(Math.floor(random() * held.length), 1)[0]!;
          const type = random() < 0.5 ? "release" : "accept";
          await engine.ackQueue("q", member, [{ partition, first: offset, last: offset, type }]);
          if (type === "release") ready.add(`${partition}:${offset}`);
        }
        assert.equal(engine.queueStats("q").readyBytes, expected(), `step ${step}`);
      }
      assert.ok(weight.size > 100, "the model appended records");
    } finally {
      await engine.close();
    }
  });
});

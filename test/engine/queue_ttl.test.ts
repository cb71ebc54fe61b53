// Message TTL on queues (engine/queue_ttl.ts), against RabbitMQ's documented behaviour: a
// queue's `messageTtlMs` and a record's `sluice-ttl-ms` header, the lower of both wins; an
// expired record is never delivered; it is dead-lettered with reason "expired" when the queue
// has a dead-letter topic, else dropped, and counted (durably). Expired records at the head
// are taken off with no consumer attached, and never hold back live records behind them.
// Every test runs on a virtual clock.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  batchExpiry,
  type Engine,
  encodeRecordBatch,
  MESSAGE_TTL_MS_MAX,
  type QueueOptions,
  type RecordHeader,
} from "../../engine/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import {
  acksFor,
  Clock,
  crashImage,
  death,
  deliveriesOf,
  failsWith,
  openEngine,
  readDeadLetters,
  START_MS,
} from "./queue_helpers.ts";

const encoder = new TextEncoder();

type Rec = { value: string; ttl?: string | null };

function recordsOf(records: Rec[]) {
  return records.map(({ value, ttl }) => {
    const headers: RecordHeader[] = [{ key: "origin", value: encoder.encode("test") }];
    if (ttl !== undefined) {
      headers.push({ key: "sluice-ttl-ms", value: ttl === null ? null : encoder.encode(ttl) });
    }
    return { value: encoder.encode(value), headers };
  });
}

/** Appends one batch stamped `timestamp` to partition 0 of "t". */
async function publishAt(
  engine: Engine,
  timestamp: number,
  records: Rec[],
  compression: "none" | "gzip" = "none",
): Promise<void> {
  await engine.append("t", 0, encodeRecordBatch(recordsOf(records), { timestamp, compression }));
}

type Setup = { engine: Engine; clock: Clock; close: () => Promise<void> };

async function setup(dir: string, options: Partial<QueueOptions> = {}): Promise<Setup> {
  const clock = new Clock();
  const { engine } = await openEngine(dir, clock);
  await engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
  await engine.declareQueue("q", { topic: "t", ...options });
  return { engine, clock, close: () => engine.close() };
}

function values(engine: Engine, member: string): string[] {
  return deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 100 })).map((d) => d.value);
}

/** Waits for the dead letters and drops in flight (they are written in the background). */
async function settled(engine: Engine, expired: number): Promise<void> {
  await waitFor(() => engine.queueStats("q").expired === expired, `${expired} expired`);
  await engine.queue("q").flush();
}

describe("queue TTL semantics", () => {
  test("queue TTL: a record expires at its timestamp + messageTtlMs, not a ms before", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { messageTtlMs: 1_000 });
    try {
      await publishAt(s.engine, START_MS, [{ value: "a" }, { value: "b" }]);
      const member = s.engine.joinQueue("q");
      s.clock.advance(999);
      const held = deliveriesOf(s.engine.fetchQueue("q", member));
      assert.deepEqual(
        held.map((d) => d.value),
        ["a", "b"],
        "1 ms before its TTL a record is delivered",
      );
      await s.engine.ackQueue("q", member, acksFor(held, "release"));
      s.clock.advance(1);
      assert.deepEqual(values(s.engine, member), [], "released records expire waiting too");
      await settled(s.engine, 2);
      const stats = s.engine.queueStats("q");
      assert.deepEqual([stats.expired, stats.discarded, stats.deadLettered], [2, 2, 0]);
      assert.deepEqual([stats.ready, stats.partitions[0]!.floor], [0, 2]);
    } finally {
      await s.close();
    }
  });

  test("expired records at the head never hold back live ones: one fetch gets them", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { messageTtlMs: 1_000 });
    try {
      await publishAt(s.engine, START_MS, [{ value: "old1" }, { value: "old2" }]);
      await publishAt(s.engine, START_MS + 600, [{ value: "new1" }]);
      await publishAt(s.engine, START_MS, [{ value: "old3" }]);
      await publishAt(s.engine, START_MS + 600, [{ value: "new2" }, { value: "new3" }]);
      s.clock.advance(1_200);
      const member = s.engine.joinQueue("q");
      assert.deepEqual(values(s.engine, member), ["new1", "new2", "new3"]);
      await settled(s.engine, 3);
    } finally {
      await s.close();
    }
  });

  test("message TTL header: per record inside one batch; invalid values are ignored", async () => {
    using dir = tempDir();
    const s = await setup(dir.path);
    try {
      const ignored = ["-5", "abc", "", "1e3", "1.5", " 100", String(MESSAGE_TTL_MS_MAX + 1)];
      await publishAt(s.engine, START_MS, [
        { value: "short", ttl: "100" },
        { value: "none" },
        { value: "zero", ttl: "0" },
        { value: "long", ttl: "100000" },
        ...ignored.map((ttl, i) => ({ value: `ignored${i}`, ttl })),
        { value: "null", ttl: null },
      ]);
      s.clock.advance(100);
      const member = s.engine.joinQueue("q");
      assert.deepEqual(values(s.engine, member), [
        "none",
        "long",
        ...ignored.map((_, i) => `ignored${i}`),
        "null",
      ]);
      await settled(s.engine, 2);
    } finally {
      await s.close();
    }
  });

  test("the lower of the queue's and the record's TTL wins (either way round)", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { messageTtlMs: 1_000 });
    try {
      await publishAt(s.engine, START_MS, [
        { value: "h200", ttl: "200" },
        { value: "queue" },
        { value: "h5000", ttl: "5000" },
      ]);
      const member = s.engine.joinQueue("q");
      s.clock.advance(500);
      const held = deliveriesOf(s.engine.fetchQueue("q", member));
      assert.deepEqual(
        held.map((d) => d.value),
        ["queue", "h5000"],
      );
      await s.engine.ackQueue("q", member, acksFor(held, "release"));
      s.clock.advance(500);
      assert.deepEqual(values(s.engine, member), [], "at 1,000 ms the queue TTL ends both");
      await settled(s.engine, 3);
    } finally {
      await s.close();
    }
  });

  test("compressed batches are judged per record too", async () => {
    using dir = tempDir();
    const s = await setup(dir.path);
    try {
      const records = [{ value: "a", ttl: "10" }, { value: "b" }, { value: "c", ttl: "10" }];
      await publishAt(s.engine, START_MS, records, "gzip");
      s.clock.advance(10);
      assert.deepEqual(values(s.engine, s.engine.joinQueue("q")), ["b"]);
      await settled(s.engine, 2);
    } finally {
      await s.close();
    }
  });

  test("dead letters of expired records say reason expired", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { messageTtlMs: 1_000, deadLetterTopic: "dead" });
    try {
      await publishAt(s.engine, START_MS, [{ value: "never" }, { value: "once" }]);
      const member = s.engine.joinQueue("q");
      s.clock.advance(1_000);
      assert.deepEqual(values(s.engine, member), []);
      await settled(s.engine, 2);
      const letters = readDeadLetters(s.engine, "dead");
      assert.deepEqual(
        letters.map((l) => l.value),
        ["never", "once"],
      );
      const expected = {
        queue: "q",
        reason: "expired",
        count: "1",
        "first-ms": String(s.clock.nowMs),
        topic: "t",
        partition: "0",
        offset: "0",
        deliveries: "0",
      };
      for (const [name, value] of Object.entries(expected)) {
        assert.equal(death(letters[0]!, name), value, `sluice-death-${name}`);
      }
      assert.equal(letters[0]!.headers["origin"], "test", "the original headers are kept");
      const stats = s.engine.queueStats("q");
      assert.deepEqual([stats.expired, stats.deadLettered, stats.discarded], [2, 2, 0]);
    } finally {
      await s.close();
    }
  });

  test("a record given back and then expired dies with its delivery count", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { messageTtlMs: 1_000, deadLetterTopic: "dead" });
    try {
      await publishAt(s.engine, START_MS, [{ value: "x" }]);
      const member = s.engine.joinQueue("q");
      const held = deliveriesOf(s.engine.fetchQueue("q", member));
      await s.engine.ackQueue("q", member, acksFor(held, "release"));
      s.clock.advance(1_000);
      s.engine.expireQueueLocks();
      await settled(s.engine, 1);
      const letter = readDeadLetters(s.engine, "dead")[0]!;
      assert.deepEqual([death(letter, "reason"), death(letter, "deliveries")], ["expired", "1"]);
    } finally {
      await s.close();
    }
  });
});

describe("queue TTL with messageTtlHeader ignore", () => {
  test("the header is not read; the queue TTL still applies, per record", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { messageTtlMs: 1_000, messageTtlHeader: "ignore" });
    try {
      await publishAt(s.engine, START_MS, [{ value: "h0", ttl: "0" }, { value: "plain" }]);
      const member = s.engine.joinQueue("q");
      s.clock.advance(500);
      const held = deliveriesOf(s.engine.fetchQueue("q", member));
      assert.deepEqual(
        held.map((d) => d.value),
        ["h0", "plain"],
      );
      await s.engine.ackQueue("q", member, acksFor(held, "release"));
      s.clock.advance(500);
      assert.deepEqual(values(s.engine, member), []);
      await settled(s.engine, 2);
    } finally {
      await s.close();
    }
  });

  test("a batch is judged from its header alone unless the boundary falls inside it", () => {
    const records = [
      { value: encoder.encode("early"), timestamp: START_MS },
      { value: encoder.encode("late"), timestamp: START_MS + 500 },
    ];
    const batch = encodeRecordBatch(records, { timestamp: START_MS });
    const damaged = batch.slice();
    damaged.fill(0xff, 61);
    assert.equal(batchExpiry(damaged, START_MS + 99, 100, false), "none", "first record live");
    assert.equal(batchExpiry(damaged, START_MS + 5_000, null, false), "none", "no queue TTL");
    assert.equal(batchExpiry(damaged, START_MS + 600, 100, false), "all", "last record dead");
    const straddling = batchExpiry(batch, START_MS + 100, 100, false);
    assert.ok(straddling instanceof Uint8Array, "the boundary inside: records walked");
    assert.deepEqual([straddling[0], straddling[1]], [1, 0]);
  });

  test("another value of messageTtlHeader is INVALID_CONFIG", async () => {
    using dir = tempDir();
    const { engine } = await openEngine(dir.path, new Clock());
    try {
      await engine.createTopic("t", { partitions: 1 });
      const options = { topic: "t", messageTtlHeader: "sometimes" as "read" };
      const error = await failsWith(() => engine.declareQueue("q", options), "INVALID_CONFIG");
      assert.equal(error.details["field"], "messageTtlHeader");
      assert.equal(error.details["value"], "sometimes");
    } finally {
      await engine.close();
    }
  });
});

describe("queue TTL when dead letters fail", () => {
  test("a failed dead letter of an expired record is retried each second", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine, warnings } = await openEngine(dir.path, clock);
    try {
      await engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
      await engine.createTopic("dead", { config: { maxBatchBytes: 200 } });
      await engine.declareQueue("q", { topic: "t", deadLetterTopic: "dead", messageTtlMs: 100 });
      await publishAt(engine, START_MS, [{ value: "z".repeat(500) }]);
      const member = engine.joinQueue("q");
      clock.advance(100);
      assert.deepEqual(values(engine, member), []);
      await waitFor(() => warnings.length === 1, "the failed dead letter's warning");
      assert.match(warnings[0]!, /dead letters of partition 0 not written .*retrying/);
      for (let i = 0; i < 5; i++) {
        assert.deepEqual(values(engine, member), [], "not delivered");
        // Turns of the event loop for any dead-letter job a fetch might start to fail in.
        for (let turn = 0; turn < 5; turn++) await new Promise((done) => setImmediate(done));
      }
      assert.equal(warnings.length, 1, "fetches do not retry it: the retry waits its second");
      assert.deepEqual(
        [engine.queueStats("q").deadLettering, engine.queueStats("q").expired],
        [1, 0],
      );
      // The dead-letter topic goes; the retry creates it again, with room for the record.
      await engine.deleteTopic("dead");
      clock.advance(1_000);
      engine.expireQueueLocks();
      await waitFor(() => engine.queueStats("q").expired === 1, "the retried dead letter");
      const letter = readDeadLetters(engine, "dead")[0]!;
      assert.equal(death(letter, "reason"), "expired");
    } finally {
      await engine.close();
    }
  });
});

describe("queue TTL with no consumer", () => {
  test("the sweep takes expired records off with no member joined", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { messageTtlMs: 1_000 });
    try {
      await publishAt(s.engine, START_MS, [{ value: "a" }, { value: "b" }]);
      await publishAt(s.engine, START_MS + 5_000, [{ value: "live" }]);
      s.clock.advance(1_000);
      assert.equal(s.engine.queueStats("q").members, 0);
      s.engine.expireQueueLocks();
      await settled(s.engine, 2);
      const stats = s.engine.queueStats("q");
      assert.deepEqual([stats.ready, stats.partitions[0]!.floor], [1, 2]);
    } finally {
      await s.close();
    }
  });

  test("the engine's own timer runs the check every ttlCheckMs", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine } = await openEngine(dir.path, clock, { ttlCheckMs: 10 });
    try {
      await engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
      await engine.declareQueue("q", { topic: "t", messageTtlMs: 1_000 });
      await publishAt(engine, START_MS, [{ value: "a" }]);
      clock.advance(1_000);
      // Nobody calls expireQueueLocks here: only the timer the append scheduled can do it.
      await waitFor(() => engine.queueStats("q").expired === 1, "the timer expired the record");
    } finally {
      await engine.close();
    }
  });
});

describe("queue TTL across restarts", () => {
  test("counts survive a reopen and a crash image; expired records never come back", async () => {
    using dir = tempDir();
    using image = tempDir();
    const s = await setup(dir.path, { messageTtlMs: 1_000, fsync: "always" });
    await publishAt(s.engine, START_MS, [{ value: "a" }, { value: "b" }]);
    await publishAt(s.engine, START_MS + 2_000, [{ value: "live" }]);
    s.clock.advance(1_000);
    s.engine.expireQueueLocks();
    await settled(s.engine, 2);
    crashImage(dir.path, image.path);
    await s.close();
    for (const path of [dir.path, image.path]) {
      const clock = new Clock();
      clock.advance(1_000);
      const { engine } = await openEngine(path, clock, { queueCompactAfterBytes: 1 });
      try {
        assert.equal(engine.queueStats("q").expired, 2, `expired kept (${path})`);
        assert.equal(engine.queue("q").config.messageTtlMs, 1_000, "the TTL is kept");
        const member = engine.joinQueue("q");
        assert.deepEqual(values(engine, member), ["live"]);
        clock.advance(5_000);
        await engine.ackQueue("q", member, [{ partition: 0, first: 2, last: 2, type: "release" }]);
        assert.deepEqual(values(engine, member), []);
        await waitFor(() => engine.queueStats("q").expired === 3, "third expired");
        await engine.queue("q").flush();
      } finally {
        await engine.close();
      }
      // After a compaction (every write compacts at 1 byte) the count is in the snapshot.
      const { engine: again } = await openEngine(path, clock);
      try {
        assert.equal(again.queueStats("q").expired, 3, `expired kept in the snapshot (${path})`);
      } finally {
        await again.close();
      }
    }
  });
});

describe("queue TTL bad input", () => {
  for (const bad of [0, -1, 1.5, MESSAGE_TTL_MS_MAX + 1, Number.NaN, "100", true]) {
    test(`messageTtlMs ${String(bad)}: INVALID_CONFIG naming it, nothing created`, async () => {
      using dir = tempDir();
      const clock = new Clock();
      const { engine } = await openEngine(dir.path, clock);
      try {
        await engine.createTopic("t", { partitions: 1 });
        const options = { topic: "t", messageTtlMs: bad as number };
        const error = await failsWith(() => engine.declareQueue("q", options), "INVALID_CONFIG");
        assert.match(error.message, /messageTtlMs/);
        assert.equal(error.details["field"], "messageTtlMs");
        assert.equal(engine.listQueues().length, 0, "no queue was created");
      } finally {
        await engine.close();
      }
    });
  }

  for (const bad of [0, -1, 2.5, 60_001]) {
    test(`engine option ttlCheckMs ${bad} is INVALID_CONFIG`, async () => {
      using dir = tempDir();
      await failsWith(
        () => openEngine(dir.path, new Clock(), { ttlCheckMs: bad }),
        "INVALID_CONFIG",
      );
    });
  }

  test("a redeclare with another messageTtlMs is QUEUE_EXISTS; the same is a no-op", async () => {
    using dir = tempDir();
    const s = await setup(dir.path, { messageTtlMs: 1_000 });
    try {
      await s.engine.declareQueue("q", { topic: "t", messageTtlMs: 1_000 });
      await failsWith(
        () => s.engine.declareQueue("q", { topic: "t", messageTtlMs: 2_000 }),
        "QUEUE_EXISTS",
      );
      await failsWith(() => s.engine.declareQueue("q", { topic: "t" }), "QUEUE_EXISTS");
    } finally {
      await s.close();
    }
  });
});

describe("batchExpiry", () => {
  const batchAt = (timestamp: number, records: Rec[]) =>
    encodeRecordBatch(recordsOf(records), { timestamp });

  test("a batch the queue TTL has ended is judged from its header alone", () => {
    const batch = batchAt(START_MS, [{ value: "a" }, { value: "b" }]);
    // Damage every byte after the header: only a verdict that reads no record survives it.
    const damaged = batch.slice();
    damaged.fill(0xff, 61);
    assert.equal(batchExpiry(damaged, START_MS + 100, 100), "all");
    assert.equal(batchExpiry(batch, START_MS + 99, 100), "none");
    assert.equal(batchExpiry(batch, START_MS + 99, null), "none");
  });

  test("a mixed batch flags the expired records by offset delta", () => {
    const batch = batchAt(START_MS, [{ value: "a", ttl: "5" }, { value: "b" }]);
    const expiry = batchExpiry(batch, START_MS + 5, null);
    assert.ok(expiry instanceof Uint8Array);
    assert.deepEqual([expiry[0], expiry[1]], [1, 0]);
  });
});

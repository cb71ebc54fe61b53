// Message TTL against a model, driven by a seeded PRNG on a virtual clock: records published
// with past and present timestamps, queue TTL or none, per-record `sluice-ttl-ms` headers
// (valid, zero, junk), fetches that accept or release, lock expiry, TTL sweeps and engine
// restarts. Checked after every fetch: no record is delivered at or past its expiry time. At
// the end every record was accepted exactly once or expired, the `expired` count says how many
// expired, and each expired record has a dead letter with reason `expired`.
// A failure replays from its seed: SLUICE_SEED=<seed> bun test test/engine/queue_ttl_model.test.ts

import assert from "node:assert/strict";
import { test } from "node:test";
import { type Engine, encodeRecordBatch, type RecordHeader } from "../../engine/mod.ts";
import { mulberry32, tempDir, waitFor } from "../helpers.ts";
import { acksFor, Clock, deliveriesOf, openEngine, readDeadLetters } from "./queue_helpers.ts";

const SEED = Number(process.env["SLUICE_SEED"] ?? Date.now() % 1_000_000);
const SEEDS = 6;
const STEPS = 250;
const PARTITIONS = 2;
const LOCK_MS = 1_000;

const encoder = new TextEncoder();

type World = {
  dir: string;
  clock: Clock;
  engine: Engine;
  member: string;
  random: () => number;
  seed: number;
  queueTtlMs: number | null;
  /** Expiry time of every published record, by value (Infinity: never). */
  expiresAt: Map<string, number>;
  accepted: Set<string>;
  published: number;
};

function pick(random: () => number, below: number): number {
  return Math.floor(random() * below);
}

/** A header value: valid (0..600), or one of the values the broker ignores. */
function ttlHeader(random: () => number): { value: string; ms: number | undefined } {
  const roll = random();
  if (roll < 0.15)
    return { value: ["-1", "x", "", "1.5", "99999999999"][pick(random, 5)]!, ms: undefined };
  const ms = roll < 0.25 ? 0 : pick(random, 600);
  return { value: String(ms), ms };
}

async function stepPublish(world: World): Promise<void> {
  const timestamp = world.clock.nowMs - pick(world.random, 400);
  const records = [];
  for (let i = 0; i < 1 + pick(world.random, 6); i++) {
    const value = `r${world.published++}`;
    const headers: RecordHeader[] = [];
    let ttl = world.queueTtlMs ?? undefined;
    if (world.random() < 0.4) {
      const header = ttlHeader(world.random);
      headers.push({ key: "sluice-ttl-ms", value: encoder.encode(header.value) });
      if (header.ms !== undefined) ttl = ttl === undefined ? header.ms : Math.min(ttl, header.ms);
    }
    world.expiresAt.set(value, ttl === undefined ? Number.POSITIVE_INFINITY : timestamp + ttl);
    records.push({ value: encoder.encode(value), headers });
  }
  const partition = pick(world.random, PARTITIONS);
  await world.engine.append("t", partition, encodeRecordBatch(records, { timestamp }));
}

async function stepFetch(world: World): Promise<void> {
  const maxRecords = 1 + pick(world.random, 20);
  const held = deliveriesOf(world.engine.fetchQueue("q", world.member, { maxRecords }));
  for (const delivery of held) {
    const expiresAt = world.expiresAt.get(delivery.value)!;
    assert.ok(
      world.clock.nowMs < expiresAt,
      `seed ${world.seed}: ${delivery.value} delivered at ${world.clock.nowMs}, ` +
        `expired at ${expiresAt}`,
    );
    const again = world.accepted.has(delivery.value);
    assert.ok(!again, `seed ${world.seed}: ${delivery.value} delivered after its accept`);
  }
  const roll = world.random();
  if (roll < 0.2) return; // held until its lock ends
  const accept = roll < 0.7;
  await world.engine.ackQueue("q", world.member, acksFor(held, accept ? "accept" : "release"));
  if (accept) for (const delivery of held) world.accepted.add(delivery.value);
}

async function restart(world: World): Promise<void> {
  await world.engine.close();
  world.engine = (await openEngine(world.dir, world.clock)).engine;
  world.member = world.engine.joinQueue("q");
}

async function run(seed: number): Promise<void> {
  using dir = tempDir();
  const random = mulberry32(seed);
  const clock = new Clock();
  const { engine } = await openEngine(dir.path, clock);
  const queueTtlMs = random() < 0.3 ? null : 50 + pick(random, 500);
  await engine.createTopic("t", { partitions: PARTITIONS, config: { fsync: "never" } });
  const options = { topic: "t", lockMs: LOCK_MS, deadLetterTopic: "dead", maxInFlight: 64 };
  await engine.declareQueue("q", { ...options, messageTtlMs: queueTtlMs });
  const world: World = {
    dir: dir.path,
    clock,
    engine,
    member: engine.joinQueue("q"),
    random,
    seed,
    queueTtlMs,
    expiresAt: new Map(),
    accepted: new Set(),
    published: 0,
  };
  try {
    for (let step = 0; step < STEPS; step++) {
      const roll = random();
      if (roll < 0.3) await stepPublish(world);
      else if (roll < 0.6) await stepFetch(world);
      else if (roll < 0.85) clock.advance(pick(random, 300));
      else if (roll < 0.97) world.engine.expireQueueLocks();
      else await restart(world);
    }
    // Everything with a TTL has expired now; the rest is accepted.
    clock.advance(LOCK_MS + 10_000);
    world.engine.expireQueueLocks();
    for (let round = 0; round < 1_000; round++) {
      const held = deliveriesOf(world.engine.fetchQueue("q", world.member, { maxRecords: 100 }));
      if (held.length === 0 && world.engine.queueStats("q").ready === 0) break;
      for (const delivery of held) {
        assert.equal(world.expiresAt.get(delivery.value), Number.POSITIVE_INFINITY);
        world.accepted.add(delivery.value);
      }
      await world.engine.ackQueue("q", world.member, acksFor(held, "accept"));
      if (held.length === 0) {
        const idle = () => world.engine.queueStats("q").deadLettering === 0;
        await waitFor(idle, `seed ${seed}: dead letters written`);
      }
    }
    const expired = world.published - world.accepted.size;
    await waitFor(
      () => world.engine.queueStats("q").expired === expired,
      `seed ${seed}: expired ${expired} (queue says ${world.engine.queueStats("q").expired})`,
    );
    const stats = world.engine.queueStats("q");
    if (process.env["SLUICE_TTL_MODEL_VERBOSE"] !== undefined) {
      console.error(
        `seed ${seed}: ${world.published} published, ${stats.accepted} accepted, ` +
          `${expired} expired, queue TTL ${queueTtlMs}`,
      );
    }
    assert.equal(stats.accepted, world.accepted.size, `seed ${seed}: each accepted once`);
    await world.engine.queue("q").flush();
    const letters = readDeadLetters(world.engine, "dead");
    const reasons = new Set(letters.map((letter) => letter.headers["sluice-death-reason"]));
    assert.ok(reasons.size <= 1 && (letters.length === 0 || reasons.has("expired")));
    const dead = new Set(letters.map((letter) => letter.value));
    for (const [value] of world.expiresAt) {
      assert.ok(world.accepted.has(value) !== dead.has(value), `seed ${seed}: ${value} once`);
    }
    await restart(world);
    assert.equal(world.engine.queueStats("q").expired, expired, `seed ${seed}: kept`);
  } finally {
    await world.engine.close();
  }
}

test(`message TTL against a model (seeds ${SEED}..${SEED + SEEDS - 1})`, async () => {
  for (let seed = SEED; seed < SEED + SEEDS; seed++) await run(seed);
});

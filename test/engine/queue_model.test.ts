// Model-based test of queues: a seeded PRNG drives publish, fetch (several members), accept,
// release, reject, renew, bad acks, a virtual clock (lock expiry), members leaving, and crashes
// (a copy of the data directory taken at that moment, reopened), against an in-memory model.
// A failure replays from its seed: SLUICE_SEED=<seed> bun test test/engine/queue_model.test.ts
//
// Invariants checked after every step:
//   - no record is held by two members at once, and an accepted or confirmed-rejected record
//     is never delivered again (acks answered before a crash survive it);
//   - the delivery count a fetch reports is the model's count plus one (after an unsettled
//     crash it may be one lower: the ACQUIRE delta of the last fetch may not have been
//     written), and never exceeds deliveryLimit;
//   - a floor never moves back between crashes, and never below the confirmed-done prefix;
//   - the engine's counts of held records and members equal the model's, and every cursor's
//     own counts match a scan of its window.
// After a final drain, every published (confirmed) record was accepted or is in the
// dead-letter topic: lost = 0, and the dead-letter topic holds nothing unexpected.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Engine, QueueAck, QueueAckType } from "../../engine/mod.ts";
import { isSluiceError } from "../../engine/mod.ts";
import { mulberry32, tempDir, waitFor } from "../helpers.ts";
import {
  Clock,
  crashImage,
  type Delivery,
  death,
  deliveriesOf,
  openEngine,
  publish,
  readDeadLetters,
} from "./queue_helpers.ts";

const SEED = Number(process.env["SLUICE_SEED"] ?? Date.now() % 1_000_000);
const RUNS = 3;
const STEPS = 300;
const PARTITIONS = 3;
const LIMIT = 3;
const LOCK_MS = 1_000;
const PREFETCH = 8;
const MAX_IN_FLIGHT = 16;

type State = "ready" | "held" | "accepted" | "dead" | "dying";

type Model = {
  key: string;
  partition: number;
  offset: number;
  state: State;
  holder: string | undefined;
  deadlineMs: number;
  /** The count the engine last reported. */
  deliveries: number;
  /** The count at the last point every delta was known durable (an ack or flush resolved). */
  durableDeliveries: number;
  /** The lowest count the engine may hold: below `deliveries` after an unsettled crash. */
  lowDeliveries: number;
  /** The member whose lock ran out, until someone else acquires it. */
  expiredFrom: string | undefined;
  accepted: boolean;
};

class World {
  readonly records = new Map<string, Model>();
  members: string[] = [];
  floors: number[] = new Array(PARTITIONS).fill(0);
  step = 0;
  dirs: { path: string; [Symbol.dispose](): void }[] = [];
  engine!: Engine;
  readonly clock = new Clock();
  readonly trace: string[] = [];
  readonly random: () => number;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed;
    this.random = mulberry32(seed);
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  where(what: string): string {
    return `seed ${this.seed}, step ${this.step}: ${what}`;
  }

  held(member: string): Model[] {
    return [...this.records.values()].filter((r) => r.state === "held" && r.holder === member);
  }
}

function key(partition: number, offset: number): string {
  return `${partition}:${offset}`;
}

async function start(world: World): Promise<void> {
  const dir = tempDir("sluice-queue-model-");
  world.dirs.push(dir);
  const { engine } = await openEngine(dir.path, world.clock);
  world.engine = engine;
  await engine.createTopic("t", { partitions: PARTITIONS, config: { fsync: "never" } });
  await engine.declareQueue("q", {
    topic: "t",
    deadLetterTopic: "dead",
    deliveryLimit: LIMIT,
    lockMs: LOCK_MS,
    prefetch: PREFETCH,
    maxInFlight: MAX_IN_FLIGHT,
    fsync: "never",
  });
  for (let i = 0; i < 3; i++) world.members.push(engine.joinQueue("q"));
}

async function stepPublish(world: World): Promise<void> {
  const partition = Math.floor(world.random() * PARTITIONS);
  const count = 1 + Math.floor(world.random() * 4);
  const values = Array.from({ length: count }, (_, i) => `s${world.step}-${i}`);
  const offsets = await publish(world.engine, "t", partition, values);
  for (const offset of offsets) {
    world.records.set(key(partition, offset), {
      key: key(partition, offset),
      partition,
      offset,
      state: "ready",
      holder: undefined,
      deadlineMs: 0,
      deliveries: 0,
      durableDeliveries: 0,
      lowDeliveries: 0,
      expiredFrom: undefined,
      accepted: false,
    });
  }
}

/** Checks one delivery against the model and records it as held by `member`. */
function deliver(world: World, member: string, delivery: Delivery): void {
  const record = world.records.get(key(delivery.partition, delivery.offset));
  const what = world.where(`delivery of ${delivery.partition}:${delivery.offset}`);
  assert.ok(record !== undefined, `${what}: a published record`);
  assert.ok(
    record.state === "ready" || (record.state === "dying" && record.lowDeliveries < LIMIT),
    `${what}: delivered while ${record.state} (holder ${record.holder ?? "none"})`,
  );
  const low = record.lowDeliveries + 1;
  const high = record.deliveries + 1;
  assert.ok(
    delivery.deliveries >= low && delivery.deliveries <= high,
    `${what}: count ${delivery.deliveries}, expected ${low}..${high}`,
  );
  assert.ok(delivery.deliveries <= LIMIT, `${what}: within the delivery limit`);
  world.trace.push(`${record.key}#${delivery.deliveries}@${member.slice(-4)}`);
  Object.assign(record, {
    state: "held",
    holder: member,
    deadlineMs: world.clock.nowMs + LOCK_MS,
    deliveries: delivery.deliveries,
    lowDeliveries: delivery.deliveries,
    expiredFrom: undefined,
  });
}

function stepFetch(world: World): void {
  const member = world.pick(world.members);
  const maxRecords = 1 + Math.floor(world.random() * 12);
  const before = world.held(member).length;
  const deliveries = deliveriesOf(world.engine.fetchQueue("q", member, { maxRecords }));
  assert.ok(deliveries.length <= maxRecords, world.where("maxRecords holds"));
  assert.ok(before + deliveries.length <= PREFETCH, world.where("prefetch holds"));
  for (const delivery of deliveries) deliver(world, member, delivery);
}

/** A random run of consecutive offsets of one partition, all held by `member`. */
function heldRun(world: World, member: string): Model[] {
  const held = world.held(member).sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  if (held.length === 0) return [];
  const from = Math.floor(world.random() * held.length);
  const run = [held[from]!];
  for (let i = from + 1; i < held.length && world.random() < 0.7; i++) {
    const next = held[i]!;
    const last = run.at(-1)!;
    if (next.partition !== last.partition || next.offset !== last.offset + 1) break;
    run.push(next);
  }
  return run;
}

function applyAck(world: World, run: Model[], type: QueueAckType): void {
  for (const record of run) {
    if (type === "accept") Object.assign(record, { state: "accepted", accepted: true });
    if (type === "reject") record.state = "dead";
    if (type === "renew") record.deadlineMs = world.clock.nowMs + LOCK_MS;
    if (type === "release") {
      record.state = record.deliveries >= LIMIT ? "dying" : "ready";
      record.holder = undefined;
    }
    if (type !== "renew") record.holder = undefined;
  }
}

async function stepAck(world: World): Promise<void> {
  const holding = world.members.filter((m) => world.held(m).length > 0);
  if (holding.length === 0) return;
  const member = world.pick(holding);
  const run = heldRun(world, member);
  if (run.length === 0) return;
  const type = world.pick(["accept", "accept", "release", "reject", "renew"] as const);
  const first = run[0]!;
  const ack: QueueAck = {
    partition: first.partition,
    first: first.offset,
    last: run.at(-1)!.offset,
    type,
  };
  await world.engine.ackQueue("q", member, [ack]);
  world.trace.push(`${type} ${ack.partition}:${ack.first}..${ack.last}@${member.slice(-4)}`);
  markDurable(world);
  applyAck(world, run, type);
}

/** An ack that must be refused whole: one good range plus one the member does not hold. */
async function stepBadAck(world: World): Promise<void> {
  const member = world.pick(world.members);
  const candidates = [...world.records.values()].filter(
    (r) => !(r.state === "held" && r.holder === member),
  );
  if (candidates.length === 0) return;
  const bad = world.pick(candidates);
  const acks: QueueAck[] = [
    { partition: bad.partition, first: bad.offset, last: bad.offset, type: "accept" },
  ];
  const good = heldRun(world, member)[0];
  if (good !== undefined && good.partition !== bad.partition) {
    acks.push({ partition: good.partition, first: good.offset, last: good.offset, type: "accept" });
  }
  const expected =
    bad.state === "ready" && bad.expiredFrom === member ? "LOCK_EXPIRED" : "INVALID_RECORD_STATE";
  await assert.rejects(
    () => world.engine.ackQueue("q", member, acks),
    (error: unknown) => {
      const what = world.where(`bad ack of ${bad.key} (${bad.state})`);
      assert.ok(isSluiceError(error), `${what}: ${String(error)}`);
      if (bad.state === "ready") assert.equal(error.code, expected, `${what}: ${error.message}`);
      else assert.ok(["LOCK_EXPIRED", "INVALID_RECORD_STATE"].includes(error.code), what);
      return true;
    },
  );
}

function expireModel(world: World): void {
  for (const record of world.records.values()) {
    if (record.state !== "held" || record.deadlineMs > world.clock.nowMs) continue;
    record.expiredFrom = record.holder;
    record.holder = undefined;
    record.state = record.deliveries >= LIMIT ? "dying" : "ready";
  }
}

function stepAdvance(world: World): void {
  world.clock.advance(Math.floor(world.random() * 1.5 * LOCK_MS));
  world.engine.expireQueueLocks();
  expireModel(world);
}

function stepLeave(world: World): void {
  const member = world.pick(world.members);
  const held = world.held(member);
  assert.equal(world.engine.leaveQueue("q", member), held.length, world.where("leave"));
  for (const record of held) {
    record.holder = undefined;
    record.state = record.deliveries >= LIMIT ? "dying" : "ready";
  }
  for (const record of world.records.values()) {
    if (record.expiredFrom === member) record.expiredFrom = undefined;
  }
  world.members = world.members.filter((m) => m !== member);
  world.members.push(world.engine.joinQueue("q"));
}

/** A crash: settled (everything durable first) or not; the copy is what the process left. */
async function stepCrash(world: World): Promise<void> {
  const settled = world.random() < 0.5;
  world.trace.push(settled ? "settled" : "unsettled");
  if (settled) {
    await world.engine.flush();
    await waitFor(() => world.engine.queueStats("q").deadLettering === 0, "dead letters");
    markDurable(world);
  }
  const image = tempDir("sluice-queue-model-");
  world.dirs.push(image);
  crashImage(world.dirs.at(-2)!.path, image.path);
  await world.engine.close();
  for (const record of world.records.values()) {
    if (record.state === "held") record.state = record.deliveries >= LIMIT ? "dying" : "ready";
    // Acquisitions since the last durable point may be lost, so the count may be lower.
    if (!settled) record.lowDeliveries = Math.min(record.lowDeliveries, record.durableDeliveries);
    record.holder = undefined;
    record.expiredFrom = undefined;
  }
  const { engine } = await openEngine(image.path, world.clock);
  world.engine = engine;
  markDurable(world);
  world.members = [0, 1, 2].map(() => engine.joinQueue("q"));
  world.floors = world.floors.map(() => 0);
}

/** Every delta so far is durable: the counts the model holds are the engine's floor. */
function markDurable(world: World): void {
  for (const record of world.records.values()) {
    // After an unsettled crash the engine's count is unknown until the next delivery.
    if (record.lowDeliveries === record.deliveries) record.durableDeliveries = record.deliveries;
  }
}

function checkInvariants(world: World): void {
  const stats = world.engine.queueStats("q");
  const heldCount = [...world.records.values()].filter((r) => r.state === "held").length;
  assert.equal(stats.acquired, heldCount, world.where("held records"));
  assert.equal(stats.members, world.members.length, world.where("members"));
  for (const partition of stats.partitions) {
    const p = partition.partition;
    world.engine.queue("q").cursor(p).checkInvariants();
    // The last partition is the queue's due log (delayed records), which this model never uses.
    if (p >= world.engine.listQueues()[0]!.startOffsets.length) continue;
    assert.ok(partition.floor >= world.floors[p]!, world.where(`floor of ${p} moved back`));
    world.floors[p] = partition.floor;
    let confirmed = world.engine.listQueues()[0]!.startOffsets[p]!;
    for (;;) {
      const record = world.records.get(key(p, confirmed));
      if (record === undefined || !(record.state === "accepted" || record.state === "dead")) break;
      confirmed++;
    }
    assert.ok(partition.floor >= confirmed, world.where(`floor of ${p} below confirmed acks`));
  }
}

/** Fetches and accepts until nothing is left; then checks lost = 0 against the DLQ. */
async function drain(world: World): Promise<void> {
  world.step++;
  const member = world.members[0]!;
  for (let round = 0; round < 1000; round++) {
    await waitFor(() => world.engine.queueStats("q").deadLettering === 0, "dead letters");
    world.clock.advance(LOCK_MS);
    world.engine.expireQueueLocks();
    expireModel(world);
    const deliveries = deliveriesOf(world.engine.fetchQueue("q", member, { maxRecords: 100 }));
    for (const delivery of deliveries) deliver(world, member, delivery);
    const run = world.held(member);
    if (run.length > 0) {
      const acks = run.map((r) => ({ partition: r.partition, first: r.offset, last: r.offset }));
      await world.engine.ackQueue(
        "q",
        member,
        acks.map((a) => ({ ...a, type: "accept" })),
      );
      applyAck(world, run, "accept");
    }
    const stats = world.engine.queueStats("q");
    if (deliveries.length === 0 && stats.ready + stats.acquired + stats.deadLettering === 0) break;
  }
  const dead = new Set<string>();
  for (const letter of readDeadLetters(world.engine, "dead")) {
    const at = key(Number(death(letter, "partition")), Number(death(letter, "offset")));
    assert.ok(world.records.has(at), world.where(`dead letter ${at} was published`));
    dead.add(at);
  }
  const lost = [...world.records.values()].filter((r) => !r.accepted && !dead.has(r.key));
  assert.deepEqual(
    lost.map((r) => `${r.key} ${r.state}`),
    [],
    world.where("lost records"),
  );
  for (const record of world.records.values()) {
    if (record.state === "dead") assert.ok(dead.has(record.key), world.where(`${record.key} dead`));
  }
}

type Summary = { records: number; crashes: number; accepted: number; deadLettered: number };

/** SLUICE_TRACE=1 prints each step's kind and the records it touched. */
const TRACE = process.env["SLUICE_TRACE"] === "1";

async function run(seed: number): Promise<Summary> {
  const world = new World(seed);
  let crashes = 0;
  const steps = [
    [0.2, "publish", stepPublish],
    [0.45, "fetch", stepFetch],
    [0.7, "ack", stepAck],
    [0.76, "bad ack", stepBadAck],
    [0.88, "advance", stepAdvance],
    [0.94, "leave", stepLeave],
    [1, "crash", stepCrash],
  ] as const;
  try {
    await start(world);
    for (world.step = 1; world.step <= STEPS; world.step++) {
      const roll = world.random();
      const [, name, action] = steps.find(([below]) => roll < below)!;
      // Synchronous steps are not awaited: the next step may come before any write.
      const done = action(world);
      if (done instanceof Promise) await done;
      if (name === "crash") crashes++;
      if (TRACE) console.log(world.step, name, world.trace.splice(0).join(" "));
      checkInvariants(world);
    }
    await drain(world);
    const { accepted, deadLettered } = world.engine.queueStats("q");
    return { records: world.records.size, crashes, accepted, deadLettered };
  } finally {
    await world.engine?.close().catch(() => {});
    for (const dir of world.dirs) dir[Symbol.dispose]();
  }
}

const RUNS_TO_DO = Number(process.env["SLUICE_MODEL_RUNS"] ?? RUNS);

test(`queue model: ${RUNS_TO_DO} runs of ${STEPS} steps from seed ${SEED}`, {
  timeout: 120_000,
}, async () => {
  const summaries: string[] = [];
  for (let i = 0; i < RUNS_TO_DO; i++) {
    const summary = await run(SEED + i);
    const { records, crashes } = summary;
    assert.ok(
      records > 20 && crashes > 0,
      `seed ${SEED + i}: ${records} records, ${crashes} crashes`,
    );
    summaries.push(`seed ${SEED + i}: ${JSON.stringify(summary)}`);
  }
  console.log(`queue model:\n  ${summaries.join("\n  ")}`);
});

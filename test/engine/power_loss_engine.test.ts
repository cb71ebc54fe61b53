// Power loss, simulated at every file operation of a whole-engine workload (power_loss_io.ts):
// topics created and deleted, records appended under fsync "always", a queue declared, its
// records fetched and accepted, offsets committed. After the power goes and the files are
// rewritten as a disk could have kept them ("synced-only" or "torn"), the engine must open, and
// every acknowledged create, delete, record, commit, declare and accept must hold.
// Crash points: every operation, in both modes. SLUICE_POWER_LOSS_STEP > 1 samples fewer
// points; SLUICE_SEED changes the torn prefixes. The model keeps directory entries (creates,
// renames, unlinks) as if every directory were fsynced: see power_loss_io.ts.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decodeRecordBatches, Engine, encodeRecordBatch } from "../../engine/mod.ts";
import { mulberry32, tempDir } from "../helpers.ts";
import { acksFor, type Delivery, deliveriesOf } from "./queue_helpers.ts";
import { type PowerLossMode, PowerLossIO } from "./power_loss_io.ts";

const SEED = Number(process.env["SLUICE_SEED"] ?? 20261203);
const STEP = Math.max(1, Number(process.env["SLUICE_POWER_LOSS_STEP"] ?? 1));
const MODES: PowerLossMode[] = ["synced-only", "torn"];
const quiet = { onWarning: () => {} };

/** What the workload was told had succeeded before the power went. */
type Acked = {
  topics: Map<string, number>;
  deleted: Set<string>;
  /** `topic/partition` → values acknowledged there. */
  records: Map<string, string[]>;
  commits: Map<string, number>;
  queues: Set<string>;
  /** `partition/offset` of accepts acknowledged on queue q. */
  accepted: Set<string>;
};

function newAcked(): Acked {
  return {
    topics: new Map(),
    deleted: new Set(),
    records: new Map(),
    commits: new Map(),
    queues: new Set(),
    accepted: new Set(),
  };
}

async function append(
  engine: Engine,
  acked: Acked,
  topic: string,
  partition: number,
  value: string,
) {
  const batch = encodeRecordBatch([{ value: new TextEncoder().encode(value) }]);
  await engine.append(topic, partition, batch);
  const key = `${topic}/${partition}`;
  acked.records.set(key, [...(acked.records.get(key) ?? []), value]);
}

async function accept(engine: Engine, acked: Acked, member: string, held: Delivery[]) {
  await engine.ackQueue("q", member, acksFor(held, "accept"));
  for (const d of held) acked.accepted.add(`${d.partition}/${d.offset}`);
}

/** Runs until done or until the power goes; `acked` holds what succeeded. */
async function workload(engine: Engine, acked: Acked): Promise<void> {
  try {
    await engine.createTopic("a", { partitions: 2, config: { fsync: "always" } });
    acked.topics.set("a", 2);
    await engine.declareQueue("q", { topic: "a", fsync: "always" });
    acked.queues.add("q");
    for (let i = 0; i < 6; i++) await append(engine, acked, "a", i % 2, `a${i}`);
    const member = engine.joinQueue("q");
    const held = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 100 }));
    await accept(engine, acked, member, held.slice(0, 2));
    await engine.offsets.commit("g", [{ topic: "a", partition: 0, offset: 2 }]);
    acked.commits.set("g/a/0", 2);
    await engine.createTopic("b", { partitions: 3, config: { fsync: "always" } });
    acked.topics.set("b", 3);
    await append(engine, acked, "b", 1, "b0");
    // A delete that the power cuts short may or may not have happened: from its call on,
    // topic b is required neither to exist nor to be gone, until the delete is acknowledged.
    acked.topics.delete("b");
    acked.records.delete("b/1");
    await engine.deleteTopic("b");
    acked.deleted.add("b");
    await engine.createTopic("c", { partitions: 1, config: { fsync: "always" } });
    acked.topics.set("c", 1);
    await append(engine, acked, "c", 0, "c0");
    await accept(engine, acked, member, held.slice(2, 4));
    await append(engine, acked, "a", 1, "a6");
    await engine.offsets.commit("g", [{ topic: "a", partition: 0, offset: 3 }]);
    acked.commits.set("g/a/0", 3);
    await accept(engine, acked, member, held.slice(4));
  } catch {
    // The power went out: what was acknowledged before is what must survive.
  }
}

function valuesIn(engine: Engine, topic: string, partition: number): string[] {
  const values: string[] = [];
  let offset = engine.partition(topic, partition).logStartOffset;
  for (
    let reads = 0;
    reads < 100 && offset < engine.partition(topic, partition).highWatermark;
    reads++
  ) {
    const read = engine.read(topic, partition, offset, 1 << 20);
    for (const view of read.views) {
      for (const batch of decodeRecordBatches(view)) {
        for (const record of batch.records) values.push(new TextDecoder().decode(record.value!));
      }
    }
    offset = read.nextOffset;
  }
  return values;
}

function assertKeeps(engine: Engine, acked: Acked, context: string): void {
  const topics = new Map(engine.listTopics().map((t) => [t.name, t.partitions]));
  for (const [name, partitions] of acked.topics) {
    assert.equal(topics.get(name), partitions, `created topic ${name} exists: ${context}`);
  }
  for (const name of acked.deleted) {
    assert.ok(!topics.has(name), `deleted topic ${name} stays deleted: ${context}`);
  }
  for (const [key, values] of acked.records) {
    const [topic, partition] = key.split("/") as [string, string];
    const found = valuesIn(engine, topic, Number(partition));
    for (const value of values) assert.ok(found.includes(value), `${key} ${value}: ${context}`);
  }
  for (const [key, offset] of acked.commits) {
    const [group, topic, partition] = key.split("/") as [string, string, string];
    const found = engine.offsets.fetch(group, topic, Number(partition))?.offset ?? -1;
    assert.ok(found >= offset, `commit ${key} ${found} >= ${offset}: ${context}`);
  }
  if (acked.queues.has("q")) {
    assert.ok(
      engine.listQueues().some((q) => q.name === "q"),
      `queue q exists: ${context}`,
    );
    const again = deliveriesOf(engine.fetchQueue("q", engine.joinQueue("q"), { maxRecords: 100 }));
    for (const d of again) {
      const key = `${d.partition}/${d.offset}`;
      assert.ok(!acked.accepted.has(key), `accepted ${key} is not delivered again: ${context}`);
    }
    engine.queue("q").cursor(0).checkInvariants();
    engine.queue("q").cursor(1).checkInvariants();
  }
}

describe("power loss, whole engine", () => {
  test("creates, deletes, queue state, records and commits survive every crash point", async () => {
    let total: number;
    {
      using dir = tempDir();
      const io = new PowerLossIO();
      const engine = await Engine.open(dir.path, { ...quiet, io });
      const acked = newAcked();
      await workload(engine, acked);
      await engine.close();
      total = io.operations;
      assert.equal(acked.accepted.size, 6, "the workload runs to its end without a crash");
      assert.deepEqual([...acked.topics.keys()], ["a", "c"]);
    }
    const random = mulberry32(SEED + 2);
    let points = 0;
    for (const mode of MODES) {
      for (let crashAt = 1; crashAt <= total; crashAt += STEP) {
        using dir = tempDir();
        const io = new PowerLossIO(crashAt);
        const acked = newAcked();
        const engine = await Engine.open(dir.path, { ...quiet, io }).catch(() => undefined);
        if (engine !== undefined) {
          await workload(engine, acked);
          await engine.close().catch(() => {});
        }
        io.powerLoss(mode, random);
        const context = `${mode}, crash at operation ${crashAt} of ${total}`;
        const reopened = await Engine.open(dir.path, quiet);
        try {
          assertKeeps(reopened, acked, context);
        } finally {
          await reopened.close();
        }
        points++;
      }
    }
    console.log(`power loss, whole engine: ${points} crash points over ${total} operations`);
  });
});

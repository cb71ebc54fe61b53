// Kill -9 test of queues: a child process (queue_crash_child.ts) publishes records and runs
// competing consumers that accept, release and reject them; the parent kills it at a random
// number of resolved acks, restarts it on the same directory, and after the last cycle drains
// the queue itself. A queue-level check after Jepsen's total-queue checker:
//
//   - an accept that resolved is never followed by a delivery of that record (it survived);
//   - a reject that resolved is never followed by a delivery, and its dead letter exists;
//   - no delivery count exceeds the delivery limit;
//   - lost = confirmed publishes - (accepts that may have applied + drained + dead letters) = 0.
//
// SLUICE_SEED replays the kill points; what was in flight at each kill depends on timing.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { Engine } from "../../engine/mod.ts";
import { mulberry32, runtimeArgv, tempDir, waitFor } from "../helpers.ts";
import { CRASH_DELIVERY_LIMIT } from "./queue_crash_child.ts";
import { death, deliveriesOf, readDeadLetters } from "./queue_helpers.ts";

const CHILD = join(import.meta.dirname, "queue_crash_child.ts");
const SEED = Number(process.env["SLUICE_SEED"] ?? Date.now() % 1_000_000);
const CYCLES = 12;
const ACKS_PER_CYCLE_MAX = 400;
/** A cycle that takes longer than this has hung: the child is killed and the test fails. */
const CYCLE_MS_MAX = 30_000;

type History = {
  published: Set<string>;
  /** Accepts that were sent (and so may have applied). */
  acceptsSent: Set<string>;
  accepted: Set<string>;
  rejected: Set<string>;
  deliveries: number;
  violations: string[];
};

function apply(history: History, text: string, where: string): "ack" | "other" {
  const [kind, partition, offset, count] = text.split(" ");
  const key = `${partition}:${offset}`;
  if (kind === "P") {
    for (let at = Number(offset); at <= Number(count); at++) {
      history.published.add(`${partition}:${at}`);
    }
  } else if (kind === "D") {
    history.deliveries++;
    if (history.accepted.has(key)) history.violations.push(`${where}: ${key} after its accept`);
    if (history.rejected.has(key)) history.violations.push(`${where}: ${key} after its reject`);
    if (Number(count) > CRASH_DELIVERY_LIMIT) {
      history.violations.push(`${where}: ${key} delivered ${count} times`);
    }
  } else if (kind === "a") {
    history.acceptsSent.add(key);
  } else if (kind === "A") {
    history.accepted.add(key);
    return "ack";
  } else if (kind === "J") {
    history.rejected.add(key);
    return "ack";
  }
  return "other";
}

/** Runs the child until `ackTarget` acks resolved, then SIGKILLs it. */
async function runUntilKilled(dir: string, cycle: number, ackTarget: number, history: History) {
  const [command, argv] = runtimeArgv(CHILD, [dir, String(cycle)]);
  const child = spawn(command, argv, { stdio: ["pipe", "pipe", "pipe"] });
  let pending = "";
  let stderr = "";
  let acks = 0;
  let killed = false;
  let ended: string | undefined;
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text: string) => {
    stderr += text;
  });
  child.stdout.on("data", (text: string) => {
    pending += text;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      if (apply(history, line, `cycle ${cycle}`) === "ack") acks++;
    }
    if (!killed && acks >= ackTarget) {
      killed = true;
      child.kill("SIGKILL");
    }
  });
  child.on("close", (code, signal) => {
    ended = signal ?? `exit code ${code}`;
  });
  try {
    await waitFor(
      () => ended !== undefined,
      `cycle ${cycle} to reach ${ackTarget} acks`,
      CYCLE_MS_MAX,
    );
  } finally {
    if (ended === undefined) child.kill("SIGKILL");
  }
  assert.ok(killed && ended === "SIGKILL", `cycle ${cycle} ended (${ended}) early: ${stderr}`);
  for (const warning of stderr.split("\n").filter((l) => l.length > 0)) {
    // A kill can tear the tail of a log; nothing else may be reported.
    assert.match(warning, /torn tail|empty segment past the end/, `cycle ${cycle}: ${warning}`);
  }
}

/** Opens the directory in this process and accepts everything left. */
async function drain(dir: string, history: History): Promise<Set<string>> {
  const warnings: string[] = [];
  const engine = await Engine.open(dir, { onWarning: (m) => warnings.push(m) });
  const drained = new Set<string>();
  try {
    const member = engine.joinQueue("q");
    for (let round = 0; round < 10_000; round++) {
      await waitFor(() => engine.queueStats("q").deadLettering === 0, "dead letters");
      const deliveries = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 1000 }));
      const stats = engine.queueStats("q");
      if (deliveries.length === 0 && stats.ready + stats.acquired === 0) break;
      for (const d of deliveries)
        apply(history, `D ${d.partition} ${d.offset} ${d.deliveries}`, "drain");
      const acks = deliveries.map((d) => ({
        partition: d.partition,
        first: d.offset,
        last: d.offset,
      }));
      await engine.ackQueue(
        "q",
        member,
        acks.map((a) => ({ ...a, type: "accept" as const })),
      );
      for (const d of deliveries) drained.add(`${d.partition}:${d.offset}`);
    }
    for (const letter of readDeadLetters(engine, "dead")) {
      assert.equal(death(letter, "topic"), "t");
      drained.add(`${death(letter, "partition")}:${death(letter, "offset")}`);
    }
    const stats = engine.queueStats("q");
    for (const partition of stats.partitions) {
      assert.equal(partition.floor, partition.highWatermark, "every record is done");
    }
  } finally {
    await engine.close();
  }
  return drained;
}

test("queue: no resolved ack and no confirmed record is lost across SIGKILLs", {
  timeout: 120_000,
}, async () => {
  using dir = tempDir("sluice-queue-crash-");
  const random = mulberry32(SEED);
  const history: History = {
    published: new Set(),
    acceptsSent: new Set(),
    accepted: new Set(),
    rejected: new Set(),
    deliveries: 0,
    violations: [],
  };
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const ackTarget = 1 + Math.floor(random() * ACKS_PER_CYCLE_MAX);
    await runUntilKilled(dir.path, cycle, ackTarget, history);
  }
  const doneOrDead = await drain(dir.path, history);
  const context = `seed ${SEED}`;
  assert.deepEqual(history.violations, [], `${context}: violations`);
  for (const key of history.rejected) {
    assert.ok(doneOrDead.has(key), `${context}: rejected ${key} has a dead letter`);
  }
  const lost = [...history.published].filter(
    (key) => !history.acceptsSent.has(key) && !doneOrDead.has(key),
  );
  assert.deepEqual(lost, [], `${context}: lost records`);
  assert.ok(history.published.size > 500, `${context}: ${history.published.size} published`);
  assert.ok(history.accepted.size > 500, `${context}: ${history.accepted.size} accepted`);
  console.log(
    `queue crash (${context}): ${CYCLES} kills, ${history.published.size} published, ` +
      `${history.deliveries} deliveries, ${history.accepted.size} accepts resolved, ` +
      `${history.rejected.size} rejects resolved, lost 0`,
  );
});

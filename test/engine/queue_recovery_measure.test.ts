// A measurement, printed and not asserted: how long a reopen takes when a queue's state log
// holds a million deltas (compaction is held off so that they all stay in one generation).
// The target (reference/queues.md 5.4) is at most 1 s. Each fetch acquires 1,000 records (one
// ACQUIRE delta) and each ack accepts them as 1,000 single-record ranges (1,000 ACCEPT deltas),
// the worst case for a replay: nothing merges.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { encodeRecordBatch, type QueueAck } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";
import { Clock, openEngine } from "./queue_helpers.ts";

const RECORDS = 1_000_000;
const PER_ROUND = 1_000;

test("reopening a queue whose state log holds 1M deltas (printed)", {
  timeout: 120_000,
}, async () => {
  using dir = tempDir();
  const clock = new Clock();
  const first = await openEngine(dir.path, clock, { queueCompactAfterBytes: 1 << 30 });
  const { engine } = first;
  await engine.createTopic("t", { config: { fsync: "never" } });
  await engine.declareQueue("q", { topic: "t", fsync: "never", prefetch: PER_ROUND });
  const value = new Uint8Array(8);
  for (let sent = 0; sent < RECORDS; sent += PER_ROUND) {
    const records = Array.from({ length: PER_ROUND }, () => ({ value }));
    await engine.append("t", 0, encodeRecordBatch(records, { timestamp: clock.nowMs }));
  }
  const member = engine.joinQueue("q");
  for (let done = 0; done < RECORDS; done += PER_ROUND) {
    const fetched = engine.fetchQueue("q", member, { maxRecords: PER_ROUND });
    const range = fetched.partitions[0]!.ranges[0]!;
    const acks: QueueAck[] = [];
    for (let offset = range.first; offset <= range.last; offset++) {
      acks.push({ partition: 0, first: offset, last: offset, type: "accept" });
    }
    await engine.ackQueue("q", member, acks);
  }
  const logBytes = engine.queue("q").stateLog.stats.logBytes;
  await engine.close();

  const started = performance.now();
  const second = await openEngine(dir.path, clock, { queueCompactAfterBytes: 1 << 30 });
  const openMs = performance.now() - started;
  try {
    const { recovery } = second.engine.queue("q").stateLog;
    assert.ok(recovery.deltas >= RECORDS, `${recovery.deltas} deltas replayed`);
    assert.equal(second.engine.queueStats("q").partitions[0]!.floor, RECORDS);
    const runtime = typeof globalThis.Bun === "undefined" ? "deno" : "bun";
    const files = fs.readdirSync(join(dir.path, "__queues", "q"));
    console.log(
      `queue recovery (${runtime}): ${recovery.deltas} deltas in ${recovery.frames} frames, ` +
        `${(logBytes / 1024 / 1024).toFixed(1)} MiB (${files.join(", ")}); Engine.open took ` +
        `${openMs.toFixed(0)} ms`,
    );
  } finally {
    await second.engine.close();
  }
});

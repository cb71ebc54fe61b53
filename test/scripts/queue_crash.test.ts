// The total-queue checker (scripts/queue_crash.ts) under SIGKILL: a broker process killed and
// restarted 20 times while producers publish with acks "all" and QueueConsumers accept over
// TCP. Every confirmed value must be dequeued (accepted or dead-lettered) and nothing
// dequeued that was never sent; duplicates are allowed and reported.

import assert from "node:assert/strict";
import { test } from "node:test";
import { runQueueCrashCheck } from "../../scripts/queue_crash.ts";

const CYCLES = 20;

test(`no confirmed record is lost across ${CYCLES} broker SIGKILLs`, async () => {
  const lines: string[] = [];
  const report = await runQueueCrashCheck({
    cycles: CYCLES,
    cycleMsMin: 80,
    cycleMsMax: 300,
    log: (line) => lines.push(line),
  });
  const detail = `${JSON.stringify(report)}\n${lines.slice(-20).join("\n")}`;
  assert.equal(report.cycles, CYCLES);
  assert.equal(report.lost, 0, detail);
  assert.equal(report.unexpected, 0, detail);
  assert.ok(report.valid, detail);
  assert.ok(report.confirmed > 0 && report.accepted > 0, detail);
  assert.ok(report.redelivered > 0, `crashes and releases redeliver records: ${detail}`);
});

test(`with delays switched on, no confirmed record is lost across ${CYCLES} SIGKILLs`, async () => {
  const lines: string[] = [];
  const report = await runQueueCrashCheck({
    cycles: CYCLES,
    cycleMsMin: 80,
    cycleMsMax: 300,
    // Every release waits up to 2 s and a quarter of the values are published delayed as
    // much: records sit in the delay tiers and move between them while the broker is killed.
    releaseRate: 0.2,
    delayMsMax: 2_000,
    log: (line) => lines.push(line),
  });
  const detail = `${JSON.stringify(report)}\n${lines.slice(-20).join("\n")}`;
  assert.equal(report.lost, 0, detail);
  assert.equal(report.unexpected, 0, detail);
  assert.ok(report.valid, detail);
  assert.ok(report.confirmed > 0 && report.accepted > 0, detail);
});

test("with priorities on (one level per partition), no confirmed record is lost", async () => {
  const lines: string[] = [];
  const report = await runQueueCrashCheck({
    cycles: 8,
    cycleMsMin: 80,
    cycleMsMax: 300,
    priorities: true,
    log: (line) => lines.push(line),
  });
  const detail = `${JSON.stringify(report)}\n${lines.slice(-20).join("\n")}`;
  assert.equal(report.priorities, 3, "the broker has the queue as a priority queue");
  assert.equal(report.lost, 0, detail);
  assert.equal(report.unexpected, 0, detail);
  assert.ok(report.valid, detail);
  assert.ok(report.confirmed > 0 && report.accepted > 0, detail);
});

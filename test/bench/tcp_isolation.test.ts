// bench:tcp's phase isolation (bench/tcp/isolation.ts): Dirty + Writeback and CPU pressure read
// from /proc text, and a bounded wait for the dirty page cache to drain that reports what it saw.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  cpuPressureTotalUs,
  cpuPressureWindow,
  dirtyMB,
  type ProcReader,
  waitForWritebackDrain,
} from "../../bench/tcp/isolation.ts";

function meminfo(dirtyKb: number, writebackKb: number): string {
  return [
    "MemTotal:       24683664 kB",
    `Dirty:          ${dirtyKb} kB`,
    `Writeback:      ${writebackKb} kB`,
    "WritebackTmp:          0 kB",
  ].join("\n");
}

/** A clock that only the test moves, and a pause that moves it instead of waiting. */
function fakeTime() {
  let now = 0;
  return {
    nowMs: () => now,
    pause: async (ms: number) => {
      now += ms;
    },
  };
}

describe("bench:tcp isolation", () => {
  test("Dirty + Writeback are summed in MB, and malformed text gives undefined", () => {
    assert.equal(dirtyMB(meminfo(1000, 24)), (1024 * 1024) / 1e6);
    assert.equal(dirtyMB("MemTotal: 1 kB\nDirty: 5 kB\n"), undefined);
    assert.equal(dirtyMB("Dirty: x kB\nWriteback: 0 kB"), undefined);
  });

  test("the CPU pressure total is read from the some line", () => {
    const text =
      "some avg10=84.55 avg60=56.84 avg300=21.40 total=11289977969\n" +
      "full avg10=0.00 avg60=0.00 avg300=0.00 total=7\n";
    assert.equal(cpuPressureTotalUs(text), 11_289_977_969);
    assert.equal(cpuPressureTotalUs("full avg10=0.00 total=7\n"), undefined);
  });

  test("CPU pressure over a window is the stalled share of its wall time", () => {
    const time = fakeTime();
    let totalUs = 1_000_000;
    const read: ProcReader = () => `some avg10=1 avg60=1 avg300=1 total=${totalUs}\n`;
    const window = cpuPressureWindow(read, time.nowMs);
    void time.pause(2000);
    totalUs += 500_000;
    assert.equal(window.pressurePct(), 25);
    assert.equal(cpuPressureWindow(() => undefined, time.nowMs).pressurePct(), undefined);
  });

  test("the wait ends as soon as Dirty + Writeback fall to the threshold", async () => {
    const time = fakeTime();
    const figures = [900_000, 600_000, 200_000, 100_000];
    let looks = 0;
    const read: ProcReader = () => meminfo(figures[Math.min(looks++, figures.length - 1)]!, 0);
    const outcome = await waitForWritebackDrain({
      thresholdMB: 256,
      waitMsMax: 10_000,
      pollMs: 100,
      read,
      ...time,
    });
    assert.ok(outcome !== undefined);
    assert.equal(outcome.drained, true);
    assert.equal(outcome.waitedMs, 200);
    assert.equal(looks, 3);
    assert.equal(outcome.dirtyMBBefore, (900_000 * 1024) / 1e6);
    assert.equal(outcome.dirtyMBAfter, (200_000 * 1024) / 1e6);
  });

  test("the wait is bounded: a cache that never drains is reported, not awaited", async () => {
    const time = fakeTime();
    const outcome = await waitForWritebackDrain({
      thresholdMB: 256,
      waitMsMax: 1000,
      pollMs: 100,
      read: () => meminfo(4_000_000, 100_000),
      ...time,
    });
    assert.ok(outcome !== undefined);
    assert.equal(outcome.drained, false);
    assert.equal(outcome.waitedMs, 1000);
    assert.equal(outcome.dirtyMBAfter, (4_100_000 * 1024) / 1e6);
  });

  test("no /proc/meminfo means nothing to wait for", async () => {
    const outcome = await waitForWritebackDrain({
      thresholdMB: 256,
      waitMsMax: 1000,
      read: () => undefined,
    });
    assert.equal(outcome, undefined);
  });

  test("a negative threshold or bound is refused with the value", async () => {
    await assert.rejects(
      waitForWritebackDrain({ thresholdMB: -1, waitMsMax: 1 }),
      (error: unknown) => error instanceof RangeError && /thresholdMB -1/.test(error.message),
    );
    await assert.rejects(
      waitForWritebackDrain({ thresholdMB: 1, waitMsMax: Number.NaN }),
      /waitMsMax NaN/,
    );
  });
});

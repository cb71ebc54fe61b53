// alloc_per_msg's window arithmetic: the heap's growth between collections in a BUN_JSC_logGC
// log, between two probe lines, per message.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { windowFigures } from "../../bench/tools/_alloc_window.ts";

const probe = (fields: Record<string, number>) => `[alloc-probe] ${JSON.stringify(fields)}`;

/** One collection's log lines as Bun 1.4 prints them (kb before and after, its pause). */
function collection(startKb: number, endKb: number, pauseMs: number): string {
  return [
    `Requesting GC because bytes allocated this cycle: 8401187 exceed bytes allowed: 8388608`,
    `[GC<0x44b3919c118>: START M ${startKb}kb => EdenCollection, a=0kb hf=0.000 mu=0.600 ` +
      `v=0kb (C:0 M:0 P1:0) o=0 b=0 i#1:N<CsMsrShDMsm(0)SrbBcs> 30+0 => ${endKb}kb, ` +
      `p=${pauseMs}ms (max 9.5), cycle ${pauseMs}ms END]`,
    "GC END!",
    "[GC<0x44b3919c118>: epilogue 0.013109ms]",
  ].join("\n");
}

/**
 * A collection a timer started (no "Requesting GC" line) that stopped the program twice: the
 * first increment's line ends "...]" and the collection goes on concurrently.
 */
function concurrentCollection(startKb: number, endKb: number, pausesMs: [number, number]) {
  return [
    `[GC<0x44b3919c118>: START M ${startKb}kb => EdenCollection, a=0kb hf=0.000 mu=0.600 ` +
      `v=0kb (C:0 M:0 P1:0) o=33 b=415 i#1:N<CsMsrShDMsm(420)SrbBcs> 209+420 ` +
      `p=${pausesMs[0]}ms (max 20.1)...]`,
    `[GC<0x44b3919c118>: M a=21kb hf=0.006 mu=0.596 v=963kb (C:548 M:0 P1:414) o=1 b=19 ` +
      `i#2:N<WsOJw>Pbc 0+19 => ${endKb}kb, p=${pausesMs[1]}ms (max 20.1), cycle 9ms END]`,
    "GC END!",
  ].join("\n");
}

describe("alloc_per_msg window", () => {
  test("bytes are the heap's growth between collections, edges included", () => {
    const log = [
      collection(9000, 100, 7), // before the window: not counted
      probe({ timeouts: 10, immediates: 4, microtasks: 100, heapBytes: 1000 * 1024 }),
      collection(9000, 200, 1.5), // grew 8000 kb from the probe's 1000
      "some other stderr line",
      collection(8200, 300, 2.5), // grew 8000 kb from 200
      probe({ timeouts: 30, immediates: 4, microtasks: 600, heapBytes: 2300 * 1024 }),
      collection(9000, 100, 50), // after the window: not counted
    ].join("\n");
    const figures = windowFigures(log, 10_000);
    // 8000 + 8000 + (2300 - 300) kb over 10,000 messages.
    assert.equal(figures.bytesPerMsg, Math.round((18_000 * 1024) / 10_000));
    assert.equal(figures.gcPer10k, 2);
    assert.equal(figures.gcPauseMsPer10k, 4);
    assert.equal(figures.gcPauseMsMax, 2.5);
    assert.equal(figures.timeoutsPerMsg, 0.002);
    assert.equal(figures.immediatesPerMsg, 0);
    assert.equal(figures.microtasksPerMsg, 0.05);
    assert.equal(figures.gcBudgetStartedPer10k, 2);
    assert.equal(figures.gcPausesOver1MsPer10k, 2);
  });

  test("every pause of a concurrent collection counts; timer-started ones are told apart", () => {
    const log = [
      probe({ timeouts: 0, immediates: 0, microtasks: 0, heapBytes: 1000 * 1024 }),
      concurrentCollection(5000, 900, [0.5, 3]),
      collection(4900, 800, 1.25),
      probe({ timeouts: 0, immediates: 0, microtasks: 0, heapBytes: 800 * 1024 }),
    ].join("\n");
    const figures = windowFigures(log, 20_000);
    // (5000 - 1000) + (4900 - 900) + 0 kb over 20,000 messages.
    assert.equal(figures.bytesPerMsg, Math.round((8000 * 1024) / 20_000));
    assert.equal(figures.gcPer10k, 1);
    assert.equal(figures.gcBudgetStartedPer10k, 0.5);
    // 0.5 + 3 + 1.25 ms in three pauses, two of them over 1 ms.
    assert.equal(figures.gcPauseMsPer10k, 2.38);
    assert.equal(figures.gcPauseMsMax, 3);
    assert.equal(figures.gcPausesOver1MsPer10k, 1);
  });

  test("a log without two probe lines, or no messages, is refused by name", () => {
    const one = probe({ timeouts: 0, immediates: 0, microtasks: 0, heapBytes: 0 });
    assert.throws(() => windowFigures(one, 10), /1 \[alloc-probe\] lines/);
    assert.throws(() => windowFigures(`${one}\n${one}`, 0), /messages 0/);
  });
});

// A connection's ack sequence (QueueFetch v2): acks_durable_through moves only over sequences
// every partition of which has settled, in order; a failure is told no later than the answer
// that first covers its sequence; waiters run when it moves.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SluiceError } from "../../../record/mod.ts";
import { AckSequence } from "../../../protocol/server/_queue_ack_seq.ts";

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve = () => {};
  let reject = (_: Error) => {};
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("ack sequence", () => {
  test("acks_durable_through waits for the earliest unsettled sequence", async () => {
    const sequence = new AckSequence();
    const a = deferred();
    const b1 = deferred();
    const b2 = deferred();
    assert.equal(sequence.track([]), 0, "nothing applied: no sequence");
    assert.equal(sequence.track([{ partition: 0, durable: a.promise }]), 1);
    const two = [
      { partition: 0, durable: b1.promise },
      { partition: 1, durable: b2.promise },
    ];
    assert.equal(sequence.track(two), 2);
    const moved = sequence.changed();
    let woke = false;
    void moved.promise.then(() => {
      woke = true;
    });
    b1.resolve();
    b2.resolve();
    await turn();
    assert.deepEqual([sequence.take().durableThrough, woke], [0, false], "1 is not durable yet");
    a.resolve();
    await turn();
    assert.equal(woke, true);
    assert.deepEqual(sequence.take(), { durableThrough: 2, failures: [] });
    assert.equal(sequence.waiting, false);
  });

  test("a failed partition is told once, with or before the answer covering it", async () => {
    const sequence = new AckSequence();
    const p0 = deferred();
    const p1 = deferred();
    sequence.track([
      { partition: 0, durable: p0.promise },
      { partition: 1, durable: p1.promise },
    ]);
    p1.reject(new SluiceError("DISK_FULL", "No space left writing the queue state"));
    await turn();
    const early = sequence.take();
    assert.equal(early.durableThrough, 0, "partition 0 is still in flight");
    assert.equal(early.failures.length, 1);
    assert.deepEqual([early.failures[0]!.ackSeq, early.failures[0]!.partition], [1, 1]);
    assert.notEqual(early.failures[0]!.errorCode, 0);
    p0.resolve();
    await turn();
    assert.deepEqual(sequence.take(), { durableThrough: 1, failures: [] });
  });

  test("lastSettleMs runs from a sequence's apply to its last partition's outcome", async () => {
    let nowMs = 100;
    const sequence = new AckSequence(() => nowMs);
    assert.equal(sequence.lastSettleMs, 0, "none settled yet");
    const a = deferred();
    const b = deferred();
    sequence.track([
      { partition: 0, durable: a.promise },
      { partition: 1, durable: b.promise },
    ]);
    nowMs = 103;
    a.resolve();
    await turn();
    assert.equal(sequence.lastSettleMs, 0, "one partition of two is not the sequence");
    nowMs = 107;
    b.reject(new SluiceError("DISK_FULL", "no space"));
    await turn();
    assert.equal(sequence.lastSettleMs, 7, "a failed partition settles it too");
    const c = deferred();
    sequence.track([{ partition: 0, durable: c.promise }]);
    nowMs = 108;
    c.resolve();
    await turn();
    assert.equal(sequence.lastSettleMs, 1);
  });
});

// The per-request deadline of an acks=all Produce (protocol/server/_produce_deadline.ts): the
// partitions in before the deadline keep their answers, the rest are answered as timed out,
// an answer after the deadline goes to `late`, and a cancelled deadline never fires.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { answersWithin, startProduceDeadline } from "../../../protocol/server/_produce_deadline.ts";
import { waitFor } from "../../helpers.ts";

/** A promise with its resolve and reject. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("acks=all produce deadline", () => {
  test("answers in time are kept, the others time out, a later one goes to late", async () => {
    const deadline = startProduceDeadline(30);
    const first = deferred<string>();
    const second = deferred<string>();
    const late: string[] = [];
    const answers = answersWithin([first.promise, "refused", second.promise], deadline, {
      timedOut: (index) => `timed out ${index}`,
      late: (answer, index) => late.push(`${answer} at ${index}`),
    });
    first.resolve("durable 0");
    assert.deepEqual(await answers, ["durable 0", "refused", "timed out 2"]);
    assert.equal(deadline.expired, true);
    second.resolve("durable 2");
    await waitFor(() => late.length === 1, "the late answer");
    assert.deepEqual(late, ["durable 2 at 2"]);
  });

  test("every answer in time: no timed-out answer, and cancel stops the timer", async () => {
    const deadline = startProduceDeadline(60_000);
    const timedOut: number[] = [];
    const answers = await answersWithin([Promise.resolve(1), Promise.resolve(2)], deadline, {
      timedOut: (index) => {
        timedOut.push(index);
        return -1;
      },
      late: () => assert.fail("nothing is late"),
    });
    deadline.cancel();
    assert.deepEqual(answers, [1, 2]);
    assert.deepEqual(timedOut, []);
    assert.equal(deadline.expired, false);
  });

  test("a negative timeout counts as 0 and an empty request answers at once", async () => {
    const deadline = startProduceDeadline(-5);
    assert.equal(deadline.timeoutMs, 0);
    const never = new Promise<number>(() => {});
    assert.deepEqual(await answersWithin([], deadline, { timedOut: () => 0, late: () => {} }), []);
    const answers = answersWithin([never], deadline, { timedOut: () => 7, late: () => {} });
    assert.deepEqual(await answers, [7]);
  });

  test("a rejected append (a broken invariant) rejects the whole", async () => {
    const deadline = startProduceDeadline(60_000);
    const broken = Promise.reject(new Error("invariant"));
    const answers = answersWithin([broken], deadline, { timedOut: () => 0, late: () => {} });
    await assert.rejects(answers, /invariant/);
    deadline.cancel();
  });
});

// PendingAnswer: the data plane's answers (a Produce with acks 0/1, a long-polling Fetch) reach
// their connection through it instead of a promise. The connection must be told exactly once,
// whether the handler settles before or after the connection attaches, and a second outcome
// must never reach it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PendingAnswer } from "../../../protocol/server/connection.ts";

type Told = { slot: unknown; result?: Uint8Array[] | null; failure?: unknown }[];

function sink(told: Told) {
  return {
    answered: (slot: unknown, result: Uint8Array[] | null) => told.push({ slot, result }),
    failed: (slot: unknown, failure: unknown) => told.push({ slot, failure }),
  };
}

/** attach takes the connection's private slot type: any object stands in for it here. */
function attach(answer: PendingAnswer, told: Told, slot: object): void {
  (answer.attach as (sink: unknown, slot: unknown) => void)(sink(told), slot);
}

describe("PendingAnswer", () => {
  test("an answer given after the connection attached is told at once, once", () => {
    const told: Told = [];
    const answer = new PendingAnswer();
    const slot = { id: 1 };
    attach(answer, told, slot);
    assert.equal(told.length, 0, "nothing told before the handler answers");
    const chunks = [new Uint8Array([1, 2])];
    answer.answer(chunks);
    assert.deepEqual(told, [{ slot, result: chunks }]);
    answer.answer(null);
    answer.fail(new Error("late"));
    assert.equal(told.length, 1, "later outcomes are ignored");
  });

  test("an answer given before the connection attached is told as it attaches", () => {
    const told: Told = [];
    const answer = new PendingAnswer();
    answer.answer(null);
    answer.fail(new Error("second"));
    const slot = { id: 2 };
    attach(answer, told, slot);
    assert.deepEqual(told, [{ slot, result: null }]);
  });

  test("a failure is told as a failure", () => {
    const told: Told = [];
    const answer = new PendingAnswer();
    const failure = new Error("broken");
    answer.fail(failure);
    const slot = { id: 3 };
    attach(answer, told, slot);
    assert.deepEqual(told, [{ slot, failure }]);
  });

  test("an answer is attached to one connection only", () => {
    const answer = new PendingAnswer();
    attach(answer, [], { id: 4 });
    assert.throws(() => attach(answer, [], { id: 5 }), /attached once/);
  });
});

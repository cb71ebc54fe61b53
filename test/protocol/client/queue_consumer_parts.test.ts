// The QueueConsumer's own logic, without a server: pairing decoded records with the acquired
// ranges (a batch holds records that are not this member's), and the AckBatcher turning
// answers into ranges and pinning a partition's refusal on the records it is about.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import type { AckPartition, QueueAckResponse } from "../../../protocol/codec/queue_ack.ts";
import { AckBatcher, rangesOf } from "../../../protocol/client/queue_acks.ts";
import { messagesOf } from "../../../protocol/client/queue_message.ts";
import { ServerError } from "../../../protocol/client/mod.ts";
import { encodeRecordBatch } from "../../../record/mod.ts";

const utf8 = new TextEncoder();

/** One batch of `count` records from `baseOffset`, each value its offset. */
function batch(baseOffset: number, count: number): Uint8Array {
  const records = Array.from({ length: count }, (_, i) => ({
    value: utf8.encode(String(baseOffset + i)),
  }));
  return encodeRecordBatch(records, { baseOffset, timestamp: 1_700_000_000_000 });
}

const noSink = () => Promise.resolve();

describe("records paired with acquired ranges", () => {
  test("only the acquired records of the batches become messages, with their counts", () => {
    const views = [batch(0, 5), batch(5, 5)];
    const { messages, missing } = messagesOf(
      { topic: "t", partition: 2, memberId: "m" },
      [
        { first: 7, last: 7, deliveryCount: 3 },
        { first: 2, last: 3, deliveryCount: 1 },
      ],
      views,
      noSink,
    );
    assert.deepEqual(
      messages.map((m) => [m.offset, m.deliveryCount, m.redelivered, m.partition, m.memberId]),
      [
        [2, 1, false, 2, "m"],
        [3, 1, false, 2, "m"],
        [7, 3, true, 2, "m"],
      ],
    );
    assert.deepEqual(
      messages.map((m) => new TextDecoder().decode(m.value!)),
      ["2", "3", "7"],
    );
    assert.deepEqual(missing, []);
  });

  test("records split across received chunks pair the same; absent ones are reported", () => {
    const bytes = new Uint8Array([...batch(10, 4)]);
    const chunks = [bytes.subarray(0, 33), bytes.subarray(33)];
    const { messages, missing } = messagesOf(
      { topic: "t", partition: 0, memberId: "m" },
      [{ first: 11, last: 15, deliveryCount: 2 }],
      chunks,
      noSink,
    );
    assert.deepEqual(
      messages.map((m) => m.offset),
      [11, 12, 13],
    );
    assert.deepEqual(missing, [14, 15]);
  });
});

describe("AckBatcher", () => {
  const answer = (offset: number, type: "accept" | "release" = "accept") => ({
    offset,
    type,
    resolve: () => {},
    reject: () => {},
  });

  test("contiguous offsets of one type become one range", () => {
    const answers = [answer(1), answer(2), answer(3), answer(5), answer(6, "release"), answer(7)];
    assert.deepEqual(rangesOf(answers), [
      { first: 1, last: 3, type: "accept" },
      { first: 5, last: 5, type: "accept" },
      { first: 6, last: 6, type: "release" },
      { first: 7, last: 7, type: "accept" },
    ]);
  });

  test("a refusal is pinned by halves on the one record it is about", async () => {
    const requests: AckPartition[][] = [];
    // The broker refuses any request holding offset 13 (atomic per partition).
    const send = async (_member: string, partitions: AckPartition[]) => {
      requests.push(partitions);
      const bad = partitions[0]!.ranges.some((r) => r.first <= 13 && 13 <= r.last);
      const response: QueueAckResponse = {
        errorCode: 0,
        errorMessage: null,
        partitions: [
          {
            partition: 0,
            errorCode: bad ? WIRE_ERRORS.LOCK_EXPIRED : 0,
            errorMessage: bad ? "record 13: its lock ran out" : null,
          },
        ],
      };
      return response;
    };
    const batcher = new AckBatcher(send, { flushMs: 1_000, batchMax: 1_000 });
    const outcomes = [10, 11, 12, 13, 14, 15, 16, 17].map((offset) =>
      batcher.add("m", 0, offset, "accept").then(
        () => "ok",
        (error: unknown) => (error instanceof ServerError ? error.code : String(error)),
      ),
    );
    await batcher.flush();
    assert.deepEqual(await Promise.all(outcomes), [
      "ok",
      "ok",
      "ok",
      "LOCK_EXPIRED",
      "ok",
      "ok",
      "ok",
      "ok",
    ]);
    assert.deepEqual(requests[0], [
      { partition: 0, ranges: [{ first: 10, last: 17, type: "accept" }] },
    ]);
    // 8 answers, one bad: the first request, then two requests per level of halving.
    assert.equal(requests.length, 1 + 2 * Math.log2(8));
  });

  test("after close an answer is refused with the close's error; earlier ones go out", async () => {
    const sent: number[] = [];
    const batcher = new AckBatcher(
      async (_member, partitions) => {
        sent.push(partitions[0]!.ranges[0]!.first);
        return {
          errorCode: 0,
          errorMessage: null,
          partitions: [{ partition: 0, errorCode: 0, errorMessage: null }],
        };
      },
      { flushMs: 1_000, batchMax: 1_000 },
    );
    const early = batcher.add("m", 0, 1, "accept");
    await batcher.close(new Error("closed"));
    await early;
    await assert.rejects(batcher.add("m", 0, 2, "accept"), /closed/);
    assert.deepEqual(sent, [1]);
  });

  test("taken answers leave the batcher and settle from the caller's request", async () => {
    const sent: { member: string; partitions: AckPartition[] }[] = [];
    const ok = (partitions: number[]): QueueAckResponse => ({
      errorCode: 0,
      errorMessage: null,
      partitions: partitions.map((partition) => ({ partition, errorCode: 0, errorMessage: null })),
    });
    const batcher = new AckBatcher(
      async (member, partitions) => {
        sent.push({ member, partitions });
        return ok(partitions.map((p) => p.partition));
      },
      { flushMs: 60_000, batchMax: 1_000 },
    );
    const mine = [
      batcher.add("m", 0, 4, "accept"),
      batcher.add("m", 0, 3, "accept"),
      batcher.add("m", 2, 7, "release"),
    ];
    const other = batcher.add("n", 0, 1, "accept");
    assert.equal(batcher.pendingCount, 4);
    const taken = batcher.take("m");
    assert.ok(taken !== undefined);
    assert.equal(batcher.take("m"), undefined);
    assert.equal(batcher.pendingCount, 1);
    assert.deepEqual(taken.partitions, [
      { partition: 0, ranges: [{ first: 3, last: 4, type: "accept" }] },
      { partition: 2, ranges: [{ first: 7, last: 7, type: "release" }] },
    ]);
    taken.settle(Promise.resolve(ok([0, 2])));
    await batcher.flush();
    await Promise.all([...mine, other]);
    // Only the answers that were not taken went out in a request of the batcher's own.
    assert.deepEqual(sent, [
      {
        member: "n",
        partitions: [{ partition: 0, ranges: [{ first: 1, last: 1, type: "accept" }] }],
      },
    ]);
  });

  test("answers after a take or a flush of their partition go in the next request", async () => {
    const sent: AckPartition[][] = [];
    const batcher = new AckBatcher(
      async (_member, partitions) => {
        sent.push(partitions);
        return {
          errorCode: 0,
          errorMessage: null,
          partitions: partitions.map((p) => ({
            partition: p.partition,
            errorCode: 0,
            errorMessage: null,
          })),
        };
      },
      { flushMs: 60_000, batchMax: 1_000 },
    );
    const answers = [batcher.add("m", 0, 1, "accept"), batcher.add("m", 0, 2, "accept")];
    const taken = batcher.take("m");
    // The same member and partition as the answer before: not into the list just taken.
    answers.push(batcher.add("m", 0, 3, "accept"));
    assert.deepEqual(taken?.partitions[0]?.ranges, [{ first: 1, last: 2, type: "accept" }]);
    taken?.settle(
      Promise.resolve({
        errorCode: 0,
        errorMessage: null,
        partitions: [{ partition: 0, errorCode: 0, errorMessage: null }],
      }),
    );
    await batcher.flush();
    answers.push(batcher.add("m", 0, 5, "accept"), batcher.add("m", 0, 4, "reject"));
    await batcher.flush();
    await Promise.all(answers);
    assert.deepEqual(sent, [
      [{ partition: 0, ranges: [{ first: 3, last: 3, type: "accept" }] }],
      // Given out of order, sent in offset order.
      [
        {
          partition: 0,
          ranges: [
            { first: 4, last: 4, type: "reject" },
            { first: 5, last: 5, type: "accept" },
          ],
        },
      ],
    ]);
  });

  test("taken answers fail with the caller's request, or with their partition's code", async () => {
    const batcher = new AckBatcher(() => Promise.reject(new Error("not used")), {
      flushMs: 60_000,
      batchMax: 1_000,
    });
    const lost = batcher.add("m", 0, 1, "accept");
    batcher.take("m")!.settle(Promise.reject(new Error("connection lost")));
    await assert.rejects(lost, /connection lost/);
    const refused = batcher.add("m", 5, 9, "accept");
    batcher.take("m")!.settle(
      Promise.resolve({
        errorCode: WIRE_ERRORS.UNKNOWN_MEMBER_ID,
        errorMessage: "member m is unknown",
        partitions: [],
      }),
    );
    await assert.rejects(refused, (error: unknown) => {
      assert.ok(error instanceof ServerError);
      assert.equal(error.code, "UNKNOWN_MEMBER_ID");
      return true;
    });
  });

  test("a failed request rejects every answer in it with that error", async () => {
    const batcher = new AckBatcher(() => Promise.reject(new Error("connection lost")), {
      flushMs: 1_000,
      batchMax: 2,
    });
    const first = batcher.add("m", 0, 1, "accept");
    const second = batcher.add("m", 1, 9, "reject");
    await assert.rejects(first, /connection lost/);
    await assert.rejects(second, /connection lost/);
  });
});

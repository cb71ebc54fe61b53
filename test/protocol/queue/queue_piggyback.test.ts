// QueueConsumer's piggy-backed acks: answers given between polls travel inside the next
// QueueFetch while the queue keeps up (no QueueAck of their own). With QueueFetch v2 (what this
// broker offers) the answer leaves without waiting for their fdatasync, and a later answer (or,
// with no fetch going out, a QueueAck v2 barrier) confirms them; a long poll carrying them ends
// once they are durable. Behind a full fetch they go in a QueueAck. queue_fetch_v2.test.ts
// holds the disk to show the order.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { API } from "../../../protocol/codec/frames.ts";
import { QueueConsumer } from "../../../protocol/client/mod.ts";
import {
  declare,
  NEVER_MS,
  publish,
  requestsOf,
  statsOf,
  textOf,
  withServer,
  workConsumer,
} from "./queue_helpers.ts";

describe("queue consumer piggy-backed acks", () => {
  test("answers given between polls go out inside the next fetch, not as a QueueAck", async () => {
    await withServer(async ({ server, port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await publish(port, "jobs", ["a", "b"]);
      // The flush timer never fires during the test: only a fetch can carry the answers.
      await using consumer = workConsumer(port, {
        maxRecords: 5,
        ackFlushMs: NEVER_MS,
      });
      const first = await consumer.poll();
      assert.deepEqual(first.map(textOf), ["a", "b"]);
      const accepted = first.map((message) => message.accept());
      assert.equal(consumer.pendingAnswers, 2);
      await publish(port, "jobs", ["c"]);
      const second = await consumer.poll();
      assert.deepEqual(second.map(textOf), ["c"]);
      await Promise.all(accepted);
      assert.equal(consumer.pendingAnswers, 0);
      const stats = await statsOf(admin, "work");
      assert.deepEqual([stats.accepted, stats.acquired], [2, 1]);
      // The answers rode the fetch; at most one QueueAck, the v2 barrier that confirmed them.
      assert.ok(requestsOf(server, API.QueueAck) <= 1);
    });
  });

  test("behind a full fetch answers go in a QueueAck: no fetch waits on an fdatasync", async () => {
    await withServer(async ({ server, port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await publish(port, "jobs", ["a", "b", "c", "d"]);
      await using consumer = workConsumer(port, {
        maxRecords: 2,
        ackFlushMs: NEVER_MS,
      });
      const first = await consumer.poll();
      assert.equal(first.length, 2, "a full fetch: a backlog is likely");
      const accepted = first.map((message) => message.accept());
      const second = await consumer.poll();
      assert.deepEqual(second.map(textOf), ["c", "d"]);
      assert.equal(consumer.pendingAnswers, 2, "the answers stayed behind");
      await consumer.flush();
      await Promise.all(accepted);
      assert.equal(requestsOf(server, API.QueueAck), 1);
    });
  });

  test("a record released inside a fetch comes back in that fetch's answer", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await publish(port, "jobs", ["a"]);
      await using consumer = workConsumer(port, {
        ackFlushMs: NEVER_MS,
      });
      const [message] = await consumer.poll();
      assert.ok(message !== undefined);
      const released = message.release();
      const again = await consumer.poll();
      await released;
      assert.deepEqual(
        again.map((m) => [textOf(m), m.deliveryCount, m.redelivered]),
        [["a", 2, true]],
      );
    });
  });

  test("a long poll carrying answers is answered once they are durable", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await publish(port, "jobs", ["a"]);
      await using consumer = workConsumer(port, {
        maxWaitMs: NEVER_MS,
        ackFlushMs: NEVER_MS,
      });
      const [message] = await consumer.poll();
      assert.ok(message !== undefined);
      const accepted = message.accept();
      const startMs = performance.now();
      // Nothing is left to acquire: without the answers the broker would hold this poll.
      const empty = await consumer.poll();
      await accepted;
      assert.deepEqual(empty, []);
      assert.ok(performance.now() - startMs < NEVER_MS / 2, "the poll ended with the acks");
      assert.equal((await statsOf(admin, "work")).accepted, 1);
    });
  });

  test("with piggybackAcks false answers go out as QueueAck requests", async () => {
    await withServer(async ({ server, port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await publish(port, "jobs", ["a", "b"]);
      await using consumer = workConsumer(port, {
        ackFlushMs: 1,
        piggybackAcks: false,
      });
      const messages = await consumer.poll();
      assert.equal(messages.length, 2);
      await Promise.all(messages.map((message) => message.accept()));
      assert.ok(requestsOf(server, API.QueueAck) >= 1);
      assert.equal((await statsOf(admin, "work")).accepted, 2);
    });
  });

  test("piggybackAcks that is not a boolean is refused, naming the value", () => {
    assert.throws(
      () => new QueueConsumer({ queue: "work", piggybackAcks: "yes" as unknown as boolean }),
      /piggybackAcks yes must be a boolean/,
    );
  });
});

// QueueConsumer's fetchIntervalMs: while the queue keeps up, a fetch goes out no sooner than
// fetchIntervalMs after the one before it, so records and answers gather and each fetch
// carries more of both; behind a full fetch (a backlog) the next one goes out at once; a
// consumer closed while it waits ends its poll; bad values are refused.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { API } from "../../../protocol/codec/frames.ts";
import { QueueConsumer } from "../../../protocol/client/mod.ts";
import { FETCH_INTERVAL_MS_MAX } from "../../../protocol/client/queue_consumer.ts";
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

describe("queue consumer fetchIntervalMs", () => {
  test("while keeping up, fetches go out at most once per interval", async () => {
    await withServer(async ({ server, port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await using consumer = workConsumer(port, {
        maxRecords: 10,
        fetchIntervalMs: FETCH_INTERVAL_MS_MAX,
      });
      const startMs = performance.now();
      for (let i = 0; i < 3; i++) assert.deepEqual(await consumer.poll(), []);
      const elapsedMs = performance.now() - startMs;
      // Two waits between three fetches (timers may fire up to 1 ms early).
      const leastMs = 2 * (FETCH_INTERVAL_MS_MAX - 1);
      assert.ok(elapsedMs >= leastMs, `3 empty polls took ${elapsedMs} ms`);
      assert.equal(requestsOf(server, API.QueueFetch), 3);
    });
  });

  test("answers given while a fetch waits ride in it, with the records gathered", async () => {
    await withServer(async ({ server, port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await publish(port, "jobs", ["a", "b"]);
      await using consumer = workConsumer(port, {
        maxRecords: 10,
        ackFlushMs: NEVER_MS,
        // Long enough that the records published below are there when the fetch goes out.
        fetchIntervalMs: FETCH_INTERVAL_MS_MAX,
      });
      const first = await consumer.poll();
      assert.deepEqual(first.map(textOf), ["a", "b"]);
      const accepted = first.map((message) => message.accept());
      const second = consumer.poll();
      // Published after the poll began: the paced fetch has not gone out yet, so it finds them.
      await publish(port, "jobs", ["c", "d"]);
      assert.deepEqual((await second).map(textOf), ["c", "d"]);
      await Promise.all(accepted);
      const stats = await statsOf(admin, "work");
      assert.deepEqual([stats.accepted, stats.acquired], [2, 2]);
      // The answers rode the paced fetch; at most one QueueAck, the v2 barrier that confirmed
      // them (QueueFetch v2 answers before the acks it carries are durable).
      assert.ok(requestsOf(server, API.QueueAck) <= 1);
      assert.equal(requestsOf(server, API.QueueFetch), 2);
    });
  });

  test("fetches kept outstanding side by side take turns at the interval", async () => {
    await withServer(async ({ server, port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await using consumer = workConsumer(port, {
        fetchesInFlight: 2,
        fetchIntervalMs: FETCH_INTERVAL_MS_MAX,
      });
      const startMs = performance.now();
      // The first poll sends two fetches: the first at once, the second one interval later.
      assert.deepEqual(await consumer.poll(), []);
      assert.deepEqual(await consumer.poll(), []);
      const elapsedMs = performance.now() - startMs;
      assert.ok(elapsedMs >= FETCH_INTERVAL_MS_MAX - 1, `2 polls took ${elapsedMs} ms`);
      assert.ok(requestsOf(server, API.QueueFetch) >= 2);
    });
  });

  test("behind a full fetch the next one goes out at once", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await publish(port, "jobs", ["a", "b", "c"]);
      await using consumer = workConsumer(port, {
        maxRecords: 2,
        fetchIntervalMs: FETCH_INTERVAL_MS_MAX,
      });
      const first = await consumer.poll();
      assert.equal(first.length, 2, "a full fetch");
      const startMs = performance.now();
      const second = await consumer.poll();
      const elapsedMs = performance.now() - startMs;
      assert.deepEqual(second.map(textOf), ["c"]);
      assert.ok(
        elapsedMs < FETCH_INTERVAL_MS_MAX,
        `the poll behind a full fetch took ${elapsedMs}`,
      );
      for (const message of [...first, ...second]) void message.accept();
      await consumer.flush();
    });
  });

  test("a consumer closed while its fetch waits ends the poll with nothing", async () => {
    await withServer(async ({ server, port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      const consumer = workConsumer(port, {
        fetchIntervalMs: FETCH_INTERVAL_MS_MAX,
      });
      assert.deepEqual(await consumer.poll(), []);
      const waiting = consumer.poll();
      await consumer.close();
      assert.deepEqual(await waiting, []);
      assert.equal(requestsOf(server, API.QueueFetch), 1);
    });
  });

  test("a fetchIntervalMs out of range or not an integer is a RangeError naming it", () => {
    for (const fetchIntervalMs of [-1, FETCH_INTERVAL_MS_MAX + 1, 1.5]) {
      assert.throws(
        () => new QueueConsumer({ port: 1, queue: "work", fetchIntervalMs }),
        (error: unknown) =>
          error instanceof RangeError &&
          error.message.includes(`fetchIntervalMs ${fetchIntervalMs}`),
      );
    }
  });
});

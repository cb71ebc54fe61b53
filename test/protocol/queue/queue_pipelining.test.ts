// QueueConsumer with more than one QueueFetch outstanding (`fetchesInFlight`): the next fetch
// is already waiting at the broker while the application holds the last answer, and competing
// pipelined consumers still take every record exactly once.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { QueueConsumer } from "../../../protocol/client/mod.ts";
import { waitFor } from "../../helpers.ts";
import { declare, publish, statsOf, textOf, withServer } from "./queue_helpers.ts";

/** How long a test waits for the broker to acquire a record for a fetch already sent. */
const ACQUIRE_WAIT_MS = 3_000;

describe("queue consumer fetches in flight", () => {
  test("with fetchesInFlight 2 the next fetch waits at the broker between polls", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await using consumer = new QueueConsumer({
        port,
        queue: "work",
        maxRecords: 1,
        maxWaitMs: 10_000,
        fetchesInFlight: 2,
      });
      const polled = consumer.poll();
      await waitFor(async () => (await statsOf(admin, "work")).members === 1, "the join");
      await publish(port, "jobs", ["a"]);
      const first = await polled;
      assert.deepEqual(first.map(textOf), ["a"]);
      // No poll is running now: only a fetch sent ahead can acquire the next record.
      await publish(port, "jobs", ["b"]);
      await waitFor(
        async () => (await statsOf(admin, "work")).acquired === 2,
        "the fetch sent ahead to acquire b",
        ACQUIRE_WAIT_MS,
      );
      const second = await consumer.poll({ maxWaitMs: 0 });
      assert.deepEqual(second.map(textOf), ["b"]);
      await Promise.all([...first, ...second].map((message) => message.accept()));
      assert.equal((await statsOf(admin, "work")).acquired, 0);
    });
  });

  test("competing pipelined consumers accept every record once", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs", partitions: 3 });
      const values = Array.from({ length: 300 }, (_, i) => `v${i}`);
      await publish(port, "jobs", values);
      const options = { port, queue: "work", maxRecords: 7, maxWaitMs: 50, fetchesInFlight: 3 };
      await using one = new QueueConsumer(options);
      await using two = new QueueConsumer(options);
      const seen: string[] = [];
      const answers: Promise<void>[] = [];
      const drain = async (consumer: QueueConsumer) => {
        for (let round = 0; round < 1_000 && seen.length < values.length; round++) {
          for (const message of await consumer.poll()) {
            seen.push(textOf(message));
            answers.push(message.accept());
          }
        }
      };
      await Promise.all([drain(one), drain(two)]);
      await Promise.all(answers);
      assert.deepEqual([...seen].sort(), [...values].sort(), "each record once");
      const stats = await statsOf(admin, "work");
      assert.equal(stats.ready, 0);
      assert.equal(stats.accepted, values.length);
    });
  });

  test("fetchesInFlight outside [1, 16] is refused, naming the value", () => {
    for (const fetchesInFlight of [0, 17, 1.5]) {
      assert.throws(
        () => new QueueConsumer({ port: 1, queue: "work", fetchesInFlight }),
        new RegExp(`fetchesInFlight ${fetchesInFlight} is not an integer in \\[1, 16\\]`),
      );
    }
  });
});

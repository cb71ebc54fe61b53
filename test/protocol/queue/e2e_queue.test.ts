// Queues end to end over loopback: the real server, QueueConsumers and the Admin client.
// Competing consumers share records once each; release, reject, renew and lock expiry behave
// as PROTOCOL.md section 7a says; a member that goes away gives its records to the others at
// once; a long poll wakes on a publish; a consumer joins again after the broker restarts.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { QueueConsumer, type QueueMessage, ServerError } from "../../../protocol/client/mod.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../../helpers.ts";
import {
  declare,
  headersOf,
  publish,
  readTopic,
  statsOf,
  textOf,
  withServer,
} from "./queue_helpers.ts";

/** Polls until `count` messages came in all (each poll may bring fewer). */
async function take(consumer: QueueConsumer, count: number): Promise<QueueMessage[]> {
  const messages: QueueMessage[] = [];
  await waitFor(async () => {
    messages.push(...(await consumer.poll({ maxRecords: count - messages.length })));
    return messages.length >= count;
  }, `${count} messages from ${consumer.queue}`);
  return messages;
}

function codeOf(error: unknown): string {
  return error instanceof ServerError ? error.code : String(error);
}

describe("queues end to end", () => {
  test("competing consumers share a queue: each record goes to one of them, once", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs", partitions: 3 });
      const values = Array.from({ length: 150 }, (_, i) => `job-${i}`);
      await publish(port, "jobs", values);
      await using a = new QueueConsumer({ port, queue: "work", maxRecords: 10, maxWaitMs: 50 });
      await using b = new QueueConsumer({ port, queue: "work", maxRecords: 10, maxWaitMs: 50 });
      // A holds its first records unanswered while B polls: B must get others.
      const firstA = await take(a, 10);
      const firstB = await take(b, 10);
      const seen = [...firstA, ...firstB];
      await Promise.all(seen.map((message) => message.accept()));
      const drain = async (consumer: QueueConsumer) => {
        while (seen.length < values.length) {
          const messages = await consumer.poll();
          seen.push(...messages);
          await Promise.all(messages.map((message) => message.accept()));
        }
      };
      await Promise.all([drain(a), drain(b)]);
      assert.deepEqual(seen.map(textOf).sort(), [...values].sort());
      assert.ok(seen.every((message) => message.deliveryCount === 1 && !message.redelivered));
      const stats = await statsOf(admin, "work");
      assert.equal(stats.accepted, 150);
      assert.equal(stats.ready + stats.acquired, 0);
      assert.equal(stats.members, 2);
    });
  });

  test("release gives a record back one delivery higher; reject dead-letters it", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs", deadLetterTopic: "jobs-dead" });
      await publish(port, "jobs", ["r1", "r2"]);
      await using consumer = new QueueConsumer({ port, queue: "work", maxWaitMs: 100 });
      const [r1, r2] = await take(consumer, 2);
      assert.deepEqual([textOf(r1!), textOf(r2!)], ["r1", "r2"]);
      await r1!.release();
      await r2!.reject();
      const [again] = await take(consumer, 1);
      assert.equal(textOf(again!), "r1");
      assert.equal(again!.offset, r1!.offset);
      assert.equal(again!.deliveryCount, 2);
      assert.equal(again!.redelivered, true);
      await again!.accept();
      await assert.rejects(again!.accept(), /already answered \(accept\)/);
      const [dead] = await readTopic(port, "jobs-dead", 1);
      assert.equal(textOf(dead!), "r2");
      const headers = headersOf(dead!);
      assert.equal(headers["sluice-death-queue"], "work");
      assert.equal(headers["sluice-death-reason"], "rejected");
      assert.equal(headers["sluice-death-topic"], "jobs");
      assert.equal(headers["sluice-death-partition"], "0");
      assert.equal(headers["sluice-death-offset"], String(r2!.offset));
      const stats = await statsOf(admin, "work");
      assert.deepEqual([stats.accepted, stats.deadLettered, stats.delivered], [1, 1, 3]);
    });
  });

  test("release({ delayMs }) brings a record back no sooner, one delivery higher", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "later", { topic: "jobs" });
      await publish(port, "jobs", ["d1"]);
      await using consumer = new QueueConsumer({ port, queue: "later", maxWaitMs: 100 });
      const [first] = await take(consumer, 1);
      await assert.rejects(first!.release({ delayMs: -1 }), /delayMs -1 must be an integer/);
      await assert.rejects(first!.release({ delayMs: 31_536_000_001 }), /31536000001/);
      const releasedAt = Date.now();
      await first!.release({ delayMs: 300 });
      assert.equal((await statsOf(admin, "later")).delayed, 1);
      const [again] = await take(consumer, 1);
      assert.ok(Date.now() - releasedAt >= 300, "not before its delay");
      assert.equal(textOf(again!), "d1");
      assert.equal(again!.deliveryCount, 2, "the delayed copy counts as the next delivery");
      // Delayed copies come from the queue's due partition, numbered after the topic's.
      assert.equal(again!.partition, 1);
      const dueMs = Number(headersOf(again!)["sluice-due-ms"]);
      assert.ok(dueMs >= releasedAt + 300 && dueMs <= Date.now());
      await again!.accept();
      assert.equal((await statsOf(admin, "later")).delayed, 0);
    });
  });

  test("a queue with retry backoff redelivers a plain release after minMs", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "retry", { topic: "jobs", retry: { minMs: 200, maxMs: 1000 } });
      const [info] = (await admin.listQueues()).filter((queue) => queue.name === "retry");
      assert.deepEqual(info?.retry, { minMs: 200, maxMs: 1000, factor: 2 });
      await publish(port, "jobs", ["r"]);
      await using consumer = new QueueConsumer({ port, queue: "retry", maxWaitMs: 100 });
      const [first] = await take(consumer, 1);
      const releasedAt = Date.now();
      await first!.release();
      const [again] = await take(consumer, 1);
      assert.ok(Date.now() - releasedAt >= 200, "the backoff's minMs");
      assert.equal(again!.deliveryCount, 2);
      await again!.accept();
    });
  });

  test("a release at the delivery limit dead-letters the record", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "once", { topic: "jobs", deadLetterTopic: "dlq", deliveryLimit: 1 });
      await publish(port, "jobs", ["only"]);
      await using consumer = new QueueConsumer({ port, queue: "once", maxWaitMs: 100 });
      const [message] = await take(consumer, 1);
      await message!.release();
      const [dead] = await readTopic(port, "dlq", 1);
      assert.equal(headersOf(dead!)["sluice-death-reason"], "delivery_limit");
      assert.equal(headersOf(dead!)["sluice-death-deliveries"], "1");
    });
  });

  test("renew keeps a record past its lock; one not renewed goes to another", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs", lockMs: 1000 });
      await publish(port, "jobs", ["kept", "lost"]);
      await using a = new QueueConsumer({ port, queue: "work", maxWaitMs: 0 });
      await using b = new QueueConsumer({ port, queue: "work", maxWaitMs: 0 });
      const startMs = Date.now();
      const [kept, lost] = await take(a, 2);
      await waitFor(() => Date.now() - startMs >= 600, "600 ms into the 1 s lock");
      await kept!.renew();
      const got = await take(b, 1);
      assert.equal(textOf(got[0]!), "lost", "the unrenewed record came to the other member");
      assert.equal(got[0]!.deliveryCount, 2);
      assert.ok(Date.now() - startMs >= 1000, "not before its lock ended");
      await assert.rejects(lost!.accept(), (error) => {
        assert.match(codeOf(error), /^(INVALID_RECORD_STATE|LOCK_EXPIRED)$/);
        return true;
      });
      assert.deepEqual(await b.poll(), [], "the renewed record is still held");
      await kept!.accept();
      await got[0]!.accept();
      const stats = await statsOf(admin, "work");
      assert.deepEqual([stats.accepted, stats.ready, stats.acquired], [2, 0, 0]);
    });
  });

  test("renewLocks keeps unanswered records held past their lock", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs", lockMs: 1000 });
      await publish(port, "jobs", ["slow"]);
      await using a = new QueueConsumer({ port, queue: "work", maxWaitMs: 0, renewLocks: true });
      await using b = new QueueConsumer({ port, queue: "work", maxWaitMs: 0 });
      const startMs = Date.now();
      const [slow] = await take(a, 1);
      await waitFor(() => Date.now() - startMs >= 2500, "two and a half locks");
      assert.deepEqual(await b.poll(), [], "still held by the slow consumer");
      assert.equal((await statsOf(admin, "work")).acquired, 1);
      await slow!.accept();
      assert.equal((await statsOf(admin, "work")).accepted, 1);
    });
  });

  test("an answer after the lock ended, before anyone took it, is LOCK_EXPIRED", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs", lockMs: 1000 });
      await publish(port, "jobs", ["slow"]);
      await using consumer = new QueueConsumer({ port, queue: "work", maxWaitMs: 0 });
      const [slow] = await take(consumer, 1);
      await waitFor(async () => (await statsOf(admin, "work")).ready === 1, "the lock to end");
      await assert.rejects(slow!.accept(), (error) => codeOf(error) === "LOCK_EXPIRED");
    });
  });

  test("a consumer that closes gives what it holds to the others at once", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await publish(port, "jobs", ["a", "b", "c"]);
      const leaving = new QueueConsumer({ port, queue: "work", maxWaitMs: 100 });
      await take(leaving, 3);
      await using staying = new QueueConsumer({ port, queue: "work", maxWaitMs: 5000 });
      assert.deepEqual(await staying.poll({ maxWaitMs: 0 }), []);
      await leaving.close();
      // The lock is 30 s: these come because the member left, not because locks ran out.
      const startMs = Date.now();
      const again = await take(staying, 3);
      assert.ok(Date.now() - startMs < 5000);
      assert.deepEqual(again.map(textOf), ["a", "b", "c"]);
      assert.ok(again.every((message) => message.deliveryCount === 2 && message.redelivered));
    });
  });

  test("a long poll answers as soon as a record is published", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await using consumer = new QueueConsumer({ port, queue: "work", maxWaitMs: 10_000 });
      const startMs = Date.now();
      const polled = consumer.poll();
      await waitFor(async () => (await statsOf(admin, "work")).members === 1, "the join");
      await publish(port, "jobs", ["wake"]);
      const messages = await polled;
      assert.deepEqual(messages.map(textOf), ["wake"]);
      assert.ok(Date.now() - startMs < 10_000, "answered before its wait ended");
    });
  });

  test("auto-accept accepts each message when the next one is asked for", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await publish(port, "jobs", ["1", "2", "3", "4"]);
      const consumer = new QueueConsumer({ port, queue: "work", autoAccept: true, maxWaitMs: 50 });
      const seen: string[] = [];
      for await (const message of consumer) {
        seen.push(textOf(message));
        if (seen.length === 4) break;
      }
      await consumer.close();
      // The last was being handled when the loop was left: released, not accepted.
      const stats = await statsOf(admin, "work");
      assert.deepEqual([stats.accepted, stats.ready, stats.acquired], [3, 1, 0]);
    });
  });
});

describe("queues across a broker restart", () => {
  test("the consumer joins again; held records come again; old answers are refused", async () => {
    using dir = tempDir();
    let server = await SluiceServer.start({ dataDir: dir.path, port: 0 });
    const port = server.port;
    await using consumer = new QueueConsumer({
      port,
      queue: "work",
      maxWaitMs: 100,
      retryBackoffMs: 10,
      retryBackoffMsMax: 50,
    });
    try {
      const { Admin } = await import("../../../protocol/client/mod.ts");
      const admin = new Admin({ port });
      await declare(admin, "work", { topic: "jobs" });
      await admin.close();
      await publish(port, "jobs", ["x", "y"]);
      const held = await take(consumer, 2);
      const firstMember = consumer.memberId;
      await server.close();
      server = await SluiceServer.start({ dataDir: dir.path, port });
      const again = await take(consumer, 2);
      assert.notEqual(consumer.memberId, firstMember);
      assert.deepEqual(again.map(textOf), ["x", "y"]);
      assert.ok(again.every((message) => message.deliveryCount === 2));
      await assert.rejects(held[0]!.accept(), (error) => codeOf(error) === "UNKNOWN_MEMBER_ID");
      await Promise.all(again.map((message) => message.accept()));
    } finally {
      await consumer.close();
      await server.close();
    }
  });
});

// `sluice queues declare|list|purge|delete` and `sluice consume --queue` end to end: a `sluice
// serve` process on a temp directory, each command run as a child process against it, its
// output and exit code checked (0 done, 1 refused by the broker, 2 called the wrong way).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { lines, sluice, useServer } from "./cli_run.ts";

describe("sluice queues and consume --queue", () => {
  const server = useServer();
  const { ok, queueJson, broker } = server;

  test("declare, list, list --json, purge and delete a queue", async () => {
    await ok(["topics", "create", "orders", "--partitions", "2"]);
    const declared = await ok([
      "queues",
      "declare",
      "billing",
      "--topic",
      "orders",
      "--from",
      "beginning",
      "--dead-letter",
      "orders-dead",
      "--delivery-limit",
      "5",
      "--lock-ms",
      "2000",
      "--prefetch",
      "50",
    ]);
    assert.match(declared.stdout, /declared queue billing on topic orders \(from beginning/);
    assert.match(declared.stdout, /dead letters to orders-dead/);
    await ok(["produce", "--topic", "orders"], "a\nb\nc\n");
    const table = lines((await ok(["queues", "list"])).stdout);
    assert.match(table[0]!, /^QUEUE\s+TOPIC\s+READY\s+ACQUIRED/);
    assert.match(table.find((line) => line.startsWith("billing"))!, /^billing\s+orders\s+3\s+0\s/);
    const json = await queueJson("billing");
    assert.ok(json !== undefined);
    assert.equal(json["topic"], "orders");
    assert.equal(json["ready"], 3);
    assert.equal(json["acquired"], 0);
    assert.equal(json["deadLettered"], 0);
    assert.equal(json["lockMs"], 2000);
    assert.equal(json["deliveryLimit"], 5);
    const purged = await ok(["queues", "purge", "billing"]);
    assert.match(purged.stdout, /purged queue billing: 3 records dropped/);
    assert.equal((await queueJson("billing"))?.["ready"], 0);
    assert.match((await ok(["queues", "delete", "billing"])).stdout, /deleted queue billing/);
    assert.equal(await queueJson("billing"), undefined);
  });

  test("consume --queue prints values, accepts them, and acquires at most --count", async () => {
    await ok(["topics", "create", "jobs"]);
    await ok(["queues", "declare", "work", "--topic", "jobs", "--from", "beginning"]);
    await ok(["produce", "--topic", "jobs"], "j1\nj2\nj3\nj4\nj5\n");
    const first = await ok(["consume", "--queue", "work", "--count", "2"]);
    assert.deepEqual(lines(first.stdout), ["j1", "j2"]);
    assert.match(first.stderr, /2 records \(accept\)/);
    const after = await queueJson("work");
    // Exactly two acquired (delivered), both accepted; the rest never left the queue.
    assert.deepEqual(
      [after?.["delivered"], after?.["accepted"], after?.["ready"], after?.["acquired"]],
      [2, 2, 3, 0],
    );
    const rest = await ok(["consume", "--queue", "work", "--timeout-ms", "300"]);
    assert.deepEqual(lines(rest.stdout), ["j3", "j4", "j5"]);
    const idle = await ok(["consume", "--queue", "work", "--timeout-ms", "200"]);
    assert.equal(idle.stdout, "", "nothing arrived: it ended after --timeout-ms");
  });

  test("--ack release gives records back; --ack reject dead-letters them", async () => {
    await ok(["topics", "create", "tasks"]);
    await ok(["queues", "declare", "retry", "--topic", "tasks", "--dead-letter", "tasks-dead"]);
    await ok(["produce", "--topic", "tasks"], "t1\nt2\n");
    const released = await ok(["consume", "--queue", "retry", "--ack", "release", "--count", "1"]);
    assert.deepEqual(lines(released.stdout), ["t1"]);
    assert.equal((await queueJson("retry"))?.["ready"], 2);
    const rejected = await ok(["consume", "--queue", "retry", "--ack", "reject", "--count", "2"]);
    assert.deepEqual(lines(rejected.stdout), ["t1", "t2"]);
    const stats = await queueJson("retry");
    assert.deepEqual([stats?.["deadLettered"], stats?.["ready"], stats?.["delivered"]], [2, 0, 3]);
    const dead = await ok([
      "consume",
      "--topic",
      "tasks-dead",
      "--from",
      "beginning",
      "--count",
      "2",
    ]);
    assert.deepEqual(lines(dead.stdout), ["t1", "t2"]);
  });

  test("refusals exit 1 with the code; mistakes in the call exit 2", async () => {
    const refused = async (args: string[], pattern: RegExp) => {
      const result = await sluice([...args, ...broker()]);
      assert.equal(result.status, 1, `sluice ${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, pattern);
    };
    const misused = async (args: string[], pattern: RegExp) => {
      const result = await sluice([...args, ...broker()]);
      assert.equal(result.status, 2, `sluice ${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, pattern);
    };
    await refused(["consume", "--queue", "absent"], /UNKNOWN_QUEUE: Queue 'absent'/);
    await refused(["queues", "purge", "absent"], /UNKNOWN_QUEUE/);
    await refused(["queues", "declare", "x", "--topic", "absent"], /INVALID_QUEUE: .*absent/);
    await ok(["topics", "create", "misc"]);
    await refused(["queues", "declare", "x", "--topic", "misc", "--lock-ms", "5"], /lockMs 5/);
    await ok(["queues", "declare", "y", "--topic", "misc"]);
    await refused(["queues", "declare", "y", "--topic", "misc", "--prefetch", "7"], /QUEUE_EXISTS/);
    await misused(["consume", "--queue", "y", "--from", "beginning"], /--from cannot be used/);
    await misused(["consume", "--queue", "y", "--ack", "maybe"], /--ack maybe is not accept/);
    await misused(["consume", "--topic", "misc", "--ack", "accept"], /--ack applies to --queue/);
    // Without --topic a queue gets a topic of its own name, unless one exists already.
    await ok(["queues", "declare", "z"]);
    await refused(["queues", "declare", "misc"], /TOPIC_EXISTS: .*topic 'misc' exists/);
    await misused(["queues", "purge", "y", "--json"], /--json applies to 'queues list'/);
    await misused(["queues", "list", "--topic", "misc"], /--topic applies to 'queues declare'/);
    await misused(["queues", "frobnicate"], /unknown action 'frobnicate'/);
    const unreachable = await sluice(["queues", "list", "--broker", "127.0.0.1:1"]);
    assert.equal(unreachable.status, 1);
    assert.match(unreachable.stderr, /cannot connect to the broker at 127.0.0.1:1/);
  });
});

// `sluice queues declare --max-length N --max-length-bytes N --overflow drop-head|reject-publish`,
// `--single-active-consumer` and `--priorities N` (with `produce --priority P`) end to end
// against a `sluice serve` process: the settings and the `overflowed` count in
// `queues list --json`, drop-head keeping the newest records, reject-publish refusing the rest
// of a publish with QUEUE_FULL (exit 1), priority order, and bad values refused by the CLI
// (exit 2) or the broker (exit 1).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { lines, useServer } from "./cli_run.ts";

describe("sluice queue max length, single active consumer and priorities", () => {
  const server = useServer();
  const { run, ok, queueJson } = server;

  test("drop-head keeps the newest records; list --json shows policy and count", async () => {
    const declared = await ok(["queues", "declare", "capped", "--max-length", "2"]);
    assert.match(declared.stdout, /max length 2 \(drop-head\)/);
    await ok(["produce", "--queue", "capped"], "a\nb\nc\nd\n");
    const stats = await queueJson("capped");
    assert.deepEqual(
      [stats?.["maxLength"], stats?.["overflow"], stats?.["overflowed"], stats?.["ready"]],
      [2, "drop-head", 2, 2],
    );
    const got = await ok(["consume", "--queue", "capped", "--count", "2"]);
    assert.deepEqual(lines(got.stdout), ["c", "d"]);
  });

  test("reject-publish takes what fits and fails the rest with QUEUE_FULL", async () => {
    await ok(["queues", "declare", "full", "--max-length", "2", "--overflow", "reject-publish"]);
    const refused = await run(["produce", "--queue", "full"], "a\nb\nc\n");
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /QUEUE_FULL/);
    assert.match(refused.stderr, /1 of 3 records refused, 2 taken/);
    const stats = await queueJson("full");
    assert.deepEqual([stats?.["ready"], stats?.["overflowed"]], [2, 0]);
  });

  test("--single-active-consumer is declared and listed", async () => {
    const declared = await ok(["queues", "declare", "one", "--single-active-consumer"]);
    assert.match(declared.stdout, /single active consumer/);
    const stats = await queueJson("one");
    assert.equal(stats?.["singleActiveConsumer"], true);
    assert.equal(stats?.["activeMember"], null);
  });

  test("--priorities: produce --priority P goes highest first, FIFO within a level", async () => {
    const declared = await ok(["queues", "declare", "urgent", "--priorities", "3"]);
    assert.match(declared.stdout, /3 priorities/);
    assert.equal((await queueJson("urgent"))?.["priorities"], 3);
    await ok(["produce", "--queue", "urgent"], "low-1\nlow-2\n");
    await ok(["produce", "--queue", "urgent", "--priority", "9"], "top-1\ntop-2\n");
    await ok(["produce", "--queue", "urgent", "--priority", "1"], "mid\n");
    const got = await ok(["consume", "--queue", "urgent", "--count", "5"]);
    assert.deepEqual(lines(got.stdout), ["top-1", "top-2", "mid", "low-1", "low-2"]);
    const onTopic = await run(["produce", "--topic", "urgent", "--priority", "1"], "x\n");
    assert.equal(onTopic.status, 2);
    const range = await run(["produce", "--queue", "urgent", "--priority", "256"], "x\n");
    assert.equal(range.status, 2);
    const levels = await run(["queues", "declare", "many", "--priorities", "11"]);
    assert.equal(levels.status, 1);
    assert.match(levels.stderr, /priorities 11/);
  });

  test("--max-length-bytes: drop-head keeps the queue within its bytes; listed", async () => {
    const declared = await ok(["queues", "declare", "small", "--max-length-bytes", "200"]);
    assert.match(declared.stdout, /max length 200 bytes \(drop-head\)/);
    const body = Array.from({ length: 10 }, (_, i) => `record-${i}-${"x".repeat(20)}\n`);
    await ok(["produce", "--queue", "small"], body.join(""));
    const stats = await queueJson("small");
    assert.equal(stats?.["maxLengthBytes"], 200);
    const ready = stats?.["ready"] as number;
    const readyBytes = stats?.["readyBytes"] as number;
    assert.ok(ready > 0 && ready < 10, `some records kept (${ready})`);
    assert.ok(readyBytes > 0 && readyBytes <= 200, `within the limit (${readyBytes})`);
    assert.equal(stats?.["overflowed"], 10 - ready);
    const got = await ok(["consume", "--queue", "small", "--count", String(ready)]);
    assert.deepEqual(
      lines(got.stdout),
      body.slice(10 - ready).map((line) => line.trim()),
    );
    const full = ["queues", "declare", "tight", "--max-length-bytes", "150"];
    await ok([...full, "--overflow", "reject-publish"]);
    const refused = await run(["produce", "--queue", "tight"], body.join(""));
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /QUEUE_FULL/);
    for (const bad of ["-1", "1.5", "9007199254740992", "lots"]) {
      const result = await run(["queues", "declare", "bad", "--max-length-bytes", bad]);
      assert.equal(result.status, 2, `--max-length-bytes ${bad}`);
      assert.ok(result.stderr.includes(`--max-length-bytes ${bad}`), result.stderr);
    }
  });

  test("bad values are refused by the CLI with exit code 2; nothing is declared", async () => {
    const overflow = await run(["queues", "declare", "bad", "--overflow", "drop-tail"]);
    assert.equal(overflow.status, 2);
    assert.match(overflow.stderr, /--overflow drop-tail/);
    const negative = await run(["queues", "declare", "bad", "--max-length", "-1"]);
    assert.equal(negative.status, 2);
    assert.match(negative.stderr, /--max-length -1/);
    const elsewhere = await run(["queues", "list", "--max-length", "3"]);
    assert.equal(elsewhere.status, 2);
    const { stdout } = await ok(["queues", "list", "--json"]);
    assert.ok(!stdout.includes('"bad"'), "nothing was declared");
  });
});

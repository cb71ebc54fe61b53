// `sluice produce --delay-ms`, `sluice queues declare --retry-*` and the `delayed` count of
// `sluice queues list --json` end to end against a `sluice serve` process, and the exit code
// of bad values (2: the CLI refuses them before sending anything).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { waitFor } from "../helpers.ts";
import { lines, useServer } from "./cli_run.ts";

describe("sluice delayed delivery", () => {
  const server = useServer();
  const { run, ok, queueJson } = server;

  test("produce --delay-ms holds records back; queues list --json counts them", async () => {
    await ok(["queues", "declare", "later"]);
    await ok(["produce", "--topic", "later", "--delay-ms", "60000"], "a\nb\n");
    await ok(["produce", "--topic", "later"], "now\n");
    const got = await ok(["consume", "--queue", "later", "--timeout-ms", "500"]);
    assert.deepEqual(lines(got.stdout), ["now"]);
    await waitFor(async () => (await queueJson("later"))?.["delayed"] === 2, "2 delayed", 20_000);
    assert.equal((await queueJson("later"))?.["ready"], 0);
  });

  test("a short --delay-ms arrives once due", async () => {
    await ok(["queues", "declare", "soon"]);
    await ok(["produce", "--topic", "soon", "--delay-ms", "300"], "x\n");
    const got = await ok(["consume", "--queue", "soon", "--count", "1", "--timeout-ms", "10000"]);
    assert.deepEqual(lines(got.stdout), ["x"]);
  });

  test("bad delays and retries are usage errors naming the value (exit 2)", async () => {
    const negative = await run(["produce", "--topic", "soon", "--delay-ms", "-5"], "x\n");
    assert.equal(negative.status, 2);
    assert.match(negative.stderr, /--delay-ms -5 is not an integer in \[0, 31536000000\]/);
    const long = await run(["produce", "--topic", "soon", "--delay-ms", "31536000001"], "x\n");
    assert.equal(long.status, 2);
    assert.match(long.stderr, /31536000001/);
    const factor = await run(["queues", "declare", "r", "--retry-max-ms", "5"]);
    assert.equal(factor.status, 2);
    assert.match(factor.stderr, /need --retry-min-ms/);
  });

  test("queues declare --retry-min-ms sets the retry backoff", async () => {
    await ok(["queues", "declare", "retried", "--retry-min-ms", "100", "--retry-max-ms", "800"]);
    const queue = await queueJson("retried");
    assert.deepEqual(queue?.["retry"], { minMs: 100, maxMs: 800, factor: 2 });
    assert.equal(queue?.["delayed"], 0);
  });
});

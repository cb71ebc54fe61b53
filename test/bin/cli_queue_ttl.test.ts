// `sluice queues declare --message-ttl-ms` and the `sluice-ttl-ms` header end to end: a
// `sluice serve` process, records that expire with no consumer attached (the broker's own
// check, every ttlCheckMs), the `expired` count in `queues list --json`, and the exit codes
// of bad values (2 for a call the CLI refuses, 1 for a value the broker refuses).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { waitFor } from "../helpers.ts";
import { lines, useServer } from "./cli_run.ts";

describe("sluice queue TTL", () => {
  const server = useServer();
  const { run, ok, queueJson } = server;

  test("records past the queue TTL expire with no consumer and are counted", async () => {
    const declared = await ok(["queues", "declare", "brief", "--message-ttl-ms", "100"]);
    assert.match(declared.stdout, /message TTL 100 ms/);
    assert.equal((await queueJson("brief"))?.["messageTtlMs"], 100);
    await ok(["produce", "--topic", "brief"], "a\nb\n");
    await waitFor(async () => (await queueJson("brief"))?.["expired"] === 2, "2 expired", 20_000);
    const stats = await queueJson("brief");
    assert.deepEqual([stats?.["ready"], stats?.["delivered"], stats?.["discarded"]], [0, 0, 2]);
  });

  test("a record's sluice-ttl-ms header expires it; live records are delivered", async () => {
    await ok(["queues", "declare", "plain"]);
    assert.equal((await queueJson("plain"))?.["messageTtlMs"], null);
    assert.equal((await queueJson("plain"))?.["messageTtlHeader"], "read");
    await ok(["produce", "--topic", "plain", "--header", "sluice-ttl-ms=0"], "gone\n");
    await ok(["produce", "--topic", "plain", "--header", "sluice-ttl-ms=junk"], "kept\n");
    const got = await ok(["consume", "--queue", "plain", "--timeout-ms", "500"]);
    assert.deepEqual(lines(got.stdout), ["kept"]);
    await waitFor(async () => (await queueJson("plain"))?.["expired"] === 1, "1 expired");
  });

  test("bad TTLs: 0 or text exit 2; past the maximum the broker refuses, exit 1", async () => {
    for (const bad of ["0", "-5", "soon"]) {
      const result = await run(["queues", "declare", "bad", "--message-ttl-ms", bad]);
      assert.equal(result.status, 2, result.stderr);
      assert.match(result.stderr, new RegExp(`--message-ttl-ms ${bad} is not`));
    }
    const header = await run(["queues", "declare", "bad", "--message-ttl-header", "maybe"]);
    assert.equal(header.status, 2, header.stderr);
    assert.match(header.stderr, /--message-ttl-header maybe is not read or ignore/);
    const huge = await run(["queues", "declare", "bad", "--message-ttl-ms", "4294967296"]);
    assert.equal(huge.status, 1, huge.stderr);
    assert.match(huge.stderr, /INVALID_QUEUE: .*messageTtlMs 4294967296/);
    assert.equal(await queueJson("bad"), undefined, "nothing was declared");
  });
});

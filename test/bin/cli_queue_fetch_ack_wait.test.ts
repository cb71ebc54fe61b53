// `sluice serve --queue-fetch-ack-wait-ms N` (SLUICE_QUEUE_FETCH_ACK_WAIT_MS,
// queues.fetchAckWaitMs): the server limit queueFetchAckWaitMs, shown in the startup line; a
// value outside 0-1000 is a usage error naming it. `--queue-syncs-in-flight N` likewise, 1-8.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { tempDir } from "../helpers.ts";
import { serveUntilListening, sluice } from "./cli_run.ts";

describe("sluice serve --queue-fetch-ack-wait-ms", () => {
  test("a value above 1000 is refused, naming it", async () => {
    using dir = tempDir();
    const args = ["serve", "--data", dir.path, "--port", "0"];
    const flag = await sluice([...args, "--queue-fetch-ack-wait-ms", "1001"]);
    assert.equal(flag.status, 2, flag.stderr);
    assert.match(flag.stderr, /--queue-fetch-ack-wait-ms.*1001/);
    const env = await sluice(args, "", { env: { SLUICE_QUEUE_FETCH_ACK_WAIT_MS: "-1" } });
    assert.equal(env.status, 2, env.stderr);
    assert.match(env.stderr, /SLUICE_QUEUE_FETCH_ACK_WAIT_MS.*-1/);
  });

  test("--queue-syncs-in-flight 0 is refused, naming it", async () => {
    using dir = tempDir();
    const flag = await sluice([
      "serve",
      "--data",
      dir.path,
      "--port",
      "0",
      "--queue-syncs-in-flight",
      "0",
    ]);
    assert.equal(flag.status, 2, flag.stderr);
    assert.match(flag.stderr, /--queue-syncs-in-flight.*0/);
  });

  test("0 is accepted and shown in the startup line", async () => {
    using dir = tempDir();
    const served = await serveUntilListening([
      "--data",
      dir.path,
      "--port",
      "0",
      "--queue-fetch-ack-wait-ms",
      "0",
      "--queue-syncs-in-flight",
      "1",
    ]);
    try {
      const output = served.stdout() + served.stderr();
      assert.match(output, /queueFetchAckWaitMs="?0 \(flag\)/);
      assert.match(output, /queueSyncsInFlight="?1 \(flag\)/);
    } finally {
      // process.kill, not child.kill: as in cli_partition_sync.test.ts.
      process.kill(served.child.pid!, "SIGTERM");
      assert.equal(await served.exited, 0);
    }
  });
});

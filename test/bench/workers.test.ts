// Load workers as processes: a worker that dies fails its run at once with a message naming
// it, and the partial result is written; a remote worker demands the shared token; a run
// against a remote worker delivers everything.

import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runBench } from "../../bench/cli.ts";
import type { LoadWorker } from "../../bench/worker/handle.ts";
import { RemoteWorker } from "../../bench/worker/handle.ts";
import { runWorker } from "../../bench/worker/main.ts";
import { parseWorkers } from "../../bench/worker/pool.ts";
import { encodeFrame, TOKEN_ENV } from "../../bench/worker/protocol.ts";
import { startWorkerServer } from "../../bench/worker/server.ts";
import { runScript, tempDir, waitFor } from "../helpers.ts";

/** A run long enough that only a failure ends it early. */
const LONG = `
name: long
topics: 1
partitionsPerTopic: 2
messageSize: 100
producersPerTopic: 1
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producerRate: 1000
warmupDurationSeconds: 1
testDurationSeconds: 60
`;

const SHORT = `
name: short
topics: 1
partitionsPerTopic: 2
messageSize: 100
producersPerTopic: 2
subscriptionsPerTopic: 1
consumerPerSubscription: 2
producerRate: 1000
warmupDurationSeconds: 1
testDurationSeconds: 2
`;

describe("load workers", () => {
  test("a worker dying mid-run fails the run at once; its partial result is written", async () => {
    using dir = tempDir("sluice-bench-workers-");
    const workloadFile = join(dir.path, "long.yaml");
    fs.writeFileSync(workloadFile, LONG);
    const out = join(dir.path, "out");
    let workers: readonly LoadWorker[] = [];
    let measuring = false;
    let killedAtMs = 0;
    const log: string[] = [];
    const running = runBench({
      workload: workloadFile,
      drivers: "sluice",
      out,
      workers: 2,
      limits: false,
      log: (line) => log.push(line),
      progress: (line) => {
        if (/ measure /.test(line)) measuring = true;
      },
      onWorkers: (_driver, started) => {
        workers = started;
      },
    });
    await waitFor(() => measuring, "the measured phase", 60_000);
    assert.equal(workers.length, 2);
    killedAtMs = performance.now();
    process.kill(workers[1]!.pid, "SIGKILL");
    const outcome = await running;
    const tookMs = performance.now() - killedAtMs;
    assert.ok(tookMs < 20_000, `the run ended ${tookMs.toFixed(0)} ms after the kill`);
    assert.equal(outcome.exitCode, 1);
    assert.equal(outcome.failed.length, 1, log.join("\n"));
    assert.match(
      outcome.failed[0]!.error,
      /^worker 2 \(pid \d+ on .*\) died while running the workload: killed by SIGKILL/,
    );
    assert.match(log.join("\n"), /^FAILED sluice: worker 2/m);
    const partial = JSON.parse(fs.readFileSync(join(out, "sluice.json"), "utf8"));
    assert.match(partial.failure, /killed by SIGKILL/);
    assert.equal(partial.sustained, false);
    assert.ok(partial.samples.length >= 2, "the samples up to the failure are kept");
    assert.ok(partial.totalMessagesSent > 0);
    assert.match(log.join("\n"), /FAILED \(partial\)/, "the table marks it");
  });

  test("a remote worker requires the shared token", async () => {
    const previous = process.env[TOKEN_ENV];
    delete process.env[TOKEN_ENV];
    try {
      await assert.rejects(runWorker({ listen: "127.0.0.1:0" }), /needs a token shared/);
      assert.throws(() => parseWorkers("127.0.0.1:7000"), /remote workers need their shared token/);
      const cli = runScript("bin/sluice.ts", ["bench", "worker", "--listen", "127.0.0.1:0"]);
      assert.equal(cli.status, 2, cli.stderr);
      assert.match(cli.stderr, /needs a token shared with the coordinator/);
    } finally {
      if (previous !== undefined) process.env[TOKEN_ENV] = previous;
    }
    const server = await startWorkerServer({
      host: "127.0.0.1",
      port: 0,
      token: "right",
      log: () => {},
    });
    try {
      await assert.rejects(
        RemoteWorker.connect({ host: server.host, port: server.port, token: "wrong", label: "w" }),
        /refused: the token does not match this worker's/,
      );
      // Before the token is proven, a frame may not be large: the worker hangs up.
      const socket = net.connect(server.port, server.host);
      const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
      socket.on("error", () => {});
      socket.resume(); // Read (and drop) the challenge, so the close is seen.
      socket.write(encodeFrame({ type: "hello", padding: "x".repeat(10_000) }));
      await closed;
      const worker = await RemoteWorker.connect({
        host: server.host,
        port: server.port,
        token: "right",
        label: "w",
      });
      assert.ok(Math.abs(worker.clockOffsetMs) < 1000, `clock offset ${worker.clockOffsetMs}`);
      assert.deepEqual(await worker.close(), []);
    } finally {
      await server.stop();
    }
  });

  test("a run on a remote worker delivers everything", async () => {
    using dir = tempDir("sluice-bench-workers-");
    const workloadFile = join(dir.path, "short.yaml");
    fs.writeFileSync(workloadFile, SHORT);
    const server = await startWorkerServer({
      host: "127.0.0.1",
      port: 0,
      token: "shared",
      log: () => {},
    });
    try {
      const out = join(dir.path, "out");
      const log: string[] = [];
      const outcome = await runBench({
        workload: workloadFile,
        drivers: "sluice",
        out,
        workers: `127.0.0.1:${server.port}`,
        token: "shared",
        limits: false,
        log: (line) => log.push(line),
        progress: () => {},
      });
      assert.equal(outcome.exitCode, 0, log.join("\n"));
      const result = JSON.parse(fs.readFileSync(join(out, "sluice.json"), "utf8"));
      assert.equal(result.workers, 1);
      assert.match(result.workerProcesses[0].label, /^worker 1 \(127\.0\.0\.1:\d+\)/);
      assert.equal(result.totalMessagesReceived, result.totalMessagesSent);
      assert.ok(result.totalMessagesSent > 1000);
    } finally {
      await server.stop();
    }
  });
});

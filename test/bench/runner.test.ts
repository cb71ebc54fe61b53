// Short real runs through the harness: sluice-embedded and sluice (TCP, in-process server)
// each run a tiny workload for a few seconds; every acknowledged message must arrive, and the
// result files must carry the contract fields.

import assert from "node:assert/strict";
import fs from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runBench } from "../../bench/cli.ts";
import { DriverUnavailableError } from "../../bench/driver.ts";
import { createDriver, DRIVERS, parseDriverList } from "../../bench/drivers/mod.ts";
import { optionsFor, parseDriverOptions } from "../../bench/drivers/options.ts";
import { RESULT_CONTRACT_FIELDS } from "../../bench/result.ts";
import { runScript, tempDir } from "../helpers.ts";

const TINY = `
name: tiny
topics: 1
partitionsPerTopic: 3
messageSize: 200
producersPerTopic: 2
subscriptionsPerTopic: 2
consumerPerSubscription: 2
producerRate: 2000
keyDistributor: KEY_ROUND_ROBIN
warmupDurationSeconds: 1
testDurationSeconds: 2
`;

/** A TCP port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("benchmark runs", () => {
  test("sluice-embedded and sluice deliver everything and write contract results", async () => {
    using dir = tempDir("sluice-bench-test-");
    const workloadFile = join(dir.path, "tiny.yaml");
    fs.writeFileSync(workloadFile, TINY);
    const log: string[] = [];
    const progress: string[] = [];
    const out = join(dir.path, "out");
    const outcome = await runBench({
      workload: workloadFile,
      drivers: "sluice-embedded,sluice",
      out,
      limits: { diskBytes: 4 * 1024 * 1024, loopbackBytes: 16 * 1024 * 1024 },
      log: (line) => log.push(line),
      progress: (line) => progress.push(line),
    });
    assert.deepEqual(outcome.failed, [], log.join("\n"));
    assert.equal(outcome.exitCode, 0, log.join("\n"));
    assert.deepEqual(
      outcome.results.map((r) => r.driver),
      ["sluice-embedded", "sluice"],
    );
    for (const driver of ["sluice-embedded", "sluice"]) {
      const result = JSON.parse(fs.readFileSync(join(out, `${driver}.json`), "utf8"));
      for (const field of RESULT_CONTRACT_FIELDS) {
        assert.ok(field in result, `${driver}.json lacks ${field}`);
      }
      assert.equal(result.workload, "tiny");
      assert.equal(result.partitions, 3);
      assert.equal(result.consumersPerTopic, 4);
      assert.ok(result.totalMessagesSent > 2000, `${driver} sent ${result.totalMessagesSent}`);
      assert.equal(result.totalMessagesReceived, result.totalMessagesSent * 2, driver);
      assert.equal(result.expectedMessagesReceived, result.totalMessagesSent * 2);
      assert.equal(result.errors, 0);
      assert.equal(result.drained, true);
      assert.equal(result.publishRate.length, 2, "one sample per measured second");
      assert.ok(result.aggregatedEndToEndLatency50pct > 0);
      assert.ok(result.aggregatedPublishLatencyMax >= result.aggregatedPublishLatency99pct);
      assert.ok(result.clientCpu.percentOfOneCore > 0);
      assert.equal(result.clientCpuPercent, result.clientCpu.percentOfOneCore);
      assert.equal(typeof result.sustained, "boolean");
      assert.match(result.durability, /acknowledged/);
      assert.equal(typeof result.settings.lingerMs, "number");
      assert.equal(result.failure, null);
    }
    const embedded = JSON.parse(fs.readFileSync(join(out, "sluice-embedded.json"), "utf8"));
    assert.equal(embedded.workers, 1, "the embedded engine runs in its one worker");
    assert.equal(embedded.brokerCpuPercent, null, "its CPU is the worker's");
    assert.match(embedded.brokerCpu.note, /inside the load worker/);
    const tcp = JSON.parse(fs.readFileSync(join(out, "sluice.json"), "utf8"));
    assert.equal(tcp.workers, 2, "producers in one worker process, consumers in another");
    assert.ok(tcp.brokerCpuPercent > 0, "the server's CPU, from /proc");
    assert.ok(tcp.msgsPerBrokerCoreSecond > 0);
    assert.ok(tcp.otherCpuPercent === null || tcp.otherCpuPercent >= 0);
    assert.equal(tcp.workerProcesses.length, 2);
    assert.ok(tcp.workerProcesses.every((w: { cpuPercent: number }) => w.cpuPercent > 0));
    const html = fs.readFileSync(join(out, "report.html"), "utf8");
    assert.equal(html.match(/<svg /g)?.length, 4);
    const limits = JSON.parse(fs.readFileSync(join(out, "limits.json"), "utf8"));
    assert.ok(limits.diskWriteFdatasyncMBps > 0 && limits.loopbackTcpMBps > 0);
    assert.match(html, /Limits measured in this run/);
    assert.match(log.join("\n"), /^machine limits: disk write \+ fdatasync [\d.]+ MB\/s/m);
    assert.ok(progress.some((line) => /^sluice-embedded +warmup +1\/3 s +pub/.test(line)));
    const table = log.join("\n");
    assert.match(table, /^driver +msg\/s +MB\/s +sustained +pub p50/m);
    assert.match(table, /^sluice-embedded +[\d,]+ +[\d.]+ +(yes|NOT SUSTAINED) .* ok /m);
  });

  test("a driver whose server is not there is skipped with its hint", async () => {
    using dir = tempDir("sluice-bench-test-");
    const port = await closedPort();
    const log: string[] = [];
    const outcome = await runBench({
      workload: "quick",
      drivers: "sluice",
      sluiceUrl: `127.0.0.1:${port}`,
      out: dir.path,
      limits: false,
      log: (line) => log.push(line),
      progress: () => {},
    });
    assert.equal(outcome.results.length, 0);
    assert.equal(outcome.skipped.length, 1);
    assert.match(
      outcome.skipped[0]!.reason,
      new RegExp(`no sluice server answers at 127\\.0\\.0\\.1:${port}`),
    );
    assert.match(log.join("\n"), /^skipped sluice: .*; start one with/m);
    assert.equal(outcome.exitCode, 1, "a driver asked for by name that cannot run fails the run");
  });

  test("the driver registry names every driver and loads them by name", async () => {
    assert.deepEqual(
      DRIVERS.map((d) => d.name),
      ["sluice-embedded", "sluice", "rabbitmq", "nats", "redis", "sluice-kafka", "kafka"],
    );
    assert.throws(() => parseDriverList("sluice,nope"), /Unknown driver 'nope'; known drivers: /);
    assert.throws(() => parseDriverList("sluice,sluice"), /names 'sluice' twice/);
    using dir = tempDir();
    const port = await closedPort();
    const driver = await createDriver("sluice", {
      workDir: dir.path,
      options: { url: `127.0.0.1:${port}` },
    });
    assert.equal(driver.name, "sluice");
    await assert.rejects(driver.initialize(), DriverUnavailableError);
    await driver.close();
  });

  test("driver options: unscoped for every driver, driver.key for one", () => {
    const options = parseDriverOptions("fsync=always, sluice.acks=all,rabbitmq.prefetch=10");
    assert.deepEqual(optionsFor("sluice", options), { fsync: "always", acks: "all" });
    assert.deepEqual(optionsFor("sluice-embedded", options), { fsync: "always" });
    assert.throws(() => parseDriverOptions("fsync"), /entry 'fsync' is not key=value/);
  });

  test("bad driver options name the key and value", async () => {
    using dir = tempDir();
    const config = (options: Record<string, string>) => ({ workDir: dir.path, options });
    await assert.rejects(
      async () => createDriver("sluice-embedded", config({ fsync: "sometimes" })),
      /driver option fsync=sometimes must be always, never, or an interval/,
    );
    await assert.rejects(
      async () => createDriver("sluice", config({ acks: "2" })),
      /driver option acks=2 must be 0, 1 or all/,
    );
  });

  test("`sluice bench` rejects an unknown driver or workload with a one-line usage error", () => {
    const driver = runScript("bin/sluice.ts", ["bench", "--drivers", "nope"]);
    assert.equal(driver.status, 2, driver.stderr);
    assert.match(
      driver.stderr,
      /^sluice bench: Unknown driver 'nope'; known drivers: sluice-embedded/,
    );
    const workload = runScript("bin/sluice.ts", ["bench", "--workload", "nope"]);
    assert.equal(workload.status, 2, workload.stderr);
    assert.match(workload.stderr, /nope\.yaml: cannot be read \(known workloads: /);
  });
});

// bench/tools/queue_cpu.ts end to end, briefly: a broker child, the harness at a fixed rate,
// and one JSON line with CPU per accepted record by process and requests per record by API.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

const ROOT = join(import.meta.dirname, "..", "..");
const isDeno = (process.versions as Record<string, string | undefined>)["deno"] !== undefined;

function runTool(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = join(ROOT, "bench/tools/queue_cpu.ts");
  const argv = isDeno ? ["run", "-A", script, ...args] : [script, ...args];
  const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr })));
}

test("queue_cpu prints CPU per accepted record by process and requests by API", async () => {
  const { code, stdout } = await runTool(["--rate", "500", "--seconds", "2", "--warmup-s", "0"]);
  assert.equal(code, 0, stdout);
  const line = stdout.trim().split("\n").at(-1)!;
  const result = JSON.parse(line);
  assert.equal(result.ratePerSecond, 500);
  assert.ok(result.acceptedWholeRun >= 1000, line);
  for (const process of ["broker", "producers", "consumers", "all"]) {
    assert.ok(result.cpuUsPerRecord[process] > 0, `${process}: ${line}`);
  }
  assert.ok(result.requestsPerRecord.Produce > 0, line);
  assert.ok(result.requestsPerRecord.QueueFetch > 0, line);
  assert.ok(result.answersPerRecord > 0, line);
  assert.ok(result.socketWritesPerRecord > 0, line);
  // Every accept is fsynced: its latency is timed and its state log's commit syncs counted.
  assert.ok(result.ackMs.p99 > 0, line);
  assert.ok(result.ackMs.p50 <= result.ackMs.p99, line);
  assert.ok(result.syncsPerSecond.queueFsyncs > 0, line);
});

test("queue_cpu refuses a rate out of range, naming it", async () => {
  const { code, stderr } = await runTool(["--rate", "0"]);
  assert.notEqual(code, 0);
  assert.match(stderr, /--rate 0 is not an integer in \[1, 10000000\]/);
});

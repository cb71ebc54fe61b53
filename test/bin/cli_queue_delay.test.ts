// `sluice produce --delay-ms`, `sluice queues declare --retry-*` and the `delayed` count of
// `sluice queues list --json` end to end against a `sluice serve` process, and the exit code
// of bad values (2: the CLI refuses them before sending anything).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { PROJECT_ROOT, runtimeArgv, tempDir, waitFor } from "../helpers.ts";
import {
  type ServerProcess,
  startServerProcess,
  stopServerProcess,
} from "../protocol/server/server_process.ts";

type Result = { status: number | null; stdout: string; stderr: string };

function sluice(args: string[], input = ""): Promise<Result> {
  const [command, argv] = runtimeArgv(join(PROJECT_ROOT, "bin/sluice.ts"), args);
  const child = spawn(command, argv, { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdin!.end(input);
  return new Promise((resolve) => {
    child.once("close", (status) => resolve({ status, stdout, stderr }));
  });
}

function lines(text: string): string[] {
  return text.split("\n").filter((line) => line.length > 0);
}

describe("sluice delayed delivery", () => {
  const state: { dir?: { path: string } & Disposable; server?: ServerProcess } = {};
  before(async () => {
    state.dir = tempDir();
    state.server = await startServerProcess(state.dir.path);
  });
  after(async () => {
    if (state.server !== undefined) await stopServerProcess(state.server, "SIGTERM");
    state.dir?.[Symbol.dispose]();
  });
  const broker = () => ["--broker", `127.0.0.1:${state.server!.port}`];
  const run = (args: string[], input = "") => sluice([...args, ...broker()], input);
  const ok = async (args: string[], input = "") => {
    const result = await run(args, input);
    assert.equal(result.status, 0, `sluice ${args.join(" ")}: ${result.stderr}`);
    return result;
  };
  const queueJson = async (name: string) => {
    const { stdout } = await ok(["queues", "list", "--json"]);
    const all = lines(stdout).map((line) => JSON.parse(line) as Record<string, unknown>);
    return all.find((queue) => queue["name"] === name);
  };

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

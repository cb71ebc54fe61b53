// `sluice queues declare --message-ttl-ms` and the `sluice-ttl-ms` header end to end: a
// `sluice serve` process, records that expire with no consumer attached (the broker's own
// check, every ttlCheckMs), the `expired` count in `queues list --json`, and the exit codes
// of bad values (2 for a call the CLI refuses, 1 for a value the broker refuses).

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

describe("sluice queue TTL", () => {
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

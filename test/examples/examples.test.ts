// The programs in examples/ run, here in the repository, under the runtime running the tests,
// and print what they promise. They import sluice by its package name, which resolves to the
// sources here (package.json's exports for Bun, deno.json's imports for Deno);
// test/package/pack.test.ts runs them again from an installed tarball.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { SluiceServer } from "../../protocol/mod.ts";
import { PROJECT_ROOT, runScript, runtimeArgv, tempDir } from "../helpers.ts";
import { run, start } from "../processes.ts";
import { EMBED_OUTPUT } from "./expected.ts";

describe("examples/embed.ts", () => {
  test("runs and prints what it read", () => {
    using dir = tempDir();
    const result = runScript("examples/embed.ts", [dir.path]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, EMBED_OUTPUT);
    assert.ok(fs.existsSync(join(dir.path, "orders-0")), "it wrote to the directory it was given");
  });

  test("without arguments uses a temporary directory", () => {
    const result = runScript("examples/embed.ts", []);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, EMBED_OUTPUT);
  });

  test("engine/README.md shows it as it is", () => {
    const readme = fs.readFileSync(join(PROJECT_ROOT, "engine/README.md"), "utf8");
    const example = fs.readFileSync(join(PROJECT_ROOT, "examples/embed.ts"), "utf8");
    assert.ok(
      readme.includes(example.trim()),
      "engine/README.md embeds examples/embed.ts verbatim",
    );
  });
});

test("examples/client.mjs produces 1000 records and consumes them in a group", {
  timeout: 60_000,
}, async () => {
  using dir = tempDir();
  const server = await SluiceServer.start({
    dataDir: dir.path,
    host: "127.0.0.1",
    port: 0,
    engineOptions: { onWarning: () => {} },
  });
  try {
    const [command, args] = runtimeArgv(join(PROJECT_ROOT, "examples/client.mjs"), [
      `127.0.0.1:${server.port}`,
    ]);
    const result = await run(command, args, { cwd: PROJECT_ROOT });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, "produced 1000 consumed 1000\n");
  } finally {
    await server.close();
  }
});

test("examples/custom_broker.ts appends and reads over its own HTTP front", {
  timeout: 60_000,
}, async () => {
  using dir = tempDir();
  const [command, args] = runtimeArgv(join(PROJECT_ROOT, "examples/custom_broker.ts"), [
    dir.path,
    "0",
  ]);
  await using broker = await start(command, args, /listening on (http:\/\/[\d.]+:\d+)/, {
    cwd: PROJECT_ROOT,
  });
  const base = broker.ready[1]!;
  const call = async (method: string, path: string, body?: string) => {
    const response = await fetch(`${base}${path}`, { method, body });
    return { status: response.status, body: (await response.json()) as unknown };
  };
  assert.deepEqual(await call("POST", "/topics/orders?partitions=2"), {
    status: 200,
    body: { topic: "orders", partitions: 2 },
  });
  assert.deepEqual(await call("POST", "/topics/orders/1?key=k1", "apple"), {
    status: 200,
    body: { offset: 0 },
  });
  assert.deepEqual(await call("POST", "/topics/orders/1", "banana"), {
    status: 200,
    body: { offset: 1 },
  });
  const read = await call("GET", "/topics/orders/1?offset=1");
  assert.equal(read.status, 200);
  assert.deepEqual(
    (read.body as { offset: number; key: string | null; value: string }[]).map(
      ({ offset, key, value }) => ({ offset, key, value }),
    ),
    [{ offset: 1, key: null, value: "banana" }],
  );
  assert.equal((await call("GET", "/topics/nothing/0")).status, 404);
  assert.equal(await broker.stop("SIGTERM"), 0, broker.output());
});

// bin/sluice.mjs, the JavaScript file npm links as the installed `sluice` command: under Node
// it finds a Bun and runs bin/sluice.ts with it (signals passed on), and without one it says
// in one line what is missing and exits 1. Skipped, with the reason, where no node is on PATH.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import packageJson from "../../package.json" with { type: "json" };
import { PROJECT_ROOT, tempDir } from "../helpers.ts";
import { run, start } from "../processes.ts";

const LAUNCHER = join(PROJECT_ROOT, "bin/sluice.mjs");
const nodeVersion = spawnSync("node", ["--version"], { encoding: "utf8" });
const nodePath = spawnSync("node", ["-p", "process.execPath"], { encoding: "utf8" });
const skip = nodeVersion.status === 0 ? false : "no node on PATH to run the launcher with";

describe("bin/sluice.mjs under Node", { skip }, () => {
  test("runs the command with the project's Bun", async () => {
    const result = await run("node", [LAUNCHER, "version"]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^sluice ${packageJson.version} \\(bun `));
  });

  test("passes the command's exit code on", async () => {
    const result = await run("node", [LAUNCHER, "frobnicate"]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /unknown command 'frobnicate'/);
  });

  test("without a Bun anywhere says so in one line and exits 1", async () => {
    // A copy outside the project (no node_modules/.bin above it) and an empty PATH: no Bun to
    // be found.
    using dir = tempDir();
    const copy = join(dir.path, "sluice.mjs");
    fs.copyFileSync(LAUNCHER, copy);
    fs.mkdirSync(join(dir.path, "empty"));
    const env = { ...process.env, PATH: join(dir.path, "empty") };
    const result = await run(nodePath.stdout.trim(), [copy, "version"], { env });
    assert.equal(result.status, 1);
    assert.equal(result.stdout, "");
    assert.equal(
      result.stderr,
      'sluice: this command runs on Bun ≥ 1.4 — install it with "npm install -g bun" ' +
        '(or run "bunx sluice")\n',
    );
  });

  test("serve stops cleanly on a SIGTERM sent to the launcher", { timeout: 60_000 }, async () => {
    using dir = tempDir();
    const args = [LAUNCHER, "serve", "--data", dir.path, "--host", "127.0.0.1", "--port", "0"];
    await using server = await start("node", args, /sluice listening on 127\.0\.0\.1:\d+/);
    assert.equal(await server.stop("SIGTERM"), 0, server.output());
    assert.match(server.output(), /SIGTERM received, shutting down/);
  });
});

test("bin/sluice.mjs under Bun runs the command in-process", async () => {
  const bun = join(PROJECT_ROOT, "node_modules/.bin/bun");
  const result = await run(bun, [LAUNCHER, "version"]);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, new RegExp(`^sluice ${packageJson.version} \\(bun `));
});

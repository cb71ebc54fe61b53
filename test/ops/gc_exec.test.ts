// `sluice serve` starting itself again in place under its GC settings (ops/gc_exec.ts): the
// environment and argument vector it builds, and, with a real broker under Bun, that the
// process that listens is the one that was started (same pid: a SIGTERM or SIGKILL sent to it
// reaches the broker) and that its environment holds the settings JavaScriptCore and mimalloc
// read at start.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { GC_EXEC_MARK, gcExecEnvironment, reexecArgv } from "../../ops/gc_exec.ts";
import { GC_TUNING_ENV } from "../../ops/gc_tuning.ts";
import { serveUntilListening } from "../bin/cli_run.ts";
import { PROJECT_ROOT, tempDir } from "../helpers.ts";

const NAMES = Object.keys(GC_TUNING_ENV);
/** The feature is Bun's: the broker runs under the project's Bun whichever runtime tests. */
const BUN = join(PROJECT_ROOT, "node_modules", ".bin", "bun");

/** The test's environment without any GC setting or serve's own variables. */
function bareEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined || NAMES.includes(name)) continue;
    if (name.startsWith("SLUICE_")) continue;
    env[name] = value;
  }
  return env;
}

function environOf(pid: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")) {
    const at = entry.indexOf("=");
    if (at > 0) env[entry.slice(0, at)] = entry.slice(at + 1);
  }
  return env;
}

/** Starts `bun bin/sluice.ts serve ARGS` under exactly `env`; resolves once it listens. */
function serve(args: string[], env: Record<string, string>) {
  return serveUntilListening(args, { exactEnv: env, bun: BUN });
}

describe("serve under its GC settings", () => {
  test("tuned adds the missing settings and the mark; nothing when all are set", () => {
    const env = gcExecEnvironment({ PATH: "/bin", MIMALLOC_PURGE_DELAY: "5" }, "tuned")!;
    assert.equal(env["PATH"], "/bin");
    assert.equal(env["MIMALLOC_PURGE_DELAY"], "5", "an operator's own value wins");
    for (const name of NAMES) assert.notEqual(env[name], undefined, name);
    assert.equal(env[GC_EXEC_MARK], "1");
    assert.equal(gcExecEnvironment(env, "tuned"), undefined);
  });

  test("default removes the settings, and says so to serve; nothing when none is set", () => {
    const env = gcExecEnvironment({ PATH: "/bin", ...GC_TUNING_ENV }, "default")!;
    assert.deepEqual(env, { PATH: "/bin", SLUICE_GC: "default", [GC_EXEC_MARK]: "1" });
    assert.equal(gcExecEnvironment({ PATH: "/bin" }, "default"), undefined);
  });

  test("the argument vector repeats the runtime's flags, the script and its arguments", () => {
    const argv = ["/usr/bin/bun", "/app/bin/sluice.ts", "serve", "--port", "0"];
    assert.deepEqual(reexecArgv("/usr/bin/bun", ["--smol"], argv, "/app/bin/sluice.ts"), [
      "/usr/bin/bun",
      "--smol",
      "/app/bin/sluice.ts",
      "serve",
      "--port",
      "0",
    ]);
    // A standalone executable carries its script: argv[1] is not passed again.
    const compiled = ["/usr/local/bin/sluice", "/$bunfs/root/sluice", "serve"];
    assert.deepEqual(reexecArgv("/usr/local/bin/sluice", [], compiled, "/$bunfs/root/sluice"), [
      "/usr/local/bin/sluice",
      "serve",
    ]);
  });

  const skip =
    process.platform !== "linux"
      ? "/proc and execve: Linux only"
      : existsSync(BUN)
        ? false
        : `no Bun at ${BUN} (npm install)`;

  test("the process started is the broker, under the settings, and stops on SIGTERM", {
    skip,
  }, async () => {
    using dir = tempDir();
    const broker = await serve(["--data", join(dir.path, "d"), "--port", "0"], bareEnv());
    const env = environOf(broker.child.pid!);
    for (const name of NAMES) assert.equal(env[name], GC_TUNING_ENV[name], name);
    assert.equal(env[GC_EXEC_MARK], "1");
    assert.match(broker.stderr(), /gc .*asked=tuned.*settings=tuned/);
    process.kill(broker.child.pid!, "SIGTERM");
    assert.equal(await broker.exited, 0);
  });

  test("--gc default runs without them, even when the environment sets them", {
    skip,
  }, async () => {
    using dir = tempDir();
    const broker = await serve(["--data", join(dir.path, "d"), "--port", "0", "--gc", "default"], {
      ...bareEnv(),
      ...GC_TUNING_ENV,
    });
    const env = environOf(broker.child.pid!);
    for (const name of NAMES) assert.equal(env[name], undefined, name);
    assert.match(broker.stderr(), /gc .*asked=default.*settings=default/);
    process.kill(broker.child.pid!, "SIGKILL");
    assert.equal(await broker.exited, null, "SIGKILL reached the broker itself");
  });

  test("an environment that sets them all is kept as it is: no second start", {
    skip,
  }, async () => {
    using dir = tempDir();
    const broker = await serve(["--data", join(dir.path, "d"), "--port", "0"], {
      ...bareEnv(),
      ...GC_TUNING_ENV,
      MIMALLOC_PURGE_DELAY: "50",
    });
    const env = environOf(broker.child.pid!);
    assert.equal(env["MIMALLOC_PURGE_DELAY"], "50");
    assert.equal(env[GC_EXEC_MARK], undefined);
    process.kill(broker.child.pid!, "SIGTERM");
    assert.equal(await broker.exited, 0);
  });
});

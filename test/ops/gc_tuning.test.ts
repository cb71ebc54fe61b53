// The GC settings sluice's Bun processes run with (ops/gc_tuning.ts): how they are merged into
// a child's environment, and, under Bun, that JavaScriptCore really reads them: a child that
// allocates in one synchronous loop is collected on the allocation budget, which its GC log
// names ("bytes allowed: N"): 64 MiB when tuned, Bun's 8 MiB by default.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  describeGc,
  GC_TUNING_ENV,
  gcEnvironment,
  gcModeHolds,
  parseGcMode,
} from "../../ops/gc_tuning.ts";

const isBun = (process.versions as Record<string, string | undefined>)["bun"] !== undefined;
const TIMER = "BUN_JSC_percentCPUPerMBForEdenTimer";
const BUDGET = "BUN_JSC_largeHeapSize";

describe("gc tuning", () => {
  test("tuned adds every setting, keeps the rest of the environment and an operator's own", () => {
    const env = gcEnvironment({ PATH: "/bin", [BUDGET]: "1234", UNSET: undefined }, "tuned");
    assert.equal(env["PATH"], "/bin");
    assert.equal(env[BUDGET], "1234");
    assert.equal(env[TIMER], GC_TUNING_ENV[TIMER]);
    assert.equal("UNSET" in env, false);
    assert.equal(gcModeHolds(env, "tuned"), true);
    assert.equal(gcModeHolds(env, "default"), false);
  });

  test("default removes every setting, whoever set it", () => {
    const env = gcEnvironment({ PATH: "/bin", [TIMER]: "0.001", [BUDGET]: "1" }, "default");
    assert.deepEqual(env, { PATH: "/bin", SLUICE_GC: "default" });
    assert.equal(gcEnvironment({ SLUICE_GC: "default" }, "tuned")["SLUICE_GC"], "tuned");
    assert.equal(gcModeHolds(env, "default"), true);
    assert.equal(gcModeHolds({ [TIMER]: "0.001" }, "tuned"), false);
    assert.equal(gcModeHolds({ [TIMER]: "0.001" }, "default"), false);
  });

  test("a mode that is not tuned or default is a RangeError naming it", () => {
    assert.equal(parseGcMode("tuned"), "tuned");
    assert.equal(parseGcMode("default"), "default");
    assert.throws(() => parseGcMode("fast"), { name: "RangeError", message: /--gc fast/ });
    assert.throws(() => parseGcMode(undefined), RangeError);
  });

  test("the start-up description names each setting and whether all, none or some are set", () => {
    assert.deepEqual(describeGc(gcEnvironment({}, "tuned")), {
      settings: "tuned",
      ...GC_TUNING_ENV,
    });
    const unset = Object.fromEntries(Object.keys(GC_TUNING_ENV).map((name) => [name, "default"]));
    assert.deepEqual(describeGc({}), { settings: "default", ...unset });
    assert.deepEqual(describeGc({ [BUDGET]: "1" }), {
      settings: "partial",
      ...unset,
      [BUDGET]: "1",
    });
  });

  test("the Docker image's broker runs with the same settings", () => {
    const dockerfile = readFileSync(join(import.meta.dirname, "..", "..", "Dockerfile"), "utf8");
    const env = /^ENV (.+)$/m.exec(dockerfile)?.[1] ?? "";
    for (const [name, value] of Object.entries(GC_TUNING_ENV)) {
      assert.ok(env.split(" ").includes(`${name}=${value}`), `${name}=${value} not in "${env}"`);
    }
  });

  test("the settings are ones Bun's JavaScriptCore reads", { skip: !isBun }, () => {
    // 160 MB of short-lived arrays in one synchronous loop: no timer can run, so each
    // collection is started by the allocation budget, which the GC log prints.
    const script =
      "let keep = 0; for (let i = 0; i < 160_000; i++) { keep += new Array(125).fill(i).length; }" +
      " console.log(keep);";
    const budgets = (mode: "tuned" | "default") => {
      const env = { ...gcEnvironment(process.env, mode), BUN_JSC_logGC: "1" };
      const run = spawnSync(process.execPath, ["-e", script], { env, encoding: "utf8" });
      assert.equal(run.status, 0, run.stderr);
      const allowed = [...`${run.stdout}${run.stderr}`.matchAll(/bytes allowed: (\d+)/g)];
      return allowed.map((match) => Number(match[1]));
    };
    const tuned = budgets("tuned");
    const plain = budgets("default");
    assert.ok(tuned.length > 0, "the tuned child logged no budget-started collection");
    assert.ok(plain.length > 0, "the default child logged no budget-started collection");
    assert.equal(Math.min(...tuned), Number(GC_TUNING_ENV[BUDGET]));
    assert.equal(Math.min(...plain), 8 * 1024 * 1024);
    // The budget is what spaces the collections: fewer of them for the same allocation.
    assert.ok(tuned.length < plain.length, `tuned ${tuned.length}, default ${plain.length}`);
  });

  test("the tuned collector marks on one thread: its GC log names no parallel marker", {
    skip: !isBun || availableParallelism() < 2 ? "needs Bun and 2 or more cores" : false,
  }, () => {
    // A live graph of 1,000,000 objects, then garbage made across event-loop turns, so the
    // collections mark concurrently; with more than one marker each such log line gives the
    // helpers' share as "P1:<kb>", with one marker there is no helper to name.
    const script =
      "const live = []; for (let i = 0; i < 2000; i++) { const a = [];" +
      " for (let j = 0; j < 500; j++) a.push({ i, j }); live.push(a); }" +
      " let keep = 0; for (let round = 0; round < 40; round++) {" +
      " for (let i = 0; i < 10_000; i++) keep += new Array(125).fill(i).length;" +
      " await new Promise((resolve) => setTimeout(resolve, 1)); }" +
      " console.log(keep + live.length);";
    // (A file, not `bun -e`: evaluated code logs no helper even with several markers.)
    const dir = mkdtempSync(join(tmpdir(), "sluice-gc-markers-"));
    const file = join(dir, "markers.mjs");
    writeFileSync(file, script);
    const helperLines = (mode: "tuned" | "default") => {
      const env = { ...gcEnvironment(process.env, mode), BUN_JSC_logGC: "1" };
      const run = spawnSync(process.execPath, [file], { env, encoding: "utf8" });
      assert.equal(run.status, 0, run.stderr);
      const log = `${run.stdout}${run.stderr}`;
      assert.match(log, /Collection/, "the child logged no collection");
      return [...log.matchAll(/ P1:\d+/g)].length;
    };
    try {
      assert.equal(helperLines("tuned"), 0);
      assert.ok(helperLines("default") > 0, "the default child's log names no helper marker");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

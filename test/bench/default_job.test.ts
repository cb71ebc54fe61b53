// The README's first command on a copy of the repository, and Ctrl-C during a benchmark.
//
// The copy holds the repository's files (tracked and new, not ignored ones) with the shared
// node_modules linked in: `npm install` itself needs the registry, so the test runs the rest
// of the command, `npm run bench`, there, with the peers left out (SLUICE_BENCH_PEERS=skip)
// and a shorter max-rate workload (SLUICE_BENCH_WORKLOAD), and checks that it ends with
// `report: PATH` naming a report that exists. TMPDIR points into the test's folder, so a
// benchmark's temp folders left behind would show.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { PROJECT_ROOT, tempDir, waitFor } from "../helpers.ts";
import { run, start } from "../processes.ts";

const SHORT_MAX_RATE = `
name: short-max-rate
topics: 1
partitionsPerTopic: 2
messageSize: 256
producersPerTopic: 1
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producerRate: 0
keyDistributor: NO_KEY
warmupDurationSeconds: 10
testDurationSeconds: 2
`;

const LONG_FIXED_RATE = `
name: long
topics: 1
partitionsPerTopic: 2
messageSize: 256
producersPerTopic: 1
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producerRate: 500
keyDistributor: NO_KEY
warmupDurationSeconds: 1
testDurationSeconds: 600
`;

/** The first fenced code block of README.md, its command lines without comments. */
function readmeCommands(): string[] {
  const readme = fs.readFileSync(join(PROJECT_ROOT, "README.md"), "utf8");
  const block = /```[a-z]*\n([\s\S]*?)```/.exec(readme);
  assert.ok(block !== null, "README.md has a fenced code block");
  return block[1]!
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith("#"));
}

/** Copies the repository's files (not the ignored ones) into `to`, linking node_modules. */
function copyRepository(to: string): void {
  const listed = spawnSync(
    "git",
    ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    {
      cwd: PROJECT_ROOT,
      encoding: "utf8",
    },
  );
  assert.equal(listed.status, 0, listed.stderr);
  for (const file of listed.stdout.split("\0")) {
    if (file === "" || !fs.existsSync(join(PROJECT_ROOT, file))) continue;
    fs.mkdirSync(dirname(join(to, file)), { recursive: true });
    fs.copyFileSync(join(PROJECT_ROOT, file), join(to, file));
  }
  fs.symlinkSync(fs.realpathSync(join(PROJECT_ROOT, "node_modules")), join(to, "node_modules"));
}

function leftovers(tmp: string): string[] {
  return fs.readdirSync(tmp).filter((name) => name.startsWith("sluice-bench-"));
}

describe("the default benchmark", () => {
  test("README starts with npm install && npm run bench, then npm test", () => {
    const commands = readmeCommands();
    assert.equal(commands[0], "npm install && npm run bench");
    assert.equal(commands[1], "npm test");
  });

  test("npm run bench on a copy of the repository ends with report: PATH", async () => {
    using dir = tempDir("sluice-default-bench-");
    const repo = join(dir.path, "repo");
    const tmp = join(dir.path, "tmp");
    fs.mkdirSync(tmp);
    copyRepository(repo);
    const workload = join(dir.path, "short.yaml");
    fs.writeFileSync(workload, SHORT_MAX_RATE);
    const env = {
      ...process.env,
      TMPDIR: tmp,
      SLUICE_BENCH_PEERS: "skip",
      SLUICE_BENCH_WORKLOAD: workload,
    };
    const finished = await run("npm", ["run", "--silent", "bench"], { cwd: repo, env });
    const output = `${finished.stdout}\n${finished.stderr}`;
    assert.equal(finished.status, 0, output);
    const lines = finished.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^default comparison: /, output);
    const last = /^report: (.+)$/.exec(lines.at(-1)!);
    assert.ok(last !== null, `last line is report: PATH\n${output}`);
    assert.ok(last[1]!.startsWith(join(repo, "bench", "results")), last[0]);
    const report = fs.readFileSync(last[1]!, "utf8");
    assert.match(report, /<svg/);
    assert.match(report, /sluice-embedded/);
    assert.ok(fs.existsSync(join(dirname(last[1]!), "sluice.json")));
    assert.deepEqual(leftovers(tmp), []);
  });

  test("SIGINT writes a partial result marked interrupted and removes temp folders", async () => {
    using dir = tempDir("sluice-bench-interrupt-");
    const tmp = join(dir.path, "tmp");
    const out = join(dir.path, "out");
    fs.mkdirSync(tmp);
    const workload = join(dir.path, "long.yaml");
    fs.writeFileSync(workload, LONG_FIXED_RATE);
    const args = ["bin/sluice.ts", "bench", "--workload", workload, "--drivers", "sluice"];
    await using bench = await start(
      join(PROJECT_ROOT, "node_modules", ".bin", "bun"),
      [...args, "--out", out],
      /machine limits/,
      { cwd: PROJECT_ROOT, env: { ...process.env, TMPDIR: tmp }, readyTimeoutMs: 60_000 },
    );
    // Interrupt once the run is measuring, so there is something to keep.
    await waitFor(() => / measure /.test(bench.output()), "a measured second", 60_000);
    assert.equal(leftovers(tmp).length, 1, "the run's work folder exists while it runs");
    const code = await bench.stop("SIGINT");
    assert.equal(code, 130, bench.output());
    const result = JSON.parse(fs.readFileSync(join(out, "sluice.json"), "utf8"));
    assert.match(result.failure, /interrupted: SIGINT/);
    assert.ok(result.publishRate.length >= 1, "the partial result keeps its samples");
    assert.match(fs.readFileSync(join(out, "report.html"), "utf8"), /\(interrupted\)/);
    assert.match(bench.output(), /interrupted by SIGINT/);
    assert.match(bench.output(), /^report: .*report\.html$/m);
    assert.deepEqual(leftovers(tmp), []);
  });
});

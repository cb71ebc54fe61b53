// The management page and the benchmark report in a real browser: headless Chromium (the
// Debian package `chromium`; `bash scripts/install_chromium.sh` installs it) loads each with
// --dump-dom, which prints the DOM after the page's scripts ran, and logs the page's console
// to stderr, where any message fails the test. The page must show a topic this test created
// with a rate above zero; the report must have drawn its charts. Screenshots are saved to
// $SLUICE_SCREENSHOT_DIR (default: the test's temp folder, removed after it).
//
// Skipped, with a message, where no Chromium can be found (CHROMIUM names one explicitly).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runBench } from "../../bench/cli.ts";
import { Admin, Producer } from "../../protocol/client/mod.ts";
import { PROJECT_ROOT, runtimeArgv, tempDir, waitFor } from "../helpers.ts";
import { run, start } from "../processes.ts";

function findChromium(): string | undefined {
  const named = process.env["CHROMIUM"];
  if (named !== undefined && named !== "") return named;
  for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
    const found = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
    if (found.status === 0 && found.stdout.trim() !== "") return found.stdout.trim();
  }
  return undefined;
}

const CHROMIUM = findChromium();
const SKIP = CHROMIUM === undefined ? "no Chromium: run `bash scripts/install_chromium.sh`" : false;
if (CHROMIUM === undefined) console.error(`browser tests skipped: ${SKIP}`);

/** Chromium's flags: headless, no sandbox (tests may run as root), a fixed window. */
function chromiumArgs(profile: string): string[] {
  return [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    `--user-data-dir=${profile}`,
    "--window-size=1280,900",
    "--enable-logging=stderr",
    "--v=0",
    // Virtual time runs the page's timers (its first refreshes) without waiting for them.
    "--virtual-time-budget=5000",
  ];
}

async function loadPage(url: string, profile: string, screenshot: string) {
  const dom = await run(CHROMIUM!, [...chromiumArgs(profile), "--dump-dom", url]);
  assert.equal(dom.status, 0, dom.stderr);
  const shot = await run(CHROMIUM!, [...chromiumArgs(profile), `--screenshot=${screenshot}`, url]);
  assert.equal(shot.status, 0, shot.stderr);
  assert.ok(fs.statSync(screenshot).size > 0, "a screenshot was saved");
  const consoleLines = dom.stderr.split("\n").filter((line) => line.includes(":CONSOLE"));
  return { html: dom.stdout, consoleLines };
}

function screenshotDir(fallback: string): string {
  const dir = process.env["SLUICE_SCREENSHOT_DIR"] ?? fallback;
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

describe("in headless Chromium", { skip: SKIP }, () => {
  test("the management page shows a topic the test created, with its rate", async () => {
    using dir = tempDir();
    const [command, argv] = runtimeArgv(join(PROJECT_ROOT, "bin", "sluice.ts"), [
      "serve",
      "--data",
      join(dir.path, "data"),
      "--port",
      "0",
      "--http-port",
      "0",
    ]);
    await using server = await start(command, argv, /sluice listening on [\d.]+:(\d+)/);
    const port = Number(server.ready[1]);
    const http = Number(/http listening on [\d.]+:(\d+)/.exec(server.output())![1]);
    const admin = new Admin({ host: "127.0.0.1", port });
    await admin.createTopics([{ name: "page-topic", partitions: 3 }]);
    // A group known only by its committed offset, and an exchange: both have rows.
    await admin.commitOffsets("page-group", [{ topic: "page-topic", partition: 0, offset: 0 }]);
    await admin.declareExchange("page-exchange", { type: "direct" });
    await admin.close();
    const producer = new Producer({ host: "127.0.0.1", port, acks: 1 });
    const base = `http://127.0.0.1:${http}`;
    const rate = async () => {
      const overview = (await (await fetch(`${base}/api/overview`)).json()) as {
        topics: { name: string; recordsPerSecond: number }[];
      };
      return overview.topics.find((t) => t.name === "page-topic")?.recordsPerSecond ?? 0;
    };
    // Records keep arriving until the broker's once-a-second sampler has seen them twice.
    await waitFor(
      async () => {
        for (let i = 0; i < 50; i++) producer.send({ topic: "page-topic", value: `r${i}` });
        await producer.flush();
        return (await rate()) > 0;
      },
      "a rate above zero",
      30_000,
    );
    await producer.close();
    const shots = screenshotDir(dir.path);
    const page = await loadPage(`${base}/`, join(dir.path, "profile"), join(shots, "page.png"));
    assert.deepEqual(page.consoleLines, []);
    const row = /<tr data-name="page-topic">(.*?)<\/tr>/.exec(page.html);
    assert.ok(row !== null, `the topic's row is on the page:\n${page.html}`);
    const cells = [...row[1]!.matchAll(/<td[^>]*>([^<]*)<\/td>/g)].map((m) => m[1]);
    assert.equal(cells[0], "page-topic");
    assert.equal(cells[1], "3");
    assert.ok(Number(cells[3]!.replace(/,/g, "")) > 0, `records/s above zero: ${cells[3]}`);
    assert.match(page.html, /ready · up \d+ s/);
    const rowCells = (name: string) => {
      const found = new RegExp(`<tr data-name="${name}">(.*?)</tr>`).exec(page.html);
      assert.ok(found !== null, `the row of ${name} is on the page`);
      return [...found[1]!.matchAll(/<td[^>]*>([^<]*)<\/td>/g)].map((m) => m[1]);
    };
    assert.deepEqual(rowCells("page-group").slice(0, 3), ["page-group", "empty", "0"]);
    assert.deepEqual(rowCells("page-exchange").slice(0, 3), ["page-exchange", "direct", "0"]);
  });

  test("the benchmark report draws its charts without console errors", async () => {
    using dir = tempDir();
    const workload = join(dir.path, "tiny.yaml");
    fs.writeFileSync(
      workload,
      [
        "name: tiny",
        "topics: 1",
        "partitionsPerTopic: 2",
        "messageSize: 100",
        "producersPerTopic: 1",
        "subscriptionsPerTopic: 1",
        "consumerPerSubscription: 1",
        "producerRate: 500",
        "warmupDurationSeconds: 1",
        "testDurationSeconds: 2",
      ].join("\n"),
    );
    const out = join(dir.path, "out");
    const outcome = await runBench({
      workload,
      drivers: "sluice-embedded",
      out,
      workers: 0,
      limits: false,
      log: () => {},
      progress: () => {},
    });
    assert.equal(outcome.exitCode, 0);
    const shots = screenshotDir(dir.path);
    const url = `file://${join(out, "report.html")}`;
    const report = await loadPage(url, join(dir.path, "profile"), join(shots, "report.png"));
    assert.deepEqual(report.consoleLines, []);
    const charts = report.html.match(/<svg/g) ?? [];
    assert.ok(charts.length >= 4, `four charts at least, found ${charts.length}`);
    assert.match(report.html, /<path[^>]+d="M[\d.]+/, "a drawn line");
  });
});

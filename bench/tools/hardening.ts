// Measurements of the hardening targets (issue 12), one per subcommand, each printing a
// readable summary and, as its last line, one JSON object:
//
//   bun bench/tools/hardening.ts admin-p99 [--partitions 10000] [--baseline-ms 2000]
//     A broker in its own process (`sluice serve`); one client produces 100-byte records with
//     acks 1, one at a time, while another creates a topic of N partitions and deletes it.
//     Reports that client's latency (p50, p99, max) before, during the create and during the
//     delete, and how long each took. Target: p99 <= 50 ms during both.
//   bun bench/tools/hardening.ts restart [--partitions 10000] [--rounds 3]
//     A data directory with one topic of N empty partitions: the time Engine.open takes (and
//     close), and the time `sluice serve` takes from spawn to its listening line (runtime start
//     included). Target: <= 2,000 ms.
//   bun bench/tools/hardening.ts idle [--partitions 10000] [--open-files-max 1000]
//     Descriptors and memory per idle partition after a restart (from /proc/self/fd, RSS and
//     the heap, after a collection), then descriptors after one append to every partition
//     (bounded by openFilesMax). Target: no descriptor per idle partition beyond the budget.
//
// Under Deno: `deno run -A --v8-flags=--expose-gc bench/tools/hardening.ts ...`. The frame
// fuzzer's rate is `npm run fuzz -- --frames N --no-save` (it prints frames/s).

import { spawn } from "node:child_process";
import fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Engine, encodeRecordBatch } from "../../engine/mod.ts";
import { Admin, Producer } from "../../protocol/client/mod.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const isDeno = (process.versions as Record<string, string | undefined>)["deno"] !== undefined;
/** Probe records sent at most per phase, so a phase that never ends is still bounded. */
const PROBES_MAX = 10_000_000;

type Summary = { count: number; p50Ms: number; p99Ms: number; maxMs: number };

function summarize(latenciesMs: number[]): Summary {
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  const round = (ms: number) => Math.round(ms * 100) / 100;
  return {
    count: sorted.length,
    p50Ms: round(at(0.5)),
    p99Ms: round(at(0.99)),
    maxMs: round(sorted.at(-1) ?? 0),
  };
}

function collect(): void {
  const bun = (globalThis as { Bun?: { gc: (force: boolean) => void } }).Bun;
  if (bun !== undefined) bun.gc(true);
  else (globalThis as { gc?: () => void }).gc?.();
}

function serveArgv(dataDir: string): [string, string[]] {
  const args = ["bin/sluice.ts", "serve", "--data", dataDir, "--host", "127.0.0.1", "--port", "0"];
  return isDeno ? [process.execPath, ["run", "-A", ...args]] : [process.execPath, args];
}

type Served = { port: number; readyMs: number; stop: () => Promise<void> };

/** Starts `sluice serve` on `dataDir`; resolves once it prints its listening line. */
function serve(dataDir: string): Promise<Served> {
  const startedMs = performance.now();
  const [command, args] = serveArgv(dataDir);
  const child = spawn(command, args, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    child.kill("SIGTERM");
    await exited;
  };
  return new Promise((resolve, reject) => {
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const match = /sluice listening on [^\s:]+:(\d+)/.exec(output);
      if (match === null) return;
      child.stdout.removeAllListeners("data");
      child.stdout.resume();
      resolve({ port: Number(match[1]), readyMs: performance.now() - startedMs, stop });
    });
    child.once("exit", (code) => reject(new Error(`sluice serve exited with ${code}: ${output}`)));
  });
}

/** Sends probe records one at a time until `until` settles; returns their latencies. */
async function probeWhile(producer: Producer, until: Promise<unknown>): Promise<number[]> {
  let done = false;
  until.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  const value = new Uint8Array(100);
  const latenciesMs: number[] = [];
  for (let i = 0; i < PROBES_MAX && !done; i++) {
    const startedMs = performance.now();
    await producer.send({ topic: "probe", partition: 0, value });
    latenciesMs.push(performance.now() - startedMs);
  }
  return latenciesMs;
}

/** A promise that settles after `ms`: the baseline phase's length, not a wait for a state. */
function after(ms: number): Promise<void> {
  // tidy: allow-timeout a measurement phase of fixed length, not a wait for a condition
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function adminP99(partitions: number, baselineMs: number): Promise<object> {
  const dir = fs.mkdtempSync(join(tmpdir(), "sluice-hardening-"));
  const served = await serve(dir);
  const admin = new Admin({ host: "127.0.0.1", port: served.port });
  const producer = new Producer({ host: "127.0.0.1", port: served.port, acks: 1, lingerMs: 0 });
  try {
    await admin.createTopics([{ name: "probe", partitions: 1 }]);
    const baseline = summarize(await probeWhile(producer, after(baselineMs)));
    let startedMs = performance.now();
    const create = admin.createTopics([{ name: "wide", partitions }]);
    const duringCreate = summarize(await probeWhile(producer, create));
    await create;
    const createMs = Math.round(performance.now() - startedMs);
    startedMs = performance.now();
    const remove = admin.deleteTopics(["wide"]);
    const duringDelete = summarize(await probeWhile(producer, remove));
    await remove;
    const deleteMs = Math.round(performance.now() - startedMs);
    console.log(
      `admin-p99: ${partitions} partitions, created in ${createMs} ms, deleted in ${deleteMs} ms`,
    );
    console.log(`  other client's produce latency, baseline: ${JSON.stringify(baseline)}`);
    console.log(`  during the create: ${JSON.stringify(duringCreate)}`);
    console.log(`  during the delete: ${JSON.stringify(duringDelete)}`);
    return { partitions, createMs, deleteMs, baseline, duringCreate, duringDelete };
  } finally {
    await producer.close().catch(() => {});
    await admin.close().catch(() => {});
    await served.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function restart(partitions: number, rounds: number): Promise<object> {
  const dir = fs.mkdtempSync(join(tmpdir(), "sluice-hardening-"));
  const quiet = { onWarning: () => {} };
  try {
    const engine = await Engine.open(dir, quiet);
    await engine.createTopic("wide", { partitions });
    await engine.close();
    const openMs: number[] = [];
    const closeMs: number[] = [];
    const serveReadyMs: number[] = [];
    for (let round = 0; round < rounds; round++) {
      let startedMs = performance.now();
      const reopened = await Engine.open(dir, quiet);
      openMs.push(Math.round(performance.now() - startedMs));
      startedMs = performance.now();
      await reopened.close();
      closeMs.push(Math.round(performance.now() - startedMs));
      const served = await serve(dir);
      serveReadyMs.push(Math.round(served.readyMs));
      await served.stop();
    }
    console.log(`restart: ${partitions} empty partitions, ${rounds} rounds`);
    console.log(`  Engine.open ms: ${openMs.join(", ")}; close ms: ${closeMs.join(", ")}`);
    console.log(`  sluice serve, spawn to listening, ms: ${serveReadyMs.join(", ")}`);
    return { partitions, engineOpenMs: openMs, engineCloseMs: closeMs, serveReadyMs };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function descriptors(): number {
  return fs.readdirSync("/proc/self/fd").length;
}

async function idle(partitions: number, openFilesMax: number): Promise<object> {
  const dir = fs.mkdtempSync(join(tmpdir(), "sluice-hardening-"));
  const quiet = { onWarning: () => {} };
  try {
    const created = await Engine.open(dir, quiet);
    await created.createTopic("wide", { partitions });
    await created.close();
    collect();
    const before = { fds: descriptors(), ...process.memoryUsage() };
    const engine = await Engine.open(dir, { ...quiet, openFilesMax });
    collect();
    const opened = { fds: descriptors(), ...process.memoryUsage() };
    const batch = encodeRecordBatch([{ value: new Uint8Array(100) }]);
    for (let p = 0; p < partitions; p++) await engine.append("wide", p, batch);
    const afterTraffic = descriptors();
    await engine.close();
    const per = (bytes: number) => Math.round(bytes / partitions);
    const result = {
      partitions,
      openFilesMax,
      fdsPerIdlePartition: (opened.fds - before.fds) / partitions,
      fdsAfterOneAppendEach: afterTraffic - before.fds,
      rssBytesPerIdlePartition: per(opened.rss - before.rss),
      heapBytesPerIdlePartition: per(opened.heapUsed - before.heapUsed),
    };
    console.log(`idle: ${JSON.stringify(result)}`);
    return result;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function positive(name: string, value: string | undefined, fallback: number): number {
  const number = value === undefined ? fallback : Number(value);
  if (!Number.isSafeInteger(number) || number < 1) {
    console.error(`hardening: --${name} ${value} is not a positive integer`);
    process.exit(2);
  }
  return number;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: {
      partitions: { type: "string" },
      "baseline-ms": { type: "string" },
      rounds: { type: "string" },
      "open-files-max": { type: "string" },
    },
  });
  const partitions = positive("partitions", values.partitions, 10_000);
  const command = positionals[0];
  let result: object;
  if (command === "admin-p99") {
    result = await adminP99(partitions, positive("baseline-ms", values["baseline-ms"], 2000));
  } else if (command === "restart") {
    result = await restart(partitions, positive("rounds", values.rounds, 3));
  } else if (command === "idle") {
    result = await idle(partitions, positive("open-files-max", values["open-files-max"], 1000));
  } else {
    console.error("usage: hardening.ts admin-p99|restart|idle [--partitions N] (see the file)");
    process.exit(2);
  }
  console.log(JSON.stringify({ command, ...result }));
}

await main();

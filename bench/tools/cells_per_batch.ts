// Heap cells (JavaScript objects of every kind: objects, arrays, closures and their scopes,
// promises, async frames, strings, typed-array views) allocated per one-record batch on the
// latency path, in the client (this process) and in the broker (a `sluice serve` child with
// _alloc_probe.ts preloaded), counted and not sampled: both run with a collection budget
// larger than the window allocates and every GC timer off, so nothing is collected between
// the two counts and their difference is what the window allocated. The batching is fixed (each
// round: one 1 KiB record to each of --partitions partitions, one Produce request, then the
// consumer reads them back, or with --produce-only the acknowledgements are awaited), so the
// figures do not move with the machine's load and an A/B needs no alternation to be read.
// Bun only (bun:jsc).
//
//   bun bench/tools/cells_per_batch.ts [--rounds 3000] [--partitions 10] [--produce-only]
//                                      [--spread] [--acks 1|all] [--root DIR] [--json]
//
// `--spread`: each round sends one record, to the next partition in turn, and the consumer
// (assigned every partition) reads it back: the shape of keyless records over many partitions
// (the sticky partitioner moves on with each batch), where every batch is a partition of its
// own and every fetch names all of them (issue 16's 1,000 partitions). `--acks all` produces
// with acks=all to a topic with the server's default fsync policy (else acks=1, fsync never).
// The broker's CPU time over the window (/proc, Linux) is reported per batch too: unlike the
// cells it moves with the machine's load, so compare it between alternated runs only.
//
// `--root DIR` runs another checkout's broker and client. The collections, if any happened in
// the window anyway, are counted and reported (`collections`): figures with collections are
// low, not high.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { NO_GC_ENV } from "../../ops/gc_tuning.ts";

const OWN_ROOT = resolve(import.meta.dirname, "..", "..");
const PROBE = join(OWN_ROOT, "bench/tools/_alloc_probe.ts");
const TOPIC = "cells";
const RECORD_BYTES = 1024;

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3000" },
    partitions: { type: "string", default: "10" },
    "produce-only": { type: "boolean", default: false },
    spread: { type: "boolean", default: false },
    acks: { type: "string", default: "1" },
    root: { type: "string" },
    json: { type: "boolean", default: false },
    child: { type: "boolean", default: false },
  },
});

type Counts = Record<string, number>;

function positiveInteger(name: "rounds" | "partitions"): number {
  const value = Number(values[name]);
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`--${name} ${values[name]}`);
  return value;
}

if (values.acks !== "1" && values.acks !== "all") throw new RangeError(`--acks ${values.acks}`);
const acksAll = values.acks === "all";
const root = resolve(values.root ?? OWN_ROOT);
const rounds = positiveInteger("rounds");
const partitions = positiveInteger("partitions");

/** The broker with the probe; resolves to its port once it listens. */
function startBroker(dataDir: string, log: { text: string }): Promise<[ChildProcess, number]> {
  const args = ["--preload", PROBE, join(root, "bin/sluice.ts"), "serve", "--data", dataDir];
  args.push("--port", "0");
  const env = { ...process.env, ...NO_GC_ENV, SLUICE_ALLOC_TYPES: "1" };
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env });
  child.stderr!.on("data", (chunk: Buffer) => {
    log.text += chunk.toString();
  });
  return new Promise((done, fail) => {
    let out = "";
    child.once("exit", (code) => fail(new Error(`broker exited (${code})`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const match = /sluice listening on [\d.]+:(\d+)/.exec(out);
      if (match === null) return;
      child.removeAllListeners("exit");
      done([child, Number(match[1])]);
    });
  });
}

/** The broker's per-type counts at its n-th probe (asked for now, read from its stderr). */
async function brokerCounts(child: ChildProcess, log: { text: string }, n: number) {
  child.kill("SIGUSR2");
  const lines = () => log.text.split("\n").filter((line) => line.startsWith("[alloc-probe] "));
  while (lines().length < n) await new Promise((resolve) => setImmediate(resolve));
  const types = log.text.split("\n").filter((line) => line.startsWith("[alloc-types] "));
  return JSON.parse(types[n - 1]!.slice("[alloc-types] ".length)) as Counts;
}

/** CPU milliseconds (user + system) a process has used so far; NaN where /proc is missing. */
function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 a second here).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return Number.NaN;
  }
}

/** The difference per batch: total cells and the ten largest types. */
function perBatch(before: Counts, after: Counts, batches: number) {
  const types: Counts = {};
  let cells = 0;
  for (const name of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const grown = (after[name] ?? 0) - (before[name] ?? 0);
    if (grown <= 0) continue;
    types[name] = Math.round((grown / batches) * 100) / 100;
    cells += grown;
  }
  const top = Object.entries(types)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 10);
  return { cells: Math.round((cells / batches) * 100) / 100, top: Object.fromEntries(top) };
}

async function measure(): Promise<void> {
  const { heapStats } = (await import("bun:jsc")) as {
    heapStats(): { objectTypeCounts: Counts };
  };
  const { Admin, Consumer, Producer } = (await import(
    join(root, "protocol/client/mod.ts")
  )) as typeof import("../../protocol/client/mod.ts");
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-cells-"));
  const log = { text: "" };
  const [broker, port] = await startBroker(dataDir, log);
  try {
    const admin = new Admin({ port });
    const config = acksAll ? {} : { fsync: "never" as const };
    await admin.createTopics([{ name: TOPIC, partitions, config }]);
    await admin.close();
    const producer = new Producer({ port, acks: acksAll ? "all" : 1, lingerMs: 0 });
    const consumer = new Consumer({ port, maxWaitMs: 100, minBytes: 1 });
    consumer.assign(
      Array.from({ length: partitions }, (_, partition) => ({
        topic: TOPIC,
        partition,
        offset: 0,
      })),
    );
    const value = new Uint8Array(RECORD_BYTES);
    let received = 0;
    let next = 0;
    const runSpread = async (count: number) => {
      for (let round = 0; round < count; round++) {
        const partition = next++ % partitions;
        const acked = new Promise<void>((done) => {
          producer.send({ topic: TOPIC, value, partition }, () => done());
        });
        if (values["produce-only"]) {
          await acked;
          continue;
        }
        const wanted = received + 1;
        while (received < wanted) received += (await consumer.poll({ maxWaitMs: 500 })).length;
        await acked;
      }
    };
    const runRounds = async (count: number) => {
      for (let round = 0; round < count; round++) {
        let acked = 0;
        const allAcked = new Promise<void>((done) => {
          for (let partition = 0; partition < partitions; partition++) {
            producer.send({ topic: TOPIC, value, partition }, () => {
              if (++acked === partitions) done();
            });
          }
        });
        if (values["produce-only"]) {
          await allAcked;
          continue;
        }
        const wanted = received + partitions;
        while (received < wanted) received += (await consumer.poll({ maxWaitMs: 500 })).length;
      }
    };
    const run = values.spread ? runSpread : runRounds;
    await run(Math.min(rounds, 2000));
    const brokerBefore = await brokerCounts(broker, log, 1);
    const clientBefore = heapStats().objectTypeCounts;
    const gcBefore = (log.text.match(/: START /g) ?? []).length;
    const cpuBeforeMs = cpuMs(broker.pid!);
    await run(rounds);
    const cpuAfterMs = cpuMs(broker.pid!);
    const clientAfter = heapStats().objectTypeCounts;
    const brokerAfter = await brokerCounts(broker, log, 2);
    const batches = values.spread ? rounds : rounds * partitions;
    const result = {
      tool: "cells_per_batch",
      root,
      rounds,
      partitions,
      produceOnly: values["produce-only"],
      spread: values.spread,
      acks: values.acks,
      broker: perBatch(brokerBefore, brokerAfter, batches),
      brokerCpuUsPerBatch: Math.round(((cpuAfterMs - cpuBeforeMs) * 1000) / batches),
      client: perBatch(clientBefore, clientAfter, batches),
      brokerCollections: (log.text.match(/: START /g) ?? []).length - gcBefore,
    };
    await producer.close();
    await consumer.close();
    if (!values.json) {
      console.log(
        `broker ${result.broker.cells} cells/batch, ${result.brokerCpuUsPerBatch} µs CPU/batch: ` +
          JSON.stringify(result.broker.top),
      );
      console.log(
        `client ${result.client.cells} cells/batch: ${JSON.stringify(result.client.top)}`,
      );
    }
    console.log(JSON.stringify(result));
  } finally {
    broker.kill("SIGTERM");
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** This process needs the no-collection settings from its start: it runs itself again. */
function relaunch(): Promise<number> {
  const args = [...process.argv.slice(1), "--child"];
  const env = { ...process.env, ...NO_GC_ENV };
  const child = spawn(process.execPath, args, { stdio: ["ignore", "inherit", "pipe"], env });
  let collections = 0;
  child.stderr!.on("data", (chunk: Buffer) => {
    collections += (chunk.toString().match(/: START /g) ?? []).length;
  });
  return new Promise((done) => {
    child.once("exit", (code) => {
      // The start-up collections of a Bun process (two small Full ones) are before the window.
      if (collections > 2) console.error(`client: ${collections} collections (some in window?)`);
      done(code ?? 1);
    });
  });
}

if (values.child) {
  await measure();
  process.exit(0);
} else {
  process.exitCode = await relaunch();
}

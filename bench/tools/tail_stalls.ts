// Where the end-to-end latency tail goes: bench:tcp's latency phase (1 KiB records, 16
// partitions, acks=1, lingerMs 0, a fixed rate) with the slowest messages lined up against
// the event-loop stalls of the broker and of the client, and against the machine's dirty page
// cache. Each stall is split by where the stalled thread's time went (_stall_monitor.ts): on a
// core (GC, work), waiting for a core, or blocked (synchronous I/O, writeback throttling).
// `--publish-seconds N` first publishes N seconds of 1 KiB records as bench:tcp's publish
// phase does, so the latency phase runs during that data's writeback. Bun only (the broker
// gets the monitor through `bun --preload`); Linux only (/proc). Prints one JSON line.
//
//   bun bench/tools/tail_stalls.ts [--seconds 5] [--rate 10000] [--publish-seconds 0]
//       [--warmup-seconds 1] [--slow-ms 5] [--episodes 8]
//
// For GC pauses, run it with BUN_JSC_logGC=1 (both processes print their collections).

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Admin, Consumer, Producer } from "../../protocol/client/mod.ts";
import { dirtyMB, readProc } from "../tcp/isolation.ts";
import { type Stall, watchStalls } from "./_stall_monitor.ts";

const PARTITIONS = 16;
const RECORD_BYTES = 1024;
const ROOT = join(import.meta.dirname, "..", "..");
/** USER_HZ: the unit of utime and stime in /proc/PID/stat (100 on Linux's usual builds). */
const CLOCK_TICKS_PER_SEC = 100;
/** Slow messages closer than this (ms) belong to one episode. */
const EPISODE_GAP_MS = 20;

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    rate: { type: "string", default: "10000" },
    "publish-seconds": { type: "string", default: "0" },
    "warmup-seconds": { type: "string", default: "1" },
    "slow-ms": { type: "string", default: "5" },
    episodes: { type: "string", default: "8" },
  },
});

function numberFlag(name: keyof typeof values): number {
  const value = Number(values[name]);
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`--${name} ${values[name]}`);
  return value;
}

/** A broker GC cycle's end, as its log line arrived: epoch ms and the cycle's longest pause. */
type GcEvent = { atMs: number; pauseMsMax: number; full: boolean };

/**
 * With BUN_JSC_logGC=1 the broker logs each GC cycle on stderr: a `START` line naming the
 * collection (Eden or Full), a line per increment, and one ending in `END]`; each carries the
 * increment's pause as `p=Xms` (the `(max Yms)` beside it is a running maximum over every
 * cycle so far, not this cycle's). A cycle's longest pause is the largest of its `p=` figures.
 * Stamped on arrival (a pipe's delay late), which is close enough to line them up with stalls
 * of several ms. Other stderr lines pass through.
 */
function collectGcEvents(text: string, into: GcEvent[], state: GcLogState): void {
  const lines = (state.partial + text).split("\n");
  // The last piece has no newline yet: it is finished by the next chunk.
  state.partial = lines.pop() ?? "";
  for (const line of lines) {
    if (line.includes(": START ")) {
      state.full = line.includes("FullCollection");
      state.pauseMsMax = 0;
    }
    for (const pause of line.matchAll(/\bp=([\d.]+)ms/g)) {
      state.pauseMsMax = Math.max(state.pauseMsMax, Number(pause[1]));
    }
    if (/ END\]$/.test(line)) {
      const atMs = performance.timeOrigin + performance.now();
      into.push({ atMs, pauseMsMax: state.pauseMsMax, full: state.full });
    } else if (line !== "" && !line.startsWith("[GC") && !line.includes("GC END")) {
      if (!line.startsWith("Requesting GC")) process.stderr.write(`${line}\n`);
    }
  }
}

type GcLogState = { full: boolean; pauseMsMax: number; partial: string };

async function startBroker(dataDir: string, stallFile: string) {
  const args = ["--preload", join(ROOT, "bench/tools/_stall_monitor.ts")];
  args.push(join(ROOT, "bin/sluice.ts"), "serve", "--data", dataDir, "--port", "0");
  const env = { ...process.env, SLUICE_STALL_FILE: stallFile, SLUICE_STALL_PRELOAD: "1" };
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env });
  const gcs: GcEvent[] = [];
  const gcState: GcLogState = { full: false, pauseMsMax: 0, partial: "" };
  child.stderr!.on("data", (chunk: Buffer) => collectGcEvents(chunk.toString(), gcs, gcState));
  const port = await new Promise<number>((resolve, reject) => {
    let output = "";
    child.once("exit", (code) => reject(new Error(`broker exited (${code})`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const match = /sluice listening on [\d.]+:(\d+)/.exec(output);
      if (match !== null) resolve(Number(match[1]));
    });
  });
  child.removeAllListeners("exit");
  /** CPU time (ms) the broker process has used, all threads, from /proc/PID/stat. */
  const cpuMs = () => {
    const stat = readProc(`/proc/${child.pid}/stat`);
    if (stat === undefined) return undefined;
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SEC;
  };
  const stop = () =>
    new Promise<void>((done) => {
      child.once("exit", () => done());
      child.kill("SIGTERM");
    });
  return { port, stop, cpuMs, gcs };
}

async function publishFor(port: number, seconds: number): Promise<number> {
  const admin = new Admin({ port });
  await admin.createTopics([
    { name: "publish", partitions: PARTITIONS, config: { fsync: "never" } },
  ]);
  await admin.close();
  const producer = new Producer({ port, acks: 1, lingerMs: 2, batchBytes: 1 << 20 });
  const value = new Uint8Array(RECORD_BYTES).fill(42);
  let outstanding = 0;
  let wake: (() => void) | undefined;
  const done = () => {
    outstanding--;
    if (wake === undefined || outstanding >= 32_768) return;
    const resume = wake;
    wake = undefined;
    resume();
  };
  const deadline = performance.now() + seconds * 1000;
  let sent = 0;
  while (performance.now() < deadline) {
    for (let i = 0; i < 1024; i++, sent++) {
      outstanding++;
      producer.send({ topic: "publish", value, partition: sent % PARTITIONS }, done);
    }
    if (outstanding >= 65_536) await new Promise<void>((resolve) => (wake = resolve));
    else await new Promise((resolve) => setImmediate(resolve));
  }
  await producer.close();
  return sent;
}

/** Sends at a fixed rate; returns each measured message's send time and latency (ms). */
async function latencyRun(port: number, rate: number, warmup: number, measured: number) {
  const admin = new Admin({ port });
  await admin.createTopics([
    { name: "latency", partitions: PARTITIONS, config: { fsync: "never" } },
  ]);
  await admin.close();
  const consumer = new Consumer({ port, maxWaitMs: 100, minBytes: 1 });
  consumer.assign(
    Array.from({ length: PARTITIONS }, (_, partition) => ({
      topic: "latency",
      partition,
      offset: 0,
    })),
  );
  const producer = new Producer({ port, acks: 1, lingerMs: 0 });
  const total = warmup + measured;
  const sentAt = new Float64Array(total);
  const latencyMs = new Float64Array(total);
  const start = performance.timeOrigin + performance.now() + 100;
  let received = 0;
  const receiving = (async () => {
    while (received < total) {
      for (const record of await consumer.poll({ maxWaitMs: 500 })) {
        received++;
        const view = new DataView(record.value!.buffer, record.value!.byteOffset, 16);
        const index = view.getFloat64(8);
        latencyMs[index] = performance.timeOrigin + performance.now() - view.getFloat64(0);
      }
    }
  })();
  const value = new Uint8Array(RECORD_BYTES);
  const stamp = new DataView(value.buffer);
  for (let i = 0; i < total; ) {
    const now = performance.timeOrigin + performance.now();
    for (; i < total && start + (i * 1000) / rate <= now; i++) {
      sentAt[i] = performance.timeOrigin + performance.now();
      stamp.setFloat64(0, sentAt[i]!);
      stamp.setFloat64(8, i);
      producer.send({ topic: "latency", value, partition: i % PARTITIONS }, () => {});
    }
    // tidy: allow-timeout the sender's pacing tick, as in bench:tcp
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await receiving;
  await producer.close();
  await consumer.close();
  return { sentAt: sentAt.subarray(warmup), latencyMs: latencyMs.subarray(warmup) };
}

function readStalls(file: string): Stall[] {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Stall);
}

/** Stall time inside [fromMs, toMs], split by where it went. */
function stallTotals(stalls: Stall[], fromMs: number, toMs: number) {
  let stallMs = 0;
  let cpuMs = 0;
  let runQueueMs = 0;
  let count = 0;
  for (const stall of stalls) {
    if (stall.atMs < fromMs || stall.atMs > toMs) continue;
    count++;
    stallMs += stall.stallMs;
    cpuMs += Math.min(stall.cpuMs, stall.stallMs);
    runQueueMs += Math.min(stall.runQueueMs, stall.stallMs);
  }
  const blockedMs = Math.max(0, stallMs - cpuMs - runQueueMs);
  const rounded = (v: number) => Math.round(v);
  return {
    count,
    stallMs: rounded(stallMs),
    onCpuMs: rounded(cpuMs),
    runQueueMs: rounded(runQueueMs),
    blockedMs: rounded(blockedMs),
  };
}

/** Runs of slow messages; each with the stalls that overlap the time its messages waited. */
function episodes(
  run: { sentAt: Float64Array; latencyMs: Float64Array },
  slowMs: number,
  context: {
    broker: Stall[];
    client: Stall[];
    dirty: [number, number][];
    gcs: GcEvent[];
    origin: number;
  },
) {
  const found: { fromMs: number; toMs: number; maxMs: number; messages: number }[] = [];
  for (let i = 0; i < run.sentAt.length; i++) {
    const latency = run.latencyMs[i]!;
    if (!(latency > slowMs)) continue;
    const at = run.sentAt[i]!;
    const last = found[found.length - 1];
    if (last !== undefined && at - last.toMs < EPISODE_GAP_MS) {
      last.toMs = Math.max(last.toMs, at + latency);
      last.maxMs = Math.max(last.maxMs, latency);
      last.messages++;
    } else found.push({ fromMs: at, toMs: at + latency, maxMs: latency, messages: 1 });
  }
  const near = (stalls: Stall[], from: number, to: number) =>
    stalls
      .filter((s) => s.atMs + s.stallMs >= from && s.atMs <= to)
      .map((s) => ({
        atMs: Math.round(s.atMs - context.origin),
        stallMs: Math.round(s.stallMs * 10) / 10,
        onCpuMs: Math.round(s.cpuMs * 10) / 10,
        runQueueMs: Math.round(s.runQueueMs * 10) / 10,
      }));
  return found.map((episode) => ({
    atMs: Math.round(episode.fromMs - context.origin),
    messages: episode.messages,
    maxMs: Math.round(episode.maxMs * 10) / 10,
    broker: near(context.broker, episode.fromMs, episode.toMs),
    client: near(context.client, episode.fromMs, episode.toMs),
    brokerGcs: context.gcs
      .filter((gc) => gc.atMs >= episode.fromMs - 50 && gc.atMs <= episode.toMs + 50)
      .map((gc) => ({ atMs: Math.round(gc.atMs - context.origin), pauseMsMax: gc.pauseMsMax })),
    dirtyMB: context.dirty.find(([t]) => t >= episode.fromMs)?.[1] ?? null,
  }));
}

/** The broker's GC cycles inside the window (null without BUN_JSC_logGC=1). */
function gcSummary(gcs: GcEvent[], fromMs: number, toMs: number) {
  const inside = gcs.filter((gc) => gc.atMs >= fromMs && gc.atMs <= toMs);
  if (gcs.length === 0) return null;
  const pauses = inside.map((gc) => gc.pauseMsMax).sort((a, b) => a - b);
  return {
    cycles: inside.length,
    full: inside.filter((gc) => gc.full).length,
    pauseMsMax: pauses[pauses.length - 1] ?? 0,
    pausesOver4Ms: pauses.filter((p) => p > 4).length,
  };
}

function percentiles(latencyMs: Float64Array) {
  const sorted = Float64Array.from(latencyMs).sort();
  const at = (f: number) => sorted[Math.min(sorted.length - 1, Math.ceil(f * sorted.length) - 1)]!;
  const r = (v: number) => Math.round(v * 1000) / 1000;
  return { p50Ms: r(at(0.5)), p99Ms: r(at(0.99)), p999Ms: r(at(0.999)), maxMs: r(at(1)) };
}

async function main(): Promise<void> {
  if ((process.versions as Record<string, string | undefined>)["bun"] === undefined) {
    throw new Error("tail_stalls runs under Bun only: the broker's monitor is a `bun --preload`");
  }
  const rate = numberFlag("rate");
  const seconds = numberFlag("seconds");
  const warmup = Math.round(rate * numberFlag("warmup-seconds"));
  const measured = Math.round(rate * seconds);
  if (measured < 1) throw new RangeError(`--rate ${rate} --seconds ${seconds} measure nothing`);
  const dir = mkdtempSync(join(tmpdir(), "sluice-tail-stalls-"));
  try {
    const brokerFile = join(dir, "broker-stalls.jsonl");
    const clientFile = join(dir, "client-stalls.jsonl");
    const broker = await startBroker(join(dir, "data"), brokerFile);
    const client = watchStalls(clientFile);
    const dirty: [number, number][] = [];
    const sampler = setInterval(() => {
      const text = readProc("/proc/meminfo");
      const mb = text === undefined ? undefined : dirtyMB(text);
      if (mb !== undefined)
        dirty.push([performance.timeOrigin + performance.now(), Math.round(mb)]);
    }, 100);
    let published = 0;
    try {
      const publishSeconds = numberFlag("publish-seconds");
      if (publishSeconds > 0) published = await publishFor(broker.port, publishSeconds);
      const brokerCpuBefore = broker.cpuMs();
      const clientCpuBefore = process.cpuUsage();
      const wallBefore = performance.now();
      const run = await latencyRun(broker.port, rate, warmup, measured);
      const wallMs = performance.now() - wallBefore;
      const clientCpu = process.cpuUsage(clientCpuBefore);
      const brokerCpuAfter = broker.cpuMs();
      const messages = warmup + measured;
      // CPU per message over the whole run (warm-up included), all threads of each process.
      const cpu = {
        brokerUsPerMessage:
          brokerCpuBefore === undefined || brokerCpuAfter === undefined
            ? null
            : Math.round(((brokerCpuAfter - brokerCpuBefore) * 1000) / messages),
        clientUsPerMessage: Math.round((clientCpu.user + clientCpu.system) / messages),
        wallUsPerMessage: Math.round((wallMs * 1000) / messages),
      };
      clearInterval(sampler);
      client.stop();
      await broker.stop();
      const fromMs = run.sentAt[0]!;
      const toMs = run.sentAt[run.sentAt.length - 1]!;
      const context = {
        broker: readStalls(brokerFile),
        client: readStalls(clientFile),
        dirty,
        gcs: broker.gcs,
      };
      const found = episodes(run, numberFlag("slow-ms"), { ...context, origin: fromMs });
      found.sort((a, b) => b.maxMs - a.maxMs);
      console.log(
        JSON.stringify({
          tool: "tail_stalls",
          params: { rate, seconds, warmup, published, slowMs: numberFlag("slow-ms") },
          latency: percentiles(run.latencyMs),
          cpu,
          brokerStalls: stallTotals(context.broker, fromMs, toMs),
          clientStalls: stallTotals(context.client, fromMs, toMs),
          brokerGcs: gcSummary(broker.gcs, fromMs, toMs),
          dirtyMBMax: Math.max(0, ...dirty.map(([, mb]) => mb)),
          episodes: found.length,
          slowest: found.slice(0, numberFlag("episodes")),
        }),
      );
    } finally {
      clearInterval(sampler);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);

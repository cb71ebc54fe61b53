// Allocation, garbage collection and scheduling per message in bench:tcp's latency phase
// (1 KiB records, 16 partitions, acks=1, lingerMs 0, a fixed rate, the consumer long-polling
// with maxWaitMs 100 and minBytes 1), for each of its three processes: the broker
// (`sluice serve`), the producer and the consumer, each a process of its own. On a loaded
// machine timings swing several-fold between runs; what a process allocates and schedules per
// message does not, so A/B comparisons of the fetch and produce paths use these figures.
//
//   bun bench/tools/alloc_per_msg.ts [--seconds 10] [--warmup-seconds 2] [--rate 10000]
//                                    [--root DIR] [--json] [--logs DIR]
//
// Each process runs with BUN_JSC_logGC=1 and _alloc_probe.ts preloaded. After the warm-up the
// tool signals all three (SIGUSR2) to mark the window's start, and again once the consumer has
// every record. Per process and window it reports:
//   bytesPerMsg       JS heap bytes allocated per message: the growth of the heap between
//                     collections (each collection's start size less the previous one's end
//                     size, and the heap at the window's edges), divided by the messages sent;
//   gcPer10k, gcPauseMsPer10k, gcPauseMsMax, gcPausesOver1MsPer10k, gcBudgetStartedPer10k
//                     collections, their summed and longest pauses, the pauses over 1 ms,
//                     and the collections the allocation budget started (not a timer),
//                     per 10,000 messages;
//   timeoutsPerMsg, immediatesPerMsg, microtasksPerMsg
//                     setTimeout, setImmediate and queueMicrotask calls per message;
// and pollsPerMsg, the consumer's polls (one fetch answer each) per message. A fetch costs
// about the same whatever it brings, so the per-message figures move with the number of
// messages a fetch brings, which the machine's load decides: compare runs at like pollsPerMsg,
// or per fetch. e2eMs is the consumer's end-to-end latency (loaded on a shared machine).
// `--root DIR` runs another checkout's broker and client (alternate it with this one for an
// A/B). `--logs DIR` keeps each process's stderr (its GC log) as DIR/<role>.log. The three
// processes inherit this one's environment, BUN_JSC_* GC settings included (ops/gc_tuning.ts):
// set them on the tool's command line for an A/B of them. Bun only (bun:jsc and
// BUN_JSC_logGC). The last stdout line is one JSON object.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { round, windowFigures } from "./_alloc_window.ts";

const PARTITIONS = 16;
const RECORD_BYTES = 1024;
const TOPIC = "alloc";
const OWN_ROOT = resolve(import.meta.dirname, "..", "..");
const PROBE = join(OWN_ROOT, "bench/tools/_alloc_probe.ts");
const ROLES = ["broker", "producer", "consumer"] as const;
type Role = (typeof ROLES)[number];

const { values } = parseArgs({
  options: {
    role: { type: "string" },
    port: { type: "string" },
    seconds: { type: "string", default: "10" },
    "warmup-seconds": { type: "string", default: "2" },
    rate: { type: "string", default: "10000" },
    root: { type: "string" },
    json: { type: "boolean", default: false },
    logs: { type: "string" },
  },
});

function positive(name: keyof typeof values): number {
  const value = Number(values[name]);
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`--${name} ${values[name]} is not a positive number`);
  }
  return value;
}

const root = resolve(values.root ?? OWN_ROOT);
const rate = positive("rate");
const seconds = positive("seconds");
const warmupSeconds = positive("warmup-seconds");
const warmup = Math.round(rate * warmupSeconds);
const total = warmup + Math.round(rate * seconds);

async function client() {
  return (await import(
    join(root, "protocol", "client", "mod.ts")
  )) as typeof import("../../protocol/client/mod.ts");
}

/** The producer role: bench:tcp's latency sender, which says when the warm-up is over. */
async function runProducer(port: number): Promise<void> {
  const { Producer } = await client();
  const producer = new Producer({ port, acks: 1, lingerMs: 0 });
  const value = new Uint8Array(RECORD_BYTES);
  const stamp = new DataView(value.buffer);
  const start = performance.now() + 100;
  const scheduled = (i: number) => start + (i * 1000) / rate;
  for (let i = 0; i < total; ) {
    const now = performance.now();
    for (; i < total && scheduled(i) <= now; i++) {
      if (i === warmup) process.stdout.write("warm\n");
      stamp.setFloat64(0, performance.timeOrigin + performance.now());
      stamp.setFloat64(8, i);
      producer.send({ topic: TOPIC, value, partition: i % PARTITIONS }, () => {});
    }
    // tidy: allow-timeout the sender's pacing tick, as bench:tcp's, not a wait for a result
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await producer.flush();
  // Kept open until the coordinator has read the window's end (it ends this process).
  await new Promise(() => {});
}

/** The consumer role: reads every record, says when all came, and their latency. */
async function runConsumer(port: number): Promise<void> {
  const { Consumer } = await client();
  const consumer = new Consumer({ port, maxWaitMs: 100, minBytes: 1 });
  consumer.assign(
    Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: TOPIC, partition, offset: 0 })),
  );
  const latencies = new Float64Array(total - warmup);
  let received = 0;
  let measured = 0;
  // Polls once measured records flow: each takes one fetch's answer, so this is the fetch rate
  // that the per-message figures depend on (a fetch costs the same whatever it brings).
  let polls = 0;
  while (received < total) {
    if (measured > 0) polls++;
    for (const record of await consumer.poll({ maxWaitMs: 500 })) {
      received++;
      const view = new DataView(record.value!.buffer, record.value!.byteOffset, 16);
      if (view.getFloat64(8) < warmup) continue;
      latencies[measured++] = performance.timeOrigin + performance.now() - view.getFloat64(0);
    }
  }
  latencies.sort();
  const at = (q: number) => latencies[Math.min(measured - 1, Math.ceil(q * measured) - 1)]!;
  const figures = { p50: at(0.5), p99: at(0.99), p999: at(0.999), polls };
  process.stdout.write(`done ${JSON.stringify(figures)}\n`);
  await new Promise(() => {});
}

/** One process's stderr, read as BUN_JSC_logGC and probe lines. */
type Watched = { child: ChildProcess; log: string; stdout: string };

function launch(args: string[]): Watched {
  const env = { ...process.env, BUN_JSC_logGC: "1" };
  const child = spawn(process.execPath, ["--preload", PROBE, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  const watched: Watched = { child, log: "", stdout: "" };
  child.stderr!.on("data", (chunk: Buffer) => {
    watched.log += chunk.toString();
  });
  child.stdout!.on("data", (chunk: Buffer) => {
    watched.stdout += chunk.toString();
  });
  return watched;
}

/** Resolves once `test` holds for the watched output; checked on each new chunk. */
function whenOutput(watched: Watched, test: (w: Watched) => boolean, what: string) {
  return new Promise<void>((done, fail) => {
    const check = () => {
      if (!test(watched)) return;
      watched.child.stdout!.off("data", check);
      watched.child.stderr!.off("data", check);
      watched.child.off("exit", exited);
      done();
    };
    const exited = (code: number | null) => fail(new Error(`${what}: exited (${code})`));
    watched.child.stdout!.on("data", check);
    watched.child.stderr!.on("data", check);
    watched.child.once("exit", exited);
    check();
  });
}

const probeLines = (w: Watched) => (w.log.match(/\[alloc-probe\]/g) ?? []).length;

async function coordinate(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-alloc-"));
  const self = join(OWN_ROOT, "bench/tools/alloc_per_msg.ts");
  const common = ["--seconds", String(seconds), "--warmup-seconds", String(warmupSeconds)];
  common.push("--rate", String(rate), "--root", root);
  const processes: Partial<Record<Role, Watched>> = {};
  try {
    const brokerArgs = [join(root, "bin/sluice.ts"), "serve", "--data", dataDir, "--port", "0"];
    const broker = launch(brokerArgs);
    processes.broker = broker;
    await whenOutput(broker, (w) => /sluice listening on/.test(w.stdout), "broker");
    const port = Number(/sluice listening on [\d.]+:(\d+)/.exec(broker.stdout)![1]);
    const { Admin } = await client();
    const admin = new Admin({ port });
    const config = { fsync: "never" as const };
    await admin.createTopics([{ name: TOPIC, partitions: PARTITIONS, config }]);
    await admin.close();
    const consumer = launch([self, "--role", "consumer", "--port", String(port), ...common]);
    processes.consumer = consumer;
    const producer = launch([self, "--role", "producer", "--port", String(port), ...common]);
    processes.producer = producer;
    await whenOutput(producer, (w) => w.stdout.includes("warm"), "producer");
    await probeAll(processes, 1);
    await whenOutput(consumer, (w) => w.stdout.includes("done "), "consumer");
    await probeAll(processes, 2);
    report(processes);
  } finally {
    for (const role of ROLES) processes[role]?.child.kill("SIGTERM");
    await Promise.all(ROLES.map((role) => exited(processes[role]?.child)));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function exited(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve();
  }
  return new Promise((done) => child.once("exit", () => done()));
}

async function probeAll(processes: Partial<Record<Role, Watched>>, count: number) {
  for (const role of ROLES) processes[role]!.child.kill("SIGUSR2");
  await Promise.all(
    ROLES.map((role) => whenOutput(processes[role]!, (w) => probeLines(w) >= count, role)),
  );
}

function report(processes: Partial<Record<Role, Watched>>): void {
  const messages = total - warmup;
  const done = /done (\{.*\})/.exec(processes.consumer!.stdout)![1]!;
  const latency = JSON.parse(done) as { p50: number; p99: number; p999: number; polls: number };
  const figures = Object.fromEntries(
    ROLES.map((role) => [role, windowFigures(processes[role]!.log, messages)]),
  );
  if (values.logs !== undefined) {
    mkdirSync(values.logs, { recursive: true });
    for (const role of ROLES) writeFileSync(join(values.logs, `${role}.log`), processes[role]!.log);
  }
  if (!values.json) {
    for (const role of ROLES) console.log(role.padEnd(9), JSON.stringify(figures[role]));
    console.log(
      `e2e (loaded) p50 ${latency.p50.toFixed(2)} ms, p99 ${latency.p99.toFixed(2)} ms, ` +
        `p99.9 ${latency.p999.toFixed(2)} ms over ${messages} messages, ` +
        `${latency.polls} consumer polls`,
    );
  }
  const parameters = { rate, seconds, warmupSeconds, messages, root };
  const pollsPerMsg = round(latency.polls / messages, 3);
  const e2eMs = { p50: round(latency.p50), p99: round(latency.p99), p999: round(latency.p999) };
  console.log(JSON.stringify({ parameters, ...figures, pollsPerMsg, e2eMs }));
}

if (values.role === "producer") await runProducer(positive("port"));
else if (values.role === "consumer") await runConsumer(positive("port"));
else if (values.role !== undefined) throw new RangeError(`--role ${values.role}`);
else await coordinate();

// Where each slow message of bench:tcp's latency phase spent its time: 1 KiB records, 16
// partitions, acks=1, lingerMs 0, a fixed rate, the consumer long-polling (maxWaitMs 100,
// minBytes 1), producer and consumer in one client process as in bench:tcp. For every
// measured message the client keeps three times: handed to the producer (send), its produce
// acknowledgement back (ack: the broker has appended it and answered), and handed to the
// consumer's application (receive). A message slower than --slow-ms end to end is put down
// to the stage that took longest:
//   produce   send → ack took most of it (the client's send, the broker's append, the answer);
//   fetch     ack → receive took most of it (the broker's fetch wake-up and answer, the
//             consumer's decode; a fetch answered before the ack counts here too).
// and lined up against the garbage collections of both processes (BUN_JSC_logGC=1, each
// cycle's end stamped as its log line arrives) and against the client's event-loop stalls
// (its 1 ms pacing tick coming 2 ms or more late). Bun only; prints one JSON line.
//
//   bun bench/tools/e2e_stages.ts [--seconds 5] [--warmup-seconds 1] [--rate 10000]
//                                 [--slow-ms 2] [--root DIR] [--gc tuned|default]
//
// `--root DIR` runs another checkout's broker and client (alternate it with this one for an
// A/B).

import { type ChildProcess, spawn } from "node:child_process";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { gcEnvironment, parseGcMode } from "../../ops/gc_tuning.ts";

const PARTITIONS = 16;
const RECORD_BYTES = 1024;
const OWN_ROOT = resolve(import.meta.dirname, "..", "..");
const STAGE_PROBE = join(OWN_ROOT, "bench/tools/_stage_probe.ts");
/** A pacing tick this much later than asked (ms) counts as a client stall. */
const STALL_MS_MIN = 2;

const { values } = parseArgs({
  options: {
    role: { type: "string" },
    port: { type: "string" },
    out: { type: "string" },
    seconds: { type: "string", default: "5" },
    "warmup-seconds": { type: "string", default: "1" },
    rate: { type: "string", default: "10000" },
    "slow-ms": { type: "string", default: "2" },
    root: { type: "string" },
    gc: { type: "string", default: "tuned" },
    logs: { type: "string" },
  },
});

function numberFlag(name: "seconds" | "warmup-seconds" | "rate" | "slow-ms"): number {
  const value = Number(values[name]);
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`--${name} ${values[name]}`);
  return value;
}

const root = resolve(values.root ?? OWN_ROOT);
const nowMs = () => performance.timeOrigin + performance.now();

/** The client: the latency loop of bench:tcp with an ack time per message. */
async function runClient(port: number, out: string): Promise<void> {
  const { Admin, Consumer, Producer } = (await import(
    join(root, "protocol/client/mod.ts")
  )) as typeof import("../../protocol/client/mod.ts");
  const rate = numberFlag("rate");
  const topic = "stages";
  const admin = new Admin({ port });
  await admin.createTopics([{ name: topic, partitions: PARTITIONS, config: { fsync: "never" } }]);
  await admin.close();
  const consumer = new Consumer({ port, maxWaitMs: 100, minBytes: 1 });
  consumer.assign(
    Array.from({ length: PARTITIONS }, (_, partition) => ({ topic, partition, offset: 0 })),
  );
  const producer = new Producer({ port, acks: 1, lingerMs: 0 });
  const warmup = Math.round(rate * numberFlag("warmup-seconds"));
  const total = warmup + Math.round(rate * numberFlag("seconds"));
  const sent = new Float64Array(total);
  const acked = new Float64Array(total);
  const received = new Float64Array(total);
  const stalls: number[] = [];
  const start = nowMs() + 100;
  const scheduled = (i: number) => start + (i * 1000) / rate;
  let count = 0;
  const receiving = (async () => {
    while (count < total) {
      for (const record of await consumer.poll({ maxWaitMs: 500 })) {
        const view = new DataView(record.value!.buffer, record.value!.byteOffset, 16);
        received[view.getFloat64(8)] = nowMs();
        count++;
      }
    }
  })();
  const value = new Uint8Array(RECORD_BYTES);
  const stamp = new DataView(value.buffer);
  let tickDueMs = 0;
  for (let i = 0; i < total; ) {
    const now = nowMs();
    if (tickDueMs > 0 && now - tickDueMs >= STALL_MS_MIN) stalls.push(tickDueMs, now - tickDueMs);
    for (; i < total && scheduled(i) <= now; i++) {
      const index = i;
      sent[index] = nowMs();
      stamp.setFloat64(0, sent[index]!);
      stamp.setFloat64(8, index);
      producer.send({ topic, value, partition: index % PARTITIONS }, () => {
        acked[index] = nowMs();
      });
    }
    tickDueMs = nowMs() + 1;
    // tidy: allow-timeout the sender's pacing tick, not a wait for a result
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await receiving;
  await producer.close();
  await consumer.close();
  const body = {
    warmup,
    sent: [...sent.subarray(warmup)],
    acked: [...acked.subarray(warmup)],
    received: [...received.subarray(warmup)],
    stalls,
  };
  writeFileSync(out, JSON.stringify(body));
}

/** A GC cycle's end as its log line arrived (epoch ms) and its pauses, summed and longest. */
type GcCycle = { atMs: number; pauseMs: number; pauseMsMax: number; full: boolean };

function watchGc(child: ChildProcess, into: GcCycle[], logFile?: string): void {
  let partial = "";
  let pauses: number[] = [];
  let full = false;
  child.stderr!.on("data", (chunk: Buffer) => {
    if (logFile !== undefined) appendFileSync(logFile, `@${nowMs().toFixed(1)} ${chunk}`);
    const lines = (partial + chunk.toString()).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      if (line.includes(": START ")) {
        full = line.includes("FullCollection");
        pauses = [];
      }
      for (const pause of line.matchAll(/\bp=([\d.]+)ms/g)) pauses.push(Number(pause[1]));
      if (/ END\]$/.test(line)) {
        const pauseMs = pauses.reduce((a, b) => a + b, 0);
        into.push({ atMs: nowMs(), pauseMs, pauseMsMax: Math.max(0, ...pauses), full });
      }
    }
  });
}

function launch(
  args: string[],
  gcs: GcCycle[],
  role: string,
  extraEnv: Record<string, string> = {},
): ChildProcess {
  const env = {
    ...gcEnvironment(process.env, parseGcMode(values.gc)),
    BUN_JSC_logGC: "1",
    ...extraEnv,
  };
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env });
  watchGc(child, gcs, values.logs === undefined ? undefined : join(values.logs, `${role}.log`));
  return child;
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((done) => {
    if (child.exitCode !== null) return done(child.exitCode);
    child.once("exit", (code) => done(code));
  });
}

type Client = { sent: number[]; acked: number[]; received: number[]; stalls: number[] };

/** A slow message: its stage, and whether a GC cycle of either process or a stall touched it. */
function classify(client: Client, brokerGcs: GcCycle[], clientGcs: GcCycle[], slowMs: number) {
  const near = (gcs: GcCycle[], from: number, to: number) =>
    gcs.some((gc) => gc.atMs >= from && gc.atMs - gc.pauseMs <= to + 1);
  const stallNear = (from: number, to: number) => {
    for (let i = 0; i < client.stalls.length; i += 2) {
      const due = client.stalls[i]!;
      if (due <= to && due + client.stalls[i + 1]! >= from) return true;
    }
    return false;
  };
  const counts = {
    messages: client.sent.length,
    slow: 0,
    produceStage: 0,
    fetchStage: 0,
    brokerGc: 0,
    clientGc: 0,
    clientStall: 0,
    unexplained: 0,
  };
  const produceMs: number[] = [];
  const fetchMs: number[] = [];
  const slowAt: number[] = [];
  for (let i = 0; i < client.sent.length; i++) {
    const sent = client.sent[i]!;
    const received = client.received[i]!;
    const acked = client.acked[i]! || received;
    if (received - sent < slowMs) continue;
    counts.slow++;
    slowAt.push(sent);
    const produce = Math.min(acked, received) - sent;
    const fetch = received - Math.min(acked, received);
    produceMs.push(produce);
    fetchMs.push(fetch);
    if (produce >= fetch) counts.produceStage++;
    else counts.fetchStage++;
    const b = near(brokerGcs, sent, received);
    const c = near(clientGcs, sent, received);
    const s = stallNear(sent, received);
    if (b) counts.brokerGc++;
    if (c) counts.clientGc++;
    if (s) counts.clientStall++;
    if (!b && !c && !s) counts.unexplained++;
  }
  return { counts, produceMs, fetchMs, slowAt };
}

function quantile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

const r3 = (v: number) => Math.round(v * 1000) / 1000;

async function coordinate(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-stages-"));
  if (values.logs !== undefined) mkdirSync(values.logs, { recursive: true });
  const out = join(dataDir, "client.json");
  const brokerGcs: GcCycle[] = [];
  const clientGcs: GcCycle[] = [];
  const stageFile = join(dataDir, "stages.json");
  const broker = launch(
    [
      "--preload",
      STAGE_PROBE,
      join(root, "bin/sluice.ts"),
      "serve",
      "--data",
      dataDir,
      "--port",
      "0",
    ],
    brokerGcs,
    "broker",
    { SLUICE_STAGE_FILE: stageFile, SLUICE_STAGE_ROOT: root },
  );
  try {
    const port = await new Promise<number>((done, fail) => {
      let text = "";
      broker.once("exit", (code) => fail(new Error(`broker exited (${code})`)));
      broker.stdout!.on("data", (chunk: Buffer) => {
        text += chunk.toString();
        const match = /sluice listening on [\d.]+:(\d+)/.exec(text);
        if (match !== null) done(Number(match[1]));
      });
    });
    broker.removeAllListeners("exit");
    const self = join(OWN_ROOT, "bench/tools/e2e_stages.ts");
    const args = [self, "--role", "client", "--port", String(port), "--out", out];
    for (const name of ["seconds", "warmup-seconds", "rate", "root"] as const) {
      if (values[name] !== undefined) args.push(`--${name}`, String(values[name]));
    }
    const client = launch(args, clientGcs, "client");
    const code = await exited(client);
    if (code !== 0) throw new Error(`client exited (${code})`);
    const figures = JSON.parse(readFileSync(out, "utf8")) as Client & { warmup: number };
    const brokerStages = await stagesOf(broker, stageFile);
    const from = figures.sent[0]!;
    const to = figures.received.reduce((a, b) => Math.max(a, b), 0);
    const inWindow = (gcs: GcCycle[]) => gcs.filter((gc) => gc.atMs >= from && gc.atMs <= to);
    const { counts, produceMs, fetchMs, slowAt } = classify(
      figures,
      inWindow(brokerGcs),
      inWindow(clientGcs),
      numberFlag("slow-ms"),
    );
    const e2e = figures.received.map((r, i) => r - figures.sent[i]!);
    const gcSummary = (gcs: GcCycle[]) => ({
      cycles: gcs.length,
      full: gcs.filter((gc) => gc.full).length,
      pauseMsSum: r3(gcs.reduce((a, gc) => a + gc.pauseMs, 0)),
      pausesOver1Ms: gcs.filter((gc) => gc.pauseMsMax > 1).length,
      pauseMsMax: r3(Math.max(0, ...gcs.map((gc) => gc.pauseMsMax))),
    });
    const ackMs = figures.acked.map((a, i) => a - figures.sent[i]!);
    const afterAckMs = figures.received.map((r, i) => r - (figures.acked[i]! || r));
    const result = {
      tool: "e2e_stages",
      root,
      gc: values.gc,
      e2eP50Ms: r3(quantile(e2e, 0.5)),
      e2eP99Ms: r3(quantile(e2e, 0.99)),
      e2eP999Ms: r3(quantile(e2e, 0.999)),
      ackP50Ms: r3(quantile(ackMs, 0.5)),
      ackP99Ms: r3(quantile(ackMs, 0.99)),
      // Receive less ack: how much later than its acknowledgement a message reached the
      // consumer (negative when the fetch answer came first).
      afterAckP50Ms: r3(quantile(afterAckMs, 0.5)),
      afterAckP99Ms: r3(quantile(afterAckMs, 0.99)),
      slow: counts,
      slowProduceMsP50: r3(quantile(produceMs, 0.5)),
      slowFetchMsP50: r3(quantile(fetchMs, 0.5)),
      slowSecondsHistogram: histogram(slowAt, from),
      clientStalls: figures.stalls.length / 2,
      clientStallMsSum: r3(figures.stalls.filter((_, i) => i % 2 === 1).reduce((a, b) => a + b, 0)),
      brokerGc: gcSummary(inWindow(brokerGcs)),
      clientGc: gcSummary(inWindow(clientGcs)),
      brokerStages: splitStages(figures, brokerStages, numberFlag("slow-ms")),
    };
    console.log(JSON.stringify(result));
  } finally {
    broker.kill("SIGTERM");
    await exited(broker);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

type BrokerStages = { append: number[]; done: number[] };

/** The broker's stamps (_stage_probe.ts), asked for now and read once written. */
async function stagesOf(broker: ChildProcess, file: string): Promise<BrokerStages | undefined> {
  broker.kill("SIGUSR2");
  for (let tries = 0; tries < 200; tries++) {
    if (existsSync(file)) {
      try {
        return JSON.parse(readFileSync(file, "utf8")) as BrokerStages;
      } catch {
        // Not whole yet: read again.
      }
    }
    // tidy: allow-timeout a diagnostic tool polling for a file another process writes
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return undefined;
}

/**
 * Every message split at the broker: send → append started (the client's send, the bytes'
 * way over, the broker's turn reaching the request), append → done (the flush round), done →
 * ack back, done → received by the consumer (fetch wake-up, answer, decode). Percentiles of
 * each over all messages, and for slow ones which of the four took longest.
 */
function splitStages(
  client: Client & { warmup: number },
  stages: BrokerStages | undefined,
  slowMs: number,
) {
  if (stages === undefined) return null;
  const toBroker: number[] = [];
  const round: number[] = [];
  const ackBack: number[] = [];
  const toConsumer: number[] = [];
  const slowest = { toBroker: 0, round: 0, ackBack: 0, toConsumer: 0 };
  for (let i = 0; i < client.sent.length; i++) {
    const append = stages.append[client.warmup + i] ?? 0;
    const done = stages.done[client.warmup + i] ?? 0;
    if (append === 0 || done === 0) continue;
    const parts = {
      toBroker: append - client.sent[i]!,
      round: done - append,
      ackBack: (client.acked[i]! || done) - done,
      toConsumer: client.received[i]! - done,
    };
    toBroker.push(parts.toBroker);
    round.push(parts.round);
    ackBack.push(parts.ackBack);
    toConsumer.push(parts.toConsumer);
    if (client.received[i]! - client.sent[i]! < slowMs) continue;
    const top = (Object.keys(parts) as (keyof typeof parts)[]).reduce((a, b) =>
      parts[a] >= parts[b] ? a : b,
    );
    slowest[top]++;
  }
  const p = (list: number[]) => ({ p50: r3(quantile(list, 0.5)), p99: r3(quantile(list, 0.99)) });
  return {
    messages: round.length,
    toBrokerMs: p(toBroker),
    roundMs: p(round),
    ackBackMs: p(ackBack),
    toConsumerMs: p(toConsumer),
    slowLongestStage: slowest,
  };
}

/** Slow messages per 100 ms slice of the run: where in time the tail falls. */
function histogram(at: number[], from: number): string {
  const slices = new Map<number, number>();
  for (const t of at) {
    const slice = Math.floor((t - from) / 100);
    slices.set(slice, (slices.get(slice) ?? 0) + 1);
  }
  return [...slices].map(([slice, n]) => `${(slice / 10).toFixed(1)}s:${n}`).join(" ");
}

if (values.role === "client") {
  await runClient(Number(values.port), values.out!);
  process.exit(0);
} else {
  await coordinate();
}

// CPU per accepted record on the queue-1kb shape at a fixed rate, by process. It starts
// `sluice serve` as a child, runs the harness (two load workers: the first runs the 4
// producers, the second the 4 QueueConsumers, as `npm run bench -- --workload queue-1kb` does)
// against it at --rate records a second for --seconds after --warmup-s, and prints one JSON
// line:
//   - cpuUsPerRecord {broker, producers, consumers, all}: CPU µs (user + system) per accepted
//     record over the measured phase, from the harness's readings of /proc;
//   - brokerCpuUsPerRecordWholeRun: the broker's CPU over the whole run (warm-up, drain)
//     per record accepted over the whole run, read from /proc here;
//   - requestsPerRecord {API name: count}, answersPerRecord and socketWritesPerRecord: the
//     broker's Stats counters over the whole run per record accepted over the whole run (the
//     rate is the same in warm-up and measured phase, so the shape is the same).
//   - ackMs {p50, p99}: the harness's ack latency over the measured phase (accept() to the
//     durable confirmation); syncs {queueFsyncs, rounds, flushRounds} per second and
//     {queueFsyncP99Ms, roundP99Ms}: the broker's state-log commit syncs and group-commit
//     rounds over the measured phase (bench/disk_syncs.ts), so that a change to how acks are
//     made durable shows its count and its latency beside its CPU.
// On a shared machine CPU per record moves less with the load than records per second do; for
// an A/B alternate runs of the two checkouts (--root) and compare ratios.
//
//   bun bench/tools/queue_cpu.ts [--rate 15000] [--seconds 20] [--warmup-s 5]
//       [--driver-options sluice.lingerMs=1,...] [--root ../other-checkout]
//
// With --root, the broker and the harness both come from the other checkout (its
// bench/cli.ts and bin/sluice.ts), so a branch and main are compared by the same command.

import fs from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "15000" },
    seconds: { type: "string", default: "20" },
    "warmup-s": { type: "string", default: "5" },
    "driver-options": { type: "string", default: "" },
    root: { type: "string" },
  },
});

function integer(name: "rate" | "seconds" | "warmup-s", min: number, max: number): number {
  const value = Number(values[name]);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`--${name} ${values[name]} is not an integer in [${min}, ${max}]`);
  }
  return value;
}

const ratePerSecond = integer("rate", 1, 10_000_000);
const testSeconds = integer("seconds", 1, 3_600);
const warmupSeconds = integer("warmup-s", 0, 3_600);
const root = resolve(values.root ?? join(import.meta.dirname, "..", ".."));
/** Linux's USER_HZ, the unit of /proc/PID/stat's times. */
const USER_HZ = 100;

type Child = {
  process: { pid?: number };
  port: number;
  httpPort?: number;
  stop(): Promise<void>;
};
type Stats = { socketWrites: number | undefined; requests: Record<string, unknown> };
type AdminLike = {
  stats(): Promise<Stats>;
  close(): Promise<void>;
};

const processes = (await import(join(root, "bench/tcp/processes.ts"))) as {
  startChild(script: string, args: string[]): Promise<Child>;
};
const clientMod = (await import(join(root, "protocol/client/mod.ts"))) as {
  Admin: new (options: { host: string; port: number }) => AdminLike;
};
const frames = (await import(join(root, "protocol/codec/frames.ts"))) as {
  API: Record<string, number>;
};
const cli = (await import(join(root, "bench/cli.ts"))) as {
  runBench(options: Record<string, unknown>): Promise<{
    results: BenchResultLike[];
    failed: { driver: string; error: string }[];
  }>;
};

type BenchResultLike = {
  totalMessagesReceived: number;
  consumeRate: number[];
  sustained: boolean;
  clientCpu: { wallMs: number };
  brokerCpu: { cpuMs: number | null };
  workerProcesses: { label: string; cpuPercent: number }[];
  otherCpuPercent: number | null;
  ackLatency50pct: number | null;
  ackLatency99pct: number | null;
  queueFsyncCount: number | null;
  queueFsyncP99Ms: number | null;
  syncRoundCount: number | null;
  syncRoundFlushCount: number | null;
  syncRoundP99Ms: number | null;
};

function processCpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / USER_HZ;
  } catch {
    return null;
  }
}

function workloadFile(dir: string): string {
  const file = join(dir, "queue-1kb-fixed.yaml");
  const base = fs.readFileSync(join(root, "bench/workloads/queue-1kb.yaml"), "utf8");
  const fixed = base
    .replace(/^name: .*$/m, "name: queue-1kb-fixed")
    .replace(/^producerRate: .*$/m, `producerRate: ${ratePerSecond}`)
    .replace(/^warmupDurationSeconds: .*$/m, `warmupDurationSeconds: ${warmupSeconds}`)
    .replace(/^testDurationMinutes: .*$/m, `testDurationSeconds: ${testSeconds}`);
  fs.writeFileSync(file, fixed);
  return file;
}

const round = (value: number, digits = 2): number => Number(value.toFixed(digits));

/** The Stats requests map keyed by API name, as the difference `after - before`. */
function requestDelta(before: Stats, after: Stats): Record<string, number> {
  const names = new Map(Object.entries(frames.API).map(([name, key]) => [String(key), name]));
  const delta: Record<string, number> = {};
  for (const [key, count] of Object.entries(after.requests)) {
    const grown = Number(count) - Number(before.requests[key] ?? 0);
    if (grown > 0) delta[names.get(key) ?? `api${key}`] = grown;
  }
  return delta;
}

/** Ack latency and the broker's syncs over the measured phase (null where not reported). */
function ackAndSyncs(result: BenchResultLike) {
  const perSecond = (count: number | null | undefined) =>
    count === null || count === undefined ? null : round(count / testSeconds, 0);
  const ms = (value: number | null | undefined) =>
    value === null || value === undefined ? null : round(value, 2);
  return {
    ackMs: { p50: ms(result.ackLatency50pct), p99: ms(result.ackLatency99pct) },
    syncsPerSecond: {
      queueFsyncs: perSecond(result.queueFsyncCount),
      rounds: perSecond(result.syncRoundCount),
      flushRounds: perSecond(result.syncRoundFlushCount),
    },
    syncP99Ms: { queueFsync: ms(result.queueFsyncP99Ms), round: ms(result.syncRoundP99Ms) },
  };
}

function perRecord(result: BenchResultLike) {
  const measured = result.consumeRate.reduce((sum, rate) => sum + rate, 0);
  const wallS = result.clientCpu.wallMs / 1000;
  // The first worker runs the producers, the second the consumers (bench/worker/ensemble.ts).
  const [producers, consumers] = result.workerProcesses.map(
    (worker) => (worker.cpuPercent / 100) * wallS * 1e6,
  );
  const broker = result.brokerCpu.cpuMs === null ? null : result.brokerCpu.cpuMs * 1000;
  const us = (cpuUs: number | null | undefined) =>
    cpuUs === null || cpuUs === undefined || measured === 0 ? null : round(cpuUs / measured);
  return {
    measuredAccepted: Math.round(measured),
    cpuUsPerRecord: {
      broker: us(broker),
      producers: us(producers),
      consumers: us(consumers),
      all: us((broker ?? 0) + (producers ?? 0) + (consumers ?? 0)),
    },
  };
}

/** The given driver options, and where the broker's /metrics is read. */
function driverOptions(httpPort: number | undefined): string | undefined {
  const given = values["driver-options"] === "" ? [] : [values["driver-options"]];
  if (httpPort !== undefined) given.push(`sluice.metricsUrl=http://127.0.0.1:${httpPort}/metrics`);
  return given.length === 0 ? undefined : given.join(",");
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(join(os.tmpdir(), "sluice-queue-cpu-"));
  let child: Child | undefined;
  try {
    child = await processes.startChild("bin/sluice.ts", [
      "serve",
      ...["--data", join(dir, "data"), "--port", "0"],
      // /metrics, for the broker's syncs over the measured phase (read twice a run).
      ...["--http-port", "0"],
    ]);
    const client = { host: "127.0.0.1", port: child.port };
    const admin = new clientMod.Admin(client);
    const before = await admin.stats();
    const brokerCpuBefore = processCpuMs(child.process.pid);
    const outcome = await cli.runBench({
      workload: workloadFile(dir),
      drivers: "sluice",
      sluiceUrl: `${client.host}:${client.port}`,
      driverOptions: driverOptions(child.httpPort),
      out: join(dir, "results"),
      limits: false,
      log: () => {},
      progress: () => {},
    });
    const after = await admin.stats();
    const brokerCpuAfter = processCpuMs(child.process.pid);
    await admin.close();
    const result = outcome.results[0];
    if (result === undefined) {
      throw new Error(`the run failed: ${JSON.stringify(outcome.failed)}`);
    }
    const accepted = result.totalMessagesReceived;
    const requests = requestDelta(before, after);
    const answers = Object.values(requests).reduce((sum, count) => sum + count, 0);
    const writes =
      before.socketWrites === undefined || after.socketWrites === undefined
        ? null
        : after.socketWrites - before.socketWrites;
    console.log(
      JSON.stringify({
        root,
        ratePerSecond,
        testSeconds,
        warmupSeconds,
        driverOptions: values["driver-options"],
        sustained: result.sustained,
        otherCpuPercent: result.otherCpuPercent,
        acceptedWholeRun: accepted,
        ...perRecord(result),
        ...ackAndSyncs(result),
        brokerCpuUsPerRecordWholeRun:
          brokerCpuBefore === null || brokerCpuAfter === null
            ? null
            : round(((brokerCpuAfter - brokerCpuBefore) * 1000) / accepted),
        requestsPerRecord: Object.fromEntries(
          Object.entries(requests).map(([name, count]) => [name, round(count / accepted, 4)]),
        ),
        answersPerRecord: round(answers / accepted, 4),
        socketWritesPerRecord: writes === null ? null : round(writes / accepted, 4),
      }),
    );
  } finally {
    await child?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();

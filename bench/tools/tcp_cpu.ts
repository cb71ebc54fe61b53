// bench:tcp's publish and catch-up consume phases, with the CPU time each process spent per MB:
// the broker (`sluice serve`, a child process, read from /proc/PID/stat) and this client
// (process.cpuUsage). On a loaded, shared machine wall-clock MB/s swings several-fold between
// runs of the same code; CPU per MB moves far less, so A/B comparisons use it. `--root DIR`
// runs another checkout's broker and client (alternate it with this one for an A/B).
//
//   bun bench/tools/tcp_cpu.ts [--seconds 8] [--phases publish,consume-no-crc,consume,small]
//                              [--root DIR] [--json]
//
// Phases: publish (one Producer, acks=1, lingerMs 2, batchBytes 1 MiB, 1 KiB records over 16
// partitions, as bench:tcp), consume-no-crc and consume (a Consumer reading everything back
// from offset 0 with its batch CRC checks off, then on), small (100-byte records, one
// Producer.send each, null key, as bench:tcp's publish100BRecordsPerSec; its figures are per
// record, not per MB; not run by default). Broker CPU and both processes' peak resident memory
// (`brokerRssMaxMB`, `clientRssMaxMB`, VmHWM) are Linux only (null elsewhere). The last stdout
// line is one JSON object with each phase's figures.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { startChild } from "../tcp/processes.ts";
import { consumeAll } from "../tcp/consume_loop.ts";
import { publishFor } from "../tcp/publish_loop.ts";

const RECORD_BYTES = 1024;
const PARTITIONS = 16;
const TOPIC = "bench";
/**
 * Records unacknowledged before the sender waits. bench:tcp allows 65,536, but at ~1,095
 * buffered bytes per 1 KiB record that passes the producer's 64 MiB bufferBytesMax when acks
 * lag (under Deno the first run failed with BUFFER_FULL); 49,152 stays below it.
 */
const OUTSTANDING_MAX = 49_152;
const PHASES = ["publish", "consume-no-crc", "consume", "small"] as const;
const DEFAULT_PHASES = ["publish", "consume-no-crc", "consume"];
const SMALL_RECORD_BYTES = 100;
const SMALL_TOPIC = "small";
type Phase = (typeof PHASES)[number];

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    phases: { type: "string", default: DEFAULT_PHASES.join(",") },
    root: { type: "string" },
    json: { type: "boolean", default: false },
  },
});

const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds <= 0) {
  throw new RangeError(`--seconds ${values.seconds} is not a positive number`);
}
const phases = values.phases.split(",") as Phase[];
for (const phase of phases) {
  if (!PHASES.includes(phase)) throw new RangeError(`--phases: ${phase} is not one of ${PHASES}`);
}
const ownRoot = resolve(import.meta.dirname, "..", "..");
const root = resolve(values.root ?? ownRoot);
const { Admin, Consumer, Producer } = (await import(
  join(root, "protocol", "client", "mod.ts")
)) as typeof import("../../protocol/client/mod.ts");

/** User + system CPU of a process in ms, from /proc; null where there is no /proc. */
function processCpuMs(pid: number): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    const ticksPerMs = 0.1; // USER_HZ is 100 on Linux
    return (Number(fields[11]) + Number(fields[12])) / ticksPerMs;
  } catch {
    return null;
  }
}

/** A process's peak resident memory in MB (VmHWM), from /proc; null where there is none. */
function processRssMaxMB(pid: number): number | null {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match === null ? null : round(Number(match[1]) / 1024);
  } catch {
    return null;
  }
}

function selfCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

type Figures = {
  mbps: number;
  mb: number;
  brokerCpuMsPerMB: number | null;
  clientCpuMsPerMB: number;
};

/** Runs `work` (which returns the MB it moved) and measures both processes' CPU around it. */
async function measured(brokerPid: number, work: () => Promise<number>): Promise<Figures> {
  const broker0 = processCpuMs(brokerPid);
  const client0 = selfCpuMs();
  const started = performance.now();
  const mb = await work();
  const elapsedS = (performance.now() - started) / 1000;
  const broker1 = processCpuMs(brokerPid);
  const brokerMs = broker0 === null || broker1 === null ? null : broker1 - broker0;
  return {
    mbps: round(mb / elapsedS),
    mb: round(mb),
    brokerCpuMsPerMB: brokerMs === null ? null : round(brokerMs / mb, 3),
    clientCpuMsPerMB: round((selfCpuMs() - client0) / mb, 3),
  };
}

function round(value: number, digits = 1): number {
  return Number(value.toFixed(digits));
}

async function publish(port: number): Promise<{ records: number; mb: number }> {
  const producer = new Producer({ port, acks: 1, lingerMs: 2, batchBytes: 1024 * 1024 });
  const value = new Uint8Array(RECORD_BYTES).fill(42);
  const loop = { producer, topic: TOPIC, value, seconds, outstandingMax: OUTSTANDING_MAX };
  const sent = await publishFor({ ...loop, partitions: PARTITIONS });
  return { records: sent.records, mb: (sent.records * RECORD_BYTES) / 1e6 };
}

/** bench:tcp's 100-byte phase: CPU per record, since per-record work is what it measures. */
async function publishSmall(brokerPid: number, port: number) {
  const producer = new Producer({ port, acks: 1, lingerMs: 2, batchBytes: 1024 * 1024 });
  const value = new Uint8Array(SMALL_RECORD_BYTES).fill(7);
  const loop = { producer, topic: SMALL_TOPIC, value, seconds, outstandingMax: OUTSTANDING_MAX };
  const broker0 = processCpuMs(brokerPid);
  const client0 = selfCpuMs();
  const sent = await publishFor(loop);
  const broker1 = processCpuMs(brokerPid);
  const brokerMs = broker0 === null || broker1 === null ? null : broker1 - broker0;
  const perRecordUs = (ms: number) => round((ms * 1000) / sent.records, 3);
  return {
    recordsPerSec: Math.round(sent.records / sent.seconds),
    records: sent.records,
    brokerCpuUsPerRecord: brokerMs === null ? null : perRecordUs(brokerMs),
    clientCpuUsPerRecord: perRecordUs(selfCpuMs() - client0),
  };
}

/** bench:tcp's catch-up read (the same consumer settings and loop); returns the MB read. */
async function consume(port: number, records: number, checkCrcs: boolean): Promise<number> {
  const consumer = new Consumer({
    port,
    maxBytes: 64 * 1024 * 1024,
    partitionMaxBytes: 4 << 20,
    checkCrcs,
  });
  consumer.assign(
    Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: TOPIC, partition, offset: 0 })),
  );
  return (await consumeAll({ consumer, records })).bytes / 1e6;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-tcp-cpu-"));
  // startChild takes a script relative to this checkout: reach the other one's from here.
  const broker = await startChild(relative(ownRoot, join(root, "bin", "sluice.ts")), [
    "serve",
    "--data",
    dataDir,
    "--port",
    "0",
  ]);
  const result: Record<string, unknown> = { root, seconds };
  try {
    const admin = new Admin({ port: broker.port });
    await admin.createTopics([{ name: TOPIC, partitions: PARTITIONS, config: { fsync: "never" } }]);
    if (phases.includes("small")) {
      const config = { fsync: "never" } as const;
      await admin.createTopics([{ name: SMALL_TOPIC, partitions: PARTITIONS, config }]);
    }
    await admin.close();
    const pid = broker.process.pid!;
    if (phases.includes("small")) result["small"] = await publishSmall(pid, broker.port);
    let records = 0;
    if (phases.includes("publish")) {
      result["publish"] = await measured(pid, async () => {
        const published = await publish(broker.port);
        records = published.records;
        return published.mb;
      });
    }
    const consumes = phases.includes("consume") || phases.includes("consume-no-crc");
    if (consumes && records === 0) {
      throw new RangeError("the consume phases need the publish phase first");
    }
    for (const [phase, checkCrcs] of [
      ["consume-no-crc", false],
      ["consume", true],
    ] as const) {
      if (!phases.includes(phase)) continue;
      result[phase] = await measured(pid, () => consume(broker.port, records, checkCrcs));
    }
    // What the allocator kept (MIMALLOC_PURGE_DELAY trades RSS for fewer page faults).
    result["brokerRssMaxMB"] = processRssMaxMB(pid);
    result["clientRssMaxMB"] = processRssMaxMB(process.pid);
  } finally {
    await broker.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  for (const phase of phases) console.error(`[tcp_cpu] ${phase}: ${JSON.stringify(result[phase])}`);
  console.error(
    `[tcp_cpu] rss max MB: broker ${result["brokerRssMaxMB"]}, client ${result["clientRssMaxMB"]}`,
  );
  if (values.json) console.log(JSON.stringify(result));
}

await main();
process.exit(0);

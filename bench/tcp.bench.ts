// bench:tcp: the broker over loopback, client and server in separate processes on one 2-core
// machine. One producer publishes 1 KiB records to 16 partitions with acks=1 for --seconds;
// a consumer then reads everything back from the beginning (catch-up), once with its batch CRC
// checks on (consumeMBps) and once with them off (consumeNoCrcMBps); then 100-byte records go
// through one Producer.send each, null key, for --small-seconds (publish100BRecordsPerSec);
// then records are sent at a fixed --rate and their end-to-end latency measured from the
// moment each was handed to the producer (e2eP*), and also from its scheduled time
// (e2eScheduledP*: coordinated omission corrected, so a stalled sender cannot hide latency; it
// includes the sender's ~1 ms pacing timer). The latency phase runs three times, each sending
// for --warmup-seconds first and measuring only after (steady state: the first second's JIT
// and connection warm-up set the p99 otherwise); e2eP*Ms are the medians of the three runs,
// each run's figures are under latencyRuns. The loopback ceiling (raw bytes between two
// processes) is measured in the same run, and so is the disk's (tcp/disk.ts: dd with O_DIRECT
// in the broker's data directory, the way the broker writes the publish topics and reads what
// the page cache does not hold): publishVsDisk and consumeVsDisk say whether the disk or
// sluice bounds those phases on the machine at hand.
//
// Phase isolation: the publish phases leave gigabytes of dirty page cache, which the kernel
// writes back (and, past its dirty limits, throttles writers for) during whatever runs next.
// Before the latency runs the publish topics are therefore deleted (the broker closes each
// log, flushing and fsyncing what is still dirty of it, before removing its files: their
// writeback is done before the delete answers) and the bench waits, at most
// --drain-seconds-max, for the machine's Dirty + Writeback (/proc/meminfo) to fall to
// --drain-dirty-mb; the figures before and after and the wait are logged and reported under
// `isolation`. Each latency run also reports `cpuPressurePct`, the machine's CPU pressure
// over the run (/proc/pressure/cpu "some": the share of time a runnable task waited for a
// core), so a tail caused by other load on a shared machine is labelled as such. Both are
// absent where /proc lacks them.
// `--isolation off` skips the deletion and the wait (an A/B of the isolation itself).
// GC: under Bun the broker and this client run with sluice's garbage-collector and allocator
// settings (ops/gc_tuning.ts: fewer young-generation collections, so fewer event-loop pauses,
// and fewer page faults); `--gc default` runs both with the runtime's defaults instead (an A/B
// of the settings).
// JSC reads them from the environment at start, so the bench starts itself again with them
// when its own environment differs; the broker inherits the environment. The mode is in the
// JSON under params.gc.
// `--slow-log FILE` writes every measured record of the latency runs that took --slow-ms (2) or
// more end to end, one line each (run, ms since the run's measuring began, latency ms,
// partition; at most SLOW_LOG_ROWS_MAX), to line slow records up against a broker's GC log or
// JIT report (BUN_JSC_logGC=1, BUN_JSC_reportFTLCompileTimes=1) by time; the runs' start times
// are in the file's header lines.
// `--phases latency` runs the latency runs alone (no loopback, publish or consume phases);
// the figures of phases not run are null.
//
//   npm run bench:tcp -- [--seconds 30] [--rate 10000] [--latency-seconds 10]
//                        [--warmup-seconds 1] [--small-seconds 5] [--json]
//                        [--phases publish,consume,small,latency] [--drain-dirty-mb 256]
//                        [--drain-seconds-max 30] [--isolation on|off] [--gc tuned|default]
//                        [--drop-behind on|off|all]   (the broker's; unset: its default)
//                        [--slow-log FILE] [--slow-ms 2] [--disk-bytes 2147483648 | 0]
//   npm run bench:tcp -- --protocol kafka [--mb 256] [--rounds 2] [--json]   (tcp/protocols.ts)
//
// The last stdout line is one JSON object with publishMBps, consumeMBps, consumeNoCrcMBps,
// publish100BRecordsPerSec, e2eP50Ms, e2eP99Ms, e2eP999Ms and loopbackMBps (MB = 10^6 bytes),
// and diskWriteMBps, diskReadMBps, publishVsDisk and consumeVsDisk (null when skipped).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, freemem, release, tmpdir, totalmem } from "node:os";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type GcMode, gcEnvironment, gcModeHolds, parseGcMode } from "../ops/gc_tuning.ts";
import { Admin, Consumer, Producer } from "../protocol/client/mod.ts";
import { BUFFER_BYTES_MAX_DEFAULT } from "../protocol/client/producer.ts";
import { consumeAll } from "./tcp/consume_loop.ts";
import { publishFor } from "./tcp/publish_loop.ts";
import { cpuPressureWindow, type DrainOutcome, waitForWritebackDrain } from "./tcp/isolation.ts";
import { type DiskFigures, measureDisk } from "./tcp/disk.ts";
import { measureLoopbackMBps } from "./tcp/loopback.ts";
import { type Phase, parsePhases } from "./tcp/phases.ts";
import { brokerScript, startChild } from "./tcp/processes.ts";

const RECORD_BYTES = 1024;
const SMALL_RECORD_BYTES = 100;
const PARTITIONS = 16;
const TOPIC = "bench";
const SMALL_TOPIC = "small";
/** Latency phases run, each on its own topic; the reported figures are their medians. */
const LATENCY_RUNS = 3;
/** Slow records a --slow-log keeps over all latency runs; later ones are counted, not kept. */
const SLOW_LOG_ROWS_MAX = 200_000;
/**
 * Records a producer may have unacknowledged before the sender waits. They must fit in the
 * producer's bufferBytesMax (64 MiB) with their batch framing: 64 Ki records of 1 KiB did not,
 * and a broker slow to answer its first requests made send() fail with BUFFER_FULL.
 */
const OUTSTANDING_MAX = 57_344;
/** Bytes of record and batch framing per 1 KiB record, at most (sizeBytes counts them). */
const RECORD_FRAMING_BYTES_MAX = 64;
assert(
  OUTSTANDING_MAX * (RECORD_BYTES + RECORD_FRAMING_BYTES_MAX) <= BUFFER_BYTES_MAX_DEFAULT,
  "the records in flight fit in the producer's buffer",
);

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "30" },
    rate: { type: "string", default: "10000" },
    "latency-seconds": { type: "string", default: "10" },
    "warmup-seconds": { type: "string", default: "1" },
    "small-seconds": { type: "string", default: "5" },
    "loopback-bytes": { type: "string", default: String(4 * 1024 ** 3) },
    // Bytes the disk yardstick (tcp/disk.ts) writes and reads back with O_DIRECT; 0 skips it.
    "disk-bytes": { type: "string", default: String(2 * 1024 ** 3) },
    json: { type: "boolean", default: false },
    phases: { type: "string", default: "publish,consume,small,latency" },
    "drain-dirty-mb": { type: "string", default: "256" },
    "drain-seconds-max": { type: "string", default: "30" },
    // `off`: neither delete the earlier phases' topics nor wait (an A/B of the isolation).
    isolation: { type: "string", default: "on" },
    // `default`: JavaScriptCore's own GC settings instead of sluice's (ops/gc_tuning.ts).
    gc: { type: "string", default: "tuned" },
    // The broker's `--drop-behind` (on, off, all); unset: the broker's default.
    "drop-behind": { type: "string" },
    // Where to write the latency runs' slow records, and the latency (ms) that counts as slow.
    "slow-log": { type: "string" },
    "slow-ms": { type: "string", default: "2" },
    // `kafka`: the same batches through the native and the Kafka listener (tcp/protocols.ts).
    protocol: { type: "string", default: "native" },
    mb: { type: "string", default: "256" },
    rounds: { type: "string", default: "2" },
  },
});

function positive(name: string, text: string | undefined): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`--${name} ${text} is invalid`);
  return value;
}

const log = (message: string) => console.error(`[bench:tcp] ${message}`);

async function publish(port: number, seconds: number): Promise<{ records: number; mbps: number }> {
  const producer = new Producer({ port, acks: 1, lingerMs: 2, batchBytes: 1024 * 1024 });
  const value = new Uint8Array(RECORD_BYTES).fill(42);
  const loop = { producer, topic: TOPIC, value, seconds, outstandingMax: OUTSTANDING_MAX };
  const sent = await publishFor({ ...loop, partitions: PARTITIONS });
  return { records: sent.records, mbps: (sent.records * RECORD_BYTES) / 1e6 / sent.seconds };
}

/** Records of 100 bytes, one Producer.send per record, null key: the per-record client cost. */
async function publishSmall(port: number, seconds: number): Promise<number> {
  const producer = new Producer({ port, acks: 1, lingerMs: 2, batchBytes: 1024 * 1024 });
  const value = new Uint8Array(SMALL_RECORD_BYTES).fill(7);
  const loop = { producer, topic: SMALL_TOPIC, value, seconds, outstandingMax: OUTSTANDING_MAX };
  const sent = await publishFor(loop);
  return sent.records / sent.seconds;
}

/** A consumer of every partition of TOPIC from offset 0: what the catch-up phases read with. */
function catchUpConsumer(port: number, checkCrcs: boolean): Consumer {
  const consumer = new Consumer({
    port,
    maxBytes: 64 * 1024 * 1024,
    partitionMaxBytes: 4 << 20,
    checkCrcs,
  });
  consumer.assign(
    Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: TOPIC, partition, offset: 0 })),
  );
  return consumer;
}

async function catchUpMBps(port: number, records: number, checkCrcs: boolean): Promise<number> {
  const read = await consumeAll({ consumer: catchUpConsumer(port, checkCrcs), records });
  return read.bytes / 1e6 / read.seconds;
}

function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

/** The slow records of every latency run, for --slow-log: one text line each. */
class SlowLog {
  readonly slowMs: number;
  #lines: string[] = [];
  #dropped = 0;

  constructor(slowMs: number) {
    this.slowMs = slowMs;
  }

  run(topic: string, measureStartMs: number): void {
    this.#lines.push(`# ${topic} measuring from ${new Date(measureStartMs).toISOString()}`);
  }

  add(topic: string, sinceMs: number, latencyMs: number, partition: number): void {
    if (this.#lines.length >= SLOW_LOG_ROWS_MAX) {
      this.#dropped++;
      return;
    }
    this.#lines.push(`${topic} ${sinceMs.toFixed(1)} ${latencyMs.toFixed(3)} ${partition}`);
  }

  write(path: string): void {
    const header = `# run msSinceMeasuring latencyMs partition (latency >= ${this.slowMs} ms)`;
    const footer = this.#dropped === 0 ? [] : [`# ${this.#dropped} more not kept`];
    writeFileSync(path, [header, ...this.#lines, ...footer, ""].join("\n"));
  }
}

/**
 * Records at a fixed rate. Each record carries its index and the time it was handed to the
 * producer; latency is measured twice: from that send time (what the broker and client add),
 * and from the record's scheduled time on the fixed-rate schedule (coordinated omission
 * corrected: it also counts the sender's own lateness, including its timer's resolution).
 */
async function latency(
  port: number,
  rate: number,
  timing: { seconds: number; warmupSeconds: number; topic: string },
  slowLog: SlowLog | undefined,
) {
  const { topic } = timing;
  const admin = new Admin({ port });
  await admin.createTopics([{ name: topic, partitions: PARTITIONS, config: { fsync: "never" } }]);
  await admin.close();
  const consumer = new Consumer({ port, maxWaitMs: 100, minBytes: 1 });
  consumer.assign(
    Array.from({ length: PARTITIONS }, (_, partition) => ({ topic, partition, offset: 0 })),
  );
  const producer = new Producer({ port, acks: 1, lingerMs: 0 });
  const pressure = cpuPressureWindow();
  // The first warmupSeconds of records are sent and received but not measured.
  const warmup = Math.round(rate * timing.warmupSeconds);
  const total = warmup + Math.round(rate * timing.seconds);
  const fromSend = new Float64Array(total - warmup);
  const fromSchedule = new Float64Array(total - warmup);
  const start = performance.timeOrigin + performance.now() + 100;
  const scheduled = (i: number) => start + (i * 1000) / rate;
  const measureStart = start + timing.warmupSeconds * 1000;
  slowLog?.run(topic, measureStart);
  let received = 0;
  let measured = 0;
  const receiving = (async () => {
    while (received < total) {
      for (const record of await consumer.poll({ maxWaitMs: 500 })) {
        received++;
        const view = new DataView(record.value!.buffer, record.value!.byteOffset, 16);
        const index = view.getFloat64(8);
        if (index < warmup) continue;
        const now = performance.timeOrigin + performance.now();
        const latencyMs = now - view.getFloat64(0);
        fromSend[measured] = latencyMs;
        if (slowLog !== undefined && latencyMs >= slowLog.slowMs) {
          slowLog.add(topic, now - measureStart, latencyMs, index % PARTITIONS);
        }
        fromSchedule[measured++] = now - scheduled(index);
      }
    }
  })();
  // One buffer for every record: the producer copies a value when send() is called.
  const value = new Uint8Array(RECORD_BYTES);
  const stamp = new DataView(value.buffer);
  for (let i = 0; i < total; ) {
    const now = performance.timeOrigin + performance.now();
    for (; i < total && scheduled(i) <= now; i++) {
      stamp.setFloat64(0, performance.timeOrigin + performance.now());
      stamp.setFloat64(8, i);
      producer.send({ topic, value, partition: i % PARTITIONS }, () => {});
    }
    // tidy: allow-timeout the sender's pacing tick, not a wait for a result
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await receiving;
  await producer.close();
  await consumer.close();
  fromSend.sort();
  fromSchedule.sort();
  return {
    e2eP50Ms: percentile(fromSend, 0.5),
    e2eP99Ms: percentile(fromSend, 0.99),
    e2eP999Ms: percentile(fromSend, 0.999),
    e2eMaxMs: fromSend[fromSend.length - 1]!,
    e2eScheduledP50Ms: percentile(fromSchedule, 0.5),
    e2eScheduledP99Ms: percentile(fromSchedule, 0.99),
    e2eScheduledP999Ms: percentile(fromSchedule, 0.999),
    cpuPressurePct: pressure.pressurePct() ?? null,
  };
}

async function createTopic(port: number, name: string): Promise<void> {
  const admin = new Admin({ port });
  await admin.createTopics([{ name, partitions: PARTITIONS, config: { fsync: "never" } }]);
  await admin.close();
}

/**
 * The disk yardstick in `dir` (the broker's data directory), or undefined when --disk-bytes is
 * 0 or dd cannot write there with O_DIRECT (said on stderr).
 */
async function diskYardstick(dir: string): Promise<DiskFigures | undefined> {
  const bytes = nonNegative("disk-bytes", values["disk-bytes"]);
  if (bytes === 0) return undefined;
  log(`disk: ${(bytes / 2 ** 30).toFixed(1)} GiB with O_DIRECT, one stream then two`);
  try {
    const disk = await measureDisk(dir, bytes);
    log(`disk: write ${disk.writeMBps.toFixed(0)} MB/s, read ${disk.readMBps.toFixed(0)} MB/s`);
    return disk;
  } catch (error) {
    log(`disk: no yardstick (${(error as Error).message})`);
    return undefined;
  }
}

/** The loopback, publish, consume and 100-byte phases that were asked for. */
async function throughputPhases(port: number, phases: Set<Phase>, seconds: number, dir: string) {
  let disk: DiskFigures | undefined;
  const figures: Record<string, number | null> = {
    publishMBps: null,
    publishRecords: null,
    consumeMBps: null,
    consumeNoCrcMBps: null,
    publish100BRecordsPerSec: null,
    loopbackMBps: null,
    publishVsLoopback: null,
    consumeVsLoopback: null,
    diskWriteMBps: null,
    diskReadMBps: null,
    publishVsDisk: null,
    consumeVsDisk: null,
  };
  const written: string[] = [];
  if (phases.has("publish")) {
    const loopbackBytes = positive("loopback-bytes", values["loopback-bytes"]);
    log(`loopback: ${(loopbackBytes / 2 ** 30).toFixed(1)} GiB between two processes`);
    const loopbackMBps = await measureLoopbackMBps(loopbackBytes);
    log(`loopback: ${loopbackMBps.toFixed(0)} MB/s`);
    disk = await diskYardstick(dir);
    await createTopic(port, TOPIC);
    written.push(TOPIC);
    log(`publish: ${seconds} s, 1 KiB records, ${PARTITIONS} partitions, acks=1`);
    const published = await publish(port, seconds);
    log(`publish: ${published.records} records, ${published.mbps.toFixed(0)} MB/s`);
    figures.publishMBps = round(published.mbps);
    figures.publishRecords = published.records;
    figures.loopbackMBps = round(loopbackMBps);
    figures.publishVsLoopback = round(published.mbps / loopbackMBps, 3);
    if (disk !== undefined) {
      figures.diskWriteMBps = round(disk.writeMBps);
      figures.diskReadMBps = round(disk.readMBps);
      figures.publishVsDisk = round(published.mbps / disk.writeMBps, 3);
    }
    if (phases.has("consume")) {
      const consumeMBps = await catchUpMBps(port, published.records, true);
      log(`consume: ${consumeMBps.toFixed(0)} MB/s`);
      const consumeNoCrcMBps = await catchUpMBps(port, published.records, false);
      log(`consume, client CRC checks off: ${consumeNoCrcMBps.toFixed(0)} MB/s`);
      figures.consumeMBps = round(consumeMBps);
      figures.consumeNoCrcMBps = round(consumeNoCrcMBps);
      figures.consumeVsLoopback = round(consumeMBps / loopbackMBps, 3);
      if (disk !== undefined) figures.consumeVsDisk = round(consumeMBps / disk.readMBps, 3);
    }
  }
  if (phases.has("small")) {
    await createTopic(port, SMALL_TOPIC);
    written.push(SMALL_TOPIC);
    const smallSeconds = positive("small-seconds", values["small-seconds"]);
    const publish100BRecordsPerSec = await publishSmall(port, smallSeconds);
    log(`publish, 100-byte records: ${publish100BRecordsPerSec.toFixed(0)} records/s`);
    figures.publish100BRecordsPerSec = Math.round(publish100BRecordsPerSec);
  }
  return { figures, written, disk };
}

/**
 * Deletes the topics the earlier phases wrote and waits (bounded) for the machine's dirty page
 * cache to drain, so their writeback does not land in the latency runs.
 */
async function isolate(port: number, written: string[]): Promise<DrainOutcome | undefined> {
  if (written.length > 0) {
    const admin = new Admin({ port });
    await admin.deleteTopics(written);
    await admin.close();
  }
  const thresholdMB = nonNegative("drain-dirty-mb", values["drain-dirty-mb"]);
  const waitMsMax = nonNegative("drain-seconds-max", values["drain-seconds-max"]) * 1000;
  const outcome = await waitForWritebackDrain({ thresholdMB, waitMsMax });
  if (outcome === undefined) {
    log("isolation: /proc/meminfo not readable, no writeback wait");
    return undefined;
  }
  log(
    `isolation: deleted ${written.join(", ") || "nothing"}; Dirty+Writeback ` +
      `${outcome.dirtyMBBefore.toFixed(0)} MB -> ${outcome.dirtyMBAfter.toFixed(0)} MB in ` +
      `${(outcome.waitedMs / 1000).toFixed(1)} s` +
      (outcome.drained ? "" : ` (not below ${thresholdMB} MB: gave up waiting)`),
  );
  return outcome;
}

async function latencyPhase(
  port: number,
  rate: number,
  timing: { seconds: number; warmupSeconds: number },
  slowLog: SlowLog | undefined,
) {
  const { seconds, warmupSeconds } = timing;
  const latencyRuns = [];
  for (let run = 0; run < LATENCY_RUNS; run++) {
    log(
      `latency ${run + 1}/${LATENCY_RUNS}: ${rate} msg/s, ${warmupSeconds} s unmeasured, ` +
        `then ${seconds} s`,
    );
    const timing = { seconds, warmupSeconds, topic: `latency-${run}` };
    const figures = await latency(port, rate, timing, slowLog);
    log(
      `latency: p50 ${figures.e2eP50Ms.toFixed(2)} ms, p99 ${figures.e2eP99Ms.toFixed(2)} ms, ` +
        `CPU pressure ${figures.cpuPressurePct?.toFixed(0) ?? "-"}%`,
    );
    latencyRuns.push(figures);
  }
  return latencyRuns;
}

function isBun(): boolean {
  return (process.versions as Record<string, string | undefined>)["bun"] !== undefined;
}

/**
 * Under Bun, when this process's environment does not carry the GC mode asked for, runs the
 * bench again in a child that does (JSC reads its options only at start) and resolves to its
 * exit code; undefined when this process already runs as asked (or under Deno).
 */
function relaunchedFor(mode: GcMode): Promise<number> | undefined {
  if (!isBun()) return;
  if (gcModeHolds(process.env, mode)) return;
  const env = gcEnvironment(process.env, mode);
  const child = spawn(process.execPath, process.argv.slice(1), { stdio: "inherit", env });
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
  });
}

async function main(): Promise<void> {
  const gc = parseGcMode(values.gc);
  const relaunched = relaunchedFor(gc);
  if (relaunched !== undefined) {
    process.exitCode = await relaunched;
    return;
  }
  if (values.protocol === "kafka") {
    const { runProtocols } = await import("./tcp/protocols.ts");
    const mb = positive("mb", values.mb);
    const rounds = positive("rounds", values.rounds);
    const figures = await runProtocols({ mb, rounds: Math.ceil(rounds) });
    for (const [key, value] of Object.entries(figures)) log(`${key}: ${value}`);
    console.log(JSON.stringify(figures));
    return;
  }
  if (values.protocol !== "native") {
    throw new RangeError(`--protocol ${values.protocol} is not native or kafka`);
  }
  const phases = parsePhases(values.phases);
  if (values.isolation !== "on" && values.isolation !== "off") {
    throw new RangeError(`--isolation ${values.isolation} is not on or off`);
  }
  const dropBehind = values["drop-behind"];
  if (dropBehind !== undefined && !["on", "off", "all"].includes(dropBehind)) {
    throw new RangeError(`--drop-behind ${dropBehind} is not on, off or all`);
  }
  const seconds = positive("seconds", values.seconds);
  const rate = positive("rate", values.rate);
  const latencySeconds = positive("latency-seconds", values["latency-seconds"]);
  const warmupSeconds = nonNegative("warmup-seconds", values["warmup-seconds"]);
  const slowMs = nonNegative("slow-ms", values["slow-ms"]);
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-bench-tcp-"));
  try {
    const brokerFlags = dropBehind === undefined ? [] : ["--drop-behind", dropBehind];
    const broker = await startChild(brokerScript, [
      "serve",
      "--data",
      dataDir,
      "--port",
      "0",
      ...brokerFlags,
    ]);
    try {
      const { figures, written, disk } = await throughputPhases(
        broker.port,
        phases,
        seconds,
        dataDir,
      );
      let latencies: Record<string, number | null> = {};
      let latencyRuns: Record<string, number | boolean | null>[] = [];
      let isolation: DrainOutcome | undefined;
      if (phases.has("latency")) {
        if (values.isolation === "on") isolation = await isolate(broker.port, written);
        else log("isolation: off (earlier phases' topics kept, no writeback wait)");
        const slowLogPath = values["slow-log"];
        const slowLog = slowLogPath === undefined ? undefined : new SlowLog(slowMs);
        const timing = { seconds: latencySeconds, warmupSeconds };
        const runs = await latencyPhase(broker.port, rate, timing, slowLog);
        if (slowLogPath !== undefined) slowLog?.write(slowLogPath);
        latencies = medians(runs);
        latencyRuns = runs.map(roundedAll);
      }
      const result = {
        benchmark: "bench:tcp",
        date: new Date().toISOString(),
        machine: {
          cpus: cpus().length,
          model: cpus()[0]?.model,
          memoryBytes: totalmem(),
          freeMemoryBytes: freemem(),
          kernel: release(),
          runtime: `bun ${(process.versions as Record<string, string | undefined>)["bun"] ?? "-"}`,
        },
        params: {
          phases: [...phases],
          seconds,
          rate,
          latencySeconds,
          warmupSeconds,
          latencyRuns: LATENCY_RUNS,
          smallSeconds: Number(values["small-seconds"]),
          recordBytes: RECORD_BYTES,
          smallRecordBytes: SMALL_RECORD_BYTES,
          partitions: PARTITIONS,
          // JSC's settings apply under Bun only.
          gc: isBun() ? gc : null,
          dropBehind: dropBehind ?? null,
          slowLog: values["slow-log"] ?? null,
          slowMs,
        },
        ...figures,
        ...roundedAll(latencies),
        latencyRuns,
        isolation: isolation === undefined ? null : roundedAll(isolation),
        disk: disk ?? null,
      };
      console.log(JSON.stringify(result));
    } finally {
      await broker.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function nonNegative(name: string, text: string | undefined): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`--${name} ${text} is invalid`);
  return value;
}

function round(value: number, digits = 1): number {
  return Number(value.toFixed(digits));
}

function roundedAll(
  figures: Record<string, number | boolean | null | undefined>,
): Record<string, number | boolean | null> {
  return Object.fromEntries(
    Object.entries(figures).map(([k, v]) => [k, typeof v === "number" ? round(v, 3) : (v ?? null)]),
  );
}

/** Each figure's median over the runs (the middle one of three); null where a run lacks it. */
function medians(runs: Record<string, number | null>[]): Record<string, number | null> {
  const first = runs[0]!;
  const out: Record<string, number | null> = {};
  for (const key of Object.keys(first)) {
    const known = runs.map((run) => run[key]).filter((v): v is number => typeof v === "number");
    known.sort((a, b) => a - b);
    out[key] = known.length === runs.length ? known[Math.floor(known.length / 2)]! : null;
  }
  return out;
}

await main();
process.exit(0);

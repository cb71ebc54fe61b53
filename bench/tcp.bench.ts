// bench:tcp: the broker over loopback, client and server in separate processes on one 2-core
// machine. One producer publishes 1 KiB records to 16 partitions with acks=1 for --seconds;
// a consumer then reads everything back from the beginning (catch-up); then records are sent
// at a fixed --rate and their end-to-end latency measured from the moment each was handed to
// the producer (e2eP*), and also from its scheduled time (e2eScheduledP*: coordinated omission
// corrected, so a stalled sender cannot hide latency; it includes the sender's ~1 ms pacing
// timer). The loopback ceiling (raw bytes between two processes) is measured in the same run.
//
//   npm run bench:tcp -- [--seconds 30] [--rate 10000] [--latency-seconds 10] [--json]
//   npm run bench:tcp -- --protocol kafka [--mb 256] [--rounds 2] [--json]   (tcp/protocols.ts)
//
// The last stdout line is one JSON object with publishMBps, consumeMBps, e2eP50Ms, e2eP99Ms,
// e2eP999Ms and loopbackMBps (MB = 10^6 bytes).

import { mkdtempSync, rmSync } from "node:fs";
import { cpus, freemem, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Admin, Consumer, Producer } from "../protocol/client/mod.ts";
import { measureLoopbackMBps } from "./tcp/loopback.ts";
import { brokerScript, startChild } from "./tcp/processes.ts";

const RECORD_BYTES = 1024;
const PARTITIONS = 16;
const TOPIC = "bench";
/** Records a producer may have unacknowledged before the sender waits. */
const OUTSTANDING_MAX = 65_536;

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "30" },
    rate: { type: "string", default: "10000" },
    "latency-seconds": { type: "string", default: "10" },
    "loopback-bytes": { type: "string", default: String(4 * 1024 ** 3) },
    json: { type: "boolean", default: false },
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
  let outstanding = 0;
  let acked = 0;
  let failed: Error | undefined;
  let wake: (() => void) | undefined;
  const done = (error: Error | null) => {
    outstanding--;
    if (error === null) acked++;
    else failed ??= error;
    if (wake !== undefined && outstanding < OUTSTANDING_MAX / 2) {
      wake();
      wake = undefined;
    }
  };
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let partition = 0;
  while (performance.now() < deadline && failed === undefined) {
    for (let i = 0; i < 1024; i++) {
      outstanding++;
      producer.send({ topic: TOPIC, value, partition }, done);
      partition = (partition + 1) % PARTITIONS;
    }
    if (outstanding >= OUTSTANDING_MAX) await new Promise<void>((resolve) => (wake = resolve));
    else await new Promise((resolve) => setImmediate(resolve));
  }
  await producer.flush();
  const elapsed = (performance.now() - started) / 1000;
  await producer.close();
  if (failed !== undefined) throw failed;
  return { records: acked, mbps: (acked * RECORD_BYTES) / 1e6 / elapsed };
}

async function consumeAll(port: number, records: number): Promise<number> {
  const consumer = new Consumer({ port, maxBytes: 64 * 1024 * 1024, partitionMaxBytes: 4 << 20 });
  consumer.assign(
    Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: TOPIC, partition, offset: 0 })),
  );
  let received = 0;
  let bytes = 0;
  const started = performance.now();
  while (received < records) {
    for (const record of await consumer.poll({ maxWaitMs: 1000 })) {
      received++;
      bytes += record.value?.length ?? 0;
    }
  }
  const elapsed = (performance.now() - started) / 1000;
  await consumer.close();
  return bytes / 1e6 / elapsed;
}

function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

/**
 * Records at a fixed rate. Each record carries its index and the time it was handed to the
 * producer; latency is measured twice: from that send time (what the broker and client add),
 * and from the record's scheduled time on the fixed-rate schedule (coordinated omission
 * corrected: it also counts the sender's own lateness, including its timer's resolution).
 */
async function latency(port: number, rate: number, seconds: number) {
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
  const total = Math.round(rate * seconds);
  const fromSend = new Float64Array(total);
  const fromSchedule = new Float64Array(total);
  const start = performance.timeOrigin + performance.now() + 100;
  const scheduled = (i: number) => start + (i * 1000) / rate;
  let received = 0;
  const receiving = (async () => {
    while (received < total) {
      for (const record of await consumer.poll({ maxWaitMs: 500 })) {
        const view = new DataView(record.value!.buffer, record.value!.byteOffset, 16);
        const now = performance.timeOrigin + performance.now();
        fromSend[received] = now - view.getFloat64(0);
        fromSchedule[received++] = now - scheduled(view.getFloat64(8));
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
      producer.send({ topic: "latency", value, partition: i % PARTITIONS }, () => {});
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
  };
}

async function main(): Promise<void> {
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
  const seconds = positive("seconds", values.seconds);
  const rate = positive("rate", values.rate);
  const latencySeconds = positive("latency-seconds", values["latency-seconds"]);
  const loopbackBytes = positive("loopback-bytes", values["loopback-bytes"]);
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-bench-tcp-"));
  try {
    log(`loopback: ${(loopbackBytes / 2 ** 30).toFixed(1)} GiB between two processes`);
    const loopbackMBps = await measureLoopbackMBps(loopbackBytes);
    log(`loopback: ${loopbackMBps.toFixed(0)} MB/s`);
    const broker = await startChild(brokerScript, ["serve", "--data", dataDir, "--port", "0"]);
    try {
      const admin = new Admin({ port: broker.port });
      await admin.createTopics([
        { name: TOPIC, partitions: PARTITIONS, config: { fsync: "never" } },
      ]);
      await admin.close();
      log(`publish: ${seconds} s, 1 KiB records, ${PARTITIONS} partitions, acks=1`);
      const published = await publish(broker.port, seconds);
      log(`publish: ${published.records} records, ${published.mbps.toFixed(0)} MB/s`);
      const consumeMBps = await consumeAll(broker.port, published.records);
      log(`consume: ${consumeMBps.toFixed(0)} MB/s`);
      log(`latency: ${rate} msg/s for ${latencySeconds} s`);
      const latencies = await latency(broker.port, rate, latencySeconds);
      log(
        `latency: p50 ${latencies.e2eP50Ms.toFixed(2)} ms, p99 ${latencies.e2eP99Ms.toFixed(2)} ms`,
      );
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
          seconds,
          rate,
          latencySeconds,
          recordBytes: RECORD_BYTES,
          partitions: PARTITIONS,
        },
        publishMBps: round(published.mbps),
        publishRecords: published.records,
        consumeMBps: round(consumeMBps),
        ...Object.fromEntries(Object.entries(latencies).map(([k, v]) => [k, round(v, 3)])),
        loopbackMBps: round(loopbackMBps),
        publishVsLoopback: round(published.mbps / loopbackMBps, 3),
        consumeVsLoopback: round(consumeMBps / loopbackMBps, 3),
      };
      console.log(JSON.stringify(result));
    } finally {
      await broker.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function round(value: number, digits = 1): number {
  return Number(value.toFixed(digits));
}

await main();
process.exit(0);

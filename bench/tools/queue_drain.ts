// A queue consumer probe, outside the harness: how fast competing QueueConsumers drain a queue
// over TCP when each message is accepted on its own (the consume side of `queue-1kb` alone).
// It starts `sluice serve` as a child process (or uses --url), fills a topic, declares a queue
// from its beginning, then runs the consumers in this process until every record is accepted
// (each accept confirmed durable: the queue's default fsync). Prints one JSON line, with the
// CPU the drain cost per accepted record in this process and (Linux, own broker) in the broker:
// on a shared machine CPU per record moves less with the load than records per second do.
// `brokerWritesPerRecord` is the broker's socket writes (Stats `socketWrites`) per accepted
// record over the drain, publishing included when --rate is given; `brokerWritesPerAnswer` the
// same writes per request served meanwhile (below 1 when answers share writes).
//
//   bun bench/tools/queue_drain.ts [--records 200000] [--partitions 16] [--size 1024]
//       [--consumers 4] [--max-records 250] [--fetches-in-flight 1] [--ack-flush-ms 1]
//       [--piggyback 1|0] [--rate 0] [--warmup-s 0]
//
// --rate N > 0 publishes N records a second while the consumers run, instead of filling the
// topic first: the ack latency at a given rate (the "ack p99 at half the max rate").
// --warmup-s N leaves out of the ack latencies the accepts made in the first N seconds of the
// drain (connections opening, code not yet compiled), as the harness's warm-up does.
//       [--url HOST:PORT [--broker-pid PID]]
//
// For an A/B of a client setting, alternate runs (a fresh broker each), e.g.:
//   for i in 1 2 3; do for f in 1 2; do
//     bun bench/tools/queue_drain.ts --fetches-in-flight $f; done; done

import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Admin, Producer, QueueConsumer } from "../../protocol/client/mod.ts";
import { LatencyHistogram } from "../histogram.ts";
import { brokerScript, type Child, startChild } from "../tcp/processes.ts";

const { values } = parseArgs({
  options: {
    records: { type: "string", default: "200000" },
    partitions: { type: "string", default: "16" },
    size: { type: "string", default: "1024" },
    consumers: { type: "string", default: "4" },
    "max-records": { type: "string", default: "250" },
    "fetches-in-flight": { type: "string", default: "1" },
    "ack-flush-ms": { type: "string", default: "1" },
    piggyback: { type: "string", default: "1" },
    rate: { type: "string", default: "0" },
    "warmup-s": { type: "string", default: "0" },
    url: { type: "string" },
    "broker-pid": { type: "string" },
  },
});

function integer(name: keyof typeof values, min: number, max: number): number {
  const value = Number(values[name]);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`--${name} ${values[name]} is not an integer in [${min}, ${max}]`);
  }
  return value;
}

const records = integer("records", 1, 100_000_000);
const partitions = integer("partitions", 1, 10_000);
const sizeBytes = integer("size", 1, 1_000_000);
const consumerCount = integer("consumers", 1, 1_000);
const maxRecords = integer("max-records", 1, 100_000);
const fetchesInFlight = integer("fetches-in-flight", 1, 16);
const ackFlushMs = integer("ack-flush-ms", 0, 1_000);
const piggybackAcks = integer("piggyback", 0, 1) === 1;
const ratePerSecond = integer("rate", 0, 10_000_000);
const warmupMs = integer("warmup-s", 0, 3_600) * 1000;
/** A paced producer sends what is due this often. */
const PACE_TICK_MS = 5;
/** The drain gives up after this long without an accept. */
const IDLE_MS_MAX = 10_000;

async function fill(client: { host: string; port: number }, topic: string): Promise<void> {
  // Batches of about 16 records, as a producer's per-partition batches are at ~100 k msg/s
  // over 16 partitions: a fetch sends whole batches, so their size is part of what it costs.
  const producer = new Producer({ ...client, acks: 1, lingerMs: 1, batchBytes: 16 * 1024 });
  const value = new Uint8Array(sizeBytes);
  const window = 10_000;
  let sent = 0;
  while (sent < records) {
    const count = Math.min(window, records - sent);
    await Promise.all(Array.from({ length: count }, () => producer.send({ topic, value })));
    sent += count;
  }
  await producer.close();
}

/** CPU milliseconds (user + system) a process has used so far, from /proc (Linux only). */
function processCpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which ends at the last ")": utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

/** Linux's USER_HZ, the unit of /proc/PID/stat's times, on every architecture sluice runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

function ownCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** Publishes `records` at `ratePerSecond`, sending what is due every PACE_TICK_MS. */
async function paced(client: { host: string; port: number }, topic: string): Promise<void> {
  const producer = new Producer({ ...client, acks: 1, lingerMs: 1, batchBytes: 16 * 1024 });
  const value = new Uint8Array(sizeBytes);
  const sends: Promise<unknown>[] = [];
  const startMs = performance.now();
  while (sends.length < records) {
    const due = Math.min(
      records,
      Math.ceil(((performance.now() - startMs) * ratePerSecond) / 1000),
    );
    while (sends.length < due) sends.push(producer.send({ topic, value }));
    await new Promise((resolve) => setTimeout(resolve, PACE_TICK_MS));
  }
  await Promise.all(sends);
  await producer.close();
}

async function drain(
  client: { host: string; port: number },
  queue: string,
  brokerPid: number | undefined,
) {
  const ackLatency = new LatencyHistogram();
  let accepted = 0;
  let polls = 0;
  let lastAcceptMs = performance.now();
  let done!: () => void;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const consumers = Array.from(
    { length: consumerCount },
    () =>
      new QueueConsumer({
        ...client,
        queue,
        maxRecords,
        fetchesInFlight,
        ackFlushMs,
        piggybackAcks,
        maxWaitMs: 100,
      }),
  );
  const startMs = performance.now();
  const cpuBefore = { own: ownCpuMs(), broker: processCpuMs(brokerPid) };
  const loops = consumers.map(async (consumer) => {
    while (accepted < records && performance.now() - lastAcceptMs < IDLE_MS_MAX) {
      const messages = await consumer.poll();
      polls++;
      for (const message of messages) {
        const acceptMs = performance.now();
        const measured = acceptMs - startMs >= warmupMs;
        message.accept().then(() => {
          lastAcceptMs = performance.now();
          if (measured) ackLatency.recordMs(lastAcceptMs - acceptMs);
          if (++accepted === records) done();
        });
      }
    }
  });
  await Promise.race([finished, Promise.all(loops)]);
  const seconds = (performance.now() - startMs) / 1000;
  const brokerCpuAfter = processCpuMs(brokerPid);
  const cpuMs = {
    own: ownCpuMs() - cpuBefore.own,
    broker:
      brokerCpuAfter === null || cpuBefore.broker === null
        ? null
        : brokerCpuAfter - cpuBefore.broker,
  };
  await Promise.all(consumers.map((consumer) => consumer.close()));
  await Promise.all(loops);
  return { accepted, polls, seconds, ackLatency, cpuMs };
}

function requestsServed(stats: { requests: Record<string, unknown> }): number {
  let served = 0;
  for (const count of Object.values(stats.requests)) served += Number(count);
  return served;
}

function perRecordUs(cpuMs: number, accepted: number): number | null {
  return accepted === 0 ? null : Number(((cpuMs * 1000) / accepted).toFixed(2));
}

async function main(): Promise<void> {
  let child: Child | undefined;
  const dataDir = fs.mkdtempSync(join(os.tmpdir(), "sluice-queue-drain-"));
  try {
    let client: { host: string; port: number };
    if (values.url === undefined) {
      child = await startChild(brokerScript, ["serve", "--data", dataDir, "--port", "0"]);
      client = { host: "127.0.0.1", port: child.port };
    } else {
      const at = values.url.lastIndexOf(":");
      client = { host: values.url.slice(0, at), port: Number(values.url.slice(at + 1)) };
    }
    const admin = new Admin(client);
    const topic = `drain-${process.pid}`;
    await admin.createTopics([{ name: topic, partitions }]);
    await admin.declareQueue(topic, { topic, from: "beginning" });
    if (ratePerSecond === 0) await fill(client, topic);
    const brokerPid =
      child?.process.pid ??
      (values["broker-pid"] === undefined ? undefined : integer("broker-pid", 1, 2 ** 31));
    // The broker's socket writes during the drain (and the paced publishing beside it).
    const statsBefore = await admin.stats();
    const [{ accepted, polls, seconds, ackLatency, cpuMs }] = await Promise.all([
      drain(client, topic, brokerPid),
      ratePerSecond === 0 ? undefined : paced(client, topic),
    ]);
    const statsAfter = await admin.stats();
    const brokerWrites =
      statsBefore.socketWrites === undefined || statsAfter.socketWrites === undefined
        ? null
        : statsAfter.socketWrites - statsBefore.socketWrites;
    // Requests served meanwhile (the Stats request before included): what the writes answered.
    const answered = requestsServed(statsAfter) - requestsServed(statsBefore);
    await admin.deleteTopics([topic]);
    await admin.close();
    const summary = ackLatency.summary();
    console.log(
      JSON.stringify({
        records,
        partitions,
        sizeBytes,
        consumers: consumerCount,
        maxRecords,
        fetchesInFlight,
        ackFlushMs,
        piggybackAcks,
        ratePerSecond,
        warmupS: warmupMs / 1000,
        accepted,
        recordsPerPoll: Number((accepted / Math.max(1, polls)).toFixed(1)),
        seconds: Number(seconds.toFixed(3)),
        acceptedPerSecond: Math.round(accepted / seconds),
        ackP50Ms: summary.p50Ms,
        ackP90Ms: ackLatency.percentileMs(90),
        ackP99Ms: summary.p99Ms,
        ackP999Ms: summary.p999Ms,
        clientCpuUsPerRecord: perRecordUs(cpuMs.own, accepted),
        brokerCpuUsPerRecord: cpuMs.broker === null ? null : perRecordUs(cpuMs.broker, accepted),
        brokerWritesPerRecord:
          brokerWrites === null ? null : Number((brokerWrites / accepted).toFixed(3)),
        brokerWritesPerAnswer:
          brokerWrites === null ? null : Number((brokerWrites / Math.max(1, answered)).toFixed(3)),
      }),
    );
  } finally {
    await child?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();

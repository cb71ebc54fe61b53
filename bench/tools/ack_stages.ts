// Where an accept's time goes, from `message.accept()` to its promise resolving, on the
// queue-1kb shape at a fixed rate. A broker runs in a worker thread (_ack_stages_broker.ts:
// its own event loop, stamping each accepted record's ack when applied, durable and told);
// producers run in another (_ack_stages_producer.ts, acks all); this thread runs the
// QueueConsumers set as the harness's sluice driver sets them (maxRecords 1000, ackFlushMs 1,
// one fetch in flight, piggy-backed acks, maxWaitMs 100) and answers every message with an
// accept at once. Per accepted record (linked by partition and offset):
//
//   accept() ─send─► applied ─commit─► durable ─tell─► told ─confirm─► promise resolved
//      send:    the batcher's wait (the next fetch, or the ackFlushMs timer), the request on
//               the wire, and the broker reading it
//      commit:  the queue state log's group commit: waiting for an fdatasync slot, the
//               write, the fdatasync(s), the broker's loop running the continuation
//      tell:    waiting for an answer on the connection to carry acks_durable_through
//      confirm: the answer on the wire, the consumer reading it, the promise chain
//   (a v1 QueueAck's answer leaves once durable: its records have no `told`, and tell +
//    confirm are one stage, `answer`)
//
// Prints one JSON line: per stage p50/p99/max (ms), the median of each stage over the
// slowest 1 % of accepts, the queue state log's commit fdatasyncs (p50/p99, ms) and the
// broker and consumer event loops' lateness (p99/max of a 1 ms timer's delay, ms).
//
//   bun bench/tools/ack_stages.ts [--rate 10000] [--seconds 10] [--warmup-s 3]
//       [--partitions 16] [--consumers 4] [--producers 4] [--size 1024] [--ack-flush-ms 1]
//       [--max-records 1000] [--compact-after-bytes N] [--spare-bytes-max N]
//       [--fetch-ack-wait-ms N] [--fetches-in-flight N] [--syncs-in-flight N]
//
// --fetch-ack-wait-ms sets the broker's queueFetchAckWaitMs (0: a v2 fetch answers without
// waiting for its acks' fdatasync; absent: the broker's default, 0).
//
// --spare-bytes-max sets the engine's queueSpareBytesMax (0: no spare generations).
// --syncs-in-flight sets the engine's queueSyncsInFlight (absent: its default).
// A short run may never compact the state log at the default threshold (4 MiB):
// --compact-after-bytes sets the engine's queueCompactAfterBytes, so that the generations a
// long run lives in (and their spares) show in a short one.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Admin, QueueConsumer } from "../../protocol/client/mod.ts";

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "10000" },
    seconds: { type: "string", default: "10" },
    "warmup-s": { type: "string", default: "3" },
    partitions: { type: "string", default: "16" },
    consumers: { type: "string", default: "4" },
    producers: { type: "string", default: "4" },
    size: { type: "string", default: "1024" },
    "ack-flush-ms": { type: "string", default: "1" },
    "max-records": { type: "string", default: "1000" },
    "compact-after-bytes": { type: "string" },
    "spare-bytes-max": { type: "string" },
    "syncs-in-flight": { type: "string" },
    "fetch-ack-wait-ms": { type: "string" },
    "fetches-in-flight": { type: "string" },
  },
});

function integer(name: keyof typeof values, min: number, max: number): number {
  const value = Number(values[name]);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`--${name} ${values[name]} is not an integer in [${min}, ${max}]`);
  }
  return value;
}

const rate = integer("rate", 1, 1_000_000);
const seconds = integer("seconds", 1, 60);
const warmupMs = integer("warmup-s", 0, 60) * 1000;
const partitions = integer("partitions", 1, 256);
const consumerCount = integer("consumers", 1, 64);
const producerCount = integer("producers", 1, 64);
const size = integer("size", 1, 1024 * 1024);
const ackFlushMs = integer("ack-flush-ms", 0, 1000);
const maxRecords = integer("max-records", 1, 10_000);
/** The queue state log's compaction threshold (absent: the engine's default, 4 MiB). */
const compactAfterBytes =
  values["compact-after-bytes"] === undefined
    ? undefined
    : integer("compact-after-bytes", 1024, 1024 * 1024 * 1024);
const syncsInFlight =
  values["syncs-in-flight"] === undefined ? undefined : integer("syncs-in-flight", 1, 8);
const spareBytesMax =
  values["spare-bytes-max"] === undefined
    ? undefined
    : integer("spare-bytes-max", 0, 256 * 1024 * 1024);
/** The consumers' fetchesInFlight (absent: the QueueConsumer's default). */
const fetchesInFlight =
  values["fetches-in-flight"] === undefined ? undefined : integer("fetches-in-flight", 1, 16);
const fetchAckWaitMs =
  values["fetch-ack-wait-ms"] === undefined ? undefined : integer("fetch-ack-wait-ms", 0, 1_000);
const OFFSET_SPAN = 2 ** 32;
const nowMs = () => performance.timeOrigin + performance.now();

/** Per accepted record: [accept() called, its promise resolved]. */
const accepts = new Map<number, [number, number]>();
const consumerLagMs: number[] = [];

function spawn(file: string): { worker: Worker; ask<T>(message: unknown): Promise<T> } {
  const worker = new Worker(new URL(file, import.meta.url).href, { type: "module" });
  return {
    worker,
    ask: <T>(message: unknown) =>
      new Promise<T>((resolve) => {
        worker.onmessage = (event: MessageEvent) => resolve(event.data as T);
        worker.postMessage(message);
      }),
  };
}

function consume(port: number, until: () => boolean): Promise<void>[] {
  return Array.from({ length: consumerCount }, async () => {
    const consumer = new QueueConsumer({
      host: "127.0.0.1",
      port,
      queue: "work",
      maxRecords,
      ackFlushMs,
      ...(fetchesInFlight === undefined ? {} : { fetchesInFlight }),
      piggybackAcks: true,
      maxWaitMs: 100,
    });
    while (!until()) {
      for (const message of await consumer.poll()) {
        const key = message.partition * OFFSET_SPAN + message.offset;
        const stamp: [number, number] = [nowMs(), Number.NaN];
        accepts.set(key, stamp);
        message.accept().then(
          () => {
            stamp[1] = nowMs();
          },
          () => undefined,
        );
      }
    }
    await consumer.close();
  });
}

const dataDir = mkdtempSync(join(tmpdir(), "sluice-ack-stages-"));
const broker = spawn("./_ack_stages_broker.ts");
const producer = spawn("./_ack_stages_producer.ts");
try {
  const { port } = await broker.ask<{ port: number }>({
    dataDir,
    compactAfterBytes,
    spareBytesMax,
    syncsInFlight,
    fetchAckWaitMs,
  });
  const admin = new Admin({ host: "127.0.0.1", port });
  await admin.createTopics([{ name: "jobs", partitions }]);
  await admin.declareQueue("work", { topic: "jobs", from: "beginning" });
  const total = rate * seconds;
  let last = performance.now();
  const lagTimer = setInterval(() => {
    const now = performance.now();
    consumerLagMs.push(Math.max(0, now - last - 1));
    last = now;
  }, 1);
  const startMs = nowMs();
  const loops = consume(port, () => {
    let resolved = 0;
    for (const [, done] of accepts.values()) if (!Number.isNaN(done)) resolved++;
    return resolved >= total;
  });
  const { sent } = await producer.ask<{ sent: number }>({
    port,
    topic: "jobs",
    rate,
    seconds,
    size,
    producers: producerCount,
  });
  await Promise.all(loops);
  clearInterval(lagTimer);
  const stats = await admin.listQueues(["work"]);
  await admin.close();
  const report = await broker.ask<BrokerReport>({ report: true });
  summarize(report, { sent, startMs, accepted: stats[0]?.stats.accepted ?? 0 });
} finally {
  await broker.ask({ close: true });
  broker.worker.terminate();
  producer.worker.terminate();
  rmSync(dataDir, { recursive: true, force: true });
}

/** The broker worker's answer to `{ report: true }`: per-ack stamps and its own figures. */
type BrokerReport = {
  stamps: [number, number, number | null, number | null][];
  fsyncMs: number[];
  lagMs: number[];
  stateLog: {
    writes?: number;
    fsyncs?: number;
    slotWaits?: number;
    slotWaitMsTotal?: number;
    slotWaitMsMax?: number;
  };
};

function quantile(list: number[], p: number): number | null {
  const sorted = list.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const value = sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  return value === undefined ? null : Math.round(value * 1000) / 1000;
}

function summarize(
  report: BrokerReport,
  run: { sent: number; startMs: number; accepted: number },
): void {
  const measuredFrom = run.startMs + warmupMs;
  const rows: Record<string, number>[] = [];
  for (const [key, applied, durable, told] of report.stamps) {
    const accept = accepts.get(key);
    if (accept === undefined || durable === null || accept[0] < measuredFrom) continue;
    const [acceptMs, resolvedMs] = accept;
    const row: Record<string, number> = {
      total: resolvedMs - acceptMs,
      send: applied - acceptMs,
      commit: durable - applied,
    };
    if (told === null) row["answer"] = resolvedMs - durable;
    else {
      row["tell"] = told - durable;
      row["confirm"] = resolvedMs - told;
    }
    rows.push(row);
  }
  const names = ["total", "send", "commit", "tell", "confirm", "answer"];
  const summary: Record<string, unknown> = {
    rate,
    seconds,
    compactAfterBytes: compactAfterBytes ?? null,
    spareBytesMax: spareBytesMax ?? null,
    syncsInFlight: syncsInFlight ?? null,
    fetchAckWaitMs: fetchAckWaitMs ?? null,
    fetchesInFlight: fetchesInFlight ?? null,
    sent: run.sent,
    accepted: run.accepted,
    measured: rows.length,
    viaV1QueueAck: rows.filter((row) => row["answer"] !== undefined).length,
  };
  for (const name of names) {
    const list = rows.map((row) => row[name]).filter((x): x is number => x !== undefined);
    summary[name] = { p50: quantile(list, 0.5), p99: quantile(list, 0.99), max: quantile(list, 1) };
  }
  const p99 = quantile(
    rows.map((row) => row["total"]!),
    0.99,
  );
  const slow = rows.filter((row) => row["total"]! >= (p99 ?? 0));
  const slowest: Record<string, number | null> = { n: slow.length };
  for (const name of names) {
    const list = slow.map((row) => row[name]).filter((x): x is number => x !== undefined);
    slowest[name] = quantile(list, 0.5);
  }
  summary["slowest1pctMedians"] = slowest;
  summary["stateLogFsyncMs"] = {
    n: report.fsyncMs.length,
    p50: quantile(report.fsyncMs, 0.5),
    p99: quantile(report.fsyncMs, 0.99),
  };
  // The state log's writes, fdatasyncs and slot waits over the whole run (warm-up included).
  summary["stateLog"] = report.stateLog;
  summary["brokerLoopLateMs"] = {
    p99: quantile(report.lagMs, 0.99),
    max: quantile(report.lagMs, 1),
  };
  summary["consumerLoopLateMs"] = {
    p99: quantile(consumerLagMs, 0.99),
    max: quantile(consumerLagMs, 1),
  };
  console.log(JSON.stringify(summary));
}

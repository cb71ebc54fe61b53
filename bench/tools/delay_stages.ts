// Where delayed records spend their lateness over TCP. A broker runs in a worker thread
// (_delay_stages_broker.ts: its own event loop, stamping when each record became readable in
// the topic and in the queue's due log); this thread publishes records with `sluice-delay-ms`
// (uniform 0..--delay-ms-max, producer acks all, as the harness's delayed-1kb) and consumes
// them with QueueConsumers set as the harness's sluice driver sets them. Per record:
//
//   send ─publish─► readable in topic ─(delay tiers)─► readable in due log ─deliver─► received
//                                          moved late = due-log time − due time
//
// due = send time + delay (the record's timestamp + its header, as the queue reads it). A record
// whose due time passed before it was readable in the topic is served from the topic itself.
// Prints per stage p50/p99/max over all records and the median stage of the slowest 1 %.
//
//   bun bench/tools/delay_stages.ts [--rate 1000] [--seconds 10] [--delay-ms-max 3000]
//       [--consumers 2] [--max-wait-ms 100] [--piggyback 1|0] [--size 1024]
//       [--queue-fsync always|never]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Admin, Producer, QueueConsumer } from "../../protocol/client/mod.ts";

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "1000" },
    seconds: { type: "string", default: "10" },
    "delay-ms-max": { type: "string", default: "3000" },
    consumers: { type: "string", default: "2" },
    "max-wait-ms": { type: "string", default: "100" },
    piggyback: { type: "string", default: "1" },
    size: { type: "string", default: "1024" },
    "queue-fsync": { type: "string", default: "always" },
  },
});
const num = (name: keyof typeof values) => {
  const value = Number(values[name]);
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`--${name} ${values[name]}`);
  return value;
};
const rate = num("rate");
const seconds = num("seconds");
const delayMsMax = num("delay-ms-max");
const consumerCount = num("consumers");
const maxWaitMs = num("max-wait-ms");
const piggybackAcks = num("piggyback") === 1;
const value = new Uint8Array(num("size")).fill(97);

type Stage = { sendMs: number; delayMs: number; receivedMs?: number; partition?: number };
const stages = new Map<string, Stage>();
const dataDir = mkdtempSync(join(tmpdir(), "sluice-delay-stages-"));
const worker = new Worker(new URL("./_delay_stages_broker.ts", import.meta.url).href, {
  type: "module",
});
function ask<T>(message: unknown): Promise<T> {
  return new Promise((resolve) => {
    worker.onmessage = (event: MessageEvent) => resolve(event.data as T);
    worker.postMessage(message);
  });
}

try {
  const { port } = await ask<{ port: number }>({ dataDir });
  const client = { host: "127.0.0.1", port };
  const admin = new Admin(client);
  await admin.createTopics([{ name: "delayed", partitions: 4 }]);
  const fsync = values["queue-fsync"] === "never" ? "never" : "always";
  await admin.declareQueue("q", { topic: "delayed", from: "beginning", fsync });
  await admin.close();
  await ask({ watch: "q" });
  const consumers = Array.from({ length: consumerCount }, () => {
    const consumer = new QueueConsumer({
      ...client,
      queue: "q",
      maxRecords: 250,
      ackFlushMs: 1,
      fetchesInFlight: 1,
      piggybackAcks,
      maxWaitMs,
    });
    const loop = (async () => {
      while (true) {
        const messages = await consumer.poll();
        if (messages.length === 0 && stopping) return;
        const now = Date.now();
        for (const message of messages) {
          const stage = stages.get(new TextDecoder().decode(message.key ?? new Uint8Array()));
          if (stage !== undefined && stage.receivedMs === undefined) {
            stage.receivedMs = now;
            stage.partition = message.partition;
          }
          message.accept().catch(() => undefined);
        }
      }
    })();
    return { consumer, loop };
  });
  let stopping = false;
  const producer = new Producer({ ...client, acks: "all", lingerMs: 1 });
  const total = rate * seconds;
  const startMs = Date.now();
  let sent = 0;
  while (sent < total) {
    const dueCount = Math.min(total, Math.floor(((Date.now() - startMs) * rate) / 1000));
    for (; sent < dueCount; sent++) {
      const delayMs = Math.floor(Math.random() * (delayMsMax + 1));
      const key = String(sent);
      const sendMs = Date.now();
      stages.set(key, { sendMs, delayMs });
      const headers = delayMs > 0 ? { "sluice-delay-ms": String(delayMs) } : undefined;
      void producer.send({ topic: "delayed", key, value, timestamp: sendMs, headers });
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await producer.flush();
  const deadline = Date.now() + delayMsMax + 20_000;
  const done = () => [...stages.values()].every((s) => s.receivedMs !== undefined);
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  stopping = true;
  await producer.close();
  for (const { consumer } of consumers) await consumer.close();
  const { topicMs, dueMs } = await ask<{
    topicMs: Record<string, number>;
    dueMs: Record<string, number>;
  }>({ report: true });
  report(topicMs, dueMs);
} finally {
  await ask({ close: true });
  worker.terminate();
  rmSync(dataDir, { recursive: true, force: true });
}

function report(topicMs: Record<string, number>, dueMs: Record<string, number>): void {
  const rows: Record<string, number>[] = [];
  let missing = 0;
  for (const [key, s] of stages) {
    if (s.receivedMs === undefined) {
      missing++;
      continue;
    }
    const due = s.sendMs + s.delayMs;
    const inTopic = topicMs[key];
    const inDue = dueMs[key];
    const row: Record<string, number> = {
      lateness: s.receivedMs - due,
      publish: inTopic === undefined ? Number.NaN : inTopic - s.sendMs,
    };
    if (inDue !== undefined) {
      row["movedLate"] = inDue - due;
      row["deliver"] = s.receivedMs - inDue;
    } else if (inTopic !== undefined) {
      row["deliver"] = s.receivedMs - Math.max(inTopic, due);
    }
    rows.push(row);
  }
  const q = (list: number[], p: number) => {
    const sorted = list.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? null;
  };
  const queueFsync = values["queue-fsync"];
  const summary: Record<string, unknown> = { sent: stages.size, missing, rate, queueFsync };
  for (const name of ["lateness", "publish", "movedLate", "deliver"]) {
    const list = rows.map((r) => r[name]).filter((x): x is number => x !== undefined);
    summary[name] = { n: list.length, p50: q(list, 0.5), p99: q(list, 0.99), max: q(list, 1) };
  }
  const p99 = q(
    rows.map((r) => r["lateness"]!),
    0.99,
  )!;
  const slow = rows.filter((r) => r["lateness"]! >= p99);
  const viaDue = slow.filter((r) => r["movedLate"] !== undefined);
  summary["slowest1pct"] = {
    n: slow.length,
    viaDueLog: viaDue.length,
    publishP50: q(
      slow.map((r) => r["publish"]!),
      0.5,
    ),
    movedLateP50: q(
      viaDue.map((r) => r["movedLate"]!),
      0.5,
    ),
    deliverP50: q(
      slow.map((r) => r["deliver"] ?? Number.NaN),
      0.5,
    ),
  };
  console.log(JSON.stringify(summary));
}

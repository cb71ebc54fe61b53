// How long an accept waits for the queue state log's group commit, on the engine in one
// process (no sockets, no client): the disk's fdatasync and the way commits are grouped, with
// little else in the way, so the figure moves less with a loaded machine's CPU than the
// drain's does. Records of 1 KiB are appended to a topic (fsync never), one member acquires
// them, and accepts go out one record per ackQueue call at a fixed rate; each one's latency
// runs from the call to its durable resolution (queue fsync "always"). Prints one JSON line.
//
//   bun bench/tools/queue_commit.ts [--rate 20000] [--seconds 5] [--partitions 16]
//       [--warmup-s 1] [--syncs-in-flight N] [--compact-after-bytes N] [--spare-bytes-max N]
//       [--answer-after-ms D]
//
// --answer-after-ms D acquires the records as they fall due, one fetch a tick, and accepts them
// D ms later, as a consumer answers what a fetch brought it (absent: the records are acquired
// 10,000 at a time ahead of their accepts). The state log then sees acquisitions and accepts
// interleaved, as it does under a broker; `slotWaits` counts the groups with accepts that found
// every fdatasync slot taken (null on a checkout that does not count them).
// --spare-bytes-max sets queueSpareBytesMax (0: no spare generations, every delta write
// extends the file), so that spares are A/B'd in one checkout, alternating 0 and the default.
// --syncs-in-flight sets the engine's queueSyncsInFlight (1 is a serial group commit; absent,
// the engine's default). --compact-after-bytes sets queueCompactAfterBytes, so that a short run
// lives in generations past the first, as a long one does (absent: 4 MiB, which a few seconds
// of single accepts may never reach). The state log's own commit fdatasyncs are timed too
// (stateFsyncP50Ms, stateFsyncP99Ms), the process's CPU per accept counted (cpuUsPerAccept)
// and the group-commit rounds the syncs went through (rounds). For an A/B of the state log,
// alternate runs of two checkouts, e.g.:
//   for i in 1 2 3; do for d in A B; do (cd $d && bun bench/tools/queue_commit.ts); done; done

import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Engine, encodeRecordBatch, type QueueAck } from "../../engine/mod.ts";
import { LatencyHistogram } from "../histogram.ts";

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "20000" },
    seconds: { type: "string", default: "5" },
    partitions: { type: "string", default: "16" },
    "warmup-s": { type: "string", default: "1" },
    "syncs-in-flight": { type: "string" },
    "compact-after-bytes": { type: "string" },
    "spare-bytes-max": { type: "string" },
    "answer-after-ms": { type: "string" },
  },
});

function integer(name: keyof typeof values, min: number, max: number): number {
  const value = Number(values[name]);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`--${name} ${values[name]} is not an integer in [${min}, ${max}]`);
  }
  return value;
}

const ratePerSecond = integer("rate", 1, 1_000_000);
const seconds = integer("seconds", 1, 60);
const partitions = integer("partitions", 1, 256);
const warmupMs = integer("warmup-s", 0, 60) * 1000;
const syncsInFlight =
  values["syncs-in-flight"] === undefined ? undefined : integer("syncs-in-flight", 1, 8);
const compactAfterBytes =
  values["compact-after-bytes"] === undefined
    ? undefined
    : integer("compact-after-bytes", 1024, 1024 * 1024 * 1024);
const spareBytesMax =
  values["spare-bytes-max"] === undefined
    ? undefined
    : integer("spare-bytes-max", 0, 256 * 1024 * 1024);
const answerAfterMs =
  values["answer-after-ms"] === undefined ? undefined : integer("answer-after-ms", 0, 1_000);
const total = ratePerSecond * seconds;
const stateFsyncs = new LatencyHistogram();
const perPartition = Math.ceil(total / partitions);
const BATCH_RECORDS = 100;
const FETCH_RECORDS = 10_000;
/** Accepts due are sent this often. */
const PACE_TICK_MS = 1;

async function fill(engine: Engine): Promise<void> {
  const value = new Uint8Array(1024);
  for (let partition = 0; partition < partitions; partition++) {
    for (let sent = 0; sent < perPartition; sent += BATCH_RECORDS) {
      const records = Array.from({ length: BATCH_RECORDS }, () => ({ value }));
      await engine.append("t", partition, encodeRecordBatch(records, { timestamp: Date.now() }));
    }
  }
}

/** Acquires up to `count` more records; returns them one ack each, in acquisition order. */
function acquire(engine: Engine, member: string, count: number): QueueAck[] {
  const acks: QueueAck[] = [];
  const fetched = engine.fetchQueue("q", member, { maxRecords: count });
  for (const part of fetched.partitions) {
    for (const range of part.ranges) {
      for (let offset = range.first; offset <= range.last; offset++) {
        acks.push({ partition: part.partition, first: offset, last: offset, type: "accept" });
      }
    }
  }
  return acks;
}

async function run(engine: Engine): Promise<Record<string, number>> {
  const member = engine.joinQueue("q");
  const latency = new LatencyHistogram();
  let held: QueueAck[] = [];
  let sent = 0;
  let done = 0;
  const fsyncsBefore = engine.queue("q").stateLog.stats.fsyncs;
  const roundsBefore = engine.groupSync.rounds;
  const cpuBefore = process.cpuUsage();
  const startMs = performance.now();
  const waits: Promise<void>[] = [];
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - startMs) * ratePerSecond) / 1000));
    if (answerAfterMs !== undefined && sent < due) {
      // A fetch for what fell due; its records are answered answerAfterMs later (below).
      const fetched = acquire(engine, member, due - sent);
      held = fetched.concat(held);
      if (answerAfterMs > 0) await new Promise((resolve) => setTimeout(resolve, answerAfterMs));
    }
    while (sent < due) {
      if (held.length === 0) held = acquire(engine, member, FETCH_RECORDS);
      const ack = held.pop();
      if (ack === undefined) throw new Error(`no record left to accept after ${sent}`);
      const calledMs = performance.now();
      const measured = calledMs - startMs >= warmupMs;
      sent++;
      waits.push(
        engine.ackQueue("q", member, [ack]).then(() => {
          done++;
          if (measured) latency.recordMs(performance.now() - calledMs);
        }),
      );
    }
    // The rate is kept by the schedule above; this only gives the loop back between sends.
    await new Promise((resolve) => setTimeout(resolve, PACE_TICK_MS));
  }
  await Promise.all(waits);
  const elapsedS = (performance.now() - startMs) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const summary = latency.summary();
  return {
    ratePerSecond,
    syncsInFlight: syncsInFlight ?? 0,
    accepted: done,
    acceptedPerSecond: Math.round(done / elapsedS),
    fsyncs: engine.queue("q").stateLog.stats.fsyncs - fsyncsBefore,
    // Group-commit rounds the accepts' syncs went through (0 where each fdatasyncs its file).
    rounds: engine.groupSync.rounds - roundsBefore,
    // The process's CPU (every thread: the thread pool's fdatasyncs, the syncfs worker's
    // flushes) per accept, warm-up included.
    cpuUsPerAccept: Number(((cpu.user + cpu.system) / done).toFixed(2)),
    answerAfterMs: answerAfterMs ?? -1,
    ackP50Ms: summary.p50Ms,
    ackP90Ms: latency.percentileMs(90),
    ackP99Ms: summary.p99Ms,
    ackP999Ms: summary.p999Ms,
    stateFsyncP50Ms: stateFsyncs.percentileMs(50),
    stateFsyncP99Ms: stateFsyncs.percentileMs(99),
    compactions: engine.queue("q").stateLog.stats.compactions,
    spareCompactions: engine.queue("q").stateLog.stats.spareCompactions,
    // Read by name: a checkout from before the count has no such field.
    slotWaits: (engine.queue("q").stateLog.stats as { slotWaits?: number }).slotWaits ?? -1,
  };
}

const dir = fs.mkdtempSync(join(os.tmpdir(), "sluice-queue-commit-"));
try {
  const engine = await Engine.open(dir, {
    scrubBytesPerSec: 0,
    ...(syncsInFlight === undefined ? {} : { queueSyncsInFlight: syncsInFlight }),
    ...(compactAfterBytes === undefined ? {} : { queueCompactAfterBytes: compactAfterBytes }),
    ...(spareBytesMax === undefined ? {} : { queueSpareBytesMax: spareBytesMax }),
  });
  const observe = engine.queueFsyncSeconds.observe.bind(engine.queueFsyncSeconds);
  engine.queueFsyncSeconds.observe = (fsyncSeconds: number) => {
    // Warm-up fdatasyncs included: the figure is the disk's, not the schedule's.
    stateFsyncs.recordMs(fsyncSeconds * 1000);
    observe(fsyncSeconds);
  };
  await engine.createTopic("t", { partitions, config: { fsync: "never" } });
  await engine.declareQueue("q", {
    topic: "t",
    fsync: "always",
    maxInFlight: Math.min(100_000, perPartition),
    prefetch: Math.min(1_000_000, total),
  });
  await fill(engine);
  console.log(JSON.stringify(await run(engine)));
  await engine.close();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}

// The process queue_crash.test.ts kills. It opens an engine (creating topic "t" and queue "q"
// on the first run), publishes numbered records, and runs three competing consumers that
// accept most records, release some and reject a few, printing each promise the engine kept:
//
//   argv:   <dir> <cycle>
//   stdout: "open"                        once the engine is open
//           "P <partition> <first> <last>" a publish resolved (records confirmed)
//           "D <partition> <offset> <n>"   a delivery, with its delivery count
//           "a <partition> <offset>"       an accept about to be sent: written to the pipe
//                                          before the ack is, so the parent knows every accept
//                                          that may have taken effect
//           "A <partition> <offset>"       an accept resolved
//           "J <partition> <offset>"       a reject resolved (the dead letter is written)
//   stdin:  a pipe from the parent; when it closes (the parent died) the child exits
//
// Consumers wait for work with onQueueReady, never with a timer.

import { decodeRecordBatches, Engine, encodeRecordBatch, type QueueAck } from "../../engine/mod.ts";
import { mulberry32 } from "../helpers.ts";

export const CRASH_PARTITIONS = 2;
export const CRASH_DELIVERY_LIMIT = 3;
/** The state log compacts every few hundred deltas: kills land in and around compactions. */
const CRASH_COMPACT_AFTER_BYTES = 8 * 1024;
const CONSUMERS = 3;
/** A child left running by a parent that died stops publishing after this many records. */
const RECORDS_MAX = 5_000;

const encoder = new TextEncoder();
let line = "";

function say(text: string): void {
  line += `${text}\n`;
  if (line.length > 4096) flush();
}

function flush(): void {
  if (line.length === 0) return;
  process.stdout.write(line);
  line = "";
}

/** Resolves once everything said so far has been handed to the pipe. */
function flushed(): Promise<void> {
  const text = line;
  line = "";
  return new Promise((resolve) => process.stdout.write(text, () => resolve()));
}

async function openQueue(dir: string): Promise<Engine> {
  const engine = await Engine.open(dir, {
    onWarning: (message) => process.stderr.write(`warning: ${message}\n`),
    // Small, so that the state log compacts (into spare generations) all through the kills.
    queueCompactAfterBytes: CRASH_COMPACT_AFTER_BYTES,
  });
  if (engine.listTopics().every((topic) => topic.name !== "t")) {
    await engine.createTopic("t", { partitions: CRASH_PARTITIONS, config: { fsync: "always" } });
  }
  await engine.declareQueue("q", {
    topic: "t",
    deadLetterTopic: "dead",
    deliveryLimit: CRASH_DELIVERY_LIMIT,
    lockMs: 1_000,
    prefetch: 40,
  });
  return engine;
}

async function produce(engine: Engine, cycle: number): Promise<void> {
  const random = mulberry32(cycle);
  for (let sent = 0; sent < RECORDS_MAX; ) {
    const partition = sent % CRASH_PARTITIONS;
    const count = 1 + Math.floor(random() * 5);
    const records = Array.from({ length: count }, (_, i) => ({
      value: encoder.encode(`c${cycle}-${sent + i}`),
    }));
    const appended = await engine.append("t", partition, encodeRecordBatch(records));
    say(`P ${partition} ${appended.baseOffset} ${appended.lastOffset}`);
    flush();
    sent += count;
  }
}

function ready(engine: Engine): Promise<void> {
  return new Promise((resolve) => {
    const stop = engine.onQueueReady("q", () => {
      stop();
      resolve();
    });
  });
}

async function consume(engine: Engine, seed: number): Promise<void> {
  const random = mulberry32(seed);
  const member = engine.joinQueue("q");
  for (;;) {
    const fetched = engine.fetchQueue("q", member, { maxRecords: 20 });
    if (fetched.partitions.length === 0) {
      await ready(engine);
      continue;
    }
    const acks: QueueAck[] = [];
    for (const { partition, ranges, views } of fetched.partitions) {
      for (const view of views) decodeRecordBatches(view).next(); // the bytes are readable
      for (const { first, last, deliveries } of ranges) {
        for (let offset = first; offset <= last; offset++) {
          say(`D ${partition} ${offset} ${deliveries}`);
          const roll = random();
          const type = roll < 0.85 ? "accept" : roll < 0.95 ? "release" : "reject";
          acks.push({ partition, first: offset, last: offset, type });
        }
      }
    }
    for (const { partition, first, type } of acks) {
      if (type === "accept") say(`a ${partition} ${first}`);
    }
    await flushed();
    await engine.ackQueue("q", member, acks);
    for (const { partition, first, type } of acks) {
      if (type === "accept") say(`A ${partition} ${first}`);
      if (type === "reject") say(`J ${partition} ${first}`);
    }
    flush();
  }
}

async function main(): Promise<void> {
  const [dir, cycleText] = process.argv.slice(2);
  if (dir === undefined || cycleText === undefined) {
    throw new TypeError("usage: queue_crash_child.ts <dir> <cycle>");
  }
  const cycle = Number(cycleText);
  const engine = await openQueue(dir);
  say("open");
  flush();
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
  const consumers = Array.from({ length: CONSUMERS }, (_, i) => consume(engine, cycle * 10 + i));
  await Promise.all([produce(engine, cycle), ...consumers]);
}

if (import.meta.main) {
  main().catch((error) => {
    process.stderr.write(`queue_crash_child failed: ${error?.stack ?? error}\n`);
    process.exit(1);
  });
}

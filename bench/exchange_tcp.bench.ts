// bench:exchange over TCP: a broker (`sluice serve`) in a child process, and this process
// sending the same 100-record batches either as Produce requests to a topic (`direct`) or as
// ExchangePublish requests through a topic exchange with 100 bindings, exactly one matching
// each batch's routing key (`topic-100`). Both with acks 1 and 64 requests in flight on one
// connection, modes alternated round by round after one uncounted warm-up round; figures are
// medians over rounds.
//
//   bun bench/exchange_tcp.bench.ts [--seconds 2] [--rounds 5] [--record-bytes 1024] [--json]
//
// The last stdout line is one JSON object with records/s per mode and
// `topic100Cost` = 1 − topic-100 / direct (the target: ≤ 0.20).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Admin, ClientConnection } from "../protocol/client/mod.ts";
import { writeExchangePublishRequest } from "../protocol/codec/exchange.ts";
import { API } from "../protocol/codec/frames.ts";
import { writeProduceRequest } from "../protocol/codec/produce.ts";
import { encodeRecordBatch } from "../record/mod.ts";
import { brokerScript, startChild } from "./tcp/processes.ts";

const BINDINGS = 100;
const RECORDS_PER_BATCH = 100;
const IN_FLIGHT = 64;

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "2" },
    rounds: { type: "string", default: "5" },
    "record-bytes": { type: "string", default: "1024" },
    json: { type: "boolean", default: false },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const recordBytes = Number(values["record-bytes"]);
for (const [name, value] of [
  ["seconds", seconds],
  ["rounds", rounds],
  ["record-bytes", recordBytes],
] as const) {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`--${name} ${value} is invalid`);
}

const encoder = new TextEncoder();
const value = new Uint8Array(recordBytes).fill(120);
const batches = Array.from({ length: BINDINGS }, (_, i) =>
  encodeRecordBatch(
    Array.from({ length: RECORDS_PER_BATCH }, () => ({
      key: encoder.encode(`orders.k${i}.eu`),
      value,
    })),
  ),
);

type Mode = "direct" | "topic-100";

function send(connection: ClientConnection, mode: Mode, index: number): Promise<unknown> {
  const records = batches[index]!;
  if (mode === "direct") {
    return connection.request(API.Produce, (writer) =>
      writeProduceRequest(writer, {
        acks: 1,
        timeoutMs: 30_000,
        topics: [{ topic: `t${index}`, partitions: [{ partition: 0, records }] }],
      }),
    );
  }
  return connection.request(API.ExchangePublish, (writer) =>
    writeExchangePublishRequest(writer, { acks: 1, timeoutMs: 30_000, exchange: "x", records }),
  );
}

/** Keeps IN_FLIGHT requests outstanding for `seconds`; returns records per second. */
async function run(connection: ClientConnection, mode: Mode): Promise<number> {
  const startedMs = performance.now();
  const endMs = startedMs + seconds * 1000;
  let sent = 0;
  const lane = async () => {
    while (performance.now() < endMs) {
      const index = sent++ % BINDINGS;
      await send(connection, mode, index);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  return (sent * RECORDS_PER_BATCH) / ((performance.now() - startedMs) / 1000);
}

function median(list: number[]): number {
  const sorted = [...list].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const dir = mkdtempSync(join(tmpdir(), "sluice-exchange-tcp-"));
const broker = await startChild(brokerScript, ["serve", "--data", dir, "--port", "0"]);
const rates: Record<Mode, number[]> = { direct: [], "topic-100": [] };
try {
  const admin = new Admin({ port: broker.port });
  try {
    const topics = Array.from({ length: BINDINGS }, (_, i) => ({
      name: `t${i}`,
      config: { fsync: "never" as const },
    }));
    await admin.createTopics(topics);
    await admin.declareExchange("x", { type: "topic" });
    for (let i = 0; i < BINDINGS; i++) {
      await admin.bindExchange("x", { topic: `t${i}`, routingKey: `orders.k${i}.*` });
    }
  } finally {
    await admin.close();
  }
  const connection = await ClientConnection.connect("127.0.0.1", broker.port);
  try {
    // Warm-up, not counted: both paths compiled and the topics' first segments written.
    for (const mode of ["direct", "topic-100"] as const) await run(connection, mode);
    for (let round = 0; round < rounds; round++) {
      for (const mode of ["direct", "topic-100"] as const) {
        const rate = await run(connection, mode);
        rates[mode].push(rate);
        if (!values.json) console.log(`round ${round + 1} ${mode}: ${Math.round(rate)} records/s`);
      }
    }
  } finally {
    await connection.close();
  }
} finally {
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
}

const direct = median(rates.direct);
const topic100 = median(rates["topic-100"]);
console.log(
  JSON.stringify({
    recordBytes,
    recordsPerBatch: RECORDS_PER_BATCH,
    bindings: BINDINGS,
    seconds,
    rounds,
    directRecordsPerSec: Math.round(direct),
    topic100RecordsPerSec: Math.round(topic100),
    topic100Cost: Number((1 - topic100 / direct).toFixed(3)),
    perRound: rates,
  }),
);

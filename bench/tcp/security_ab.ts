// What security costs on the data path: produce throughput of one producer, then consume
// throughput of one consumer reading it all back, over loopback with the broker in its own
// process, in four modes run in alternation (A/B/A/B, so that a machine whose load drifts
// affects every mode alike), and the time of a SCRAM-SHA-256 handshake.
//
//   plain       authentication off, plaintext
//   scram       --auth scram, the client authenticated and allowed by an ACL (not a
//               superuser: every Produce and Fetch goes through the ACL check and its
//               decision cache)
//   tls         TLS (a throwaway CA and server certificate made with openssl), auth off
//   tls-scram   both
//
//   bun bench/tcp/security_ab.ts [--seconds 5] [--rounds 2] [--handshakes 50] [--json]
//
// The last stdout line is one JSON object: publishMBps and consumeMBps per mode (the mean over
// rounds), each mode's ratio to plain (ratioToPlain: publish, consumeRatioToPlain: consume),
// and scramHandshakeMsP50 / connectMsP50 (MB = 10^6 bytes). The TLS
// modes are skipped, with a message, when openssl is not installed.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { makeScramCredential } from "../../protocol/codec/scram.ts";
import {
  Admin,
  ClientConnection,
  type ClientConnectionOptions,
  Consumer,
  Producer,
} from "../../protocol/client/mod.ts";
import { emptySecurityState, saveSecurityState } from "../../protocol/server/mod.ts";
import { makeBenchCerts } from "./certs.ts";
import { brokerScript, startChild } from "./processes.ts";
import { publishFor } from "./publish_loop.ts";

const RECORD_BYTES = 1024;
const PARTITIONS = 16;
const TOPIC = "bench";
/** Records unacknowledged before the sender waits: 32 MiB, half the producer's buffer. */
const OUTSTANDING_MAX = 32_768;
const PASSWORD = "bench-password";

type Mode = "plain" | "scram" | "tls" | "tls-scram";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "2" },
    handshakes: { type: "string", default: "50" },
    json: { type: "boolean", default: false },
  },
});

const log = (message: string) => console.error(`[bench:security] ${message}`);

function makeCerts(dir: string): boolean {
  return makeBenchCerts(dir) !== undefined;
}

function storeUsers(dataDir: string): void {
  const state = emptySecurityState();
  const credentials = {
    "SCRAM-SHA-256": makeScramCredential("SCRAM-SHA-256", PASSWORD),
    "SCRAM-SHA-512": makeScramCredential("SCRAM-SHA-512", PASSWORD),
  };
  state.users.set("admin", credentials);
  state.users.set("producer", credentials);
  state.acls.push({
    principal: "producer",
    resourceType: "topic",
    name: TOPIC,
    pattern: "literal",
    // The one bench user writes, then reads back what it wrote.
    operations: ["read", "write"],
    permission: "allow",
  });
  saveSecurityState(dataDir, state);
}

async function publish(options: ClientConnectionOptions & { port: number }, seconds: number) {
  const producer = new Producer({ ...options, acks: 1, lingerMs: 2, batchBytes: 1024 * 1024 });
  const value = new Uint8Array(RECORD_BYTES).fill(42);
  const loop = { producer, topic: TOPIC, value, seconds, outstandingMax: OUTSTANDING_MAX };
  const sent = await publishFor({ ...loop, partitions: PARTITIONS });
  return { mbps: (sent.records * RECORD_BYTES) / 1e6 / sent.seconds, records: sent.records };
}

/** Reads every partition from the start until `records` came back; MB/s of record values. */
async function consume(options: ClientConnectionOptions & { port: number }, records: number) {
  const consumer = new Consumer({ ...options, maxWaitMs: 100, maxBytes: 16 * 1024 * 1024 });
  consumer.assign(
    Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: TOPIC, partition, offset: 0 })),
  );
  const started = performance.now();
  let received = 0;
  let bytes = 0;
  let idlePolls = 0;
  // A poll that finds nothing waits maxWaitMs; 50 of them in a row means records are missing.
  while (received < records && idlePolls < 50) {
    const batch = await consumer.poll();
    idlePolls = batch.length === 0 ? idlePolls + 1 : 0;
    for (const record of batch) bytes += record.value?.length ?? 0;
    received += batch.length;
  }
  const elapsed = (performance.now() - started) / 1000;
  await consumer.close();
  if (received < records) throw new Error(`consumed ${received} of ${records} records`);
  return bytes / 1e6 / elapsed;
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function connectMs(port: number, options: ClientConnectionOptions, count: number) {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const connection = await ClientConnection.connect("127.0.0.1", port, options);
    samples.push(performance.now() - started);
    await connection.close();
  }
  return median(samples);
}

async function main(): Promise<void> {
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const handshakes = Number(values.handshakes);
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-security-"));
  try {
    const withTls = makeCerts(dir);
    if (!withTls) log("openssl is missing: TLS modes skipped (bash scripts/install_openssl.sh)");
    const modes: Mode[] = withTls ? ["plain", "scram", "tls", "tls-scram"] : ["plain", "scram"];
    const results = new Map<Mode, number[]>(modes.map((mode) => [mode, []]));
    const consumed = new Map<Mode, number[]>(modes.map((mode) => [mode, []]));
    for (let round = 0; round < rounds; round++) {
      for (const mode of modes) {
        const { publishMBps, consumeMBps } = await runMode(mode, dir, round, seconds);
        results.get(mode)!.push(publishMBps);
        consumed.get(mode)!.push(consumeMBps);
        const figures = `publish ${publishMBps.toFixed(0)}, consume ${consumeMBps.toFixed(0)}`;
        log(`round ${round + 1} ${mode}: ${figures} MB/s`);
      }
    }
    const handshake = await measureHandshakes(dir, join(dir, "handshakes"), handshakes);
    const meanOf = (figures: Map<Mode, number[]>) => (mode: Mode) => {
      const list = figures.get(mode) ?? [];
      return list.reduce((sum, x) => sum + x, 0) / list.length;
    };
    const mean = meanOf(results);
    const consumeMean = meanOf(consumed);
    const publishMBps = Object.fromEntries(modes.map((mode) => [mode, mean(mode)]));
    const ratioToPlain = Object.fromEntries(
      modes.map((mode) => [mode, mean(mode) / mean("plain")]),
    );
    const consumeMBps = Object.fromEntries(modes.map((mode) => [mode, consumeMean(mode)]));
    const consumeRatioToPlain = Object.fromEntries(
      modes.map((mode) => [mode, consumeMean(mode) / consumeMean("plain")]),
    );
    const result = {
      benchmark: "bench:security",
      date: new Date().toISOString(),
      seconds,
      rounds,
      publishMBps,
      ratioToPlain,
      consumeMBps,
      consumeRatioToPlain,
      ...handshake,
    };
    if (!values.json) console.log(JSON.stringify(result, null, 2));
    console.log(JSON.stringify(result));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function serveArgs(mode: Mode, certDir: string, dataDir: string): string[] {
  const args = ["serve", "--data", dataDir, "--port", "0"];
  if (mode === "tls" || mode === "tls-scram") {
    args.push("--tls-cert", join(certDir, "server.pem"), "--tls-key", join(certDir, "server.key"));
  }
  if (mode === "scram" || mode === "tls-scram")
    args.push("--auth", "scram", "--super-users", "admin");
  return args;
}

function clientOptions(mode: Mode, certDir: string, user: string): ClientConnectionOptions {
  const tls =
    mode === "tls" || mode === "tls-scram"
      ? { tls: { ca: readText(join(certDir, "ca.pem")), servername: "localhost" } }
      : {};
  const sasl =
    mode === "scram" || mode === "tls-scram"
      ? { sasl: { username: user, password: PASSWORD } }
      : {};
  return { ...tls, ...sasl };
}

function readText(path: string): string {
  return readFileSync(path, "utf8");
}

async function runMode(mode: Mode, certDir: string, round: number, seconds: number) {
  const dataDir = join(certDir, `${mode}-${round}`);
  storeUsers(dataDir);
  const broker = await startChild(brokerScript, serveArgs(mode, certDir, dataDir));
  try {
    const admin = new Admin({ port: broker.port, ...clientOptions(mode, certDir, "admin") });
    await admin.createTopics([{ name: TOPIC, partitions: PARTITIONS, config: { fsync: "never" } }]);
    await admin.close();
    const client = { port: broker.port, ...clientOptions(mode, certDir, "producer") };
    const published = await publish(client, seconds);
    const consumeMBps = await consume(client, published.records);
    return { publishMBps: published.mbps, consumeMBps };
  } finally {
    await broker.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function measureHandshakes(certDir: string, dataDir: string, count: number) {
  storeUsers(dataDir);
  const broker = await startChild(brokerScript, serveArgs("scram", certDir, dataDir));
  try {
    // Without credentials the connection opens and handshakes; nothing else is needed here.
    const connectMsP50 = await connectMs(broker.port, {}, count);
    const scramHandshakeMsP50 = await connectMs(
      broker.port,
      clientOptions("scram", certDir, "producer"),
      count,
    );
    const scram = scramHandshakeMsP50.toFixed(2);
    log(`connect ${connectMsP50.toFixed(2)} ms; with SCRAM-SHA-256 ${scram} ms (p50 of ${count})`);
    return { connectMsP50, scramHandshakeMsP50, scramIterations: 4096 };
  } finally {
    await broker.stop();
  }
}

await main();

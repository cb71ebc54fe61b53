// bench:tcp --protocol kafka: the same engine behind both listeners, measured with the same
// pre-built record batches. A child `sluice serve --port 0 --kafka-port 0` is fed 1 KiB-record
// batches (256 records, about 260 KB each) over 16 partitions as native Produce frames and as
// Kafka Produce v9 frames, built before the clock starts, with a window of requests in flight;
// then each topic is read back from offset 0 with native Fetch and Kafka Fetch v12 (16
// partitions per request). Rounds alternate native and Kafka so load on the machine falls on
// both alike. The broker's CPU per MB comes from /proc. The client does no per-record work on
// either side: it reads only batch headers to advance its fetch offsets.
//
// The last stdout line is one JSON object: publishMBps, consumeMBps (native), kafkaPublishMBps,
// kafkaConsumeMBps, their ratios, and the broker's CPU ms per MB for each (MB = 10^6 bytes).

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeRecordBatch } from "../../engine/mod.ts";
import { readFetchResponse, writeFetchRequest } from "../../protocol/codec/fetch.ts";
import {
  API,
  finishFrame,
  RESPONSE_HEADER_BYTES,
  readResponseHeader,
  startRequest,
} from "../../protocol/codec/frames.ts";
import { writeHandshakeRequest } from "../../protocol/codec/handshake.ts";
import { writeProduceRequest } from "../../protocol/codec/produce.ts";
import { Reader } from "../../protocol/codec/wire.ts";
import {
  API_KEYS,
  codecFor,
  concatChunks,
  KafkaReader,
  KafkaWriter,
  MESSAGES,
  type Struct,
} from "../../protocol/kafka/mod.ts";
import { batchSizeAt, baseOffsetAt, lastOffsetDeltaAt } from "../../record/mod.ts";
import { processCpuMs } from "../proc_cpu.ts";

const PARTITIONS = 16;
const RECORDS_PER_BATCH = 256;
const RECORD_BYTES = 1024;
const WINDOW = 32;
const ROOT = join(import.meta.dirname, "..", "..");

type Broker = { child: ChildProcess; nativePort: number; kafkaPort: number };

function startBroker(dataDir: string): Promise<Broker> {
  const script = join(ROOT, "bin/sluice.ts");
  const isDeno = (process.versions as Record<string, string | undefined>)["deno"] !== undefined;
  const args = ["serve", "--data", dataDir, "--port", "0", "--kafka-port", "0"];
  const argv = isDeno ? ["run", "-A", script, ...args] : [script, ...args];
  const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let output = "";
    child.once("exit", (code) => reject(new Error(`sluice serve exited (${code})`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const kafka = /kafka listening on [\d.]+:(\d+)/.exec(output);
      const native = /sluice listening on [\d.]+:(\d+)/.exec(output);
      if (kafka === null || native === null) return;
      child.removeAllListeners("exit");
      resolve({ child, nativePort: Number(native[1]), kafkaPort: Number(kafka[1]) });
    });
  });
}

/** A pipelined connection: frames out, whole answer frames (without prefix) in, in order. */
class Pipe {
  #socket: net.Socket;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #waiters: ((frame: Uint8Array) => void)[] = [];

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("data", (bytes: Buffer) => this.#data(bytes));
  }

  static open(port: number): Promise<Pipe> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: "127.0.0.1", noDelay: true }, () =>
        resolve(new Pipe(socket)),
      );
      socket.once("error", reject);
    });
  }

  #data(bytes: Uint8Array): void {
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
    for (;;) {
      if (this.#pendingBytes < 4) return;
      if (this.#pending[0]!.length < 4) this.#join();
      const head = this.#pending[0]!;
      const size = new DataView(head.buffer, head.byteOffset).getInt32(0);
      // Joined only once the whole frame is here: a large answer costs one copy, not one per
      // chunk received.
      if (this.#pendingBytes < 4 + size) return;
      const all = this.#pending.length === 1 ? head : this.#join();
      const frame = all.subarray(4, 4 + size);
      const rest = all.subarray(4 + size);
      this.#pending = rest.length > 0 ? [rest] : [];
      this.#pendingBytes = rest.length;
      this.#waiters.shift()?.(frame);
    }
  }

  #join(): Uint8Array {
    const joined = concatChunks(this.#pending);
    this.#pending = [joined];
    return joined;
  }

  /** Sends a frame; resolves with its answer. */
  call(frame: Uint8Array): Promise<Uint8Array> {
    const answer = new Promise<Uint8Array>((resolve) => this.#waiters.push(resolve));
    this.#socket.write(frame);
    return answer;
  }

  close(): void {
    this.#socket.destroy();
  }
}

function nativeProduceFrame(topic: string, partition: number, batch: Uint8Array): Uint8Array {
  const writer = startRequest({ apiKey: API.Produce, apiVersion: 1, correlationId: 1 });
  writeProduceRequest(writer, {
    acks: 1,
    timeoutMs: 30_000,
    topics: [{ topic, partitions: [{ partition, records: batch }] }],
  });
  return finishFrame(writer);
}

function kafkaFrame(apiKey: number, version: number, body: Struct): Uint8Array {
  const codec = codecFor(MESSAGES.get(apiKey)!, version);
  const writer = new KafkaWriter(256);
  writer.int32(0).int16(apiKey).int16(version).int32(1).string("bench", false);
  if (codec.flexible) writer.uvarint(0);
  codec.request.encode(writer, body);
  const frame = concatChunks(writer.finish());
  new DataView(frame.buffer).setInt32(0, frame.length - 4);
  return frame;
}

function kafkaProduceFrame(topic: string, partition: number, batch: Uint8Array): Uint8Array {
  const partitions = [{ index: partition, records: batch }];
  return kafkaFrame(API_KEYS.Produce, 9, {
    transactionalId: null,
    acks: 1,
    timeoutMs: 30_000,
    topics: [{ name: topic, partitions }],
  });
}

/** Sends every frame with WINDOW in flight; returns the seconds it took. */
async function pump(pipe: Pipe, frames: Uint8Array[]): Promise<number> {
  const started = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < frames.length) await pipe.call(frames[next++]!);
  };
  await Promise.all(Array.from({ length: WINDOW }, lane));
  return (performance.now() - started) / 1000;
}

/** The offset after the last whole batch in `views`, or `from` when there is none. */
function nextOffset(views: readonly Uint8Array[], from: number): number {
  let offset = from;
  for (const view of views) {
    let at = 0;
    while (view.length - at >= 61) {
      const size = batchSizeAt(view, at);
      if (at + size > view.length) break;
      offset = baseOffsetAt(view, at) + lastOffsetDeltaAt(view, at) + 1;
      at += size;
    }
  }
  return offset;
}

type Fetcher = (offsets: number[]) => Promise<{ bytes: number; views: Uint8Array[][] }>;

function nativeFetcher(pipe: Pipe, topic: string): Fetcher {
  return async (offsets) => {
    const writer = startRequest({ apiKey: API.Fetch, apiVersion: 1, correlationId: 1 });
    writeFetchRequest(writer, {
      maxWaitMs: 0,
      minBytes: 1,
      maxBytes: 16 << 20,
      topics: [
        {
          topic,
          partitions: offsets.map((fetchOffset, partition) => ({
            partition,
            fetchOffset,
            partitionMaxBytes: 1 << 20,
          })),
        },
      ],
    });
    const answer = await pipe.call(finishFrame(writer));
    readResponseHeader(new Reader(answer));
    const response = readFetchResponse(answer.subarray(RESPONSE_HEADER_BYTES));
    const views = response.topics[0]!.partitions.map((p) => p.records);
    return { bytes: answer.length, views };
  };
}

function kafkaFetcher(pipe: Pipe, topic: string): Fetcher {
  const codec = codecFor(MESSAGES.get(API_KEYS.Fetch)!, 12);
  return async (offsets) => {
    const partitions = offsets.map((fetchOffset, partition) => ({
      partition,
      fetchOffset,
      partitionMaxBytes: 1 << 20,
    }));
    const frame = kafkaFrame(API_KEYS.Fetch, 12, {
      maxWaitMs: 0,
      minBytes: 1,
      maxBytes: 16 << 20,
      isolationLevel: 0,
      topics: [{ topic, partitions }],
    });
    const answer = await pipe.call(frame);
    const reader = new KafkaReader(answer);
    reader.int32();
    reader.uvarint();
    const body = codec.response.decode(reader);
    const parts = (body["responses"] as Struct[])[0]!["partitions"] as Struct[];
    const views = parts.map((p) => (p["records"] === null ? [] : [p["records"] as Uint8Array]));
    return { bytes: answer.length, views };
  };
}

async function drain(fetch: Fetcher, ends: number[]): Promise<{ seconds: number; bytes: number }> {
  const offsets = new Array<number>(PARTITIONS).fill(0);
  const started = performance.now();
  let bytes = 0;
  for (let round = 0; round < 1_000_000 && offsets.some((o, p) => o < ends[p]!); round++) {
    const answer = await fetch(offsets);
    bytes += answer.bytes;
    answer.views.forEach((views, p) => {
      offsets[p] = nextOffset(views, offsets[p]!);
    });
  }
  return { seconds: (performance.now() - started) / 1000, bytes };
}

export type ProtocolFigures = Record<string, number | string>;

/** One round of both protocols on one broker; `mb` of batches each. */
export async function runProtocols(options: {
  mb: number;
  rounds: number;
}): Promise<ProtocolFigures> {
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-bench-protocols-"));
  const broker = await startBroker(dataDir);
  const pid = broker.child.pid!;
  try {
    const value = new Uint8Array(RECORD_BYTES).fill(42);
    const batch = encodeRecordBatch(
      Array.from({ length: RECORDS_PER_BATCH }, () => ({ key: null, value })),
    );
    const batchesPerRound = Math.max(PARTITIONS, Math.round((options.mb * 1e6) / batch.length));
    const native = await Pipe.open(broker.nativePort);
    const handshake = startRequest({ apiKey: API.Handshake, apiVersion: 1, correlationId: 1 });
    writeHandshakeRequest(handshake, { clientName: "bench", clientVersion: "1" });
    await native.call(finishFrame(handshake));
    const kafka = await Pipe.open(broker.kafkaPort);
    const totals = {
      nativePub: [0, 0, 0],
      kafkaPub: [0, 0, 0],
      nativeCon: [0, 0, 0],
      kafkaCon: [0, 0, 0],
    };
    for (let round = 0; round < options.rounds; round++) {
      for (const side of ["native", "kafka"] as const) {
        const topic = `${side}-${round}`;
        await kafka.call(
          kafkaFrame(API_KEYS.CreateTopics, 3, {
            topics: [
              {
                name: topic,
                numPartitions: PARTITIONS,
                replicationFactor: 1,
                assignments: [],
                configs: [],
              },
            ],
            timeoutMs: 10_000,
          }),
        );
        const frames = Array.from({ length: batchesPerRound }, (_, i) =>
          side === "native"
            ? nativeProduceFrame(topic, i % PARTITIONS, batch)
            : kafkaProduceFrame(topic, i % PARTITIONS, batch),
        );
        const pipe = side === "native" ? native : kafka;
        let cpu = processCpuMs(pid) ?? 0;
        const seconds = await pump(pipe, frames);
        const pubCpu = (processCpuMs(pid) ?? 0) - cpu;
        const bytes = batchesPerRound * batch.length;
        const pub = side === "native" ? totals.nativePub : totals.kafkaPub;
        pub[0]! += bytes;
        pub[1]! += seconds;
        pub[2]! += pubCpu;
        const ends = Array.from(
          { length: PARTITIONS },
          (_, p) => Math.ceil((batchesPerRound - p) / PARTITIONS) * RECORDS_PER_BATCH,
        );
        cpu = processCpuMs(pid) ?? 0;
        const read = await drain(
          side === "native" ? nativeFetcher(native, topic) : kafkaFetcher(kafka, topic),
          ends,
        );
        const con = side === "native" ? totals.nativeCon : totals.kafkaCon;
        con[0]! += read.bytes;
        con[1]! += read.seconds;
        con[2]! += (processCpuMs(pid) ?? 0) - cpu;
      }
    }
    native.close();
    kafka.close();
    const mbps = (t: number[]) => Math.round((t[0]! / 1e6 / t[1]!) * 10) / 10;
    const cpuPerMb = (t: number[]) => Math.round((t[2]! / (t[0]! / 1e6)) * 100) / 100;
    const figures = {
      publishMBps: mbps(totals.nativePub),
      consumeMBps: mbps(totals.nativeCon),
      kafkaPublishMBps: mbps(totals.kafkaPub),
      kafkaConsumeMBps: mbps(totals.kafkaCon),
      serverCpuMsPerMBPublish: cpuPerMb(totals.nativePub),
      serverCpuMsPerMBConsume: cpuPerMb(totals.nativeCon),
      kafkaServerCpuMsPerMBPublish: cpuPerMb(totals.kafkaPub),
      kafkaServerCpuMsPerMBConsume: cpuPerMb(totals.kafkaCon),
    };
    return {
      ...figures,
      kafkaPublishRatio: Math.round((figures.kafkaPublishMBps / figures.publishMBps) * 100) / 100,
      kafkaConsumeRatio: Math.round((figures.kafkaConsumeMBps / figures.consumeMBps) * 100) / 100,
      mbPerRound: Math.round((batchesPerRound * batch.length) / 1e6),
      rounds: options.rounds,
    };
  } finally {
    await new Promise<void>((done) => {
      if (broker.child.exitCode !== null) return done();
      broker.child.once("exit", () => done());
      broker.child.kill("SIGTERM");
    });
    rmSync(dataDir, { recursive: true, force: true });
  }
}

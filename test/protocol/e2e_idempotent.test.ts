// End to end over loopback: the idempotent producer writes each record exactly once although
// its connection is cut mid-stream. A relay between the real client and the real server reads
// the frames it carries and cuts the connection at chosen points: right after the server
// answered a Produce (the batch is written, the client never hears so and must retry: the
// server has to recognise the duplicate) and halfway through a Produce request (nothing is
// written). Read back, every partition holds each record once, in order, with no gap.

import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import { Admin, Consumer, type ConsumerRecord, Producer } from "../../protocol/client/mod.ts";
import { API } from "../../protocol/codec/frames.ts";
import { SluiceServer } from "../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";

const text = new TextDecoder();

type CutPlan = {
  /** Cut instead of forwarding the n-th Produce response (1-based, over all connections). */
  dropResponses: number[];
  /** Forward half of the n-th Produce request, then cut. */
  halveRequests: number[];
};

/** Splits a byte stream into whole frames (size:u32 payload), keeping the rest for later. */
class FrameSplitter {
  #buffer = new Uint8Array(0);

  push(chunk: Uint8Array): Uint8Array[] {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    const frames: Uint8Array[] = [];
    let at = 0;
    while (joined.length - at >= 4) {
      const size = new DataView(joined.buffer, at, 4).getUint32(0);
      if (joined.length - at - 4 < size) break;
      frames.push(joined.subarray(at, at + 4 + size));
      at += 4 + size;
    }
    this.#buffer = joined.slice(at);
    return frames;
  }
}

/** A relay that forwards whole frames and cuts connections where the plan says. */
class CuttingRelay {
  readonly #server: net.Server;
  readonly #plan: CutPlan;
  produceRequests = 0;
  produceResponses = 0;
  cuts = 0;

  private constructor(target: number, plan: CutPlan) {
    this.#plan = plan;
    this.#server = net.createServer((client) => this.#relay(client, target));
  }

  static async start(target: number, plan: CutPlan): Promise<CuttingRelay> {
    const relay = new CuttingRelay(target, plan);
    await new Promise<void>((resolve) => relay.#server.listen(0, "127.0.0.1", resolve));
    return relay;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  #relay(client: net.Socket, target: number): void {
    const upstream = net.connect(target, "127.0.0.1");
    const apiKeys = new Map<number, number>();
    let cut = false;
    const cutBoth = () => {
      cut = true;
      this.cuts++;
      client.destroy();
      upstream.destroy();
    };
    const requests = new FrameSplitter();
    client.on("data", (chunk: Uint8Array) => {
      for (const frame of requests.push(chunk)) {
        if (cut) return;
        const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
        const apiKey = view.getUint16(4);
        apiKeys.set(view.getUint32(8), apiKey);
        if (apiKey === API.Produce && this.#plan.halveRequests.includes(++this.produceRequests)) {
          upstream.write(frame.slice(0, frame.length >> 1), cutBoth);
          return;
        }
        upstream.write(frame.slice());
      }
    });
    const responses = new FrameSplitter();
    upstream.on("data", (chunk: Uint8Array) => {
      for (const frame of responses.push(chunk)) {
        if (cut) return;
        const correlationId = new DataView(frame.buffer, frame.byteOffset).getUint32(4);
        const apiKey = apiKeys.get(correlationId);
        if (apiKey === API.Produce && this.#plan.dropResponses.includes(++this.produceResponses)) {
          cutBoth();
          return;
        }
        client.write(frame.slice());
      }
    });
    for (const socket of [client, upstream]) {
      socket.on("close", () => {
        client.destroy();
        upstream.destroy();
      });
      socket.on("error", () => undefined);
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

async function readPartitions(port: number, topic: string, partitions: number, count: number) {
  const consumer = new Consumer({ port, maxWaitMs: 20 });
  const records: ConsumerRecord[] = [];
  try {
    consumer.assign(
      Array.from({ length: partitions }, (_, partition) => ({ topic, partition, offset: 0 })),
    );
    await waitFor(async () => {
      records.push(...(await consumer.poll()));
      return records.length >= count;
    }, `${count} records`);
    records.push(...(await consumer.poll({ maxWaitMs: 0 })));
  } finally {
    await consumer.close();
  }
  return records;
}

describe("end to end: idempotent producer", () => {
  test("a retry after a cut connection writes each record once, with no gap", async () => {
    using dir = tempDir();
    const logs: string[] = [];
    const server = await SluiceServer.start({
      dataDir: dir.path,
      port: 0,
      log: (message) => logs.push(message),
    });
    const plan = { dropResponses: [3, 10, 17, 18], halveRequests: [7, 25] };
    const relay = await CuttingRelay.start(server.port, plan);
    const topic = "exact";
    const partitions = 3;
    const perPartition = 1000;
    try {
      const admin = new Admin({ port: server.port });
      await admin.createTopics([{ name: topic, partitions, config: { fsync: "never" } }]);
      await admin.close();
      const producer = new Producer({
        port: relay.port,
        acks: 1,
        lingerMs: 1,
        // Small batches, so that the run takes many Produce requests and so many cut points.
        batchBytes: 512,
        retryBackoffMs: 1,
        retryBackoffMsMax: 20,
      });
      try {
        const sends = [];
        for (let i = 0; i < perPartition * partitions; i++) {
          const partition = i % partitions;
          const value = `${partition}:${Math.floor(i / partitions)}`;
          sends.push(producer.send({ topic, partition, value }));
        }
        await Promise.all(sends);
      } finally {
        await producer.close();
      }
      assert.equal(relay.cuts, plan.dropResponses.length + plan.halveRequests.length);

      const records = await readPartitions(
        server.port,
        topic,
        partitions,
        perPartition * partitions,
      );
      assert.equal(records.length, perPartition * partitions);
      for (let partition = 0; partition < partitions; partition++) {
        const mine = records.filter((r) => r.partition === partition);
        assert.deepEqual(
          mine.map((r) => r.offset),
          mine.map((_, i) => i),
          `offsets of partition ${partition}`,
        );
        assert.deepEqual(
          mine.map((r) => text.decode(r.value!)),
          mine.map((_, i) => `${partition}:${i}`),
          `values of partition ${partition}`,
        );
      }
    } catch (error) {
      if (logs.length > 0) console.error(`server log:\n${logs.join("\n")}`);
      throw error;
    } finally {
      await relay.close();
      await server.close();
    }
  });
});

// The producer's batch buffers: records encoded as they are added into pooled buffers that grow
// on a short ladder, sealing (with compression, or without it when it would not fit), stamping
// the identity and CRC again for a new sequence, moving off a buffer a request may still read,
// and the Produce frame written into the room in front of each batch, byte for byte what the
// codec writes.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type CompressionName, decodeRecordBatch, encodeRecordBatch } from "../../../engine/mod.ts";
import { readBatchHeader } from "../../../record/mod.ts";
import { API, finishFrame, startRequest } from "../../../protocol/codec/frames.ts";
import { writeProduceRequest } from "../../../protocol/codec/produce.ts";
import { BatchBuilder, prepareRecord } from "../../../protocol/client/batch_builder.ts";
import { BufferPool } from "../../../protocol/client/buffer_pool.ts";
import { BATCH_CAPACITY_MIN, nextCapacity } from "../../../record/mod.ts";
import { prefixRoomBytes, produceFrame } from "../../../protocol/client/produce_frame.ts";
import { Producer } from "../../../protocol/client/producer.ts";
import { FakeServer } from "./fake_server.ts";

const utf8 = new TextEncoder();

function join(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** A sealed builder of `values` (with a fixed timestamp), and the records it holds. */
function built(
  values: string[],
  options: { topic?: string; pool?: BufferPool; compression?: CompressionName } = {},
) {
  const builder = new BatchBuilder<number>(1024 * 1024, 0, {
    prefixRoomBytes: prefixRoomBytes(options.topic ?? "t"),
    pool: options.pool,
  });
  const records = values.map((value) => prepareRecord({ value, timestamp: 1_000 }, 0));
  for (const [i, record] of records.entries()) assert.ok(builder.tryAddRecord(record, i));
  builder.seal({ compression: options.compression });
  return { builder, records };
}

describe("BufferPool", () => {
  test("gives back a buffer of the capacity asked for, while it holds less than bytesMax", () => {
    const pool = new BufferPool(100);
    const a = pool.take(60);
    assert.equal(a.length, 60);
    pool.give(a);
    assert.equal(pool.sizeBytes, 60);
    pool.give(new Uint8Array(60));
    assert.equal(pool.sizeBytes, 60, "a second buffer would pass bytesMax: left to the GC");
    assert.equal(pool.take(60), a);
    assert.equal(pool.sizeBytes, 0);
    assert.notEqual(pool.take(60), a);
  });

  test("keeps what was out at once, up to 3x bytesMax, and stops counting the forgotten", () => {
    const pool = new BufferPool(100);
    const taken = [pool.take(60), pool.take(60), pool.take(60), pool.take(60)];
    assert.equal(pool.outBytes, 240);
    for (const buffer of taken) pool.give(buffer);
    assert.equal(pool.sizeBytes, 240, "all four were out at once: all four are kept");
    const again = [pool.take(60), pool.take(60), pool.take(60), pool.take(60)];
    assert.deepEqual(new Set(again), new Set(taken), "the same buffers, none made anew");
    pool.forget(again[0]!);
    assert.equal(pool.outBytes, 180);
    for (const buffer of again.slice(1)) pool.give(buffer);
    assert.equal(pool.sizeBytes, 180);
    assert.equal(pool.outBytes, 0);

    const capped = new BufferPool(100);
    const five = Array.from({ length: 5 }, () => capped.take(100));
    for (const buffer of five) capped.give(buffer);
    assert.equal(capped.sizeBytes, 300, "a peak past 3x bytesMax is not kept whole");
  });

  test("a batch left to a request that may still send it is forgotten, not given back", () => {
    const pool = new BufferPool(64 * 1024 * 1024);
    const { builder } = built(["a", "b"], { pool });
    const out = pool.outBytes;
    assert.ok(out > 0);
    builder.detach();
    assert.equal(pool.outBytes, 0, "the detached buffer no longer counts as out");
    assert.equal(pool.sizeBytes, 0, "and is not handed out again");
  });

  test("capacities climb 16 KiB, 64 KiB, 256 KiB, then the top at once", () => {
    const top = 1024 * 1024 + 40;
    assert.equal(nextCapacity(100, top), BATCH_CAPACITY_MIN);
    assert.equal(nextCapacity(20_000, top), 64 * 1024);
    assert.equal(nextCapacity(100_000, top), 256 * 1024);
    assert.equal(nextCapacity(300_000, top), top, "1 MiB is within half of the top: the top");
    assert.equal(nextCapacity(900, 1000), 1000, "a small top is the only step");
    assert.equal(nextCapacity(5000, 1000), 5000, "one record larger than the top gets its size");
  });
});

describe("BatchBuilder", () => {
  test("grows through pooled buffers and still writes the codec's bytes", () => {
    const pool = new BufferPool(64 * 1024 * 1024);
    const value = utf8.encode("x".repeat(1000));
    const builder = new BatchBuilder<number>(1024 * 1024, 0, { prefixRoomBytes: 40, pool });
    const records = [];
    for (let i = 0; builder.sizeBytes < 500_000; i++) {
      const record = prepareRecord({ value, timestamp: 5_000 + i }, 0);
      assert.ok(builder.tryAddRecord(record, i));
      records.push(record);
    }
    assert.ok(pool.sizeBytes >= BATCH_CAPACITY_MIN, "outgrown buffers went back to the pool");
    const stamped = builder.stamp({ producerId: 1, producerEpoch: 2, baseSequence: 3 });
    const encoded = encodeRecordBatch(records, {
      producerId: 1,
      producerEpoch: 2,
      baseSequence: 3,
    });
    assert.deepEqual(stamped, encoded);
    const before = pool.sizeBytes;
    builder.release();
    assert.equal(pool.sizeBytes, before + builder.buffer.length);
  });

  test("restamping writes the new sequence and a CRC that matches it", () => {
    const { builder } = built(["a", "b", "c"]);
    const first = readBatchHeader(
      builder.stamp({ producerId: 9, producerEpoch: 0, baseSequence: 0 }),
    );
    const bytes = builder.stamp({ producerId: 9, producerEpoch: 1, baseSequence: 42 });
    const second = readBatchHeader(bytes);
    assert.equal(second.baseSequence, 42);
    assert.equal(second.producerEpoch, 1);
    assert.notEqual(second.crc, first.crc);
    assert.equal(decodeRecordBatch(bytes).records.length, 3);
  });

  test("compression is kept when it fits, and left off when it would pass batchBytesMax", () => {
    const { builder } = built(
      Array.from({ length: 50 }, (_, i) => `gz${i}`),
      {
        compression: "gzip",
      },
    );
    const gzip = builder.stamp({ producerId: -1, producerEpoch: -1, baseSequence: -1 });
    assert.equal(readBatchHeader(gzip).attributes & 0x07, 1);
    assert.equal(decodeRecordBatch(gzip).records.length, 50);
    // Random bytes do not compress: gzip's framing would push a full batch past the limit.
    const noise = new Uint8Array(925).map(() => Math.floor(Math.random() * 256));
    const full = new BatchBuilder<number>(1000, 0, { prefixRoomBytes: 10 });
    assert.ok(full.tryAddRecord(prepareRecord({ value: noise, timestamp: 1 }, 0), 0));
    full.seal({ compression: "gzip" });
    const plain = full.stamp({ producerId: -1, producerEpoch: -1, baseSequence: -1 });
    assert.equal(readBatchHeader(plain).attributes & 0x07, 0);
    assert.ok(plain.length <= 1000);
  });

  test("detach moves the batch to its own buffer: later writes leave the old bytes alone", () => {
    const pool = new BufferPool(1024 * 1024);
    const { builder } = built(["v1", "v2"], { pool });
    const identity = { producerId: 3, producerEpoch: 0, baseSequence: 0 };
    const sent = produceFrame({ correlationId: 1, acks: 1, timeoutMs: 10 }, [
      { topic: "t", partition: 0, builder },
    ]);
    const sentCopy = join(sent);
    builder.detach();
    builder.stamp({ ...identity, baseSequence: 7 });
    produceFrame({ correlationId: 2, acks: 1, timeoutMs: 10 }, [
      { topic: "t", partition: 0, builder },
    ]);
    assert.deepEqual(join(sent), sentCopy, "the first request's bytes did not change");
    builder.release();
    assert.equal(pool.sizeBytes, 0, "a detached buffer never goes back to the pool");
  });
});

describe("produceFrame", () => {
  test("writes the bytes writeProduceRequest writes, as one view per batch", () => {
    const a0 = built(["a", "b"], { topic: "alpha" });
    const a3 = built(["c"], { topic: "alpha" });
    const b1 = built(["ü".repeat(40)], { topic: "béta" });
    const batches = [
      { topic: "alpha", partition: 0, builder: a0.builder },
      { topic: "alpha", partition: 3, builder: a3.builder },
      { topic: "béta", partition: 1, builder: b1.builder },
    ];
    const identity = { producerId: 5, producerEpoch: 0, baseSequence: 10 };
    const bytes = batches.map(({ builder }) => builder.stamp(identity).slice());
    const chunks = produceFrame({ correlationId: 77, acks: -1, timeoutMs: 30_000 }, batches);
    assert.equal(chunks.length, 3);
    const writer = startRequest({ apiKey: API.Produce, apiVersion: 1, correlationId: 77 });
    writeProduceRequest(writer, {
      acks: -1,
      timeoutMs: 30_000,
      topics: [
        {
          topic: "alpha",
          partitions: [
            { partition: 0, records: bytes[0]! },
            { partition: 3, records: bytes[1]! },
          ],
        },
        { topic: "béta", partitions: [{ partition: 1, records: bytes[2]! }] },
      ],
    });
    assert.deepEqual(join(chunks), finishFrame(writer));
  });

  test("a topic's batches must come together", () => {
    const batches = ["a", "b", "a"].map((topic, partition) => ({
      topic,
      partition,
      builder: built(["v"], { topic }).builder,
    }));
    assert.throws(
      () => produceFrame({ correlationId: 1, acks: 1, timeoutMs: 1 }, batches),
      /the batches of topic a are not together/,
    );
  });
});

describe("Producer with lingerMs 0", () => {
  test("the records sent in one turn go out together, in one request", async () => {
    const server = await FakeServer.start();
    server.createTopic("t", 2);
    const producer = new Producer({ port: server.port, lingerMs: 0, idempotent: false });
    try {
      const sends = [0, 1].flatMap((partition) =>
        ["x", "y", "z"].map((value) => producer.send({ topic: "t", partition, value })),
      );
      await Promise.all(sends);
      assert.equal(server.produceRequests.length, 1);
      const partitions = server.produceRequests[0]!.topics[0]!.partitions;
      assert.deepEqual(
        partitions.map((p) => [p.partition, readBatchHeader(p.records).recordCount]),
        [
          [0, 3],
          [1, 3],
        ],
      );
    } finally {
      await producer.close();
      await server.close();
    }
  });
});

describe("Producer send reuse", () => {
  test("a send made from inside another keeps both records intact", async () => {
    const server = await FakeServer.start();
    server.createTopic("t", 2);
    let producer: Producer | undefined;
    let inner: Promise<unknown> | undefined;
    let armed = false;
    const partitioner = {
      partition(): number {
        // A partitioner that sends is odd, but it must not corrupt the record it places.
        if (armed) inner ??= producer!.send({ topic: "t", partition: 1, value: "inner" });
        return 0;
      },
      batchSealed(): void {},
    };
    producer = new Producer({ port: server.port, lingerMs: 0, partitioner });
    try {
      // The first send looks the topic up; the next ones are placed inside send() itself.
      await producer.send({ topic: "t", value: "first" });
      armed = true;
      await producer.send({ topic: "t", value: "outer" });
      await inner;
      assert.deepEqual(server.values("t", 0), ["first", "outer"]);
      assert.deepEqual(server.values("t", 1), ["inner"]);
    } finally {
      await producer.close();
      await server.close();
    }
  });
});

// Hostile to the produce path's buffer reuse: the server lends large produced batches to the
// engine as views of the frames they arrived in, and a pooled assembly buffer is reused once
// every view of it is given back. Here the disk is slow (each segment write waits many event
// loop turns before it runs), so views wait for their writes while more multi-chunk produce
// frames arrive and are assembled in the pool; every record a consumer reads back afterwards
// must be exactly the one produced. Produce frames that span received chunks are not
// assembled at all: their batches reach the engine as views of the chunks (BatchParts), which
// the test counts, under acks=1 and acks=all.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Admin, Consumer, Producer } from "../../../protocol/client/mod.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { type FileIO, PartitionLog, realFileIO } from "../../../engine/mod.ts";
import { tempDir } from "../../helpers.ts";

const PARTITIONS = 2;
const RECORDS = 20_000;
const VALUE_BYTES = 1024;
const TURNS_PER_WRITE = 30;

function recordValue(index: number): Uint8Array {
  const value = new Uint8Array(VALUE_BYTES);
  for (let i = 0; i < VALUE_BYTES; i++) value[i] = (index * 131 + i * 7) & 0xff;
  new DataView(value.buffer).setUint32(0, index);
  return value;
}

/** Segment writes that start only after many event-loop turns: a slow disk. */
const slowIO: FileIO = {
  ...realFileIO,
  async writeAll(fd, buffers, position) {
    for (let i = 0; i < TURNS_PER_WRITE; i++) await new Promise((r) => setImmediate(r));
    await realFileIO.writeAll(fd, buffers, position);
  },
};

/**
 * Counts the batches appended in parts while `run` runs (acks 1 appends with appendTo, acks
 * all with appendChecked).
 */
async function countingParts(run: () => Promise<void>): Promise<number> {
  const original = PartitionLog.prototype.appendChecked;
  const originalTo = PartitionLog.prototype.appendTo;
  let inParts = 0;
  PartitionLog.prototype.appendChecked = function (this: PartitionLog, batch, lease) {
    if (!(batch instanceof Uint8Array)) inParts++;
    return original.call(this, batch, lease);
  };
  PartitionLog.prototype.appendTo = function (this: PartitionLog, batch, lease, listener) {
    if (!(batch instanceof Uint8Array)) inParts++;
    return originalTo.call(this, batch, lease, listener);
  };
  try {
    await run();
  } finally {
    PartitionLog.prototype.appendChecked = original;
    PartitionLog.prototype.appendTo = originalTo;
  }
  return inParts;
}

describe("lent produce batches under a slow disk", () => {
  for (const acks of [1, -1] as const) {
    test(`records read back are exactly those produced (acks ${acks})`, async () => {
      const inParts = await countingParts(() => produceAndReadBack(acks));
      assert.ok(inParts > 0, "some batches arrived split across chunks and were kept in parts");
    });
  }
});

async function produceAndReadBack(acks: 1 | -1): Promise<void> {
  using dir = tempDir();
  await using server = await SluiceServer.start({
    dataDir: dir.path,
    port: 0,
    log: () => {},
    engineOptions: { io: slowIO },
  });
  const admin = new Admin({ port: server.port });
  await admin.createTopics([{ name: "t", partitions: PARTITIONS }]);
  await admin.close();
  const producer = new Producer({
    port: server.port,
    lingerMs: 5,
    batchBytes: 256 * 1024,
    acks,
  });
  const sends: Promise<unknown>[] = [];
  for (let i = 0; i < RECORDS; i++) {
    sends.push(producer.send({ topic: "t", partition: i % PARTITIONS, value: recordValue(i) }));
  }
  await Promise.all(sends);
  await producer.close();

  const consumer = new Consumer({ port: server.port, maxWaitMs: 50 });
  let read = 0;
  try {
    const all = Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: "t", partition }));
    consumer.assign(all);
    for (const tp of all) consumer.seek({ ...tp, offset: 0 });
    for (let polls = 0; polls < 1_000 && read < RECORDS; polls++) {
      for (const record of await consumer.poll()) {
        const value = record.value!;
        const index = new DataView(value.buffer, value.byteOffset).getUint32(0);
        assert.equal(index % PARTITIONS, record.partition);
        assert.equal(Math.floor(index / PARTITIONS), record.offset, "offsets in send order");
        assert.deepEqual(value, recordValue(index), `record ${index} is intact`);
        read++;
      }
    }
  } finally {
    await consumer.close();
  }
  assert.equal(read, RECORDS);
}

// Fetches of bytes the page cache does not hold (engine/cold_read.ts): a broker whose appends
// are written with O_DIRECT (`directWrites: "all"`) serves a consumer reading from offset 0,
// far behind the tail cache, from reads made on the thread pool first; every record comes
// back once, in order, its batch CRC checked by the client; the buffers' memory goes back to
// the pool as the socket takes the answers.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { coldReadCounts } from "../../../engine/cold_read.ts";
import { loadDirectWrites } from "../../../engine/direct_io.ts";
import { Admin, Consumer, Producer, QueueConsumer } from "../../../protocol/client/mod.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../../helpers.ts";

const RECORD_BYTES = 4096;
/** Past the tail cache (8 MiB a segment) several times over. */
const RECORDS = 12_000;

/** A broker writing with O_DIRECT, or undefined where there are no cold reads (skipped). */
async function coldServer(dir: string): Promise<SluiceServer | undefined> {
  const direct = await loadDirectWrites(dir);
  if (direct?.residentPages === undefined) return undefined;
  return SluiceServer.start({
    dataDir: dir,
    port: 0,
    log: () => undefined,
    engineOptions: { directWrites: "all" },
  });
}

/** RECORDS records of RECORD_BYTES over partitions 0 and 1, each naming its index. */
async function produceRecords(port: number, topic: string): Promise<void> {
  const producer = new Producer({ port, acks: 1, lingerMs: 2 });
  try {
    const sends = [];
    for (let i = 0; i < RECORDS; i++) {
      const value = new Uint8Array(RECORD_BYTES).fill(i % 251);
      new DataView(value.buffer).setUint32(0, i);
      sends.push(producer.send({ topic, partition: i % 2, value }));
    }
    await Promise.all(sends);
  } finally {
    await producer.close();
  }
}

/** The index a record names, after checking its bytes. */
function indexOf(value: Uint8Array): number {
  const index = new DataView(value.buffer, value.byteOffset).getUint32(0);
  assert.equal(value[RECORD_BYTES - 1], index % 251, `record ${index} intact`);
  return index;
}

describe("cold fetches", () => {
  test("a catch-up consumer of a log written direct gets every record, read cold", async (t) => {
    using dir = tempDir();
    const server = await coldServer(dir.path);
    if (server === undefined) return t.skip("no O_DIRECT or mincore here (Bun on Linux only)");
    try {
      const admin = new Admin({ port: server.port });
      await admin.createTopics([{ name: "cold", partitions: 2, config: { fsync: "never" } }]);
      await admin.close();
      await produceRecords(server.port, "cold");
      const started = coldReadCounts.started;
      const served = coldReadCounts.served;
      const consumer = new Consumer({
        port: server.port,
        maxWaitMs: 20,
        maxBytes: 16 * 1024 * 1024,
        partitionMaxBytes: 4 * 1024 * 1024,
        checkCrcs: true,
      });
      const seen: number[][] = [[], []];
      try {
        consumer.assign([0, 1].map((partition) => ({ topic: "cold", partition, offset: 0 })));
        let count = 0;
        await waitFor(async () => {
          for (const record of await consumer.poll()) {
            seen[record.partition]!.push(indexOf(record.value!));
            count++;
          }
          return count >= RECORDS;
        }, `${RECORDS} records`);
      } finally {
        await consumer.close();
      }
      for (const partition of [0, 1]) {
        const expected = Array.from({ length: RECORDS / 2 }, (_, i) => 2 * i + partition);
        assert.deepEqual(seen[partition], expected, `partition ${partition}: each once, in order`);
      }
      assert.ok(coldReadCounts.started > started, "the broker read cold");
      assert.ok(coldReadCounts.served > served, "and served from those reads");
    } finally {
      await server.close();
    }
  });

  test("a queue consumer working off a backlog written direct gets each record once", async (t) => {
    using dir = tempDir();
    const server = await coldServer(dir.path);
    if (server === undefined) return t.skip("no O_DIRECT or mincore here (Bun on Linux only)");
    try {
      const admin = new Admin({ port: server.port });
      await admin.createTopics([{ name: "jobs", partitions: 2, config: { fsync: "never" } }]);
      await admin.declareQueue("work", { topic: "jobs", from: "beginning" });
      await admin.close();
      await produceRecords(server.port, "jobs");
      const started = coldReadCounts.started;
      const served = coldReadCounts.served;
      const seen = new Set<number>();
      {
        await using consumer = new QueueConsumer({
          port: server.port,
          queue: "work",
          maxRecords: 500,
          maxWaitMs: 20,
        });
        await waitFor(async () => {
          const messages = await consumer.poll();
          for (const message of messages) {
            const index = indexOf(message.value!);
            assert.ok(!seen.has(index), `record ${index} once`);
            seen.add(index);
          }
          await Promise.all(messages.map((message) => message.accept()));
          return seen.size >= RECORDS;
        }, `${RECORDS} records`);
      }
      assert.equal(seen.size, RECORDS);
      assert.ok(coldReadCounts.started > started, "the broker read the backlog cold");
      assert.ok(coldReadCounts.served > served, "and served the queue from those reads");
    } finally {
      await server.close();
    }
  });
});

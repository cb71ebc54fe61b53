// End to end over loopback: the real server on a temp data directory and the real client.
// Keyed records land on their murmur2 partition and come back once each, in partition order;
// a long-poll Fetch wakes on new data; acks 0 and acks "all" deliver.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  Admin,
  Consumer,
  type ConsumerRecord,
  Producer,
  partitionForKey,
  type RecordMetadata,
} from "../../protocol/client/mod.ts";
import { API } from "../../protocol/codec/frames.ts";
import { SluiceServer } from "../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();

async function withServer(run: (server: SluiceServer) => Promise<void>): Promise<void> {
  using dir = tempDir();
  const logs: string[] = [];
  const server = await SluiceServer.start({
    dataDir: dir.path,
    port: 0,
    log: (message) => logs.push(message),
  });
  try {
    await run(server);
  } catch (error) {
    if (logs.length > 0) console.error(`server log:\n${logs.join("\n")}`);
    throw error;
  } finally {
    await server.close();
  }
}

async function createTopic(port: number, name: string, partitions: number, config = {}) {
  const admin = new Admin({ port });
  try {
    await admin.createTopics([{ name, partitions, config }]);
  } finally {
    await admin.close();
  }
}

/** Reads every partition from offset 0 until `count` records came; fails on more. */
async function readAll(
  port: number,
  topic: string,
  partitions: number,
  count: number,
): Promise<ConsumerRecord[]> {
  const consumer = new Consumer({ port, maxWaitMs: 50 });
  const records: ConsumerRecord[] = [];
  try {
    consumer.assign(Array.from({ length: partitions }, (_, partition) => ({ topic, partition })));
    for (let p = 0; p < partitions; p++) consumer.seek({ topic, partition: p, offset: 0 });
    await waitFor(async () => {
      records.push(...(await consumer.poll()));
      return records.length >= count;
    }, `${count} records of ${topic}`);
    // Nothing more arrives: a duplicate would show up here.
    records.push(...(await consumer.poll({ maxWaitMs: 0 })));
  } finally {
    await consumer.close();
  }
  return records;
}

/** Records grouped by partition, each list in the order the consumer received them. */
function byPartition(records: ConsumerRecord[]): Map<number, ConsumerRecord[]> {
  const partitions = new Map<number, ConsumerRecord[]>();
  for (const record of records) {
    const list = partitions.get(record.partition) ?? [];
    list.push(record);
    partitions.set(record.partition, list);
  }
  return partitions;
}

describe("end to end: produce and consume", () => {
  test("keyed records land by murmur2 and come back once each, in partition order", () =>
    withServer(async (server) => {
      const partitions = 6;
      await createTopic(server.port, "keyed", partitions);
      const producer = new Producer({ port: server.port, lingerMs: 2 });
      const sent: { key: string; value: string }[] = [];
      const sequences = new Map<string, number>();
      for (let i = 0; i < 600; i++) {
        const key = `user-${(i * 7) % 37}`;
        const sequence = sequences.get(key) ?? 0;
        sequences.set(key, sequence + 1);
        sent.push({ key, value: `${key}#${sequence}` });
      }
      let metadata: RecordMetadata[];
      try {
        metadata = await Promise.all(sent.map((r) => producer.send({ topic: "keyed", ...r })));
      } finally {
        await producer.close();
      }
      sent.forEach(({ key }, i) => {
        assert.equal(metadata[i]!.partition, partitionForKey(utf8.encode(key), partitions), key);
      });

      const records = await readAll(server.port, "keyed", partitions, sent.length);
      assert.equal(records.length, sent.length);
      assert.deepEqual(
        records.map((r) => text.decode(r.value!)).sort(),
        sent.map((r) => r.value).sort(),
      );
      for (const [partition, list] of byPartition(records)) {
        // Offsets 0, 1, 2, ... with no gap, and each key's records in the order sent.
        assert.deepEqual(
          list.map((r) => r.offset),
          list.map((_, i) => i),
        );
        const seen = new Map<string, number>();
        for (const record of list) {
          const key = text.decode(record.key!);
          assert.equal(partition, partitionForKey(record.key!, partitions), key);
          const sequence = Number(text.decode(record.value!).split("#")[1]);
          assert.equal(sequence, seen.get(key) ?? 0, `order of ${key}`);
          seen.set(key, sequence + 1);
        }
      }
    }));

  test("a long-poll fetch wakes on a record produced while it waits", () =>
    withServer(async (server) => {
      await createTopic(server.port, "wake", 3);
      // maxWaitMs is the most the server allows: if new data did not wake the fetch, the poll
      // would outlast the whole test's wait for it.
      const consumer = new Consumer({ port: server.port, maxWaitMs: 60_000 });
      const producer = new Producer({ port: server.port, lingerMs: 0 });
      try {
        consumer.assign([0, 1, 2].map((partition) => ({ topic: "wake", partition })));
        const fetchesBefore = fetchCount(server);
        let polled: ConsumerRecord[] | undefined;
        const poll = consumer.poll().then((records) => {
          polled = records;
        });
        await waitFor(() => fetchCount(server) > fetchesBefore, "the fetch to reach the server");
        assert.equal(polled, undefined, "the fetch answered before any data was there");
        // One partition of the three gets data: that alone answers the fetch.
        await producer.send({ topic: "wake", partition: 2, value: "ding" });
        await waitFor(() => polled !== undefined, "the long poll to answer with the record");
        await poll;
        assert.deepEqual(
          polled!.map((r) => [r.partition, text.decode(r.value!)]),
          [[2, "ding"]],
        );
      } finally {
        await producer.close();
        await consumer.close();
      }
    }));

  test("closing the consumer ends a long poll at once", () =>
    withServer(async (server) => {
      await createTopic(server.port, "quiet", 1);
      const consumer = new Consumer({ port: server.port, maxWaitMs: 60_000 });
      consumer.assign([{ topic: "quiet", partition: 0 }]);
      const fetchesBefore = fetchCount(server);
      let polled: ConsumerRecord[] | undefined;
      const poll = consumer.poll().then((records) => {
        polled = records;
      });
      await waitFor(() => fetchCount(server) > fetchesBefore, "the fetch to reach the server");
      await consumer.close();
      await waitFor(() => polled !== undefined, "the poll to return");
      await poll;
      assert.deepEqual(polled, []);
      await waitFor(() => server.connectionCount === 0, "the server to see the consumer go");
    }));

  test("acks 0 records arrive, in order", () =>
    withServer(async (server) => {
      await createTopic(server.port, "fire", 1);
      const producer = new Producer({ port: server.port, acks: 0, lingerMs: 1 });
      const values = Array.from({ length: 300 }, (_, i) => `v${i}`);
      try {
        const metadata = await Promise.all(
          values.map((value) => producer.send({ topic: "fire", value })),
        );
        // No acknowledgement, so no offsets.
        assert.ok(metadata.every((m) => m.offset === -1));
      } finally {
        await producer.close();
      }
      const records = await readAll(server.port, "fire", 1, values.length);
      assert.deepEqual(
        records.map((r) => text.decode(r.value!)),
        values,
      );
    }));

  test('acks "all" works on topics with fsync always and fsync never', () =>
    withServer(async (server) => {
      await createTopic(server.port, "synced", 2, { fsync: "always" });
      await createTopic(server.port, "unsynced", 2, { fsync: "never" });
      const producer = new Producer({ port: server.port, acks: "all", lingerMs: 1 });
      try {
        for (const topic of ["synced", "unsynced"]) {
          const metadata = await Promise.all(
            Array.from({ length: 50 }, (_, i) =>
              producer.send({ topic, partition: i % 2, value: `${topic}-${i}` }),
            ),
          );
          assert.deepEqual(
            metadata.map((m) => [m.partition, m.offset]),
            metadata.map((_, i) => [i % 2, Math.floor(i / 2)]),
          );
        }
      } finally {
        await producer.close();
      }
      for (const topic of ["synced", "unsynced"]) {
        const records = await readAll(server.port, topic, 2, 50);
        assert.equal(records.length, 50);
        assert.deepEqual(
          records.map((r) => text.decode(r.value!)).sort(),
          Array.from({ length: 50 }, (_, i) => `${topic}-${i}`).sort(),
        );
      }
    }));
});

/** Fetch requests the server has received so far. */
function fetchCount(server: SluiceServer): number {
  const requests = server.stats()["requests"] as Record<string, number | undefined>;
  return requests[String(API.Fetch)] ?? 0;
}

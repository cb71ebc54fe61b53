// kafkajs 2.2.4, unchanged, against the Kafka listener: a 4-partition topic, 10,000 keyed
// records produced with acks -1 (gzip) and acks 1, an idempotent producer whose connection is
// cut after the broker has appended a batch but before the answer arrives (the retry must be
// dropped as a duplicate), a 2-member group that rebalances as members join and leave,
// commits, a broker restart, and a consumer of the same group resuming from the commit.
// Counts are checked with lost / duplicated / unexpected accounting.

import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import {
  type Admin,
  AssignerProtocol,
  CompressionTypes,
  type Consumer,
  Kafka,
  logLevel,
} from "kafkajs";
import { waitFor } from "../../helpers.ts";
import { minimumCaps } from "../../../protocol/kafka/mod.ts";
import { startKafkaServer } from "./kafka_serving.ts";

const TOPIC = "e2e";
const RECORDS = 10_000;
const BATCH = 500;

function client(broker: string, clientId: string): Kafka {
  return new Kafka({
    brokers: [broker],
    clientId,
    logLevel: logLevel.NOTHING,
    retry: { retries: 8, initialRetryTime: 50, maxRetryTime: 500 },
  });
}

type Tally = { seen: Map<string, number>; total: number };

function account(tally: Tally, expected: Set<string>) {
  let duplicated = 0;
  let unexpected = 0;
  for (const [value, count] of tally.seen) {
    if (!expected.has(value)) unexpected += count;
    else if (count > 1) duplicated += count - 1;
  }
  let lost = 0;
  for (const value of expected) if (!tally.seen.has(value)) lost++;
  return { lost, duplicated, unexpected };
}

/** Whether group "g" is Stable with members owning these numbers of partitions. */
async function groupShape(admin: Admin, shape: number[]): Promise<boolean> {
  const { groups } = await admin.describeGroups(["g"]);
  const group = groups[0];
  if (group === undefined || group.state !== "Stable") return false;
  const owned = group.members.map((member) => {
    const assignment = AssignerProtocol.MemberAssignment.decode(member.memberAssignment);
    return Object.values(assignment?.assignment ?? {}).reduce((n, ps) => n + ps.length, 0);
  });
  return JSON.stringify(owned.sort()) === JSON.stringify(shape);
}

async function runConsumer(kafka: Kafka, groupId: string, tally: Tally): Promise<Consumer> {
  const consumer = kafka.consumer({
    groupId,
    heartbeatInterval: 300,
    sessionTimeout: 10_000,
    maxWaitTimeInMs: 200,
  });
  await consumer.connect();
  await consumer.subscribe({ topic: TOPIC, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const value = message.value?.toString() ?? "";
      tally.seen.set(value, (tally.seen.get(value) ?? 0) + 1);
      tally.total++;
    },
  });
  return consumer;
}

/**
 * A TCP proxy in front of the listener (which advertises the proxy's port, so every kafkajs
 * connection goes through it). Once armed, it cuts the client's connection instead of
 * forwarding the answer to the next Produce request: the broker has appended the batch and
 * the client never hears so.
 */
async function cuttingProxy() {
  let target = 0;
  let armed = false;
  let cuts = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(target, "127.0.0.1");
    sockets.add(inbound);
    sockets.add(outbound);
    const produceIds = new Set<number>();
    const requests = frames((frame) => {
      const view = new DataView(frame.buffer, frame.byteOffset);
      if (view.getInt16(4) === 0) produceIds.add(view.getInt32(8));
      outbound.write(frame);
    });
    const answers = frames((frame) => {
      const id = new DataView(frame.buffer, frame.byteOffset).getInt32(4);
      if (armed && produceIds.has(id)) {
        armed = false;
        cuts++;
        inbound.destroy();
        outbound.destroy();
        return;
      }
      inbound.write(frame);
    });
    inbound.on("data", requests);
    outbound.on("data", answers);
    for (const [a, b] of [
      [inbound, outbound],
      [outbound, inbound],
    ] as const) {
      a.on("error", () => b.destroy());
      a.on("close", () => {
        b.destroy();
        sockets.delete(a);
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    retarget(port: number) {
      target = port;
    },
    arm() {
      armed = true;
    },
    cuts: () => cuts,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Splits a byte stream into whole size-prefixed frames (prefix included). */
function frames(onFrame: (frame: Uint8Array) => void) {
  let pending = new Uint8Array(0);
  return (bytes: Uint8Array) => {
    const joined = new Uint8Array(pending.length + bytes.length);
    joined.set(pending);
    joined.set(bytes, pending.length);
    let at = 0;
    while (joined.length - at >= 4) {
      const size = new DataView(joined.buffer, joined.byteOffset + at).getInt32(0);
      if (joined.length - at < 4 + size) break;
      onFrame(joined.slice(at, at + 4 + size));
      at += 4 + size;
    }
    pending = joined.slice(at);
  };
}

describe("kafkajs against the Kafka listener", () => {
  test("produce, idempotent retry, a 2-member group, commit, restart and resume", async () => {
    const proxy = await cuttingProxy();
    let broker = await startKafkaServer({ kafka: { advertisedPort: proxy.port } });
    proxy.retarget(broker.port);
    const address = `127.0.0.1:${proxy.port}`;
    try {
      const kafka = client(address, "e2e");
      const admin = kafka.admin();
      await admin.connect();
      assert.equal(
        await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 4 }] }),
        true,
      );

      const expected = new Set<string>();
      const batchOf = (from: number) =>
        Array.from({ length: BATCH }, (_, j) => {
          expected.add(`v${from + j}`);
          return { key: `k${from + j}`, value: `v${from + j}` };
        });
      const producer = kafka.producer();
      await producer.connect();
      for (let i = 0; i < RECORDS / 2; i += BATCH) {
        const messages = batchOf(i);
        await producer.send({
          topic: TOPIC,
          acks: -1,
          compression: CompressionTypes.GZIP,
          messages,
        });
      }
      await producer.disconnect();

      // The second half from an idempotent producer: the answer to its third Produce is cut,
      // and the retry of that batch must be acknowledged without appending it again.
      const idempotent = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await idempotent.connect();
      for (let i = RECORDS / 2; i < RECORDS; i += BATCH) {
        if (i === RECORDS / 2 + 2 * BATCH) proxy.arm();
        await idempotent.send({ topic: TOPIC, acks: -1, messages: batchOf(i) });
      }
      await idempotent.disconnect();
      assert.equal(proxy.cuts(), 1, "one answer was cut");
      let stored = 0;
      for (let p = 0; p < 4; p++) stored += broker.server.engine.partition(TOPIC, p).highWatermark;
      assert.equal(stored, RECORDS, "every record stored once, the retried batch not twice");

      // Two members: the first consumes alone, the second joins (rebalance), the first leaves.
      const tally: Tally = { seen: new Map(), total: 0 };
      const first = await runConsumer(client(address, "c1"), "g", tally);
      await waitFor(() => tally.total >= 1_000, "the first member to consume", 30_000);
      const second = await runConsumer(client(address, "c2"), "g", tally);
      // The rebalance hands each member two of the four partitions, then one member all four.
      await waitFor(
        () => groupShape(admin, [2, 2]),
        "two members with two partitions each",
        30_000,
      );
      await first.disconnect();
      await waitFor(() => groupShape(admin, [4]), "one member with every partition", 30_000);
      await waitFor(() => tally.seen.size === RECORDS, "every record", 60_000);
      await second.disconnect();
      await admin.disconnect();
      const counts = account(tally, expected);
      assert.equal(counts.lost, 0);
      assert.equal(counts.unexpected, 0);

      // Each member commits what it consumed before leaving: the commits cover every record.
      const committed = broker.server.engine.offsets.fetchGroup("g").get(TOPIC);
      let committedTotal = 0;
      for (const offset of committed?.values() ?? []) committedTotal += offset.offset;
      assert.equal(committedTotal, RECORDS, "committed offsets sum to the records consumed");
      // Restart; produce 100 more; a member of the same group reads exactly those.
      broker = await broker.restart();
      proxy.retarget(broker.port);
      const after = client(address, "after");
      const producer2 = after.producer();
      await producer2.connect();
      const fresh = new Set<string>();
      const messages = Array.from({ length: 100 }, (_, i) => {
        fresh.add(`w${i}`);
        return { key: `k${i}`, value: `w${i}` };
      });
      await producer2.send({ topic: TOPIC, acks: -1, messages });
      await producer2.disconnect();
      const resumed: Tally = { seen: new Map(), total: 0 };
      const third = await runConsumer(after, "g", resumed);
      await waitFor(
        () => resumed.seen.size === 100,
        "the records produced after the commit",
        30_000,
      );
      await third.disconnect();
      assert.deepEqual(account(resumed, fresh), { lost: 0, duplicated: 0, unexpected: 0 });
    } finally {
      await broker[Symbol.asyncDispose]();
      await proxy.close();
    }
  });

  test("with every API at its oldest version, kafkajs produces, consumes, commits", async () => {
    await using broker = await startKafkaServer({ caps: minimumCaps() });
    const kafka = client(broker.broker, "oldest");
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 4 }] });
    const producer = kafka.producer();
    await producer.connect();
    const expected = new Set<string>();
    const messages = Array.from({ length: 1_000 }, (_, i) => {
      expected.add(`o${i}`);
      return { key: `k${i}`, value: `o${i}` };
    });
    await producer.send({ topic: TOPIC, acks: -1, messages });
    await producer.disconnect();
    const tally: Tally = { seen: new Map(), total: 0 };
    const consumer = await runConsumer(kafka, "old", tally);
    await waitFor(() => tally.seen.size === expected.size, "every record", 30_000);
    await consumer.disconnect();
    assert.deepEqual(account(tally, expected), { lost: 0, duplicated: 0, unexpected: 0 });
    const offsets = await admin.fetchOffsets({ groupId: "old", topics: [TOPIC] });
    const committed = offsets[0]!.partitions.reduce((n, p) => n + Number(p.offset), 0);
    assert.equal(committed, 1_000);
    await admin.disconnect();
  });
});

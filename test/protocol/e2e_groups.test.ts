// End to end over loopback: consumer groups on the real server with the real client. Three
// members split a topic's partitions into a disjoint cover; when one leaves (close) or dies
// (its connections cut, no more heartbeats, evicted after sessionTimeoutMs) the survivors
// split them again. Records produced throughout are all received (at least once) and end
// committed. Committed offsets survive a server restart.

import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import { Admin, Consumer, type ConsumerRecord, Producer } from "../../protocol/client/mod.ts";
import { SluiceServer } from "../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";

const text = new TextDecoder();
const GROUP = "readers";
/** Small, so that an eviction takes half a second rather than the default 45. */
const SESSION_TIMEOUT_MS = 500;
const HEARTBEAT_INTERVAL_MS = 50;

async function startServer(dataDir: string, logs: string[]): Promise<SluiceServer> {
  return SluiceServer.start({
    dataDir,
    port: 0,
    sessionTimeoutMs: SESSION_TIMEOUT_MS,
    heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
    log: (message) => logs.push(message),
  });
}

/**
 * A TCP relay between a client and the server that can cut every connection it carries and
 * refuse new ones: to the server, the client behind it has died.
 */
class Relay {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #refusing = false;

  private constructor(target: number) {
    this.#server = net.createServer((client) => {
      if (this.#refusing) {
        client.destroy();
        return;
      }
      const upstream = net.connect(target, "127.0.0.1");
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        this.#sockets.add(from);
        from.on("data", (chunk: Uint8Array) => to.write(chunk));
        from.on("close", () => {
          this.#sockets.delete(from);
          to.destroy();
        });
        from.on("error", () => to.destroy());
      }
    });
  }

  static async start(target: number): Promise<Relay> {
    const relay = new Relay(target);
    await new Promise<void>((resolve) => relay.#server.listen(0, "127.0.0.1", resolve));
    return relay;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** Destroys every connection and refuses new ones. */
  kill(): void {
    this.#refusing = true;
    for (const socket of this.#sockets) socket.destroy();
  }

  async close(): Promise<void> {
    this.kill();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A group member that polls until stopped and keeps every value it received. */
class Member {
  readonly consumer: Consumer;
  readonly received: string[] = [];
  #stopped = false;
  #loop: Promise<void>;

  constructor(port: number, topic: string) {
    this.consumer = new Consumer({
      port,
      group: GROUP,
      maxWaitMs: 20,
      autoCommitIntervalMs: 20,
      retryBackoffMs: 5,
      retryBackoffMsMax: 50,
      connectTimeoutMs: 1_000,
    });
    this.consumer.subscribe([topic], { fromBeginning: true });
    this.#loop = this.#run();
    // A failure is rethrown by close(); until then it must not count as unhandled.
    this.#loop.catch(() => undefined);
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      for (const record of await this.consumer.poll()) {
        this.received.push(text.decode(record.value!));
      }
    }
  }

  partitions(): number[] {
    return this.consumer
      .assignment()
      .map((p) => p.partition)
      .sort((a, b) => a - b);
  }

  /** Stops polling and closes the consumer (commit, leave); rethrows a failure of the loop. */
  async close(): Promise<void> {
    this.#stopped = true;
    await this.consumer.close();
    await this.#loop;
  }
}

/** True when the members' partitions are non-empty, disjoint, and together 0 .. count-1. */
function isDisjointCover(members: Member[], count: number): boolean {
  const lists = members.map((m) => m.partitions());
  const all = lists.flat();
  return (
    lists.every((list) => list.length > 0) &&
    all.length === count &&
    new Set(all).size === count &&
    all.every((p) => p >= 0 && p < count)
  );
}

/** Waits until the live members cover the topic and the server says the same of them. */
async function waitForCover(admin: Admin, members: Member[], count: number): Promise<void> {
  await waitFor(async () => {
    if (!isDisjointCover(members, count)) return false;
    const group = await admin.describeGroup(GROUP);
    if (group.members.length !== members.length) return false;
    return members.every((member) => {
      const described = group.members.find((m) => m.memberId === member.consumer.memberId);
      const partitions = described?.assignment.flatMap((a) => a.partitions) ?? [];
      return partitions.sort((a, b) => a - b).join() === member.partitions().join();
    });
  }, `a disjoint cover of ${count} partitions by ${members.length} members`);
  assert.ok(isDisjointCover(members, count));
}

/** Sends `count` values spread over every partition; resolves when all are acknowledged. */
async function produce(producer: Producer, topic: string, partitions: number, tag: string) {
  const values = Array.from({ length: partitions * 5 }, (_, i) => `${tag}${i}`);
  await Promise.all(
    values.map((value, i) => producer.send({ topic, partition: i % partitions, value })),
  );
  return values;
}

/** Produces without pause until stopped; `stop` resolves with every value acknowledged. */
function produceStream(producer: Producer, topic: string, partitions: number) {
  let stopped = false;
  const values: string[] = [];
  const running = (async () => {
    for (let round = 0; !stopped; round++) {
      const batch = Array.from({ length: partitions }, (_, p) => `stream-${round}-${p}`);
      await Promise.all(batch.map((value, p) => producer.send({ topic, partition: p, value })));
      values.push(...batch);
    }
  })();
  return {
    async stop(): Promise<string[]> {
      stopped = true;
      await running;
      return values;
    },
  };
}

/**
 * Three members share the topic, then `remove` takes one away; the two left must split the
 * partitions again, receive every record and commit up to the end of every partition.
 */
async function rebalanceScenario(
  partitions: number,
  remove: (member: Member, relay: Relay) => Promise<void>,
): Promise<void> {
  using dir = tempDir();
  const logs: string[] = [];
  const server = await startServer(dir.path, logs);
  const relay = await Relay.start(server.port);
  const admin = new Admin({ port: server.port });
  const producer = new Producer({ port: server.port, lingerMs: 1 });
  const members: Member[] = [];
  try {
    await admin.createTopics([{ name: "events", partitions }]);
    const sent = await produce(producer, "events", partitions, "before-");
    // The third member talks through the relay, so that it can be made to die.
    members.push(new Member(server.port, "events"), new Member(server.port, "events"));
    members.push(new Member(relay.port, "events"));
    await waitForCover(admin, members, partitions);
    assert.deepEqual(
      members.map((m) => m.partitions().length),
      [1, 2, 3].map(() => partitions / 3),
    );
    // Records keep coming while the group loses a member and splits the partitions again.
    const stream = produceStream(producer, "events", partitions);
    await waitFor(
      () => members.every((m) => m.received.some((v) => v.startsWith("stream-"))),
      "every member to receive streamed records",
    );
    await remove(members[2]!, relay);
    const survivors = members.slice(0, 2);
    await waitForCover(admin, survivors, partitions);
    sent.push(...(await stream.stop()));
    sent.push(...(await produce(producer, "events", partitions, "after-")));

    const received = () => new Set(members.flatMap((m) => m.received));
    await waitFor(() => sent.every((v) => received().has(v)), "every record to be received");
    await waitFor(async () => {
      const { offsets } = await admin.describeGroup(GROUP);
      return offsets.length === partitions && offsets.every((o) => o.lag === 0);
    }, "commits up to the end of every partition");
    assert.equal(received().size, sent.length);
  } catch (error) {
    if (logs.length > 0) console.error(`server log:\n${logs.join("\n")}`);
    throw error;
  } finally {
    for (const member of members) await member.close();
    await producer.close();
    await admin.close();
    await relay.close();
    await server.close();
  }
}

describe("end to end: consumer groups", () => {
  test("three members split 9 partitions; the two left split them when one leaves", () =>
    rebalanceScenario(9, (member) => member.close()));

  test("three members split 6 partitions; the two left split them when one dies", () =>
    rebalanceScenario(6, async (_member, relay) => {
      // Its connections go and it can make no new ones: its heartbeats stop reaching the
      // server, which must evict it once sessionTimeoutMs has passed.
      relay.kill();
    }));

  test("committed offsets survive a server restart; the group resumes after them", async () => {
    using dir = tempDir();
    const logs: string[] = [];
    const topic = "durable";
    let server = await startServer(dir.path, logs);
    try {
      await withClients(server.port, async (admin, producer) => {
        await admin.createTopics([{ name: topic, partitions: 2 }]);
        await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            producer.send({ topic, partition: i % 2, value: `old-${i % 2}-${i >> 1}` }),
          ),
        );
      });
      const first = new Consumer({ port: server.port, group: "resumers", autoCommit: false });
      try {
        first.subscribe([topic], { fromBeginning: true });
        await pollUntil(first, 10);
        // Only part of what was read counts as processed.
        await first.commit([
          { topic, partition: 0, offset: 3 },
          { topic, partition: 1, offset: 5 },
        ]);
      } finally {
        await first.close();
      }
    } finally {
      await server.close();
    }

    server = await startServer(dir.path, logs);
    try {
      await withClients(server.port, async (admin, producer) => {
        const committed = await admin.fetchOffsets("resumers");
        assert.deepEqual(committed.map((c) => [c.partition, c.offset]).sort(), [
          [0, 3],
          [1, 5],
        ]);
        await producer.send({ topic, partition: 0, value: "new-0-5" });
        await producer.send({ topic, partition: 1, value: "new-1-5" });
      });
      const second = new Consumer({ port: server.port, group: "resumers" });
      try {
        second.subscribe([topic], { fromBeginning: true });
        const records = await pollUntil(second, 4);
        assert.deepEqual(
          records.map((r) => `${r.partition}@${r.offset}=${text.decode(r.value!)}`).sort(),
          ["0@3=old-0-3", "0@4=old-0-4", "0@5=new-0-5", "1@5=new-1-5"],
        );
      } finally {
        await second.close();
      }
    } catch (error) {
      if (logs.length > 0) console.error(`server log:\n${logs.join("\n")}`);
      throw error;
    } finally {
      await server.close();
    }
  });
});

async function withClients(
  port: number,
  run: (admin: Admin, producer: Producer) => Promise<void>,
): Promise<void> {
  const admin = new Admin({ port });
  const producer = new Producer({ port, lingerMs: 1 });
  try {
    await run(admin, producer);
  } finally {
    await producer.close();
    await admin.close();
  }
}

/** Polls until at least `count` records came; then once more, so that extras would show. */
async function pollUntil(consumer: Consumer, count: number): Promise<ConsumerRecord[]> {
  const records: ConsumerRecord[] = [];
  await waitFor(async () => {
    records.push(...(await consumer.poll({ maxWaitMs: 20 })));
    return records.length >= count;
  }, `${count} records`);
  records.push(...(await consumer.poll({ maxWaitMs: 0 })));
  return records;
}

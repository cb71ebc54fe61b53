// QueueFetch v2 and QueueAck v2 (PROTOCOL.md section 7a): a fetch's piggy-backed acks are
// applied at once and its answer leaves before their fdatasync; acks_durable_through in later
// answers confirms them, a long poll ends when it moves, and a QueueAck v2 barrier waits for
// every earlier sequenced ack. The disk here holds every fdatasync until the test lets it go,
// so anything that waited for one would not answer. Version 1 keeps waiting for durability.

import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import { type FileIO, realFileIO } from "../../../engine/mod.ts";
import { Admin } from "../../../protocol/client/mod.ts";
import { API } from "../../../protocol/codec/frames.ts";
import {
  type AckPartition,
  type QueueAckResponseV2,
  readQueueAckResponseV2,
  writeQueueAckRequest,
} from "../../../protocol/codec/queue_ack.ts";
import {
  type QueueFetchResponse,
  readQueueFetchResponse,
  writeQueueFetchRequest,
} from "../../../protocol/codec/queue_fetch.ts";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import {
  resolveServerLimits,
  type ServerLimits,
  SluiceServer,
} from "../../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../../helpers.ts";
import { RawClient } from "../server/raw_client.ts";
import { NEVER_MS, publish, statsOf, textOf, workConsumer } from "./queue_helpers.ts";

/** The real disk, except that fdatasyncs started while `held` wait until release(). */
class StallingDisk {
  held = false;
  failing = false;
  readonly #waiting: (() => void)[] = [];
  readonly io: FileIO = {
    ...realFileIO,
    datasync: async (fd: number) => {
      if (this.held) await new Promise<void>((resolve) => this.#waiting.push(resolve));
      if (this.failing)
        throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
      return realFileIO.datasync(fd);
    },
  };

  get stalled(): number {
    return this.#waiting.length;
  }

  release(): void {
    this.held = false;
    for (const resolve of this.#waiting.splice(0)) resolve();
  }
}

type Harness = { server: SluiceServer; port: number; admin: Admin; disk: StallingDisk };

async function withStallingServer(
  run: (harness: Harness) => Promise<void>,
  limits: Partial<ServerLimits> = {},
): Promise<void> {
  using dir = tempDir();
  const disk = new StallingDisk();
  const logs: string[] = [];
  const server = await SluiceServer.start({
    dataDir: dir.path,
    port: 0,
    limits,
    log: (message) => logs.push(message),
    engineOptions: { io: disk.io, onWarning: (message) => logs.push(message) },
  });
  const admin = new Admin({ port: server.port });
  try {
    // The topic never fsyncs: only the queue's state meets the held disk.
    await admin.createTopics([{ name: "jobs", partitions: 1, config: { fsync: "never" } }]);
    await admin.declareQueue("work", { topic: "jobs", from: "beginning" });
    await run({ server, port: server.port, admin, disk });
  } catch (error) {
    if (logs.length > 0) console.error(`server log:\n${logs.join("\n")}`);
    throw error;
  } finally {
    disk.release();
    await admin.close();
    await server.close();
  }
}

const accept = (offset: number): AckPartition[] => [
  { partition: 0, ranges: [{ first: offset, last: offset, type: "accept" }] },
];

async function joined(port: number): Promise<{ client: RawClient; memberId: string }> {
  const client = await RawClient.connect(port);
  await client.handshake();
  const id = client.request(API.QueueJoin, (w) => writeMsgpack(w, { queue: "work" }));
  const { reader } = await client.response(id);
  const memberId = readMsgpack(reader, "QueueJoin")["memberId"];
  assert.equal(typeof memberId, "string");
  return { client, memberId: memberId as string };
}

function sendFetch(
  client: RawClient,
  memberId: string,
  version: number,
  options: { acks?: AckPartition[]; maxWaitMs?: number } = {},
): Promise<QueueFetchResponse> {
  const id = client.request(
    API.QueueFetch,
    (w) =>
      writeQueueFetchRequest(w, {
        maxWaitMs: options.maxWaitMs ?? 0,
        maxRecords: 1,
        maxBytes: 1 << 20,
        queue: "work",
        memberId,
        acks: options.acks ?? [],
      }),
    version,
  );
  return client.response(id).then(({ errorCode, reader }) => {
    assert.equal(errorCode, 0);
    return readQueueFetchResponse(reader.raw(reader.remaining), version);
  });
}

function sendBarrier(client: RawClient, memberId: string): Promise<QueueAckResponseV2> {
  const id = client.request(
    API.QueueAck,
    (w) => writeQueueAckRequest(w, { queue: "work", memberId, partitions: [] }),
    2,
  );
  return client.response(id).then(({ errorCode, reader }) => {
    assert.equal(errorCode, 0);
    return readQueueAckResponseV2(reader);
  });
}

/** Whether `promise` has settled, checked after a round trip to the server on `admin`. */
async function settledAfterRoundTrip(promise: Promise<unknown>, admin: Admin): Promise<boolean> {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await statsOf(admin, "work");
  return settled;
}

describe("QueueFetch v2", () => {
  test("an accept rides a v2 fetch whose answer leaves before the fdatasync", async () => {
    await withStallingServer(async ({ port, admin, disk }) => {
      await publish(port, "jobs", ["a", "b"]);
      const { client, memberId } = await joined(port);
      try {
        const first = await sendFetch(client, memberId, 2);
        assert.deepEqual(first.partitions[0]!.acquired, [{ first: 0, last: 0, deliveryCount: 1 }]);
        assert.deepEqual(first.ackSeq, { ackSeq: 0, durableThrough: 0, failures: [] });
        disk.held = true;
        const second = await sendFetch(client, memberId, 2, { acks: accept(0) });
        // Answered with the next record while the accept's fdatasync is held (the default
        // queueFetchAckWaitMs 0: no wait for it).
        assert.deepEqual(second.acks, [{ partition: 0, errorCode: 0, errorMessage: null }]);
        assert.deepEqual(second.partitions[0]!.acquired, [{ first: 1, last: 1, deliveryCount: 1 }]);
        assert.deepEqual(second.ackSeq, { ackSeq: 1, durableThrough: 0, failures: [] });
        await waitFor(() => disk.stalled > 0, "the accept's fdatasync to be held");
        const barrier = sendBarrier(client, memberId);
        assert.equal(await settledAfterRoundTrip(barrier, admin), false, "barrier waits");
        disk.release();
        const confirmed = await barrier;
        assert.deepEqual(
          [confirmed.errorCode, confirmed.durableThrough, confirmed.failures],
          [0, 1, []],
        );
        assert.equal((await statsOf(admin, "work")).accepted, 1);
      } finally {
        client.close();
      }
    });
  });

  test("a v2 fetch carrying an accept waits for its fdatasync and confirms it itself", async () => {
    const limits = { queueFetchAckWaitMs: 1_000 };
    await withStallingServer(async ({ port, admin, disk }) => {
      await publish(port, "jobs", ["a", "b"]);
      const { client, memberId } = await joined(port);
      try {
        await sendFetch(client, memberId, 2);
        disk.held = true;
        const second = sendFetch(client, memberId, 2, { acks: accept(0) });
        await waitFor(() => disk.stalled > 0, "the accept's fdatasync to be held");
        assert.equal(await settledAfterRoundTrip(second, admin), false, "waits for the disk");
        disk.release();
        const answer = await second;
        assert.deepEqual(answer.acks, [{ partition: 0, errorCode: 0, errorMessage: null }]);
        assert.deepEqual(answer.partitions[0]!.acquired, [{ first: 1, last: 1, deliveryCount: 1 }]);
        // Its own answer says the accept it carried is durable: no later fetch is needed.
        assert.deepEqual(answer.ackSeq, { ackSeq: 1, durableThrough: 1, failures: [] });
      } finally {
        client.close();
      }
    }, limits);
  });

  test("no wait for acks on a connection whose last ones settled after the wait", async () => {
    const waitMs = 1_000;
    await withStallingServer(
      async ({ port, admin, disk }) => {
        await publish(port, "jobs", ["a", "b", "c", "d"]);
        const { client, memberId } = await joined(port);
        try {
          await sendFetch(client, memberId, 2);
          disk.held = true;
          // The disk holds the fdatasync past the wait: the fetch answers when the wait ends.
          const timedOut = await sendFetch(client, memberId, 2, { acks: accept(0) });
          assert.deepEqual(timedOut.ackSeq, { ackSeq: 1, durableThrough: 0, failures: [] });
          disk.release();
          assert.equal((await sendBarrier(client, memberId)).durableThrough, 1);
          // Sequence 1 took longer than the wait to settle: the next fetch does not wait.
          disk.held = true;
          const startMs = performance.now();
          const atOnce = await sendFetch(client, memberId, 2, { acks: accept(1) });
          const tookMs = performance.now() - startMs;
          assert.ok(tookMs < waitMs / 2, `answered after ${tookMs} ms, not at once`);
          assert.deepEqual(atOnce.ackSeq, { ackSeq: 2, durableThrough: 1, failures: [] });
          await waitFor(() => disk.stalled > 0, "the accept's fdatasync to be held");
          disk.release();
          assert.equal((await sendBarrier(client, memberId)).durableThrough, 2);
          // Sequence 2 settled within the wait: the fetch after it waits again.
          disk.held = true;
          const waiting = sendFetch(client, memberId, 2, { acks: accept(2) });
          await waitFor(() => disk.stalled > 0, "the accept's fdatasync to be held");
          assert.equal(await settledAfterRoundTrip(waiting, admin), false, "waits for the disk");
          disk.release();
          assert.deepEqual((await waiting).ackSeq, { ackSeq: 3, durableThrough: 3, failures: [] });
        } finally {
          client.close();
        }
      },
      { queueFetchAckWaitMs: waitMs },
    );
  });

  test("queueFetchAckWaitMs out of its range is refused with its value", () => {
    assert.throws(
      () => resolveServerLimits({ queueFetchAckWaitMs: 1_001 }),
      (error: unknown) =>
        error instanceof RangeError && /queueFetchAckWaitMs 1001 .*\[0, 1000\]/.test(error.message),
    );
    assert.equal(resolveServerLimits({}).queueFetchAckWaitMs, 0);
  });

  test("a v1 fetch carrying an accept is still answered only once it is durable", async () => {
    await withStallingServer(async ({ port, admin, disk }) => {
      await publish(port, "jobs", ["a", "b"]);
      const { client, memberId } = await joined(port);
      try {
        await sendFetch(client, memberId, 1);
        disk.held = true;
        const second = sendFetch(client, memberId, 1, { acks: accept(0) });
        await waitFor(() => disk.stalled > 0, "the accept's fdatasync to be held");
        assert.equal(await settledAfterRoundTrip(second, admin), false, "v1 waits");
        disk.release();
        const answer = await second;
        assert.equal(answer.ackSeq, undefined);
        assert.deepEqual(answer.acks, [{ partition: 0, errorCode: 0, errorMessage: null }]);
      } finally {
        client.close();
      }
    });
  });

  test("a v2 long poll ends when an ack it waits on becomes durable", async () => {
    await withStallingServer(async ({ port, disk }) => {
      await publish(port, "jobs", ["a"]);
      const { client, memberId } = await joined(port);
      try {
        await sendFetch(client, memberId, 2);
        disk.held = true;
        const startMs = performance.now();
        const polling = sendFetch(client, memberId, 2, { acks: accept(0), maxWaitMs: NEVER_MS });
        await waitFor(() => disk.stalled > 0, "the accept's fdatasync to be held");
        disk.release();
        const answer = await polling;
        assert.ok(performance.now() - startMs < NEVER_MS / 2, "the poll ended with the ack");
        assert.deepEqual(answer.partitions, []);
        assert.equal(answer.ackSeq?.ackSeq, 1);
        assert.equal(answer.ackSeq?.durableThrough, 1);
      } finally {
        client.close();
      }
    });
  });

  test("an ack whose fdatasync fails is reported as an ack failure, not as durable", async () => {
    await withStallingServer(async ({ port, disk }) => {
      await publish(port, "jobs", ["a", "b"]);
      const { client, memberId } = await joined(port);
      try {
        await sendFetch(client, memberId, 2);
        disk.held = true;
        const second = await sendFetch(client, memberId, 2, { acks: accept(0) });
        assert.equal(second.ackSeq?.ackSeq, 1);
        await waitFor(() => disk.stalled > 0, "the accept's fdatasync to be held");
        disk.failing = true;
        disk.release();
        const confirmed = await sendBarrier(client, memberId);
        assert.equal(confirmed.failures.length, 1);
        const [failure] = confirmed.failures;
        assert.equal(failure!.ackSeq, 1);
        assert.equal(failure!.partition, 0);
        assert.notEqual(failure!.errorCode, 0);
      } finally {
        client.close();
      }
    });
  });
});

describe("queue consumer with QueueFetch v2", () => {
  test("accept() resolves only once durable, while the next poll is answered at once", async () => {
    await withStallingServer(async ({ server, port, admin, disk }) => {
      await publish(port, "jobs", ["a"]);
      // Keeping up (the fetch came back short of maxRecords): the answers ride the next fetch.
      await using consumer = workConsumer(port, {
        maxRecords: 5,
        ackFlushMs: NEVER_MS,
      });
      const [message] = await consumer.poll();
      assert.equal(textOf(message!), "a");
      await publish(port, "jobs", ["b"]);
      disk.held = true;
      const accepted = message!.accept();
      const next = await consumer.poll();
      assert.deepEqual(next.map(textOf), ["b"], "answered while the fdatasync is held");
      await waitFor(() => disk.stalled > 0, "the accept's fdatasync to be held");
      assert.equal(await settledAfterRoundTrip(accepted, admin), false, "not durable yet");
      disk.release();
      await accepted;
      const requests = server.stats()["requests"] as Record<string, number>;
      assert.equal(requests[String(API.QueueAck)] ?? 0, 1, "one barrier, no QueueAck v1");
      assert.equal((await statsOf(admin, "work")).accepted, 1);
    });
  });
});

/**
 * A TCP proxy to `port` whose handshake answer offers QueueFetch and QueueAck version 1 only,
 * as a broker older than version 2 does.
 */
async function v1OnlyProxy(port: number): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    sockets.add(client).add(upstream);
    let first = true;
    client.on("data", (chunk) => upstream.write(chunk));
    upstream.on("data", (chunk: Buffer) => {
      if (first) {
        first = false;
        // The handshake answer: api_key, min 1, max 2 for QueueFetch (19) and QueueAck (20).
        let patched = 0;
        for (const key of [0x13, 0x14]) {
          const at = chunk.indexOf(Buffer.from([0, key, 0, 1, 0, 2]));
          if (at !== -1) {
            chunk[at + 5] = 1;
            patched++;
          }
        }
        assert.equal(patched, 2, "the handshake answer came whole in the first chunk");
      }
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("queue consumer against a broker without QueueFetch v2", () => {
  test("answers ride a v1 fetch, whose answer waits for their fdatasync", async () => {
    await withStallingServer(async ({ port, admin, disk }) => {
      await publish(port, "jobs", ["a"]);
      const proxy = await v1OnlyProxy(port);
      try {
        await using consumer = workConsumer(proxy.port, {
          maxRecords: 5,
          ackFlushMs: NEVER_MS,
        });
        const [message] = await consumer.poll();
        assert.equal(textOf(message!), "a");
        disk.held = true;
        const accepted = message!.accept();
        const next = consumer.poll();
        await waitFor(() => disk.stalled > 0, "the accept's fdatasync to be held");
        assert.equal(await settledAfterRoundTrip(next, admin), false, "v1 waits");
        disk.release();
        assert.deepEqual(await next, []);
        await accepted;
        assert.equal((await statsOf(admin, "work")).accepted, 1);
      } finally {
        await proxy.close();
      }
    });
  });
});

// Hostile and broken clients: the server must stay up, answer or close with a reason, and keep
// serving a well-behaved client throughout.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { writeFetchRequest } from "../../../protocol/codec/fetch.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../../helpers.ts";
import { RawClient } from "./raw_client.ts";

async function withServer(
  run: (server: SluiceServer) => Promise<void>,
  limits: Parameters<typeof SluiceServer.start>[0]["limits"] = {},
): Promise<void> {
  using dir = tempDir();
  const logs: string[] = [];
  const server = await SluiceServer.start({
    dataDir: dir.path,
    port: 0,
    limits,
    log: (message) => logs.push(message),
    engineOptions: { onWarning: () => {} },
  });
  try {
    await run(server);
  } finally {
    await server.close();
  }
}

/** A well-behaved client proves the server still serves: a Stats round trip. */
async function assertServing(server: SluiceServer): Promise<void> {
  const client = await RawClient.connect(server.port);
  try {
    await client.handshake();
    const id = client.request(API.Stats, (w) => writeMsgpack(w, {}));
    const { errorCode, reader } = await client.response(id);
    assert.equal(errorCode, 0);
    assert.equal(typeof readMsgpack(reader, "stats")["uptimeMs"], "number");
  } finally {
    client.close();
  }
}

function frameWithSize(size: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const bytes = new Uint8Array(4 + payload.length);
  new DataView(bytes.buffer).setUint32(0, size);
  bytes.set(payload, 4);
  return bytes;
}

describe("server under hostile input", () => {
  test("an oversized length prefix before the handshake closes only that connection", async () => {
    await withServer(async (server) => {
      const hostile = await RawClient.connect(server.port);
      hostile.send(frameWithSize(0xffff_ffff));
      await hostile.waitClosed();
      await assertServing(server);
    });
  });

  test("an oversized frame after the handshake closes the connection", async () => {
    await withServer(
      async (server) => {
        const hostile = await RawClient.connect(server.port);
        await hostile.handshake();
        hostile.send(frameWithSize(1024 * 1024 + 1));
        await hostile.waitClosed();
        await assertServing(server);
      },
      { frameBytesMax: 1024 * 1024 },
    );
  });

  test("a request before the handshake gets HANDSHAKE_REQUIRED and a close", async () => {
    await withServer(async (server) => {
      const client = await RawClient.connect(server.port);
      const id = client.request(API.Stats, (w) => writeMsgpack(w, {}));
      const { errorCode } = await client.response(id);
      assert.equal(errorCode, WIRE_ERRORS.HANDSHAKE_REQUIRED);
      await client.waitClosed();
    });
  });

  test("a Handshake answered with an error does not count (PROTOCOL.md section 4)", async () => {
    await withServer(async (server) => {
      const client = await RawClient.connect(server.port);
      const version = client.request(API.Handshake, (w) => w.string("c").string("1"), 2);
      const short = client.request(API.Handshake, (w) => w.string("c"));
      const trailing = client.request(API.Handshake, (w) => w.string("c").string("1").u32(0));
      assert.equal((await client.response(version)).errorCode, WIRE_ERRORS.UNSUPPORTED_VERSION);
      assert.equal((await client.response(short)).errorCode, WIRE_ERRORS.INVALID_REQUEST);
      assert.equal((await client.response(trailing)).errorCode, WIRE_ERRORS.INVALID_REQUEST);
      const stats = client.request(API.Stats, (w) => writeMsgpack(w, {}));
      assert.equal((await client.response(stats)).errorCode, WIRE_ERRORS.HANDSHAKE_REQUIRED);
      await client.waitClosed();
      await assertServing(server);
    });
  });

  test("bad APIs, versions and bodies get errors and the connection lives", async () => {
    await withServer(async (server) => {
      const client = await RawClient.connect(server.port);
      await client.handshake();
      const unknown = client.request(999, () => {});
      const version = client.request(API.Stats, (w) => writeMsgpack(w, {}), 7);
      const garbage = client.request(API.Produce, (w) => w.raw(new Uint8Array([1, 2, 3])));
      const badPack = client.request(API.Metadata, (w) => w.raw(new Uint8Array([0xc1])));
      const hugeCount = client.request(API.Fetch, (w) => w.u32(0).u32(0).u32(0).u16(65_535));
      assert.equal((await client.response(unknown)).errorCode, WIRE_ERRORS.UNKNOWN_API);
      assert.equal((await client.response(version)).errorCode, WIRE_ERRORS.UNSUPPORTED_VERSION);
      assert.equal((await client.response(garbage)).errorCode, WIRE_ERRORS.INVALID_REQUEST);
      assert.equal((await client.response(badPack)).errorCode, WIRE_ERRORS.INVALID_REQUEST);
      assert.equal((await client.response(hugeCount)).errorCode, WIRE_ERRORS.INVALID_REQUEST);
      const after = client.request(API.Stats, (w) => writeMsgpack(w, {}));
      assert.equal((await client.response(after)).errorCode, 0);
      client.close();
    });
  });

  test("a truncated frame followed by a disconnect leaves the server serving", async () => {
    await withServer(async (server) => {
      const client = await RawClient.connect(server.port);
      await client.handshake();
      client.send(frameWithSize(1000, new Uint8Array(10)));
      client.close();
      await assertServing(server);
    });
  });

  test("random garbage streams never crash the server", async () => {
    await withServer(async (server) => {
      let seed = 12345;
      const random = () => {
        seed = (seed * 1_103_515_245 + 12_345) & 0x7fff_ffff;
        return seed;
      };
      for (let round = 0; round < 20; round++) {
        const client = await RawClient.connect(server.port);
        if (round % 2 === 0) await client.handshake();
        const junk = new Uint8Array(50 + (random() % 2000));
        for (let i = 0; i < junk.length; i++) junk[i] = random() & 0xff;
        // Keep the first frame's size small so that the garbage is parsed, not just refused.
        junk[0] = 0;
        junk[1] = 0;
        client.send(junk);
        client.close();
      }
      await assertServing(server);
    });
  });

  test("a thousand idle connections do not stop a well-behaved client", async () => {
    await withServer(async (server) => {
      const idle: RawClient[] = [];
      try {
        for (let i = 0; i < 1000; i++) idle.push(await RawClient.connect(server.port));
        await waitFor(() => server.connectionCount >= 1000, "1000 connections accepted");
        await assertServing(server);
      } finally {
        for (const client of idle) client.close();
      }
    });
  });

  test("idle connections are closed after idleTimeoutMs", async () => {
    await withServer(
      async (server) => {
        const client = await RawClient.connect(server.port);
        await client.handshake();
        await client.waitClosed();
        await assertServing(server);
      },
      { idleTimeoutMs: 300 },
    );
  });

  test("connections past connectionsMax are closed at once", async () => {
    await withServer(
      async (server) => {
        const first = await RawClient.connect(server.port);
        const second = await RawClient.connect(server.port);
        await waitFor(() => server.connectionCount === 2, "two connections");
        const third = await RawClient.connect(server.port);
        await third.waitClosed();
        first.close();
        second.close();
      },
      { connectionsMax: 2 },
    );
  });
});

describe("server backpressure", () => {
  test("a client that stops reading makes the server stop reading, memory bounded", async () => {
    const outboxBytesMax = 256 * 1024;
    await withServer(
      async (server) => {
        await server.engine.createTopic("big", { config: { fsync: "never" } });
        const value = new Uint8Array(64 * 1024).fill(1);
        for (let i = 0; i < 64; i++) {
          await server.engine.append("big", 0, encodeRecordBatch([{ value }], { timestamp: 1 }));
        }
        const client = await RawClient.connect(server.port);
        await client.handshake();
        client.socket.pause();
        const requests = 200;
        const ids: number[] = [];
        for (let i = 0; i < requests; i++) {
          ids.push(
            client.request(API.Fetch, (w) =>
              writeFetchRequest(w, {
                maxWaitMs: 0,
                minBytes: 0,
                maxBytes: 1024 * 1024,
                topics: [
                  {
                    topic: "big",
                    partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 1024 * 1024 }],
                  },
                ],
              }),
            ),
          );
        }
        await waitFor(() => server.stats()["pausedConnections"] === 1, "the server to pause");
        // Paused: at most what was queued when the limit was crossed, plus one response.
        const queued = server.stats()["queuedResponseBytes"] as number;
        assert.ok(queued <= outboxBytesMax + 1024 * 1024 + 4096, `queued ${queued} bytes`);
        client.socket.resume();
        for (const id of ids) assert.equal((await client.response(id)).errorCode, 0);
        client.close();
      },
      { outboxBytesMax },
    );
  });

  test("many slow consumers together stay within connectionBuffersBytesMax", async () => {
    const connectionBuffersBytesMax = 1024 * 1024;
    await withServer(
      async (server) => {
        await server.engine.createTopic("big", { config: { fsync: "never" } });
        const value = new Uint8Array(64 * 1024).fill(1);
        for (let i = 0; i < 64; i++) {
          await server.engine.append("big", 0, encodeRecordBatch([{ value }], { timestamp: 1 }));
        }
        const fetch = (client: RawClient) =>
          client.request(API.Fetch, (w) =>
            writeFetchRequest(w, {
              maxWaitMs: 0,
              minBytes: 0,
              maxBytes: 1024 * 1024,
              topics: [
                {
                  topic: "big",
                  partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 1024 * 1024 }],
                },
              ],
            }),
          );
        // Each slow client would stay under its own outboxBytesMax; together they pass the budget.
        const slow: RawClient[] = [];
        for (let i = 0; i < 6; i++) {
          const client = await RawClient.connect(server.port);
          await client.handshake();
          slow.push(client);
        }
        for (const client of slow) {
          client.socket.pause();
          // More than the kernel's socket buffers take: the rest waits in the server.
          for (let request = 0; request < 24; request++) fetch(client);
        }
        // Once the answers waiting pass the budget, the slow connections' later requests are
        // held, not served.
        await waitFor(() => server.stats()["pausedConnections"] === 6, "the slow ones held");
        const queued = server.stats()["queuedResponseBytes"] as number;
        // At most the budget plus the answer in progress on each connection (1 MiB here).
        const bound = connectionBuffersBytesMax + 6 * (1024 * 1024 + 4096);
        assert.ok(queued <= bound, `queued ${queued} of at most ${bound}`);
        assert.ok(queued < 6 * 24 * 1024 * 1024, "far less than the answers asked for");
        // A connection with nothing waiting is still served.
        const fresh = await RawClient.connect(server.port);
        await fresh.handshake();
        assert.equal((await fresh.response(fetch(fresh))).errorCode, 0);
        fresh.close();
        for (const client of slow) client.close();
      },
      { outboxBytesMax: 64 * 1024 * 1024, connectionBuffersBytesMax },
    );
  });
});

// The server keeps views of received bytes (produce batches lent to the engine) only because
// each transport hands every read a buffer of its own and never reuses it. This checks that
// claim for each transport the runtime has: every chunk received is kept as a view while
// 32 MiB more arrive, then compared with a copy taken when it arrived.

import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import type { TransportSocket } from "../../protocol/codec/outbox.ts";
import { defaultTransport, listen, type TransportKind } from "../../protocol/server/_transport.ts";

const TOTAL_BYTES = 32 * 1024 * 1024;
const WRITE_BYTES = 256 * 1024;

function pattern(from: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = ((from + i) * 31) >>> 7;
  return bytes;
}

async function receiveAll(kind: TransportKind) {
  const views: Uint8Array[] = [];
  const copies: Uint8Array[] = [];
  let fresh: boolean | undefined;
  let received = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const server = await listen(
    "127.0.0.1",
    0,
    {
      open(socket: TransportSocket) {
        fresh = socket.freshChunks;
      },
      data(_socket, bytes) {
        views.push(bytes);
        copies.push(bytes.slice());
        received += bytes.length;
        if (received >= TOTAL_BYTES) done();
      },
      drain() {},
      close() {},
    },
    kind,
  );
  const client = net.connect(server.port, "127.0.0.1");
  let sent = 0;
  const pump = () => {
    while (sent < TOTAL_BYTES) {
      const chunk = pattern(sent, WRITE_BYTES);
      sent += chunk.length;
      if (!client.write(chunk)) return void client.once("drain", pump);
    }
  };
  client.once("connect", pump);
  await finished;
  client.destroy();
  server.stop();
  return { views, copies, fresh };
}

const kinds: TransportKind[] = defaultTransport() === "bun" ? ["bun", "node"] : ["node"];

describe("received chunks", () => {
  for (const kind of kinds) {
    test(`the ${kind} transport never reuses a received buffer under a kept view`, async () => {
      const { views, copies, fresh } = await receiveAll(kind);
      assert.equal(fresh, true, "the transport says its chunks are fresh");
      assert.ok(views.length > 1);
      const buffers = new Set(views.map((view) => view.buffer));
      assert.equal(buffers.size, views.length, "each chunk is a buffer of its own");
      for (let i = 0; i < views.length; i++) {
        assert.ok(Buffer.from(views[i]!).equals(copies[i]!), `chunk ${i} is unchanged`);
      }
    });
  }
});

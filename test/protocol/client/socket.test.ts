// The client's two socket paths (socket.ts): Bun.connect (under Bun) and node:net. Both must
// report what a write took, hand the rest back for after `drain`, deliver chunks that stay
// valid, and report a close once; a ClientConnection must work the same over either, including
// megabyte requests and responses that arrive in many chunks.

import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { ClientConnection } from "../../../protocol/client/connection.ts";
import {
  type ClientSocketKind,
  defaultSocketKind,
  openSocket,
} from "../../../protocol/client/socket.ts";
import { Outbox } from "../../../protocol/codec/outbox.ts";
import { waitFor } from "../../helpers.ts";
import { FakeServer } from "./fake_server.ts";

const KINDS: ClientSocketKind[] = defaultSocketKind() === "bun" ? ["bun", "node"] : ["node"];

/** A server that reads nothing until `release()`, then counts every byte it receives. */
async function slowSink() {
  let received = 0;
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.pause();
    socket.on("data", (chunk: Uint8Array) => {
      received += chunk.length;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get received() {
      return received;
    },
    get sockets() {
      return sockets;
    },
    release: () => {
      for (const socket of sockets) socket.resume();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe("client sockets", () => {
  for (const kind of KINDS) {
    test(`${kind}: a write too large for the kernel finishes after drain`, async () => {
      const sink = await slowSink();
      let drains = 0;
      let closed = 0;
      const socket = await openSocket(
        "127.0.0.1",
        sink.port,
        { data: () => {}, drain: () => drains++, close: () => closed++ },
        kind,
      );
      try {
        assert.equal(socket.kind, kind);
        const outbox = new Outbox({ ...socket, write: (bytes) => socket.write(bytes) });
        const payload = new Uint8Array(32 * 1024 * 1024).fill(7);
        outbox.enqueue([payload]);
        // 32 MiB do not fit the kernel's buffers: a Bun socket takes part and leaves the rest
        // with the Outbox; node:net takes it all into its own buffer and asks for a wait.
        assert.equal(outbox.idle, kind === "node");
        sink.release();
        await waitFor(() => {
          if (drains > 0) outbox.flush();
          return outbox.idle && sink.received === payload.length;
        }, "every byte at the sink");
        assert.ok(drains > 0);
        socket.end();
        await waitFor(() => closed === 1, "one close");
      } finally {
        socket.destroy();
        await sink.close();
      }
    });

    test(`${kind}: a refused connect rejects, and the server closing is one close`, async () => {
      const sink = await slowSink();
      const port = sink.port;
      let closed = 0;
      const socket = await openSocket(
        "127.0.0.1",
        port,
        { data: () => {}, drain: () => {}, close: () => closed++ },
        kind,
      );
      await waitFor(() => sink.sockets.length === 1, "the server's side");
      await sink.close();
      await waitFor(() => closed === 1, "the close");
      socket.destroy();
      assert.equal(closed, 1);
      const handlers = { data: () => {}, drain: () => {}, close: () => {} };
      await assert.rejects(openSocket("127.0.0.1", port, handlers, kind));
    });

    test(`${kind}: a ClientConnection sends and receives multi-megabyte frames`, async () => {
      const server = await FakeServer.start();
      server.hook = (request) => {
        if (request.apiKey !== API.Stats) return false;
        const fields = readMsgpack(request.body, "echo");
        request.connection.respondMsgpack(request.correlationId, fields);
        return true;
      };
      const connection = await ClientConnection.connect("127.0.0.1", server.port, {
        transport: kind,
      });
      try {
        assert.equal(connection.transport, kind);
        const blob = new Uint8Array(3 * 1024 * 1024).map((_, i) => i & 0xff);
        const answers = [1, 2, 3].map((n) =>
          connection
            .request(API.Stats, (w) => writeMsgpack(w, { n, blob }))
            .then((reader) => readMsgpack(reader, "echo")),
        );
        for (const [i, answer] of (await Promise.all(answers)).entries()) {
          assert.equal(answer["n"], i + 1);
          assert.deepEqual(new Uint8Array(answer["blob"] as Uint8Array), blob);
        }
      } finally {
        await connection.close();
        await server.close();
      }
    });
  }
});

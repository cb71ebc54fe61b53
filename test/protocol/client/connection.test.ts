// The ClientConnection against a fake server (fake_server.ts): handshake, correlation
// of responses that come back in any order, the in-flight bound, write coalescing, timeouts,
// and what a dropped connection does to requests still outstanding.

import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { ClientConnection } from "../../../protocol/client/connection.ts";
import { metadata } from "../../../protocol/client/control_calls.ts";
import { ClientError } from "../../../protocol/client/errors.ts";
import { ServerError, WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { waitFor } from "../../helpers.ts";
import { type FakeRequest, FakeServer } from "./fake_server.ts";

async function withServer(run: (server: FakeServer) => Promise<void>): Promise<void> {
  const server = await FakeServer.start();
  try {
    await run(server);
  } finally {
    await server.close();
  }
}

/** A Stats-shaped request whose body is `{ n }`; the fake's hook answers `{ n }` back. */
function echo(connection: ClientConnection, n: number): Promise<number> {
  return connection
    .request(API.Stats, (w) => writeMsgpack(w, { n }))
    .then((reader) => readMsgpack(reader, "echo")["n"] as number);
}

function holdStats(server: FakeServer): FakeRequest[] {
  const held: FakeRequest[] = [];
  server.hook = (request) => {
    if (request.apiKey !== API.Stats) return false;
    held.push(request);
    return true;
  };
  return held;
}

function answer(request: FakeRequest): void {
  const n = readMsgpack(request.body, "echo")["n"];
  request.connection.respondMsgpack(request.correlationId, { n });
}

describe("ClientConnection", () => {
  test("handshakes, then matches responses to requests by correlation id in any order", () =>
    withServer(async (server) => {
      const connection = await ClientConnection.connect("127.0.0.1", server.port, {
        clientName: "t",
      });
      try {
        assert.equal(connection.serverVersion, "fake");
        assert.equal(connection.frameBytesMax, 64 * 1024 * 1024);
        const held = holdStats(server);
        const answers = [1, 2, 3, 4, 5].map((n) => echo(connection, n));
        await waitFor(() => held.length === 5, "five requests at the server");
        for (const request of [...held].reverse()) answer(request);
        assert.deepEqual(await Promise.all(answers), [1, 2, 3, 4, 5]);
      } finally {
        await connection.close();
      }
    }));

  test("keeps at most the server's inFlightMax outstanding and queues the rest locally", () =>
    withServer(async (server) => {
      server.inFlightMax = 2;
      const connection = await ClientConnection.connect("127.0.0.1", server.port);
      try {
        assert.equal(connection.inFlightMax, 2);
        const held = holdStats(server);
        const answers = Array.from({ length: 7 }, (_, n) => echo(connection, n));
        await waitFor(() => held.length === 2, "two requests at the server");
        assert.equal(connection.inFlight, 2);
        assert.equal(connection.waiting, 5);
        let answered = 0;
        while (answered < 7) {
          const next = held[answered]!;
          answer(next);
          answered++;
          await waitFor(
            () => held.length === Math.min(answered + 2, 7),
            `request ${answered + 2} to reach the server`,
          );
          assert.ok(held.length - answered <= 2, "never more than 2 outstanding");
        }
        assert.deepEqual(await Promise.all(answers), [0, 1, 2, 3, 4, 5, 6]);
      } finally {
        await connection.close();
      }
    }));

  test("requests made in one tick go out in one socket write", () =>
    withServer(async (server) => {
      const connection = await ClientConnection.connect("127.0.0.1", server.port);
      try {
        const writesBefore = connection.stats.writes;
        const answers = Array.from({ length: 100 }, (_, n) => echo(connection, n));
        server.hook = (request) => {
          if (request.apiKey === API.Stats) answer(request);
          return request.apiKey === API.Stats;
        };
        assert.equal((await Promise.all(answers)).length, 100);
        assert.equal(connection.stats.writes - writesBefore, 1);
        assert.equal(connection.stats.requests, 101);
        assert.equal(connection.stats.responses, 101);
      } finally {
        await connection.close();
      }
    }));

  test("a request without an answer in time fails with a retriable REQUEST_TIMED_OUT", () =>
    withServer(async (server) => {
      const connection = await ClientConnection.connect("127.0.0.1", server.port, {
        requestTimeoutMs: 40,
      });
      try {
        const held = holdStats(server);
        await assert.rejects(echo(connection, 1), (error: unknown) => {
          assert.ok(error instanceof ClientError);
          assert.equal(error.code, "REQUEST_TIMED_OUT");
          assert.equal(error.retriable, true);
          return true;
        });
        // The slot stays taken until the late answer comes, and that answer is dropped.
        assert.equal(connection.inFlight, 1);
        answer(held[0]!);
        await waitFor(() => connection.inFlight === 0, "the late answer");
        server.hook = undefined;
        const result = await metadata(connection, null);
        assert.deepEqual(result.topics, []);
      } finally {
        await connection.close();
      }
    }));

  test("outstanding requests share one timeout timer; each times out at its own deadline", () =>
    withServer(async (server) => {
      server.inFlightMax = 4;
      const connection = await ClientConnection.connect("127.0.0.1", server.port, {
        requestTimeoutMs: 60_000,
      });
      try {
        const held = holdStats(server);
        let longTimers = 0;
        // tidy: allow-timeout counted, not waited for: the spy passes every timer on unchanged
        const real = globalThis.setTimeout;
        const spy = (handler: () => void, delayMs?: number, ...rest: unknown[]) => {
          if ((delayMs ?? 0) > 1_000) longTimers++;
          return real(handler, delayMs, ...rest);
        };
        // tidy: allow-timeout the spy above, for the requests' sending only
        globalThis.setTimeout = spy as typeof real;
        let slow: Promise<number>[];
        try {
          slow = Array.from({ length: 50 }, (_, n) => echo(connection, n));
        } finally {
          // tidy: allow-timeout the real timers back
          globalThis.setTimeout = real;
        }
        assert.ok(longTimers <= 1, `${longTimers} timers for 50 outstanding requests`);
        await waitFor(() => held.length === 4, "the requests in flight at the server");
        // Shorter deadlines after longer ones, one in flight and one waiting for a slot.
        const sentAt = performance.now();
        const short = [30, 10].map((timeoutMs) =>
          connection
            .request(API.Stats, (w) => writeMsgpack(w, {}), { timeoutMs })
            .then(
              () => assert.fail(`a ${timeoutMs} ms request was answered`),
              (error: unknown) => ({ error, waitedMs: performance.now() - sentAt, timeoutMs }),
            ),
        );
        for (const { error, waitedMs, timeoutMs } of await Promise.all(short)) {
          assert.equal((error as ClientError).code, "REQUEST_TIMED_OUT");
          assert.ok(waitedMs >= timeoutMs, `a ${timeoutMs} ms timeout came after ${waitedMs} ms`);
        }
        server.hook = (request) => {
          if (request.apiKey === API.Stats) answer(request);
          return request.apiKey === API.Stats;
        };
        for (const request of held) answer(request);
        assert.deepEqual(
          await Promise.all(slow),
          Array.from({ length: 50 }, (_, n) => n),
        );
      } finally {
        await connection.close();
      }
    }));

  test("a dropped connection rejects every outstanding and queued request as retriable", () =>
    withServer(async (server) => {
      server.inFlightMax = 2;
      const connection = await ClientConnection.connect("127.0.0.1", server.port);
      const held = holdStats(server);
      const answers = [1, 2, 3, 4].map((n) => echo(connection, n));
      await waitFor(() => held.length === 2, "two requests at the server");
      held[0]!.connection.destroy();
      const results = await Promise.allSettled(answers);
      for (const result of results) {
        assert.equal(result.status, "rejected");
        const error = (result as PromiseRejectedResult).reason;
        assert.ok(error instanceof ClientError);
        assert.equal(error.code, "CONNECTION_CLOSED");
        assert.equal(error.retriable, true);
      }
      assert.equal(connection.closed, true);
      await assert.rejects(echo(connection, 5), { code: "CONNECTION_CLOSED" });
      await connection.close();
    }));

  test("a request-level error code rejects with a ServerError named by the code", () =>
    withServer(async (server) => {
      const connection = await ClientConnection.connect("127.0.0.1", server.port);
      try {
        server.hook = (request) => {
          request.connection.respondError(
            request.correlationId,
            WIRE_ERRORS.INVALID_REQUEST,
            "bad body",
          );
          return true;
        };
        await assert.rejects(echo(connection, 1), (error: unknown) => {
          assert.ok(error instanceof ServerError);
          assert.equal(error.code, "INVALID_REQUEST");
          assert.equal(error.message, "INVALID_REQUEST: bad body");
          assert.equal(error.retriable, false);
          return true;
        });
      } finally {
        await connection.close();
      }
    }));

  test("a request larger than the server's frameBytesMax is a RangeError", () =>
    withServer(async (server) => {
      const connection = await ClientConnection.connect("127.0.0.1", server.port);
      try {
        const big = new Uint8Array(64 * 1024 * 1024);
        await assert.rejects(
          connection.request(API.Produce, (w) => w.raw(big)),
          /Request of 67108872 bytes exceeds the server's frameBytesMax 67108864/,
        );
      } finally {
        await connection.close();
      }
    }));

  test("a response frame over responseBytesMax closes the connection as malformed", () =>
    withServer(async (server) => {
      const connection = await ClientConnection.connect("127.0.0.1", server.port, {
        responseBytesMax: 1000,
      });
      server.hook = (request) => {
        request.connection.socket.write(new Uint8Array([0, 0, 0x10, 0]));
        return true;
      };
      await assert.rejects(echo(connection, 1), { code: "MALFORMED_RESPONSE" });
      assert.equal(connection.closed, true);
      await connection.close();
    }));

  test("a server without the APIs the client needs fails the connect", () =>
    withServer(async (server) => {
      server.apis = server.apis.filter((api) => api.apiKey !== API.Produce);
      await assert.rejects(ClientConnection.connect("127.0.0.1", server.port), {
        code: "UNSUPPORTED_SERVER",
      });
    }));

  test("a refused or silent server fails the connect with a retriable CONNECT_FAILED", async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      await assert.rejects(ClientConnection.connect("127.0.0.1", port, { connectTimeoutMs: 50 }), {
        code: "CONNECT_FAILED",
        retriable: true,
      });
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
    await assert.rejects(ClientConnection.connect("127.0.0.1", port), { code: "CONNECT_FAILED" });
  });

  test("bad arguments throw at once", () => {
    assert.throws(() => ClientConnection.connect("", 1), TypeError);
    assert.throws(() => ClientConnection.connect("127.0.0.1", 70_000), RangeError);
    assert.throws(
      () => ClientConnection.connect("127.0.0.1", 1, { requestTimeoutMs: 0 }),
      RangeError,
    );
  });
});

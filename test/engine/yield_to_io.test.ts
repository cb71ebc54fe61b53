// Long admin work lets sockets be served: while 1,000 partitions are created in the same
// process, an echo socket keeps getting round trips, with no gap near the length of the create.
// (Yielding with setImmediate let none through under Deno; see engine/yield_to_io.ts.)

import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import { Engine } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";

describe("yielding to I/O", () => {
  test("an echo socket is served while 1,000 partitions are created", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, { onWarning: () => {} });
    const server = net.createServer((socket) => socket.on("data", (data) => socket.write(data)));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    const client = net.connect(port, "127.0.0.1");
    try {
      await new Promise<void>((resolve) => client.once("connect", resolve));
      let lastEchoMs = performance.now();
      let longestGapMs = 0;
      let echoes = 0;
      client.on("data", () => {
        const nowMs = performance.now();
        longestGapMs = Math.max(longestGapMs, nowMs - lastEchoMs);
        lastEchoMs = nowMs;
        echoes++;
        client.write("x");
      });
      const startedMs = performance.now();
      lastEchoMs = startedMs;
      client.write("x");
      await engine.createTopic("wide", { partitions: 1000 });
      const tookMs = performance.now() - startedMs;
      longestGapMs = Math.max(longestGapMs, performance.now() - lastEchoMs);
      assert.ok(echoes > 0, "the socket was served during the create");
      assert.ok(
        longestGapMs < tookMs / 3,
        `longest gap ${longestGapMs.toFixed(1)} ms of a ${tookMs.toFixed(1)} ms create`,
      );
    } finally {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await engine.close();
    }
  });
});

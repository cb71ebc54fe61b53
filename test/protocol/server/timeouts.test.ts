// Slow clients: the idle timer counts from the last complete frame (a frame trickled byte by
// byte does not keep a connection alive), a frame whose size has arrived must arrive whole
// within frameReadTimeoutMs, and before the handshake nothing closes a connection sooner than
// idleTimeoutMs. The limits are small here so that each test takes well under a second.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { writeMsgpack } from "../../../protocol/codec/control.ts";
import { API, finishFrame, startRequest } from "../../../protocol/codec/frames.ts";
import { writeHandshakeRequest } from "../../../protocol/codec/handshake.ts";
import type { RawClient } from "./raw_client.ts";
import { assertServing, connected, startTestServer } from "./serving.ts";

function statsFrame(): Uint8Array {
  const writer = startRequest({ apiKey: API.Stats, apiVersion: 1, correlationId: 77 });
  // Padding in the map makes the frame long enough to trickle for seconds.
  writeMsgpack(writer, { padding: "x".repeat(200) });
  return finishFrame(writer);
}

/** Sends `bytes` one at a time, `intervalMs` apart, until done or the server closes; returns
 * how many were sent. */
async function trickle(client: RawClient, bytes: Uint8Array, intervalMs: number): Promise<number> {
  let sent = 0;
  while (sent < bytes.length && !client.closed) {
    client.send(bytes.subarray(sent, sent + 1));
    sent++;
    // tidy: allow-timeout a slow sender is the behaviour under test: time between bytes
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return sent;
}

describe("slow frames", () => {
  test("a frame trickled byte by byte is closed by idleTimeoutMs", async () => {
    await using t = await startTestServer({
      limits: { idleTimeoutMs: 400, frameReadTimeoutMs: 60_000 },
    });
    using client = await connected(t.port);
    const frame = statsFrame();
    // 20 ms a byte: each byte arrives well within the idle timeout, the frame takes 4 seconds.
    const startedMs = Date.now();
    const sent = await trickle(client, frame, 20);
    const elapsedMs = Date.now() - startedMs;
    assert.ok(client.closed, `the connection stayed open through all ${frame.length} bytes`);
    assert.ok(sent < frame.length, `closed only after the whole frame (${sent} bytes)`);
    assert.ok(elapsedMs < 2_000, `closed after ${elapsedMs} ms`);
    assert.ok(
      t.logs.some((line) => line.includes("idle")),
      t.logs.join("\n"),
    );
    await assertServing(t.port);
  });

  test("a frame whose size arrived must arrive whole within frameReadTimeoutMs", async () => {
    await using t = await startTestServer({
      limits: { idleTimeoutMs: 60_000, frameReadTimeoutMs: 300 },
    });
    using client = await connected(t.port);
    const frame = statsFrame();
    const startedMs = Date.now();
    client.send(frame.subarray(0, 40));
    await client.waitClosed();
    const elapsedMs = Date.now() - startedMs;
    assert.ok(elapsedMs >= 300, `closed after ${elapsedMs} ms, before the deadline`);
    assert.ok(
      t.logs.some((line) => line.includes("frameReadTimeoutMs")),
      t.logs.join("\n"),
    );
    await assertServing(t.port);
  });

  test("a frame trickled within frameReadTimeoutMs is served", async () => {
    await using t = await startTestServer({
      limits: { idleTimeoutMs: 60_000, frameReadTimeoutMs: 5_000 },
    });
    using client = await connected(t.port);
    const frame = statsFrame();
    await trickle(client, frame.subarray(0, 60), 1);
    client.send(frame.subarray(60));
    assert.equal((await client.response(77)).errorCode, 0);
  });

  test("before the handshake a partial frame is closed by idleTimeoutMs only", async () => {
    const idleTimeoutMs = 1_000;
    await using t = await startTestServer({ limits: { idleTimeoutMs, frameReadTimeoutMs: 100 } });
    using client = await connected(t.port, false);
    const writer = startRequest({ apiKey: API.Handshake, apiVersion: 1, correlationId: 1 });
    writeHandshakeRequest(writer, { clientName: "slow", clientVersion: "0" });
    const handshake = finishFrame(writer);
    const startedMs = Date.now();
    client.send(handshake.subarray(0, handshake.length - 3));
    await client.waitClosed();
    const elapsedMs = Date.now() - startedMs;
    assert.ok(elapsedMs >= idleTimeoutMs, `closed after ${elapsedMs} ms`);
  });

  test("a silent connection waiting for its handshake stays until idleTimeoutMs", async () => {
    const idleTimeoutMs = 800;
    await using t = await startTestServer({ limits: { idleTimeoutMs, frameReadTimeoutMs: 100 } });
    const startedMs = Date.now();
    using client = await connected(t.port, false);
    await client.waitClosed();
    const elapsedMs = Date.now() - startedMs;
    assert.ok(elapsedMs >= idleTimeoutMs, `closed after ${elapsedMs} ms`);
  });
});

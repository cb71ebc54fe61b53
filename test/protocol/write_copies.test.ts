// The Outbox reuses one coalescing buffer for a socket that says its writes keep no reference
// to their bytes (`writeCopies`). This checks that claim for each transport that makes it: the
// server's listener and the client's socket write 32 MiB from one buffer, overwritten with
// other bytes as soon as each write returns (the socket pushes back many times on the way),
// and the peer must still receive exactly what was written. A transport that does not make the
// claim (node:net keeps a written buffer until it is sent) must not say it does.

import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import type { TransportSocket } from "../../protocol/codec/outbox.ts";
import { defaultTransport, listen, type TransportKind } from "../../protocol/server/_transport.ts";
import { type ClientSocketKind, openSocket } from "../../protocol/client/socket.ts";

const TOTAL_BYTES = 32 * 1024 * 1024;
const WRITE_BYTES = 48 * 1024;

function patternByte(at: number): number {
  return ((at * 31) >>> 7) & 0xff;
}

/**
 * Writes TOTAL_BYTES of the pattern through `socket` from one reused buffer, spoiling the
 * buffer after every write; resumes after each push-back when `drained` resolves.
 */
async function writeFromOneBuffer(
  socket: TransportSocket,
  drained: () => Promise<void>,
): Promise<number> {
  const buffer = new Uint8Array(WRITE_BYTES);
  let sent = 0;
  let pushBacks = 0;
  while (sent < TOTAL_BYTES) {
    const length = Math.min(WRITE_BYTES, TOTAL_BYTES - sent);
    for (let i = 0; i < length; i++) buffer[i] = patternByte(sent + i);
    const { taken, blocked } = socket.write(buffer.subarray(0, length));
    buffer.fill(0xee);
    sent += taken;
    if (blocked) {
      pushBacks++;
      await drained();
    }
  }
  return pushBacks;
}

/** Collects what arrives until `total` bytes, checking each byte against the pattern. */
function checker(total: number) {
  let received = 0;
  let firstWrong = -1;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  return {
    finished,
    take(bytes: Uint8Array): void {
      for (let i = 0; i < bytes.length; i++) {
        if (firstWrong === -1 && bytes[i] !== patternByte(received + i)) firstWrong = received + i;
      }
      received += bytes.length;
      if (received >= total) done();
    },
    get firstWrong() {
      return firstWrong;
    },
  };
}

/** A drain signal: `wait()` resolves at the next `drained()`. */
function drainSignal() {
  let resolveNext: (() => void) | undefined;
  return {
    wait: () => new Promise<void>((resolve) => (resolveNext = resolve)),
    drained: () => {
      const resolve = resolveNext;
      resolveNext = undefined;
      resolve?.();
    },
  };
}

async function serverWrites(kind: TransportKind) {
  const drain = drainSignal();
  let opened!: (socket: TransportSocket) => void;
  const open = new Promise<TransportSocket>((resolve) => (opened = resolve));
  const server = await listen(
    "127.0.0.1",
    0,
    { open: (socket) => opened(socket), data() {}, drain: () => drain.drained(), close() {} },
    kind,
  );
  const check = checker(TOTAL_BYTES);
  const client = net.connect(server.port, "127.0.0.1");
  client.on("data", (bytes: Uint8Array) => check.take(bytes));
  // Read slowly at first, so the server's writes meet a full socket.
  client.pause();
  const socket = await open;
  if (socket.writeCopies !== true) {
    client.destroy();
    server.stop();
    return { claims: false, pushBacks: 0, firstWrong: -1 };
  }
  const writing = writeFromOneBuffer(socket, drain.wait);
  // tidy: allow-timeout a reader that starts late, so that the writer is pushed back
  setTimeout(() => client.resume(), 50);
  const pushBacks = await writing;
  await check.finished;
  client.destroy();
  server.stop();
  return { claims: socket.writeCopies === true, pushBacks, firstWrong: check.firstWrong };
}

async function clientWrites(kind: ClientSocketKind) {
  const check = checker(TOTAL_BYTES);
  const server = net.createServer((peer) => {
    peer.pause();
    // tidy: allow-timeout a reader that starts late, so that the writer is pushed back
    setTimeout(() => peer.resume(), 50);
    peer.on("data", (bytes: Uint8Array) => check.take(bytes));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const drain = drainSignal();
  const socket = await openSocket(
    "127.0.0.1",
    port,
    { data() {}, drain: () => drain.drained(), close() {} },
    kind,
  );
  if (socket.writeCopies !== true) {
    socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return { claims: false, pushBacks: 0, firstWrong: -1 };
  }
  const pushBacks = await writeFromOneBuffer(socket, drain.wait);
  await check.finished;
  socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return { claims: socket.writeCopies === true, pushBacks, firstWrong: check.firstWrong };
}

const kinds: TransportKind[] = defaultTransport() === "bun" ? ["bun", "node"] : ["node"];

describe("socket writes from a reused buffer", () => {
  for (const kind of kinds) {
    test(`the ${kind} listener keeps no reference to its writes if it says so`, async () => {
      const { claims, pushBacks, firstWrong } = await serverWrites(kind);
      assert.equal(claims, kind === "bun", "only Bun's sockets say their writes keep nothing");
      if (kind !== "bun") return;
      assert.ok(pushBacks > 0, "the writer was pushed back at least once");
      assert.equal(firstWrong, -1, "every byte arrived as written");
    });

    test(`the ${kind} client socket keeps no reference to its writes if it says so`, async () => {
      const { claims, pushBacks, firstWrong } = await clientWrites(kind);
      assert.equal(claims, kind === "bun", "only Bun's sockets say their writes keep nothing");
      if (kind !== "bun") return;
      assert.ok(pushBacks > 0, "the writer was pushed back at least once");
      assert.equal(firstWrong, -1, "every byte arrived as written");
    });
  }
});

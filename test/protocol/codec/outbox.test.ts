// The Outbox's turn coalescing (coalesceTurn, the server's listeners): what is enqueued in one
// turn of the event loop goes out in one socket write at the turn's end, in order, large chunks
// as the caller's own views; a socket that pushes back waits for drain.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Outbox, type TransportSocket } from "../../../protocol/codec/outbox.ts";

/** A socket that records each write and takes at most `room` bytes before it pushes back. */
class FakeSocket implements TransportSocket {
  writes: Uint8Array[] = [];
  received: number[] = [];
  room = Number.POSITIVE_INFINITY;
  readonly remoteAddress = "test";

  write(bytes: Uint8Array): { taken: number; blocked: boolean } {
    this.writes.push(bytes);
    const taken = Math.min(bytes.length, this.room);
    this.room -= taken;
    this.received.push(...bytes.subarray(0, taken));
    return { taken, blocked: taken < bytes.length };
  }

  pause(): void {}
  resume(): void {}
  end(): void {}
  destroy(): void {}
}

function bytesOf(first: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (first + i) % 256);
}

/** Resolves after every microtask queued before it: the end of the current turn's work. */
function afterQueuedMicrotasks(): Promise<void> {
  return new Promise((resolve) => queueMicrotask(resolve));
}

describe("Outbox with coalesceTurn", () => {
  test("answers enqueued in one turn go out in one write, in order", async () => {
    const socket = new FakeSocket();
    const outbox = new Outbox(socket, { coalesceTurn: true });
    const answers = [bytesOf(1, 30), bytesOf(40, 12), bytesOf(90, 50)];
    for (const answer of answers) outbox.enqueue([answer]);
    await afterQueuedMicrotasks();
    assert.equal(socket.writes.length, 1);
    assert.deepEqual(
      socket.received,
      answers.flatMap((answer) => [...answer]),
    );
    assert.equal(outbox.writes, 1);
    assert.equal(outbox.bytesWritten, 92);
    assert.ok(outbox.idle);
  });

  test("a lone answer is written at the end of its turn, before any immediate", async () => {
    const socket = new FakeSocket();
    let turnsWritten = 0;
    const outbox = new Outbox(socket, {
      coalesceTurn: true,
      onTurnWritten: () => turnsWritten++,
    });
    // A callback of the loop's next phase: the answer must not wait for it (nor for a timer).
    let immediateRan = false;
    const immediate = setImmediate(() => {
      immediateRan = true;
    });
    outbox.enqueue([bytesOf(7, 20)]);
    // Deferred past the synchronous code that enqueued it...
    assert.equal(socket.writes.length, 0);
    assert.equal(outbox.queuedBytes, 20);
    // ...but not to a later phase: it is out once the microtasks queued before now have run.
    await afterQueuedMicrotasks();
    assert.equal(immediateRan, false);
    clearImmediate(immediate);
    assert.equal(socket.writes.length, 1);
    assert.deepEqual(socket.received, [...bytesOf(7, 20)]);
    assert.equal(turnsWritten, 1);
    assert.equal(outbox.queuedBytes, 0);
  });

  test("large chunks go out as the caller's views, small ones around them coalesced", async () => {
    const socket = new FakeSocket();
    const outbox = new Outbox(socket, { coalesceTurn: true });
    const small = bytesOf(3, 26);
    const large = bytesOf(5, 100 * 1024);
    const tail = [bytesOf(9, 40), bytesOf(11, 8)];
    outbox.enqueue([small]);
    outbox.enqueue([large]);
    for (const answer of tail) outbox.enqueue([answer]);
    await afterQueuedMicrotasks();
    assert.equal(socket.writes.length, 3);
    assert.equal(socket.writes[0], small);
    assert.equal(socket.writes[1], large, "the large chunk is written as the same view");
    assert.equal(socket.writes[2]!.length, 48);
    const expected = [...small, ...large, ...tail[0]!, ...tail[1]!];
    assert.deepEqual(socket.received, expected);
  });

  test("a socket that pushes back waits for drain, then the rest goes out in order", async () => {
    const socket = new FakeSocket();
    socket.room = 10;
    let turnsWritten = 0;
    const outbox = new Outbox(socket, {
      coalesceTurn: true,
      onTurnWritten: () => turnsWritten++,
    });
    const first = [bytesOf(1, 8), bytesOf(20, 8), bytesOf(40, 8)];
    for (const answer of first) outbox.enqueue([answer]);
    await afterQueuedMicrotasks();
    assert.equal(socket.writes.length, 1);
    assert.equal(outbox.queuedBytes, 14);
    assert.equal(turnsWritten, 1, "the owner re-reads queuedBytes after the turn's write");
    // While blocked, a later turn's answers queue behind, unwritten: the socket asked to wait.
    const later = bytesOf(60, 5);
    outbox.enqueue([later]);
    await afterQueuedMicrotasks();
    assert.equal(socket.writes.length, 1);
    assert.equal(outbox.queuedBytes, 19);
    // drain: the owner calls flush.
    socket.room = Number.POSITIVE_INFINITY;
    outbox.flush();
    assert.equal(socket.writes.length, 2);
    assert.deepEqual(socket.received, [...first.flatMap((answer) => [...answer]), ...later]);
    assert.ok(outbox.idle);
  });

  test("flush writes the turn's answers at once, and the turn's end adds no write", async () => {
    const socket = new FakeSocket();
    const outbox = new Outbox(socket, { coalesceTurn: true });
    outbox.enqueue([bytesOf(1, 10)]);
    outbox.enqueue([bytesOf(2, 10)]);
    // A closing connection flushes before it ends its socket.
    outbox.flush();
    assert.equal(socket.writes.length, 1);
    assert.ok(outbox.idle);
    await afterQueuedMicrotasks();
    assert.equal(socket.writes.length, 1);
  });

  test("discard drops what waits and nothing is written after", async () => {
    const socket = new FakeSocket();
    let turnsWritten = 0;
    const outbox = new Outbox(socket, {
      coalesceTurn: true,
      onTurnWritten: () => turnsWritten++,
    });
    outbox.enqueue([bytesOf(1, 10)]);
    outbox.discard();
    outbox.enqueue([bytesOf(2, 10)]);
    await afterQueuedMicrotasks();
    outbox.flush();
    assert.equal(socket.writes.length, 0);
    assert.equal(outbox.queuedBytes, 0);
    assert.equal(turnsWritten, 0);
  });
});

test("without coalesceTurn every enqueue writes at once (the client gathers its own)", () => {
  const socket = new FakeSocket();
  const outbox = new Outbox(socket);
  outbox.enqueue([bytesOf(1, 10)]);
  assert.equal(socket.writes.length, 1);
  outbox.enqueue([bytesOf(2, 10)]);
  assert.equal(socket.writes.length, 2);
});

describe("the coalescing buffer", () => {
  /** A FakeSocket that says its writes keep no reference to their bytes (Bun's sockets). */
  class CopyingSocket extends FakeSocket {
    readonly writeCopies = true;
  }

  test("a writeCopies socket's coalesced writes reuse one buffer, in order", () => {
    const socket = new CopyingSocket();
    const outbox = new Outbox(socket);
    const first = [bytesOf(1, 30), bytesOf(40, 12)];
    const second = [bytesOf(90, 20), bytesOf(120, 5), bytesOf(200, 7)];
    outbox.enqueue(first);
    outbox.enqueue(second);
    assert.equal(socket.writes.length, 2);
    assert.equal(socket.writes[0]!.buffer, socket.writes[1]!.buffer);
    assert.deepEqual(
      socket.received,
      [...first, ...second].flatMap((chunk) => [...chunk]),
    );
  });

  test("a pushed-back coalesced write resumes from the queued chunks, not the buffer", () => {
    const socket = new CopyingSocket();
    socket.room = 35;
    const outbox = new Outbox(socket);
    const first = [bytesOf(1, 30), bytesOf(40, 12)];
    outbox.enqueue(first);
    assert.equal(outbox.queuedBytes, 7);
    // The next write (at drain) refills the buffer: the first's rest comes from its chunk.
    socket.room = Number.POSITIVE_INFINITY;
    const second = [bytesOf(90, 20), bytesOf(120, 5)];
    outbox.enqueue(second);
    outbox.flush();
    assert.equal(socket.writes.length, 2);
    assert.equal(socket.writes[0]!.buffer, socket.writes[1]!.buffer);
    assert.deepEqual(
      socket.received,
      [...first, ...second].flatMap((chunk) => [...chunk]),
    );
    assert.ok(outbox.idle);
  });

  test("a socket without writeCopies gets a buffer of its own per coalesced write", () => {
    const socket = new FakeSocket();
    const outbox = new Outbox(socket);
    outbox.enqueue([bytesOf(1, 30), bytesOf(40, 12)]);
    outbox.enqueue([bytesOf(90, 20), bytesOf(120, 5)]);
    assert.equal(socket.writes.length, 2);
    assert.notEqual(socket.writes[0]!.buffer, socket.writes[1]!.buffer);
  });
});

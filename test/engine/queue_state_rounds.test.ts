// Queue state-log commits in the engine's group-commit rounds (engine/queue_state_log.ts,
// "Commits in the engine's rounds"): where a round flushes the whole file system, an accept is
// made durable by that flush instead of an fdatasync of the state file, and is answered only
// once the flush returned; while a flush is in flight the accept fdatasyncs the file itself
// rather than wait for it and a round after it; a failed flush falls back to the state file's
// own fdatasync, whose failure fails the accept; without a file-system flush the state log
// fdatasyncs its file.

import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, test } from "node:test";
import type { EngineOptions } from "../../engine/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { errnoError, FaultyIO, simpleBatch, sluiceCode } from "./partition_log_helpers.ts";
import {
  acksFor,
  Clock,
  type Delivery,
  deliveriesOf,
  openEngine,
  publish,
  type TestEngine,
} from "./queue_helpers.ts";

/** FaultyIO with a file-system flush: counted, held back while `gate` is set, failing on ask. */
class FlushingIO extends FaultyIO {
  flushCount = 0;
  gate: Promise<void> | undefined;
  failFlush = false;

  async syncFileSystem(_dir: string): Promise<void> {
    this.flushCount++;
    if (this.gate !== undefined) await this.gate;
    if (this.failFlush) throw errnoError("EIO", "syncfs");
  }

  /** fdatasyncs of queue state files so far. */
  stateFileSyncs(): number {
    return this.syncs.filter((call) => pathOf(call.fd).includes("/__queues/")).length;
  }
}

/** The path of an open descriptor (Linux), to tell a state file's fdatasync from others. */
function pathOf(fd: number): string {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return "";
  }
}

type SetUp = TestEngine & { held: Delivery[]; member: string };

async function setUp(dir: string, io: FaultyIO, options: EngineOptions): Promise<SetUp> {
  const opened = await openEngine(dir, new Clock(), { io, ...options });
  await opened.engine.createTopic("t", { config: { fsync: "never" } });
  await opened.engine.declareQueue("q", { topic: "t", fsync: "always" });
  await publish(opened.engine, "t", 0, ["a", "b", "c", "d"]);
  const member = opened.engine.joinQueue("q");
  const held = deliveriesOf(opened.engine.fetchQueue("q", member));
  assert.equal(held.length, 4);
  // The acquisitions' bytes are durable before the test starts counting.
  await opened.engine.queue("q").stateLog.commit();
  return { ...opened, held, member };
}

/** Tracks whether a promise has settled, without waiting for it. */
function track(promise: Promise<void>): { settled: boolean; error: unknown } {
  const state = { settled: false, error: undefined as unknown };
  promise.then(
    () => {
      state.settled = true;
    },
    (error: unknown) => {
      state.settled = true;
      state.error = error;
    },
  );
  return state;
}

describe("queue state log: commits in the engine's rounds", {
  skip: process.platform !== "linux",
}, () => {
  test("an accept is made durable by the round's file-system flush, not an fdatasync", async () => {
    using dir = tempDir();
    const io = new FlushingIO();
    const { engine, held, member } = await setUp(dir.path, io, { partitionSync: "flush" });
    const syncsBefore = io.stateFileSyncs();
    const flushesBefore = io.flushCount;
    const roundsBefore = engine.groupSync.rounds;
    let release = () => {};
    io.gate = new Promise((resolve) => {
      release = resolve;
    });
    const accepted = track(engine.ackQueue("q", member, acksFor(held.slice(0, 2), "accept")));
    await waitFor(() => io.flushCount > flushesBefore, "the round's file-system flush");
    // The flush is held: the accept is written but not durable, so it is not answered.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(accepted.settled, false, "no answer before the flush returned");
    release();
    await waitFor(() => accepted.settled, "the accept's answer");
    assert.equal(accepted.error, undefined);
    assert.equal(io.stateFileSyncs(), syncsBefore, "the state file was not fdatasynced");
    assert.ok(engine.groupSync.rounds > roundsBefore, "the accept went through a round");
    io.gate = undefined;
    await engine.close();
  });

  test("while a flush is in flight, an accept fdatasyncs the state file itself", async () => {
    using dir = tempDir();
    const io = new FlushingIO();
    const { engine, held, member } = await setUp(dir.path, io, { partitionSync: "flush" });
    await engine.createTopic("u", { config: { fsync: "always" } });
    let release = () => {};
    io.gate = new Promise((resolve) => {
      release = resolve;
    });
    const flushesBefore = io.flushCount;
    // A produce with fsync always holds a round's flush in flight.
    const appended = engine.append("u", 0, simpleBatch(1));
    await waitFor(() => engine.groupSync.flushInFlight, "the produce's flush in flight");
    const syncsBefore = io.stateFileSyncs();
    // Answered without waiting for the flush in flight and then a round of its own.
    await engine.ackQueue("q", member, acksFor(held.slice(0, 1), "accept"));
    assert.equal(io.stateFileSyncs(), syncsBefore + 1, "the accept's own fdatasync");
    assert.equal(io.flushCount, flushesBefore + 1, "no second flush started");
    release();
    await appended;
    io.gate = undefined;
    await engine.close();
  });

  test("a failed flush falls back to the state file's fdatasync", async () => {
    using dir = tempDir();
    const io = new FlushingIO();
    const { engine, held, member } = await setUp(dir.path, io, { partitionSync: "flush" });
    io.failFlush = true;
    const syncsBefore = io.stateFileSyncs();
    await engine.ackQueue("q", member, acksFor(held.slice(0, 1), "accept"));
    assert.ok(io.stateFileSyncs() > syncsBefore, "the state file fdatasynced after the flush");
    await engine.close();
  });

  test("a failed flush and a failed fdatasync of the state file fail the accept", async () => {
    using dir = tempDir();
    const io = new FlushingIO();
    const { engine, held, member } = await setUp(dir.path, io, { partitionSync: "flush" });
    io.failFlush = true;
    io.onSync = (call) => (pathOf(call.fd).includes("/__queues/") ? { code: "EIO" } : undefined);
    await assert.rejects(
      engine.ackQueue("q", member, acksFor(held.slice(0, 1), "accept")),
      sluiceCode("LOG_FENCED"),
    );
    io.onSync = undefined;
    await engine.close().catch(() => {});
  });

  test("without a file-system flush the state log fdatasyncs its file itself", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const { engine, held, member } = await setUp(dir.path, io, { partitionSync: "fdatasync" });
    const syncsBefore = io.syncCount;
    const roundsBefore = engine.groupSync.rounds;
    await engine.ackQueue("q", member, acksFor(held.slice(0, 1), "accept"));
    assert.ok(io.syncCount > syncsBefore, "the accept's fdatasync");
    assert.equal(engine.groupSync.rounds, roundsBefore, "no round for the state log");
    await engine.close();
  });
});

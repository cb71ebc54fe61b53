// The queue state log's pipelined group commit: a group written while an fdatasync is in
// flight starts its own fdatasync at once instead of waiting for the one in progress; groups
// still resolve in order, only after their own fdatasync and every earlier one succeeded; and
// an accept that resolved is in the bytes its fdatasync covered (acked => durable), so a crash
// image cut at that fdatasync's boundary still has it. Acquisitions, which nobody waits for,
// start no fdatasync of their own: the next accept's covers them, or a lazy one
// QUEUE_LAZY_SYNC_DELAY_MS after their write.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { isSluiceError, QUEUE_LAZY_SYNC_DELAY_MS } from "../../engine/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { FaultyIO } from "./partition_log_helpers.ts";
import {
  acksFor,
  Clock,
  crashImage,
  type Delivery,
  deliveriesOf,
  failsWith,
  openEngine,
  publish,
  type TestEngine,
} from "./queue_helpers.ts";

type HeldSync = {
  /** Bytes of the file when the fdatasync started: what it makes durable. */
  sizeBytes: number;
  release(failure?: "EIO"): void;
};

/** Holds every fdatasync, while `holding`, until the test releases it. */
class HeldSyncIO extends FaultyIO {
  holding = false;
  readonly held: HeldSync[] = [];
  /** fdatasyncs that have returned, successfully or not. */
  ended = 0;

  override async datasync(fd: number): Promise<void> {
    if (!this.holding) return super.datasync(fd);
    const sizeBytes = fs.fstatSync(fd).size;
    const gate = Promise.withResolvers<"EIO" | undefined>();
    this.held.push({ sizeBytes, release: (failure) => gate.resolve(failure) });
    const failure = await gate.promise;
    if (failure !== undefined) this.onSync = () => ({ code: failure });
    try {
      return await super.datasync(fd);
    } finally {
      this.onSync = undefined;
      this.ended++;
    }
  }
}

const STATE_FILE = /^\d{20}\.log$/;

function stateFile(dir: string): string {
  const names = fs.readdirSync(join(dir, "__queues", "q")).filter((name) => STATE_FILE.test(name));
  assert.equal(names.length, 1, `one live generation: ${names.join(", ")}`);
  return join(dir, "__queues", "q", names[0]!);
}

type SetUp = TestEngine & { held: Delivery[]; member: string };

async function setUp(dir: string, io: HeldSyncIO, syncsInFlight?: number): Promise<SetUp> {
  const clock = new Clock();
  const opened = await openEngine(dir, clock, {
    io,
    ...(syncsInFlight === undefined ? {} : { queueSyncsInFlight: syncsInFlight }),
  });
  await opened.engine.createTopic("t", { config: { fsync: "never" } });
  await opened.engine.declareQueue("q", { topic: "t", fsync: "always" });
  await publish(opened.engine, "t", 0, ["a", "b", "c", "d"]);
  const member = opened.engine.joinQueue("q");
  const held = deliveriesOf(opened.engine.fetchQueue("q", member));
  assert.equal(held.length, 4);
  await opened.engine.flush();
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

/** Offsets a fresh member of a reopened crash image is handed (records not accepted). */
async function offsetsAfterCrash(dir: string, stateBytes: number): Promise<number[]> {
  return (await deliveriesAfterCrash(dir, stateBytes)).map((pair) => pair[0]!);
}

/** [offset, deliveries] of what a fresh member of a reopened crash image is handed. */
async function deliveriesAfterCrash(dir: string, stateBytes: number): Promise<number[][]> {
  using image = tempDir();
  crashImage(dir, image.path);
  // What an fdatasync made durable is the file up to where it was when that fdatasync began.
  fs.truncateSync(stateFile(image.path), stateBytes);
  const reopened = await openEngine(image.path, new Clock());
  try {
    const member = reopened.engine.joinQueue("q");
    return deliveriesOf(reopened.engine.fetchQueue("q", member)).map((d) => [
      d.offset,
      d.deliveries,
    ]);
  } finally {
    await reopened.engine.close();
  }
}

describe("queue state log: pipelined group commit", () => {
  test("a group written during an fdatasync syncs at once; groups end in order", async () => {
    using dir = tempDir();
    const io = new HeldSyncIO();
    const { engine, held, member: owner } = await setUp(dir.path, io);
    io.holding = true;
    const first = track(engine.ackQueue("q", owner, acksFor(held.slice(0, 1), "accept")));
    await waitFor(() => io.held.length === 1, "the first group's fdatasync");
    const second = track(engine.ackQueue("q", owner, acksFor(held.slice(1, 2), "accept")));
    // The second group does not wait for the first fdatasync to end before starting its own.
    await waitFor(() => io.held.length === 2, "the second group's fdatasync, in flight at once");
    assert.ok(io.held[1]!.sizeBytes > io.held[0]!.sizeBytes, "the second covers more bytes");
    io.held[1]!.release();
    await waitFor(() => io.ended === 1, "the second fdatasync's end");
    // Its group still waits for the first fdatasync.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(second.settled, false, "a group never resolves before an earlier one");
    assert.equal(first.settled, false);
    io.held[0]!.release();
    await waitFor(() => first.settled && second.settled, "both groups");
    assert.equal(first.error, undefined);
    assert.equal(second.error, undefined);
    io.holding = false;
    await engine.close();
  });

  test("an accept that resolved survives a crash cut at its fdatasync's boundary", async () => {
    using dir = tempDir();
    const io = new HeldSyncIO();
    const { engine, held, member: owner } = await setUp(dir.path, io);
    io.holding = true;
    const first = track(engine.ackQueue("q", owner, acksFor(held.slice(0, 1), "accept")));
    await waitFor(() => io.held.length === 1, "the first group's fdatasync");
    const second = track(engine.ackQueue("q", owner, acksFor(held.slice(1, 3), "accept")));
    await waitFor(() => io.held.length === 2, "the second group's fdatasync, in flight at once");
    const [one, two] = [io.held[0]!, io.held[1]!];
    // Cut at the first fdatasync: only its accept holds; the second's records come back.
    assert.deepEqual(await offsetsAfterCrash(dir.path, one.sizeBytes), [1, 2, 3]);
    two.release();
    one.release();
    await waitFor(() => first.settled && second.settled, "both groups");
    assert.equal(second.error, undefined);
    // Both resolved: the second fdatasync's boundary holds all three accepts.
    assert.deepEqual(await offsetsAfterCrash(dir.path, two.sizeBytes), [3]);
    io.holding = false;
    await engine.close();
  });

  test("a failed fdatasync fails the groups after it, though their own succeeded", async () => {
    using dir = tempDir();
    const io = new HeldSyncIO();
    const { engine, held, member: owner } = await setUp(dir.path, io);
    io.holding = true;
    const first = track(engine.ackQueue("q", owner, acksFor(held.slice(0, 1), "accept")));
    await waitFor(() => io.held.length === 1, "the first group's fdatasync");
    const second = track(engine.ackQueue("q", owner, acksFor(held.slice(1, 2), "accept")));
    await waitFor(() => io.held.length === 2, "the second group's fdatasync, in flight at once");
    io.held[1]!.release();
    io.held[0]!.release("EIO");
    await waitFor(() => first.settled && second.settled, "both groups");
    for (const outcome of [first, second]) {
      assert.ok(isSluiceError(outcome.error, "LOG_FENCED"), String(outcome.error));
    }
    io.holding = false;
    await engine.close().catch(() => {});
  });

  test("an acquisition written during an fdatasync gets a lazy one, none beside it", async () => {
    using dir = tempDir();
    const io = new HeldSyncIO();
    const { engine, held, member } = await setUp(dir.path, io);
    await publish(engine, "t", 0, ["e", "f"]);
    io.holding = true;
    const accepted = track(engine.ackQueue("q", member, acksFor(held.slice(0, 4), "accept")));
    await waitFor(() => io.held.length === 1, "the accept's fdatasync");
    const log = engine.queue("q").stateLog;
    const writes = log.stats.writes;
    const acquired = deliveriesOf(engine.fetchQueue("q", member));
    assert.deepEqual(
      acquired.map((d) => d.offset),
      [4, 5],
    );
    await waitFor(() => log.stats.writes > writes, "the acquisitions' write");
    const writtenMs = performance.now();
    assert.equal(io.held.length, 1, "no fdatasync of their own beside the one in flight");
    // Past the lazy delay, still none beside it: that slot is left to accepts.
    // tidy: allow-timeout a check that nothing starts within the delay, not a wait to pass
    await new Promise((resolve) => setTimeout(resolve, 2 * QUEUE_LAZY_SYNC_DELAY_MS));
    assert.equal(io.held.length, 1, "no lazy fdatasync beside the one in flight");
    io.held[0]!.release();
    // With no accept after them, the acquisitions get an fdatasync of their own, lazily.
    await waitFor(() => io.held.length === 2, "the acquisitions' fdatasync");
    // Timers may fire up to a millisecond early by the clock read here.
    const waitedMs = performance.now() - writtenMs;
    assert.ok(waitedMs >= QUEUE_LAZY_SYNC_DELAY_MS - 1, `started after ${waitedMs} ms`);
    const lazy = io.held[1]!;
    lazy.release();
    await waitFor(() => accepted.settled, "the accept");
    assert.equal(accepted.error, undefined);
    // Cut there, the delivery count of the records just fetched survived.
    assert.deepEqual(await deliveriesAfterCrash(dir.path, lazy.sizeBytes), [
      [4, 2],
      [5, 2],
    ]);
    io.holding = false;
    await engine.close();
  });

  test("an acquisition starts no fdatasync; the accept after it covers it in its own", async () => {
    using dir = tempDir();
    const io = new HeldSyncIO();
    const { engine, held, member } = await setUp(dir.path, io);
    await publish(engine, "t", 0, ["e", "f"]);
    io.holding = true;
    const log = engine.queue("q").stateLog;
    const writes = log.stats.writes;
    const acquired = deliveriesOf(engine.fetchQueue("q", member));
    assert.deepEqual(
      acquired.map((d) => d.offset),
      [4, 5],
    );
    await waitFor(() => log.stats.writes > writes, "the acquisitions' write");
    // Checked before the lazy fdatasync's timer can run: waitFor's poll is due before it.
    assert.equal(io.held.length, 0, "no fdatasync for acquisitions alone, with none in flight");
    const accepted = track(engine.ackQueue("q", member, acksFor(held.slice(0, 1), "accept")));
    await waitFor(() => io.held.length === 1, "the accept's fdatasync");
    const sync = io.held[0]!;
    assert.equal(sync.sizeBytes, fs.statSync(stateFile(dir.path)).size, "it covers every write");
    sync.release();
    await waitFor(() => accepted.settled, "the accept");
    assert.equal(accepted.error, undefined);
    // Cut at the accept's fdatasync: the acquisitions' delivery counts are in it too.
    assert.deepEqual(await deliveriesAfterCrash(dir.path, sync.sizeBytes), [
      [1, 2],
      [2, 2],
      [3, 2],
      [4, 2],
      [5, 2],
    ]);
    // The accept's fdatasync covered them: no lazy one follows.
    // tidy: allow-timeout a check that nothing starts within the delay, not a wait to pass
    await new Promise((resolve) => setTimeout(resolve, 2 * QUEUE_LAZY_SYNC_DELAY_MS));
    assert.equal(io.held.length, 1, "no fdatasync after the accept's");
    io.holding = false;
    await engine.close();
  });

  test("a clean close waits for the fdatasync of acquisitions nobody waited for", async () => {
    using dir = tempDir();
    const io = new HeldSyncIO();
    const { engine, member } = await setUp(dir.path, io);
    await publish(engine, "t", 0, ["e"]);
    io.holding = true;
    const log = engine.queue("q").stateLog;
    const writes = log.stats.writes;
    assert.equal(deliveriesOf(engine.fetchQueue("q", member)).length, 1);
    await waitFor(() => log.stats.writes > writes, "the acquisition's write");
    const closed = track(engine.close());
    await waitFor(() => io.held.length === 1, "the acquisition's fdatasync");
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(closed.settled, false, "the close waits for it");
    io.holding = false;
    io.held[0]!.release();
    await waitFor(() => closed.settled, "the close");
    assert.equal(closed.error, undefined);
  });

  test("by default four accept groups' fdatasyncs are in flight at once", async () => {
    using dir = tempDir();
    const io = new HeldSyncIO();
    const { engine, held, member } = await setUp(dir.path, io);
    io.holding = true;
    const groups: ReturnType<typeof track>[] = [];
    for (const [index, delivery] of held.entries()) {
      groups.push(track(engine.ackQueue("q", member, acksFor([delivery], "accept"))));
      await waitFor(() => io.held.length === index + 1, `group ${index + 1}'s fdatasync`);
    }
    assert.equal(engine.queue("q").stateLog.stats.slotWaits, 0, "none waited for a slot");
    for (const sync of io.held) sync.release();
    await waitFor(() => groups.every((group) => group.settled), "every group");
    assert.deepEqual(
      groups.map((group) => group.error),
      [undefined, undefined, undefined, undefined],
    );
    io.holding = false;
    await engine.close();
  });

  test("a group that finds every slot taken is counted, with how long it waited", async () => {
    using dir = tempDir();
    const io = new HeldSyncIO();
    const { engine, held, member } = await setUp(dir.path, io, 2);
    const log = engine.queue("q").stateLog;
    io.holding = true;
    const first = track(engine.ackQueue("q", member, acksFor(held.slice(0, 1), "accept")));
    await waitFor(() => io.held.length === 1, "the first group's fdatasync");
    const second = track(engine.ackQueue("q", member, acksFor(held.slice(1, 2), "accept")));
    await waitFor(() => io.held.length === 2, "the second group's fdatasync");
    assert.equal(log.stats.slotWaits, 0);
    const third = track(engine.ackQueue("q", member, acksFor(held.slice(2, 3), "accept")));
    await waitFor(() => log.stats.slotWaits === 1, "the third group's wait for a slot");
    const heldForMs = 20;
    const start = performance.now();
    await waitFor(() => performance.now() - start >= heldForMs, "the slots held a while");
    io.held[0]!.release();
    await waitFor(() => io.held.length === 3, "the third group's fdatasync, in the freed slot");
    const { slotWaits, slotWaitMsTotal, slotWaitMsMax } = log.stats;
    assert.equal(slotWaits, 1);
    assert.ok(slotWaitMsTotal >= heldForMs, `waited ${slotWaitMsTotal} ms, slots held longer`);
    assert.equal(slotWaitMsMax, slotWaitMsTotal, "one wait: the longest is the sum");
    io.held[1]!.release();
    io.held[2]!.release();
    await waitFor(() => first.settled && second.settled && third.settled, "all three groups");
    assert.deepEqual([first.error, second.error, third.error], [undefined, undefined, undefined]);
    io.holding = false;
    await engine.close();
  });

  test("queueSyncsInFlight 1 makes the commit serial; a bad value is refused by name", async () => {
    using dir = tempDir();
    const io = new HeldSyncIO();
    const { engine, held, member } = await setUp(dir.path, io, 1);
    io.holding = true;
    const first = track(engine.ackQueue("q", member, acksFor(held.slice(0, 1), "accept")));
    await waitFor(() => io.held.length === 1, "the first group's fdatasync");
    const log = engine.queue("q").stateLog;
    const writes = log.stats.writes;
    const second = track(engine.ackQueue("q", member, acksFor(held.slice(1, 2), "accept")));
    // The second group waits for the first fdatasync before it is even written.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual([io.held.length, log.stats.writes], [1, writes]);
    io.held[0]!.release();
    await waitFor(() => io.held.length === 2, "the second group's fdatasync, after the first");
    io.held[1]!.release();
    await waitFor(() => first.settled && second.settled, "both groups");
    assert.deepEqual([first.error, second.error], [undefined, undefined]);
    io.holding = false;
    await engine.close();
    for (const value of [0, 9, 1.5]) {
      using other = tempDir();
      const error = await failsWith(
        () => openEngine(other.path, new Clock(), { queueSyncsInFlight: value }),
        "INVALID_CONFIG",
      );
      assert.match(error.message, new RegExp(`queueSyncsInFlight ${value} must be`));
    }
  });

  test("each commit fdatasync is timed into the engine's queueFsyncSeconds", async () => {
    using dir = tempDir();
    const io = new HeldSyncIO();
    const { engine, held, member } = await setUp(dir.path, io);
    const log = engine.queue("q").stateLog;
    const [countBefore, fsyncsBefore] = [engine.queueFsyncSeconds.count, log.stats.fsyncs];
    const segmentsBefore = engine.fsyncSeconds.count;
    io.holding = true;
    const accepted = track(engine.ackQueue("q", member, acksFor(held.slice(0, 1), "accept")));
    await waitFor(() => io.held.length === 1, "the accept's fdatasync");
    // Not counted while it is in flight: only one that has returned has a duration.
    assert.equal(engine.queueFsyncSeconds.count, countBefore);
    io.held[0]!.release();
    await waitFor(() => accepted.settled, "the accept");
    io.holding = false;
    assert.equal(accepted.error, undefined);
    const timed = engine.queueFsyncSeconds.count - countBefore;
    assert.equal(timed, log.stats.fsyncs - fsyncsBefore, "one observation per commit fdatasync");
    assert.ok(timed >= 1);
    const snapshot = engine.queueFsyncSeconds.snapshot();
    assert.ok(snapshot.sumSeconds >= 0);
    // Segments' fdatasyncs stay in their own histogram (the topic here is fsync never).
    assert.equal(engine.fsyncSeconds.count, segmentsBefore);
    await engine.close();
  });
});

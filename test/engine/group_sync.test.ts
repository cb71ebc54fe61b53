// The group commit across partitions (engine/group_sync.ts): appends to many partitions with
// fsync "always" are made durable by one shared round, with one file-system flush where the
// FileIO offers one and one fdatasync per log otherwise; nothing is acknowledged before its
// round's sync returns, and a failed sync fails only the waiters of the log it belongs to.

import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, test } from "node:test";
import { Engine, type EngineOptions } from "../../engine/mod.ts";
import { COST_STALE_MS, GroupSync } from "../../engine/group_sync.ts";
import type { FileIO } from "../../engine/io.ts";
import type { Segment } from "../../engine/segment.ts";
import { openSyncfs } from "../../engine/syncfs.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { errnoError, FaultyIO, sluiceCode, simpleBatch } from "./partition_log_helpers.ts";

const PARTITIONS = 60;

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
}

/** The path of an open descriptor (Linux), to tell which partition an fdatasync is for. */
function pathOf(fd: number): string {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return "";
  }
}

async function openWithTopic(dir: string, io: FaultyIO, options: EngineOptions = {}) {
  const engine = await Engine.open(dir, { io, topicDefaults: { fsync: "always" }, ...options });
  await engine.createTopic("t", { partitions: PARTITIONS });
  return engine;
}

/** One append to each partition, all started in the same task, as one produce request does. */
function appendToEach(engine: Engine) {
  const settled: ("acked" | "failed" | undefined)[] = [];
  const results = [];
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const append = engine.append("t", partition, simpleBatch(1, { firstTag: partition }));
    results.push(
      append.then(
        (result) => {
          settled[partition] = "acked";
          return result;
        },
        (error: unknown) => {
          settled[partition] = "failed";
          throw error;
        },
      ),
    );
  }
  return { settled, results };
}

describe("group commit across partitions", () => {
  test("appends to many partitions are made durable by one shared file-system flush", async () => {
    using dir = tempDir();
    const io = new FlushingIO();
    const engine = await openWithTopic(dir.path, io);
    const syncsBefore = io.syncCount;
    const roundsBefore = engine.groupSync.rounds;
    let release = () => {};
    io.gate = new Promise((resolve) => {
      release = resolve;
    });
    const { settled, results } = appendToEach(engine);
    await waitFor(() => io.flushCount === 1, "the round's file-system flush");
    // The flush is held: every append is written, none may be acknowledged yet.
    assert.equal(settled.filter((state) => state !== undefined).length, 0);
    release();
    await Promise.all(results);
    assert.equal(io.flushCount, 1, "one flush for all partitions");
    assert.equal(engine.groupSync.rounds - roundsBefore, 1, "one shared round");
    assert.equal(io.syncCount, syncsBefore, "no fdatasync of any partition");
    for (let partition = 0; partition < PARTITIONS; partition++) {
      assert.equal(engine.partition("t", partition).recoveryPoint, 1);
    }
    await engine.close();
  });

  test("partitionSync flush: every round flushes, never measuring fdatasyncs", async () => {
    for (const mode of ["auto", "flush"] as const) {
      using dir = tempDir();
      const io = new FlushingIO();
      const engine = await openWithTopic(dir.path, io, { partitionSync: mode });
      for (let round = 0; round < 3; round++) await Promise.all(appendToEach(engine).results);
      const { flushRounds, fdatasyncRounds } = engine.groupSync.stats;
      if (mode === "flush") {
        assert.equal(fdatasyncRounds, 0, "no round synced log by log");
        assert.ok(flushRounds >= 3, `${flushRounds} flush rounds`);
      } else {
        assert.ok(fdatasyncRounds > 0, "auto measures fdatasync once the flush is measured");
      }
      await engine.close();
    }
  });

  test("without a file-system flush one fdatasync per log, in one shared round", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const engine = await openWithTopic(dir.path, io, { partitionSync: "fdatasync" });
    const syncsBefore = io.syncCount;
    const roundsBefore = engine.groupSync.rounds;
    let heldSyncs = 0;
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const datasync = io.datasync.bind(io);
    io.datasync = async (fd) => {
      heldSyncs++;
      await gate;
      return datasync(fd);
    };
    const { settled, results } = appendToEach(engine);
    await waitFor(() => heldSyncs > 0, "the round's first fdatasync");
    assert.equal(settled.filter((state) => state !== undefined).length, 0, "nothing acked yet");
    release();
    await Promise.all(results);
    assert.equal(io.syncCount - syncsBefore, PARTITIONS, "one fdatasync per partition");
    assert.equal(engine.groupSync.rounds - roundsBefore, 1, "one shared round");
    await engine.close();
  });

  test("a failed fdatasync fails only the waiters of that partition", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const engine = await openWithTopic(dir.path, io, { partitionSync: "fdatasync" });
    io.onSync = (call) => (pathOf(call.fd).includes("/t-7/") ? { code: "EIO" } : undefined);
    const roundsBefore = engine.groupSync.rounds;
    const { settled, results } = appendToEach(engine);
    await assert.rejects(results[7]!, sluiceCode("LOG_FENCED"));
    for (let partition = 0; partition < PARTITIONS; partition++) {
      if (partition !== 7) await results[partition];
    }
    assert.equal(settled.filter((state) => state === "acked").length, PARTITIONS - 1);
    assert.equal(engine.partition("t", 7).recoveryPoint, 0, "the failed log is not durable");
    assert.equal(engine.groupSync.rounds - roundsBefore, 1, "the failure was in the shared round");
    io.onSync = undefined;
    await engine.close().catch(() => {});
  });

  test("a failed file-system flush falls back to fdatasync and fails only that log", async () => {
    using dir = tempDir();
    const io = new FlushingIO();
    const engine = await openWithTopic(dir.path, io);
    io.failFlush = true;
    io.onSync = (call) => (pathOf(call.fd).includes("/t-12/") ? { code: "EIO" } : undefined);
    const syncsBefore = io.syncCount;
    const { settled, results } = appendToEach(engine);
    await assert.rejects(results[12]!, sluiceCode("LOG_FENCED"));
    for (let partition = 0; partition < PARTITIONS; partition++) {
      if (partition !== 12) await results[partition];
    }
    assert.equal(settled.filter((state) => state === "acked").length, PARTITIONS - 1);
    assert.equal(io.flushCount, 1);
    assert.equal(
      io.syncCount - syncsBefore,
      PARTITIONS,
      "each log fdatasynced after the flush failed",
    );
    io.onSync = undefined;
    await engine.close().catch(() => {});
  });

  test("the engine's own file-system flush (syncfs) is used where reachable", {
    skip: process.platform !== "linux",
  }, async () => {
    using dir = tempDir();
    const flush = openSyncfs(dir.path);
    assert.notEqual(flush, undefined, "syncfs reachable on this Linux");
    assert.equal(flush!.dev, fs.statSync(dir.path).dev);
    await flush!.sync();
    flush!.close();
    const engine = await Engine.open(dir.path, { topicDefaults: { fsync: "always" } });
    assert.equal(engine.groupSync.flushesFileSystem, true);
    await engine.createTopic("t", { partitions: 8 });
    const appends = [];
    for (let partition = 0; partition < 8; partition++) {
      appends.push(engine.append("t", partition, simpleBatch(2)));
    }
    await Promise.all(appends);
    for (let partition = 0; partition < 8; partition++) {
      assert.equal(engine.partition("t", partition).recoveryPoint, 2);
    }
    await engine.close();
  });

  test("partitionSync other than auto, fdatasync or flush is refused with the value", async () => {
    using dir = tempDir();
    const options = { partitionSync: "sometimes" } as unknown as EngineOptions;
    await assert.rejects(Engine.open(dir.path, options), /partitionSync sometimes/);
    // Nothing is left open: the directory can be opened again at once.
    const engine = await Engine.open(dir.path);
    await engine.close();
  });
});

describe("group commit: choosing between a file-system flush and fdatasyncs", () => {
  /** A scheduler over fake segments whose two ways cost what the test says, on a fake clock. */
  function rig(costs: {
    flushMs: number;
    fileMs: number;
    flushFails?: boolean;
    flushAlways?: boolean;
  }) {
    let nowMs = 0;
    const calls: string[] = [];
    const io = {
      datasync: async () => {
        calls.push("fdatasync");
        nowMs += costs.fileMs;
      },
    } as unknown as FileIO;
    const fileSystem = {
      dev: 1,
      sync: async () => {
        calls.push("flush");
        nowMs += costs.flushMs;
        if (costs.flushFails === true) throw new Error("syncfs failed");
      },
      close: () => {},
    };
    const flushAlways = costs.flushAlways === true;
    const group = new GroupSync({ io, fileSystem, flushAlways, monotonicMs: () => nowMs });
    const segment = { withFd: (operation: (fd: number) => Promise<void>) => operation(3) };
    const round = async () => {
      calls.length = 0;
      await group.sync({ segments: [segment as unknown as Segment], dev: 1 });
      return calls.join(",");
    };
    return {
      round,
      advance: (ms: number) => {
        nowMs += ms;
      },
    };
  }

  test("each way is measured once, then the cheaper is used", async () => {
    const { round } = rig({ flushMs: 100, fileMs: 1 });
    assert.equal(await round(), "flush", "the flush is measured first");
    assert.equal(await round(), "fdatasync", "then one fdatasync");
    assert.equal(await round(), "fdatasync", "one fdatasync costs less than a slow flush");
    const cheap = rig({ flushMs: 1, fileMs: 5 });
    await cheap.round();
    await cheap.round();
    assert.equal(await cheap.round(), "flush", "a flush cheaper than the fdatasync wins");
  });

  test("a dearer way is tried again after COST_STALE_MS, then twice as long later", async () => {
    const { round, advance } = rig({ flushMs: 100, fileMs: 1 });
    await round();
    await round();
    advance(COST_STALE_MS);
    assert.equal(await round(), "flush", "tried again once stale");
    advance(COST_STALE_MS);
    assert.equal(await round(), "fdatasync", "it lost: the next trial waits twice as long");
    advance(COST_STALE_MS);
    assert.equal(await round(), "flush", "tried again after twice COST_STALE_MS");
  });

  test("a flush that fails is not tried again until its trial", async () => {
    const { round, advance } = rig({ flushMs: 1, fileMs: 5, flushFails: true });
    assert.equal(await round(), "flush,fdatasync", "the failed flush falls back to fdatasync");
    assert.equal(await round(), "fdatasync");
    assert.equal(await round(), "fdatasync");
    advance(COST_STALE_MS);
    assert.equal(await round(), "flush,fdatasync", "tried again once stale");
  });

  test("partitionSync flush: every round flushes, even where an fdatasync costs less", async () => {
    const { round } = rig({ flushMs: 100, fileMs: 1, flushAlways: true });
    for (let i = 0; i < 5; i++) assert.equal(await round(), "flush", `round ${i}`);
  });

  test("partitionSync flush: after a failed flush, fdatasyncs until its trial", async () => {
    const { round, advance } = rig({ flushMs: 1, fileMs: 5, flushFails: true, flushAlways: true });
    assert.equal(await round(), "flush,fdatasync", "the failed flush falls back to fdatasync");
    assert.equal(await round(), "fdatasync");
    advance(COST_STALE_MS);
    assert.equal(await round(), "flush,fdatasync", "tried again once stale");
  });
});

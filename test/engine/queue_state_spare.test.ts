// Spare generations of the queue state log: once a generation is half way to compaction, the
// next one's file is made ahead of need, zero-filled and synced, and the compaction writes its
// snapshot over it, so that generation's deltas overwrite zeros (an fdatasync with no journal
// commit) instead of extending the file. A crash leaves zeros past the last frame: a reopen
// stops there with every resolved accept kept, whether the tail is clean zeros, a torn frame
// written over them, or garbage after them; a clean close truncates the zeros away. A
// compaction's directory fsync runs on the thread pool, not on the event loop.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { type Engine, type FileIO, realFileIO } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";
import {
  acksFor,
  Clock,
  crashImage,
  type Delivery,
  deliveriesOf,
  failsWith,
  openEngine,
  publish,
} from "./queue_helpers.ts";

const STATE_FILE = /^\d{20}\.log$/;
/** Small enough that a few hundred accepts compact the log several times. */
const COMPACT_AFTER_BYTES = 4096;
const RECORDS = 600;

function liveStateFile(dir: string): string {
  const queueDir = join(dir, "__queues", "q");
  const live = fs.readdirSync(queueDir).filter((name) => STATE_FILE.test(name));
  assert.equal(live.length, 1, `one live generation: ${live.join(", ")}`);
  return join(queueDir, live[0]!);
}

type Run = { engine: Engine; held: Delivery[]; member: string; accepted: number };

/**
 * Publishes RECORDS records and accepts them one call each until a compaction wrote into a
 * spare, and then three more (so that the live generation ends with delta frames).
 */
async function acceptUntilCompacted(dir: string, clock: Clock, io?: FileIO): Promise<Run> {
  const { engine } = await openEngine(dir, clock, {
    queueCompactAfterBytes: COMPACT_AFTER_BYTES,
    ...(io === undefined ? {} : { io }),
  });
  await engine.createTopic("t", { config: { fsync: "never" } });
  await engine.declareQueue("q", { topic: "t", fsync: "always", prefetch: RECORDS });
  const values = Array.from({ length: RECORDS }, (_, i) => `v${i}`);
  await publish(engine, "t", 0, values);
  const member = engine.joinQueue("q");
  const held = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: RECORDS }));
  assert.equal(held.length, RECORDS);
  let accepted = 0;
  let after = 0;
  while (after < 3) {
    assert.ok(accepted < RECORDS, "a compaction used a spare within the records");
    await engine.ackQueue("q", member, acksFor(held.slice(accepted, accepted + 1), "accept"));
    accepted++;
    if (engine.queue("q").stateLog.stats.spareCompactions > 0) after++;
  }
  return { engine, held, member, accepted };
}

type Reopened = { offsets: number[]; warnings: string[]; tornBytes: number };

/** Offsets a fresh member of the reopened `dir` is handed (those not accepted), and more. */
async function offsetsAfterReopen(dir: string): Promise<Reopened> {
  const { engine, warnings } = await openEngine(dir, new Clock());
  try {
    const { tornBytes } = engine.queue("q").stateLog.recovery;
    const member = engine.joinQueue("q");
    const fetched = engine.fetchQueue("q", member, { maxRecords: RECORDS });
    return { offsets: deliveriesOf(fetched).map((d) => d.offset), warnings, tornBytes };
  } finally {
    await engine.close();
  }
}

/**
 * crashImage of a live engine: a spare the engine deletes while the copy runs (one a compaction
 * did without) makes the copy fail on a vanished file; the copy is then taken again.
 */
function liveCrashImage(dir: string, into: string): void {
  for (let attempt = 1; ; attempt++) {
    try {
      crashImage(dir, into);
      return;
    } catch (error) {
      const vanished = (error as { code?: string }).code === "ENOENT";
      if (!vanished || attempt === 3) throw error;
      fs.rmSync(into, { recursive: true, force: true });
      fs.mkdirSync(into);
    }
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

describe("queue state log spare generations", () => {
  test("after a compaction deltas overwrite the spare's zeros: the file stays", async () => {
    using dir = tempDir();
    const run = await acceptUntilCompacted(dir.path, new Clock());
    try {
      const path = liveStateFile(dir.path);
      const { logBytes } = run.engine.queue("q").stateLog.stats;
      const sizeBytes = fs.statSync(path).size;
      assert.ok(
        sizeBytes > logBytes,
        `a spare's zeros past the frames: ${sizeBytes} > ${logBytes}`,
      );
      const tail = fs.readFileSync(path).subarray(logBytes);
      assert.ok(
        tail.every((byte) => byte === 0),
        "past the last frame, only zeros",
      );
      const more = run.held.slice(run.accepted, run.accepted + 5);
      for (const delivery of more)
        await run.engine.ackQueue("q", run.member, acksFor([delivery], "accept"));
      assert.ok(run.engine.queue("q").stateLog.stats.logBytes > logBytes, "the log grew");
      assert.equal(fs.statSync(path).size, sizeBytes, "inside the file: no write extended it");
    } finally {
      await run.engine.close();
    }
  });

  test("a clean close truncates the zeros; the reopen has every accept", async () => {
    using dir = tempDir();
    const run = await acceptUntilCompacted(dir.path, new Clock());
    const { logBytes } = run.engine.queue("q").stateLog.stats;
    await run.engine.close();
    assert.equal(fs.statSync(liveStateFile(dir.path)).size, logBytes);
    const names = fs.readdirSync(join(dir.path, "__queues", "q"));
    assert.deepEqual(
      names.filter((name) => name.endsWith(".tmp") || name.endsWith(".spare")),
      [],
      "no spare left behind",
    );
    const reopened = await offsetsAfterReopen(dir.path);
    assert.deepEqual(reopened.offsets, range(run.accepted, RECORDS));
  });

  test("a crash image with zeros past the last frame loses no resolved accept", async () => {
    using dir = tempDir();
    const run = await acceptUntilCompacted(dir.path, new Clock());
    try {
      using image = tempDir();
      // The engine is still open: the image is what a SIGKILL leaves, zeros and spare included.
      liveCrashImage(dir.path, image.path);
      const path = liveStateFile(image.path);
      const { logBytes } = run.engine.queue("q").stateLog.stats;
      const sizeBytes = fs.statSync(path).size;
      assert.ok(sizeBytes > logBytes, "the image holds the zeros");
      const reopened = await offsetsAfterReopen(image.path);
      assert.deepEqual(reopened.warnings, []);
      assert.deepEqual(reopened.offsets, range(run.accepted, RECORDS));
      assert.equal(reopened.tornBytes, sizeBytes - logBytes, "cut at the last frame");
    } finally {
      await run.engine.close();
    }
  });

  test("a torn frame over the zeros, or garbage after them, is a torn tail", async () => {
    using dir = tempDir();
    const run = await acceptUntilCompacted(dir.path, new Clock());
    try {
      const { logBytes } = run.engine.queue("q").stateLog.stats;
      const live = fs.readFileSync(liveStateFile(dir.path));
      // The last frame: a delta frame of one accept (12 header + 4 count + 18 entry bytes).
      const lastFrame = live.subarray(logBytes - 34, logBytes);
      assert.equal(lastFrame[7], 3, "the last frame is a DELTAS frame");
      for (const damage of ["torn", "garbage"] as const) {
        using image = tempDir();
        liveCrashImage(dir.path, image.path);
        const path = liveStateFile(image.path);
        const fd = fs.openSync(path, "r+");
        let sizeBytes = fs.fstatSync(fd).size;
        try {
          if (damage === "torn") {
            // A write the crash cut short, over the zeros: its first 20 bytes, zeros after.
            fs.writeSync(fd, lastFrame.subarray(0, 20), 0, 20, logBytes);
          } else {
            const noise = new Uint8Array(512).map((_, i) => (i * 131 + 7) & 0xff);
            fs.writeSync(fd, noise, 0, noise.length, sizeBytes);
            sizeBytes += noise.length;
          }
        } finally {
          fs.closeSync(fd);
        }
        const reopened = await offsetsAfterReopen(image.path);
        assert.deepEqual(reopened.warnings, [], `${damage}: no damage reported`);
        assert.deepEqual(reopened.offsets, range(run.accepted, RECORDS), `${damage}: state`);
        assert.equal(reopened.tornBytes, sizeBytes - logBytes, `${damage}: cut at the last frame`);
      }
    } finally {
      await run.engine.close();
    }
  });

  test("a compaction fsyncs the directory on the thread pool, not on the event loop", async () => {
    using dir = tempDir();
    const queueDir = join(dir.path, "__queues", "q");
    const calls = { blocking: 0, pooled: 0 };
    const io: FileIO = {
      ...realFileIO,
      syncDirectory(path) {
        if (path === queueDir) calls.blocking++;
        realFileIO.syncDirectory(path);
      },
      async syncDirectoryAsync(path) {
        if (path === queueDir) calls.pooled++;
        await realFileIO.syncDirectoryAsync!(path);
      },
    };
    const run = await acceptUntilCompacted(dir.path, new Clock(), io);
    try {
      const { compactions } = run.engine.queue("q").stateLog.stats;
      // The queue's creation synced its directory once, before any compaction.
      assert.equal(calls.blocking, 1, "only the creation's fsync blocked the loop");
      assert.ok(calls.pooled >= compactions, `${calls.pooled} pooled for ${compactions}`);
    } finally {
      await run.engine.close();
    }
  });

  test("a first generation takes its spare early and compacts into it", async () => {
    using dir = tempDir();
    // 1 MiB: the early spare comes at 1/16 of it, 64 KiB, far below the compaction.
    const compactAfterBytes = 1024 * 1024;
    const { engine } = await openEngine(dir.path, new Clock(), {
      queueCompactAfterBytes: compactAfterBytes,
    });
    try {
      const records = 8_000;
      await engine.createTopic("t", { config: { fsync: "never" } });
      const limits = { prefetch: records, maxInFlight: records };
      await engine.declareQueue("q", { topic: "t", fsync: "always", ...limits });
      for (let i = 0; i < records; i += 1_000) {
        await publish(
          engine,
          "t",
          0,
          Array.from({ length: 1_000 }, (_, j) => `v${i + j}`),
        );
      }
      const member = engine.joinQueue("q");
      const held = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: records }));
      assert.equal(held.length, records);
      const log = engine.queue("q").stateLog;
      // Every other record per call: one 18-byte entry each, ~3.6 KiB a call.
      const evens = held.filter((delivery) => delivery.offset % 2 === 0);
      for (let i = 0; i < evens.length && log.stats.spareCompactions === 0; i += 200) {
        await engine.ackQueue("q", member, acksFor(evens.slice(i, i + 200), "accept"));
      }
      const odds = held.filter((delivery) => delivery.offset % 2 === 1);
      // One at a time until the spare is taken, then three more: by then the first generation
      // is deleted.
      let after = 0;
      for (let i = 0; i < odds.length && after < 3; i++) {
        await engine.ackQueue("q", member, acksFor(odds.slice(i, i + 1), "accept"));
        if (log.stats.spareCompactions > 0) after++;
      }
      assert.equal(log.stats.spareCompactions, 1, "compacted into the early spare");
      assert.ok(log.stats.logBytes < compactAfterBytes / 2, `${log.stats.logBytes} bytes`);
      const path = liveStateFile(dir.path);
      assert.ok(fs.statSync(path).size > log.stats.logBytes, "the new generation holds zeros");
    } finally {
      await engine.close();
    }
  });

  test("queueSpareBytesMax 0 makes no spare; a bad value is refused by name", async () => {
    using dir = tempDir();
    const { engine } = await openEngine(dir.path, new Clock(), {
      queueCompactAfterBytes: COMPACT_AFTER_BYTES,
      queueSpareBytesMax: 0,
    });
    try {
      await engine.createTopic("t", { config: { fsync: "never" } });
      await engine.declareQueue("q", { topic: "t", fsync: "always", prefetch: RECORDS });
      await publish(
        engine,
        "t",
        0,
        Array.from({ length: RECORDS }, (_, i) => `v${i}`),
      );
      const member = engine.joinQueue("q");
      const held = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: RECORDS }));
      const log = engine.queue("q").stateLog;
      // Three accepts past the second compaction: by then its old generation is deleted.
      let after = 0;
      for (let i = 0; i < held.length && after < 3; i++) {
        await engine.ackQueue("q", member, acksFor(held.slice(i, i + 1), "accept"));
        if (log.stats.compactions >= 2) after++;
      }
      assert.ok(log.stats.compactions >= 2, "compacted");
      assert.equal(log.stats.spareCompactions, 0);
      assert.equal(fs.statSync(liveStateFile(dir.path)).size, log.stats.logBytes, "no zeros");
    } finally {
      await engine.close();
    }
    using other = tempDir();
    await failsWith(
      () => openEngine(other.path, new Clock(), { queueSpareBytesMax: -1 }),
      "INVALID_CONFIG",
    ).then((error) => assert.match(error.message, /queueSpareBytesMax -1/));
  });
});

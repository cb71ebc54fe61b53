// Queue state on disk: an accept resolved under fsync "always" survives a crash; a failed
// fdatasync (even with ENOSPC) or a write failing with EIO fails the ack typed and fences the
// queue until a reopen (a write failing with ENOSPC fences nothing: queue_full_disk.test.ts);
// a torn tail is
// truncated quietly; a damaged frame with valid frames after it is reported, skipped and kept
// as `.corrupt`, and the frames after it still count; compaction rolls generations. Queue
// fetches check a batch's CRC once per process, like every read: damage under a checked batch
// is the scrubber's to find.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { type Engine, isSluiceError } from "../../engine/mod.ts";
import { baseOffsetAt, batchSizeAt, lastOffsetDeltaAt } from "../../record/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";
import { FaultyIO } from "./partition_log_helpers.ts";
import {
  acksFor,
  Clock,
  crashImage,
  deliveriesOf,
  failsWith,
  openEngine,
  publish,
  type TestEngine,
} from "./queue_helpers.ts";

const STATE_FILE = /^\d{20}\.log$/;

function stateFiles(dir: string): string[] {
  // `delay/` holds the delay tiers (queue_delay.ts), not state-log generations.
  return fs
    .readdirSync(join(dir, "__queues", "q"))
    .filter((name) => name !== "delay")
    .sort();
}

function liveStateFile(dir: string): string {
  const live = stateFiles(dir).filter((name) => STATE_FILE.test(name));
  assert.equal(live.length, 1, `one live generation: ${live.join(", ")}`);
  return join(dir, "__queues", "q", live[0]!);
}

/** Frame boundaries of a state file: [start, end, type] for each frame. */
function frames(path: string): [number, number, number][] {
  const bytes = fs.readFileSync(path);
  const found: [number, number, number][] = [];
  for (let at = 0; at + 12 <= bytes.length; ) {
    const end = at + 12 + bytes.readUInt32BE(at + 8);
    found.push([at, end, bytes[at + 7]!]);
    at = end;
  }
  return found;
}

async function withQueue(
  dir: string,
  clock: Clock,
  options: Parameters<typeof openEngine>[2] = {},
  fsync: "always" | "never" = "always",
): Promise<TestEngine> {
  const opened = await openEngine(dir, clock, options);
  await opened.engine.createTopic("t", { partitions: 2, config: { fsync: "never" } });
  await opened.engine.declareQueue("q", { topic: "t", fsync });
  return opened;
}

describe("queue durability", () => {
  test("an accept resolved under fsync always survives a crash right after it", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine } = await withQueue(dir.path, clock);
    await publish(engine, "t", 0, ["a", "b", "c"]);
    const member = engine.joinQueue("q");
    const held = deliveriesOf(engine.fetchQueue("q", member));
    const fsyncs = engine.queue("q").stateLog.stats.fsyncs;
    await engine.ackQueue("q", member, acksFor(held.slice(0, 2), "accept"));
    assert.ok(engine.queue("q").stateLog.stats.fsyncs > fsyncs, "the accept was fdatasync'd");
    using image = tempDir();
    crashImage(dir.path, image.path);
    await engine.close();
    const reopened = await openEngine(image.path, clock);
    try {
      const again = deliveriesOf(reopened.engine.fetchQueue("q", reopened.engine.joinQueue("q")));
      assert.deepEqual(
        again.map((d) => [d.offset, d.deliveries]),
        [[2, 2]],
        "only the unaccepted record comes back",
      );
      const stats = reopened.engine.queueStats("q");
      assert.deepEqual([stats.accepted, stats.delivered], [2, 4]);
    } finally {
      await reopened.engine.close();
    }
  });

  const faults = [
    ["fdatasync", "EIO"],
    ["fdatasync", "ENOSPC"],
    ["write", "EIO"],
  ] as const;
  for (const [fault, errno] of faults) {
    test(`a ${fault} failing with ${errno} fails the ack and fences the queue`, async () => {
      using dir = tempDir();
      const clock = new Clock();
      const io = new FaultyIO();
      const { engine } = await withQueue(dir.path, clock, { io });
      await publish(engine, "t", 0, ["a", "b"]);
      const member = engine.joinQueue("q");
      const held = deliveriesOf(engine.fetchQueue("q", member));
      await engine.flush();
      if (fault === "fdatasync") io.onSync = () => ({ code: errno });
      else io.onWrite = () => ({ code: errno });
      const error = await failsWith(
        () => engine.ackQueue("q", member, acksFor(held.slice(0, 1), "accept")),
        "LOG_FENCED",
      );
      const { cause } = error;
      assert.ok(isSluiceError(cause), "the cause is the I/O failure");
      assert.equal(cause.code, errno === "ENOSPC" ? "DISK_FULL" : "IO_ERROR");
      await failsWith(() => engine.fetchQueue("q", member), "LOG_FENCED");
      await failsWith(
        () => engine.ackQueue("q", member, acksFor(held.slice(1), "accept")),
        "LOG_FENCED",
      );
      io.onSync = undefined;
      io.onWrite = undefined;
      await engine.close();
      const reopened = await openEngine(dir.path, clock);
      try {
        const again = deliveriesOf(reopened.engine.fetchQueue("q", reopened.engine.joinQueue("q")));
        // The failed accept may or may not have reached the file; the other record is back.
        assert.ok(again.some((d) => d.offset === 1));
        reopened.engine.queue("q").cursor(0).checkInvariants();
      } finally {
        await reopened.engine.close();
      }
    });
  }

  test("a torn tail is truncated without a report", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine } = await withQueue(dir.path, clock);
    await publish(engine, "t", 0, ["a", "b"]);
    const member = engine.joinQueue("q");
    const held = deliveriesOf(engine.fetchQueue("q", member));
    await engine.ackQueue("q", member, acksFor(held.slice(0, 1), "accept"));
    await engine.close();
    const path = liveStateFile(dir.path);
    const size = fs.statSync(path).size;
    const last = frames(path).at(-1)!;
    // A second copy of the last frame, cut short: a write the crash interrupted.
    const torn = fs.readFileSync(path).subarray(last[0], last[1] - 3);
    fs.appendFileSync(path, torn);
    const reopened = await openEngine(dir.path, clock);
    try {
      assert.deepEqual(reopened.warnings, []);
      assert.equal(fs.statSync(path).size, size, "the torn bytes are gone");
      assert.equal(reopened.engine.queue("q").stateLog.recovery.tornBytes, torn.length);
      assert.equal(reopened.engine.queueStats("q").partitions[0]!.floor, 1);
    } finally {
      await reopened.engine.close();
    }
  });

  test("mid-file damage is reported, skipped, kept as .corrupt; later frames count", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine } = await withQueue(dir.path, clock);
    await publish(engine, "t", 0, ["a", "b", "c"]);
    const member = engine.joinQueue("q");
    const held = deliveriesOf(engine.fetchQueue("q", member));
    for (const delivery of held) {
      await engine.ackQueue("q", member, acksFor([delivery], "accept"));
    }
    await engine.close();
    const path = liveStateFile(dir.path);
    // Frames: QUEUE, PARTITION x2, then DELTAS: acquire + accept 0 (one group commit: the
    // ack came in the fetch's tick), accept 1, accept 2.
    const deltas = frames(path).filter(([, , type]) => type === 3);
    assert.equal(deltas.length, 3);
    const [start, end] = deltas[1]!;
    const bytes = fs.readFileSync(path);
    bytes[start + Math.floor((end - start) / 2)]! ^= 0x10;
    fs.writeFileSync(path, bytes);
    const reopened = await openEngine(dir.path, clock);
    try {
      assert.equal(reopened.warnings.length, 1, reopened.warnings.join("\n"));
      assert.match(reopened.warnings[0]!, /is damaged: bytes \d+ to \d+ are not valid frames/);
      assert.ok(stateFiles(dir.path).some((name) => name.endsWith(".log.corrupt")));
      // The accept of offset 1 is lost (1 comes back); the accept of 2 after it still holds.
      const again = deliveriesOf(reopened.engine.fetchQueue("q", reopened.engine.joinQueue("q")));
      assert.deepEqual(
        again.map((d) => d.offset),
        [1],
      );
      assert.equal(reopened.engine.queueStats("q").partitions[0]!.floor, 1);
    } finally {
      await reopened.engine.close();
    }
    const clean = await openEngine(dir.path, clock);
    assert.deepEqual(clean.warnings, [], "the clean generation opens without a report");
    await clean.engine.close();
  });

  test("compaction rolls generations; a reopen finds the same state", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine } = await withQueue(dir.path, clock, { queueCompactAfterBytes: 512 }, "never");
    const member = engine.joinQueue("q");
    for (let round = 0; round < 40; round++) {
      await publish(engine, "t", round % 2, [`a${round}`, `b${round}`, `c${round}`]);
      const held = deliveriesOf(engine.fetchQueue("q", member));
      await engine.ackQueue("q", member, acksFor(held.slice(0, 1), "accept"));
      await engine.ackQueue("q", member, acksFor(held.slice(1), "release"));
    }
    const log = engine.queue("q").stateLog.stats;
    assert.ok(log.compactions >= 5, `compactions: ${log.compactions}`);
    const before = JSON.stringify(engine.queueStats("q"));
    await engine.close();
    fs.writeFileSync(`${liveStateFile(dir.path)}.tmp`, "an interrupted compaction");
    const reopened = await openEngine(dir.path, clock);
    try {
      assert.equal(stateFiles(dir.path).length, 1, "the leftover is removed");
      const after = reopened.engine.queueStats("q");
      // Members and their acquisitions do not survive; everything else does.
      const expected = JSON.parse(before);
      expected.members = 0;
      expected.memoryBytes = after.memoryBytes; // lock entries grew with use: not state
      assert.deepEqual(JSON.parse(JSON.stringify(after)), expected);
    } finally {
      await reopened.engine.close();
    }
  });

  test("a queue whose topic log lost its tail forgets its state past the end", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine } = await withQueue(dir.path, clock);
    await publish(engine, "t", 0, ["a", "b", "c", "d"]);
    const member = engine.joinQueue("q");
    const held = deliveriesOf(engine.fetchQueue("q", member));
    await engine.ackQueue("q", member, acksFor(held.slice(2), "accept"));
    await engine.close();
    // The topic's data is gone (as after a power loss with fsync never), its queue state not.
    fs.rmSync(join(dir.path, "t-0"), { recursive: true });
    const reopened = await openEngine(dir.path, clock);
    try {
      assert.match(reopened.warnings.join("\n"), /partition 0 ends at 0 but the queue had seen/);
      await publish(reopened.engine, "t", 0, ["new-0", "new-1", "new-2", "new-3"]);
      const again = deliveriesOf(reopened.engine.fetchQueue("q", reopened.engine.joinQueue("q")));
      assert.deepEqual(
        again.map((d) => d.value),
        ["new-0", "new-1", "new-2", "new-3"],
        "the new records at old offsets are delivered",
      );
    } finally {
      await reopened.engine.close();
    }
  });
});

/** Flips a byte in the middle of the batch holding `offset` in a partition's first segment. */
function damageBatch(dir: string, offset: number): void {
  const path = join(dir, "t-0", "00000000000000000000.log");
  const bytes = fs.readFileSync(path);
  for (let at = 0; at < bytes.length; at += batchSizeAt(bytes, at)) {
    const base = baseOffsetAt(bytes, at);
    if (base > offset || offset > base + lastOffsetDeltaAt(bytes, at)) continue;
    const middle = at + Math.floor(batchSizeAt(bytes, at) / 2);
    const fd = fs.openSync(path, "r+");
    fs.writeSync(fd, new Uint8Array([bytes[middle]! ^ 0x40]), 0, 1, middle);
    fs.closeSync(fd);
    return;
  }
  throw new Error(`no batch holds offset ${offset}`);
}

/** Fetches and accepts everything; returns the offsets delivered. */
async function drainOffsets(engine: Engine): Promise<number[]> {
  const member = engine.joinQueue("q");
  const offsets: number[] = [];
  for (;;) {
    const held = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 7 }));
    if (held.length === 0 && engine.queueStats("q").ready === 0)
      return offsets.sort((a, b) => a - b);
    offsets.push(...held.map((d) => d.offset));
    await engine.ackQueue("q", member, acksFor(held, "accept"));
  }
}

describe("queue over a damaged log", () => {
  const config = { fsync: "never" as const, segmentBytes: 1024 };
  const values = Array.from({ length: 30 }, (_, i) => `v${i}`.padEnd(80, "."));

  test("damage found at open is skipped and counted; every other record is delivered", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const first = await openEngine(dir.path, clock);
    await first.engine.createTopic("t", { config });
    await first.engine.declareQueue("q", { topic: "t" });
    for (const value of values) await publish(first.engine, "t", 0, [value]);
    await first.engine.close();
    damageBatch(dir.path, 2);
    const { engine, warnings } = await openEngine(dir.path, clock);
    try {
      const delivered = await drainOffsets(engine);
      assert.deepEqual(
        delivered,
        [...Array(30).keys()].filter((offset) => offset !== 2),
      );
      assert.match(warnings.join("\n"), /offsets 2\.\.2 of partition 0 are damaged in the log/);
      const stats = engine.queueStats("q");
      assert.deepEqual([stats.discarded, stats.partitions[0]!.floor], [1, 30]);
    } finally {
      await engine.close();
    }
  });

  test("a queue fetch does not hash a checked batch again (the scrubber's job)", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine, warnings } = await openEngine(dir.path, clock, { scrubBytesPerSec: 0 });
    try {
      await engine.createTopic("t", { config });
      await engine.declareQueue("q", { topic: "t" });
      for (const value of values) await publish(engine, "t", 0, [value]);
      // Appended by this process, so checked on append: a fetch walks the headers only, and
      // damage written under it is not seen until a scrub (or the consumer's own CRC check).
      damageBatch(dir.path, 1);
      // The broker hands the damaged record out with the rest; the consumer's own CRC check
      // (deliveriesOf decodes with it) is what catches it.
      await assert.rejects(drainOffsets(engine), (error: unknown) =>
        isSluiceError(error, "CORRUPT_BATCH"),
      );
      assert.deepEqual(warnings, []);
      assert.equal(engine.queueStats("q").discarded, 0);
    } finally {
      await engine.close();
    }
  });

  test("a released record whose batch is damaged later is discarded, not retried", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const { engine, warnings } = await openEngine(dir.path, clock);
    try {
      await engine.createTopic("t", { config });
      await engine.declareQueue("q", { topic: "t" });
      for (const value of values) await publish(engine, "t", 0, [value]);
      const member = engine.joinQueue("q");
      const held = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: 3 }));
      await engine.ackQueue("q", member, acksFor(held.slice(1, 2), "release"));
      await engine.ackQueue("q", member, [
        ...acksFor(held.slice(0, 1), "accept"),
        ...acksFor(held.slice(2), "accept"),
      ]);
      damageBatch(dir.path, 1);
      // Reads check a batch's CRC once per process: damage after that is found by the
      // scrubber, which makes the next read check again.
      await waitFor(
        () => warnings.some((warning) => /scrub/i.test(warning)),
        "the scrubber to find the damage",
      );
      const delivered = await drainOffsets(engine);
      assert.deepEqual(
        delivered,
        [...Array(27).keys()].map((i) => i + 3),
      );
      assert.match(warnings.join("\n"), /offsets 1\.\.1 of partition 0 are damaged/);
      assert.equal(engine.queueStats("q").discarded, 1);
    } finally {
      await engine.close();
    }
  });
});

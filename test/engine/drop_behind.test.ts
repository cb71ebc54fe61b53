// Drop-behind (engine/page_cache.ts): after a synced flush round, a log's durable bytes older
// than its last dropBehindKeepBytes leave the page cache, in steps of DROP_BEHIND_STEP_BYTES;
// unsynced bytes do only with dropUnsynced (handed to writeback half a keep behind the tail,
// dropped a whole keep behind it), and the data reads back whole after its pages were dropped.

import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, test } from "node:test";
import { Engine } from "../../engine/engine.ts";
import { cacheDropper, DROP_BEHIND_STEP_BYTES } from "../../engine/page_cache.ts";
import { PartitionLog } from "../../engine/partition_log.ts";
import { tempDir } from "../helpers.ts";
import { readAll, simpleBatch } from "./partition_log_helpers.ts";

const MIB = 1024 * 1024;
/** 64 records of 4 KiB: a batch of ~256 KiB. */
const BATCH = simpleBatch(64, { valueBytes: 4096 });

type Drop = { fd: number; position: number; length: number };

/**
 * A log whose page-cache hints are recorded in `drops` and answered by `answer` (0, taken, by
 * default) instead of reaching posix_fadvise.
 */
async function openRecording(
  dir: string,
  fsync: "always" | "never",
  options: { dropBehindKeepBytes: number; dropUnsynced?: boolean; warnings?: string[] },
  answer: () => number | Promise<number> = () => 0,
): Promise<{ log: PartitionLog; drops: Drop[] }> {
  const drops: Drop[] = [];
  const warnings = options.warnings;
  const log = await PartitionLog.open(
    dir,
    { fsync },
    {
      onWarning: warnings === undefined ? () => {} : (message) => warnings.push(message),
      dropCache: (fd, position, length) => {
        drops.push({ fd, position, length });
        return answer();
      },
      dropBehindKeepBytes: options.dropBehindKeepBytes,
      ...(options.dropUnsynced === undefined ? {} : { dropUnsynced: options.dropUnsynced }),
    },
  );
  return { log, drops };
}

async function fill(log: PartitionLog, bytes: number): Promise<number> {
  let records = 0;
  for (let written = 0; written < bytes; written += BATCH.length) {
    await log.append(BATCH);
    records += 64;
  }
  return records;
}

/** Appends 10 MiB to a new topic's one partition and reads every record back. */
async function fillAndReadBack(engine: Engine): Promise<void> {
  await engine.createTopic("t", { partitions: 1 });
  let records = 0;
  for (let written = 0; written < 10 * MIB; written += BATCH.length) {
    await engine.append("t", 0, BATCH);
    records += 64;
  }
  let read = 0;
  let offset = 0;
  while (offset < records) {
    const result = engine.read("t", 0, offset, MIB);
    assert.ok(result.nextOffset > offset);
    read += result.nextOffset - offset;
    offset = result.nextOffset;
  }
  assert.equal(read, records);
}

describe("drop-behind", () => {
  test("a synced log drops durable bytes behind its tail, never its last keep bytes", async () => {
    using dir = tempDir();
    const keepBytes = MIB;
    const { log, drops } = await openRecording(dir.path, "always", {
      dropBehindKeepBytes: keepBytes,
    });
    try {
      const records = await fill(log, 12 * MIB);
      assert.ok(drops.length >= 2, `${drops.length} drops`);
      let next = 0;
      for (const drop of drops) {
        assert.equal(drop.position, next, "ranges follow each other from the segment's start");
        assert.ok(drop.length >= DROP_BEHIND_STEP_BYTES, `a drop of ${drop.length} bytes`);
        next = drop.position + drop.length;
      }
      const written = log.sizeBytes;
      assert.ok(next <= written - keepBytes, `dropped to ${next} of ${written}`);
      assert.ok(next >= written - keepBytes - DROP_BEHIND_STEP_BYTES, `only to ${next}`);
      assert.equal(readAll(log).length, records, "every record reads back");
    } finally {
      await log.close();
    }
  });

  test("a log whose rounds do not sync drops nothing by default", async () => {
    using dir = tempDir();
    const { log, drops } = await openRecording(dir.path, "never", { dropBehindKeepBytes: 0 });
    try {
      await fill(log, 12 * MIB);
      assert.deepEqual(drops, [], "unsynced pages may be dirty: they stay");
    } finally {
      await log.close();
    }
  });

  test("with dropUnsynced an unsynced log hands ranges to writeback, then drops them", async () => {
    using dir = tempDir();
    // Half a keep is more than a step, so the two chains never meet and each range is told apart.
    const keepBytes = 16 * MIB;
    const { log, drops } = await openRecording(dir.path, "never", {
      dropBehindKeepBytes: keepBytes,
      dropUnsynced: true,
    });
    try {
      const records = await fill(log, 48 * MIB);
      const written = log.sizeBytes;
      // Two chains of ranges, each following on from the segment's start: the writeback one
      // ends within a step of half a keep behind the tail, the drop one a whole keep behind.
      let writebackEnd = 0;
      let dropEnd = 0;
      for (const drop of drops) {
        assert.ok(drop.length >= DROP_BEHIND_STEP_BYTES, `a range of ${drop.length} bytes`);
        const end = drop.position + drop.length;
        if (drop.position === writebackEnd) writebackEnd = end;
        else if (drop.position === dropEnd) dropEnd = end;
        else
          assert.fail(`a range at ${drop.position} follows neither ${writebackEnd} nor ${dropEnd}`);
        assert.ok(dropEnd <= writebackEnd, "a range is dropped only after it went to writeback");
      }
      assert.ok(writebackEnd <= written - keepBytes / 2, `writeback to ${writebackEnd}`);
      assert.ok(writebackEnd >= written - keepBytes / 2 - DROP_BEHIND_STEP_BYTES);
      assert.ok(dropEnd <= written - keepBytes, `dropped to ${dropEnd} of ${written}`);
      assert.ok(dropEnd >= written - keepBytes - DROP_BEHIND_STEP_BYTES, `only to ${dropEnd}`);
      assert.equal(readAll(log).length, records, "every record reads back");
    } finally {
      await log.close();
    }
  });

  test("a drop posix_fadvise refuses is not taken as done: one warning, then none", async () => {
    using dir = tempDir();
    const warnings: string[] = [];
    // EINVAL, as posix_fadvise answers it: a return code, not a throw.
    const { log, drops } = await openRecording(
      dir.path,
      "always",
      { dropBehindKeepBytes: 0, warnings },
      () => 22,
    );
    try {
      const records = await fill(log, 12 * MIB);
      assert.equal(drops.length, 1, "the log stops dropping after a refusal");
      assert.equal(warnings.length, 1, warnings.join("; "));
      assert.match(warnings[0]!, /drop-behind stopped: .*errno 22/);
      assert.equal(readAll(log).length, records, "every record reads back");
    } finally {
      await log.close();
    }
  });

  test("posix_fadvise answers a closed descriptor with EBADF, not 0", async () => {
    if (process.platform !== "linux") return;
    const drop = await cacheDropper();
    assert.notEqual(drop, undefined);
    // A descriptor number no file holds: posix_fadvise reports EBADF (9) as its result.
    assert.equal(await drop!(1_000_000, 0, 4096), 9);
  });

  test("hints answered later stay one batch in flight, and close waits for them", async () => {
    using dir = tempDir();
    const answers: ((errno: number) => void)[] = [];
    const { log, drops } = await openRecording(
      dir.path,
      "always",
      { dropBehindKeepBytes: 0 },
      () => new Promise<number>((resolve) => answers.push(resolve)),
    );
    let closed = false;
    try {
      const records = await fill(log, 12 * MIB);
      assert.equal(drops.length, 1, "no hint is issued while one is in flight");
      // The descriptor stays open while the hint uses it.
      assert.ok(fs.fstatSync(drops[0]!.fd).size > 0);
      answers.shift()!(0);
      const more = await fill(log, 6 * MIB);
      assert.equal(drops.length, 2, "the next round hints again once the first returned");
      assert.equal(drops[1]!.position, drops[0]!.position + drops[0]!.length, "ranges follow on");
      assert.ok(drops[1]!.length >= DROP_BEHIND_STEP_BYTES);
      assert.equal(readAll(log).length, records + more, "every record reads back");
      const closing = log.close().then(() => {
        closed = true;
      });
      // close waits for the hint in flight before it closes the descriptor under it.
      // tidy: allow-timeout a window in which close would otherwise finish: it can only miss
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(closed, false, "close waited for the hint");
      fs.fstatSync(drops[1]!.fd);
      answers.shift()!(0);
      await closing;
      assert.equal(closed, true);
    } finally {
      for (const answer of answers) answer(0);
      await log.close();
    }
  });

  test("a hint answered later with an errno stops the log's drops, with one warning", async () => {
    using dir = tempDir();
    const warnings: string[] = [];
    const { log, drops } = await openRecording(
      dir.path,
      "always",
      { dropBehindKeepBytes: 0, warnings },
      () => Promise.resolve(22),
    );
    try {
      const records = await fill(log, 16 * MIB);
      assert.equal(drops.length, 1, "the log stops dropping after a refusal");
      assert.equal(warnings.length, 1, warnings.join("; "));
      assert.match(warnings[0]!, /drop-behind stopped: .*errno 22/);
      assert.equal(readAll(log).length, records, "every record reads back");
    } finally {
      await log.close();
    }
  });

  test("a bad keep size is refused with its value", async () => {
    using dir = tempDir();
    await assert.rejects(
      PartitionLog.open(dir.path, {}, { onWarning: () => {}, dropBehindKeepBytes: -1 }),
      /dropBehindKeepBytes -1 must be a non-negative integer/,
    );
  });

  test("the engine drops through posix_fadvise and the data reads back whole", async () => {
    if (process.platform !== "linux") return;
    assert.notEqual(await cacheDropper(), undefined, "posix_fadvise is reachable on Linux");
    using dir = tempDir();
    const engine = await Engine.open(dir.path, {
      topicDefaults: { fsync: "always" },
      dropBehindKeepBytes: 0,
      onWarning: () => {},
    });
    try {
      await fillAndReadBack(engine);
    } finally {
      await engine.close();
    }
  });

  test("the engine drops unsynced logs through posix_fadvise; the data reads back", async () => {
    if (process.platform !== "linux") return;
    using dir = tempDir();
    const warnings: string[] = [];
    const engine = await Engine.open(dir.path, {
      topicDefaults: { fsync: "never" },
      dropBehindUnsynced: true,
      dropBehindKeepBytes: 0,
      onWarning: (message) => warnings.push(message),
    });
    try {
      await fillAndReadBack(engine);
      assert.deepEqual(warnings, [], "every hint was taken");
    } finally {
      await engine.close();
    }
  });
});

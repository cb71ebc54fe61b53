// Engine.alterTopicConfig: a live topic's config changed, applied to its open partition logs
// at once, persisted in the topic's metadata (so a reopen keeps it), and refused whole when a
// value is bad. Also the engine's fsync timing: the histogram every fdatasync feeds, and the
// slow-fsync report past slowFsyncMs.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Engine, encodeRecordBatch, isSluiceError } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";

const quiet = { onWarning: () => {}, retentionCheckIntervalMs: 3_600_000 };

function batchOf(bytes: number): Uint8Array {
  return encodeRecordBatch([{ value: new Uint8Array(bytes).fill(7) }], { timestamp: Date.now() });
}

describe("engine alterTopicConfig", () => {
  test("a lower retentionBytes applies to the live log and survives a reopen", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, quiet);
    try {
      await engine.createTopic("t", { partitions: 1, config: { segmentBytes: 1024 } });
      for (let i = 0; i < 20; i++) await engine.append("t", 0, batchOf(300));
      await engine.partition("t", 0).flush();
      assert.equal(await engine.applyRetention(), 0, "nothing deleted without a limit");
      const info = await engine.alterTopicConfig("t", { retentionBytes: 1024 });
      assert.equal(info.config.retentionBytes, 1024);
      assert.equal(engine.partition("t", 0).config.retentionBytes, 1024);
      assert.ok((await engine.applyRetention()) > 0, "segments past the new limit deleted");
      assert.ok(engine.partition("t", 0).logStartOffset > 0);
    } finally {
      await engine.close();
    }
    const reopened = await Engine.open(dir.path, quiet);
    try {
      assert.equal(reopened.describeTopic("t").config.retentionBytes, 1024);
      assert.equal(reopened.partition("t", 0).config.retentionBytes, 1024);
    } finally {
      await reopened.close();
    }
  });

  test("fsync never → always: acknowledged appends are then on disk", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, quiet);
    try {
      await engine.createTopic("t", { config: { fsync: "never" } });
      await engine.append("t", 0, batchOf(10));
      const log = engine.partition("t", 0);
      assert.equal(log.recoveryPoint, 0, "fsync never: nothing synced yet");
      await engine.alterTopicConfig("t", { fsync: "always" });
      const appended = await engine.append("t", 0, batchOf(10));
      assert.equal(log.recoveryPoint, appended.baseOffset + 1, "synced before the ack");
      await engine.alterTopicConfig("t", { fsync: { intervalMs: 50 } });
      assert.deepEqual(log.config.fsync, { intervalMs: 50 });
    } finally {
      await engine.close();
    }
  });

  test("a bad value, a fixed field or an unknown field changes nothing", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, quiet);
    try {
      await engine.createTopic("t", { config: { retentionMs: 60_000 } });
      const metadata = join(dir.path, "__meta", "topics", "t.json");
      const before = fs.readFileSync(metadata, "utf8");
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ retentionMs: -7 }, /retentionMs = -7/],
        [{ retentionMs: 1, segmentBytes: 10 }, /segmentBytes = 10/],
        [{ fsync: "sometimes" }, /fsync = sometimes/],
        [{ maxBatchBytes: 2 ** 31 }, /maxBatchBytes/],
        [{ indexIntervalBytes: 100 }, /indexIntervalBytes .*cannot be changed/],
        [{ colour: "blue" }, /colour .*is not a log config field/],
      ];
      for (const [changes, message] of cases) {
        await assert.rejects(engine.alterTopicConfig("t", changes), (error: unknown) => {
          assert.ok(isSluiceError(error, "INVALID_CONFIG"), String(error));
          assert.match(error.message, message);
          return true;
        });
      }
      assert.equal(engine.describeTopic("t").config.retentionMs, 60_000);
      assert.equal(engine.partition("t", 0).config.retentionMs, 60_000);
      assert.equal(fs.readFileSync(metadata, "utf8"), before);
      await assert.rejects(engine.alterTopicConfig("absent", { retentionMs: 1 }), (e: unknown) =>
        isSluiceError(e, "UNKNOWN_TOPIC"),
      );
    } finally {
      await engine.close();
    }
  });
});

describe("engine fsync timing", () => {
  test("every fdatasync is in the histogram; one at slowFsyncMs or more is reported", async () => {
    using dir = tempDir();
    // Each reading of the clock is 600 ms after the last: every timed fsync "takes" 600 ms.
    let clockMs = 0;
    const slow: { log: string; ms: number; slowFsyncMs: number }[] = [];
    const engine = await Engine.open(dir.path, {
      ...quiet,
      monotonicMs: () => (clockMs += 600),
      slowFsyncMs: 500,
      onSlowFsync: (event) => slow.push(event),
    });
    try {
      await engine.createTopic("t", { config: { fsync: "always" } });
      await engine.append("t", 0, batchOf(10));
      const histogram = engine.fsyncSeconds.snapshot();
      assert.ok(histogram.count >= 1);
      assert.equal(histogram.sumSeconds, histogram.count * 0.6);
      // 0.6 s falls in the (0.5, 1] bucket.
      const bucket = histogram.boundsSeconds.indexOf(1);
      assert.equal(histogram.counts[bucket], histogram.count);
      assert.deepEqual(slow[0], { log: "t-0", ms: 600, slowFsyncMs: 500 });
      assert.equal(slow.length, histogram.count);
    } finally {
      await engine.close();
    }
  });

  test("an fsync below slowFsyncMs is counted but not reported", async () => {
    using dir = tempDir();
    let clockMs = 0;
    const slow: unknown[] = [];
    const engine = await Engine.open(dir.path, {
      ...quiet,
      monotonicMs: () => (clockMs += 600),
      slowFsyncMs: 601,
      onSlowFsync: (event) => slow.push(event),
    });
    try {
      await engine.createTopic("t", { config: { fsync: "always" } });
      await engine.append("t", 0, batchOf(10));
      assert.ok(engine.fsyncSeconds.count >= 1);
      assert.deepEqual(slow, []);
    } finally {
      await engine.close();
    }
  });
});

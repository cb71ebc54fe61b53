// Many partitions: creating thousands lets other work run while it goes on, a create that fails
// half-way leaves no metadata and no directory behind (so the engine still restarts), the
// broker-wide limits refuse a topic naming the limit, and an untouched partition costs no
// write to open or close.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Engine, encodeRecordBatch, isSluiceError } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";
import { FaultyIO } from "./partition_log_helpers.ts";

const quiet = { onWarning: () => {} };

function partitionDirectories(dir: string, topic: string): string[] {
  return fs.readdirSync(dir).filter((entry) => new RegExp(`^${topic}-\\d+$`).test(entry));
}

describe("many partitions", () => {
  test("creating 3,000 partitions yields to other work while it runs", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, quiet);
    try {
      let turns = 0;
      let creating = true;
      const turn = () => {
        turns++;
        if (creating) setImmediate(turn);
      };
      setImmediate(turn);
      await engine.createTopic("wide", { partitions: 3000 });
      creating = false;
      assert.ok(turns > 1, `other work ran ${turns} times during the create`);
      assert.equal(engine.describeTopic("wide").partitions, 3000);
    } finally {
      await engine.close();
    }
  });

  test("deleting 1,000 partitions yields to other work while it runs", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, quiet);
    try {
      await engine.createTopic("wide", { partitions: 1000 });
      let lastTurnMs = performance.now();
      let longestGapMs = 0;
      let deleting = true;
      const turn = () => {
        const nowMs = performance.now();
        longestGapMs = Math.max(longestGapMs, nowMs - lastTurnMs);
        lastTurnMs = nowMs;
        if (deleting) setImmediate(turn);
      };
      setImmediate(turn);
      const startedMs = performance.now();
      await engine.deleteTopic("wide");
      deleting = false;
      const tookMs = performance.now() - startedMs;
      // Removing the 1,000 directories is most of the delete; done on the event loop, it would
      // be one long gap. Off it, no gap comes near a third of the whole.
      assert.ok(
        longestGapMs < tookMs / 3,
        `longest gap ${longestGapMs.toFixed(1)} ms of a ${tookMs.toFixed(1)} ms delete`,
      );
      assert.deepEqual(partitionDirectories(dir.path, "wide"), []);
    } finally {
      await engine.close();
    }
  });

  test("a create that fails half-way leaves nothing behind and the engine restarts", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    let partitionsMade = 0;
    io.onFileWrite = (path) => {
      if (!path.endsWith(".index")) return undefined;
      partitionsMade++;
      return partitionsMade > 500 ? { code: "ENOSPC" } : undefined;
    };
    const engine = await Engine.open(dir.path, { ...quiet, io });
    try {
      await assert.rejects(engine.createTopic("half", { partitions: 1000 }), (error: unknown) =>
        isSluiceError(error, "DISK_FULL"),
      );
      assert.deepEqual(engine.listTopics(), []);
      assert.deepEqual(partitionDirectories(dir.path, "half"), [], "no partition directory left");
      io.onFileWrite = undefined;
      await engine.createTopic("half", { partitions: 3 });
    } finally {
      await engine.close();
    }
    const again = await Engine.open(dir.path, quiet);
    try {
      assert.equal(again.describeTopic("half").partitions, 3);
    } finally {
      await again.close();
    }
  });

  test("topicsMax and partitionsMax refuse a topic, naming the limit", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, { ...quiet, topicsMax: 2, partitionsMax: 10 });
    try {
      await engine.createTopic("a", { partitions: 6 });
      await assert.rejects(engine.createTopic("b", { partitions: 5 }), (error: unknown) => {
        assert.ok(isSluiceError(error, "INVALID_CONFIG"));
        assert.match(error.message, /partitionsMax 10/);
        return true;
      });
      await engine.createTopic("b", { partitions: 4 });
      await assert.rejects(engine.createTopic("c", { partitions: 1 }), /topicsMax 2/);
      assert.deepEqual(partitionDirectories(dir.path, "c"), []);
    } finally {
      await engine.close();
    }
  });

  test("untouched partitions open and close without a write", async () => {
    using dir = tempDir();
    const first = await Engine.open(dir.path, quiet);
    await first.createTopic("idle", { partitions: 20 });
    await first.close();
    const io = new FaultyIO();
    const engine = await Engine.open(dir.path, { ...quiet, io });
    await engine.close();
    const partitionWrites = io.fileWrites.filter((path) => path.includes(`${"idle"}-`));
    assert.deepEqual(partitionWrites, [], "no file of an idle partition was written");
    assert.equal(io.syncCount, 0, "and nothing was fsynced");
    for (let partition = 0; partition < 20; partition++) {
      assert.ok(fs.existsSync(join(dir.path, `idle-${partition}`, ".clean-shutdown")));
    }
  });

  test("creates and deletes of one name, interleaved, run in call order", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, quiet);
    try {
      const batch = encodeRecordBatch([{ value: new TextEncoder().encode("v") }]);
      const first = engine.createTopic("x", { partitions: 200 });
      const removed = engine.deleteTopic("x");
      const second = engine.createTopic("x", { partitions: 2 });
      await Promise.all([first, removed, second]);
      assert.equal(engine.describeTopic("x").partitions, 2);
      assert.deepEqual(partitionDirectories(dir.path, "x").sort(), ["x-0", "x-1"]);
      assert.equal((await engine.append("x", 1, batch)).baseOffset, 0);
    } finally {
      await engine.close();
    }
  });
});

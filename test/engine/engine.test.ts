import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  Engine,
  encodeRecordBatch,
  isSluiceError,
  type SluiceErrorCode,
} from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";

function batchOf(count: number): Uint8Array {
  const records = Array.from({ length: count }, (_, i) => ({
    value: new TextEncoder().encode(`v${i}`),
  }));
  return encodeRecordBatch(records, { timestamp: 1_000 });
}

async function rejectsWith(action: () => unknown, code: SluiceErrorCode): Promise<void> {
  await assert.rejects(
    async () => action(),
    (error: unknown) => isSluiceError(error, code),
  );
}

const quiet = { onWarning: () => {} };

describe("engine topics", () => {
  test("creates, lists, describes and deletes topics", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, quiet);
    try {
      await engine.createTopic("orders", { partitions: 3, config: { fsync: "never" } });
      await engine.createTopic("audit");
      assert.deepEqual(
        engine
          .listTopics()
          .map((t) => t.name)
          .sort(),
        ["audit", "orders"],
      );
      assert.equal(engine.describeTopic("orders").partitions, 3);
      assert.equal(engine.describeTopic("orders").config.fsync, "never");
      assert.ok(fs.existsSync(join(dir.path, "orders-2")));
      await engine.deleteTopic("orders");
      assert.deepEqual(
        engine.listTopics().map((t) => t.name),
        ["audit"],
      );
      assert.ok(!fs.existsSync(join(dir.path, "orders-0")));
      await rejectsWith(() => engine.describeTopic("orders"), "UNKNOWN_TOPIC");
    } finally {
      await engine.close();
    }
  });

  test("topics, their config and their data survive a reopen", async () => {
    using dir = tempDir();
    const first = await Engine.open(dir.path, quiet);
    await first.createTopic("events", { partitions: 2, config: { segmentBytes: 64 * 1024 } });
    await first.append("events", 1, batchOf(5));
    await first.close();
    const second = await Engine.open(dir.path, quiet);
    try {
      const info = second.describeTopic("events");
      assert.equal(info.partitions, 2);
      assert.equal(info.config.segmentBytes, 64 * 1024);
      assert.equal(second.partition("events", 1).logEndOffset, 5);
      assert.equal(second.partition("events", 0).logEndOffset, 0);
      const appended = await second.append("events", 1, batchOf(2));
      assert.deepEqual([appended.baseOffset, appended.lastOffset], [5, 6]);
    } finally {
      await second.close();
    }
  });

  test("bad names, counts and configs are refused with the value named", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, quiet);
    try {
      for (const name of ["", "a/b", "..", "__internal", "x".repeat(250), "sp ace"]) {
        await rejectsWith(() => engine.createTopic(name), "INVALID_TOPIC");
      }
      await assert.rejects(
        () => engine.createTopic("t", { partitions: 0 }),
        (error: unknown) => isSluiceError(error, "INVALID_CONFIG") && /0/.test(error.message),
      );
      await rejectsWith(
        () => engine.createTopic("t", { config: { segmentBytes: -5 } }),
        "INVALID_CONFIG",
      );
      assert.deepEqual(engine.listTopics(), []);
      await engine.createTopic("t");
      await rejectsWith(() => engine.createTopic("t"), "TOPIC_EXISTS");
      await rejectsWith(() => engine.append("t", 1, batchOf(1)), "UNKNOWN_PARTITION");
      await rejectsWith(() => engine.append("nope", 0, batchOf(1)), "UNKNOWN_TOPIC");
    } finally {
      await engine.close();
    }
  });

  test("deleting a topic drops its committed offsets", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, quiet);
    try {
      await engine.createTopic("t");
      await engine.offsets.commit("g", [{ topic: "t", partition: 0, offset: 3 }]);
      assert.equal(engine.offsets.fetch("g", "t", 0)?.offset, 3);
      await engine.deleteTopic("t");
      assert.equal(engine.offsets.fetch("g", "t", 0), undefined);
    } finally {
      await engine.close();
    }
  });

  test("a data directory cannot be opened twice", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, quiet);
    try {
      await rejectsWith(() => Engine.open(dir.path, quiet), "IO_ERROR");
    } finally {
      await engine.close();
    }
    const again = await Engine.open(dir.path, quiet);
    await again.close();
  });

  test("leftover deleted partition directories are removed at open", async () => {
    using dir = tempDir();
    fs.mkdirSync(join(dir.path, "old-0.123.deleted"));
    fs.writeFileSync(join(dir.path, "old-0.123.deleted", "x.log"), "x");
    const engine = await Engine.open(dir.path, quiet);
    await engine.close();
    assert.ok(!fs.existsSync(join(dir.path, "old-0.123.deleted")));
  });

  test("unreadable topic metadata is reported and skipped, other topics open", async () => {
    using dir = tempDir();
    const first = await Engine.open(dir.path, quiet);
    await first.createTopic("good");
    await first.close();
    fs.writeFileSync(join(dir.path, "__meta", "topics", "bad.json"), "{not json");
    const warnings: string[] = [];
    const engine = await Engine.open(dir.path, { onWarning: (m) => warnings.push(m) });
    try {
      assert.deepEqual(
        engine.listTopics().map((t) => t.name),
        ["good"],
      );
      assert.ok(warnings.some((w) => w.includes("bad.json")));
    } finally {
      await engine.close();
    }
  });

  test("operations after close fail with LOG_CLOSED", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, quiet);
    await engine.createTopic("t");
    await engine.close();
    await rejectsWith(() => engine.createTopic("u"), "LOG_CLOSED");
    await rejectsWith(() => engine.read("t", 0, 0, 100), "LOG_CLOSED");
  });
});

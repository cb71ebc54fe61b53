// Topic names up to TOPIC_NAME_BYTES_MAX (249) work through the topic's whole life: its metadata
// file, partition directories, a restart and its deletion all stay within the file system's
// 255-byte name limit (temp and "deleted" names are short names of their own).

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Engine, encodeRecordBatch, TOPIC_NAME_BYTES_MAX } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";

const quiet = { onWarning: () => {} };

describe("topic names", () => {
  test("a 249-byte topic is created, written, reopened and deleted", async () => {
    using dir = tempDir();
    const name = "t".repeat(TOPIC_NAME_BYTES_MAX);
    let engine = await Engine.open(dir.path, quiet);
    try {
      await engine.createTopic(name, { partitions: 12 });
      const batch = encodeRecordBatch([{ value: new TextEncoder().encode("v") }]);
      assert.equal((await engine.append(name, 11, batch)).baseOffset, 0);
    } finally {
      await engine.close();
    }
    engine = await Engine.open(dir.path, quiet);
    try {
      assert.equal(engine.describeTopic(name).partitions, 12);
      assert.equal(engine.partition(name, 11).logEndOffset, 1);
      await engine.deleteTopic(name);
      assert.deepEqual(engine.listTopics(), []);
    } finally {
      await engine.close();
    }
    const left = fs.readdirSync(dir.path).filter((entry) => !entry.startsWith("__"));
    assert.deepEqual(
      left.filter((entry) => entry !== ".lock"),
      [],
      "nothing of the topic left",
    );
    assert.deepEqual(fs.readdirSync(join(dir.path, "__meta", "topics")), []);
  });
});

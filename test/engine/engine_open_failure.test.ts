// An Engine.open that fails part-way (here: a queue option refused after the offset store and
// the topics were opened) closes what it opened: no descriptor of the data directory is left
// for the collector (Bun fails the process when it collects an open file handle), and the
// directory opens again at once.

import assert from "node:assert/strict";
import fs from "node:fs";
import { test } from "node:test";
import { Engine } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";

/** Descriptors of this process that point into `dir` (Linux: /proc/self/fd). */
function descriptorsInto(dir: string): string[] {
  const real = fs.realpathSync(dir);
  const found: string[] = [];
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(real)) found.push(target);
    } catch {
      // Closed between the listing and the read.
    }
  }
  return found;
}

test("a failed open leaves no descriptor of the data directory behind", async (t) => {
  if (!fs.existsSync("/proc/self/fd")) {
    t.skip("needs /proc/self/fd (Linux) to list descriptors");
    return;
  }
  using dir = tempDir();
  const engine = await Engine.open(dir.path);
  await engine.createTopic("t", { partitions: 3 });
  await engine.close();
  assert.deepEqual(descriptorsInto(dir.path), []);
  await assert.rejects(Engine.open(dir.path, { ttlCheckMs: 2.5 }), /ttlCheckMs/);
  assert.deepEqual(descriptorsInto(dir.path), [], "descriptors left by the failed open");
  const again = await Engine.open(dir.path);
  assert.deepEqual(
    again.listTopics().map((topic) => topic.name),
    ["t"],
  );
  await again.close();
});

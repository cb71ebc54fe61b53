// What a partition log allocates per append and flush round when each append is awaited (the
// shape of a steady producer with lingerMs 0: one batch, one round): the round's state is the
// log's own and reused, an append makes one promise and no closure, and a round of fsync
// "never" whose write is done in place completes in place (no async function, promise or
// reaction of its own). Counted under Bun with
// JavaScriptCore's heap statistics (objects of each type in the heap): a collection between
// the two counts can only lower the difference, never raise it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PartitionLog } from "../../engine/partition_log.ts";
import { tempDir } from "../helpers.ts";
import { simpleBatch } from "./partition_log_helpers.ts";

const isBun = (process.versions as Record<string, string | undefined>)["bun"] !== undefined;
const ROUNDS = 300;

type Counts = Record<string, number>;

async function objectCounts(): Promise<() => Counts> {
  // A name in a variable: Deno never resolves Bun's module (the test is skipped there).
  const name = "bun:jsc";
  const jsc = (await import(name)) as { heapStats(): { objectTypeCounts: Counts } };
  return () => jsc.heapStats().objectTypeCounts;
}

async function appendRounds(log: PartitionLog, batch: Uint8Array): Promise<void> {
  for (let round = 0; round < ROUNDS; round++) await log.append(batch);
}

function perRound(before: Counts, after: Counts, type: string): number {
  return ((after[type] ?? 0) - (before[type] ?? 0)) / ROUNDS;
}

describe("partition log append and flush round", () => {
  test("allocate no closure per append and no list per round", { skip: !isBun }, async () => {
    using dir = tempDir("sluice-alloc-");
    const log = await PartitionLog.open(dir.path, { fsync: "never" });
    try {
      const batch = simpleBatch(1, { valueBytes: 1024 });
      const counts = await objectCounts();
      await appendRounds(log, batch);
      const before = counts();
      await appendRounds(log, batch);
      const after = counts();
      const scopes = perRound(before, after, "JSLexicalEnvironment");
      const functions = perRound(before, after, "Function");
      const asyncFrames = perRound(before, after, "AsyncFunctionGenerator");
      const promises = perRound(before, after, "Promise");
      const arrays = perRound(before, after, "Array");
      const objects = perRound(before, after, "Object");
      const detail =
        `scopes ${scopes}, functions ${functions}, async frames ${asyncFrames}, ` +
        `arrays ${arrays}, objects ${objects}, promises ${promises} per append`;
      // Left per append and round (measured 2 functions, 4 scopes, 0 async frames, 1 promise,
      // 1 array, 3.6 objects): the promise's two settle functions, the write's views in a
      // reused list, the result and its acknowledgement; the test's own await adds scopes.
      // The bounds leave a little room. Before the round was completed in place: 3 functions,
      // 5 scopes, 1 async frame, 3 promises; before the round state was reused, a round took
      // 12 functions, 20 scopes, 5 async frames, 7 arrays, 8.6 objects.
      assert.ok(functions <= 3, detail);
      assert.ok(scopes <= 5, detail);
      assert.ok(asyncFrames < 0.5, detail);
      assert.ok(promises <= 1.5, detail);
      assert.ok(arrays <= 2, detail);
      assert.ok(objects <= 5, detail);
    } finally {
      await log.close();
    }
  });
});

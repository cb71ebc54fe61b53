// A broken engine invariant is a bug, not an ordinary failure: the partition it happened in is
// fenced (LOG_FENCED from then on, with the violation as the cause), one clear line is logged,
// and a reopen recovers every acknowledged batch. The bug is simulated by making one Segment
// method break its own assertion, on the append path and on the flush path.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PartitionLog } from "../../engine/partition_log.ts";
import { Segment } from "../../engine/segment.ts";
import { assert as invariant, isInvariantError, isSluiceError } from "../../record/mod.ts";
import { tempDir } from "../helpers.ts";
import { simpleBatch } from "./partition_log_helpers.ts";

type MethodName = "append" | "publish";

/** Runs `body` while `Segment.prototype[name]` fails its invariant; restores it afterwards. */
async function withBrokenSegment(name: MethodName, body: () => Promise<void>): Promise<void> {
  const prototype = Segment.prototype as unknown as Record<MethodName, unknown>;
  const original = prototype[name];
  prototype[name] = function broken(): never {
    invariant(false, `simulated broken ${name}`);
  };
  try {
    await body();
  } finally {
    prototype[name] = original;
  }
}

function assertFenced(error: unknown, name: MethodName): void {
  assert.ok(isSluiceError(error, "LOG_FENCED"), `LOG_FENCED, not ${String(error)}`);
  assert.ok(isInvariantError(error.cause), "the violation is the cause");
  assert.match(error.message, new RegExp(`simulated broken ${name}`));
}

for (const name of ["append", "publish"] as const) {
  describe(`a broken invariant in Segment.${name}`, () => {
    test("fences the log, logs one line, and a reopen keeps what was acknowledged", async () => {
      using dir = tempDir();
      const warnings: string[] = [];
      const options = { onWarning: (message: string) => warnings.push(message) };
      const log = await PartitionLog.open(dir.path, { fsync: "always" }, options);
      await log.append(simpleBatch(2, { firstTag: 0 }));
      await withBrokenSegment(name, async () => {
        await assert.rejects(log.append(simpleBatch(1, { firstTag: 2 })), (error: unknown) => {
          assertFenced(error, name);
          return true;
        });
      });
      await assert.rejects(log.append(simpleBatch(1, { firstTag: 3 })), (error: unknown) => {
        assertFenced(error, name);
        return true;
      });
      const lines = warnings.filter((line) => line.includes("invariant violated"));
      assert.equal(lines.length, 1, `one line: ${JSON.stringify(warnings)}`);
      assert.match(lines[0]!, /the log is fenced/);
      await log.close();

      const reopened = await PartitionLog.open(dir.path, { fsync: "always" }, options);
      try {
        assert.ok(reopened.logEndOffset >= 2, "the acknowledged records survive");
        await reopened.append(simpleBatch(1, { firstTag: 4 }));
      } finally {
        await reopened.close();
      }
    });
  });
}

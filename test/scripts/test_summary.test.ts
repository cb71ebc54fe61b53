import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { summarize } from "../../scripts/test_summary.ts";

const BUN_LOG = ["(pass) a > b", " 12 pass", " 1 skip", " 2 fail", "Ran 15 tests"].join("\n");
const DENO_TAP = [
  "TAP version 14",
  "# Subtest: tidy",
  "    ok 1 - first",
  "    not ok 2 - second",
  "    ok 3 - third # SKIP no server",
  "    1..3",
  "not ok 1 - tidy",
  "ok 2 - top-level test",
  "1..2",
].join("\n");

describe("test summary", () => {
  test("counts Bun's summary lines", () => {
    assert.deepEqual(summarize(BUN_LOG, 1), { passed: 12, failed: 2, skipped: 1 });
  });

  test("counts Deno TAP leaves, not their parents", () => {
    assert.deepEqual(summarize(DENO_TAP, 1), { passed: 2, failed: 1, skipped: 1 });
  });

  test("adds both runtimes", () => {
    assert.deepEqual(summarize(`${BUN_LOG}\n${DENO_TAP}`, 1), {
      passed: 14,
      failed: 3,
      skipped: 2,
    });
  });

  test("a red run with no failed test (type-check, lint) counts one failure", () => {
    assert.deepEqual(summarize("error TS2322: nope", 2), { passed: 0, failed: 1, skipped: 0 });
  });
});

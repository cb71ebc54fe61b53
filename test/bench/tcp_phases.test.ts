// bench:tcp's --phases: which phases run, and the combinations it refuses.

import assert from "node:assert/strict";
import { test } from "node:test";
import { parsePhases } from "../../bench/tcp/phases.ts";

test("--phases names the phases to run, the latency runs alone included", () => {
  assert.deepEqual([...parsePhases("latency")], ["latency"]);
  assert.deepEqual([...parsePhases("publish,consume,small,latency")].length, 4);
  assert.deepEqual([...parsePhases("small")], ["small"]);
});

test("--phases refuses an unknown phase with its name, and consume without publish", () => {
  assert.throws(() => parsePhases("latency,warmup"), /warmup is not one of publish/);
  assert.throws(() => parsePhases(""), RangeError);
  assert.throws(() => parsePhases("consume,latency"), /consume reads what publish wrote/);
});

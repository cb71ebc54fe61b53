// The frame fuzzer (scripts/fuzz/) in CI: 20,000 seeded frames over every API, valid and
// damaged, against a server on port 0. The server must answer every probe or close the
// connection, never break an invariant or let an exception escape, shut down cleanly, and
// still serve a well-behaved client at the end. SLUICE_FUZZ_SEED picks another seed; a failure
// prints the seed and the cases, and `npm run fuzz -- --frames N --seed S` replays the run.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { runFuzz } from "../../scripts/fuzz/run.ts";

const FRAMES = 20_000;
const SEED = Number(process.env["SLUICE_FUZZ_SEED"] ?? 20_261_123);

describe("frame fuzzer", () => {
  test("20,000 fuzzed frames leave the server up and serving", async () => {
    const report = await runFuzz({ frames: FRAMES, seed: SEED, workers: 4 });
    const failures = report.failures.map(
      (failure) =>
        `${failure.kind}: ${failure.detail}\n` +
        failure.cases.map((c) => `  case ${c.index}: ${c.notes.join("; ")}`).join("\n"),
    );
    assert.deepEqual(failures, [], `seed ${SEED}`);
    assert.ok(report.frames >= FRAMES);
    // Most cases end with the probe answered: the fuzzer reaches the handlers, not only the
    // frame checks in front of them.
    assert.ok(report.outcomes.answered > report.cases / 3, JSON.stringify(report.outcomes));
    console.log(
      `fuzz: ${report.frames} frames, ${Math.round(report.framesPerSecond)} frames/s, seed ${SEED}`,
    );
  });
});

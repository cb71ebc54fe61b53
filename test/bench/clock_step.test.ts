// A run says when the wall clock stepped against the harness's monotonic clock: delayed
// deliveries and latencies that span the step are off by its size (bench/clock_step.ts).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CLOCK_STEP_NOTICE_MS, clockStepNotice, wallSkewMs } from "../../bench/clock_step.ts";

describe("clock steps", () => {
  test("the skew is the wall clock minus the monotonic epoch clock", () => {
    assert.equal(wallSkewMs(1_000_364, 1_000_000), 364);
    assert.equal(wallSkewMs(1_000_000, 1_000_250.5), -250.5);
    // Read now, both clocks agree to well within a step (they start from one instant).
    assert.ok(Math.abs(wallSkewMs()) < 1_000, `skew now ${wallSkewMs()} ms`);
  });

  test("a step of the notice size or more is reported, with its sign and size", () => {
    const forward = clockStepNotice("sluice", 364.4);
    assert.ok(forward?.startsWith("sluice: the wall clock stepped +364 ms"), String(forward));
    const back = clockStepNotice("rabbitmq", -CLOCK_STEP_NOTICE_MS);
    assert.ok(back?.includes("stepped −50 ms"), String(back));
  });

  test("drift below the notice size, and a result without the field, say nothing", () => {
    assert.equal(clockStepNotice("sluice", 0), undefined);
    assert.equal(clockStepNotice("sluice", CLOCK_STEP_NOTICE_MS - 0.5), undefined);
    assert.equal(clockStepNotice("sluice", -(CLOCK_STEP_NOTICE_MS - 0.5)), undefined);
    // Results written before the field existed read back as undefined.
    assert.equal(clockStepNotice("sluice", undefined as unknown as number), undefined);
  });
});

// The max-rate search's revisit rule (bench/rate_control.ts): once a run, a bisection that
// converged with time to spare judges its upper bound once more. A bound set in the run's
// costly first seconds (a cold start) is forgotten when the revisit passes and the ramp goes
// on; a bound that is the system's capacity fails again and the confirm holds the bisection's
// rate; a revisit never takes the confirm's seconds, and is not retried.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LatencyHistogram } from "../../bench/histogram.ts";
import {
  CONFIRM_SECONDS_MIN,
  describeRules,
  RATE_SEARCH_PRECISION,
  RateSearch,
  type RateSearchStep,
} from "../../bench/rate_control.ts";
import type { WindowSample } from "../../bench/sustain.ts";
import { mulberry32 } from "../helpers.ts";
import { runSearch, secondOf } from "./search_systems.ts";

const BOUND_MS = 100;

function newSearch(warmupSeconds: number): RateSearch {
  return new RateSearch({
    messageSize: 1024,
    subscriptions: 1,
    warmupSeconds,
    publishP99MsMax: BOUND_MS,
  });
}

/**
 * A system whose capacity is `coldCapacity` msg/s for its first `coldSeconds` and `capacity`
 * after (a cold start: fresh memory, code not yet compiled). Up to its capacity the p99 is
 * 10-30 ms, rising with the rate; above it the system still keeps up for a while but its p99
 * rises by 20 ms for every 10% of overload (failing the search's half bound at once, the whole
 * bound from 35% over), and from twice its capacity it falls behind. `slow(second)` adds 40 ms
 * to a second's p99 (a stalled second short of the whole bound).
 */
function coldSystem(
  coldSeconds: number,
  coldCapacity: number,
  capacity: number,
  slow: (second: number) => boolean = () => false,
): (rate: number) => WindowSample {
  let at = 0;
  let lag = 0;
  return (rate) => {
    at++;
    const limit = at <= coldSeconds ? coldCapacity : capacity;
    const load = rate / limit;
    const published = Math.min(rate, 2 * limit);
    lag = rate <= 2 * limit ? rate * 0.005 : lag + rate - published;
    const p99Ms =
      10 +
      20 * Math.min(1, load) ** 2 +
      200 * Math.max(0, load - 1) +
      (lag / published) * 1000 +
      (slow(at) ? 40 : 0);
    const publishHistogram = new LatencyHistogram();
    for (let i = 0; i < 100; i++) publishHistogram.recordMs(p99Ms);
    return secondOf(at, rate, published, lag, publishHistogram);
  };
}

const revisits = (search: RateSearch): RateSearchStep[] =>
  search.steps.filter((step) => step.revisit === true);

describe("max-rate search: the revisit rule", () => {
  test("a bound set in the run's cold first seconds is revisited, and the ramp goes on", () => {
    // 50k msg/s for 10 s, then 150k: the 80k ramp step (second 9) fails cold.
    const search = newSearch(60);
    const held = runSearch(search, coldSystem(10, 50_000, 150_000), 60);
    const [revisit, ...more] = revisits(search);
    assert.equal(more.length, 0, "one revisit a run");
    assert.ok(revisit !== undefined, search.steps.map((step) => step.next).join(" | "));
    assert.equal(revisit.state, "bisect");
    assert.equal(revisit.verdict.sustained, true);
    assert.equal(revisit.verdict.samples, 2, "judged as a bisect step");
    const before = search.steps[search.steps.indexOf(revisit) - 1]!;
    assert.match(before.next, /^within 10%, with time to spare: revisit \d+ msg\/s/);
    assert.match(revisit.next, /^ramp at/);
    // The model's p99 passes the half bound up to 10% over its capacity.
    const [least, most] = [150_000 / RATE_SEARCH_PRECISION ** 2, 150_000 * RATE_SEARCH_PRECISION];
    assert.ok(held >= least && held <= most, `held ${held}`);
    assert.equal(search.steps.at(-1)!.state, "confirm");
    assert.equal(search.steps.at(-1)!.verdict.sustained, true);
    assert.equal(search.revisitedSteps, 1);
  });

  test("without the time to spare there is no revisit: the confirm keeps its seconds", () => {
    // The same cold start in a 30 s warm-up converges at second 18: a revisit would leave the
    // confirm less than its 9 s and 8 s more.
    const search = newSearch(30);
    const held = runSearch(search, coldSystem(10, 50_000, 150_000), 30);
    assert.equal(revisits(search).length, 0);
    assert.ok(held < 80_000, `held ${held}`);
    const confirm = search.steps.find((step) => step.state === "confirm")!;
    assert.ok(confirm.verdict.samples >= search.confirmSeconds - 2, `${confirm.verdict.samples}`);
  });

  test("a bound that is the capacity fails its revisit, and the bisection's rate is held", () => {
    const search = newSearch(60);
    const held = runSearch(search, coldSystem(0, 100_000, 100_000), 60);
    const [revisit] = revisits(search);
    assert.ok(revisit !== undefined);
    assert.equal(revisit.verdict.sustained, false);
    assert.match(revisit.next, /^within 10%: confirm/);
    const [least, most] = [100_000 / RATE_SEARCH_PRECISION, 100_000 * RATE_SEARCH_PRECISION];
    assert.ok(held >= least && held <= most, `held ${held}`);
    assert.ok(held < revisit.rate);
    const confirm = search.steps.at(-1)!;
    assert.equal(confirm.state, "confirm");
    assert.equal(confirm.verdict.sustained, true);
    assert.ok(confirm.verdict.samples >= search.confirmSeconds - 2 + CONFIRM_SECONDS_MIN - 7);
  });

  test("a revisit that fails narrowly is not retried", () => {
    // Every second at 80k or more is slow (p99 over the search's half bound, under the whole
    // bound): the 80k ramp step fails, is retried (the retry rule), fails again; the bisection
    // converges below it and the revisit of 80k fails too, once.
    const search = newSearch(60);
    let rate = 0;
    const system = coldSystem(0, 150_000, 150_000, () => rate >= 80_000);
    const held = runSearch(
      search,
      (next) => {
        rate = next;
        return system(next);
      },
      60,
    );
    const at80k = search.steps.filter((step) => Math.round(step.rate) === 80_000);
    assert.deepEqual(
      at80k.map((step) => [step.retry === true, step.revisit === true, step.verdict.sustained]),
      [
        [false, false, false],
        [true, false, false],
        [false, true, false],
      ],
    );
    assert.ok(held < 80_000, `held ${held}`);
  });

  test("cold starts of any length: held rates reach the capacity, never above it", () => {
    // 40 seeded runs: a cold start of 4-14 s at 30-60% of a 120k msg/s capacity.
    for (let seed = 1; seed <= 40; seed++) {
      const random = mulberry32(seed);
      const coldSeconds = 4 + Math.floor(random() * 11);
      const coldCapacity = 120_000 * (0.3 + 0.3 * random());
      const search = newSearch(60);
      const held = runSearch(search, coldSystem(coldSeconds, coldCapacity, 120_000), 60);
      assert.ok(held <= 120_000 * RATE_SEARCH_PRECISION, `seed ${seed}: held ${held}`);
      assert.ok(held >= 120_000 / RATE_SEARCH_PRECISION ** 2, `seed ${seed}: held ${held}`);
    }
  });

  test("a revisit cut short by the end of warm-up is no longer reported as revisiting", () => {
    const search = newSearch(60);
    const system = coldSystem(10, 50_000, 150_000);
    let rate = search.rate;
    for (let s = 0; s < 60 && !search.revisiting; s++) rate = search.observe(system(rate));
    assert.equal(search.revisiting, true, "the run reached its revisit");
    search.finish();
    assert.equal(search.state, "hold");
    assert.equal(search.revisiting, false);
    assert.equal(search.revisitedSteps, 0, "the revisit never judged its seconds");
  });

  test("the rules name the revisit", () => {
    assert.match(describeRules(newSearch(60).rules), /revisit: .* \(at most 1 a run\)/);
  });
});

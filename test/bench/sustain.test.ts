// The sustained-rate test (bench/sustain.ts) and the max-rate search built on it
// (bench/rate_control.ts), against synthetic systems: one whose latency climbs at a rate it
// still "publishes" (the case the old one-second test let through), one that is flat, and one
// with a capacity the search must find inside the warm-up.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  CONFIRM_SECONDS_MIN,
  PRE_MEASURE_SECONDS,
  RATE_SEARCH_GROWTH,
  RATE_SEARCH_PRECISION,
  RATE_MIN,
  RateSearch,
} from "../../bench/rate_control.ts";
import { LatencyHistogram } from "../../bench/histogram.ts";
import {
  heldSecondsOf,
  judgeWindow,
  robustSlope,
  slope,
  type WindowSample,
} from "../../bench/sustain.ts";
import { mulberry32 } from "../helpers.ts";

const OPTIONS = { subscriptions: 1, publishP99MsMax: 100 };

/** n one-second samples at `rate`; `shape` gives each second's lag, p99 and backlog. */
function window(
  n: number,
  rate: number,
  shape: (second: number) => { lag: number; p99Ms: number; backlog: number; published?: number },
): WindowSample[] {
  return Array.from({ length: n }, (_, second) => {
    const { lag, p99Ms, backlog, published } = shape(second);
    const publishRate = published ?? rate;
    return {
      elapsedMs: (second + 1) * 1000,
      targetRate: rate,
      publishRate,
      consumeRate: publishRate,
      backlog,
      scheduleLag: lag,
      publishLatency: { p99Ms },
    };
  });
}

describe("the sustained test", () => {
  test("slope is the least-squares fit", () => {
    assert.equal(slope([]), 0);
    assert.equal(slope([[1, 5]]), 0);
    assert.equal(
      slope([
        [0, 1],
        [1, 3],
        [2, 5],
      ]),
      2,
    );
    assert.ok(
      Math.abs(
        slope([
          [0, 0],
          [1, 1],
          [2, 0],
          [3, 1],
        ]) - 0.2,
      ) < 1e-12,
    );
  });

  test("the robust slope sees a climb, not a spike", () => {
    const flatWithSpikes = Array.from(
      { length: 30 },
      (_, s) => [s, s === 20 || s === 27 ? 600 : 20] as const,
    );
    assert.equal(robustSlope(flatWithSpikes), 0);
    assert.ok(slope(flatWithSpikes) * 30 > 100, "least squares would call two spikes a climb");
    const climb = Array.from({ length: 30 }, (_, s) => [s, 20 + 3 * s] as const);
    assert.equal(robustSlope(climb), 3);
    assert.equal(robustSlope([[1, 1]]), 0);
  });

  test("a rate whose latency climbs from 100 ms to 2.7 s is rejected, though it publishes", () => {
    // The December 2026 failure: 174,481 msg/s "held", p99 climbing 100 ms → 2.7 s over 30 s
    // while the producers still published ≥ 95% of the rate each second.
    const rate = 174_481;
    const climbing = window(30, rate, (s) => ({
      lag: rate * (0.1 + (2.6 * s) / 29),
      p99Ms: 100 + (2600 * s) / 29,
      backlog: 5_000,
      published: rate * 0.97,
    }));
    const verdict = judgeWindow(climbing, OPTIONS);
    assert.equal(verdict.sustained, false);
    const reasons = verdict.reasons.join("; ");
    assert.match(reasons, /producers fell \d+ ms behind their schedule in 30 s/);
    assert.match(reasons, /publish p99 rose \d+ ms in 30 s/);
    assert.ok(verdict.lagGrowthSeconds > 2.5, `lag grew ${verdict.lagGrowthSeconds} s`);
    // Its first three seconds already fail: the search sees the climb before the bound.
    const early = judgeWindow(
      climbing.slice(0, 3).map((s) => ({ ...s, publishLatency: { p99Ms: 40 } })),
      OPTIONS,
    );
    assert.equal(early.sustained, false, early.reasons.join("; "));
    assert.match(early.reasons.join("; "), /behind their schedule in 3 s/);
  });

  test("a slow climb that never crosses the bound is still a climb", () => {
    const verdict = judgeWindow(
      window(30, 50_000, (s) => ({ lag: 500, p99Ms: 10 + (70 * s) / 29, backlog: 100 })),
      OPTIONS,
    );
    assert.equal(verdict.sustained, false);
    assert.match(verdict.reasons.join("; "), /publish p99 rose 7\d ms in 30 s/);
  });

  test("at a low rate, a lag wandering by whole messages is not a climb", () => {
    // At 10 msg/s one message of lag is 100 ms of schedule: more than a quarter of the bound.
    const lags = [0, 1, 1, 2, 1, 2];
    const wandering = window(6, 10, (s) => ({ lag: lags[s]!, p99Ms: 20, backlog: 0 }));
    assert.equal(judgeWindow(wandering, OPTIONS).sustained, true);
    const climbing = window(6, 10, (s) => ({ lag: s, p99Ms: 20, backlog: 0 }));
    const verdict = judgeWindow(climbing, OPTIONS);
    assert.equal(verdict.sustained, false);
    assert.match(verdict.reasons.join("; "), /producers fell \d+ ms behind their schedule/);
  });

  test("a flat rate with noise is sustained", () => {
    const random = mulberry32(0x5eed);
    const noise = (amplitude: number) => (random() - 0.5) * 2 * amplitude;
    const rate = 150_000;
    const verdict = judgeWindow(
      window(30, rate, () => ({
        lag: 1_500 + noise(800),
        p99Ms: 25 + noise(15),
        backlog: 3_000 + noise(2_500),
        published: rate + noise(3_000),
      })),
      OPTIONS,
    );
    assert.equal(verdict.sustained, true, verdict.reasons.join("; "));
    assert.ok(Math.abs(verdict.lagGrowthSeconds) < 0.01);
  });

  test("each failing rule names itself", () => {
    const verdict = judgeWindow(
      window(3, 1000, (s) => ({
        lag: 10,
        p99Ms: 250,
        backlog: 1000 + 500 * s,
        published: 500,
      })).map((s) => ({ ...s, consumeRate: 100 })),
      OPTIONS,
    );
    const reasons = verdict.reasons.join("; ");
    assert.match(reasons, /published 500 of 1000 msg\/s/);
    assert.match(reasons, /consumed 100 msg\/s/);
    assert.match(reasons, /publish p99 250\.0 ms > 100 ms/);
    assert.match(reasons, /backlog grew 1\.50 s of messages in 3 s/);
    assert.match(reasons, /backlog averaged 1\.50 s of messages/);
    assert.equal(
      judgeWindow(
        window(1, 1000, () => ({ lag: 5, p99Ms: 3, backlog: 0 })),
        OPTIONS,
      ).sustained,
      true,
    );
    assert.throws(() => judgeWindow([], OPTIONS), /at least one sample/);
  });

  test("a delayed workload's held messages are not a backlog; more than them is", () => {
    // Delays uniform over 0-10 s hold 5 s of messages (heldSecondsOf): a steady 5,000
    // messages at 1,000 msg/s is what the broker holds by design, 5,800 is 0.8 s behind.
    const held = heldSecondsOf({ deliveryDelayMsMax: 10_000 });
    assert.equal(held, 5);
    assert.equal(heldSecondsOf({}), 0);
    const steady = (backlog: number) => window(10, 1000, () => ({ lag: 5, p99Ms: 3, backlog }));
    const holding = judgeWindow(steady(5000), { ...OPTIONS, heldSeconds: held });
    assert.equal(holding.sustained, true, holding.reasons.join("; "));
    assert.equal(judgeWindow(steady(5000), OPTIONS).sustained, false, "without the allowance");
    const behind = judgeWindow(steady(5800), { ...OPTIONS, heldSeconds: held });
    assert.equal(behind.sustained, false);
    assert.match(
      behind.reasons.join("; "),
      /backlog averaged 0\.80 s of messages beyond the 5\.00 s/,
    );
  });

  test("a window's p99 is merged from its seconds' histograms when they are given", () => {
    // Two seconds: one of 99 fast and one slow message, one of 100 fast messages. Each second
    // alone has its slow tail; the window as a whole has a fast p99.
    const seconds = [new LatencyHistogram(), new LatencyHistogram()];
    for (let i = 0; i < 99; i++) seconds[0]!.recordMs(2);
    seconds[0]!.recordMs(500);
    for (let i = 0; i < 100; i++) seconds[1]!.recordMs(2);
    const flat = window(2, 1000, (s) => ({ lag: 5, p99Ms: s === 0 ? 500 : 2, backlog: 0 }));
    assert.equal(judgeWindow(flat, OPTIONS).publishP99Ms, 500, "the highest second's p99");
    const merged = flat.map((s, i) => ({ ...s, publishHistogram: seconds[i]! }));
    const verdict = judgeWindow(merged, OPTIONS);
    assert.ok(Math.abs(verdict.publishP99Ms - 2) < 0.01, `merged p99 ${verdict.publishP99Ms}`);
    assert.equal(verdict.sustained, true);
  });

  test("the measured phase's exact p99 is used when given", () => {
    const flat = window(5, 1000, () => ({ lag: 5, p99Ms: 3, backlog: 0 }));
    const verdict = judgeWindow(flat, { ...OPTIONS, windowP99Ms: 101 });
    assert.deepEqual(verdict.reasons, ["publish p99 101.0 ms > 100 ms"]);
  });
});

/**
 * A system that sustains `capacity` msg/s. Above it the producers publish `capacity`, fall
 * behind by the difference every second, and latency grows with the lag (Little's law).
 */
class SyntheticSystem {
  #lag = 0;
  #seconds = 0;
  readonly capacity: (second: number) => number;

  constructor(capacity: number | ((second: number) => number)) {
    this.capacity = typeof capacity === "number" ? () => capacity : capacity;
  }

  second(rate: number): WindowSample {
    this.#seconds++;
    const capacity = this.capacity(this.#seconds);
    const published = Math.min(rate, capacity);
    const base = rate * 0.005;
    this.#lag = Math.max(base, this.#lag + rate - published - (rate <= capacity ? this.#lag : 0));
    return {
      elapsedMs: this.#seconds * 1000,
      targetRate: rate,
      publishRate: published,
      consumeRate: published,
      backlog: published * 0.01,
      scheduleLag: this.#lag,
      publishLatency: { p99Ms: 5 + (this.#lag / published) * 1000 },
    };
  }
}

/**
 * Runs a search through `warmupSeconds` of a system; returns the search, the rate held, and
 * the rates of the last seconds (which must not change before the measured phase).
 */
function search(system: SyntheticSystem, warmupSeconds: number) {
  const rateSearch = new RateSearch({
    messageSize: 1024,
    subscriptions: 1,
    warmupSeconds,
    publishP99MsMax: 100,
  });
  let rate = rateSearch.rate;
  const rates: number[] = [];
  for (let second = 0; second < warmupSeconds; second++) {
    rate = rateSearch.observe(system.second(rate));
    rates.push(rate);
  }
  const held = rateSearch.finish();
  return { rateSearch, held, lastRates: rates.slice(-PRE_MEASURE_SECONDS) };
}

describe("max-rate search", () => {
  test("it finds the capacity inside a 20 s warm-up, then confirms it", () => {
    for (const capacity of [7_700, 37_000, 150_000, 174_000]) {
      const { rateSearch, held } = search(new SyntheticSystem(capacity), 20);
      assert.ok(held <= capacity, `capacity ${capacity}: held ${held}`);
      // The confirm takes 8 of the 20 s: the search gets within one doubling of the capacity.
      assert.ok(held * RATE_SEARCH_GROWTH >= capacity, `capacity ${capacity}: held only ${held}`);
      const last = rateSearch.steps.at(-1)!;
      assert.equal(last.state, "confirm");
      assert.equal(last.verdict.sustained, true, last.verdict.reasons.join("; "));
      // Less the settling after an overloaded step (up to 2 s here).
      const judged = CONFIRM_SECONDS_MIN - PRE_MEASURE_SECONDS - 2;
      assert.ok(last.verdict.samples >= judged, `${last.verdict.samples}`);
      const searched = rateSearch.steps
        .filter((step) => step.state !== "confirm")
        .every((step) => step.startSecond < 20 - CONFIRM_SECONDS_MIN);
      assert.ok(searched, "every search step starts before the confirm window");
    }
  });

  test("a 30 s warm-up gets within the search's precision", () => {
    for (const capacity of [12_345, 150_000]) {
      const { held } = search(new SyntheticSystem(capacity), 30);
      assert.ok(held <= capacity && held * RATE_SEARCH_PRECISION ** 2 >= capacity, `${held}`);
    }
  });

  test("it starts lower for large messages and halves below its first rate", () => {
    const rateSearch = new RateSearch({
      messageSize: 1_000_000,
      subscriptions: 1,
      warmupSeconds: 30,
      publishP99MsMax: 100,
    });
    assert.equal(rateSearch.rate, 10, "10 MB/s of 1 MB messages");
    const system = new SyntheticSystem(3);
    let rate = rateSearch.rate;
    for (let second = 0; second < 30; second++) rate = rateSearch.observe(system.second(rate));
    const held = rateSearch.finish();
    assert.ok(held <= 3 && held * 1.5 >= 3, `${held}`);
  });

  test("the measured rate is set before the last seconds of warm-up", () => {
    for (const capacity of [9_000, 150_000]) {
      const { held, lastRates } = search(new SyntheticSystem(capacity), 20);
      assert.deepEqual(lastRates, [held, held], "no change in the pre-measure seconds");
    }
  });

  test("a confirm failing early steps down and confirms the lower rate", () => {
    // Capacity falls from 100k to 60k msg/s after 21 s, while the 30 s warm-up confirms.
    const system = new SyntheticSystem((second) => (second <= 21 ? 100_000 : 60_000));
    const { rateSearch, held, lastRates } = search(system, 30);
    const confirms = rateSearch.steps.filter((step) => step.state === "confirm");
    assert.equal(confirms.length, 2, confirms.map((c) => c.next).join(" | "));
    assert.equal(confirms[0]!.verdict.sustained, false);
    assert.match(confirms[0]!.next, /confirm failed: .*; confirming it$/);
    assert.ok(confirms[1]!.rate < confirms[0]!.rate);
    // The second confirm fails on the lower capacity and is measured at what it published.
    assert.match(confirms[1]!.next, /confirm failed: .*capped at the 60000 msg\/s it published/);
    assert.ok(held < confirms[1]!.rate && held <= 60_000, `held ${held}`);
    assert.deepEqual(lastRates, [held, held], "set before the pre-measure seconds");
  });

  test("a rate that fails its confirm is bisected down, not halved, and the step says so", () => {
    // Capacity falls from 100k to 60k msg/s after 12 s (write-back starting, say): the ramp
    // passed 80k for one second, 160k failed, and the confirm of 80k fails.
    const system = new SyntheticSystem((second) => (second <= 12 ? 100_000 : 60_000));
    const { rateSearch, held } = search(system, 20);
    const confirm = rateSearch.steps.at(-1)!;
    assert.equal(confirm.state, "confirm");
    assert.equal(confirm.verdict.sustained, false);
    const passedBelow = rateSearch.steps
      .filter((step) => step.verdict.sustained && step.rate < confirm.rate)
      .map((step) => step.rate);
    // Halving to the 40k ramp pass would lose a third of what the system sustains.
    assert.equal(held, Math.sqrt(confirm.rate * Math.max(...passedBelow)));
    assert.ok(held <= 60_000 && held > 40_000, `held ${held}`);
    assert.match(confirm.next, /confirm failed: measure at \d+ msg\/s \(bisecting down/);
  });

  test("after an overloaded step, producers pause while consumers work off its backlog", () => {
    const rateSearch = new RateSearch({
      messageSize: 1024,
      subscriptions: 1,
      warmupSeconds: 30,
      publishP99MsMax: 100,
    });
    let second = 0;
    const sample = (rate: number, backlog: number): WindowSample => ({
      elapsedMs: ++second * 1000,
      targetRate: rate,
      publishRate: rate,
      consumeRate: rate,
      backlog,
      scheduleLag: rate * 0.005,
      publishLatency: { p99Ms: 5 },
    });
    // 10,000 msg/s passes (two settling seconds, one judged); 20,000 leaves consumers behind.
    let rate = rateSearch.rate;
    for (let i = 0; i < 3; i++) rate = rateSearch.observe(sample(rate, 0));
    assert.equal(rate, 20_000);
    rate = rateSearch.observe(sample(rate, 0));
    rate = rateSearch.observe(sample(rate, 200_000));
    const bisect = rateSearch.rate;
    assert.ok(bisect > 10_000 && bisect < 20_000, `bisect at ${bisect}`);
    // The backlog (14 s of messages at the new rate) shrinks: producers pause while it does.
    const answers = [150_000, 50_000, 1_000, 100].map((backlog) =>
      rateSearch.observe(sample(rate, backlog)),
    );
    assert.deepEqual(answers, [RATE_MIN, RATE_MIN, bisect, bisect]);
    // Then the step is judged on seconds of its own rate, without the backlog it inherited.
    const verdictAt = rateSearch.steps.length;
    rateSearch.observe(sample(bisect, 100));
    rateSearch.observe(sample(bisect, 100));
    assert.equal(rateSearch.steps[verdictAt]!.verdict.sustained, true);
  });

  test("a backlog that does not shrink is the rate's own: no pause", () => {
    const rateSearch = new RateSearch({
      messageSize: 1024,
      subscriptions: 1,
      warmupSeconds: 30,
      publishP99MsMax: 100,
    });
    const sample = (rate: number, backlog: number, second: number): WindowSample => ({
      elapsedMs: second * 1000,
      targetRate: rate,
      publishRate: rate,
      consumeRate: rate,
      backlog,
      scheduleLag: rate * 0.005,
      publishLatency: { p99Ms: 5 },
    });
    const first = rateSearch.observe(sample(10_000, 90_000, 1));
    assert.equal(first, RATE_MIN, "a large first backlog may be shrinking");
    assert.equal(rateSearch.observe(sample(10_000, 95_000, 2)), 10_000, "it grew: no pause");
  });

  test("a warm-up too short for a search confirms the first rate", () => {
    const rateSearch = new RateSearch({
      messageSize: 100,
      subscriptions: 1,
      warmupSeconds: 4,
      publishP99MsMax: 100,
    });
    assert.equal(rateSearch.state, "confirm");
    const system = new SyntheticSystem(1e6);
    for (let second = 0; second < 4; second++) rateSearch.observe(system.second(10_000));
    assert.equal(rateSearch.finish(), 10_000);
    assert.equal(rateSearch.state, "hold");
  });
});

// The max-rate search's headroom (bench/rate_control.ts): against synthetic systems whose
// publish latency rises with the rate, the search holds the highest rate whose p99 stays
// within half the bound (not one sitting at the bound, which a longer measured phase
// crosses); and the probe rule: a measured phase whose first seconds fail backs off a step,
// in the search alone and through a whole run of the harness.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { BenchConsumer, BenchProducer, Driver, MessageCallback } from "../../bench/driver.ts";
import {
  BACKOFF_RATIO,
  BACKOFFS_MAX,
  PROBE_SECONDS,
  RATE_SEARCH_PRECISION,
  REVISITS_MAX,
  RateSearch,
  SEARCH_P99_BOUND_SHARE,
  STANDING_SECONDS_MIN,
} from "../../bench/rate_control.ts";
import { renderReport } from "../../bench/report.ts";
import { buildResult } from "../../bench/result.ts";
import { runWorkload } from "../../bench/runner.ts";
import type { WindowSample } from "../../bench/sustain.ts";
import { parseWorkload } from "../../bench/workload.ts";
import { tempDir } from "../helpers.ts";

const BOUND_MS = 100;

/** p99 at `rate` of a system that publishes everything but queues more as the rate rises. */
function p99At(rate: number): number {
  return 10 + 100 * (rate / 100_000) ** 2;
}

/** One flat second at `rate` whose p99 follows `latency` (no lag growth, no backlog). */
function flatSecond(second: number, rate: number, latency: (rate: number) => number) {
  return {
    elapsedMs: second * 1000,
    targetRate: rate,
    publishRate: rate,
    consumeRate: rate,
    backlog: rate * 0.01,
    scheduleLag: rate * 0.005,
    publishLatency: { p99Ms: latency(rate) },
  } satisfies WindowSample;
}

function searchThrough(warmupSeconds: number, latency: (rate: number) => number) {
  const search = new RateSearch({
    messageSize: 1024,
    subscriptions: 1,
    warmupSeconds,
    publishP99MsMax: BOUND_MS,
  });
  let rate = search.rate;
  for (let second = 1; second <= warmupSeconds; second++) {
    rate = search.observe(flatSecond(second, rate, latency));
  }
  return { search, held: search.finish() };
}

/** A 30 s search of a system with p99 10 ms up to `rateMax` msg/s and 500 ms above. */
function finishedAt(rateMax: number): RateSearch {
  const { search } = searchThrough(30, (rate) => (rate <= rateMax ? 10 : 500));
  assert.equal(search.state, "hold");
  return search;
}

describe("max-rate search headroom", () => {
  test("with latency rising with rate, it holds a rate whose p99 is within half the bound", () => {
    const headroomMs = SEARCH_P99_BOUND_SHARE * BOUND_MS;
    assert.ok(headroomMs <= BOUND_MS / 2, `the headroom rule's bound is ${headroomMs} ms`);
    // p99 reaches 50 ms at 63,246 msg/s, 80 ms at 83,666 and the 100 ms bound at 94,868.
    const limit = 100_000 * Math.sqrt((headroomMs - 10) / 100);
    const { search, held } = searchThrough(30, p99At);
    assert.ok(p99At(held) <= headroomMs, `held ${held} msg/s at p99 ${p99At(held)} ms`);
    assert.ok(held * RATE_SEARCH_PRECISION ** 2 >= limit, `held only ${held} of ${limit}`);
    const failed = search.steps.filter((step) => !step.verdict.sustained);
    assert.ok(failed.length > 0, "a step above the headroom failed");
    for (const step of failed) {
      assert.match(step.verdict.reasons.join("; "), /publish p99 [\d.]+ ms > 50 ms/);
    }
    const confirm = search.steps.at(-1)!;
    assert.equal(confirm.state, "confirm");
    assert.equal(confirm.verdict.sustained, true);
  });

  test("a 20 s warm-up also stays within the headroom", () => {
    for (const scale of [0.2, 0.5, 1, 2, 3]) {
      const latency = (rate: number) => p99At(rate / scale);
      const { held } = searchThrough(20, latency);
      assert.ok(latency(held) <= BOUND_MS / 2, `${scale}: held ${held}`);
    }
  });

  test("the rules are named with their figures", () => {
    const { search } = searchThrough(20, p99At);
    assert.deepEqual(search.rules, {
      publishP99BoundMs: 100,
      searchP99BoundMs: 50,
      confirmSeconds: 8,
      probeSeconds: PROBE_SECONDS,
      probeP99BoundMs: 80,
      backoffRatio: BACKOFF_RATIO,
      backoffSettleSeconds: 2,
      backoffsMax: BACKOFFS_MAX,
      standingSecondsMin: STANDING_SECONDS_MIN,
      dirtySettleBytesMin: 64 * 1024 * 1024,
      retryP99BoundMs: 100,
      revisitsMax: REVISITS_MAX,
    });
  });
});

describe("the measured phase's probe", () => {
  const window = (rate: number, p99Ms: number) =>
    Array.from({ length: PROBE_SECONDS }, (_, i) => flatSecond(31 + i, rate, () => p99Ms));

  test("first seconds within the probe's bound measure on", () => {
    const search = finishedAt(40_000);
    const held = search.rate;
    assert.equal(search.probeMeasured(window(held, 70), { startSecond: 30 }), undefined);
    assert.equal(search.rate, held);
    assert.equal(search.steps.filter((step) => step.state === "backoff").length, 0);
  });

  test("failed first seconds back off a step, and the step says so", () => {
    const search = finishedAt(40_000);
    const held = search.rate;
    // p99 90 ms: under the 100 ms bound, over the probe's 80 ms.
    const lower = search.probeMeasured(window(held, 90), { startSecond: 30 });
    assert.equal(lower, held * BACKOFF_RATIO, "no sustained step within the backoff ratio");
    assert.equal(search.rate, lower);
    const step = search.steps.at(-1)!;
    assert.equal(step.state, "backoff");
    assert.equal(step.rate, held);
    assert.equal(step.startSecond, 30);
    assert.match(step.verdict.reasons.join("; "), /publish p99 90\.0 ms > 80 ms/);
    assert.match(step.next, /first 5 s failed: back off to \d+ msg\/s, settle 2 s/);
  });

  test("a backoff takes a standing step within the ratio, and stops after the last", () => {
    // 40k passes a ramp second, 80k fails; bisects pass 56.6k, 67.3k and 73.4k.
    const search = finishedAt(75_000);
    const held = search.rate;
    // Standing: sustained over STANDING_SECONDS_MIN judged seconds or more (not a ramp pass).
    const sustained = search.steps.filter(
      (s) => s.verdict.sustained && s.verdict.samples >= STANDING_SECONDS_MIN && s.rate < held,
    );
    const best = Math.max(...sustained.map((s) => s.rate));
    const rates: (number | undefined)[] = [];
    for (let i = 0; i <= BACKOFFS_MAX; i++) {
      rates.push(search.probeMeasured(window(search.rate, 500), { startSecond: 30 + i * 7 }));
    }
    assert.ok(best >= held * BACKOFF_RATIO, `a step sustained ${best} of ${held} msg/s`);
    assert.equal(rates[0], best);
    assert.ok(rates[1]! < rates[0]!);
    assert.equal(rates[BACKOFFS_MAX], undefined, "no backoff past BACKOFFS_MAX");
    const backoffs = search.steps.filter((step) => step.state === "backoff");
    assert.equal(backoffs.length, BACKOFFS_MAX);
  });

  test("the probe is refused before the search has finished", () => {
    const search = new RateSearch({
      messageSize: 1024,
      subscriptions: 1,
      warmupSeconds: 20,
      publishP99MsMax: BOUND_MS,
    });
    assert.throws(() => search.probeMeasured(window(10_000, 10), { startSecond: 0 }), /finished/);
  });
});

const RATE_WINDOW_MS = 2000;

/**
 * An in-memory system for a whole run: acknowledges after 2 ms, delivers at once. Once
 * warm-up is over, a send while the rate of the last 2 s is above 90% of the rate at the
 * end of warm-up is acknowledged only after 120 ms (over the bound): the rate the search
 * confirmed does not hold in the measured phase, and a step lower does.
 */
class DegradingDriver implements Driver {
  readonly name = "degrading";
  readonly #warmupMs: number;
  #consumers = new Map<string, MessageCallback[]>();
  #turn = 0;
  #sendTimes: number[] = [];
  #firstSendMs: number | undefined;
  threshold: number | undefined;

  constructor(warmupSeconds: number) {
    this.#warmupMs = warmupSeconds * 1000;
  }

  async initialize(): Promise<void> {}
  settings() {
    return { system: "in-memory, slower above 90% of the warm-up's rate once it is over" };
  }
  durability(): string {
    return "none: memory";
  }
  async createTopic(): Promise<void> {}
  async deleteTopic(): Promise<void> {}
  async close(): Promise<void> {}

  async createProducer(): Promise<BenchProducer> {
    return { sendAsync: (_key, payload) => this.#send(payload), close: async () => {} };
  }

  async createConsumer(
    _topic: string,
    subscription: string,
    onMessage: MessageCallback,
  ): Promise<BenchConsumer> {
    const list = this.#consumers.get(subscription) ?? [];
    list.push(onMessage);
    this.#consumers.set(subscription, list);
    return { close: async () => {} };
  }

  #latencyMs(now: number): number {
    this.#firstSendMs ??= now;
    this.#sendTimes.push(now);
    // Two seconds, so a catch-up burst after a stalled event loop is not read as a higher rate.
    while (this.#sendTimes[0]! <= now - RATE_WINDOW_MS) this.#sendTimes.shift();
    if (now - this.#firstSendMs < this.#warmupMs) return 2;
    this.threshold ??= (0.9 * this.#sendTimes.length * 1000) / RATE_WINDOW_MS;
    return (this.#sendTimes.length * 1000) / RATE_WINDOW_MS > this.threshold ? 120 : 2;
  }

  #send(payload: Uint8Array): Promise<void> {
    const delayMs = this.#latencyMs(performance.now());
    const copy = payload.slice();
    return new Promise((resolve) => {
      // tidy: allow-timeout the simulated system's acknowledgement delay, not a wait in the test
      setTimeout(() => {
        resolve();
        for (const consumers of this.#consumers.values()) {
          consumers[this.#turn++ % consumers.length]!(copy);
        }
      }, delayMs);
    });
  }
}

describe("a run whose confirmed rate does not hold", () => {
  test("the measured phase backs off a step and the lower rate is measured whole", async () => {
    const workload = parseWorkload(`
name: degrading
topics: 1
partitionsPerTopic: 1
messageSize: 10000
producersPerTopic: 1
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producerRate: 0
warmupDurationSeconds: 10
testDurationSeconds: 7
`);
    const driver = new DegradingDriver(10);
    const outcome = await runWorkload(driver, workload, { progress: () => {} });
    const steps = outcome.rateSearch!.steps;
    const backoffs = steps.filter((step) => step.state === "backoff");
    assert.ok(backoffs.length >= 1, steps.map((step) => step.next).join(" | "));
    assert.equal(backoffs[0]!.startSecond, 10, "probed at the start of the measured phase");
    const held = outcome.rateSearch!.heldRate;
    assert.ok(held < backoffs[0]!.rate, `held ${held}`);
    assert.ok(held <= driver.threshold!, `held ${held}, threshold ${driver.threshold}`);
    const measured = outcome.samples.filter((sample) => sample.phase === "measure");
    assert.equal(measured.length, 7, "the measured phase runs whole after the backoff");
    assert.ok(measured.every((sample) => sample.targetRate === held));
    assert.equal(outcome.sustain?.sustained, true, outcome.sustain?.reasons.join("; ") ?? "-");
    assert.ok(outcome.stats.publishMeasured.percentileMs(99) < 100, "the failed seconds left out");
    assert.equal(outcome.drained, true);
    assert.equal(outcome.stats.received, outcome.stats.acked);
    // The result and the report carry the backoff, the rules and what bound the run.
    using dir = tempDir();
    const result = buildResult({ driverName: driver.name, workload, outcome, dataDir: dir.path });
    assert.equal(result.sustained, true);
    assert.equal(result.publishRate.length, 7);
    assert.equal(result.rateSearch?.rules.probeSeconds, PROBE_SECONDS);
    // The retry rule's count is saved whether or not a step was retried.
    const retried = steps.filter((step) => step.retry === true).length;
    assert.equal(result.rateSearch?.retriedSteps, retried);
    assert.equal(typeof result.clientBound, "boolean");
    assert.match(result.boundBy, /client-bound/);
    const html = renderReport([result]);
    assert.match(html, /search rules/);
    assert.match(html, /headroom: search and confirm windows need publish p99 ≤ 50 ms/);
    // The probe's reasons may start with a keep-up failure (a loaded machine) before its p99.
    assert.match(html, /backoff [\d,]+ ✗ \([^)]*publish p99 [\d.]+ ms &gt; 80 ms[^)]*\) \[probe\]/);
    assert.match(html, /confirm [\d,]+ [✓✗].*? \[confirm, headroom\]/);
    assert.match(html, new RegExp(`measured at [\\d,]+ msg/s, ${retried} step\\(s\\) retried`));
    assert.match(html, /retry: a ramp or bisect step failing only the headroom/);
  });
});

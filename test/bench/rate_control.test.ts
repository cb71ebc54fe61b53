import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { describe, test } from "node:test";
import type { BenchProducer } from "../../bench/driver.ts";
import { LoadGenerator } from "../../bench/load_generator.ts";
import { KeySource, PayloadSource, readStamp } from "../../bench/payload.ts";
import {
  Pacer,
  RATE_SEARCH_PRECISION,
  type RateObservation,
  RateSearch,
} from "../../bench/rate_control.ts";
import { RunStats } from "../../bench/stats.ts";

/** Lets every pending promise callback run (no time passes on the simulated clock). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe("fixed-rate schedule", () => {
  test("a pacer releases messages at their intended times", () => {
    const pacer = new Pacer(1000, 100);
    assert.equal(pacer.due(99.9), 0);
    assert.equal(pacer.due(100), 1, "message 0 is due at the start");
    assert.equal(pacer.due(110.5), 11);
    assert.equal(pacer.next(), 100);
    assert.equal(pacer.next(), 101);
    assert.equal(pacer.due(110.5), 9);
    pacer.restart(10, 200);
    assert.equal(pacer.due(300), 2);
    assert.throws(() => pacer.restart(0, 0), /rate 0 msg\/s must be a positive number/);
  });

  test("a stall shows in latencies from intended send times (coordinated omission)", async () => {
    // 1,000 msg/s for one simulated second; the system acknowledges each send 0.5 ms after it
    // leaves, except that nothing is acknowledged from 200 to 300 ms. With at most 10 sends in
    // flight the producer is blocked for that stall, so the messages due meanwhile leave late.
    let clock = 0;
    const pending: { ackAt: number; sentAt: number; intendedAt: number; resolve: () => void }[] =
      [];
    const fromIntended: number[] = [];
    const fromSend: number[] = [];
    const producer: BenchProducer = {
      sendAsync: (_key, payload) =>
        new Promise<void>((resolve) => {
          const ackAt = clock + 0.5 < 200 || clock + 0.5 >= 300 ? clock + 0.5 : 300;
          pending.push({ ackAt, sentAt: clock, intendedAt: readStamp(payload), resolve });
        }),
      close: async () => {},
    };
    const stats = new RunStats(1);
    stats.setPhase("measure");
    const generator = new LoadGenerator({
      producers: [producer],
      payloads: new PayloadSource([new Uint8Array(16)]),
      keys: new KeySource("NO_KEY"),
      stats,
      ratePerSecond: 1000,
      inFlightMax: 10,
      now: () => clock,
    });
    generator.setRate(1000);
    for (let step = 0; step <= 10_000; step++) {
      clock = step / 10;
      for (const ack of pending.filter((p) => p.ackAt <= clock)) {
        fromIntended.push(clock - ack.intendedAt);
        fromSend.push(clock - ack.sentAt);
        ack.resolve();
      }
      pending.splice(0, pending.length, ...pending.filter((p) => p.ackAt > clock));
      await settle();
      generator.sendDue();
    }
    assert.equal(stats.dispatched, 1001, "the schedule catches up: no message is omitted");
    const slow = (latencies: number[]) => latencies.filter((ms) => ms > 10).length;
    // Every message due during the stall is slow when measured from its intended time...
    assert.ok(slow(fromIntended) >= 85 && slow(fromIntended) <= 100, `${slow(fromIntended)}`);
    // ...measured from its actual send, only the 10 caught in flight are.
    assert.equal(slow(fromSend), 10);
    // The harness's publish histogram is the corrected one.
    const corrected = stats.publish.interval;
    assert.equal(corrected.count, fromIntended.length);
    const sorted = fromIntended.sort((a, b) => a - b);
    const p95 = sorted[Math.ceil(sorted.length * 0.95) - 1]!;
    assert.ok(p95 > 40, `p95 from intended times ${p95}`);
    assert.ok(Math.abs(corrected.percentileMs(95) - p95) <= p95 * 0.002 + 0.01);
    assert.ok(Math.abs(corrected.maxMs - sorted.at(-1)!) < 0.1);
    assert.ok(Math.abs(corrected.maxMs - 100.5) < 1, `corrected max ${corrected.maxMs}`);
    // The publish delay reports how late the blocked sends left.
    assert.ok(stats.publishDelay.interval.maxMs > 85);
  });
});

/** A system that sustains `capacity` msg/s: above it, publishing lags and latency soars. */
function observe(targetRate: number, capacity: number): RateObservation {
  const publishRate = Math.min(targetRate, capacity);
  return {
    targetRate,
    publishRate,
    consumeRate: publishRate,
    backlog: 0,
    publishP99Ms: targetRate <= capacity ? 4 : 800,
  };
}

describe("max-rate search", () => {
  test("it ramps, bisects and holds within 10% below the sustainable rate", () => {
    for (const capacity of [3_700, 37_000, 1_234_567]) {
      const search = new RateSearch(1024, 1);
      for (let second = 0; second < 80 && search.state !== "hold"; second++) {
        search.observe(observe(search.rate, capacity));
      }
      assert.equal(search.state, "hold", `capacity ${capacity} converges`);
      assert.ok(search.rate <= capacity, `held ${search.rate} ≤ ${capacity}`);
      assert.ok(search.rate * RATE_SEARCH_PRECISION >= capacity, `held ${search.rate}`);
    }
  });

  test("it starts lower for large messages and halves below its first rate", () => {
    const search = new RateSearch(1_000_000, 1);
    assert.equal(search.rate, 10, "10 MB/s of 1 MB messages");
    for (let second = 0; second < 30 && search.state !== "hold"; second++) {
      search.observe(observe(search.rate, 3));
    }
    assert.ok(search.rate <= 3 && search.rate * RATE_SEARCH_PRECISION >= 2.5, `${search.rate}`);
  });

  test("warm-up ending mid-search holds the highest sustained rate", () => {
    const search = new RateSearch(100, 1);
    for (let second = 0; second < 4; second++) search.observe(observe(search.rate, 50_000));
    assert.equal(search.state, "ramp");
    assert.equal(search.rate, 40_000, "10,000 and 20,000 msg/s were sustained");
    assert.deepEqual(
      search.steps.map((step) => step.settling),
      [true, false, true, false],
      "each rate settles for a second before it is judged",
    );
    assert.equal(search.hold(), 20_000);
    assert.equal(search.observe(observe(1e9, 1)), 20_000, "held: observations change nothing");
  });

  test("an unsustained second names why", () => {
    const verdict = RateSearch.verdict(
      { targetRate: 1000, publishRate: 500, consumeRate: 100, backlog: 5000, publishP99Ms: 250 },
      1,
    );
    assert.match(verdict, /published 500 of 1000 msg\/s/);
    assert.match(verdict, /consumed 100 msg\/s/);
    assert.match(verdict, /backlog 5000/);
    assert.match(verdict, /publish p99 250\.0 ms/);
    assert.equal(RateSearch.verdict(observe(1000, 2000), 1), "");
  });
});

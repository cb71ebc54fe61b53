import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { describe, test } from "node:test";
import type { BenchProducer } from "../../bench/driver.ts";
import { LoadGenerator } from "../../bench/load_generator.ts";
import { LoadStats } from "../../bench/load_stats.ts";
import { KeySource, PayloadSource, readStamp } from "../../bench/payload.ts";
import { Pacer } from "../../bench/rate_control.ts";
import { waitFor } from "../helpers.ts";

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

  test("a rate change wakes a producer asleep until its old schedule's next message", async () => {
    const stats = new LoadStats();
    const producer: BenchProducer = { sendAsync: async () => {}, close: async () => {} };
    const generator = new LoadGenerator({
      producers: [producer],
      payloads: new PayloadSource([new Uint8Array(16)]),
      keys: new KeySource("NO_KEY"),
      stats,
      ratePerSecond: 0.1,
      inFlightMax: 10,
    });
    generator.start();
    try {
      // At 0.1 msg/s the loop sleeps 10 s after the first message; the new rate must not wait.
      await waitFor(() => stats.counters.dispatched === 1, "the first message", 3000);
      generator.setRate(1000);
      await waitFor(() => stats.counters.dispatched >= 20, "sends at the new rate", 3000);
    } finally {
      generator.stop();
    }
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
    const stats = new LoadStats();
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
    assert.equal(stats.counters.dispatched, 1001, "the schedule catches up: none is omitted");
    assert.equal(generator.scheduled(), 1001, "every due message counts as scheduled");
    const slow = (latencies: number[]) => latencies.filter((ms) => ms > 10).length;
    // Every message due during the stall is slow when measured from its intended time...
    assert.ok(slow(fromIntended) >= 85 && slow(fromIntended) <= 100, `${slow(fromIntended)}`);
    // ...measured from its actual send, only the 10 caught in flight are.
    assert.equal(slow(fromSend), 10);
    // The harness's publish histogram is the corrected one.
    const corrected = stats.publish;
    assert.equal(corrected.count, fromIntended.length);
    const sorted = fromIntended.sort((a, b) => a - b);
    const p95 = sorted[Math.ceil(sorted.length * 0.95) - 1]!;
    assert.ok(p95 > 40, `p95 from intended times ${p95}`);
    assert.ok(Math.abs(corrected.percentileMs(95) - p95) <= p95 * 0.002 + 0.01);
    assert.ok(Math.abs(corrected.maxMs - sorted.at(-1)!) < 0.1);
    assert.ok(Math.abs(corrected.maxMs - 100.5) < 1, `corrected max ${corrected.maxMs}`);
    // The publish delay reports how late the blocked sends left.
    assert.ok(stats.publishDelay.maxMs > 85);
  });
});

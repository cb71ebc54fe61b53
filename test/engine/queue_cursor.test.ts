// The queue cursor alone: its ring grows and keeps the window, its lock FIFO stays bounded
// however many acquisitions pass through it, its deadline epoch moves without losing a lock,
// and its memory per in-flight record is measured (printed, not asserted beyond the target).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ACKED,
  type AcquiredRange,
  AVAILABLE,
  type OffsetRun,
  QueueCursor,
} from "../../engine/queue_cursor.ts";
import { mulberry32 } from "../helpers.ts";

const T0 = 1_700_000_000_000;

function cursor(maxInFlight: number, lockMs = 1_000, deliveryLimit = 5) {
  const unacked = new Uint32Array(8);
  return {
    cursor: new QueueCursor(0, 0, { maxInFlight, deliveryLimit, lockMs }, unacked),
    unacked,
  };
}

function never(): boolean {
  throw new Error("no record is waiting");
}

describe("queue cursor", () => {
  test("the ring grows to maxInFlight and keeps every record's state", () => {
    const { cursor: c, unacked } = cursor(1000);
    const random = mulberry32(7);
    let offset = 0;
    while (c.room > 0) {
      const count = Math.min(c.room, 1 + Math.floor(random() * 40));
      const range = c.acquireNew(count, 1 + (offset % 3), T0);
      assert.deepEqual([range.first, range.last], [offset, offset + count - 1]);
      offset += count;
    }
    assert.equal(c.next, 1000);
    assert.equal(unacked[1]! + unacked[2]! + unacked[3]!, 1000);
    // Accept every third record, release the others held by owner 2.
    const limit: OffsetRun[] = [];
    for (let at = 0; at < 1000; at++) {
      if (at % 3 === 0) c.accept(at, at);
      else if (1 + (at % 3) === 2) c.release(at, at, limit);
    }
    assert.equal(c.floor, 1, "offset 0 accepted; 1 released");
    assert.equal(c.stateAt(0), undefined);
    assert.equal(c.stateAt(1), AVAILABLE);
    assert.equal(c.stateAt(3), ACKED);
    c.checkInvariants();
    assert.deepEqual(limit, []);
  });

  test("released records are served oldest-released first, as offset-ordered runs", () => {
    const { cursor: c } = cursor(100);
    c.acquireNew(10, 1, T0);
    const limit: OffsetRun[] = [];
    c.release(7, 7, limit);
    c.release(2, 4, limit);
    const out: AcquiredRange[] = [];
    const taken = c.acquireReady({ budget: 2, owner: 2, nowMs: T0 }, () => true, out);
    assert.equal(taken, 2);
    assert.deepEqual(out, [
      { first: 2, last: 2, deliveries: 2, redelivered: true },
      { first: 7, last: 7, deliveries: 2, redelivered: true },
    ]);
    const refused: AcquiredRange[] = [];
    assert.equal(
      c.acquireReady({ budget: 5, owner: 2, nowMs: T0 }, () => false, refused),
      0,
    );
    assert.equal(c.availableCount, 2, "a refused admit leaves the FIFO as it was");
    c.checkInvariants();
  });

  test("the FIFO of given-back records grows past its first size and keeps its order", () => {
    const { cursor: c } = cursor(4_096);
    c.acquireNew(4_096, 1, T0);
    const limit: OffsetRun[] = [];
    // Wrap the small FIFO first: give back 40, take 30 back, so its head is not at index 0.
    for (let at = 0; at < 40; at++) c.release(at, at, limit);
    const first: AcquiredRange[] = [];
    assert.equal(
      c.acquireReady({ budget: 30, owner: 2, nowMs: T0 }, () => true, first),
      30,
    );
    // Then give back records in a scattered order, many more than the FIFO's first size.
    const order: number[] = [];
    for (let at = 4_095; at >= 100; at -= 7) order.push(at);
    for (let at = 101; at < 4_000; at += 7) order.push(at);
    for (const at of order) c.release(at, at, limit);
    assert.equal(c.availableCount, 10 + order.length);
    c.checkInvariants();
    const expected = [...Array.from({ length: 10 }, (_, i) => 30 + i), ...order];
    assert.deepEqual([...c.availableOffsets()], expected, "given-back order, oldest first");
    // One fetch takes them all (its ranges come in offset order, as a fetch answers).
    const out: AcquiredRange[] = [];
    const taken = c.acquireReady({ budget: 100_000, owner: 3, nowMs: T0 }, () => true, out);
    assert.equal(taken, expected.length);
    const offsets = out.flatMap((range) =>
      Array.from({ length: range.last - range.first + 1 }, (_, i) => range.first + i),
    );
    assert.deepEqual(
      offsets,
      [...expected].sort((x, y) => x - y),
    );
    assert.equal(c.availableCount, 0);
    assert.deepEqual(limit, []);
    c.checkInvariants();
  });

  test("records acquired before a failing read keep their locks and expire", () => {
    const { cursor: c, unacked } = cursor(100);
    c.acquireNew(5, 1, T0);
    c.release(0, 4, []);
    const out: AcquiredRange[] = [];
    let admitted = 0;
    const admit = () => {
      if (admitted++ === 2) throw new Error("a damaged batch");
      return true;
    };
    assert.throws(() => c.acquireReady({ budget: 5, owner: 2, nowMs: T0 }, admit, out));
    assert.deepEqual(out, [{ first: 0, last: 1, deliveries: 2, redelivered: true }]);
    assert.equal(unacked[2], 2);
    assert.equal(c.expire(T0 + 1_000, []), 2, "their locks run out like any other");
    c.checkInvariants();
  });

  test("the lock FIFO stays bounded over a million single-record acquisitions", () => {
    const { cursor: c } = cursor(64);
    let offset = 0;
    for (let i = 0; i < 1_000_000; i++) {
      c.acquireNew(1, 1, T0 + i);
      c.accept(offset, offset);
      offset++;
    }
    assert.equal(c.floor, 1_000_000);
    assert.ok(c.memory.lockEntries <= 2 * c.memory.windowSlots, `${c.memory.lockEntries}`);
    assert.equal(c.acquireReady({ budget: 1, owner: 1, nowMs: T0 }, never, []), 0);
  });

  test("the deadline epoch moves after 2^31 ms without ending a lock early or late", () => {
    const { cursor: c } = cursor(100, 60_000);
    c.acquireNew(1, 1, T0);
    const late = T0 + 2 ** 31 - 10;
    const limit: OffsetRun[] = [];
    assert.equal(c.expire(late, limit), 1, "the first lock ran out long ago");
    c.acquireNew(1, 1, late);
    c.acquireNew(1, 2, late + 15); // moves the epoch: 2^31 + 5 ms past it
    assert.equal(c.checkHeld(1, 1, 1, late + 59_999), undefined, "still held");
    assert.equal(c.expire(late + 59_999, limit), 0);
    assert.equal(c.expire(late + 60_000, limit), 1, "ends exactly lockMs after acquisition");
    assert.equal(c.checkHeld(1, 1, 1, late + 60_000)?.code, "LOCK_EXPIRED");
    assert.equal(c.checkHeld(2, 2, 2, late + 60_000), undefined);
    c.checkInvariants();
  });

  test("memory per in-flight record, measured in a full window under churn (printed)", () => {
    const rows: string[] = [];
    for (const maxInFlight of [2_000, 100_000]) {
      for (const perFetch of [1, 10, 100]) {
        const { cursor: c } = cursor(maxInFlight);
        while (c.room > 0) c.acquireNew(Math.min(perFetch, c.room), 1, T0);
        // Steady state: the oldest range is accepted and a new one acquired, for three windows.
        for (let done = 0; done < 3 * maxInFlight; done += perFetch) {
          c.accept(c.floor, c.floor + perFetch - 1);
          c.acquireNew(perFetch, 1, T0);
        }
        c.checkInvariants();
        const { bytes, windowSlots, lockEntries } = c.memory;
        const perRecord = bytes / maxInFlight;
        rows.push(
          `maxInFlight ${maxInFlight}, ${perFetch} per fetch: ${bytes} B = ` +
            `${perRecord.toFixed(1)} B per in-flight record (${windowSlots} slots, ` +
            `${(bytes / windowSlots).toFixed(1)} B per slot, ${lockEntries} lock entries)`,
        );
        // The target (reference/queues.md 5.4): at most 16 B per in-flight record.
        if (perFetch >= 10) assert.ok(perRecord <= 16, rows.at(-1) ?? "");
      }
    }
    console.log(`queue cursor memory:\n  ${rows.join("\n  ")}`);
  });
});

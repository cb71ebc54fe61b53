// CoalescedSync: calls made while an fdatasync runs share one queued behind it, which starts
// after the running one ends (so it covers bytes written before those calls); failures reach
// only the callers of the failed sync.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CoalescedSync } from "../../engine/coalesced_sync.ts";

type Pending = { resolve: () => void; reject: (error: Error) => void };

function controlledSync(): { coalesced: CoalescedSync; pending: Pending[] } {
  const pending: Pending[] = [];
  const coalesced = new CoalescedSync(
    () => new Promise<void>((resolve, reject) => pending.push({ resolve, reject })),
  );
  return { coalesced, pending };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("coalesced sync", () => {
  test("calls during a running sync share one queued sync that starts after it", async () => {
    const { coalesced, pending } = controlledSync();
    const first = coalesced.sync();
    const second = coalesced.sync();
    const third = coalesced.sync();
    assert.equal(second, third, "one queued sync for every call made meanwhile");
    assert.notEqual(first, second, "a call during a sync is not covered by it");
    assert.equal(pending.length, 1, "nothing queued starts while one runs");
    pending[0]!.resolve();
    await first;
    await turn();
    assert.equal(pending.length, 2, "the queued sync started once the first ended");
    pending[1]!.resolve();
    await Promise.all([second, third]);
    assert.equal(coalesced.started, 2);
    const later = coalesced.sync();
    assert.equal(pending.length, 3, "with none running, a call starts its own at once");
    pending[2]!.resolve();
    await later;
  });

  test("a failed sync rejects its callers only; the queued one still runs", async () => {
    const { coalesced, pending } = controlledSync();
    const first = coalesced.sync();
    const second = coalesced.sync();
    pending[0]!.reject(new Error("EIO"));
    await assert.rejects(first, /EIO/);
    await turn();
    pending[1]!.resolve();
    await second;
  });
});

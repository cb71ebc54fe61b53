// Queue state on a real full disk (a tiny tmpfs): an ack whose state write hits ENOSPC fails
// with the retriable DISK_FULL and fences nothing; the queue keeps serving, acks work again once
// space is freed, the deltas the failed write carried are written then, and after a restart
// every acknowledged accept holds. A failed fdatasync or another write error still fences (see
// queue_durability.test.ts).

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { isSluiceError } from "../../engine/mod.ts";
import { fillUp, mountTinyTmpfs, tmpfsUnavailable, unmount } from "../tmpfs.ts";
import {
  acksFor,
  Clock,
  type Delivery,
  deliveriesOf,
  openEngine,
  publish,
} from "./queue_helpers.ts";

const RECORDS = 400;

async function outcomeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "ok",
    (error: unknown) => (isSluiceError(error) ? error.code : String(error)),
  );
}

describe("queue state on a real full disk (tmpfs of 512 KiB)", () => {
  const skip = tmpfsUnavailable();

  test("an ack on a full disk gets DISK_FULL, nothing is fenced, and it holds once freed", {
    skip,
  }, async () => {
    const mount = mountTinyTmpfs(512 * 1024);
    if ("reason" in mount) assert.fail(mount.reason);
    const dir = join(mount.path, "data");
    const filler = join(mount.path, "filler");
    const clock = new Clock();
    try {
      const { engine } = await openEngine(dir, clock);
      await engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
      await engine.declareQueue("q", { topic: "t", fsync: "always" });
      const values = Array.from({ length: RECORDS }, (_, i) => `v${i}`);
      await publish(engine, "t", 0, values);
      const member = engine.joinQueue("q");
      const held = deliveriesOf(engine.fetchQueue("q", member, { maxRecords: RECORDS }));
      assert.equal(held.length, RECORDS);
      await engine.flush();
      fillUp(filler);
      // The state file's last page may still hold a few frames: ack one record at a time
      // until a write needs a new page.
      const accepted: Delivery[] = [];
      let failed: Delivery | undefined;
      for (const delivery of held) {
        const outcome = await outcomeOf(
          engine.ackQueue("q", member, acksFor([delivery], "accept")),
        );
        if (outcome === "ok") {
          accepted.push(delivery);
          continue;
        }
        assert.equal(outcome, "DISK_FULL", "a full disk is DISK_FULL, never LOG_FENCED");
        failed = delivery;
        break;
      }
      assert.ok(failed !== undefined, `the disk filled up (${accepted.length} acks fitted)`);
      const rest = held.filter((d) => d !== failed && !accepted.includes(d));
      // The ack that got DISK_FULL stays applied in memory: resending it is refused.
      const resent = await outcomeOf(engine.ackQueue("q", member, acksFor([failed], "accept")));
      assert.ok(["INVALID_RECORD_STATE", "LOCK_EXPIRED"].includes(resent), `resent: ${resent}`);
      // Nothing is fenced: the queue still answers, and a second ack gets DISK_FULL or works.
      engine.fetchQueue("q", member);
      const again = await outcomeOf(engine.ackQueue("q", member, acksFor([rest[0]!], "accept")));
      assert.ok(["ok", "DISK_FULL"].includes(again), `an ack on a full disk: ${again}`);
      const second = rest.shift()!;
      fs.rmSync(filler);
      await engine.ackQueue("q", member, acksFor([rest[0]!], "accept"));
      const last = rest.shift()!;
      assert.equal(engine.queue("q").stateLog.fenced, undefined, "the state log is not fenced");
      await engine.close();

      const reopened = await openEngine(dir, clock);
      try {
        const redelivered = deliveriesOf(
          reopened.engine.fetchQueue("q", reopened.engine.joinQueue("q"), { maxRecords: RECORDS }),
        );
        const back = new Set(redelivered.map((d) => d.offset));
        for (const done of [...accepted, last]) {
          assert.ok(!back.has(done.offset), `acknowledged accept of ${done.offset} holds`);
        }
        // The deltas of the failed writes were kept and written once space was freed.
        assert.ok(!back.has(failed.offset), "the accept that got DISK_FULL was written later");
        assert.ok(!back.has(second.offset), "so was the second one");
        assert.deepEqual(
          [...back].sort((a, b) => a - b),
          rest.map((d) => d.offset),
        );
        reopened.engine.queue("q").cursor(0).checkInvariants();
      } finally {
        await reopened.engine.close();
      }
    } finally {
      unmount(mount.path);
    }
  });
});

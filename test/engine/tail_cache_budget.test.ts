// The tail-cache budget (engine/tail_cache_budget.ts): the in-memory tails of every log sharing
// a budget stay within it once written, the logs appended to least recently give their written
// chunks back first, reads after that are the same bytes (from the file), and sealed or closed
// segments give back what they held.

import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, test } from "node:test";
import {
  Engine,
  PartitionLog,
  TAIL_CACHE_TOTAL_BYTES_MIN,
  TailCacheBudget,
} from "../../engine/mod.ts";
import { SHED_MISSES_MAX, type TailCacheHolder } from "../../engine/tail_cache_budget.ts";
import { WRITE_CHUNK_BYTES } from "../../engine/segment.ts";
import { tempDir } from "../helpers.ts";
import { CountingLease, readAll, simpleBatch } from "./partition_log_helpers.ts";

const MIB = 1024 * 1024;

function openLog(
  dir: string,
  budget: TailCacheBudget,
  config: { segmentBytes?: number; mapSegments?: boolean } = {},
): Promise<PartitionLog> {
  const { mapSegments, ...logConfig } = config;
  return PartitionLog.open(
    dir,
    { fsync: "never", ...logConfig },
    {
      onWarning: () => {},
      tailCacheBytes: 8 * MIB,
      tailCacheBudget: budget,
      ...(mapSegments === undefined ? {} : { mapSegments }),
    },
  );
}

/** Every batch of the log from offset 0, their bytes joined in order (the bytes a reader gets). */
function rawBytes(log: PartitionLog): Uint8Array {
  const views: Uint8Array[] = [];
  let offset = 0;
  while (offset < log.highWatermark) {
    const read = log.read(offset, MIB);
    assert.ok(read.nextOffset > offset, `the read at ${offset} moves on`);
    // Copied at once: a view of a pooled chunk is never reused, but the test holds no view.
    for (const view of read.views) views.push(view.slice());
    offset = read.nextOffset;
  }
  return Buffer.concat(views);
}

/** A holder that gives back up to `sheddable` bytes when asked (the written part of its chunks). */
class FakeHolder implements TailCacheHolder {
  asked = 0;
  sheddable: number;
  #budget: TailCacheBudget;
  constructor(budget: TailCacheBudget, sheddable: number) {
    this.#budget = budget;
    this.sheddable = sheddable;
  }
  shedTailCache(bytes: number): void {
    this.asked++;
    const shed = Math.min(this.sheddable, Math.max(bytes, MIB));
    if (shed === 0) return;
    this.sheddable -= shed;
    this.#budget.release(this, shed);
  }
}

describe("tail-cache budget, by itself", () => {
  test("the holder appended to least recently is asked first, the taker never", () => {
    const budget = new TailCacheBudget(5 * MIB);
    const [a, b, c] = [0, 1, 2].map(() => new FakeHolder(budget, 2 * MIB));
    budget.take(a!, 2 * MIB);
    budget.take(b!, 2 * MIB);
    budget.touch(a!);
    budget.take(c!, 2 * MIB);
    assert.deepEqual([a!.asked, b!.asked, c!.asked], [0, 1, 0], "b was appended to least recently");
    assert.equal(budget.heldBytes, 5 * MIB);
    assert.equal(budget.heldBy(b!), MIB);
    assert.equal(budget.holderCount, 3);
  });

  test("a walk stops after SHED_MISSES_MAX holders in a row with nothing written", () => {
    const budget = new TailCacheBudget(8 * MIB);
    const stuck = Array.from({ length: 40 }, () => new FakeHolder(budget, 0));
    for (const holder of stuck) budget.take(holder, MIB);
    const before = budget.sheds;
    const late = new FakeHolder(budget, MIB);
    budget.take(late, MIB);
    assert.equal(budget.sheds - before, SHED_MISSES_MAX, "bounded, not a visit of all 40");
    assert.ok(budget.heldBytes > budget.totalBytesMax, "unwritten bytes pass the budget");
    // Once the least recently appended ones have written bytes, they give them back.
    for (const holder of stuck) holder.sheddable = MIB;
    budget.trim();
    assert.equal(budget.heldBytes, budget.totalBytesMax);
    assert.equal(stuck[0]!.sheddable, 0, "the oldest went first");
    assert.equal(late.asked, 0);
  });
});

describe("tail-cache budget", () => {
  test("a budget under 1 MiB is refused with a RangeError naming it", () => {
    assert.throws(() => new TailCacheBudget(TAIL_CACHE_TOTAL_BYTES_MIN - 1), {
      name: "RangeError",
      message: /tailCacheTotalBytes 1048575 must be an integer of at least 1048576/,
    });
    assert.throws(() => new TailCacheBudget(Number.NaN), RangeError);
  });

  test("many logs under a small budget stay within it, and read back the same bytes", async () => {
    using dir = tempDir();
    const budget = new TailCacheBudget(4 * MIB);
    const reference = new TailCacheBudget(1024 * MIB);
    const logs: PartitionLog[] = [];
    const references: PartitionLog[] = [];
    for (let i = 0; i < 12; i++) {
      logs.push(await openLog(`${dir.path}/small-${i}`, budget, { mapSegments: i % 2 === 0 }));
      references.push(await openLog(`${dir.path}/large-${i}`, reference));
    }
    // Each log takes two to three chunks; twelve would hold 24-36 MiB without the budget.
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < logs.length; i++) {
        const batch = simpleBatch(60, { firstTag: round * 100 + i, valueBytes: 1000 });
        await Promise.all([logs[i]!.append(batch), references[i]!.append(batch)]);
      }
      for (const log of logs) await log.flush();
      assert.ok(
        budget.heldBytes <= budget.totalBytesMax,
        `round ${round}: held ${budget.heldBytes} within ${budget.totalBytesMax}`,
      );
    }
    assert.ok(reference.heldBytes > 4 * budget.totalBytesMax, "the reference logs kept theirs");
    assert.ok(budget.sheds > 0);
    for (let i = 0; i < logs.length; i++) {
      assert.deepEqual(rawBytes(logs[i]!), rawBytes(references[i]!), `log ${i} reads the same`);
    }
    for (const log of [...logs, ...references]) await log.close();
    assert.equal(budget.heldBytes, 0, "closed logs hold nothing");
    assert.equal(budget.holderCount, 0);
    assert.equal(reference.heldBytes, 0);
  });

  test("an idle log's written chunks go first, its lent batch given back", async () => {
    using dir = tempDir();
    const budget = new TailCacheBudget(3 * MIB);
    const idle = await openLog(`${dir.path}/idle`, budget);
    const hot = await openLog(`${dir.path}/hot`, budget);
    const lease = new CountingLease();
    const lent = simpleBatch(80, { firstTag: 7, valueBytes: 1024 });
    await idle.appendChecked(lent, lease);
    await idle.append(simpleBatch(10, { firstTag: 900 }));
    await idle.flush();
    assert.equal(idle.read(0, MIB).views[0]!.buffer, lent.buffer, "served from the lent bytes");
    const idleBefore = readAll(idle, 0);
    // The read gave a reader a view: the lease is never released for it. A second lent batch,
    // never read, shows the release.
    const unread = new CountingLease();
    await idle.appendChecked(simpleBatch(80, { firstTag: 100, valueBytes: 1024 }), unread);
    await idle.flush();
    const idleHeld = budget.heldBytes;
    assert.ok(idleHeld > 0 && idleHeld <= budget.totalBytesMax);
    // The hot log takes chunks until the idle one's no longer fit.
    for (let i = 0; i < 40; i++) {
      await hot.append(simpleBatch(60, { firstTag: i * 60, valueBytes: 1000 }));
      if (i % 10 === 9) await hot.flush();
    }
    const hotTail = hot.read(hot.highWatermark - 60, MIB).views[0]!;
    assert.equal(hotTail.buffer.byteLength, WRITE_CHUNK_BYTES, "the hot log's tail is in memory");
    assert.equal(unread.released, unread.retained, "the unread lent batch was given back");
    assert.equal(lease.released, 0, "a view a reader saw is never given back");
    assert.ok(budget.heldBytes <= budget.totalBytesMax);
    const read = idle.read(0, MIB);
    assert.notEqual(read.views[0]!.buffer, lent.buffer, "now read from the file");
    assert.deepEqual(readAll(idle, 0).slice(0, idleBefore.length), idleBefore);
    // The idle log's next append takes a new chunk and reads back at once.
    await idle.append(simpleBatch(3, { firstTag: 5000 }));
    await idle.flush();
    assert.equal(readAll(idle, 0).length, idleBefore.length + 80 + 3);
    await idle.close();
    await hot.close();
    assert.equal(budget.heldBytes, 0);
  });

  test("unwritten bytes are never shed: the budget is passed until they are written", async () => {
    using dir = tempDir();
    const budget = new TailCacheBudget(1 * MIB);
    const a = await openLog(`${dir.path}/a`, budget);
    const b = await openLog(`${dir.path}/b`, budget);
    // Appends without awaiting: each log takes a chunk for bytes not yet in the file.
    const pending = [
      a.append(simpleBatch(40, { valueBytes: 1000 })),
      b.append(simpleBatch(40, { valueBytes: 1000 })),
    ];
    assert.equal(budget.heldBytes, 2 * WRITE_CHUNK_BYTES, "both chunks kept while unwritten");
    await Promise.all(pending);
    await a.flush();
    await b.flush();
    assert.ok(budget.heldBytes <= budget.totalBytesMax, "written: back within the budget");
    assert.equal(readAll(a, 0).length, 40);
    assert.equal(readAll(b, 0).length, 40);
    await a.close();
    await b.close();
  });

  test("a sealed segment gives its chunks back to the budget", async () => {
    using dir = tempDir();
    const budget = new TailCacheBudget(64 * MIB);
    const log = await openLog(dir.path, budget, { segmentBytes: 256 * 1024 });
    for (let i = 0; i < 12; i++) {
      await log.append(simpleBatch(50, { firstTag: i * 50, valueBytes: 1000 }));
    }
    await log.flush();
    const segments = fs.readdirSync(dir.path).filter((name) => name.endsWith(".log")).length;
    assert.ok(segments >= 3, `rolled into ${segments} segments`);
    // Only the active segment holds a chunk (capacity counted): the sealed ones gave theirs back.
    assert.equal(budget.heldBytes, WRITE_CHUNK_BYTES);
    assert.equal(budget.holderCount, 1);
    assert.equal(readAll(log, 0).length, 600);
    await log.close();
    assert.equal(budget.heldBytes, 0);
  });

  test("an engine's partitions count against its tailCacheTotalBytes", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path, {
      tailCacheTotalBytes: 2 * MIB,
      onWarning: () => {},
    });
    try {
      await engine.createTopic("t", { partitions: 8, config: { fsync: "never" } });
      for (let partition = 0; partition < 8; partition++) {
        await engine.append("t", partition, simpleBatch(20, { valueBytes: 1000 }));
        await engine.partition("t", partition).flush();
      }
      assert.ok(engine.tailCacheBudget.heldBytes <= 2 * MIB);
      assert.equal(engine.tailCacheBudget.totalBytesMax, 2 * MIB);
      for (let partition = 0; partition < 8; partition++) {
        assert.equal(readAll(engine.partition("t", partition), 0).length, 20);
      }
    } finally {
      await engine.close();
    }
    await assert.rejects(
      Engine.open(`${dir.path}/other`, { tailCacheTotalBytes: 1000 }),
      /tailCacheTotalBytes 1000 must be an integer/,
    );
  });
});

// A large batch lent with a lease (the server's produce path) is kept as a view of the lender's
// memory instead of being copied; the lease gets each view back once the log no longer holds
// it, and never when a reader was given a view of it: the lender's buffer is then never reused
// under that reader.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type BatchLease,
  type MapRange,
  LENT_BATCH_BYTES_MIN,
  PartitionLog,
  realFileIO,
} from "../../engine/mod.ts";
import { ACTIVE_MAP_STEP_BYTES } from "../../engine/segment.ts";
import { tempDir } from "../helpers.ts";
import { CountingLease, readAll, simpleBatch } from "./partition_log_helpers.ts";

function largeBatch(firstTag: number): Uint8Array {
  const batch = simpleBatch(80, { firstTag, valueBytes: 1024 });
  assert.ok(batch.length >= LENT_BATCH_BYTES_MIN);
  return batch;
}

async function openLog(dir: string, tailCacheBytes: number): Promise<PartitionLog> {
  return PartitionLog.open(dir, { fsync: "never" }, { onWarning: () => {}, tailCacheBytes });
}

describe("lent batches", () => {
  test("a large lent batch is kept as a view, its base offset patched in place", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, 8 << 20);
    const lease = new CountingLease();
    await log.appendChecked(simpleBatch(3), lease);
    assert.equal(lease.retained, 0, "a small batch is copied, not kept");
    const batch = largeBatch(3);
    const appended = await log.appendChecked(batch, lease);
    assert.equal(appended.baseOffset, 3);
    assert.equal(lease.retained, 1);
    const read = log.read(3, 1 << 20);
    assert.equal(read.views[0]!.buffer, batch.buffer, "the tail read is a view of the lent bytes");
    const view = new DataView(batch.buffer, batch.byteOffset);
    assert.equal(Number(view.getBigInt64(0)), 3, "base offset patched in place");
    const records = readAll(log, 0);
    assert.deepEqual(
      records.map((r) => r.offset),
      Array.from({ length: 83 }, (_, i) => i),
    );
    await log.close();
    assert.equal(lease.released, 0, "a view a reader saw is never given back");
  });

  test("a written lent batch dropped from the tail cache is given back once", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, 1);
    const lease = new CountingLease();
    for (let i = 0; i < 4; i++) await log.appendChecked(largeBatch(i * 80), lease);
    await log.flush();
    assert.equal(lease.retained, 4);
    assert.equal(lease.released, 3, "all but the newest chunk left the tail cache");
    // Overwriting the given-back memory changes nothing the log serves: it reads the file.
    const records = readAll(log, 0);
    assert.equal(records.length, 320);
    assert.deepEqual(
      records.map((r) => r.offset),
      Array.from({ length: 320 }, (_, i) => i),
    );
    await log.close();
  });

  test("given-back memory reused by the lender never changes what the log serves", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, 1);
    const expected = largeBatch(0);
    const shared = new Uint8Array(expected.length * 2);
    let holders = 0;
    const lease: BatchLease = {
      retain: () => void holders++,
      // The lender reuses its buffer at once, as the server's assembly pool does.
      release: () => {
        holders--;
        if (holders === 0) shared.fill(0xee);
      },
    };
    const lent = shared.subarray(0, expected.length);
    lent.set(expected);
    await log.appendChecked(lent, lease);
    await log.appendChecked(largeBatch(80), { retain() {}, release() {} });
    await log.flush();
    assert.equal(holders, 0);
    assert.equal(shared[100], 0xee, "the lender reused its memory");
    const records = readAll(log, 0);
    assert.equal(records.length, 160);
    assert.equal(records[5]!.offset, 5);
    await log.close();
  });
});

/** `batch` cut at `cuts` (byte positions) into views of separate buffers, as received chunks. */
function cutInto(batch: Uint8Array, cuts: number[]): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const to of [...cuts, batch.length]) {
    // Each part lies inside a larger buffer of its own, as a received chunk's tail would.
    const chunk = new Uint8Array(to - from + 16);
    chunk.set(batch.subarray(from, to), 8);
    parts.push(chunk.subarray(8, 8 + to - from));
    from = to;
  }
  return parts;
}

describe("batches in parts", () => {
  test("a lent batch in parts is kept as its parts and read back whole", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, 8 << 20);
    const lease = new CountingLease();
    const batch = largeBatch(0);
    const parts = cutInto(batch, [100, 40_000, 70_000]);
    const appended = await log.appendChecked(parts, lease);
    assert.equal(appended.baseOffset, 0);
    assert.equal(lease.retained, 4, "one view kept per part");
    await log.appendChecked(cutInto(largeBatch(80), [5_000]), lease);
    assert.equal(lease.retained, 6);
    // The tail read of a batch in parts is a copy of them, whole: readers take a batch as one view.
    const read = log.read(0, 1);
    assert.equal(read.views.length, 1);
    assert.equal(read.views[0]!.length, batch.length);
    assert.notEqual(read.views[0]!.buffer, parts[0]!.buffer);
    const records = readAll(log, 0);
    assert.deepEqual(
      records.map((r) => r.offset),
      Array.from({ length: 160 }, (_, i) => i),
    );
    assert.deepEqual(readAll(log, 0, 64), records, "small reads across the parts too");
    await log.close();
  });

  test("a batch in parts read again is not copied again", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, 8 << 20);
    const lease = new CountingLease();
    const first = largeBatch(0);
    const second = largeBatch(80);
    await log.appendChecked(cutInto(first, [100, 40_000]), lease);
    await log.appendChecked(cutInto(second, [5_000]), lease);
    // A queue fetch looks at the batch at next, then reads from there: one copy serves both.
    const looked = log.read(0, 1).views[0]!;
    const taken = log.read(0, 1 << 20).views[0]!;
    assert.equal(
      taken.buffer,
      looked.buffer,
      "the second read of the same batch is the first one's copy",
    );
    assert.deepEqual(taken, looked);
    const other = log.read(80, 1).views[0]!;
    assert.notEqual(other.buffer, looked.buffer);
    assert.equal(other.length, second.length);
    assert.deepEqual(other.subarray(8), second.subarray(8), "the later batch, base offset aside");
    assert.deepEqual(log.read(0, 1).views[0]!.subarray(8), first.subarray(8));
    assert.deepEqual(
      readAll(log, 0).map((r) => r.offset),
      Array.from({ length: 160 }, (_, i) => i),
    );
    await log.close();
  });

  test("once a joined batch's parts leave the tail cache, reads serve the file", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, 1);
    const lease = new CountingLease();
    const first = largeBatch(0);
    await log.appendChecked(cutInto(first, [30_000, 60_000]), lease);
    const joined = log.read(0, 1).views[0]!;
    assert.equal(joined.buffer, log.read(0, 1).views[0]!.buffer, "still cached: one copy");
    await log.appendChecked(cutInto(largeBatch(80), [30_000]), lease);
    await log.flush();
    // The first batch's parts left the tail cache (a part a reader saw is not given back).
    assert.ok(lease.released >= 1, `${lease.released} parts given back`);
    const again = log.read(0, 1).views[0]!;
    assert.notEqual(again.buffer, joined.buffer, "not the copy the dropped parts made");
    assert.deepEqual(again.subarray(8), first.subarray(8));
    await log.close();
  });

  test("tail reads of batches in parts never map the growing file anew", async () => {
    using dir = tempDir();
    let maps = 0;
    const io = {
      ...realFileIO,
      mapFile(path: string, range?: MapRange) {
        maps++;
        return realFileIO.mapFile(path, range);
      },
    };
    // The whole segment stays in the tail cache: every read below is a tail read.
    const log = await PartitionLog.open(
      dir.path,
      { fsync: "never" },
      { io, onWarning: () => {}, tailCacheBytes: 2 * ACTIVE_MAP_STEP_BYTES },
    );
    try {
      const lease = new CountingLease();
      let offset = 0;
      while (log.sealedSegments().length === 0 && offset * 1024 < ACTIVE_MAP_STEP_BYTES * 1.5) {
        const batch = largeBatch(offset);
        await log.appendChecked(cutInto(batch, [30_000, 60_000]), lease);
        await log.flush();
        const view = log.read(offset, 1).views[0]!;
        assert.deepEqual(
          view,
          batch.map((byte, i) => (i < 8 ? view[i]! : byte)),
        );
        offset += 80;
      }
      assert.ok(offset * 1024 > ACTIVE_MAP_STEP_BYTES, "past one mapping step");
      // Each map is of the whole file, and its length counts as heap until it is collected.
      assert.equal(maps, 0, "no tail read mapped the file");
    } finally {
      await log.close();
    }
  });

  test("a batch in parts without a lease is copied, and a short first part is joined", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, 8 << 20);
    const batch = largeBatch(0);
    await log.appendChecked(cutInto(batch, [30_000]));
    const lease = new CountingLease();
    await log.appendChecked(cutInto(largeBatch(80), [20, 900]), lease);
    assert.equal(lease.retained, 1, "joined into one copy of its own, kept whole");
    await log.appendChecked([simpleBatch(2, { firstTag: 160 })], lease);
    await log.flush();
    const records = readAll(log, 0);
    assert.equal(records.length, 162);
    assert.deepEqual(records[100]!.value, readAll(log, 100, 1)[0]!.value);
    await log.close();
  });

  test("a byte changed in a later part fails the batch's CRC-32C check", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, 8 << 20);
    const parts = cutInto(largeBatch(0), [10_000, 50_000]);
    parts[2]![7]! ^= 0x01;
    assert.throws(
      () => log.appendChecked(parts, new CountingLease()),
      (error: Error & { code?: string }) => error.code === "CORRUPT_BATCH",
    );
    const short = cutInto(largeBatch(0), [10_000]);
    assert.throws(
      () => log.appendChecked([short[0]!], new CountingLease()),
      (error: Error & { code?: string }) => error.code === "INVALID_BATCH",
      "parts that stop before the declared batch length are refused",
    );
    assert.equal(log.logEndOffset, 0);
    await log.close();
  });

  test("the tail cache drops a batch in parts whole, and gives every part back", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path, 1);
    const lease = new CountingLease();
    for (let i = 0; i < 4; i++) {
      await log.appendChecked(cutInto(largeBatch(i * 80), [30_000, 60_000]), lease);
    }
    await log.flush();
    assert.equal(lease.retained, 12);
    assert.equal(lease.released, 9, "all but the newest batch's parts left the tail cache");
    const records = readAll(log, 0);
    assert.deepEqual(
      records.map((r) => r.offset),
      Array.from({ length: 320 }, (_, i) => i),
    );
    await log.close();
  });
});

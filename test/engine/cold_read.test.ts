// Cold reads (engine/cold_read.ts): bytes below the tail cache that the page cache does not
// hold are read on the thread pool with O_DIRECT before the read that serves them. Whatever
// the sizes of batches and reads, a read after PartitionLog.prepareRead returns exactly what
// a read without it returns; damage is still found; a log closed or cut while a cold read is
// in flight loses nothing and throws nothing. The server's fetches use it (bench:tcp).

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  beginColdViews,
  COLD_READ_BYTES_MAX,
  coldReadBytesHeld,
  coldReadCounts,
  coldViewWritten,
  endColdViews,
  retainColdView,
} from "../../engine/cold_read.ts";
import { DIRECT_BLOCK_BYTES, loadDirectWrites } from "../../engine/direct_io.ts";
import { cacheDropper } from "../../engine/page_cache.ts";
import { Engine, encodeRecordBatch, PartitionLog, type ReadResult } from "../../engine/mod.ts";
import { Scrubber } from "../../engine/scrubber.ts";
import { isSluiceError } from "../../record/mod.ts";
import { mulberry32, tempDir, waitFor } from "../helpers.ts";

const NO_COLD_READS = "no O_DIRECT or mincore here (Bun on Linux only)";

/** Direct I/O for `dir` where cold reads can be made (O_DIRECT and mincore), else undefined. */
async function coldReadable(dir: string) {
  const directWrites = await loadDirectWrites(dir);
  return directWrites?.residentPages === undefined ? undefined : directWrites;
}

/** The bytes of a log's sealed segments: what one scrub pass checks. */
function sealedBytes(log: PartitionLog): number {
  return log.sealedSegments().reduce((sum, segment) => sum + segment.visiblePosition, 0);
}

const SEED = Number(process.env["SLUICE_TEST_SEED"] ?? Date.now() % 1_000_000);
/** A small tail cache, so nearly all of a log lies below it. */
const TAIL_CACHE_BYTES = 256 * 1024;

function batch(random: () => number, valueBytes: number): Uint8Array {
  const value = new Uint8Array(valueBytes);
  for (let i = 0; i < valueBytes; i += 97) value[i] = Math.floor(random() * 256);
  return encodeRecordBatch([{ value, timestamp: 1_700_000_000_000 }], {
    timestamp: 1_700_000_000_000,
  });
}

function joined(result: ReadResult): Uint8Array {
  const out = new Uint8Array(result.sizeBytes);
  let at = 0;
  for (const view of result.views) {
    out.set(view, at);
    at += view.length;
  }
  return out;
}

/**
 * A log written direct in rounds of random sizes (so most of it is not in the page cache):
 * batches from 200 B to ~1 MiB, some rounds synced.
 */
async function writtenLog(
  dir: string,
  random: () => number,
  totalBytes: number,
  segmentBytes = 24 * 1024 * 1024,
) {
  const directWrites = await coldReadable(dir);
  if (directWrites === undefined) return undefined;
  const log = await PartitionLog.open(
    dir,
    { fsync: "never", segmentBytes },
    { directWrites, directRounds: "all", tailCacheBytes: TAIL_CACHE_BYTES },
  );
  let written = 0;
  while (written < totalBytes) {
    const round: Promise<unknown>[] = [];
    const count = 1 + Math.floor(random() * 8);
    for (let i = 0; i < count; i++) {
      const pick = random();
      const bytes =
        pick < 0.1
          ? 256 * 1024 + Math.floor(random() * 700 * 1024)
          : 200 + Math.floor(random() * 60_000);
      const encoded = batch(random, bytes);
      written += encoded.length;
      round.push(log.append(encoded));
    }
    await Promise.all(round);
    if (random() < 0.2) await log.flush();
  }
  await log.flush();
  return log;
}

describe("cold reads", () => {
  test("a catch-up read of a log written direct: prepared reads return plain reads", async (t) => {
    using dir = tempDir("sluice-cold-");
    const random = mulberry32(SEED);
    const log = await writtenLog(dir.path, random, 40 * 1024 * 1024);
    if (log === undefined) return t.skip(NO_COLD_READS);
    const started = coldReadCounts.started;
    const served = coldReadCounts.served;
    const reads: { offset: number; maxBytes: number; next: number; bytes: Uint8Array }[] = [];
    let prepared = 0;
    try {
      let offset = 0;
      while (offset < log.highWatermark) {
        const maxBytes = 1 + Math.floor(random() * 6 * 1024 * 1024);
        const wait = log.prepareRead(offset, maxBytes);
        if (wait !== undefined) {
          prepared++;
          await wait;
        }
        const read = coldRead(log, offset, maxBytes);
        assert.ok(read.views.length > 0, `seed ${SEED}: offset ${offset} reads something`);
        reads.push({ offset, maxBytes, next: read.nextOffset, bytes: joined(read) });
        offset = read.nextOffset;
      }
    } finally {
      await log.close();
    }
    assert.ok(prepared > 0, `seed ${SEED}: some reads were prepared`);
    assert.ok(coldReadCounts.started > started, "cold reads were made");
    assert.ok(coldReadCounts.served > served, "reads were served from them");
    assert.ok(coldReadBytesHeld() <= COLD_READ_BYTES_MAX, "buffers stay within their budget");
    // Every read again through a log that reads only through the page cache (no direct I/O).
    const plain = await PartitionLog.open(dir.path, { fsync: "never" });
    try {
      for (const { offset, maxBytes, next, bytes } of reads) {
        const expected = plain.read(offset, maxBytes);
        assert.equal(next, expected.nextOffset, `seed ${SEED}: offset ${offset}`);
        assert.deepEqual(bytes, joined(expected), `seed ${SEED}: bytes at ${offset}`);
      }
    } finally {
      await plain.close();
    }
  });

  test("random offsets and sizes: the same bytes as a read without preparing", async (t) => {
    using dir = tempDir("sluice-cold-");
    const random = mulberry32(SEED + 1);
    const log = await writtenLog(dir.path, random, 24 * 1024 * 1024);
    if (log === undefined) return t.skip(NO_COLD_READS);
    try {
      const expected = new Map<number, { next: number; bytes: Uint8Array }>();
      const offsets: number[] = [];
      for (let i = 0; i < 60; i++) offsets.push(Math.floor(random() * log.highWatermark));
      const sizes = offsets.map(() => 1 + Math.floor(random() * 3 * 1024 * 1024));
      // First the plain reads (through the mapping), then the prepared ones, two at a time.
      offsets.forEach((offset, i) => {
        const read = log.read(offset, sizes[i]!);
        expected.set(i, { next: read.nextOffset, bytes: joined(read) });
      });
      for (let i = 0; i < offsets.length; i += 2) {
        const waits = [log.prepareRead(offsets[i]!, sizes[i]!)];
        if (i + 1 < offsets.length) waits.push(log.prepareRead(offsets[i + 1]!, sizes[i + 1]!));
        await Promise.all(waits);
        for (const j of [i, i + 1]) {
          if (j >= offsets.length) continue;
          const read = coldRead(log, offsets[j]!, sizes[j]!);
          assert.equal(read.nextOffset, expected.get(j)!.next, `seed ${SEED}: read ${j}`);
          assert.deepEqual(joined(read), expected.get(j)!.bytes, `seed ${SEED}: read ${j}`);
        }
      }
    } finally {
      await log.close();
    }
  });

  test("damage in a reopened log is found in bytes read cold", async (t) => {
    using dir = tempDir("sluice-cold-");
    const random = mulberry32(SEED + 2);
    // Sealed segments of 4 MiB: a clean open checks none of their bytes (which would bring
    // them into the page cache); the damage goes into the first.
    const segmentBytes = 4 * 1024 * 1024;
    const log = await writtenLog(dir.path, random, 16 * 1024 * 1024, segmentBytes);
    if (log === undefined) return t.skip(NO_COLD_READS);
    const end = log.highWatermark;
    await log.close();
    await damageOneBatch(dir.path, segmentBytes, Math.floor(end / 10));
    const damaged = await writtenLogReopen(dir.path, segmentBytes);
    try {
      let offset = 0;
      let found = false;
      let prepared = 0;
      while (offset < damaged.highWatermark) {
        const wait = damaged.prepareRead(offset, 2 * 1024 * 1024);
        if (wait !== undefined) {
          prepared++;
          await wait;
        }
        try {
          offset = coldRead(damaged, offset, 2 * 1024 * 1024).nextOffset;
        } catch (error) {
          assert.ok(isSluiceError(error, "CORRUPT_BATCH"), String(error));
          found = true;
          const next = (error as { details: Record<string, unknown> }).details["nextValidOffset"];
          assert.equal(typeof next, "number", "reading resumes after the damage");
          offset = next as number;
        }
      }
      assert.ok(found, `seed ${SEED}: the damaged batch is reported`);
      assert.ok(prepared > 0, `seed ${SEED}: bytes were read cold`);
    } finally {
      await damaged.close();
    }
  });

  test("the scrubber reads cold bytes on the thread pool and still finds damage", async (t) => {
    using dir = tempDir("sluice-cold-");
    const random = mulberry32(SEED + 5);
    const segmentBytes = 4 * 1024 * 1024;
    const log = await writtenLog(dir.path, random, 16 * 1024 * 1024, segmentBytes);
    if (log === undefined) return t.skip(NO_COLD_READS);
    const end = log.highWatermark;
    await log.close();
    // Not the last batch of its segment file: an open checks each segment's last batch and
    // would report the damage itself, leaving the scrubber nothing to find (with some seeds).
    let target = Math.floor(end / 2);
    for (;;) {
      const damaged = await damageOneBatch(dir.path, segmentBytes, target, { notLast: true });
      if (damaged === true) break;
      assert.ok(damaged > 0, `seed ${SEED}: a batch with another after it in its file`);
      target = damaged - 1;
    }
    const damaged = await writtenLogReopen(dir.path, segmentBytes);
    const warnings: string[] = [];
    const scrubber = new Scrubber({
      bytesPerSec: 64 * 1024 * 1024,
      logs: () => [damaged],
      onWarning: (message) => warnings.push(message),
    });
    const started = coldReadCounts.started;
    const served = coldReadCounts.served;
    try {
      const sealed = sealedBytes(damaged);
      scrubber.start();
      // Passes go on while there are sealed segments; a damaged place is reported once.
      await waitFor(
        () => scrubber.damageFound === 1 && scrubber.bytesChecked >= sealed,
        "a scrub pass and more, with the damage found",
        30_000,
      );
      assert.ok(coldReadCounts.started > started, "the scrubber read bytes cold");
      assert.ok(coldReadCounts.served > served, "and checked them from the buffers");
      assert.match(warnings.join("\n"), /found a damaged batch \(bad-crc\)/);
      let caught = false;
      try {
        let offset = 0;
        while (offset < damaged.highWatermark) offset = damaged.read(offset, 1 << 20).nextOffset;
      } catch (error) {
        caught = isSluiceError(error, "CORRUPT_BATCH");
      }
      assert.ok(caught, "a read of the damaged batch reports it");
    } finally {
      scrubber.stop();
      await damaged.close();
    }
  });

  test("the scrubber gets past a batch larger than one cold read", async (t) => {
    using dir = tempDir("sluice-cold-");
    const directWrites = await coldReadable(dir.path);
    if (directWrites === undefined) return t.skip(NO_COLD_READS);
    const config = { fsync: "never" as const, segmentBytes: 64 << 20, maxBatchBytes: 32 << 20 };
    const extra = { directWrites, directRounds: "all" as const, tailCacheBytes: TAIL_CACHE_BYTES };
    const log = await PartitionLog.open(dir.path, config, extra);
    // 20 MiB batches: over COLD_READ_BYTES_PER_READ_MAX (16 MiB), so no cold read holds one.
    const value = new Uint8Array(20 << 20).fill(9);
    for (let i = 0; i < 4; i++) await log.append(encodeRecordBatch([{ value }]));
    await log.close();
    const reopened = await PartitionLog.open(dir.path, config, extra);
    const scrubber = new Scrubber({
      bytesPerSec: 256 * 1024 * 1024,
      logs: () => [reopened],
      onWarning: (message) => assert.fail(message),
    });
    try {
      const sealed = sealedBytes(reopened);
      assert.ok(sealed >= 60 << 20, "three big batches are sealed");
      scrubber.start();
      await waitFor(() => scrubber.bytesChecked >= sealed, "a whole scrub pass", 30_000);
      assert.equal(scrubber.damageFound, 0);
    } finally {
      scrubber.stop();
      await reopened.close();
    }
  });

  test("a queue fetch reads the records given back cold too, not only the new ones", async (t) => {
    using dir = tempDir("sluice-cold-");
    if ((await coldReadable(dir.path)) === undefined) return t.skip(NO_COLD_READS);
    const options = { directWrites: "all" as const, tailCacheTotalBytes: 1 << 20 };
    const first = await Engine.open(dir.path, options);
    const value = new Uint8Array(4096).fill(3);
    try {
      await first.createTopic("t", {
        partitions: 1,
        config: { fsync: "never", segmentBytes: 4 << 20 },
      });
      const log = first.partition("t", 0);
      // 16 MiB in batches of 16 records of 4 KiB, written direct (not in the page cache).
      for (let i = 0; i < 256; i++) {
        await log.append(encodeRecordBatch(Array.from({ length: 16 }, () => ({ value }))));
      }
      await log.flush();
      await first.declareQueue("q", { topic: "t", from: "beginning" });
      const member = first.joinQueue("q");
      // Acquired from cold-read buffers (not through the mapping, which would bring the
      // pages in), then given back.
      await first.prepareQueueFetch("q", 1 << 20);
      beginColdViews();
      try {
        first.fetchQueue("q", member, { maxRecords: 100 });
      } finally {
        endColdViews();
      }
      await first.ackQueue("q", member, [{ partition: 0, first: 0, last: 99, type: "release" }]);
    } finally {
      await first.close();
    }
    // Reopened: no buffers; offsets 0-99 wait to be acquired again, the next new one is 100.
    const engine = await Engine.open(dir.path, options);
    try {
      const log = engine.partition("t", 0);
      // Whatever writing, sealing, the queue's reads and the open brought into the page cache
      // leaves it (pages this process has touched through a mapping would stay: nothing here
      // reads offset 0 before the fetch is prepared, not even the queue's stats, which read
      // the oldest ready record's timestamp).
      const drop = await cacheDropper();
      if (drop === undefined) return t.skip("no posix_fadvise here");
      const partitionDir = join(dir.path, "t-0");
      for (const name of fs.readdirSync(partitionDir).filter((n) => n.endsWith(".log"))) {
        const fd = fs.openSync(join(partitionDir, name), "r");
        await drop(fd, 0, fs.fstatSync(fd).size);
        fs.closeSync(fd);
      }
      const wait = engine.prepareQueueFetch("q", 1 << 20);
      assert.ok(wait !== undefined, "the queue's next records are cold");
      await wait;
      assert.equal(
        log.prepareRead(0, 64 * 1024),
        undefined,
        "offset 0 was read ahead of the fetch",
      );
    } finally {
      await engine.close();
    }
  });

  test("memory of a view given to an answer is not reused until the socket took it", async (t) => {
    using dir = tempDir("sluice-cold-");
    const random = mulberry32(SEED + 4);
    const log = await writtenLog(dir.path, random, 48 * 1024 * 1024);
    if (log === undefined) return t.skip(NO_COLD_READS);
    try {
      const first = await preparedRead(log, 0, 4 * 1024 * 1024);
      const held = first.views;
      for (const view of held) retainColdView(view);
      const copies = held.map((view) => view.slice());
      // Read on through the log: the first buffer is dropped (3 a segment) and its memory
      // would be the first reused.
      let offset = first.nextOffset;
      while (offset < log.highWatermark)
        offset = (await preparedRead(log, offset, 4 << 20)).nextOffset;
      for (const [i, view] of held.entries()) {
        assert.deepEqual(view, copies[i], "a retained view is intact");
      }
      // Written: its memory goes back to the pool, and a fresh read may reuse it.
      for (const view of held) coldViewWritten(view);
      const again = await preparedRead(log, 0, 4 * 1024 * 1024);
      assert.deepEqual(joined(again), joined(first), "read again, the same bytes");
    } finally {
      await log.close();
    }
  });

  test("memory is reused across reads of changing sizes, not made anew", async (t) => {
    using dir = tempDir("sluice-cold-");
    const random = mulberry32(SEED + 7);
    const log = await writtenLog(dir.path, random, 96 * 1024 * 1024, 32 * 1024 * 1024);
    if (log === undefined) return t.skip(NO_COLD_READS);
    // One catch-up pass at maxBytes (its views kept in `held` as an answer keeps them, if
    // given): the buffers made fresh and the cold reads started.
    const pass = async (maxBytes: number, held?: Uint8Array[]) => {
      const made = coldReadCounts.memoryMade;
      const started = coldReadCounts.started;
      let offset = 0;
      while (offset < log.highWatermark) {
        const read = await preparedRead(log, offset, maxBytes);
        for (const view of held === undefined ? [] : read.views) {
          retainColdView(view);
          held!.push(view);
        }
        offset = read.nextOffset;
      }
      return { made: coldReadCounts.memoryMade - made, reads: coldReadCounts.started - started };
    };
    try {
      // Small reads whose views are all written at once fill the idle pool with small memory,
      // which larger reads cannot use: it must make way for theirs, or every larger read
      // makes its memory anew.
      // Twice over the log: more small memory than the pool keeps (IDLE_BYTES_MAX, 192 MiB).
      const held: Uint8Array[] = [];
      await pass(1024 * 1024, held);
      await pass(1024 * 1024, held);
      for (const view of held) coldViewWritten(view);
      await pass(6 * 1024 * 1024);
      const again = await pass(6 * 1024 * 1024);
      assert.ok(again.reads >= 12, `seed ${SEED}: ${again.reads} cold reads in the last pass`);
      assert.ok(again.made <= 2, `seed ${SEED}: ${again.made} of ${again.reads} made fresh`);
    } finally {
      await log.close();
    }
  });

  test("closing a log with cold reads in flight throws nothing, loses nothing", async (t) => {
    using dir = tempDir("sluice-cold-");
    const random = mulberry32(SEED + 3);
    const log = await writtenLog(dir.path, random, 16 * 1024 * 1024);
    if (log === undefined) return t.skip(NO_COLD_READS);
    const end = log.highWatermark;
    const waits: Promise<void>[] = [];
    for (let offset = 0; offset < end; offset += Math.max(1, Math.floor(end / 8))) {
      const wait = log.prepareRead(offset, 4 * 1024 * 1024);
      if (wait !== undefined) waits.push(wait);
    }
    await log.close();
    await Promise.all(waits);
    assert.throws(
      () => log.read(0, 1),
      (error) => isSluiceError(error, "LOG_CLOSED"),
    );
    const reopened = await PartitionLog.open(dir.path, { fsync: "never" });
    try {
      assert.equal(reopened.highWatermark, end);
    } finally {
      await reopened.close();
    }
  });
});

/** prepareRead, then the read, as the server's fetch makes them. */
async function preparedRead(log: PartitionLog, offset: number, maxBytes: number) {
  const wait = log.prepareRead(offset, maxBytes);
  if (wait !== undefined) await wait;
  return coldRead(log, offset, maxBytes);
}

/** A read as the server's fetch makes it: cold-read buffers may serve it (views copied). */
function coldRead(log: PartitionLog, offset: number, maxBytes: number): ReadResult {
  beginColdViews();
  try {
    return log.read(offset, maxBytes);
  } finally {
    endColdViews();
  }
}

async function writtenLogReopen(dir: string, segmentBytes: number): Promise<PartitionLog> {
  const directWrites = await loadDirectWrites(dir);
  return PartitionLog.open(
    dir,
    { fsync: "never", segmentBytes },
    { directWrites, directRounds: "all", tailCacheBytes: TAIL_CACHE_BYTES },
  );
}

/**
 * One byte flipped in the records of the batch at `offset` of a log written by writtenLog,
 * read and written with O_DIRECT so that the page cache stays without the file's pages.
 */
/**
 * Flips a byte in the batch holding `offset`; true when done. With `notLast`, a batch that is
 * the last in its file is left alone and its base offset is answered instead.
 */
async function damageOneBatch(
  dir: string,
  segmentBytes: number,
  offset: number,
  options: { notLast?: boolean } = {},
): Promise<true | number> {
  const reopened = await writtenLogReopen(dir, segmentBytes);
  try {
    const { views } = reopened.read(offset, 1);
    const batchBase = Number(Buffer.from(views[0]!.subarray(0, 8)).readBigInt64BE(0));
    const batchBytes = Buffer.from(views[0]!.subarray(8, 12)).readInt32BE(0) + 12;
    const direct = (await loadDirectWrites(dir))!;
    const needle = Buffer.from(views[0]!.subarray(0, 64));
    let path = "";
    let whole: Uint8Array = new Uint8Array(0);
    let at = -1;
    for (const name of fs.readdirSync(dir).filter((n) => n.endsWith(".log"))) {
      path = join(dir, name);
      const size = fs.statSync(path).size;
      whole = direct.alignedBuffer(Math.ceil(size / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES);
      const readFd = fs.openSync(path, direct.readFlags);
      fs.readSync(readFd, whole, 0, whole.length, 0);
      fs.closeSync(readFd);
      at = Buffer.from(whole.buffer, whole.byteOffset, size).indexOf(needle);
      if (at >= 0) break;
    }
    assert.ok(at >= 0, "the batch is found in the file");
    if (options.notLast === true && at + batchBytes >= fs.statSync(path).size) return batchBase;
    const block = at + 100 - ((at + 100) % DIRECT_BLOCK_BYTES);
    whole[at + 100] = whole[at + 100]! ^ 0xff;
    const writeFd = fs.openSync(path, direct.openFlags);
    fs.writeSync(
      writeFd,
      whole.subarray(block, block + DIRECT_BLOCK_BYTES),
      0,
      DIRECT_BLOCK_BYTES,
      block,
    );
    fs.closeSync(writeFd);
    return true;
  } finally {
    await reopened.close();
  }
}

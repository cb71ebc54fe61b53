// Direct segment appends (engine/direct_io.ts): the bytes in the file are the bytes appended,
// the zero padding of the last block is overwritten by the next write, cut at seal and at a
// clean close, and cut quietly by recovery after a crash; anything else past the last batch is
// still reported as a torn tail. Kill -9 runs with direct writes are in crash.test.ts.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { DIRECT_BLOCK_BYTES, DirectAppender, loadDirectWrites } from "../../engine/direct_io.ts";
import { FileBudget } from "../../engine/file_budget.ts";
import { Engine, encodeRecordBatch, PartitionLog } from "../../engine/mod.ts";
import { mulberry32, tempDir } from "../helpers.ts";

const SEED = Number(process.env["SLUICE_TEST_SEED"] ?? Date.now() % 1_000_000);

function bytesOf(seed: number, length: number): Uint8Array {
  const random = mulberry32(seed);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = 1 + Math.floor(random() * 255);
  return bytes;
}

function logFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith(".log"))
    .sort()
    .map((name) => join(dir, name));
}

function batch(seed: number, valueBytes: number): Uint8Array {
  return encodeRecordBatch([{ value: bytesOf(seed, valueBytes), timestamp: Date.now() }], {
    timestamp: Date.now(),
  });
}

describe("DirectAppender", () => {
  test("writes random rounds, small and spanning pieces, exactly; zeros past them", async (t) => {
    using dir = tempDir("sluice-direct-");
    const direct = await loadDirectWrites(dir.path);
    if (direct === undefined) return t.skip("no O_DIRECT writes here (Bun on Linux only)");
    const path = join(dir.path, "appends.log");
    fs.writeFileSync(path, "");
    const readFd = fs.openSync(path, "r");
    const reads: number[] = [];
    const appender = new DirectAppender(path, new FileBudget(16), direct, (at, length) => {
      reads.push(at);
      const into = new Uint8Array(length);
      fs.readSync(readFd, into, 0, length, at);
      return into;
    });
    const random = mulberry32(SEED);
    const expected: Uint8Array[] = [];
    let position = 0;
    try {
      for (let round = 0; round < 60; round++) {
        // Mostly a few KiB; some rounds end on a block boundary, some span staging pieces.
        const pick = random();
        const total =
          pick < 0.1
            ? DIRECT_BLOCK_BYTES - (position % DIRECT_BLOCK_BYTES)
            : pick < 0.2
              ? 1 + Math.floor(random() * 3 * 1024 * 1024)
              : 1 + Math.floor(random() * 9000);
        const buffers: Uint8Array[] = [];
        for (let left = total, part = 0; left > 0; part++) {
          const length = Math.min(left, 1 + Math.floor(random() * 5000));
          buffers.push(bytesOf(SEED + round * 1000 + part, length));
          left -= length;
        }
        await appender.write(buffers, position);
        expected.push(...buffers);
        position += total;
        const size = fs.statSync(path).size;
        assert.equal(size, Math.ceil(position / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES);
      }
      const file = fs.readFileSync(path);
      let at = 0;
      for (const buffer of expected) {
        assert.ok(
          Buffer.from(buffer).equals(file.subarray(at, at + buffer.length)),
          `seed ${SEED}: bytes at ${at}`,
        );
        at += buffer.length;
      }
      assert.ok(
        file.subarray(position).every((byte) => byte === 0),
        "zeros past the data",
      );
      // Each write that starts inside a block asked for the bytes before it in that block.
      assert.ok(reads.length > 30, `seed ${SEED}: ${reads.length} heads asked for`);
      assert.ok(
        reads.every((at) => at % DIRECT_BLOCK_BYTES === 0),
        "heads start on a block",
      );
    } finally {
      appender.close();
      fs.closeSync(readFd);
    }
  });
});

describe("direct writes in a partition log", () => {
  test("padding while open, exact sizes once sealed and after a clean close", async (t) => {
    using dir = tempDir("sluice-direct-");
    const directWrites = await loadDirectWrites(dir.path);
    if (directWrites === undefined) return t.skip("no O_DIRECT writes here (Bun on Linux only)");
    const config = { segmentBytes: 64 * 1024, fsync: "always" as const };
    const log = await PartitionLog.open(dir.path, config, { directWrites });
    const appended: Uint8Array[] = [];
    for (let i = 0; i < 100; i++) {
      const bytes = batch(SEED + i, 100 + ((i * 577) % 3000));
      appended.push(bytes);
      await log.append(bytes);
    }
    const files = logFiles(dir.path);
    assert.ok(files.length >= 3, `rolled: ${files.length} segments`);
    const activeSize = fs.statSync(files.at(-1)!).size;
    assert.equal(activeSize % DIRECT_BLOCK_BYTES, 0, "the active segment ends on a block");
    await log.close();
    let total = 0;
    for (const file of files) total += fs.statSync(file).size;
    assert.equal(total, log.sizeBytes, "no padding left in any segment after close");
    let expected = 0;
    for (const bytes of appended) expected += bytes.length;
    assert.equal(total, expected);
    const warnings: string[] = [];
    const reopened = await PartitionLog.open(dir.path, config, {
      directWrites,
      onWarning: (message) => warnings.push(message),
    });
    try {
      assert.deepEqual(warnings, []);
      let offset = 0;
      const read: Uint8Array[] = [];
      while (offset < reopened.highWatermark) {
        const result = reopened.read(offset, 1024 * 1024);
        read.push(...result.views);
        offset = result.nextOffset;
      }
      assert.equal(
        read.reduce((sum, view) => sum + view.length, 0),
        expected,
        "every byte reads back",
      );
    } finally {
      await reopened.close();
    }
  });

  test("heads come from the tail cache, across chunks, or from the file once shed", async (t) => {
    using dir = tempDir("sluice-direct-");
    const directWrites = await loadDirectWrites(dir.path);
    if (directWrites === undefined) return t.skip("no O_DIRECT writes here (Bun on Linux only)");
    const config = { segmentBytes: 64 * 1024 * 1024, fsync: "always" as const };
    const random = mulberry32(SEED);
    const appended: Uint8Array[] = [];
    // Small batches over 1 MiB chunk boundaries (a round's head then spans two chunks); the
    // second log's tail cache is kept at one chunk, so older ones are shed and read back.
    for (const tailCacheBytes of [8 * 1024 * 1024, 1024 * 1024]) {
      using logDir = tempDir("sluice-direct-");
      const log = await PartitionLog.open(logDir.path, config, { directWrites, tailCacheBytes });
      appended.length = 0;
      let written = 0;
      while (written < 8 * 1024 * 1024) {
        const round: Promise<unknown>[] = [];
        const count = 1 + Math.floor(random() * 6);
        for (let i = 0; i < count; i++) {
          const bytes = batch(SEED + appended.length, 20 + Math.floor(random() * 700));
          appended.push(bytes);
          written += bytes.length;
          round.push(log.append(bytes));
        }
        await Promise.all(round);
      }
      await log.close();
      const file = fs.readFileSync(logFiles(logDir.path)[0]!);
      let at = 0;
      for (const [i, bytes] of appended.entries()) {
        const stored = file.subarray(at + 8, at + bytes.length);
        assert.ok(stored.equals(bytes.subarray(8)), `seed ${SEED}: batch ${i} at ${at}`);
        at += bytes.length;
      }
      assert.equal(at, file.length, "the file ends with the last batch");
    }
  });

  test("buffered and direct rounds taking turns on one segment keep every byte", async (t) => {
    using dir = tempDir("sluice-direct-");
    const directWrites = await loadDirectWrites(dir.path);
    if (directWrites === undefined) return t.skip("no O_DIRECT writes here (Bun on Linux only)");
    // fsync never: a plain append's round is buffered, a durable one's is direct.
    const config = { segmentBytes: 256 * 1024, fsync: "never" as const };
    const random = mulberry32(SEED);
    const log = await PartitionLog.open(dir.path, config, { directWrites });
    const appended: Uint8Array[] = [];
    for (let i = 0; i < 300; i++) {
      const bytes = batch(SEED + i, 50 + Math.floor(random() * 2500));
      appended.push(bytes);
      if (random() < 0.5) await log.appendDurable(bytes);
      else await log.append(bytes);
    }
    await log.close();
    const reopened = await PartitionLog.open(dir.path, config);
    try {
      let offset = 0;
      for (const [i, bytes] of appended.entries()) {
        const [view] = reopened.read(offset, 1).views;
        assert.ok(view !== undefined, `seed ${SEED}: batch ${i} is there`);
        const stored = view.subarray(0, bytes.length);
        // Bytes 0-7 hold the base offset the log assigned.
        assert.ok(
          Buffer.from(stored.subarray(8)).equals(bytes.subarray(8)),
          `seed ${SEED}: batch ${i}`,
        );
        offset += 1;
      }
    } finally {
      await reopened.close();
    }
  });

  test('an engine writes synced rounds direct; with "all" also large unsynced ones', async (t) => {
    using probe = tempDir("sluice-direct-");
    if ((await loadDirectWrites(probe.path)) === undefined) {
      return t.skip("no O_DIRECT writes here (Bun on Linux only)");
    }
    // A round of 1,000 bytes is written in place when it need not sync; one of 100,000 goes
    // to the thread pool either way.
    const cases = [
      { directWrites: undefined, fsync: "always", bytes: 1000, direct: true },
      { directWrites: undefined, fsync: "never", bytes: 1000, direct: false },
      { directWrites: undefined, fsync: "never", bytes: 100_000, direct: false },
      { directWrites: "all", fsync: "never", bytes: 1000, direct: false },
      { directWrites: "all", fsync: "never", bytes: 100_000, direct: true },
      { directWrites: false, fsync: "always", bytes: 1000, direct: false },
    ] as const;
    for (const { directWrites, fsync, bytes, direct } of cases) {
      using dir = tempDir("sluice-direct-");
      const engine = await Engine.open(
        dir.path,
        directWrites === undefined ? {} : { directWrites },
      );
      const what = `directWrites ${directWrites}, fsync ${fsync}, ${bytes} bytes`;
      try {
        await engine.createTopic("t", { partitions: 1, config: { fsync } });
        const appended = batch(SEED, bytes);
        await engine.append("t", 0, appended);
        const [file] = logFiles(join(dir.path, "t-0"));
        const size = fs.statSync(file!).size;
        const padded = Math.ceil(appended.length / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES;
        assert.equal(size, direct ? padded : appended.length, what);
      } finally {
        await engine.close();
      }
    }
  });
});

describe("opening a segment that ends past its last batch", () => {
  /** A closed log of a few batches, its last segment's file, and that file's exact size. */
  async function closedLog(dir: string) {
    const log = await PartitionLog.open(dir, { fsync: "always" });
    for (let i = 0; i < 5; i++) await log.append(batch(SEED + i, 333));
    const end = log.logEndOffset;
    await log.close();
    fs.rmSync(join(dir, ".clean-shutdown"));
    const file = logFiles(dir).at(-1)!;
    return { end, file, size: fs.statSync(file).size };
  }

  async function reopen(dir: string) {
    const warnings: string[] = [];
    const log = await PartitionLog.open(dir, {}, { onWarning: (m) => warnings.push(m) });
    return { log, warnings };
  }

  test("zero padding up to a block boundary is cut without a warning", async () => {
    using dir = tempDir("sluice-direct-");
    const { end, file, size } = await closedLog(dir.path);
    fs.truncateSync(file, Math.ceil(size / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES);
    const { log, warnings } = await reopen(dir.path);
    try {
      assert.deepEqual(warnings, []);
      assert.equal(log.logEndOffset, end);
      assert.equal(fs.statSync(file).size, size, "the padding is cut");
    } finally {
      await log.close();
    }
  });

  test("a non-zero byte, or zeros past a block, is a torn tail as before", async () => {
    for (const damage of ["byte", "block"] as const) {
      using dir = tempDir("sluice-direct-");
      const { end, file, size } = await closedLog(dir.path);
      const padded = Math.ceil(size / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES;
      fs.truncateSync(file, damage === "block" ? padded + DIRECT_BLOCK_BYTES : padded);
      if (damage === "byte") {
        const fd = fs.openSync(file, "r+");
        fs.writeSync(fd, new Uint8Array([7]), 0, 1, padded - 1);
        fs.closeSync(fd);
      }
      const { log, warnings } = await reopen(dir.path);
      try {
        assert.equal(warnings.length, 1, `${damage}: ${warnings.join("; ")}`);
        assert.match(warnings[0]!, /torn tail/);
        assert.equal(log.logEndOffset, end);
      } finally {
        await log.close();
      }
    }
  });

  test("zero padding on a segment before the last (rolled, unsealed) is no damage", async () => {
    using dir = tempDir("sluice-direct-");
    const config = { segmentBytes: 4096, fsync: "always" as const };
    const log = await PartitionLog.open(dir.path, config);
    for (let i = 0; i < 12; i++) await log.append(batch(SEED + i, 900));
    const end = log.logEndOffset;
    await log.close();
    fs.rmSync(join(dir.path, ".clean-shutdown"));
    const files = logFiles(dir.path);
    assert.ok(files.length >= 3, `${files.length} segments`);
    const first = files[0]!;
    const size = fs.statSync(first).size;
    fs.truncateSync(first, Math.ceil(size / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES);
    const { log: reopened, warnings } = await reopen(dir.path);
    try {
      assert.deepEqual(warnings, []);
      assert.deepEqual(reopened.corruptions, []);
      assert.equal(reopened.logEndOffset, end);
      assert.equal(fs.statSync(first).size, size);
    } finally {
      await reopened.close();
    }
  });
});

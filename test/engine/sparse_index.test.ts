import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { writeInt32, writeInt64 } from "../../record/mod.ts";
import {
  type IndexCursor,
  indexBatch,
  OFFSET_ENTRY_BYTES,
  OffsetIndex,
  TIME_ENTRY_BYTES,
  TimeIndex,
} from "../../engine/sparse_index.ts";

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function offsetIndexOf(entries: [number, number][]): OffsetIndex {
  const index = new OffsetIndex();
  for (const [relativeOffset, position] of entries) index.append(relativeOffset, position);
  return index;
}

function timeIndexOf(entries: [number, number][]): TimeIndex {
  const index = new TimeIndex();
  for (const [timestamp, relativeOffset] of entries) {
    assert.ok(index.maybeAppend(timestamp, relativeOffset));
  }
  return index;
}

function offsetEntries(index: OffsetIndex): [number, number][] {
  const entries: [number, number][] = [];
  for (let entry = 0; entry < index.count; entry++) {
    entries.push([index.relativeOffsetAt(entry), index.positionAt(entry)]);
  }
  return entries;
}

/** Raw .index bytes from entries, bypassing OffsetIndex so that bad files can be made. */
function rawOffsetFile(entries: [number, number][]): Uint8Array {
  const bytes = new Uint8Array(entries.length * OFFSET_ENTRY_BYTES);
  entries.forEach(([relativeOffset, position], i) => {
    writeInt32(bytes, i * OFFSET_ENTRY_BYTES, relativeOffset);
    writeInt32(bytes, i * OFFSET_ENTRY_BYTES + 4, position);
  });
  return bytes;
}

function rawTimeFile(entries: [number, number][]): Uint8Array {
  const bytes = new Uint8Array(entries.length * TIME_ENTRY_BYTES);
  entries.forEach(([timestamp, relativeOffset], i) => {
    writeInt64(bytes, i * TIME_ENTRY_BYTES, timestamp);
    writeInt32(bytes, i * TIME_ENTRY_BYTES + 8, relativeOffset);
  });
  return bytes;
}

function freshCursor(baseOffset: number): IndexCursor {
  return {
    baseOffset,
    offsetIndex: new OffsetIndex(),
    timeIndex: new TimeIndex(),
    maxTimestamp: -1,
    bytesSinceIndexEntry: 0,
  };
}

describe("OffsetIndex", () => {
  test("an empty index looks every offset up at position 0", () => {
    const index = new OffsetIndex();
    assert.equal(index.count, 0);
    assert.equal(index.lastPosition, 0);
    for (const relativeOffset of [0, 1, 1000, 0xffff_ffff]) {
      assert.equal(index.lookup(relativeOffset), 0);
    }
  });

  test("lookup returns the position of the last entry at or below the offset", () => {
    const index = offsetIndexOf([
      [10, 4096],
      [25, 8200],
      [40, 12_500],
    ]);
    const expected: [number, number][] = [
      [0, 0],
      [9, 0],
      [10, 4096],
      [11, 4096],
      [24, 4096],
      [25, 8200],
      [39, 8200],
      [40, 12_500],
      [1_000_000, 12_500],
    ];
    for (const [relativeOffset, position] of expected) {
      assert.equal(index.lookup(relativeOffset), position, `lookup(${relativeOffset})`);
    }
    assert.equal(index.lastPosition, 12_500);
  });

  test("lookups stay right after the index grows past its first capacity", () => {
    const index = new OffsetIndex();
    for (let entry = 1; entry <= 1000; entry++) index.append(entry * 3, entry * 100);
    assert.equal(index.count, 1000);
    assert.equal(index.lookup(2), 0);
    for (let entry = 1; entry <= 1000; entry++) {
      assert.equal(index.lookup(entry * 3), entry * 100);
      assert.equal(index.lookup(entry * 3 + 2), entry * 100);
    }
  });

  test("encodes entries as big-endian (relativeOffset u32, position u32)", () => {
    const index = offsetIndexOf([
      [1, 4096],
      [0xffff_fffe, 0x8000_0001],
    ]);
    assert.equal(hex(index.encode()), "0000000100001000" + "fffffffe80000001");
    assert.equal(hex(index.encode(1)), "fffffffe80000001");
    assert.equal(index.encode(2).length, 0);
  });

  test("decode round-trips what encode wrote", () => {
    const entries: [number, number][] = [
      [3, 100],
      [7, 5000],
      [0xffff_fffe, 0x7fff_fff0],
    ];
    const decoded = OffsetIndex.decode(offsetIndexOf(entries).encode(), 0x7fff_ffff);
    assert.ok(decoded !== undefined);
    assert.deepEqual(offsetEntries(decoded), entries);
    assert.equal(decoded.lookup(6), 100);
    const empty = OffsetIndex.decode(new Uint8Array(0), 0);
    assert.equal(empty?.count, 0);
  });

  test("decode rejects a file whose size is not a multiple of 8", () => {
    const good = rawOffsetFile([[1, 100]]);
    for (const length of [1, 7, 9, 15]) {
      const bytes = new Uint8Array(length);
      bytes.set(good.subarray(0, Math.min(length, good.length)));
      assert.equal(OffsetIndex.decode(bytes, 1000), undefined, `${length} bytes`);
    }
  });

  test("decode rejects offsets or positions that do not strictly increase", () => {
    const cases: [number, number][][] = [
      [
        [5, 100],
        [5, 200],
      ],
      [
        [5, 100],
        [4, 200],
      ],
      [
        [5, 100],
        [6, 100],
      ],
      [
        [5, 200],
        [6, 100],
      ],
    ];
    for (const entries of cases) {
      assert.equal(OffsetIndex.decode(rawOffsetFile(entries), 1000), undefined, `${entries}`);
    }
  });

  test("decode rejects an entry at position 0, which is never indexed", () => {
    assert.equal(OffsetIndex.decode(rawOffsetFile([[0, 0]]), 1000), undefined);
    assert.equal(OffsetIndex.decode(rawOffsetFile([[3, 0]]), 1000), undefined);
  });

  test("decode rejects a position at or past the end of the log", () => {
    const entries: [number, number][] = [
      [1, 100],
      [2, 999],
    ];
    assert.ok(OffsetIndex.decode(rawOffsetFile(entries), 1000) !== undefined);
    assert.equal(OffsetIndex.decode(rawOffsetFile(entries), 999), undefined);
    assert.equal(OffsetIndex.decode(rawOffsetFile(entries), 500), undefined);
    assert.equal(OffsetIndex.decode(rawOffsetFile([[1, 100]]), 0), undefined);
  });

  test("truncateToPosition drops every entry at or past the position", () => {
    const make = () =>
      offsetIndexOf([
        [1, 100],
        [2, 200],
        [3, 300],
      ]);
    const cases: [number, [number, number][]][] = [
      [
        301,
        [
          [1, 100],
          [2, 200],
          [3, 300],
        ],
      ],
      [
        300,
        [
          [1, 100],
          [2, 200],
        ],
      ],
      [
        250,
        [
          [1, 100],
          [2, 200],
        ],
      ],
      [200, [[1, 100]]],
      [101, [[1, 100]]],
      [100, []],
      [0, []],
    ];
    for (const [position, expected] of cases) {
      const index = make();
      index.truncateToPosition(position);
      assert.deepEqual(offsetEntries(index), expected, `truncate at ${position}`);
      assert.equal(index.lookup(1000), expected.at(-1)?.[1] ?? 0);
    }
  });

  test("appends after a truncation replace the dropped entries", () => {
    const index = offsetIndexOf([
      [1, 100],
      [2, 200],
      [3, 300],
    ]);
    index.truncateToPosition(200);
    index.append(2, 250);
    assert.deepEqual(offsetEntries(index), [
      [1, 100],
      [2, 250],
    ]);
    assert.equal(hex(index.encode(1)), "00000002000000fa");
  });
});

describe("TimeIndex", () => {
  test("an empty index looks every timestamp up at relative offset 0", () => {
    const index = new TimeIndex();
    assert.equal(index.count, 0);
    assert.equal(index.lastTimestamp, -1);
    assert.equal(index.lastRelativeOffset, 0);
    for (const timestamp of [0, 1, 1_700_000_000_000]) assert.equal(index.lookup(timestamp), 0);
  });

  test("lookup returns the batch of the last entry strictly below the timestamp", () => {
    const index = timeIndexOf([
      [1000, 10],
      [2000, 20],
      [3000, 30],
    ]);
    const expected: [number, number][] = [
      [0, 0],
      [1000, 0],
      [1001, 10],
      [2000, 10],
      [2001, 20],
      [3000, 20],
      [3001, 30],
      [Number.MAX_SAFE_INTEGER, 30],
    ];
    for (const [timestamp, relativeOffset] of expected) {
      assert.equal(index.lookup(timestamp), relativeOffset, `lookup(${timestamp})`);
    }
  });

  test("maybeAppend adds an entry only when the timestamp grows", () => {
    const index = new TimeIndex();
    assert.equal(index.maybeAppend(100, 1), true);
    assert.equal(index.maybeAppend(100, 2), false);
    assert.equal(index.maybeAppend(50, 3), false);
    assert.equal(index.maybeAppend(101, 4), true);
    assert.equal(index.count, 2);
    assert.equal(index.lastTimestamp, 101);
    assert.equal(index.lastRelativeOffset, 4);
  });

  test("encodes entries as big-endian (timestamp i64, relativeOffset u32)", () => {
    const index = timeIndexOf([
      [1_700_000_000_000, 5],
      [1_700_000_000_001, 0xffff_fffe],
    ]);
    assert.equal(
      hex(index.encode()),
      "0000018bcfe56800" + "00000005" + "0000018bcfe56801" + "fffffffe",
    );
    assert.equal(hex(index.encode(1)), "0000018bcfe56801fffffffe");
  });

  test("decode round-trips what encode wrote", () => {
    const index = timeIndexOf([
      [0, 1],
      [1_700_000_000_000, 9],
      [Number.MAX_SAFE_INTEGER, 12],
    ]);
    const decoded = TimeIndex.decode(index.encode(), 13);
    assert.ok(decoded !== undefined);
    assert.deepEqual(decoded.encode(), index.encode());
    assert.equal(decoded.lookup(1_700_000_000_000), 1);
    assert.equal(decoded.lookup(Number.MAX_SAFE_INTEGER), 9);
    assert.equal(TimeIndex.decode(new Uint8Array(0), 0)?.count, 0);
  });

  test("decode rejects a file whose size is not a multiple of 12", () => {
    for (const length of [1, 8, 11, 13, 23]) {
      assert.equal(TimeIndex.decode(new Uint8Array(length), 100), undefined, `${length} bytes`);
    }
  });

  test("decode rejects timestamps that do not increase", () => {
    const equal: [number, number][] = [
      [1000, 1],
      [1000, 2],
    ];
    const falling: [number, number][] = [
      [1000, 1],
      [999, 2],
    ];
    assert.equal(TimeIndex.decode(rawTimeFile(equal), 100), undefined);
    assert.equal(TimeIndex.decode(rawTimeFile(falling), 100), undefined);
  });

  test("decode rejects relative offsets that fall back or pass the end", () => {
    const falling: [number, number][] = [
      [1000, 5],
      [2000, 4],
    ];
    assert.equal(TimeIndex.decode(rawTimeFile(falling), 100), undefined);
    const entries: [number, number][] = [
      [1000, 5],
      [2000, 9],
    ];
    assert.ok(TimeIndex.decode(rawTimeFile(entries), 10) !== undefined);
    assert.equal(TimeIndex.decode(rawTimeFile(entries), 9), undefined);
  });

  test("decode rejects a timestamp outside the safe-integer range", () => {
    const bytes = rawTimeFile([[1000, 1]]);
    bytes.set([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0);
    assert.equal(TimeIndex.decode(bytes, 100), undefined);
  });

  test("truncateToRelativeOffset drops every entry at or past the offset", () => {
    const make = () =>
      timeIndexOf([
        [100, 1],
        [200, 5],
        [300, 9],
      ]);
    const cases: [number, number][] = [
      [10, 3],
      [9, 2],
      [6, 2],
      [5, 1],
      [1, 0],
      [0, 0],
    ];
    for (const [relativeOffset, count] of cases) {
      const index = make();
      index.truncateToRelativeOffset(relativeOffset);
      assert.equal(index.count, count, `truncate at ${relativeOffset}`);
    }
    const index = make();
    index.truncateToRelativeOffset(5);
    assert.equal(index.lastTimestamp, 100);
    assert.equal(index.maybeAppend(150, 5), true, "a smaller timestamp is accepted again");
  });
});

describe("indexBatch", () => {
  type Batch = { baseOffset: number; position: number; size: number; maxTimestamp: number };

  /** Lays batches of the given sizes and record counts end to end from position 0. */
  function layout(sizes: number[], recordCount = 3, baseOffset = 1000): Batch[] {
    const batches: Batch[] = [];
    let position = 0;
    let offset = baseOffset;
    for (const [i, size] of sizes.entries()) {
      batches.push({ baseOffset: offset, position, size, maxTimestamp: 5000 + i });
      position += size;
      offset += recordCount;
    }
    return batches;
  }

  /** The rule written out plainly: the first batch >= interval bytes after the last entry. */
  function expectedEntries(batches: Batch[], interval: number, base: number): [number, number][] {
    const entries: [number, number][] = [];
    let lastEntryPosition = 0;
    for (const batch of batches) {
      if (batch.position > 0 && batch.position - lastEntryPosition >= interval) {
        entries.push([batch.baseOffset - base, batch.position]);
        lastEntryPosition = batch.position;
      }
    }
    return entries;
  }

  test("adds an entry for the first batch at least indexIntervalBytes after the last", () => {
    const sizes = [60, 60, 60, 60, 60, 60, 60];
    const cursor = freshCursor(1000);
    const batches = layout(sizes);
    for (const batch of batches) indexBatch(cursor, batch, 100);
    assert.deepEqual(offsetEntries(cursor.offsetIndex), [
      [6, 120],
      [12, 240],
      [18, 360],
    ]);
    assert.deepEqual(offsetEntries(cursor.offsetIndex), expectedEntries(batches, 100, 1000));
  });

  test("follows the rule for batches of mixed sizes and intervals", () => {
    const sizes = [61, 4000, 61, 61, 9000, 100, 100, 100, 5000, 61, 61, 61, 70_000, 61];
    for (const interval of [1, 61, 100, 4096, 10_000, 1_000_000]) {
      const cursor = freshCursor(1000);
      const batches = layout(sizes, 7);
      for (const batch of batches) indexBatch(cursor, batch, interval);
      assert.deepEqual(
        offsetEntries(cursor.offsetIndex),
        expectedEntries(batches, interval, 1000),
        `indexIntervalBytes ${interval}`,
      );
    }
  });

  test("never adds an entry for the batch at position 0", () => {
    const cursor = freshCursor(0);
    cursor.bytesSinceIndexEntry = 1_000_000;
    indexBatch(cursor, { baseOffset: 0, position: 0, size: 500, maxTimestamp: 10 }, 1);
    assert.equal(cursor.offsetIndex.count, 0);
    assert.equal(cursor.timeIndex.count, 0);
    indexBatch(cursor, { baseOffset: 4, position: 500, size: 500, maxTimestamp: 11 }, 1);
    assert.deepEqual(offsetEntries(cursor.offsetIndex), [[4, 500]]);
  });

  test("adds a time entry with an offset entry only when the largest timestamp grew", () => {
    const cursor = freshCursor(100);
    const timestamps = [50, 40, 70, 70, 60, 90, 80];
    let position = 0;
    timestamps.forEach((maxTimestamp, i) => {
      indexBatch(cursor, { baseOffset: 100 + i * 2, position, size: 10, maxTimestamp }, 10);
      position += 10;
    });
    // Offset entries at every batch after the first; time entries where the maximum grew.
    assert.equal(cursor.offsetIndex.count, timestamps.length - 1);
    assert.deepEqual(
      [cursor.timeIndex.count, cursor.timeIndex.lastTimestamp, cursor.maxTimestamp],
      [3, 90, 90],
    );
    const decoded = TimeIndex.decode(cursor.timeIndex.encode(), 13);
    assert.ok(decoded !== undefined);
    // Entries: (50, 2) at batch 1 (max so far 50), (70, 4), (90, 10).
    assert.equal(decoded.lookup(51), 2);
    assert.equal(decoded.lookup(71), 4);
    assert.equal(decoded.lookup(91), 10);
    assert.equal(decoded.lookup(50), 0);
  });

  test("tracks the largest timestamp even between index entries", () => {
    const cursor = freshCursor(0);
    indexBatch(cursor, { baseOffset: 0, position: 0, size: 10, maxTimestamp: 5 }, 1000);
    indexBatch(cursor, { baseOffset: 1, position: 10, size: 10, maxTimestamp: 9 }, 1000);
    indexBatch(cursor, { baseOffset: 2, position: 20, size: 10, maxTimestamp: 7 }, 1000);
    assert.equal(cursor.maxTimestamp, 9);
    assert.equal(cursor.offsetIndex.count, 0);
    assert.equal(cursor.bytesSinceIndexEntry, 30);
  });
});

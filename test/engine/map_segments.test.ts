import assert from "node:assert/strict";
import { test } from "node:test";
import type { FileIO, MapRange } from "../../engine/io.ts";
import { realFileIO } from "../../engine/mod.ts";
import { PartitionLog } from "../../engine/partition_log.ts";
import { ACTIVE_MAP_STEP_BYTES, ACTIVE_MAP_WINDOW_BYTES } from "../../engine/segment.ts";
import { tempDir } from "../helpers.ts";
import {
  BASE_TIMESTAMP_MS,
  batchOfSpecs,
  decodeRead,
  hex,
  readAll,
  recordValue,
  simpleBatch,
} from "./partition_log_helpers.ts";

/** realFileIO, counting the files it is asked to map. */
function countingIO(): { io: FileIO; maps: () => number } {
  let maps = 0;
  const io: FileIO = {
    ...realFileIO,
    mapFile(path, range) {
      maps++;
      return realFileIO.mapFile(path, range);
    },
  };
  return { io, maps: () => maps };
}

const CONFIG = { fsync: "never" as const, segmentBytes: 4096, indexIntervalBytes: 512 };

async function filledLog(dir: string, io: FileIO, mapSegments?: boolean) {
  // A tail cache of one chunk's worth at most: reads of sealed segments go to the file.
  const log = await PartitionLog.open(dir, CONFIG, {
    io,
    onWarning: () => {},
    tailCacheBytes: 0,
    ...(mapSegments === undefined ? {} : { mapSegments }),
  });
  while (log.segmentBaseOffsets().length < 4) {
    const tag = log.logEndOffset;
    await log.append(batchOfSpecs([{ tag, valueBytes: 300, timestamp: BASE_TIMESTAMP_MS + tag }]));
  }
  return log;
}

test("a log opened with mapSegments: false reads sealed segments unmapped", async () => {
  using dir = tempDir();
  const { io, maps } = countingIO();
  const log = await filledLog(dir.path, io, false);
  const records = readAll(log);
  assert.equal(records.length, log.logEndOffset, "every record read back");
  assert.deepEqual(
    records.map((r) => r.offset),
    Array.from({ length: log.logEndOffset }, (_, i) => i),
  );
  assert.equal(maps(), 0, "no file was mapped");
  await log.close();
});

test("a log opened with the default maps sealed segments where it reads them", async () => {
  using dir = tempDir();
  const { io, maps } = countingIO();
  const log = await filledLog(dir.path, io);
  const records = readAll(log);
  assert.equal(records.length, log.logEndOffset);
  // The runtime may have no mapping (Deno: mapFile answers undefined), but it was asked.
  assert.ok(maps() > 0, "sealed segments were offered to mapFile");
  await log.close();
});

test("a one-record read of an unmapped segment reads two index intervals, not 64 KiB", async () => {
  using dir = tempDir();
  let bytesRead = 0;
  const io: FileIO = {
    ...realFileIO,
    readAt(fd, position, length) {
      bytesRead += length;
      return realFileIO.readAt(fd, position, length);
    },
  };
  const config = { fsync: "never" as const, segmentBytes: 256 * 1024, indexIntervalBytes: 512 };
  const log = await PartitionLog.open(dir.path, config, {
    io,
    onWarning: () => {},
    tailCacheBytes: 0,
    mapSegments: false,
  });
  while (log.segmentBaseOffsets().length < 2) {
    const tag = log.logEndOffset;
    await log.append(batchOfSpecs([{ tag, valueBytes: 300, timestamp: BASE_TIMESTAMP_MS + tag }]));
  }
  const sealedEnd = log.segmentBaseOffsets()[1]!;
  for (let offset = 0; offset < sealedEnd; offset += 7) {
    bytesRead = 0;
    const view = log.read(offset, 1).views[0]!;
    assert.equal(Number(new DataView(view.buffer, view.byteOffset).getBigInt64(0)), offset);
    // Two index intervals past the entry and the batch itself (about 400 bytes), not 64 KiB.
    assert.ok(bytesRead <= 4 * 512, `read(${offset}, 1) read ${bytesRead} bytes`);
  }
  await log.close();
});

test("a read given a scratch fills it instead of a new buffer, with the same batches", async () => {
  using dir = tempDir();
  const log = await filledLog(dir.path, realFileIO, false);
  const scratch = new Uint8Array(64 * 1024);
  try {
    for (let offset = 0; offset < log.logEndOffset; offset += 3) {
      for (const maxBytes of [1, 2000]) {
        const plain = log.read(offset, maxBytes);
        const read = log.read(offset, maxBytes, { scratch });
        assert.deepEqual(
          read.views.map((v) => [...v]),
          plain.views.map((v) => [...v]),
        );
        assert.equal(read.nextOffset, plain.nextOffset);
        // The tail cache holds none of the sealed segments: each is read with pread.
        if (offset < log.segmentBaseOffsets().at(-1)!) {
          assert.equal(read.views[0]!.buffer, scratch.buffer, `read(${offset}) used the scratch`);
        }
      }
    }
  } finally {
    await log.close();
  }
});

test("catch-up reads of a growing active segment map bounded windows of it", async () => {
  using dir = tempDir();
  const asked: (MapRange | undefined)[] = [];
  let mappedBytes = 0;
  const io: FileIO = {
    ...realFileIO,
    mapFile(path, range) {
      asked.push(range);
      const mapping = realFileIO.mapFile(path, range);
      mappedBytes += mapping?.length ?? 0;
      return mapping;
    },
  };
  const log = await PartitionLog.open(
    dir.path,
    { fsync: "never" },
    {
      io,
      onWarning: () => {},
      tailCacheBytes: 0,
    },
  );
  try {
    // A reader three steps behind the writer, reading as fast as it writes, then catching up:
    // every read is below the tail cache of the one (active) segment.
    const valueBytes = 1000;
    let offset = 0;
    let readBytes = 0;
    const readOnce = () => {
      const result = log.read(offset, 64 * 1024);
      for (const batch of decodeRead(result)) {
        for (const record of batch.records) {
          if (record.offset < offset) continue;
          assert.equal(record.offset, offset, "records in order, none skipped");
          if (offset % 97 === 0) assert.equal(record.value, hex(recordValue(offset, valueBytes)));
          offset++;
        }
      }
      readBytes += result.sizeBytes;
    };
    while (log.sizeBytes < 6 * ACTIVE_MAP_STEP_BYTES) {
      await log.append(simpleBatch(64, { firstTag: log.logEndOffset, valueBytes }));
      if (log.sizeBytes > 3 * ACTIVE_MAP_STEP_BYTES) readOnce();
    }
    await log.flush();
    while (offset < log.highWatermark) readOnce();
    assert.equal(log.segmentBaseOffsets().length, 1, "all of it in the active segment");
    assert.ok(asked.length > 0, "catch-up reads were offered to mapFile");
    for (const range of asked) {
      assert.ok(range !== undefined, "never the whole growing file");
      assert.ok(range.bytes <= ACTIVE_MAP_WINDOW_BYTES, `a window of ${range.bytes} bytes`);
    }
    // Where the runtime maps (Bun), the bytes mapped grow with the bytes read, not their square.
    assert.ok(
      mappedBytes <= 2 * readBytes + ACTIVE_MAP_WINDOW_BYTES,
      `${mappedBytes} bytes mapped for ${readBytes} read`,
    );
  } finally {
    await log.close();
  }
});

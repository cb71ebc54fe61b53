// Tail-cache chunks lent to fetch answers (engine/segment.ts, engine/cold_read.ts): a view of
// the tail cache read in a lending scope and counted with retainColdView keeps its chunk out of
// reuse until coldViewWritten gives it back, however far the tail cache has moved on; once
// every view came back, the chunk's memory is reused for later appends. A view read outside a
// lending scope keeps its chunk out of reuse for good.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  beginColdViews,
  coldViewWritten,
  endColdViews,
  retainColdView,
} from "../../engine/cold_read.ts";
import { encodeRecordBatch, PartitionLog, type ReadResult } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";

/** A small tail cache: the log's first chunks leave it after a few MiB of appends. */
const TAIL_CACHE_BYTES = 2 * 1024 * 1024;
const VALUE_BYTES = 10 * 1024;

let stamp = 0;
function batch(): Uint8Array {
  stamp++;
  const value = new Uint8Array(VALUE_BYTES);
  for (let i = 0; i < VALUE_BYTES; i += 64) value[i] = (stamp * 31 + i) & 0xff;
  return encodeRecordBatch([{ value, timestamp: 1_700_000_000_000 + stamp }], {
    timestamp: 1_700_000_000_000 + stamp,
  });
}

async function appendBytes(log: PartitionLog, bytes: number): Promise<void> {
  for (let written = 0; written < bytes; written += VALUE_BYTES) await log.append(batch());
}

/** A log with a small tail cache, in one segment. */
function openLog(dir: string): Promise<PartitionLog> {
  return PartitionLog.open(
    dir,
    { fsync: "never", segmentBytes: 256 * 1024 * 1024 },
    { tailCacheBytes: TAIL_CACHE_BYTES },
  );
}

/** A read in a lending scope, each view counted as an answer's (as the server's fetch does). */
function lentRead(log: PartitionLog, offset: number, maxBytes: number): ReadResult {
  beginColdViews({ lendTail: true });
  try {
    const read = log.read(offset, maxBytes);
    for (const view of read.views) retainColdView(view);
    return read;
  } finally {
    endColdViews();
  }
}

function assertIntact(read: ReadResult, kept: Uint8Array[], message: string): void {
  for (let i = 0; i < read.views.length; i++) assert.deepEqual(read.views[i], kept[i], message);
}

describe("tail-cache chunks lent to answers", () => {
  test("a chunk comes back once its lent views are written, not before", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    try {
      await appendBytes(log, 512 * 1024);
      const lent = lentRead(log, 3, 3 * VALUE_BYTES);
      assert.ok(lent.views.length >= 1, "the read answers batches");
      const kept = lent.views.map((view) => view.slice());
      const buffers = new Set(lent.views.map((view) => view.buffer));

      // The tail cache moves far past the lent chunk: it is dropped, and its memory must not
      // be reused while a view of it is out.
      await appendBytes(log, 4 * TAIL_CACHE_BYTES);
      assertIntact(lent, kept, "a lent view is intact");
      const later = lentRead(log, log.highWatermark - 2, 2 * VALUE_BYTES);
      for (const view of later.views) {
        assert.ok(!buffers.has(view.buffer), "no later chunk lies in a chunk with views out");
        coldViewWritten(view);
      }

      // Its views written, the chunk goes back to the pool: the next chunks come from it.
      for (const view of lent.views) coldViewWritten(view);
      await appendBytes(log, 2 * 1024 * 1024);
      const again = new Set<ArrayBufferLike>();
      for (let offset = log.highWatermark - 200; offset < log.highWatermark; offset++) {
        const read = lentRead(log, offset, VALUE_BYTES);
        for (const view of read.views) {
          again.add(view.buffer);
          coldViewWritten(view);
        }
      }
      assert.ok(
        [...buffers].some((buffer) => again.has(buffer)),
        "a chunk whose views all came back is reused by later appends",
      );
    } finally {
      await log.close();
    }
  });

  test("a view read outside a lending scope keeps its chunk for good", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    try {
      await appendBytes(log, 512 * 1024);
      const plain = log.read(5, 2 * VALUE_BYTES);
      const kept = plain.views.map((view) => view.slice());
      // Counted and given back as if it had gone out in an answer: still never reused, since
      // a reader outside the scope may hold views of the chunk nobody counted.
      for (const view of plain.views) {
        retainColdView(view);
        coldViewWritten(view);
      }
      for (let round = 0; round < 4; round++) {
        await appendBytes(log, 2 * TAIL_CACHE_BYTES);
        assertIntact(plain, kept, "the view is intact");
      }
    } finally {
      await log.close();
    }
  });

  test("a view written more often than retained frees no later answer's view", async () => {
    using dir = tempDir();
    const log = await openLog(dir.path);
    try {
      await appendBytes(log, 512 * 1024);
      const first = lentRead(log, 2, VALUE_BYTES);
      // Written twice: the second finds nothing counted, and the count stays at 0 (below it,
      // the next answer's view would bring it back to 0 and free its chunk early).
      for (const view of first.views) coldViewWritten(view);
      for (const view of first.views) coldViewWritten(view);
      const second = lentRead(log, 2, VALUE_BYTES);
      const kept = second.views.map((view) => view.slice());
      for (let round = 0; round < 3; round++) {
        await appendBytes(log, 2 * TAIL_CACHE_BYTES);
        assertIntact(second, kept, "still out: intact");
      }
      for (const view of second.views) coldViewWritten(view);
    } finally {
      await log.close();
    }
  });
});

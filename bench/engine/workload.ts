// What the storage-engine benchmark feeds the engine, and how it watches it: a pool of
// pre-encoded batches of 1 KiB records (encoding is the client's work, not the engine's), a
// FileIO wrapper that counts the engine's writes, fsyncs and reads, and small timing helpers.

import { encodeRecordBatch, type FileIO, realFileIO } from "../../engine/mod.ts";
import { BATCH_HEADER_BYTES } from "../../record/mod.ts";

export const RECORD_VALUE_BYTES = 1024;
/** The engine's default maxBatchBytes: pool batches are built to fit under it. */
export const BATCH_BYTES_LIMIT = 1024 * 1024;
/** Distinct batches in the pool; the engine copies each append, so a few suffice. */
export const POOL_BATCHES = 8;

export type BatchPool = { batches: Uint8Array[]; batchBytes: number; recordsPerBatch: number };

function randomValue(bytes: number): Uint8Array {
  const value = new Uint8Array(bytes);
  // getRandomValues fills at most 65536 bytes per call.
  for (let at = 0; at < bytes; at += 65536) {
    crypto.getRandomValues(value.subarray(at, Math.min(bytes, at + 65536)));
  }
  return value;
}

function encodeBatch(recordCount: number, seed: number): Uint8Array {
  const values = randomValue(recordCount * RECORD_VALUE_BYTES);
  const timestamp = Date.now() + seed;
  const records = Array.from({ length: recordCount }, (_, i) => ({
    value: values.subarray(i * RECORD_VALUE_BYTES, (i + 1) * RECORD_VALUE_BYTES),
    timestamp,
  }));
  return encodeRecordBatch(records, { timestamp });
}

/**
 * Batches of `recordsPerBatch` 1 KiB records (null keys, random values), as many records as
 * fit under `batchBytesMax`. `batchBytesMax` = 1 KiB + overhead gives one record per batch.
 */
export function makeBatchPool(batchBytesMax: number, count = POOL_BATCHES): BatchPool {
  const recordBytes = encodeBatch(1, 0).length - BATCH_HEADER_BYTES;
  // Offset deltas past 63 take a second varint byte: start from an estimate that counts it,
  // step up while one more record fits, then down while the batch is too large.
  let recordsPerBatch = Math.max(
    1,
    Math.floor((batchBytesMax - BATCH_HEADER_BYTES) / (recordBytes + 1)),
  );
  while (encodeBatch(recordsPerBatch + 1, 0).length <= batchBytesMax) recordsPerBatch++;
  let probe = encodeBatch(recordsPerBatch, 0);
  while (probe.length > batchBytesMax && recordsPerBatch > 1) {
    recordsPerBatch--;
    probe = encodeBatch(recordsPerBatch, 0);
  }
  if (probe.length > batchBytesMax) {
    throw new RangeError(`One ${RECORD_VALUE_BYTES}-byte record does not fit ${batchBytesMax}`);
  }
  const batches = [probe];
  for (let i = 1; i < count; i++) batches.push(encodeBatch(recordsPerBatch, i));
  return { batches, batchBytes: probe.length, recordsPerBatch };
}

export type IOCounts = {
  writeCalls: number;
  writeBytes: number;
  /** Summed wall time of the writes and of the fdatasyncs; both may overlap in time. */
  writeMs: number;
  syncCalls: number;
  syncMs: number;
  readCalls: number;
  readBytes: number;
};

/** Wraps the real FileIO to count calls and bytes; the extra cost is one call per operation. */
export function countingIO(base: FileIO = realFileIO): { io: FileIO; counts: IOCounts } {
  const counts: IOCounts = {
    writeCalls: 0,
    writeBytes: 0,
    writeMs: 0,
    syncCalls: 0,
    syncMs: 0,
    readCalls: 0,
    readBytes: 0,
  };
  const io: FileIO = {
    ...base,
    writeAll(fd, buffers, position) {
      counts.writeCalls++;
      for (const buffer of buffers) counts.writeBytes += buffer.length;
      const startMs = nowMs();
      return base.writeAll(fd, buffers, position).finally(() => {
        counts.writeMs += nowMs() - startMs;
      });
    },
    datasync(fd) {
      counts.syncCalls++;
      const startMs = nowMs();
      return base.datasync(fd).finally(() => {
        counts.syncMs += nowMs() - startMs;
      });
    },
    readAt(fd, position, length) {
      const bytes = base.readAt(fd, position, length);
      counts.readCalls++;
      counts.readBytes += bytes.length;
      return bytes;
    },
    truncate: (fd, length) => base.truncate(fd, length),
    mapFile: (path, range) => base.mapFile(path, range),
  };
  return { io, counts };
}

export function nowMs(): number {
  return performance.now();
}

/** MB/s with MB = 10^6 bytes, as dd reports. */
export function mbPerSecond(bytes: number, seconds: number): number {
  return round(bytes / 1e6 / seconds, 1);
}

export function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${round(bytes / 1024 ** 3, 2)} GiB`;
  if (bytes >= 1024 ** 2) return `${round(bytes / 1024 ** 2, 1)} MiB`;
  return `${round(bytes / 1024, 1)} KiB`;
}

/** Progress lines go to stderr so that stdout stays the result. */
export function progress(message: string): void {
  process.stderr.write(`[bench:engine] ${message}\n`);
}

/** A seeded PRNG (mulberry32), so lookup runs replay the same offsets. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The value at quantile `q` (0..1) of an ascending array. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

// The read side: a catch-up consumer reading a closed log from offset 0 after a fresh open, and
// random single-offset reads. Records are never decoded (the engine hands out views of whole
// batches). Every pass touches the bytes it reads, so no figure counts views nobody read:
//   1. the first read after the open copies each view out (as dd copies into its buffer); the
//      engine checks each batch's CRC-32C on this first read (readFirstMBps);
//   2. the same read again, copying out: the batches are checked, as in a broker that has
//      appended or scrubbed them (readMBps);
//   3. again, with a CRC-32C over every view in the benchmark (readChecksumMBps).

import { crc32c } from "../../record/mod.ts";
import { PartitionLog } from "../../engine/mod.ts";
import { readBatchHeader } from "../../record/mod.ts";
import {
  countingIO,
  mbPerSecond,
  nowMs,
  progress,
  quantile,
  round,
  seededRandom,
} from "./workload.ts";

export const READ_MAX_BYTES = 1024 * 1024;

export type CatchUpFigures = {
  bytes: number;
  calls: number;
  seconds: number;
  mbps: number;
};

/** Reads [0, highWatermark) in reads of at most `maxBytes`; `touch` sees every view. */
export function catchUp(
  log: PartitionLog,
  maxBytes: number,
  touch: (view: Uint8Array) => void,
): CatchUpFigures {
  const end = log.highWatermark;
  let offset = log.logStartOffset;
  let bytes = 0;
  let calls = 0;
  const startMs = nowMs();
  while (offset < end) {
    const result = log.read(offset, maxBytes);
    for (const view of result.views) {
      bytes += view.length;
      touch(view);
    }
    if (result.nextOffset <= offset) throw new Error(`read at offset ${offset} made no progress`);
    offset = result.nextOffset;
    calls++;
  }
  const seconds = (nowMs() - startMs) / 1000;
  return { bytes, calls, seconds: round(seconds, 3), mbps: mbPerSecond(bytes, seconds) };
}

export type LookupFigures = {
  count: number;
  meanNs: number;
  p50Ns: number;
  p99Ns: number;
  maxNs: number;
  /** Mean bytes of the batch view a one-byte read returned. */
  viewBytesMean: number;
  /** Sealed segments are read through a mapping; the active one from its cache or by pread. */
  sealedCount: number;
  sealedMeanNs: number;
  activeCount: number;
  activeMeanNs: number;
};

/** Throws unless the first returned batch holds `offset`. */
function checkHolds(offset: number, views: Uint8Array[]): void {
  const first = views[0];
  if (first === undefined) throw new Error(`read at offset ${offset} returned nothing`);
  const header = readBatchHeader(first);
  if (offset < header.baseOffset || offset > header.baseOffset + header.lastOffsetDelta) {
    throw new Error(`read at offset ${offset} returned the batch at ${header.baseOffset}`);
  }
}

/** `count` reads of one byte at random offsets in [logStart, highWatermark), each timed. */
export function randomLookups(log: PartitionLog, count: number, seed: number): LookupFigures {
  const random = seededRandom(seed);
  const start = log.logStartOffset;
  const span = log.highWatermark - start;
  const activeBase = log.segmentBaseOffsets().at(-1) ?? start;
  const samplesNs = new Float64Array(count);
  let viewBytes = 0;
  const sealed = { count: 0, ns: 0 };
  const active = { count: 0, ns: 0 };
  for (let i = 0; i < count; i++) {
    const offset = start + Math.floor(random() * span);
    const beforeMs = nowMs();
    const result = log.read(offset, 1);
    const ns = (nowMs() - beforeMs) * 1e6;
    samplesNs[i] = ns;
    const where = offset >= activeBase ? active : sealed;
    where.count++;
    where.ns += ns;
    checkHolds(offset, result.views);
    viewBytes += result.sizeBytes;
  }
  samplesNs.sort();
  return {
    count,
    meanNs: Math.round((sealed.ns + active.ns) / count),
    p50Ns: Math.round(quantile(samplesNs, 0.5)),
    p99Ns: Math.round(quantile(samplesNs, 0.99)),
    maxNs: Math.round(quantile(samplesNs, 1)),
    viewBytesMean: Math.round(viewBytes / count),
    sealedCount: sealed.count,
    sealedMeanNs: Math.round(sealed.ns / Math.max(1, sealed.count)),
    activeCount: active.count,
    activeMeanNs: Math.round(active.ns / Math.max(1, active.count)),
  };
}

/** Copies each view into one reused buffer: reads every byte, as dd's read does. */
function copyOut(): (view: Uint8Array) => void {
  const sink = new Uint8Array(READ_MAX_BYTES);
  return (view) => {
    for (let at = 0; at < view.length; at += sink.length) {
      sink.set(view.subarray(at, Math.min(view.length, at + sink.length)));
    }
  };
}

export type ReadPhaseFigures = {
  openMs: number;
  /** The first read after the open: the engine checks each batch's CRC once. */
  firstRead: CatchUpFigures;
  read: CatchUpFigures;
  checksum: CatchUpFigures & { crc32c: string };
  lookup: LookupFigures;
  /** Bytes the engine read with pread (the rest came from mappings of sealed segments). */
  preadBytes: number;
};

/** Reopens a cleanly closed log and runs the catch-up reads and the lookups on it. */
export async function readPhase(dir: string, lookups: number): Promise<ReadPhaseFigures> {
  const { io, counts } = countingIO();
  const openStartMs = nowMs();
  const log = await PartitionLog.open(dir, {}, { io, onWarning: (m) => progress(`warning: ${m}`) });
  const openMs = round(nowMs() - openStartMs, 2);
  try {
    progress(`read: opened in ${openMs} ms; first catch-up read, copying the bytes out`);
    const firstRead = catchUp(log, READ_MAX_BYTES, copyOut());
    const preadBytes = counts.readBytes;
    progress(`read: first ${firstRead.mbps} MB/s; again, batches checked`);
    const read = catchUp(log, READ_MAX_BYTES, copyOut());
    progress(`read: ${read.mbps} MB/s; again with CRC-32C over every view`);
    let crc = 0;
    const checksum = catchUp(log, READ_MAX_BYTES, (view) => {
      crc = crc32c(view, crc);
    });
    progress(`read+crc: ${checksum.mbps} MB/s; ${lookups} random one-byte reads`);
    const lookup = randomLookups(log, lookups, 0x5eed);
    return {
      openMs,
      firstRead,
      read,
      checksum: { ...checksum, crc32c: (crc >>> 0).toString(16).padStart(8, "0") },
      lookup,
      preadBytes,
    };
  } finally {
    await log.close();
  }
}

/**
 * Reopens a cleanly closed log (timing the open) and times random one-byte reads on it: first
 * right after the open (each batch is CRC-checked when a read first reaches it), then after one
 * catch-up read has checked every batch, as in a broker that appended or scrubbed them.
 */
export async function lookupPhase(
  dir: string,
  lookups: number,
): Promise<LookupFigures & { openMs: number; firstAfterOpen: LookupFigures }> {
  const openStartMs = nowMs();
  const log = await PartitionLog.open(dir, {}, { onWarning: (m) => progress(`warning: ${m}`) });
  const openMs = round(nowMs() - openStartMs, 2);
  try {
    const firstAfterOpen = randomLookups(log, lookups, 0x10c4);
    catchUp(log, READ_MAX_BYTES, () => {});
    return { ...randomLookups(log, lookups, 0x10c5), openMs, firstAfterOpen };
  } finally {
    await log.close();
  }
}

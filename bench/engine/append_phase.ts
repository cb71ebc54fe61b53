// The append phase: a pipelining producer keeps `inFlight` appends un-awaited, the clock stops
// after a final flush() (write + fdatasync), as `dd conv=fdatasync` stops only after its
// fdatasync. The FileIO is wrapped to count the writes and fsyncs the engine issued, which
// shows how well it coalesces (group commit) under this load.

import {
  type AppendResult,
  type FsyncPolicy,
  type LogConfig,
  PartitionLog,
} from "../../engine/mod.ts";
import {
  type BatchPool,
  countingIO,
  formatBytes,
  mbPerSecond,
  nowMs,
  progress,
  round,
} from "./workload.ts";

export type AppendFigures = {
  bytes: number;
  batches: number;
  seconds: number;
  mbps: number;
  /** writev calls (each may cover many batches) and fdatasync calls the engine made. */
  writeCalls: number;
  writeBytesMean: number;
  syncCalls: number;
  batchesPerSyncMean: number;
  /** Summed wall time inside writev and fdatasync (they may overlap: seals sync meanwhile). */
  writeMs: number;
  syncMs: number;
};

export type AppendRun = {
  dir: string;
  pool: BatchPool;
  targetBytes: number;
  fsync: FsyncPolicy;
  inFlight: number;
  config?: Partial<LogConfig>;
};

const PROGRESS_INTERVAL_MS = 2000;

export async function appendPhase(run: AppendRun): Promise<AppendFigures> {
  const { io, counts } = countingIO();
  const log = await PartitionLog.open(
    run.dir,
    { ...run.config, fsync: run.fsync },
    { io, onWarning: (message) => progress(`engine warning: ${message}`) },
  );
  const { batches: pool, batchBytes } = run.pool;
  const batchCount = Math.ceil(run.targetBytes / batchBytes);
  const ring: Promise<AppendResult>[] = [];
  const label = `append fsync=${JSON.stringify(run.fsync)}`;
  const startMs = nowMs();
  let reportMs = startMs;
  for (let i = 0; i < batchCount; i++) {
    const slot = i % run.inFlight;
    if (i >= run.inFlight) await ring[slot];
    const appended = log.append(pool[i % pool.length]!);
    // Awaited later; a handler now keeps an early rejection from counting as unhandled.
    appended.catch(() => {});
    ring[slot] = appended;
    if ((i & 63) === 0 && nowMs() - reportMs >= PROGRESS_INTERVAL_MS) {
      reportMs = nowMs();
      const done = i * batchBytes;
      const rate = mbPerSecond(done, (reportMs - startMs) / 1000);
      progress(`${label}: ${formatBytes(done)} of ${formatBytes(run.targetBytes)}, ${rate} MB/s`);
    }
  }
  await Promise.all(ring);
  await log.flush();
  const seconds = (nowMs() - startMs) / 1000;
  // Counted before close(), whose own fsyncs are not part of the timed run.
  const { writeCalls, writeBytes, syncCalls, writeMs, syncMs } = counts;
  await log.close();
  const bytes = batchCount * batchBytes;
  return {
    bytes,
    batches: batchCount,
    seconds: round(seconds, 3),
    mbps: mbPerSecond(bytes, seconds),
    writeCalls,
    writeBytesMean: Math.round(writeBytes / Math.max(1, writeCalls)),
    syncCalls,
    batchesPerSyncMean: round(batchCount / Math.max(1, syncCalls), 2),
    writeMs: round(writeMs, 1),
    syncMs: round(syncMs, 1),
  };
}

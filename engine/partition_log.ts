// A partition log: an ordered list of segments, the last one active. This file holds the write
// path (validate, assign offsets, copy into the tail chunks, group-committed writes and fsyncs)
// and the lifecycle (open, roll, retention, close). The read path is in log_read.ts.
//
//   append(batch) ──validate──► active segment chunk ──► pending acks
//                                                          │
//   flusher (one round at a time, never two at once):      ▼
//     writev every unwritten chunk ─► [fdatasync when the policy says] ─► advance the high
//     watermark ─► resolve the round's acks ─► seal segments that rolled
//
// Appends that arrive while a round is in flight wait for the next round, so under load one
// write and one fsync cover many batches (group commit) without any timer.

import fs from "node:fs";
import { join } from "node:path";
import {
  assert,
  CallbackList,
  InvariantError,
  isInvariantError,
  isSluiceError,
  SluiceError,
} from "../record/mod.ts";
import { ioError } from "./errors.ts";
import { type FileBudget, sharedFileBudget } from "./file_budget.ts";
import { sharedTailCacheBudget, type TailCacheBudget } from "./tail_cache_budget.ts";
import type { GroupSync } from "./group_sync.ts";
import type { DirectRounds, DirectWrites } from "./direct_io.ts";
import {
  type FileIO,
  realFileIO,
  releaseDeletedMappings,
  WRITE_SYNC_BYTES_MAX,
  WRITTEN_IN_PLACE,
} from "./io.ts";
import { type LogConfig, resolveLogConfig } from "./log_config.ts";
import {
  CLEAN_SHUTDOWN_FILE,
  createSegment,
  type OpenOptions,
  openLogDirectory,
  RECOVERY_POINT_FILE,
} from "./log_open.ts";
import { type ReadResult, prepareReadLog, readLog } from "./log_read.ts";
import type { RecoveryCheckpoint } from "./recovery_checkpoint.ts";
import { offsetForTimestamp } from "./log_time.ts";
import {
  BATCH_HEADER_BYTES,
  type BatchParts,
  batchBytesOf,
  batchSizeAt,
  checkBatch,
  computeBatchPartsCrc,
  CRC_AT,
  joinBatchParts,
  readUint32,
  COMPRESSION_ID_MAX,
  compressionIdAt,
  lastOffsetDeltaAt,
  maxTimestampAt,
  recordCountAt,
  timestampOutOfRange,
} from "../record/mod.ts";
import type { ProducerState } from "./producer_state.ts";
import { producerOf, rebuildProducerState } from "./producer_scan.ts";
import {
  type CacheDropper,
  DROP_BEHIND_KEEP_BYTES_DEFAULT,
  DROP_BEHIND_STEP_BYTES,
} from "./page_cache.ts";
import { type BatchLease, type Segment, TAIL_CACHE_BYTES_DEFAULT } from "./segment.ts";
import type { Corruption } from "./segment_scan.ts";

export type { ReadResult } from "./log_read.ts";

/**
 * A batch as appendChecked keeps it: whole, or two or more parts whose first holds the header.
 * Parts whose first one does not hold the whole header are rare (a batch starting in the last
 * 60 bytes of a received chunk): joined, they take the ordinary path.
 */
function wholeOrParts(batch: Uint8Array | BatchParts): Uint8Array | BatchParts {
  if (batch instanceof Uint8Array) return batch;
  if (batch.length === 1) return batch[0]!;
  if (batch.length === 0 || batch[0]!.length < BATCH_HEADER_BYTES) return joinBatchParts(batch);
  return batch;
}

/** The first bytes of a batch given whole or in parts (wholeOrParts: the header at least). */
function headOf(batch: Uint8Array | BatchParts): Uint8Array {
  return batch instanceof Uint8Array ? batch : batch[0]!;
}

export type AppendResult = { baseOffset: number; lastOffset: number; logStartOffset: number };

export type PartitionLogOptions = {
  /** A name for messages, such as "orders-3". Defaults to the directory's name. */
  name?: string;
  io?: FileIO;
  /** Written chunks kept in memory for tail reads (default 8 MiB). */
  tailCacheBytes?: number;
  /**
   * The tail-cache budget the log's chunks count against with every other log's
   * (tail_cache_budget.ts); defaults to one shared by the process, of 256 MiB.
   */
  tailCacheBudget?: TailCacheBudget;
  /**
   * Whether reads below the tail cache may map segment files (default true, where the runtime
   * maps). A log whose segments are deleted often and read once, like the delay path's, says
   * false: deleting a mapped segment costs a forced, blocking collection (releaseDeletedMappings
   * in io.ts; 50-100 ms on a busy broker), a positional read costs a copy.
   */
  mapSegments?: boolean;
  /** Wall clock for roll and retention; tests pass their own. */
  now?: () => number;
  onWarning?: (message: string) => void;
  /**
   * The open-files budget the log's segment descriptors count against (file_budget.ts);
   * defaults to one shared by the process, of half its file limit.
   */
  fileBudget?: FileBudget;
  /**
   * Called after every fdatasync of a segment with how long it took, in seconds (the engine's
   * fsync histogram and slow-fsync log line).
   */
  onFsync?: (seconds: number) => void;
  /** The monotonic clock that times fsyncs, in ms (default performance.now); tests pass one. */
  monotonicMs?: () => number;
  /**
   * The group commit across partitions (group_sync.ts) that makes the log's flush rounds
   * durable together with other logs'; without one the log fdatasyncs its own segments.
   */
  groupSync?: GroupSync;
  /**
   * The engine-wide recovery-point checkpoint (recovery_checkpoint.ts) the log keeps its
   * recovery point in; without one the log rewrites its own `recovery-point` file, at most
   * once a second.
   */
  checkpoint?: RecoveryCheckpoint;
  /**
   * Drop-behind (page_cache.ts): after a synced round, durable bytes of an open segment older
   * than its last `dropBehindKeepBytes` leave the page cache through this. Without one (the
   * default for a log opened on its own) nothing is dropped.
   */
  dropCache?: CacheDropper;
  /** Bytes of the latest durable data kept cached (default DROP_BEHIND_KEEP_BYTES_DEFAULT). */
  dropBehindKeepBytes?: number;
  /**
   * Direct writes (direct_io.ts, `loadDirectWrites`): the flusher writes segments with
   * O_DIRECT from aligned staging buffers, not through the page cache. Without (the default
   * for a log opened on its own) segments are written buffered.
   */
  directWrites?: DirectWrites;
  /**
   * Which flush rounds go direct when `directWrites` is given: "synced" (default) the rounds
   * that fdatasync (fsync "always", durable appends, a flush, the interval's sync), whose
   * pages drop-behind would free right after; the rest stay in the page cache for readers,
   * as before. "all": also rounds that do not sync, when larger than what is written in
   * place (#directLarge); readers behind the tail cache then read those bytes from the disk.
   */
  directRounds?: DirectRounds;
  /**
   * Drop-behind also after rounds that do not sync (fsync "never" or "interval" between
   * syncs): written ranges are handed to writeback half a keep behind the tail and dropped a
   * whole keep behind it. Default false: such a log's pages stay cached.
   */
  dropUnsynced?: boolean;
};

/**
 * Told the outcome of an append made with `appendTo`, in place of a promise: once, from the
 * flush round that wrote the batch (never during the call). Neither method may throw; one
 * that does is a bug of the caller, reported as an uncaught error in its own microtask so
 * that it cannot break the round that called it.
 */
export interface AppendListener {
  appended(result: AppendResult): void;
  refused(error: Error): void;
}

/**
 * An append waiting for its flush round: settles its promise (settle functions stored by
 * captureAckSettle, no closure of its own) or tells its listener (appendTo).
 */
class PendingAck {
  readonly result: AppendResult;
  settleResolve: (result: AppendResult) => void = unsettled;
  settleReject: (error: Error) => void = unsettled;
  readonly listener: AppendListener | undefined;
  /**
   * Told already: a listener hears one outcome, as a promise settles once (a round that
   * fails after acknowledging, on a broken invariant, rejects its acknowledgements again).
   */
  #told = false;

  constructor(result: AppendResult, listener: AppendListener | undefined) {
    this.result = result;
    this.listener = listener;
  }

  resolve(result: AppendResult): void {
    if (this.#told) return;
    this.#told = true;
    const listener = this.listener;
    if (listener === undefined) {
      this.settleResolve(result);
      return;
    }
    try {
      listener.appended(result);
    } catch (error) {
      reportListenerFailure(error);
    }
  }

  reject(error: Error): void {
    if (this.#told) return;
    this.#told = true;
    const listener = this.listener;
    if (listener === undefined) {
      this.settleReject(error);
      return;
    }
    try {
      listener.refused(error);
    } catch (failure) {
      reportListenerFailure(failure);
    }
  }
}

function reportListenerFailure(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}

type Waiter = { resolve: () => void; reject: (error: Error) => void };

/** A range of a segment given to drop-behind's hint, `from` up to `end` (positions). */
type DropRange = { from: number; end: number };

/**
 * The acknowledgement whose promise is being made: the one executor below stores the promise's
 * settle functions in it, so an append makes no closure of its own (see #acknowledge).
 */
let ackForming: PendingAck | undefined;

function captureAckSettle(
  resolve: (result: AppendResult) => void,
  reject: (error: Error) => void,
): void {
  ackForming!.settleResolve = resolve;
  ackForming!.settleReject = reject;
}

function unsettled(): void {
  throw new InvariantError("an acknowledgement settled before its promise was made");
}

/**
 * One open segment's part of a flush round: where it stood when the round began (to roll back
 * to if the round's write fails) and the views the round writes. A log keeps these and reuses
 * them round after round: rounds never overlap (#flushing), and nothing holds one past its round.
 */
class RoundWrite {
  segment: Segment | undefined = undefined;
  /** The segment's next offset when the round began: the recovery point after a sync. */
  next = 0;
  beforePosition = 0;
  beforeNext = 0;
  position = 0;
  end = 0;
  readonly buffers: Uint8Array[] = [];
  #pinned = false;

  /** Takes what `segment` has not written yet. */
  begin(segment: Segment): void {
    this.segment = segment;
    this.next = segment.nextOffset;
    this.beforePosition = segment.writtenPosition;
    this.beforeNext = segment.writtenNextOffset;
    this.position = segment.writtenPosition;
    this.end = segment.collectUnwritten(this.buffers);
  }

  /** The segment's descriptor, held open for the write until `unpin`. */
  pin(): number {
    assert(!this.#pinned, "a round pins each segment once");
    const fd = this.segment!.pinFd();
    this.#pinned = true;
    return fd;
  }

  /** Lets the descriptor go if `pin` held it (a failed write may leave it held). */
  unpin(): void {
    if (!this.#pinned) return;
    this.#pinned = false;
    this.segment!.unpinFd();
  }

  /** Lets go of the segment and the views once the round is over. */
  clear(): void {
    this.segment = undefined;
    this.buffers.length = 0;
  }
}

/** How often the recovery point is checkpointed at most, outside of roll and close. */
const RECOVERY_CHECKPOINT_INTERVAL_MS = 1000;

export class PartitionLog {
  readonly dir: string;
  readonly name: string;
  #config: LogConfig;
  /** Damaged regions found when the log was opened; reads into them fail with CORRUPT_BATCH. */
  readonly corruptions: Corruption[];
  #io: FileIO;
  #openOptions: OpenOptions;
  #now: () => number;
  #segments: Segment[];
  /** When the active segment got its first batch (wall clock); undefined while it is empty. */
  #activeCreatedMs: number | undefined;
  /** Sealed segments whose files are fsynced: only these may be deleted by retention. */
  #durableSealed = new WeakSet<Segment>();
  #closing: Promise<void> | undefined;
  #producers: ProducerState;
  #acks: PendingAck[] = [];
  #syncWaiters: Waiter[] = [];
  /**
   * The lists of the round in flight: swapped with #acks and #syncWaiters as a round starts
   * and emptied when it ends, so a round allocates no list of its own.
   */
  #roundAcks: PendingAck[] = [];
  #roundSyncWaiters: Waiter[] = [];
  /**
   * A durable append (appendDurable) waits in #acks: the next round fsyncs. Swapped into
   * #roundDurable as a round takes its lists, like the lists themselves.
   */
  #durableAcks = false;
  #roundDurable = false;
  /** Whether this round fdatasyncs: its segment writes then go direct (#writeSegment). */
  #roundSyncs = false;
  #directAll: boolean;
  /** The open segments of the round in flight, and their writes (RoundWrite), reused. */
  #roundOpen: Segment[] = [];
  #roundWrites: RoundWrite[] = [];
  /** Scratch options for checkBatch, which reads them before it returns (#validate). */
  #batchChecks = { sizeMax: 0, checkCrc: true };
  /** Scratch offsets for Segment.append, which reads them before it returns. */
  #appendOffsets = { baseOffset: 0, lastOffset: 0, maxTimestamp: 0 };
  /** The microtask that starts the flusher, made once (see #scheduleFlush). */
  #startFlusher = (): void => {
    this.#flushScheduled = false;
    if (!this.#flushing) this.#nextRound();
  };
  /** What follows a round, made once: the next round, or the flusher stops (#nextRound). */
  #roundDone = (): void => {
    this.#endRound();
    this.#nextRound();
  };
  #roundFailed = (error: unknown): void => {
    this.#failRoundOnBug(error);
    this.#endRound();
    this.#nextRound();
  };
  /** The group commit's report of this log's sync time, made once (see #syncRound). */
  #onGroupSynced = (seconds: number): void => this.#fsynced(seconds);
  #flushing = false;
  /** The flusher's round in flight (or its last), so close can wait for its writes and fsyncs. */
  #flusherRun: Promise<void> = Promise.resolve();
  #flushScheduled = false;
  #fenced: SluiceError | undefined;
  #closed = false;
  #recoveryPoint: number;
  #recoveryCheckpointMs = 0;
  #checkpoint: RecoveryCheckpoint | undefined;
  /** The directory's name and inode: the log's key in the engine's checkpoint. */
  #checkpointKey: { name: string; ino: number };
  #syncTimer: ReturnType<typeof setInterval> | undefined;
  #onFsync: ((seconds: number) => void) | undefined;
  #groupSync: GroupSync | undefined;
  #dropCache: CacheDropper | undefined;
  #dropBehindKeepBytes: number;
  #dropUnsynced: boolean;
  /** Per open segment, the position below which its pages were dropped (drop-behind). */
  #droppedPositions = new WeakMap<Segment, number>();
  /** Per open segment, the position below which its pages were handed to writeback. */
  #writtenBackPositions = new WeakMap<Segment, number>();
  /**
   * The segments of the hints in flight on another thread (page_cache.ts), one entry per hint,
   * each with its descriptor pinned until the hint returns. A round issues no hints while any
   * are in flight, so a slow hint never queues more behind it: the next range only grows.
   */
  #hinting: Segment[] = [];
  /** Unlinks of deleted segments' files still running on the thread pool (close waits). */
  #deletions = new Set<Promise<void>>();
  /** Told when the last hint in flight returns (close waits for it). */
  #hintsLanded: (() => void) | undefined;
  /** The device of the log's directory, for the group commit's file-system flush. */
  #dev: number;
  #monotonicMs: () => number;
  #sealing: Promise<void> = Promise.resolve();
  /**
   * Told when the high watermark advances. A CallbackList, not a Set: a Kafka long poll adds
   * and removes one per partition per fetch, and what JavaScriptCore's Set deleted stays
   * reachable until its next full collection, with the poll's request (record/callback_list.ts).
   */
  #dataListeners = new CallbackList();
  /**
   * The clean-shutdown marker is still on disk: nothing has changed since a clean open. It is
   * removed (and the removal fsynced) before the first change, or a crash after that change
   * could pass as clean and skip recovery.
   */
  #cleanMarker: boolean;
  /** The marker's removal while its directory fsync is in flight (see #markDirty). */
  #markerRemoval: Promise<void> | undefined;

  private constructor(dir: string, config: LogConfig, options: PartitionLogOptions) {
    this.dir = dir;
    this.name = options.name ?? dir.split(/[\\/]/).filter(Boolean).at(-1) ?? dir;
    this.#config = config;
    this.#onFsync = options.onFsync;
    this.#groupSync = options.groupSync;
    this.#dropCache = options.dropCache;
    this.#dropBehindKeepBytes = options.dropBehindKeepBytes ?? DROP_BEHIND_KEEP_BYTES_DEFAULT;
    this.#dropUnsynced = options.dropUnsynced ?? false;
    if (!Number.isSafeInteger(this.#dropBehindKeepBytes) || this.#dropBehindKeepBytes < 0) {
      throw new RangeError(
        `dropBehindKeepBytes ${this.#dropBehindKeepBytes} must be a non-negative integer`,
      );
    }
    this.#monotonicMs = options.monotonicMs ?? (() => performance.now());
    this.#io = options.io ?? realFileIO;
    this.#now = options.now ?? Date.now;
    this.#directAll = options.directRounds === "all";
    this.#openOptions = {
      io: this.#io,
      indexIntervalBytes: config.indexIntervalBytes,
      tailCacheBytes: options.tailCacheBytes ?? TAIL_CACHE_BYTES_DEFAULT,
      budget: options.fileBudget ?? sharedFileBudget(),
      tailCacheBudget: options.tailCacheBudget ?? sharedTailCacheBudget(),
      mapSegments: options.mapSegments ?? true,
      onWarning: options.onWarning ?? ((message) => console.warn(`sluice: ${message}`)),
      ...(options.directWrites === undefined ? {} : { direct: options.directWrites }),
    };
    const checkpoint = options.checkpoint;
    this.#checkpoint = checkpoint;
    const dirName = dir.split(/[\\/]/).filter(Boolean).at(-1) ?? dir;
    const opened = openLogDirectory(dir, {
      ...this.#openOptions,
      ...(checkpoint === undefined
        ? {}
        : { checkpointed: (ino: number) => checkpoint.recoveryPointOf(dirName, ino) }),
    });
    this.#checkpointKey = { name: dirName, ino: opened.ino };
    this.#dev = this.#groupSync === undefined ? 0 : fs.statSync(dir).dev;
    this.#segments = opened.segments;
    this.corruptions = opened.corruptions;
    this.#recoveryPoint = opened.recoveryPoint;
    this.#cleanMarker = opened.wasClean;
    if (checkpoint !== undefined) {
      checkpoint.set(dirName, opened.ino, this.#recoveryPoint);
      if (opened.hasRecoveryPointFile) checkpoint.migrate(join(dir, RECOVERY_POINT_FILE));
    }
    this.#producers = rebuildProducerState(this.#segments);
    const active = this.#active;
    // A reopened active segment is as old as its first record (never older than now).
    this.#activeCreatedMs =
      active.firstTimestamp === -1 ? undefined : Math.min(active.firstTimestamp, this.#now());
    for (const segment of this.#segments.slice(0, -1)) this.#durableSealed.add(segment);
    this.#startSyncTimer();
  }

  /** The log's configuration; `reconfigure` replaces it while the log is open. */
  get config(): LogConfig {
    return this.#config;
  }

  /**
   * Applies a new configuration to the open log: retention, roll, batch limit and fsync policy
   * take effect from the next append, flush round or retention pass. The sparse index interval
   * is fixed when segments are opened and cannot change here.
   */
  reconfigure(config: LogConfig): void {
    assert(
      config.indexIntervalBytes === this.#config.indexIntervalBytes,
      "indexIntervalBytes does not change on an open log",
    );
    this.#config = config;
    if (this.#syncTimer !== undefined) clearInterval(this.#syncTimer);
    this.#syncTimer = undefined;
    if (!this.#closed) this.#startSyncTimer();
  }

  #startSyncTimer(): void {
    const fsync = this.#config.fsync;
    if (typeof fsync !== "object") return;
    // A failed background fsync already rejects the round's appends and fences the log; the
    // timer has no caller to tell, and an unhandled rejection would end the process.
    // An idle log is not fsynced: with nothing appended past the recovery point and nothing
    // waiting, there is nothing to make durable. Without this check every partition cost an
    // fdatasync (and, past the open-files budget, a reopened descriptor) per interval, even
    // idle: 10,000 partitions made 10,000 thread-pool fsyncs a second, which a Deno-run
    // broker could not keep up with while it created more partitions.
    const sync = () => {
      if (this.#recoveryPoint >= this.logEndOffset && !this.#hasFlushWork()) return;
      void this.#requestSync().catch(() => {});
    };
    this.#syncTimer = setInterval(sync, fsync.intervalMs);
    // A background fsync must not keep a process alive that has nothing else to do.
    (this.#syncTimer as { unref?: () => void }).unref?.();
  }

  /** One fdatasync of a segment, timed for the engine's fsync histogram. */
  async #datasync(segment: Segment): Promise<void> {
    const startMs = this.#monotonicMs();
    await segment.withFd((fd) => this.#io.datasync(fd));
    this.#fsynced((this.#monotonicMs() - startMs) / 1000);
  }

  #fsynced(seconds: number): void {
    try {
      this.#onFsync?.(seconds);
    } catch (error) {
      // A listener's failure is not the log's: the fsync succeeded, the round goes on.
      this.#openOptions.onWarning(`the fsync listener of ${this.name} failed: ${String(error)}`);
    }
  }

  /** Opens (or creates) the log in `dir`, recovering it if it was not closed cleanly. */
  static async open(
    dir: string,
    config: Partial<LogConfig> = {},
    options: PartitionLogOptions = {},
  ): Promise<PartitionLog> {
    return new PartitionLog(dir, resolveLogConfig(config), options);
  }

  get #active(): Segment {
    return this.#segments.at(-1)!;
  }

  /** The first offset still in the log. */
  get logStartOffset(): number {
    return this.#segments[0]!.baseOffset;
  }

  /** The offset the next appended record gets. */
  get logEndOffset(): number {
    return this.#active.nextOffset;
  }

  /** Readers see offsets below this: written, and fsynced if the policy is "always". */
  get highWatermark(): number {
    // A roll starts the next segment where the appends end, before the rolled segment's last
    // writes are done: until they are, the readable end is the rolled segment's visible end,
    // not the new segment's base (a read there would find no batch below the watermark).
    // (A sealed segment opened short of the next one's base, its damaged tail, is all written.)
    const segments = this.#segments;
    let end = this.#active.visibleNextOffset;
    for (let i = segments.length - 2; i >= 0; i--) {
      const segment = segments[i]!;
      if (segment.visibleNextOffset >= segment.nextOffset) break;
      end = segment.visibleNextOffset;
    }
    return end;
  }

  /** Offsets below this are known to be on stable storage. */
  get recoveryPoint(): number {
    return this.#recoveryPoint;
  }

  get sizeBytes(): number {
    let total = 0;
    for (const segment of this.#segments) total += segment.size;
    return total;
  }

  /** The sealed segments, oldest first; none once the log is closed (for the scrubber). */
  sealedSegments(): Segment[] {
    if (this.#closed) return [];
    return this.#segments.filter((segment) => segment.sealed);
  }

  /** Base offsets of the segments, oldest first. */
  segmentBaseOffsets(): number[] {
    return this.#segments.map((segment) => segment.baseOffset);
  }

  /**
   * Appends one record batch (RecordBatch v2 bytes). Offsets are assigned by the log; the
   * caller's bytes are copied and not changed. Resolves when the batch is as durable as the
   * topic's fsync policy promises.
   */
  append(batch: Uint8Array): Promise<AppendResult> {
    if (!(batch instanceof Uint8Array)) throw new TypeError("append takes a Uint8Array batch");
    try {
      return this.appendChecked(batch);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * `append`, except that a batch refused before anything is written (closed or fenced log,
   * invalid batch, sequence out of order) throws at once instead of rejecting later, so a
   * caller appending several batches in order can stop at the first refusal. With a `lease`
   * (see BatchLease in segment.ts), a large batch is kept as a view of the caller's memory
   * instead of being copied, and its base offset is patched in place: the caller must not
   * change those bytes afterwards, and gets each view back through the lease.
   *
   * A batch may come as its parts (BatchParts: the views of the received chunks it arrived
   * split across), so that a large produced batch is never copied whole by sluice: lent, the
   * parts are kept as views; without a lease they are copied into the segment's chunk.
   */
  appendChecked(given: Uint8Array | BatchParts, lease?: BatchLease): Promise<AppendResult> {
    const batch = wholeOrParts(given);
    const baseOffset = this.#appendInMemory(batch, lease);
    return this.#acknowledge(baseOffset, recordCountAt(headOf(batch), 0));
  }

  /**
   * `appendChecked` with the outcome told to `listener` instead of a promise (a refusal before
   * anything is written still throws at once). For a caller that answers many appends, such
   * as the broker's produce path, where a promise and its reactions per batch were a good
   * part of what each message allocated.
   */
  appendTo(
    given: Uint8Array | BatchParts,
    lease: BatchLease | undefined,
    listener: AppendListener,
  ): void {
    const batch = wholeOrParts(given);
    const baseOffset = this.#appendInMemory(batch, lease);
    this.#tellWhenWritten(baseOffset, recordCountAt(headOf(batch), 0), listener);
  }

  /** Tells `listener` the outcome of an append made in memory once its round has run. */
  #tellWhenWritten(baseOffset: number, recordCount: number, listener: AppendListener): void {
    this.#acks.push(new PendingAck(this.#resultAt(baseOffset, recordCount), listener));
    this.#scheduleFlush();
  }

  /**
   * Validates the batch and appends it to the active segment; returns the base offset its
   * acknowledgement answers with (a retried batch already in the log: its first offset).
   */
  #appendInMemory(batch: Uint8Array | BatchParts, lease: BatchLease | undefined): number {
    const refused = this.#refusal();
    if (refused !== undefined) throw refused;
    const head = headOf(batch);
    const size = batchBytesOf(batch);
    this.#validate(batch, head, size, true);
    return this.#appendValid(batch, head, size, lease);
  }

  /**
   * `appendChecked` for a batch this process built and stamped with its CRC-32C just before,
   * or read back from one of its logs by a read that checked its CRC (the delay path's stored
   * records, tier entries and due batches): checked like any other batch except that its CRC
   * is not computed a second time over the same bytes. Bytes from a client never take this
   * path. Reads in this process trust appended bytes (verified_ranges.ts): the CRC the
   * builder stamped is what reads after the next open, and the scrubber, check.
   */
  appendBuilt(batch: Uint8Array): Promise<AppendResult> {
    return this.#acknowledge(this.#appendBuiltInMemory(batch), recordCountAt(batch, 0));
  }

  /**
   * `appendBuilt` with the outcome told to `listener` (as `appendTo`): for the delay path,
   * which appends each delayed record as a batch of its own, and paid a promise, its settle
   * functions and Promise.all's reactions per record.
   */
  appendBuiltTo(batch: Uint8Array, listener: AppendListener): void {
    const baseOffset = this.#appendBuiltInMemory(batch);
    this.#tellWhenWritten(baseOffset, recordCountAt(batch, 0), listener);
  }

  /** appendBuilt's checks (refusal, validation without the CRC) and in-memory append. */
  #appendBuiltInMemory(batch: Uint8Array): number {
    const refused = this.#refusal();
    if (refused !== undefined) throw refused;
    this.#validate(batch, batch, batch.length, false);
    return this.#appendValid(batch, batch, batch.length, undefined);
  }

  /** Appends a validated batch (whole or in parts; `head` holds its header) in memory. */
  #appendValid(
    batch: Uint8Array | BatchParts,
    head: Uint8Array,
    size: number,
    lease: BatchLease | undefined,
  ): number {
    this.#markDirty();
    const recordCount = recordCountAt(head, 0);
    const producer = producerOf(head, recordCount);
    if (producer !== undefined) {
      const duplicateOf = this.#producers.check(producer, this.name);
      // A retried batch already in the log is acknowledged with its first offsets, once those
      // are as durable as any other acknowledgement: in the next flush round at the earliest.
      if (duplicateOf !== undefined) return duplicateOf;
    }
    let baseOffset: number;
    try {
      this.#maybeRoll(size, recordCount);
      baseOffset = this.#active.nextOffset;
      const offsets = this.#appendOffsets;
      offsets.baseOffset = baseOffset;
      offsets.lastOffset = baseOffset + recordCount - 1;
      offsets.maxTimestamp = maxTimestampAt(head, 0);
      this.#active.append(batch, offsets, lease);
      this.#activeCreatedMs ??= this.#now();
      if (producer !== undefined) this.#producers.record(producer, baseOffset);
    } catch (error) {
      if (isInvariantError(error)) throw this.#fenceOnBug(error);
      throw error;
    }
    return baseOffset;
  }

  /**
   * `appendChecked`, resolved once the batch is also fsynced: what `appendChecked` then
   * `flush()` promise, in one flush round that writes and syncs (a produce with acks=all). The
   * flush after an append took a round of its own, its sync waiter and async frames, for each
   * partition of each request: at 1,000 partitions nearly every batch is a partition of its
   * own, so that second round was paid per batch.
   */
  appendDurable(batch: Uint8Array | BatchParts, lease?: BatchLease): Promise<AppendResult> {
    const appended = this.appendChecked(batch, lease);
    // Set after the append is queued and before its round starts (a microtask later, or after
    // the round in flight): the round that takes the acknowledgement takes the sync too.
    this.#durableAcks = true;
    return appended;
  }

  /**
   * A broken invariant means the log's state in memory can no longer be trusted: the log is
   * fenced (every later write is refused with LOG_FENCED; reopening recovers from the files),
   * and the violation is reported as one clear line. The caller gets the fence, never the
   * assertion dressed up as an ordinary error.
   */
  #fenceOnBug(error: InvariantError): SluiceError {
    this.#fenced ??= new SluiceError(
      "LOG_FENCED",
      `Log ${this.name} refuses writes after an internal error (${error.message}); ` +
        "reopen it to recover",
      { log: this.name },
      { cause: error },
    );
    this.#openOptions.onWarning(`${this.name}: ${error.message}; the log is fenced`);
    return this.#fenced;
  }

  /**
   * Removes the clean-shutdown marker before the log's first append. The removal is made
   * durable by an fsync of the directory on the thread pool, which the first flush round waits
   * for before it writes anything (#awaitMarkerRemoved): until then nothing on disk has
   * changed, so a marker that power loss brings back still tells the truth. An fsync on the
   * event loop here cost ~3 ms per partition, 1,000 partitions blocking the broker for
   * seconds as the first records spread over them (CPU profile of the broker, loaded).
   */
  #markDirty(): void {
    if (!this.#cleanMarker) return;
    try {
      fs.rmSync(join(this.dir, CLEAN_SHUTDOWN_FILE), { force: true });
    } catch (error) {
      throw ioError(error, `removing the clean-shutdown marker of ${this.name}`);
    }
    this.#cleanMarker = false;
    const io = this.#io;
    const removal =
      io.syncDirectoryAsync === undefined
        ? Promise.resolve().then(() => io.syncDirectory(this.dir))
        : io.syncDirectoryAsync(this.dir);
    // Awaited by the next flush round, which fails (and fences) if the fsync did.
    removal.catch(() => {});
    this.#markerRemoval = removal;
  }

  /** `#markDirty` with the removal durable before it returns (before segments are deleted). */
  #markDirtyNow(): void {
    if (!this.#cleanMarker) return;
    try {
      fs.rmSync(join(this.dir, CLEAN_SHUTDOWN_FILE), { force: true });
      this.#io.syncDirectory(this.dir);
    } catch (error) {
      throw ioError(error, `removing the clean-shutdown marker of ${this.name}`);
    }
    this.#cleanMarker = false;
  }

  /** Waits until the marker's removal is durable; false (the round failed) if it is not. */
  async #awaitMarkerRemoved(): Promise<boolean> {
    const removal = this.#markerRemoval;
    if (removal === undefined) return true;
    try {
      await removal;
    } catch (error) {
      const failure = ioError(error, `removing the clean-shutdown marker of ${this.name}`);
      this.#failRound(failure, this.#roundAcks, this.#roundSyncWaiters, undefined);
      return false;
    }
    if (this.#markerRemoval === removal) this.#markerRemoval = undefined;
    return true;
  }

  #resultAt(baseOffset: number, recordCount: number): AppendResult {
    const lastOffset = baseOffset + recordCount - 1;
    return { baseOffset, lastOffset, logStartOffset: this.logStartOffset };
  }

  #acknowledge(baseOffset: number, recordCount: number): Promise<AppendResult> {
    const ack = new PendingAck(this.#resultAt(baseOffset, recordCount), undefined);
    ackForming = ack;
    const promise = new Promise<AppendResult>(captureAckSettle);
    ackForming = undefined;
    this.#acks.push(ack);
    this.#scheduleFlush();
    return promise;
  }

  #refusal(): SluiceError | undefined {
    if (this.#closed) return new SluiceError("LOG_CLOSED", `Log ${this.name} is closed`);
    return this.#fenced;
  }

  /**
   * Checks a batch given whole or in parts; `head` is its first bytes (the header at least).
   * Without `checkCrc` (appendBuilt) the CRC is not computed again.
   */
  #validate(
    batch: Uint8Array | BatchParts,
    head: Uint8Array,
    size: number,
    checkCrc: boolean,
  ): void {
    const { maxBatchBytes } = this.config;
    if (size > maxBatchBytes) {
      throw new SluiceError(
        "BATCH_TOO_LARGE",
        `Batch of ${size} bytes exceeds maxBatchBytes ${maxBatchBytes}`,
        { sizeBytes: size, maxBatchBytes },
      );
    }
    const checks = this.#batchChecks;
    checks.sizeMax = maxBatchBytes;
    // checkBatch reads only the header from `head` when it is not asked for the CRC, which
    // for parts is taken over each of them.
    const whole = batch instanceof Uint8Array;
    checks.checkCrc = checkCrc && whole;
    let problem = checkBatch(head, 0, size, checks);
    if (
      checkCrc &&
      problem === "ok" &&
      !whole &&
      computeBatchPartsCrc(batch) !== readUint32(head, CRC_AT)
    ) {
      problem = "bad-crc";
    }
    if (problem === "bad-crc") {
      throw new SluiceError("CORRUPT_BATCH", `Batch for ${this.name} fails its CRC-32C check`, {
        log: this.name,
      });
    }
    if (problem !== "ok") {
      throw new SluiceError("INVALID_BATCH", `Batch for ${this.name} is invalid: ${problem}`, {
        log: this.name,
        problem,
      });
    }
    if (batchSizeAt(head, 0) !== size) {
      throw new SluiceError(
        "INVALID_BATCH",
        `Batch for ${this.name} declares ${batchSizeAt(head, 0)} bytes but ${size} ` +
          "were given; append takes exactly one batch",
        { sizeBytes: size, declaredBytes: batchSizeAt(head, 0) },
      );
    }
    this.#validateHeader(head);
  }

  /** The header fields checkBatch leaves alone: they are checked on append only (see there). */
  #validateHeader(batch: Uint8Array): void {
    const codec = compressionIdAt(batch, 0);
    if (codec > COMPRESSION_ID_MAX) {
      throw new SluiceError(
        "UNSUPPORTED_COMPRESSION",
        `Batch for ${this.name} names compression codec ${codec}; codecs are 0 to ` +
          `${COMPRESSION_ID_MAX}`,
        { log: this.name, codec },
      );
    }
    const timestamp = timestampOutOfRange(batch, 0);
    if (timestamp !== undefined) {
      throw new SluiceError(
        "INVALID_BATCH",
        `Batch for ${this.name} has a ${timestamp} outside ±(2^53 - 1)`,
        { log: this.name, field: timestamp },
      );
    }
    const recordCount = recordCountAt(batch, 0);
    const lastOffsetDelta = lastOffsetDeltaAt(batch, 0);
    if (recordCount === 0 || lastOffsetDelta !== recordCount - 1) {
      throw new SluiceError(
        "INVALID_BATCH",
        `Batch for ${this.name} has recordCount ${recordCount} and lastOffsetDelta ` +
          `${lastOffsetDelta}; an appended batch needs recordCount = lastOffsetDelta + 1 >= 1`,
        { recordCount, lastOffsetDelta },
      );
    }
  }

  #maybeRoll(batchBytes: number, recordCount: number): void {
    const active = this.#active;
    if (active.size === 0) return;
    const full = active.size + batchBytes > this.config.segmentBytes;
    const created = this.#activeCreatedMs;
    const old = created !== undefined && this.#now() - created >= this.config.segmentMs;
    // Index entries hold offsets relative to the segment base in a u32.
    const offsetsFull = active.nextOffset + recordCount - active.baseOffset > 0xffff_ffff;
    if (full || old || offsetsFull) this.#roll();
  }

  #roll(): void {
    const next = createSegment(this.dir, this.#active.nextOffset, this.#openOptions);
    this.#segments.push(next);
    this.#activeCreatedMs = undefined;
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#flushing) return;
    this.#flushScheduled = true;
    queueMicrotask(this.#startFlusher);
  }

  #requestSync(): Promise<void> {
    const promise = new Promise<void>((resolve, reject) => {
      this.#syncWaiters.push({ resolve, reject });
    });
    this.#scheduleFlush();
    return promise;
  }

  #hasFlushWork(): boolean {
    if (this.#syncWaiters.length > 0 || this.#acks.length > 0) return true;
    for (const segment of this.#segments) {
      if (!segment.sealed && segment.hasUnwritten) return true;
    }
    return false;
  }

  /**
   * The flusher: one round at a time while there is work, each started when the last is done.
   * A round whose writes are all done in place (FileIO answers WRITTEN_IN_PLACE: a small
   * round, no fsync) completes here, on the calling turn, and the loop takes the next; only a
   * round that waits (a large or failed write, an fsync, the clean marker's removal) goes on
   * as an async function and is chained with `then` on methods made once (#roundDone). The
   * usual round of a one-batch produce at lingerMs 0 thus makes no promise, async frame or
   * reaction of its own, and its acknowledgements and readers are told one microtask sooner.
   */
  #nextRound(): void {
    for (;;) {
      if (!this.#hasFlushWork() || this.#fenced !== undefined) {
        this.#flushing = false;
        if (this.#fenced !== undefined) this.#rejectAll(this.#fenced);
        return;
      }
      this.#flushing = true;
      this.#takeRoundLists();
      let waiting: Promise<void> | undefined;
      try {
        waiting = this.#roundInPlace();
      } catch (error) {
        this.#failRoundOnBug(error);
      }
      if (waiting !== undefined) {
        this.#flusherRun = waiting.then(this.#roundDone, this.#roundFailed);
        return;
      }
      this.#endRound();
    }
  }

  /**
   * Starts the round and does as much of it as can be done in place: undefined once it is
   * complete (or failed: its waiters are settled), else the promise of the rest (#finishRound).
   */
  #roundInPlace(): Promise<void> | undefined {
    const sync =
      this.config.fsync === "always" || this.#roundSyncWaiters.length > 0 || this.#roundDurable;
    this.#roundSyncs = sync;
    if (this.#markerRemoval !== undefined) return this.#writeRound(sync);
    const count = this.#beginRound();
    for (let i = 0; i < count; i++) {
      let writing: Promise<void> | undefined;
      try {
        writing = this.#writeSegment(i);
      } catch (error) {
        this.#unpinRound();
        this.#failRound(error, this.#roundAcks, this.#roundSyncWaiters, this.#roundWrites[0]);
        return undefined;
      }
      if (writing !== undefined && writing !== WRITTEN_IN_PLACE) {
        return this.#finishRound(writing, i, count, sync);
      }
    }
    this.#markRoundWritten(count);
    if (sync) return this.#finishRound(undefined, count, count, sync);
    this.#completeRound(count, sync, false);
    return undefined;
  }

  /**
   * Swaps the waiting acknowledgements and sync waiters into the round's lists; appends made
   * while the round is in flight gather in the emptied ones for the next round. The flusher
   * keeps no list in its own frame: an async function's locals live on the heap.
   */
  #takeRoundLists(): void {
    const acks = this.#acks;
    this.#acks = this.#roundAcks;
    this.#roundAcks = acks;
    const syncWaiters = this.#syncWaiters;
    this.#syncWaiters = this.#roundSyncWaiters;
    this.#roundSyncWaiters = syncWaiters;
    this.#roundDurable = this.#durableAcks;
    this.#durableAcks = false;
  }

  /**
   * I/O failures are handled inside the round (#failRound); anything else that escapes it is
   * a broken invariant, which fences the log and fails the round's acknowledgements.
   */
  #failRoundOnBug(error: unknown): void {
    const fence = this.#fenceOnBug(
      isInvariantError(error) ? error : new InvariantError(`flush round threw ${error}`),
    );
    for (const ack of this.#roundAcks) ack.reject(fence);
    for (const waiter of this.#roundSyncWaiters) waiter.reject(fence);
  }

  /** Empties the round's reused lists: every one of its waiters is settled by now. */
  #endRound(): void {
    this.#roundAcks.length = 0;
    this.#roundSyncWaiters.length = 0;
    this.#roundOpen.length = 0;
    for (const write of this.#roundWrites) {
      write.unpin();
      write.clear();
    }
  }

  /**
   * Snapshots what this round writes, into the log's reused round state: appends made while
   * the write is in flight go to the next round. Returns how many open segments there are.
   */
  #beginRound(): number {
    const open = this.#roundOpen;
    const writes = this.#roundWrites;
    for (const segment of this.#segments) {
      if (segment.sealed) continue;
      if (writes.length === open.length) writes.push(new RoundWrite());
      writes[open.length]!.begin(segment);
      open.push(segment);
    }
    assert(open.length > 0, "the active segment is open");
    return open.length;
  }

  /** A round that first waits for the clean marker's removal to be durable (#markDirty). */
  async #writeRound(sync: boolean): Promise<void> {
    if (!(await this.#awaitMarkerRemoved())) return;
    const count = this.#beginRound();
    await this.#finishRound(undefined, -1, count, sync);
  }

  /**
   * The rest of a round that waits: `writing` is the write of the round's `from`th open
   * segment, in flight (-1: none started; `count`: every write done and marked), then the
   * writes of the segments after it, an fsync when the policy or a flush asks for one, then
   * the round's appends acknowledged. The steps that do not wait are methods of their own, so
   * that this frame (kept on the heap across each await) holds little.
   */
  async #finishRound(
    writing: Promise<void> | undefined,
    from: number,
    count: number,
    sync: boolean,
  ): Promise<void> {
    if (from < count) {
      try {
        await writing;
        for (let i = from + 1; i < count; i++) await this.#writeSegment(i);
      } catch (error) {
        // Nothing of this round is acknowledged: every open segment goes back to its start.
        this.#unpinRound();
        this.#failRound(error, this.#roundAcks, this.#roundSyncWaiters, this.#roundWrites[0]);
        return;
      }
      this.#markRoundWritten(count);
    }
    // Under a policy short of "always", written records are readable before they are durable,
    // also in a round that syncs for a durable append or a flush: readers do not wait for the
    // fdatasync, only the acknowledgements do (as when the sync was a round of its own).
    const shownEarly = sync && this.config.fsync !== "always" && this.#publishRound(count);
    try {
      if (sync) await this.#syncRound(this.#roundOpen);
    } catch (error) {
      // The bytes are in the file but may not be on disk: no rollback can make that true.
      this.#failRound(error, this.#roundAcks, this.#roundSyncWaiters, undefined);
      return;
    }
    this.#completeRound(count, sync, shownEarly);
  }

  /** Makes the round's writes readable; true if it wrote anything (readers were told). */
  #publishRound(count: number): boolean {
    const writes = this.#roundWrites;
    let wrote = false;
    for (let i = 0; i < count; i++) {
      writes[i]!.segment!.publish();
      if (writes[i]!.buffers.length > 0) wrote = true;
    }
    if (wrote) this.#notifyData();
    return wrote;
  }

  /**
   * Starts the write of the round's `index`th open segment, its descriptor pinned; the pin is
   * let go by the next segment's write or at the end of the round (#markRoundWritten,
   * #unpinRound), so no closure or async frame wraps the write.
   */
  #writeSegment(index: number): Promise<void> | undefined {
    this.#unpinRound();
    const write = this.#roundWrites[index]!;
    if (write.buffers.length === 0) return undefined;
    const segment = write.segment!;
    if (segment.writesDirect && (this.#roundSyncs || this.#directLarge(write))) {
      return segment.writeDirect(write.buffers, write.position);
    }
    return this.#io.writeAll(write.pin(), write.buffers, write.position);
  }

  /**
   * directRounds "all": a round that does not sync goes direct when it is larger than what
   * is written in place (io.ts WRITE_SYNC_BYTES_MAX), which goes to the thread pool anyway;
   * smaller ones stay buffered and in place, so their readers are told at once rather than
   * after a device write (bench:tcp at 10,000 msg/s: e2e p99 ~6-9 ms direct, ~1.4 buffered).
   */
  #directLarge(write: RoundWrite): boolean {
    return this.#directAll && write.end - write.position > WRITE_SYNC_BYTES_MAX;
  }

  #unpinRound(): void {
    for (const write of this.#roundWrites) write.unpin();
  }

  #markRoundWritten(count: number): void {
    this.#unpinRound();
    for (let i = 0; i < count; i++) {
      const write = this.#roundWrites[i]!;
      write.segment!.markWritten(write.end, write.next);
    }
  }

  /**
   * Publishes the round's writes and acknowledges its appends, as durable as promised. Readers
   * are told of new data once: here, or already when `shownEarly` (#writeRound).
   */
  #completeRound(count: number, sync: boolean, shownEarly: boolean): void {
    const writes = this.#roundWrites;
    let wrote = false;
    for (let i = 0; i < count; i++) {
      writes[i]!.segment!.publish();
      if (writes[i]!.buffers.length > 0) wrote = true;
    }
    if (sync) this.#advanceRecoveryPoint(writes[count - 1]!.next);
    if (sync || this.#dropUnsynced) this.#dropBehind(this.#roundOpen, sync);
    for (const ack of this.#roundAcks) ack.resolve(ack.result);
    for (const waiter of this.#roundSyncWaiters) waiter.resolve();
    if (wrote && !shownEarly) this.#notifyData();
    this.#sealRolledSegments();
  }

  /**
   * Drop-behind (page_cache.ts): the bytes of each open segment older than its last
   * dropBehindKeepBytes leave the page cache, DROP_BEHIND_STEP_BYTES or more at a time; a hint,
   * never a failure. After a round that synced the pages are clean and leave at once. After
   * one that did not they may still be dirty, which the hint writes back (without waiting) but
   * cannot drop: so half a keep earlier each range is first handed to writeback with the same
   * hint, and dropped when the tail is a whole keep past it (what is still being written
   * then stays cached, and the kernel reclaims it as usual).
   */
  #dropBehind(open: readonly Segment[], sync: boolean): void {
    if (this.#hinting.length > 0) return;
    for (const segment of open) {
      const position = segment.writtenPosition;
      if (!sync) {
        const writebackEnd = position - (this.#dropBehindKeepBytes >> 1);
        if (!this.#dropRange(segment, this.#writtenBackPositions, writebackEnd)) return;
      }
      if (!this.#dropRange(segment, this.#droppedPositions, position - this.#dropBehindKeepBytes)) {
        return;
      }
    }
  }

  /**
   * Drops a segment's cached pages from the position `done` holds for it up to `end`, once
   * that is DROP_BEHIND_STEP_BYTES or more. False if the hint failed: the log stops dropping.
   * A hint answered through a promise runs on another thread: `done` moves when it returns.
   */
  #dropRange(segment: Segment, done: WeakMap<Segment, number>, end: number): boolean {
    const drop = this.#dropCache;
    if (drop === undefined) return false;
    const from = done.get(segment) ?? 0;
    if (end - from < DROP_BEHIND_STEP_BYTES) return true;
    assert(end <= segment.visiblePosition, "only written, visible bytes leave the cache");
    const range = { from, end };
    // Pinned, so the budget never closes the descriptor (and hands its number to another
    // file) while a hint on another thread still uses it.
    const fd = segment.pinFd();
    let answer: number | Promise<number>;
    try {
      answer = drop(fd, from, end - from);
    } catch (error) {
      segment.unpinFd();
      return this.#dropAnswered(segment, done, range, String(error));
    }
    if (typeof answer === "number") {
      segment.unpinFd();
      return this.#dropAnswered(segment, done, range, answer);
    }
    this.#hinting.push(segment);
    answer.then(
      (errno) => this.#hintReturned(segment, done, range, errno),
      (error) => this.#hintReturned(segment, done, range, String(error)),
    );
    return true;
  }

  #hintReturned(
    segment: Segment,
    done: WeakMap<Segment, number>,
    range: DropRange,
    outcome: number | string,
  ): void {
    segment.unpinFd();
    const index = this.#hinting.indexOf(segment);
    assert(index >= 0, "a returning hint was in flight");
    this.#hinting.splice(index, 1);
    // A log that stopped dropping (an earlier hint of the same round failed) said so once.
    if (this.#dropCache !== undefined) this.#dropAnswered(segment, done, range, outcome);
    if (this.#hinting.length === 0) {
      this.#hintsLanded?.();
      this.#hintsLanded = undefined;
    }
  }

  /** Takes a hint's outcome: an errno (0: done) or what it threw. False if it failed. */
  #dropAnswered(
    segment: Segment,
    done: WeakMap<Segment, number>,
    range: DropRange,
    outcome: number | string,
  ): boolean {
    if (outcome === 0) {
      done.set(segment, range.end);
      return true;
    }
    const failure =
      typeof outcome === "number" ? `posix_fadvise returned errno ${outcome}` : outcome;
    // A hint that failed (a closed descriptor answers EBADF, the FFI may throw) dropped
    // nothing and is not taken as done; data is intact. The log stops dropping, and says so.
    this.#dropCache = undefined;
    this.#openOptions.onWarning(
      `${this.name}: drop-behind stopped: dropping ${range.end - range.from} bytes at ` +
        `${range.from} failed (${failure}); pages stay cached`,
    );
    return false;
  }

  /** Resolves once no hint is in flight: descriptors are closed only after theirs returned. */
  #hintsReturned(): Promise<void> {
    if (this.#hinting.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#hintsLanded = resolve;
    });
  }

  async #syncRound(open: Segment[]): Promise<void> {
    if (this.#groupSync === undefined) {
      for (const segment of open) await this.#datasync(segment);
    } else {
      // Written already: the shared round makes these bytes durable with other logs' at once.
      const onSynced = this.#onGroupSynced;
      await this.#groupSync.sync({ segments: open, dev: this.#dev, onSynced });
    }
    // Index files are derived and checked on open. An open segment's are written at seal and
    // at close only, never in a flush round: after an unclean stop every open segment is
    // scanned in full and its indexes rebuilt (log_open.ts), so writing them earlier would
    // cost two file writes per log per round and spare nothing.
    // The recovery point may pass a rolled segment only once its own fsync is done, and an
    // acknowledgement may not stand on a rolled segment whose fsync failed.
    await this.#sealing;
    if (this.#fenced !== undefined) throw this.#fenced;
  }

  #notifyData(): void {
    // A listener added meanwhile is told, one removed before its turn is not.
    this.#dataListeners.forEach(this.#tellListener);
  }

  readonly #tellListener = (listener: () => void): void => {
    try {
      listener();
    } catch (error) {
      // A listener belongs to a reader; its failure must not break the write path.
      this.#openOptions.onWarning(`a data listener of ${this.name} failed: ${String(error)}`);
    }
  };

  /** Index files are derived data: written on sync rounds and at seal, never fsynced alone. */
  async #persistIndexes(segment: Segment): Promise<void> {
    const pending = segment.unpersistedIndexes();
    if (pending.offset.length === 0 && pending.time.length === 0) return;
    await this.#io.writeFileAt(segment.path("index"), pending.offset, pending.offsetAt);
    await this.#io.writeFileAt(segment.path("timeindex"), pending.time, pending.timeAt);
    segment.markIndexesPersisted();
  }

  /**
   * A failed write or fsync. A write that failed with disk full (ENOSPC) rolls the log back to
   * before this round (`rollBackTo`) and rejects the round's appends as retriable: nothing
   * half-written stays, and appends work again once space is freed. Any other write failure,
   * and any failed fsync, fences the log: after a failed fsync the kernel may have dropped
   * dirty pages, so the only safe state is the one recovery finds when the log is reopened.
   */
  #failRound(
    error: unknown,
    acks: PendingAck[],
    syncWaiters: Waiter[],
    rollBackTo: RoundWrite | undefined,
  ): void {
    const failure = isSluiceError(error) ? error : ioError(error, `writing ${this.name}`);
    const rolledBack =
      failure.code === "DISK_FULL" && rollBackTo !== undefined && this.#rollBack(rollBackTo);
    if (!rolledBack) {
      this.#fenced ??= new SluiceError(
        "LOG_FENCED",
        `Log ${this.name} refuses writes after a failed write or fsync ` +
          `(${failure.message}); reopen it to recover`,
        { log: this.name },
        { cause: failure },
      );
    }
    const reason = rolledBack ? failure : this.#fenced!;
    for (const ack of [...acks, ...this.#acks]) ack.reject(reason);
    for (const waiter of [...syncWaiters, ...this.#syncWaiters]) waiter.reject(reason);
    this.#acks = [];
    this.#syncWaiters = [];
    this.#durableAcks = false;
  }

  /**
   * Truncates the first open segment back to where it stood when the failed round began and
   * deletes the open segments after it (rolled during the round or since); false if that
   * fails too.
   */
  #rollBack(first: RoundWrite): boolean {
    try {
      const firstSegment = first.segment!;
      for (const segment of this.#segments.filter((s) => !s.sealed && s !== firstSegment)) {
        // A drop-behind hint still in flight on such a segment (its pin does not hold off this
        // close) meets a closed descriptor: EBADF stops the log's drops with a warning. Were
        // the number reused meanwhile, it would only drop another file's clean pages.
        segment.close();
        segment.deleteFiles();
      }
      this.#segments = this.#segments.filter((s) => s.sealed || s === firstSegment);
      firstSegment.truncateTo(first.beforePosition, first.beforeNext);
      this.#producers.truncateFrom(first.beforeNext);
      if (firstSegment.size === 0) this.#activeCreatedMs = undefined;
      return true;
    } catch {
      return false;
    }
  }

  /** Waits until the flusher has no round in flight (close). */
  async #flusherStopped(): Promise<void> {
    while (this.#flushing) {
      const run = this.#flusherRun;
      await run.catch(() => {});
      // A round whose follow-up threw started no next one: nothing more will end.
      if (run === this.#flusherRun) return;
    }
  }

  #rejectAll(error: SluiceError): void {
    for (const ack of this.#acks) ack.reject(error);
    for (const waiter of this.#syncWaiters) waiter.reject(error);
    this.#acks = [];
    this.#syncWaiters = [];
    this.#durableAcks = false;
  }

  /** Seals every fully written segment that is no longer the active one. */
  #sealRolledSegments(): void {
    const segments = this.#segments;
    for (let i = 0; i < segments.length - 1; i++) {
      const segment = segments[i]!;
      if (segment.sealed || segment.hasUnwritten) continue;
      segment.seal();
      // Sealing fsyncs in the background so that writes to the new segment go on meanwhile.
      this.#sealing = this.#sealing.then(() => this.#syncSealed(segment));
    }
  }

  async #syncSealed(segment: Segment): Promise<void> {
    // Index files are derived data: when they cannot be written (a full disk), the sealed
    // segment is still durable once its log is fsynced, and a stale index file is caught by its
    // checks and rebuilt at the next open. Only a failure of the log's own fsync fences.
    let indexed = true;
    try {
      await this.#persistIndexes(segment);
    } catch (error) {
      indexed = false;
      const reason = ioError(error, `writing the indexes of ${segment.path("log")}`).message;
      this.#openOptions.onWarning(`${reason}; they are rebuilt when the log is next opened`);
    }
    try {
      await this.#datasync(segment);
      if (indexed) {
        await this.#io.syncFile(segment.path("index"));
        await this.#io.syncFile(segment.path("timeindex"));
      }
      this.#io.syncDirectory(this.dir);
      this.#durableSealed.add(segment);
      this.#advanceRecoveryPoint(segment.nextOffset);
    } catch (error) {
      this.#fenced ??= new SluiceError(
        "LOG_FENCED",
        `Log ${this.name} refuses writes after a failed fsync of a sealed segment`,
        { log: this.name },
        { cause: error },
      );
    }
  }

  #checkpointDue(): boolean {
    return this.#now() - this.#recoveryCheckpointMs >= RECOVERY_CHECKPOINT_INTERVAL_MS;
  }

  #advanceRecoveryPoint(offset: number): void {
    if (offset <= this.#recoveryPoint) return;
    this.#recoveryPoint = offset;
    if (this.#checkpoint !== undefined) {
      // The engine writes every log's recovery point in one file, once per interval.
      this.#checkpoint.set(this.#checkpointKey.name, this.#checkpointKey.ino, offset);
      return;
    }
    if (!this.#checkpointDue()) return;
    this.#recoveryCheckpointMs = this.#now();
    this.#writeRecoveryPoint();
  }

  /**
   * The checkpoint is an optimisation (recovery scans less): failing to write it, for example
   * on a full disk, is reported and costs only a longer recovery.
   */
  #writeRecoveryPoint(): void {
    const temp = join(this.dir, `${RECOVERY_POINT_FILE}.tmp`);
    try {
      this.#io.writeFile(temp, `${this.#recoveryPoint}\n`);
      fs.renameSync(temp, join(this.dir, RECOVERY_POINT_FILE));
    } catch (error) {
      this.#openOptions.onWarning(`${this.name}: recovery point not saved: ${String(error)}`);
    }
  }

  /** A closing log's last recovery point goes to the engine's checkpoint, written at its close. */
  #advanceRecoveryPointOnClose(): void {
    const { name, ino } = this.#checkpointKey;
    this.#checkpoint!.set(name, ino, this.#recoveryPoint);
  }

  /**
   * Views of whole batches starting with the batch that holds `offset`, up to `maxBytes` (at
   * least one batch, so a consumer always progresses). No record is decoded or copied. Each
   * batch's CRC is checked once per process (log_read.ts); `checkEveryCrc` checks every batch
   * read again, for readers that must find damage themselves (queues discard and count it).
   * `scratch`: a positional read (below the tail cache of a segment not mapped) fills it instead
   * of a new buffer, so the views may lie in it: they are valid until the caller's next read
   * with the same scratch, and the caller copies what it keeps longer (the delay stores' move
   * rounds read one record at a time this way).
   */
  read(
    offset: number,
    maxBytes: number,
    options?: { checkEveryCrc?: boolean; scratch?: Uint8Array },
  ): ReadResult {
    if (this.#closed) throw new SluiceError("LOG_CLOSED", `Log ${this.name} is closed`);
    const highWatermark = this.highWatermark;
    // A tailing reader asks mostly for what is not there yet: answered without a scan (the
    // checks are readLog's; with damage on record, readLog answers as before).
    if (this.#isTail(offset, highWatermark) && Number.isSafeInteger(maxBytes) && maxBytes >= 1) {
      const { logStartOffset } = this;
      return { views: [], sizeBytes: 0, nextOffset: offset, highWatermark, logStartOffset };
    }
    return readLog(this.#segments, this.corruptions, {
      name: this.name,
      offset,
      maxBytes,
      highWatermark,
      checkEveryCrc: options?.checkEveryCrc === true,
      scratch: options?.scratch,
    });
  }

  /**
   * Before a `read(offset, maxBytes)` that may wait: a promise when the bytes the read would
   * start with are not in memory and are being read on the thread pool (cold_read.ts; the
   * server's fetches wait for it so the event loop does not wait for the disk); it settles,
   * never rejecting, once the read will find them. Undefined: read at once.
   */
  prepareRead(offset: number, maxBytes: number): Promise<void> | undefined {
    if (this.#closed || this.corruptions.length > 0) return undefined;
    return prepareReadLog(this.#segments, offset, maxBytes, this.highWatermark);
  }

  /**
   * Calls `listener` each time the high watermark advances (new records became readable), for
   * long-polling readers. Returns the function that removes it.
   */
  onData(listener: () => void): () => void {
    return this.#dataListeners.add(listener);
  }

  /**
   * True when a read at `offset` would return no batch and no error: the log is open, the
   * offset is its high watermark, and no damage is on record. Lets a long-polling reader skip
   * the read (and its result) for a partition with nothing new.
   */
  readsNothingAt(offset: number): boolean {
    return !this.#closed && this.#isTail(offset, this.highWatermark);
  }

  #isTail(offset: number, highWatermark: number): boolean {
    return (
      offset === highWatermark && offset >= this.logStartOffset && this.corruptions.length === 0
    );
  }

  /** Removes a listener added by onData (as the function onData returned does). */
  offData(listener: () => void): void {
    this.#dataListeners.delete(listener);
  }

  /** The first offset whose record timestamp is >= `timestampMs`, or undefined if none is. */
  offsetForTimestamp(timestampMs: number): number | undefined {
    if (this.#closed) throw new SluiceError("LOG_CLOSED", `Log ${this.name} is closed`);
    return offsetForTimestamp(this.#segments, this.corruptions, this.name, timestampMs);
  }

  /** Writes and fsyncs everything appended so far, whatever the policy. */
  async flush(): Promise<void> {
    const refused = this.#refusal();
    if (refused !== undefined) throw refused;
    await this.#requestSync();
    await this.#sealing;
    if (this.#fenced !== undefined) throw this.#fenced;
  }

  /**
   * fdatasyncs the bytes written so far beside the flusher, which goes on writing (and, under
   * fsync "never", making visible) new appends while this runs. Everything readable when it
   * is called is on disk when it resolves. For owners of a log kept under fsync "never" that
   * decide themselves when durability is needed (the delay tiers), so that readers never wait
   * for an fsync; flush() would hold every append behind it until its fsync is done.
   */
  async syncWritten(): Promise<void> {
    const refused = this.#refusal();
    if (refused !== undefined) throw refused;
    for (const segment of this.#segments.filter((s) => !s.sealed)) await this.#datasync(segment);
    // Segments rolled before the call are fsynced by their seal.
    await this.#sealing;
    if (this.#fenced !== undefined) throw this.#fenced;
  }

  /**
   * Deletes whole sealed segments past retention (by age of their newest record, then by
   * total size) and advances the log start offset. Returns the number of segments deleted.
   */
  async applyRetention(nowMs = this.#now()): Promise<number> {
    if (this.#closed) return 0;
    // Rolled segments become deletable once their background fsync is done.
    await this.#sealing;
    if (this.#closed) return 0;
    const { retentionMs, retentionBytes } = this.config;
    let total = this.sizeBytes;
    let deleted = 0;
    // A forced collection (a full, blocking one: ~100 ms on a busy broker) only when a deleted
    // segment was mapped; a segment read only from its tail cache or with pread holds nothing.
    let mapped = 0;
    while (this.#segments.length > 1) {
      const oldest = this.#segments[0]!;
      // A segment still being fsynced after its roll waits for the next retention pass.
      if (!oldest.sealed || !this.#durableSealed.has(oldest)) break;
      // Nor is one whose drop-behind hint is still running on another thread.
      if (this.#hinting.includes(oldest)) break;
      const expired = retentionMs >= 0 && oldest.maxTimestamp < nowMs - retentionMs;
      const oversized = retentionBytes >= 0 && total - oldest.size >= retentionBytes;
      if (!expired && !oversized) break;
      this.#markDirtyNow();
      this.#segments.shift();
      total -= oldest.size;
      if (oldest.close()) mapped++;
      this.#deleteLater(oldest);
      deleted++;
    }
    if (mapped > 0) releaseDeletedMappings();
    return deleted;
  }

  /**
   * Deletes whole sealed, durable segments every record of which lies below `offset` (a reader
   * that owns the log has consumed them), as retention does. Returns the segments deleted.
   */
  async deleteSegmentsBelow(offset: number): Promise<number> {
    if (this.#closed) return 0;
    await this.#sealing;
    if (this.#closed) return 0;
    let deleted = 0;
    let mapped = 0;
    while (this.#segments.length > 1) {
      const oldest = this.#segments[0]!;
      if (!oldest.sealed || !this.#durableSealed.has(oldest)) break;
      // Nor is one whose drop-behind hint is still running on another thread.
      if (this.#hinting.includes(oldest)) break;
      if (this.#segments[1]!.baseOffset > offset) break;
      this.#markDirtyNow();
      this.#segments.shift();
      if (oldest.close()) mapped++;
      this.#deleteLater(oldest);
      deleted++;
    }
    if (mapped > 0) releaseDeletedMappings();
    return deleted;
  }

  /** Removes the files of a sealed segment taken out of the log, unlinked on the thread pool. */
  #deleteLater(segment: Segment): void {
    const done: Promise<void> = segment
      .deleteFilesLater((error) =>
        this.#openOptions.onWarning(
          `${this.name}: removing a deleted segment's file failed (${String(error)}); ` +
            "the next open removes it",
        ),
      )
      .finally(() => this.#deletions.delete(done));
    this.#deletions.add(done);
  }

  /** Flushes, fsyncs, checkpoints and marks a clean shutdown; the log is unusable afterwards. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    if (this.#syncTimer !== undefined) clearInterval(this.#syncTimer);
    // Refuse new appends first, so everything acknowledged below is everything there is.
    this.#closed = true;
    await Promise.all(this.#deletions);
    if (this.#cleanMarker) {
      // Untouched since a clean open: the files are as the last clean close left them.
      for (const segment of this.#segments) segment.close();
      return;
    }
    let clean = this.#fenced === undefined;
    if (clean) {
      try {
        await this.#requestSync();
        await this.#sealing;
        for (const segment of this.#segments) {
          if (segment.sealed) continue;
          await this.#persistIndexes(segment);
          // Direct writes' zero padding leaves before the clean marker (direct_io.ts).
          if (segment.trimPadding()) await this.#datasync(segment);
        }
        clean = this.#fenced === undefined;
      } catch {
        clean = false;
      }
    }
    this.#rejectAll(new SluiceError("LOG_CLOSED", `Log ${this.name} is closed`));
    // Even a fenced log may have a write or fsync in flight on the thread pool: its file
    // descriptors are closed only after that returns, never under it.
    await this.#flusherStopped();
    await this.#sealing.catch(() => {});
    await this.#hintsReturned();
    try {
      if (clean) {
        this.#recoveryPoint = this.#active.writtenNextOffset;
        if (this.#checkpoint === undefined) this.#writeRecoveryPoint();
        else this.#advanceRecoveryPointOnClose();
        this.#io.writeFile(join(this.dir, CLEAN_SHUTDOWN_FILE), "");
        this.#io.syncDirectory(this.dir);
      }
    } finally {
      for (const segment of this.#segments) segment.close();
    }
  }
}

assert(RECOVERY_CHECKPOINT_INTERVAL_MS > 0, "checkpoint interval is positive");

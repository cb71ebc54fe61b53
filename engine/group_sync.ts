// The group commit across partitions: one per engine. A partition log whose flush round must be
// durable (fsync "always", or a flush waiting) hands its open segments here instead of
// fdatasyncing them itself; the logs that write in one task are dispatched together as one
// round, and a round makes all of them durable together:
//
//   log A ─┐                     ┌─► one syncfs of the file system (round k; logs arriving
//   log B ─┼─► gathering ──────►─┤   while it is in flight gather for round k+1)
//   log C ─┘   (one task's logs) └─► the fdatasync lanes' queue (SYNC_LANES at once; no
//                                    round barrier: each fdatasync covers only its own file)
//                                          │
//                                          ▼ each log's waiters resolve once its own data is
//                                            durable; a log whose sync failed fails alone
//
// With a file-system flush (syncfs.ts) a round can cost one syscall however many partitions it
// covers; a round uses it when its measured cost is below that of fdatasyncing the round's logs
// (see #choose: on a disk shared with busy writers a syncfs waits for their data too). If
// that flush fails, the round falls back to fdatasync of each log, so that the
// failure lands on the log whose writeback failed (each descriptor reports its own file's
// errors) and the others are acknowledged. Logs on another file system than the flush's are
// always fdatasynced. Without a file-system flush (another OS, no FFI, a custom FileIO) each
// log is fdatasynced, at most SYNC_LANES at once, each log resolving as soon as its own syncs
// are done.

import { setImmediate } from "node:timers";
import { assert } from "../record/mod.ts";
import type { FileIO } from "./io.ts";
import { LatencyHistogram } from "./latency_histogram.ts";
import type { Segment } from "./segment.ts";
import type { FileSystemSync } from "./syncfs.ts";

/**
 * fdatasyncs in flight at once when logs are synced one by one. Measured with
 * bench/tools/fsync_fanout.ts (loaded, 1 KiB per file, two runs), µs per file over 100 / 1,000
 * files: 16 in flight 188-281 / 226-254, 64 in flight 210-301 / 178-243, all at once 189-258 /
 * 160-178: at 1,000 files, more in flight was cheaper. With bench/tools/group_commit.ts (240
 * logs waiting, loaded, alternated with main, whose logs fdatasync all at once) 64 lanes made
 * 0.6-0.8x main's records/s, 256 lanes 0.35-1.17x (median 1.11x): a bound that stays above
 * what one round of a busy broker holds, while capping what one engine puts on the thread pool.
 */
export const SYNC_LANES = 256;

/**
 * A way of syncing (flush or fdatasyncs) not used for this long is used again to re-measure;
 * each time such a trial finds it still the dearer way, its wait doubles, up to
 * COST_STALE_MS_MAX, so that a syncfs stuck behind other programs' writeback (hundreds of ms on
 * the loaded benchmark machine) is tried less and less often.
 */
export const COST_STALE_MS = 2000;
export const COST_STALE_MS_MAX = 64_000;
/** Weight of the newest round in the moving averages of the two ways' costs. */
const COST_WEIGHT = 0.3;

/** What a log asks of a round: its open segments made durable. */
export type SyncRequest = {
  segments: readonly Segment[];
  /** The device of the log's directory (st_dev). */
  dev: number;
  /** Told how long this log's sync took, in seconds (the engine's fsync histogram). */
  onSynced?: (seconds: number) => void;
};

/** A round's logs not yet settled, and when it was dispatched (the round seconds' start). */
type Round = { left: number; startMs: number };

type Pending = {
  segments: readonly Segment[];
  dev: number;
  onSynced: ((seconds: number) => void) | undefined;
  resolve: () => void;
  reject: (error: unknown) => void;
  round: Round | undefined;
};

/**
 * The request whose promise is being made: the one executor below stores the promise's
 * settle functions in it, so a request makes no closure of its own (see GroupSync.sync).
 */
let forming: Pending | undefined;

function captureSettle(resolve: () => void, reject: (error: unknown) => void): void {
  forming!.resolve = resolve;
  forming!.reject = reject;
}

function unsettled(): void {
  throw new Error("a sync request settled before its promise was made");
}

/** Counters of the rounds run so far, for /metrics (sluice_group_sync_*). */
export type GroupSyncStats = {
  /** Rounds whose covered logs went to one file-system flush (syncfs). */
  flushRounds: number;
  /** Rounds whose logs were fdatasynced one by one. */
  fdatasyncRounds: number;
  /** Segment files the rounds covered, summed: files per round = files / rounds. */
  files: number;
};

export type GroupSyncOptions = {
  io: FileIO;
  /** A flush of the whole file system, when one is safe and reachable (syncfs.ts). */
  fileSystem?: FileSystemSync;
  /** fdatasyncs in flight at once (default SYNC_LANES). */
  lanes?: number;
  /**
   * Flush every round with `fileSystem`, whatever the measured costs say (partitionSync
   * "flush"); a flush that failed is tried again only at its next trial, as in "auto".
   */
  flushAlways?: boolean;
  /** The monotonic clock that times syncs, in ms (default performance.now). */
  monotonicMs?: () => number;
};

export class GroupSync {
  #io: FileIO;
  #fileSystem: FileSystemSync | undefined;
  #lanes: number;
  #flushAlways: boolean;
  #monotonicMs: () => number;
  #gathering: Pending[] = [];
  /** Logs waiting for an fdatasync lane, oldest first. */
  #queue: Pending[] = [];
  #lanesBusy = 0;
  /** A flush round is in flight: logs gather for the next. */
  #flushing = false;
  #scheduled = false;
  /** The last choice that was a trial, judged when the next round is chosen. */
  #lastTrial: { flush: boolean; files: number } | undefined;
  /** The next fdatasync's time replaces the average (it is a trial's). */
  #fileTrial = false;
  /** Moving averages of a flush round and of one fdatasync in a round, and when each ran. */
  #costs = {
    flushMs: undefined as number | undefined,
    fileMs: undefined as number | undefined,
    flushTriedMs: 0,
    fileTriedMs: 0,
    flushRetryMs: COST_STALE_MS,
    fileRetryMs: COST_STALE_MS,
  };
  /** Rounds run so far (for tests and metrics). */
  rounds = 0;
  readonly stats: GroupSyncStats = { flushRounds: 0, fdatasyncRounds: 0, files: 0 };
  /** Dispatch of a round to its last log settled (durable, or failed), in seconds. */
  readonly roundSeconds = new LatencyHistogram();

  constructor(options: GroupSyncOptions) {
    this.#io = options.io;
    this.#fileSystem = options.fileSystem;
    this.#lanes = options.lanes ?? SYNC_LANES;
    this.#flushAlways = options.flushAlways === true;
    assert(Number.isSafeInteger(this.#lanes) && this.#lanes >= 1, "lanes is a positive integer");
    this.#monotonicMs = options.monotonicMs ?? (() => performance.now());
  }

  /** The moving averages that choose each round's way: a flush, one fdatasync, in ms. */
  get costs(): { flushMs: number | undefined; fileMs: number | undefined } {
    return { flushMs: this.#costs.flushMs, fileMs: this.#costs.fileMs };
  }

  /** Whether rounds flush the whole file system (one syncfs) rather than log by log. */
  get flushesFileSystem(): boolean {
    return this.#fileSystem !== undefined;
  }

  /** Resolves once every segment of the request is durable; rejects with its sync's error. */
  sync(request: SyncRequest): Promise<void> {
    const pending: Pending = {
      segments: request.segments,
      dev: request.dev,
      onSynced: request.onSynced,
      resolve: unsettled,
      reject: unsettled,
      round: undefined,
    };
    forming = pending;
    const promise = new Promise<void>(captureSettle);
    forming = undefined;
    this.#gathering.push(pending);
    this.#schedule();
    return promise;
  }

  /**
   * Dispatches the gathered logs once the current task's logs have all written: after I/O
   * callbacks, so that every log touched by one produce request joins the same round.
   */
  #schedule(): void {
    if (this.#flushing || this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#dispatch();
    });
  }

  /**
   * One round: the gathered logs go to one flush, or to the fdatasync lanes. A flush covers
   * only what was written before it started, so logs arriving during one wait for the next;
   * fdatasyncs need no round, so those logs join the lanes' queue at once.
   */
  #dispatch(): void {
    if (this.#flushing || this.#gathering.length === 0) return;
    const round = this.#gathering;
    this.#gathering = [];
    this.#startRound(round);
    const fileSystem = this.#fileSystem;
    const covered = fileSystem === undefined ? [] : round.filter((p) => p.dev === fileSystem.dev);
    const files = fileCount(covered);
    const choice = fileSystem === undefined || files === 0 ? undefined : this.#choose(files);
    if (fileSystem === undefined || choice?.flush !== true) {
      this.stats.fdatasyncRounds++;
      this.#enqueue(round, choice?.trial === true);
      return;
    }
    this.stats.flushRounds++;
    const coveredSet = new Set(covered);
    this.#enqueue(
      round.filter((request) => !coveredSet.has(request)),
      false,
    );
    this.#flushing = true;
    void this.#flushRound(fileSystem, covered, choice.trial).finally(() => {
      this.#flushing = false;
      this.#schedule();
    });
  }

  /** Counts a round and times it: each of its logs carries it until settled. */
  #startRound(round: Pending[]): void {
    this.rounds++;
    this.stats.files += fileCount(round);
    const timer: Round = { left: round.length, startMs: this.#monotonicMs() };
    for (const request of round) request.round = timer;
  }

  /** One log of a round settled; the round's time is taken when its last one has. */
  #settled(request: Pending): void {
    const round = request.round;
    if (round === undefined) return;
    request.round = undefined;
    round.left--;
    assert(round.left >= 0, "a round's logs settle once each");
    if (round.left === 0) this.roundSeconds.observe((this.#monotonicMs() - round.startMs) / 1000);
  }

  async #flushRound(fileSystem: FileSystemSync, covered: Pending[], trial: boolean) {
    const startMs = this.#monotonicMs();
    try {
      await fileSystem.sync();
    } catch {
      // A failed flush is not used again until a trial, as if it cost without end (a Bun
      // worker that cannot load bun:ffi fails every call).
      this.#costs.flushMs = Number.POSITIVE_INFINITY;
      this.#costs.flushTriedMs = startMs;
      // Which file's writeback failed is told only to that file's descriptors.
      this.#enqueue(covered, false);
      return;
    }
    const ms = this.#monotonicMs() - startMs;
    // A trial's figure replaces the average: the old one is stale, and may include a first
    // call's start-up (Bun's syncfs worker thread starts on the first flush).
    this.#costs.flushMs = trial ? ms : average(this.#costs.flushMs, ms);
    this.#costs.flushTriedMs = startMs;
    for (const request of covered) {
      settle(request, ms / 1000);
      this.#settled(request);
    }
  }

  /** A way tried again because it was stale waits twice as long next time if it still lost. */
  #judgeTrial(trial: { flush: boolean; files: number }): void {
    const costs = this.#costs;
    if (costs.flushMs === undefined || costs.fileMs === undefined) return;
    const flushCheaper = costs.flushMs <= this.#fdatasyncsMs(trial.files);
    if (trial.flush) {
      costs.flushRetryMs = flushCheaper
        ? COST_STALE_MS
        : Math.min(costs.flushRetryMs * 2, COST_STALE_MS_MAX);
    } else {
      costs.fileRetryMs = flushCheaper
        ? Math.min(costs.fileRetryMs * 2, COST_STALE_MS_MAX)
        : COST_STALE_MS;
    }
  }

  /** What fdatasyncing `files` files is expected to take, `lanes` at once. */
  #fdatasyncsMs(files: number): number {
    return (this.#costs.fileMs ?? 0) * Math.ceil(files / this.#lanes);
  }

  /**
   * Whether one file-system flush is expected to cost less than fdatasyncing these logs. A
   * syncfs writes back every dirty page of the file system, other programs' too: on a disk of
   * its own it costs about one fdatasync (bench/tools/fsync_fanout.ts: 12 ms for 1,000 files),
   * on a shared, busy one it waited for others' writeback (hundreds of ms, loaded). Each way's
   * cost is a moving average (a flush; one fdatasync), and a way not tried for a while (from
   * COST_STALE_MS, doubling while trials find it dearer) is tried again so that its figure
   * follows the disk. A trial is judged when the next round is chosen.
   */
  #choose(files: number): { flush: boolean; trial: boolean } {
    const costs = this.#costs;
    if (this.#lastTrial !== undefined) this.#judgeTrial(this.#lastTrial);
    this.#lastTrial = undefined;
    if (costs.flushMs === undefined) return { flush: true, trial: false };
    // Chosen by the operator: one journal commit per round (a syncfs) rather than one per log,
    // unless the last flush failed (then as "auto", until its trial).
    if (this.#flushAlways && costs.flushMs !== Number.POSITIVE_INFINITY) {
      return { flush: true, trial: false };
    }
    if (costs.fileMs === undefined) return { flush: false, trial: false };
    const nowMs = this.#monotonicMs();
    let choice = { flush: costs.flushMs <= this.#fdatasyncsMs(files), trial: false };
    if (nowMs - costs.flushTriedMs >= costs.flushRetryMs) choice = { flush: true, trial: true };
    else if (nowMs - costs.fileTriedMs >= costs.fileRetryMs) choice = { flush: false, trial: true };
    if (choice.trial) this.#lastTrial = { flush: choice.flush, files };
    return choice;
  }

  /** Queues requests for the fdatasync lanes, starting lanes up to `lanes` at once. */
  #enqueue(requests: Pending[], trial: boolean): void {
    if (requests.length === 0) return;
    if (trial) this.#fileTrial = true;
    for (const request of requests) this.#queue.push(request);
    while (this.#lanesBusy < this.#lanes && this.#queue.length > 0) {
      this.#lanesBusy++;
      void this.#lane();
    }
  }

  /** One lane: fdatasyncs queued requests one after another; each settles on its own. */
  async #lane(): Promise<void> {
    try {
      for (
        let request = this.#queue.shift();
        request !== undefined;
        request = this.#queue.shift()
      ) {
        const startMs = this.#monotonicMs();
        try {
          for (const segment of request.segments) {
            await segment.withFd((fd) => this.#io.datasync(fd));
          }
        } catch (error) {
          request.reject(error);
          this.#settled(request);
          continue;
        }
        // Taken before the waiter is resolved: what its resolution runs is not the disk's time.
        const endMs = this.#monotonicMs();
        this.#observeFile((endMs - startMs) / Math.max(request.segments.length, 1), startMs);
        settle(request, (endMs - startMs) / 1000);
        this.#settled(request);
      }
    } finally {
      this.#lanesBusy--;
    }
  }

  #observeFile(ms: number, startMs: number): void {
    const costs = this.#costs;
    costs.fileMs = this.#fileTrial ? ms : average(costs.fileMs, ms);
    this.#fileTrial = false;
    costs.fileTriedMs = Math.max(costs.fileTriedMs, startMs);
  }

  /** Closes the file-system flush; call after every log using this has closed. */
  close(): void {
    assert(this.#gathering.length + this.#queue.length === 0, "no log waits on a closed sync");
    this.#fileSystem?.close();
    this.#fileSystem = undefined;
  }
}

function fileCount(requests: readonly Pending[]): number {
  let files = 0;
  for (const request of requests) files += request.segments.length;
  return files;
}

function average(previous: number | undefined, sample: number): number {
  return previous === undefined ? sample : previous + COST_WEIGHT * (sample - previous);
}

function settle(request: Pending, seconds: number): void {
  request.resolve();
  try {
    request.onSynced?.(seconds);
  } catch {
    // A listener's failure is not the sync's: the data is durable, the waiter already resolved.
  }
}

assert(SYNC_LANES >= 1, "at least one fdatasync in flight");
assert(COST_STALE_MS <= COST_STALE_MS_MAX, "the longest wait is not below the first");
assert(COST_WEIGHT > 0 && COST_WEIGHT <= 1, "the newest round has a weight in (0, 1]");

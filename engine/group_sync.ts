// The group commit across partitions: one per engine. A partition log whose flush round must be
// durable (fsync "always", or a flush waiting) hands its open segments here instead of
// fdatasyncing them itself; every log that arrives while a round is in flight joins the next
// round, and a round makes all of them durable together:
//
//   log A ─┐                       round k (in flight)            round k+1
//   log B ─┼─► gathering ──────►  syncfs of the file system  ─►  (the logs that arrived
//   log C ─┘   (until the         or fdatasync of each log,       meanwhile)
//               running round      SYNC_LANES at once
//               ends)                      │
//                                          ▼ each log's waiters resolve once its own data is
//                                            durable; a log whose sync failed fails alone
//
// With a file-system flush (syncfs.ts) a round costs one syscall however many partitions it
// covers. If that flush fails, the round falls back to fdatasync of each log, so that the
// failure lands on the log whose writeback failed (each descriptor reports its own file's
// errors) and the others are acknowledged. Logs on another file system than the flush's are
// always fdatasynced. Without a file-system flush (another OS, no FFI, a custom FileIO) each
// log is fdatasynced, at most SYNC_LANES at once, each log resolving as soon as its own syncs
// are done.

import { setImmediate } from "node:timers";
import { assert } from "../record/mod.ts";
import type { FileIO } from "./io.ts";
import type { Segment } from "./segment.ts";
import type { FileSystemSync } from "./syncfs.ts";

/**
 * fdatasyncs in flight at once when logs are synced one by one. Measured with
 * bench/tools/fsync_fanout.ts (loaded, 1 KiB per file): per file, 16 in flight cost 188-226 µs
 * and 64 cost 243-301 µs over 100 and 1,000 files; more in flight only queue on the thread pool.
 */
export const SYNC_LANES = 16;

/** What a log asks of a round: its open segments made durable. */
export type SyncRequest = {
  segments: readonly Segment[];
  /** The device of the log's directory (st_dev). */
  dev: number;
  /** Told how long this log's sync took, in seconds (the engine's fsync histogram). */
  onSynced?: (seconds: number) => void;
};

type Pending = SyncRequest & { resolve: () => void; reject: (error: unknown) => void };

export type GroupSyncOptions = {
  io: FileIO;
  /** A flush of the whole file system, when one is safe and reachable (syncfs.ts). */
  fileSystem?: FileSystemSync;
  /** fdatasyncs in flight at once (default SYNC_LANES). */
  lanes?: number;
  /** The monotonic clock that times syncs, in ms (default performance.now). */
  monotonicMs?: () => number;
};

export class GroupSync {
  #io: FileIO;
  #fileSystem: FileSystemSync | undefined;
  #lanes: number;
  #monotonicMs: () => number;
  #gathering: Pending[] = [];
  #running = false;
  #scheduled = false;
  /** Rounds run so far (for tests and metrics). */
  rounds = 0;

  constructor(options: GroupSyncOptions) {
    this.#io = options.io;
    this.#fileSystem = options.fileSystem;
    this.#lanes = options.lanes ?? SYNC_LANES;
    assert(Number.isSafeInteger(this.#lanes) && this.#lanes >= 1, "lanes is a positive integer");
    this.#monotonicMs = options.monotonicMs ?? (() => performance.now());
  }

  /** Whether rounds flush the whole file system (one syncfs) rather than log by log. */
  get flushesFileSystem(): boolean {
    return this.#fileSystem !== undefined;
  }

  /** Resolves once every segment of the request is durable; rejects with its sync's error. */
  sync(request: SyncRequest): Promise<void> {
    const promise = new Promise<void>((resolve, reject) => {
      this.#gathering.push({ ...request, resolve, reject });
    });
    this.#schedule();
    return promise;
  }

  /**
   * Starts a round once the current task's logs have all written: after I/O callbacks, so that
   * every log touched by one produce request joins the same round.
   */
  #schedule(): void {
    if (this.#running || this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#run();
    });
  }

  async #run(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      while (this.#gathering.length > 0) {
        const round = this.#gathering;
        this.#gathering = [];
        this.rounds++;
        await this.#round(round);
      }
    } finally {
      this.#running = false;
    }
  }

  async #round(round: Pending[]): Promise<void> {
    const fileSystem = this.#fileSystem;
    const covered = fileSystem === undefined ? [] : round.filter((p) => p.dev === fileSystem.dev);
    const alone = round.filter((request) => !covered.includes(request));
    const lanes = this.#syncEach(alone);
    if (fileSystem !== undefined && covered.length > 0) {
      const startMs = this.#monotonicMs();
      let flushed = true;
      try {
        await fileSystem.sync();
      } catch {
        flushed = false;
      }
      if (flushed) {
        const seconds = (this.#monotonicMs() - startMs) / 1000;
        for (const request of covered) settle(request, seconds);
      } else {
        // Which file's writeback failed is told only to that file's descriptors.
        await this.#syncEach(covered);
      }
    }
    await lanes;
  }

  /** fdatasyncs each request's segments, at most `lanes` at once; each settles on its own. */
  async #syncEach(requests: Pending[]): Promise<void> {
    let next = 0;
    const lane = async () => {
      while (next < requests.length) {
        const request = requests[next++]!;
        const startMs = this.#monotonicMs();
        try {
          for (const segment of request.segments) {
            await segment.withFd((fd) => this.#io.datasync(fd));
          }
        } catch (error) {
          request.reject(error);
          continue;
        }
        settle(request, (this.#monotonicMs() - startMs) / 1000);
      }
    };
    const running: Promise<void>[] = [];
    for (let i = 0; i < Math.min(this.#lanes, requests.length); i++) running.push(lane());
    await Promise.all(running);
  }

  /** Closes the file-system flush; call after every log using this has closed. */
  close(): void {
    assert(this.#gathering.length === 0, "no log waits on a closed group sync");
    this.#fileSystem?.close();
    this.#fileSystem = undefined;
  }
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

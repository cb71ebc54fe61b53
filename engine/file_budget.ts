// The open-files budget: a bound on the segment file descriptors a process holds, whatever the
// number of partitions. Each segment file is a `BudgetedFile` that opens its descriptor when it
// is used and may be closed again, least recently used first, whenever opening another would
// pass `openFilesMax`. A partition without traffic therefore holds no descriptor once others
// need the room, and 100,000 partitions never need 100,000 descriptors: the active segments
// being written hold one each while a write or fsync is in flight, the rest share the budget.
//
//   budget (openFilesMax = 4)       least recently used ─────────────► most recently used
//   open:   [ b-7/000.log ][ a-0/000.log ][ c-1/120.log ][ a-3/000.log ]
//   opening d-2/000.log closes b-7/000.log first (unless a write or fsync is using it).
//
// Closing and reopening is invisible to readers and writers: every synchronous use asks for the
// descriptor at the moment it needs it (`fd`), and an asynchronous write or fsync holds it
// pinned (`use`) so it is never closed under an operation on the thread pool (a closed number
// could be reused by another file). Sealed segments read through a mapping (Bun) need no
// descriptor once mapped: a mapping keeps no descriptor open.
//
// fsync through a reopened descriptor: fsync and fdatasync act on the file, not on the
// descriptor. On Linux they flush every dirty page of the inode, whichever descriptor wrote it,
// and since Linux 4.13 a writeback error is recorded on the file (errseq) and reported to the
// next fsync of a descriptor that has not seen it: since 4.16 that includes a descriptor opened
// after the error, as long as no other descriptor saw it first. The engine's fsync semantics are
// therefore the same whether or not the descriptor was closed between the write and the fsync.

import fs from "node:fs";
import { assert, IndexedSet } from "../record/mod.ts";

/**
 * The budget when the process's file limit cannot be read (no /proc: macOS, Windows): half of
 * 256, the smallest default soft limit of the supported systems (macOS).
 */
export const OPEN_FILES_MAX_FALLBACK = 128;
/** The smallest budget accepted: a few segments per partition being written or read. */
export const OPEN_FILES_MAX_MIN = 4;

/**
 * The soft limit on open files of this process (`ulimit -n`), read from /proc/self/limits on
 * Linux; undefined where it cannot be read or is unlimited.
 */
export function processFileLimit(): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync("/proc/self/limits", "utf8");
  } catch {
    return undefined;
  }
  const match = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (match === null || match[1] === "unlimited") return undefined;
  const limit = Number(match[1]);
  return Number.isSafeInteger(limit) && limit > 0 ? limit : undefined;
}

/** The default `openFilesMax`: half the process's file limit, or the documented fallback. */
export function openFilesMaxDefault(): number {
  const limit = processFileLimit();
  if (limit === undefined) return OPEN_FILES_MAX_FALLBACK;
  return Math.max(OPEN_FILES_MAX_MIN, Math.floor(limit / 2));
}

export class FileBudget {
  readonly openFilesMax: number;
  /**
   * Files holding a descriptor, least recently used first. Not a Map re-inserted at each use:
   * JavaScriptCore's Map rebuilds its table under such churn, and each table left behind
   * outlived young collections (record/indexed_set.ts); a read or append touches its file.
   */
  #open = new IndexedSet<BudgetedFile>();

  constructor(openFilesMax: number) {
    if (!Number.isSafeInteger(openFilesMax) || openFilesMax < OPEN_FILES_MAX_MIN) {
      throw new RangeError(
        `openFilesMax ${openFilesMax} must be an integer of at least ${OPEN_FILES_MAX_MIN}`,
      );
    }
    this.openFilesMax = openFilesMax;
  }

  /** Descriptors held now (may pass openFilesMax while that many are pinned by I/O). */
  get openCount(): number {
    return this.#open.size;
  }

  /**
   * Hands a descriptor already open on `path` to the budget (opened with `flags` again when it
   * is needed after being closed).
   */
  adopt(path: string, fd: number, flags: string | number = "r+"): BudgetedFile {
    const file = new BudgetedFile(this, path, flags, fd);
    this.touch(file);
    return file;
  }

  /**
   * A file that exists, counted in the budget from its first use: opened with `flags` (a
   * string or numeric `fs.open` flags, never creating or truncating) when first needed.
   */
  open(path: string, flags: string | number): BudgetedFile {
    return new BudgetedFile(this, path, flags, undefined);
  }

  /** Marks `file` as the most recently used, closing others past the budget. @internal */
  touch(file: BudgetedFile): void {
    this.#open.moveToBack(file);
    if (this.#open.size > this.openFilesMax) this.#evict(file);
  }

  /** Closes idle files past the budget (after pins were released). @internal */
  trim(): void {
    if (this.#open.size > this.openFilesMax) this.#evict(undefined);
  }

  /** Forgets a file whose descriptor was closed. @internal */
  forget(file: BudgetedFile): void {
    this.#open.delete(file);
  }

  /**
   * Closes least recently used files until the budget holds, skipping pinned ones and `using`
   * (the file being handed out): while more than openFilesMax are pinned by I/O in flight, the
   * budget is passed rather than a descriptor closed under its user. The walk is bounded by
   * the number of open files.
   */
  #evict(using: BudgetedFile | undefined): void {
    for (const file of this.#open.values()) {
      if (this.#open.size <= this.openFilesMax) return;
      if (file.pinned || file === using) continue;
      file.release();
    }
  }
}

/** One file whose descriptor the budget may close while it is idle and reopen on demand. */
export class BudgetedFile {
  readonly path: string;
  #budget: FileBudget;
  #flags: string | number;
  #fd: number | undefined;
  #pins = 0;
  #closed = false;
  /** Its place in the budget's order of use (record/indexed_set.ts). @internal */
  indexedAt = -1;

  constructor(budget: FileBudget, path: string, flags: string | number, fd: number | undefined) {
    this.#budget = budget;
    this.path = path;
    this.#flags = flags;
    this.#fd = fd;
  }

  get pinned(): boolean {
    return this.#pins > 0;
  }

  /** Whether a descriptor is held now (for tests and metrics). */
  get isOpen(): boolean {
    return this.#fd !== undefined;
  }

  /**
   * The descriptor, opened again if the budget closed it. For synchronous use only: it stays
   * valid until the caller next yields or asks the budget for another file.
   */
  get fd(): number {
    assert(!this.#closed, "a closed file is not used");
    if (this.#fd === undefined) {
      // Reopened with the flags it was created with, minus creation and truncation: the file
      // exists, and reopening must never change it.
      this.#fd = fs.openSync(this.path, this.#flags === "w+" ? "r+" : this.#flags);
    }
    const fd = this.#fd;
    this.#budget.touch(this);
    return fd;
  }

  /** Runs an asynchronous operation with the descriptor, which stays open until it settles. */
  async use<T>(operation: (fd: number) => Promise<T>): Promise<T> {
    const fd = this.pin();
    try {
      return await operation(fd);
    } finally {
      this.unpin();
    }
  }

  /** The descriptor, reopened if need be and held open until the matching `unpin`. */
  pin(): number {
    this.#pins++;
    try {
      return this.fd;
    } catch (error) {
      this.unpin();
      throw error;
    }
  }

  unpin(): void {
    this.#pins--;
    assert(this.#pins >= 0, "pins balance");
    // Files kept open past the budget while pinned are closed once their I/O is done.
    if (this.#pins === 0) this.#budget.trim();
  }

  /** Closes the descriptor to make room; the next use reopens it. @internal */
  release(): void {
    assert(this.#pins === 0, "a file in use is never released");
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    this.#fd = undefined;
    this.#budget.forget(this);
    fs.closeSync(fd);
  }

  /** Closes the file for good. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    this.#fd = undefined;
    this.#budget.forget(this);
    fs.closeSync(fd);
  }
}

/** The budget shared by logs and engines opened without one of their own. */
let sharedBudget: FileBudget | undefined;

export function sharedFileBudget(): FileBudget {
  sharedBudget ??= new FileBudget(openFilesMaxDefault());
  return sharedBudget;
}

assert(OPEN_FILES_MAX_FALLBACK >= OPEN_FILES_MAX_MIN, "the fallback budget is a valid budget");

// The file operations the engine uses, behind one small interface: the real one below, and in
// tests a wrapper that injects ENOSPC or EIO at a chosen call (NATS's filestore is tested the
// same way). Every write and fsync the engine makes goes through a FileIO (segment data, index
// files, checkpoints, markers, topic metadata, the lock file, the committed-offsets log), so
// fault injection reaches all of them. Segment writes and fsyncs are asynchronous so they run on
// the runtime's thread pool and never stall other work on the event loop, except rounds of at
// most WRITE_SYNC_BYTES_MAX, which cost less written in place; large rounds go in pieces of at
// most WRITE_PIECE_BYTES_MAX, a few in flight (see there for why); small metadata files
// are written synchronously, except those replaced often under fsync (writeFileAtomicAsync);
// reads are synchronous positional reads because a fetch from the page cache costs less than a
// thread-pool round trip.
//
// The runtime adapter lives here too: Bun maps segments read-only with `Bun.mmap`;
// elsewhere (Deno) `mapFile` returns undefined and reads fall back to `pread`.

import fs from "node:fs";

/** A part of a file to map: `bytes` from `position`. */
export type MapRange = { position: number; bytes: number };

export interface FileIO {
  /** Writes every byte of `buffers` at `position`, looping over short writes. */
  writeAll(fd: number, buffers: Uint8Array[], position: number): Promise<void>;
  datasync(fd: number): Promise<void>;
  /**
   * Reads up to `length` bytes at `position` (shorter at end of file) into a new buffer, or
   * into `into` when it is given and holds `length` bytes: the answer is then a view of `into`.
   * A FileIO may ignore `into` and answer a new buffer.
   */
  readAt(fd: number, position: number, length: number, into?: Uint8Array): Uint8Array;
  truncate(fd: number, length: number): void;
  /**
   * A read-only mapping of the whole file, or with `range` of at most `range.bytes` from
   * `range.position` (fewer at end of file); undefined where the runtime has none.
   */
  mapFile(path: string, range?: MapRange): Uint8Array | undefined;
  /** Writes a whole small file, creating or replacing it; no fsync. */
  writeFile(path: string, bytes: Uint8Array | string): void;
  /** Writes `bytes` at `position` of an existing file; no fsync. */
  writeFileAt(path: string, bytes: Uint8Array, position: number): Promise<void>;
  /** fdatasync of a file by path. */
  syncFile(path: string): Promise<void>;
  /** fsync of a directory, so a create, rename or unlink inside it survives power loss. */
  syncDirectory(path: string): void;
  /**
   * Optional: `syncDirectory` on the thread pool. Where it is left out (a FileIO written for
   * tests), the engine calls `syncDirectory` instead, after the current task.
   */
  syncDirectoryAsync?(path: string): Promise<void>;
  /**
   * Optional: makes every write so far to the file system holding `dir` durable at once (as
   * syncfs does). When present, the engine's group commit across partitions calls it once per
   * round instead of fdatasyncing each log (group_sync.ts); realFileIO leaves it out and the
   * engine opens its own (syncfs.ts), so a FileIO spread from realFileIO keeps its datasync.
   */
  syncFileSystem?(dir: string): Promise<void>;
  /**
   * Replaces a small file atomically: temp file, fsync, rename over, fsync the directory.
   * `{ sync: false }` leaves out both fsyncs: the replacement is still atomic for a process
   * crash, but power loss may keep the old file (for state whose logs are not fsynced either).
   */
  writeFileAtomic(
    dir: string,
    name: string,
    bytes: Uint8Array | string,
    options?: { sync?: boolean },
  ): void;
  /**
   * Optional: `writeFileAtomic` with its fsyncs (file and directory) on the thread pool, so a
   * busy disk does not stall the event loop. Where it is left out (a FileIO written for
   * tests), the engine calls `writeFileAtomic` instead.
   */
  writeFileAtomicAsync?(dir: string, name: string, bytes: Uint8Array | string): Promise<void>;
}

/** One positional writev on the thread pool; answers how many bytes it wrote. */
export function writevOnce(fd: number, buffers: Uint8Array[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.writev(fd, buffers, position, (error, written) => {
      if (error === null) resolve(written);
      else reject(error);
    });
  });
}

/** Drops the first `count` bytes from a list of buffers, returning views of what is left. */
function skipBytes(buffers: Uint8Array[], count: number): Uint8Array[] {
  let remaining = count;
  const rest: Uint8Array[] = [];
  for (const buffer of buffers) {
    if (remaining >= buffer.length) {
      remaining -= buffer.length;
    } else {
      rest.push(remaining === 0 ? buffer : buffer.subarray(remaining));
      remaining = 0;
    }
  }
  return rest;
}

type BunMmap = (
  path: string,
  options?: { shared?: boolean; offset?: number; size?: number },
) => Uint8Array;
const bunMmap = (globalThis as { Bun?: { mmap?: BunMmap } }).Bun?.mmap;

type BunGc = (force: boolean) => void;
const bunGc = (globalThis as { Bun?: { gc?: BunGc } }).Bun?.gc;

/**
 * Returns the space of deleted, mapped segment files to the file system. Bun has no explicit
 * unmap: a mapping lives until the collector frees its last view, and an unlinked file's blocks
 * stay allocated while it is mapped. After deleting mapped segments (a topic deleted, retention)
 * the engine drops its own references and forces one collection, which unmaps every mapping no
 * reader still holds. Measured on a tmpfs: of a deleted 10 MB topic, 1 MB was freed without it,
 * 9 MB with it (the rest when the collector next runs). Reading sealed segments into pooled
 * buffers instead would free at once but copy every byte a consumer reads, so mapping stays.
 * Elsewhere (Deno) nothing is mapped: a no-op.
 */
export function releaseDeletedMappings(): void {
  bunGc?.(true);
}

/** The writev batch limit of Linux (IOV_MAX); longer lists are written in several calls. */
const IOVEC_COUNT_MAX = 1024;
/**
 * Each positional write takes at most this many bytes. Large writes get large page-cache
 * folios, whose first touch was several times slower on the VMs sluice is benchmarked on: an
 * 8.8 MB pwritev ran at 21 ms, and cutting it into ≤ 1 MiB pieces took append from ~440 to
 * ~1,050 MB/s (A/B runs). Elsewhere it costs one syscall per MiB.
 */
export const WRITE_PIECE_BYTES_MAX = 1024 * 1024;
/** Pieces of one round in flight on the thread pool at once (2 took append to ~1,190 MB/s). */
export const WRITE_PIECES_IN_FLIGHT = 2;
/**
 * Rounds up to this size are written on the calling thread: a thread-pool round trip costs
 * more CPU than copying a few KiB into the page cache (measured: server CPU -15% at 10,000
 * one-record batches a second).
 */
export const WRITE_SYNC_BYTES_MAX = 64 * 1024;

/** `buffers` (from `position` on) cut into consecutive pieces of at most `pieceBytes`. */
export function writePieces(
  buffers: readonly Uint8Array[],
  position: number,
  pieceBytes: number,
): { position: number; buffers: Uint8Array[] }[] {
  const pieces: { position: number; buffers: Uint8Array[] }[] = [];
  let piece = { position, buffers: [] as Uint8Array[] };
  let pieceLength = 0;
  let at = position;
  for (const buffer of buffers) {
    let from = 0;
    while (from < buffer.length) {
      const full = pieceLength === pieceBytes || piece.buffers.length === IOVEC_COUNT_MAX;
      if (full) {
        pieces.push(piece);
        piece = { position: at, buffers: [] };
        pieceLength = 0;
      }
      const take = Math.min(buffer.length - from, pieceBytes - pieceLength);
      piece.buffers.push(
        from === 0 && take === buffer.length ? buffer : buffer.subarray(from, from + take),
      );
      pieceLength += take;
      from += take;
      at += take;
    }
  }
  if (pieceLength > 0) pieces.push(piece);
  return pieces;
}

/** Writes one piece whole, looping over short writes. */
async function writePiece(fd: number, piece: { position: number; buffers: Uint8Array[] }) {
  let pending = piece.buffers;
  let at = piece.position;
  while (pending.length > 0) {
    let total = 0;
    for (const buffer of pending) total += buffer.length;
    const written = await writevOnce(fd, pending, at);
    at += written;
    pending = written === total ? [] : skipBytes(pending, written);
  }
}

function writeAllSync(fd: number, buffers: Uint8Array[], position: number): void {
  let pending = buffers;
  let at = position;
  while (pending.length > 0) {
    let total = 0;
    for (const buffer of pending) total += buffer.length;
    const written = fs.writevSync(fd, pending, at);
    at += written;
    pending = written === total ? [] : skipBytes(pending, written);
  }
}

/**
 * Runs `write(0)` to `write(count - 1)`, started in order, with at most WRITE_PIECES_IN_FLIGHT
 * running at once. On a failure no further one starts; it waits for those in flight and
 * rejects with the first error: the caller then truncates, which must not race a write still
 * running. Buffered pieces (below) and direct ones (direct_io.ts) are written so.
 */
export async function writeInFlight(
  count: number,
  write: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const lane = async () => {
    while (next < count && failure === undefined) {
      try {
        await write(next++);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  const lanes: Promise<void>[] = [];
  for (let i = 0; i < Math.min(WRITE_PIECES_IN_FLIGHT, count); i++) lanes.push(lane());
  await Promise.all(lanes);
  if (failure !== undefined) throw failure.error;
}

/**
 * The answer of every write done in place: settled, shared, never changed. A caller that sees
 * it knows the bytes are written already and may go on without awaiting (partition_log.ts
 * completes such flush rounds in place); a FileIO that wraps this one passes it through.
 */
export const WRITTEN_IN_PLACE: Promise<void> = Promise.resolve();

export const realFileIO: FileIO = {
  // Not an async function: a small write, done in place, answers with one shared settled
  // promise, so the flush round of a one-batch partition makes no frame or promise here.
  writeAll(fd, buffers, position) {
    let total = 0;
    for (const buffer of buffers) total += buffer.length;
    if (total === 0) return WRITTEN_IN_PLACE;
    if (total <= WRITE_SYNC_BYTES_MAX && buffers.length <= IOVEC_COUNT_MAX) {
      try {
        writeAllSync(fd, buffers, position);
      } catch (error) {
        return Promise.reject(error);
      }
      return WRITTEN_IN_PLACE;
    }
    const pieces = writePieces(buffers, position, WRITE_PIECE_BYTES_MAX);
    return writeInFlight(pieces.length, (index) => writePiece(fd, pieces[index]!));
  },
  datasync(fd) {
    return new Promise((resolve, reject) => {
      fs.fdatasync(fd, (error) => {
        if (error === null) resolve();
        else reject(error);
      });
    });
  },
  readAt(fd, position, length, into) {
    const buffer = into !== undefined && into.length >= length ? into : new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const read = fs.readSync(fd, buffer, filled, length - filled, position + filled);
      if (read === 0) break;
      filled += read;
    }
    return filled === buffer.length ? buffer : buffer.subarray(0, filled);
  },
  truncate(fd, length) {
    fs.ftruncateSync(fd, length);
  },
  mapFile(path, range) {
    if (bunMmap === undefined) return undefined;
    // A shared read-only view: the engine never writes through it. It maps sealed segments,
    // which are never truncated, and windows of the written part of active segments, which
    // are cut only past every byte a reader may see (touching a page cut off a mapping raises
    // SIGBUS).
    if (range === undefined) return bunMmap(path, { shared: true });
    return bunMmap(path, { shared: true, offset: range.position, size: range.bytes });
  },
  writeFile(path, bytes) {
    fs.writeFileSync(path, bytes);
  },
  async writeFileAt(path, bytes, position) {
    const handle = await fs.promises.open(path, "r+");
    try {
      await handle.write(bytes, 0, bytes.length, position);
    } finally {
      await handle.close();
    }
  },
  async syncFile(path) {
    const handle = await fs.promises.open(path, "r+");
    try {
      await handle.datasync();
    } finally {
      await handle.close();
    }
  },
  syncDirectory,
  syncDirectoryAsync,
  writeFileAtomic,
  writeFileAtomicAsync,
};

async function syncDirectoryAsync(path: string): Promise<void> {
  const handle = await fs.promises.open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** writeFileAtomic (always synced) with every fsync and the rename on the thread pool. */
async function writeFileAtomicAsync(
  dir: string,
  name: string,
  bytes: Uint8Array | string,
): Promise<void> {
  const temp = `${dir}/.atomic-${process.pid}-${atomicWrites++}.tmp`;
  const handle = await fs.promises.open(temp, "w");
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.promises.rename(temp, `${dir}/${name}`);
  await syncDirectoryAsync(dir);
}

function syncDirectory(path: string): void {
  const fd = fs.openSync(path, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Numbers the temp files of writeFileAtomic within this process. */
let atomicWrites = 0;

function writeFileAtomic(
  dir: string,
  name: string,
  bytes: Uint8Array | string,
  options: { sync?: boolean } = {},
): void {
  const sync = options.sync !== false;
  // A short temp name of its own, not `${name}.tmp`: a name near the file system's 255-byte
  // limit (a 249-byte topic's metadata) would pass it with a suffix. Leftovers end in `.tmp`.
  const temp = `${dir}/.atomic-${process.pid}-${atomicWrites++}.tmp`;
  const fd = fs.openSync(temp, "w");
  try {
    fs.writeFileSync(fd, bytes);
    if (sync) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, `${dir}/${name}`);
  if (sync) syncDirectory(dir);
}

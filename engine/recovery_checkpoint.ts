// One recovery-point checkpoint for every partition log of an engine, instead of a
// `recovery-point` file per log. With 1,000 partitions taking writes, per-log checkpoints cost
// 1,000 file rewrites a second, and each of them made the next round's fdatasyncs dearer
// (measured at 1,000 partitions: one fdatasync 1.2-4.5 ms with them, 0.1-0.3 ms without).
// Here a log only records its new recovery point in memory (a map set); the engine writes the
// whole map as one file at most once per CHECKPOINT_INTERVAL_MS, atomically:
//
//   write <data>/__meta/recovery-points.tmp ─► fdatasync it ─► rename over
//   <data>/__meta/recovery-points ─► fsync <data>/__meta
//
// A crash at any step leaves the previous file whole (a leftover temp is removed at open), and
// the previous file claims less than the new one: never more than is durable, since a log sets
// its recovery point only after the fdatasync that made those offsets durable.
//
// File layout (all integers big-endian):
//
//   offset  size  field
//   0       4     magic "SLRP"
//   4       1     version (1)
//   5       3     zero
//   8       4     body length in bytes
//   12      4     CRC-32C of the body
//   16      ...   body: entry count u32, then per entry:
//                   recovery point  f64 (a safe integer, >= 0)
//                   directory inode f64 (st_ino of the log's directory)
//                   name length     u16
//                   name            UTF-8 (the log's directory name, such as "orders-3")
//
// The inode ties an entry to one incarnation of a directory: a topic deleted and created again
// under the same name (with a crash before the deletion reached this file) gets a new
// directory, whose inode does not match, so the stale entry is not believed. A file that fails
// its checks (size, magic, version, CRC, entry layout) is reported and ignored: every log then
// recovers as if it had no checkpoint, scanning its segments, which is always safe.
//
// Migration from per-log files: a log opened here also reads its old `recovery-point` file, if
// any, and starts from the lower of the two values (each was true when written); the old file
// is removed once an engine checkpoint holding that log is durable.

import fs from "node:fs";
import { join } from "node:path";
import { assert, crc32c } from "../record/mod.ts";
import type { FileIO } from "./io.ts";

export const CHECKPOINT_FILE = "recovery-points";
/** How often the checkpoint is written at most, when some log's recovery point moved. */
export const CHECKPOINT_INTERVAL_MS = 1000;
/** A checkpoint file larger than this is refused before it is read (100,000 long names fit). */
export const CHECKPOINT_BYTES_MAX = 64 * 1024 * 1024;
const MAGIC = [0x53, 0x4c, 0x52, 0x50]; // "SLRP"
const VERSION = 1;
const HEADER_BYTES = 16;
const ENTRY_FIXED_BYTES = 18;
const NAME_BYTES_MAX = 0xffff;

type Entry = { recoveryPoint: number; ino: number };

export type RecoveryCheckpointOptions = {
  io: FileIO;
  onWarning: (message: string) => void;
  /** Write at most this often (default CHECKPOINT_INTERVAL_MS). */
  intervalMs?: number;
};

export class RecoveryCheckpoint {
  /** The checkpoint file's path. */
  readonly path: string;
  #dir: string;
  #io: FileIO;
  #onWarning: (message: string) => void;
  #intervalMs: number;
  /** What the file held at open: read by logs as they open. */
  #loaded: Map<string, Entry>;
  /** Every open (or closed, not deleted) log's latest durable recovery point. */
  #live = new Map<string, Entry>();
  /** Old per-log `recovery-point` files, removed once a checkpoint holding their log is durable. */
  #legacy: string[] = [];
  #dirty = false;
  #writing: Promise<void> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  /** Checkpoint files written so far (for tests and metrics). */
  writes = 0;

  private constructor(dir: string, options: RecoveryCheckpointOptions) {
    this.#dir = dir;
    this.path = join(dir, CHECKPOINT_FILE);
    this.#io = options.io;
    this.#onWarning = options.onWarning;
    this.#intervalMs = options.intervalMs ?? CHECKPOINT_INTERVAL_MS;
    assert(this.#intervalMs > 0, "the checkpoint interval is positive");
    this.#loaded = this.#read();
  }

  /** Reads the checkpoint in `dir` (created when missing); a damaged file is reported, unused. */
  static open(dir: string, options: RecoveryCheckpointOptions): RecoveryCheckpoint {
    fs.mkdirSync(dir, { recursive: true });
    // A temp left by a crash before its rename: the file it was to replace is still whole.
    fs.rmSync(join(dir, `${CHECKPOINT_FILE}.tmp`), { force: true });
    return new RecoveryCheckpoint(dir, options);
  }

  #read(): Map<string, Entry> {
    let bytes: Uint8Array;
    try {
      const size = fs.statSync(this.path).size;
      if (size > CHECKPOINT_BYTES_MAX) {
        this.#onWarning(
          `${this.path}: ${size} bytes exceeds ${CHECKPOINT_BYTES_MAX}; not used, every ` +
            "partition recovers by scanning its segments",
        );
        return new Map();
      }
      bytes = new Uint8Array(fs.readFileSync(this.path));
    } catch {
      // Missing (a new data directory, or one from before this file existed): nothing to use.
      return new Map();
    }
    const decoded = decodeCheckpoint(bytes);
    if (typeof decoded === "string") {
      this.#onWarning(
        `${this.path} is damaged (${decoded}); not used, every partition recovers by ` +
          "scanning its segments",
      );
      return new Map();
    }
    return decoded;
  }

  /** The checkpointed recovery point of the log in directory `name` with inode `ino`. */
  recoveryPointOf(name: string, ino: number): number | undefined {
    const entry = this.#loaded.get(name);
    return entry !== undefined && entry.ino === ino ? entry.recoveryPoint : undefined;
  }

  /** Records a log's recovery point: every offset below it is durable now. */
  set(name: string, ino: number, recoveryPoint: number): void {
    assert(Number.isSafeInteger(recoveryPoint) && recoveryPoint >= 0, "recovery point >= 0");
    const entry = this.#live.get(name);
    if (entry !== undefined && entry.ino === ino) {
      if (entry.recoveryPoint === recoveryPoint) return;
      entry.recoveryPoint = recoveryPoint;
    } else {
      this.#live.set(name, { recoveryPoint, ino });
    }
    this.#dirty = true;
  }

  /** A log's old per-log checkpoint file, removed once this file holds the log durably. */
  migrate(legacyPath: string): void {
    this.#legacy.push(legacyPath);
    this.#dirty = true;
  }

  /** Forgets a deleted log (its directory is gone). */
  retire(name: string): void {
    if (this.#live.delete(name)) this.#dirty = true;
    this.#loaded.delete(name);
  }

  /** Writes the checkpoint every interval while some recovery point has moved. */
  start(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setInterval(() => {
      if (this.#dirty) void this.flush();
    }, this.#intervalMs);
    // A checkpoint must not keep a process alive that has nothing else to do.
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /**
   * Writes the checkpoint now if anything changed, after any write in flight. Never rejects: a
   * checkpoint not written costs only a longer recovery, and is reported.
   */
  async flush(): Promise<void> {
    while (this.#writing !== undefined) await this.#writing;
    if (!this.#dirty) return;
    this.#writing = this.#write().finally(() => {
      this.#writing = undefined;
    });
    await this.#writing;
  }

  async #write(): Promise<void> {
    this.#dirty = false;
    const legacy = this.#legacy;
    this.#legacy = [];
    const temp = `${this.path}.tmp`;
    try {
      this.#io.writeFile(temp, encodeCheckpoint(this.#live));
      await this.#io.syncFile(temp);
      fs.renameSync(temp, this.path);
      const io = this.#io;
      if (io.syncDirectoryAsync === undefined) io.syncDirectory(this.#dir);
      else await io.syncDirectoryAsync(this.#dir);
      this.writes++;
    } catch (error) {
      this.#dirty = true;
      this.#legacy.push(...legacy);
      this.#onWarning(`recovery points not saved to ${this.path}: ${String(error)}`);
      return;
    }
    for (const path of legacy) {
      try {
        fs.rmSync(path, { force: true });
      } catch {
        // A leftover old file is harmless: recovery takes the lower of the two values.
      }
    }
  }

  /** Stops the timer and writes the final checkpoint; call after every log has closed. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}

/** The checkpoint file's bytes for `entries` (layout at the top of this file). */
export function encodeCheckpoint(entries: ReadonlyMap<string, Entry>): Uint8Array {
  const encoder = new TextEncoder();
  const names: Uint8Array[] = [];
  let bodyBytes = 4;
  for (const name of entries.keys()) {
    const bytes = encoder.encode(name);
    assert(bytes.length <= NAME_BYTES_MAX, "a log name fits a u16 length");
    names.push(bytes);
    bodyBytes += ENTRY_FIXED_BYTES + bytes.length;
  }
  const out = new Uint8Array(HEADER_BYTES + bodyBytes);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[4] = VERSION;
  view.setUint32(8, bodyBytes);
  view.setUint32(HEADER_BYTES, entries.size);
  let at = HEADER_BYTES + 4;
  let i = 0;
  for (const entry of entries.values()) {
    const name = names[i++]!;
    view.setFloat64(at, entry.recoveryPoint);
    view.setFloat64(at + 8, entry.ino);
    view.setUint16(at + 16, name.length);
    out.set(name, at + ENTRY_FIXED_BYTES);
    at += ENTRY_FIXED_BYTES + name.length;
  }
  assert(at === out.length, "every byte of the checkpoint is written");
  view.setUint32(12, crc32c(out.subarray(HEADER_BYTES)) >>> 0);
  return out;
}

/** The entries of a checkpoint file, or what is wrong with it. */
export function decodeCheckpoint(bytes: Uint8Array): Map<string, Entry> | string {
  if (bytes.length < HEADER_BYTES + 4) return `${bytes.length} bytes is shorter than a header`;
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) return "bad magic";
  }
  if (bytes[4] !== VERSION) return `version ${bytes[4]}, expected ${VERSION}`;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bodyBytes = view.getUint32(8);
  if (HEADER_BYTES + bodyBytes !== bytes.length) {
    return `body of ${bodyBytes} bytes in a file of ${bytes.length}`;
  }
  const crc = crc32c(bytes.subarray(HEADER_BYTES)) >>> 0;
  if (crc !== view.getUint32(12)) return "CRC-32C mismatch";
  const count = view.getUint32(HEADER_BYTES);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const entries = new Map<string, Entry>();
  let at = HEADER_BYTES + 4;
  for (let i = 0; i < count; i++) {
    if (at + ENTRY_FIXED_BYTES > bytes.length) return `entry ${i} runs past the end`;
    const recoveryPoint = view.getFloat64(at);
    const ino = view.getFloat64(at + 8);
    const nameBytes = view.getUint16(at + 16);
    at += ENTRY_FIXED_BYTES;
    if (at + nameBytes > bytes.length) return `entry ${i}'s name runs past the end`;
    if (!Number.isSafeInteger(recoveryPoint) || recoveryPoint < 0) {
      return `entry ${i} has recovery point ${recoveryPoint}`;
    }
    let name: string;
    try {
      name = decoder.decode(bytes.subarray(at, at + nameBytes));
    } catch {
      return `entry ${i}'s name is not UTF-8`;
    }
    at += nameBytes;
    entries.set(name, { recoveryPoint, ino });
  }
  if (at !== bytes.length) return `${bytes.length - at} bytes after the last entry`;
  return entries;
}

assert(CHECKPOINT_INTERVAL_MS > 0, "the checkpoint interval is positive");
assert(CHECKPOINT_BYTES_MAX > HEADER_BYTES, "a checkpoint's limit holds its header");

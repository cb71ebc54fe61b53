// The committed-offsets store: what Kafka keeps in `__consumer_offsets`, sluice keeps in
// `<data>/__offsets/`. A consumer group commits how far it has read each partition; the store
// makes that durable, answers fetches from memory, and forgets groups and topics on request.
//
// The store is one append-only file of CRC-framed records, replayed into memory on open. Each
// `commit` call is one frame, so a call is atomic: after a crash it is there whole or not at
// all. Calls that arrive while a write is in flight share the next write and its fdatasync
// (group commit). Once the file has grown past `compactAfterBytes` and at least half of the
// entries it holds are superseded, the store writes the current state as the start of a new
// file (the next generation), fsyncs it, renames it into place, fsyncs the directory, and
// deletes the old file. Appends then continue on the new file.
//
//   <data>/__offsets/
//     00000000000000000007.log          the live generation: a snapshot, then appended frames
//     00000000000000000008.log.tmp      a compaction cut short by a crash: deleted on open
//     00000000000000000005.log.corrupt  a damaged generation kept for inspection (see below)
//
// Frame (integers big-endian):
//
//   offset  size  field
//   ------  ----  ---------------------------------------------------------------------------
//        0     4  crc        u32  CRC-32C of bytes 4 .. end of frame
//        4     2  magic      u16  0xC15C. The byte 0xC1 never occurs in MessagePack nor in
//                                 UTF-8, so a frame header cannot hide inside a client's string
//        6     1  version    u8   1
//        7     1  type       u8   1 commit, 2 delete group, 3 delete topic
//        8     4  bodyBytes  u32  1 .. FRAME_BODY_BYTES_MAX
//       12     …  body       MessagePack:
//                              commit        [group, [[topic, partition, offset, metadata,
//                                                      commitTimestampMs, leaderEpoch or -1], …]]
//                              delete group  group
//                              delete topic  topic
//
// Recovery reads frames from the start. A bad frame (cut short, wrong CRC, undecodable) with
// no valid frame anywhere after it is a torn tail: a commit is acknowledged only after an
// fdatasync that covers every earlier byte, so those bytes were never acknowledged and are
// truncated away. A bad frame *followed* by valid frames is damage to bytes that were once
// durable (bit rot, a bad sector), and the store never drops the good frames after it. It
// reports the damage as a SluiceError CORRUPT_BATCH: thrown from `open` by default; or, when
// the caller passes `onCorruption`, handed to that callback while the store skips the damaged
// bytes, keeps every valid frame after them, keeps the damaged file as `.corrupt`, and starts
// a clean generation. Throwing is the default because skipping a frame silently changes
// answers (a group's offset moves back and its consumers re-read messages, or a deleted group
// returns) and the store has no logger of its own: without a callback nobody would be told.
// One false alarm is possible: after a power loss (not a process crash) some file systems
// persist a later page of an unacknowledged write before an earlier one. The report then errs
// towards keeping data; the frames it keeps were never acknowledged, so keeping them is safe.

import type { FileHandle } from "node:fs/promises";
import { mkdir, open, readdir, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { crc32c } from "../record/mod.ts";
import { Packr } from "msgpackr";
import { assert, SluiceError } from "../record/mod.ts";
import { ioError } from "./errors.ts";
import { type FileIO, realFileIO } from "./io.ts";

/** A group's committed position in one partition, as the store returns it. */
export type CommittedOffset = {
  /** The next offset the group will read (Kafka's convention); -1 means "no position". */
  readonly offset: number;
  readonly metadata: string;
  readonly commitTimestampMs: number;
  readonly leaderEpoch?: number;
};

/** One partition's position in a `commit` call. */
export type OffsetCommit = {
  topic: string;
  partition: number;
  offset: number;
  /** Free text for the client, at most METADATA_BYTES_MAX bytes of UTF-8; default "". */
  metadata?: string;
  /** The leader epoch of the last record read; -1 or absent when unknown. */
  leaderEpoch?: number;
};

export type OffsetStoreOptions = {
  /** fdatasync before a commit resolves (default true). Compaction always syncs. */
  fsync?: boolean;
  /** The file operations every write and fsync goes through (default: the real ones). */
  io?: FileIO;
  /** The file size from which compaction is considered (default 4 MiB). */
  compactAfterBytes?: number;
  /** The clock that stamps commits, in milliseconds (default Date.now). */
  now?: () => number;
  /**
   * Called with a CORRUPT_BATCH error for each damaged range found on open. When given, the
   * store skips damaged bytes and keeps the valid frames after them; when absent, open throws.
   */
  onCorruption?: (error: SluiceError) => void;
};

export type OffsetStoreStats = {
  /** The number in the live file's name; it grows by one per compaction. */
  generation: number;
  /** Bytes of the live file. */
  logBytes: number;
  /** Committed offsets held (group × topic × partition). */
  liveEntries: number;
  /** Entries written to the live file, superseded ones included. */
  loggedEntries: number;
  writes: number;
  fsyncs: number;
  compactions: number;
  compactionFailures: number;
};

const KIB = 1024;
const MIB = 1024 * KIB;

/** Group and topic names, in bytes of UTF-8 (Kafka limits topic names to 249 characters). */
export const NAME_BYTES_MAX = 255;
/** Kafka: offset.metadata.max.bytes. */
export const METADATA_BYTES_MAX = 4 * KIB;
export const COMMIT_ENTRIES_MAX = 10_000;
export const PARTITION_MAX = 2 ** 31 - 1;
export const LEADER_EPOCH_MAX = 2 ** 31 - 1;
export const COMPACT_AFTER_BYTES_DEFAULT = 4 * MIB;

const FRAME_HEADER_BYTES = 12;
const FRAME_BODY_BYTES_MAX = 64 * MIB;
const FRAME_MAGIC = 0xc15c;
const FRAME_MAGIC_BYTES = Buffer.from([FRAME_MAGIC >>> 8, FRAME_MAGIC & 0xff]);
const FRAME_MAGIC_AT = 4;
const FRAME_VERSION = 1;
const TYPE_COMMIT = 1;
const TYPE_DELETE_GROUP = 2;
const TYPE_DELETE_TOPIC = 3;
/** A bound on one encoded commit entry: two strings at their limits plus MessagePack framing. */
const ENTRY_BYTES_MAX = NAME_BYTES_MAX + METADATA_BYTES_MAX + 64;
const SNAPSHOT_FRAME_ENTRIES = 1000;
const SNAPSHOT_WRITE_BYTES = 1 * MIB;
const GENERATION_DIGITS = 20;
const GENERATION_FILE = /^(\d{20})\.log$/;
const COMPACTION_TEMP_FILE = /^\d{20}\.log\.tmp$/;

assert(
  COMMIT_ENTRIES_MAX * ENTRY_BYTES_MAX + NAME_BYTES_MAX + 64 <= FRAME_BODY_BYTES_MAX,
  "the largest commit call fits one frame",
);
assert(SNAPSHOT_FRAME_ENTRIES <= COMMIT_ENTRIES_MAX, "a snapshot frame is a valid commit frame");
assert(FRAME_MAGIC >>> 8 === 0xc1, "the magic starts with a byte MessagePack and UTF-8 never use");

// Plain MessagePack only: no record extension, so the bytes stay readable by any decoder.
const packr = new Packr({ useRecords: false });

type CommitRecord = { topic: string; partition: number; committed: CommittedOffset };

/** One frame's meaning. The store applies these in file order to rebuild its state. */
type Op =
  | { kind: "commit"; group: string; records: CommitRecord[] }
  | { kind: "deleteGroup"; group: string }
  | { kind: "deleteTopic"; topic: string };

// ---------------------------------------------------------------------------------------------
// Validation: arguments throw TypeError/RangeError; the decoder reuses the same checks.

function describe(value: unknown): string {
  if (typeof value === "string") {
    return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
  }
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol") return value.toString();
  if (typeof value === "function") return "a function";
  if (value === null || typeof value !== "object") return String(value);
  return Array.isArray(value) ? "an array" : "an object";
}

function checkString(what: string, value: unknown, bytesMin: number, bytesMax: number): string {
  if (typeof value !== "string")
    throw new TypeError(`${what} must be a string: ${describe(value)}`);
  // A lone surrogate would come back from disk as U+FFFD: a different name than was committed.
  if (!value.isWellFormed()) throw new TypeError(`${what} ${describe(value)} is not valid UTF-16`);
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes < bytesMin) throw new RangeError(`${what} must not be empty: ${describe(value)}`);
  if (bytes > bytesMax) {
    throw new RangeError(`${what} of ${bytes} bytes exceeds ${bytesMax}: ${describe(value)}`);
  }
  return value;
}

function checkName(what: "group" | "topic", value: unknown): string {
  return checkString(what, value, 1, NAME_BYTES_MAX);
}

function checkInteger(what: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new TypeError(`${what} must be a safe integer: ${describe(value)}`);
  }
  if (value < min || value > max)
    throw new RangeError(`${what} ${value} is not in [${min}, ${max}]`);
  return value;
}

function checkRecord(entry: unknown, commitTimestampMs: number): CommitRecord {
  if (typeof entry !== "object" || entry === null) {
    throw new TypeError(`A commit entry must be an object: ${describe(entry)}`);
  }
  const { topic, partition, offset, metadata, leaderEpoch } = entry as Record<string, unknown>;
  const epoch =
    leaderEpoch === undefined || leaderEpoch === -1
      ? undefined
      : checkInteger("leaderEpoch", leaderEpoch, 0, LEADER_EPOCH_MAX);
  const committed: CommittedOffset = {
    offset: checkInteger("offset", offset, -1, Number.MAX_SAFE_INTEGER),
    metadata:
      metadata === undefined ? "" : checkString("metadata", metadata, 0, METADATA_BYTES_MAX),
    commitTimestampMs,
    ...(epoch === undefined ? {} : { leaderEpoch: epoch }),
  };
  return {
    topic: checkName("topic", topic),
    partition: checkInteger("partition", partition, 0, PARTITION_MAX),
    committed: Object.freeze(committed),
  };
}

type Settings = {
  fsync: boolean;
  io: FileIO;
  compactAfterBytes: number;
  now: () => number;
  onCorruption: ((error: SluiceError) => void) | undefined;
};

function resolveOptions(options: OffsetStoreOptions): Settings {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`OffsetStore options must be an object: ${describe(options)}`);
  }
  const { fsync = true, compactAfterBytes = COMPACT_AFTER_BYTES_DEFAULT } = options;
  const { now = Date.now, onCorruption, io = realFileIO } = options;
  if (typeof fsync !== "boolean")
    throw new TypeError(`fsync must be a boolean: ${describe(fsync)}`);
  checkInteger("compactAfterBytes", compactAfterBytes, 1, Number.MAX_SAFE_INTEGER);
  if (typeof now !== "function") throw new TypeError(`now must be a function: ${describe(now)}`);
  if (onCorruption !== undefined && typeof onCorruption !== "function") {
    throw new TypeError(`onCorruption must be a function: ${describe(onCorruption)}`);
  }
  return { fsync, io, compactAfterBytes, now, onCorruption };
}

// ---------------------------------------------------------------------------------------------
// Frames.

function encodeBody(op: Op): [type: number, body: unknown] {
  if (op.kind === "deleteGroup") return [TYPE_DELETE_GROUP, op.group];
  if (op.kind === "deleteTopic") return [TYPE_DELETE_TOPIC, op.topic];
  const entries = op.records.map(({ topic, partition, committed }) => [
    topic,
    partition,
    committed.offset,
    committed.metadata,
    committed.commitTimestampMs,
    committed.leaderEpoch ?? -1,
  ]);
  return [TYPE_COMMIT, [op.group, entries]];
}

function encodeFrame(op: Op): Buffer {
  const [type, value] = encodeBody(op);
  const body = packr.pack(value);
  assert(body.length >= 1 && body.length <= FRAME_BODY_BYTES_MAX, "validated ops fit a frame");
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  frame.writeUInt16BE(FRAME_MAGIC, FRAME_MAGIC_AT);
  frame[6] = FRAME_VERSION;
  frame[7] = type;
  frame.writeUInt32BE(body.length, 8);
  body.copy(frame, FRAME_HEADER_BYTES);
  frame.writeUInt32BE(crc32c(frame.subarray(4)) >>> 0, 0);
  return frame;
}

function decodeCommit(value: unknown): Op {
  if (!Array.isArray(value) || value.length !== 2 || !Array.isArray(value[1])) {
    throw new TypeError("a commit body is [group, entries]");
  }
  const group = checkName("group", value[0]);
  const entries: unknown[] = value[1];
  checkInteger("entry count", entries.length, 1, COMMIT_ENTRIES_MAX);
  const records = entries.map((entry) => {
    if (!Array.isArray(entry) || entry.length !== 6) throw new TypeError("an entry has 6 fields");
    const [topic, partition, offset, metadata, timestampMs, leaderEpoch] = entry;
    const stamp = checkInteger(
      "timestamp",
      timestampMs,
      -Number.MAX_SAFE_INTEGER,
      Number.MAX_SAFE_INTEGER,
    );
    return checkRecord({ topic, partition, offset, metadata, leaderEpoch }, stamp);
  });
  return { kind: "commit", group, records };
}

/** The op a frame body holds, or undefined when the body is not one (never throws on bytes). */
function decodeOp(type: number, body: Uint8Array): Op | undefined {
  let value: unknown;
  try {
    value = packr.unpack(body);
  } catch {
    return undefined;
  }
  try {
    if (type === TYPE_DELETE_GROUP)
      return { kind: "deleteGroup", group: checkName("group", value) };
    if (type === TYPE_DELETE_TOPIC)
      return { kind: "deleteTopic", topic: checkName("topic", value) };
    return decodeCommit(value);
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) return undefined;
    throw error;
  }
}

/** The frame starting at `position`, or undefined when the bytes there are not a whole one. */
function readFrame(bytes: Buffer, position: number): { op: Op; end: number } | undefined {
  if (bytes.length - position < FRAME_HEADER_BYTES) return undefined;
  if (bytes.readUInt16BE(position + FRAME_MAGIC_AT) !== FRAME_MAGIC) return undefined;
  if (bytes[position + 6] !== FRAME_VERSION) return undefined;
  const type = bytes[position + 7]!;
  if (type < TYPE_COMMIT || type > TYPE_DELETE_TOPIC) return undefined;
  const bodyBytes = bytes.readUInt32BE(position + 8);
  if (bodyBytes < 1 || bodyBytes > FRAME_BODY_BYTES_MAX) return undefined;
  const end = position + FRAME_HEADER_BYTES + bodyBytes;
  if (end > bytes.length) return undefined;
  const crc = crc32c(bytes.subarray(position + 4, end)) >>> 0;
  if (crc !== bytes.readUInt32BE(position)) return undefined;
  const op = decodeOp(type, bytes.subarray(position + FRAME_HEADER_BYTES, end));
  return op === undefined ? undefined : { op, end };
}

/** The start of the first valid frame at or after `from`, or -1. */
function findFrame(bytes: Buffer, from: number): number {
  let magicAt = bytes.indexOf(FRAME_MAGIC_BYTES, from + FRAME_MAGIC_AT);
  while (magicAt !== -1) {
    const start = magicAt - FRAME_MAGIC_AT;
    if (readFrame(bytes, start) !== undefined) return start;
    magicAt = bytes.indexOf(FRAME_MAGIC_BYTES, magicAt + 1);
  }
  return -1;
}

type Damage = { position: number; bytes: number };
type Replay = { end: number; loggedEntries: number; damage: Damage[] };

/** Applies every valid frame of `bytes` to `table`; see the recovery rules at the top. */
function replay(bytes: Buffer, table: OffsetTable): Replay {
  const damage: Damage[] = [];
  let loggedEntries = 0;
  let position = 0;
  while (position < bytes.length) {
    const frame = readFrame(bytes, position);
    if (frame !== undefined) {
      loggedEntries += table.apply(frame.op);
      position = frame.end;
      continue;
    }
    const next = findFrame(bytes, position + 1);
    if (next === -1) break;
    damage.push({ position, bytes: next - position });
    position = next;
  }
  return { end: position, loggedEntries, damage };
}

// ---------------------------------------------------------------------------------------------
// The in-memory state: group → topic → partition → committed offset.

class OffsetTable {
  #groups = new Map<string, Map<string, Map<number, CommittedOffset>>>();
  #size = 0;
  /** Counts mutations, so a snapshot can assert that nothing changed under it. */
  version = 0;

  get size(): number {
    return this.#size;
  }

  get(group: string, topic: string, partition: number): CommittedOffset | undefined {
    return this.#groups.get(group)?.get(topic)?.get(partition);
  }

  copyGroup(group: string): Map<string, Map<number, CommittedOffset>> {
    const copy = new Map<string, Map<number, CommittedOffset>>();
    for (const [topic, partitions] of this.#groups.get(group) ?? []) {
      copy.set(topic, new Map(partitions));
    }
    return copy;
  }

  groupNames(): string[] {
    return [...this.#groups.keys()];
  }

  /** Applies `op` and returns how many entries it adds to the log. */
  apply(op: Op): number {
    this.version++;
    if (op.kind === "commit") {
      for (const record of op.records) this.#set(op.group, record);
      return op.records.length;
    }
    if (op.kind === "deleteGroup") {
      for (const partitions of this.#groups.get(op.group)?.values() ?? []) {
        this.#size -= partitions.size;
      }
      this.#groups.delete(op.group);
      return 1;
    }
    for (const [group, topics] of this.#groups) {
      this.#size -= topics.get(op.topic)?.size ?? 0;
      topics.delete(op.topic);
      // A group is listed while it holds an offset; Kafka forgets empty groups the same way.
      if (topics.size === 0) this.#groups.delete(group);
    }
    return 1;
  }

  #set(group: string, { topic, partition, committed }: CommitRecord): void {
    let topics = this.#groups.get(group);
    if (topics === undefined) {
      topics = new Map();
      this.#groups.set(group, topics);
    }
    let partitions = topics.get(topic);
    if (partitions === undefined) {
      partitions = new Map();
      topics.set(topic, partitions);
    }
    if (!partitions.has(partition)) this.#size++;
    partitions.set(partition, committed);
  }

  /** The whole state as commit ops of at most `entriesMax` records each. */
  *snapshot(entriesMax: number): Generator<Op> {
    for (const [group, topics] of this.#groups) {
      let records: CommitRecord[] = [];
      for (const [topic, partitions] of topics) {
        for (const [partition, committed] of partitions) {
          records.push({ topic, partition, committed });
          if (records.length === entriesMax) {
            yield { kind: "commit", group, records };
            records = [];
          }
        }
      }
      if (records.length > 0) yield { kind: "commit", group, records };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Files.

function fileName(generation: number): string {
  return `${String(generation).padStart(GENERATION_DIGITS, "0")}.log`;
}

/** Writes all of `bytes` at `position` of the file open as `handle`, through `io`. */
function writeAll(io: FileIO, handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  return io.writeAll(handle.fd, [bytes], position);
}

/**
 * Creates `dir` if needed, finishes or forgets an interrupted compaction, and returns the live
 * generation. The newest `.log` wins: compaction renames a file into place only once it is
 * complete and synced, so any older generation is superseded.
 */
async function prepareDirectory(dir: string, io: FileIO): Promise<number> {
  try {
    await mkdir(dir, { recursive: true });
    const names = await readdir(dir);
    const generations: number[] = [];
    for (const name of names) {
      if (COMPACTION_TEMP_FILE.test(name)) await unlink(join(dir, name));
      const match = GENERATION_FILE.exec(name);
      if (match !== null) generations.push(Number(match[1]));
    }
    generations.sort((a, b) => a - b);
    const live = generations.at(-1);
    if (live === undefined) {
      await (await open(join(dir, fileName(0)), "wx")).close();
      io.syncDirectory(dir);
      return 0;
    }
    if (generations.length > 1) {
      // The new generation's name must be on disk before the old ones go.
      io.syncDirectory(dir);
      for (const old of generations.slice(0, -1)) await unlink(join(dir, fileName(old)));
    }
    return live;
  } catch (error) {
    throw ioError(error, `preparing offsets directory ${dir}`);
  }
}

function damageError(path: string, damage: Damage): SluiceError {
  const end = damage.position + damage.bytes;
  return new SluiceError(
    "CORRUPT_BATCH",
    `Offsets file ${path} is damaged: bytes ${damage.position} to ${end} are not valid frames ` +
      "and valid frames follow them (open with onCorruption to skip them and keep the rest)",
    { file: path, position: damage.position, bytes: damage.bytes },
  );
}

// ---------------------------------------------------------------------------------------------
// The store.

type Pending = { op: Op; frame: Buffer; resolve: () => void; reject: (error: unknown) => void };

type OpenState = {
  handle: FileHandle;
  generation: number;
  table: OffsetTable;
  logBytes: number;
  loggedEntries: number;
};

/** The durable committed offsets of every consumer group. Open with `OffsetStore.open`. */
export class OffsetStore {
  readonly dir: string;
  #settings: Settings;
  #table: OffsetTable;
  #handle: FileHandle;
  #generation: number;
  #logBytes: number;
  #loggedEntries: number;
  /** The file size from which the next compaction is considered. */
  #compactAtBytes: number;
  /** Commits waiting for the next write; the write loop takes them all at once. */
  #queue: Pending[] = [];
  #loop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  /** Set when a failed fsync or rename leaves the file's durable state unknown. */
  #fenced: SluiceError | undefined;
  #writes = 0;
  #fsyncs = 0;
  #compactions = 0;
  #compactionFailures = 0;

  private constructor(dir: string, state: OpenState, settings: Settings) {
    this.dir = dir;
    this.#settings = settings;
    this.#table = state.table;
    this.#handle = state.handle;
    this.#generation = state.generation;
    this.#logBytes = state.logBytes;
    this.#loggedEntries = state.loggedEntries;
    this.#compactAtBytes = settings.compactAfterBytes;
  }

  /** Opens (creating if needed) the store in `dir` and replays it into memory. */
  static async open(dir: string, options: OffsetStoreOptions = {}): Promise<OffsetStore> {
    if (typeof dir !== "string" || dir === "") {
      throw new TypeError(`OffsetStore dir must be a non-empty string: ${describe(dir)}`);
    }
    const settings = resolveOptions(options);
    const generation = await prepareDirectory(dir, settings.io);
    const path = join(dir, fileName(generation));
    let handle: FileHandle;
    try {
      handle = await open(path, "r+");
    } catch (error) {
      throw ioError(error, `opening offsets file ${path}`);
    }
    try {
      return await OffsetStore.#recover(dir, { handle, generation }, settings);
    } catch (error) {
      await handle.close().catch(() => {});
      throw error;
    }
  }

  static async #recover(
    dir: string,
    file: { handle: FileHandle; generation: number },
    settings: Settings,
  ): Promise<OffsetStore> {
    const path = join(dir, fileName(file.generation));
    let bytes: Buffer;
    try {
      bytes = await file.handle.readFile();
    } catch (error) {
      throw ioError(error, `reading offsets file ${path}`);
    }
    const table = new OffsetTable();
    const { end, loggedEntries, damage } = replay(bytes, table);
    const state = { ...file, table, logBytes: end, loggedEntries };
    const store = new OffsetStore(dir, state, settings);
    if (damage.length > 0) {
      const report = settings.onCorruption;
      if (report === undefined) throw damageError(path, damage[0]!);
      for (const range of damage) report(damageError(path, range));
      // A clean generation holds exactly what was recovered; the damaged file stays beside it.
      try {
        await store.#compact({ keepOld: true });
      } catch (error) {
        // The compaction may have swapped in the new file's handle; open closes the old one.
        if (store.#handle !== file.handle) await store.#handle.close().catch(() => {});
        throw error;
      }
    } else if (end < bytes.length) {
      try {
        settings.io.truncate(file.handle.fd, end);
        await settings.io.datasync(file.handle.fd);
      } catch (error) {
        throw ioError(error, `truncating the torn tail of ${path} at ${end}`);
      }
    }
    return store;
  }

  /**
   * Commits `group`'s positions in one atomic step. Resolves once they are durable (written
   * and, unless `fsync: false`, fdatasync'd) and visible to `fetch`.
   */
  async commit(group: string, entries: readonly OffsetCommit[]): Promise<void> {
    this.#checkOpen();
    checkName("group", group);
    if (!Array.isArray(entries)) {
      throw new TypeError(`commit entries must be an array: ${describe(entries)}`);
    }
    checkInteger("commit entry count", entries.length, 0, COMMIT_ENTRIES_MAX);
    if (entries.length === 0) return;
    const nowMs = this.#settings.now();
    checkInteger("now()", nowMs, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    const records = entries.map((entry) => checkRecord(entry, nowMs));
    return this.#enqueue({ kind: "commit", group, records });
  }

  /** The committed offset, or undefined. A commit is visible once it is durable. */
  fetch(group: string, topic: string, partition: number): CommittedOffset | undefined {
    this.#checkOpen();
    checkName("group", group);
    checkName("topic", topic);
    checkInteger("partition", partition, 0, PARTITION_MAX);
    return this.#table.get(group, topic, partition);
  }

  /** Every committed offset of `group` by topic and partition; empty for an unknown group. */
  fetchGroup(group: string): Map<string, Map<number, CommittedOffset>> {
    this.#checkOpen();
    checkName("group", group);
    return this.#table.copyGroup(group);
  }

  /** The groups that hold at least one committed offset. */
  groups(): string[] {
    this.#checkOpen();
    return this.#table.groupNames();
  }

  /** Forgets every offset of `group`; resolves once that is durable. */
  async deleteGroup(group: string): Promise<void> {
    this.#checkOpen();
    return this.#enqueue({ kind: "deleteGroup", group: checkName("group", group) });
  }

  /** Forgets every group's offsets for a deleted topic; resolves once that is durable. */
  async deleteTopic(topic: string): Promise<void> {
    this.#checkOpen();
    return this.#enqueue({ kind: "deleteTopic", topic: checkName("topic", topic) });
  }

  get stats(): OffsetStoreStats {
    return {
      generation: this.#generation,
      logBytes: this.#logBytes,
      liveEntries: this.#table.size,
      loggedEntries: this.#loggedEntries,
      writes: this.#writes,
      fsyncs: this.#fsyncs,
      compactions: this.#compactions,
      compactionFailures: this.#compactionFailures,
    };
  }

  /** Waits for every commit already made, then closes the file. Later calls fail LOG_CLOSED. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #shutdown(): Promise<void> {
    await this.#loop;
    try {
      await this.#handle.close();
    } catch (error) {
      throw ioError(error, `closing offsets file ${this.#path}`);
    }
  }

  get #path(): string {
    return join(this.dir, fileName(this.#generation));
  }

  #checkOpen(): void {
    if (this.#closing !== undefined) {
      throw new SluiceError("LOG_CLOSED", `Offset store ${this.dir} is closed`, { dir: this.dir });
    }
  }

  #enqueue(op: Op): Promise<void> {
    if (this.#fenced !== undefined) return Promise.reject(this.#fenced);
    const frame = encodeFrame(op);
    // A plain executor rather than Promise.withResolvers, which Node 20 lacks.
    const promise = new Promise<void>((resolve, reject) => {
      this.#queue.push({ op, frame, resolve, reject });
    });
    // The loop starts in a microtask, so every commit made in the same tick joins one write.
    this.#loop ??= Promise.resolve().then(() => this.#writeLoop());
    return promise;
  }

  async #writeLoop(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue;
      this.#queue = [];
      try {
        await this.#writeBatch(batch);
      } catch (error) {
        // #writeBatch turns every I/O failure into rejections; reaching here is a bug. Waiting
        // callers hear of it, and the store refuses writes rather than guess at its state.
        for (const pending of batch) pending.reject(error);
        this.#fence(error, "an unexpected error in the write loop");
      }
      if (this.#shouldCompact()) await this.#compactQuietly();
    }
    this.#loop = undefined;
  }

  async #writeBatch(batch: Pending[]): Promise<void> {
    const fail = (error: unknown) => {
      for (const pending of batch) pending.reject(error);
    };
    if (this.#fenced !== undefined) return fail(this.#fenced);
    const bytes = batch.length === 1 ? batch[0]!.frame : Buffer.concat(batch.map((p) => p.frame));
    try {
      await writeAll(this.#settings.io, this.#handle, bytes, this.#logBytes);
      this.#writes++;
    } catch (error) {
      return fail(await this.#undoWrite(error));
    }
    if (this.#settings.fsync) {
      try {
        await this.#settings.io.datasync(this.#handle.fd);
        this.#fsyncs++;
      } catch (error) {
        // After a failed fsync the kernel may have dropped the dirty pages: whether these
        // bytes are on disk is unknown, and retrying the fsync would not say (PostgreSQL's
        // "fsyncgate"). Only a reopen, which reads the file back, can tell.
        return fail(this.#fence(error, "an fdatasync failed"));
      }
    }
    this.#logBytes += bytes.length;
    for (const pending of batch) {
      this.#loggedEntries += this.#table.apply(pending.op);
      pending.resolve();
    }
  }

  /** Cuts a failed write's partial bytes off, so the next write does not leave them inside. */
  async #undoWrite(error: unknown): Promise<SluiceError> {
    const failure = ioError(error, `appending to offsets file ${this.#path}`);
    try {
      this.#settings.io.truncate(this.#handle.fd, this.#logBytes);
      return failure;
    } catch (truncateError) {
      return this.#fence(truncateError, "a failed append could not be truncated away");
    }
  }

  #fence(error: unknown, why: string): SluiceError {
    this.#fenced ??= new SluiceError(
      "LOG_FENCED",
      `Offset store ${this.dir} refuses writes until reopened: ${why}`,
      { dir: this.dir },
      { cause: error },
    );
    return this.#fenced;
  }

  #shouldCompact(): boolean {
    if (this.#fenced !== undefined) return false;
    if (this.#logBytes < this.#compactAtBytes) return false;
    // Compacting only when half the logged entries are superseded keeps its cost in proportion
    // to the writes that made the garbage: the new file is at most half the old one.
    return this.#table.size * 2 <= this.#loggedEntries;
  }

  /** Compaction is an optimisation: a failure leaves the old file live and is retried later. */
  async #compactQuietly(): Promise<void> {
    try {
      await this.#compact({ keepOld: false });
      this.#compactAtBytes = this.#settings.compactAfterBytes;
    } catch {
      this.#compactionFailures++;
      this.#compactAtBytes = this.#logBytes + this.#settings.compactAfterBytes;
    }
  }

  /**
   * Writes the state as the next generation and makes it the live file. Runs only between
   * writes (or inside open), so the table cannot change under it.
   */
  async #compact(options: { keepOld: boolean }): Promise<void> {
    const version = this.#table.version;
    const oldPath = this.#path;
    const generation = this.#generation + 1;
    const path = join(this.dir, fileName(generation));
    const snapshot = await this.#writeSnapshot(path);
    assert(this.#table.version === version, "the table did not change during compaction");
    const oldHandle = this.#handle;
    // From the rename on, a reopen reads the new file: appends must go there, whatever happens.
    this.#handle = snapshot.handle;
    this.#generation = generation;
    this.#logBytes = snapshot.bytes;
    this.#loggedEntries = this.#table.size;
    this.#compactions++;
    await oldHandle.close().catch(() => {});
    try {
      this.#settings.io.syncDirectory(this.dir);
    } catch (error) {
      throw this.#fence(error, `the directory could not be synced after renaming ${path}`);
    }
    // Leftovers are harmless: open deletes superseded generations.
    if (options.keepOld) await rename(oldPath, `${oldPath}.corrupt`).catch(() => {});
    else await unlink(oldPath).catch(() => {});
  }

  async #writeSnapshot(path: string): Promise<{ handle: FileHandle; bytes: number }> {
    const temp = `${path}.tmp`;
    let handle: FileHandle | undefined;
    try {
      handle = await open(temp, "w+");
      let bytes = 0;
      let chunk: Buffer[] = [];
      let chunkBytes = 0;
      for (const op of this.#table.snapshot(SNAPSHOT_FRAME_ENTRIES)) {
        const frame = encodeFrame(op);
        chunk.push(frame);
        chunkBytes += frame.length;
        if (chunkBytes < SNAPSHOT_WRITE_BYTES) continue;
        await writeAll(this.#settings.io, handle, Buffer.concat(chunk), bytes);
        bytes += chunkBytes;
        chunk = [];
        chunkBytes = 0;
      }
      if (chunkBytes > 0) await writeAll(this.#settings.io, handle, Buffer.concat(chunk), bytes);
      bytes += chunkBytes;
      await this.#settings.io.datasync(handle.fd);
      this.#fsyncs++;
      await rename(temp, path);
      return { handle, bytes };
    } catch (error) {
      await handle?.close().catch(() => {});
      await unlink(temp).catch(() => {});
      throw ioError(error, `writing offsets snapshot ${temp}`);
    }
  }
}

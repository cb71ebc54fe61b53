// The durable state of one queue: a log of CRC-framed binary frames, one file per generation,
// covering every partition of the queue so that one write and one fdatasync commit the acks of
// all of them (group commit). A generation starts with a snapshot (one QUEUE frame, then one
// PARTITION frame per partition) and continues with DELTAS frames. Once the file has grown past
// its threshold the log writes the current state as the next generation's snapshot, fsyncs it,
// renames it into place, fsyncs the directory and deletes the old file (as the offset store
// does, engine/offset_store.ts).
//
//   <data>/__queues/<queue>/
//     00000000000000000003.log          the live generation
//     00000000000000000004.log.tmp      a compaction cut short by a crash: deleted on open
//     00000000000000000004.log.spare    a spare generation (below) not used yet: deleted on open
//     00000000000000000002.log.corrupt  a damaged generation kept for inspection
//
// Frame (integers big-endian):
//
//   offset  size  field
//   ------  ----  ---------------------------------------------------------------------------
//        0     4  crc        u32  CRC-32C of bytes 4 .. end of frame
//        4     2  magic      u16  0xC15D (the offset store's frames use 0xC15C)
//        6     1  version    u8   1
//        7     1  type       u8   1 QUEUE, 2 PARTITION, 3 DELTAS
//        8     4  bodyBytes  u32  1 .. FRAME_BODY_BYTES_MAX
//       12     …  body:
//
//   QUEUE      partitions u32 | delivered i64 | accepted i64 | deadLettered i64 | discarded i64
//              [| expired i64 [| overflowed i64]]   (a 36-byte body, written before TTL
//              existed, means expired 0; a 44-byte body, before max length, overflowed 0)
//   PARTITION  partition u32 | floor i64 | next i64 | runCount u32 |
//              runCount × (count u32 | state u8 | deliveries u8)       runs cover [floor, next)
//   DELTAS     entryCount u32 | entryCount × entry (18 bytes):
//
//              0  kind        u8   1 ACQUIRE     records' delivery count is now `deliveries`
//                                  2 ACCEPT      records accepted
//                                  3 DEAD_LETTER records written to the dead-letter topic
//                                  4 DISCARD     records rejected with no dead-letter topic
//                                  5 FLOOR       every offset below `first` is done (purge)
//                                  6 TRUNCATE    offsets from `first` on are forgotten (the
//                                                topic's log lost its tail)
//                                  7 EXPIRED     counts only: `count` records of the
//                                                DEAD_LETTER or DISCARD before it died
//                                                of their TTL
//                                  8 MAXLEN      counts only: `count` records of the
//                                                DEAD_LETTER or DISCARD before it were
//                                                dropped from the head by max length
//                                  9 DELAYED     records copied into the queue's delay
//                                                tiers (queue_delay.ts): done here
//              1  deliveries  u8
//              2  partition   u32
//              6  first       i64
//             14  count       u32  records from `first` (0 for FLOOR and TRUNCATE)
//
// Acquisition locks are never written: after a restart every acquired record is available
// again, with the delivery count its ACQUIRE delta left (Kafka persists no Acquired state
// either). ACQUIRE deltas join the next group commit without anyone waiting for them, so a
// fetch answer never waits for an fdatasync; a crash of the broker inside that window (at most
// LAZY_SYNC_DELAY_MS and an fdatasync, see below) can lose the last increment of the records
// just fetched. A
// consumer that crashes loses nothing: the broker's count is already up, and the release its
// disconnect causes is written in a later group.
//
// Group commit, pipelined: deltas added in one tick form a group, written at once (a
// positional write to the page cache), then fdatasync'd. A group written while an fdatasync
// is in flight starts its own at once, up to syncsInFlightMax (default 4) in flight, so an
// accept waits for about one fdatasync rather than the one in progress plus its own. Each
// fdatasync covers every byte written before it started; groups resolve in the order they
// were written, each only after its own fdatasync and every earlier one succeeded.
//
// A group nobody waits for (acquisitions, floor moves) starts no fdatasync of its own: the
// next accept's covers it, or one started LAZY_SYNC_DELAY_MS later if no accept came by then.
// Acquisitions come just before accepts (a fetch acquires, its consumer answers a moment
// later), and an fdatasync started for acquisitions alone held one of the syncsInFlightMax
// slots when those accepts came: with the other slot busy too, they waited for one to end
// before their own could start.
//
//   write g1 ─ fdatasync g1 ──────────┐ resolve g1
//        write g2 ─ fdatasync g2 ─────┴──┐ resolve g2 (after g1)
//             write g3 (acquisitions only: no fdatasync) ─ covered by g4's, or by the lazy
//                                                         one LAZY_SYNC_DELAY_MS after g3
//
// Spare generations: an fdatasync after a write that extends the file (or fills an unwritten
// extent) must also commit the file system's journal (the new size), and waits for that commit,
// which carries every other file's metadata too (partition segments grow all the time); an
// fdatasync after overwriting blocks already written and synced writes the data and flushes
// the cache, nothing more. bench/tools/fsync_modes.ts measured 4 KiB writes on the disk sluice
// is benchmarked on, loaded, with a segment-like appender beside them: append p50 0.37-0.44 ms,
// overwrite p50 0.19-0.21 ms (p99 1.1-4.3 ms against 4.4-5.3 ms). So once the live file is half
// way to its compaction, the next generation's file is made ahead of need, off the commit path
// (a compaction that comes before it is made does without it, and does not wait):
// zero-filled to what that generation will hold before its own compaction (at most
// SPARE_BYTES_MAX), and synced. The compaction writes its snapshot over the start of that
// file, and that generation's deltas overwrite zeros. A generation with no zeros (the first
// after create or open) makes its spare early, at 1/16 of the compaction threshold, and
// compacts into it as soon as it is made. Zeros are never a frame (a frame has the
// magic 0xC15D at bytes 4-5, and a CRC-32C of its body), so recovery stops at the first zeros
// as at a torn tail: every frame a commit confirmed lies before it. Zeros past the last frame
// are truncated away on open (with a torn tail's bytes), and at a clean close.
//
//   00000000000000000004.log       snapshot | deltas ... | 00 00 00 ... (overwritten next)
//   00000000000000000005.log.spare 00 00 00 ...          (the spare, synced; its generation's
//                                                         compaction writes into it)
//
// Recovery follows the offset store's rules: a bad frame (short, wrong CRC, malformed) with no
// valid frame after it is a torn tail, truncated away (it was never acknowledged); a bad frame
// followed by valid frames is damage to bytes that were once durable, reported through
// `onCorruption` (or thrown when there is none), skipped, the damaged file kept as `.corrupt`
// and a clean generation written from what was recovered.

import type { FileHandle } from "node:fs/promises";
import { mkdir, open, readdir, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import {
  assert,
  crc32c,
  isSluiceError,
  readInt64,
  SluiceError,
  slabBytes,
  writeInt32,
  writeInt64,
} from "../record/mod.ts";
import { ioError } from "./errors.ts";
import type { FileIO } from "./io.ts";
import type { SnapshotRun } from "./queue_cursor.ts";

export const DELTA_ACQUIRE = 1;
export const DELTA_ACCEPT = 2;
export const DELTA_DEAD_LETTER = 3;
export const DELTA_DISCARD = 4;
export const DELTA_FLOOR = 5;
export const DELTA_TRUNCATE = 6;
export const DELTA_EXPIRED = 7;
export const DELTA_MAXLEN = 8;
export const DELTA_DELAYED = 9;

export type QueueCounters = {
  /** Acquisitions: each delivery of a record counts once. */
  delivered: number;
  accepted: number;
  /** Records written to the dead-letter topic. */
  deadLettered: number;
  /** Records rejected or past the limit on a queue with no dead-letter topic. */
  discarded: number;
  /** Records dead-lettered or discarded because their TTL ran out (counted in those too). */
  expired: number;
  /** Records dropped from the head by max length (counted in deadLettered or discarded too). */
  overflowed: number;
};

/** What the log replays into and snapshots from: the queue's cursors and counters. */
export interface QueueStateTarget {
  readonly partitionCount: number;
  restoreCounters(counters: QueueCounters): void;
  restorePartition(partition: number, floor: number, next: number, runs: SnapshotRun[]): void;
  /** Whether a snapshot of one partition is possible; false marks the frame damaged. */
  checkSnapshot(partition: number, floor: number, next: number): boolean;
  /** Whether a delta is well formed; false marks its frame damaged (nothing of it applies). */
  checkDelta(kind: number, partition: number, first: number, count: number): boolean;
  replay(kind: number, partition: number, first: number, count: number, deliveries: number): void;
  snapshotCounters(): QueueCounters;
  snapshotPartition(partition: number): {
    floor: number;
    next: number;
    runs: Iterable<SnapshotRun>;
  };
}

export type QueueStateLogOptions = {
  io: FileIO;
  /** fdatasync before a commit resolves. Compaction always syncs. */
  fsync: boolean;
  /**
   * fdatasyncs allowed in flight at once (default 4; 1 is a serial group commit: a group's
   * write waits for the fdatasync before it).
   */
  syncsInFlightMax?: number;
  /** The file size from which compaction is considered (default 4 MiB). */
  compactAfterBytes?: number;
  /** Told each successful commit fdatasync's duration in seconds (the engine's histogram). */
  onFsync?: (seconds: number) => void;
  /** Damaged frames found on open; without it, open throws CORRUPT_BATCH. */
  onCorruption?: (error: SluiceError) => void;
  /**
   * Bytes of zeros a spare generation holds at most (default SPARE_BYTES_MAX; 0: no spare
   * generation is made, every write extends the file).
   */
  spareBytesMax?: number;
};

export type QueueStateLogStats = {
  generation: number;
  logBytes: number;
  writes: number;
  fsyncs: number;
  compactions: number;
  /** Compactions that wrote their generation into a spare (zeros its deltas overwrite). */
  spareCompactions: number;
  compactionFailures: number;
  /** Delta entries waiting for the next write. */
  pendingEntries: number;
  /**
   * Times a group with commits waiting on it found every fdatasync slot taken and waited for
   * the oldest to end before its write: a commit's latency then holds part of another's.
   */
  slotWaits: number;
  /**
   * Milliseconds those groups spent waiting for a slot, summed and the longest: the part of a
   * commit's latency that is queueing behind other groups' fdatasyncs, not its own.
   */
  slotWaitMsTotal: number;
  slotWaitMsMax: number;
};

export type QueueRecovery = {
  frames: number;
  deltas: number;
  /** Bytes past the last frame truncated away: a torn write, and a spare's unused zeros. */
  tornBytes: number;
  /** Damaged ranges skipped (reported through onCorruption). */
  damaged: number;
};

const KIB = 1024;
const MIB = 1024 * KIB;
export const COMPACT_AFTER_BYTES_DEFAULT = 4 * MIB;
/** The most zeros a spare generation holds (a generation that outgrows it extends its file). */
export const SPARE_BYTES_MAX = 16 * MIB;
/** The largest spareBytesMax an engine accepts. */
export const SPARE_BYTES_LIMIT = 256 * MIB;
/**
 * A generation with no zeros (the first after create or open) takes its spare early: at this
 * fraction of compactAfterBytes (256 KiB of 4 MiB), and compacts into it once it is made, so a
 * busy queue overwrites zeros within a second or so of a restart rather than after a whole
 * generation. Only from EARLY_SPARE_COMPACT_AFTER_BYTES_MIN: below it generations are short.
 */
const EARLY_SPARE_DIVISOR = 16;
const EARLY_SPARE_COMPACT_AFTER_BYTES_MIN = 1 * MIB;
/** Zeros written per write call while a spare is made. */
const SPARE_ZEROS_BYTES = 1 * MIB;
const SPARE_ZEROS = new Uint8Array(SPARE_ZEROS_BYTES);
/**
 * fdatasyncs of one queue's state log in flight at once, by default and at most. Four, not two:
 * under a broker each consumer connection's acks form their own group, and with two slots about
 * one accept group in nine found both taken and waited for the oldest fdatasync before its own
 * (bench/tools/ack_stages.ts at 40,000/s); with four, about one in a hundred (bench/RESULTS.md,
 * issue 11). One file's fdatasyncs overlap on the disks measured (1, 2 and 3 in flight
 * gave 1.2k, 5.4k and 6.7k fdatasyncs a second), so more slots mean less queueing, not slower
 * fdatasyncs.
 */
export const SYNCS_IN_FLIGHT_DEFAULT = 4;
export const SYNCS_IN_FLIGHT_MAX = 8;
/**
 * Bytes that no commit waits for (acquisitions, floor moves) are fdatasync'd at most this long
 * after their write when no accept's fdatasync has covered them by then. Longer than a
 * consumer's turn from a fetch's answer to its accepts (about a millisecond on an idle
 * machine), so that the accepts' fdatasync is the one that covers them.
 */
export const LAZY_SYNC_DELAY_MS = 10;
/** Delta entries waiting for a write beyond which fetches pause (acks still go in). */
export const PENDING_ENTRIES_MAX = 1 << 20;
const FRAME_HEADER_BYTES = 12;
const FRAME_BODY_BYTES_MAX = 64 * MIB;
const FRAME_MAGIC = 0xc15d;
const FRAME_MAGIC_BYTES = Buffer.from([FRAME_MAGIC >>> 8, FRAME_MAGIC & 0xff]);
const FRAME_MAGIC_AT = 4;
const FRAME_VERSION = 1;
const TYPE_QUEUE = 1;
const TYPE_PARTITION = 2;
const TYPE_DELTAS = 3;
const QUEUE_BODY_BYTES = 4 + 6 * 8;
/** The QUEUE body before max length: no overflowed counter. */
const QUEUE_BODY_BYTES_V1 = 4 + 5 * 8;
/** A QUEUE body without the expired counter. */
const QUEUE_BODY_BYTES_V0 = 4 + 4 * 8;
const PARTITION_HEADER_BYTES = 4 + 8 + 8 + 4;
const RUN_BYTES = 6;
export const DELTA_ENTRY_BYTES = 18;
const DELTA_FRAME_ENTRIES_MAX = 1 << 20;
const RUNS_PER_PARTITION_MAX = 1 << 20;
const GENERATION_DIGITS = 20;
const GENERATION_FILE = /^(\d{20})\.log$/;
/** A compaction's file before its rename: written (.tmp), or a spare made ahead (.spare). */
const COMPACTION_TEMP_FILE = /^\d{20}\.log\.(tmp|spare)$/;

assert(
  4 + DELTA_FRAME_ENTRIES_MAX * DELTA_ENTRY_BYTES <= FRAME_BODY_BYTES_MAX,
  "a full deltas frame fits",
);
assert(
  PARTITION_HEADER_BYTES + RUNS_PER_PARTITION_MAX * RUN_BYTES <= FRAME_BODY_BYTES_MAX,
  "a snapshot of the widest window fits one frame",
);
assert(PENDING_ENTRIES_MAX >= DELTA_FRAME_ENTRIES_MAX, "a backlog spans whole frames");

// ---------------------------------------------------------------------------------------------
// Encoding.

/** A DataView of exactly `bytes` (a view, a slab's one included, shares its ArrayBuffer). */
function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function frame(type: number, body: Uint8Array): Uint8Array {
  assert(body.length >= 1 && body.length <= FRAME_BODY_BYTES_MAX, "a body fits a frame");
  const bytes = slabBytes(FRAME_HEADER_BYTES + body.length);
  const view = viewOf(bytes);
  view.setUint16(FRAME_MAGIC_AT, FRAME_MAGIC);
  bytes[6] = FRAME_VERSION;
  bytes[7] = type;
  view.setUint32(8, body.length);
  bytes.set(body, FRAME_HEADER_BYTES);
  view.setUint32(0, crc32c(bytes.subarray(4)) >>> 0);
  return bytes;
}

function queueFrame(partitions: number, counters: QueueCounters): Uint8Array {
  const body = slabBytes(QUEUE_BODY_BYTES);
  writeInt32(body, 0, partitions);
  writeInt64(body, 4, counters.delivered);
  writeInt64(body, 12, counters.accepted);
  writeInt64(body, 20, counters.deadLettered);
  writeInt64(body, 28, counters.discarded);
  writeInt64(body, 36, counters.expired);
  writeInt64(body, 44, counters.overflowed);
  return frame(TYPE_QUEUE, body);
}

function partitionFrame(
  partition: number,
  state: { floor: number; next: number; runs: Iterable<SnapshotRun> },
): Uint8Array {
  const runs = [...state.runs];
  assert(runs.length <= RUNS_PER_PARTITION_MAX, "a window's runs fit a frame");
  const body = slabBytes(PARTITION_HEADER_BYTES + runs.length * RUN_BYTES);
  const view = viewOf(body);
  view.setUint32(0, partition);
  writeInt64(body, 4, state.floor);
  writeInt64(body, 12, state.next);
  view.setUint32(20, runs.length);
  let at = PARTITION_HEADER_BYTES;
  for (const run of runs) {
    view.setUint32(at, run.count);
    body[at + 4] = run.state;
    body[at + 5] = run.deliveries;
    at += RUN_BYTES;
  }
  return frame(TYPE_PARTITION, body);
}

/** The snapshot that starts a generation: the queue's counters, then every partition. */
function snapshotFrames(target: QueueStateTarget): Uint8Array[] {
  const frames = [queueFrame(target.partitionCount, target.snapshotCounters())];
  for (let partition = 0; partition < target.partitionCount; partition++) {
    frames.push(partitionFrame(partition, target.snapshotPartition(partition)));
  }
  return frames;
}

/** A growable buffer of delta entries waiting for the next write. */
class DeltaBuffer {
  // From slabs, as every buffer of a write batch: a fresh one viewed (DataView, subarray) would
  // cost the collector an ArrayBuffer per batch (record/slab.ts).
  bytes = slabBytes(64 * DELTA_ENTRY_BYTES);
  view = viewOf(this.bytes);
  entries = 0;

  add(kind: number, partition: number, first: number, count: number, deliveries: number): void {
    const at = this.entries * DELTA_ENTRY_BYTES;
    if (at + DELTA_ENTRY_BYTES > this.bytes.length) {
      const bigger = slabBytes(this.bytes.length * 2);
      bigger.set(this.bytes);
      this.bytes = bigger;
      this.view = viewOf(bigger);
    }
    this.bytes[at] = kind;
    this.bytes[at + 1] = deliveries;
    this.view.setUint32(at + 2, partition);
    writeInt64(this.bytes, at + 6, first);
    this.view.setUint32(at + 14, count);
    this.entries++;
  }

  /** The entries as DELTAS frames of at most DELTA_FRAME_ENTRIES_MAX entries each. */
  frames(): Uint8Array[] {
    const frames: Uint8Array[] = [];
    for (let from = 0; from < this.entries; from += DELTA_FRAME_ENTRIES_MAX) {
      const count = Math.min(DELTA_FRAME_ENTRIES_MAX, this.entries - from);
      const body = slabBytes(4 + count * DELTA_ENTRY_BYTES);
      writeInt32(body, 0, count);
      const start = from * DELTA_ENTRY_BYTES;
      body.set(this.bytes.subarray(start, start + count * DELTA_ENTRY_BYTES), 4);
      frames.push(frame(TYPE_DELTAS, body));
    }
    return frames;
  }

  /** A buffer holding this one's entries followed by `later`'s, in order. */
  followedBy(later: DeltaBuffer): DeltaBuffer {
    const joined = new DeltaBuffer();
    const bytes = (this.entries + later.entries) * DELTA_ENTRY_BYTES;
    joined.bytes = slabBytes(Math.max(bytes, joined.bytes.length));
    joined.view = viewOf(joined.bytes);
    joined.bytes.set(this.bytes.subarray(0, this.entries * DELTA_ENTRY_BYTES));
    joined.bytes.set(
      later.bytes.subarray(0, later.entries * DELTA_ENTRY_BYTES),
      this.entries * DELTA_ENTRY_BYTES,
    );
    joined.entries = this.entries + later.entries;
    return joined;
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding. Frames come from disk: every field is checked, nothing is asserted.

type Frame = { type: number; body: Uint8Array; end: number };

function readFrame(bytes: Uint8Array, view: DataView, position: number): Frame | undefined {
  if (bytes.length - position < FRAME_HEADER_BYTES) return undefined;
  if (view.getUint16(position + FRAME_MAGIC_AT) !== FRAME_MAGIC) return undefined;
  if (bytes[position + 6] !== FRAME_VERSION) return undefined;
  const type = bytes[position + 7]!;
  if (type < TYPE_QUEUE || type > TYPE_DELTAS) return undefined;
  const bodyBytes = view.getUint32(position + 8);
  if (bodyBytes < 1 || bodyBytes > FRAME_BODY_BYTES_MAX) return undefined;
  const end = position + FRAME_HEADER_BYTES + bodyBytes;
  if (end > bytes.length) return undefined;
  if (crc32c(bytes.subarray(position + 4, end)) >>> 0 !== view.getUint32(position)) {
    return undefined;
  }
  return { type, body: bytes.subarray(position + FRAME_HEADER_BYTES, end), end };
}

function isOffset(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

/** Applies a frame to `target` if it is well formed throughout; false (nothing applied) if not. */
function applyFrame(frame: Frame, target: QueueStateTarget): boolean {
  const { body } = frame;
  const view = viewOf(body);
  if (frame.type === TYPE_QUEUE) {
    const sizes = [QUEUE_BODY_BYTES, QUEUE_BODY_BYTES_V1, QUEUE_BODY_BYTES_V0];
    if (!sizes.includes(body.length)) return false;
    if (view.getUint32(0) !== target.partitionCount) return false;
    const counters = {
      delivered: readInt64(body, 4),
      accepted: readInt64(body, 12),
      deadLettered: readInt64(body, 20),
      discarded: readInt64(body, 28),
      expired: body.length >= QUEUE_BODY_BYTES_V1 ? readInt64(body, 36) : 0,
      overflowed: body.length >= QUEUE_BODY_BYTES ? readInt64(body, 44) : 0,
    };
    if (!Object.values(counters).every(isOffset)) return false;
    target.restoreCounters(counters);
    return true;
  }
  if (frame.type === TYPE_PARTITION) return applyPartition(body, view, target);
  return applyDeltas(body, view, target);
}

function applyPartition(body: Uint8Array, view: DataView, target: QueueStateTarget): boolean {
  if (body.length < PARTITION_HEADER_BYTES) return false;
  const partition = view.getUint32(0);
  const floor = readInt64(body, 4);
  const next = readInt64(body, 12);
  const runCount = view.getUint32(20);
  if (partition >= target.partitionCount || !isOffset(floor) || !isOffset(next)) return false;
  if (next < floor || body.length !== PARTITION_HEADER_BYTES + runCount * RUN_BYTES) return false;
  const runs: SnapshotRun[] = [];
  let covered = 0;
  for (let at = PARTITION_HEADER_BYTES; at < body.length; at += RUN_BYTES) {
    const run = { count: view.getUint32(at), state: body[at + 4]!, deliveries: body[at + 5]! };
    // Only the persisted states: available (0), accepted (2), archived (3).
    if (run.count < 1 || run.state === 1 || run.state > 3) return false;
    covered += run.count;
    runs.push(run);
  }
  if (covered !== next - floor || !target.checkSnapshot(partition, floor, next)) return false;
  target.restorePartition(partition, floor, next, runs);
  return true;
}

function applyDeltas(body: Uint8Array, view: DataView, target: QueueStateTarget): boolean {
  if (body.length < 4) return false;
  const count = view.getUint32(0);
  if (body.length !== 4 + count * DELTA_ENTRY_BYTES) return false;
  // Two passes: a frame applies whole or not at all.
  for (let at = 4; at < body.length; at += DELTA_ENTRY_BYTES) {
    const kind = body[at]!;
    const first = readInt64(body, at + 6);
    if (kind < DELTA_ACQUIRE || kind > DELTA_DELAYED || !isOffset(first)) return false;
    const records = view.getUint32(at + 14);
    if (!target.checkDelta(kind, view.getUint32(at + 2), first, records)) return false;
  }
  for (let at = 4; at < body.length; at += DELTA_ENTRY_BYTES) {
    const first = readInt64(body, at + 6);
    target.replay(body[at]!, view.getUint32(at + 2), first, view.getUint32(at + 14), body[at + 1]!);
  }
  return true;
}

type Damage = { position: number; bytes: number };
type Replay = { end: number; frames: number; deltas: number; damage: Damage[] };

/** The start of the first valid frame at or after `from`, or -1. */
function findFrame(bytes: Uint8Array, view: DataView, from: number): number {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  let magicAt = buffer.indexOf(FRAME_MAGIC_BYTES, from + FRAME_MAGIC_AT);
  while (magicAt !== -1) {
    const start = magicAt - FRAME_MAGIC_AT;
    if (readFrame(bytes, view, start) !== undefined) return start;
    magicAt = buffer.indexOf(FRAME_MAGIC_BYTES, magicAt + 1);
  }
  return -1;
}

/** Applies every valid frame of `bytes` to `target`; see the recovery rules at the top. */
function replay(bytes: Uint8Array, target: QueueStateTarget): Replay {
  const view = viewOf(bytes);
  const result: Replay = { end: 0, frames: 0, deltas: 0, damage: [] };
  let position = 0;
  while (position < bytes.length) {
    const found = readFrame(bytes, view, position);
    if (found !== undefined && applyFrame(found, target)) {
      result.frames++;
      if (found.type === TYPE_DELTAS) result.deltas += view.getUint32(position + 12);
      position = found.end;
      continue;
    }
    const next = findFrame(bytes, view, position + 1);
    if (next === -1) break;
    result.damage.push({ position, bytes: next - position });
    position = next;
  }
  result.end = position;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Files.

function fileName(generation: number): string {
  return `${String(generation).padStart(GENERATION_DIGITS, "0")}.log`;
}

/** Deletes leftovers of an interrupted compaction and returns the live generation, if any. */
async function liveGeneration(dir: string, io: FileIO): Promise<number | undefined> {
  const generations: number[] = [];
  for (const name of await readdir(dir)) {
    if (COMPACTION_TEMP_FILE.test(name)) await unlink(join(dir, name));
    const match = GENERATION_FILE.exec(name);
    if (match !== null) generations.push(Number(match[1]));
  }
  generations.sort((a, b) => a - b);
  const live = generations.at(-1);
  if (generations.length > 1) {
    // The newest generation's name must be on disk before the older ones go.
    io.syncDirectory(dir);
    for (const old of generations.slice(0, -1)) await unlink(join(dir, fileName(old)));
  }
  return live;
}

/**
 * Writes `frames` as generation `generation` (temp file, fsync, rename); returns its handle.
 * With `spare` (that generation's spare was made: zero-filled and synced) the frames overwrite
 * its start, and the zeros after them stay for the deltas to overwrite.
 */
async function writeGeneration(
  dir: string,
  generation: number,
  frames: Uint8Array[],
  io: FileIO,
  spare = false,
): Promise<{ handle: FileHandle; bytes: number; spare: boolean }> {
  const path = join(dir, fileName(generation));
  let temp = `${path}.tmp`;
  let handle: FileHandle | undefined;
  if (spare) {
    // "r+": the zeros stay. A spare that cannot be opened is done without.
    handle = await open(sparePath(dir, generation), "r+").catch(() => undefined);
    if (handle !== undefined) temp = sparePath(dir, generation);
  }
  try {
    handle ??= await open(temp, "w+");
    await io.writeAll(handle.fd, frames, 0);
    await io.datasync(handle.fd);
    await rename(temp, path);
    let bytes = 0;
    for (const part of frames) bytes += part.length;
    return { handle, bytes, spare: temp !== `${path}.tmp` };
  } catch (error) {
    await handle?.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw ioError(error, `writing queue state snapshot ${temp}`);
  }
}

type Waiter = { resolve: () => void; reject: (error: unknown) => void };

type Spare = {
  generation: number;
  made: Promise<boolean>;
  /** Set once `made` settled: whether the spare is there to use. */
  done?: { made: boolean };
};

function settle(waiters: Waiter[], failure: SluiceError | undefined): void {
  for (const waiter of waiters) {
    if (failure === undefined) waiter.resolve();
    else waiter.reject(failure);
  }
}

function throwIfFailed(failure: SluiceError | undefined): void {
  if (failure !== undefined) throw failure;
}

function sparePath(dir: string, generation: number): string {
  return `${join(dir, fileName(generation))}.spare`;
}

/**
 * Makes generation `generation`'s file ahead of its compaction: `bytes` of zeros, synced, and
 * closed (a spare holds no descriptor while it waits). False when that fails (nothing is left
 * behind): the compaction then writes a file of its own, as without a spare. Its own
 * descriptor reports its own writeback errors, so a failure here hides none from the live
 * file's fdatasyncs.
 */
async function makeSpare(
  dir: string,
  generation: number,
  bytes: number,
  io: FileIO,
): Promise<boolean> {
  const temp = sparePath(dir, generation);
  let handle: FileHandle | undefined;
  try {
    handle = await open(temp, "w+");
    for (let position = 0; position < bytes; position += SPARE_ZEROS_BYTES) {
      const length = Math.min(SPARE_ZEROS_BYTES, bytes - position);
      await io.writeAll(handle.fd, [SPARE_ZEROS.subarray(0, length)], position);
    }
    await io.datasync(handle.fd);
    await handle.close();
    return true;
  } catch {
    await handle?.close().catch(() => {});
    await unlink(temp).catch(() => {});
    return false;
  }
}

/** The durable state of one queue. Create with `QueueStateLog.create`, reopen with `open`. */
export class QueueStateLog {
  readonly dir: string;
  readonly recovery: QueueRecovery;
  readonly #target: QueueStateTarget;
  readonly #options: QueueStateLogOptions;
  readonly #compactAfterBytes: number;
  #handle: FileHandle;
  #generation: number;
  #logBytes: number;
  #snapshotBytes: number;
  #pending = new DeltaBuffer();
  /**
   * Deltas whose write failed on a full disk: already applied in memory, they are written
   * ahead of the next deltas (or covered by the next snapshot) once space is freed.
   */
  #unwritten: DeltaBuffer | undefined;
  #waiters: Waiter[] = [];
  #loop: Promise<void> | undefined;
  /** The fdatasyncs in flight, oldest first: each settles with the failure that ended it. */
  #syncsInFlight: Promise<SluiceError | undefined>[] = [];
  /** Settles once every group written so far is durable, with the first failure if any. */
  #synced: Promise<SluiceError | undefined> = Promise.resolve(undefined);
  readonly #syncsInFlightMax: number;
  /**
   * Bytes written that no fdatasync started after them yet covers: a group nobody waits for
   * (acquisitions, a fetch's floor moves) leaves its sync to the next one (see #writeBatch).
   */
  #unsynced = false;
  /** Starts the fdatasync of #unsynced bytes if no commit's has by then (LAZY_SYNC_DELAY_MS). */
  #lazySyncTimer: ReturnType<typeof setTimeout> | undefined;
  #closing: Promise<void> | undefined;
  #fenced: SluiceError | undefined;
  #writes = 0;
  #fsyncs = 0;
  #compactions = 0;
  #spareCompactions = 0;
  #compactionFailures = 0;
  #slotWaits = 0;
  #slotWaitMsTotal = 0;
  #slotWaitMsMax = 0;
  /** The log size from which compaction is tried again after a failed one. */
  #compactAtBytes = 0;
  /** Set once a compaction renamed its file into place: failures after that fence. */
  #generationSwapped = false;
  readonly #spareBytesMax: number;
  /** The next generation's file being made or made (makeSpare), for its compaction. */
  #spare: Spare | undefined;
  /** The live file may hold a spare's zeros past the last frame. */
  #zeroTail = false;

  private constructor(
    dir: string,
    file: { handle: FileHandle; generation: number; bytes: number; snapshotBytes: number },
    target: QueueStateTarget,
    options: QueueStateLogOptions,
    recovery: QueueRecovery,
  ) {
    this.dir = dir;
    this.#target = target;
    this.#options = options;
    this.#compactAfterBytes = options.compactAfterBytes ?? COMPACT_AFTER_BYTES_DEFAULT;
    this.#syncsInFlightMax = options.syncsInFlightMax ?? SYNCS_IN_FLIGHT_DEFAULT;
    this.#spareBytesMax = options.spareBytesMax ?? SPARE_BYTES_MAX;
    assert(
      Number.isSafeInteger(this.#spareBytesMax) && this.#spareBytesMax >= 0,
      "spareBytesMax is a byte count",
    );
    assert(
      Number.isSafeInteger(this.#syncsInFlightMax) &&
        this.#syncsInFlightMax >= 1 &&
        this.#syncsInFlightMax <= SYNCS_IN_FLIGHT_MAX,
      "syncsInFlightMax is checked by the caller",
    );
    this.#handle = file.handle;
    this.#generation = file.generation;
    this.#logBytes = file.bytes;
    this.#snapshotBytes = file.snapshotBytes;
    this.recovery = recovery;
  }

  /** Starts a new queue's log: generation 0 holding a snapshot of `target`, synced. */
  static async create(
    dir: string,
    target: QueueStateTarget,
    options: QueueStateLogOptions,
  ): Promise<QueueStateLog> {
    try {
      await mkdir(dir, { recursive: true });
    } catch (error) {
      throw ioError(error, `creating queue state directory ${dir}`);
    }
    const { handle, bytes } = await writeGeneration(dir, 0, snapshotFrames(target), options.io);
    try {
      options.io.syncDirectory(dir);
    } catch (error) {
      await handle.close().catch(() => {});
      throw ioError(error, `syncing queue state directory ${dir}`);
    }
    const file = { handle, generation: 0, bytes, snapshotBytes: bytes };
    const recovery = { frames: 0, deltas: 0, tornBytes: 0, damaged: 0 };
    return new QueueStateLog(dir, file, target, options, recovery);
  }

  /** Opens the live generation in `dir` and replays it into `target`. */
  static async open(
    dir: string,
    target: QueueStateTarget,
    options: QueueStateLogOptions,
  ): Promise<QueueStateLog> {
    let generation: number | undefined;
    try {
      generation = await liveGeneration(dir, options.io);
    } catch (error) {
      throw ioError(error, `listing queue state directory ${dir}`);
    }
    if (generation === undefined) {
      throw new SluiceError("IO_ERROR", `Queue state directory ${dir} holds no state file`, {
        dir,
      });
    }
    const path = join(dir, fileName(generation));
    let handle: FileHandle;
    try {
      handle = await open(path, "r+");
    } catch (error) {
      throw ioError(error, `opening queue state file ${path}`);
    }
    try {
      return await QueueStateLog.#recover(dir, { handle, generation }, target, options);
    } catch (error) {
      await handle.close().catch(() => {});
      throw error;
    }
  }

  static async #recover(
    dir: string,
    file: { handle: FileHandle; generation: number },
    target: QueueStateTarget,
    options: QueueStateLogOptions,
  ): Promise<QueueStateLog> {
    const path = join(dir, fileName(file.generation));
    let bytes: Uint8Array;
    try {
      bytes = await file.handle.readFile();
    } catch (error) {
      throw ioError(error, `reading queue state file ${path}`);
    }
    const replayed = replay(bytes, target);
    const recovery = {
      frames: replayed.frames,
      deltas: replayed.deltas,
      tornBytes: replayed.damage.length > 0 ? 0 : bytes.length - replayed.end,
      damaged: replayed.damage.length,
    };
    const state = { ...file, bytes: replayed.end, snapshotBytes: replayed.end };
    const log = new QueueStateLog(dir, state, target, options, recovery);
    if (replayed.damage.length > 0) {
      const report = options.onCorruption;
      if (report === undefined) throw damageError(path, replayed.damage[0]!);
      for (const range of replayed.damage) report(damageError(path, range));
      await log.#compact([], { keepOld: true });
    } else if (replayed.end < bytes.length) {
      try {
        options.io.truncate(file.handle.fd, replayed.end);
        await options.io.datasync(file.handle.fd);
      } catch (error) {
        throw ioError(error, `truncating the torn tail of ${path} at ${replayed.end}`);
      }
    }
    return log;
  }

  get stats(): QueueStateLogStats {
    return {
      generation: this.#generation,
      logBytes: this.#logBytes,
      writes: this.#writes,
      fsyncs: this.#fsyncs,
      compactions: this.#compactions,
      spareCompactions: this.#spareCompactions,
      compactionFailures: this.#compactionFailures,
      pendingEntries: this.#pending.entries,
      slotWaits: this.#slotWaits,
      slotWaitMsTotal: this.#slotWaitMsTotal,
      slotWaitMsMax: this.#slotWaitMsMax,
    };
  }

  /** The error that stops this log, or undefined while it works. */
  get fenced(): SluiceError | undefined {
    return this.#fenced;
  }

  /** True when so many deltas wait for the disk that new acquisitions should pause. */
  get backlogged(): boolean {
    return this.#pending.entries >= PENDING_ENTRIES_MAX;
  }

  /**
   * Adds a delta to the next group commit. The caller has already applied it in memory; the
   * write starts within this tick's microtasks, and `commit` waits for it.
   */
  add(kind: number, partition: number, first: number, count: number, deliveries = 0): void {
    assert(this.#closing === undefined, "no delta is added to a closed log");
    this.#pending.add(kind, partition, first, count, deliveries);
    this.#schedule();
  }

  /** Resolves once every delta added so far is written (and fdatasync'd under fsync always). */
  commit(): Promise<void> {
    if (this.#fenced !== undefined) return Promise.reject(this.#fenced);
    const idle = this.#pending.entries === 0 && this.#loop === undefined;
    if (idle && this.#unwritten === undefined && !this.#unsynced) {
      // Nothing waits for a write: what was added is covered by the fdatasyncs in flight.
      return this.#synced.then(throwIfFailed);
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#waiters.push({ resolve, reject });
    this.#schedule();
    return promise;
  }

  /** Waits for every commit, then closes the file. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    // Deltas left unwritten by a full disk get one more try; their callers were told DISK_FULL.
    if (this.#unwritten !== undefined) await this.commit().catch(() => {});
    while (this.#loop !== undefined) await this.#loop;
    // Bytes no commit waited for are made durable too before the file closes.
    this.#cancelLazySync();
    if (this.#unsynced && this.#fenced === undefined) {
      this.#unsynced = false;
      this.#startSync([]);
    }
    await this.#syncsEnded();
    await this.#dropSpare();
    try {
      // A spare's zeros past the last frame go (a crash before this leaves them: harmless).
      if (this.#zeroTail && this.#fenced === undefined) {
        this.#options.io.truncate(this.#handle.fd, this.#logBytes);
      }
      await this.#handle.close();
    } catch (error) {
      throw ioError(error, `closing queue state file ${this.#path}`);
    }
  }

  get #path(): string {
    return join(this.dir, fileName(this.#generation));
  }

  #schedule(): void {
    // The loop starts in a microtask, so every delta added in the same tick joins one write.
    this.#loop ??= Promise.resolve().then(() => this.#writeLoop());
  }

  async #writeLoop(): Promise<void> {
    while (this.#pending.entries > 0 || this.#waiters.length > 0) {
      const oldest = this.#syncsInFlight[0];
      if (this.#syncsInFlight.length >= this.#syncsInFlightMax && oldest !== undefined) {
        // Every slot holds an fdatasync: deltas added meanwhile join the group that writes
        // when the oldest one ends.
        if (this.#waiters.length === 0) {
          await oldest;
          continue;
        }
        this.#slotWaits++;
        const startMs = performance.now();
        await oldest;
        const waitedMs = performance.now() - startMs;
        this.#slotWaitMsTotal += waitedMs;
        this.#slotWaitMsMax = Math.max(this.#slotWaitMsMax, waitedMs);
        continue;
      }
      const pending = this.#unwritten?.followedBy(this.#pending) ?? this.#pending;
      const waiters = this.#waiters;
      this.#unwritten = undefined;
      this.#pending = new DeltaBuffer();
      this.#waiters = [];
      if (this.#fenced !== undefined) {
        for (const waiter of waiters) waiter.reject(this.#fenced);
        continue;
      }
      try {
        if (this.#shouldCompact() && (await this.#compactAfterSyncs(waiters))) continue;
        await this.#writeBatch(pending, waiters);
      } catch (error) {
        const failure = isSluiceError(error) ? error : ioError(error, `writing ${this.#path}`);
        const fence = this.#fence(failure, "a write or fdatasync failed");
        for (const waiter of waiters) waiter.reject(fence);
      }
    }
    this.#loop = undefined;
  }

  /**
   * Compacts once the fdatasyncs in flight on the current file have ended (a compaction
   * closes it). True when the compaction covered `waiters`; false when they are still to be
   * written (compaction failed, or was not tried because the log fenced meanwhile).
   */
  async #compactAfterSyncs(waiters: Waiter[]): Promise<boolean> {
    await this.#syncsEnded();
    if (this.#fenced !== undefined) throw this.#fenced;
    // The target a snapshot is taken from already includes the pending deltas: a compaction
    // covers them, and they are not written again.
    return await this.#compactOrNot(waiters);
  }

  async #writeBatch(pending: DeltaBuffer, waiters: Waiter[]): Promise<void> {
    const frames = pending.frames();
    let bytes = 0;
    for (const part of frames) bytes += part.length;
    if (bytes > 0) {
      try {
        await this.#options.io.writeAll(this.#handle.fd, frames, this.#logBytes);
      } catch (error) {
        const failure = this.#undoWrite(error, pending);
        for (const waiter of waiters) waiter.reject(failure);
        return;
      }
      this.#writes++;
      this.#logBytes += bytes;
      this.#unsynced = this.#options.fsync;
      this.#spareSoon();
    }
    // A group nobody waits for starts no fdatasync: its bytes are covered by the next one, an
    // accept's, or the lazy one (#lazySyncSoon). Acquisitions stay durable within
    // LAZY_SYNC_DELAY_MS and an fdatasync, and accepts do not queue behind them.
    if (this.#unsynced && waiters.length > 0) {
      this.#unsynced = false;
      this.#cancelLazySync();
      this.#startSync(waiters);
      return;
    }
    if (this.#unsynced) this.#lazySyncSoon();
    // Nothing of their own to sync: they wait for the fdatasyncs already in flight.
    this.#synced.then((failure) => settle(waiters, failure));
  }

  /** Arms the lazy fdatasync of bytes nobody waits for (once: the first such write starts it). */
  #lazySyncSoon(): void {
    if (this.#lazySyncTimer !== undefined) return;
    this.#lazySyncTimer = setTimeout(this.#lazySync, LAZY_SYNC_DELAY_MS);
    // A clean close syncs what is left (#shutdown): the timer need not keep the process up.
    (this.#lazySyncTimer as { unref?: () => void }).unref?.();
  }

  #cancelLazySync(): void {
    if (this.#lazySyncTimer === undefined) return;
    clearTimeout(this.#lazySyncTimer);
    this.#lazySyncTimer = undefined;
  }

  readonly #lazySync = (): void => {
    this.#lazySyncTimer = undefined;
    if (!this.#unsynced || this.#fenced !== undefined || this.#closing !== undefined) return;
    if (this.#syncsInFlight.length > 0 || this.#loop !== undefined) {
      // Not beside one in flight: that slot is an accept's to take. Nor while the write loop
      // runs: a group it writes for waiters covers these bytes, and a compaction closes the
      // file an fdatasync started now would be on (the snapshot covers them). Tried again
      // later; the next accept's fdatasync covers these bytes meanwhile.
      this.#lazySyncSoon();
      return;
    }
    this.#unsynced = false;
    this.#startSync([]);
  };

  /** Resolves once no fdatasync is in flight (one ending may start another: see below). */
  async #syncsEnded(): Promise<void> {
    while (this.#syncsInFlight.length > 0) await this.#synced;
  }

  /**
   * Pipelined group commit. An fdatasync starts as soon as its group is written, while the
   * one before it may still be in flight (at most syncsInFlightMax), so a delta waits for about
   * one fdatasync, not for the one in progress and then its own. An fdatasync covers every
   * byte written before it started; groups still resolve in order, and a group resolves only
   * once its own fdatasync and every earlier one succeeded: after a failed fdatasync the pages
   * it covered may be lost whatever a later one reports, so a failure fences and fails every
   * group after it too.
   */
  #startSync(waiters: Waiter[]): void {
    const before = this.#synced;
    const startMs = performance.now();
    const synced = this.#options.io.datasync(this.#handle.fd).then(
      () => {
        this.#options.onFsync?.((performance.now() - startMs) / 1000);
        return undefined;
      },
      (error: unknown) => error,
    );
    const link = Promise.all([before, synced]).then(([earlier, error]) => {
      assert(this.#syncsInFlight[0] === link, "fdatasyncs end in the order they started");
      this.#syncsInFlight.shift();
      let failure = earlier;
      if (error === undefined) this.#fsyncs++;
      else failure ??= this.#fence(ioError(error, `syncing ${this.#path}`), "an fdatasync failed");
      settle(waiters, failure);
      return failure;
    });
    this.#syncsInFlight.push(link);
    this.#synced = link;
  }

  /**
   * A write that failed with disk full (ENOSPC is not EIO: what the file held is intact) is
   * cut off the file and its deltas are kept to be written first next time, so the queue works
   * again once space is freed and the file never holds a partial frame. Its callers get the
   * retriable DISK_FULL. Any other write failure, or a truncation that fails, fences.
   */
  #undoWrite(error: unknown, pending: DeltaBuffer): SluiceError {
    const failure = ioError(error, `writing queue state file ${this.#path}`);
    if (failure.code !== "DISK_FULL") return this.#fence(failure, "a write failed");
    try {
      this.#options.io.truncate(this.#handle.fd, this.#logBytes);
    } catch (truncateError) {
      return this.#fence(truncateError, "a failed write could not be truncated away");
    }
    this.#unwritten = pending;
    return failure;
  }

  #fence(error: unknown, why: string): SluiceError {
    this.#fenced ??= new SluiceError(
      "LOG_FENCED",
      `Queue state ${this.dir} refuses writes until the engine is reopened: ${why}`,
      { dir: this.dir },
      { cause: error },
    );
    return this.#fenced;
  }

  #shouldCompact(): boolean {
    if (this.#logBytes >= this.#compactionBytes()) return true;
    // Early: a generation with no zeros compacts into its spare as soon as it is made.
    return this.#earlySpare() && this.#spare?.done?.made === true;
  }

  /** Whether this generation takes its spare early (see EARLY_SPARE_DIVISOR). */
  #earlySpare(): boolean {
    if (this.#zeroTail || this.#compactAtBytes > 0) return false;
    if (this.#compactAfterBytes < EARLY_SPARE_COMPACT_AFTER_BYTES_MIN) return false;
    return this.#logBytes >= this.#compactAfterBytes / EARLY_SPARE_DIVISOR;
  }

  /** The log size at which the live generation compacts. */
  #compactionBytes(): number {
    // Twice the last snapshot at least, so that a large window does not compact every write.
    const threshold = Math.max(this.#compactAfterBytes, 2 * this.#snapshotBytes);
    return Math.max(threshold, this.#compactAtBytes);
  }

  /**
   * Starts making the next generation's spare once the live one is half way to compaction:
   * as big as that generation will grow before its own compaction (its snapshot, about this
   * one's, and then the compaction threshold), at most spareBytesMax.
   */
  #spareSoon(): void {
    if (this.#spare !== undefined || this.#spareBytesMax === 0) return;
    const compactAtBytes = this.#compactionBytes();
    if (2 * this.#logBytes < compactAtBytes && !this.#earlySpare()) return;
    const wanted = this.#snapshotBytes + Math.max(this.#compactAfterBytes, 2 * this.#snapshotBytes);
    const bytes = Math.min(this.#spareBytesMax, wanted);
    const generation = this.#generation + 1;
    const spare: Spare = {
      generation,
      made: makeSpare(this.dir, generation, bytes, this.#options.io),
    };
    void spare.made.then((made) => {
      spare.done = { made };
    });
    this.#spare = spare;
  }

  /**
   * Whether the spare made for `generation` is there to take; false when there is none, making
   * it failed, or it is still being made: the compaction never waits for it (that one is
   * deleted once made).
   */
  #takeSpare(generation: number): boolean {
    const spare = this.#spare;
    if (spare === undefined) return false;
    // Made for this generation by construction: only a compaction moves the generation on.
    assert(spare.generation === generation, "a spare is made for the next generation");
    if (spare.done === undefined) {
      void this.#dropSpare();
      return false;
    }
    this.#spare = undefined;
    return spare.done.made;
  }

  /** Closes and deletes a spare nobody will use. */
  async #dropSpare(): Promise<void> {
    const spare = this.#spare;
    if (spare === undefined) return;
    this.#spare = undefined;
    if (!(await spare.made)) return;
    await unlink(sparePath(this.dir, spare.generation)).catch(() => {});
  }

  /**
   * Compaction is an optimisation: when the new generation cannot be written, the old file
   * stays live, the pending deltas are written to it as usual (false), and compaction waits
   * for another compactAfterBytes of log. A failure after the rename throws (and fences).
   */
  async #compactOrNot(waiters: Waiter[]): Promise<boolean> {
    try {
      await this.#compact(waiters, { keepOld: false });
      this.#compactAtBytes = 0;
      return true;
    } catch (error) {
      if (this.#generationSwapped) throw error;
      this.#compactionFailures++;
      this.#compactAtBytes = this.#logBytes + this.#compactAfterBytes;
      return false;
    }
  }

  /**
   * Writes the state as the next generation and makes it the live file. Runs between writes,
   * synchronously encoding the target, so the snapshot holds every delta added so far.
   */
  async #compact(waiters: Waiter[], options: { keepOld: boolean }): Promise<void> {
    const oldPath = this.#path;
    const generation = this.#generation + 1;
    const frames = snapshotFrames(this.#target);
    this.#generationSwapped = false;
    const spare = !options.keepOld && this.#takeSpare(generation);
    if (options.keepOld) await this.#dropSpare();
    const written = await writeGeneration(this.dir, generation, frames, this.#options.io, spare);
    this.#generationSwapped = true;
    const oldHandle = this.#handle;
    // From the rename on, a reopen reads the new file: appends must go there.
    this.#handle = written.handle;
    this.#generation = generation;
    this.#logBytes = written.bytes;
    this.#snapshotBytes = written.bytes;
    this.#zeroTail = written.spare;
    if (written.spare) this.#spareCompactions++;
    // The snapshot, synced, holds everything written to the old file.
    this.#unsynced = false;
    this.#compactions++;
    this.#fsyncs++;
    await oldHandle.close().catch(() => {});
    // On the thread pool where the FileIO offers it: a directory fsync commits the journal,
    // milliseconds on a loaded disk, and the whole broker's event loop would wait for it.
    const io = this.#options.io;
    if (io.syncDirectoryAsync === undefined) io.syncDirectory(this.dir);
    else await io.syncDirectoryAsync(this.dir);
    for (const waiter of waiters) waiter.resolve();
    // Leftovers are harmless: open deletes superseded generations.
    if (options.keepOld) await rename(oldPath, `${oldPath}.corrupt`).catch(() => {});
    else await unlink(oldPath).catch(() => {});
  }
}

function damageError(path: string, damage: Damage): SluiceError {
  const end = damage.position + damage.bytes;
  return new SluiceError(
    "CORRUPT_BATCH",
    `Queue state file ${path} is damaged: bytes ${damage.position} to ${end} are not valid ` +
      "frames and valid frames follow them; they were skipped",
    { file: path, position: damage.position, bytes: damage.bytes },
  );
}

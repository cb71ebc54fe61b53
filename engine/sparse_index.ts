// The two sparse indexes of a segment, held in memory as typed arrays and persisted as the
// `.index` and `.timeindex` files. Both are derived data: the log is the truth, and an index
// that fails its checks on open is rebuilt from the log.
//
//   .index      one entry per indexIntervalBytes of log, 8 bytes, big-endian:
//               +------------------------+------------------------+
//               | relativeOffset  u32    | position  u32          |
//               +------------------------+------------------------+
//               relativeOffset = batch baseOffset - segment baseOffset; position = the batch's
//               byte position in the .log file.
//
//   .timeindex  12 bytes, big-endian, added with an offset entry when the largest timestamp
//               seen in the segment has grown since the previous time entry:
//               +------------------------------------------------+------------------------+
//               | timestamp  i64 (largest so far, ms)            | relativeOffset  u32    |
//               +------------------------------------------------+------------------------+
//               Every record before the batch at relativeOffset has a timestamp <= timestamp.

import { readInt64, readUint32, writeInt32, writeInt64 } from "../record/mod.ts";

export const OFFSET_ENTRY_BYTES = 8;
export const TIME_ENTRY_BYTES = 12;
const INITIAL_CAPACITY = 64;

function grow<T extends Uint8Array | Uint32Array | Float64Array>(array: T, needed: number): T {
  if (needed <= array.length) return array;
  const next = new (array.constructor as new (length: number) => T)(
    Math.max(needed, array.length * 2),
  );
  next.set(array);
  return next;
}

/** Index of the last element of `sorted[0 .. count)` that is <= `key`, or -1. */
function floorIndex(sorted: Uint32Array | Float64Array, count: number, key: number): number {
  let low = 0;
  let high = count - 1;
  let found = -1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle]! <= key) {
      found = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  return found;
}

export type IndexEntry = {
  entry: number;
  relativeOffset: number;
  position: number;
  checked: boolean;
};

export class OffsetIndex {
  #relativeOffsets = new Uint32Array(INITIAL_CAPACITY);
  #positions = new Uint32Array(INITIAL_CAPACITY);
  /**
   * 1 for entries known to point at the batch they name: those built from batches this
   * process appended or scanned, and file entries once a read has checked them.
   */
  #checked = new Uint8Array(INITIAL_CAPACITY);
  #count = 0;

  get count(): number {
    return this.#count;
  }

  relativeOffsetAt(entry: number): number {
    return this.#relativeOffsets[entry]!;
  }

  positionAt(entry: number): number {
    return this.#positions[entry]!;
  }

  get lastPosition(): number {
    return this.#count === 0 ? 0 : this.#positions[this.#count - 1]!;
  }

  append(relativeOffset: number, position: number, checked = true): void {
    this.#relativeOffsets = grow(this.#relativeOffsets, this.#count + 1);
    this.#positions = grow(this.#positions, this.#count + 1);
    this.#checked = grow(this.#checked, this.#count + 1);
    this.#relativeOffsets[this.#count] = relativeOffset;
    this.#positions[this.#count] = position;
    this.#checked[this.#count] = checked ? 1 : 0;
    this.#count++;
  }

  /**
   * The last entry whose relative offset is <= relativeOffset (`entry` -1 and position 0 when
   * none is), and whether it is known to be right.
   */
  lookupEntry(relativeOffset: number): IndexEntry {
    const entry = floorIndex(this.#relativeOffsets, this.#count, relativeOffset);
    if (entry === -1) return { entry, relativeOffset: 0, position: 0, checked: true };
    return {
      entry,
      relativeOffset: this.#relativeOffsets[entry]!,
      position: this.#positions[entry]!,
      checked: this.#checked[entry] === 1,
    };
  }

  markChecked(entry: number): void {
    if (entry >= 0 && entry < this.#count) this.#checked[entry] = 1;
  }

  /** Position of the last indexed batch whose base offset is <= relativeOffset; 0 if none. */
  lookup(relativeOffset: number): number {
    const entry = floorIndex(this.#relativeOffsets, this.#count, relativeOffset);
    return entry === -1 ? 0 : this.#positions[entry]!;
  }

  /** Drops every entry at or past `position` (after a truncation of the log). */
  truncateToPosition(position: number): void {
    while (this.#count > 0 && this.#positions[this.#count - 1]! >= position) this.#count--;
  }

  /** The on-disk bytes of entries [from, count). */
  encode(from = 0): Uint8Array {
    const bytes = new Uint8Array((this.#count - from) * OFFSET_ENTRY_BYTES);
    for (let entry = from; entry < this.#count; entry++) {
      const at = (entry - from) * OFFSET_ENTRY_BYTES;
      writeInt32(bytes, at, this.#relativeOffsets[entry]!);
      writeInt32(bytes, at + 4, this.#positions[entry]!);
    }
    return bytes;
  }

  /**
   * Parses an index file; undefined when it is not a well-formed index for a log of
   * `logBytes` (size not a multiple of the entry, entries not strictly increasing, a position
   * past the log). The caller rebuilds it then.
   */
  static decode(bytes: Uint8Array, logBytes: number): OffsetIndex | undefined {
    if (bytes.length % OFFSET_ENTRY_BYTES !== 0) return undefined;
    const index = new OffsetIndex();
    for (let at = 0; at < bytes.length; at += OFFSET_ENTRY_BYTES) {
      const relativeOffset = readUint32(bytes, at);
      const position = readUint32(bytes, at + 4);
      const count = index.#count;
      // No entry points at position 0: the first batch of a segment is never indexed.
      if (position === 0 || position >= logBytes) return undefined;
      if (count > 0 && relativeOffset <= index.#relativeOffsets[count - 1]!) return undefined;
      if (count > 0 && position <= index.#positions[count - 1]!) return undefined;
      index.append(relativeOffset, position, false);
    }
    return index;
  }
}

export class TimeIndex {
  #timestamps = new Float64Array(INITIAL_CAPACITY);
  #relativeOffsets = new Uint32Array(INITIAL_CAPACITY);
  #count = 0;

  get count(): number {
    return this.#count;
  }

  get lastTimestamp(): number {
    return this.#count === 0 ? -1 : this.#timestamps[this.#count - 1]!;
  }

  get lastRelativeOffset(): number {
    return this.#count === 0 ? 0 : this.#relativeOffsets[this.#count - 1]!;
  }

  /** Adds an entry when `timestamp` is larger than the last one; returns whether it did. */
  maybeAppend(timestamp: number, relativeOffset: number): boolean {
    if (timestamp <= this.lastTimestamp) return false;
    this.#timestamps = grow(this.#timestamps, this.#count + 1);
    this.#relativeOffsets = grow(this.#relativeOffsets, this.#count + 1);
    this.#timestamps[this.#count] = timestamp;
    this.#relativeOffsets[this.#count] = relativeOffset;
    this.#count++;
    return true;
  }

  /**
   * Relative offset of a batch from which a forward scan finds the first record with a
   * timestamp >= `timestamp`: the batch of the last entry whose timestamp is below it, else 0.
   */
  lookup(timestamp: number): number {
    // The last entry with timestamp < target is the floor of (target - 1) on integer times.
    const entry = floorIndex(this.#timestamps, this.#count, timestamp - 1);
    return entry === -1 ? 0 : this.#relativeOffsets[entry]!;
  }

  /** The last entry whose timestamp is below `timestamp`, or undefined if none is. */
  lookupEntry(timestamp: number): { timestamp: number; relativeOffset: number } | undefined {
    const entry = floorIndex(this.#timestamps, this.#count, timestamp - 1);
    if (entry === -1) return undefined;
    return { timestamp: this.#timestamps[entry]!, relativeOffset: this.#relativeOffsets[entry]! };
  }

  truncateToRelativeOffset(relativeOffset: number): void {
    while (this.#count > 0 && this.#relativeOffsets[this.#count - 1]! >= relativeOffset) {
      this.#count--;
    }
  }

  encode(from = 0): Uint8Array {
    const bytes = new Uint8Array((this.#count - from) * TIME_ENTRY_BYTES);
    for (let entry = from; entry < this.#count; entry++) {
      const at = (entry - from) * TIME_ENTRY_BYTES;
      writeInt64(bytes, at, this.#timestamps[entry]!);
      writeInt32(bytes, at + 8, this.#relativeOffsets[entry]!);
    }
    return bytes;
  }

  /** Parses a time index; undefined when malformed (see OffsetIndex.decode). */
  static decode(bytes: Uint8Array, relativeOffsetEnd: number): TimeIndex | undefined {
    if (bytes.length % TIME_ENTRY_BYTES !== 0) return undefined;
    const index = new TimeIndex();
    for (let at = 0; at < bytes.length; at += TIME_ENTRY_BYTES) {
      const timestamp = readInt64(bytes, at);
      const relativeOffset = readUint32(bytes, at + 8);
      if (Number.isNaN(timestamp)) return undefined;
      if (relativeOffset >= relativeOffsetEnd) return undefined;
      if (relativeOffset < index.lastRelativeOffset) return undefined;
      if (!index.maybeAppend(timestamp, relativeOffset)) return undefined;
    }
    return index;
  }
}

/** What indexing a segment's batches needs to remember between batches. */
export type IndexCursor = {
  readonly baseOffset: number;
  offsetIndex: OffsetIndex;
  timeIndex: TimeIndex;
  maxTimestamp: number;
  bytesSinceIndexEntry: number;
};

/**
 * The one rule for adding index entries, shared by the append path and by recovery so that a
 * rebuilt index is identical to the one appends wrote: an entry for the first batch that starts
 * at least `indexIntervalBytes` after the previous entry (the first batch needs none: a lookup
 * below every entry starts at position 0), and a time entry with it when the largest
 * timestamp grew.
 */
export function indexBatch(
  cursor: IndexCursor,
  batch: { baseOffset: number; position: number; size: number; maxTimestamp: number },
  indexIntervalBytes: number,
): void {
  if (batch.maxTimestamp > cursor.maxTimestamp) cursor.maxTimestamp = batch.maxTimestamp;
  if (batch.position > 0 && cursor.bytesSinceIndexEntry >= indexIntervalBytes) {
    const relativeOffset = batch.baseOffset - cursor.baseOffset;
    cursor.offsetIndex.append(relativeOffset, batch.position);
    cursor.timeIndex.maybeAppend(cursor.maxTimestamp, relativeOffset);
    cursor.bytesSinceIndexEntry = 0;
  }
  cursor.bytesSinceIndexEntry += batch.size;
}

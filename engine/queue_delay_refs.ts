// What the delay tiers of a queue (queue_delay.ts) hold: references to records written once
// into a per-queue delay store, not copies of the records. A record visits about
// popcount(delay ms) tiers on its way; with copies, each visit decoded, re-encoded, CRC'd and
// wrote the whole record. With references a visit writes one entry of a few dozen bytes, and
// only the record's last move reads it from the store, as the store's own bytes, into the due
// log.
//
// A tier entry is one record of a tier log, key null, no headers, value (big-endian):
//
//   byte 0       version (1)
//   byte 1       store number s (0 .. DELAY_STORES - 1): the record is in store-<s>
//   bytes 2-9    the record's offset in that store (float64, a safe integer)
//   bytes 10-17  when the record is due, ms since the epoch (float64)
//   bytes 18-25  when the entry leaves its tier, ms since the epoch (float64)
//
// A store record is one batch of one record, already in the form the due log takes (its
// original key, value, timestamp and headers plus sluice-due-ms and sluice-delay-deliveries),
// so the last move needs nothing else: a lone record is appended as stored, the records of
// one round are merged as bytes into large batches (queue_delay_batches.ts).
//
// Store s takes the records that had 2^(4s) .. 2^(4s+4) ms to go when they entered (tiers 4s
// .. 4s + 3): every record of one store segment leaves it at most 2^(4s+4) ms after the
// segment's last write (its due time; exit times are never later than due), so a long delay
// pins only the segments of delays within 16 times of its own, never those of short delays.
// StoreLive counts, per store and per STORE_CHUNK offsets, the references not yet passed
// durably to the due log; a store's segments wholly below its lowest live chunk are deleted.
// Memory: one counter per live chunk.

import { assert } from "../record/mod.ts";

/** Bytes of a tier entry's value. */
export const REF_BYTES = 26;
const REF_VERSION = 1;
/** Store offsets counted together by StoreLive. */
export const STORE_CHUNK = 4096;

/** A tier entry: where the record is, when it is due and when it leaves its tier. */
export type DelayRef = { store: number; offset: number; dueMs: number; exitMs: number };

export function encodeRef(ref: DelayRef): Uint8Array {
  assert(Number.isSafeInteger(ref.offset) && ref.offset >= 0, "a store offset is a safe integer");
  const bytes = new Uint8Array(REF_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, REF_VERSION);
  view.setUint8(1, ref.store);
  view.setFloat64(2, ref.offset);
  view.setFloat64(10, ref.dueMs);
  view.setFloat64(18, ref.exitMs);
  return bytes;
}

/** Decodes entry values without a DataView each: an entry is copied here first. */
const scratch = new Uint8Array(REF_BYTES);
const scratchView = new DataView(scratch.buffer);

/** A tier entry's value, or undefined when it is not one this version writes (damage). */
export function decodeRef(value: Uint8Array | null, stores: number): DelayRef | undefined {
  if (value === null || value.length !== REF_BYTES) return undefined;
  scratch.set(value);
  return refAt(scratchView, 0, stores);
}

/** The entry whose value starts at `at` of `view`, or undefined when it is not one. */
function refAt(view: DataView, at: number, stores: number): DelayRef | undefined {
  if (view.getUint8(at) !== REF_VERSION) return undefined;
  const store = view.getUint8(at + 1);
  const offset = view.getFloat64(at + 2);
  const dueMs = view.getFloat64(at + 10);
  const exitMs = view.getFloat64(at + 18);
  if (store >= stores || !Number.isSafeInteger(offset) || offset < 0) return undefined;
  if (!Number.isFinite(dueMs) || !Number.isFinite(exitMs)) return undefined;
  return { store, offset, dueMs, exitMs };
}

/**
 * Live references per store, counted per chunk of STORE_CHUNK offsets. A reference is live
 * from its add until the positions that passed it on to the due log are on disk: releases are
 * held back (`release`) and applied only by `applyReleased`, after that write.
 */
export class StoreLive {
  readonly #live: Map<number, number>[];
  #released: Map<number, number>[];

  constructor(stores: number) {
    this.#live = Array.from({ length: stores }, () => new Map());
    this.#released = Array.from({ length: stores }, () => new Map());
  }

  add(store: number, offset: number): void {
    const chunk = Math.floor(offset / STORE_CHUNK);
    const live = this.#live[store]!;
    live.set(chunk, (live.get(chunk) ?? 0) + 1);
  }

  /** A reference has reached the due log; it stops counting at the next applyReleased. */
  release(store: number, offset: number): void {
    const chunk = Math.floor(offset / STORE_CHUNK);
    const released = this.#released[store]!;
    released.set(chunk, (released.get(chunk) ?? 0) + 1);
  }

  /** Takes the releases so far, for a positions write that covers them. */
  takeReleased(): Map<number, number>[] {
    const taken = this.#released;
    this.#released = this.#live.map(() => new Map());
    return taken;
  }

  /** Gives back releases whose positions write failed (they are applied by a later one). */
  restoreReleased(taken: Map<number, number>[]): void {
    taken.forEach((chunks, store) => {
      for (const [chunk, count] of chunks) {
        const released = this.#released[store]!;
        released.set(chunk, (released.get(chunk) ?? 0) + count);
      }
    });
  }

  applyReleased(taken: Map<number, number>[]): void {
    taken.forEach((chunks, store) => {
      const live = this.#live[store]!;
      for (const [chunk, count] of chunks) {
        const left = (live.get(chunk) ?? 0) - count;
        assert(left >= 0, "a store reference is released once per add");
        if (left === 0) live.delete(chunk);
        else live.set(chunk, left);
      }
    });
  }

  /** The lowest offset of store `store` that may still be read: below it, nothing is live. */
  floor(store: number, endOffset: number): number {
    let lowest = Number.POSITIVE_INFINITY;
    for (const chunk of this.#live[store]!.keys()) lowest = Math.min(lowest, chunk);
    return Number.isFinite(lowest) ? Math.min(endOffset, lowest * STORE_CHUNK) : endOffset;
  }

  /** References counted (tests and stats). */
  count(store: number): number {
    let total = 0;
    for (const count of this.#live[store]!.values()) total += count;
    return total;
  }
}

/** Where a batch's records start (after the RecordBatch v2 header). */
const RECORDS_AT = 61;
/** A ref record's body ends with: value length (zigzag 26 = 0x34), value, header count 0. */
const REF_TAIL_BYTES = 1 + REF_BYTES + 1;

/**
 * The values of the records of one uncompressed batch of tier entries, with their offsets,
 * read in place: each record's body ends with its value and a header count of 0, as
 * encodeRecordBatch writes an entry (key null, no headers). Undefined when a record does not
 * end that way (the caller then decodes the batch in full). The CRC is the reader's to check.
 */
export function refValuesOf(
  batch: Uint8Array,
  baseOffset: number,
  recordCount: number,
): { offset: number; value: Uint8Array }[] | undefined {
  const out: { offset: number; value: Uint8Array }[] = [];
  const walked = walkRefValues(batch, recordCount, (i, at) => {
    out.push({ offset: baseOffset + i, value: batch.subarray(at, at + REF_BYTES) });
  });
  return walked ? out : undefined;
}

/**
 * Calls `each(offset, ref)` for the entries of one uncompressed batch of tier entries in
 * order, each value decoded where it lies (decodeRef's result: undefined for an entry this
 * version does not write), until it answers false; returns whether it went through them all,
 * or undefined, with no call made, when a record is not an entry (as refValuesOf). No list
 * and no object per entry: a move round reads every entry of every tier it takes from, and a
 * list of wrapped entries per batch, yielded on by a generator, made ~9 cells per entry read,
 * about 40 per delayed record over its ~5 tiers (bench/RESULTS.md, issue 13, dly20).
 */
export function eachRef(
  batch: Uint8Array,
  position: { baseOffset: number; recordCount: number; stores: number },
  each: (offset: number, ref: DelayRef | undefined) => boolean,
): boolean | undefined {
  // Checked whole first, so that a batch that is not all entries calls `each` for none.
  if (!walkRefValues(batch, position.recordCount, ignoreEntry)) return undefined;
  const view = new DataView(batch.buffer, batch.byteOffset, batch.length);
  const { baseOffset, stores } = position;
  let going = true;
  walkRefValues(batch, position.recordCount, (i, at) => {
    if (going) going = each(baseOffset + i, refAt(view, at, stores));
  });
  return going;
}

function ignoreEntry(): void {}

/** Calls `each(i, at)` with where each entry's value starts; false when one is not an entry. */
function walkRefValues(
  batch: Uint8Array,
  recordCount: number,
  each: (i: number, at: number) => void,
): boolean {
  let at = RECORDS_AT;
  for (let i = 0; i < recordCount; i++) {
    // The record's length: a zigzag varint of at most 5 bytes.
    let zigzag = 0;
    let shift = 0;
    let byte = 0x80;
    for (let n = 0; n < 5 && byte & 0x80; n++) {
      if (at >= batch.length) return false;
      byte = batch[at++]!;
      zigzag |= (byte & 0x7f) << shift;
      shift += 7;
    }
    if (byte & 0x80) return false;
    const length = (zigzag >>> 1) ^ -(zigzag & 1);
    const end = at + length;
    if (length < REF_TAIL_BYTES || end > batch.length) return false;
    if (batch[end - 1] !== 0 || batch[end - REF_TAIL_BYTES] !== REF_BYTES * 2) return false;
    each(i, end - 1 - REF_BYTES);
    at = end;
  }
  return at === batch.length;
}

// The state of one (queue, partition): which records are done, which are held by which member
// until when, and which wait to be handed out again. Kafka calls it a share-partition.
//
//        done                  the window [floor, next)                 never handed out
//   ─────────────────┬───┬───┬───┬───┬───┬───┬───┬───┬───┬───┬─────────────────────────────►
//    all accepted or │ A │ a │ K │ a │ R │ K │ a │ D │ a │ a │ next, next + 1, ... up to the
//    dead-lettered   └───┴───┴───┴───┴───┴───┴───┴───┴───┴───┴ high watermark: available
//                    ▲floor                                    ▲next
//    A acquired  a available again (released, expired, owner left)  K accepted
//    R rejected/dead-lettered (archived)  D being dead-lettered (waiting for the dead-letter write)
//
// The window lives in a ring of typed arrays indexed by `offset & mask`, one slot per record:
//
//   array      type     bytes  meaning
//   state      Uint8       1   AVAILABLE, ACQUIRED, ACKED, ARCHIVED, DEAD_LETTERING
//   deliveries Uint8       1   acquisitions so far (Kafka's delivery count), at most 255
//   owner      Uint16      2   the member slot holding it; kept after an expiry so that the
//                              expired holder's late ack is answered LOCK_EXPIRED
//   deadline   Uint32      4   lock end, ms since the cursor's epoch (moved every 2^31 ms)
//   ready      Uint32      4   FIFO of available offsets (mod 2^32) in the window, served
//                              before new offsets; each available record is in it exactly once
//
// plus a FIFO of lock entries (first offset mod 2^32, count, deadline: three u32, 12 bytes)
// per acquisition or renewal, which is all an expiry sweep reads. With one lock duration per
// queue, entries are pushed in deadline order, so the sweep pops from the head while the head
// is due. The per-record deadline is the truth: an entry whose records were acked or renewed
// since is skipped when popped, and such dead entries are dropped whenever the FIFO fills up
// (and whenever the floor has moved 2^30 past the last such sweep, so that every entry left
// lies within 2^31 of the floor and its offset can be rebuilt from 32 bits).
//
// The ring has a power-of-two number of slots, so a slot is `offset & mask`: measured here
// (Bun, 2 cores), `offset % slots` costs 17-29 ns a record against 1.2-1.5 ns for the mask.
// 12 bytes a slot plus lock entries (at least slots / 8 of them) is 13.5 bytes a slot; see
// test/engine/queue_cursor.test.ts for the figures per in-flight record.
//
// Nothing here touches the disk. The queue (queue.ts) turns each change into a delta for the
// state log (queue_state_log.ts) and replays those deltas into a fresh cursor on open.

import { assert, SluiceError } from "../record/mod.ts";

export const AVAILABLE = 0;
export const ACQUIRED = 1;
export const ACKED = 2;
export const ARCHIVED = 3;
export const DEAD_LETTERING = 4;

/** Member slot 0 means "nobody". */
export const NO_OWNER = 0;
/** Owner slots are u16. */
export const OWNER_SLOTS_MAX = 0xffff;
const WINDOW_SLOTS_MIN = 64;
const LOCK_ENTRIES_MIN = 16;
/**
 * The FIFO of records given back starts this small and doubles as records are given back (up to
 * the window's size): a window whose records are acquired and accepted in order, the usual case,
 * never needs it, and its 4 bytes a slot would be a third of the window's memory.
 */
const READY_SLOTS_MIN = 64;
/** Dead lock entries are swept out at least every time the floor moves this far. */
const LOCK_SWEEP_FLOOR_SPAN = 2 ** 30;
/** The widest window a cursor takes (queue_config.ts keeps maxInFlight below it). */
export const WINDOW_RECORDS_MAX = 2 ** 20;
/** The deadline epoch moves once "now" is this far past it, keeping deadlines inside a u32. */
const EPOCH_SPAN_MS = 2 ** 31;
const TWO_32 = 2 ** 32;

/** A contiguous run of acquired records with one delivery count, as a fetch returns it. */
export type AcquiredRange = {
  first: number;
  last: number;
  /** Acquisitions of each record, this one included. */
  deliveries: number;
  /** True when the records were acquired before (deliveries > 1). */
  redelivered: boolean;
};

/** A run of offsets; used for dead-letter work and state-log deltas. */
export type OffsetRun = { first: number; last: number };

export type CursorLimits = { maxInFlight: number; deliveryLimit: number; lockMs: number };

function powerOfTwoAtLeast(value: number): number {
  let size = 1;
  while (size < value) size *= 2;
  return size;
}

/** Appends `offset` to the last run when adjacent, else starts a new run. */
export function addToRuns(runs: OffsetRun[], offset: number): void {
  const last = runs.at(-1);
  if (last !== undefined && last.last + 1 === offset) last.last = offset;
  else runs.push({ first: offset, last: offset });
}

export class QueueCursor {
  readonly partition: number;
  readonly #limits: CursorLimits;
  /** Unacknowledged records per member slot, shared by every cursor of the queue. */
  readonly #unacked: Uint32Array;
  #floor: number;
  #next: number;
  #capacity = 0;
  #mask = 0;
  #state = new Uint8Array(0);
  #deliveries = new Uint8Array(0);
  #owner = new Uint16Array(0);
  #deadline = new Uint32Array(0);
  #ready = new Uint32Array(READY_SLOTS_MIN);
  #readyMask = READY_SLOTS_MIN - 1;
  #readyHead = 0;
  #readyLength = 0;
  #lockFirst = new Uint32Array(0);
  #lockCount = new Uint32Array(0);
  #lockDeadline = new Uint32Array(0);
  #lockHead = 0;
  #lockLength = 0;
  /** The floor when dead lock entries were last swept out. */
  #lockSweptFloor = 0;
  #epochMs: number;
  #acquired = 0;
  #deadLettering = 0;

  constructor(partition: number, floor: number, limits: CursorLimits, unacked: Uint32Array) {
    assert(Number.isSafeInteger(floor) && floor >= 0, "a cursor starts at a valid offset");
    assert(limits.maxInFlight >= 1, "a window holds at least one record");
    assert(limits.maxInFlight <= WINDOW_RECORDS_MAX, "a window fits the lock offsets");
    this.partition = partition;
    this.#limits = limits;
    this.#unacked = unacked;
    this.#floor = floor;
    this.#next = floor;
    this.#epochMs = 0;
    this.#lockSweptFloor = floor;
    this.#grow(Math.min(WINDOW_SLOTS_MIN, powerOfTwoAtLeast(limits.maxInFlight)));
  }

  /** Everything below is done: accepted or dead-lettered (Kafka's share-partition start). */
  get floor(): number {
    return this.#floor;
  }

  /** The first offset never acquired (Kafka's share-partition end + 1). */
  get next(): number {
    return this.#next;
  }

  get acquiredCount(): number {
    return this.#acquired;
  }

  /** Records in the window waiting to be acquired again. */
  get availableCount(): number {
    return this.#readyLength;
  }

  /** The record waiting to be acquired again that a fetch takes first; undefined: none. */
  get firstAvailable(): number | undefined {
    if (this.#readyLength === 0) return undefined;
    // Offsets are stored mod 2^32; every one lies in [floor, floor + capacity).
    return this.#floor + ((this.#ready[this.#readyHead]! - (this.#floor >>> 0)) >>> 0);
  }

  get deadLetteringCount(): number {
    return this.#deadLettering;
  }

  /** How many more new offsets the window may take before maxInFlight stops it. */
  get room(): number {
    return this.#limits.maxInFlight - (this.#next - this.#floor);
  }

  /** Bytes of typed arrays this cursor holds, and the records its window can hold. */
  get memory(): { bytes: number; windowSlots: number; lockEntries: number } {
    const arrays = [this.#state, this.#deliveries, this.#owner, this.#deadline, this.#ready];
    const locks = [this.#lockFirst, this.#lockCount, this.#lockDeadline];
    let bytes = 0;
    for (const array of [...arrays, ...locks]) bytes += array.byteLength;
    return { bytes, windowSlots: this.#capacity, lockEntries: this.#lockFirst.length };
  }

  stateAt(offset: number): number | undefined {
    if (offset < this.#floor || offset >= this.#next) return undefined;
    return this.#state[offset & this.#mask];
  }

  deliveriesAt(offset: number): number {
    if (offset < this.#floor || offset >= this.#next) return 0;
    return this.#deliveries[offset & this.#mask]!;
  }

  ownerAt(offset: number): number {
    if (offset < this.#floor || offset >= this.#next) return NO_OWNER;
    return this.#owner[offset & this.#mask]!;
  }

  // -------------------------------------------------------------------------------------------
  // Ring storage.

  /** Makes the ring hold at least `slots` records, keeping the window where it is. */
  #grow(slots: number): void {
    const capacity = powerOfTwoAtLeast(Math.max(slots, WINDOW_SLOTS_MIN));
    if (capacity <= this.#capacity) return;
    const mask = capacity - 1;
    const state = new Uint8Array(capacity);
    const deliveries = new Uint8Array(capacity);
    const owner = new Uint16Array(capacity);
    const deadline = new Uint32Array(capacity);
    for (let offset = this.#floor; offset < this.#next; offset++) {
      const from = offset & this.#mask;
      const to = offset & mask;
      state[to] = this.#state[from]!;
      deliveries[to] = this.#deliveries[from]!;
      owner[to] = this.#owner[from]!;
      deadline[to] = this.#deadline[from]!;
    }
    this.#state = state;
    this.#deliveries = deliveries;
    this.#owner = owner;
    this.#deadline = deadline;
    this.#capacity = capacity;
    this.#mask = mask;
    if (this.#lockFirst.length === 0) this.#resizeLocks(Math.max(LOCK_ENTRIES_MIN, capacity / 8));
  }

  /** Extends the window to `end` (exclusive) with fresh slots: available, never delivered. */
  #extendTo(end: number): void {
    assert(end >= this.#next, "the window only grows at its end");
    if (end - this.#floor > this.#capacity) this.#grow(end - this.#floor);
    for (let offset = this.#next; offset < end; offset++) {
      const slot = offset & this.#mask;
      this.#state[slot] = AVAILABLE;
      this.#deliveries[slot] = 0;
      this.#owner[slot] = NO_OWNER;
      this.#deadline[slot] = 0;
    }
    this.#next = end;
  }

  /** Moves the floor over done records. Returns how far it moved. */
  #advanceFloor(): number {
    const start = this.#floor;
    let floor = start;
    while (floor < this.#next) {
      const state = this.#state[floor & this.#mask]!;
      if (state !== ACKED && state !== ARCHIVED) break;
      floor++;
    }
    this.#floor = floor;
    if (floor - this.#lockSweptFloor >= LOCK_SWEEP_FLOOR_SPAN) this.#compactLocks();
    return floor - start;
  }

  #readyPush(offset: number): void {
    assert(this.#readyLength < this.#capacity, "each available record is in the FIFO once");
    if (this.#readyLength === this.#ready.length) this.#growReady();
    this.#ready[(this.#readyHead + this.#readyLength) & this.#readyMask] = offset >>> 0;
    this.#readyLength++;
  }

  #readyPop(): number {
    assert(this.#readyLength > 0, "pop from a non-empty FIFO");
    const stored = this.#ready[this.#readyHead]!;
    this.#readyHead = (this.#readyHead + 1) & this.#readyMask;
    this.#readyLength--;
    // Offsets are stored mod 2^32; every one lies in [floor, floor + capacity).
    const offset = this.#floor + ((stored - (this.#floor >>> 0)) >>> 0);
    assert(offset < this.#next, "a ready offset lies inside the window");
    assert(this.#state[offset & this.#mask] === AVAILABLE, "a ready offset is available");
    return offset;
  }

  /** Doubles the FIFO, its records kept in order from index 0. */
  #growReady(): void {
    const ready = new Uint32Array(this.#ready.length * 2);
    for (let i = 0; i < this.#readyLength; i++) {
      ready[i] = this.#ready[(this.#readyHead + i) & this.#readyMask]!;
    }
    this.#ready = ready;
    this.#readyMask = ready.length - 1;
    this.#readyHead = 0;
  }

  /** Rebuilds the FIFO from the window: every available record, in offset order. */
  #rebuildReady(): void {
    this.#readyHead = 0;
    this.#readyLength = 0;
    for (let offset = this.#floor; offset < this.#next; offset++) {
      if (this.#state[offset & this.#mask] === AVAILABLE) this.#readyPush(offset);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Time and locks.

  /** `nowMs` as a deadline, moving the epoch first if `nowMs` has run far past it. */
  #relative(nowMs: number): number {
    if (this.#epochMs === 0 && this.#acquired === 0) this.#epochMs = nowMs;
    let relative = nowMs - this.#epochMs;
    if (relative >= EPOCH_SPAN_MS) {
      this.#moveEpoch(nowMs);
      relative = 0;
    }
    // A clock that went back makes locks last longer, never shorter.
    return Math.max(0, Math.floor(relative));
  }

  #moveEpoch(nowMs: number): void {
    const shift = nowMs - this.#epochMs;
    const move = (deadline: number) => (deadline > shift ? deadline - shift : 0);
    for (let offset = this.#floor; offset < this.#next; offset++) {
      const slot = offset & this.#mask;
      this.#deadline[slot] = move(this.#deadline[slot]!);
    }
    for (let i = 0; i < this.#lockLength; i++) {
      const at = (this.#lockHead + i) % this.#lockFirst.length;
      this.#lockDeadline[at] = move(this.#lockDeadline[at]!);
    }
    this.#epochMs = nowMs;
  }

  #resizeLocks(entries: number): void {
    const first = new Uint32Array(entries);
    const count = new Uint32Array(entries);
    const deadline = new Uint32Array(entries);
    const size = this.#lockFirst.length;
    for (let i = 0; i < this.#lockLength; i++) {
      const from = (this.#lockHead + i) % size;
      first[i] = this.#lockFirst[from]!;
      count[i] = this.#lockCount[from]!;
      deadline[i] = this.#lockDeadline[from]!;
    }
    this.#lockFirst = first;
    this.#lockCount = count;
    this.#lockDeadline = deadline;
    this.#lockHead = 0;
  }

  /** True while some record of the entry is still acquired under the entry's deadline. */
  #lockLive(first: number, count: number, deadline: number): boolean {
    const from = Math.max(first, this.#floor);
    const end = Math.min(first + count, this.#next);
    for (let offset = from; offset < end; offset++) {
      const slot = offset & this.#mask;
      if (this.#state[slot] === ACQUIRED && this.#deadline[slot] === deadline) return true;
    }
    return false;
  }

  /** Drops dead entries; grows the FIFO when live ones still fill more than half of it. */
  #compactLocks(): void {
    const size = this.#lockFirst.length;
    let kept = 0;
    for (let i = 0; i < this.#lockLength; i++) {
      const at = (this.#lockHead + i) % size;
      const first = this.#lockOffset(at);
      const count = this.#lockCount[at]!;
      const deadline = this.#lockDeadline[at]!;
      if (!this.#lockLive(first, count, deadline)) continue;
      const to = (this.#lockHead + kept) % size;
      this.#lockFirst[to] = first >>> 0;
      this.#lockCount[to] = count;
      this.#lockDeadline[to] = deadline;
      kept++;
    }
    this.#lockLength = kept;
    this.#lockSweptFloor = this.#floor;
    if (kept * 2 > size) this.#resizeLocks(size * 2);
  }

  /** The first offset of lock entry `at`, rebuilt from its low 32 bits and the floor. */
  #lockOffset(at: number): number {
    return this.#floor + ((this.#lockFirst[at]! - (this.#floor >>> 0)) | 0);
  }

  #pushLock(first: number, count: number, deadline: number): void {
    if (this.#lockLength === this.#lockFirst.length) this.#compactLocks();
    assert(this.#lockLength < this.#lockFirst.length, "room for a lock entry");
    const at = (this.#lockHead + this.#lockLength) % this.#lockFirst.length;
    this.#lockFirst[at] = first >>> 0;
    this.#lockCount[at] = count;
    this.#lockDeadline[at] = deadline;
    this.#lockLength++;
  }

  /** The wall-clock time of the earliest lock entry, or undefined when none is held. */
  nextDeadlineMs(): number | undefined {
    if (this.#lockLength === 0) return undefined;
    return this.#epochMs + this.#lockDeadline[this.#lockHead]!;
  }

  // -------------------------------------------------------------------------------------------
  // Acquisition.

  #acquireSlot(offset: number, owner: number, deadline: number): number {
    const slot = offset & this.#mask;
    assert(this.#state[slot] === AVAILABLE, "only an available record is acquired");
    const deliveries = this.#deliveries[slot]! + 1;
    assert(deliveries <= this.#limits.deliveryLimit, "no record is delivered past the limit");
    this.#state[slot] = ACQUIRED;
    this.#deliveries[slot] = deliveries;
    this.#owner[slot] = owner;
    this.#deadline[slot] = deadline;
    this.#acquired++;
    this.#unacked[owner]!++;
    return deliveries;
  }

  /**
   * Acquires records waiting in the FIFO for `owner`, oldest first, while `budget` lasts and
   * `admit` takes the next offset (the queue stops there when its batch would not fit the
   * fetch's bytes; "skipped" when it took the head away). Appends them to `out` as
   * offset-ordered runs of equal delivery count.
   * Returns how many it acquired.
   */
  acquireReady(
    request: { budget: number; owner: number; nowMs: number },
    admit: (offset: number) => boolean | "skipped",
    out: AcquiredRange[],
  ): number {
    assert(request.owner !== NO_OWNER, "a member acquires");
    const offsets: number[] = [];
    const deadline = this.#relative(request.nowMs) + this.#limits.lockMs;
    try {
      while (offsets.length < request.budget && this.#readyLength > 0) {
        const stored = this.#ready[this.#readyHead]!;
        const admitted = admit(this.#floor + ((stored - (this.#floor >>> 0)) >>> 0));
        // "skipped": `admit` took the head away itself (it expired); each skip shortens the FIFO.
        if (admitted === "skipped") continue;
        if (!admitted) break;
        const offset = this.#readyPop();
        offsets.push(offset);
        this.#acquireSlot(offset, request.owner, deadline);
      }
    } finally {
      // Even when `admit` throws (a read failed), what was acquired gets its runs and locks.
      this.#lockRuns(offsets, deadline, out);
    }
    return offsets.length;
  }

  /** Appends acquired `offsets` to `out` as offset-ordered runs and locks each run. */
  #lockRuns(offsets: number[], deadline: number, out: AcquiredRange[]): void {
    offsets.sort((a, b) => a - b);
    const start = out.length;
    for (const offset of offsets) {
      const deliveries = this.#deliveries[offset & this.#mask]!;
      const last = out.length > start ? out.at(-1) : undefined;
      if (last !== undefined && last.last + 1 === offset && last.deliveries === deliveries) {
        last.last = offset;
      } else {
        out.push({ first: offset, last: offset, deliveries, redelivered: deliveries > 1 });
      }
    }
    for (let i = start; i < out.length; i++) {
      const range = out[i]!;
      this.#pushLock(range.first, range.last - range.first + 1, deadline);
    }
  }

  /**
   * Raises the delivery count of an acquired record to `deliveries` (capped at the limit): a
   * delayed copy carries the count its original had (queue_delay.ts).
   */
  carryDeliveries(offset: number, deliveries: number): void {
    const slot = offset & this.#mask;
    assert(this.#state[slot] === ACQUIRED, "a carried count is set on an acquired record");
    const carried = Math.min(deliveries, this.#limits.deliveryLimit);
    if (carried > this.#deliveries[slot]!) this.#deliveries[slot] = carried;
  }

  /** Acquires the `count` new offsets from `next` for `owner`; the window must have room. */
  acquireNew(count: number, owner: number, nowMs: number): AcquiredRange {
    assert(count >= 1 && count <= this.room, "new acquisitions fit the window");
    assert(owner !== NO_OWNER, "a member acquires");
    const first = this.#next;
    this.#extendTo(first + count);
    const deadline = this.#relative(nowMs) + this.#limits.lockMs;
    for (let offset = first; offset < first + count; offset++) {
      this.#acquireSlot(offset, owner, deadline);
    }
    this.#pushLock(first, count, deadline);
    return { first, last: first + count - 1, deliveries: 1, redelivered: false };
  }

  // -------------------------------------------------------------------------------------------
  // Acknowledgement.

  /**
   * Why `owner` may not ack [first, last], or undefined when it may: every record must be
   * acquired by it under a lock that has not run out. Changes nothing.
   */
  checkHeld(first: number, last: number, owner: number, nowMs: number): SluiceError | undefined {
    const now = nowMs - this.#epochMs;
    for (let offset = first; offset <= last; offset++) {
      const state = this.stateAt(offset);
      const slot = offset & this.#mask;
      const mine = state !== undefined && this.#owner[slot] === owner;
      if (mine && state === ACQUIRED && this.#deadline[slot]! > now) continue;
      if (mine) return this.#lockExpired(offset);
      return this.#notHeld(offset, state);
    }
    return undefined;
  }

  #lockExpired(offset: number): SluiceError {
    return new SluiceError(
      "LOCK_EXPIRED",
      `The lock on offset ${offset} of partition ${this.partition} ran out ` +
        `(lockMs ${this.#limits.lockMs}); the record is no longer held`,
      { partition: this.partition, offset, lockMs: this.#limits.lockMs },
    );
  }

  #notHeld(offset: number, state: number | undefined): SluiceError {
    const where =
      offset < this.#floor
        ? `below the floor ${this.#floor} (already done)`
        : offset >= this.#next
          ? `at or past the window end ${this.#next} (never delivered)`
          : `in state ${stateName(state!)}, not acquired by this member`;
    return new SluiceError(
      "INVALID_RECORD_STATE",
      `Offset ${offset} of partition ${this.partition} is ${where}`,
      { partition: this.partition, offset, floor: this.#floor, next: this.#next },
    );
  }

  /** Marks held records accepted. Returns how far the floor moved. */
  accept(first: number, last: number): number {
    for (let offset = first; offset <= last; offset++) {
      const slot = this.#held(offset);
      this.#state[slot] = ACKED;
      this.#owner[slot] = NO_OWNER;
    }
    return this.#advanceFloor();
  }

  /**
   * Gives held records back: available again, or (having reached the delivery limit) marked
   * for dead-lettering and appended to `limitReached`.
   */
  release(first: number, last: number, limitReached: OffsetRun[]): void {
    for (let offset = first; offset <= last; offset++) {
      const slot = this.#held(offset);
      this.#owner[slot] = NO_OWNER;
      this.#makeAvailable(offset, limitReached);
    }
  }

  /** Marks held records for dead-lettering (reason: rejected). */
  reject(first: number, last: number): void {
    for (let offset = first; offset <= last; offset++) {
      const slot = this.#held(offset);
      this.#state[slot] = DEAD_LETTERING;
      this.#owner[slot] = NO_OWNER;
      this.#deadLettering++;
    }
  }

  /** Extends the locks of held records to `nowMs` + lockMs. */
  renew(first: number, last: number, nowMs: number): void {
    const deadline = this.#relative(nowMs) + this.#limits.lockMs;
    let runStart = -1;
    for (let offset = first; offset <= last; offset++) {
      const slot = offset & this.#mask;
      assert(this.#state[slot] === ACQUIRED, "a renewed record is held");
      const changes = this.#deadline[slot] !== deadline;
      this.#deadline[slot] = deadline;
      // Entries cover only records whose deadline changed, so live entries never overlap.
      if (changes && runStart === -1) runStart = offset;
      if (!changes && runStart !== -1) {
        this.#pushLock(runStart, offset - runStart, deadline);
        runStart = -1;
      }
    }
    if (runStart !== -1) this.#pushLock(runStart, last + 1 - runStart, deadline);
  }

  /** The slot of a record the caller checked is held; takes it out of its owner's count. */
  #held(offset: number): number {
    const slot = offset & this.#mask;
    assert(offset >= this.#floor && offset < this.#next, "an acked record is in the window");
    assert(this.#state[slot] === ACQUIRED, "an acked record is acquired");
    const owner = this.#owner[slot]!;
    assert(this.#unacked[owner]! > 0, "the owner counts the record");
    this.#unacked[owner]!--;
    this.#acquired--;
    return slot;
  }

  /** An acquired record that lost its holder: available, or dead-lettered at the limit. */
  #makeAvailable(offset: number, limitReached: OffsetRun[]): void {
    const slot = offset & this.#mask;
    if (this.#deliveries[slot]! >= this.#limits.deliveryLimit) {
      this.#state[slot] = DEAD_LETTERING;
      this.#deadLettering++;
      addToRuns(limitReached, offset);
      return;
    }
    this.#state[slot] = AVAILABLE;
    this.#readyPush(offset);
  }

  // -------------------------------------------------------------------------------------------
  // Expiry and members leaving.

  /**
   * Makes every record whose lock has run out by `nowMs` available again (or dead-letters it
   * at the limit). The expired owner stays recorded, so its late ack gets LOCK_EXPIRED.
   * Returns how many locks ran out.
   */
  expire(nowMs: number, limitReached: OffsetRun[]): number {
    if (this.#lockLength === 0) return 0;
    const now = this.#relative(nowMs);
    const size = this.#lockFirst.length;
    let expired = 0;
    while (this.#lockLength > 0 && this.#lockDeadline[this.#lockHead]! <= now) {
      const first = this.#lockOffset(this.#lockHead);
      const count = this.#lockCount[this.#lockHead]!;
      const deadline = this.#lockDeadline[this.#lockHead]!;
      this.#lockHead = (this.#lockHead + 1) % size;
      this.#lockLength--;
      const end = Math.min(first + count, this.#next);
      for (let offset = Math.max(first, this.#floor); offset < end; offset++) {
        const slot = offset & this.#mask;
        if (this.#state[slot] !== ACQUIRED || this.#deadline[slot] !== deadline) continue;
        const owner = this.#owner[slot]!;
        this.#unacked[owner]!--;
        this.#acquired--;
        this.#makeAvailable(offset, limitReached);
        this.#owner[slot] = owner;
        expired++;
      }
    }
    return expired;
  }

  /**
   * Gives back everything `owner` holds (it left or disconnected) and forgets it as the holder
   * of expired records, so that its slot can be reused. Returns how many it held.
   */
  releaseOwner(owner: number, limitReached: OffsetRun[]): number {
    let released = 0;
    for (let offset = this.#floor; offset < this.#next; offset++) {
      const slot = offset & this.#mask;
      if (this.#owner[slot] !== owner) continue;
      if (this.#state[slot] === ACQUIRED) {
        this.#unacked[owner]!--;
        this.#acquired--;
        this.#makeAvailable(offset, limitReached);
        released++;
      }
      this.#owner[slot] = NO_OWNER;
    }
    return released;
  }

  // -------------------------------------------------------------------------------------------
  // Dead letters.

  /** Records written to the dead-letter topic (or discarded): done. Returns the floor's move. */
  finishDeadLetter(first: number, last: number): number {
    for (
      let offset = Math.max(first, this.#floor);
      offset <= last && offset < this.#next;
      offset++
    ) {
      const slot = offset & this.#mask;
      if (this.#state[slot] !== DEAD_LETTERING) continue;
      this.#state[slot] = ARCHIVED;
      this.#deadLettering--;
    }
    return this.#advanceFloor();
  }

  /**
   * A rejection whose dead letter could not be written: the records go back to `owner` under
   * the lock they had (a reject keeps the slot's deadline), or, without an owner, become
   * available again. Records at the limit stay marked and are returned for another attempt.
   * The lock entry goes to the FIFO's tail with an earlier deadline than entries before it,
   * so the sweep may end that lock late (an ack still sees the true deadline).
   */
  revertDeadLetter(run: OffsetRun, owner: number, retry: OffsetRun[]): void {
    for (let offset = Math.max(run.first, this.#floor); offset <= run.last; offset++) {
      if (offset >= this.#next) break;
      const slot = offset & this.#mask;
      if (this.#state[slot] !== DEAD_LETTERING) continue;
      this.#deadLettering--;
      if (owner !== NO_OWNER) {
        // Back as it was before the reject: a failed reject is not another delivery.
        this.#state[slot] = ACQUIRED;
        this.#owner[slot] = owner;
        this.#acquired++;
        this.#unacked[owner]!++;
        this.#pushLock(offset, 1, this.#deadline[slot]!);
      } else if (this.#deliveries[slot]! >= this.#limits.deliveryLimit) {
        this.#deadLettering++;
        addToRuns(retry, offset);
      } else {
        this.#state[slot] = AVAILABLE;
        this.#readyPush(offset);
      }
    }
  }

  /** Every record marked for dead-lettering, as runs (after recovery, or for a retry sweep). */
  deadLetteringRuns(): OffsetRun[] {
    const runs: OffsetRun[] = [];
    for (let offset = this.#floor; offset < this.#next; offset++) {
      if (this.#state[offset & this.#mask] === DEAD_LETTERING) addToRuns(runs, offset);
    }
    return runs;
  }

  // -------------------------------------------------------------------------------------------
  // Damage in the log: records that can be neither delivered nor dead-lettered.

  /** Marks the record at the head of the FIFO done undelivered (its batch is damaged). */
  discardReadyHead(offset: number): void {
    assert(this.#readyLength > 0, "a record waits at the head");
    assert(this.#readyPop() === offset, "the damaged record is the head of the FIFO");
    const slot = offset & this.#mask;
    this.#state[slot] = ARCHIVED;
    this.#owner[slot] = NO_OWNER;
    this.#advanceFloor();
  }

  /** Takes the next `count` new offsets into the window as done (a damaged range). */
  discardNew(count: number): void {
    assert(count >= 1 && count <= this.room, "a discarded range fits the window");
    const first = this.#next;
    this.#extendTo(first + count);
    for (let offset = first; offset < first + count; offset++) {
      this.#state[offset & this.#mask] = ARCHIVED;
    }
    this.#advanceFloor();
  }

  // -------------------------------------------------------------------------------------------
  // Message TTL (queue_ttl.ts says which records have expired).

  /** The offset at the head of the FIFO, or undefined when nothing waits there. */
  readyHead(): number | undefined {
    if (this.#readyLength === 0) return undefined;
    const stored = this.#ready[this.#readyHead]!;
    return this.#floor + ((stored - (this.#floor >>> 0)) >>> 0);
  }

  /** The records waiting in the FIFO (given back), oldest first. */
  *availableOffsets(): Generator<number> {
    for (let i = 0; i < this.#readyLength; i++) {
      const stored = this.#ready[(this.#readyHead + i) & this.#readyMask]!;
      yield this.#floor + ((stored - (this.#floor >>> 0)) >>> 0);
    }
  }

  /** Marks the record at the head of the FIFO for dead-lettering (it expired waiting). */
  expireReadyHead(offset: number, runs: OffsetRun[]): void {
    assert(this.#readyPop() === offset, "the expired record is the head of the FIFO");
    this.#state[offset & this.#mask] = DEAD_LETTERING;
    this.#deadLettering++;
    addToRuns(runs, offset);
  }

  /**
   * Takes the next `count` new offsets into the window: those `expired` names are marked for
   * dead-lettering (added to `runs`), the others wait in the FIFO, in offset order.
   */
  takeNew(count: number, expired: (offset: number) => boolean, runs: OffsetRun[]): void {
    assert(count >= 1 && count <= this.room, "taken offsets fit the window");
    const first = this.#next;
    this.#extendTo(first + count);
    for (let offset = first; offset < first + count; offset++) {
      if (expired(offset)) {
        this.#state[offset & this.#mask] = DEAD_LETTERING;
        this.#deadLettering++;
        addToRuns(runs, offset);
      } else {
        this.#readyPush(offset);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Jumps: purge, retention, and a log that lost its tail.

  /**
   * Moves floor and next to `offset` when it is past the floor: every record below it is done,
   * held ones included (their owners' counts drop). Returns the records that were not done.
   */
  jumpTo(offset: number): number {
    if (offset <= this.#floor) return 0;
    let dropped = Math.max(0, offset - this.#next);
    const end = Math.min(offset, this.#next);
    for (let at = this.#floor; at < end; at++) {
      const slot = at & this.#mask;
      const state = this.#state[slot]!;
      if (state === ACKED || state === ARCHIVED) continue;
      dropped++;
      if (state === ACQUIRED) {
        this.#unacked[this.#owner[slot]!]!--;
        this.#acquired--;
      }
      if (state === DEAD_LETTERING) this.#deadLettering--;
    }
    if (offset >= this.#next) {
      // Nothing stays held: every lock entry is dead (and may lie far behind the new floor).
      this.#lockLength = 0;
      this.#floor = offset;
      this.#next = offset;
      this.#lockSweptFloor = offset;
    } else {
      this.#floor = offset;
      this.#advanceFloor();
      this.#compactLocks();
    }
    this.#rebuildReady();
    return dropped;
  }

  /** Forgets the window from `offset` on (the log it reads ends there now). */
  truncateTo(offset: number): void {
    if (offset >= this.#next) return;
    assert(this.#acquired === 0, "truncation happens at open, before any acquisition");
    this.#deadLettering = 0;
    this.#floor = Math.min(this.#floor, offset);
    this.#next = offset;
    for (let at = this.#floor; at < this.#next; at++) {
      if (this.#state[at & this.#mask] === DEAD_LETTERING) this.#deadLettering++;
    }
    this.#rebuildReady();
  }

  // -------------------------------------------------------------------------------------------
  // Replay of the state log (no member holds anything yet).

  /** Sets floor and next and the window's records from a snapshot's runs. */
  restore(floor: number, next: number, runs: Iterable<SnapshotRun>): void {
    assert(this.#acquired === 0 && this.#readyLength === 0, "restore into a fresh cursor");
    if (next - floor > this.#capacity) this.#grow(next - floor);
    this.#floor = floor;
    this.#next = floor;
    this.#lockSweptFloor = floor;
    for (const run of runs) {
      const start = this.#next;
      this.#extendTo(start + run.count);
      for (let offset = start; offset < this.#next; offset++) {
        const slot = offset & this.#mask;
        this.#state[slot] = run.state;
        this.#deliveries[slot] = run.deliveries;
      }
    }
    if (this.#next < next) this.#extendTo(next);
    this.#advanceFloor();
  }

  /** Whether a replayed range fits the window's bounds (a range past it means damage). */
  fitsReplay(first: number, count: number): boolean {
    return Math.max(first + count, this.#next) - this.#floor <= this.#limits.maxInFlight;
  }

  replayAcquire(first: number, count: number, deliveries: number): void {
    const end = first + count;
    if (end <= this.#floor) return;
    if (end > this.#next) this.#extendTo(end);
    for (let offset = Math.max(first, this.#floor); offset < end; offset++) {
      const slot = offset & this.#mask;
      if (this.#deliveries[slot]! < deliveries) this.#deliveries[slot] = deliveries;
    }
  }

  replayDone(first: number, count: number, state: typeof ACKED | typeof ARCHIVED): void {
    // Only a discarded damaged range lies past `next`: it was never acquired.
    if (first + count > this.#next && this.fitsReplay(first, count)) this.#extendTo(first + count);
    const end = Math.min(first + count, this.#next);
    for (let offset = Math.max(first, this.#floor); offset < end; offset++) {
      this.#state[offset & this.#mask] = state;
    }
    this.#advanceFloor();
  }

  /**
   * Ends a replay: every record not done is available, in the FIFO in offset order; those at
   * the delivery limit are marked for dead-lettering instead and returned.
   */
  finishReplay(): OffsetRun[] {
    const limitReached: OffsetRun[] = [];
    for (let offset = this.#floor; offset < this.#next; offset++) {
      const slot = offset & this.#mask;
      if (this.#state[slot] !== AVAILABLE) continue;
      if (this.#deliveries[slot]! >= this.#limits.deliveryLimit) {
        this.#state[slot] = DEAD_LETTERING;
        this.#deadLettering++;
        addToRuns(limitReached, offset);
      }
    }
    this.#rebuildReady();
    return limitReached;
  }

  /** The window as runs of equal (persisted state, deliveries), for a snapshot. */
  *snapshotRuns(): Generator<SnapshotRun> {
    let run: SnapshotRun | undefined;
    for (let offset = this.#floor; offset < this.#next; offset++) {
      const slot = offset & this.#mask;
      const state = persistedState(this.#state[slot]!);
      const deliveries = this.#deliveries[slot]!;
      if (run !== undefined && run.state === state && run.deliveries === deliveries) {
        run.count++;
        continue;
      }
      if (run !== undefined) yield run;
      run = { count: 1, state, deliveries };
    }
    if (run !== undefined) yield run;
  }

  /** The lowest offset that is available (in the window, or new below `highWatermark`). */
  oldestReadyOffset(highWatermark: number): number | undefined {
    if (this.#readyLength > 0) {
      for (let offset = this.#floor; offset < this.#next; offset++) {
        if (this.#state[offset & this.#mask] === AVAILABLE) return offset;
      }
    }
    return this.#next < highWatermark ? this.#next : undefined;
  }

  /** Checks every count against a full scan of the window (tests, and after recovery). */
  checkInvariants(): void {
    let acquired = 0;
    let available = 0;
    let deadLettering = 0;
    for (let offset = this.#floor; offset < this.#next; offset++) {
      const slot = offset & this.#mask;
      const state = this.#state[slot]!;
      assert(state <= DEAD_LETTERING, `offset ${offset} has a known state`);
      assert(this.#deliveries[slot]! <= this.#limits.deliveryLimit, "deliveries within limit");
      if (state === ACQUIRED) acquired++;
      if (state === AVAILABLE) available++;
      if (state === DEAD_LETTERING) deadLettering++;
    }
    const floorState = this.#state[this.#floor & this.#mask];
    assert(this.#floor === this.#next || (floorState !== ACKED && floorState !== ARCHIVED));
    assert(acquired === this.#acquired, `acquired ${acquired} = ${this.#acquired}`);
    assert(available === this.#readyLength, `available ${available} = ${this.#readyLength}`);
    assert(deadLettering === this.#deadLettering, "dead-lettering count");
    assert(this.#next - this.#floor <= this.#capacity, "the window fits the ring");
  }
}

/** One run of a snapshot: `count` consecutive records with one state and delivery count. */
export type SnapshotRun = { count: number; state: number; deliveries: number };

/** What survives a restart: acquisition locks do not (Kafka persists no Acquired state). */
function persistedState(state: number): number {
  return state === ACKED || state === ARCHIVED ? state : AVAILABLE;
}

export function stateName(state: number): string {
  return ["available", "acquired", "accepted", "archived", "dead-lettering"][state] ?? "unknown";
}

assert(TWO_32 === 4294967296, "offsets are stored mod 2^32");
// Every lock entry lies within a window of a floor at most LOCK_SWEEP_FLOOR_SPAN old.
assert(
  LOCK_SWEEP_FLOOR_SPAN + 2 * WINDOW_RECORDS_MAX < 2 ** 31,
  "lock offsets rebuild from 32 bits",
);
assert(EPOCH_SPAN_MS + 3_600_000 < TWO_32, "a deadline fits a u32 between epoch moves");

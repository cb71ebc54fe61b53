// Delayed delivery for one queue: records given back with `release({ delayMs })` (or by the
// queue's retry backoff) wait in fixed-delay tier logs until they are due, then go to the
// queue's due log, which the queue reads as one more partition (numbered after its topic's).
//
//   <data>/__queues/<queue>/delay/
//     tier-00/ .. tier-34/   tier k: a partition log whose records each wait exactly 2^k ms
//                            (1 ms .. 2^34 ms, about 199 days); created when first used
//     due/                   records that are due: the queue's extra partition
//     positions.json         per tier, the first offset not yet moved out (written atomically)
//
// A record with R ms to go enters the largest tier with 2^k <= R. Every record of tier k
// waits the same 2^k ms, so a tier is FIFO by exit time and only its head is ever looked at:
// memory is a few numbers per tier, whatever the number of records waiting, and a long delay
// never keeps a short one waiting. When a record leaves a tier (exit time reached) its
// remaining time R' = due - now is below 2^k, so it enters a smaller tier, or the due log when
// R' <= 0: a delay of R visits at most popcount(R) tiers (at most 35, about log2(R) / 2 on
// average), and arrives when due plus the timer's lateness of its last move, not the sum.
//
//   add ─► tier k (exit = now + 2^k) ─► ... ─► tier j < k ─► due log ─► queue fetch
//
// The tier and due logs are kept under fsync "never", so a record is readable in its next log
// as soon as it is written there: a move never waits for an fsync, which on a busy disk takes
// tens to hundreds of ms and, taken on every hop, made delayed records that late. Durability,
// when the queue's fsync is "always", comes from explicit fdatasyncs beside the writes
// (PartitionLog.syncWritten) wherever a fact is made to depend on the copy:
//   - add() resolves once its copies are synced (the originals are then marked DELAYED);
//   - tier positions reach the disk (at most every POSITIONS_PERSIST_MS) only after every tier
//     and the due log are synced up to what the positions passed;
//   - an accept of a record of the due log is confirmed only once the due log is synced past
//     it (dueDurable), so a confirmed accept is never undone by the due log losing its tail.
// A crash before a position is written moves those records again (at-least-once, never lost).
// Segments of a tier wholly below its persisted position are deleted.
//
// A copy carries the original key, value, timestamp and headers, plus `sluice-due-ms` (when it
// is due), `sluice-delay-deliveries` (the deliveries it had when it was given back, so the
// delivery count and limit carry over) and, inside a tier only, `sluice-delay-exit-ms`.

import fs from "node:fs";
import { join } from "node:path";
import {
  ATTRIBUTES_AT,
  assert,
  baseOffsetAt,
  batchSizeAt,
  COMPRESSION_MASK,
  decodeRecordBatches,
  encodeRecordBatch,
  isSluiceError,
  type RecordHeader,
  lastOffsetDeltaAt,
  type RecordInput,
  readInt16,
} from "../record/mod.ts";
import { CoalescedSync } from "./coalesced_sync.ts";
import type { FileIO } from "./io.ts";
import { batchesOf } from "./queue_dead_letter.ts";
import { decimalDigits } from "./queue_ttl.ts";
import type { AcquiredRange } from "./queue_cursor.ts";
import { PartitionLog } from "./partition_log.ts";

/** The longest delay: one year (365 days) in milliseconds. */
export const DELAY_MS_MAX = 31_536_000_000;
/** Tier k holds records for 2^k ms, k = 0 .. DELAY_TIERS - 1. */
export const DELAY_TIERS = 35;
/** When a delayed record is due, ms since the epoch (decimal digits). */
export const DUE_HEADER = "sluice-due-ms";
/** The deliveries a record had when it was given back with a delay (decimal digits). */
export const DELIVERIES_HEADER = "sluice-delay-deliveries";
/** When a record leaves the tier it is in (internal to tier logs). */
const EXIT_HEADER = "sluice-delay-exit-ms";
const POSITIONS_FILE = "positions.json";
/** Tier positions reach the disk at most this long after a move. */
export const POSITIONS_PERSIST_MS = 100;
/** Bytes one tier's part of a move reads at most (the rest waits for the next round). */
const MOVE_BYTES_MAX = 4 * 1024 * 1024;
/** Estimated bytes per batch written to a tier or the due log. */
const BATCH_BYTES_TARGET = 512 * 1024;
/** A timer never waits longer than this, whatever the clock says. */
const TIMER_MS_MAX = 60_000;
const LOG_CONFIG = {
  segmentBytes: 64 * 1024 * 1024,
  maxBatchBytes: 32 * 1024 * 1024,
  retentionMs: -1,
  retentionBytes: -1,
  segmentMs: 7 * 24 * 3_600_000,
};

assert(2 ** (DELAY_TIERS - 1) <= DELAY_MS_MAX, "the largest tier is used by the longest delay");
assert(DELAY_MS_MAX < 2 ** DELAY_TIERS, "every delay fits below the largest tier's double");

const text = new TextEncoder();
const INTERNAL = new Set([DUE_HEADER, DELIVERIES_HEADER, EXIT_HEADER]);

/** A record to delay: its bytes as read, when it is due and the deliveries it had. */
export type DelayEntry = {
  record: {
    key: Uint8Array | null;
    value: Uint8Array | null;
    headers: readonly RecordHeader[];
    timestamp: number;
  };
  dueMs: number;
  deliveries: number;
};

export type DelayHost = {
  io: FileIO;
  now(): number;
  warn(message: string): void;
  /** Adds, persisted positions and accepts of due records wait for their fdatasync. */
  fsync: boolean;
  /** Segment size of the tier and due logs (default 64 MiB; tests make it small). */
  segmentBytes?: number;
};

type Tier = {
  log: PartitionLog | undefined;
  /** First offset not yet moved out (in memory; the file may lag behind). */
  position: number;
  /** The head's exit time when known; +Infinity when the tier is empty. */
  headExitMs: number | undefined;
  /** The last exit time given to a record of this tier: exits never go backwards. */
  lastExitMs: number;
};

/** The tier for a record with `remainingMs` (>= 1) to go: the largest k with 2^k <= it. */
export function tierFor(remainingMs: number): number {
  assert(remainingMs >= 1, "a tier is for a record not yet due");
  let k = Math.min(DELAY_TIERS - 1, Math.floor(Math.log2(remainingMs)));
  while (k > 0 && 2 ** k > remainingMs) k--;
  while (k < DELAY_TIERS - 1 && 2 ** (k + 1) <= remainingMs) k++;
  return k;
}

/** Digits a due-time header may have (a millisecond time fits in 16). */
const DUE_DIGITS_MAX = 16;

/** A header's value as a non-negative integer, or undefined. */
export function headerInteger(headers: readonly RecordHeader[], key: string): number | undefined {
  let found: number | undefined;
  for (const header of headers) {
    if (header.key !== key || header.value === null) continue;
    const parsed = decimalDigits(header.value, DUE_DIGITS_MAX);
    if (parsed !== undefined) found = parsed;
  }
  return found;
}

/** A queue's retry backoff: how long a plain release waits before the record is available. */
export type RetryBackoff = { minMs: number; maxMs: number; factor: number };

/** minMs · factor^(deliveries - 1), capped at maxMs (deliveries counts the one just ended). */
export function retryDelayMs(retry: RetryBackoff, deliveries: number): number {
  const exponent = Math.max(0, deliveries - 1);
  return Math.round(Math.min(retry.maxMs, retry.minMs * retry.factor ** exponent));
}

function tierName(k: number): string {
  return `tier-${String(k).padStart(2, "0")}`;
}

export class DelayTiers {
  readonly dir: string;
  /** The due log: the queue reads it as its last partition. */
  readonly due: PartitionLog;
  readonly #host: DelayHost;
  readonly #tiers: Tier[];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAtMs = Number.POSITIVE_INFINITY;
  #moving: Promise<number> | undefined;
  #persistTimer: ReturnType<typeof setTimeout> | undefined;
  #persisted = "";
  #closed = false;
  /** The due log's fdatasync under way, and one queued behind it (group commit). */
  #dueSync: Promise<void> | undefined;
  #dueSyncNext: Promise<void> | undefined;
  /** The due log's offsets below this are on disk; the sync under way will cover this far. */
  #dueSyncedEnd = 0;
  #dueSyncingEnd = 0;
  /** Tier logs written since their last sync: the only ones a position save syncs. */
  readonly #unsynced = new Set<PartitionLog>();
  /** Each tier log's fdatasyncs, coalesced (coalesced_sync.ts). */
  readonly #tierSyncs = new Map<PartitionLog, CoalescedSync>();

  private constructor(dir: string, due: PartitionLog, host: DelayHost, tiers: Tier[]) {
    this.dir = dir;
    this.due = due;
    this.#host = host;
    this.#tiers = tiers;
  }

  static #logOptions(host: DelayHost) {
    return { io: host.io, now: host.now, onWarning: host.warn };
  }

  static #logConfig(host: DelayHost) {
    const segmentBytes = host.segmentBytes ?? LOG_CONFIG.segmentBytes;
    return {
      ...LOG_CONFIG,
      segmentBytes,
      maxBatchBytes: Math.min(LOG_CONFIG.maxBatchBytes, segmentBytes),
      // Readable once written: durability is synced explicitly (see the top of this file).
      fsync: "never" as const,
    };
  }

  /** Opens (or creates) the delay logs of a queue whose state lives in `stateDir`. */
  static async open(stateDir: string, host: DelayHost): Promise<DelayTiers> {
    const dir = join(stateDir, "delay");
    fs.mkdirSync(dir, { recursive: true });
    const options = DelayTiers.#logOptions(host);
    const config = DelayTiers.#logConfig(host);
    const due = await PartitionLog.open(join(dir, "due"), config, options);
    const saved = readPositions(dir);
    const tiers: Tier[] = [];
    for (let k = 0; k < DELAY_TIERS; k++) {
      const tierDir = join(dir, tierName(k));
      const log = fs.existsSync(tierDir)
        ? await PartitionLog.open(tierDir, config, options)
        : undefined;
      const start = log?.logStartOffset ?? 0;
      const position = Math.max(start, Math.min(saved[k] ?? 0, log?.highWatermark ?? 0));
      tiers.push({ log, position, headExitMs: undefined, lastExitMs: 0 });
    }
    const delays = new DelayTiers(dir, due, host, tiers);
    delays.#persisted = JSON.stringify(delays.#positions());
    delays.#schedule(host.now());
    return delays;
  }

  /** Records waiting in the tiers (not yet in the due log). */
  get waiting(): number {
    let count = 0;
    for (const tier of this.#tiers) {
      if (tier.log !== undefined) count += Math.max(0, tier.log.highWatermark - tier.position);
    }
    return count;
  }

  /** Writes delayed copies of `entries`; resolves once they are as durable as the queue asks. */
  async add(entries: readonly DelayEntry[]): Promise<void> {
    if (entries.length === 0) return;
    this.#checkOpen();
    // Tiers are chosen as of `nowMs`, taken before they are opened: exit times
    // (nowMs + 2^k <= due) may then be a little early, never late.
    const nowMs = this.#host.now();
    await this.#openTiers(entries.map((entry) => entry.dueMs - nowMs));
    const out = new Map<number, RecordInput[]>();
    // In due order, so records that are due already reach the due log in due order.
    const sorted = [...entries].sort((a, b) => a.dueMs - b.dueMs);
    for (const { record, dueMs, deliveries } of sorted) {
      const headers = record.headers.filter((header) => !INTERNAL.has(header.key));
      headers.push({ key: DUE_HEADER, value: text.encode(String(dueMs)) });
      headers.push({ key: DELIVERIES_HEADER, value: text.encode(String(deliveries)) });
      const { key, value, timestamp } = record;
      this.#route({ key, value, timestamp, headers }, dueMs, nowMs, out);
    }
    await this.#appendAll(out, nowMs);
    if (!this.#host.fsync) return;
    await Promise.all(
      [...out.keys()].map((key) =>
        key === -1 ? this.dueDurable() : this.#syncTier(this.#tiers[key]!.log!),
      ),
    );
  }

  /**
   * Resolves once the due log's records below `end` (default: every record readable now) are
   * on disk; at once when the queue does not fsync. Calls coalesce: one fdatasync under way,
   * at most one queued. Move rounds start one as soon as they write to the due log, so a
   * consumer's accept usually finds its record synced or being synced.
   */
  dueDurable(end = this.due.highWatermark): Promise<void> {
    if (!this.#host.fsync || end <= this.#dueSyncedEnd) return Promise.resolve();
    const running = this.#dueSync;
    if (running !== undefined && end <= this.#dueSyncingEnd) return running;
    if (this.#dueSyncNext !== undefined) return this.#dueSyncNext;
    if (running === undefined) return this.#startDueSync();
    // The sync under way may have started before the records this caller needs were written.
    this.#dueSyncNext = running
      .catch(() => undefined)
      .then(() => {
        this.#dueSyncNext = undefined;
        return this.#startDueSync();
      });
    return this.#dueSyncNext;
  }

  #startDueSync(): Promise<void> {
    // Readable records are written: the fdatasync started now covers every one below this.
    const end = this.due.highWatermark;
    this.#dueSyncingEnd = end;
    const sync = this.due
      .syncWritten()
      .then(() => {
        this.#dueSyncedEnd = Math.max(this.#dueSyncedEnd, end);
      })
      .finally(() => {
        if (this.#dueSync === sync) this.#dueSync = undefined;
      });
    this.#dueSync = sync;
    return sync;
  }

  /** Opens the tiers records with these remaining times go to (so routing stays synchronous). */
  async #openTiers(remainingMs: readonly number[]): Promise<void> {
    const wanted = new Set<number>();
    for (const remaining of remainingMs) if (remaining >= 1) wanted.add(tierFor(remaining));
    for (const k of wanted) {
      const tier = this.#tiers[k]!;
      if (tier.log !== undefined) continue;
      tier.log = await PartitionLog.open(
        join(this.dir, tierName(k)),
        DelayTiers.#logConfig(this.#host),
        DelayTiers.#logOptions(this.#host),
      );
      tier.position = tier.log.logStartOffset;
      tier.headExitMs = Number.POSITIVE_INFINITY;
    }
  }

  /** Adds `record` to the batch for its next log: tier k (key k) or the due log (key -1). */
  #route(record: RecordInput, dueMs: number, nowMs: number, out: Map<number, RecordInput[]>) {
    const remainingMs = dueMs - nowMs;
    const headers = (record.headers ?? []).filter((header) => header.key !== EXIT_HEADER);
    let key = -1;
    if (remainingMs >= 1) {
      key = tierFor(remainingMs);
      const tier = this.#tiers[key]!;
      assert(tier.log !== undefined, "a tier is opened before records are routed to it");
      const exitMs = Math.max(nowMs + 2 ** key, tier.lastExitMs);
      tier.lastExitMs = exitMs;
      headers.push({ key: EXIT_HEADER, value: text.encode(String(exitMs)) });
      if (tier.headExitMs === Number.POSITIVE_INFINITY) tier.headExitMs = exitMs;
    }
    const list = out.get(key) ?? [];
    list.push({ ...record, headers });
    out.set(key, list);
  }

  /** Appends every routed list to its log (all appends issued at once, in routing order). */
  async #appendAll(out: Map<number, RecordInput[]>, nowMs: number): Promise<void> {
    const appends: Promise<unknown>[] = [];
    for (const [key, records] of out) {
      const log = key === -1 ? this.due : this.#tiers[key]!.log!;
      if (key !== -1) this.#unsynced.add(log);
      const bytesTarget = Math.min(BATCH_BYTES_TARGET, log.config.segmentBytes / 4);
      for (const group of batchesOf(records, bytesTarget)) {
        appends.push(log.append(encodeRecordBatch(group, { timestamp: nowMs })));
      }
    }
    await Promise.all(appends);
    // A move round that read a tier while these appends were in flight saw it empty: its head
    // is at most the first exit written here (a lower bound only costs an early look).
    for (const [key, records] of out) {
      if (key === -1) continue;
      const tier = this.#tiers[key]!;
      const firstExitMs = headerInteger(records[0]?.headers ?? [], EXIT_HEADER) ?? nowMs;
      if (tier.headExitMs !== undefined) tier.headExitMs = Math.min(tier.headExitMs, firstExitMs);
    }
    this.#schedule(this.#host.now());
  }

  /**
   * Moves every record whose tier exit time has come to its next tier or the due log. Runs
   * one round at a time (a call during a round waits for it, then runs another). The timer
   * calls it; tests with an injected clock call it after moving the clock. Returns records
   * moved.
   */
  async moveDue(): Promise<number> {
    while (this.#moving !== undefined) await this.#moving.catch(() => 0);
    if (this.#closed) return 0;
    const round = this.#moveRound();
    this.#moving = round;
    try {
      return await round;
    } finally {
      this.#moving = undefined;
    }
  }

  async #moveRound(): Promise<number> {
    const nowBefore = this.#host.now();
    const taken: { k: number; position: number; records: DelayEntry[] }[] = [];
    for (let k = 0; k < DELAY_TIERS; k++) {
      const tier = this.#tiers[k]!;
      if (tier.log === undefined) continue;
      if (tier.headExitMs !== undefined && tier.headExitMs > nowBefore) continue;
      const { position, records } = this.#takeExited(k, nowBefore);
      if (position !== tier.position) taken.push({ k, position, records });
    }
    if (taken.length === 0) {
      this.#schedule(this.#host.now());
      return 0;
    }
    const all = taken.flatMap((t) => t.records);
    await this.#openTiers(all.map((entry) => entry.dueMs - nowBefore));
    const nowMs = nowBefore;
    const out = new Map<number, RecordInput[]>();
    // Records are routed in due order, so the due log of one round is in due order.
    all.sort((a, b) => a.dueMs - b.dueMs);
    for (const entry of all) this.#route(entry.record, entry.dueMs, nowMs, out);
    await this.#appendAll(out, nowMs);
    for (const { k, position } of taken) this.#tiers[k]!.position = position;
    if (out.has(-1)) {
      // Synced now rather than when a consumer accepts them: the accept then rarely waits.
      this.dueDurable().catch((error) => this.#host.warn(`the due log of ${this.dir}: ${error}`));
    }
    this.#persistSoon();
    return all.length;
  }

  /** The records at the head of tier k whose exit time is at or before `nowMs`. */
  #takeExited(k: number, nowMs: number): { position: number; records: DelayEntry[] } {
    const tier = this.#tiers[k]!;
    const log = tier.log!;
    const records: DelayEntry[] = [];
    let position = Math.max(tier.position, log.logStartOffset);
    let bytes = 0;
    tier.headExitMs = Number.POSITIVE_INFINITY;
    scan: while (position < log.highWatermark && bytes < MOVE_BYTES_MAX) {
      let read: ReturnType<PartitionLog["read"]>;
      try {
        read = log.read(position, 256 * 1024, { checkEveryCrc: true });
      } catch (error) {
        if (!isSluiceError(error, "CORRUPT_BATCH")) throw error;
        const resume = error.details["nextValidOffset"];
        this.#host.warn(`delay tier ${k} of ${this.dir}: ${error.message}; skipped`);
        if (typeof resume !== "number" || resume <= position) break;
        position = resume;
        continue;
      }
      for (const view of read.views) {
        bytes += view.length;
        // The read checked every batch's CRC already.
        for (const batch of decodeRecordBatches(view, { checkCrc: false })) {
          for (const record of batch.records) {
            if (record.offset < position) continue;
            const exitMs = headerInteger(record.headers, EXIT_HEADER) ?? 0;
            if (exitMs > nowMs) {
              tier.headExitMs = exitMs;
              break scan;
            }
            const dueMs = headerInteger(record.headers, DUE_HEADER) ?? nowMs;
            const { key, value, headers, timestamp } = record;
            records.push({ record: { key, value, headers, timestamp }, dueMs, deliveries: 0 });
            position = record.offset + 1;
          }
        }
      }
      position = Math.max(position, read.nextOffset);
    }
    if (position < log.highWatermark && tier.headExitMs === Number.POSITIVE_INFINITY) {
      tier.headExitMs = undefined; // stopped by the byte budget: look again at once
    }
    return { position, records };
  }

  /** Sets the timer for the earliest tier exit. */
  #schedule(nowMs: number): void {
    if (this.#closed) return;
    let atMs = Number.POSITIVE_INFINITY;
    for (const tier of this.#tiers) {
      if (tier.log === undefined) continue;
      atMs = Math.min(atMs, tier.headExitMs ?? nowMs);
    }
    if (!Number.isFinite(atMs) || atMs >= this.#timerAtMs) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAtMs = atMs;
    const waitMs = Math.min(Math.max(0, atMs - nowMs), TIMER_MS_MAX);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAtMs = Number.POSITIVE_INFINITY;
      this.moveDue()
        .catch((error) => this.#host.warn(`delayed records of ${this.dir}: ${String(error)}`))
        .finally(() => this.#schedule(this.#host.now()));
    }, waitMs);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  #positions(): (number | null)[] {
    return this.#tiers.map((tier) => (tier.log === undefined ? null : tier.position));
  }

  #persistSoon(): void {
    if (this.#persistTimer !== undefined || this.#closed) return;
    this.#persistTimer = setTimeout(() => {
      this.#persistTimer = undefined;
      this.persistPositions().catch((error) =>
        this.#host.warn(`delay positions of ${this.dir}: ${String(error)}`),
      );
    }, POSITIONS_PERSIST_MS);
    (this.#persistTimer as { unref?: () => void }).unref?.();
  }

  /** Writes the tier positions (atomically) and deletes tier segments wholly below them. */
  async persistPositions(): Promise<void> {
    await this.#trimDue();
    const positions = this.#positions();
    const json = JSON.stringify(positions);
    if (json === this.#persisted) return;
    // The records these positions passed were written to their next logs before the positions
    // moved: once those logs are synced, the positions may reach the disk.
    if (this.#host.fsync) await this.#syncAll();
    // Positions only ever lag (records move again, never lost); without fsynced tier logs an
    // fsync here buys nothing and would stall every move round behind it.
    this.#host.io.writeFileAtomic(this.dir, POSITIONS_FILE, `${json}\n`, {
      sync: this.#host.fsync,
    });
    this.#persisted = json;
    for (let k = 0; k < DELAY_TIERS; k++) {
      const tier = this.#tiers[k]!;
      if (tier.log !== undefined) await tier.log.deleteSegmentsBelow(positions[k] ?? 0);
    }
  }

  /** A tier log's sync, shared with the calls made while one is under way. */
  #syncTier(log: PartitionLog): Promise<void> {
    let coalesced = this.#tierSyncs.get(log);
    if (coalesced === undefined) {
      coalesced = new CoalescedSync(() => log.syncWritten());
      this.#tierSyncs.set(log, coalesced);
    }
    return coalesced.sync();
  }

  async #syncAll(): Promise<void> {
    const tiers = [...this.#unsynced];
    this.#unsynced.clear();
    try {
      await Promise.all([this.dueDurable(), ...tiers.map((log) => this.#syncTier(log))]);
    } catch (error) {
      for (const log of tiers) this.#unsynced.add(log);
      throw error;
    }
  }

  /**
   * The queue's floor on the due log once it is durable (set by the queue): every record below
   * it is done, so the due log's segments wholly below it can go.
   */
  durableDueFloor: (() => Promise<number>) | undefined;

  /** Deletes due-log segments the queue has durably finished (the due log keeps no retention). */
  async #trimDue(): Promise<void> {
    if (this.durableDueFloor === undefined) return;
    try {
      await this.due.deleteSegmentsBelow(await this.durableDueFloor());
    } catch (error) {
      // A queue whose state cannot be written keeps its due log whole: nothing is lost.
      this.#host.warn(`the due log of ${this.dir} was not trimmed: ${String(error)}`);
    }
  }

  #checkOpen(): void {
    assert(!this.#closed, "delayed records are added to an open queue");
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#persistTimer !== undefined) clearTimeout(this.#persistTimer);
    await this.#moving?.catch(() => 0);
    this.#closed = true;
    try {
      await this.persistPositions();
    } finally {
      const logs = [this.due, ...this.#tiers.flatMap((tier) => (tier.log ? [tier.log] : []))];
      await Promise.allSettled(logs.map((log) => log.close()));
    }
  }
}

function readPositions(dir: string): (number | null)[] {
  try {
    const raw = JSON.parse(fs.readFileSync(join(dir, POSITIONS_FILE), "utf8")) as unknown;
    if (!Array.isArray(raw)) return [];
    return raw.map((value) => (Number.isSafeInteger(value) && value >= 0 ? value : null));
  } catch {
    // No file yet (or a damaged one): every tier starts at its log start, so records move
    // again rather than being lost.
    return [];
  }
}

/** What carrying a delivery count needs from a cursor (queue_cursor.ts). */
type CountingCursor = {
  deliveriesAt(offset: number): number;
  carryDeliveries(offset: number, deliveries: number): void;
};

/**
 * Records acquired from the due log carry the deliveries their original had
 * (`sluice-delay-deliveries`): the cursor's count, which restarted for the copy, is raised to
 * that plus its own, and the ranges are split where counts now differ. Records acquired
 * again from the due log already carry it (their count is above the header's).
 */
export function carryDeliveries(
  cursor: CountingCursor,
  views: readonly Uint8Array[],
  ranges: AcquiredRange[],
): AcquiredRange[] {
  const inRange = (offset: number) => ranges.some((r) => r.first <= offset && offset <= r.last);
  for (const view of views) {
    for (const batch of decodeRecordBatches(view)) {
      for (const record of batch.records) {
        if (!inRange(record.offset)) continue;
        const carried = headerInteger(record.headers, DELIVERIES_HEADER) ?? 0;
        const own = cursor.deliveriesAt(record.offset);
        if (carried > 0 && own <= carried) cursor.carryDeliveries(record.offset, carried + own);
      }
    }
  }
  const split: AcquiredRange[] = [];
  for (const range of ranges) {
    for (let offset = range.first; offset <= range.last; offset++) {
      const deliveries = cursor.deliveriesAt(offset);
      const last = split.at(-1);
      if (last !== undefined && last.last + 1 === offset && last.deliveries === deliveries) {
        last.last = offset;
      } else {
        split.push({ first: offset, last: offset, deliveries, redelivered: deliveries > 1 });
      }
    }
  }
  return split;
}

// -------------------------------------------------------------------------------------------
// Publishing with a due time: records a queue must hold back until they are due.

/** Milliseconds from the record's timestamp until it is due (decimal digits). */
export const DELAY_HEADER = "sluice-delay-ms";
/** When the record is due, ms since the epoch (decimal digits); wins over DELAY_HEADER. */
export const DELIVER_AT_HEADER = "sluice-deliver-at-ms";

const DELAY_KEY_BYTES = text.encode(DELAY_HEADER);
const DELIVER_AT_KEY_BYTES = text.encode(DELIVER_AT_HEADER);

/**
 * When a published record is due, from its headers, or undefined when it has no valid due
 * time: `sluice-deliver-at-ms` as is, else its timestamp plus `sluice-delay-ms`, where the
 * delay is 0 .. DELAY_MS_MAX and the time at most DELAY_MS_MAX past the timestamp. Other
 * values are ignored (the record is delivered at once), as a bad `sluice-ttl-ms` is.
 */
export function publishedDueMs(record: {
  headers: readonly RecordHeader[];
  timestamp: number;
}): number | undefined {
  const at = headerInteger(record.headers, DELIVER_AT_HEADER);
  if (at !== undefined) return at <= record.timestamp + DELAY_MS_MAX ? at : undefined;
  const delayMs = headerInteger(record.headers, DELAY_HEADER);
  if (delayMs === undefined || delayMs > DELAY_MS_MAX) return undefined;
  return record.timestamp + delayMs;
}

function containsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.length).indexOf(needle) >= 0;
}

/** The batch holding an offset, with its records not yet due (offset → due time), if any. */
export type HeldBatch = { base: number; last: number; notDue: Map<number, number> | null };

/**
 * Finds the records of one partition that are not due yet at one moment, batch by batch,
 * remembering the last batch. An uncompressed batch without either header's name in its
 * bytes is settled by one native byte search; others are decoded.
 */
export class DueReader {
  readonly #log: { read(offset: number, maxBytes: number): { views: Uint8Array[] } };
  readonly #nowMs: number;
  #last: HeldBatch | undefined;

  constructor(
    log: { read(offset: number, maxBytes: number): { views: Uint8Array[] } },
    nowMs: number,
  ) {
    this.#log = log;
    this.#nowMs = nowMs;
  }

  batchAt(offset: number): HeldBatch {
    const last = this.#last;
    if (last !== undefined && last.base <= offset && offset <= last.last) return last;
    const view = this.#log.read(offset, 1).views[0];
    assert(view !== undefined, "a read below the high watermark returns a batch");
    return this.judge(view.subarray(0, batchSizeAt(view, 0)));
  }

  /** Judges one whole batch (and remembers it). */
  judge(batch: Uint8Array): HeldBatch {
    const base = baseOffsetAt(batch, 0);
    const judged: HeldBatch = { base, last: base + lastOffsetDeltaAt(batch, 0), notDue: null };
    this.#last = judged;
    const compressed = (readInt16(batch, ATTRIBUTES_AT) & COMPRESSION_MASK) !== 0;
    const named =
      compressed ||
      containsBytes(batch, DELAY_KEY_BYTES) ||
      containsBytes(batch, DELIVER_AT_KEY_BYTES);
    if (!named) return judged;
    try {
      for (const decoded of decodeRecordBatches(batch)) {
        for (const record of decoded.records) {
          const dueMs = publishedDueMs(record);
          if (dueMs === undefined || dueMs <= this.#nowMs) continue;
          judged.notDue ??= new Map();
          judged.notDue.set(record.offset, dueMs);
        }
      }
    } catch {
      // Records that do not parse are not held back; the fetch that serves them reports them.
      judged.notDue = null;
    }
    return judged;
  }

  /** Whether the record at `offset` (below the high watermark) is not due yet. */
  static notDueAt(reader: DueReader, offset: number): boolean {
    return reader.batchAt(offset).notDue?.has(offset) === true;
  }

  /** The first offset of `batch` at or after `from` that is not due yet, if any. */
  static firstNotDue(batch: HeldBatch, from: number): number | undefined {
    if (batch.notDue === null || batch.last < from) return undefined;
    let first: number | undefined;
    for (const offset of batch.notDue.keys()) {
      if (offset >= from && (first === undefined || offset < first)) first = offset;
    }
    return first;
  }
}

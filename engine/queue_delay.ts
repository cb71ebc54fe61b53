// Delayed delivery for one queue: records given back with `release({ delayMs })` (or by the
// queue's retry backoff), and records published with a due time, wait in fixed-delay tier logs
// until they are due, then go to the queue's due log, which the queue reads as one more
// partition (numbered after its topic's).
//
//   <data>/__queues/<queue>/delay/
//     store-00/ .. store-08/  store s: each waiting record, written once, as the one-record
//                             batch the due log will take; s = (the tier it entered) / 4
//     ref-00/ .. ref-34/      tier k: entries (store, offset, due, exit) of 26 bytes whose
//                             records each wait exactly 2^k ms in it (1 ms .. 2^34 ms, about
//                             199 days) (queue_delay_refs.ts)
//     tier-00/ .. tier-34/    tiers of whole record copies, as earlier versions wrote them:
//                             read and drained into the store, never written
//     due/                    records that are due: the queue's extra partition
//     positions.json          per tier, the first offset not yet moved out, and per store
//                             its intake (written atomically):
//                             {"refs": [...], "legacy": [...], "intake": [...]}; a bare
//                             array is the earlier file, the legacy tiers' positions
//   (every log is created when first used)
//
// A record with R ms to go enters tier k, the largest k with 2^k <= R: it is written once to
// store floor(k / 4), and an entry for it enters tier k. Every entry of tier k waits the same
// 2^k ms, so a tier is FIFO by exit time and only its head is ever looked at: memory is a few
// numbers per tier plus one counter per live store chunk, whatever the number of records
// waiting, and a long delay never keeps a short one waiting. When an entry leaves a tier its
// remaining time R' = due - now is below 2^k, so a new entry enters a smaller tier, or, when
// R' <= 0, the record is read from the store into the due log (the records of one move round
// together, merged as bytes into a few large batches, so a fetch reads them in one or two).
// A delay of R writes its record twice (store, due log) and visits at most popcount(R) tiers
// with a 26-byte entry each; it arrives when due plus the timer's lateness of its last move,
// not the sum.
//
//   add ─► store k/4 (record) + tier k (entry) ─► ... ─► tier j < k (entry) ─► due log (record)
//
// The store, tier and due logs are kept under fsync "never", so an entry or record is readable
// in its next log as soon as it is written there: a move never waits for an fsync, which on a
// busy disk takes tens to hundreds of ms and, taken on every hop, made delayed records that
// late. Durability, when the queue's fsync is "always", comes from explicit fdatasyncs beside
// the writes (PartitionLog.syncWritten) wherever a fact is made to depend on them:
//   - add() resolves once its store records are synced (the originals are then marked
//     DELAYED); its entries are synced by the next positions save, which also saves each
//     store's intake, the offset below which every record's entry is on disk. At open, every
//     store record at or above the intake gets an entry again (#recoverIntake): an add costs
//     the fdatasyncs of a few stores, not of every tier it touches. An entry whose store
//     record did not reach the disk belongs to an add that never resolved, whose original is
//     still there and is delayed again. Such an entry may reach the disk by writeback while
//     its record does not; after a power loss the store ends below it and the next record
//     stored takes its offset. So each store's end at open is noted, and an entry written
//     before the open that points at or past it is skipped (#lostAtOpen); a saved intake past
//     its store's end is lowered to it and saved before any add;
//   - tier positions and intakes reach the disk (at most every POSITIONS_PERSIST_MS) only
//     after every tier and store written since the last save, and the due log, are synced up
//     to what they passed (a store before the intake passes its records); the file's own
//     fsyncs run on the thread pool (FileIO.writeFileAtomicAsync), one save at a time;
//   - a store segment is deleted only once every entry pointing into it has been passed to the
//     due log by positions already on disk (StoreLive), so no entry read after a restart points
//     at a deleted record; store s holds records with 2^(4s) .. 2^(4s+4) ms to go and is
//     rolled at least every max(1 min, 2^(4s+4) ms), so a segment goes at most about
//     2^(4s+4) ms + that roll time + POSITIONS_PERSIST_MS after its first write: a long delay
//     pins only segments of records whose delays are within 16 times of its own;
//   - an accept of a record of the due log is confirmed only once the due log is synced past
//     it (dueDurable), so a confirmed accept is never undone by the due log losing its tail.
// A crash before a position is written moves those entries again (at-least-once, never lost).
// Segments of a tier wholly below its persisted position are deleted.
//
// A stored record carries the original key, value, timestamp and headers, plus `sluice-due-ms`
// (when it is due) and `sluice-delay-deliveries` (the deliveries it had when it was given back,
// so the delivery count and limit carry over). Copies in legacy tiers also carry
// `sluice-delay-exit-ms`, their exit time.

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
  type LogRecord,
  type RecordHeader,
  lastOffsetDeltaAt,
  type RecordInput,
  readInt16,
  recordCountAt,
} from "../record/mod.ts";
import { CoalescedSync } from "./coalesced_sync.ts";
import type { FileIO } from "./io.ts";
import type { AcquiredRange } from "./queue_cursor.ts";
import {
  eachHeaderInteger,
  eachHeaderIntegers,
  encodeRefBatch,
  encodeStored,
  headerKeyBytes,
  mergeStored,
  REF_BATCH_ENTRIES_MAX,
  type RecordWhere,
  storedFromRecord,
} from "./queue_delay_batches.ts";
import { type DelayRef, decodeRef, eachRef, StoreLive } from "./queue_delay_refs.ts";
import { batchesOf } from "./queue_dead_letter.ts";
import { decimalDigits } from "./queue_ttl.ts";
import { yieldToIo } from "./yield_to_io.ts";
import { READ_AHEAD_BYTES_MAX } from "./log_read.ts";
import { type AppendListener, PartitionLog } from "./partition_log.ts";
import type { TailCacheBudget } from "./tail_cache_budget.ts";

/** The longest delay: one year (365 days) in milliseconds. */
export const DELAY_MS_MAX = 31_536_000_000;
/** Tier k holds records for 2^k ms, k = 0 .. DELAY_TIERS - 1. */
export const DELAY_TIERS = 35;
/** When a delayed record is due, ms since the epoch (decimal digits). */
export const DUE_HEADER = "sluice-due-ms";
/** The deliveries a record had when it was given back with a delay (decimal digits). */
export const DELIVERIES_HEADER = "sluice-delay-deliveries";
/** When a record leaves the tier it is in (in legacy tier copies only). */
const EXIT_HEADER = "sluice-delay-exit-ms";
const POSITIONS_FILE = "positions.json";
/** Tier positions reach the disk at most this long after a move. */
export const POSITIONS_PERSIST_MS = 250;
/** Bytes one tier's part of a move reads at most (the rest waits for the next round). */
const MOVE_BYTES_MAX = 4 * 1024 * 1024;
/**
 * Bytes one read of a tier's entries takes (about 400 entries; a round reads on while they
 * have exited). Only the head is wanted: a larger read would decode and check entries that
 * are not due for a long time, every round. A batch's CRC is checked on its first read in the
 * process, not again on each round that finds its head not yet due.
 */
const REF_READ_BYTES = 16 * 1024;
/**
 * Records an add encodes and appends before it lets timers run (about 1 ms of work; each
 * yield costs about 1 ms): a large add does not hold a due move round back by its whole length.
 */
const ADD_SLICE_RECORDS = 128;
/** Entries one tier's part of a move takes at most (the rest waits for the next round). */
const MOVE_ENTRIES_MAX = 50_000;
/** Estimated bytes per batch written to the due log. */
const DUE_BATCH_BYTES_TARGET = 512 * 1024;
/** A timer never waits longer than this, whatever the clock says. */
const TIMER_MS_MAX = 60_000;
/** A store segment is rolled at least this often (and at least every 2^s ms for store s). */
const STORE_ROLL_MS_MIN = 60_000;
/**
 * Tiers whose records share a store: store s takes the records that enter tiers
 * 4s .. 4s + 3, that is with 2^(4s) .. 2^(4s+4) ms to go. Fewer stores than tiers means fewer
 * files to fdatasync per add (delays of 0-10 s touch 4 stores, not 14); a long delay still
 * pins only records whose delays are within 16 times of its own.
 */
const STORE_TIERS = 4;
/** Delay stores: store-00 .. store-08. */
export const DELAY_STORES = Math.ceil(DELAY_TIERS / STORE_TIERS);
/**
 * The store whose records wait 256 ms - 4 s keeps a larger tail cache, so that at 10,000
 * records/s of 1 KiB (~4 MB/s reach it when delays are spread over 0-10 s) its records leave
 * from memory, not one pread each; with the logs' default 8 MiB about half were read from the
 * file. Stores 0 and 1 hold records for under 256 ms: the default covers them at up to 32 MB/s.
 * Records of the later stores wait for seconds or more and are read from the file, one read of
 * the shared buffer each (see readWindow): a cache for them would have to hold what waits.
 */
const STORE_CACHED = 2;
const STORE_CACHED_TAIL_BYTES = 16 * 1024 * 1024;
const LOG_CONFIG = {
  segmentBytes: 64 * 1024 * 1024,
  maxBatchBytes: 32 * 1024 * 1024,
  retentionMs: -1,
  retentionBytes: -1,
  segmentMs: 7 * 24 * 3_600_000,
};

assert(2 ** (DELAY_TIERS - 1) <= DELAY_MS_MAX, "the largest tier is used by the longest delay");
assert(DELAY_MS_MAX < 2 ** DELAY_TIERS, "every delay fits below the largest tier's double");
assert(DELAY_STORES <= 255, "a store number fits the byte a tier entry gives it");
assert(DELAY_STORES * STORE_TIERS >= DELAY_TIERS, "every tier has a store");
assert(STORE_CACHED < DELAY_STORES, "the store with the larger tail cache exists");
assert(REF_BATCH_ENTRIES_MAX * 64 < LOG_CONFIG.maxBatchBytes, "an entry batch fits any log");

const text = new TextEncoder();
const INTERNAL = new Set([DUE_HEADER, DELIVERIES_HEADER, EXIT_HEADER]);
const DELIVERIES_KEY_BYTES = text.encode(DELIVERIES_HEADER);
const DUE_KEY_BYTES = text.encode(DUE_HEADER);
/** Header keys a published delayed record carries, encoded once. */
const KNOWN_KEYS: ReadonlyMap<string, Uint8Array> = new Map(
  ["sluice-delay-ms", "sluice-deliver-at-ms"].map((key) => [key, text.encode(key)]),
);

/**
 * A record to delay, when it is due and the deliveries it had: decoded (`record`), or as it
 * lies in a plain batch of its log (`lying`, see eachDelayable), which the store takes as
 * bytes without decoding it.
 */
export type DelayEntry = (
  | {
      record: {
        key: Uint8Array | null;
        value: Uint8Array | null;
        headers: readonly RecordHeader[];
        timestamp: number;
      };
    }
  | { lying: LyingRecord }
) & { dueMs: number; deliveries: number };

/** A record in a plain batch of a log: the batch, where the record's parts lie, its time. */
export type LyingRecord = { batch: Uint8Array; where: RecordWhere; timestampMs: number };

export type DelayHost = {
  io: FileIO;
  now(): number;
  warn(message: string): void;
  /** Adds, persisted positions and accepts of due records wait for their fdatasync. */
  fsync: boolean;
  /** Segment size of the store, tier and due logs (default 64 MiB; tests make it small). */
  segmentBytes?: number;
  /** The tail-cache budget the delay logs' chunks count against (the process's by default). */
  tailCacheBudget?: TailCacheBudget;
};

type Tier = {
  /** "ref": entries of this version; "legacy": whole copies, as earlier versions wrote. */
  kind: "ref" | "legacy";
  k: number;
  log: PartitionLog | undefined;
  /** First offset not yet moved out (in memory; the file may lag behind). */
  position: number;
  /** The head's exit time when known; +Infinity when the tier is empty. */
  headExitMs: number | undefined;
  /** The last exit time given to an entry of this tier: exits never go backwards. */
  lastExitMs: number;
  /** The log's end when the queue was opened: entries below it were written before. */
  openEnd: number;
};

/** What one move round took from a tier: entries, or whole copies from a legacy tier. */
type Taken = {
  tier: Tier;
  position: number;
  refs: DelayRef[];
  copies: DelayEntry[];
  /** Entries from before the open whose store record was lost (see #lostAtOpen). */
  lost: DelayRef[];
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

function logName(kind: "ref" | "legacy" | "store", k: number): string {
  const prefix = kind === "legacy" ? "tier" : kind;
  return `${prefix}-${String(k).padStart(2, "0")}`;
}

/** The headers storedBatch adds to a record as it lies, their values set per record. */
const STORED_EXTRA: { key: Uint8Array; value: number }[] = [
  { key: DUE_KEY_BYTES, value: 0 },
  { key: DELIVERIES_KEY_BYTES, value: 0 },
];

/** The batch a record takes in the store and then the due log: itself, due and deliveries. */
function storedBatch(entry: DelayEntry): Uint8Array {
  const { dueMs, deliveries } = entry;
  if ("lying" in entry) {
    const { batch, where, timestampMs } = entry.lying;
    // storedFromRecord only reads the list, before it returns: one list serves every record.
    STORED_EXTRA[0]!.value = dueMs;
    STORED_EXTRA[1]!.value = deliveries;
    return storedFromRecord(batch, where, timestampMs, STORED_EXTRA);
  }
  const { record } = entry;
  const headers: { key: Uint8Array; value: Uint8Array | null }[] = [];
  for (const header of record.headers) {
    if (INTERNAL.has(header.key)) continue;
    headers.push({ key: headerKeyBytes(header.key, KNOWN_KEYS), value: header.value });
  }
  headers.push({ key: DUE_KEY_BYTES, value: text.encode(String(dueMs)) });
  headers.push({ key: DELIVERIES_KEY_BYTES, value: text.encode(String(deliveries)) });
  const { key, value, timestamp } = record;
  return encodeStored({ key, value, timestamp, headers });
}

/** Records bound for the due log in one round or add, and entries bound for tiers. */
type Out = { due: { dueMs: number; batch: Uint8Array }[]; refs: Map<number, DelayRef[]> };

export class DelayTiers {
  readonly dir: string;
  /** The due log: the queue reads it as its last partition. */
  readonly due: PartitionLog;
  readonly #host: DelayHost;
  readonly #tiers: Tier[];
  readonly #legacy: Tier[];
  /** Both kinds, looked at on every move round and timer (no array built each time). */
  readonly #allTiers: Tier[];
  readonly #stores: (PartitionLog | undefined)[];
  readonly #live: StoreLive;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAtMs = Number.POSITIVE_INFINITY;
  #moving: Promise<number> | undefined;
  #persistTimer: ReturnType<typeof setTimeout> | undefined;
  #persisted = "";
  /** The positions save under way (saves run one at a time). */
  #saving: Promise<void> = Promise.resolve();
  #closed = false;
  /** The due log's fdatasync under way, and one queued behind it (group commit). */
  #dueSync: Promise<void> | undefined;
  #dueSyncNext: Promise<void> | undefined;
  /** The due log's offsets below this are on disk; the sync under way will cover this far. */
  #dueSyncedEnd = 0;
  #dueSyncingEnd = 0;
  /**
   * Tier and store logs written since their last sync: the only ones a position save syncs. A
   * store is among them so that no save writes an intake past a record not on disk.
   */
  readonly #unsynced = new Set<PartitionLog>();
  /** Adds under way: per store, the first offset each wrote (see #positions). */
  readonly #placing = new Set<(number | undefined)[]>();
  /** Records got entries again at open: the positions (with the new intake) must be saved. */
  #intakeRecovered = false;
  /** A saved intake was past its store's end at open: the positions are saved before use. */
  #intakeClamped = false;
  /** Each store's end when the queue was opened (0: no store then). */
  readonly #storeOpenEnds: number[] = Array.from({ length: DELAY_STORES }, () => 0);
  /** Each tier and store log's fdatasyncs, coalesced (coalesced_sync.ts). */
  readonly #syncs = new Map<PartitionLog, CoalescedSync>();

  private constructor(dir: string, due: PartitionLog, host: DelayHost) {
    this.dir = dir;
    this.due = due;
    this.#host = host;
    const tier = (kind: Tier["kind"], k: number): Tier => ({
      kind,
      k,
      log: undefined,
      position: 0,
      headExitMs: undefined,
      lastExitMs: 0,
      openEnd: 0,
    });
    this.#tiers = Array.from({ length: DELAY_TIERS }, (_, k) => tier("ref", k));
    this.#legacy = Array.from({ length: DELAY_TIERS }, (_, k) => tier("legacy", k));
    this.#allTiers = [...this.#tiers, ...this.#legacy];
    this.#stores = Array.from({ length: DELAY_STORES }, () => undefined);
    this.#live = new StoreLive(DELAY_STORES);
  }

  static #logOptions(host: DelayHost) {
    // Never mapped: tier and store segments are read once and deleted soon after, and deleting
    // a mapped one forces a blocking collection (50-100 ms under load), which is lateness.
    return {
      io: host.io,
      now: host.now,
      onWarning: host.warn,
      mapSegments: false,
      ...(host.tailCacheBudget === undefined ? {} : { tailCacheBudget: host.tailCacheBudget }),
    };
  }

  static #logConfig(host: DelayHost, segmentMs = LOG_CONFIG.segmentMs) {
    const segmentBytes = host.segmentBytes ?? LOG_CONFIG.segmentBytes;
    return {
      ...LOG_CONFIG,
      segmentBytes,
      segmentMs,
      maxBatchBytes: Math.min(LOG_CONFIG.maxBatchBytes, segmentBytes),
      // Readable once written: durability is synced explicitly (see the top of this file).
      fsync: "never" as const,
    };
  }

  #openLog(name: string, segmentMs?: number, tailCacheBytes?: number): Promise<PartitionLog> {
    const config = DelayTiers.#logConfig(this.#host, segmentMs);
    const options = DelayTiers.#logOptions(this.#host);
    return PartitionLog.open(
      join(this.dir, name),
      config,
      tailCacheBytes === undefined ? options : { ...options, tailCacheBytes },
    );
  }

  /** Opens (or creates) the delay logs of a queue whose state lives in `stateDir`. */
  static async open(stateDir: string, host: DelayHost): Promise<DelayTiers> {
    const dir = join(stateDir, "delay");
    fs.mkdirSync(dir, { recursive: true });
    const options = DelayTiers.#logOptions(host);
    const due = await PartitionLog.open(join(dir, "due"), DelayTiers.#logConfig(host), options);
    const delays = new DelayTiers(dir, due, host);
    try {
      await delays.#openExisting(readPositions(dir));
    } catch (error) {
      await delays.#closeLogs();
      throw error;
    }
    delays.#persisted =
      delays.#intakeRecovered || delays.#intakeClamped ? "" : JSON.stringify(delays.#positions());
    if (delays.#intakeClamped) {
      // The file's intake is past records the next adds write: saved now, before any add, so
      // a crash after one cannot leave its records below an intake that skips them.
      try {
        await delays.persistPositions();
      } catch (error) {
        await delays.#closeLogs();
        throw error;
      }
    }
    delays.#schedule(host.now());
    return delays;
  }

  /** Opens the logs already on disk and counts the store references their tiers hold. */
  async #openExisting(saved: Positions): Promise<void> {
    for (let k = 0; k < DELAY_TIERS; k++) {
      for (const [tier, positions] of [
        [this.#tiers[k]!, saved.refs],
        [this.#legacy[k]!, saved.legacy],
      ] as const) {
        const name = logName(tier.kind, k);
        if (!fs.existsSync(join(this.dir, name))) continue;
        tier.log = await this.#openLog(name);
        const log = tier.log;
        tier.position = Math.max(
          log.logStartOffset,
          Math.min(positions[k] ?? 0, log.highWatermark),
        );
        tier.openEnd = log.highWatermark;
      }
    }
    for (let s = 0; s < DELAY_STORES; s++) {
      if (!fs.existsSync(join(this.dir, logName("store", s)))) continue;
      this.#storeOpenEnds[s] = (await this.#openStore(s)).highWatermark;
    }
    for (const tier of this.#tiers) {
      if (tier.log === undefined) continue;
      this.#scanRefs(tier, tier.position, Number.POSITIVE_INFINITY, (ref) => {
        this.#live.add(ref.store, ref.offset);
        return true;
      });
    }
    await this.#recoverIntake(saved.intake);
  }

  async #openStore(s: number): Promise<PartitionLog> {
    const existing = this.#stores[s];
    if (existing !== undefined) return existing;
    const rollMs = Math.min(
      LOG_CONFIG.segmentMs,
      Math.max(STORE_ROLL_MS_MIN, 2 ** (STORE_TIERS * (s + 1))),
    );
    const cached = s === STORE_CACHED ? STORE_CACHED_TAIL_BYTES : undefined;
    const log = await this.#openLog(logName("store", s), rollMs, cached);
    // Two opens of one store may race: the first to finish is kept.
    const raced = this.#stores[s];
    if (raced !== undefined) {
      await log.close();
      return raced;
    }
    this.#stores[s] = log;
    return log;
  }

  /** Records waiting in the tiers (not yet in the due log). */
  get waiting(): number {
    let count = 0;
    for (const tier of this.#allTiers) {
      if (tier.log !== undefined) count += Math.max(0, tier.log.highWatermark - tier.position);
    }
    return count;
  }

  /** Writes `entries` to the store and tiers; resolves once as durable as the queue asks. */
  async add(entries: readonly DelayEntry[]): Promise<void> {
    if (entries.length === 0) return;
    this.#checkOpen();
    // Tiers are chosen as of `nowMs`, taken before anything is opened or written: exit times
    // (nowMs + 2^k <= due) may then be a little early, never late.
    const nowMs = this.#host.now();
    // In due order across slices, so records due already reach the due log in due order.
    const sorted = [...entries].sort((a, b) => a.dueMs - b.dueMs);
    const touched = new Set<PartitionLog>();
    for (let i = 0; i < sorted.length; i += ADD_SLICE_RECORDS) {
      // A slice's encoding and appends run without a macrotask in between (the logs flush in
      // microtasks): a move round whose timer is due waits for the slice, not the whole add.
      if (i > 0) await yieldToIo();
      const slice = sorted.slice(i, i + ADD_SLICE_RECORDS);
      for (const log of await this.#place(slice, nowMs)) touched.add(log);
    }
    if (!this.#host.fsync) return;
    // The records, not their entries: an entry not on disk yet is rebuilt from its record
    // after a crash (the stores' intake, see #recoverIntake); tiers are synced by positions.
    const stores = new Set<PartitionLog | undefined>(this.#stores);
    await Promise.all(
      [...touched].flatMap((log) => {
        if (log === this.due) return [this.dueDurable()];
        return stores.has(log) ? [this.#sync(log)] : [];
      }),
    );
  }

  /**
   * Writes each record once: to the due log when due, else to its store with an entry in its
   * tier. Returns the logs written (for add() to sync).
   */
  async #place(entries: readonly DelayEntry[], nowMs: number): Promise<Set<PartitionLog>> {
    // In due order, so records that are due already reach the due log in due order.
    const sorted = [...entries].sort((a, b) => a.dueMs - b.dueMs);
    const out: Out = { due: [], refs: new Map() };
    const stored: { s: number; dueMs: number; batch: Uint8Array }[] = [];
    const tiers = new Set<number>();
    for (const entry of sorted) {
      const batch = storedBatch(entry);
      if (entry.dueMs - nowMs < 1) {
        out.due.push({ dueMs: entry.dueMs, batch });
        continue;
      }
      const k = tierFor(entry.dueMs - nowMs);
      tiers.add(k);
      stored.push({ s: Math.floor(k / STORE_TIERS), dueMs: entry.dueMs, batch });
    }
    const stores = new Set(stored.map((record) => record.s));
    await Promise.all([...stores].map((s) => this.#openStore(s)));
    await this.#openTiers(tiers);
    // Offsets are given at append time, in call order: each entry learns its record's offset
    // from the store's end just before the call, and counts as live from then on.
    const appends = new AppendsSettled();
    const touched = new Set<PartitionLog>();
    // The first store offset of each store this call writes: the stores' intake stays below
    // it until the entries are written (#positions).
    const firsts: (number | undefined)[] = [];
    this.#placing.add(firsts);
    try {
      for (const { s, dueMs, batch } of stored) {
        const store = this.#stores[s]!;
        const offset = store.logEndOffset;
        firsts[s] ??= offset;
        store.appendBuiltTo(batch, appends);
        appends.count++;
        this.#live.add(s, offset);
        touched.add(store);
        this.#route({ store: s, offset, dueMs, exitMs: 0 }, nowMs, out);
      }
      // An entry is written only once its record is readable in the store.
      await appends.settled();
      // Before this add's marker goes: a save that then puts the intake past these records
      // syncs their stores first (an add's own sync may not have run yet).
      for (const store of touched) this.#unsynced.add(store);
      for (const log of await this.#appendAll(out, nowMs)) touched.add(log);
    } finally {
      this.#placing.delete(firsts);
    }
    return touched;
  }

  /**
   * Entries for the store records at or above the intake saved with the positions: an add
   * resolves once its records are synced, not its entries, so after a crash those entries may
   * be missing. Each such record gets an entry again (or goes to the due log when due); one
   * whose entry did survive then has two, and may come twice (at-least-once).
   */
  async #recoverIntake(intake: readonly (number | null)[]): Promise<void> {
    const nowMs = this.#host.now();
    const found: { s: number; offset: number; dueMs: number; batch: Uint8Array }[] = [];
    for (let s = 0; s < DELAY_STORES; s++) {
      const store = this.#stores[s];
      if (store === undefined) continue;
      // A store that lost its tail (power loss) ends below its saved intake.
      if ((intake[s] ?? 0) > store.highWatermark) this.#intakeClamped = true;
      this.#readIntake(s, store, intake[s] ?? 0, found);
    }
    if (found.length === 0) return;
    const remaining = found.filter((r) => r.dueMs - nowMs >= 1);
    await this.#openTiers(new Set(remaining.map((r) => tierFor(r.dueMs - nowMs))));
    const out: Out = { due: [], refs: new Map() };
    for (const { s, offset, dueMs, batch } of found) {
      this.#live.add(s, offset);
      if (this.#route({ store: s, offset, dueMs, exitMs: 0 }, nowMs, out)) continue;
      out.due.push({ dueMs, batch });
      this.#live.release(s, offset);
    }
    await this.#appendAll(out, nowMs);
    // Saved at the next chance (close included), so the next start does not redo this.
    this.#intakeRecovered = true;
    this.#host.warn(`${found.length} delayed records of ${this.dir} got their entries again`);
  }

  /** The records of store `s` from `from` on, with their due times. */
  #readIntake(
    s: number,
    store: PartitionLog,
    from: number,
    found: { s: number; offset: number; dueMs: number; batch: Uint8Array }[],
  ): void {
    let offset = Math.max(from, store.logStartOffset);
    while (offset < store.highWatermark) {
      let read: ReturnType<PartitionLog["read"]>;
      try {
        read = store.read(offset, 1024 * 1024);
      } catch (error) {
        if (!isSluiceError(error, "CORRUPT_BATCH")) throw error;
        this.#host.warn(`delay store ${s} of ${this.dir}: ${error.message}; skipped`);
        const resume = error.details["nextValidOffset"];
        if (typeof resume !== "number" || resume <= offset) return;
        offset = resume;
        continue;
      }
      for (const view of read.views) {
        for (let at = 0; at < view.length; ) {
          const batch = view.subarray(at, at + batchSizeAt(view, at));
          at += batch.length;
          for (const decoded of decodeRecordBatches(batch, { checkCrc: false })) {
            for (const record of decoded.records) {
              const dueMs = headerInteger(record.headers, DUE_HEADER);
              if (dueMs !== undefined) found.push({ s, offset: record.offset, dueMs, batch });
            }
          }
        }
      }
      offset = Math.max(offset + 1, read.nextOffset);
    }
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

  /** Opens tiers k (so routing stays synchronous). */
  async #openTiers(ks: Iterable<number>): Promise<void> {
    for (const k of ks) {
      const tier = this.#tiers[k]!;
      if (tier.log !== undefined) continue;
      const log = await this.#openLog(logName("ref", k));
      if (tier.log !== undefined) {
        await log.close();
        continue;
      }
      tier.log = log;
      tier.position = log.logStartOffset;
      tier.headExitMs = Number.POSITIVE_INFINITY;
    }
  }

  /** Adds `ref` to the entries for its next tier, or, when due, to the records to read out. */
  #route(ref: DelayRef, nowMs: number, out: Out): boolean {
    const remainingMs = ref.dueMs - nowMs;
    if (remainingMs < 1) return false;
    const k = tierFor(remainingMs);
    const tier = this.#tiers[k]!;
    assert(tier.log !== undefined, "a tier is opened before entries are routed to it");
    const exitMs = Math.max(nowMs + 2 ** k, tier.lastExitMs);
    tier.lastExitMs = exitMs;
    if (tier.headExitMs === Number.POSITIVE_INFINITY) tier.headExitMs = exitMs;
    // The entry is the caller's to change (read from a tier, or made for it): a copy per
    // move was a cell more per record and tier.
    ref.exitMs = exitMs;
    const list = out.refs.get(k);
    if (list === undefined) out.refs.set(k, [ref]);
    else list.push(ref);
    return true;
  }

  /**
   * Appends the entries to their tiers and the due records to the due log (in due order), all
   * issued at once. Returns the logs written.
   */
  async #appendAll(out: Out, nowMs: number): Promise<Set<PartitionLog>> {
    const appends: Promise<unknown>[] = [];
    const touched = new Set<PartitionLog>();
    for (const [k, refs] of out.refs) {
      const log = this.#tiers[k]!.log!;
      this.#unsynced.add(log);
      touched.add(log);
      for (let i = 0; i < refs.length; i += REF_BATCH_ENTRIES_MAX) {
        const batch = encodeRefBatch(refs.slice(i, i + REF_BATCH_ENTRIES_MAX), nowMs);
        appends.push(log.appendBuilt(batch));
      }
    }
    out.due.sort((a, b) => a.dueMs - b.dueMs);
    for (const batch of this.#dueBatches(out.due)) appends.push(this.#appendDue(batch));
    if (out.due.length > 0) touched.add(this.due);
    await Promise.all(appends);
    // Again once written: a positions save that took the set while these were in flight
    // synced before they were readable, and a later one must sync them.
    for (const k of out.refs.keys()) this.#unsynced.add(this.#tiers[k]!.log!);
    // A move round that read a tier while these appends were in flight saw it empty: its head
    // is at most the first exit written here (a lower bound only costs an early look).
    for (const [k, refs] of out.refs) {
      const tier = this.#tiers[k]!;
      const firstExitMs = refs[0]?.exitMs ?? nowMs;
      if (tier.headExitMs !== undefined) tier.headExitMs = Math.min(tier.headExitMs, firstExitMs);
    }
    this.#schedule(this.#host.now());
    return touched;
  }

  /**
   * The due log's batches for one round's records, in due order: a lone record as stored; more
   * are written as few large batches, so a consumer's fetch reads a round's records in a batch
   * or two, not one batch each. Stored batches are merged as bytes (queue_delay_batches.ts):
   * only the offset and timestamp deltas are rewritten and one CRC computed. A group with a
   * stored batch that is not plain is decoded and encoded again; a record that fails to
   * decode is reported and left out.
   */
  #dueBatches(due: readonly { batch: Uint8Array }[]): Uint8Array[] {
    if (due.length <= 1) return due.map((d) => d.batch);
    const bytesTarget = Math.min(DUE_BATCH_BYTES_TARGET, this.due.config.segmentBytes / 4);
    const out: Uint8Array[] = [];
    let group: Uint8Array[] = [];
    let bytes = 0;
    const flush = () => {
      if (group.length === 0) return;
      const merged = group.length === 1 ? group[0] : mergeStored(group);
      if (merged !== undefined) out.push(merged);
      else out.push(...this.#reencoded(group, bytesTarget));
      group = [];
      bytes = 0;
    };
    for (const { batch } of due) {
      if (group.length > 0 && bytes + batch.length > bytesTarget) flush();
      group.push(batch);
      bytes += batch.length;
    }
    flush();
    return out;
  }

  /** The records of stored batches decoded and encoded again (damaged ones reported, left out). */
  #reencoded(batches: readonly Uint8Array[], bytesTarget: number): Uint8Array[] {
    const records: RecordInput[] = [];
    for (const batch of batches) {
      try {
        for (const decoded of decodeRecordBatches(batch)) {
          for (const { key, value, headers, timestamp } of decoded.records) {
            records.push({ key, value, headers, timestamp });
          }
        }
      } catch (error) {
        if (!isSluiceError(error)) throw error;
        this.#host.warn(`a delayed record of ${this.dir} is damaged and was left out: ${error}`);
      }
    }
    if (records.length === 0) return [];
    return batchesOf(records, bytesTarget).map((group) => encodeRecordBatch(group));
  }

  /**
   * Appends one batch to the due log; a damaged one is reported and left out. Every batch here
   * was built by #dueBatches (its CRC stamped there) or is a stored batch as the store's read
   * returned it (its CRC checked by that read): appended without a second CRC pass.
   */
  #appendDue(batch: Uint8Array): Promise<unknown> {
    try {
      return this.due.appendBuilt(batch);
    } catch (error) {
      if (!isSluiceError(error, "CORRUPT_BATCH") && !isSluiceError(error, "INVALID_BATCH")) {
        return Promise.reject(error);
      }
      this.#host.warn(`a delayed record of ${this.dir} is damaged and was left out: ${error}`);
      return Promise.resolve();
    }
  }

  /**
   * Moves every entry whose tier exit time has come to its next tier or, with its record, to
   * the due log. Runs one round at a time (a call during a round waits for it, then runs
   * another). The timer calls it; tests with an injected clock call it after moving the clock.
   * Returns entries moved.
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
    const nowMs = this.#host.now();
    const taken: Taken[] = [];
    for (const tier of this.#allTiers) {
      if (tier.log === undefined) continue;
      if (tier.headExitMs !== undefined && tier.headExitMs > nowMs) continue;
      const took = this.#takeExited(tier, nowMs);
      if (took.position !== tier.position) taken.push(took);
    }
    if (taken.length === 0) {
      this.#schedule(this.#host.now());
      return 0;
    }
    const refs = taken.flatMap((t) => t.refs);
    const copies = taken.flatMap((t) => t.copies);
    const lost = taken.flatMap((t) => t.lost);
    await this.#openTiers(
      new Set(refs.filter((r) => r.dueMs - nowMs >= 1).map((r) => tierFor(r.dueMs - nowMs))),
    );
    const out: Out = { due: [], refs: new Map() };
    const released = refs.filter((ref) => !this.#route(ref, nowMs, out));
    // In store order, so records stored side by side (one add, close due times) share a read.
    released.sort((a, b) => a.store - b.store || a.offset - b.offset);
    const window: StoreWindow = {
      store: -1,
      start: 0,
      end: 0,
      batches: new Map(),
      run: 1,
      kept: new Uint8Array(0),
      keptBytes: 0,
      keptHintBytes: released.length * STORED_BYTES_GUESS,
    };
    for (const [i, ref] of released.entries()) {
      if (!inWindow(window, ref)) window.run = runFrom(released, i);
      const batch = this.#stored(ref, window);
      if (batch !== undefined) out.due.push({ dueMs: ref.dueMs, batch });
    }
    // Copies from legacy tiers go to the store (or the due log) as new adds would.
    if (copies.length > 0) await this.#place(copies, nowMs);
    const touched = await this.#appendAll(out, nowMs);
    for (const { tier, position } of taken) tier.position = position;
    for (const ref of released) this.#live.release(ref.store, ref.offset);
    for (const ref of lost) this.#live.release(ref.store, ref.offset);
    if (touched.has(this.due)) {
      // Synced now rather than when a consumer accepts them: the accept then rarely waits.
      this.dueDurable().catch((error) => this.#host.warn(`the due log of ${this.dir}: ${error}`));
    }
    this.#persistSoon();
    return refs.length + copies.length + lost.length;
  }

  /** The stored batch an entry points at, or undefined (reported) when it is not there. */
  #stored(ref: DelayRef, window: StoreWindow): Uint8Array | undefined {
    const store = this.#stores[ref.store];
    const where = `store ${ref.store} offset ${ref.offset} of ${this.dir}`;
    if (store === undefined || ref.offset < store.logStartOffset) {
      this.#host.warn(`a delay entry points at ${where}, which is not there; skipped`);
      return undefined;
    }
    if (ref.offset >= store.highWatermark) {
      // Only an add that never resolved writes an entry past the store's synced end: its
      // original record is still in the queue and is delayed again.
      this.#host.warn(`a delay entry points past the end of ${where}; skipped`);
      return undefined;
    }
    try {
      if (!inWindow(window, ref)) readWindow(store, ref, window);
      const batch = window.batches.get(ref.offset);
      if (batch !== undefined && lastOffsetDeltaAt(batch, 0) === 0) {
        // The next window's read may overwrite the scratch: what the round keeps is copied out
        // (also a view of the tail cache: asking a view for its buffer costs more than the copy).
        return keep(window, batch);
      }
      this.#host.warn(`the batch at ${where} is not the one record it should be; skipped`);
    } catch (error) {
      if (!isSluiceError(error)) throw error;
      this.#host.warn(`the record at ${where} cannot be read (${error.message}); skipped`);
    }
    return undefined;
  }

  /** Reads tier entries from `from`, calling `each` until it returns false; returns the end. */
  #scanRefs(
    tier: Tier,
    from: number,
    entriesMax: number,
    each: (ref: DelayRef, offset: number) => boolean,
  ): number {
    const log = tier.log!;
    let position = Math.max(from, log.logStartOffset);
    let count = 0;
    const visit = (offset: number, ref: DelayRef | undefined): boolean => {
      if (offset < position) return true;
      if (ref === undefined) {
        this.#host.warn(`delay tier ${tier.k} of ${this.dir}: a bad entry at ${offset}; skipped`);
      } else if (!each(ref, offset)) {
        return false;
      }
      position = offset + 1;
      count++;
      return true;
    };
    scan: while (position < log.highWatermark && count < entriesMax) {
      let read: ReturnType<PartitionLog["read"]>;
      try {
        read = log.read(position, REF_READ_BYTES);
      } catch (error) {
        const resume = this.#skipDamage(tier, position, error);
        if (resume === undefined) break;
        position = resume;
        continue;
      }
      for (const view of read.views) {
        // The read checked every batch's CRC already.
        if (!eachEntry(view, visit)) break scan;
      }
      position = Math.max(position, read.nextOffset);
    }
    return position;
  }

  /** Where to go on after damage in a tier, or undefined to stop there. */
  #skipDamage(tier: Tier, position: number, error: unknown): number | undefined {
    if (!isSluiceError(error, "CORRUPT_BATCH")) throw error;
    const resume = error.details["nextValidOffset"];
    this.#host.warn(`delay tier ${tier.k} of ${this.dir}: ${error.message}; skipped`);
    if (typeof resume !== "number" || resume <= position) return undefined;
    return resume;
  }

  /**
   * Whether an entry written before the open points at or past its store's end at open: its
   * record was not on disk when the power went (its add never resolved, so its original is
   * still in the queue). The offset has since been, or will be, given to another record, which
   * the entry must not deliver at its own (earlier) time. Reported and skipped.
   * The store's end at open is kept in memory only: if the queue opens again after new records
   * took those offsets and before such an entry leaves its tier, the entry is not recognised.
   */
  #lostAtOpen(ref: DelayRef): boolean {
    const openEnd = this.#storeOpenEnds[ref.store] ?? 0;
    if (ref.offset < openEnd) return false;
    this.#host.warn(
      `a delay entry points at store ${ref.store} offset ${ref.offset} of ${this.dir}, past ` +
        `the store's end ${openEnd} at open (its record was lost); skipped`,
    );
    return true;
  }

  /** The entries (or legacy copies) at the head of `tier` whose exit time is at or before now. */
  #takeExited(tier: Tier, nowMs: number): Taken {
    const log = tier.log!;
    tier.headExitMs = Number.POSITIVE_INFINITY;
    if (tier.kind === "legacy") return this.#takeCopies(tier, nowMs);
    const refs: DelayRef[] = [];
    const lost: DelayRef[] = [];
    const position = this.#scanRefs(tier, tier.position, MOVE_ENTRIES_MAX, (ref, offset) => {
      if (ref.exitMs > nowMs) {
        tier.headExitMs = ref.exitMs;
        return false;
      }
      if (offset < tier.openEnd && this.#lostAtOpen(ref)) lost.push(ref);
      else refs.push(ref);
      return true;
    });
    if (position < log.highWatermark && tier.headExitMs === Number.POSITIVE_INFINITY) {
      tier.headExitMs = undefined; // stopped by the entry budget: look again at once
    }
    return { tier, position, refs, copies: [], lost };
  }

  /** The copies at the head of a legacy tier whose exit time has come. */
  #takeCopies(tier: Tier, nowMs: number): Taken {
    const log = tier.log!;
    const copies: DelayEntry[] = [];
    let position = Math.max(tier.position, log.logStartOffset);
    let bytes = 0;
    scan: while (position < log.highWatermark && bytes < MOVE_BYTES_MAX) {
      let read: ReturnType<PartitionLog["read"]>;
      try {
        read = log.read(position, 256 * 1024, { checkEveryCrc: true });
      } catch (error) {
        const resume = this.#skipDamage(tier, position, error);
        if (resume === undefined) break;
        position = resume;
        continue;
      }
      for (const view of read.views) {
        bytes += view.length;
        for (const batch of decodeRecordBatches(view, { checkCrc: false })) {
          for (const record of batch.records) {
            if (record.offset < position) continue;
            const exitMs = headerInteger(record.headers, EXIT_HEADER) ?? 0;
            if (exitMs > nowMs) {
              tier.headExitMs = exitMs;
              break scan;
            }
            const dueMs = headerInteger(record.headers, DUE_HEADER) ?? nowMs;
            const deliveries = headerInteger(record.headers, DELIVERIES_HEADER) ?? 0;
            const { key, value, headers, timestamp } = record;
            copies.push({ record: { key, value, headers, timestamp }, dueMs, deliveries });
            position = record.offset + 1;
          }
        }
      }
      position = Math.max(position, read.nextOffset);
    }
    if (position < log.highWatermark && tier.headExitMs === Number.POSITIVE_INFINITY) {
      tier.headExitMs = undefined; // stopped by the byte budget: look again at once
    }
    return { tier, position, refs: [], copies, lost: [] };
  }

  /** Sets the timer for the earliest tier exit. */
  #schedule(nowMs: number): void {
    if (this.#closed) return;
    let atMs = Number.POSITIVE_INFINITY;
    for (const tier of this.#allTiers) {
      if (tier.log === undefined) continue;
      atMs = Math.min(atMs, tier.headExitMs ?? nowMs);
    }
    if (!Number.isFinite(atMs) || atMs >= this.#timerAtMs) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAtMs = atMs;
    const waitMs = Math.min(Math.max(0, atMs - nowMs), TIMER_MS_MAX);
    this.#timer = setTimeout(this.#fire, waitMs);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** The timer's work: the move round it was set for, then the timer for the next one. */
  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#timerAtMs = Number.POSITIVE_INFINITY;
    this.moveDue()
      .catch((error) => this.#host.warn(`delayed records of ${this.dir}: ${String(error)}`))
      .finally(() => this.#schedule(this.#host.now()));
  };

  /**
   * Starts the move round the timer is set for when its time has come and the timer has not
   * run yet (not while a round is under way: the timer then runs as it would). The queue
   * calls this on each append to its logs and on each fetch. Most of a late delivery's
   * lateness was its last move's timer running late: the broker's event loop, back from a
   * stall (its core taken by other programs, or a long turn), handles the I/O it finds
   * waiting before its timers, and records that fell due meanwhile waited for all of it
   * (bench/RESULTS.md, dly21). Started from here, in a microtask of that turn, the round runs
   * among that I/O. It takes what the timer's would (exit and due times at or before the
   * clock), so nothing leaves a tier or reaches the due log sooner than it may.
   */
  moveIfOverdue(nowMs: number): void {
    if (this.#timer === undefined || this.#timerAtMs > nowMs) return;
    if (this.#moving !== undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    queueMicrotask(this.#fireOverdue);
  }

  readonly #fireOverdue = (): void => {
    // A timer set since (by an add, for an exit as early or earlier) is for this round too.
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#fire();
  };

  /**
   * The positions to save. A store's intake is the offset below which every record has its
   * entry written: the end of the store, or the first offset of an add still under way. The
   * save syncs the tiers those entries went to before the file is written.
   */
  #positions(): Positions {
    const of = (tiers: Tier[]) =>
      tiers.map((tier) => (tier.log === undefined ? null : tier.position));
    const intake = this.#stores.map((store, s) => {
      if (store === undefined) return null;
      let end = store.logEndOffset;
      for (const firsts of this.#placing) end = Math.min(end, firsts[s] ?? end);
      return end;
    });
    return { refs: of(this.#tiers), legacy: of(this.#legacy), intake };
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

  /**
   * Writes the tier positions (atomically), then deletes tier segments wholly below them and
   * store segments no entry still points into.
   */
  persistPositions(): Promise<void> {
    // One save at a time, in order: a later save's file must never be replaced by an earlier
    // one's, whose positions are behind the releases the later one applied.
    const save = this.#saving.catch(() => undefined).then(() => this.#persistNow());
    this.#saving = save;
    return save;
  }

  async #persistNow(): Promise<void> {
    await this.#trimDue();
    const positions = this.#positions();
    const json = JSON.stringify(positions);
    if (json === this.#persisted) return;
    const released = this.#live.takeReleased();
    try {
      // The entries these positions passed were written to their next logs before the
      // positions moved: once those logs are synced, the positions may reach the disk.
      if (this.#host.fsync) await this.#syncAll();
      // Positions only ever lag (entries move again, never lost); without fsynced tier logs an
      // fsync here buys nothing and would stall every move round behind it.
      await this.#writePositions(`${json}\n`);
    } catch (error) {
      this.#live.restoreReleased(released);
      throw error;
    }
    this.#persisted = json;
    this.#live.applyReleased(released);
    await this.#trimTiers(positions);
  }

  /**
   * Replaces positions.json. Its fsyncs run on the thread pool where the FileIO can: on a busy
   * disk two fsyncs on the event loop every POSITIONS_PERSIST_MS held up every move round,
   * fetch and append of the process behind them, and delayed records came that much later.
   */
  async #writePositions(text: string): Promise<void> {
    const io = this.#host.io;
    if (this.#host.fsync && io.writeFileAtomicAsync !== undefined) {
      await io.writeFileAtomicAsync(this.dir, POSITIONS_FILE, text);
    } else {
      io.writeFileAtomic(this.dir, POSITIONS_FILE, text, { sync: this.#host.fsync });
    }
  }

  async #trimTiers(positions: Positions): Promise<void> {
    for (let k = 0; k < DELAY_TIERS; k++) {
      const ref = this.#tiers[k]!.log;
      if (ref !== undefined) await ref.deleteSegmentsBelow(positions.refs[k] ?? 0);
      const legacy = this.#legacy[k]!.log;
      if (legacy !== undefined) await legacy.deleteSegmentsBelow(positions.legacy[k] ?? 0);
    }
    for (let s = 0; s < DELAY_STORES; s++) {
      const store = this.#stores[s];
      if (store !== undefined) {
        await store.deleteSegmentsBelow(this.#live.floor(s, store.logEndOffset));
      }
    }
  }

  /** A log's sync, shared with the calls made while one is under way. */
  #sync(log: PartitionLog): Promise<void> {
    let coalesced = this.#syncs.get(log);
    if (coalesced === undefined) {
      coalesced = new CoalescedSync(() => log.syncWritten());
      this.#syncs.set(log, coalesced);
    }
    return coalesced.sync();
  }

  async #syncAll(): Promise<void> {
    const logs = [...this.#unsynced];
    this.#unsynced.clear();
    try {
      await Promise.all([this.dueDurable(), ...logs.map((log) => this.#sync(log))]);
    } catch (error) {
      for (const log of logs) this.#unsynced.add(log);
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

  /** Store references not yet passed durably to the due log, per store (for tests). */
  storeReferences(store: number): number {
    return this.#live.count(store);
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
      await this.#closeLogs();
    }
  }

  async #closeLogs(): Promise<void> {
    const logs = [this.due, ...this.#stores, ...this.#allTiers.map((t) => t.log)];
    await Promise.allSettled(logs.flatMap((log) => (log === undefined ? [] : [log.close()])));
  }
}

/**
 * Store batches read by one move round, by offset: one read serves records side by side
 * (`run` of them wanted from `start` on; a record has one batch).
 */
type StoreWindow = {
  store: number;
  start: number;
  end: number;
  batches: Map<number, Uint8Array>;
  run: number;
  /**
   * The round's copies of the records it keeps, side by side: one allocation for about the
   * round's records rather than one per record (each was ~4 µs, 2% of the broker's samples at
   * 10,000/s). Never reused: the due batches take views of it.
   */
  kept: Uint8Array;
  keptBytes: number;
  keptHintBytes: number;
};

/**
 * Settles once every append told to it has: one promise for an add's one-record appends to
 * the stores (appendBuiltTo), where a promise per record and Promise.all's reactions over
 * them were ~7 heap cells per delayed record. Rejects with the first refusal, once all have
 * settled.
 */
class AppendsSettled implements AppendListener {
  /** Appends made with this listener; set by the caller as it makes them. */
  count = 0;
  #told = 0;
  #failure: Error | undefined;
  #waiter: { resolve: () => void; reject: (error: Error) => void } | undefined;

  appended(): void {
    this.#told++;
    this.#settle();
  }

  refused(error: Error): void {
    this.#failure ??= error;
    this.#told++;
    this.#settle();
  }

  /** Resolves once all `count` appends are told (call after the last one is made). */
  settled(): Promise<void> {
    assert(this.#waiter === undefined, "one waiter per set of appends");
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
      this.#settle();
    });
  }

  #settle(): void {
    assert(this.#told <= this.count, "each append is told once");
    const waiter = this.#waiter;
    if (waiter === undefined || this.#told < this.count) return;
    this.#waiter = undefined;
    if (this.#failure === undefined) waiter.resolve();
    else waiter.reject(this.#failure);
  }
}

/** A copy of `batch` in the round's kept memory (see StoreWindow). */
function keep(window: StoreWindow, batch: Uint8Array): Uint8Array {
  if (window.kept.length - window.keptBytes < batch.length) {
    const bytes = Math.min(STORE_READ_BYTES_MAX, Math.max(window.keptHintBytes, batch.length));
    window.kept = new Uint8Array(Math.max(bytes, batch.length));
    window.keptBytes = 0;
  }
  const copy = window.kept.subarray(window.keptBytes, window.keptBytes + batch.length);
  copy.set(batch);
  window.keptBytes += batch.length;
  return copy;
}

/** Bytes one read of a store takes at most for a move round's window. */
const STORE_READ_BYTES_MAX = 256 * 1024;
/** Bytes a stored record is guessed to take, to size a read for a run of them. */
const STORED_BYTES_GUESS = 1280;

/**
 * The memory every store read of a move round is read into, shared by the process's delayed
 * queues (a round reads synchronously and copies out the ~1 KiB record it keeps). A fresh
 * buffer per read made 8 KiB of garbage per delayed record, ~80 MB/s at 10,000/s, and its
 * allocation was a large part of readSync's samples (bench/RESULTS.md, issue 13, dly19).
 */
let scratch: Uint8Array | undefined;
function storeScratch(): Uint8Array {
  scratch ??= new Uint8Array(STORE_READ_BYTES_MAX + READ_AHEAD_BYTES_MAX);
  return scratch;
}

function inWindow(window: StoreWindow, ref: DelayRef): boolean {
  return window.store === ref.store && window.start <= ref.offset && ref.offset < window.end;
}

/** How many refs from `i` on point at consecutive offsets of one store. */
function runFrom(refs: readonly DelayRef[], i: number): number {
  let run = 1;
  while (i + run < refs.length) {
    const next = refs[i + run]!;
    if (next.store !== refs[i]!.store || next.offset !== refs[i]!.offset + run) break;
    run++;
  }
  return run;
}

function readWindow(store: PartitionLog, ref: DelayRef, window: StoreWindow): void {
  // A run of one reads exactly its batch (a read returns at least one whole batch).
  const bytes =
    window.run === 1 ? 1 : Math.min(STORE_READ_BYTES_MAX, window.run * STORED_BYTES_GUESS);
  // Emptied first: a read that throws may have overwritten the scratch the old views lie in.
  window.store = -1;
  window.batches.clear();
  const read = store.read(ref.offset, bytes, { scratch: storeScratch() });
  window.store = ref.store;
  window.start = ref.offset;
  window.end = read.nextOffset;
  for (const view of read.views) {
    for (let at = 0; at < view.length; ) {
      const size = batchSizeAt(view, at);
      const batch = view.subarray(at, at + size);
      window.batches.set(baseOffsetAt(batch, 0), batch);
      at += size;
    }
  }
  assert(window.end > ref.offset, "a read below the high watermark returns a batch");
}

/**
 * Calls `each` with the entries of a view of whole tier batches, in order, until it answers
 * false; returns whether it went through them all. Entries are read in place (eachRef), or
 * decoded when they must be.
 */
function eachEntry(
  view: Uint8Array,
  each: (offset: number, ref: DelayRef | undefined) => boolean,
): boolean {
  for (let at = 0; at < view.length; ) {
    const batch = view.subarray(at, at + batchSizeAt(view, at));
    at += batch.length;
    const compressed = (readInt16(batch, ATTRIBUTES_AT) & COMPRESSION_MASK) !== 0;
    const position = {
      baseOffset: baseOffsetAt(batch, 0),
      recordCount: recordCountAt(batch, 0),
      stores: DELAY_STORES,
    };
    const inPlace = compressed ? undefined : eachRef(batch, position, each);
    if (inPlace === false) return false;
    if (inPlace === true) continue;
    for (const decoded of decodeRecordBatches(batch, { checkCrc: false })) {
      for (const record of decoded.records) {
        if (!each(record.offset, decodeRef(record.value, DELAY_STORES))) return false;
      }
    }
  }
  return true;
}

/** Tier positions as saved: per tier, the first offset not moved out (null: no log). */
type Positions = { refs: (number | null)[]; legacy: (number | null)[]; intake: (number | null)[] };

function readPositions(dir: string): Positions {
  const clean = (raw: unknown) =>
    Array.isArray(raw)
      ? raw.map((value) => (Number.isSafeInteger(value) && value >= 0 ? value : null))
      : [];
  try {
    const raw = JSON.parse(fs.readFileSync(join(dir, POSITIONS_FILE), "utf8")) as unknown;
    // The file of earlier versions: one array, the positions of the tiers of whole copies.
    if (Array.isArray(raw)) return { refs: [], legacy: clean(raw), intake: [] };
    const saved = (raw ?? {}) as { refs?: unknown; legacy?: unknown; intake?: unknown };
    return { refs: clean(saved.refs), legacy: clean(saved.legacy), intake: clean(saved.intake) };
  } catch {
    // No file yet (or a damaged one): every tier starts at its log start, so entries move
    // again rather than being lost.
    return { refs: [], legacy: [], intake: [] };
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
  const deliveriesHeader = { key: DELIVERIES_KEY_BYTES, digitsMax: DUE_DIGITS_MAX };
  let carriedAny = false;
  const carry = (offset: number, carried: number) => {
    if (carried <= 0 || !inRange(offset)) return;
    const own = cursor.deliveriesAt(offset);
    if (own > carried) return;
    cursor.carryDeliveries(offset, carried + own);
    carriedAny = true;
  };
  for (const view of views) {
    for (let at = 0; at < view.length; ) {
      const batch = view.subarray(at, at + batchSizeAt(view, at));
      at += batch.length;
      // Only the one header is read from each record; a batch that is not plain is decoded.
      if (eachHeaderInteger(batch, deliveriesHeader, carry)) continue;
      for (const decoded of decodeRecordBatches(batch)) {
        for (const record of decoded.records) {
          carry(record.offset, headerInteger(record.headers, DELIVERIES_HEADER) ?? 0);
        }
      }
    }
  }
  // Counts changed nowhere: the ranges stand as acquired (one count each).
  if (!carriedAny) return ranges;
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
  return dueFrom(record.timestamp, at, headerInteger(record.headers, DELAY_HEADER));
}

/** publishedDueMs from the record's timestamp and its two headers' values (if valid). */
function dueFrom(timestampMs: number, atMs?: number, delayMs?: number): number | undefined {
  if (atMs !== undefined) return atMs <= timestampMs + DELAY_MS_MAX ? atMs : undefined;
  if (delayMs === undefined || delayMs > DELAY_MS_MAX) return undefined;
  return timestampMs + delayMs;
}

/** The header keys publishedDueMs reads, in the order dueFrom takes their values. */
const DUE_KEYS = { keys: [DELIVER_AT_KEY_BYTES, DELAY_KEY_BYTES], digitsMax: DUE_DIGITS_MAX };
/** DUE_KEYS, then the headers a stored record gets anew (a record naming one is decoded). */
const DELAYABLE_KEYS = {
  keys: [...DUE_KEYS.keys, ...[...INTERNAL].map((key) => text.encode(key))],
  digitsMax: DUE_DIGITS_MAX,
};
const INTERNAL_NAMED = ((1 << DELAYABLE_KEYS.keys.length) - 1) & ~0b11;

/**
 * Told of each record of a log to delay, with its published due time: as it lies in its batch
 * (a LyingRecord, which has `where`) or decoded (a LogRecord).
 */
export type DelayableVisitor = (
  offset: number,
  publishedDueMs: number | undefined,
  found: LyingRecord | LogRecord,
) => void;

/**
 * Tells `each` of the records of `log` from `first` to `last`, in order, each with its
 * published due time: a record of an uncompressed batch as it lies (no record decoded; its CRC
 * was checked by the read), others decoded. A batch with a record that names one of the delay
 * path's own headers is decoded: storedBatch drops those headers, which the bytes as they lie
 * would keep. A callback, not a generator of wrapped records: the wrapper and the generator's
 * steps were three heap cells per delayed record (bench/RESULTS.md, issue 13, dly20).
 */
export function eachDelayable(
  log: { read(offset: number, maxBytes: number): { views: Uint8Array[]; nextOffset: number } },
  span: { first: number; last: number; logStartOffset: number; highWatermark: number },
  each: DelayableVisitor,
): void {
  let offset = Math.max(span.first, span.logStartOffset);
  const lying: Lying = { offsets: [], dues: [], records: [] };
  while (offset <= span.last && offset < span.highWatermark) {
    const read = log.read(offset, 1024 * 1024);
    for (const view of read.views) {
      for (let at = 0; at < view.length; ) {
        const batch = view.subarray(at, at + batchSizeAt(view, at));
        at += batch.length;
        delayableOf(batch, { first: offset, last: span.last }, lying, each);
      }
    }
    assert(read.nextOffset > offset, "a read below the high watermark makes progress");
    offset = read.nextOffset;
  }
}

/** The records of one batch found lying, held until the batch is known to be plain. */
type Lying = { offsets: number[]; dues: (number | undefined)[]; records: LyingRecord[] };

function delayableOf(
  batch: Uint8Array,
  span: { first: number; last: number },
  lying: Lying,
  each: DelayableVisitor,
): void {
  const { first, last } = span;
  lying.offsets.length = 0;
  lying.dues.length = 0;
  lying.records.length = 0;
  let plain = true;
  const walked = eachHeaderIntegers(batch, DELAYABLE_KEYS, (offset, timestampMs, found, where) => {
    if (offset < first || offset > last) return;
    if ((where.named & INTERNAL_NAMED) !== 0 || !Number.isSafeInteger(timestampMs)) plain = false;
    lying.offsets.push(offset);
    lying.dues.push(dueFrom(timestampMs, found[0], found[1]));
    lying.records.push({ batch, where: { ...where }, timestampMs });
  });
  if (walked && plain) {
    for (let i = 0; i < lying.offsets.length; i++) {
      each(lying.offsets[i]!, lying.dues[i], lying.records[i]!);
    }
    return;
  }
  for (const decoded of decodeRecordBatches(batch, { checkCrc: false })) {
    for (const record of decoded.records) {
      if (record.offset < first || record.offset > last) continue;
      each(record.offset, publishedDueMs(record), record);
    }
  }
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
    // An uncompressed batch's due headers are read where they lie (no record decoded, no
    // CRC: the read that returned the batch checked it); others are decoded.
    if (!compressed && this.#walk(batch, judged)) return judged;
    judged.notDue = null;
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

  /**
   * Judges the records of an uncompressed batch by their due headers as they lie, as
   * publishedDueMs would; false when the batch cannot be walked so.
   */
  #walk(batch: Uint8Array, judged: HeldBatch): boolean {
    let unsafe = false;
    const walked = eachHeaderIntegers(batch, DUE_KEYS, (offset, timestampMs, found) => {
      // The decoder refuses a record whose timestamp is not a safe integer (the batch is then
      // not held back); the walk must give the same answer.
      if (!Number.isSafeInteger(timestampMs)) unsafe = true;
      const dueMs = dueFrom(timestampMs, found[0], found[1]);
      if (dueMs === undefined || dueMs <= this.#nowMs) return;
      judged.notDue ??= new Map();
      judged.notDue.set(offset, dueMs);
    });
    if (!walked) return false;
    if (unsafe) judged.notDue = null;
    return true;
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

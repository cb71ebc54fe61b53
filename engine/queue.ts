// One queue: a cursor per partition of its topic (queue_cursor.ts), its members, its durable
// state log (queue_state_log.ts) and its dead letters (queue_dead_letter.ts). Every change is
// made in memory first and, in the same synchronous step, added as a delta to the state log;
// an ack resolves once the log's group commit holding its deltas is durable. That ordering is
// what lets a compaction snapshot the memory at any moment between writes: the snapshot then
// holds exactly the deltas added so far.
//
//   fetch ─► expire due locks ─► per partition (rotating start): records waiting in the FIFO,
//            then new offsets from `next` ─► ACQUIRE deltas (group commit, nobody waits)
//   ack   ─► check every range (nothing changes on a refusal) ─► apply ─► ACCEPT deltas,
//            dead letters for rejects ─► resolve when the commit (and dead letters) are durable
//
// A dead letter is appended to the dead-letter topic (and flushed there when the queue's fsync
// is "always") before the DEAD_LETTER delta marks the original done: a crash in between writes
// it again after the restart, so dead letters are at-least-once and never lost.

import hyperid from "hyperid";
import {
  assert,
  BASE_TIMESTAMP_AT,
  baseOffsetAt,
  CallbackList,
  IdTable,
  batchSizeAt,
  decodeRecordBatches,
  encodeRecordBatch,
  isSluiceError,
  type LogRecord,
  type RecordInput,
  readInt64,
  SluiceError,
} from "../record/mod.ts";
import type { FileIO } from "./io.ts";
import type { PartitionLog, ReadResult } from "./partition_log.ts";
import { checkAcks, type QueueAck } from "./queue_ack.ts";
import type { QueueConfig } from "./queue_config.ts";
import {
  ACKED,
  type AcquiredRange,
  addToRuns,
  ARCHIVED,
  NO_OWNER,
  type OffsetRun,
  OWNER_SLOTS_MAX,
  QueueCursor,
  type SnapshotRun,
} from "./queue_cursor.ts";
import { type Death, type DeathReason, batchesOf, deadLetterRecord } from "./queue_dead_letter.ts";
import {
  admitBatchOf,
  BatchAtReads,
  BatchViews,
  type FetchBudget,
  fetchLimits,
  type QueueFetchOptions,
  takeNewBatches,
} from "./queue_fetch.ts";
import {
  DELTA_ACCEPT,
  DELTA_ACQUIRE,
  DELTA_DEAD_LETTER,
  DELTA_DELAYED,
  DELTA_DISCARD,
  DELTA_EXPIRED,
  DELTA_FLOOR,
  DELTA_MAXLEN,
  DELTA_TRUNCATE,
  type QueueCounters,
  QueueStateLog,
  type QueueStateTarget,
} from "./queue_state_log.ts";
import { ReadyBytes } from "./queue_maxbytes.ts";
import { dropHead, publishRoom } from "./queue_maxlen.ts";
import { PlainBatches } from "./queue_plain.ts";
import { PriorityOrder } from "./queue_priority.ts";
import { activeMember } from "./queue_single_active.ts";
import { ExpiryReader, isExpired, type JudgedBatch } from "./queue_ttl.ts";
import {
  carryDeliveries,
  type DelayEntry,
  type DelayTiers,
  DueReader,
  eachDelayable,
  type HeldBatch,
  retryDelayMs,
} from "./queue_delay.ts";

/** Members of one queue at most (owner slots are u16). */
export const QUEUE_MEMBERS_MAX = 1_000;
/** A dead letter that could not be written is tried again this long after the failure. */
export const DEAD_LETTER_RETRY_MS = 1_000;
/** Bytes left in a dead-letter batch for its header and framing. */
const BATCH_OVERHEAD_BYTES = 1024;
/** The first read of a queue assumes records of this size (then it learns the real size). */
const RECORD_BYTES_GUESS = 1024;
/** Reads one partition's part of a fetch makes at most. */
const NEW_READS_MAX = 16;
/** How often expired records at the head of a queue are looked for, by default. */
export const TTL_CHECK_MS_DEFAULT = 1_000;
/** Rounds of one partition's part of a fetch that an expired batch may split it into. */
const TTL_ROUNDS_MAX = 4;

assert(QUEUE_MEMBERS_MAX < OWNER_SLOTS_MAX, "member slots fit the owner array");

export type QueueFetchPartition = {
  partition: number;
  /** Whole record batches (zero-copy views) holding the acquired records, in offset order. */
  views: Uint8Array[];
  /** The records acquired, offset-ordered runs of one delivery count. */
  ranges: AcquiredRange[];
};

export type QueueFetchResult = {
  /** How long the acquired records stay locked to the member. */
  lockMs: number;
  /** Partitions with acquired records; empty when nothing was available. */
  partitions: QueueFetchPartition[];
};

export type QueuePartitionStats = {
  partition: number;
  floor: number;
  next: number;
  highWatermark: number;
  ready: number;
  acquired: number;
};

export type QueueStats = {
  name: string;
  topic: string;
  members: number;
  /** Records waiting to be acquired: available in the windows plus those past `next`. */
  ready: number;
  acquired: number;
  /** Records on their way to the dead-letter topic. */
  deadLettering: number;
  /** Acquisitions since the queue was declared (durable). */
  delivered: number;
  accepted: number;
  deadLettered: number;
  /** Rejected or past the limit with no dead-letter topic to go to. */
  discarded: number;
  /** Dead-lettered or discarded because their TTL ran out (durable; counted above too). */
  expired: number;
  /** Records waiting in the delay tiers, not yet due (queue_delay.ts). */
  delayed: number;
  /** Dropped from the head by max length (durable; counted in deadLettered or discarded). */
  overflowed: number;
  /** With maxLengthBytes: bytes of the ready records (queue_maxbytes.ts); else null. */
  readyBytes: number | null;
  /** With singleActiveConsumer: the member that gets every record (null: none, or off). */
  activeMember: string | null;
  /**
   * Age of the oldest ready record, from the base timestamp of the batch holding it (the
   * first record's timestamp there, read from the batch header); null when none is ready.
   */
  oldestReadyAgeMs: number | null;
  /** Typed-array bytes of every cursor window (see queue_cursor.ts). */
  memoryBytes: number;
  partitions: QueuePartitionStats[];
};

/** What a queue needs from the engine around it. */
export interface QueueHost {
  readonly io: FileIO;
  readonly compactAfterBytes?: number;
  /** fdatasyncs of the state log in flight at once (the log's default when absent). */
  readonly syncsInFlight?: number;
  /** Zeros a state log's spare generation holds at most (the log's default when absent). */
  readonly spareBytesMax?: number;
  /** Told each state-log commit fdatasync's duration in seconds. */
  readonly onFsync?: (seconds: number) => void;
  now(): number;
  warn(message: string): void;
  /** The logs of the dead-letter topic, created with one partition when missing. */
  deadLetterLogs(topic: string): Promise<PartitionLog[]>;
  /** Asks for an expiry sweep (`expire`) at `atMs` at the latest. */
  scheduleSweep(atMs: number): void;
  /** How often a sweep looks for expired records at the head (default TTL_CHECK_MS_DEFAULT). */
  readonly ttlCheckMs?: number;
}

type Holder = { memberId: string; slot: number };
/** Records of one partition given back with a delay, and when each is due by its count. */
type DelayedRuns = {
  partition: number;
  runs: OffsetRun[];
  /** When a record is due, from the deliveries it had and its published due time, if any. */
  dueOf: (deliveries: number, publishedDueMs: number | undefined) => number;
};
/** Records of a partition not due yet, found while taking new records (published delays). */
type Held = { due: DueReader; runs: OffsetRun[] };

const nextMemberId = hyperid({ urlSafe: true });

/**
 * Bytes a queue's fetch has read on the thread pool per partition whose next records the page
 * cache does not hold (Queue.prepareFetch), for the partitions it takes from in order until
 * their bytes fill it; reads served from these buffers read on from where they stop. A backlog
 * of 2 M records of 1 KiB drained at 120-121k msg/s with 4 MiB, 106-113k with 2 MiB (one
 * client process, alternated; bench/RESULTS.md "Cold reads").
 */
const QUEUE_PREPARE_BYTES = 4 * 1024 * 1024;

export class Queue implements QueueStateTarget {
  readonly config: QueueConfig;
  readonly partitionCount: number;
  readonly #host: QueueHost;
  readonly #logs: PartitionLog[];
  readonly #cursors: QueueCursor[];
  /** Per partition, whether the batch at `next` was seen to name no TTL or due-time header. */
  readonly #plainBatches: PlainBatches;
  /** Delay tiers; their due log is the last partition (queue_delay.ts). */
  readonly #delays: DelayTiers | undefined;
  /** With maxLengthBytes: the running sums of ready bytes (queue_maxbytes.ts). */
  readonly #readyBytes: ReadyBytes | undefined;
  /** Partitions whose snapshot was read on open; deltas for others are ignored. */
  readonly #restored: boolean[];
  #state!: QueueStateLog;
  #counters: QueueCounters = {
    delivered: 0,
    accepted: 0,
    deadLettered: 0,
    discarded: 0,
    expired: 0,
    overflowed: 0,
  };
  readonly #members = new Map<string, number>();
  readonly #freeSlots: number[] = [];
  #nextSlot = 1;
  readonly #unacked = new Uint32Array(QUEUE_MEMBERS_MAX + 1);
  /** Long-polling fetches' wake-ups: a CallbackList, not a Set (record/callback_list.ts). */
  readonly #listeners = new CallbackList();
  #notifyScheduled = false;
  readonly #unsubscribe: (() => void)[] = [];
  /**
   * Jobs in flight by a running number, awaited at close. An IdTable, not a Set: a job
   * deleted from a Set would keep what its promise holds reachable until the next full
   * collection (record/id_table.ts).
   */
  readonly #jobs = new IdTable<Promise<void>>();
  #nextJobId = 0;
  /** Dead letters to try again (they failed), by partition, and when. */
  #retry = new Map<number, OffsetRun[]>();
  /** The same for records that expired (they keep that reason). */
  #retryExpired = new Map<number, OffsetRun[]>();
  /** The same for records published with a due time whose delayed copies failed. */
  #retryHeld = new Map<number, OffsetRun[]>();
  #retryAtMs = Number.POSITIVE_INFINITY;
  #rotation = 0;
  /** When `expireRecords` looks at the heads again. */
  #ttlCheckAtMs = 0;
  #closed = false;
  /** Bytes per record in the batches fetched last, to size the next read. */
  #recordBytes = RECORD_BYTES_GUESS;
  /** A priority queue's fetch order (one partition per level); undefined: rotation. */
  readonly #priority: PriorityOrder | undefined;

  private constructor(
    config: QueueConfig,
    host: QueueHost,
    topicLogs: PartitionLog[],
    delays: DelayTiers | undefined,
  ) {
    assert(topicLogs.length === config.startOffsets.length, "one start offset per partition");
    assert(config.delays === (delays !== undefined), "delay tiers exactly when declared so");
    const logs = delays === undefined ? topicLogs : [...topicLogs, delays.due];
    const starts = delays === undefined ? config.startOffsets : [...config.startOffsets, 0];
    this.config = config;
    this.partitionCount = logs.length;
    this.#host = host;
    this.#logs = logs;
    this.#delays = delays;
    const limits = {
      maxInFlight: config.maxInFlight,
      deliveryLimit: config.deliveryLimit,
      lockMs: config.lockMs,
    };
    this.#cursors = starts.map(
      (start, partition) => new QueueCursor(partition, start, limits, this.#unacked),
    );
    this.#restored = logs.map(() => false);
    this.#plainBatches = new PlainBatches(logs.length);
    const { priorities, priorityRatio } = config;
    if (config.maxLengthBytes !== null) this.#readyBytes = new ReadyBytes(logs.length);
    assert(priorities === null || priorities === topicLogs.length, "one partition per level");
    this.#priority = priorities === null ? undefined : new PriorityOrder(priorities, priorityRatio);
    if (delays !== undefined) {
      // The floor as of now, returned once the state log holds it: segments of the due log
      // below it are never needed again, even after a crash.
      delays.durableDueFloor = async () => {
        const floor = this.#cursors.at(-1)!.floor;
        if (!this.#closed) await this.#state.commit();
        return floor;
      };
    }
  }

  /** A new queue: cursors at the start offsets, and a state log holding them, synced. */
  static async create(
    config: QueueConfig,
    host: QueueHost,
    logs: PartitionLog[],
    dir: string,
    delays?: DelayTiers,
  ): Promise<Queue> {
    const queue = new Queue(config, host, logs, delays);
    queue.#state = await QueueStateLog.create(dir, queue, queue.#logOptions());
    queue.#start([]);
    return queue;
  }

  /** A declared queue, recovered from its state log. */
  static async open(
    config: QueueConfig,
    host: QueueHost,
    logs: PartitionLog[],
    dir: string,
    delays?: DelayTiers,
  ): Promise<Queue> {
    const queue = new Queue(config, host, logs, delays);
    queue.#state = await QueueStateLog.open(dir, queue, {
      ...queue.#logOptions(),
      onCorruption: (error) => host.warn(`queue '${config.name}': ${error.message}`),
    });
    for (let partition = 0; partition < queue.partitionCount; partition++) {
      if (queue.#restored[partition]) continue;
      host.warn(
        `queue '${config.name}': the snapshot of partition ${partition} was lost to damage; ` +
          `it restarts at its start offset ${config.startOffsets[partition] ?? 0} (records are ` +
          "delivered again, none is lost)",
      );
    }
    queue.#start(queue.#reconcile());
    return queue;
  }

  get #ttl() {
    const { messageTtlMs, messageTtlHeader } = this.config;
    return { queueTtlMs: messageTtlMs, readHeaders: messageTtlHeader === "read" };
  }

  #logOptions() {
    return {
      io: this.#host.io,
      fsync: this.config.fsync === "always",
      ...(this.#host.compactAfterBytes === undefined
        ? {}
        : { compactAfterBytes: this.#host.compactAfterBytes }),
      ...(this.#host.syncsInFlight === undefined
        ? {}
        : { syncsInFlightMax: this.#host.syncsInFlight }),
      ...(this.#host.spareBytesMax === undefined
        ? {}
        : { spareBytesMax: this.#host.spareBytesMax }),
      ...(this.#host.onFsync === undefined ? {} : { onFsync: this.#host.onFsync }),
    };
  }

  /**
   * After a replay: windows past a log's end are cut back (the log lost records the queue had
   * seen), and records that reached the delivery limit are returned for dead-lettering.
   */
  #reconcile(): [number, OffsetRun[]][] {
    const limitReached: [number, OffsetRun[]][] = [];
    for (const cursor of this.#cursors) {
      const log = this.#logs[cursor.partition]!;
      if (cursor.next > log.highWatermark) {
        this.#host.warn(
          `queue '${this.config.name}': partition ${cursor.partition} ends at ` +
            `${log.highWatermark} but the queue had seen offsets up to ${cursor.next - 1}; ` +
            "its state past the log end is forgotten",
        );
        cursor.truncateTo(log.highWatermark);
        this.#state.add(DELTA_TRUNCATE, cursor.partition, log.highWatermark, 0);
      }
      const runs = cursor.finishReplay();
      if (runs.length > 0) limitReached.push([cursor.partition, runs]);
      cursor.checkInvariants();
    }
    return limitReached;
  }

  #start(limitReached: [number, OffsetRun[]][]): void {
    const appended = () => {
      // The hot path's turns also start a move round its timer is late for (see there).
      this.#delays?.moveIfOverdue(this.#host.now());
      this.#dropOverflow();
      this.#notify();
      // Records just arrived, so some wait: no need to look (appends are the hot path).
      this.#scheduleTtlCheck(true);
    };
    for (const log of this.#logs) this.#unsubscribe.push(log.onData(appended));
    for (const [partition, runs] of limitReached) this.#deadLetterLater(partition, runs);
    this.#dropOverflow();
    this.#scheduleTtlCheck(false);
  }

  // -------------------------------------------------------------------------------------------
  // QueueStateTarget: replay and snapshot.

  restoreCounters(counters: QueueCounters): void {
    this.#counters = { ...counters };
  }

  checkSnapshot(partition: number, floor: number, next: number): boolean {
    return partition < this.partitionCount && next - floor <= this.config.maxInFlight;
  }

  restorePartition(partition: number, floor: number, next: number, runs: SnapshotRun[]): void {
    this.#cursors[partition]!.restore(floor, next, runs);
    this.#restored[partition] = true;
  }

  checkDelta(kind: number, partition: number, _first: number, count: number): boolean {
    if (partition >= this.partitionCount) return false;
    if (kind === DELTA_FLOOR || kind === DELTA_TRUNCATE) return count === 0;
    return count >= 1 && count <= this.config.maxInFlight;
  }

  replay(kind: number, partition: number, first: number, count: number, deliveries: number): void {
    if (!this.#restored[partition]) return;
    const cursor = this.#cursors[partition]!;
    if (kind === DELTA_ACQUIRE) {
      if (!cursor.fitsReplay(first, count)) {
        throw new SluiceError(
          "CORRUPT_BATCH",
          `Queue '${this.config.name}': a replayed acquisition of ${first}..${first + count - 1} ` +
            `on partition ${partition} does not fit the window [${cursor.floor}, ${cursor.next})`,
          { queue: this.config.name, partition, offset: first },
        );
      }
      cursor.replayAcquire(first, count, Math.min(deliveries, this.config.deliveryLimit));
      this.#counters.delivered += count;
    } else if (kind === DELTA_ACCEPT) {
      cursor.replayDone(first, count, ACKED);
      this.#counters.accepted += count;
    } else if (kind === DELTA_DEAD_LETTER || kind === DELTA_DISCARD) {
      cursor.replayDone(first, count, ARCHIVED);
      if (kind === DELTA_DEAD_LETTER) this.#counters.deadLettered += count;
      else this.#counters.discarded += count;
    } else if (kind === DELTA_DELAYED) {
      cursor.replayDone(first, count, ARCHIVED);
    } else if (kind === DELTA_EXPIRED) {
      this.#counters.expired += count;
    } else if (kind === DELTA_MAXLEN) {
      this.#counters.overflowed += count;
    } else if (kind === DELTA_FLOOR) {
      cursor.jumpTo(first);
    } else {
      cursor.truncateTo(first);
    }
  }

  snapshotCounters(): QueueCounters {
    return { ...this.#counters };
  }

  snapshotPartition(partition: number) {
    const cursor = this.#cursors[partition]!;
    return { floor: cursor.floor, next: cursor.next, runs: cursor.snapshotRuns() };
  }

  // -------------------------------------------------------------------------------------------
  // Members.

  #checkOpen(): void {
    if (this.#closed) {
      throw new SluiceError("UNKNOWN_QUEUE", `Queue '${this.config.name}' does not exist`, {
        queue: this.config.name,
      });
    }
  }

  #slot(memberId: string): number {
    const slot = typeof memberId === "string" ? this.#members.get(memberId) : undefined;
    if (slot === undefined) {
      throw new SluiceError(
        "UNKNOWN_MEMBER_ID",
        `Member ${String(memberId)} is not in queue '${this.config.name}' (never joined, or ` +
          "left, or the engine restarted): join again",
        { queue: this.config.name, memberId: String(memberId) },
      );
    }
    return slot;
  }

  join(): string {
    this.#checkOpen();
    if (this.#members.size >= QUEUE_MEMBERS_MAX) {
      throw new SluiceError(
        "INVALID_CONFIG",
        `Queue '${this.config.name}' has ${QUEUE_MEMBERS_MAX} members (QUEUE_MEMBERS_MAX)`,
        { queue: this.config.name, members: QUEUE_MEMBERS_MAX },
      );
    }
    const memberId = nextMemberId();
    const slot = this.#freeSlots.pop() ?? this.#nextSlot++;
    assert(slot > NO_OWNER && slot <= QUEUE_MEMBERS_MAX, "a member slot is in range");
    assert(this.#unacked[slot] === 0, "a reused slot holds nothing");
    this.#members.set(memberId, slot);
    return memberId;
  }

  /** The member is gone: everything it held is available at once (or dead-lettered). */
  leave(memberId: string): number {
    this.#checkOpen();
    const slot = this.#slot(memberId);
    // The next member in join order becomes the single active consumer: wake its fetch.
    if (this.config.singleActiveConsumer) this.#notify();
    let released = 0;
    for (const cursor of this.#cursors) {
      const limitReached: OffsetRun[] = [];
      released += cursor.releaseOwner(slot, limitReached);
      this.#deadLetterLater(cursor.partition, limitReached);
    }
    assert(this.#unacked[slot] === 0, "a member that left holds nothing");
    this.#members.delete(memberId);
    this.#freeSlots.push(slot);
    if (released > 0) this.#notify();
    return released;
  }

  get memberCount(): number {
    return this.#members.size;
  }

  // -------------------------------------------------------------------------------------------
  // Fetch.

  /**
   * Before a fetch that may wait: a promise while the bytes at the partitions' next offsets
   * are being read on the thread pool because the page cache does not hold them (a backlog
   * behind the tail cache; PartitionLog.prepareRead, cold_read.ts); it settles, never
   * rejecting, once the fetch will find them. Undefined: fetch at once.
   */
  prepareFetch(maxBytes: number): Promise<unknown> | undefined {
    if (this.#closed) return undefined;
    const waits: Promise<void>[] = [];
    // The partitions the next fetch takes from, in its order, until their bytes would fill
    // it: waiting for every partition's read made a fetch of ~1 MiB wait for 16 of them (a
    // backlog drained at 45-50k msg/s with 8 MiB reads against 96-108k with 2 MiB).
    let bytes = 0;
    const order = this.#priorityOrder();
    for (let i = 0; i < this.partitionCount && bytes < maxBytes; i++) {
      const partition = order?.[i] ?? (this.#rotation + i) % this.partitionCount;
      const cursor = this.#cursors[partition]!;
      const log = this.#logs[partition]!;
      // Records given back (released, expired) are taken before new ones: their batches were
      // read once, but under a backlog the buffers that held them may be gone by now (1 %
      // released at ~135k/s: 1-5 thousand major faults a second on the broker's loop).
      const again = cursor.firstAvailable;
      if (again !== undefined && again < log.highWatermark) {
        bytes += QUEUE_PREPARE_BYTES;
        const wait = log.prepareRead(again, QUEUE_PREPARE_BYTES);
        if (wait !== undefined) waits.push(wait);
      }
      if (cursor.next >= log.highWatermark || bytes >= maxBytes) continue;
      bytes += QUEUE_PREPARE_BYTES;
      const wait = log.prepareRead(cursor.next, QUEUE_PREPARE_BYTES);
      if (wait !== undefined) waits.push(wait);
    }
    return waits.length === 0 ? undefined : Promise.all(waits);
  }

  /** Acquires records for `memberId`; never waits (see `onReady` for long polls). */
  fetch(memberId: string, options: QueueFetchOptions = {}): QueueFetchResult {
    this.#checkOpen();
    const slot = this.#slot(memberId);
    const { maxRecords, maxBytes } = fetchLimits(options);
    if (this.#state.fenced !== undefined) throw this.#state.fenced;
    const nowMs = this.#host.now();
    this.#delays?.moveIfOverdue(nowMs);
    this.expire(nowMs);
    const result: QueueFetchResult = { lockMs: this.config.lockMs, partitions: [] };
    // With a single active consumer the others wait, holding nothing, until it leaves.
    if (this.config.singleActiveConsumer && activeMember(this.#members) !== memberId) {
      return result;
    }
    const records = Math.min(maxRecords, this.config.prefetch - this.#unacked[slot]!);
    // A backlog of deltas means the disk is behind: acquire nothing until it catches up.
    if (records <= 0 || this.#state.backlogged) return result;
    const budget: FetchBudget = { records, bytes: maxBytes, batches: 0 };
    const order = this.#priorityOrder();
    for (let i = 0; i < this.partitionCount && budget.records > 0; i++) {
      if (budget.batches > 0 && budget.bytes <= 0) break;
      const partition = order?.[i] ?? (this.#rotation + i) % this.partitionCount;
      const before = budget.records;
      const fetched = this.#fetchPartition(partition, slot, nowMs, budget);
      if (fetched !== undefined) result.partitions.push(fetched);
      if (partition < this.config.startOffsets.length) {
        this.#priority?.served(partition, before - budget.records);
      }
    }
    this.#rotation = (this.#rotation + 1) % this.partitionCount;
    if (result.partitions.length > 0) this.#host.scheduleSweep(nowMs + this.config.lockMs);
    return result;
  }

  /**
   * A priority queue's fetch order: its levels (the topic's partitions) highest first, then
   * the due partition of its delay tiers, if any (a delayed record's level is not kept there).
   */
  #priorityOrder(): number[] | undefined {
    const order = this.#priority?.order(this.#cursors, this.#logs);
    if (order !== undefined && this.#delays !== undefined) order.push(this.partitionCount - 1);
    return order;
  }

  #fetchPartition(
    partition: number,
    slot: number,
    nowMs: number,
    budget: FetchBudget,
  ): QueueFetchPartition | undefined {
    const cursor = this.#cursors[partition]!;
    const log = this.#logs[partition]!;
    this.#followRetention(cursor, log);
    // Nothing given back and nothing new: a partition a long poll looks at while it waits
    // costs no view list, no readers and no closure.
    if (cursor.readyHead() === undefined && cursor.next >= log.highWatermark) return undefined;
    const views = new BatchViews();
    const ranges: AcquiredRange[] = [];
    const reads = new BatchAtReads(log);
    const expiry = new ExpiryReader(reads, nowMs, this.#ttl);
    const expiredRuns: OffsetRun[] = [];
    const held = this.#dueReader(partition, nowMs, reads);
    // Without a queue-wide TTL, a batch naming no TTL or due-time header holds nothing back.
    const plain = this.#ttl.queueTtlMs === null ? this.#plainBatches : undefined;
    const admit = (offset: number): boolean | "skipped" => {
      try {
        // A record given back is normally due already; one that a crash put back before its
        // delayed copy was marked (DELAYED) is held again, never delivered early.
        if (held !== undefined && DueReader.notDueAt(held.due, offset)) {
          cursor.expireReadyHead(offset, held.runs);
          return "skipped";
        }
        if (expiry.expired(offset)) {
          cursor.expireReadyHead(offset, expiredRuns);
          return "skipped";
        }
        return admitBatchOf(reads, offset, views, budget);
      } catch (error) {
        if (!isSluiceError(error, "CORRUPT_BATCH")) throw error;
        this.#discardDamaged(cursor, { first: offset, last: offset }, error);
        cursor.discardReadyHead(offset);
        return false;
      }
    };
    try {
      // An expired batch at `next` stops the new records a round takes; the next round takes
      // it into the window (expired records out, live ones ready) and goes on after it.
      for (let round = 0; round < TTL_ROUNDS_MAX && budget.records > 0; round++) {
        this.#expireNew(cursor, log, expiry, expiredRuns, held);
        // Records given back come first, oldest first, while their batches fit the bytes.
        budget.records -= cursor.acquireReady(
          { budget: budget.records, owner: slot, nowMs },
          admit,
          ranges,
        );
        if (budget.records <= 0) break;
        const due = held?.due;
        const fetch = { slot, nowMs, budget, views, ranges, expiry, due, partition, plain };
        if (!this.#fetchNew(cursor, log, fetch) || cursor.readyHead() !== undefined) break;
      }
    } catch (error) {
      // A read failed for another reason: keep what was acquired before it, or report it.
      if (ranges.length === 0 && budget.batches === 0) throw error;
      this.#host.warn(`queue '${this.config.name}' partition ${partition}: ${String(error)}`);
    }
    this.#deadLetterLater(partition, expiredRuns, "expired");
    if (held !== undefined) this.#holdLater(partition, held.runs);
    if (ranges.length === 0) return undefined;
    const acquired =
      this.#delays !== undefined && partition === this.partitionCount - 1
        ? carryDeliveries(cursor, views.views(), ranges)
        : ranges;
    for (const range of acquired) {
      const count = range.last - range.first + 1;
      this.#state.add(DELTA_ACQUIRE, partition, range.first, count, range.deliveries);
      this.#counters.delivered += count;
    }
    return { partition, views: views.views(), ranges: acquired };
  }

  /** Acquires new records from `next`; true when an expired record stopped it. */
  #fetchNew(
    cursor: QueueCursor,
    log: PartitionLog,
    fetch: {
      slot: number;
      nowMs: number;
      budget: FetchBudget;
      views: BatchViews;
      ranges: AcquiredRange[];
      expiry: ExpiryReader;
      due: DueReader | undefined;
      partition: number;
      plain: PlainBatches | undefined;
    },
  ): boolean {
    const { budget } = fetch;
    const wanted = Math.min(budget.records, cursor.room, log.highWatermark - cursor.next);
    if (wanted <= 0) return false;
    let lastWanted = cursor.next + wanted - 1;
    let stopped = false;
    let covered = cursor.next - 1;
    // Reads are sized to the records wanted (a read of maxBytes would copy batches that are
    // not taken), and repeated while records are missing and the bytes allow.
    for (let reads = 0; covered < lastWanted && reads < NEW_READS_MAX; reads++) {
      if (budget.batches > 0 && budget.bytes <= 0) break;
      const guessBytes = Math.ceil((lastWanted - covered) * this.#recordBytes * 1.25);
      const read = this.#readNew(cursor, log, covered + 1, Math.min(guessBytes, budget.bytes));
      if (read === undefined) break;
      const live = liveEnd(read, covered + 1, lastWanted, fetch);
      if (live < lastWanted) stopped = true;
      lastWanted = live;
      if (lastWanted <= covered) break;
      const bytesBefore = budget.bytes;
      const reached = takeNewBatches(read, covered + 1, lastWanted, fetch.views, budget);
      if (reached <= covered) break;
      if (bytesBefore > budget.bytes) {
        this.#recordBytes = (bytesBefore - budget.bytes) / (reached - covered);
      }
      covered = reached;
    }
    const count = Math.min(wanted, covered - cursor.next + 1, lastWanted - cursor.next + 1);
    if (count > 0) {
      fetch.ranges.push(cursor.acquireNew(count, fetch.slot, fetch.nowMs));
      budget.records -= count;
    }
    return stopped;
  }

  /**
   * Takes batches at `next` holding expired records into the window, while they fit: their
   * expired records go to dead-lettering (added to `runs`), their live ones wait in the FIFO.
   * Stops at the first batch whose records from `next` on are all live, or at damage.
   */
  #expireNew(
    cursor: QueueCursor,
    log: PartitionLog,
    expiry: ExpiryReader,
    runs: OffsetRun[],
    held?: Held,
  ) {
    // Without a queue-wide TTL, a batch naming no TTL or due-time header never holds one back.
    const plain = this.#ttl.queueTtlMs === null ? this.#plainBatches : undefined;
    for (let reads = 0; reads < NEW_READS_MAX; reads++) {
      const end = Math.min(log.highWatermark, cursor.next + cursor.room);
      if (cursor.next >= end || cursor.next < log.logStartOffset) return;
      if (plain?.covers(cursor.partition, cursor.next) === true) return;
      let batch: JudgedBatch;
      let hold: HeldBatch | undefined;
      try {
        // A plain batch holds nothing expired and nothing not yet due, so the two judges
        // (each a read and byte searches of the batch) are needed only when it is not plain.
        if (plain?.note(cursor.partition, log, cursor.next) === true) return;
        batch = expiry.batchAt(cursor.next);
        hold = held?.due.batchAt(cursor.next);
      } catch (error) {
        // Damage at `next` is skipped by the fetch's read (#skipDamage), not here.
        if (isSluiceError(error, "CORRUPT_BATCH")) return;
        throw error;
      }
      const notDue = hold === undefined ? undefined : DueReader.firstNotDue(hold, cursor.next);
      if (firstExpired(batch, cursor.next) === undefined && notDue === undefined) return;
      const take = Math.min(end, batch.last + 1) - cursor.next;
      // A record not due yet waits in the delay tiers (its TTL is judged when it is due).
      const waits = (offset: number) => hold?.notDue?.has(offset) === true;
      const out: OffsetRun[] = [];
      const leaves = (offset: number) =>
        waits(offset) || isExpired(batch.expiry, offset - batch.base);
      cursor.takeNew(take, leaves, out);
      for (const { first, last } of out) {
        for (let offset = first; offset <= last; offset++) {
          addToRuns(waits(offset) ? held!.runs : runs, offset);
        }
      }
    }
  }

  /** Reads from `offset`; undefined when damage stops the read (skipped where possible). */
  #readNew(
    cursor: QueueCursor,
    log: PartitionLog,
    offset: number,
    bytes: number,
  ): ReadResult | undefined {
    try {
      // Each batch's CRC is checked once per process (log_read.ts), as for any fetch: damage
      // found then, at open or by the scrubber is discarded and counted, never delivered.
      return log.read(offset, Math.max(1, bytes));
    } catch (error) {
      if (!isSluiceError(error, "CORRUPT_BATCH")) throw error;
      // Only damage at `next` is skipped; damage after records taken waits for the next fetch.
      if (offset === cursor.next) this.#skipDamage(cursor, error);
      return undefined;
    }
  }

  /**
   * Offsets the log cannot serve (damaged batches, reported by the log at open or on read)
   * from `next` to the next valid batch: taken into the window as discarded when they fit it,
   * skipped by moving the floor when the window is empty, or left for a later fetch (once
   * the window has drained) when neither is possible yet.
   */
  #skipDamage(cursor: QueueCursor, error: SluiceError): void {
    const resume = error.details["nextValidOffset"];
    if (typeof resume !== "number" || resume <= cursor.next) return;
    const run = { first: cursor.next, last: resume - 1 };
    const count = resume - cursor.next;
    if (count <= cursor.room) {
      this.#discardDamaged(cursor, run, error);
      cursor.discardNew(count);
    } else if (cursor.floor === cursor.next) {
      this.#warnDamage(cursor, run, error);
      cursor.jumpTo(resume);
      this.#state.add(DELTA_FLOOR, cursor.partition, resume, 0);
    }
  }

  /** Records whose bytes are damaged are done without delivery: counted and reported. */
  #discardDamaged(cursor: QueueCursor, run: OffsetRun, error: SluiceError): void {
    const count = run.last - run.first + 1;
    this.#warnDamage(cursor, run, error);
    this.#state.add(DELTA_DISCARD, cursor.partition, run.first, count);
    this.#counters.discarded += count;
  }

  #warnDamage(cursor: QueueCursor, run: OffsetRun, error: SluiceError): void {
    this.#host.warn(
      `queue '${this.config.name}': offsets ${run.first}..${run.last} of partition ` +
        `${cursor.partition} are damaged in the log and were skipped (${error.message})`,
    );
  }

  /** Records retention deleted before the queue delivered them are skipped, as Kafka does. */
  #followRetention(cursor: QueueCursor, log: PartitionLog): void {
    const start = log.logStartOffset;
    if (cursor.floor >= start) return;
    const dropped = cursor.jumpTo(start);
    this.#state.add(DELTA_FLOOR, cursor.partition, start, 0);
    if (dropped > 0) {
      this.#host.warn(
        `queue '${this.config.name}': ${dropped} records of partition ${cursor.partition} ` +
          `were deleted by retention before they were done; the queue resumes at ${start}`,
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // Acks.

  /**
   * Applies an ack request whole, or (any range refused) not at all. Resolves when every
   * outcome is durable: accepts written (and fdatasync'd under fsync "always"), rejected
   * records written to the dead-letter topic and marked done.
   */
  async ack(memberId: string, acks: readonly QueueAck[]): Promise<void> {
    await this.applyAck(memberId, acks);
  }

  /**
   * `ack` in two steps: checks and applies the request now, throwing its refusal at once
   * (nothing applied), and returns the promise of its durability (the same outcomes `ack`
   * waits for). A caller can tell the refusal from the wait without waiting.
   */
  applyAck(memberId: string, acks: readonly QueueAck[]): Promise<void> {
    this.#checkOpen();
    const slot = this.#slot(memberId);
    const ranges = checkAcks(acks, { queue: this.config.name, partitions: this.partitionCount });
    if (this.#state.fenced !== undefined) throw this.#state.fenced;
    const nowMs = this.#host.now();
    for (const range of ranges) {
      const refused = this.#cursors[range.partition]!.checkHeld(
        range.first,
        range.last,
        slot,
        nowMs,
      );
      if (refused !== undefined) throw refused;
      if (range.delayMs > 0 && this.#delays === undefined) {
        throw new SluiceError(
          "INVALID_CONFIG",
          `Queue '${this.config.name}' was declared before delayed delivery existed: a release ` +
            `with delayMs ${range.delayMs} needs a queue declared again`,
          { queue: this.config.name, delayMs: range.delayMs },
        );
      }
    }
    const waits: Promise<void>[] = [];
    const delayed: DelayedRuns[] = [];
    let freed = false;
    for (const { partition, first, last, type, delayMs } of ranges) {
      const cursor = this.#cursors[partition]!;
      const count = last - first + 1;
      if (
        type === "release" &&
        this.#delayRelease(partition, { first, last }, { delayMs, nowMs }, delayed)
      ) {
        freed = true;
        continue;
      }
      if (type === "accept") {
        cursor.accept(first, last);
        this.#state.add(DELTA_ACCEPT, partition, first, count);
        this.#counters.accepted += count;
      } else if (type === "release") {
        const limitReached: OffsetRun[] = [];
        cursor.release(first, last, limitReached);
        this.#deadLetterLater(partition, limitReached);
      } else if (type === "reject") {
        cursor.reject(first, last);
        const holder = { memberId, slot };
        waits.push(this.#deadLetter(partition, [{ first, last }], "rejected", holder));
      } else {
        cursor.renew(first, last, nowMs);
        this.#host.scheduleSweep(nowMs + this.config.lockMs);
      }
      freed ||= type !== "renew";
    }
    if (freed) this.#notify();
    // One write of delayed copies for the whole request, so they reach the logs in due order.
    if (delayed.length > 0) {
      waits.push(this.#trackJob(this.#runDelay(delayed, { memberId, slot })));
    }
    // The due log is synced beside its writes, not before they are readable: an answer for one
    // of its records is confirmed once the record is on disk too, so no crash brings it back.
    const duePartition = this.#delays === undefined ? -1 : this.partitionCount - 1;
    let dueEnd = 0;
    for (const { partition, last, type } of ranges) {
      if (partition === duePartition && type !== "renew") dueEnd = Math.max(dueEnd, last + 1);
    }
    if (dueEnd > 0) waits.push(this.#delays!.dueDurable(dueEnd));
    waits.push(this.#state.commit());
    return Promise.all(waits).then(() => undefined);
  }

  // -------------------------------------------------------------------------------------------
  // Delayed release (queue_delay.ts).

  /**
   * A release that waits (its own delayMs, or the queue's retry backoff): the records leave
   * circulation, copies go to the delay tiers, and once those are durable the originals are
   * done (DELAYED). Records at the delivery limit are dead-lettered instead, as a plain release
   * does. False when the release does not wait (it is then a plain release).
   */
  #delayRelease(
    partition: number,
    run: OffsetRun,
    { delayMs, nowMs }: { delayMs: number; nowMs: number },
    delayed: DelayedRuns[],
  ): boolean {
    const retry = this.config.retry;
    if (this.#delays === undefined || (delayMs === 0 && retry === null)) return false;
    const cursor = this.#cursors[partition]!;
    const limitReached: OffsetRun[] = [];
    const waiting: OffsetRun[] = [];
    for (let offset = run.first; offset <= run.last; offset++) {
      const atLimit = cursor.deliveriesAt(offset) >= this.config.deliveryLimit;
      addToRuns(atLimit ? limitReached : waiting, offset);
    }
    // Both leave circulation (marked as being dead-lettered) until their copies are written.
    cursor.reject(run.first, run.last);
    this.#deadLetterLater(partition, limitReached);
    if (waiting.length === 0) return true;
    const dueOf = (deliveries: number) =>
      nowMs + (delayMs > 0 || retry === null ? delayMs : retryDelayMs(retry, deliveries));
    delayed.push({ partition, runs: waiting, dueOf });
    return true;
  }

  #trackJob(job: Promise<void>): Promise<void> {
    // Ids wrap at 2^32; a job still in flight after 2^32 more is not expected, and the
    // skip keeps each one listed.
    let id = this.#nextJobId;
    while (this.#jobs.has(id)) id = (id + 1) % 2 ** 32;
    this.#nextJobId = (id + 1) % 2 ** 32;
    const forget = () => {
      this.#jobs.delete(id);
    };
    this.#jobs.set(id, job);
    job.then(forget, forget);
    return job;
  }

  /** Writes the delayed copies of one ack request, then marks the originals done. */
  async #runDelay(delayed: DelayedRuns[], holder: Holder | undefined): Promise<void> {
    try {
      const entries: DelayEntry[] = [];
      const byPartition = new Map<number, (OffsetRun & { dueOf: DelayedRuns["dueOf"] })[]>();
      for (const { partition, runs, dueOf } of delayed) {
        const list = byPartition.get(partition) ?? [];
        for (const run of runs) list.push({ ...run, dueOf });
        byPartition.set(partition, list);
      }
      for (const [partition, runs] of byPartition) {
        runs.sort((a, b) => a.first - b.first);
        const cursor = this.#cursors[partition]!;
        // One read over the runs' span: each batch is walked once, however many runs it holds;
        // a record of a plain batch goes to the store as the bytes it is (eachDelayable).
        const log = this.#logs[partition]!;
        const span = {
          first: runs[0]!.first,
          last: runs.at(-1)!.last,
          logStartOffset: log.logStartOffset,
          highWatermark: log.highWatermark,
        };
        let r = 0;
        eachDelayable(log, span, (offset, publishedDueMs, found) => {
          while (r < runs.length && runs[r]!.last < offset) r++;
          const run = runs[r];
          if (run === undefined || offset < run.first) return;
          const deliveries = cursor.deliveriesAt(offset);
          const dueMs = run.dueOf(deliveries, publishedDueMs);
          entries.push(
            "where" in found
              ? { lying: found, dueMs, deliveries }
              : { record: found, dueMs, deliveries },
          );
        });
      }
      await this.#delays!.add(entries);
    } catch (error) {
      // Not written: released records go back to their holder (or become available), as a
      // failed reject does; records published with a due time stay out of circulation (they
      // are not due) and are tried again.
      for (const { partition, runs } of delayed) {
        if (holder === undefined) this.#retryLater(this.#retryHeld, partition, runs);
        else this.#revertDeadLetter(this.#cursors[partition]!, runs, holder);
      }
      throw error;
    }
    for (const { partition, runs } of delayed) {
      for (const { first, last } of runs) {
        this.#cursors[partition]!.finishDeadLetter(first, last);
        this.#state.add(DELTA_DELAYED, partition, first, last - first + 1);
      }
    }
    this.#notify();
    await this.#state.commit();
  }

  /** A reader of published due times for a topic partition (none for the due partition). */
  #dueReader(partition: number, nowMs: number, reads?: BatchAtReads): Held | undefined {
    if (this.#delays === undefined || partition === this.partitionCount - 1) return undefined;
    return { due: new DueReader(reads ?? this.#logs[partition]!, nowMs), runs: [] };
  }

  /** Records published with a due time that is not here yet go to the delay tiers. */
  #holdLater(partition: number, runs: OffsetRun[]): void {
    if (runs.length === 0) return;
    const nowMs = this.#host.now();
    const dueOf = (_: number, publishedMs: number | undefined) => publishedMs ?? nowMs;
    this.#trackJob(this.#runDelay([{ partition, runs, dueOf }], undefined)).catch((error) => {
      this.#host.warn(
        `queue '${this.config.name}': records of partition ${partition} published with a ` +
          `due time were not written to the delay tiers (${String(error)}); retrying in ` +
          `${DEAD_LETTER_RETRY_MS} ms`,
      );
    });
  }

  /** The delay tiers, for tools and tests (undefined on a queue declared before them). */
  get delays(): DelayTiers | undefined {
    return this.#delays;
  }

  // -------------------------------------------------------------------------------------------
  // Expiry.

  /** Ends every lock due by `nowMs` and retries due dead letters. Returns locks ended. */
  expire(nowMs: number): number {
    if (this.#closed) return 0;
    let expired = 0;
    for (const cursor of this.#cursors) {
      const limitReached: OffsetRun[] = [];
      expired += cursor.expire(nowMs, limitReached);
      this.#deadLetterLater(cursor.partition, limitReached);
    }
    if (nowMs >= this.#retryAtMs) {
      const retry = this.#retry;
      const retryExpired = this.#retryExpired;
      const retryHeld = this.#retryHeld;
      this.#retry = new Map();
      this.#retryExpired = new Map();
      this.#retryHeld = new Map();
      for (const [partition, runs] of retryHeld) this.#holdLater(partition, runs);
      this.#retryAtMs = Number.POSITIVE_INFINITY;
      for (const [partition, runs] of retry) this.#deadLetterLater(partition, runs);
      for (const [partition, runs] of retryExpired) {
        this.#deadLetterLater(partition, runs, "expired");
      }
    }
    this.#dropOverflow();
    if (expired > 0) this.#notify();
    return expired;
  }

  /**
   * Takes expired records at the head of every partition off the queue (dead-lettered with
   * reason "expired", or discarded), consumers or not: records given back, oldest first,
   * then new records from `next` while their batches hold expired ones. Runs at most once
   * per `ttlCheckMs` (earlier calls return 0). Returns how many.
   */
  expireRecords(nowMs: number): number {
    if (this.#closed || this.#state.fenced !== undefined) return 0;
    // Sweeps also run at lock deadlines: the heads are looked at once per interval at most.
    if (nowMs < this.#ttlCheckAtMs) return 0;
    this.#ttlCheckAtMs = nowMs + (this.#host.ttlCheckMs ?? TTL_CHECK_MS_DEFAULT);
    let expired = 0;
    for (const cursor of this.#cursors) {
      const log = this.#logs[cursor.partition]!;
      const runs: OffsetRun[] = [];
      let held: Held | undefined;
      try {
        this.#followRetention(cursor, log);
        const expiry = new ExpiryReader(log, nowMs, this.#ttl);
        for (let head = cursor.readyHead(); head !== undefined; head = cursor.readyHead()) {
          if (!expiry.expired(head)) break;
          cursor.expireReadyHead(head, runs);
        }
        held = this.#dueReader(cursor.partition, nowMs);
        this.#expireNew(cursor, log, expiry, runs, held);
      } catch (error) {
        // Damage is skipped or reported by the fetch that meets it; the check tries again.
        if (!isSluiceError(error, "CORRUPT_BATCH")) throw error;
      }
      if (held !== undefined) this.#holdLater(cursor.partition, held.runs);
      for (const run of runs) expired += run.last - run.first + 1;
      this.#deadLetterLater(cursor.partition, runs, "expired");
    }
    return expired;
  }

  /**
   * Drop-head (queue_maxlen.ts): the oldest ready records past `maxLength` are dead-lettered
   * with reason "maxlen" (or discarded). Called where records arrive or are counted.
   */
  #dropOverflow(): void {
    const { maxLength, maxLengthBytes, overflow } = this.config;
    if ((maxLength === null && maxLengthBytes === null) || overflow !== "drop-head") return;
    if (this.#closed || this.#state.fenced !== undefined) return;
    for (const cursor of this.#cursors) {
      this.#followRetention(cursor, this.#logs[cursor.partition]!);
    }
    const drop = (partition: number, runs: OffsetRun[]) =>
      this.#deadLetterLater(partition, runs, "maxlen");
    const lowestFirst = this.#priority !== undefined;
    let dropped = 0;
    if (maxLength !== null) {
      dropped += dropHead(maxLength, this.#cursors, this.#logs, drop, lowestFirst);
    }
    if (maxLengthBytes !== null) {
      dropped += this.#readyBytes!.dropHead(
        maxLengthBytes,
        this.#cursors,
        this.#logs,
        drop,
        lowestFirst,
      );
    }
    if (dropped > 0) this.#notify();
  }

  /**
   * How many of `count` records a publish through an exchange may add to the topic now, as
   * far as this queue is concerned: all of them unless it is a full reject-publish queue.
   */
  publishRoom(count: number, prefixBytes: (k: number) => number): number {
    const { maxLength, maxLengthBytes, overflow } = this.config;
    if (overflow !== "reject-publish" || this.#closed) return count;
    let room = count;
    if (maxLength !== null) room = publishRoom(maxLength, this.#cursors, this.#logs, room);
    if (maxLengthBytes !== null && room > 0) {
      const bytes = this.#readyBytes!;
      room = bytes.publishRoom(maxLengthBytes, this.#cursors, this.#logs, room, prefixBytes);
    }
    return room;
  }

  /** Asks for a TTL check one interval from now while some record waits to be acquired. */
  #scheduleTtlCheck(waiting: boolean): void {
    if (this.#closed || !(waiting || this.#hasReady())) return;
    this.#host.scheduleSweep(this.#host.now() + (this.#host.ttlCheckMs ?? TTL_CHECK_MS_DEFAULT));
  }

  #hasReady(): boolean {
    return this.#cursors.some(
      (cursor) =>
        cursor.availableCount > 0 || this.#logs[cursor.partition]!.highWatermark > cursor.next,
    );
  }

  /** The earliest time a lock may end, a dead letter is retried or a TTL check is due. */
  nextSweepMs(): number | undefined {
    let earliest = this.#retryAtMs;
    for (const cursor of this.#cursors)
      earliest = Math.min(earliest, cursor.nextDeadlineMs() ?? earliest);
    if (!this.#closed && this.#hasReady()) {
      const ttlCheckMs = this.#host.ttlCheckMs ?? TTL_CHECK_MS_DEFAULT;
      earliest = Math.min(earliest, this.#host.now() + ttlCheckMs);
    }
    return Number.isFinite(earliest) ? earliest : undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Dead letters.

  /** Dead-letters records at the limit (or expired) in the background; failures retry later. */
  #deadLetterLater(
    partition: number,
    runs: OffsetRun[],
    reason: DeathReason = "delivery_limit",
  ): void {
    if (runs.length === 0) return;
    const done = this.#deadLetter(partition, runs, reason, undefined);
    // Written dead letters free the window: a drop that ran out of room goes on.
    if (reason === "maxlen")
      done.then(
        () => this.#dropOverflow(),
        () => {},
      );
    done.catch((error) => {
      this.#host.warn(
        `queue '${this.config.name}': dead letters of partition ${partition} not written ` +
          `(${String(error)}); retrying in ${DEAD_LETTER_RETRY_MS} ms`,
      );
    });
  }

  #deadLetter(
    partition: number,
    runs: OffsetRun[],
    reason: DeathReason,
    holder: Holder | undefined,
  ): Promise<void> {
    return this.#trackJob(this.#runDeadLetter(partition, runs, reason, holder));
  }

  async #runDeadLetter(
    partition: number,
    runs: OffsetRun[],
    reason: DeathReason,
    holder: Holder | undefined,
  ): Promise<void> {
    const cursor = this.#cursors[partition]!;
    const topic = this.config.deadLetterTopic;
    try {
      if (topic !== null) await this.#writeDeadLetters(partition, runs, reason, topic);
    } catch (error) {
      // Expired records stay out of circulation (never delivered) until their dead letter is
      // written; going back to the FIFO would only expire them again at the next fetch.
      if (reason === "expired") this.#retryLater(this.#retryExpired, partition, runs);
      else this.#revertDeadLetter(cursor, runs, holder);
      throw error;
    }
    // A closing queue waits for this job before it closes its state log (close below).
    for (const { first, last } of runs) {
      cursor.finishDeadLetter(first, last);
      const kind = topic === null ? DELTA_DISCARD : DELTA_DEAD_LETTER;
      this.#state.add(kind, partition, first, last - first + 1);
      if (topic === null) this.#counters.discarded += last - first + 1;
      else this.#counters.deadLettered += last - first + 1;
      if (reason === "expired") {
        // In the same group commit as the delta before it, so both are durable or neither.
        this.#state.add(DELTA_EXPIRED, partition, first, last - first + 1);
        this.#counters.expired += last - first + 1;
      } else if (reason === "maxlen") {
        this.#state.add(DELTA_MAXLEN, partition, first, last - first + 1);
        this.#counters.overflowed += last - first + 1;
      }
    }
    this.#notify();
    await this.#state.commit();
  }

  #revertDeadLetter(cursor: QueueCursor, runs: OffsetRun[], holder: Holder | undefined): void {
    const stillThere = holder !== undefined && this.#members.get(holder.memberId) === holder.slot;
    const owner = stillThere ? holder.slot : NO_OWNER;
    const retry: OffsetRun[] = [];
    for (const run of runs) cursor.revertDeadLetter(run, owner, retry);
    if (retry.length > 0) this.#retryLater(this.#retry, cursor.partition, retry);
    if (owner === NO_OWNER) this.#notify();
  }

  /** Dead letters of `runs` are tried again DEAD_LETTER_RETRY_MS from now. */
  #retryLater(retry: Map<number, OffsetRun[]>, partition: number, runs: OffsetRun[]): void {
    const pending = retry.get(partition) ?? [];
    retry.set(partition, pending.concat(runs));
    this.#retryAtMs = Math.min(this.#retryAtMs, this.#host.now() + DEAD_LETTER_RETRY_MS);
    this.#host.scheduleSweep(this.#retryAtMs);
  }

  async #writeDeadLetters(
    partition: number,
    runs: OffsetRun[],
    reason: DeathReason,
    topic: string,
  ): Promise<void> {
    const targets = await this.#host.deadLetterLogs(topic);
    const target = targets[partition % targets.length]!;
    const cursor = this.#cursors[partition]!;
    const nowMs = this.#host.now();
    const death: Death = {
      queue: this.config.name,
      reason,
      topic: this.config.topic,
      partition,
      nowMs,
    };
    const letters: RecordInput[] = [];
    for (const run of runs) {
      for (const record of readRecords(this.#logs[partition]!, run)) {
        letters.push(deadLetterRecord(record, cursor.deliveriesAt(record.offset), death));
      }
    }
    const batchBytesMax = target.config.maxBatchBytes - BATCH_OVERHEAD_BYTES;
    await Promise.all(
      batchesOf(letters, batchBytesMax).map((group) =>
        target.append(encodeRecordBatch(group, { timestamp: nowMs })),
      ),
    );
    // The original is marked done next: its dead letter must be as durable as that mark.
    if (this.config.fsync === "always" && target.config.fsync !== "always") await target.flush();
  }

  // -------------------------------------------------------------------------------------------
  // Purge, stats, listeners, close.

  /**
   * Moves every partition's floor to its high watermark: every record there now, held ones
   * included, is done without being delivered or dead-lettered (their holders' later acks are
   * INVALID_RECORD_STATE). Resolves when durable; returns how many records were not done.
   */
  async purge(): Promise<number> {
    this.#checkOpen();
    if (this.#state.fenced !== undefined) throw this.#state.fenced;
    let dropped = 0;
    for (const cursor of this.#cursors) {
      const end = this.#logs[cursor.partition]!.highWatermark;
      dropped += cursor.jumpTo(end);
      this.#state.add(DELTA_FLOOR, cursor.partition, end, 0);
    }
    this.#notify();
    await this.#state.commit();
    return dropped;
  }

  stats(): QueueStats {
    this.#checkOpen();
    const nowMs = this.#host.now();
    this.expire(nowMs);
    const partitions = this.#cursors.map((cursor) => {
      const highWatermark = this.#logs[cursor.partition]!.highWatermark;
      return {
        partition: cursor.partition,
        floor: cursor.floor,
        next: cursor.next,
        highWatermark,
        ready: cursor.availableCount + Math.max(0, highWatermark - cursor.next),
        acquired: cursor.acquiredCount,
      };
    });
    let deadLettering = 0;
    let memoryBytes = 0;
    for (const cursor of this.#cursors) {
      deadLettering += cursor.deadLetteringCount;
      memoryBytes += cursor.memory.bytes;
    }
    return {
      name: this.config.name,
      topic: this.config.topic,
      members: this.#members.size,
      ready: partitions.reduce((sum, p) => sum + p.ready, 0),
      acquired: partitions.reduce((sum, p) => sum + p.acquired, 0),
      deadLettering,
      ...this.#counters,
      delayed: this.#delays?.waiting ?? 0,
      readyBytes: this.#readyBytes?.total(this.#cursors, this.#logs) ?? null,
      activeMember: this.config.singleActiveConsumer ? activeMember(this.#members) : null,
      oldestReadyAgeMs: this.#oldestReadyAgeMs(nowMs),
      memoryBytes,
      partitions,
    };
  }

  #oldestReadyAgeMs(nowMs: number): number | null {
    let oldest: number | null = null;
    for (const cursor of this.#cursors) {
      const log = this.#logs[cursor.partition]!;
      const offset = cursor.oldestReadyOffset(log.highWatermark);
      if (offset === undefined) continue;
      try {
        const view = log.read(offset, 1).views[0];
        if (view === undefined) continue;
        const ageMs = Math.max(0, nowMs - readInt64(view, BASE_TIMESTAMP_AT));
        oldest = oldest === null ? ageMs : Math.max(oldest, ageMs);
      } catch {
        // An unreadable batch has no age to report; fetches report the damage.
      }
    }
    return oldest;
  }

  /** The cursor of one partition, for tests and tools that check invariants. */
  cursor(partition: number): QueueCursor {
    const cursor = this.#cursors[partition];
    assert(cursor !== undefined, "a cursor exists for every partition");
    return cursor;
  }

  get stateLog(): QueueStateLog {
    return this.#state;
  }

  /**
   * Calls `listener` (in a microtask, coalesced) whenever a fetch may find something it did
   * not before: records appended, given back, expired, or room freed in a window or a
   * member's prefetch. Returns the function that removes it.
   */
  onReady(listener: () => void): () => void {
    this.#checkOpen();
    return this.#listeners.add(listener);
  }

  readonly #tellReady = (listener: () => void): void => {
    try {
      listener();
    } catch (error) {
      this.#host.warn(`a ready listener of queue '${this.config.name}' failed: ${error}`);
    }
  };

  #notify(): void {
    if (this.#listeners.size === 0 || this.#notifyScheduled) return;
    this.#notifyScheduled = true;
    queueMicrotask(() => {
      this.#notifyScheduled = false;
      this.#listeners.forEach(this.#tellReady);
    });
  }

  /** Waits for every delta so far to be durable. */
  flush(): Promise<void> {
    return this.#state.commit();
  }

  /** Stops the queue: waits for dead letters in flight and the state log's last write. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    await Promise.allSettled(this.#jobs.values());
    try {
      await this.#state.close();
    } finally {
      await this.#delays?.close();
    }
  }
}

/** The first expired offset of a judged batch at or after `from`, if any. */
function firstExpired(batch: JudgedBatch, from: number): number | undefined {
  if (batch.expiry === "none" || batch.last < from) return undefined;
  if (batch.expiry === "all") return Math.max(from, batch.base);
  for (let offset = Math.max(from, batch.base); offset <= batch.last; offset++) {
    if (batch.expiry[offset - batch.base] === 1) return offset;
  }
  return undefined;
}

/**
 * The last offset of [from, lastWanted] before the first batch of `read` that holds an
 * expired record at or after `from` (from - 1 when that batch holds `from`).
 */
function liveEnd(
  read: ReadResult,
  from: number,
  lastWanted: number,
  judges: {
    expiry: ExpiryReader;
    due: DueReader | undefined;
    partition: number;
    plain: PlainBatches | undefined;
  },
) {
  for (const view of read.views) {
    for (let at = 0; at < view.length; ) {
      const size = batchSizeAt(view, at);
      // A batch known to name no TTL or due-time header holds nothing back (queue_plain.ts).
      const base = baseOffsetAt(view, at);
      if (base > lastWanted) return lastWanted;
      if (judges.plain?.covers(judges.partition, base) === true) {
        at += size;
        continue;
      }
      const bytes = view.subarray(at, at + size);
      // A batch of several in one read is looked at here once: when plain (most are), it is
      // not judged, which would read it whole for each header name in turn.
      if (judges.plain?.noteBatch(judges.partition, bytes) === true) {
        at += size;
        continue;
      }
      const batch = judges.expiry.judge(bytes);
      if (batch.base > lastWanted) return lastWanted;
      if (firstExpired(batch, from) !== undefined) return Math.max(batch.base, from) - 1;
      const hold = judges.due?.judge(bytes);
      if (hold !== undefined && DueReader.firstNotDue(hold, from) !== undefined) {
        return Math.max(batch.base, from) - 1;
      }
      at += size;
    }
  }
  return lastWanted;
}

/** The records of `run` still in the log, decoded (dead letters need key, value, headers). */
function* readRecords(log: PartitionLog, run: OffsetRun): Generator<LogRecord> {
  let offset = Math.max(run.first, log.logStartOffset);
  while (offset <= run.last && offset < log.highWatermark) {
    const read = log.read(offset, 1024 * 1024);
    for (const view of read.views) {
      for (const batch of decodeRecordBatches(view)) {
        for (const record of batch.records) {
          if (record.offset >= offset && record.offset <= run.last) yield record;
        }
      }
    }
    assert(read.nextOffset > offset, "a read below the high watermark makes progress");
    offset = read.nextOffset;
  }
}

// The consumer: partitions from a group subscription (broker-side assignment, group_member.ts)
// or assigned by hand; long-poll fetches (PROTOCOL.md section 6); start positions from the
// group's committed offsets, else the reset policy; commits automatic or by hand.
//
//   poll() ──► resolve unknown positions (OffsetFetch, then ListOffsets) ──► Fetch (long poll)
//          ──► records at or past each position ──► positions move past the last whole batch
//
// Delivery is at least once. Auto-commit (every autoCommitIntervalMs, before each heartbeat,
// and on close) commits only what the application has finished with: the records of the
// previous poll() when the next one starts, or a record yielded by the async iterator once the
// iterator is asked for the next one. commit() with no argument commits everything delivered.
//
// Fetches are pipelined: when a fetch's records are handed to the application, the fetch for
// the records after them is already sent, so the server reads and sends while the application
// works (Kafka's consumer does the same). At most one fetch is out at a time. Its results are
// checked against each partition when they are handed out: a seek, a pause or a lost partition
// since it was sent drops them, and the position goes back to what was delivered.
//
//   poll N:   ──await fetch N──► records N ─┬─► application
//                                           └─► send fetch N+1 ──► (server works meanwhile)
//   poll N+1: ──await fetch N+1 (often already here)──► ...

import { API } from "../codec/frames.ts";
import type { Writer } from "../codec/wire.ts";
import {
  type FetchPartitionResult,
  type FetchResponseVisitor,
  visitFetchResponse,
} from "../codec/fetch.ts";
import { WIRE_ERRORS, errorFromWire } from "../codec/errors.ts";
import { appendTo } from "./collections.ts";
import { offsetSpecTimestamp } from "./admin.ts";
import { REQUEST_TIMEOUT_MS_DEFAULT } from "./connection.ts";
import {
  type ConsumerRecord,
  type FetchLimits,
  type OffsetReset,
  type PartitionState,
  consumerDecodeOptions,
  fetchRequestBytesFor,
  moveTo,
  newPartitionState,
  nextOffsetFromHeaders,
  partitionKey,
  recordsUntilDamage,
  writeFetchRequestFor,
} from "./consumer_fetch.ts";
import {
  commitOffsets,
  fetchOffsets,
  listOffsets,
  type OffsetToCommit,
  type TopicPartitions,
} from "./control_calls.ts";
import { ClientError, isRetriable } from "./errors.ts";
import { GroupMember } from "./group_member.ts";
import { type ClientOptions, Session } from "./session.ts";
import { Wakers } from "./wakers.ts";

export type { ConsumerRecord, OffsetReset };

export const MAX_WAIT_MS_DEFAULT = 500;
export const MAX_BYTES_DEFAULT = 50 * 1024 * 1024;
export const PARTITION_MAX_BYTES_DEFAULT = 1024 * 1024;
export const AUTO_COMMIT_INTERVAL_MS_DEFAULT = 5_000;
/** The server clamps a fetch's max_wait_ms here (PROTOCOL.md section 8). */
const MAX_WAIT_MS_MAX = 60_000;

export type ConsumerOptions = ClientOptions & {
  /** The consumer group: needed by subscribe() and for commits. */
  group?: string;
  /** The same as `group`, by Kafka's name for it (`group.id`); give one or the other. */
  groupId?: string;
  autoCommit?: boolean;
  autoCommitIntervalMs?: number;
  /** Where to start without a committed offset, and after OFFSET_OUT_OF_RANGE. */
  autoOffsetReset?: OffsetReset;
  maxWaitMs?: number;
  minBytes?: number;
  maxBytes?: number;
  partitionMaxBytes?: number;
  rebalanceTimeoutMs?: number;
  /**
   * Check the CRC-32C of every fetched batch (default true), as Kafka's `check.crcs`. The
   * server checks each batch once when it first serves it and a scrubber re-checks stored
   * batches, so the consumer's check is what catches bits that rot in between; false saves
   * its cost (about a third of a consumer's CPU at high rates).
   */
  checkCrcs?: boolean;
};

export type TopicPartition = { topic: string; partition: number };

type Settings = FetchLimits & {
  autoCommit: boolean;
  autoCommitIntervalMs: number;
  autoOffsetReset: OffsetReset;
  requestTimeoutMs: number;
  rebalanceTimeoutMs: number | undefined;
  checkCrcs: boolean;
};

/**
 * A partition's record bytes from a fetch and the offset it was read at, then its records once
 * decoded: one object per partition and fetch for both steps.
 */
type Fetched = {
  state: PartitionState;
  offset: number;
  generation: number;
  bytes: Uint8Array | readonly Uint8Array[];
  records: ConsumerRecord[];
};

/** No records yet: shared by every Fetched until its bytes are decoded, and never written. */
const NOT_DECODED: ConsumerRecord[] = [];

/** A fetch sent ahead by the previous poll, and the wait it asked the server for. */
type Prefetch = { fetched: Promise<Fetched[]>; maxWaitMs: number };

function integerIn(name: string, value: number | undefined, fallback: number, max: number) {
  const resolved = value ?? fallback;
  if (!Number.isSafeInteger(resolved) || resolved < 0 || resolved > max) {
    throw new RangeError(`${name} ${resolved} is not an integer in [0, ${max}]`);
  }
  return resolved;
}

function resolveSettings(options: ConsumerOptions): Settings {
  const reset = options.autoOffsetReset ?? "latest";
  if (reset !== "earliest" && reset !== "latest") {
    throw new TypeError(`autoOffsetReset ${String(reset)} must be "earliest" or "latest"`);
  }
  const u32 = 0xffff_ffff;
  return {
    maxWaitMs: integerIn("maxWaitMs", options.maxWaitMs, MAX_WAIT_MS_DEFAULT, MAX_WAIT_MS_MAX),
    minBytes: integerIn("minBytes", options.minBytes, 1, u32),
    maxBytes: integerIn("maxBytes", options.maxBytes, MAX_BYTES_DEFAULT, u32),
    partitionMaxBytes: integerIn(
      "partitionMaxBytes",
      options.partitionMaxBytes,
      PARTITION_MAX_BYTES_DEFAULT,
      u32,
    ),
    autoCommit: options.autoCommit ?? true,
    autoCommitIntervalMs: integerIn(
      "autoCommitIntervalMs",
      options.autoCommitIntervalMs,
      AUTO_COMMIT_INTERVAL_MS_DEFAULT,
      2 ** 31 - 1,
    ),
    autoOffsetReset: reset,
    requestTimeoutMs: options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT,
    rebalanceTimeoutMs: options.rebalanceTimeoutMs,
    checkCrcs: checkedFlag("checkCrcs", options.checkCrcs, true),
  };
}

function checkedFlag(name: string, value: boolean | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw new TypeError(`${name} ${String(value)} is not a boolean`);
  return value;
}

function checkTopicPartition(value: TopicPartition, what: string): void {
  if (typeof value !== "object" || value === null || typeof value.topic !== "string") {
    throw new TypeError(`${what} needs a topic name`);
  }
  if (!Number.isSafeInteger(value.partition) || value.partition < 0) {
    throw new RangeError(`${what}: partition ${value.partition} is not a non-negative integer`);
  }
}

/** A position known and not paused: the partition goes into the next fetch. */
function fetchable(state: PartitionState): boolean {
  return state.position !== undefined && !state.paused;
}

/** Marks a prefetch's promise handled: its failure reaches the poll that takes it. */
function ignoreFailure(): undefined {
  return undefined;
}

function byTopic(states: readonly { topic: string; partition: number }[]): TopicPartitions[] {
  const topics = new Map<string, number[]>();
  for (const { topic, partition } of states) {
    appendTo(topics, topic, partition);
  }
  return [...topics].map(([topic, partitions]) => ({ topic, partitions }));
}

export class Consumer {
  /** Fetches only: a long poll holds up what is behind it on its connection. */
  #fetchSession: Session;
  /** Heartbeats, commits and offset lookups, never stuck behind a long poll. */
  #session: Session;
  #settings: Settings;
  #group: string | undefined;
  #mode: "none" | "subscribe" | "assign" = "none";
  #member: GroupMember | undefined;
  #states = new Map<string, PartitionState>();
  /**
   * The values of #states, in its order, kept beside it (#setStates): the per-poll loops walk
   * this array, where each loop over the Map made an iterator (five per poll and fetch).
   */
  #stateList: PartitionState[] = [];
  #startReset: OffsetReset;
  #fatal: Error | undefined;
  /** A partition's failure, thrown by the next poll. */
  #deferred: Error | undefined;
  #wakers = new Wakers();
  #rotation = 0;
  #polling = false;
  #prefetch: Prefetch | undefined;
  readonly #answers = new FetchAnswers();
  #failures = 0;
  #lastFailure: unknown;
  #autoCommitTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(options: ConsumerOptions = {}) {
    this.#settings = resolveSettings(options);
    const group = options.group ?? options.groupId;
    if (group !== undefined && typeof group !== "string") {
      throw new TypeError(`group ${String(group)} must be a string`);
    }
    if (options.group !== undefined && options.groupId !== undefined && options.groupId !== group) {
      throw new TypeError(`group ${options.group} and groupId ${options.groupId} differ`);
    }
    this.#group = group;
    this.#startReset = this.#settings.autoOffsetReset;
    this.#session = new Session(options);
    this.#fetchSession = new Session(options);
  }

  /**
   * The retriable error the last polls met (the broker unreachable, a connection lost) and how
   * many polls in a row met one; undefined once a poll succeeds. poll() keeps retrying such
   * errors quietly; this lets a caller say so.
   */
  get retrying(): { failures: number; error: unknown } | undefined {
    if (this.#failures === 0) return undefined;
    return { failures: this.#failures, error: this.#lastFailure };
  }

  /** The member id the group gave this consumer, once joined. */
  get memberId(): string | null {
    return this.#member?.memberId ?? null;
  }

  /** The partitions this consumer reads now. */
  assignment(): TopicPartition[] {
    return [...this.#states.values()].map(({ topic, partition }) => ({ topic, partition }));
  }

  /**
   * Joins `group` (or the one given to the constructor) for these topics; the server assigns
   * partitions. `fromBeginning` starts partitions without a committed offset at the earliest.
   */
  subscribe(
    topics: readonly string[],
    options: { group?: string; groupId?: string; fromBeginning?: boolean } = {},
  ): void {
    if (!Array.isArray(topics) || topics.some((t) => typeof t !== "string" || t.length === 0)) {
      throw new TypeError("subscribe() needs an array of topic names");
    }
    const group = options.group ?? options.groupId ?? this.#group;
    if (typeof group !== "string") throw new TypeError("subscribe() needs a group");
    this.#checkMode("subscribe");
    if (options.fromBeginning !== undefined) {
      this.#startReset = options.fromBeginning ? "earliest" : "latest";
    }
    if (this.#member !== undefined) {
      if (group !== this.#group) throw new TypeError("a consumer stays in one group");
      this.#member.subscribe([...topics]);
      return;
    }
    this.#group = group;
    this.#member = new GroupMember(this.#session, group, [...topics], {
      rebalanceTimeoutMs: this.#settings.rebalanceTimeoutMs,
      hooks: {
        beforeHeartbeat: () => this.#autoCommitBeforeHeartbeat(),
        onAssignment: (assignment) => this.#applyAssignment(assignment),
        onFatal: (error) => {
          this.#fatal = error;
          this.#wake();
        },
      },
    });
    this.#member.start();
    this.#armAutoCommit();
  }

  /**
   * Reads these partitions without group membership, from `offset` when given, else from the
   * group's committed offset (with a group), else per autoOffsetReset. Replaces the previous
   * assignment.
   */
  assign(partitions: readonly (TopicPartition & { offset?: number })[]): void {
    if (!Array.isArray(partitions)) throw new TypeError("assign() needs an array of partitions");
    for (const p of partitions) checkTopicPartition(p, "assign()");
    this.#checkMode("assign");
    const next = new Map<string, PartitionState>();
    for (const { topic, partition, offset } of partitions) {
      const key = partitionKey(topic, partition);
      const state =
        this.#states.get(key) ??
        newPartitionState(topic, partition, this.#startReset, this.#group !== undefined);
      if (offset !== undefined) moveTo(state, checkedOffset(offset));
      next.set(key, state);
    }
    this.#setStates(next);
    this.#armAutoCommit();
    this.#wake();
  }

  #checkMode(mode: "subscribe" | "assign"): void {
    if (this.#closed) throw new ClientError("CLOSED", "The consumer was closed");
    if (this.#mode !== "none" && this.#mode !== mode) {
      throw new TypeError(`${mode}() cannot follow ${this.#mode}() on one consumer`);
    }
    this.#mode = mode;
  }

  #applyAssignment(assignment: TopicPartitions[]): void {
    const next = new Map<string, PartitionState>();
    for (const { topic, partitions } of assignment) {
      for (const partition of partitions) {
        const key = partitionKey(topic, partition);
        next.set(
          key,
          this.#states.get(key) ?? newPartitionState(topic, partition, this.#startReset, true),
        );
      }
    }
    this.#setStates(next);
    this.#wake();
  }

  #setStates(next: Map<string, PartitionState>): void {
    this.#states = next;
    this.#stateList = [...next.values()];
  }

  /** Moves a partition's position; the next fetch reads from `offset`. */
  seek(target: TopicPartition & { offset: number }): void {
    checkTopicPartition(target, "seek()");
    const state = this.#states.get(partitionKey(target.topic, target.partition));
    if (state === undefined) {
      throw new RangeError(`${target.topic}-${target.partition} is not assigned to this consumer`);
    }
    moveTo(state, checkedOffset(target.offset));
    this.#wake();
  }

  /**
   * Moves partitions (default: all assigned) to the first record at or after `timestamp`, or
   * to the end where there is none.
   */
  async seekToTimestamp(timestamp: number, partitions?: readonly TopicPartition[]): Promise<void> {
    offsetSpecTimestamp(timestamp);
    const targets = partitions ?? this.assignment();
    for (const p of targets) checkTopicPartition(p, "seekToTimestamp()");
    let queries = targets.map(({ topic, partition }) => ({ topic, partition, timestamp }));
    // Partitions with no record that late go to their end, in a second round.
    for (let round = 0; round < 2 && queries.length > 0; round++) {
      const answers = await listOffsets(this.#session, queries);
      queries = [];
      for (const answer of answers) {
        const { topic, partition, offset, errorCode } = answer;
        if (errorCode !== 0) throw errorFromWire(errorCode, `offset of ${topic}-${partition}`);
        if (offset < 0) {
          queries.push({ topic, partition, timestamp: offsetSpecTimestamp("latest") });
          continue;
        }
        const state = this.#states.get(partitionKey(topic, partition));
        if (state !== undefined) moveTo(state, offset);
      }
    }
    this.#wake();
  }

  /** Stops fetching these partitions; records fetched ahead for them are dropped (refetched). */
  pause(partitions: readonly TopicPartition[]): void {
    this.#setPaused(partitions, true);
  }

  resume(partitions: readonly TopicPartition[]): void {
    this.#setPaused(partitions, false);
    this.#wake();
  }

  #setPaused(partitions: readonly TopicPartition[], paused: boolean): void {
    for (const p of partitions) {
      checkTopicPartition(p, paused ? "pause()" : "resume()");
      const state = this.#states.get(partitionKey(p.topic, p.partition));
      if (state === undefined) continue;
      state.paused = paused;
      if (paused && state.position !== state.delivered) {
        // Fetched ahead but not delivered: forgotten, and fetched again after resume.
        state.position = state.delivered;
        state.generation++;
      }
    }
  }

  /**
   * Fetches the next records: waits up to `maxWaitMs` for at least minBytes. Returns [] when
   * nothing came, on a retriable failure (after a backoff), and once the consumer is closed.
   * The records of the previous poll count as processed from now on (for auto-commit).
   */
  async poll(options: { maxWaitMs?: number } = {}): Promise<ConsumerRecord[]> {
    const maxWaitMs = integerIn(
      "maxWaitMs",
      options.maxWaitMs,
      this.#settings.maxWaitMs,
      MAX_WAIT_MS_MAX,
    );
    if (this.#polling) throw new TypeError("poll() called while another poll is running");
    this.#polling = true;
    try {
      for (const state of this.#stateList) state.consumed = state.delivered;
      // The usual poll awaits the prefetch here, in this frame: no #pollOnce frame and promise.
      const ready = this.#readyPrefetch(maxWaitMs);
      let fetched: Fetched[];
      if (ready === undefined) {
        fetched = await this.#pollOnce(maxWaitMs);
      } else {
        try {
          fetched = await ready;
          this.#tookFetch(maxWaitMs);
        } catch (error) {
          fetched = await this.#pollFailed(error);
        }
      }
      // The first partition's decoded array is this poll's answer, the others' records added
      // to it: each is a fresh array of that fetch's Fetched, which no one keeps past the poll.
      let records: ConsumerRecord[] | undefined;
      for (const { state, generation, records: batch } of fetched) {
        if (batch.length === 0 || !this.#current(state, generation)) continue;
        state.delivered = batch[batch.length - 1]!.offset + 1;
        if (records === undefined) records = batch;
        else for (const record of batch) records.push(record);
      }
      return records ?? [];
    } finally {
      this.#polling = false;
    }
  }

  /** Records one at a time, until the consumer is closed. */
  async *[Symbol.asyncIterator](): AsyncGenerator<ConsumerRecord, void, undefined> {
    if (this.#polling) throw new TypeError("iteration started while a poll is running");
    this.#polling = true;
    try {
      while (!this.#closed) {
        const maxWaitMs = this.#settings.maxWaitMs;
        const ready = this.#readyPrefetch(maxWaitMs);
        let fetched: Fetched[];
        if (ready === undefined) {
          fetched = await this.#pollOnce(maxWaitMs);
        } else {
          try {
            fetched = await ready;
            this.#tookFetch(maxWaitMs);
          } catch (error) {
            fetched = await this.#pollFailed(error);
          }
        }
        for (const { state, generation, records } of fetched) {
          for (const record of records) {
            if (this.#closed) return;
            // A seek or a lost partition since the fetch makes the rest of its records stale.
            if (!this.#current(state, generation)) break;
            state.delivered = record.offset + 1;
            yield record;
            if (state.generation === generation) state.consumed = record.offset + 1;
          }
        }
      }
    } finally {
      this.#polling = false;
    }
  }

  /** The partition is still assigned and has not been moved since `generation`. */
  #current(state: PartitionState, generation: number): boolean {
    return this.#states.get(state.key) === state && state.generation === generation;
  }

  /**
   * The prefetch's own promise when this poll can take it as it is (the usual poll: nothing
   * failed, every position known, a prefetch that waits no longer than this poll may), so the
   * poll awaits it directly, without #pollOnce's async frame and promise; else undefined.
   */
  #readyPrefetch(maxWaitMs: number): Promise<Fetched[]> | undefined {
    const prefetch = this.#prefetch;
    if (prefetch === undefined || prefetch.maxWaitMs > maxWaitMs) return undefined;
    if (this.#fatal !== undefined || this.#deferred !== undefined || this.#closed) return undefined;
    if (this.#hasUnresolved()) return undefined;
    this.#prefetch = undefined;
    return prefetch.fetched;
  }

  /** A poll's fetch came in: the failures end, and the next fetch goes out (if not yet). */
  #tookFetch(maxWaitMs: number): void {
    this.#failures = 0;
    this.#prefetchNext(maxWaitMs);
  }

  async #pollOnce(maxWaitMs: number): Promise<Fetched[]> {
    if (this.#fatal !== undefined) throw this.#fatal;
    const deferred = this.#deferred;
    if (deferred !== undefined) {
      this.#deferred = undefined;
      throw deferred;
    }
    if (this.#closed) return [];
    try {
      // Awaited only when a position is unknown: a poll of known partitions makes no promise.
      if (this.#hasUnresolved()) await this.#resolvePositions();
      const prefetched = this.#takePrefetch(maxWaitMs);
      let fetched = prefetched === undefined ? undefined : await prefetched;
      if (fetched === undefined) {
        const targets = this.#fetchable();
        if (targets.length === 0) {
          await this.#waitForChange(maxWaitMs);
          return [];
        }
        fetched = await this.#fetch(targets, maxWaitMs);
      }
      this.#tookFetch(maxWaitMs);
      return fetched;
    } catch (error) {
      return this.#pollFailed(error);
    }
  }

  /** A poll's fetch failed: [] after a backoff when it may be retried, else the error. */
  async #pollFailed(error: unknown): Promise<Fetched[]> {
    if (this.#closed) return [];
    if (!isRetriable(error)) throw error;
    this.#failures++;
    this.#lastFailure = error;
    await this.#waitForChange(this.#session.backoffMs(this.#failures));
    return [];
  }

  /**
   * The results of the fetch sent ahead, if there is one. It may wait at the server longer than
   * this poll may: then the poll returns [] after its own wait and leaves the fetch for the next.
   */
  #takePrefetch(maxWaitMs: number): Promise<Fetched[] | undefined> | undefined {
    const prefetch = this.#prefetch;
    if (prefetch === undefined) return undefined;
    this.#prefetch = undefined;
    // The usual case: the fetch's own promise, with no async wrapper around it.
    if (prefetch.maxWaitMs <= maxWaitMs) return prefetch.fetched;
    return this.#racePrefetch(prefetch, maxWaitMs);
  }

  async #racePrefetch(prefetch: Prefetch, maxWaitMs: number): Promise<Fetched[]> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), maxWaitMs);
    });
    const fetched = await Promise.race([prefetch.fetched, waited]);
    clearTimeout(timer);
    if (fetched === undefined) this.#prefetch = prefetch;
    return fetched ?? [];
  }

  /** The shared writer of a fetch request's body, for a request built at once (see #fetch). */
  #fetchBody(targets: PartitionState[], maxWaitMs: number): (writer: Writer) => void {
    this.#fetchTargets = targets;
    this.#fetchWaitMs = maxWaitMs;
    return this.#writeFetchBody;
  }
  #fetchTargets: PartitionState[] = [];
  #fetchWaitMs = 0;
  readonly #writeFetchBody = (writer: Writer): void => {
    this.#writeFetch(writer, this.#fetchTargets, this.#fetchWaitMs);
    // Its targets are the caller's: not held past the write.
    this.#fetchTargets = [];
  };

  #writeFetch(writer: Writer, targets: PartitionState[], maxWaitMs: number): void {
    const limits = this.#fetchLimits;
    limits.maxWaitMs = maxWaitMs;
    limits.minBytes = this.#settings.minBytes;
    limits.maxBytes = this.#settings.maxBytes;
    limits.partitionMaxBytes = this.#settings.partitionMaxBytes;
    // writeFetchRequestFor reads the limits before it returns: one object serves every fetch.
    writeFetchRequestFor(writer, targets, limits);
  }
  readonly #fetchLimits: FetchLimits = {
    maxWaitMs: 0,
    minBytes: 0,
    maxBytes: 0,
    partitionMaxBytes: 0,
  };

  /** requestChunks' options for a fetch, filled into `options`. */
  #fetchOptions(
    targets: PartitionState[],
    maxWaitMs: number,
    options: { timeoutMs: number; bodyBytesHint: number; sendNow: boolean },
  ) {
    options.timeoutMs = this.#settings.requestTimeoutMs + maxWaitMs;
    options.bodyBytesHint = fetchRequestBytesFor(targets);
    return options;
  }
  // A consumer's one fetch has nothing to share a write with: it goes out at once (sendNow).
  readonly #fetchRequestOptions = { timeoutMs: 0, bodyBytesHint: 0, sendNow: true };

  /** Sends the fetch for the records after those being handed out now. */
  #prefetchNext(maxWaitMs: number): void {
    if (this.#closed || this.#prefetch !== undefined) return;
    if (this.#fatal !== undefined || this.#deferred !== undefined) return;
    const targets = this.#fetchable();
    if (targets.length === 0) return;
    const fetched = this.#fetch(targets, maxWaitMs);
    // Its failure surfaces in the poll that takes it; until then it must not go unhandled.
    fetched.catch(ignoreFailure);
    this.#prefetch = { fetched, maxWaitMs };
  }

  /** Partitions with a known position, not paused, in an order that rotates per fetch. */
  #fetchable(): PartitionState[] {
    const all = this.#stateList;
    let count = 0;
    for (const state of all) if (fetchable(state)) count++;
    const states = new Array<PartitionState>(count);
    if (count === 0) return states;
    // The first partition of a response may always take a whole batch: let each be first.
    // The `start`-th fetchable partition goes first, the ones before it last: one array.
    const start = this.#rotation++ % count;
    let at = start === 0 ? 0 : count - start;
    for (const state of all) {
      if (!fetchable(state)) continue;
      states[at] = state;
      at = at + 1 === count ? 0 : at + 1;
    }
    return states;
  }

  async #fetch(targets: PartitionState[], maxWaitMs: number): Promise<Fetched[]> {
    // What each partition was asked from: a seek or a new generation meanwhile drops its part.
    const offsets = new Array<number>(targets.length);
    const generations = new Array<number>(targets.length);
    for (let at = 0; at < targets.length; at++) {
      offsets[at] = targets[at]!.position!;
      generations[at] = targets[at]!.generation;
    }
    // With a live connection the request is built before requestChunks returns, so one body
    // writer and one options object, refilled per fetch, serve every fetch; a request that
    // waits for a connection is built later, when another fetch may have refilled them.
    const live = this.#fetchSession.current !== undefined;
    const body = await this.#fetchSession.requestChunks(
      API.Fetch,
      live
        ? this.#fetchBody(targets, maxWaitMs)
        : (writer) => this.#writeFetch(writer, targets, maxWaitMs),
      this.#fetchOptions(
        targets,
        maxWaitMs,
        live ? this.#fetchRequestOptions : { ...this.#fetchRequestOptions },
      ),
    );
    // Read whole before any state changes: a malformed answer changes no position.
    const answers = this.#answers.read(body, targets);
    const taken: Fetched[] = [];
    for (let at = 0; at < targets.length; at++) {
      const highWatermark = answers.highWatermarks[at]!;
      if (Number.isNaN(highWatermark)) continue;
      const state = targets[at]!;
      const offset = offsets[at]!;
      const gen = generations[at]!;
      // Dropped when the partition was revoked, moved or paused while the fetch was out.
      if (!this.#current(state, gen) || state.position !== offset || state.paused) continue;
      state.highWatermark = highWatermark;
      const code = answers.errorCodes[at]!;
      if (code !== 0) {
        this.#onPartitionError(state, code);
        continue;
      }
      // Nothing new here: nothing to decode, and the position stays.
      const bytes = answers.records[at];
      if (bytes === undefined) continue;
      // Positions move by the batch headers, so the next fetch can go out before decoding.
      state.position = nextOffsetFromHeaders(offset, bytes);
      taken.push({ state, offset, generation: gen, bytes, records: NOT_DECODED });
    }
    this.#answers.release();
    // The poll waiting for this fetch takes its records now: the next fetch goes out first,
    // and the server reads and sends it while these records are decoded.
    if (this.#prefetch === undefined && this.#polling) this.#prefetchNext(maxWaitMs);
    return this.#decodeTaken(taken);
  }

  /**
   * The records of each partition's bytes. A partition whose bytes fail to decode (a corrupt
   * batch) keeps the records before that batch and its position goes back to that batch; the
   * fetch already sent past it asked for another offset, so its results there are dropped.
   * The error is thrown now when no partition has records, else by the next poll, after the
   * records are returned.
   */
  #decodeTaken(fetched: Fetched[]): Fetched[] {
    let failure: unknown;
    let recordCount = 0;
    for (const taken of fetched) {
      const { state, offset, generation: gen, bytes } = taken;
      const { topic, partition } = state;
      state.decodeOptions ??= consumerDecodeOptions(topic, partition, {
        checkCrc: this.#settings.checkCrcs,
      });
      const decoded = recordsUntilDamage(topic, partition, offset, bytes, state.decodeOptions);
      taken.records = decoded.records;
      recordCount += decoded.records.length;
      if (decoded.failure === undefined) continue;
      failure ??= decoded.failure;
      if (this.#current(state, gen)) state.position = decoded.nextOffset;
    }
    if (failure === undefined) return fetched;
    if (recordCount === 0) throw failure;
    this.#deferred ??= failure instanceof Error ? failure : new Error(String(failure));
    return fetched;
  }

  #onPartitionError(state: PartitionState, code: number): void {
    if (code === WIRE_ERRORS.OFFSET_OUT_OF_RANGE) {
      state.position = undefined;
      state.useCommitted = false;
      state.reset = this.#settings.autoOffsetReset;
      return;
    }
    const unknown = code === WIRE_ERRORS.UNKNOWN_TOPIC || code === WIRE_ERRORS.UNKNOWN_PARTITION;
    // In a group the next assignment will drop a partition that went away.
    if (unknown && this.#mode === "subscribe") return;
    const error = errorFromWire(code, `fetch of ${state.topic}-${state.partition}`);
    // Thrown by the next poll: the records of the other partitions are returned first.
    if (!error.retriable) this.#deferred ??= error;
  }

  #hasUnresolved(): boolean {
    for (const state of this.#stateList) if (state.position === undefined) return true;
    return false;
  }

  /** Start positions: the group's committed offsets first, then the reset policy. */
  async #resolvePositions(): Promise<void> {
    const unresolved = [...this.#states.values()].filter((s) => s.position === undefined);
    if (unresolved.length === 0) return;
    const group = this.#group;
    const withCommitted = unresolved.filter((s) => s.useCommitted);
    if (group !== undefined && withCommitted.length > 0) {
      const committed = await fetchOffsets(this.#session, group, byTopic(withCommitted));
      for (const c of committed) {
        const state = this.#states.get(partitionKey(c.topic, c.partition));
        if (state === undefined || state.position !== undefined || c.offset < 0) continue;
        moveTo(state, c.offset);
        state.committed = c.offset;
      }
      for (const state of withCommitted) state.useCommitted = false;
    }
    const toReset = unresolved.filter(
      (s) => this.#states.get(s.key) === s && s.position === undefined,
    );
    if (toReset.length === 0) return;
    const answers = await listOffsets(
      this.#session,
      toReset.map((s) => ({
        topic: s.topic,
        partition: s.partition,
        timestamp: offsetSpecTimestamp(s.reset),
      })),
    );
    for (const answer of answers) {
      const state = this.#states.get(partitionKey(answer.topic, answer.partition));
      if (state === undefined || state.position !== undefined) continue;
      if (answer.errorCode !== 0) {
        this.#onPartitionError(state, answer.errorCode);
        continue;
      }
      moveTo(state, answer.offset);
    }
  }

  #waitForChange(timeoutMs: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#wakers.wait(timeoutMs);
  }

  #wake(): void {
    this.#wakers.wakeAll();
  }

  /**
   * Commits offsets: the given ones (the next offset to read, as Kafka), or else everything
   * delivered so far. In a group the commit carries the member id and epoch, and the server
   * refuses partitions this member no longer owns (FENCED_MEMBER_EPOCH).
   */
  async commit(
    offsets?: readonly (TopicPartition & { offset: number; metadata?: string })[],
  ): Promise<void> {
    const group = this.#group;
    if (group === undefined) throw new TypeError("commit() needs a consumer group");
    let entries: OffsetToCommit[];
    if (offsets === undefined) {
      entries = [...this.#states.values()]
        .filter((s) => s.delivered !== undefined && s.delivered !== s.committed)
        .map((s) => ({ topic: s.topic, partition: s.partition, offset: s.delivered! }));
    } else {
      if (!Array.isArray(offsets)) throw new TypeError("commit() takes an array of offsets");
      for (const o of offsets) checkTopicPartition(o, "commit()");
      entries = offsets.map((o) => ({ ...o, offset: checkedOffset(o.offset) }));
    }
    await this.#commit(group, entries);
  }

  async #commit(group: string, offsets: OffsetToCommit[]): Promise<void> {
    if (offsets.length === 0) return;
    const member = this.#member;
    await commitOffsets(this.#session, {
      groupId: group,
      memberId: member?.memberId ?? null,
      memberEpoch: member === undefined ? -1 : member.memberEpoch,
      offsets,
    });
    for (const { topic, partition, offset } of offsets) {
      const state = this.#states.get(partitionKey(topic, partition));
      if (state !== undefined) state.committed = offset;
    }
  }

  /** Commits what the application has finished with; failures wait for the next try. */
  #commitConsumed(): Promise<void> {
    const group = this.#group;
    if (group === undefined || (this.#member !== undefined && !this.#member.joined)) {
      return Promise.resolve();
    }
    const offsets = [...this.#states.values()]
      .filter((s) => s.consumed !== undefined && s.consumed !== s.committed)
      .map((s) => ({ topic: s.topic, partition: s.partition, offset: s.consumed! }));
    return this.#commit(group, offsets).catch(() => undefined);
  }

  #autoCommitBeforeHeartbeat(): void {
    if (this.#settings.autoCommit) void this.#commitConsumed();
  }

  #armAutoCommit(): void {
    const { autoCommit, autoCommitIntervalMs } = this.#settings;
    if (!autoCommit || this.#group === undefined || this.#autoCommitTimer !== undefined) return;
    this.#autoCommitTimer = setTimeout(() => {
      this.#autoCommitTimer = undefined;
      if (this.#closed) return;
      void this.#commitConsumed().finally(() => this.#armAutoCommit());
    }, autoCommitIntervalMs);
  }

  /**
   * Commits everything delivered (with auto-commit on), leaves the group and closes the
   * connection. A poll in progress returns [].
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake();
    if (this.#autoCommitTimer !== undefined) clearTimeout(this.#autoCommitTimer);
    if (this.#settings.autoCommit && this.#group !== undefined && this.#fatal === undefined) {
      for (const state of this.#states.values()) state.consumed = state.delivered;
      await this.#commitConsumed();
    }
    await this.#member?.leave();
    await Promise.all([this.#session.close(), this.#fetchSession.close()]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * A fetch answer by target (the fetch's partitions, in request order): each one's high
 * watermark (NaN: not in the answer), error code, and record views when it has any. Read into
 * columns, with no object per partition: a consumer of 250 partitions gets an entry for each
 * in every answer, most of them with nothing. One reader serves every fetch of a consumer
 * (its columns are reused while the number of targets stays): #fetch reads an answer's
 * columns before it returns, and answers are read one at a time, so no answer outlives the
 * next read. It is its own visitor: no closures per answer.
 */
class FetchAnswers implements FetchResponseVisitor {
  highWatermarks = new Float64Array(0);
  errorCodes = new Int32Array(0);
  records: (Uint8Array[] | undefined)[] = [];
  #targets: readonly PartitionState[] = [];
  #index = 0;
  #topic = "";

  read(body: Uint8Array | readonly Uint8Array[], targets: readonly PartitionState[]): this {
    const count = targets.length;
    if (this.highWatermarks.length !== count) {
      this.highWatermarks = new Float64Array(count);
      this.errorCodes = new Int32Array(count);
      this.records = new Array<Uint8Array[] | undefined>(count);
    }
    this.highWatermarks.fill(Number.NaN);
    this.errorCodes.fill(0);
    this.records.fill(undefined);
    this.#targets = targets;
    this.#index = 0;
    this.#topic = "";
    try {
      visitFetchResponse(body, this);
    } finally {
      // Not held past the read: the targets are the caller's.
      this.#targets = [];
    }
    return this;
  }

  /** Drops the record views of the last answer (they are the caller's now). */
  release(): void {
    this.records.fill(undefined);
  }

  topic(name: string): void {
    this.#topic = name;
  }

  partition(result: FetchPartitionResult): void {
    // The server answers in the request's order: the next target, unless it is not.
    const at = targetIndex(this.#targets, this.#index, this.#topic, result.partition);
    if (at === -1) return;
    this.#index = at + 1;
    this.highWatermarks[at] = result.highWatermark;
    this.errorCodes[at] = result.errorCode;
    if (result.errorCode === 0 && !isEmpty(result.records)) this.records[at] = result.records;
  }
}

/**
 * The index of the target a partition result answers: `from` when the server kept the
 * request's order (it does), else found by a scan; -1 for a partition not asked for.
 */
function targetIndex(
  targets: readonly PartitionState[],
  from: number,
  topic: string,
  partition: number,
): number {
  const next = targets[from];
  if (next !== undefined && next.partition === partition && next.topic === topic) return from;
  return targets.findIndex((t) => t.partition === partition && t.topic === topic);
}

/** No bytes in these views (an empty partition result has none, or one empty view). */
function isEmpty(views: readonly Uint8Array[]): boolean {
  for (const view of views) if (view.length > 0) return false;
  return true;
}

function checkedOffset(offset: number): number {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`offset ${offset} is not a non-negative integer`);
  }
  return offset;
}

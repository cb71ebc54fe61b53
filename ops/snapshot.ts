// What the operations endpoints report, read from the broker's state in one pass: topics with
// each partition's log start, log end and size; consumer groups (every group the broker lists,
// with state, members and lag per partition); queues; exchanges; the server's connection and
// request counters. A Sampler reads the log ends once a second and keeps a few seconds of
// them, so rates (records per second, by topic) come from two readings, and so does
// `recordsAppended`, the records appended since the broker started: the sum of every log
// end's growth, kept for topics that were deleted since, so it never goes down. Groups come
// from the broker in process (its coordinator), not over the wire, so the page needs neither
// the listener's credentials nor its TLS.
//
// Nothing here is on the data path: reading a log end or size is a field read, and a scrape
// or a page refresh costs one pass over the partitions.

import type { Engine, HistogramSnapshot } from "../engine/mod.ts";

export type PartitionState = { partition: number; start: number; end: number; sizeBytes: number };
export type TopicState = {
  name: string;
  partitions: PartitionState[];
  sizeBytes: number;
  /** Records appended per second over the last few seconds (0 until two readings exist). */
  recordsPerSecond: number;
  config: Record<string, unknown>;
};
export type GroupPartitionLag = { topic: string; partition: number; committed: number; lag: number };
export type GroupState = {
  group: string;
  /**
   * As ListGroups says: "stable" or "reconciling" (sluice's own groups with members), "empty"
   * (committed offsets, no members), or a Kafka classic group's state; null before the broker
   * listens.
   */
  state: string | null;
  /** How many members the group has now; null before the broker listens. */
  memberCount: number | null;
  /**
   * The group epoch (a Kafka classic group's generation): it grows by one each rebalance; 0
   * for a group known only by its committed offsets; null before the broker listens.
   */
  generation: number | null;
  partitions: GroupPartitionLag[];
  lag: number;
  /**
   * The members' ids (sluice's own groups, the first MEMBER_GROUPS_MAX of them); null where
   * not known (before the broker listens, a Kafka classic group, past the cap).
   */
  members: string[] | null;
};
/** One group as the broker's ListGroups lists it (protocol/server's ListedGroup). */
export type GroupListing = {
  groupId: string;
  state: string;
  members: number;
  groupEpoch?: number;
};
/** The broker's group coordinator, read in process. */
export type GroupSource = {
  list(): GroupListing[];
  /** The ids of the members of one of sluice's own groups. */
  memberIds(groupId: string): string[];
  /** Rebalances of every group since the broker started. */
  rebalances?(): number;
};

/** The engine's group commit across partitions (engine/group_sync.ts). */
export type GroupSyncState = {
  rounds: number;
  flushRounds: number;
  fdatasyncRounds: number;
  files: number;
  /** 1 when rounds may flush the file system with one syncfs, 0 when they fdatasync only. */
  syncfsAvailable: boolean;
  roundSeconds: HistogramSnapshot;
};
/** The engine's tail-cache budget (engine/tail_cache_budget.ts). */
export type TailCacheState = {
  heldBytes: number;
  totalBytesMax: number;
  /** Segments holding chunks. */
  segments: number;
  /** Times a segment was asked to shed written chunks since the budget was made. */
  sheds: number;
};
export type ExchangeState = {
  name: string;
  type: string;
  bindings: number;
  alternateExchange: string | null;
  alternateTopic: string | null;
};
export type QueueState = {
  name: string;
  topic: string;
  members: number;
  ready: number;
  acquired: number;
  delivered: number;
};
export type ServerCounters = {
  connections: number;
  bytesIn: number;
  bytesOut: number;
  /** Socket writes on the native listener (answers written together count once). */
  socketWrites: number;
  requests: Record<string, number>;
  refusedRequests: number;
};

/** Request latency by API name and answers by error name, from the native server. */
export type RequestLatency = {
  requestSeconds: Record<string, HistogramSnapshot>;
  /** Requests over the Kafka listener, by Kafka API name. */
  kafkaRequestSeconds: Record<string, HistogramSnapshot>;
  errors: Record<string, number>;
};

export type Snapshot = {
  timeMs: number;
  uptimeSeconds: number;
  ready: boolean;
  topics: TopicState[];
  groups: GroupState[];
  /** Group rebalances since the broker started; null before it listens. */
  groupRebalances: number | null;
  groupSync: GroupSyncState;
  tailCache: TailCacheState;
  queues: QueueState[];
  exchanges: ExchangeState[];
  server: ServerCounters | null;
  /** Every partition fdatasync since the engine opened. */
  fsyncSeconds: HistogramSnapshot;
  /** Commit fdatasyncs of the queues' state logs (what an fsynced accept waits for). */
  queueFsyncSeconds: HistogramSnapshot;
  /** Null before the native server listens. */
  latency: RequestLatency | null;
  recordsAppended: number;
  recordsAppendedByTopic: Record<string, number>;
};

/** How many one-second readings the sampler keeps: rates are over this window. */
export const RATE_WINDOW_READINGS = 5;
export const SAMPLE_INTERVAL_MS = 1000;
/** A snapshot lists the member ids of at most this many groups (every group's count). */
export const MEMBER_GROUPS_MAX = 100;
/** The states of sluice's own groups with members: the coordinator knows their member ids. */
const NATIVE_GROUP_STATES: ReadonlySet<string> = new Set(["stable", "reconciling"]);

type Reading = { timeMs: number; ends: Map<string, number> };

/** Sum of log ends by topic. */
function readEnds(engine: Engine): Map<string, number> {
  const ends = new Map<string, number>();
  for (const topic of engine.listTopics()) {
    let sum = 0;
    for (let p = 0; p < topic.partitions; p++) sum += engine.partition(topic.name, p).logEndOffset;
    ends.set(topic.name, sum);
  }
  return ends;
}

export class Sampler {
  readonly #engine: Engine;
  readonly #nowMs: () => number;
  readonly #readings: Reading[] = [];
  /** The log-end sum of each topic when first seen, and the growth of topics deleted since. */
  readonly #baseline = new Map<string, number>();
  readonly #retired = new Map<string, number>();
  #lastEnds = new Map<string, number>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(engine: Engine, options: { nowMs?: () => number } = {}) {
    this.#engine = engine;
    this.#nowMs = options.nowMs ?? Date.now;
    // Topics there at start count from their log end then; topics created later from 0.
    for (const [topic, end] of readEnds(engine)) this.#baseline.set(topic, end);
    this.sample();
  }

  /** Reads every topic's log end now. */
  sample(): void {
    const ends = readEnds(this.#engine);
    for (const [topic, end] of this.#lastEnds) {
      if (ends.has(topic)) continue;
      const growth = end - (this.#baseline.get(topic) ?? 0);
      this.#retired.set(topic, (this.#retired.get(topic) ?? 0) + growth);
      // A topic created again under the same name counts from 0.
      this.#baseline.delete(topic);
    }
    this.#lastEnds = ends;
    this.#readings.push({ timeMs: this.#nowMs(), ends });
    if (this.#readings.length > RATE_WINDOW_READINGS) this.#readings.shift();
  }

  start(): void {
    this.#timer = setInterval(() => this.sample(), SAMPLE_INTERVAL_MS);
    // A sampler never keeps the process alive on its own.
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Records per second of `topic` between the oldest and newest readings. */
  rate(topic: string): number {
    const first = this.#readings[0];
    const last = this.#readings.at(-1);
    if (first === undefined || last === undefined || last.timeMs <= first.timeMs) return 0;
    const from = first.ends.get(topic);
    const to = last.ends.get(topic);
    if (from === undefined || to === undefined) return 0;
    return ((to - from) * 1000) / (last.timeMs - first.timeMs);
  }

  /** Records appended since start, by topic (deleted topics keep what they had). */
  appendedByTopic(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [topic, growth] of this.#retired) out[topic] = growth;
    for (const [topic, end] of readEnds(this.#engine)) {
      const base = this.#baseline.get(topic) ?? 0;
      out[topic] = (out[topic] ?? 0) + (end - base);
    }
    return out;
  }
}

function topicState(engine: Engine, sampler: Sampler, name: string): TopicState {
  const info = engine.describeTopic(name);
  const partitions: PartitionState[] = [];
  for (let p = 0; p < info.partitions; p++) {
    const log = engine.partition(name, p);
    partitions.push({
      partition: p,
      start: log.logStartOffset,
      end: log.logEndOffset,
      sizeBytes: log.sizeBytes,
    });
  }
  return {
    name,
    partitions,
    sizeBytes: partitions.reduce((sum, p) => sum + p.sizeBytes, 0),
    recordsPerSecond: sampler.rate(name),
    config: { ...info.config },
  };
}

function groupState(
  engine: Engine,
  topics: Map<string, TopicState>,
  group: string,
): Omit<GroupState, "state" | "memberCount" | "members" | "generation"> {
  const partitions: GroupPartitionLag[] = [];
  for (const [topic, offsets] of engine.offsets.fetchGroup(group)) {
    const state = topics.get(topic);
    for (const [partition, committed] of offsets) {
      const log = state?.partitions[partition];
      if (log === undefined || committed.offset < 0) continue;
      const lag = Math.max(0, log.end - Math.max(committed.offset, log.start));
      partitions.push({ topic, partition, committed: committed.offset, lag });
    }
  }
  partitions.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
  return { group, partitions, lag: partitions.reduce((sum, p) => sum + p.lag, 0) };
}

/**
 * Every group the broker lists, with state and members, and lag where it has committed
 * offsets; without the broker (before it listens), the groups with committed offsets only.
 */
function groupStates(
  engine: Engine,
  topics: Map<string, TopicState>,
  source: GroupSource | null,
): GroupState[] {
  if (source === null) {
    return engine.offsets
      .groups()
      .sort()
      .map((group) => ({
        ...groupState(engine, topics, group),
        state: null,
        memberCount: null,
        generation: null,
        members: null,
      }));
  }
  let described = 0;
  return source.list().map((listing) => {
    let members: string[] | null = listing.members === 0 ? [] : null;
    const native = NATIVE_GROUP_STATES.has(listing.state);
    if (native && members === null && described < MEMBER_GROUPS_MAX) {
      described++;
      members = source.memberIds(listing.groupId);
    }
    return {
      ...groupState(engine, topics, listing.groupId),
      state: listing.state,
      memberCount: listing.members,
      generation: listing.groupEpoch ?? 0,
      members,
    };
  });
}

function exchangeStates(engine: Engine): ExchangeState[] {
  return engine
    .listExchanges()
    .map((exchange) => ({
      name: exchange.name,
      type: exchange.type,
      bindings: exchange.bindings.length,
      alternateExchange: exchange.alternateExchange,
      alternateTopic: exchange.alternateTopic,
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

function queueStates(engine: Engine): QueueState[] {
  return engine.listQueues().map((config) => {
    const stats = engine.queueStats(config.name);
    return {
      name: stats.name,
      topic: stats.topic,
      members: stats.members,
      ready: stats.ready,
      acquired: stats.acquired,
      delivered: stats.delivered,
    };
  });
}

export type SnapshotSource = {
  engine: Engine;
  sampler: Sampler;
  startedMs: number;
  /** The native server's counters, once it listens (null before). */
  server: () => ServerCounters | null;
  latency?: () => RequestLatency | null;
  /** The broker's groups, once it listens (null before). */
  groups?: () => GroupSource | null;
  ready: () => boolean;
};

export function takeSnapshot(source: SnapshotSource): Snapshot {
  const { engine, sampler } = source;
  const topicList = engine.listTopics().map((t) => topicState(engine, sampler, t.name));
  topicList.sort((a, b) => a.name.localeCompare(b.name));
  const topics = new Map(topicList.map((t) => [t.name, t]));
  const groupSource = source.groups?.() ?? null;
  const groups = groupStates(engine, topics, groupSource);
  const sync = engine.groupSync;
  const byTopic = sampler.appendedByTopic();
  const nowMs = Date.now();
  return {
    timeMs: nowMs,
    uptimeSeconds: (nowMs - source.startedMs) / 1000,
    ready: source.ready(),
    topics: topicList,
    groups,
    groupRebalances: groupSource?.rebalances?.() ?? null,
    groupSync: {
      rounds: sync.rounds,
      ...sync.stats,
      syncfsAvailable: sync.flushesFileSystem,
      roundSeconds: sync.roundSeconds.snapshot(),
    },
    tailCache: {
      heldBytes: engine.tailCacheBudget.heldBytes,
      totalBytesMax: engine.tailCacheBudget.totalBytesMax,
      segments: engine.tailCacheBudget.holderCount,
      sheds: engine.tailCacheBudget.sheds,
    },
    queues: queueStates(engine),
    exchanges: exchangeStates(engine),
    server: source.server(),
    fsyncSeconds: engine.fsyncSeconds.snapshot(),
    queueFsyncSeconds: engine.queueFsyncSeconds.snapshot(),
    latency: source.latency?.() ?? null,
    recordsAppended: Object.values(byTopic).reduce((sum, n) => sum + n, 0),
    recordsAppendedByTopic: byTopic,
  };
}

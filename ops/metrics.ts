// /metrics: a Snapshot (./snapshot.ts) in Prometheus' text exposition format 0.0.4: `# HELP`
// and `# TYPE` before each family, label values escaped (backslash, quote, newline), counters
// ending in `_total`, units in names (`_bytes`, `_seconds`).
//
// Per-partition series (log start, log end, size, group lag) are exported while the broker has
// at most `partitionsMax` partitions; above that only the per-topic and per-group sums are, so a
// broker with a million partitions does not produce a scrape of millions of lines.
//
// Latencies are Prometheus histograms (`_bucket{le=...}` cumulative, `_sum`, `_count`) in
// seconds: `sluice_fsync_seconds` (every fdatasync of a partition segment, from the engine),
// `sluice_queue_fsync_seconds` (every commit fdatasync of a queue's state log: the one an
// fsynced accept waits for),
// `sluice_request_seconds{api=...}` (arrival to answer queued, by API, from the native server)
// and `sluice_kafka_request_seconds{api=...}` (the Kafka listener, by Kafka API name, once it
// has served one). `sluice_errors_total{code=...}` counts answers by wire error name: header
// codes, requests refused on arrival, codes in control-plane, queue and exchange answer bodies
// (QueueFetch and QueueAck included, one per failed partition), and each partition a Produce
// refused; not yet the Kafka listener's, whose codes are Kafka's. `sluice_requests_total` (by
// API) and the byte and connection counters come from the server's own Stats counters.
//
// Consumer groups (every group ListGroups lists, once the broker listens): members, generation
// (group epoch) and state per group, rebalances since start, and lag by group and topic. The
// engine's group commit across partitions (engine/group_sync.ts): rounds by the way they were
// made durable (one syncfs of the file system, or an fdatasync per log), the segment files they
// covered (files per round = files / rounds), whether syncfs is in use at all, and each round's
// time from dispatch to its last log made durable.

import type { HistogramSnapshot } from "../engine/mod.ts";
import { API, WIRE_ERRORS, type WireErrorName } from "../protocol/mod.ts";
import type { Snapshot } from "./snapshot.ts";

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
export const METRICS_PARTITIONS_MAX_DEFAULT = 1000;

const API_NAMES = new Map<string, string>(
  Object.entries(API).map(([name, key]) => [String(key), name]),
);

type Labels = Record<string, string | number>;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

class Exposition {
  readonly #lines: string[] = [];

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): this {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, value: number, labels: Labels = {}): this {
    const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
    const set = pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
    this.#lines.push(`${name}${set} ${formatValue(value)}`);
    return this;
  }

  /** One histogram's series: cumulative buckets up to +Inf, then sum and count. */
  histogram(name: string, histogram: HistogramSnapshot, labels: Labels = {}): this {
    let cumulative = 0;
    histogram.boundsSeconds.forEach((bound, i) => {
      cumulative += histogram.counts[i] ?? 0;
      this.sample(`${name}_bucket`, cumulative, { ...labels, le: String(bound) });
    });
    this.sample(`${name}_bucket`, histogram.count, { ...labels, le: "+Inf" });
    this.sample(`${name}_sum`, histogram.sumSeconds, labels);
    return this.sample(`${name}_count`, histogram.count, labels);
  }

  text(): string {
    return `${this.#lines.join("\n")}\n`;
  }
}

function serverFamilies(out: Exposition, snapshot: Snapshot): void {
  out.family("sluice_up", "gauge", "1 while the broker runs.").sample("sluice_up", 1);
  out
    .family("sluice_ready", "gauge", "1 once recovered and listening for clients.")
    .sample("sluice_ready", snapshot.ready ? 1 : 0);
  out
    .family("sluice_uptime_seconds", "gauge", "Seconds since the broker started.")
    .sample("sluice_uptime_seconds", Math.round(snapshot.uptimeSeconds * 1000) / 1000);
  const server = snapshot.server;
  if (server === null) return;
  out
    .family("sluice_connections", "gauge", "Open client connections.")
    .sample("sluice_connections", server.connections);
  out
    .family("sluice_bytes_in_total", "counter", "Bytes received from clients.")
    .sample("sluice_bytes_in_total", server.bytesIn);
  out
    .family("sluice_bytes_out_total", "counter", "Bytes sent to clients.")
    .sample("sluice_bytes_out_total", server.bytesOut);
  out
    .family("sluice_socket_writes_total", "counter", "Socket writes of answers to clients.")
    .sample("sluice_socket_writes_total", server.socketWrites);
  out.family("sluice_requests_total", "counter", "Requests served, by API.");
  for (const [key, count] of Object.entries(server.requests)) {
    out.sample("sluice_requests_total", count, { api: API_NAMES.get(key) ?? `api_${key}` });
  }
  out
    .family("sluice_requests_refused_total", "counter", "Requests refused on arrival.")
    .sample("sluice_requests_refused_total", server.refusedRequests);
}

function latencyFamilies(out: Exposition, snapshot: Snapshot): void {
  out
    .family("sluice_fsync_seconds", "histogram", "fdatasync of a partition segment, in seconds.")
    .histogram("sluice_fsync_seconds", snapshot.fsyncSeconds);
  out
    .family(
      "sluice_queue_fsync_seconds",
      "histogram",
      "fdatasync of a queue state log's commit (what an fsynced accept waits for), in seconds.",
    )
    .histogram("sluice_queue_fsync_seconds", snapshot.queueFsyncSeconds);
  const latency = snapshot.latency;
  if (latency === null) return;
  out.family("sluice_request_seconds", "histogram", "Request arrival to answer, by API, seconds.");
  for (const [api, histogram] of Object.entries(latency.requestSeconds)) {
    out.histogram("sluice_request_seconds", histogram, { api });
  }
  const kafka = Object.entries(latency.kafkaRequestSeconds);
  if (kafka.length > 0) {
    out.family("sluice_kafka_request_seconds", "histogram", "Kafka listener requests, seconds.");
    for (const [api, histogram] of kafka) out.histogram("sluice_kafka_request_seconds", histogram, { api });
  }
  out.family("sluice_errors_total", "counter", "Answers with an error, by wire error code.");
  for (const [code, count] of Object.entries(latency.errors)) {
    const wireCode = WIRE_ERRORS[code as WireErrorName] ?? -1;
    out.sample("sluice_errors_total", count, { code, wire_code: wireCode });
  }
}

function groupFamilies(out: Exposition, snapshot: Snapshot): void {
  const listed = snapshot.groups.filter((g) => g.state !== null);
  out.family("sluice_group_members", "gauge", "Members of a consumer group.");
  for (const g of listed) out.sample("sluice_group_members", g.memberCount ?? 0, { group: g.group });
  out.family("sluice_group_generation", "gauge", "A group's epoch (generation): +1 a rebalance.");
  for (const g of listed) out.sample("sluice_group_generation", g.generation ?? 0, { group: g.group });
  out.family("sluice_group_state", "gauge", "1 for a group's state as ListGroups names it.");
  for (const g of listed) out.sample("sluice_group_state", 1, { group: g.group, state: g.state! });
  if (snapshot.groupRebalances !== null) {
    out
      .family("sluice_group_rebalances_total", "counter", "Group rebalances since start.")
      .sample("sluice_group_rebalances_total", snapshot.groupRebalances);
  }
}

function groupSyncFamilies(out: Exposition, snapshot: Snapshot): void {
  const sync = snapshot.groupSync;
  out
    .family("sluice_group_sync_rounds_total", "counter", "Group-commit rounds, by how synced.")
    .sample("sluice_group_sync_rounds_total", sync.flushRounds, { way: "syncfs" })
    .sample("sluice_group_sync_rounds_total", sync.fdatasyncRounds, { way: "fdatasync" });
  out
    .family("sluice_group_sync_files_total", "counter", "Segment files the rounds covered.")
    .sample("sluice_group_sync_files_total", sync.files);
  out
    .family("sluice_group_sync_syncfs", "gauge", "1 when rounds may use syncfs, 0: fdatasync only.")
    .sample("sluice_group_sync_syncfs", sync.syncfsAvailable ? 1 : 0);
  out
    .family("sluice_group_sync_round_seconds", "histogram", "A round's dispatch to all durable.")
    .histogram("sluice_group_sync_round_seconds", sync.roundSeconds);
}

function topicFamilies(out: Exposition, snapshot: Snapshot): void {
  out.family("sluice_records_appended_total", "counter", "Records appended since start.");
  for (const [topic, count] of Object.entries(snapshot.recordsAppendedByTopic)) {
    out.sample("sluice_records_appended_total", count, { topic });
  }
  out.family("sluice_topic_partitions", "gauge", "Partitions of each topic.");
  for (const t of snapshot.topics) {
    out.sample("sluice_topic_partitions", t.partitions.length, { topic: t.name });
  }
  out.family("sluice_topic_size_bytes", "gauge", "Bytes of every segment of a topic.");
  for (const t of snapshot.topics) out.sample("sluice_topic_size_bytes", t.sizeBytes, { topic: t.name });
  out.family("sluice_group_lag", "gauge", "Records past a group's committed offsets, by topic.");
  for (const g of snapshot.groups) {
    const byTopic = new Map<string, number>();
    for (const p of g.partitions) byTopic.set(p.topic, (byTopic.get(p.topic) ?? 0) + p.lag);
    for (const [topic, lag] of byTopic) out.sample("sluice_group_lag", lag, { group: g.group, topic });
  }
}

function partitionFamilies(out: Exposition, snapshot: Snapshot): void {
  const gauges: [string, string, (p: Snapshot["topics"][number]["partitions"][number]) => number][] =
    [
      ["sluice_log_start_offset", "First offset still stored, by partition.", (p) => p.start],
      ["sluice_log_end_offset", "Offset the next record will take, by partition.", (p) => p.end],
      ["sluice_log_size_bytes", "Bytes of the partition's segments.", (p) => p.sizeBytes],
    ];
  for (const [name, help, pick] of gauges) {
    out.family(name, "gauge", help);
    for (const t of snapshot.topics) {
      for (const p of t.partitions) out.sample(name, pick(p), { topic: t.name, partition: p.partition });
    }
  }
  out.family("sluice_group_partition_lag", "gauge", "Records past a group's committed offset.");
  for (const g of snapshot.groups) {
    for (const p of g.partitions) {
      const labels = { group: g.group, topic: p.topic, partition: p.partition };
      out.sample("sluice_group_partition_lag", p.lag, labels);
    }
  }
}

function queueFamilies(out: Exposition, snapshot: Snapshot): void {
  const gauges: [string, string, (q: Snapshot["queues"][number]) => number][] = [
    ["sluice_queue_ready", "Records waiting to be acquired.", (q) => q.ready],
    ["sluice_queue_acquired", "Records held by members.", (q) => q.acquired],
    ["sluice_queue_members", "Members of the queue.", (q) => q.members],
  ];
  for (const [name, help, pick] of gauges) {
    out.family(name, "gauge", help);
    for (const q of snapshot.queues) out.sample(name, pick(q), { queue: q.name });
  }
  out.family("sluice_queue_delivered_total", "counter", "Acquisitions since the queue was declared.");
  for (const q of snapshot.queues) out.sample("sluice_queue_delivered_total", q.delivered, { queue: q.name });
}

/** The snapshot as a Prometheus text exposition. */
export function renderMetrics(
  snapshot: Snapshot,
  partitionsMax: number = METRICS_PARTITIONS_MAX_DEFAULT,
): string {
  const out = new Exposition();
  serverFamilies(out, snapshot);
  latencyFamilies(out, snapshot);
  groupSyncFamilies(out, snapshot);
  topicFamilies(out, snapshot);
  groupFamilies(out, snapshot);
  const partitions = snapshot.topics.reduce((sum, t) => sum + t.partitions.length, 0);
  out
    .family("sluice_partitions", "gauge", "Partitions of every topic.")
    .sample("sluice_partitions", partitions);
  if (partitions <= partitionsMax) partitionFamilies(out, snapshot);
  queueFamilies(out, snapshot);
  return out.text();
}

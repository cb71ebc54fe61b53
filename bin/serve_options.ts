// The flags `sluice serve` gained for operations (HTTP endpoints, logs, metrics), kept apart
// from the command table so that table changes little. Each has an environment variable and a
// config-file key of the same meaning (./serve_config.ts).

type OptionSpec = { type: "string" | "boolean"; help: string };

export const SERVE_OPS_OPTIONS: Record<string, OptionSpec> = {
  "http-port": {
    type: "string",
    help: "Serve /metrics, /healthz, /readyz and the management page here (0: a free port)",
  },
  "http-host": { type: "string", help: "Address of the HTTP listener (default 127.0.0.1)" },
  "log-level": { type: "string", help: "debug, info, warn or error (default info)" },
  "log-format": { type: "string", help: "text or json: one JSON object a line (default text)" },
  "http-token": {
    type: "string",
    help: "Require this token on the HTTP listener (Bearer, or a Basic password)",
  },
  "http-tls": {
    type: "boolean",
    help: "HTTPS on the HTTP listener, with --tls-cert and --tls-key",
  },
  "slow-fsync-ms": {
    type: "string",
    help: "Log a warning for each fsync that takes at least this long (default 500)",
  },
  "partition-sync": {
    type: "string",
    help:
      "auto: group-commit rounds may flush the file system with one syncfs where it is " +
      "cheaper; fdatasync: always sync log by log; flush: one syncfs every round where " +
      "reachable (default auto)",
  },
  "queue-fetch-ack-wait-ms": {
    type: "string",
    help:
      "A queue fetch carrying acks waits this long at most for their fdatasync, so that its " +
      "answer confirms them (default 0: answer at once)",
  },
  "queue-syncs-in-flight": {
    type: "string",
    help:
      "fdatasyncs of one queue's state log in flight at once, 1-8 (default 2; 1: each " +
      "accept waits for the one in flight, fewer fdatasyncs)",
  },
  "drop-behind": {
    type: "string",
    help:
      "on: after a synced round, durable log bytes older than each partition's last 8 MiB " +
      "leave the page cache (posix_fadvise; Linux); all: also the written bytes of logs that " +
      "do not sync (fsync never/interval), handed to writeback first; off: the kernel keeps " +
      "them (default on)",
  },
  "direct-writes": {
    type: "string",
    help:
      "synced: partitions' flush rounds that fdatasync are written with O_DIRECT from " +
      "aligned buffers, so durable appends neither fill nor free the page cache (Bun on " +
      "Linux, where the file system takes it; elsewhere buffered); all: also rounds of logs " +
      "that do not sync, when over 64 KiB (fetches behind the tail cache then read those " +
      "from the disk, on the thread pool); off: every round through the page cache " +
      "(default all)",
  },
  "drop-behind-keep-mib": {
    type: "string",
    help:
      "MiB of each partition's latest durable bytes that drop-behind leaves in the page cache " +
      "for readers near the tail (default 8)",
  },
  "tail-cache-mib": {
    type: "string",
    help:
      "MiB of written log tails kept in memory for readers at the tail, over every partition " +
      "together; past it the logs appended to least recently give theirs back and their " +
      "readers read the file (default 256)",
  },
  "segment-bytes": {
    type: "string",
    help:
      "Bytes a segment of a topic created without its own segmentBytes grows to before the " +
      "next one starts (Kafka's log.segment.bytes; default 1073741824, 1 GiB)",
  },
  "retention-ms": {
    type: "string",
    help:
      "Keep a sealed segment of a topic created without its own retentionMs this long after " +
      "its newest record; -1 keeps it (Kafka's log.retention.ms; default 604800000, 7 days)",
  },
  "retention-bytes": {
    type: "string",
    help:
      "Bytes a partition of a topic created without its own retentionBytes keeps, oldest " +
      "sealed segments deleted first; -1: no limit (Kafka's log.retention.bytes; default -1)",
  },
  gc: {
    type: "string",
    help:
      'tuned: run under sluice\'s GC and allocator settings (README "GC settings"), starting ' +
      "serve again in place with them when the environment lacks any; default: the runtime's " +
      "own (default tuned)",
  },
  "metrics-partitions-max": {
    type: "string",
    help: "Above this many partitions /metrics exports per-topic series only (default 1000)",
  },
};

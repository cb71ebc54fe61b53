// The broker half of delay_stages.ts: a SluiceServer in a worker thread (its own event loop,
// as `sluice serve` has), which timestamps when each record became readable in the queue's
// topic partitions and in its due log (the logs' data listeners). Records are named by their
// key (decimal digits). Messages: {dataDir} → {port}; {watch: queue} → {watching: true};
// {report: true} → {topicMs, dueMs} (key → ms since the epoch); {close: true} → {closed}.

import { SluiceServer } from "../../protocol/server/mod.ts";
import { decodeRecordBatches } from "../../record/mod.ts";

type Log = {
  highWatermark: number;
  read(offset: number, maxBytes: number): { views: Uint8Array[]; nextOffset: number };
  onData(listener: () => void): () => void;
};

const decoder = new TextDecoder();
const topicMs: Record<string, number> = {};
const dueMs: Record<string, number> = {};
let server: SluiceServer | undefined;

/** Stamps every record that became readable in `log` since the last call. */
function watch(log: Log, into: Record<string, number>): void {
  let next = log.highWatermark;
  log.onData(() => {
    const now = Date.now();
    while (next < log.highWatermark) {
      const read = log.read(next, 4 * 1024 * 1024);
      for (const view of read.views) {
        for (const batch of decodeRecordBatches(view, { checkCrc: false })) {
          for (const record of batch.records) {
            if (record.offset < next || record.key === null) continue;
            into[decoder.decode(record.key)] ??= now;
          }
        }
      }
      if (read.nextOffset <= next) break;
      next = read.nextOffset;
    }
  });
}

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
};

scope.onmessage = async (event: MessageEvent) => {
  const message = event.data as Record<string, unknown>;
  if (typeof message["dataDir"] === "string") {
    server = await SluiceServer.start({ dataDir: message["dataDir"], host: "127.0.0.1", port: 0 });
    scope.postMessage({ port: server.port });
  } else if (typeof message["watch"] === "string") {
    const engine = server!.engine;
    const queue = engine.queue(message["watch"]);
    const topic = queue.config.topic;
    const partitions = engine.describeTopic(topic).partitions;
    for (let p = 0; p < partitions; p++) watch(engine.partition(topic, p), topicMs);
    const due = queue.delays?.due;
    if (due !== undefined) watch(due, dueMs);
    scope.postMessage({ watching: true });
  } else if (message["report"] === true) {
    scope.postMessage({ topicMs, dueMs });
  } else if (message["close"] === true) {
    await server?.close();
    scope.postMessage({ closed: true });
  }
};

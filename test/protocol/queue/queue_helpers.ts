// What the queue tests over a real server share: a server on a temp directory, a topic with a
// declared queue, publishing values, reading a queue's counts and a topic's records.

import {
  Admin,
  Consumer,
  type ConsumerRecord,
  Producer,
  QueueConsumer,
  type QueueConsumerOptions,
  type QueueSettings,
  type QueueStatsInfo,
} from "../../../protocol/client/mod.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../../helpers.ts";

export const utf8 = new TextEncoder();
export const text = new TextDecoder();

export type Harness = {
  server: SluiceServer;
  port: number;
  admin: Admin;
  dataDir: string;
  logs: string[];
};

/** A server on a fresh directory and an Admin for it, both closed afterwards. */
export async function withServer(run: (harness: Harness) => Promise<void>): Promise<void> {
  using dir = tempDir();
  const logs: string[] = [];
  const server = await SluiceServer.start({
    dataDir: dir.path,
    port: 0,
    log: (message) => logs.push(message),
    engineOptions: { onWarning: (message) => logs.push(message) },
  });
  const admin = new Admin({ port: server.port });
  try {
    await run({ server, port: server.port, admin, dataDir: dir.path, logs });
  } catch (error) {
    if (logs.length > 0) console.error(`server log:\n${logs.join("\n")}`);
    throw error;
  } finally {
    await admin.close();
    await server.close();
  }
}

/** Creates `topic` and declares `queue` on it (from the beginning unless said otherwise). */
export async function declare(
  admin: Admin,
  queue: string,
  settings: QueueSettings & { topic: string; partitions?: number },
): Promise<void> {
  const { partitions, ...queueSettings } = settings;
  await admin.createTopics([{ name: settings.topic, partitions: partitions ?? 1 }], {
    ifNotExists: true,
  });
  await admin.declareQueue(queue, { from: "beginning", ...queueSettings });
}

/** Publishes each value (to `partition` when given), acks all; resolves once all are in. */
export async function publish(
  port: number,
  topic: string,
  values: readonly string[],
  partition?: number,
): Promise<void> {
  const producer = new Producer({ port, lingerMs: 0 });
  try {
    await Promise.all(
      values.map((value) =>
        producer.send({ topic, value, ...(partition === undefined ? {} : { partition }) }),
      ),
    );
  } finally {
    await producer.close();
  }
}

/** Longer than any test may take: an ack flush timer or a long poll this long never ends. */
export const NEVER_MS = 60_000;

/** Requests of API `apiKey` the server has answered so far. */
export function requestsOf(server: SluiceServer, apiKey: number): number {
  const requests = server.stats()["requests"] as Record<string, number>;
  return requests[String(apiKey)] ?? 0;
}

/**
 * A QueueConsumer of queue "work" on `port` whose polls do not wait at the broker (maxWaitMs
 * 0); `options` add to or override that.
 */
export function workConsumer(
  port: number,
  options: Partial<QueueConsumerOptions> = {},
): QueueConsumer {
  return new QueueConsumer({ port, queue: "work", maxWaitMs: 0, ...options });
}

export async function statsOf(admin: Admin, queue: string): Promise<QueueStatsInfo> {
  const [description] = await admin.listQueues([queue]);
  return description!.stats;
}

/** Every record of a one-partition topic, from offset 0, once `count` have come. */
export async function readTopic(
  port: number,
  topic: string,
  count: number,
): Promise<ConsumerRecord[]> {
  const consumer = new Consumer({ port, maxWaitMs: 50 });
  const records: ConsumerRecord[] = [];
  try {
    consumer.assign([{ topic, partition: 0, offset: 0 }]);
    await waitFor(async () => {
      records.push(...(await consumer.poll()));
      return records.length >= count;
    }, `${count} records in ${topic}`);
  } finally {
    await consumer.close();
  }
  return records;
}

export function textOf(message: { value: Uint8Array | null }): string {
  return message.value === null ? "" : text.decode(message.value);
}

export function headersOf(record: ConsumerRecord): Record<string, string> {
  return Object.fromEntries(
    record.headers.map((header) => [
      header.key,
      header.value === null ? "" : text.decode(header.value),
    ]),
  );
}

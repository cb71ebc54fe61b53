// The publish loop of the TCP benchmarks (bench:tcp, its security A/B, tools/tcp_cpu.ts): one
// Producer sends as fast as it is acknowledged for a while, 1,024 sends per event-loop turn,
// waiting whenever `outstandingMax` records are unacknowledged. Partitions round-robin when
// `partitions` is given; without it the Producer picks (null key: sticky batches).

import type { Producer } from "../../protocol/client/mod.ts";

export type PublishLoop = {
  producer: Producer;
  topic: string;
  value: Uint8Array;
  seconds: number;
  /** Unacknowledged records at most; the loop resumes once half of them are acknowledged. */
  outstandingMax: number;
  partitions?: number;
};

/**
 * Publishes for `seconds`, then flushes and closes the producer. Returns the records
 * acknowledged and the seconds from the first send to the end of the flush; throws the first
 * failure.
 */
export async function publishFor(loop: PublishLoop): Promise<{ records: number; seconds: number }> {
  const { producer, topic, value, partitions, outstandingMax } = loop;
  let outstanding = 0;
  let acked = 0;
  let failed: Error | undefined;
  let wake: (() => void) | undefined;
  const done = (error: Error | null) => {
    outstanding--;
    if (error === null) acked++;
    else failed ??= error;
    if (wake !== undefined && outstanding < outstandingMax / 2) {
      wake();
      wake = undefined;
    }
  };
  const started = performance.now();
  const deadline = started + loop.seconds * 1000;
  let partition = 0;
  while (performance.now() < deadline && failed === undefined) {
    for (let i = 0; i < 1024; i++) {
      outstanding++;
      if (partitions === undefined) {
        producer.send({ topic, value }, done);
      } else {
        producer.send({ topic, value, partition }, done);
        partition = (partition + 1) % partitions;
      }
    }
    if (outstanding >= outstandingMax) await new Promise<void>((resolve) => (wake = resolve));
    else await new Promise((resolve) => setImmediate(resolve));
  }
  await producer.flush();
  const seconds = (performance.now() - started) / 1000;
  await producer.close();
  if (failed !== undefined) throw failed;
  return { records: acked, seconds };
}

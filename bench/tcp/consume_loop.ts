// The catch-up consume loop of the TCP benchmarks (bench:tcp and tools/tcp_cpu.ts): one
// Consumer, assigned by the caller, polls until it has received the records asked for, then
// closes. The caller builds the consumer (its byte limits, `checkCrcs`, its assignment), as
// publish_loop.ts's `publishFor` takes a producer.

import type { Consumer } from "../../protocol/client/mod.ts";

export type ConsumeLoop = {
  consumer: Consumer;
  /** Records to receive before stopping (the ones published earlier). */
  records: number;
  /** The longest wait of one poll (default 1,000 ms). */
  pollWaitMs?: number;
};

/**
 * Polls until `records` records arrived, then closes the consumer. Returns the records and
 * value bytes received and the seconds from the first poll to the last record.
 */
export async function consumeAll(
  loop: ConsumeLoop,
): Promise<{ records: number; bytes: number; seconds: number }> {
  const { consumer, records } = loop;
  const pollWaitMs = loop.pollWaitMs ?? 1000;
  let received = 0;
  let bytes = 0;
  const started = performance.now();
  try {
    while (received < records) {
      for (const record of await consumer.poll({ maxWaitMs: pollWaitMs })) {
        received++;
        bytes += record.value?.length ?? 0;
      }
    }
  } finally {
    await consumer.close();
  }
  return { records: received, bytes, seconds: (performance.now() - started) / 1000 };
}
